//! Compiling untrusted handler bytes, within bounds.
//!
//! A handler file is whatever a team dropped into its folder, so compiling
//! it is bounded like running it:
//!
//! - **a queue**: at most [`CompilerConfig::jobs`] compiles run at once,
//!   each on a bounded number of threads (and, in a child process, at a
//!   lower priority), so a burst of uploads cannot take every core from the
//!   event path;
//! - **a deadline**: a compile that has not finished after
//!   [`CompilerConfig::timeout`] fails the load of that file;
//! - **a separate process** ([`CompileMode::Child`], the default of the
//!   `wasmgate serve` command): the bytes are wrapped (a core module) and
//!   compiled by `wasmgate compile` in a child with address-space, CPU-time
//!   and file limits, killed at the deadline. Whatever the input does to the
//!   compiler — a crash, an allocation storm, a pathological function — ends
//!   that child, not the gateway. Its output, a serialized component of the
//!   gateway's own binary, is deserialized by the gateway and linked there.
//!
//! [`CompileMode::InProcess`] (used by the in-process test gateway and
//! `wasmgate invoke`) compiles on a blocking thread: the queue and the
//! deadline hold (a compile past its deadline fails the load at once, and
//! keeps its queue permit until its thread returns, so runaway compiles
//! cannot pile up), and a panic is caught and fails the load, but the
//! compiler's memory is the gateway's.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use tokio::io::AsyncReadExt as _;
use tokio::sync::Semaphore;
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

use super::capture::guest_text;
use super::{core_module, LoadError};
use crate::config::{CompileMode, CompilerConfig};

/// The code-generation settings every engine of the gateway shares: the
/// serving engine and a compiling child must agree on them, or the child's
/// output would not load.
pub(crate) fn codegen_config() -> Config {
    let mut config = Config::new();
    // No guest needs the GC proposal; without it a store's memory is its
    // linear memories and tables, which the limiter counts.
    config.epoch_interruption(true).wasm_gc(false);
    config
}

/// Wraps a core module into a component, then compiles. Blocking.
pub(crate) fn compile_bytes(engine: &Engine, bytes: &[u8]) -> Result<Component, LoadError> {
    if core_module::is_core_module(bytes) {
        let wrapped = core_module::wrap(bytes).map_err(LoadError::CoreModule)?;
        return Component::new(engine, wrapped).map_err(LoadError::Compile);
    }
    Component::new(engine, bytes).map_err(LoadError::Compile)
}

/// Compiles handler files under the gateway's bounds. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Compiler {
    config: Arc<CompilerConfig>,
    queue: Arc<Semaphore>,
}

impl Compiler {
    /// A compiler with its own queue.
    pub(crate) fn new(config: CompilerConfig) -> Self {
        let jobs = config.jobs.max(1);
        Self {
            config: Arc::new(config),
            queue: Arc::new(Semaphore::new(jobs)),
        }
    }

    /// How often a compile still running should say so.
    pub(crate) fn progress_every(&self) -> std::time::Duration {
        self.config.progress_every
    }

