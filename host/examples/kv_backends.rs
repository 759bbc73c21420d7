//! Key-value operations per second on each backend, in one run: redb (a
//! file on disk, one `fsync` per group commit) and Redis (a local
//! `redis-server` with `appendonly yes`, `appendfsync everysec`); and what a
//! row costs in Redis's memory.
//!
//! ```text
//! scripts/bench-kv.sh   # starts the redis-server, then:
//! cargo run --release -p wasmgate --example kv_backends -- STATE_DIR REDIS_URL
//! ```
//!
//! The store is the gateway's own (`KvStore`), driven without handlers so
//! that only the store is measured. Each operation runs for [`PHASE`] in a
//! closed loop, first with one task (each call waits for the one before:
//! latency-bound, as one handler), then with [`TASKS`] tasks spread over
//! [`SERVICES`] services (throughput; Redis lets one service have 16 calls
//! in flight per node).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmgate::state::kv::{KvQuota, KvStore};

const PHASE: Duration = Duration::from_secs(3);
const TASKS: usize = 64;
const SERVICES: usize = 8;
/// Keys each service's tasks write over and read.
const KEYS: usize = 1000;
/// Rows written to measure Redis's memory per row.
const MEMORY_ROWS: usize = 100_000;

#[derive(Clone, Copy, Debug)]
enum Operation {
    Set,
    Get,
    Increment,
    CompareAndSwap,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(args.len() == 2, "usage: kv_backends STATE_DIR REDIS_URL");
    let dir =
        std::path::PathBuf::from(&args[0]).join(format!("kv-backends-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let backends = [
        ("redb", KvStore::open(&dir.join("state.redb"))?),
        ("redis", KvStore::redis(&args[1])?),
    ];
    println!(
        "ops/s, {} s per figure; 16-byte keys, 64-byte values",
        PHASE.as_secs()
    );
    println!(
        "{:<8}{:<18}{:>14}{:>22}",
        "backend",
        "operation",
        "1 task",
        format!("{TASKS} tasks, {SERVICES} svcs")
    );
    let mut figures = Vec::new();
    for (name, kv) in &backends {
        fill(kv).await?;
        for operation in [
            Operation::Set,
            Operation::Get,
            Operation::Increment,
            Operation::CompareAndSwap,
        ] {
            let one = rate(kv, operation, 1).await?;
            let many = rate(kv, operation, TASKS).await?;
            println!(
                "{name:<8}{:<18}{one:>14.0}{many:>22.0}",
                format!("{operation:?}")
            );
            figures.push((operation, one, many));
        }
    }
    let half = figures.len() / 2;
    for ((operation, redb_one, redb_many), (_, redis_one, redis_many)) in
        figures[..half].iter().zip(&figures[half..])
    {
        println!(
            "redis / redb, {:<16} 1 task {:>5.2}x, {TASKS} tasks {:>5.2}x",
            format!("{operation:?}:"),
            redis_one / redb_one,
            redis_many / redb_many
        );
    }
    drop(backends);
    std::fs::remove_dir_all(&dir)?;

    let (plain, expiring) = memory_per_row(&args[1]).await?;
    println!(
        "Redis memory per row ({MEMORY_ROWS} rows, 16-byte keys, 64-byte values): \
         {plain:.0} bytes; with a time to live {expiring:.0} bytes"
    );
    Ok(())
}

fn service(n: usize) -> Arc<str> {
    format!("bench-{n}").into()
}

fn key(n: usize) -> String {
    format!("key/{n:012}")
}

/// Writes every key the phases use, so reads find values.
async fn fill(kv: &KvStore) -> anyhow::Result<()> {
    for s in 0..SERVICES {
        for n in 0..KEYS {
            kv.set(&service(s), KvQuota::UNLIMITED, key(n), vec![7; 64], None)
                .await?;
        }
    }
    Ok(())
}

/// Calls of `operation` per second by `tasks` tasks in a closed loop.
async fn rate(kv: &KvStore, operation: Operation, tasks: usize) -> anyhow::Result<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..tasks)
        .map(|task| {
            let (kv, stop, done) = (kv.clone(), stop.clone(), done.clone());
            let owner = service(task % SERVICES);
            tokio::spawn(async move {
                let mut n = task;
                while !stop.load(Ordering::Relaxed) {
                    let key = key(n % KEYS);
                    match operation {
                        Operation::Set => {
                            kv.set(&owner, KvQuota::UNLIMITED, key, vec![n as u8; 64], None)
                                .await?;
                        }
                        Operation::Get => {
                            kv.get(&owner, &key).await?;
                        }
                        Operation::Increment => {
                            kv.increment(&owner, KvQuota::UNLIMITED, format!("n/{}", n % 8), 1)
                                .await?;
                        }
                        Operation::CompareAndSwap => {
                            // Conflicts are answers too: each call is counted.
                            let current = kv.get(&owner, &key).await?;
                            kv.compare_and_swap(
                                &owner,
                                KvQuota::UNLIMITED,
                                key,
                                current,
                                vec![1; 64],
                            )
                            .await?;
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    n += tasks;
                    // A read that redb answers from its cache never waits:
                    // yield, or the timer that ends the phase never runs.
                    tokio::task::yield_now().await;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    tokio::time::sleep(PHASE).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// Redis's `used_memory` now.
async fn used_memory(redis: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<f64> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(redis).await?;
    let used = info
        .lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .ok_or_else(|| anyhow::anyhow!("no used_memory in INFO"))?;
    Ok(used.trim().parse()?)
}

/// Bytes of Redis memory per row, without and with a time to live, from
/// `used_memory` before and after writing [`MEMORY_ROWS`] rows.
async fn memory_per_row(url: &str) -> anyhow::Result<(f64, f64)> {
    let kv = KvStore::redis(url)?;
    let mut redis = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let mut per_row = Vec::new();
    for (name, ttl) in [
        ("memory-plain", None),
        ("memory-ttl", Some(Duration::from_secs(3600))),
    ] {
        let owner: Arc<str> = name.into();
        let before = used_memory(&mut redis).await?;
        let writers: Vec<_> = (0..16)
            .map(|task| {
                let (kv, owner) = (kv.clone(), owner.clone());
                tokio::spawn(async move {
                    for n in (task..MEMORY_ROWS).step_by(16) {
                        kv.set(&owner, KvQuota::UNLIMITED, key(n), vec![7; 64], ttl)
                            .await?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for writer in writers {
            writer.await??;
        }
        let after = used_memory(&mut redis).await?;
        per_row.push((after - before) / MEMORY_ROWS as f64);
    }
    Ok((per_row[0], per_row[1]))
}
