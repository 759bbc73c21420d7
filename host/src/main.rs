//! The `wasmgate` command: `serve` runs the gateway, `invoke` runs one handler once.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use wasmgate::logging::LogFormat;
use wasmgate::{
    CompileMode, CompilerConfig, FrontDoorConfig, GatewayConfig, Listeners, OutputSource,
};

/// mimalloc: the per-event path allocates and frees many small buffers
/// (event JSON, WASI context, store), which glibc's allocator serves
/// noticeably slower.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    version,
    about = "A WebSocket gateway whose handlers are sandboxed WebAssembly components"
)]
struct Cli {
    /// Log format on stderr: `text`, or `json` (one object per line).
    #[arg(
        long,
        global = true,
        env = "WASMGATE_LOG_FORMAT",
        value_enum,
        default_value_t
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start; the size of `Serve` costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Serve WebSocket clients with the handlers found in the plugins folder.
    Serve {
        /// Public address: WebSocket upgrades, the demo page, health.
        #[arg(long, env = "WASMGATE_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Control address: reverse push, connection info, admin. Keep it on
        /// loopback or a private network.
        #[arg(
            long,
            env = "WASMGATE_CONTROL_LISTEN",
            default_value = "127.0.0.1:8081"
        )]
        control_listen: SocketAddr,
        #[command(flatten)]
        front_door: FrontDoorArgs,
        /// Folder with one sub-folder per service, each holding handler.wasm
        /// (or register/transfer/cleanup.wasm) and an optional service.toml.
        #[arg(long, env = "WASMGATE_PLUGINS", default_value = "./plugins")]
        plugins: PathBuf,
        /// Handler calls running at once across all services (also the
        /// instance pool size).
        #[arg(long, env = "WASMGATE_MAX_CONCURRENCY", default_value_t = 256)]
        max_concurrency: u32,
        /// Largest memory, in MiB, any handler may grow to (the pool slot size).
        #[arg(long, env = "WASMGATE_MAX_MEMORY_MB", default_value_t = 512)]
        max_memory_mb: u64,
        /// MiB of linear memory and tables all handler instances may hold
        /// together [default: half the machine's memory].
        #[arg(long, env = "WASMGATE_MEMORY_BUDGET_MB",
              value_parser = clap::value_parser!(u64).range(1..))]
        memory_budget_mb: Option<u64>,
        /// Folder for compiled handlers, so restarts do not recompile
        /// [default: $XDG_CACHE_HOME/wasmgate or ~/.cache/wasmgate].
        #[arg(long, env = "WASMGATE_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
        /// Size bound of the compile cache folder, in MiB (least recently
        /// used entries are deleted first).
        #[arg(long, env = "WASMGATE_CACHE_MAX_MB", default_value_t = 1024,
              value_parser = clap::value_parser!(u64).range(1..))]
        cache_max_mb: u64,
        /// Largest handler file a service may hold, in MiB; larger ones are
        /// refused unread.
        #[arg(long, env = "WASMGATE_MAX_PLUGIN_FILE_MB", default_value_t = 32,
              value_parser = clap::value_parser!(u64).range(1..=4096))]
        max_plugin_file_mb: u64,
        #[command(flatten)]
        compile: CompileArgs,
        /// MiB of messages that may wait for clients, every connection's
        /// outbound queue together (each service's outbound_queue_bytes
        /// bounds one connection).
        #[arg(long, env = "WASMGATE_OUTBOUND_BUDGET_MB", default_value_t = 512,
              value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
        outbound_budget_mb: u64,
        /// Compile every handler on load; keep nothing on disk.
        #[arg(long, env = "WASMGATE_NO_CACHE")]
        no_cache: bool,
        /// Do not watch the plugins folder (no hot reload).
        #[arg(long, env = "WASMGATE_NO_WATCH")]
        no_watch: bool,
        /// File of the durable key-value store of every service
        /// [default: $XDG_DATA_HOME/wasmgate/state.redb or
        /// ~/.local/share/wasmgate/state.redb].
        #[arg(long, env = "WASMGATE_STATE_FILE")]
        state_file: Option<PathBuf>,
        /// Keep the key-value store in memory only: nothing survives a restart.
        #[arg(long, env = "WASMGATE_MEMORY_STATE", conflicts_with = "state_file")]
        memory_state: bool,
        /// Bearer token with which any peer may read GET /metrics on the
        /// control listener (without it, only local tools may).
        #[arg(long, env = "WASMGATE_METRICS_TOKEN")]
        metrics_token: Option<String>,
    },
    /// Run one handler once on an event file and print its answer and log lines.
    Invoke {
        /// The handler component (.wasm).
        file: PathBuf,
        /// The event JSON file (its websocket.action picks the role).
        #[arg(long)]
        event: PathBuf,
        /// The service name the handler sees in its context.
        #[arg(long, default_value = "local")]
        service: String,
    },
    /// Compile handler bytes read from stdin and write the compiled
    /// component to stdout (what `serve` runs, as a child process with
    /// limits, for every handler file it loads).
    #[command(hide = true)]
    Compile {
        /// Largest input, in MiB.
        #[arg(long, default_value_t = 4096)]
        max_mb: u64,
    },
}

