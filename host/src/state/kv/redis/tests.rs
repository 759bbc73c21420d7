//! What only the Redis backend has: its keys in Redis, expired rows that
//! stop counting at the next write, pages bounded by a look-up budget,
//! several nodes on one Redis, Redis going away and coming back, and each
//! service's turns at the connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::redis_server::RedisServer;
use super::super::KvStore;
use super::*;

fn svc(name: &str) -> Arc<str> {
    name.into()
}

fn server(name: &str) -> RedisServer {
    RedisServer::start(
        &std::env::temp_dir().join(format!("wasmgate-kv-redis-{}-{name}", std::process::id())),
    )
}

/// A plain connection to look at what the backend wrote.
async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Every key in Redis, sorted (a test may scan; the backend never does).
async fn all_keys(server: &RedisServer) -> Vec<String> {
    let mut redis = raw(server).await;
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut redis)
        .await
        .unwrap();
    keys.sort();
    keys
}

#[tokio::test]
async fn a_services_rows_live_under_its_length_prefixed_name() {
    let server = server("layout");
    let backend = RedisBackend::open(&server.url()).unwrap();
    let quota = KvQuota::UNLIMITED;
    backend
        .set(&svc("a:b"), quota, "k:1".into(), b"x".to_vec(), None)
        .await
        .unwrap();
    let ttl = Some(Duration::from_secs(60));
    backend
        .set(&svc("a"), quota, "b:v:k".into(), b"yy".to_vec(), ttl)
        .await
        .unwrap();
    assert_eq!(
        all_keys(&server).await,
        [
            "wasmgate:kv:1:a:expiry",
            "wasmgate:kv:1:a:keys",
            "wasmgate:kv:1:a:lengths",
            "wasmgate:kv:1:a:usage",
            "wasmgate:kv:1:a:v:b:v:k",
            "wasmgate:kv:3:a:b:keys",
            "wasmgate:kv:3:a:b:usage",
            "wasmgate:kv:3:a:b:v:k:1",
        ]
    );
    // Deleting the last row leaves nothing behind: no usage, no index.
    assert!(backend.delete(&svc("a"), "b:v:k".into()).await.unwrap());
    assert!(backend.delete(&svc("a:b"), "k:1".into()).await.unwrap());
    assert_eq!(all_keys(&server).await, Vec::<String>::new());
}

