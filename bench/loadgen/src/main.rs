//! Load generator for wasmgate and its baselines (see BENCHMARKS.md).
//!
//! Modes: `echo` (closed-loop echo with verification and latency
//! percentiles), `idle` (hold many idle connections, report connect rate and
//! server RSS per connection), `churn` (connect+close storm) and `fanout`
//! (one reverse push per connection of a wasmgate service, time until the
//! last one arrives), and for the front-door benchmark `hold` (an attacker
//! holding idle sockets) and `http-latency` (see `abuse.rs`). Every mode
//! prints one line `RESULT key=value ...` for scripts.

mod abuse;

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Command line of the load generator.
#[derive(Parser, Debug)]
pub(crate) struct Args {
    /// Server address (host:port), on 127.0.0.0/8.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// The server's control address (reverse push), for the fanout mode.
    #[arg(long, default_value = "127.0.0.1:8081")]
    control_addr: SocketAddr,
    /// Service path segment: connections go to /ws/<service>.
    #[arg(long, default_value = "echo")]
    service: String,
    /// Spread the echo mode's connections over N services: connection i
    /// goes to /ws/<service>-<i mod N + 1> (0: all to /ws/<service>).
    #[arg(long, default_value_t = 0)]
    tenants: usize,
    /// The server's process id, for RSS readings from /proc/<pid>/status.
    #[arg(long)]
    pub(crate) server_pid: Option<u32>,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// N connections in a closed loop, K messages in flight each.
    Echo {
        #[arg(long, default_value_t = 1)]
        connections: usize,
        #[arg(long, default_value_t = 1)]
        in_flight: usize,
        /// Payload size in bytes.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Send binary messages instead of text.
        #[arg(long)]
        binary: bool,
        /// Measured seconds (after the warm-up).
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Warm-up seconds, not counted.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
    },
    /// Hold N idle connections from source addresses 127.0.0.2-127.0.0.254.
    Idle {
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Connection attempts at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Seconds to hold the connections after the last one is open.
        #[arg(long, default_value_t = 2.0)]
        hold: f64,
    },
    /// Connect and close as fast as possible.
    Churn {
        /// Parallel workers.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// M connections to a wasmgate service; one reverse push (POST
    /// /push/<service>) to each; time until the last one receives it.
    Fanout {
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// HTTP keep-alive connections used to send the pushes.
        #[arg(long, default_value_t = 8)]
        http_connections: usize,
    },
    /// Hold N idle TCP sockets (no request) for a while, reopening each
    /// one the server closes.
    Hold {
        #[arg(long, default_value_t = 1000)]
        sockets: usize,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Connection attempts at once.
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
    },
    /// N keep-alive HTTP/1.1 connections, each GETting a path in a closed
    /// loop (the HTTP trigger, or the native baseline's same route).
    Http {
        #[arg(long, default_value = "/http/web/html")]
        path: String,
        #[arg(long, default_value_t = 1)]
        connections: usize,
        /// Measured seconds (after the warm-up).
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Warm-up seconds, not counted.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
    },
    /// GET a path on one keep-alive connection, about 100 times a second.
    HttpLatency {
        #[arg(long, default_value = "/healthz")]
        path: String,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
}

type Ws = WebSocketStream<TcpStream>;

fn raise_nofile() {
    // The soft limit is raised by the calling script (`ulimit -n $(ulimit -Hn)`);
    // report what we have so a low limit is visible.
    if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
        if let Some(line) = limits.lines().find(|l| l.starts_with("Max open files")) {
            eprintln!("{}", line.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
}

/// Source address number `i` in 127.0.0.2-127.0.0.254.
pub(crate) fn source_addr(i: usize) -> SocketAddr {
    let last = 2 + (i % 253) as u8;
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), 0)
}

async fn connect(
    addr: SocketAddr,
    service: &str,
    source: Option<SocketAddr>,
) -> anyhow::Result<Ws> {
    let socket = TcpSocket::new_v4()?;
    if let Some(source) = source {
        socket.bind(source)?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let url = format!("ws://{addr}/ws/{service}");
    let (ws, _) = tokio_tungstenite::client_async(url, stream).await?;
    Ok(ws)
}

pub(crate) fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub(crate) fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn payload(seq: u64, size: usize) -> Vec<u8> {
    let mut bytes = format!("{seq:016x}").into_bytes();
    bytes.resize(size.max(16), b'x');
    bytes.truncate(size.max(16));
    bytes
}

#[derive(Default)]
struct EchoStats {
    latencies_us: Vec<u32>,
    /// Every verified echo, warm-up included (for CPU time per message).
    total: u64,
    errors: u64,
}

async fn echo_connection(
    mut ws: Ws,
    id: u64,
    in_flight: usize,
    size: usize,
    binary: bool,
    measure_from: Instant,
    stop_at: Instant,
) -> EchoStats {
    let mut stats = EchoStats::default();
    let mut pending: VecDeque<(Vec<u8>, Instant)> = VecDeque::new();
    let mut seq = id << 40;
    let make = |bytes: Vec<u8>| {
        if binary {
            Message::Binary(bytes.into())
        } else {
            Message::Text(String::from_utf8(bytes).expect("ascii payload").into())
        }
    };
    for _ in 0..in_flight {
        let bytes = payload(seq, size);
        seq += 1;
        pending.push_back((bytes.clone(), Instant::now()));
        if ws.send(make(bytes)).await.is_err() {
            stats.errors += 1;
            return stats;
        }
    }
    while let Some((expected, sent)) = pending.pop_front() {
        let received = match ws.next().await {
            Some(Ok(Message::Text(text))) if !binary => text.as_bytes().to_vec(),
            Some(Ok(Message::Binary(bytes))) if binary => bytes.to_vec(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                pending.push_front((expected, sent));
                continue;
            }
            _ => {
                stats.errors += 1 + pending.len() as u64;
                return stats;
            }
        };
        let now = Instant::now();
        if received != expected {
            stats.errors += 1;
            continue;
        }
        stats.total += 1;
        if sent >= measure_from && now <= stop_at {
            stats
                .latencies_us
                .push(now.duration_since(sent).as_micros() as u32);
        }
        if now < stop_at {
            let bytes = payload(seq, size);
            seq += 1;
            pending.push_back((bytes.clone(), Instant::now()));
            if ws.send(make(bytes)).await.is_err() {
                stats.errors += 1 + pending.len() as u64;
                return stats;
            }
        }
    }
    let _ = ws.close(None).await;
    stats
}

async fn run_echo(
    args: &Args,
    connections: usize,
    in_flight: usize,
    size: usize,
    binary: bool,
    seconds: f64,
    warmup: f64,
) -> anyhow::Result<()> {
    raise_nofile();
    let mut sockets = Vec::with_capacity(connections);
    for i in 0..connections {
        let service = match args.tenants {
            0 => args.service.clone(),
            n => format!("{}-{}", args.service, i % n + 1),
        };
        sockets.push(
            connect(args.addr, &service, Some(source_addr(i)))
                .await
                .with_context(|| format!("connect to /ws/{service}"))?,
        );
    }
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(warmup);
    let stop_at = measure_from + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, ws)| {
            tokio::spawn(echo_connection(
                ws,
                i as u64,
                in_flight,
                size,
                binary,
                measure_from,
                stop_at,
            ))
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut total = 0;
    for task in tasks {
        let stats = task.await?;
        total += stats.total;
        latencies.extend(stats.latencies_us);
        errors += stats.errors;
    }
    latencies.sort_unstable();
    let rate = latencies.len() as f64 / seconds;
    println!(
        "RESULT mode=echo connections={connections} tenants={} in_flight={in_flight} size={size} binary={binary} total={total} msgs={} msgs_per_s={rate:.0} p50_us={} p99_us={} p999_us={} errors={errors}",
        args.tenants,
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999),
    );
    Ok(())
}

async fn run_idle(
    args: &Args,
    connections: usize,
    concurrency: usize,
    hold: f64,
) -> anyhow::Result<()> {
    raise_nofile();
    let before = rss_kib(args.server_pid);
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let next = next.clone();
        let errors = errors.clone();
        let addr = args.addr;
        let service = args.service.clone();
        workers.push(tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= connections {
                    break;
                }
                match connect(addr, &service, Some(source_addr(i))).await {
                    Ok(ws) => held.push(ws),
                    Err(error) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("connect {i}: {error}");
                        }
                    }
                }
            }
            held
        }));
    }
    let mut held = Vec::new();
    for worker in workers {
        held.extend(worker.await?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs_f64(hold)).await;
    let after = rss_kib(args.server_pid);
    let open = held.len();
    let per_conn = match (before, after) {
        (Some(b), Some(a)) if open > 0 => {
            format!("{:.2}", (a.saturating_sub(b)) as f64 / open as f64)
        }
        _ => "n/a".into(),
    };
    println!(
        "RESULT mode=idle connections={open} errors={} connect_per_s={:.0} rss_before_kib={} rss_after_kib={} rss_per_conn_kib={per_conn}",
        errors.load(Ordering::Relaxed),
        open as f64 / elapsed,
        before.map_or("n/a".into(), |v| v.to_string()),
        after.map_or("n/a".into(), |v| v.to_string()),
    );
    drop(held);
    Ok(())
}

