//! Configuration, layered: embedded defaults, then a TOML file, then `HOOKFORGE_*` environment
//! variables (`__` separates sections: `HOOKFORGE_OUTBOUND__ALLOW_PRIVATE_NETWORKS=true` sets
//! `outbound.allow_private_networks`), then command-line flags. Validated at start-up: an
//! invalid value stops the server with a message naming the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Everything the server can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// Where the journal, the master key and the bootstrap token live.
    pub data_dir: PathBuf,
    /// Base URL under which providers reach this server (for `webhook_url`); defaults to
    /// `http://<listen>`.
    pub public_url: Option<String>,
    /// `text` or `json` log lines.
    pub log_format: LogFormat,
    /// Log filter, in `RUST_LOG` syntax.
    pub log_level: String,
    /// A system-admin token (`HOOKFORGE_ADMIN_TOKEN`); otherwise one is generated into
    /// `<data_dir>/admin.token` on first start.
    pub admin_token: Option<String>,
    /// Base64 of 32 bytes (`HOOKFORGE_MASTER_KEY`); otherwise `<data_dir>/master.key` is used.
    pub master_key: Option<String>,
    /// Journal tuning.
    pub journal: JournalConfig,
    /// HTTP limits.
    pub http: HttpConfig,
    /// Inbound webhooks.
    pub ingress: IngressConfig,
    /// Outbound webhooks.
    pub outbound: OutboundConfig,
    /// Job execution.
    pub jobs: JobsConfig,
    /// Evaluation limits of CEL conditions, throttle keys and filters.
    pub conditions: ConditionsConfig,
    /// How long history is kept (system defaults; organizations may set their own).
    pub retention: RetentionConfig,
    /// Resource actors (rules, outbound endpoints).
    pub actors: ActorsConfig,
}

/// System-wide retention defaults and the sweeper's pace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Days event logs are kept.
    pub event_logs_days: u32,
    /// Days outbound deliveries are kept.
    pub deliveries_days: u32,
    /// Days webhook payloads are kept (unset: as long as their event logs).
    pub payload_days: Option<u32>,
    /// Days audit entries are kept.
    pub audit_days: u32,
    /// Seconds between sweeps (0: retention is never swept).
    pub sweep_interval_seconds: u64,
    /// Rows a sweep expires per second at most, so it never competes with ingress.
    pub max_rows_per_second: u32,
    /// MiB per second compaction reads and writes at most while cutting expired payloads out
    /// of the journal's closed segments.
    pub compaction_mib_per_second: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            event_logs_days: 30,
            deliveries_days: 30,
            payload_days: None,
            audit_days: 365,
            sweep_interval_seconds: 3600,
            max_rows_per_second: 5000,
            compaction_mib_per_second: 32,
        }
    }
}

impl RetentionConfig {
    /// Compaction's pace in bytes per second.
    pub fn compaction_bytes_per_second(&self) -> u64 {
        u64::from(self.compaction_mib_per_second) << 20
    }

    /// The defaults as an organization's settings fall back to them.
    pub fn defaults(&self) -> crate::domain::retention::Retention {
        crate::domain::retention::Retention {
            event_logs_days: Some(self.event_logs_days),
            deliveries_days: Some(self.deliveries_days),
            payload_days: self.payload_days,
            audit_days: Some(self.audit_days),
        }
    }
}

/// Resource actors: one per rule and per outbound endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActorsConfig {
    /// Seconds without work after which a rule's or endpoint's actor is passivated (stopped, its
    /// state saved; the next message re-hydrates it). 0 keeps every actor running.
    pub idle_seconds: u64,
}

impl Default for ActorsConfig {
    fn default() -> Self {
        Self { idle_seconds: 300 }
    }
}

impl ActorsConfig {
    /// The idle time before passivation, if passivation is on.
    pub fn idle(&self) -> Option<std::time::Duration> {
        (self.idle_seconds > 0).then(|| std::time::Duration::from_secs(self.idle_seconds))
    }
}

