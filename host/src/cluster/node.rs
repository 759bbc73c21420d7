//! This node in the cluster: its id, and its lease (renewed, or lost and
//! then fenced). After each renewal it looks for dead nodes to claim
//! (`reaper.rs`); a renewal after failed writes, or one that finds Redis
//! emptied, has the registry rewritten (`registry.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::groups::Subscriptions;
use super::inbox::Answer;
use super::reaper::Cleaner;
use super::registry::Change;
use super::{
    bounded, keys, new_node_id, ClusterBroker, COMMAND_TIMEOUT, LEASE_TTL, RENEW_EVERY,
    TICK_CLAIM_TTL,
};
use crate::protocol::CloseCause;
use crate::state::{node_of, Router};

/// Renews the lease, unless a survivor has claimed this node; (re)creates
/// it when allowed (the node never held it, or held it so recently that it
/// cannot have expired: Redis lost it in a restart, which it then flags
/// for a lease TTL). 1: renewed; 0: joined (the registry must be
/// rewritten); -1: lost, fence.
const RENEW: &str = r"
redis.call('SET', KEYS[4], '1', 'NX')
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
if redis.call('SET', KEYS[1], ARGV[1], 'XX', 'PX', ARGV[2]) then
  if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then return 1 end
  redis.call('SADD', KEYS[3], ARGV[1])
  return 0
end
if ARGV[3] ~= '1' then return -1 end
if ARGV[4] == '1' then redis.call('SET', KEYS[5], '1', 'PX', ARGV[2]) end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
return 0
";

/// What the node's tasks and its broker share.
#[derive(Debug)]
pub(super) struct Shared {
    pub redis: ConnectionManager,
    pub client: redis::Client,
    pub router: Router,
    /// This node's id now; a new one after fencing.
    node: RwLock<Arc<str>>,
    /// The same id, for the inbox to resubscribe when it changes.
    pub node_changes: watch::Sender<Arc<str>>,
    /// This process, whatever its node id: its own broadcasts, which it
    /// delivered itself, come back on its subscriptions and are skipped.
    pub instance: Arc<str>,
    /// To the registry writer (`registry.rs`).
    pub changes: mpsc::UnboundedSender<Change>,
    /// Writes to Redis failed: rewrite the registry once Redis answers.
    pub stale: AtomicBool,
    /// How many registry writes have failed, ever: a write-through call
    /// compares it before and after.
    pub failures: AtomicU64,
    /// Whether the inbox is subscribed: answers to requests come there.
    pub subscribed: AtomicBool,
    /// The group channels the inbox's connection is subscribed to.
    pub subscriptions: tokio::sync::Mutex<Subscriptions>,
    /// Groups that may have lost their last member on this node, for the
    /// task that unsubscribes from them (`groups.rs`).
    pub vacated: mpsc::UnboundedSender<(Arc<str>, Arc<str>)>,
    /// Whether the last lease renewal succeeded.
    lease_held: AtomicBool,
    /// Requests to other nodes waiting for their answer, by request id.
    pub pending: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
    pub next_request: AtomicU64,
}

