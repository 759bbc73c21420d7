//! The key-value contract, tested through [`KvStore`] on the redb backend:
//! namespaces, pages, atomic counters, expiry, limits and durability.

use super::*;
use std::time::Duration;

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

#[tokio::test]
async fn set_get_delete_and_namespaces() {
    let kv = KvStore::in_memory().unwrap();
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

#[tokio::test]
async fn lists_by_prefix_in_pages_within_the_service() {
    let kv = KvStore::in_memory().unwrap();
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

#[tokio::test]
async fn counters_and_compare_and_swap_are_atomic() {
    let kv = KvStore::in_memory().unwrap();
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

#[tokio::test]
async fn expiry_limits_and_quota() {
    let kv = KvStore::in_memory().unwrap();
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

#[tokio::test]
async fn usage_counts_keys_and_bytes_through_every_kind_of_write() {
    let kv = KvStore::in_memory().unwrap();
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

#[tokio::test]
async fn a_service_at_its_byte_limit_fails_alone() {
    let kv = KvStore::in_memory().unwrap();
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
#[tokio::test]
async fn a_service_hammering_at_its_key_cap_fails_alone() {
    let kv = KvStore::in_memory().unwrap();
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

#[tokio::test]
async fn entries_and_many_keys_come_from_one_read_within_bounds() {
    let kv = KvStore::in_memory().unwrap();
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
