//! Fan-out benchmark: one broadcast to a group of N connections, time until
//! the last member has it.
//!
//! ```text
//! scripts/bench-fanout.sh   # builds, pins the gateway to core 0 and this client to core 1
//! ```
//!
//! Expects a running gateway (`--url`) whose service `--service` runs the
//! test `probe` handler: members connect with `?join=<group>`, so register
//! puts them in the group. Each round sends one text message of
//! `--payload` bytes, alternately by the reverse push (`data broadcast`,
//! HTTP) and by a handler's `broadcast` host call (a trigger connection
//! sends `broadcast:<group>:<text>`), and measures from just before the
//! send until each member's socket has the message. The baseline, in the
//! same run, is the same broadcast to a group of one.
//!
//! `--addr` may list several nodes of a cluster (`A,B,C`): members are
//! spread over them in turn, the trigger connects to the first, and a row
//! says how many deliveries arrived of those expected (a broadcast is at
//! most once per member in cluster mode; one that misses some members is
//! counted, not fatal).
//!
//! Members are read by one thread with `epoll` (mio), reading raw bytes
//! without parsing frames: a WebSocket client per member costs the load
//! generator more CPU per message than the gateway spends delivering it, so
//! it would measure itself. The client's CPU per delivery is printed too.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;

struct Options {
    /// The gateway's process id, to read its CPU time (`/proc/<pid>/stat`).
    server_pid: Option<u32>,
    /// The public listeners: one, or each node of a cluster.
    addrs: Vec<SocketAddr>,
    /// The control listener, for the reverse push.
    control_addr: SocketAddr,
    service: String,
    members: usize,
    rounds: usize,
    payload: usize,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        server_pid: None,
        addrs: vec!["127.0.0.1:8080".parse()?],
        control_addr: "127.0.0.1:8081".parse()?,
        service: "fan".into(),
        members: 10_000,
        rounds: 20,
        payload: 64,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--addr" => {
                options.addrs = value
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--control-addr" => options.control_addr = value.parse()?,
            "--service" => options.service = value,
            "--members" => options.members = value.parse()?,
            "--rounds" => options.rounds = value.parse()?,
            "--payload" => options.payload = value.parse()?,
            "--server-pid" => options.server_pid = Some(value.parse()?),
            other => anyhow::bail!(
                "unknown flag {other}; flags: --addr --control-addr --service --members --rounds --payload --server-pid"
            ),
        }
    }
    Ok(options)
}

/// Arrival times of the current round, in ns since `start`.
struct Round {
    start: Instant,
    arrived: AtomicUsize,
    latest_ns: AtomicU64,
    sum_ns: AtomicU64,
}

/// A WebSocket connection from a spread source address (127.0.0.2-254), so
/// thousands of connections do not exhaust one address's ephemeral ports.
async fn connect(
    addr: SocketAddr,
    path: &str,
    n: usize,
) -> anyhow::Result<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>> {
    let socket = TcpSocket::new_v4()?;
    let source = Ipv4Addr::new(127, 0, 0, 2 + (n % 253) as u8);
    socket.bind(SocketAddr::from((source, 0)))?;
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let (client, _) = tokio_tungstenite::client_async(format!("ws://{addr}{path}"), stream).await?;
    Ok(client)
}

/// Connects `count` members of `group` and hands their sockets to the
/// reader thread, which records when data arrives for the current round.
async fn join_members(
    options: &Options,
    group: &str,
    count: usize,
    round: &Arc<Round>,
) -> anyhow::Result<()> {
    let path = format!("/ws/{}?join={group}", options.service);
    let limit = Arc::new(tokio::sync::Semaphore::new(128));
    let mut joins = Vec::new();
    for n in 0..count {
        let permit = limit.clone().acquire_owned().await?;
        let (addr, path) = (options.addrs[n % options.addrs.len()], path.clone());
        joins.push(tokio::spawn(async move {
            let client = connect(addr, &path, n).await;
            drop(permit);
            let stream = client?.into_inner().into_std()?;
            anyhow::Ok(stream)
        }));
    }
    let mut streams = Vec::with_capacity(count);
    for join in joins {
        streams.push(join.await??);
    }
    let round = round.clone();
    std::thread::Builder::new()
        .name(format!("reader-{group}"))
        .spawn(move || read_members(streams, &round))?;
    Ok(())
}

