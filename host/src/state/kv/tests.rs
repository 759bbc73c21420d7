//! The key-value contract, tested through [`KvStore`] on the redb backend:
//! namespaces, pages, atomic counters, expiry, limits and durability.

use super::*;
use std::time::Duration;

fn svc(name: &str) -> Arc<str> {
    name.into()
}

#[tokio::test]
async fn set_get_delete_and_namespaces() {
    let kv = KvStore::in_memory().unwrap();
    let (a, b) = (svc("a"), svc("b"));
    kv.set(&a, 10, "k".into(), b"1".to_vec(), None)
        .await
        .unwrap();
    kv.set(&b, 10, "k".into(), b"2".to_vec(), None)
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
    assert_eq!(kv.count("a").await.unwrap(), 0);
    assert_eq!(kv.count("b").await.unwrap(), 1);
}

#[tokio::test]
async fn lists_by_prefix_in_pages_within_the_service() {
    let kv = KvStore::in_memory().unwrap();
    let a = svc("a");
    for i in 0..(LIST_PAGE_KEYS + 5) {
        kv.set(&a, u64::MAX, format!("user/{i:05}"), vec![], None)
            .await
            .unwrap();
    }
    kv.set(&a, u64::MAX, "users".into(), vec![], None)
        .await
        .unwrap();
    kv.set(&svc("a2"), 9, "user/x".into(), vec![], None)
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
            tokio::spawn(async move { kv.increment(&a, 10, "n".into(), 2).await.unwrap() })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        kv.get("a", "n").await.unwrap().as_deref(),
        Some(&b"100"[..])
    );
    kv.set(&a, 10, "s".into(), b"x".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(
        kv.increment(&a, 10, "s".into(), 1).await.unwrap_err().code,
        2404
    );
    assert!(!kv
        .compare_and_swap(&a, 10, "s".into(), None, b"y".to_vec())
        .await
        .unwrap());
    assert!(kv
        .compare_and_swap(&a, 10, "s".into(), Some(b"x".to_vec()), b"y".to_vec())
        .await
        .unwrap());
    assert!(kv
        .compare_and_swap(&a, 10, "new".into(), None, b"1".to_vec())
        .await
        .unwrap());
}

#[tokio::test]
async fn expiry_limits_and_quota() {
    let kv = KvStore::in_memory().unwrap();
    let a = svc("a");
    kv.set(
        &a,
        2,
        "t".into(),
        b"v".to_vec(),
        Some(Duration::from_millis(30)),
    )
    .await
    .unwrap();
    kv.set(&a, 2, "u".into(), b"v".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(
        kv.set(&a, 2, "w".into(), vec![], None)
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
    kv.set(&a, 2, "w".into(), vec![], None).await.unwrap();
    assert_eq!(kv.count("a").await.unwrap(), 2);
    assert_eq!(
        kv.set(&a, 2, String::new(), vec![], None)
            .await
            .unwrap_err()
            .code,
        2401
    );
    assert_eq!(
        kv.set(&a, 2, "k".repeat(MAX_KEY_BYTES + 1), vec![], None)
            .await
            .unwrap_err()
            .code,
        2401
    );
    assert_eq!(
        kv.set(&a, 2, "u".into(), vec![0; MAX_VALUE_BYTES + 1], None)
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
        kv.set(&svc("a"), 10, "k".into(), b"kept".to_vec(), None)
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
