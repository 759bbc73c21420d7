//! The per-service [`ServiceConfig`], read from
//! `plugins/<service>/service.toml`.
//!
//! Every value is validated when it is read; an invalid value is refused with
//! a message that names the key, and the caller keeps whatever it had before.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::triggers::{self, RawTimer, RouteTemplate, TimerConfig};
use super::GatewayConfig;

/// Why a `service.toml` was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown key or a wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, naming the key.
        message: String,
    },
    /// A key has a value outside its range.
    #[error("{path}: invalid value for `{key}`: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The offending key (`timers[2].cron` for a key of a table entry).
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Validated settings of one service. Defaults are documented in the README.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    /// Bearer token required on the reverse-push routes; `None` restricts
    /// them to loopback callers.
    pub push_token: Option<String>,
    /// Close a connection after this long without a data message from the
    /// client. Pings and pongs do not count: they show the peer is alive,
    /// not that it is using the connection.
    pub idle_timeout: Duration,
    /// How often the gateway pings a quiet client; one that answers nothing
    /// (no pong, no frame at all) within the next interval is taken for dead
    /// and closed. `None`: never ping.
    pub ping_interval: Option<Duration>,
    /// Wall-clock bound of one handler call.
    pub timeout: Duration,
    /// Linear memory a handler call may grow to, in bytes.
    pub memory_limit_bytes: usize,
    /// Handler calls of this service running at once.
    pub max_concurrency: u32,
    /// Live connections of this service.
    pub max_connections: usize,
    /// Largest message a client may send or a push may deliver.
    pub max_message_bytes: usize,
    /// Messages that may wait for a slow client before it is closed with 1008.
    pub outbound_queue: usize,
    /// Bytes of messages that may wait for a slow client before it is
    /// closed with 1008: the message bound alone would let one connection
    /// hold `outbound_queue` × `max_message_bytes` (256 MiB by default).
    pub outbound_queue_bytes: usize,
    /// Keys the service may hold in the key-value store.
    pub kv_max_keys: u64,
    /// Bytes of keys and values the service may hold in the key-value store:
    /// the key cap alone would let 100,000 keys of 1 MiB fill a disk.
    pub kv_max_bytes: u64,
    /// The only environment variables a handler sees. Shared, because every
    /// handler call hands it to its WASI context.
    pub env: Arc<BTreeMap<String, String>>,
    /// Events one handler instance may serve before it is replaced; 0 (the
    /// default) gives every event a fresh instance.
    pub instance_reuse: u32,
    /// Largest body of a request to the HTTP trigger; a larger one is
    /// refused with 413 without being read.
    pub max_http_body_bytes: usize,
    /// Route templates of the HTTP trigger, in the order they are tried.
    pub routes: Arc<[RouteTemplate]>,
    /// The service's timers.
    pub timers: Arc<[TimerConfig]>,
}

/// Default `max_http_body_bytes`: the 6 MB the model suggests.
pub const DEFAULT_MAX_HTTP_BODY_BYTES: usize = 6 << 20;

/// Largest `max_http_body_bytes` a service may set: the event carries the
/// body (Base64 when binary) in the handler's memory.
pub const MAX_HTTP_BODY_BYTES: usize = 32 << 20;

/// Default `kv_max_bytes`: 64 MiB.
pub const DEFAULT_KV_MAX_BYTES: u64 = 64 << 20;

/// Largest `kv_max_bytes` a service may set: 1 TiB.
pub const MAX_KV_MAX_BYTES: u64 = 1 << 40;