async fn run_churn(args: &Args, concurrency: usize, seconds: f64) -> anyhow::Result<()> {
    raise_nofile();
    let stop_at = Instant::now() + Duration::from_secs_f64(seconds);
    let counter = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let counter = counter.clone();
        let errors = errors.clone();
        let addr = args.addr;
        let service = args.service.clone();
        workers.push(tokio::spawn(async move {
            let mut i = w;
            while Instant::now() < stop_at {
                i += concurrency;
                match connect(addr, &service, Some(source_addr(i))).await {
                    Ok(mut ws) => {
                        let _ = ws.close(None).await;
                        // Wait for the server's close frame and the end of the stream.
                        while let Some(Ok(_)) = ws.next().await {}
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("connect: {error}");
                        }
                    }
                }
            }
        }));
    }
    for worker in workers {
        worker.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let done = counter.load(Ordering::Relaxed);
    println!(
        "RESULT mode=churn concurrency={concurrency} connections={done} conn_per_s={:.0} errors={}",
        done as f64 / elapsed,
        errors.load(Ordering::Relaxed)
    );
    Ok(())
}

/// One HTTP/1.1 request on a keep-alive connection; returns status and body.
pub(crate) async fn http(
    stream: &mut BufReader<TcpStream>,
    method: &str,
    path: &str,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.get_mut().write_all(request.as_bytes()).await?;
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .context("status line")?
        .parse()?;
    let mut length = 0usize;
    loop {
        line.clear();
        stream.read_line(&mut line).await?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse()?;
            }
        }
    }
    let mut buf = vec![0; length];
    stream.read_exact(&mut buf).await?;
    Ok((status, String::from_utf8_lossy(&buf).into_owned()))
}

