//! The connection registry and the one routing function behind both the
//! reverse-push endpoint and the push/close host calls.
//!
//! Connections are kept per service: a lookup always names the caller's
//! service, so an id of another service is simply "not found".

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::ws::Utf8Bytes;
use base64::Engine as _;
use bytes::Bytes;
use rand::TryRngCore;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::protocol::{ApiError, CloseReason, Payload, PushRequest, BASE64};

/// A message queued for a client.
#[derive(Debug, Clone)]
pub(crate) enum Outbound {
    /// A text frame.
    Text(Utf8Bytes),
    /// A binary frame.
    Binary(Bytes),
}

/// Why the gateway closes a connection, and with which close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CloseCause {
    /// Reported to cleanup as `closeReason`.
    pub reason: CloseReason,
    /// Sent to the client in the close frame.
    pub code: u16,
    /// Sent to the client as the close reason text.
    pub text: &'static str,
}

impl CloseCause {
    /// Closed by a reverse push or host call.
    pub const SERVER: Self = Self {
        reason: CloseReason::Server,
        code: 1000,
        text: "closed by the service",
    };
    /// The client did not read its messages fast enough.
    pub const SLOW_CLIENT: Self = Self {
        reason: CloseReason::Error,
        code: 1008,
        text: "outbound queue overflow",
    };
    /// The service's folder was removed.
    pub const SERVICE_REMOVED: Self = Self {
        reason: CloseReason::Shutdown,
        code: 1001,
        text: "service removed",
    };
    /// The gateway is shutting down.
    pub const SHUTDOWN: Self = Self {
        reason: CloseReason::Shutdown,
        code: 1001,
        text: "gateway shutting down",
    };
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A new connection id: 128 bits from the OS's cryptographic generator,
/// standard Base64.
pub(crate) fn new_connection_id() -> Arc<str> {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random source is available");
    BASE64.encode(bytes).into()
}

/// One live (or registering) connection, as the router sees it.
#[derive(Debug)]
pub(crate) struct Connection {
    pub id: Arc<str>,
    pub service: Arc<str>,
    pub source_ip: IpAddr,
    pub connected_at_ms: u64,
    last_active_ms: AtomicU64,
    outbound: mpsc::Sender<Outbound>,
    closing: CancellationToken,
    // A std mutex: set once, read once, never held across an await.
    close_cause: Mutex<Option<CloseCause>>,
}

impl Connection {
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

    fn info(&self) -> ConnectionInfo {
        ConnectionInfo {
            sec_connection_id: self.id.to_string(),
            connected_at: self.connected_at_ms,
            source_ip: self.source_ip.to_string(),
            last_active_at: self.last_active_ms.load(Ordering::Relaxed),
        }
    }
}

/// What the info routes report about a connection (times in ms since the epoch).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
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
}

/// Live connections of one service, by id.
type ServiceConnections = HashMap<Arc<str>, Arc<Connection>>;

/// The registry of connections by service. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Router {
    // A std mutex: every critical section is a map operation, never an await.
    services: Arc<Mutex<HashMap<Arc<str>, ServiceConnections>>>,
}

/// A connection reserved in the router, with the receiving end of its queue.
pub(crate) struct Reservation {
    pub connection: Arc<Connection>,
    pub outbound: mpsc::Receiver<Outbound>,
}

impl Router {
    /// Reserves a new connection of `service`, or refuses when the service
    /// already holds `max_connections`.
    pub(crate) fn reserve(
        &self,
        service: &Arc<str>,
        source_ip: IpAddr,
        queue: usize,
        max_connections: usize,
    ) -> Result<Reservation, ApiError> {
        let (sender, receiver) = mpsc::channel(queue.max(1));
        let now = now_ms();
        let connection = Arc::new(Connection {
            id: new_connection_id(),
            service: service.clone(),
            source_ip,
            connected_at_ms: now,
            last_active_ms: AtomicU64::new(now),
            outbound: sender,
            closing: CancellationToken::new(),
            close_cause: Mutex::new(None),
        });
        let mut services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        let connections = services.entry(service.clone()).or_default();
        if connections.len() >= max_connections {
            return Err(ApiError::too_many_connections(max_connections));
        }
        connections.insert(connection.id.clone(), connection.clone());
        Ok(Reservation {
            connection,
            outbound: receiver,
        })
    }

    /// Removes a connection; later pushes to it are "not found".
    pub(crate) fn remove(&self, connection: &Connection) {
        let mut services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(connections) = services.get_mut(&connection.service) {
            connections.remove(&connection.id);
            if connections.is_empty() {
                services.remove(&connection.service);
            }
        }
    }

