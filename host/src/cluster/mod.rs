//! Cluster mode (`--cluster redis://HOST:PORT`): several gateway nodes act
//! as one, on Redis.
//!
//! - `node.rs`: this node's identity, its lease and fencing.
//! - `registry.rs`: what the node keeps in Redis about its connections:
//!   the registry of live connections, their attributes, their groups.
//! - `groups.rs`: groups across the cluster: membership in Redis,
//!   broadcast by publish, the node's subscriptions to group channels.
//! - `reaper.rs`: claiming dead nodes and running their connections'
//!   cleanups.
//! - `inbox.rs`: the node's pub/sub connection, where other nodes'
//!   requests (push, close, info, list, join, leave) and broadcasts arrive
//!   and answers come back.
//! - `broker.rs`: [`ClusterBroker`], the [`Broker`](crate::state::Broker)
//!   that sends a request for another node's connection to that node.
//!
//! # Identity
//!
//! A node id (8 URL-safe characters, 48 random bits) is drawn at each boot
//! and again whenever the node is fenced, so a restarted or fenced process
//! never claims old ids. Connection ids start with it
//! (`<node>.<22 characters>`): routing needs no lookup, and an id of this
//! node takes the local path with no Redis round trip.
//!
//! # Keys
//!
//! | key | type | what |
//! |---|---|---|
//! | `wasmgate:nodes` | set | node ids that joined and have not been reaped |
//! | `wasmgate:since` | string | set once this Redis has seen a lease renewal |
//! | `wasmgate:relearning` | string, TTL [`LEASE_TTL`] | a node rewrote a lease Redis lost |
//! | `wasmgate:node:<id>:lease` | string, TTL [`LEASE_TTL`] | alive while present |
//! | `wasmgate:node:<id>:conns` | hash id → service | the node's live connections |
//! | `wasmgate:node:<id>:attributes` | hash id → JSON | their attributes, for those that have some |
//! | `wasmgate:node:<id>:claim` | string, TTL [`CLAIM_TTL`] | the survivor reaping it |
//! | `wasmgate:group:<service>:<group>` | sorted set of ids, score 0 | the group's members, in byte order |
//! | `wasmgate:conn:<id>:groups` | set | the connection's groups (kept until its cleanup ran) |
//! | `wasmgate:inbox:<id>` | channel | requests to the node |
//! | `wasmgate:replies:<id>` | channel | answers to the node's requests |
//! | `wasmgate:broadcast:<service>:<group>` | channel | broadcasts to the group; nodes with a member subscribe |
//! | `wasmgate:tick:<service>:<timer>:<second>` | string, TTL [`TICK_CLAIM_TTL`] | the node that fires this tick of the timer |
//! | `wasmgate:kv:<n>:<service>:…` | strings, sorted sets, hashes | the key-value store's rows, indexes and usage (`state/kv/redis`), when `[kv] type = "redis"`, the default of a clustered node |
//!
//! Service names have no `:` and connection ids neither, so each key names
//! one thing. Group keys never expire: a member leaves its group when it
//! leaves, when its node shuts down, or when a survivor reaps its node.
//!
//! # Times
//!
//! The lease is renewed every [`RENEW_EVERY`] (1 s) with a TTL of
//! [`LEASE_TTL`] (5 s): four renewals may fail in a row (a Redis restart,
//! a slow fork for a snapshot, a network blip) before anything happens.
//! A node that has not renewed for the whole TTL (paused, cut off) fences
//! itself at once by its own clock: it drops its connections without their
//! cleanup and rejoins under a new id, because a survivor may own them now.
//! Survivors look for expired leases every second and claim a dead node
//! for [`CLAIM_TTL`] (10 s, renewed while reaping), so the cleanups of a
//! crashed node start within about 6 s, and those of a claimer that dies
//! too within another 10 s. A request to another node waits at most
//! [`ANSWER_TIMEOUT`] (2 s) for the answer, and a join or leave as long
//! for its write; each Redis command at most [`COMMAND_TIMEOUT`] (1 s).
//!
//! # Redis restarted empty
//!
//! A missing lease then proves nothing: the nodes are alive and write
//! their leases and registries again at their next renewal. So a request
//! to a node without a lease answers "gone" only once Redis has seen a
//! renewal since it started (`wasmgate:since`) and no node has rewritten
//! a lease Redis lost in the last lease TTL (`wasmgate:relearning`);
//! meanwhile it answers 503, and so do the cluster-wide list and a group's
//! members. Each node also writes its connections' attributes and groups
//! again, and its inbox subscribes again to its groups' channels. A node
//! rewrites its lease only if it renewed it less than a TTL ago, so one
//! that was paused or cut off past its lease never comes back under its
//! old id.
//!
//! # Crate
//!
//! redis-rs (`redis`, tokio and connection-manager), over fred. Both
//! reconnect by themselves. redis-rs's `ConnectionManager` reconnects
//! after a failed command, with a bounded backoff we set to fail fast; its
//! automatic resubscription (RESP3 only) happens only once a command has
//! noticed the drop. fred resubscribes on its own too
//! (`SubscriberClient::manage_subscriptions`), but is a much larger
//! dependency with its own connection pool and reconnect policy to tune.
//! We keep commands on the `ConnectionManager` and run pub/sub on a
//! connection of our own whose loop resubscribes after every reconnect and
//! says whether it is subscribed, so a lost subscription is never silent:
//! while it is down, requests to other nodes answer 503 at once.