/// The `http` mode: `connections` keep-alive connections GET `path` as fast
/// as each gets answers; requests per second and latency over the measured
/// window. Anything but 200 counts as an error.
async fn run_http(
    args: &Args,
    path: &str,
    connections: usize,
    seconds: f64,
    warmup: f64,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(warmup);
    let stop_at = measure_from + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..connections)
        .map(|i| {
            let (addr, path) = (args.addr, path.to_owned());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                let socket = TcpSocket::new_v4()?;
                socket.bind(source_addr(i))?;
                let mut stream = BufReader::new(socket.connect(addr).await?);
                loop {
                    let sent = Instant::now();
                    if sent >= stop_at {
                        break;
                    }
                    match http(&mut stream, "GET", &path, "").await {
                        Ok((200, _)) if sent >= measure_from => {
                            latencies.push(sent.elapsed().as_micros() as u32)
                        }
                        Ok((200, _)) => {}
                        Ok(_) => errors += 1,
                        Err(_) => {
                            errors += 1;
                            stream = BufReader::new(TcpStream::connect(addr).await?);
                        }
                    }
                }
                anyhow::Ok((latencies, errors))
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (mine, failed) = task.await??;
        latencies.extend(mine);
        errors += failed;
    }
    latencies.sort_unstable();
    println!(
        "RESULT mode=http connections={connections} total={} reqs_per_s={:.0} p50_us={} p99_us={} errors={errors}",
        latencies.len(),
        latencies.len() as f64 / seconds,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    );
    Ok(())
}

