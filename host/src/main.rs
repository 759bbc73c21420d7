//! The `wasmgate` command: `serve` runs the gateway, `invoke` runs one handler once.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use wasmgate::{GatewayConfig, OutputSource};

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve WebSocket clients with the handlers found in the plugins folder.
    Serve {
        /// Address to listen on (WebSocket upgrades, reverse push, health).
        #[arg(long, env = "WASMGATE_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
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
        /// Folder for compiled handlers, so restarts do not recompile
        /// [default: $XDG_CACHE_HOME/wasmgate or ~/.cache/wasmgate].
        #[arg(long, env = "WASMGATE_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
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
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,wasmtime=warn,cranelift=warn".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
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
            plugins,
            max_concurrency,
            max_memory_mb,
            cache_dir,
            no_cache,
            no_watch,
            state_file,
            memory_state,
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
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            let config = GatewayConfig {
                max_concurrency,
                max_memory_mb,
                cache_dir,
                watch: !no_watch,
                state_file,
                ..GatewayConfig::new(plugins)
            };
            wasmgate::run(listener, config, shutdown_signal()).await?;
            Ok(std::process::ExitCode::SUCCESS)
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
