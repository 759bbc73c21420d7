//! The release-shaped gateway, run as its own process: what it costs while
//! no client is connected. Measured from outside, through `/proc`, so other
//! tests running in parallel cannot blur it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A gateway process serving `plugins`, with its watcher on.
struct Gateway {
    child: Child,
}

impl Gateway {
    /// Starts `wasmgate serve` and waits until it listens.
    fn start(plugins: &Path, cache: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wasmgate"))
            .args(["serve", "--listen", "127.0.0.1:0", "--memory-state"])
            .arg("--plugins")
            .arg(plugins)
            .arg("--cache-dir")
            .arg(cache)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wasmgate");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let started = Instant::now();
        loop {
            let line = lines
                .next()
                .expect("wasmgate exited before listening")
                .unwrap();
            if line.contains("gateway listening") {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "no start");
        }
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child }
    }

    /// CPU time (user + system, in clock ticks) and bytes read so far.
    fn usage(&self) -> (u64, u64) {
        let pid = self.child.id();
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
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_idle_gateway_watching_its_plugins_does_no_work() {
    let root = std::env::temp_dir().join(format!("wasmgate-idle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let plugins = root.join("plugins");
    let echo = wat::parse_str(include_str!("../../plugins/echo-wat/handler.wat")).unwrap();
    for n in 0..12 {
        let dir = plugins.join(format!("idle-{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("handler.wasm"), &echo).unwrap();
        std::fs::write(dir.join("service.toml"), "timeout_ms = 1000\n").unwrap();
    }
    let gateway = Gateway::start(&plugins, &root.join("cache"));
    // Whatever start-up itself costs is over after a moment.
    std::thread::sleep(Duration::from_secs(2));
    let (ticks_before, read_before) = gateway.usage();
    std::thread::sleep(Duration::from_secs(5));
    let (ticks_after, read_after) = gateway.usage();
    drop(gateway);
    std::fs::remove_dir_all(&root).unwrap();

    let read = read_after - read_before;
    let ticks = ticks_after - ticks_before;
    // Reading its own plugin files must not make the watcher read them
    // again: 12 services of a few hundred bytes each would show as
    // megabytes within seconds.
    assert!(read < 16 << 10, "read {read} bytes in 5 s while idle");
    // A clock tick is 10 ms: a few ticks in 5 s is noise, a loop is not.
    assert!(
        ticks <= 5,
        "used {ticks} clock ticks of CPU in 5 s while idle"
    );
}
