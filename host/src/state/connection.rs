//! One connection as the state layer sees it: its id, its bounded outbound
//! queue (drained into the socket by the connection's writer task; see
//! `outbound.rs`), and the close request its session waits for.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use rand::TryRngCore;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tungstenite::Utf8Bytes;

use super::outbound::{
    queue, OutboundBudget, OutboundReceiver, OutboundSender, QueueBounds, Refused,
};
use super::{now_ms, Membership};
use crate::protocol::{ApiError, CloseCause, ErrNo, Payload, BASE64};

/// A message queued for a client.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A text frame.
    Text(Utf8Bytes),
    /// A binary frame.
    Binary(Bytes),
    /// A ping the gateway sends to see whether the client is still there.
    Ping,
}

impl Outbound {
    /// Bytes of the message body: what it counts against the queue's byte
    /// bounds (a ping counts nothing).
    pub fn len(&self) -> usize {
        match self {
            Outbound::Text(text) => text.len(),
            Outbound::Binary(bytes) => bytes.len(),
            Outbound::Ping => 0,
        }
    }

    /// Whether the message body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Payload> for Outbound {
    fn from(payload: Payload) -> Self {
        match payload {
            Payload::Text(text) => Outbound::Text(text.into()),
            Payload::Binary(bytes) => Outbound::Binary(bytes),
        }
    }
}

/// 128 bits from the OS's cryptographic generator.
fn random_bits() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random source is available");
    bytes
}

/// A new connection id: 128 bits from the OS's cryptographic generator,
/// standard Base64.
pub(crate) fn new_connection_id() -> Arc<str> {
    BASE64.encode(random_bits()).into()
}

/// A new connection id of cluster node `node`: `<node>.<128 random bits in
/// URL-safe Base64>`, so that any node can tell where it lives without a
/// lookup, and nothing in it needs percent-encoding in a URL.
pub(crate) fn new_node_connection_id(node: &str) -> Arc<str> {
    let bits = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bits());
    format!("{node}.{bits}").into()
}

/// The node named by a cluster connection id, if it has the shape of one.
pub fn node_of(id: &str) -> Option<&str> {
    let (node, bits) = id.split_once('.')?;
    let url_safe = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (!node.is_empty() && bits.len() == 22 && url_safe(node) && url_safe(bits)).then_some(node)
}

/// One live (or registering) connection.
#[derive(Debug)]
pub(crate) struct Connection {
    pub id: Arc<str>,
    pub service: Arc<str>,
    pub source_ip: IpAddr,
    pub connected_at_ms: u64,
    last_active_ms: AtomicU64,
    outbound: OutboundSender,
    closing: CancellationToken,
    // A std mutex: set once, read once, never held across an await.
    close_cause: Mutex<Option<CloseCause>>,
    /// What register (or a later `set-attributes`) attached: compact JSON of
    /// an object, sent in every later event of the connection.
    attributes: Mutex<Option<Arc<str>>>,
    /// Cluster mode: told of every change of the attributes, so that a
    /// survivor of this node can pass them to the `node_lost` cleanup.
    membership: Option<Arc<dyn Membership>>,
}

impl Connection {
    /// A new connection of `service` with an outbound queue within
    /// `bounds`, counting against the gateway's `budget`; the receiving end
    /// goes to its writer. In cluster mode `membership` hears of its
    /// attributes.
    pub fn new(
        id: Arc<str>,
        service: &Arc<str>,
        source_ip: IpAddr,
        bounds: QueueBounds,
        budget: &OutboundBudget,
        membership: Option<Arc<dyn Membership>>,
    ) -> (Self, OutboundReceiver) {
        let (sender, receiver) = queue(bounds, budget);
        let now = now_ms();
        let connection = Self {
            id,
            service: service.clone(),
            source_ip,
            connected_at_ms: now,
            last_active_ms: AtomicU64::new(now),
            outbound: sender,
            closing: CancellationToken::new(),
            close_cause: Mutex::new(None),
            attributes: Mutex::new(None),
            membership,
        };
        (connection, receiver)
    }

