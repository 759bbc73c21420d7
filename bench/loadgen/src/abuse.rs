//! Modes for the front-door benchmark (`scripts/bench-abuse.sh`): `hold`,
//! an attacker that keeps many idle sockets open (reconnecting each one the
//! server closes), and `http-latency`, the latency of a plain HTTP route
//! asked again and again on one keep-alive connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

use crate::{http, percentile, rss_kib, source_addr, Args};

/// Keeps `sockets` TCP connections open for `seconds`, each from a source
/// address in 127.0.0.2-254, sending nothing. A socket the server closes
/// (its header timeout, or a refusal at accept) is opened again at once.
/// At most `concurrency` connection attempts run at once, so the attack
/// ramps up as fast as the server accepts instead of overflowing its
/// listen queue (whose dropped handshakes the kernel retries only seconds
/// later).
pub(crate) async fn run_hold(
    args: &Args,
    sockets: usize,
    seconds: f64,
    concurrency: usize,
) -> anyhow::Result<()> {
    let attempts = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let open = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicU64::new(0));
    let reconnects = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..sockets)
        .map(|i| {
            let (addr, open, peak) = (args.addr, open.clone(), peak.clone());
            let (reconnects, refused, failed) =
                (reconnects.clone(), refused.clone(), failed.clone());
            let attempts = attempts.clone();
            tokio::spawn(async move {
                let mut first = true;
                while Instant::now() < deadline {
                    let connected = async {
                        let _attempt = attempts.acquire().await;
                        let socket = TcpSocket::new_v4()?;
                        socket.bind(source_addr(i))?;
                        socket.connect(addr).await
                    };
                    let mut stream: TcpStream = match connected.await {
                        Ok(stream) => stream,
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    if !first {
                        reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    first = false;
                    let now_open = open.fetch_add(1, Ordering::Relaxed) + 1;
                    peak.fetch_max(now_open, Ordering::Relaxed);
                    let mut byte = [0u8; 1];
                    let left = deadline.saturating_duration_since(Instant::now());
                    match tokio::time::timeout(left, stream.read(&mut byte)).await {
                        // Closed by the server, or answered (a refusal).
                        Ok(Ok(n)) => {
                            if n > 0 {
                                refused.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Ok(Err(_)) => {}
                        Err(_) => {}
                    }
                    open.fetch_sub(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Report the server's memory while the sockets are held.
    let settle = Duration::from_secs_f64((seconds / 2.0).min(8.0));
    tokio::time::sleep(settle).await;
    let rss_during = rss_kib(args.server_pid);
    let held = open.load(Ordering::Relaxed);
    for task in tasks {
        task.await?;
    }
    println!(
        "RESULT mode=hold sockets={sockets} held_mid={held} peak={} reconnects={} refused={} failed={} rss_mid_kib={}",
        peak.load(Ordering::Relaxed),
        reconnects.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        rss_during.unwrap_or(0),
    );
    Ok(())
}

/// Asks `GET path` again and again on one keep-alive connection for
/// `seconds`, and reports the latency percentiles.
pub(crate) async fn run_http_latency(args: &Args, path: &str, seconds: f64) -> anyhow::Result<()> {
    let mut stream = BufReader::new(TcpStream::connect(args.addr).await?);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut latencies = Vec::new();
    let mut errors = 0u64;
    while Instant::now() < deadline {
        let sent = Instant::now();
        match http(&mut stream, "GET", path, "").await {
            Ok((200, _)) => latencies.push(sent.elapsed().as_micros() as u32),
            Ok(_) => errors += 1,
            Err(_) => {
                errors += 1;
                stream = BufReader::new(TcpStream::connect(args.addr).await?);
            }
        }
        // About a hundred requests a second: a probe, not a load.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    latencies.sort_unstable();
    println!(
        "RESULT mode=http-latency requests={} p50_us={} p99_us={} max_us={} errors={errors}",
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0),
    );
    Ok(())
}
