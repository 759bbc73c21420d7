//! Settings: the gateway-wide [`GatewayConfig`] with its [`FrontDoorConfig`]
//! (how the listeners admit and time out connections), and the per-service
//! [`ServiceConfig`] read from `plugins/<service>/service.toml`; and the
//! config file that holds the flags of `wasmgate serve` ([`file`]).

pub mod cron;
pub mod file;
mod service;
mod triggers;

use std::path::PathBuf;
use std::time::Duration;

pub use service::{ConfigError, ServiceConfig, MAX_INSTANCE_REUSE};
pub use triggers::{match_route, RouteTemplate, TimerConfig};

/// Default of [`GatewayConfig::outbound_budget_bytes`]: 512 MiB.
pub const DEFAULT_OUTBOUND_BUDGET_BYTES: usize = 512 << 20;

/// Gateway-wide settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The folder holding one sub-folder per service.
    pub plugins_dir: PathBuf,
    /// Handler calls running at once across all services; also the size of
    /// the instance pool, so a call never waits for a pool slot it cannot get.
    pub max_concurrency: u32,
    /// Largest linear memory any handler may reach, in MiB: the pool's slot
    /// size. A service's `memory_limit_mb` must not exceed it.
    pub max_memory_mb: u64,
    /// Bytes of linear memory and tables all handler instances may hold
    /// together (running and idle); a grow past it fails that call.
    pub memory_budget_bytes: usize,
    /// How long graceful shutdown waits for connections to close and their
    /// cleanup handlers to run.
    pub shutdown_grace: Duration,
    /// Folder of the compile cache; `None` compiles every handler on load.
    pub cache_dir: Option<PathBuf>,
    /// Size bound of the compile cache folder, in bytes (least recently
    /// used entries go first).
    pub cache_max_bytes: u64,
    /// Whether to watch the plugins folder and reload changed handlers.
    pub watch: bool,
    /// How long a service folder must be quiet after a change before it is
    /// reloaded, so files written in pieces are read once complete.
    pub reload_debounce: Duration,
    /// Where the key-value store keeps every service's rows.
    pub kv: KvConfig,
    /// How the listeners admit and time out connections.
    pub front_door: FrontDoorConfig,
    /// Largest handler file a service may hold, in bytes; a larger one is
    /// refused unread. The default fits the 18 MB Python example.
    pub max_plugin_file_bytes: u64,
    /// How handler files are compiled: where, how many at once, for how
    /// long.
    pub compiler: CompilerConfig,
    /// Bytes that may wait in outbound queues, every connection of every
    /// service together: the process's bound on what clients that do not
    /// read can hold, where each service's `outbound_queue_bytes` bounds
    /// one connection.
    pub outbound_budget_bytes: usize,
    /// A bearer token that lets any peer read `GET /metrics` on the control
    /// listener; without one only local tools may (loopback, no `Origin`).
    pub metrics_token: Option<String>,
    /// TLS on the public listener (`wss://`, `https://`); `None` serves
    /// plain `ws://` and `http://`. The control listener is always plain.
    pub tls: Option<TlsConfig>,
    /// `redis://HOST:PORT` of the Redis that joins this node to others
    /// (`--cluster`); `None` runs a single node.
    pub cluster: Option<String>,
}

/// The key-value store's backend, after Spin's runtime config (`[kv] type
/// = "redb" | "redis"`): one for the whole gateway, never per handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvConfig {
    /// redb, embedded: a file of this node, or memory (`file: None`, lost
    /// when the gateway stops).
    Redb {
        /// The store's file.
        file: Option<PathBuf>,
    },
    /// Redis, shared by every node that uses it; the default of a
    /// clustered node.
    Redis {
        /// `redis://` or `rediss://` URL.
        url: String,
    },
}

/// `[kv] type` (`--kv`): which backend keeps the key-value store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KvType {
    /// redb, a file of this node.
    Redb,
    /// Redis, shared by the nodes that use it.
    Redis,
}

