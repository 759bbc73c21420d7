//! The redb backend's own bookkeeping: quotas read from the usage table,
//! expired rows found through the expiry index in bounded batches, and the
//! index built once for a store written before it existed.

use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTableMetadata};

use super::apply::{apply, SWEEP_BATCH};
use super::*;

fn svc(name: &str) -> Arc<str> {
    name.into()
}

/// A row that expired long ago, written as the writer writes rows.
async fn set_expired(backend: &RedbBackend, service: &Arc<str>, key: &str) {
    let op = WriteOp::Set {
        key: key.into(),
        value: b"old".to_vec(),
        expires_at_ms: 1,
    };
    backend
        .write(service, KvQuota::UNLIMITED, op)
        .await
        .unwrap();
}

fn index_len(db: &Database) -> u64 {
    let txn = db.begin_read().unwrap();
    txn.open_table(EXPIRY).unwrap().len().unwrap()
}

#[tokio::test]
async fn quotas_are_read_from_the_usage_table_not_found_by_a_scan() {
    let backend = RedbBackend::in_memory().unwrap();
    let a = svc("a");
    let quota = KvQuota {
        max_keys: 5,
        max_bytes: 1000,
    };
    backend
        .set(&a, quota, "k".into(), b"v".to_vec(), None)
        .await
        .unwrap();
    // One row on disk, but the usage table says the service is full: a write
    // that counted rows would accept the next key, one that reads the
    // counter refuses it.
    {
        let txn = backend.db.begin_write().unwrap();
        txn.open_table(USAGE).unwrap().insert("a", (5, 2)).unwrap();
        txn.commit().unwrap();
    }
    let refused = backend.set(&a, quota, "new".into(), vec![], None).await;
    assert_eq!(refused.unwrap_err().code, 2403);
    {
        let txn = backend.db.begin_write().unwrap();
        txn.open_table(USAGE)
            .unwrap()
            .insert("a", (1, 1000))
            .unwrap();
        txn.commit().unwrap();
    }
    let refused = backend.set(&a, quota, "new".into(), vec![], None).await;
    assert_eq!(refused.unwrap_err().code, 2408);
}

#[tokio::test]
async fn expired_rows_are_swept_through_the_index_in_bounded_batches() {
    let backend = RedbBackend::in_memory().unwrap();
    let (a, b) = (svc("a"), svc("b"));
    for n in 0..SWEEP_BATCH + 10 {
        set_expired(&backend, &a, &format!("gone{n:05}")).await;
    }
    backend
        .set(&b, KvQuota::UNLIMITED, "kept".into(), b"v".to_vec(), None)
        .await
        .unwrap();
    let later = Some(Duration::from_secs(3600));
    backend
        .set(&b, KvQuota::UNLIMITED, "later".into(), b"v".to_vec(), later)
        .await
        .unwrap();
    assert_eq!(index_len(&backend.db), SWEEP_BATCH as u64 + 11);

    // One batch, then the rest; rows that are not due stay.
    let first = apply(&backend.db, &[], true).unwrap();
    assert!(!first.swept_all);
    assert_eq!(backend.usage("a").await.unwrap().keys, 10);
    let second = apply(&backend.db, &[], true).unwrap();
    assert!(second.swept_all);
    assert_eq!(backend.usage("a").await.unwrap(), KvUsage::default());
    assert_eq!(backend.usage("b").await.unwrap().keys, 2);
    assert_eq!(index_len(&backend.db), 1);
    assert!(backend.exists("b", "later").await.unwrap());
}

#[tokio::test]
async fn a_service_at_its_cap_gets_room_from_its_expired_rows() {
    let backend = RedbBackend::in_memory().unwrap();
    let a = svc("a");
    let quota = KvQuota {
        max_keys: 2,
        max_bytes: 1000,
    };
    set_expired(&backend, &a, "x").await;
    set_expired(&backend, &a, "y").await;
    assert_eq!(backend.usage("a").await.unwrap().keys, 2);
    backend
        .set(&a, quota, "new".into(), b"v".to_vec(), None)
        .await
        .unwrap();
    // Overwriting an expired key counts it as new, and frees the old row.
    set_expired(&backend, &a, "z").await;
    backend
        .set(&a, quota, "z".into(), b"v".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(
        backend.usage("a").await.unwrap(),
        KvUsage { keys: 2, bytes: 6 }
    );
    assert_eq!(index_len(&backend.db), 0);
}

#[tokio::test]
async fn a_store_written_before_the_index_is_indexed_once_when_opened() {
    let db = Database::builder()
        .create_with_backend(::redb::backends::InMemoryBackend::new())
        .unwrap();
    {
        let txn = db.begin_write().unwrap();
        {
            let mut entries = txn.open_table(ENTRIES).unwrap();
            entries.insert(("a", "k1"), (0, &b"12"[..])).unwrap();
            entries.insert(("a", "k2"), (1, &b"1234"[..])).unwrap();
            entries.insert(("b", "k"), (0, &b""[..])).unwrap();
            txn.open_table(LEGACY_COUNTS)
                .unwrap()
                .insert("a", 2)
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let backend = RedbBackend::start(db).unwrap();
    assert_eq!(
        backend.usage("a").await.unwrap(),
        KvUsage { keys: 2, bytes: 10 }
    );
    assert_eq!(
        backend.usage("b").await.unwrap(),
        KvUsage { keys: 1, bytes: 1 }
    );
    assert_eq!(index_len(&backend.db), 1);
    let txn = backend.db.begin_read().unwrap();
    assert!(!txn
        .list_tables()
        .unwrap()
        .any(|table| table.name() == LEGACY_COUNTS.name()));
    drop(txn);
    assert!(apply(&backend.db, &[], true).unwrap().swept_all);
    assert_eq!(backend.usage("a").await.unwrap().keys, 1);
}