/// How handler files are compiled; see the README's security model.
#[derive(Args)]
struct CompileArgs {
    /// Compiles running at once.
    #[arg(long, env = "WASMGATE_COMPILE_JOBS", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..=64))]
    compile_jobs: u64,
    /// Threads one compile may use [default: half the cores, at least 1].
    #[arg(long, env = "WASMGATE_COMPILE_THREADS",
          value_parser = clap::value_parser!(u64).range(1..=256))]
    compile_threads: Option<u64>,
    /// Seconds one compile may take.
    #[arg(long, env = "WASMGATE_COMPILE_TIMEOUT_S", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..))]
    compile_timeout_s: u64,
    /// Address space of a compiling child process, in MiB.
    #[arg(long, env = "WASMGATE_COMPILE_MEMORY_MB", default_value_t = 4096,
          value_parser = clap::value_parser!(u64).range(256..))]
    compile_memory_mb: u64,
    /// Compile in the gateway's own process instead of a child process
    /// (no memory limit, and a compile past its deadline runs on).
    #[arg(long, env = "WASMGATE_COMPILE_IN_PROCESS")]
    compile_in_process: bool,
}

impl CompileArgs {
    fn config(self) -> anyhow::Result<CompilerConfig> {
        let defaults = CompilerConfig::default();
        let mode = if self.compile_in_process {
            CompileMode::InProcess
        } else {
            CompileMode::Child {
                exe: std::env::current_exe().context("finding the wasmgate binary")?,
            }
        };
        Ok(CompilerConfig {
            mode,
            jobs: self.compile_jobs as usize,
            threads: self
                .compile_threads
                .map_or(defaults.threads, |n| n as usize),
            timeout: std::time::Duration::from_secs(self.compile_timeout_s),
            memory_bytes: self.compile_memory_mb << 20,
        })
    }
}

/// How the listeners admit connections; see the README's "Front door".
#[derive(Args)]
struct FrontDoorArgs {
    /// Sockets the public listener holds at once [default: the open-file
    /// limit less the reserve and the control listener's share].
    #[arg(long, env = "WASMGATE_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Sockets from one source address (IPv6: one /64); 0 for no cap
    /// (behind a proxy, every client has the proxy's address).
    #[arg(long, env = "WASMGATE_MAX_CONNECTIONS_PER_IP", default_value_t = 1000)]
    max_connections_per_ip: usize,
    /// Sockets the control listener holds at once.
    #[arg(long, env = "WASMGATE_MAX_CONTROL_CONNECTIONS", default_value_t = 256)]
    max_control_connections: usize,
    /// File descriptors kept from client sockets, for plugin files, the
    /// state file and the compile cache.
    #[arg(long, env = "WASMGATE_FD_RESERVE", default_value_t = 512)]
    fd_reserve: usize,
    /// Milliseconds a connection has to send a request head (also how long
    /// an idle keep-alive connection stays open).
    #[arg(long, env = "WASMGATE_HEADER_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..))]
    header_timeout_ms: u64,
    /// Milliseconds from an upgrade request to its 101, register included.
    #[arg(long, env = "WASMGATE_HANDSHAKE_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..))]
    handshake_timeout_ms: u64,
    /// Largest request head (request line and headers) in bytes, at least
    /// 8192.
    #[arg(long, env = "WASMGATE_MAX_REQUEST_HEAD_BYTES", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u64).range(8192..))]
    max_request_head_bytes: u64,
    /// MiB of WebSocket frames declared but not yet received, across all
    /// connections (frames over 16 KiB wait for room).
    #[arg(long, env = "WASMGATE_FRAME_BUDGET_MB", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..))]
    frame_budget_mb: u64,
}