#[tokio::test]
async fn expired_rows_stop_counting_at_the_services_next_write() {
    let server = server("sweep");
    let backend = RedisBackend::open(&server.url()).unwrap();
    let (a, b) = (svc("a"), svc("b"));
    let ttl = Some(Duration::from_millis(1000));
    for n in 0..scripts::SWEEP_BATCH + 6 {
        backend
            .set(&a, KvQuota::UNLIMITED, format!("t{n}"), b"v".to_vec(), ttl)
            .await
            .unwrap();
    }
    backend
        .set(&b, KvQuota::UNLIMITED, "t".into(), b"v".to_vec(), ttl)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    // Expired, so absent at once; still counted until a write of the
    // service removes them, a bounded batch at a time.
    assert_eq!(
        backend.list_keys("a", "", None).await.unwrap().keys.len(),
        0
    );
    assert_eq!(
        backend.usage("a").await.unwrap().keys,
        scripts::SWEEP_BATCH as u64 + 6
    );
    backend
        .set(&a, KvQuota::UNLIMITED, "kept".into(), b"v".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(backend.usage("a").await.unwrap().keys, 7);
    backend.delete(&a, "nothing".into()).await.unwrap();
    assert_eq!(
        backend.usage("a").await.unwrap(),
        KvUsage { keys: 1, bytes: 5 }
    );
    // Another service's expired row waits for that service's own write.
    assert_eq!(backend.usage("b").await.unwrap().keys, 1);
}

#[tokio::test]
async fn a_page_among_many_expired_rows_stops_at_its_budget_and_goes_on() {
    let server = server("budget");
    let backend = RedisBackend::open(&server.url()).unwrap();
    let a = svc("a");
    // Expired rows between live ones: a page looks at no more than its
    // budget, then hands back a cursor.
    let expired = LIST_LOOK_UP_BUDGET + 1000;
    let mut pipe = redis::pipe();
    for n in 0..expired {
        // Written as the scripts write rows, without a sweep on each write.
        let key = format!("e{n:06}");
        pipe.zadd("wasmgate:kv:1:a:keys", &key, 0).ignore();
        pipe.zadd("wasmgate:kv:1:a:expiry", &key, 1).ignore();
        pipe.hset("wasmgate:kv:1:a:lengths", &key, 0).ignore();
    }
    pipe.hset("wasmgate:kv:1:a:usage", "keys", expired).ignore();
    pipe.hset("wasmgate:kv:1:a:usage", "bytes", expired * 7)
        .ignore();
    pipe.query_async::<()>(&mut raw(&server).await)
        .await
        .unwrap();
    for key in ["a", "z"] {
        // Each write removes a batch of the expired rows, not all.
        backend
            .set(&a, KvQuota::UNLIMITED, key.into(), b"v".to_vec(), None)
            .await
            .unwrap();
    }
    let first = backend.list_keys("a", "", None).await.unwrap();
    assert_eq!(first.keys, ["a"]);
    let cursor = first.cursor.expect("the budget ran out first");
    let mut keys = first.keys;
    let mut next = Some(cursor);
    while let Some(cursor) = next {
        let page = backend.list_keys("a", "", Some(&cursor)).await.unwrap();
        keys.extend(page.keys);
        next = page.cursor;
    }
    assert_eq!(keys, ["a", "z"]);
    let entries = backend.list_entries("a", "z", None).await.unwrap();
    assert_eq!(entries.entries, [("z".to_owned(), b"v".to_vec())]);
}

#[tokio::test]
async fn nodes_on_one_redis_share_rows_and_their_swaps_and_counters_are_atomic() {
    let server = server("nodes");
    let nodes: Vec<KvStore> = (0..3)
        .map(|_| KvStore::redis(&server.url()).unwrap())
        .collect();
    let a = svc("a");
    nodes[0]
        .set(&a, KvQuota::UNLIMITED, "k".into(), b"from 0".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(
        nodes[2].get("a", "k").await.unwrap(),
        Some(b"from 0".to_vec())
    );
    let racers: Vec<_> = (0..60)
        .map(|n| {
            let (kv, a) = (nodes[n % 3].clone(), a.clone());
            tokio::spawn(async move {
                kv.increment(&a, KvQuota::UNLIMITED, "n".into(), 1)
                    .await
                    .unwrap();
                kv.compare_and_swap(&a, KvQuota::UNLIMITED, "lock".into(), None, vec![n as u8])
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut won = 0;
    for racer in racers {
        won += usize::from(racer.await.unwrap());
    }
    assert_eq!(won, 1);
    assert_eq!(nodes[1].get("a", "n").await.unwrap(), Some(b"60".to_vec()));
    // Quotas count every node's writes.
    let quota = KvQuota {
        max_keys: 4,
        max_bytes: u64::MAX,
    };
    nodes[1]
        .set(&a, quota, "fourth".into(), vec![], None)
        .await
        .unwrap();
    let refused = nodes[2].set(&a, quota, "fifth".into(), vec![], None).await;
    assert_eq!(refused.unwrap_err().code, 2403);
}

#[tokio::test]
async fn with_redis_gone_every_operation_answers_2410_at_once_and_recovers_by_itself() {
    let mut server = server("down");
    let kv = KvStore::redis(&server.url()).unwrap();
    let a = svc("a");
    kv.set(&a, KvQuota::UNLIMITED, "k".into(), b"v".to_vec(), None)
        .await
        .unwrap();
    server.kill();
    let started = Instant::now();
    let errors = [
        kv.get("a", "k").await.unwrap_err(),
        kv.set(&a, KvQuota::UNLIMITED, "k".into(), b"w".to_vec(), None)
            .await
            .unwrap_err(),
        kv.increment(&a, KvQuota::UNLIMITED, "n".into(), 1)
            .await
            .unwrap_err(),
        kv.list_keys("a", "", None).await.unwrap_err(),
        kv.usage("a").await.unwrap_err(),
    ];
    for error in &errors {
        assert_eq!((error.code, error.status.as_u16()), (2410, 503), "{error}");
    }
    // Each within the command timeout (a hang guard, with room to spare).
    assert!(
        started.elapsed() < COMMAND_TIMEOUT * 5 * 3,
        "{:?}",
        started.elapsed()
    );
    server.run();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match kv
            .set(&a, KvQuota::UNLIMITED, "k".into(), b"back".to_vec(), None)
            .await
        {
            Ok(()) => break,
            Err(error) => assert_eq!(error.code, 2410, "{error}"),
        }
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(kv.get("a", "k").await.unwrap(), Some(b"back".to_vec()));
}

#[tokio::test]
async fn a_service_holds_at_most_its_share_of_turns_and_another_gets_one_at_once() {
    let turns = Turns::default();
    let mut busy = Vec::new();
    for _ in 0..IN_FLIGHT_PER_SERVICE {
        busy.push(turns.take("busy").await);
    }
    // The next command of the busy service waits for one of its own to end.
    let waiting = tokio::time::timeout(Duration::from_millis(50), turns.take("busy")).await;
    assert!(waiting.is_err());
    // Another service's command goes at once.
    let quiet = tokio::time::timeout(Duration::from_secs(5), turns.take("quiet")).await;
    assert!(quiet.is_ok());
    busy.pop();
    let next = tokio::time::timeout(Duration::from_secs(5), turns.take("busy")).await;
    assert!(next.is_ok());
}

#[test]
fn prefixes_and_cursors_become_byte_ranges() {
    let range = |prefix, cursor| {
        let (low, high) = lex_range(prefix, cursor);
        (
            String::from_utf8_lossy(&low).into_owned(),
            String::from_utf8_lossy(&high).into_owned(),
        )
    };
    assert_eq!(range("", None), ("[".into(), "+".into()));
    assert_eq!(range("u/", None), ("[u/".into(), "(u/\u{fffd}".into()));
    assert_eq!(
        range("u/", Some("u/7")),
        ("(u/7".into(), "(u/\u{fffd}".into())
    );
    // A cursor before the prefix starts at the prefix.
    assert_eq!(range("u/", Some("a")), ("[u/".into(), "(u/\u{fffd}".into()));
}
