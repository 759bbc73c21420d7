//! The key-value contract, tested through [`KvStore`]: namespaces, pages,
//! atomic counters, expiry, limits, hostile keys and values. Each behaviour
//! is a function of a fresh store, run on both backends by
//! `on_both_backends!`: redb in memory, and Redis (a `redis-server` of the
//! test's own on a free port).

use super::redis_server::RedisServer;
use super::*;
use std::time::Duration;

/// A store on a fresh `redis-server` for the test `name`, and the server.
fn redis_store(name: &str) -> (KvStore, RedisServer) {
    let dir = std::env::temp_dir().join(format!("wasmgate-kv-{}-{name}", std::process::id()));
    let server = RedisServer::start(&dir);
    (KvStore::redis(&server.url()).unwrap(), server)
}

/// Runs each behaviour on a fresh store of each backend, as the tests
/// `redb::<behaviour>` and `redis::<behaviour>`.
macro_rules! on_both_backends {
    ($($behaviour:ident),* $(,)?) => {
        mod redb {
            $(
                #[tokio::test]
                async fn $behaviour() {
                    super::$behaviour(super::KvStore::in_memory().unwrap()).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $behaviour() {
                    let (kv, _server) = super::redis_store(stringify!($behaviour));
                    super::$behaviour(kv).await;
                }
            )*
        }
    };
}

on_both_backends!(
    set_get_delete_and_namespaces,
    lists_by_prefix_in_pages_within_the_service,
    counters_and_compare_and_swap_are_atomic,
    expiry_limits_and_quota,
    usage_counts_keys_and_bytes_through_every_kind_of_write,
    a_service_at_its_byte_limit_fails_alone,
    a_service_hammering_at_its_key_cap_fails_alone,
    entries_and_many_keys_come_from_one_read_within_bounds,
    hostile_keys_and_service_names_never_reach_another_service,
    the_largest_values_and_any_bytes_round_trip,
    ten_thousand_keys_page_in_byte_order,
    counters_read_decimal_text_and_keep_their_expiry,
    racing_compare_and_swaps_count_every_success_once,
    an_expired_key_is_absent_everywhere_and_new_when_written_again,
);

fn svc(name: &str) -> Arc<str> {
    name.into()
}

/// A quota of `max_keys` keys and no byte limit.
fn keys(max_keys: u64) -> KvQuota {
    KvQuota {
        max_keys,
        ..KvQuota::UNLIMITED
    }
}

async fn set_get_delete_and_namespaces(kv: KvStore) {
    let (a, b) = (svc("a"), svc("b"));
    kv.set(&a, keys(10), "k".into(), b"1".to_vec(), None)
        .await
        .unwrap();
    kv.set(&b, keys(10), "k".into(), b"2".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(kv.get("a", "k").await.unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(kv.get("b", "k").await.unwrap().as_deref(), Some(&b"2"[..]));
    assert!(kv.exists("a", "k").await.unwrap());
    assert!(!kv.exists("c", "k").await.unwrap());
    assert!(kv.delete(&a, "k".into()).await.unwrap());
    assert!(!kv.exists("a", "k").await.unwrap());
    assert!(!kv.delete(&a, "k".into()).await.unwrap());
    assert_eq!(kv.get("a", "k").await.unwrap(), None);
    assert_eq!(kv.get("b", "k").await.unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(kv.usage("a").await.unwrap(), KvUsage::default());
    assert_eq!(kv.usage("b").await.unwrap(), KvUsage { keys: 1, bytes: 2 });
}

async fn lists_by_prefix_in_pages_within_the_service(kv: KvStore) {
    let a = svc("a");
    for i in 0..(LIST_PAGE_KEYS + 5) {
        kv.set(&a, keys(u64::MAX), format!("user/{i:05}"), vec![], None)
            .await
            .unwrap();
    }
    kv.set(&a, keys(u64::MAX), "users".into(), vec![], None)
        .await
        .unwrap();
    kv.set(&svc("a2"), keys(9), "user/x".into(), vec![], None)
        .await
        .unwrap();
    let first = kv.list_keys("a", "user/", None).await.unwrap();
    assert_eq!(first.keys.len(), LIST_PAGE_KEYS);
    assert_eq!(first.keys[0], "user/00000");
    let second = kv
        .list_keys("a", "user/", first.cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(second.keys.len(), 5);
    assert_eq!(second.cursor, None);
    assert!(second.keys.iter().all(|k| k.starts_with("user/0")));
}

async fn counters_and_compare_and_swap_are_atomic(kv: KvStore) {
    let a = svc("a");
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (kv, a) = (kv.clone(), a.clone());
            tokio::spawn(async move { kv.increment(&a, keys(10), "n".into(), 2).await.unwrap() })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        kv.get("a", "n").await.unwrap().as_deref(),
        Some(&b"100"[..])
    );
    kv.set(&a, keys(10), "s".into(), b"x".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(
        kv.increment(&a, keys(10), "s".into(), 1)
            .await
            .unwrap_err()
            .code,
        2404
    );
    assert!(!kv
        .compare_and_swap(&a, keys(10), "s".into(), None, b"y".to_vec())
        .await
        .unwrap());
    assert!(kv
        .compare_and_swap(&a, keys(10), "s".into(), Some(b"x".to_vec()), b"y".to_vec())
        .await
        .unwrap());
    assert!(kv
        .compare_and_swap(&a, keys(10), "new".into(), None, b"1".to_vec())
        .await
        .unwrap());
}

async fn expiry_limits_and_quota(kv: KvStore) {
    let a = svc("a");
    kv.set(
        &a,
        keys(2),
        "t".into(),
        b"v".to_vec(),
        Some(Duration::from_millis(30)),
    )
    .await
    .unwrap();
    kv.set(&a, keys(2), "u".into(), b"v".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(
        kv.set(&a, keys(2), "w".into(), vec![], None)
            .await
            .unwrap_err()
            .code,
        2403
    );
    assert!(kv.exists("a", "t").await.unwrap());
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(kv.get("a", "t").await.unwrap(), None);
    assert!(!kv.exists("a", "t").await.unwrap());
    // The expired row is swept to make room.
    kv.set(&a, keys(2), "w".into(), vec![], None).await.unwrap();
    assert_eq!(kv.usage("a").await.unwrap().keys, 2);
    assert_eq!(
        kv.set(&a, keys(2), String::new(), vec![], None)
            .await
            .unwrap_err()
            .code,
        2401
    );
    assert_eq!(
        kv.set(&a, keys(2), "k".repeat(MAX_KEY_BYTES + 1), vec![], None)
            .await
            .unwrap_err()
            .code,
        2401
    );
    assert_eq!(
        kv.set(&a, keys(2), "u".into(), vec![0; MAX_VALUE_BYTES + 1], None)
            .await
            .unwrap_err()
            .code,
        2402
    );
}

#[tokio::test]
async fn survives_reopening() {
    let dir = std::env::temp_dir().join(format!("wasmgate-kv-{}", std::process::id()));
    let path = dir.join("state.redb");
    let _ = std::fs::remove_dir_all(&dir);
    {
        let kv = KvStore::open(&path).unwrap();
        kv.set(&svc("a"), keys(10), "k".into(), b"kept".to_vec(), None)
            .await
            .unwrap();
    }
    // The writer thread lets go of the file once its channel closes.
    let mut reopened = None;
    for _ in 0..100 {
        match KvStore::open(&path) {
            Ok(kv) => {
                reopened = Some(kv);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let kv = reopened.expect("the store reopens");
    assert_eq!(
        kv.get("a", "k").await.unwrap().as_deref(),
        Some(&b"kept"[..])
    );
    std::fs::remove_dir_all(dir).unwrap();
}

async fn usage_counts_keys_and_bytes_through_every_kind_of_write(kv: KvStore) {
    let a = svc("a");
    let usage = || async { kv.usage("a").await.unwrap() };
    kv.set(&a, keys(10), "k".into(), b"12345".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(usage().await, KvUsage { keys: 1, bytes: 6 });
    // Replacing counts the new value instead of the old one.
    kv.set(&a, keys(10), "k".into(), b"12".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(usage().await, KvUsage { keys: 1, bytes: 3 });
    kv.increment(&a, keys(10), "n".into(), 100).await.unwrap();
    assert_eq!(usage().await, KvUsage { keys: 2, bytes: 7 });
    kv.compare_and_swap(&a, keys(10), "n".into(), Some(b"100".to_vec()), vec![])
        .await
        .unwrap();
    assert_eq!(usage().await, KvUsage { keys: 2, bytes: 4 });
    assert!(kv.delete(&a, "k".into()).await.unwrap());
    assert_eq!(usage().await, KvUsage { keys: 1, bytes: 1 });
    assert!(kv.delete(&a, "n".into()).await.unwrap());
    assert_eq!(usage().await, KvUsage::default());
}

async fn a_service_at_its_byte_limit_fails_alone(kv: KvStore) {
    let (attacker, victim) = (svc("attacker"), svc("victim"));
    let small = KvQuota {
        max_keys: 1000,
        max_bytes: 100,
    };
    // 10 bytes a row (key "kNN" + 7-byte value): ten fit, the eleventh not.
    for n in 0..10 {
        kv.set(&attacker, small, format!("k{n:02}"), vec![0; 7], None)
            .await
            .unwrap();
    }
    let refused = kv
        .set(&attacker, small, "k10".into(), vec![0; 7], None)
        .await
        .unwrap_err();
    assert_eq!(refused.code, 2408, "{refused:?}");
    // Growing an existing row is refused too; shrinking is not.
    let grow = kv.set(&attacker, small, "k00".into(), vec![0; 8], None);
    assert_eq!(grow.await.unwrap_err().code, 2408);
    kv.set(&attacker, small, "k00".into(), vec![0; 2], None)
        .await
        .unwrap();
    assert_eq!(
        kv.increment(&attacker, small, "c".into(), 1).await.unwrap(),
        1
    );
    assert_eq!(
        kv.usage("attacker").await.unwrap(),
        KvUsage {
            keys: 11,
            bytes: 95 + 2
        }
    );
    // The other service writes as much as its own quota allows.
    for n in 0..50 {
        kv.set(&victim, keys(1000), format!("v{n}"), vec![1; 1000], None)
            .await
            .unwrap();
    }
    assert_eq!(kv.usage("victim").await.unwrap().keys, 50);
    assert!(kv.exists("victim", "v49").await.unwrap());
}

/// A service hammering the store at its key cap, with many writes in flight
/// at once, fails every new key; another service's writes all succeed.
async fn a_service_hammering_at_its_key_cap_fails_alone(kv: KvStore) {
    let (attacker, victim) = (svc("attacker"), svc("victim"));
    for n in 0..100 {
        kv.set(&attacker, keys(100), format!("k{n}"), vec![0; 100], None)
            .await
            .unwrap();
    }
    let hammer: Vec<_> = (0..500)
        .map(|n| {
            let (kv, attacker) = (kv.clone(), attacker.clone());
            tokio::spawn(async move {
                kv.set(&attacker, keys(100), format!("new{n}"), vec![0; 100], None)
                    .await
            })
        })
        .collect();
    for n in 0..20 {
        kv.set(&victim, keys(100), format!("v{n}"), b"ok".to_vec(), None)
            .await
            .unwrap();
    }
    for write in hammer {
        assert_eq!(write.await.unwrap().unwrap_err().code, 2403);
    }
    assert_eq!(kv.usage("attacker").await.unwrap().keys, 100);
    assert_eq!(kv.usage("victim").await.unwrap().keys, 20);
}

async fn entries_and_many_keys_come_from_one_read_within_bounds(kv: KvStore) {
    let (a, b) = (svc("a"), svc("b"));
    for (key, value) in [("vote/x", "1"), ("vote/y", "2"), ("votes", "3")] {
        kv.set(&a, keys(100), key.into(), value.into(), None)
            .await
            .unwrap();
    }
    kv.set(&b, keys(100), "vote/z".into(), b"9".to_vec(), None)
        .await
        .unwrap();
    kv.set(
        &a,
        keys(100),
        "vote/gone".into(),
        b"0".to_vec(),
        Some(Duration::from_millis(1)),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    // Another service's key and an expired one are never read.
    let page = kv.list_entries("a", "vote/", None).await.unwrap();
    assert_eq!(
        page.entries,
        vec![
            ("vote/x".to_owned(), b"1".to_vec()),
            ("vote/y".to_owned(), b"2".to_vec())
        ]
    );
    assert_eq!(page.cursor, None);
    let values = kv
        .get_many(
            "a",
            &[
                "votes".into(),
                "vote/z".into(),
                "vote/gone".into(),
                "vote/x".into(),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        values,
        vec![Some(b"3".to_vec()), None, None, Some(b"1".to_vec())]
    );
    // Bounds: keys checked, at most 1000 of them, and 8 MiB of values.
    assert_eq!(
        kv.get_many("a", &[String::new()]).await.unwrap_err().code,
        2401
    );
    let many: Vec<String> = (0..=GET_MANY_KEYS).map(|i| format!("k{i}")).collect();
    assert_eq!(kv.get_many("a", &many).await.unwrap_err().code, 2409);
    let big = vec![7u8; MAX_VALUE_BYTES];
    let count = READ_MANY_BYTES / MAX_VALUE_BYTES + 1;
    let big_keys: Vec<String> = (0..count).map(|i| format!("big/{i:02}")).collect();
    for key in &big_keys {
        kv.set(&a, KvQuota::UNLIMITED, key.clone(), big.clone(), None)
            .await
            .unwrap();
    }
    assert_eq!(kv.get_many("a", &big_keys).await.unwrap_err().code, 2409);
    // A page of entries stops at the byte bound and goes on from its cursor.
    let first = kv.list_entries("a", "big/", None).await.unwrap();
    assert_eq!(first.entries.len(), READ_MANY_BYTES / MAX_VALUE_BYTES);
    let rest = kv
        .list_entries("a", "big/", first.cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(rest.entries.len(), 1);
    assert_eq!(rest.entries[0].0, big_keys[count - 1]);
    assert_eq!(rest.cursor, None);
}

/// Keys full of the characters a store might give a meaning (`:`, `*`,
/// `?`, `[`, the names a backend uses for its own bookkeeping) and service
/// names that extend one another reach their own rows only.
async fn hostile_keys_and_service_names_never_reach_another_service(kv: KvStore) {
    let hostile = [
        "*",
        "?",
        "[a-z]",
        "a:b",
        ":",
        "v:x",
        "keys",
        "usage",
        "expiry",
        "lengths",
        "scratch",
        "wasmgate:kv:1:b:v:x",
        "ключ/🔑",
        "\\",
        "\u{0}",
    ];
    let long = "k".repeat(MAX_KEY_BYTES);
    // "a" with key "b:v:x", "a:b" with key "v:x", "1:a" (a name the
    // length prefix could be mistaken for) with key "x": each its own.
    let services = ["a", "a:b", "1:a", "a:v", "b"];
    for service in services {
        let owner = svc(service);
        for key in hostile.iter().copied().chain([long.as_str(), "b:v:x", "x"]) {
            let value = format!("{service}|{key}").into_bytes();
            kv.set(&owner, KvQuota::UNLIMITED, key.into(), value, None)
                .await
                .unwrap();
        }
    }
    for service in services {
        for key in hostile.iter().copied().chain([long.as_str(), "b:v:x", "x"]) {
            let value = kv.get(service, key).await.unwrap();
            assert_eq!(
                value,
                Some(format!("{service}|{key}").into_bytes()),
                "{service} {key:?}"
            );
        }
        let listed = kv.list_keys(service, "", None).await.unwrap();
        assert_eq!(listed.keys.len(), hostile.len() + 3, "{service}");
        assert_eq!(listed.cursor, None);
        let entries = kv.list_entries(service, "", None).await.unwrap().entries;
        assert!(entries
            .iter()
            .all(|(key, value)| *value == format!("{service}|{key}").into_bytes()));
        let used = kv.usage(service).await.unwrap();
        assert_eq!(used.keys, hostile.len() as u64 + 3, "{service}");
    }
    // A prefix with a pattern character is matched as text.
    let page = kv.list_keys("a", "[", None).await.unwrap();
    assert_eq!(page.keys, ["[a-z]"]);
    let page = kv.list_keys("a", "*", None).await.unwrap();
    assert_eq!(page.keys, ["*"]);
    // Deleting one service's keys leaves the others'.
    for key in hostile {
        assert!(kv.delete(&svc("a"), key.into()).await.unwrap());
    }
    assert_eq!(kv.usage("a").await.unwrap().keys, 3);
    assert_eq!(
        kv.get("a:b", "v:x").await.unwrap(),
        Some(b"a:b|v:x".to_vec())
    );
    assert_eq!(
        kv.usage("a:b").await.unwrap().keys,
        hostile.len() as u64 + 3
    );
}

/// A value of the largest size, and values of any bytes (NUL, 0xFF, not
/// UTF-8, empty), come back exactly; empty is not absent.
async fn the_largest_values_and_any_bytes_round_trip(kv: KvStore) {
    let a = svc("a");
    let largest: Vec<u8> = (0..MAX_VALUE_BYTES).map(|i| (i % 251) as u8).collect();
    kv.set(&a, KvQuota::UNLIMITED, "big".into(), largest.clone(), None)
        .await
        .unwrap();
    assert_eq!(kv.get("a", "big").await.unwrap(), Some(largest.clone()));
    let odd = vec![0, 0xff, 0xfe, b'\n', 0, b'*'];
    kv.set(&a, KvQuota::UNLIMITED, "odd".into(), odd.clone(), None)
        .await
        .unwrap();
    kv.set(&a, KvQuota::UNLIMITED, "empty".into(), Vec::new(), None)
        .await
        .unwrap();
    assert_eq!(kv.get("a", "odd").await.unwrap(), Some(odd.clone()));
    assert_eq!(kv.get("a", "empty").await.unwrap(), Some(Vec::new()));
    assert!(kv.exists("a", "empty").await.unwrap());
    let many = kv
        .get_many("a", &["empty".into(), "none".into(), "odd".into()])
        .await
        .unwrap();
    assert_eq!(many, vec![Some(Vec::new()), None, Some(odd.clone())]);
    // A compare-and-swap compares bytes, the largest value included.
    let swapped = kv.compare_and_swap(&a, KvQuota::UNLIMITED, "big".into(), Some(largest), odd);
    assert!(swapped.await.unwrap());
    assert_eq!(
        kv.usage("a").await.unwrap(),
        KvUsage {
            keys: 3,
            bytes: (3 + 6) + (3 + 6) + 5
        }
    );
    let too_big = kv.set(
        &a,
        KvQuota::UNLIMITED,
        "x".into(),
        vec![0; MAX_VALUE_BYTES + 1],
        None,
    );
    assert_eq!(too_big.await.unwrap_err().code, 2402);
}

/// 10,000 keys page in byte order, each once, 1000 a page, by `list-keys`
/// and `list-entries` alike.
async fn ten_thousand_keys_page_in_byte_order(kv: KvStore) {
    let a = svc("a");
    let writers: Vec<_> = (0..100)
        .map(|task| {
            let (kv, a) = (kv.clone(), a.clone());
            tokio::spawn(async move {
                for n in (task..10_000).step_by(100) {
                    let key = format!("k:{n}");
                    kv.set(
                        &a,
                        KvQuota::UNLIMITED,
                        key,
                        n.to_string().into_bytes(),
                        None,
                    )
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let mut expected: Vec<String> = (0..10_000).map(|n| format!("k:{n}")).collect();
    expected.sort();
    let (mut keys, mut cursor, mut pages) = (Vec::new(), None, 0);
    loop {
        let page = kv.list_keys("a", "k:", cursor.as_deref()).await.unwrap();
        assert!(page.keys.len() <= LIST_PAGE_KEYS);
        keys.extend(page.keys);
        pages += 1;
        cursor = page.cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(keys, expected);
    assert_eq!(pages, 10);
    let (mut entries, mut cursor) = (Vec::new(), None);
    loop {
        let page = kv.list_entries("a", "k:", cursor.as_deref()).await.unwrap();
        entries.extend(page.entries);
        cursor = page.cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(entries.len(), 10_000);
    assert!(entries
        .iter()
        .all(|(key, value)| &key.as_bytes()[2..] == value.as_slice()));
    assert_eq!(kv.usage("a").await.unwrap().keys, 10_000);
}

/// Counters are decimal text as Rust reads an `i64` (a sign, leading
/// zeros); anything else, and an overflow, is 2404 and changes nothing.
/// A counter keeps its key's expiry.
async fn counters_read_decimal_text_and_keep_their_expiry(kv: KvStore) {
    let a = svc("a");
    for (text, delta, after) in [
        ("007", 1, 8),
        ("+5", 1, 6),
        ("-0", 1, 1),
        ("-12", 2, -10),
        ("9223372036854775806", 1, i64::MAX),
        ("-9223372036854775807", -1, i64::MIN),
    ] {
        kv.set(&a, KvQuota::UNLIMITED, "n".into(), text.into(), None)
            .await
            .unwrap();
        let counted = kv.increment(&a, KvQuota::UNLIMITED, "n".into(), delta);
        assert_eq!(counted.await.unwrap(), after, "{text} + {delta}");
        assert_eq!(
            kv.get("a", "n").await.unwrap(),
            Some(after.to_string().into_bytes())
        );
    }
    for (text, delta) in [
        ("", 1),
        ("12a", 1),
        (" 1", 1),
        ("1.5", 1),
        ("+", 1),
        ("9223372036854775808", 0),
        ("9223372036854775807", 1),
        ("-9223372036854775808", -1),
    ] {
        kv.set(&a, KvQuota::UNLIMITED, "n".into(), text.into(), None)
            .await
            .unwrap();
        let refused = kv.increment(&a, KvQuota::UNLIMITED, "n".into(), delta);
        assert_eq!(refused.await.unwrap_err().code, 2404, "{text:?} + {delta}");
        assert_eq!(kv.get("a", "n").await.unwrap(), Some(text.into()));
    }
    // The largest value is read in one pass: all leading zeros, or no
    // counter for its last byte.
    let mut zeros = vec![b'0'; MAX_VALUE_BYTES - 1];
    for (last, answer) in [(b'7', Ok(8)), (b'x', Err(2404))] {
        zeros.push(last);
        kv.set(&a, KvQuota::UNLIMITED, "huge".into(), zeros.clone(), None)
            .await
            .unwrap();
        let counted = kv.increment(&a, KvQuota::UNLIMITED, "huge".into(), 1).await;
        assert_eq!(counted.map_err(|error| error.code), answer);
        zeros.pop();
    }
    kv.delete(&a, "huge".into()).await.unwrap();
    let overflow = kv.increment(&a, KvQuota::UNLIMITED, "n".into(), -1);
    assert_eq!(
        overflow.await.unwrap_err().message,
        "not a counter: -9223372036854775808 + -1 overflows a 64-bit counter"
    );
    let ttl = Some(Duration::from_millis(200));
    kv.set(&a, KvQuota::UNLIMITED, "t".into(), b"1".to_vec(), ttl)
        .await
        .unwrap();
    assert_eq!(
        kv.increment(&a, KvQuota::UNLIMITED, "t".into(), 1)
            .await
            .unwrap(),
        2
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(kv.get("a", "t").await.unwrap(), None);
    // An expired counter counts from 0 again, and no longer expires.
    assert_eq!(
        kv.increment(&a, KvQuota::UNLIMITED, "t".into(), 5)
            .await
            .unwrap(),
        5
    );
    assert_eq!(kv.usage("a").await.unwrap().keys, 2);
}

/// Many writers racing on one key: exactly one claims it with a
/// compare-and-swap from absent, and a counter kept by read-then-swap
/// loops ends at the number of swaps that succeeded.
async fn racing_compare_and_swaps_count_every_success_once(kv: KvStore) {
    let a = svc("a");
    let claims: Vec<_> = (0..50)
        .map(|n| {
            let (kv, a) = (kv.clone(), a.clone());
            tokio::spawn(async move {
                let claim = format!("writer {n}").into_bytes();
                let won = kv
                    .compare_and_swap(&a, KvQuota::UNLIMITED, "lock".into(), None, claim.clone())
                    .await
                    .unwrap();
                won.then_some(claim)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for claim in claims {
        winners.extend(claim.await.unwrap());
    }
    assert_eq!(winners.len(), 1);
    assert_eq!(kv.get("a", "lock").await.unwrap(), winners.pop());

    let loops: Vec<_> = (0..10)
        .map(|_| {
            let (kv, a) = (kv.clone(), a.clone());
            tokio::spawn(async move {
                let (mut swaps, mut conflicts) = (0u64, 0u64);
                while swaps < 10 {
                    let current = kv.get("a", "count").await.unwrap();
                    let next = current.as_deref().map_or(0, |text| {
                        std::str::from_utf8(text).unwrap().parse().unwrap()
                    }) + 1u64;
                    let swapped = kv
                        .compare_and_swap(
                            &a,
                            KvQuota::UNLIMITED,
                            "count".into(),
                            current,
                            next.to_string().into_bytes(),
                        )
                        .await
                        .unwrap();
                    if swapped {
                        swaps += 1;
                    } else {
                        conflicts += 1;
                    }
                }
                (swaps, conflicts)
            })
        })
        .collect();
    let mut swaps = 0;
    for task in loops {
        swaps += task.await.unwrap().0;
    }
    assert_eq!(swaps, 100);
    assert_eq!(kv.get("a", "count").await.unwrap(), Some(b"100".to_vec()));
}

/// An expired key reads as absent from every read; written again, it is a
/// new key for the quota; a set or a compare-and-swap without a time to
/// live makes a key permanent.
async fn an_expired_key_is_absent_everywhere_and_new_when_written_again(kv: KvStore) {
    let a = svc("a");
    let ttl = Some(Duration::from_millis(1000));
    for key in ["p/gone", "p/kept", "p/swapped"] {
        kv.set(&a, keys(3), key.into(), b"v".to_vec(), ttl)
            .await
            .unwrap();
    }
    // Both lose their time to live.
    kv.set(&a, keys(3), "p/kept".into(), b"w".to_vec(), None)
        .await
        .unwrap();
    let swapped = kv.compare_and_swap(
        &a,
        keys(3),
        "p/swapped".into(),
        Some(b"v".to_vec()),
        b"s".to_vec(),
    );
    assert!(swapped.await.unwrap());
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(kv.get("a", "p/gone").await.unwrap(), None);
    assert!(!kv.exists("a", "p/gone").await.unwrap());
    assert_eq!(
        kv.list_keys("a", "p/", None).await.unwrap().keys,
        ["p/kept", "p/swapped"]
    );
    let entries = kv.list_entries("a", "p/", None).await.unwrap().entries;
    assert_eq!(
        entries,
        vec![
            ("p/kept".to_owned(), b"w".to_vec()),
            ("p/swapped".to_owned(), b"s".to_vec())
        ]
    );
    let many = kv.get_many("a", &["p/gone".into(), "p/kept".into()]).await;
    assert_eq!(many.unwrap(), vec![None, Some(b"w".to_vec())]);
    assert!(!kv.delete(&a, "p/gone".into()).await.unwrap());
    // At its cap of 3 keys, with "p/gone" expired: room for one new key.
    kv.set(&a, keys(3), "p/new".into(), b"n".to_vec(), None)
        .await
        .unwrap();
    let refused = kv.set(&a, keys(3), "p/more".into(), b"m".to_vec(), None);
    assert_eq!(refused.await.unwrap_err().code, 2403);
    assert_eq!(
        kv.usage("a").await.unwrap(),
        KvUsage {
            keys: 3,
            bytes: 7 + 10 + 6
        }
    );
    // A compare-and-swap from absent takes an expired key.
    kv.set(
        &a,
        keys(3),
        "p/new".into(),
        b"n".to_vec(),
        Some(Duration::from_millis(1)),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let taken = kv.compare_and_swap(&a, keys(3), "p/new".into(), None, b"t".to_vec());
    assert!(taken.await.unwrap());
}