impl From<FrontDoorArgs> for FrontDoorConfig {
    fn from(args: FrontDoorArgs) -> Self {
        Self {
            max_connections: args.max_connections,
            max_connections_per_ip: args.max_connections_per_ip,
            max_control_connections: args.max_control_connections,
            fd_reserve: args.fd_reserve,
            header_timeout: std::time::Duration::from_millis(args.header_timeout_ms),
            handshake_timeout: std::time::Duration::from_millis(args.handshake_timeout_ms),
            max_request_head_bytes: usize::try_from(args.max_request_head_bytes)
                .unwrap_or(usize::MAX),
            frame_budget_bytes: args.frame_budget_mb << 20,
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    wasmgate::logging::init(cli.log_format);
    match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Serve {
            listen,
            control_listen,
            front_door,
            max_plugin_file_mb,
            compile,
            outbound_budget_mb,
            plugins,
            max_concurrency,
            max_memory_mb,
            memory_budget_mb,
            cache_dir,
            cache_max_mb,
            no_cache,
            no_watch,
            state_file,
            memory_state,
            metrics_token,
        } => {
            let state_file =
                if memory_state {
                    None
                } else {
                    Some(state_file.or_else(default_state_file).context(
                        "no HOME or XDG_DATA_HOME for the state file; pass --state-file",
                    )?)
                };
            let cache_dir = if no_cache {
                None
            } else {
                cache_dir.or_else(default_cache_dir)
            };
            let listeners = Listeners::bind(listen, control_listen)
                .await
                .with_context(|| format!("binding {listen} and {control_listen}"))?;
            let config = GatewayConfig {
                max_concurrency,
                max_memory_mb,
                memory_budget_bytes: memory_budget_mb
                    .map_or_else(wasmgate::config::default_memory_budget, |mb| {
                        usize::try_from(mb << 20).unwrap_or(usize::MAX)
                    }),
                cache_dir,
                cache_max_bytes: cache_max_mb << 20,
                watch: !no_watch,
                state_file,
                front_door: front_door.into(),
                max_plugin_file_bytes: max_plugin_file_mb << 20,
                compiler: compile.config()?,
                outbound_budget_bytes: usize::try_from(outbound_budget_mb << 20)
                    .unwrap_or(usize::MAX),
                metrics_token,
                ..GatewayConfig::new(plugins)
            };
            wasmgate::run(listeners, config, shutdown_signal()).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Compile { max_mb } => {
            let status = wasmgate::wasm::compiler::compile_stdin_to_stdout(max_mb << 20);
            Ok(std::process::ExitCode::from(status as u8))
        }
        Command::Invoke {
            file,
            event,
            service,
        } => {
            let event = std::fs::read_to_string(&event)
                .with_context(|| format!("reading {}", event.display()))?;
            let outcome = wasmgate::invoke(&file, &event, &service).await?;
            for line in &outcome.output {
                let source = match line.source {
                    OutputSource::Stdout => "stdout".to_owned(),
                    OutputSource::Stderr => "stderr".to_owned(),
                    OutputSource::Log(level) => format!("log {level:?}").to_lowercase(),
                };
                eprintln!("[{source}] {}", line.text);
            }
            match outcome.result {
                Ok(answer) => {
                    println!("{answer}");
                    Ok(std::process::ExitCode::SUCCESS)
                }
                Err(error) => {
                    eprintln!("handler failed: {error}");
                    Ok(std::process::ExitCode::from(2))
                }
            }
        }
    }
}

/// `$XDG_CACHE_HOME/wasmgate`, else `~/.cache/wasmgate`.
fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .map(|base| base.join("wasmgate"))
}

/// `$XDG_DATA_HOME/wasmgate/state.redb`, else `~/.local/share/wasmgate/state.redb`.
fn default_state_file() -> Option<PathBuf> {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local").join("share"))
        })
        .map(|base| base.join("wasmgate").join("state.redb"))
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