impl Shared {
    pub fn node(&self) -> Arc<str> {
        self.node.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Drops this node's connections without their cleanup (a survivor
    /// owns them now) and takes a new id to rejoin under.
    fn fence(&self, why: &str) {
        let old = self.node();
        let new = new_node_id();
        *self.node.write().unwrap_or_else(|e| e.into_inner()) = new.clone();
        self.node_changes.send_replace(new.clone());
        let mut dropped = 0usize;
        for entry in self.router.entries() {
            if node_of(&entry.id) == Some(&*old) {
                let _ = self
                    .router
                    .close_with(&entry.service, &entry.id, CloseCause::FENCED);
                dropped += 1;
            }
        }
        tracing::warn!(
            old_node = %old,
            new_node = %new,
            dropped,
            why,
            "fenced: this node lost its cluster lease; its connections are dropped without cleanup (a surviving node runs them); rejoining under a new node id"
        );
    }
}

/// This node's membership of the cluster.
#[derive(Debug, Clone)]
pub struct ClusterNode {
    shared: Arc<Shared>,
    /// Stops the lease and inbox tasks when the node leaves.
    stop: CancellationToken,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl ClusterNode {
    /// A node of the cluster on the Redis at `url`, whose connections are
    /// `router`'s. Nothing is sent to Redis until [`ClusterNode::start`].
    pub fn new(url: &str, router: Router) -> anyhow::Result<Self> {
        let client =
            redis::Client::open(url).map_err(|error| anyhow::anyhow!("cluster: {url}: {error}"))?;
        // Fail fast: one quick reconnection attempt per failed command;
        // the lease loop retries every second anyway.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_min_delay(std::time::Duration::from_millis(50))
            .set_max_delay(std::time::Duration::from_millis(200))
            .set_connection_timeout(Some(COMMAND_TIMEOUT / 2))
            .set_response_timeout(Some(COMMAND_TIMEOUT));
        let redis = client
            .get_connection_manager_lazy(config)
            .map_err(|error| anyhow::anyhow!("cluster: {url}: {error}"))?;
        let node = new_node_id();
        let (changes, written) = mpsc::unbounded_channel();
        let (vacated, vacancies) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            redis,
            client,
            router: router.clone(),
            node: RwLock::new(node.clone()),
            node_changes: watch::channel(node).0,
            instance: new_node_id(),
            changes,
            stale: AtomicBool::new(false),
            failures: AtomicU64::new(0),
            subscribed: AtomicBool::new(false),
            subscriptions: tokio::sync::Mutex::default(),
            vacated,
            lease_held: AtomicBool::new(false),
            pending: Mutex::default(),
            next_request: AtomicU64::new(1),
        });
        router.set_membership(shared.clone());
        tokio::spawn(super::registry::write_registry(shared.clone(), written));
        tokio::spawn(super::groups::unsubscribe_vacated(
            shared.clone(),
            vacancies,
        ));
        Ok(Self {
            shared,
            stop: CancellationToken::new(),
            tasks: Arc::default(),
        })
    }

    /// The broker that reaches this node's connections and other nodes'.
    pub fn broker(&self) -> ClusterBroker {
        ClusterBroker::new(self.shared.clone())
    }

    /// This node's id now.
    pub fn node_id(&self) -> Arc<str> {
        self.shared.node()
    }

    /// Claims the tick at `second` (Unix seconds) of `service`'s timer
    /// `timer` for this node, so it fires on one node of the cluster:
    /// `Ok(true)` if this node is the one, `Ok(false)` if another node
    /// claimed it first, `Err` when Redis did not answer (the tick then
    /// fires nowhere).
    pub async fn claim_tick(
        &self,
        service: &str,
        timer: &str,
        second: i64,
    ) -> Result<bool, String> {
        let mut redis = self.shared.redis.clone();
        let mut set = redis::cmd("SET");
        set.arg(keys::tick(service, timer, second))
            .arg(&*self.shared.node())
            .arg("NX")
            .arg("PX")
            .arg(TICK_CLAIM_TTL.as_millis() as u64);
        bounded(set.query_async::<Option<String>>(&mut redis))
            .await
            .map(|claimed| claimed.is_some())
    }

