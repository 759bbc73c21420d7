//! Hot-reload benchmark: how soon a replaced handler serves, and whether 100
//! swaps under continuous echo traffic fail or lose any message.
//!
//! ```text
//! scripts/bench-reload.sh            # builds the handlers and runs this
//! cargo run --release -p wasmgate --example reload_bench -- ECHO.wasm PROBE.wasm [SWAPS]
//! ```
//!
//! Two handler versions alternate: `echo` answers the text `info` with
//! `info`, the test `probe` answers it with a JSON object; both echo every
//! other text unchanged, so echo traffic must never notice a swap.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::{ask, Client};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Swap log lines (with compile times) go to stderr.
    tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,wasmgate::plugins=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(
        args.len() >= 2,
        "usage: reload_bench ECHO.wasm PROBE.wasm [SWAPS]"
    );
    let versions = [std::fs::read(&args[0])?, std::fs::read(&args[1])?];
    let swaps: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(100);

    let plugins = tempdir()?;
    let service_dir = plugins.join("bench");
    std::fs::create_dir_all(&service_dir)?;
    install(&service_dir, &versions[0])?;
    let any = "127.0.0.1:0".parse()?;
    let listeners = wasmgate::Listeners::bind(any, any).await?;
    let addr = listeners.public.local_addr()?;
    let config = wasmgate::GatewayConfig {
        cache_dir: None,
        ..wasmgate::GatewayConfig::new(&plugins)
    };
    let gateway = wasmgate::Gateway::new(config).await?;
    tokio::spawn(wasmgate::serve(
        listeners,
        gateway.clone(),
        std::future::pending(),
    ));
    gateway.loaded().await;
    let url = format!("ws://{addr}/ws/bench");
    let (mut probe_client, _) = tokio_tungstenite::connect_async(&url).await?;

    // 1. Latency from a completed write (rename into place) to the first
    //    event served by the new version. Fresh bytes each time (a trailing
    //    custom section changes the hash) so every write really compiles.
    let mut latencies = [Vec::new(), Vec::new()];
    for round in 0..20 {
        let next = (round + 1) % 2;
        let bytes = with_nonce(&versions[next], round as u64);
        let written = Instant::now();
        install(&service_dir, &bytes)?;
        loop {
            let reply = ask(&mut probe_client, "info").await?;
            if reply.starts_with('{') == (next == 1) {
                break;
            }
            // Poll every 2 ms: fine enough to time the swap, light enough
            // not to starve the compile of CPU on a small machine.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies[next].push(written.elapsed());
    }
    for (name, index, size) in [
        ("echo", 0, versions[0].len()),
        ("probe", 1, versions[1].len()),
    ] {
        let latencies = &mut latencies[index];
        latencies.sort();
        println!(
            "write -> first event on the new version, {name} ({} KiB, {} swaps): p50 {:.1} ms, max {:.1} ms (debounce {} ms included)",
            size / 1024,
            latencies.len(),
            ms(latencies[latencies.len() / 2]),
            ms(*latencies.last().unwrap()),
            wasmgate::GatewayConfig::new(".").reload_debounce.as_millis()
        );
    }

    // 2. Swaps under continuous echo traffic.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for n in 0..8 {
        let (client, _) = tokio_tungstenite::connect_async(&url).await?;
        clients.push(tokio::spawn(echo_loop(
            n,
            client,
            stop.clone(),
            sent.clone(),
            failed.clone(),
        )));
    }
    let started = Instant::now();
    for swap in 0..swaps {
        let bytes = with_nonce(&versions[swap % 2], 1000 + swap as u64);
        install(&service_dir, &bytes)?;
        // Let each version go live and serve before the next write.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut lost = 0;
    for client in clients {
        lost += client.await?;
    }
    println!(
        "{swaps} swaps under echo traffic from 8 clients in {:.1} s: {} messages echoed, {} failed, {} lost",
        started.elapsed().as_secs_f64(),
        sent.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        lost
    );
    Ok(())
}

/// Sends numbered messages one at a time and checks each echo; returns the
/// number of messages lost (no echo, wrong echo, or a closed connection).
async fn echo_loop(
    n: usize,
    mut client: Client,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
) -> u64 {
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let text = format!("{n}:{i}");
        match ask(&mut client, &text).await {
            Ok(reply) if reply == text => {
                sent.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {
                failed.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => return 1,
        }
        i += 1;
    }
    0
}

/// The component with a trailing custom section, so its hash differs.
fn with_nonce(bytes: &[u8], nonce: u64) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let name = b"wasmgate-bench-nonce";
    let payload = nonce.to_le_bytes();
    let size = 1 + name.len() + payload.len();
    out.push(0); // custom section id
    out.push(size as u8);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&payload);
    out
}

fn install(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = dir.join(".handler.wasm.partial");
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, dir.join("handler.wasm"))
}

fn tempdir() -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("wasmgate-reload-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