/// Evaluation limits of every user-supplied expression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConditionsConfig {
    /// Budget of one evaluation (a rule's conditions and throttle key on one webhook, or one
    /// filter on one event), in milliseconds of interpreter work, enforced as a cost estimate
    /// made before the expression runs.
    pub max_eval_millis: u64,
    /// Largest value one evaluation may build (strings, lists), in bytes.
    pub max_value_bytes: u64,
    /// Threads that evaluate expressions with loops or superlinear functions, shared fairly
    /// between organizations (0: half the CPUs, at least one).
    pub eval_threads: usize,
}

impl Default for ConditionsConfig {
    fn default() -> Self {
        Self {
            max_eval_millis: 10,
            max_value_bytes: 16 * 1024 * 1024,
            eval_threads: 0,
        }
    }
}

impl ConditionsConfig {
    /// The budget these settings give each evaluation.
    pub fn budget(&self) -> crate::conditions::Budget {
        crate::conditions::Budget::from_millis(self.max_eval_millis, self.max_value_bytes)
    }

    /// The number of evaluation threads to start.
    pub fn threads(&self) -> usize {
        if self.eval_threads > 0 {
            return self.eval_threads;
        }
        std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Journal tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// fdatasync each group commit. Turning it off loses acknowledged events on power loss.
    pub sync: bool,
    /// Segment file size before rolling, in MiB.
    pub segment_mib: u64,
    /// Most events in one group commit.
    pub max_batch_events: usize,
    /// Upper bound on the index's page cache, in MiB (filled as the journal grows).
    pub index_cache_mib: u64,
}

/// HTTP limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Largest request body accepted (bytes); larger ones get 413.
    pub max_body_bytes: usize,
    /// Seconds in-flight requests get to finish after a shutdown signal.
    pub shutdown_grace_seconds: u64,
    /// Seconds a client has to send a request's head (line and headers), counted from the
    /// connection's opening or its previous response: slow headers and idle keep-alive
    /// connections are closed after it.
    pub header_read_timeout_seconds: u64,
    /// Seconds a client has to send a request's whole body once its head arrived (408 after).
    pub body_read_timeout_seconds: u64,
    /// Connections open at once; beyond, new ones are answered 503 and closed.
    pub max_connections: usize,
    /// Largest request head in bytes (431 beyond; at most 100 headers in any case).
    pub max_header_bytes: usize,
}

/// Inbound webhook settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngressConfig {
    /// How long a rotated-out webhook key keeps verifying.
    pub key_rotation_grace_seconds: u64,
    /// Bytes of a payload kept for forensics when its signature fails.
    pub failed_payload_bytes: usize,
    /// Bytes of headers (names and values, in all) kept when a signature fails; the rest is
    /// dropped with a truncation marker.
    pub failed_header_bytes: usize,
    /// Rejected webhooks journaled per rule and minute (beyond, only counted in
    /// `hookforge_ingress_rejected_total{logged="false"}`).
    pub rejected_logs_per_minute: u32,
    /// Rejected webhooks a rule may journal in a burst.
    pub rejected_logs_burst: u32,
}

/// Outbound webhook settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// Allow deliveries to private, loopback and link-local addresses (off: SSRF guard).
    pub allow_private_networks: bool,
    /// How long a rotated-out signing secret keeps signing alongside the new one.
    pub secret_rotation_grace_seconds: u64,
    /// Disable an endpoint that has failed without a single success for this long.
    pub disable_after_failing_hours: u64,
}

