//! What this node keeps in Redis about its connections, for the other
//! nodes: the registry (id → service), their attributes, and their groups
//! (each group's members, and each connection's groups).
//!
//! The router stays the truth; this is its copy. One task writes it, fed
//! from the router's notices ([`Membership`]) in the order the changes
//! happened, in batches of one transaction each, so a connection never
//! waits for Redis and a join never overtakes the departure of its
//! connection. A join or leave waits for its batch ([`Shared::write_through`]).
//!
//! When a write fails (Redis down) the copy is marked stale, and once the
//! lease is renewed again it is rewritten whole from the router in one
//! transaction: what the old registry listed leaves its groups, then every
//! live connection is written again. A Redis that restarted empty is
//! refilled the same way, so a short outage loses nothing. A connection
//! opened in the last few milliseconds before a crash may not have reached
//! the registry yet; its `node_lost` cleanup is then missed.
//!
//! A connection that ends leaves its groups' member sets at once, but its
//! own set of groups and its attributes stay until its cleanup has run,
//! with its registry entry: a survivor of a crash in between runs the
//! cleanup with them.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};

use super::node::Shared;
use super::{bounded, keys, ANSWER_TIMEOUT};
use crate::state::{node_of, Membership};

/// A change the registry writer applies.
#[derive(Debug)]
pub(super) enum Change {
    Added {
        service: Arc<str>,
        id: Arc<str>,
    },
    Attributes {
        id: Arc<str>,
        attributes: Option<Arc<str>>,
    },
    Joined {
        service: Arc<str>,
        group: Arc<str>,
        id: Arc<str>,
    },
    Left {
        service: Arc<str>,
        group: Arc<str>,
        id: Arc<str>,
    },
    /// The connection ended: it leaves its groups' member sets.
    Departed {
        service: Arc<str>,
        id: Arc<str>,
        groups: Vec<Arc<str>>,
    },
    /// Its cleanup ran: the rest goes.
    Removed {
        id: Arc<str>,
    },
    /// Rewrite the whole copy of this node from the router.
    Rewrite,
    /// Answered once every change sent before it is written, or its
    /// batch failed.
    Flush(oneshot::Sender<Result<(), String>>),
}

impl Change {
    /// The connection it is about.
    fn id(&self) -> Option<&str> {
        match self {
            Change::Added { id, .. }
            | Change::Attributes { id, .. }
            | Change::Joined { id, .. }
            | Change::Left { id, .. }
            | Change::Departed { id, .. }
            | Change::Removed { id } => Some(id),
            Change::Rewrite | Change::Flush(_) => None,
        }
    }

    /// Adds the change's commands to `pipe`, for this `node`.
    fn write(self, node: &str, pipe: &mut redis::Pipeline) {
        match self {
            Change::Added { service, id } => {
                pipe.hset(keys::conns(node), &*id, &*service).ignore();
            }
            Change::Attributes {
                id,
                attributes: Some(attributes),
            } => {
                pipe.hset(keys::attributes(node), &*id, &*attributes)
                    .ignore();
            }
            Change::Attributes {
                id,
                attributes: None,
            } => {
                pipe.hdel(keys::attributes(node), &*id).ignore();
            }
            Change::Joined { service, group, id } => {
                pipe.sadd(keys::groups_of(&id), &*group)
                    .ignore()
                    .zadd(keys::group(&service, &group), &*id, 0)
                    .ignore();
            }
            Change::Left { service, group, id } => {
                pipe.srem(keys::groups_of(&id), &*group)
                    .ignore()
                    .zrem(keys::group(&service, &group), &*id)
                    .ignore();
            }
            Change::Departed {
                service,
                id,
                groups,
            } => {
                for group in groups {
                    pipe.zrem(keys::group(&service, &group), &*id).ignore();
                }
            }
            Change::Removed { id } => {
                pipe.hdel(keys::conns(node), &*id)
                    .ignore()
                    .hdel(keys::attributes(node), &*id)
                    .ignore()
                    .del(keys::groups_of(&id))
                    .ignore();
            }
            Change::Rewrite | Change::Flush(_) => {}
        }
    }
}

impl Shared {
    /// Runs `change`, a router call whose notices reach the writer, then
    /// waits (at most [`ANSWER_TIMEOUT`]) until they are in Redis.
    pub(super) async fn write_through<T>(
        &self,
        change: impl FnOnce() -> T,
    ) -> (T, Result<(), String>) {
        let failures = self.failures.load(Ordering::Acquire);
        let changed = change();
        let (flushed, written) = oneshot::channel();
        let _ = self.changes.send(Change::Flush(flushed));
        let result = match tokio::time::timeout(ANSWER_TIMEOUT, written).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("the registry writer stopped".into()),
            Err(_) => Err(format!("Redis was not written within {ANSWER_TIMEOUT:?}")),
        };
        // The change may have gone in an earlier batch than the flush.
        let result = result.and_then(|()| {
            if self.failures.load(Ordering::Acquire) == failures {
                Ok(())
            } else {
                Err("a write to Redis failed".into())
            }
        });
        (changed, result)
    }

    fn change(&self, change: Change) {
        let _ = self.changes.send(change);
    }
}