    /// The connection's attributes (compact JSON of an object), if any.
    pub fn attributes(&self) -> Option<Arc<str>> {
        self.attributes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the connection's attributes (already checked).
    pub fn set_attributes(&self, attributes: Option<Arc<str>>) {
        let mut slot = self.attributes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(membership) = &self.membership {
            // Under the lock: two changes reach the cluster in their order.
            membership.attributes(&self.service, &self.id, attributes.as_ref());
        }
        *slot = attributes;
    }

    /// Records client activity (for `lastActiveAt`).
    pub fn touch(&self) {
        self.last_active_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Asks the connection's task to close it. The first cause wins.
    pub fn close(&self, cause: CloseCause) {
        let mut slot = self.close_cause.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(cause);
        }
        drop(slot);
        self.closing.cancel();
    }

    /// The cause given to [`Connection::close`], if any.
    pub fn close_cause(&self) -> Option<CloseCause> {
        *self.close_cause.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves once [`Connection::close`] has been called.
    pub fn closing(&self) -> &CancellationToken {
        &self.closing
    }

    /// What the info routes report, with the groups it is in.
    pub fn info(&self, groups: Option<&BTreeSet<Arc<str>>>) -> ConnectionInfo {
        ConnectionInfo {
            sec_connection_id: self.id.to_string(),
            connected_at: self.connected_at_ms,
            source_ip: self.source_ip.to_string(),
            last_active_at: self.last_active_ms.load(Ordering::Relaxed),
            groups: groups
                .map(|groups| groups.iter().map(|g| g.to_string()).collect())
                .unwrap_or_default(),
            attributes: self
                .attributes()
                .and_then(|json| serde_json::from_str(&json).ok()),
        }
    }

    /// Queues a ping unless the queue is full (a client that does not read
    /// is closed by its queue, not by the liveness check).
    pub fn ping(&self) {
        let _ = self.outbound.try_send(Outbound::Ping);
    }

    /// Queues a message. A queue at either of its bounds closes the
    /// connection as too slow (2203). When the gateway's outbound budget is
    /// spent, a connection that is itself behind is closed the same way,
    /// which gives its bytes back; one whose queue is empty keeps its
    /// connection and the message is refused (2205).
    pub fn send(&self, message: Outbound) -> Result<(), ApiError> {
        match self.outbound.try_send(message) {
            Ok(()) => Ok(()),
            Err(Refused::QueueFull | Refused::BudgetSpent { behind: true }) => {
                self.close(CloseCause::SLOW_CLIENT);
                Err(ErrNo::QUEUE_FULL.with(&self.id))
            }
            Err(Refused::BudgetSpent { behind: false }) => {
                Err(ErrNo::OUTBOUND_BUDGET_SPENT.with(&self.id))
            }
            Err(Refused::Closed) => Err(ErrNo::CONNECTION_NOT_FOUND.with(&self.id)),
        }
    }
}

/// What the info routes report about a connection (times in ms since the epoch).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionInfo {
    /// The connection id.
    #[serde(rename = "secConnectionID")]
    pub sec_connection_id: String,
    /// When the upgrade was requested.
    pub connected_at: u64,
    /// The client's address.
    pub source_ip: String,
    /// When the client last sent a message.
    pub last_active_at: u64,
    /// The groups the connection is in, sorted.
    pub groups: Vec<String>,
    /// The connection's attributes, when register or a handler set them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_128_bits() {
        let a = new_connection_id();
        let b = new_connection_id();
        assert_ne!(a, b);
        assert_eq!(BASE64.decode(a.as_bytes()).unwrap().len(), 16);
    }

    #[test]
    fn node_ids_name_their_node_and_need_no_escaping() {
        let id = new_node_connection_id("Xk3pQ9aL");
        assert_eq!(id.len(), 31);
        assert_eq!(node_of(&id), Some("Xk3pQ9aL"));
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
        assert_eq!(node_of(&new_connection_id()), None);
        assert_eq!(node_of("a.b"), None);
    }
}