/// Largest `instance_reuse` a service may set.
pub const MAX_INSTANCE_REUSE: u32 = 1_000_000;

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            push_token: None,
            idle_timeout: Duration::from_secs(600),
            ping_interval: Some(Duration::from_secs(30)),
            timeout: Duration::from_millis(3000),
            memory_limit_bytes: 64 << 20,
            max_concurrency: 64,
            max_connections: 100_000,
            max_message_bytes: 256 << 10,
            outbound_queue: 1024,
            outbound_queue_bytes: 4 << 20,
            kv_max_keys: 100_000,
            kv_max_bytes: DEFAULT_KV_MAX_BYTES,
            env: Arc::default(),
            instance_reuse: 0,
            max_http_body_bytes: DEFAULT_MAX_HTTP_BODY_BYTES,
            routes: Arc::new([]),
            timers: Arc::new([]),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServiceConfig {
    push_token: Option<String>,
    idle_timeout_s: Option<u64>,
    ping_interval_s: Option<u64>,
    timeout_ms: Option<u64>,
    memory_limit_mb: Option<u64>,
    max_concurrency: Option<u32>,
    max_connections: Option<usize>,
    max_message_bytes: Option<usize>,
    outbound_queue: Option<usize>,
    outbound_queue_bytes: Option<usize>,
    kv_max_keys: Option<u64>,
    kv_max_bytes: Option<u64>,
    env: Option<BTreeMap<String, String>>,
    instance_reuse: Option<u32>,
    max_http_body_bytes: Option<usize>,
    routes: Option<Vec<String>>,
    timers: Option<Vec<RawTimer>>,
}

impl ServiceConfig {
    /// The settings of a service that sets nothing: [`ServiceConfig::default`]
    /// within the gateway's limits. A default above one (memory, concurrency)
    /// is lowered to it, so a service that relies on the defaults is never
    /// allowed more than the gateway can give: with `--max-memory-mb 32` it
    /// gets 32 MiB, reported as its limit when a call reaches it.
    pub fn defaults(gateway: &GatewayConfig) -> Self {
        let defaults = Self::default();
        Self {
            memory_limit_bytes: defaults
                .memory_limit_bytes
                .min((gateway.max_memory_mb as usize) << 20),
            max_concurrency: defaults.max_concurrency.min(gateway.max_concurrency),
            ..defaults
        }
    }

