//! Cluster push benchmark: reverse pushes to one client, through the
//! client's own node and through another node, latency and throughput;
//! and what each push, connection and broadcast costs Redis.
//!
//! ```text
//! scripts/bench-cluster.sh   # three nodes and one redis-server on this machine
//! ```
//!
//! Expects running cluster nodes (`--node PUBLIC,CONTROL`, repeated) whose
//! service `--service` runs the test `probe` handler, and optionally a
//! gateway outside the cluster with the same service (`--single
//! PUBLIC,CONTROL`), the baseline. One client connects to the last node
//! (to the single gateway for the baseline) and learns its id (`info`).
//! Then, through the single gateway's control listener (baseline), the
//! last node's (same node) and the first's (cross node): `--pushes` pushes
//! one after the other, each timed from before the request to the
//! client's receipt (p50, p99); then as many again with `--in-flight`
//! requests at once, for the throughput. Then `--members`
//! clients connect, spread over the nodes, each joined to a group by
//! register (`?join=`), `--broadcasts` reverse-push broadcasts go to them
//! through the first node, and they close. Redis's `INFO commandstats`
//! (`--redis`), read before and after each phase, less what the nodes'
//! leases cost in the same time (measured idle first), gives the
//! commands per push, per connection and per broadcast. Prints `RESULT`
//! lines.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use common::{ask, Client};

struct Options {
    /// (public, control) of each node.
    nodes: Vec<(SocketAddr, SocketAddr)>,
    /// (public, control) of a gateway outside the cluster: the baseline.
    single: Option<(SocketAddr, SocketAddr)>,
    service: String,
    pushes: usize,
    in_flight: usize,
    redis: String,
    members: usize,
    broadcasts: usize,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        nodes: Vec::new(),
        single: None,
        service: "fan".into(),
        pushes: 1000,
        in_flight: 16,
        redis: "redis://127.0.0.1:6379".into(),
        members: 300,
        broadcasts: 200,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--node" => options.nodes.push(addresses(&value)?),
            "--single" => options.single = Some(addresses(&value)?),
            "--service" => options.service = value,
            "--pushes" => options.pushes = value.parse()?,
            "--in-flight" => options.in_flight = value.parse()?,
            "--redis" => options.redis = value,
            "--members" => options.members = value.parse()?,
            "--broadcasts" => options.broadcasts = value.parse()?,
            other => anyhow::bail!(
                "unknown flag {other}; flags: --node --single --service --pushes --in-flight --redis --members --broadcasts"
            ),
        }
    }
    anyhow::ensure!(options.nodes.len() >= 2, "give two --node or more");
    Ok(options)
}

/// `PUBLIC,CONTROL`.
fn addresses(value: &str) -> anyhow::Result<(SocketAddr, SocketAddr)> {
    let (public, control) = value
        .split_once(',')
        .ok_or_else(|| anyhow::anyhow!("give PUBLIC,CONTROL"))?;
    Ok((public.parse()?, control.parse()?))
}

/// The next text message the client gets (pings skipped, 5 s at most).
async fn next_text(client: &mut Client) -> anyhow::Result<String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), client.next()).await? {
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => anyhow::bail!("connection ended: {other:?}"),
        }
    }
}