    /// Compiles `bytes` for `engine`, waiting for a place in the queue.
    pub(crate) async fn compile(
        &self,
        engine: &Engine,
        bytes: Arc<[u8]>,
    ) -> Result<Component, LoadError> {
        let permit = self
            .queue
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| LoadError::Compiler("the compile queue is closed".into()))?;
        let timeout = self.config.timeout;
        match &self.config.mode {
            CompileMode::InProcess => {
                let engine = engine.clone();
                // The permit goes with the thread: a compile that outlives
                // its deadline still holds its place in the queue.
                let task = tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    compile_bytes(&engine, &bytes)
                });
                match tokio::time::timeout(timeout, task).await {
                    Ok(Ok(compiled)) => compiled,
                    Ok(Err(join)) => Err(LoadError::Compiler(format!(
                        "the compiler panicked: {}",
                        panic_message(join)
                    ))),
                    Err(_) => Err(LoadError::CompileTimeout(timeout)),
                }
            }
            CompileMode::Child { exe } => {
                let artefact = self.compile_in_child(exe, &bytes).await;
                drop(permit);
                deserialize(engine, &artefact?)
            }
        }
    }

    /// Runs `<exe> compile` on `bytes` and returns its serialized component.
    async fn compile_in_child(&self, exe: &Path, bytes: &[u8]) -> Result<Vec<u8>, LoadError> {
        let config = &self.config;
        let threads = config.threads.max(1);
        // CPU time is counted over all threads: allow each its share of the
        // wall-clock deadline, plus a second; the deadline below ends it
        // first in the common case.
        let cpu_seconds = config.timeout.as_secs().saturating_add(1) * threads as u64;
        let memory = config.memory_bytes;
        let mut command = tokio::process::Command::new(exe);
        command
            .arg("compile")
            .env_clear()
            .env("RAYON_NUM_THREADS", threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[allow(unsafe_code)]
        // SAFETY: the closure runs in the forked child before exec and only
        // calls setrlimit and setpriority, which are async-signal-safe; it
        // allocates nothing.
        unsafe {
            command.pre_exec(move || {
                use rlimit::Resource;
                rlimit::setrlimit(Resource::AS, memory, memory)?;
                rlimit::setrlimit(Resource::CPU, cpu_seconds, cpu_seconds)?;
                rlimit::setrlimit(Resource::CORE, 0, 0)?;
                rlimit::setrlimit(Resource::FSIZE, 0, 0)?;
                rlimit::setrlimit(Resource::NOFILE, 64, 64)?;
                // Serving comes first: the compiler gets what CPU is left.
                rustix::process::setpriority_process(None, COMPILER_NICENESS)?;
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .map_err(|e| LoadError::Compiler(format!("could not start the compiler: {e}")))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let run = async {
            let input = bytes.to_vec();
            let feed = async move {
                use tokio::io::AsyncWriteExt as _;
                // A child that exits early closes the pipe; its status says why.
                let _ = stdin.write_all(&input).await;
            };
            let mut artefact = Vec::new();
            let mut message = Vec::new();
            let (_, out, _) = tokio::join!(
                feed,
                stdout.read_to_end(&mut artefact),
                stderr.read_to_end(&mut message)
            );
            message.truncate(MAX_MESSAGE_BYTES);
            out.map_err(|e| LoadError::Compiler(format!("reading the compiler's output: {e}")))?;
            let status = child
                .wait()
                .await
                .map_err(|e| LoadError::Compiler(format!("waiting for the compiler: {e}")))?;
            Ok::<_, LoadError>((status, artefact, message))
        };
        let (status, artefact, message) = match tokio::time::timeout(config.timeout, run).await {
            Ok(result) => result?,
            // Dropping the future drops the child, which kills it.
            Err(_) => return Err(LoadError::CompileTimeout(config.timeout)),
        };
        // The compiler's words may quote the file's (names of exports,
        // say): escaped and cut like any guest text.
        let message = guest_text(String::from_utf8_lossy(&message).trim());
        if status.success() {
            return Ok(artefact);
        }
        match status.code() {
            Some(EXIT_REFUSED) => Err(LoadError::Compiler(message)),
            Some(code) => Err(LoadError::Compiler(format!(
                "the compiler exited with status {code}: {message}"
            ))),
            None => {
                use std::os::unix::process::ExitStatusExt as _;
                let signal = status.signal().unwrap_or_default();
                let hint = match signal {
                    libc_signals::SIGKILL | libc_signals::SIGXCPU => {
                        " (its CPU-time or memory limit)"
                    }
                    libc_signals::SIGSEGV | libc_signals::SIGABRT => {
                        " (most likely its memory limit)"
                    }
                    _ => "",
                };
                Err(LoadError::Compiler(format!(
                    "the compiler was ended by signal {signal}{hint}"
                )))
            }
        }
    }
}

/// Signal numbers the compiler's end is explained by (Linux, all targets
/// the gateway builds for).
mod libc_signals {
    pub const SIGABRT: i32 = 6;
    pub const SIGKILL: i32 = 9;
    pub const SIGSEGV: i32 = 11;
    pub const SIGXCPU: i32 = 24;
}

/// Exit status of `wasmgate compile` for bytes it refuses (its message on
/// stderr is the reason).
pub const EXIT_REFUSED: i32 = 3;

/// The niceness of a compiling child process: the scheduler gives serving
/// threads precedence.
const COMPILER_NICENESS: i32 = 10;

/// The most of a compiler's message that is kept.
const MAX_MESSAGE_BYTES: usize = 4096;

/// What `wasmgate compile` does: reads handler bytes (at most `limit`) from
/// stdin, compiles them with the gateway's code-generation settings and
/// writes the serialized component to stdout. Returns the process's exit
/// status: 0, or [`EXIT_REFUSED`] with the reason on stderr.
pub fn compile_stdin_to_stdout(limit: u64) -> i32 {
    let mut bytes = Vec::new();
    if let Err(error) = std::io::stdin()
        .lock()
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
    {
        eprintln!("reading the handler bytes: {error}");
        return EXIT_REFUSED;
    }
    if bytes.len() as u64 > limit {
        eprintln!("larger than {limit} bytes");
        return EXIT_REFUSED;
    }
    let result = Engine::new(&codegen_config())
        .map_err(LoadError::Compile)
        .and_then(|engine| compile_bytes(&engine, &bytes))
        .and_then(|component| component.serialize().map_err(LoadError::Compile));
    match result {
        Ok(artefact) => match std::io::stdout().lock().write_all(&artefact) {
            Ok(()) => 0,
            Err(error) => {
                eprintln!("writing the compiled component: {error}");
                EXIT_REFUSED
            }
        },
        Err(error) => {
            eprintln!("{error}");
            EXIT_REFUSED
        }
    }
}

/// Loads a component serialized by a compiling child.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, artefact: &[u8]) -> Result<Component, LoadError> {
    // SAFETY: `deserialize` trusts its input to be a compilation made by a
    // compatible engine. The bytes come from `wasmgate compile`, this very
    // binary, run as a child with the same code-generation settings
    // (`codegen_config`) and handed the handler only as data; wasmtime also
    // checks the header and refuses artefacts of another version or
    // configuration.
    unsafe { Component::deserialize(engine, artefact) }
        .map_err(|e| LoadError::Compiler(format!("the compiler's output does not load: {e:#}")))
}

/// The text of a panic that ended a blocking task.
fn panic_message(join: tokio::task::JoinError) -> String {
    match join.try_into_panic() {
        Ok(panic) => panic_text(&*panic),
        Err(join) => join.to_string(),
    }
}

/// The message a panic carried (a `&str` or a `String`, as `panic!` makes
/// them).
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