mod broker;
mod groups;
mod inbox;
mod node;
mod reaper;
mod registry;

use std::time::Duration;

pub use broker::ClusterBroker;
pub use node::ClusterNode;
pub use reaper::{Cleaner, LostConnection};

/// How long a node's lease lives without renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(5);
/// How often a node renews its lease and looks for dead nodes.
pub const RENEW_EVERY: Duration = Duration::from_secs(1);
/// How long a survivor's claim on a dead node lives without renewal.
pub const CLAIM_TTL: Duration = Duration::from_secs(10);
/// How long a request to another node waits for its answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one Redis command may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a node's claim on one tick of a timer is kept: longer than
/// any clock difference between nodes, so a node whose clock runs behind
/// finds the tick claimed, not free.
pub const TICK_CLAIM_TTL: Duration = Duration::from_secs(300);

/// The Redis keys and channels of the cluster.
mod keys {
    pub const NODES: &str = "wasmgate:nodes";
    /// Set by the first lease renewal a Redis sees: while it is missing,
    /// Redis has started empty and no node has registered again yet.
    pub const SINCE: &str = "wasmgate:since";
    /// Set for a lease TTL when a node finds the lease it held gone and
    /// writes it again (Redis lost its data): meanwhile a missing lease
    /// may be one Redis lost, not one that expired.
    pub const RELEARNING: &str = "wasmgate:relearning";

    pub fn lease(node: &str) -> String {
        format!("wasmgate:node:{node}:lease")
    }

    pub fn conns(node: &str) -> String {
        format!("wasmgate:node:{node}:conns")
    }

    pub fn claim(node: &str) -> String {
        format!("wasmgate:node:{node}:claim")
    }

    pub fn attributes(node: &str) -> String {
        format!("wasmgate:node:{node}:attributes")
    }

    /// The members of a group. Service names have no `:`, so the key names
    /// one group of one service.
    pub fn group(service: &str, group: &str) -> String {
        format!("wasmgate:group:{service}:{group}")
    }

    /// The groups of a connection (ids are unique cluster-wide).
    pub fn groups_of(id: &str) -> String {
        format!("wasmgate:conn:{id}:groups")
    }

    pub const BROADCAST_PREFIX: &str = "wasmgate:broadcast:";

    pub fn broadcast(service: &str, group: &str) -> String {
        format!("{BROADCAST_PREFIX}{service}:{group}")
    }

    pub fn inbox(node: &str) -> String {
        format!("wasmgate:inbox:{node}")
    }

    pub fn replies(node: &str) -> String {
        format!("wasmgate:replies:{node}")
    }

    /// Service and timer names hold no `:` (`[A-Za-z0-9_-]`), so the key
    /// names one tick of one timer.
    pub fn tick(service: &str, timer: &str, second: i64) -> String {
        format!("wasmgate:tick:{service}:{timer}:{second}")
    }
}

/// A new node id: 48 random bits, URL-safe Base64.
fn new_node_id() -> std::sync::Arc<str> {
    use base64::Engine as _;
    let bits: [u8; 6] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(bits)
        .into()
}

/// Runs one Redis command (or script) within [`COMMAND_TIMEOUT`].
async fn bounded<T>(
    command: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(COMMAND_TIMEOUT, command).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer from Redis within {COMMAND_TIMEOUT:?}")),
    }
}