/// The settings that choose the key-value store, as given: `[kv]` and
/// `[state]` of the config file, or their flags.
#[derive(Debug, Clone, Default)]
pub struct KvSettings {
    /// `kv.type`.
    pub kind: Option<KvType>,
    /// `kv.url`.
    pub url: Option<String>,
    /// `state.state_file`.
    pub state_file: Option<PathBuf>,
    /// `state.memory_state`.
    pub memory_state: bool,
}

impl KvConfig {
    /// The store `settings` choose for a node joined to `cluster`, if any:
    /// `kv.type`, by default Redis when clustered and redb otherwise; the
    /// Redis at `kv.url`, by default the cluster's; the redb file
    /// `state.state_file`, by default `default_file()`. A setting for the
    /// other backend is refused rather than ignored. Whether a clustered
    /// node may use the store is [`GatewayConfig::check`]'s question.
    pub fn choose(
        settings: KvSettings,
        cluster: Option<&str>,
        default_file: impl FnOnce() -> Option<PathBuf>,
    ) -> Result<Self, String> {
        let kind = settings.kind.unwrap_or(if cluster.is_some() {
            KvType::Redis
        } else {
            KvType::Redb
        });
        match kind {
            KvType::Redb => {
                if settings.url.is_some() {
                    return Err("`kv.url` (--kv-url) is the Redis of `kv.type = \"redis\"` \
                                (--kv redis), but the key-value store is redb"
                        .into());
                }
                let file = if settings.memory_state {
                    None
                } else {
                    Some(settings.state_file.or_else(default_file).ok_or(
                        "no HOME or XDG_DATA_HOME for the state file; set `state.state_file` \
                         (--state-file)",
                    )?)
                };
                Ok(Self::Redb { file })
            }
            KvType::Redis => {
                let redb_setting = if settings.memory_state {
                    Some("`state.memory_state` (--memory-state)")
                } else {
                    settings
                        .state_file
                        .as_ref()
                        .map(|_| "`state.state_file` (--state-file)")
                };
                if let Some(setting) = redb_setting {
                    let why = if cluster.is_some() && settings.kind.is_none() {
                        "a clustered node keeps its key-value store on Redis"
                    } else {
                        "the key-value store is on Redis (`kv.type = \"redis\"`, --kv redis)"
                    };
                    return Err(format!(
                        "{setting} sets up the redb store, but {why}: drop it"
                    ));
                }
                let url = settings.url.or(cluster.map(str::to_owned)).ok_or(
                    "`kv.type = \"redis\"` (--kv redis) needs a Redis: set `kv.url` \
                     (--kv-url), or join a cluster (--cluster)",
                )?;
                Ok(Self::Redis { url })
            }
        }
    }
}

impl GatewayConfig {
    /// Refuses settings that cannot work together: a clustered node with
    /// its key-value store in redb, whose file belongs to one node (each
    /// node would see only its own keys). The gateway checks this at start,
    /// and `wasmgate config check` does too.
    pub fn check(&self) -> Result<(), String> {
        if self.cluster.is_some() && matches!(self.kv, KvConfig::Redb { .. }) {
            return Err(
                "`kv.type = \"redb\"` (--kv redb) is refused on a clustered node \
                        (--cluster): a redb file belongs to one node, so each node would see \
                        only its own keys. Leave `kv.type` unset, or set it to \"redis\""
                    .into(),
            );
        }
        Ok(())
    }
}

/// Largest `service.toml`, in bytes.
pub const MAX_SETTINGS_FILE_BYTES: u64 = 64 << 10;

