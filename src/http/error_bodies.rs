//! Hyper's own error responses in the one JSON error shape.
//!
//! When a request cannot even be parsed (a malformed request line or header, headers over the
//! size limit, a URI too long), hyper answers by itself with `400`, `431` or `414` and an empty
//! body, before any handler runs. This wrapper around the connection's socket recognises exactly
//! those responses (our handlers never send a 4xx without a body) and writes the same status
//! with a `{"detail", "code", "fields"}` body instead, then lets hyper close the connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use hyper::rt::{Read, ReadBufCursor, Write};

/// A connection whose automatic error responses get a JSON body.
pub struct ErrorBodies<T> {
    inner: T,
    /// A rewritten response still to be written, and how much of it was.
    pending: Option<(Vec<u8>, usize)>,
}

impl<T> ErrorBodies<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            pending: None,
        }
    }
}

/// The JSON response replacing hyper's bodiless one, if `head` is one of those.
fn rewrite(head: &[u8]) -> Option<Vec<u8>> {
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = std::str::from_utf8(&head[..end]).ok()?;
    let status = text.strip_prefix("HTTP/1.1 ")?.get(..3)?;
    let (code, detail) = match status {
        "400" => (
            "malformed_request",
            "The request could not be parsed as HTTP/1.1.",
        ),
        "414" => ("uri_too_long", "The request URI is too long."),
        "431" => (
            "headers_too_large",
            "The request headers are too large (too many or too long).",
        ),
        _ => return None,
    };
    if end != head.len()
        || !text
            .to_ascii_lowercase()
            .contains("\r\ncontent-length: 0\r\n")
    {
        return None;
    }
    let body = serde_json::json!({"detail": detail, "code": code, "fields": {}}).to_string();
    let reason = text[13..].split("\r\n").next().unwrap_or("");
    Some(
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl<T: Write + Unpin> ErrorBodies<T> {
    /// Writes what is left of a rewritten response.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
            if *written == bytes.len() {
                self.pending = None;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: Read + Unpin> Read for ErrorBodies<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for ErrorBodies<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        if buf.starts_with(b"HTTP/1.1 4")
            && let Some(replacement) = rewrite(buf)
        {
            self.pending = Some((replacement, 0));
            // The original bytes count as written: hyper is done with them either way.
            let _ = self.drain(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_bodiless_errors_get_the_json_shape() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 10:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(rewrite(head).unwrap()).unwrap();
        assert!(
            out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{out}"
        );
        let body: serde_json::Value =
            serde_json::from_str(out.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["code"], "headers_too_large");
        assert!(out.contains(&format!("content-length: {}", body.to_string().len())));
    }

    #[test]
    fn responses_with_bodies_and_other_statuses_are_left_alone() {
        assert!(rewrite(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n").is_none());
        assert!(rewrite(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(
            rewrite(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nextra").is_none(),
            "a head followed by more bytes is a real response"
        );
        assert!(rewrite(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n").is_none());
    }
}