    /// Parses and validates the text of a `service.toml` read from `path`;
    /// what it does not set takes [`ServiceConfig::defaults`].
    pub fn parse(text: &str, path: &Path, gateway: &GatewayConfig) -> Result<Self, ConfigError> {
        let raw: RawServiceConfig = toml::from_str(text).map_err(|e| {
            // Name the line (and so the key) the parser stopped at.
            let location = e
                .span()
                .map(|span| {
                    let line_no = text[..span.start].matches('\n').count() + 1;
                    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
                    format!(" (line {line_no}: `{line}`)")
                })
                .unwrap_or_default();
            ConfigError::Parse {
                path: path.to_owned(),
                message: format!("{}{location}", e.message()),
            }
        })?;
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            reason,
        };
        let mut config = Self::defaults(gateway);
        if let Some(token) = raw.push_token {
            if token.len() < 16 {
                return Err(invalid(
                    "push_token",
                    "must be at least 16 characters".into(),
                ));
            }
            config.push_token = Some(token);
        }
        if let Some(seconds) = raw.idle_timeout_s {
            if !(1..=7 * 24 * 3600).contains(&seconds) {
                return Err(invalid(
                    "idle_timeout_s",
                    "must be between 1 and 604800".into(),
                ));
            }
            config.idle_timeout = Duration::from_secs(seconds);
        }
        if let Some(seconds) = raw.ping_interval_s {
            if seconds > 3600 {
                return Err(invalid(
                    "ping_interval_s",
                    "must be between 0 (off) and 3600".into(),
                ));
            }
            config.ping_interval = (seconds > 0).then(|| Duration::from_secs(seconds));
        }
        if let Some(ms) = raw.timeout_ms {
            if !(1..=600_000).contains(&ms) {
                return Err(invalid("timeout_ms", "must be between 1 and 600000".into()));
            }
            config.timeout = Duration::from_millis(ms);
        }
        if let Some(mb) = raw.memory_limit_mb {
            if mb == 0 || mb > gateway.max_memory_mb {
                return Err(invalid(
                    "memory_limit_mb",
                    format!(
                        "must be between 1 and the gateway's max_memory_mb ({})",
                        gateway.max_memory_mb
                    ),
                ));
            }
            config.memory_limit_bytes = (mb as usize) << 20;
        }
        if let Some(n) = raw.max_concurrency {
            if n == 0 || n > gateway.max_concurrency {
                return Err(invalid(
                    "max_concurrency",
                    format!(
                        "must be between 1 and the gateway's max_concurrency ({})",
                        gateway.max_concurrency
                    ),
                ));
            }
            config.max_concurrency = n;
        }
        if let Some(n) = raw.max_connections {
            if n == 0 {
                return Err(invalid("max_connections", "must be at least 1".into()));
            }
            config.max_connections = n;
        }
        if let Some(n) = raw.max_message_bytes {
            if !(16..=64 << 20).contains(&n) {
                return Err(invalid(
                    "max_message_bytes",
                    "must be between 16 and 67108864".into(),
                ));
            }
            config.max_message_bytes = n;
        }
        if let Some(n) = raw.outbound_queue {
            if !(1..=1 << 20).contains(&n) {
                return Err(invalid(
                    "outbound_queue",
                    "must be between 1 and 1048576".into(),
                ));
            }
            config.outbound_queue = n;
        }
        if let Some(n) = raw.outbound_queue_bytes {
            if !(1 << 10..=1 << 30).contains(&n) {
                return Err(invalid(
                    "outbound_queue_bytes",
                    "must be between 1024 and 1073741824".into(),
                ));
            }
            config.outbound_queue_bytes = n;
        }
        if let Some(n) = raw.kv_max_keys {
            if n > 1 << 40 {
                return Err(invalid("kv_max_keys", "must be at most 2^40".into()));
            }
            config.kv_max_keys = n;
        }
        if let Some(n) = raw.kv_max_bytes {
            if n > MAX_KV_MAX_BYTES {
                return Err(invalid(
                    "kv_max_bytes",
                    format!("must be at most {MAX_KV_MAX_BYTES} (1 TiB)"),
                ));
            }
            config.kv_max_bytes = n;
        }
        if let Some(env) = raw.env {
            config.env = Arc::new(env);
        }
        if let Some(n) = raw.instance_reuse {
            if n > MAX_INSTANCE_REUSE {
                return Err(invalid(
                    "instance_reuse",
                    format!("must be between 0 (off) and {MAX_INSTANCE_REUSE}"),
                ));
            }
            config.instance_reuse = n;
        }
        if let Some(n) = raw.max_http_body_bytes {
            if n > MAX_HTTP_BODY_BYTES {
                return Err(invalid(
                    "max_http_body_bytes",
                    format!("must be between 0 and {MAX_HTTP_BODY_BYTES}"),
                ));
            }
            config.max_http_body_bytes = n;
        }
        if let Some(routes) = raw.routes {
            config.routes = triggers::routes(routes)
                .map_err(|(key, reason)| invalid(&key, reason))?
                .into();
        }
        if let Some(timers) = raw.timers {
            config.timers = triggers::timers(timers)
                .map_err(|(key, reason)| invalid(&key, reason))?
                .into();
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServiceConfig, ConfigError> {
        ServiceConfig::parse(
            text,
            Path::new("svc/service.toml"),
            &GatewayConfig::new("p"),
        )
    }

    #[test]
    fn instance_reuse_is_off_by_default_and_bounded() {
        assert_eq!(parse("").unwrap().instance_reuse, 0);
        assert_eq!(parse("instance_reuse = 0").unwrap().instance_reuse, 0);
        let message = parse("instance_reuse = 2000000").unwrap_err().to_string();
        assert!(message.contains("instance_reuse"), "{message}");
        assert!(parse("instance_reuse = -1").is_err());
    }

    #[test]
    fn defaults_above_the_gateways_limits_are_lowered_to_them() {
        let small = GatewayConfig {
            max_memory_mb: 32,
            max_concurrency: 16,
            ..GatewayConfig::new("p")
        };
        let config = ServiceConfig::parse("", Path::new("svc/service.toml"), &small).unwrap();
        assert_eq!(config.memory_limit_bytes, 32 << 20);
        assert_eq!(config.max_concurrency, 16);
        // A value set explicitly above the limit is still an error.
        let message = ServiceConfig::parse(
            "memory_limit_mb = 64",
            Path::new("svc/service.toml"),
            &small,
        )
        .unwrap_err()
        .to_string();
        assert!(message.contains("memory_limit_mb"), "{message}");
        // Within the limits, the defaults stand.
        assert_eq!(
            ServiceConfig::defaults(&GatewayConfig::new("p")),
            ServiceConfig::default()
        );
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(parse("").unwrap(), ServiceConfig::default());
    }

    #[test]
    fn reads_every_key() {
        let config = parse(
            r#"
            push_token = "0123456789abcdef"
            idle_timeout_s = 5
            ping_interval_s = 7
            timeout_ms = 250
            memory_limit_mb = 16
            max_concurrency = 4
            max_connections = 10
            max_message_bytes = 1024
            outbound_queue = 8
            outbound_queue_bytes = 65536
            kv_max_keys = 9
            kv_max_bytes = 4096
            env = { GREETING = "hi" }
            instance_reuse = 100
            max_http_body_bytes = 1000
            routes = ["/rooms/{room}", "/"]

            [[timers]]
            name = "EveryDay"
            cron = "0 15 10 * * MON-FRI *"
            message = "user define msg body"

            [[timers]]
            name = "tick"
            cron = "* * * * *"
            "#,
        )
        .unwrap();
        assert_eq!(config.push_token.as_deref(), Some("0123456789abcdef"));
        assert_eq!(config.idle_timeout, Duration::from_secs(5));
        assert_eq!(config.ping_interval, Some(Duration::from_secs(7)));
        assert_eq!(parse("ping_interval_s = 0").unwrap().ping_interval, None);
        assert_eq!(config.timeout, Duration::from_millis(250));
        assert_eq!(config.memory_limit_bytes, 16 << 20);
        assert_eq!(config.max_concurrency, 4);
        assert_eq!(config.max_connections, 10);
        assert_eq!(config.max_message_bytes, 1024);
        assert_eq!(config.outbound_queue, 8);
        assert_eq!(config.outbound_queue_bytes, 65536);
        let message = parse("outbound_queue_bytes = 10").unwrap_err().to_string();
        assert!(message.contains("outbound_queue_bytes"), "{message}");
        assert_eq!(config.kv_max_keys, 9);
        assert_eq!(config.kv_max_bytes, 4096);
        assert_eq!(config.env["GREETING"], "hi");
        assert_eq!(config.instance_reuse, 100);
        assert_eq!(config.max_http_body_bytes, 1000);
        assert_eq!(config.routes.len(), 2);
        assert_eq!(config.routes[0].as_str(), "/rooms/{room}");
        assert_eq!(config.timers.len(), 2);
        assert_eq!(config.timers[0].name, "EveryDay");
        assert_eq!(
            config.timers[0].message.as_deref(),
            Some("user define msg body")
        );
        assert_eq!(config.timers[1].message, None);
    }

    #[test]
    fn errors_name_the_key() {
        let message = parse("timeout_ms = 0").unwrap_err().to_string();
        assert!(message.contains("timeout_ms"), "{message}");
        let message = parse("memory_limit_mb = 100000").unwrap_err().to_string();
        assert!(message.contains("memory_limit_mb"), "{message}");
        let message = parse("kv_max_bytes = 1099511627777")
            .unwrap_err()
            .to_string();
        assert!(message.contains("kv_max_bytes"), "{message}");
        let message = parse("colour = 3").unwrap_err().to_string();
        assert!(message.contains("colour"), "{message}");
        let message = parse("idle_timeout_s = \"soon\"").unwrap_err().to_string();
        assert!(message.contains("idle_timeout_s"), "{message}");
        let message = parse("max_http_body_bytes = 100000000")
            .unwrap_err()
            .to_string();
        assert!(message.contains("max_http_body_bytes"), "{message}");
        let message = parse("routes = [\"rooms\"]").unwrap_err().to_string();
        assert!(message.contains("`routes[0]`"), "{message}");
        let message = parse("[[timers]]\nname = \"t\"\ncron = \"0 0 0 * * 8 *\"")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("`timers[0].cron`: week field"),
            "{message}"
        );
        let message = parse("[[timers]]\nname = \"t\"").unwrap_err().to_string();
        assert!(message.contains("cron"), "{message}");
        let message = parse("[[timers]]\nname = \"t\"\ncron = \"* * * * *\"\ncolour = 1")
            .unwrap_err()
            .to_string();
        assert!(message.contains("colour"), "{message}");
    }
}
