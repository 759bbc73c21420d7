//! Claiming dead nodes: after each lease renewal a node looks for nodes
//! whose lease is gone; exactly one survivor claims each (`SET NX` with a
//! TTL, renewed before each cleanup) and runs the cleanup of each of its
//! connections with `closeReason` `node_lost`, with the attributes and the
//! groups the registry kept for it. Each connection leaves its groups'
//! member sets before its cleanup runs (as on its own node), and the rest
//! of what the registry kept once it ran. A claimer that dies stops
//! renewing its claim; once it expires another survivor claims the node
//! and runs the rest: at least once per connection, the connection id
//! being the idempotency key.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;

use super::node::Shared;
use super::{bounded, keys, CLAIM_TTL};

/// A connection of a dead node, whose cleanup a survivor runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostConnection {
    pub service: String,
    pub id: String,
    /// The groups it was in, sorted.
    pub groups: Vec<String>,
    /// Its attributes (compact JSON of an object), if it had any.
    pub attributes: Option<String>,
}

/// Runs the cleanup handler of a connection of a dead node.
pub type Cleaner = Arc<dyn Fn(LostConnection) -> BoxFuture<'static, ()> + Send + Sync>;

/// Claims a node whose lease is gone, unless another survivor holds the
/// claim. 1: claimed.
const CLAIM: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
";

/// Extends a claim that is still this node's, and reads what the registry
/// kept of connection ARGV[3]: {1, its groups, its attributes or nil};
/// {0, {}, nil} when the claim is no longer ours.
const TAKE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0, {}, false} end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, redis.call('SMEMBERS', KEYS[2]), redis.call('HGET', KEYS[3], ARGV[3])}
";

/// Claims every node whose lease is gone and that no survivor holds, and
/// runs its connections' cleanups.
pub(super) async fn claim_dead_nodes(
    shared: &Arc<Shared>,
    cleaner: &Cleaner,
    reaping: &Arc<Mutex<HashSet<String>>>,
) -> Result<(), String> {
    let me = shared.node();
    let mut redis = shared.redis.clone();
    let nodes: Vec<String> = bounded(
        redis::cmd("SMEMBERS")
            .arg(keys::NODES)
            .query_async(&mut redis),
    )
    .await?;
    let claim = redis::Script::new(CLAIM);
    for dead in nodes.into_iter().filter(|node| **node != *me) {
        if reaping
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&dead)
        {
            continue;
        }
        let claimed: i64 = bounded(
            claim
                .key(keys::lease(&dead))
                .key(keys::claim(&dead))
                .arg(&*me)
                .arg(CLAIM_TTL.as_millis() as u64)
                .invoke_async(&mut redis),
        )
        .await?;
        if claimed != 1 {
            continue;
        }
        reaping
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(dead.clone());
        let (shared, cleaner, reaping) = (shared.clone(), cleaner.clone(), reaping.clone());
        let me = me.clone();
        tokio::spawn(async move {
            let result = reap(&shared, &cleaner, &dead, &me).await;
            match result {
                Ok(count) => {
                    tracing::info!(node = %dead, claimed_by = %me, cleanups = count, "dead node reaped: every connection's cleanup ran")
                }
                Err(error) => {
                    tracing::warn!(node = %dead, %error, "reaping a dead node stopped; another survivor (or this one) takes over once the claim expires")
                }
            }
            reaping
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&dead);
        });
    }
    Ok(())
}

/// Runs the cleanup of each connection in the registry of `dead`, while
/// the claim stays ours, taking each out of its groups before and out of
/// the registry after; then forgets the node. How many cleanups ran.
async fn reap(shared: &Shared, cleaner: &Cleaner, dead: &str, me: &str) -> Result<usize, String> {
    tracing::info!(node = %dead, claimed_by = %me, "claimed a dead node: running its connections' cleanups (closeReason node_lost)");
    let mut redis = shared.redis.clone();
    let registry = keys::conns(dead);
    let entries: HashMap<String, String> =
        bounded(redis::cmd("HGETALL").arg(&registry).query_async(&mut redis)).await?;
    let take = redis::Script::new(TAKE);
    let mut count = 0;
    for (id, service) in entries {
        let (ours, mut groups, attributes): (i64, Vec<String>, Option<String>) = bounded(
            take.key(keys::claim(dead))
                .key(keys::groups_of(&id))
                .key(keys::attributes(dead))
                .arg(me)
                .arg(CLAIM_TTL.as_millis() as u64)
                .arg(&id)
                .invoke_async(&mut redis),
        )
        .await?;
        if ours != 1 {
            return Err("the claim expired or was taken".into());
        }
        groups.sort();
        if !groups.is_empty() {
            let mut leave = redis::pipe();
            for group in &groups {
                leave.zrem(keys::group(&service, group), &id).ignore();
            }
            bounded(leave.query_async::<()>(&mut redis)).await?;
        }
        cleaner(LostConnection {
            service,
            id: id.clone(),
            groups,
            attributes,
        })
        .await;
        count += 1;
        let mut forget = redis::pipe();
        forget
            .hdel(&registry, &id)
            .ignore()
            .hdel(keys::attributes(dead), &id)
            .ignore()
            .del(keys::groups_of(&id))
            .ignore();
        bounded(forget.query_async::<()>(&mut redis)).await?;
    }
    let mut pipe = redis::pipe();
    pipe.atomic()
        .srem(keys::NODES, dead)
        .ignore()
        .del(&registry)
        .ignore()
        .del(keys::attributes(dead))
        .ignore();
    bounded(pipe.query_async::<()>(&mut redis)).await?;
    Ok(count)
}
