//! The gateway binary run as its own process, for tests that measure it
//! from outside (CPU, bytes read, resident memory, file descriptors) or
//! that need more sockets than one process may hold on both ends.

#![allow(dead_code)]

pub mod redis;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `wasmgate serve` and the addresses it listens on.
pub struct GatewayProcess {
    child: Child,
    /// The public listener.
    pub public: SocketAddr,
    /// The control listener.
    pub control: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

/// A plugins folder of `services` copies of the hand-written echo handler,
/// named `<prefix>-<n>`.
pub fn echo_plugins(root: &Path, prefix: &str, services: usize) -> std::path::PathBuf {
    let plugins = root.join("plugins");
    let echo = wat::parse_str(include_str!("../../../plugins/echo-wat/handler.wat")).unwrap();
    for n in 0..services {
        let dir = plugins.join(format!("{prefix}-{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("handler.wasm"), &echo).unwrap();
        std::fs::write(dir.join("service.toml"), "timeout_ms = 1000\n").unwrap();
    }
    plugins
}

/// A fresh folder under the system's temporary folder.
pub fn scratch(name: &str) -> std::path::PathBuf {
    let root = std::env::temp_dir().join(format!("wasmgate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    root
}

impl GatewayProcess {
    /// Starts `wasmgate serve` on `plugins` with both listeners on
    /// `127.0.0.1:0`, its key-value store in memory (or, with `--cluster`
    /// among `extra`, on that Redis), plus `extra` arguments, run through
    /// `wrapper` (e.g. `prlimit --nofile=600`) when given, and waits until
    /// it listens and has loaded what it found at start-up.
    pub fn start(plugins: &Path, cache: &Path, extra: &[&str], wrapper: &[&str]) -> Self {
        let gateway = Self::start_listening(plugins, cache, extra, wrapper);
        gateway.wait_for_log(
            "found at start-up has loaded or failed",
            Duration::from_secs(120),
        );
        gateway
    }

    /// Like [`GatewayProcess::start`], returning as soon as it listens
    /// (its services may still be compiling).
    pub fn start_listening(plugins: &Path, cache: &Path, extra: &[&str], wrapper: &[&str]) -> Self {
        let binary = env!("CARGO_BIN_EXE_wasmgate");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--control-listen",
                "127.0.0.1:0",
            ])
            .args(
                (!extra.contains(&"--cluster"))
                    .then_some("--memory-state")
                    .as_slice(),
            )
            .arg("--plugins")
            .arg(plugins)
            .arg("--cache-dir")
            .arg(cache)
            .args(extra)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start wasmgate");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let started = Instant::now();
        // The lines before it too (e.g. what start-up scheduled).
        let mut early = Vec::new();
        let listening = loop {
            let line = lines
                .next()
                .expect("wasmgate exited before listening")
                .unwrap();
            if line.contains("gateway listening") {
                break line;
            }
            early.push(line);
            assert!(started.elapsed() < Duration::from_secs(60), "no start");
        };
        let field = |name: &str| -> SocketAddr {
            // With --log-format json the line is one JSON object.
            if let Ok(record) = serde_json::from_str::<serde_json::Value>(&listening) {
                return record[name].as_str().unwrap().parse().unwrap();
            }
            let start = listening.find(&format!("{name}=")).unwrap() + name.len() + 1;
            listening[start..]
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        let (public, control) = (field("public"), field("control"));
        // Keep its log, and keep draining it so it never blocks on a full pipe.
        early.push(listening);
        let log = Arc::new(Mutex::new(early));
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            public,
            control,
            log,
        }
    }

    /// Waits until a log line contains `needle`, and returns it.
    pub fn wait_for_log(&self, needle: &str, within: Duration) -> String {
        let started = Instant::now();
        loop {
            if let Some(line) = self.log_lines(needle).into_iter().next() {
                return line;
            }
            assert!(
                started.elapsed() < within,
                "no log line with {needle:?} within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every log line so far.
    pub fn all_log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Log lines so far that contain `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter(|line| line.contains(needle))
            .cloned()
            .collect()
    }

    /// CPU time (user + system, in clock ticks) and bytes read so far.
    pub fn usage(&self) -> (u64, u64) {
        let pid = self.pid();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // Fields after the command name, which is in parentheses.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        let ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
        let read = io
            .lines()
            .find_map(|line| line.strip_prefix("rchar: "))
            .unwrap()
            .parse()
            .unwrap();
        (ticks, read)
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap()
    }

    /// File descriptors open now.
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|entries| entries.count())
            .unwrap_or(0)
    }
}

impl GatewayProcess {
    /// Kills the process with SIGKILL (no shutdown, no cleanup) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends the process a signal by name (`STOP`, `CONT`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