/// The reader thread: one `epoll` over every member socket; each read that
/// returns data counts as that member's arrival in the current round.
fn read_members(streams: Vec<std::net::TcpStream>, round: &Round) -> anyhow::Result<()> {
    use std::io::Read;
    let mut poll = mio::Poll::new()?;
    let mut sockets = Vec::with_capacity(streams.len());
    for (n, stream) in streams.into_iter().enumerate() {
        stream.set_nonblocking(true)?;
        let mut socket = mio::net::TcpStream::from_std(stream);
        poll.registry()
            .register(&mut socket, mio::Token(n), mio::Interest::READABLE)?;
        sockets.push(socket);
    }
    let mut events = mio::Events::with_capacity(4096);
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        poll.poll(&mut events, None)?;
        let now = round.start.elapsed().as_nanos() as u64;
        for event in &events {
            let socket = &mut sockets[event.token().0];
            let mut got = false;
            loop {
                match socket.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(_) => got = true,
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(error) => return Err(error.into()),
                }
            }
            if got {
                round.latest_ns.fetch_max(now, Ordering::AcqRel);
                round.sum_ns.fetch_add(now, Ordering::AcqRel);
                round.arrived.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
}

/// One measured broadcast: (time to the last member, mean time) in ms, and
/// how many members got it within 10 s.
#[allow(clippy::too_many_arguments)]
async fn broadcast_once(
    options: &Options,
    group: &str,
    members: usize,
    round: &Round,
    tag: u64,
    via_http: bool,
    http: &reqwest::Client,
    trigger: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
) -> anyhow::Result<(f64, f64, usize)> {
    round.arrived.store(0, Ordering::Release);
    round.latest_ns.store(0, Ordering::Release);
    round.sum_ns.store(0, Ordering::Release);
    let text = format!("{tag}:{}", "x".repeat(options.payload.saturating_sub(12)));
    let sent = round.start.elapsed().as_nanos() as u64;
    if via_http {
        let body = serde_json::json!({"websocket": {"action": "data broadcast", "group": group, "data": text}});
        let response = http
            .post(format!(
                "http://{}/push/{}",
                options.control_addr, options.service
            ))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "push answered {}",
            response.status()
        );
    } else {
        trigger
            .send(Message::text(format!("broadcast:{group}:{text}")))
            .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while round.arrived.load(Ordering::Acquire) < members && Instant::now() < deadline {
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_micros(100));
    }
    let arrived = round.arrived.load(Ordering::Acquire);
    anyhow::ensure!(arrived > 0, "no member got round {tag}");
    let last = (round.latest_ns.load(Ordering::Acquire) - sent) as f64 / 1e6;
    let mean = (round.sum_ns.load(Ordering::Acquire) as f64 / arrived as f64 - sent as f64) / 1e6;
    Ok((last, mean, arrived))
}

/// CPU time (user + system) of a process so far, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn measure(
    options: &Options,
    group: &str,
    members: usize,
    round: &Arc<Round>,
    next_tag: &mut u64,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let mut trigger = connect(options.addrs[0], &format!("/ws/{}", options.service), 0).await?;
    for via_http in [true, false] {
        let cpu_before = options.server_pid.and_then(cpu_seconds);
        let own_before = cpu_seconds(std::process::id());
        let mut lasts = Vec::new();
        let mut means = Vec::new();
        let mut delivered = 0;
        for _ in 0..options.rounds {
            *next_tag += 1;
            let (last, mean, arrived) = broadcast_once(
                options,
                group,
                members,
                round,
                *next_tag,
                via_http,
                &http,
                &mut trigger,
            )
            .await?;
            lasts.push(last);
            means.push(mean);
            delivered += arrived;
            // Replies of the trigger ("delivered:N") are not needed.
            while let Ok(Some(_)) =
                tokio::time::timeout(Duration::from_millis(1), trigger.next()).await
            {}
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The pauses between rounds cost the server nothing measurable.
        let cpu = match (cpu_before, options.server_pid.and_then(cpu_seconds)) {
            (Some(before), Some(after)) => format!(
                "   server CPU {:>5.2} us/delivery",
                (after - before) * 1e6 / (options.rounds * members) as f64
            ),
            _ => String::new(),
        };
        let own = match (own_before, cpu_seconds(std::process::id())) {
            (Some(before), Some(after)) => format!(
                "  client CPU {:>5.2} us/delivery",
                (after - before) * 1e6 / (options.rounds * members) as f64
            ),
            _ => String::new(),
        };
        lasts.sort_by(f64::total_cmp);
        means.sort_by(f64::total_cmp);
        println!(
            "{:<6} members via {:<13} last member: p50 {:>7.2} ms  max {:>7.2} ms   mean member: p50 {:>7.2} ms   delivered {delivered}/{}{cpu}{own}",
            members,
            if via_http { "reverse push" } else { "host call" },
            percentile(&lasts, 0.5),
            lasts[lasts.len() - 1],
            percentile(&means, 0.5),
            options.rounds * members,
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    let round = Arc::new(Round {
        start: Instant::now(),
        arrived: AtomicUsize::new(0),
        latest_ns: AtomicU64::new(0),
        sum_ns: AtomicU64::new(0),
    });
    let mut tag = 0;
    println!(
        "fan-out: {} rounds per row, {}-byte text message",
        options.rounds, options.payload
    );
    // Baseline: a group of one.
    join_members(&options, "solo", 1, &round).await?;
    measure(&options, "solo", 1, &round, &mut tag).await?;
    let started = Instant::now();
    join_members(&options, "crowd", options.members, &round).await?;
    println!(
        "connected {} members in {:.1} s",
        options.members,
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    measure(&options, "crowd", options.members, &round, &mut tag).await?;
    Ok(())
}