async fn run_fanout(
    args: &Args,
    connections: usize,
    http_connections: usize,
) -> anyhow::Result<()> {
    raise_nofile();
    let mut sockets = Vec::with_capacity(connections);
    for i in 0..connections {
        sockets.push(
            connect(args.addr, &args.service, Some(source_addr(i)))
                .await
                .context("connect")?,
        );
    }
    // The ids of this service's connections (only ours are expected).
    let mut control = BufReader::new(TcpStream::connect(args.control_addr).await?);
    let (status, body) = http(&mut control, "GET", &format!("/push/{}", args.service), "").await?;
    if status != 200 {
        bail!("GET /push/{}: {status} {body}", args.service);
    }
    let list: serde_json::Value = serde_json::from_str(&body)?;
    let ids: Vec<String> = list["connections"]
        .as_array()
        .context("connections array")?
        .iter()
        .filter_map(|c| c["secConnectionID"].as_str().map(str::to_owned))
        .collect();
    if ids.len() != connections {
        bail!(
            "expected {connections} live connections, the server lists {}",
            ids.len()
        );
    }
    let mut streams = Vec::new();
    for _ in 0..http_connections {
        streams.push(BufReader::new(TcpStream::connect(args.control_addr).await?));
    }
    let receivers: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Text(text))) => {
                            return Some((Instant::now(), text.to_string()))
                        }
                        Some(Ok(_)) => continue,
                        _ => return None,
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    let ids = Arc::new(ids);
    let mut senders = Vec::new();
    for (k, mut stream) in streams.into_iter().enumerate() {
        let ids = ids.clone();
        let service = args.service.clone();
        senders.push(tokio::spawn(async move {
            let mut failed = 0u64;
            for id in ids.iter().skip(k).step_by(http_connections) {
                let body = serde_json::json!({"websocket": {"action": "data send", "secConnectionID": id, "dataType": "text", "data": "fanout"}}).to_string();
                match http(&mut stream, "POST", &format!("/push/{service}"), &body).await {
                    Ok((200, _)) => {}
                    _ => failed += 1,
                }
            }
            failed
        }));
    }
    let mut failed = 0;
    for sender in senders {
        failed += sender.await?;
    }
    let sent_all = start.elapsed();
    let mut times = Vec::new();
    for receiver in receivers {
        match tokio::time::timeout(Duration::from_secs(10), receiver).await {
            Ok(Ok(Some((at, text)))) if text == "fanout" => {
                times.push(at.duration_since(start).as_micros() as u32)
            }
            _ => failed += 1,
        }
    }
    times.sort_unstable();
    println!(
        "RESULT mode=fanout connections={connections} pushes_sent_ms={:.1} p50_ms={:.1} last_ms={:.1} errors={failed}",
        sent_all.as_secs_f64() * 1e3,
        percentile(&times, 0.5) as f64 / 1e3,
        times.last().copied().unwrap_or(0) as f64 / 1e3,
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.mode {
        Mode::Echo {
            connections,
            in_flight,
            size,
            binary,
            seconds,
            warmup,
        } => run_echo(&args, connections, in_flight, size, binary, seconds, warmup).await,
        Mode::Idle {
            connections,
            concurrency,
            hold,
        } => run_idle(&args, connections, concurrency, hold).await,
        Mode::Churn {
            concurrency,
            seconds,
        } => run_churn(&args, concurrency, seconds).await,
        Mode::Fanout {
            connections,
            http_connections,
        } => run_fanout(&args, connections, http_connections).await,
        Mode::Hold {
            sockets,
            seconds,
            concurrency,
        } => {
            raise_nofile();
            abuse::run_hold(&args, sockets, seconds, concurrency).await
        }
        Mode::Http {
            ref path,
            connections,
            seconds,
            warmup,
        } => run_http(&args, path, connections, seconds, warmup).await,
        Mode::HttpLatency { ref path, seconds } => {
            abuse::run_http_latency(&args, path, seconds).await
        }
    }
}
