//! The `wasmgate` command: `serve` runs the gateway (its flags also read
//! from `--config FILE`), `config check` validates such a file, `client`
//! talks to a WebSocket from the terminal, `invoke` runs one handler once.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::parser::ValueSource;
use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use wasmgate::config::file::{ConfigFile, FileError, KeyError};
use wasmgate::config::{KvSettings, KvType};
use wasmgate::logging::LogFormat;
use wasmgate::{
    CompileMode, CompilerConfig, FrontDoorConfig, GatewayConfig, KvConfig, Listeners, TlsConfig,
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
    Serve(ServeArgs),
    /// Work with a config file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Talk to a WebSocket: each line typed is sent as a text message, each
    /// message received is printed on its own line.
    Client {
        /// ws:// or wss:// URL, e.g. ws://127.0.0.1:8080/ws/echo.
        url: String,
        /// PEM file of the CA to trust for wss:// [default: the system's
        /// CA bundle].
        #[arg(long)]
        ca_cert: Option<PathBuf>,
    },
    /// Write a new service folder that builds outside this repository: the
    /// handler, its manifest, the guest SDK and a README.
    New {
        /// The folder to create; its name is the service's.
        name: PathBuf,
        /// The handler's language: rust or go (c, zig, assemblyscript,
        /// python and js point at their guide).
        #[arg(long, default_value = "rust")]
        lang: String,
    },
    /// Build a service folder (cargo for Rust, else its build.sh) and put
    /// handler.wasm in it.
    Build {
        /// The service folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Check a handler file without running it: whether it fits the handler
    /// world, its imports and exports, the roles it serves, its size and
    /// compile time; for one that does not fit, what is missing and the fix.
    /// Exits 1 when it does not fit.
    Check {
        /// The handler file (.wasm: a component or a core module).
        file: PathBuf,
    },
    /// Wrap a core module into a component of the handler world (with the
    /// WASI preview-1 adapter when it imports preview 1), as the gateway
    /// does when it loads one.
    Componentize {
        /// The core module.
        input: PathBuf,
        /// Where to write the component.
        output: PathBuf,
    },
    /// Run one handler once on an event file and print its answer and log lines.
    Invoke {
        /// The handler component (.wasm).
        file: PathBuf,
        /// The event JSON file. Its kind picks the role: a websocket.action
        /// (register, transfer, cleanup), an integration request with
        /// httpMethod (http), or {"Type": "Timer", ...} (timer).
        #[arg(long, required_unless_present = "script", conflicts_with = "script")]
        event: Option<PathBuf>,
        /// A session: a JSON file holding an array of steps,
        /// {"connect": NAME, "query": {...}}, {"send": NAME, "text": ...},
        /// {"close": NAME}, run against a real router (groups, pushes and
        /// broadcasts as in the gateway); prints what each client receives.
        #[arg(long)]
        script: Option<PathBuf>,
        /// The key-value store file to use (created if needed) [default: a
        /// fresh store in memory].
        #[arg(long)]
        state: Option<PathBuf>,
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

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config file: exit 0 when `serve --config FILE` would
    /// accept it, 1 with each error's key and line when not.
    Check {
        /// The config file.
        file: PathBuf,
    },
}

/// The flags of `wasmgate serve`; each also an environment variable and a
/// key of the config file (its name in snake case, in the section the
/// README's config reference gives).
#[derive(Args)]
struct ServeArgs {
    /// A config file (TOML) holding any of these flags; flags and
    /// environment variables override it. See `wasmgate config check`.
    #[arg(long, env = "WASMGATE_CONFIG")]
    config: Option<PathBuf>,
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
    /// File of the redb key-value store of every service (--kv redb)
    /// [default: $XDG_DATA_HOME/wasmgate/state.redb or
    /// ~/.local/share/wasmgate/state.redb].
    #[arg(long, env = "WASMGATE_STATE_FILE")]
    state_file: Option<PathBuf>,
    /// Keep the redb key-value store in memory only: nothing survives a
    /// restart.
    #[arg(long, env = "WASMGATE_MEMORY_STATE", conflicts_with = "state_file")]
    memory_state: bool,
    /// The key-value store's backend: `redb` (a file of this node, see
    /// --state-file) or `redis` (shared by every node that uses it)
    /// [default: redis with --cluster, else redb].
    #[arg(id = "type", long = "kv", env = "WASMGATE_KV", value_enum)]
    kv: Option<KvType>,
    /// Redis of the key-value store with --kv redis (redis://HOST:PORT)
    /// [default: the --cluster URL].
    #[arg(id = "url", long = "kv-url", env = "WASMGATE_KV_URL", value_parser = redis_url)]
    kv_url: Option<String>,
    /// Certificate chain (PEM) of the public listener: serves wss:// and
    /// https://, reloaded when the file changes. Needs --tls-key.
    #[arg(long, env = "WASMGATE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "WASMGATE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Bearer token with which any peer may read GET /metrics on the
    /// control listener (without it, only local tools may).
    #[arg(long, env = "WASMGATE_METRICS_TOKEN")]
    metrics_token: Option<String>,
    /// Join the other gateway nodes on this Redis (redis://HOST:PORT):
    /// push, close and info reach connections of any node, and a surviving
    /// node runs the cleanups of a node that died. See the README's
    /// "Running several nodes".
    #[arg(long = "cluster", env = "WASMGATE_CLUSTER", value_parser = redis_url)]
    redis: Option<String>,
}

/// A `redis://` or `rediss://` URL with a host.
fn redis_url(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(url.to_owned()),
        _ => Err(format!(
            "must be a redis:// or rediss:// URL with a host, not {url:?}"
        )),
    }
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
    /// Milliseconds between the log lines of a compile still running
    /// (service, file, size, elapsed time).
    #[arg(long, env = "WASMGATE_COMPILE_PROGRESS_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(100..))]
    compile_progress_ms: u64,
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
            progress_every: std::time::Duration::from_millis(self.compile_progress_ms),
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
    let result = match parse_command_line() {
        Ok(cli) => {
            let _log = wasmgate::logging::init(cli.log_format);
            run(cli).await
        }
        Err(error) => Err(error),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The command line, with the settings of `serve --config FILE` beneath
/// it: a key of the file counts only where neither its flag nor its
/// environment variable is set.
fn parse_command_line() -> anyhow::Result<Cli> {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let matches = Cli::command().get_matches_from(&args);
    let file = match matches.subcommand() {
        Some(("serve", serve)) => match serve.get_one::<PathBuf>("config") {
            Some(path) => Some((ConfigFile::read(path)?, serve)),
            None => None,
        },
        _ => None,
    };
    let Some((file, serve)) = file else {
        return Ok(Cli::from_arg_matches(&matches)?);
    };
    check_flag_values(&file).map_err(FileError::Keys)?;
    let given = |id: &str| {
        matches!(
            serve.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    // The two ways of choosing the state store exclude each other: one given
    // on the command line overrides the other in the file.
    let overridden = |id: &str| match id {
        "state_file" => given("memory_state"),
        "memory_state" => given("state_file"),
        _ => false,
    };
    let mut from_file = Vec::new();
    for setting in &file.settings {
        if given(setting.key.name) || overridden(setting.key.name) {
            continue;
        }
        from_file.push(OsString::from(setting.argument()));
    }
    // The file's flags go right after the subcommand's name (a global
    // flag such as --log-format may come before it); flags typed after
    // them still win, and the file's are only those not typed at all.
    let at = args
        .iter()
        .skip(1)
        .position(|arg| arg == "serve")
        .map_or(args.len(), |index| index + 2);
    args.splice(at..at, from_file);
    Ok(Cli::from_arg_matches(
        &Cli::command().try_get_matches_from(&args)?,
    )?)
}

/// Checks each value a config file gives a flag with that flag's own
/// parser, so the file and the command line agree on what is valid.
fn check_flag_values(file: &ConfigFile) -> Result<(), Vec<KeyError>> {
    let command = serve_without_environment();
    let mut errors = Vec::new();
    for setting in file
        .settings
        .iter()
        .filter(|setting| setting.value.is_some())
    {
        let argv = [
            "wasmgate".to_owned(),
            "serve".to_owned(),
            setting.argument(),
        ];
        let Err(error) = command.clone().try_get_matches_from(argv) else {
            continue;
        };
        // Only the value is checked here; what the flag needs beside it
        // (--tls-key with --tls-cert) is checked with all flags together.
        if !matches!(
            error.kind(),
            clap::error::ErrorKind::InvalidValue | clap::error::ErrorKind::ValueValidation
        ) {
            continue;
        }
        errors.push(KeyError {
            path: file.path.clone(),
            line: setting.line,
            key: setting.qualified_name(),
            message: clap_message(&error),
        });
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The first line of a command-line error, without clap's `error: `.
fn clap_message(error: &clap::Error) -> String {
    let message = error.to_string();
    let first = message.lines().next().unwrap_or_default();
    first.trim_start_matches("error: ").to_owned()
}

/// The command line parser with environment variables left out, so that
/// only a file's own values are checked.
fn serve_without_environment() -> clap::Command {
    Cli::command().mut_subcommand("serve", |serve| serve.mut_args(|arg| arg.env(None)))
}

/// Checks that a file's settings work together as `serve` would take them
/// from it alone: flags that exclude or need each other, the key-value
/// store they choose, and whether a clustered node may use it.
fn check_settings_together(file: &ConfigFile) -> anyhow::Result<()> {
    let argv = ["wasmgate".to_owned(), "serve".to_owned()]
        .into_iter()
        .chain(file.settings.iter().map(|setting| setting.argument()));
    let matches = serve_without_environment()
        .try_get_matches_from(argv)
        .map_err(|error| anyhow::anyhow!(clap_message(&error)))?;
    let serve = matches
        .subcommand_matches("serve")
        .context("serve's arguments")?;
    let config = gateway_config(ServeArgs::from_arg_matches(serve)?)?;
    config.check().map_err(anyhow::Error::msg)
}

/// `wasmgate config check FILE`: 0 and a summary when the file is valid, 1
/// and every error (each naming its key and line) when not.
fn config_check(path: &std::path::Path) -> std::process::ExitCode {
    let file = match ConfigFile::read(path).and_then(|file| {
        check_flag_values(&file).map_err(FileError::Keys)?;
        Ok(file)
    }) {
        Ok(file) => file,
        Err(error) => {
            eprintln!("{error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Err(error) = check_settings_together(&file) {
        eprintln!("{}: {error:#}", path.display());
        return std::process::ExitCode::FAILURE;
    }
    println!("{}: ok, {} keys", path.display(), file.settings.len());
    std::process::ExitCode::SUCCESS
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            serve(args).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Check { file }) => Ok(config_check(&file)),
        Command::Client { url, ca_cert } => {
            wasmgate::client::run(&url, ca_cert.as_deref()).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Compile { max_mb } => {
            let status = wasmgate::wasm::compiler::compile_stdin_to_stdout(max_mb << 20);
            Ok(std::process::ExitCode::from(status as u8))
        }
        Command::New { name, lang } => {
            wasmgate::scaffold::new_service(&name, &lang)?;
            println!(
                "wrote {}: build it with `wasmgate build {}`",
                name.display(),
                name.display()
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Build { dir } => {
            let handler = wasmgate::scaffold::build_service(&dir)?;
            check_and_report(&handler)
        }
        Command::Check { file } => check_and_report(&file),
        Command::Componentize { input, output } => {
            let (size, adapter) = wasmgate::check::componentize(&input, &output)?;
            println!(
                "{}: component of {size} bytes{}",
                output.display(),
                if adapter {
                    ", with the WASI preview-1 adapter"
                } else {
                    ""
                }
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Invoke {
            file,
            event: None,
            script: Some(script),
            state,
            service,
        } => {
            let script = std::fs::read_to_string(&script)
                .with_context(|| format!("reading {}", script.display()))?;
            let transcript =
                wasmgate::invoke_script(&file, &script, &service, state.as_deref()).await?;
            for line in transcript {
                println!("{line}");
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Invoke {
            file,
            event,
            script: _,
            state,
            service,
        } => {
            let event = event.context("--event or --script")?;
            let event = std::fs::read_to_string(&event)
                .with_context(|| format!("reading {}", event.display()))?;
            let outcome = wasmgate::invoke(&file, &event, &service, state.as_deref()).await?;
            for line in &outcome.output {
                eprintln!("{}", wasmgate::output_line(line));
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

/// `wasmgate check` of `file`, printed; exit 1 when it does not fit.
fn check_and_report(file: &std::path::Path) -> anyhow::Result<std::process::ExitCode> {
    let report = wasmgate::check::check(file)?;
    println!("{}\n{report}", file.display());
    Ok(if report.fits() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// `wasmgate serve`: binds both listeners and serves until Ctrl-C or SIGTERM.
async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let (listen, control_listen) = (args.listen, args.control_listen);
    let config = gateway_config(args)?;
    let listeners = Listeners::bind(listen, control_listen)
        .await
        .with_context(|| format!("binding {listen} and {control_listen}"))?;
    wasmgate::run(listeners, config, shutdown_signal()).await
}

/// The gateway's settings from the flags of `serve`.
fn gateway_config(args: ServeArgs) -> anyhow::Result<GatewayConfig> {
    let ServeArgs {
        config: _,
        listen: _,
        control_listen: _,
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
        kv,
        kv_url,
        tls_cert,
        tls_key,
        metrics_token,
        redis,
    } = args;
    let kv = KvConfig::choose(
        KvSettings {
            kind: kv,
            url: kv_url,
            state_file,
            memory_state,
        },
        redis.as_deref(),
        default_state_file,
    )
    .map_err(anyhow::Error::msg)?;
    let cache_dir = if no_cache {
        None
    } else {
        cache_dir.or_else(default_cache_dir)
    };
    Ok(GatewayConfig {
        max_concurrency,
        max_memory_mb,
        memory_budget_bytes: memory_budget_mb
            .map_or_else(wasmgate::config::default_memory_budget, |mb| {
                usize::try_from(mb << 20).unwrap_or(usize::MAX)
            }),
        cache_dir,
        cache_max_bytes: cache_max_mb << 20,
        watch: !no_watch,
        kv,
        front_door: front_door.into(),
        max_plugin_file_bytes: max_plugin_file_mb << 20,
        compiler: compile.config()?,
        outbound_budget_bytes: usize::try_from(outbound_budget_mb << 20).unwrap_or(usize::MAX),
        tls: tls_cert
            .zip(tls_key)
            .map(|(cert, key)| TlsConfig::new(cert, key)),
        metrics_token,
        cluster: redis,
        ..GatewayConfig::new(plugins)
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use wasmgate::config::file::KEYS;

    #[test]
    fn every_flag_of_serve_is_a_key_of_the_config_file_and_back() {
        let command = Cli::command();
        let serve = command.find_subcommand("serve").unwrap();
        // Global flags (--log-format) count: serve takes them too.
        let flags: Vec<&str> = serve
            .get_arguments()
            .chain(command.get_arguments().filter(|arg| arg.is_global_set()))
            .map(|arg| arg.get_id().as_str())
            .filter(|id| !matches!(*id, "config" | "help" | "version"))
            .collect();
        let keys: Vec<&str> = KEYS.iter().map(|key| key.name).collect();
        for flag in &flags {
            assert!(keys.contains(flag), "--{flag} has no config file key");
        }
        for key in &keys {
            assert!(flags.contains(key), "the config key {key} is no flag");
        }
        // A key whose flag has another name names it rightly.
        for key in KEYS {
            let arg = serve
                .get_arguments()
                .chain(command.get_arguments())
                .find(|arg| arg.get_id().as_str() == key.name)
                .unwrap();
            assert_eq!(
                arg.get_long(),
                Some(key.long.unwrap_or(key.name).replace('_', "-").as_str()),
                "the flag of {}.{}",
                key.section,
                key.name
            );
        }
    }
}