/// Pushes `text` to `id` through `control`.
async fn push(
    http: &reqwest::Client,
    control: SocketAddr,
    service: &str,
    id: &str,
    text: &str,
) -> anyhow::Result<()> {
    let body = serde_json::json!({"websocket": {
        "action": "data send", "secConnectionID": id, "dataType": "text", "data": text,
    }});
    let response = http
        .post(format!("http://{control}/push/{service}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "push answered {}",
        response.status()
    );
    Ok(())
}

/// Commands Redis has run (scripts' commands included), as `INFO
/// commandstats` counts them.
struct Commands {
    redis: redis::aio::MultiplexedConnection,
    /// Commands per second while nothing but the leases runs.
    idle_rate: f64,
}

impl Commands {
    async fn total(&mut self) -> anyhow::Result<u64> {
        let stats: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut self.redis)
            .await?;
        let calls = stats
            .lines()
            .filter(|line| line.starts_with("cmdstat_"))
            .filter_map(|line| {
                line.split("calls=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum();
        Ok(calls)
    }

    /// Runs `phase`, and gives the commands it cost Redis, the leases'
    /// share (and this reading's own INFO) taken out.
    async fn during<T>(
        &mut self,
        phase: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<(T, f64)> {
        let before = self.total().await?;
        let started = Instant::now();
        let value = phase.await?;
        let elapsed = started.elapsed().as_secs_f64();
        let spent = (self.total().await? - before) as f64 - 1.0 - self.idle_rate * elapsed;
        Ok((value, spent.max(0.0)))
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    let http = reqwest::Client::new();
    let redis = redis::Client::open(options.redis.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let mut commands = Commands {
        redis,
        idle_rate: 0.0,
    };
    let (_, idle) = commands
        .during(async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            anyhow::Ok(())
        })
        .await?;
    commands.idle_rate = (idle + 1.0) / 5.0;
    println!(
        "RESULT phase=idle redis_commands_per_s={:.1}",
        commands.idle_rate
    );
    let (public, own_control) = *options.nodes.last().unwrap();
    let mut paths = Vec::new();
    if let Some((single_public, single_control)) = options.single {
        paths.push(("single-node", single_public, single_control));
    }
    paths.push(("same-node", public, own_control));
    paths.push(("cross-node", public, options.nodes[0].1));
    for (path, public, control) in paths {
        push_path(&options, &http, &mut commands, path, public, control).await?;
    }
    members_phase(&options, &http, &mut commands).await
}

/// One client on `public`, pushes to it through `control`: latency one
/// after the other, then throughput with `in_flight` at once.
async fn push_path(
    options: &Options,
    http: &reqwest::Client,
    commands: &mut Commands,
    path: &str,
    public: SocketAddr,
    control: SocketAddr,
) -> anyhow::Result<()> {
    let (mut client, _) =
        tokio_tungstenite::connect_async(format!("ws://{public}/ws/{}", options.service)).await?;
    let info: serde_json::Value = serde_json::from_str(&ask(&mut client, "info").await?)?;
    let id = info["connectionId"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no connectionId in {info}"))?
        .to_owned();
    let service = options.service.as_str();
    for n in 0..100 {
        push(http, control, service, &id, &format!("warm {n}")).await?;
        next_text(&mut client).await?;
    }
    let mut latencies = Vec::with_capacity(options.pushes);
    let ((), spent) = commands
        .during(async {
            for n in 0..options.pushes {
                let text = format!("{path} {n}");
                let sent = Instant::now();
                push(http, control, service, &id, &text).await?;
                anyhow::ensure!(next_text(&mut client).await? == text, "out of order");
                latencies.push(sent.elapsed().as_secs_f64() * 1e3);
            }
            Ok(())
        })
        .await?;
    latencies.sort_by(f64::total_cmp);
    // Throughput: `in_flight` senders, the client reading meanwhile.
    let started = Instant::now();
    let id = Arc::new(id.clone());
    let mut senders = Vec::new();
    for sender in 0..options.in_flight {
        let (http, id, service) = (http.clone(), id.clone(), options.service.clone());
        let count = options.pushes / options.in_flight;
        senders.push(tokio::spawn(async move {
            for n in 0..count {
                push(&http, control, &service, &id, &format!("{sender}/{n}")).await?;
            }
            anyhow::Ok(count)
        }));
    }
    let mut expected = 0;
    for sender in senders {
        expected += sender.await??;
    }
    for _ in 0..expected {
        next_text(&mut client).await?;
    }
    let rate = expected as f64 / started.elapsed().as_secs_f64();
    println!(
        "RESULT path={path} pushes={} p50_ms={:.3} p99_ms={:.3} in_flight={} pushes_per_s={rate:.0} redis_commands_per_push={:.2}",
        options.pushes,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        options.in_flight,
        spent / options.pushes as f64,
    );
    Ok(())
}

/// Members connect over every node (joined to a group by register), get
/// broadcasts through the first node, and close: Redis commands of each.
async fn members_phase(
    options: &Options,
    http: &reqwest::Client,
    commands: &mut Commands,
) -> anyhow::Result<()> {
    let path = format!("/ws/{}?join=bench", options.service);
    let (mut members, connecting) = commands
        .during(async {
            let mut members = Vec::with_capacity(options.members);
            for n in 0..options.members {
                let (public, _) = options.nodes[n % options.nodes.len()];
                let (client, _) =
                    tokio_tungstenite::connect_async(format!("ws://{public}{path}")).await?;
                members.push(client);
            }
            anyhow::Ok(members)
        })
        .await?;
    let control = options.nodes[0].1;
    let ((), broadcasting) = commands
        .during(async {
            for n in 0..options.broadcasts {
                let body = serde_json::json!({"websocket": {
                    "action": "data broadcast", "group": "bench", "dataType": "text",
                    "data": format!("round {n}"),
                }});
                let response = http
                    .post(format!("http://{control}/push/{}", options.service))
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await?;
                anyhow::ensure!(
                    response.status().is_success(),
                    "broadcast answered {}",
                    response.status()
                );
                for member in &mut members {
                    anyhow::ensure!(next_text(member).await? == format!("round {n}"));
                }
            }
            Ok(())
        })
        .await?;
    let ((), closing) = commands
        .during(async {
            for mut member in members {
                member.close(None).await?;
                // Until the gateway's close frame: the cleanup is under way.
                while let Some(Ok(_)) = member.next().await {}
            }
            // The registry's last writes.
            tokio::time::sleep(Duration::from_millis(500)).await;
            anyhow::Ok(())
        })
        .await?;
    println!(
        "RESULT phase=members members={} nodes={} redis_commands_per_connect={:.2} per_broadcast={:.2} per_close={:.2}",
        options.members,
        options.nodes.len(),
        connecting / options.members as f64,
        broadcasting / options.broadcasts as f64,
        closing / options.members as f64,
    );
    Ok(())
}