    /// For the control listener's health: the node id, whether its last
    /// lease renewal succeeded, whether its inbox is subscribed.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "node": &*self.shared.node(),
            "lease": self.shared.lease_held.load(Ordering::Relaxed),
            "subscribed": self.shared.subscribed.load(Ordering::Relaxed),
        })
    }

    /// Starts the lease, the inbox and the search for dead nodes, whose
    /// connections' cleanups `cleaner` runs.
    pub fn start(&self, cleaner: Cleaner) {
        tracing::info!(node = %self.shared.node(), "cluster node starting");
        let lease = tokio::spawn(lease_loop(self.shared.clone(), cleaner, self.stop.clone()));
        let inbox = tokio::spawn(super::inbox::inbox_loop(
            self.shared.clone(),
            self.stop.clone(),
        ));
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.push(lease);
        tasks.push(inbox);
    }

    /// Leaves the cluster after a graceful shutdown, whose cleanups ran
    /// here: the lease, the registry and its connections' group
    /// memberships are deleted, so no survivor runs them again.
    pub async fn leave(&self) {
        self.stop.cancel();
        let tasks: Vec<_> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            let _ = tokio::time::timeout(COMMAND_TIMEOUT * 2, task).await;
        }
        let node = self.shared.node();
        let mut redis = self.shared.redis.clone();
        let mut pipe = redis::pipe();
        pipe.atomic();
        // Whatever the registry still holds (a write still queued) leaves
        // its groups too.
        let left = async {
            super::registry::forget_registry(&mut redis, &node, &mut pipe).await?;
            pipe.del(keys::lease(&node))
                .ignore()
                .srem(keys::NODES, &*node)
                .ignore();
            bounded(pipe.query_async::<()>(&mut redis)).await
        };
        match left.await {
            Ok(()) => tracing::info!(node = %node, "left the cluster"),
            Err(error) => {
                tracing::warn!(node = %node, %error, "could not leave the cluster; a survivor will run the cleanups of what is left in its registry")
            }
        }
    }
}

/// Renews the lease every [`RENEW_EVERY`]; fences the node when it is
/// lost; then looks for dead nodes to claim.
async fn lease_loop(shared: Arc<Shared>, cleaner: Cleaner, stop: CancellationToken) {
    let renew = redis::Script::new(RENEW);
    let reaping: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut renewed_at: Option<Instant> = None;
    let mut failing = false;
    let mut ticker = tokio::time::interval(RENEW_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        // By our own clock: past the TTL a survivor may own our
        // connections, whether or not Redis can tell us so.
        if renewed_at.is_some_and(|at| at.elapsed() >= LEASE_TTL) {
            shared.fence("no lease renewal for the whole lease TTL");
            renewed_at = None;
        }
        let node = shared.node();
        let sent_at = Instant::now();
        // (Re)creating the lease is safe only while it cannot have expired.
        let may_create = renewed_at.is_none_or(|at| at.elapsed() + RENEW_EVERY < LEASE_TTL);
        let mut redis = shared.redis.clone();
        let answer = bounded(
            renew
                .key(keys::lease(&node))
                .key(keys::claim(&node))
                .key(keys::NODES)
                .key(keys::SINCE)
                .key(keys::RELEARNING)
                .arg(&*node)
                .arg(LEASE_TTL.as_millis() as u64)
                .arg(if may_create { "1" } else { "0" })
                .arg(if renewed_at.is_some() { "1" } else { "0" })
                .invoke_async::<i64>(&mut redis),
        )
        .await;
        shared
            .lease_held
            .store(matches!(answer, Ok(0 | 1)), Ordering::Relaxed);
        match answer {
            Ok(1) => {
                renewed_at = Some(sent_at);
                if shared.stale.swap(false, Ordering::Relaxed) {
                    let _ = shared.changes.send(Change::Rewrite);
                }
            }
            Ok(0) => {
                renewed_at = Some(sent_at);
                shared.stale.store(false, Ordering::Relaxed);
                let _ = shared.changes.send(Change::Rewrite);
                tracing::info!(node = %node, "joined the cluster: lease held, registry written");
            }
            Ok(_) => {
                shared.fence("the lease expired or a survivor claimed this node");
                renewed_at = None;
                continue;
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(node = %node, %error, "cannot renew the cluster lease; local traffic goes on, requests to other nodes answer 503");
                }
                failing = true;
                shared.stale.store(true, Ordering::Relaxed);
                continue;
            }
        }
        if failing {
            tracing::info!(node = %node, "Redis answers again: lease renewed");
            failing = false;
        }
        if let Err(error) = super::reaper::claim_dead_nodes(&shared, &cleaner, &reaping).await {
            tracing::debug!(%error, "looking for dead nodes failed");
        }
    }
}
