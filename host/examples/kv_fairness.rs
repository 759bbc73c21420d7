//! Key-value writer fairness: service B's `kv.set` latency, quiet and while
//! service A writes as fast as it can, on one state file.
//!
//! ```text
//! scripts/bench-kv-fairness.sh   # = cargo run --release -p wasmgate --example kv_fairness -- STATE_DIR
//! ```
//!
//! The store is the gateway's own (`KvStore::open`, redb on disk, one
//! `fsync` per group commit), driven without handlers so that only the
//! writer is measured. A holds `A_CAP` keys, its `kv_max_keys`, and runs
//! `ATTACKERS` writers in a closed loop, each with one write in flight as a
//! handler's `kv.set` has: in phase "at cap" every write is a new key, which
//! the store refuses (2403); in phase "writing" every write replaces one of
//! its keys with a 1 KiB value, which succeeds. B is one writer setting a
//! small value in a closed loop; its p50 and p99 are compared with quiet.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmgate::state::kv::{KvQuota, KvStore};

const PHASE: Duration = Duration::from_secs(5);
const ATTACKERS: usize = 64;
const A_CAP: u64 = 100_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(args.len() == 1, "usage: kv_fairness STATE_DIR");
    let dir =
        std::path::PathBuf::from(&args[0]).join(format!("kv-fairness-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let kv = KvStore::open(&dir.join("state.redb"))?;
    let a: Arc<str> = "a".into();
    let quota = KvQuota {
        max_keys: A_CAP,
        max_bytes: 1 << 30,
    };

    // A fills its quota (many writes in flight, so they share commits).
    let filled = Instant::now();
    let fill: Vec<_> = (0..256u64)
        .map(|task| {
            let (kv, a) = (kv.clone(), a.clone());
            tokio::spawn(async move {
                for n in (task..A_CAP).step_by(256) {
                    kv.set(&a, quota, format!("key/{n:07}"), vec![7; 64], None)
                        .await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in fill {
        task.await??;
    }
    println!(
        "A holds {} keys ({} ms to fill)",
        kv.usage("a").await?.keys,
        filled.elapsed().as_millis()
    );

    let quiet = measure(&kv).await?;
    let at_cap = under_attack(&kv, &a, quota, Attack::AtCap).await?;
    let writing = under_attack(&kv, &a, quota, Attack::Writing).await?;
    drop(kv);

    println!(
        "B kv.set, 1 writer, {} s per phase; A: {ATTACKERS} writers",
        PHASE.as_secs()
    );
    let line = |name: &str, (count, p50, p99): (usize, f64, f64), extra: &str| {
        println!("{name:<10} {count:>7} sets  p50 {p50:>8.1} us  p99 {p99:>8.1} us{extra}");
    };
    line("quiet:", quiet, "");
    line(
        "at cap:",
        at_cap.0,
        &format!("  (A: {} writes, all refused 2403)", at_cap.1),
    );
    line(
        "writing:",
        writing.0,
        &format!("  (A: {} writes of 1 KiB)", writing.1),
    );
    println!(
        "ratio at cap / quiet: p50 {:.2}x, p99 {:.2}x",
        at_cap.0 .1 / quiet.1,
        at_cap.0 .2 / quiet.2
    );
    println!(
        "ratio writing / quiet: p50 {:.2}x, p99 {:.2}x",
        writing.0 .1 / quiet.1,
        writing.0 .2 / quiet.2
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[derive(Clone, Copy)]
enum Attack {
    /// New keys past the cap: every write refused.
    AtCap,
    /// 1 KiB values over existing keys: every write applied.
    Writing,
}

/// Measures B while A's writers run; B's figures and A's write count.
async fn under_attack(
    kv: &KvStore,
    a: &Arc<str>,
    quota: KvQuota,
    attack: Attack,
) -> anyhow::Result<((usize, f64, f64), u64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let attackers: Vec<_> = (0..ATTACKERS as u64)
        .map(|task| {
            let (kv, a, stop, writes) = (kv.clone(), a.clone(), stop.clone(), writes.clone());
            tokio::spawn(async move {
                let mut n = task;
                while !stop.load(Ordering::Relaxed) {
                    let result = match attack {
                        Attack::AtCap => {
                            kv.set(&a, quota, format!("new/{n}"), vec![1; 64], None)
                                .await
                        }
                        Attack::Writing => {
                            let key = format!("key/{:07}", n % A_CAP);
                            kv.set(&a, quota, key, vec![2; 1024], None).await
                        }
                    };
                    match (attack, result) {
                        (Attack::AtCap, Err(e)) if e.code == 2403 => {}
                        (Attack::Writing, Ok(())) => {}
                        (_, other) => anyhow::bail!("unexpected answer to A: {other:?}"),
                    }
                    writes.fetch_add(1, Ordering::Relaxed);
                    n += ATTACKERS as u64;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let figures = measure(kv).await?;
    stop.store(true, Ordering::Relaxed);
    for attacker in attackers {
        attacker.await??;
    }
    Ok((figures, writes.load(Ordering::Relaxed)))
}

/// B sets a small value in a closed loop for one phase; (sets, p50 us, p99 us).
async fn measure(kv: &KvStore) -> anyhow::Result<(usize, f64, f64)> {
    let b: Arc<str> = "b".into();
    let quota = KvQuota {
        max_keys: 1000,
        max_bytes: 1 << 20,
    };
    let deadline = Instant::now() + PHASE;
    let mut latencies = Vec::new();
    let mut i = 0u64;
    while Instant::now() < deadline {
        let sent = Instant::now();
        kv.set(
            &b,
            quota,
            format!("b/{}", i % 100),
            i.to_string().into_bytes(),
            None,
        )
        .await?;
        latencies.push(sent.elapsed());
        i += 1;
    }
    latencies.sort();
    let at = |q: f64| {
        latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)].as_secs_f64()
            * 1e6
    };
    Ok((latencies.len(), at(0.50), at(0.99)))
}