impl GatewayConfig {
    /// Settings with defaults for everything but the plugins folder.
    pub fn new(plugins_dir: impl Into<PathBuf>) -> Self {
        Self {
            plugins_dir: plugins_dir.into(),
            max_concurrency: 256,
            max_memory_mb: 512,
            memory_budget_bytes: default_memory_budget(),
            shutdown_grace: Duration::from_secs(10),
            cache_dir: None,
            cache_max_bytes: 1 << 30,
            watch: true,
            reload_debounce: Duration::from_millis(50),
            kv: KvConfig::Redb { file: None },
            front_door: FrontDoorConfig::default(),
            max_plugin_file_bytes: 32 << 20,
            compiler: CompilerConfig::default(),
            outbound_budget_bytes: DEFAULT_OUTBOUND_BUDGET_BYTES,
            metrics_token: None,
            tls: None,
            cluster: None,
        }
    }
}

/// How the two listeners admit connections and how long a connection may
/// take before it has to show it is real. Defaults are in the README's
/// "Front door" section, with the measurements they come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontDoorConfig {
    /// Sockets the public listener holds at once, WebSocket and plain HTTP
    /// alike. `None`: the process's open-file limit less [`Self::fd_reserve`]
    /// and the control listener's share.
    pub max_connections: Option<usize>,
    /// Sockets the public listener holds from one source address (for IPv6,
    /// one /64); 0 turns the cap off (behind a proxy every client has the
    /// proxy's address).
    pub max_connections_per_ip: usize,
    /// Sockets the control listener holds at once.
    pub max_control_connections: usize,
    /// File descriptors no client socket may take: what the control
    /// listener, plugin files, the compile cache and the state file need
    /// when the public caps are reached.
    pub fd_reserve: usize,
    /// How long a connection may take to send a request's head, counted
    /// from when the gateway waits for it: so also how long an idle
    /// keep-alive connection stays open.
    pub header_timeout: Duration,
    /// How long an upgrade may take from its request to the 101 answer,
    /// the register handler included.
    pub handshake_timeout: Duration,
    /// Largest request head (request line and headers), in bytes.
    pub max_request_head_bytes: usize,
    /// Bytes of WebSocket frames that may be declared (their header read)
    /// but not yet received, all connections together; a frame over 16 KiB
    /// waits for room before the codec reserves its buffer.
    pub frame_budget_bytes: u64,
}

impl Default for FrontDoorConfig {
    fn default() -> Self {
        Self {
            max_connections: None,
            max_connections_per_ip: 1000,
            max_control_connections: 256,
            fd_reserve: 512,
            header_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            max_request_head_bytes: 64 << 10,
            frame_budget_bytes: 64 << 20,
        }
    }
}

/// The public listener's certificate: two PEM files, reloaded when they
/// change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// How often the two files are looked at for a change.
    pub reload_interval: Duration,
}

impl TlsConfig {
    /// The pair at `cert` and `key`, looked at every 5 seconds: a renewed
    /// certificate is served within seconds, and a stat of two files costs
    /// nothing.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
            reload_interval: Duration::from_secs(5),
        }
    }
}

/// Where handler bytes are compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompileMode {
    /// On a blocking thread of the gateway's process.
    InProcess,
    /// In a child process running `<exe> compile`, with rlimits.
    Child {
        /// The `wasmgate` binary.
        exe: PathBuf,
    },
}

/// How handler files are compiled; see the README's "Compiling" under Security model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompilerConfig {
    /// In process or in a child process.
    pub mode: CompileMode,
    /// Compiles running at once, gateway-wide.
    pub jobs: usize,
    /// Threads one compile may use.
    pub threads: usize,
    /// How long one compile may take.
    pub timeout: Duration,
    /// Address space of a compiling child process, in bytes.
    pub memory_bytes: u64,
    /// How often a compile still running logs its progress (service, file,
    /// size, elapsed time); the first line comes after one period.
    pub progress_every: Duration,
}

