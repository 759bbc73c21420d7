//! Noisy-neighbour benchmark: service B's echo latency, quiet and while
//! service A's handler spins to its time-out on every event.
//!
//! ```text
//! scripts/bench-noisy.sh    # = cargo run --release -p wasmgate --example noisy_neighbour -- ECHO.wasm PROBE.wasm
//! ```
//!
//! A is the test `probe` handler with `timeout_ms = 100`; its attackers send
//! `loop` (a tight infinite loop) on every event and reconnect after each
//! 1011. B is the Rust `echo` example, driven by 4 clients in a closed loop.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const PHASE: Duration = Duration::from_secs(5);
const ATTACKERS: usize = 8;
const CLIENTS: usize = 4;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        args.len() == 2,
        "usage: noisy_neighbour ECHO.wasm PROBE.wasm"
    );
    let plugins = std::env::temp_dir().join(format!("wasmgate-noisy-{}", std::process::id()));
    for (service, wasm, toml) in [("b", &args[0], ""), ("a", &args[1], "timeout_ms = 100\n")] {
        let dir = plugins.join(service);
        std::fs::create_dir_all(&dir)?;
        std::fs::copy(wasm, dir.join("handler.wasm"))?;
        std::fs::write(dir.join("service.toml"), toml)?;
    }
    let any = "127.0.0.1:0".parse()?;
    let listeners = wasmgate::Listeners::bind(any, any).await?;
    let addr = listeners.public.local_addr()?;
    let config = wasmgate::GatewayConfig {
        watch: false,
        ..wasmgate::GatewayConfig::new(&plugins)
    };
    let gateway = wasmgate::Gateway::new(config).await?;
    tokio::spawn(wasmgate::serve(
        listeners,
        gateway.clone(),
        std::future::pending(),
    ));
    gateway.loaded().await;

    let quiet = measure(addr).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let spins = Arc::new(AtomicU64::new(0));
    let attackers: Vec<_> = (0..ATTACKERS)
        .map(|_| tokio::spawn(attack(addr, stop.clone(), spins.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let noisy = measure(addr).await?;
    stop.store(true, Ordering::Relaxed);
    for attacker in attackers {
        let _ = attacker.await;
    }
    println!("B echo, {CLIENTS} clients, {} s per phase", PHASE.as_secs());
    println!(
        "quiet:        {:>8} msgs  p50 {:>7.1} us  p99 {:>7.1} us",
        quiet.0, quiet.1, quiet.2
    );
    println!("under attack: {:>8} msgs  p50 {:>7.1} us  p99 {:>7.1} us  ({} of A's calls spun to their 100 ms time-out)", noisy.0, noisy.1, noisy.2, spins.load(Ordering::Relaxed));
    println!(
        "ratio under attack / quiet: p50 {:.2}x, p99 {:.2}x",
        noisy.1 / quiet.1,
        noisy.2 / quiet.2
    );
    std::fs::remove_dir_all(&plugins)?;
    Ok(())
}

/// Runs B's echo clients for one phase; returns (messages, p50 us, p99 us).
async fn measure(addr: std::net::SocketAddr) -> anyhow::Result<(usize, f64, f64)> {
    let deadline = Instant::now() + PHASE;
    let mut tasks = Vec::new();
    for n in 0..CLIENTS {
        tasks.push(tokio::spawn(async move {
            let (mut client, _) =
                tokio_tungstenite::connect_async(format!("ws://{addr}/ws/b")).await?;
            let mut latencies = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let text = format!("{n}-{i:058}");
                let sent = Instant::now();
                client.send(Message::text(text.clone())).await?;
                match client.next().await {
                    Some(Ok(Message::Text(reply))) if reply.as_str() == text => {}
                    other => anyhow::bail!("bad echo: {other:?}"),
                }
                latencies.push(sent.elapsed());
                i += 1;
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    all.sort();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)].as_secs_f64() * 1e6;
    Ok((all.len(), at(0.50), at(0.99)))
}

/// Keeps one of A's handlers spinning: send `loop`, wait for the 1011, reconnect.
async fn attack(addr: std::net::SocketAddr, stop: Arc<AtomicBool>, spins: Arc<AtomicU64>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok((mut client, _)) =
            tokio_tungstenite::connect_async(format!("ws://{addr}/ws/a")).await
        else {
            continue;
        };
        if client.send(Message::text("loop")).await.is_err() {
            continue;
        }
        while let Some(Ok(message)) = client.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
        spins.fetch_add(1, Ordering::Relaxed);
    }
}
