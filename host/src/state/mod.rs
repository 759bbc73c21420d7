//! What the gateway keeps between events: connections and their groups
//! (the router), and each service's durable key-value state.
//!
//! Two seams face outwards, each a small trait with the single-node code as
//! its first implementation:
//!
//! - [`Broker`]: how routed requests and group changes reach connections,
//!   wherever they live. [`Router`] serves one node; a cluster broker
//!   reaches connections of other nodes; [`Recorder`] records instead (for
//!   `wasmgate invoke`).
//! - [`kv::KvBackend`]: where key-value rows are stored: redb, a file of
//!   one node, or Redis, shared by the nodes of a cluster.
//!
//! [`route`] is the one routing function behind the reverse-push endpoint
//! and the push/close/route/broadcast host calls.

mod connection;
mod groups;
pub mod kv;
mod outbound;
mod recorder;
mod router;

use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) use connection::Connection;
pub use connection::{node_of, ConnectionInfo, Outbound};
pub use groups::{MemberPage, MAX_GROUPS_PER_CONNECTION, MAX_GROUP_NAME_BYTES, MEMBERS_PAGE_MAX};
pub use outbound::OutboundBudget;
pub(crate) use outbound::{OutboundReceiver, QueueBounds};
pub use recorder::Recorder;
pub(crate) use router::Reservation;
pub use router::{Membership, Router};

use crate::protocol::{ApiError, PushRequest};

/// How routed requests and group changes reach the connections of a
/// service, wherever they live.
///
/// Every method acts for one service only: an id or a group of another
/// service is "not found" (errNo 2202), never reached. Methods are async so
/// that an implementation may wait for another node's definite answer
/// (delivered, gone or unavailable); the single-node [`Router`] answers at
/// once.
#[async_trait::async_trait]
pub trait Broker: Send + Sync + std::fmt::Debug {
    /// Queues a message for connection `id`.
    async fn deliver(&self, service: &str, id: &str, message: Outbound) -> Result<(), ApiError>;

    /// Asks connection `id` to close (its cleanup then runs).
    async fn close(&self, service: &str, id: &str) -> Result<(), ApiError>;

    /// Queues a message for every member of `group` but `except`; how many
    /// members it reached.
    async fn broadcast(
        &self,
        service: &str,
        group: &str,
        message: Outbound,
        except: Option<&str>,
    ) -> Result<usize, ApiError>;

    /// Adds live connection `id` to `group`.
    async fn join(&self, service: &str, group: &str, id: &str) -> Result<(), ApiError>;

    /// Takes live connection `id` out of `group`; whether it was in.
    async fn leave(&self, service: &str, group: &str, id: &str) -> Result<bool, ApiError>;

    /// The ids of the members of `group`, sorted: at most the first
    /// [`MEMBERS_PAGE_MAX`]; [`Broker::members_page`] reads them all.
    async fn members(&self, service: &str, group: &str) -> Result<Vec<String>, ApiError>;

    /// Up to `limit` (at most [`MEMBERS_PAGE_MAX`]) ids of the members of
    /// `group` after `cursor`, sorted, with the cursor of the next page.
    async fn members_page(
        &self,
        service: &str,
        group: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<MemberPage, ApiError>;

    /// The groups of live connection `id`, sorted.
    async fn groups_of(&self, service: &str, id: &str) -> Result<Vec<String>, ApiError>;

    /// The live connections of the service, oldest first.
    async fn connections(&self, service: &str) -> Result<Vec<ConnectionInfo>, ApiError>;

    /// One live connection of the service.
    async fn connection(&self, service: &str, id: &str) -> Result<ConnectionInfo, ApiError>;
}

/// The one routing function: delivers, broadcasts or closes, for `service`
/// only. Returns how many connections the request reached. The reverse-push
/// endpoint and the host calls both come through here, so they cannot drift
/// apart.
pub async fn route(
    broker: &dyn Broker,
    service: &str,
    request: PushRequest,
) -> Result<usize, ApiError> {
    match request {
        PushRequest::Close { connection_id } => {
            broker.close(service, &connection_id).await.map(|()| 1)
        }
        PushRequest::Send {
            connection_id,
            payload,
        } => broker
            .deliver(service, &connection_id, Outbound::from(payload))
            .await
            .map(|()| 1),
        PushRequest::Broadcast {
            group,
            payload,
            except,
        } => {
            broker
                .broadcast(service, &group, Outbound::from(payload), except.as_deref())
                .await
        }
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