    fn find(&self, service: &str, id: &str) -> Option<Arc<Connection>> {
        let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        services.get(service)?.get(id).cloned()
    }

    /// The one routing function: delivers or closes, for `service` only.
    pub fn route(&self, service: &str, request: PushRequest) -> Result<(), ApiError> {
        let id = request.connection_id();
        let connection = self
            .find(service, id)
            .ok_or_else(|| ApiError::connection_not_found(id))?;
        match request {
            PushRequest::Close { .. } => {
                connection.close(CloseCause::SERVER);
                Ok(())
            }
            PushRequest::Send { payload, .. } => {
                let message = match payload {
                    Payload::Text(text) => Outbound::Text(text.into()),
                    Payload::Binary(bytes) => Outbound::Binary(bytes),
                };
                match connection.outbound.try_send(message) {
                    Ok(()) => Ok(()),
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        connection.close(CloseCause::SLOW_CLIENT);
                        Err(ApiError::queue_full(&connection.id))
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        Err(ApiError::connection_not_found(&connection.id))
                    }
                }
            }
        }
    }

    /// Live connections of a service.
    pub fn list(&self, service: &str) -> Vec<ConnectionInfo> {
        let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<_> = services
            .get(service)
            .map(|connections| connections.values().map(|c| c.info()).collect())
            .unwrap_or_default();
        drop(services);
        list.sort_by_key(|c| c.connected_at);
        list
    }

    /// One connection of a service.
    pub fn info(&self, service: &str, id: &str) -> Option<ConnectionInfo> {
        self.find(service, id).map(|c| c.info())
    }

    /// Number of connections of a service.
    pub fn count(&self, service: &str) -> usize {
        let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        services.get(service).map_or(0, HashMap::len)
    }

    /// Asks every connection of every service (or of one) to close.
    pub(crate) fn close_all(&self, service: Option<&str>, cause: CloseCause) {
        let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        let targets: Vec<Arc<Connection>> = services
            .iter()
            .filter(|(name, _)| service.is_none_or(|s| s == &***name))
            .flat_map(|(_, connections)| connections.values().cloned())
            .collect();
        drop(services);
        for connection in targets {
            connection.close(cause);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip() -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }

    #[test]
    fn ids_are_unique_and_128_bits() {
        let a = new_connection_id();
        let b = new_connection_id();
        assert_ne!(a, b);
        assert_eq!(BASE64.decode(a.as_bytes()).unwrap().len(), 16);
    }

    #[tokio::test]
    async fn routes_only_within_the_service() {
        let router = Router::default();
        let chat: Arc<str> = "chat".into();
        let mut reservation = router.reserve(&chat, ip(), 4, 10).unwrap();
        let id = reservation.connection.id.to_string();
        let send = |service: &str| {
            router.route(
                service,
                PushRequest::Send {
                    connection_id: id.clone(),
                    payload: Payload::Text("hi".into()),
                },
            )
        };
        assert_eq!(send("other").unwrap_err().code, 2202);
        send("chat").unwrap();
        assert!(matches!(reservation.outbound.recv().await, Some(Outbound::Text(t)) if t == "hi"));
        assert_eq!(router.list("chat").len(), 1);
        assert!(router.list("other").is_empty());
        router.remove(&reservation.connection);
        assert_eq!(send("chat").unwrap_err().code, 2202);
    }

    #[test]
    fn full_queue_closes_the_slow_client() {
        let router = Router::default();
        let svc: Arc<str> = "svc".into();
        let reservation = router.reserve(&svc, ip(), 1, 10).unwrap();
        let id = reservation.connection.id.to_string();
        let push = || {
            router.route(
                "svc",
                PushRequest::Send {
                    connection_id: id.clone(),
                    payload: Payload::Binary(Bytes::from_static(b"x")),
                },
            )
        };
        push().unwrap();
        assert_eq!(push().unwrap_err().code, 2203);
        assert_eq!(
            reservation.connection.close_cause(),
            Some(CloseCause::SLOW_CLIENT)
        );
    }

    #[test]
    fn connection_cap_is_per_service() {
        let router = Router::default();
        let a: Arc<str> = "a".into();
        let b: Arc<str> = "b".into();
        let _first = router.reserve(&a, ip(), 1, 1).unwrap();
        assert_eq!(router.reserve(&a, ip(), 1, 1).err().unwrap().code, 2303);
        assert!(router.reserve(&b, ip(), 1, 1).is_ok());
    }
}