/// Job execution settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Allow `command` job templates (they run code as the server's user).
    pub allow_commands: bool,
    /// Seconds between SIGTERM and SIGKILL when a job is canceled or times out.
    pub kill_grace_seconds: u64,
    /// Milliseconds between polls of a controller job's status.
    pub controller_poll_millis: u64,
    /// First retry delay of a failed notification send, in milliseconds (doubling, with jitter,
    /// up to 8 attempts: the outbound delivery policy).
    pub notification_retry_initial_millis: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("valid default address"),
            data_dir: PathBuf::from("./hookforge-data"),
            public_url: None,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            admin_token: None,
            master_key: None,
            journal: JournalConfig::default(),
            http: HttpConfig::default(),
            ingress: IngressConfig::default(),
            outbound: OutboundConfig::default(),
            jobs: JobsConfig::default(),
            conditions: ConditionsConfig::default(),
            retention: RetentionConfig::default(),
            actors: ActorsConfig::default(),
        }
    }
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            sync: true,
            segment_mib: 256,
            max_batch_events: 2048,
            index_cache_mib: 128,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            shutdown_grace_seconds: 30,
            header_read_timeout_seconds: 10,
            body_read_timeout_seconds: 30,
            max_connections: 8192,
            max_header_bytes: 256 * 1024,
        }
    }
}

impl Default for IngressConfig {
    fn default() -> Self {
        Self {
            key_rotation_grace_seconds: 3600,
            failed_payload_bytes: 64 * 1024,
            failed_header_bytes: 8 * 1024,
            rejected_logs_per_minute: 60,
            rejected_logs_burst: 10,
        }
    }
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            allow_private_networks: false,
            secret_rotation_grace_seconds: 86_400,
            disable_after_failing_hours: 120,
        }
    }
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            allow_commands: true,
            kill_grace_seconds: 10,
            controller_poll_millis: 2000,
            notification_retry_initial_millis: 5000,
        }
    }
}

/// Values given on the command line, which override every other layer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    /// `--listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `--log-format`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

/// A configuration that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Loads the layers from `file` (if any), the process environment and `overrides`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        Self::load_from(file, Env::prefixed("HOOKFORGE_").split("__"), overrides)
    }

    fn load_from(
        file: Option<&Path>,
        env: Env,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        let config: Config = figment
            .merge(env)
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| ConfigError(figment_message(e)))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("{key}: {why}")));
        if let Some(url) = &self.public_url {
            match url::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => return bad("public_url", "must be an absolute http(s) URL"),
            }
        }
        if self.journal.segment_mib == 0 || self.journal.segment_mib > 4096 {
            return bad("journal.segment_mib", "must be between 1 and 4096");
        }
        if self.journal.max_batch_events == 0 {
            return bad("journal.max_batch_events", "must be at least 1");
        }
        if !(8..=65_536).contains(&self.journal.index_cache_mib) {
            return bad("journal.index_cache_mib", "must be between 8 and 65536");
        }
        if self.http.max_body_bytes < 1024 {
            return bad("http.max_body_bytes", "must be at least 1024");
        }
        if !(1..=3600).contains(&self.http.header_read_timeout_seconds) {
            return bad(
                "http.header_read_timeout_seconds",
                "must be between 1 and 3600",
            );
        }
        if !(1..=3600).contains(&self.http.body_read_timeout_seconds) {
            return bad(
                "http.body_read_timeout_seconds",
                "must be between 1 and 3600",
            );
        }
        if !(1..=1_000_000).contains(&self.http.max_connections) {
            return bad("http.max_connections", "must be between 1 and 1000000");
        }
        if !(8192..=16 << 20).contains(&self.http.max_header_bytes) {
            return bad("http.max_header_bytes", "must be between 8192 and 16777216");
        }

        if !(1..=10_000).contains(&self.conditions.max_eval_millis) {
            return bad("conditions.max_eval_millis", "must be between 1 and 10000");
        }
        if !(1024..=1 << 30).contains(&self.conditions.max_value_bytes) {
            return bad(
                "conditions.max_value_bytes",
                "must be between 1024 and 1073741824",
            );
        }
        let max_days = crate::domain::retention::MAX_DAYS;
        for (field, days) in [
            (
                "retention.event_logs_days",
                Some(self.retention.event_logs_days),
            ),
            (
                "retention.deliveries_days",
                Some(self.retention.deliveries_days),
            ),
            ("retention.payload_days", self.retention.payload_days),
            ("retention.audit_days", Some(self.retention.audit_days)),
        ] {
            if days.is_some_and(|d| !(1..=max_days).contains(&d)) {
                return bad(field, &format!("must be between 1 and {max_days} days"));
            }
        }
        if !(1..=604_800).contains(&self.retention.sweep_interval_seconds) {
            return bad(
                "retention.sweep_interval_seconds",
                "must be between 1 and 604800",
            );
        }
        if self.retention.max_rows_per_second == 0 {
            return bad("retention.max_rows_per_second", "must be at least 1");
        }
        if self.retention.compaction_mib_per_second == 0 {
            return bad("retention.compaction_mib_per_second", "must be at least 1");
        }
        if self.actors.idle_seconds > 604_800 {
            return bad("actors.idle_seconds", "must be between 0 and 604800");
        }
        if self.conditions.eval_threads > 256 {
            return bad("conditions.eval_threads", "must be at most 256");
        }
        if let Some(token) = &self.admin_token
            && token.len() < 16
        {
            return bad("admin_token", "must be at least 16 characters");
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return bad("log_level", &e.to_string());
        }
        Ok(())
    }

    /// The base URL providers use to reach this server, without a trailing slash.
    pub fn public_base_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_owned()
    }
}

