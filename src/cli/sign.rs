//! `hookforge sign`: prints the header(s) a sender must set, so rules can be tried with curl.

use std::io::Read;
use std::process::ExitCode;

use crate::signing::{hmac_sha256_hex, standard_webhooks_key, standard_webhooks_signature};

/// Signature schemes `sign` can produce.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Scheme {
    /// `X-Hub-Signature-256: sha256=<hex>` (GitHub).
    Github,
    /// `X-Gitea-Signature: <hex>` (Gitea, Forgejo).
    Gitea,
    /// `X-Forge-Signature: sha256=<hex>` (generic senders, Alertmanager/Datadog proxies).
    Generic,
    /// `X-Forge-Timestamp` and `X-Forge-Signature` over `{timestamp}.{body}`: refused when
    /// replayed more than 5 minutes later.
    GenericTimestamped,
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    Standard,
}

/// How to print the headers.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// `Name: value` lines.
    Headers,
    /// `-H 'Name: value'` arguments for curl.
    Curl,
}

/// Options of `hookforge sign`.
#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// The rule's webhook key.
    #[arg(long)]
    key: String,
    /// Which scheme to sign with.
    #[arg(long, value_enum, default_value = "generic")]
    scheme: Scheme,
    /// Message id for Standard Webhooks (default: a random `msg_` id).
    #[arg(long)]
    id: Option<String>,
    /// Unix timestamp for Standard Webhooks and generic-timestamped (default: now).
    #[arg(long)]
    timestamp: Option<i64>,
    /// Output format.
    #[arg(long, value_enum, default_value = "headers")]
    format: Format,
}

/// The headers for `body` signed with `key` under `scheme`.
pub fn headers(
    scheme: Scheme,
    key: &str,
    body: &[u8],
    id: &str,
    timestamp: i64,
) -> Vec<(String, String)> {
    match scheme {
        Scheme::Github => vec![(
            "X-Hub-Signature-256".into(),
            format!("sha256={}", hmac_sha256_hex(key.as_bytes(), body)),
        )],
        Scheme::Gitea => vec![(
            "X-Gitea-Signature".into(),
            hmac_sha256_hex(key.as_bytes(), body),
        )],
        Scheme::Generic => vec![(
            "X-Forge-Signature".into(),
            format!("sha256={}", hmac_sha256_hex(key.as_bytes(), body)),
        )],
        Scheme::GenericTimestamped => {
            let mut signed = format!("{timestamp}.").into_bytes();
            signed.extend_from_slice(body);
            vec![
                ("X-Forge-Timestamp".into(), timestamp.to_string()),
                (
                    "X-Forge-Signature".into(),
                    format!("sha256={}", hmac_sha256_hex(key.as_bytes(), &signed)),
                ),
            ]
        }
        Scheme::Standard => vec![
            ("webhook-id".into(), id.to_owned()),
            ("webhook-timestamp".into(), timestamp.to_string()),
            (
                "webhook-signature".into(),
                format!(
                    "v1,{}",
                    standard_webhooks_signature(&standard_webhooks_key(key), id, timestamp, body)
                ),
            ),
        ],
    }
}

pub(super) fn run(args: SignArgs) -> anyhow::Result<ExitCode> {
    let mut body = Vec::new();
    std::io::stdin().read_to_end(&mut body)?;
    let id = args
        .id
        .unwrap_or_else(|| format!("msg_{}", uuid::Uuid::new_v4().simple()));
    let timestamp = args
        .timestamp
        .unwrap_or_else(|| chrono::Utc::now().timestamp());
    for (name, value) in headers(args.scheme, &args.key, &body, &id, timestamp) {
        match args.format {
            Format::Headers => println!("{name}: {value}"),
            Format::Curl => println!("-H '{name}: {value}'"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_documented_example() {
        let h = headers(
            Scheme::Github,
            "It's a Secret to Everybody",
            b"Hello, World!",
            "",
            0,
        );
        assert_eq!(
            h,
            vec![(
                "X-Hub-Signature-256".to_string(),
                "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
                    .to_string()
            )]
        );
    }

    #[test]
    fn standard_webhooks_vector() {
        let h = headers(
            Scheme::Standard,
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            br#"{"test": 2432232314}"#,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
        );
        assert_eq!(h[2].1, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
