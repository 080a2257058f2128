//! Bounded capture of a job's output: the last N bytes survive, older ones are dropped.

use std::collections::VecDeque;

/// The most output kept per job.
pub const MAX_OUTPUT: usize = 1024 * 1024;

/// Keeps the last `limit` bytes written to it.
#[derive(Debug)]
pub struct Tail {
    buf: VecDeque<u8>,
    limit: usize,
}

impl Tail {
    /// An empty tail keeping at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            buf: VecDeque::new(),
            limit,
        }
    }

    /// Appends bytes, dropping the oldest beyond the limit.
    pub fn push(&mut self, bytes: &[u8]) {
        let bytes = if bytes.len() > self.limit {
            &bytes[bytes.len() - self.limit..]
        } else {
            bytes
        };
        let overflow = (self.buf.len() + bytes.len()).saturating_sub(self.limit);
        self.buf.drain(..overflow);
        self.buf.extend(bytes);
    }

    /// The kept bytes, oldest first.
    pub fn to_vec(&self) -> Vec<u8> {
        self.buf.iter().copied().collect()
    }

    /// How many bytes are kept.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_last_bytes() {
        let mut tail = Tail::new(8);
        tail.push(b"hello ");
        tail.push(b"world!");
        assert_eq!(tail.to_vec(), b"o world!");
        tail.push(b"0123456789abcdef");
        assert_eq!(tail.to_vec(), b"89abcdef");
        assert_eq!(tail.len(), 8);
    }
}