impl Default for CompilerConfig {
    /// In process; two compiles at a time (one slow file does not hold up
    /// every other service's), each on half the cores (at least one); 120 s;
    /// 4 GiB; progress every 5 s.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            mode: CompileMode::InProcess,
            jobs: 2,
            threads: cores.div_ceil(2),
            timeout: Duration::from_secs(120),
            memory_bytes: 4 << 30,
            progress_every: Duration::from_secs(5),
        }
    }
}

/// Half of the machine's memory (`MemTotal`), or 8 GiB where it cannot be
/// read: the default of [`GatewayConfig::memory_budget_bytes`].
pub fn default_memory_budget() -> usize {
    let total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|value| value.split_whitespace().next())
                .and_then(|kib| kib.parse::<usize>().ok())
        });
    total_kib.map_or(8 << 30, |kib| kib.saturating_mul(1024) / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choose(settings: KvSettings, cluster: Option<&str>) -> Result<KvConfig, String> {
        KvConfig::choose(settings, cluster, || Some("default.redb".into()))
    }

    const CLUSTER: Option<&str> = Some("redis://cluster:6379");

    #[test]
    fn a_single_node_defaults_to_redb_and_a_clustered_one_to_the_clusters_redis() {
        assert_eq!(
            choose(KvSettings::default(), None),
            Ok(KvConfig::Redb {
                file: Some("default.redb".into())
            })
        );
        let memory = KvSettings {
            memory_state: true,
            ..KvSettings::default()
        };
        assert_eq!(choose(memory, None), Ok(KvConfig::Redb { file: None }));
        assert_eq!(
            choose(KvSettings::default(), CLUSTER),
            Ok(KvConfig::Redis {
                url: "redis://cluster:6379".into()
            })
        );
        let elsewhere = KvSettings {
            url: Some("redis://kv:6379".into()),
            ..KvSettings::default()
        };
        assert_eq!(
            choose(elsewhere, CLUSTER),
            Ok(KvConfig::Redis {
                url: "redis://kv:6379".into()
            })
        );
        // A single node may use Redis too, given one.
        let single = KvSettings {
            kind: Some(KvType::Redis),
            url: Some("redis://kv:6379".into()),
            ..KvSettings::default()
        };
        assert!(matches!(choose(single, None), Ok(KvConfig::Redis { .. })));
    }

    #[test]
    fn settings_of_the_other_backend_are_refused_not_ignored() {
        let redis_without_url = KvSettings {
            kind: Some(KvType::Redis),
            ..KvSettings::default()
        };
        assert!(choose(redis_without_url, None)
            .unwrap_err()
            .contains("needs a Redis"));
        let url_for_redb = KvSettings {
            kind: Some(KvType::Redb),
            url: Some("redis://kv:6379".into()),
            ..KvSettings::default()
        };
        assert!(choose(url_for_redb, None).unwrap_err().contains("`kv.url`"));
        let file_on_a_cluster = KvSettings {
            state_file: Some("state.redb".into()),
            ..KvSettings::default()
        };
        assert_eq!(
            choose(file_on_a_cluster, CLUSTER).unwrap_err(),
            "`state.state_file` (--state-file) sets up the redb store, but a clustered node \
             keeps its key-value store on Redis: drop it"
        );
        let memory_with_redis = KvSettings {
            kind: Some(KvType::Redis),
            url: Some("redis://kv:6379".into()),
            memory_state: true,
            ..KvSettings::default()
        };
        assert!(choose(memory_with_redis, None)
            .unwrap_err()
            .contains("`state.memory_state` (--memory-state) sets up the redb store"));
    }

    #[test]
    fn a_clustered_node_refuses_redb() {
        let mut config = GatewayConfig::new("plugins");
        assert_eq!(config.check(), Ok(()));
        config.cluster = Some("redis://cluster:6379".into());
        assert!(config
            .check()
            .unwrap_err()
            .contains("refused on a clustered node"));
        config.kv = KvConfig::Redis {
            url: "redis://cluster:6379".into(),
        };
        assert_eq!(config.check(), Ok(()));
    }
}
