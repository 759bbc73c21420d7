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
    /// File of the durable key-value store; `None` keeps the store in
    /// memory (lost when the gateway stops).
    pub state_file: Option<PathBuf>,
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
            state_file: None,
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
