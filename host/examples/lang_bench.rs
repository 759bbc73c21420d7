//! Per-language handler benchmark: size and compile time of each echo
//! handler, and echo round trips per second through a real gateway with a
//! fresh instance per event and with instance reuse.
//!
//! ```text
//! scripts/bench-languages.sh
//! cargo run --release -p wasmgate --example lang_bench -- [--messages N] NAME=HANDLER.wasm...
//! ```
//!
//! One client sends N text messages one at a time and waits for each echo,
//! so the time per message is the whole per-event cost (WebSocket frame in,
//! transfer call, push, frame out) plus one loopback round trip.

use std::path::PathBuf;
use std::time::{Duration, Instant};

mod common;

use common::ask;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut messages = 2000usize;
    if args.first().map(String::as_str) == Some("--messages") {
        messages = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(2000);
        args.drain(..2);
    }
    anyhow::ensure!(
        !args.is_empty(),
        "usage: lang_bench [--messages N] NAME=HANDLER.wasm..."
    );
    let runtime = wasmgate::Runtime::new(&wasmgate::GatewayConfig::new("."))
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    println!("| handler | size | compile | fresh: msgs/s | fresh: µs/msg | reused: msgs/s | reused: µs/msg |");
    println!("|---|---|---|---|---|---|---|");
    for arg in &args {
        let (name, path) = arg
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("expected NAME=HANDLER.wasm, got {arg}"))?;
        let bytes = std::fs::read(path)?;
        let started = Instant::now();
        runtime.load_blocking(&bytes)?;
        let compile = started.elapsed();
        let fresh = echo_rate(&bytes, 0, messages).await?;
        let reused = echo_rate(&bytes, 1000, messages).await?;
        println!(
            "| {name} | {:.1} MiB | {:.2} s | {:.0} | {:.0} | {:.0} | {:.0} |",
            bytes.len() as f64 / (1 << 20) as f64,
            compile.as_secs_f64(),
            messages as f64 / fresh.as_secs_f64(),
            fresh.as_secs_f64() * 1e6 / messages as f64,
            messages as f64 / reused.as_secs_f64(),
            reused.as_secs_f64() * 1e6 / messages as f64,
        );
    }
    Ok(())
}

/// Time for `messages` sequential echoes through a gateway whose one service
/// runs `bytes` with `instance_reuse = reuse`.
async fn echo_rate(bytes: &[u8], reuse: u32, messages: usize) -> anyhow::Result<Duration> {
    let plugins = std::env::temp_dir().join(format!(
        "wasmgate-lang-bench-{}-{reuse}",
        std::process::id()
    ));
    let service = plugins.join("bench");
    std::fs::create_dir_all(&service)?;
    std::fs::write(service.join("handler.wasm"), bytes)?;
    std::fs::write(
        service.join("service.toml"),
        format!("instance_reuse = {reuse}\n"),
    )?;
    let any = "127.0.0.1:0".parse()?;
    let listeners = wasmgate::Listeners::bind(any, any).await?;
    let addr = listeners.public.local_addr()?;
    let config = wasmgate::GatewayConfig {
        cache_dir: Some(cache_dir()),
        ..wasmgate::GatewayConfig::new(&plugins)
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let loading = wasmgate::Gateway::new(config).await?;
    let gateway = tokio::spawn(wasmgate::serve(listeners, loading.clone(), async {
        let _ = stopped.await;
    }));
    loading.loaded().await;
    let (mut client, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/bench")).await?;
    // Warm up: the first events of a reused instance pay for instantiation.
    for _ in 0..20 {
        ask(&mut client, "warm-up").await?;
    }
    let started = Instant::now();
    for i in 0..messages {
        let text = format!("message {i}");
        anyhow::ensure!(ask(&mut client, &text).await? == text, "wrong echo");
    }
    let elapsed = started.elapsed();
    drop(client);
    let _ = stop.send(());
    let _ = gateway.await;
    let _ = std::fs::remove_dir_all(&plugins);
    Ok(elapsed)
}

fn cache_dir() -> PathBuf {
    std::env::temp_dir().join("wasmgate-lang-bench-cache")
}