impl Membership for Shared {
    fn node(&self) -> Arc<str> {
        Shared::node(self)
    }

    fn added(&self, service: &Arc<str>, id: &Arc<str>) {
        self.change(Change::Added {
            service: service.clone(),
            id: id.clone(),
        });
    }

    fn attributes(&self, _service: &Arc<str>, id: &Arc<str>, attributes: Option<&Arc<str>>) {
        self.change(Change::Attributes {
            id: id.clone(),
            attributes: attributes.cloned(),
        });
    }

    fn joined(&self, service: &Arc<str>, group: &Arc<str>, id: &Arc<str>) {
        self.change(Change::Joined {
            service: service.clone(),
            group: group.clone(),
            id: id.clone(),
        });
    }

    fn left(&self, service: &Arc<str>, group: &Arc<str>, id: &Arc<str>) {
        self.change(Change::Left {
            service: service.clone(),
            group: group.clone(),
            id: id.clone(),
        });
        let _ = self.vacated.send((service.clone(), group.clone()));
    }

    fn departed(&self, service: &Arc<str>, id: &Arc<str>, groups: &[Arc<str>]) {
        self.change(Change::Departed {
            service: service.clone(),
            id: id.clone(),
            groups: groups.to_vec(),
        });
        for group in groups {
            let _ = self.vacated.send((service.clone(), group.clone()));
        }
    }

    fn removed(&self, _service: &Arc<str>, id: &Arc<str>) {
        self.change(Change::Removed { id: id.clone() });
    }
}

/// Applies changes in batches of one transaction, for as long as the node
/// lives.
pub(super) async fn write_registry(
    shared: Arc<Shared>,
    mut changes: mpsc::UnboundedReceiver<Change>,
) {
    while let Some(first) = changes.recv().await {
        let mut batch = vec![first];
        while batch.len() < 1024 {
            match changes.try_recv() {
                Ok(change) => batch.push(change),
                Err(_) => break,
            }
        }
        let node = shared.node();
        let mut pipe = redis::pipe();
        pipe.atomic();
        let mut rewrite = false;
        let mut flushes = Vec::new();
        for change in batch {
            match change {
                Change::Rewrite => rewrite = true,
                Change::Flush(flushed) => flushes.push(flushed),
                // Changes of an id the node had before it was fenced are
                // the survivor's business now.
                change if change.id().and_then(node_of) == Some(&*node) => {
                    change.write(&node, &mut pipe);
                }
                _ => {}
            }
        }
        let mut redis = shared.redis.clone();
        let result = if rewrite {
            // It covers whatever the batch held.
            rewrite_registry(&shared, &mut redis, &node).await
        } else if pipe.is_empty() {
            Ok(())
        } else {
            bounded(pipe.query_async::<()>(&mut redis)).await
        };
        if let Err(error) = &result {
            shared.failures.fetch_add(1, Ordering::AcqRel);
            if !shared.stale.swap(true, Ordering::Relaxed) {
                tracing::warn!(node = %node, %error, "cluster registry write failed; it will be rewritten once Redis answers");
            }
        }
        for flushed in flushes {
            let _ = flushed.send(result.clone());
        }
    }
}

/// Rewrites this node's copy from the router, in one transaction.
async fn rewrite_registry(
    shared: &Shared,
    redis: &mut ConnectionManager,
    node: &str,
) -> Result<(), String> {
    let mut pipe = redis::pipe();
    pipe.atomic();
    forget_registry(redis, node, &mut pipe).await?;
    for entry in shared.router.entries() {
        if node_of(&entry.id) != Some(node) {
            continue;
        }
        pipe.hset(keys::conns(node), &*entry.id, &*entry.service)
            .ignore();
        if let Some(attributes) = &entry.attributes {
            pipe.hset(keys::attributes(node), &*entry.id, &**attributes)
                .ignore();
        }
        for group in &entry.groups {
            pipe.sadd(keys::groups_of(&entry.id), &**group)
                .ignore()
                .zadd(keys::group(&entry.service, group), &*entry.id, 0)
                .ignore();
        }
    }
    bounded(pipe.query_async::<()>(redis)).await
}

/// Adds to `pipe` the deletion of `node`'s registry and attributes, and
/// takes every connection the registry lists out of its groups.
pub(super) async fn forget_registry(
    redis: &mut ConnectionManager,
    node: &str,
    pipe: &mut redis::Pipeline,
) -> Result<(), String> {
    let listed: HashMap<String, String> = bounded(
        redis::cmd("HGETALL")
            .arg(keys::conns(node))
            .query_async(redis),
    )
    .await?;
    let listed: Vec<(String, String)> = listed.into_iter().collect();
    for chunk in listed.chunks(1000) {
        let mut read = redis::pipe();
        for (id, _) in chunk {
            read.smembers(keys::groups_of(id));
        }
        let groups: Vec<Vec<String>> = bounded(read.query_async(redis)).await?;
        for ((id, service), groups) in chunk.iter().zip(groups) {
            for group in groups {
                pipe.zrem(keys::group(service, &group), id).ignore();
            }
            pipe.del(keys::groups_of(id)).ignore();
        }
    }
    pipe.del(keys::conns(node))
        .ignore()
        .del(keys::attributes(node))
        .ignore();
    Ok(())
}