/// figment's errors, flattened to one line that names the offending key.
fn figment_message(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let mut kind = e.kind.to_string();
            if let figment::error::Kind::UnknownField(field, _) = &e.kind {
                kind = format!("unknown key `{field}`");
            }
            let source = e
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            if key.is_empty() {
                format!("{kind}{source}")
            } else {
                format!("{key}: {kind}{source}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let no_env = Env::prefixed("HOOKFORGE_TEST_NEVER_SET_").split("__");
        let config = Config::load_from(None, no_env, &Overrides::default()).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.data_dir, PathBuf::from("./hookforge-data"));
        assert!(config.journal.sync);
        assert!(!config.outbound.allow_private_networks);
        assert_eq!(config.public_base_url(), "http://127.0.0.1:8080");
        assert_eq!(config.actors.idle_seconds, 300);
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail fixes the closure's error type
    fn layers_apply_in_order_and_errors_name_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "hookforge.toml",
                "listen = \"127.0.0.1:9000\"\n[outbound]\nallow_private_networks = false\n",
            )?;
            jail.set_env("HOOKFORGE_OUTBOUND__ALLOW_PRIVATE_NETWORKS", "true");
            jail.set_env("HOOKFORGE_DATA_DIR", "/tmp/from-env");
            let overrides = Overrides {
                data_dir: Some("/tmp/from-flag".into()),
                ..Default::default()
            };
            let config = Config::load(Some(Path::new("hookforge.toml")), &overrides).unwrap();
            assert_eq!(config.listen.to_string(), "127.0.0.1:9000");
            assert!(
                config.outbound.allow_private_networks,
                "env overrides the file"
            );
            assert_eq!(
                config.data_dir,
                PathBuf::from("/tmp/from-flag"),
                "flags override env"
            );

            jail.create_file("bad.toml", "[journal]\nsegment_mib = \"lots\"\n")?;
            let err = Config::load(Some(Path::new("bad.toml")), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("journal.segment_mib"), "{err}");

            jail.create_file("unknown.toml", "[outbound]\nallow_privat_networks = true\n")?;
            let err = Config::load(Some(Path::new("unknown.toml")), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("allow_privat_networks"), "{err}");

            jail.set_env("HOOKFORGE_JOURNAL__SEGMENT_MIB", "0");
            let err = Config::load(None, &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("journal.segment_mib"), "{err}");

            jail.set_env("HOOKFORGE_JOURNAL__SEGMENT_MIB", "256");
            jail.set_env("HOOKFORGE_JOURNAL__INDEX_CACHE_MIB", "4");
            let err = Config::load(None, &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("journal.index_cache_mib"), "{err}");
            jail.set_env("HOOKFORGE_JOURNAL__INDEX_CACHE_MIB", "32");
            let config = Config::load(None, &Overrides::default()).unwrap();
            assert_eq!(config.journal.index_cache_mib, 32);
            Ok(())
        });
    }
}
