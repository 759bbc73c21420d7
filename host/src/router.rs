//! The connection registry and the one routing function behind both the
//! reverse-push endpoint and the push/close host calls.
//!
//! Connections are kept per service: a lookup always names the caller's
//! service, so an id of another service is simply "not found". Groups (named
//! sets of connections, for broadcast) are kept beside them, per service too,
//! and a connection leaves all of its groups when it leaves the router.

use std::collections::{BTreeSet, HashMap};
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

impl From<Payload> for Outbound {
    fn from(payload: Payload) -> Self {
        match payload {
            Payload::Text(text) => Outbound::Text(text.into()),
            Payload::Binary(bytes) => Outbound::Binary(bytes),
        }
    }
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

    fn info(&self, groups: Option<&BTreeSet<Arc<str>>>) -> ConnectionInfo {
        ConnectionInfo {
            sec_connection_id: self.id.to_string(),
            connected_at: self.connected_at_ms,
            source_ip: self.source_ip.to_string(),
            last_active_at: self.last_active_ms.load(Ordering::Relaxed),
            groups: groups
                .map(|groups| groups.iter().map(|g| g.to_string()).collect())
                .unwrap_or_default(),
        }
    }

    /// Queues a message; a full queue closes the connection as too slow.
    fn send(&self, message: Outbound) -> Result<(), ApiError> {
        match self.outbound.try_send(message) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.close(CloseCause::SLOW_CLIENT);
                Err(ApiError::queue_full(&self.id))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Err(ApiError::connection_not_found(&self.id))
            }
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
    /// The groups the connection is in, sorted.
    pub groups: Vec<String>,
}

/// Longest group name, in bytes.
pub const MAX_GROUP_NAME_BYTES: usize = 128;

/// Most groups one connection can be in at once.
pub const MAX_GROUPS_PER_CONNECTION: usize = 64;

/// Checks a group name against the limits.
pub(crate) fn check_group(group: &str) -> Result<(), ApiError> {
    if group.is_empty() {
        return Err(ApiError::invalid_group("empty name"));
    }
    if group.len() > MAX_GROUP_NAME_BYTES {
        return Err(ApiError::invalid_group(format!(
            "name of {} bytes, longer than {MAX_GROUP_NAME_BYTES}",
            group.len()
        )));
    }
    Ok(())
}

/// Live connections and groups of one service.
#[derive(Debug, Default)]
struct ServiceConnections {
    /// Connections by id.
    connections: HashMap<Arc<str>, Arc<Connection>>,
    /// Members of each non-empty group, by id.
    groups: HashMap<Arc<str>, HashMap<Arc<str>, Arc<Connection>>>,
    /// The groups of each connection that is in at least one.
    memberships: HashMap<Arc<str>, BTreeSet<Arc<str>>>,
}

impl ServiceConnections {
    fn connection(&self, id: &str) -> Result<&Arc<Connection>, ApiError> {
        self.connections
            .get(id)
            .ok_or_else(|| ApiError::connection_not_found(id))
    }

    fn info(&self, connection: &Connection) -> ConnectionInfo {
        connection.info(self.memberships.get(&connection.id))
    }

    /// Takes a connection out of every group; the groups it was in.
    fn leave_all(&mut self, id: &str) -> Vec<Arc<str>> {
        let Some(groups) = self.memberships.remove(id) else {
            return Vec::new();
        };
        for group in &groups {
            if let Some(members) = self.groups.get_mut(group) {
                members.remove(id);
                if members.is_empty() {
                    self.groups.remove(group);
                }
            }
        }
        groups.into_iter().collect()
    }
}

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
        let state = services.entry(service.clone()).or_default();
        if state.connections.len() >= max_connections {
            return Err(ApiError::too_many_connections(max_connections));
        }
        state
            .connections
            .insert(connection.id.clone(), connection.clone());
        Ok(Reservation {
            connection,
            outbound: receiver,
        })
    }

    /// Removes a connection, and takes it out of every group; later pushes
    /// to it are "not found". Returns the groups it was in.
    pub(crate) fn remove(&self, connection: &Connection) -> Vec<Arc<str>> {
        let mut services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        let Some(state) = services.get_mut(&connection.service) else {
            return Vec::new();
        };
        let groups = match state.connections.get(&connection.id) {
            // Only the connection itself, not a later one that reused the id.
            Some(current) if std::ptr::eq(&**current, connection) => {
                state.connections.remove(&connection.id);
                state.leave_all(&connection.id)
            }
            _ => Vec::new(),
        };
        if state.connections.is_empty() {
            services.remove(&connection.service);
        }
        groups
    }

    fn find(&self, service: &str, id: &str) -> Option<Arc<Connection>> {
        let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        services.get(service)?.connections.get(id).cloned()
    }

    /// The one routing function: delivers, broadcasts or closes, for
    /// `service` only. Returns how many connections the request reached.
    pub fn route(&self, service: &str, request: PushRequest) -> Result<usize, ApiError> {
        match request {
            PushRequest::Close { connection_id } => {
                let connection = self
                    .find(service, &connection_id)
                    .ok_or_else(|| ApiError::connection_not_found(&connection_id))?;
                connection.close(CloseCause::SERVER);
                Ok(1)
            }
            PushRequest::Send {
                connection_id,
                payload,
            } => {
                let connection = self
                    .find(service, &connection_id)
                    .ok_or_else(|| ApiError::connection_not_found(&connection_id))?;
                connection.send(Outbound::from(payload))?;
                Ok(1)
            }
            PushRequest::Broadcast {
                group,
                payload,
                except,
            } => self.broadcast(service, &group, Outbound::from(payload), except.as_deref()),
        }
    }

    /// Queues `message` for every member of `group` but `except`. The
    /// message is shared between the members' queues, not copied. A member
    /// whose queue is full is closed as a slow client and not counted.
    pub(crate) fn broadcast(
        &self,
        service: &str,
        group: &str,
        message: Outbound,
        except: Option<&str>,
    ) -> Result<usize, ApiError> {
        check_group(group)?;
        let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        let members: Vec<Arc<Connection>> = services
            .get(service)
            .and_then(|state| state.groups.get(group))
            .map(|members| {
                members
                    .values()
                    .filter(|member| except != Some(&*member.id))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        // Sending wakes the members' writers; do it outside the lock.
        drop(services);
        Ok(members
            .iter()
            .filter(|member| member.send(message.clone()).is_ok())
            .count())
    }

    /// Adds a live connection of `service` to `group`.
    pub(crate) fn join(&self, service: &str, group: &str, id: &str) -> Result<(), ApiError> {
        check_group(group)?;
        let mut services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        let state = services
            .get_mut(service)
            .ok_or_else(|| ApiError::connection_not_found(id))?;
        let connection = state.connection(id)?.clone();
        let groups = state.memberships.entry(connection.id.clone()).or_default();
        if groups.contains(group) {
            return Ok(());
        }
        if groups.len() >= MAX_GROUPS_PER_CONNECTION {
            return Err(ApiError::too_many_groups(MAX_GROUPS_PER_CONNECTION));
        }
        let group: Arc<str> = group.into();
        groups.insert(group.clone());
        state
            .groups
            .entry(group)
            .or_default()
            .insert(connection.id.clone(), connection);
        Ok(())
    }

    /// Takes a live connection of `service` out of `group`; whether it was in.
    pub(crate) fn leave(&self, service: &str, group: &str, id: &str) -> Result<bool, ApiError> {
        check_group(group)?;
        let mut services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        let state = services
            .get_mut(service)
            .ok_or_else(|| ApiError::connection_not_found(id))?;
        state.connection(id)?;
        let was_member = state
            .memberships
            .get_mut(id)
            .is_some_and(|groups| groups.remove(group));
        if !was_member {
            return Ok(false);
        }
        if state.memberships.get(id).is_some_and(BTreeSet::is_empty) {
            state.memberships.remove(id);
        }
        if let Some(members) = state.groups.get_mut(group) {
            members.remove(id);
            if members.is_empty() {
                state.groups.remove(group);
            }
        }
        Ok(true)
    }

    /// The ids of the members of `group`, sorted.
    pub fn members(&self, service: &str, group: &str) -> Result<Vec<String>, ApiError> {
        check_group(group)?;
        let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        let mut ids: Vec<String> = services
            .get(service)
            .and_then(|state| state.groups.get(group))
            .map(|members| members.keys().map(|id| id.to_string()).collect())
            .unwrap_or_default();
        drop(services);
        ids.sort();
        Ok(ids)
    }

    /// The groups of a live connection of `service`, sorted.
    pub fn groups_of(&self, service: &str, id: &str) -> Result<Vec<String>, ApiError> {
        let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        let state = services
            .get(service)
            .ok_or_else(|| ApiError::connection_not_found(id))?;
        state.connection(id)?;
        Ok(state
            .memberships
            .get(id)
            .map(|groups| groups.iter().map(|g| g.to_string()).collect())
            .unwrap_or_default())
    }

    /// Number of groups with at least one member, per service.
    pub fn group_count(&self, service: &str) -> usize {
        let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        services.get(service).map_or(0, |state| state.groups.len())
    }

    /// Live connections of a service.
    pub fn list(&self, service: &str) -> Vec<ConnectionInfo> {
        let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<_> = services
            .get(service)
            .map(|state| state.connections.values().map(|c| state.info(c)).collect())
            .unwrap_or_default();
        drop(services);
        list.sort_by_key(|c| c.connected_at);
        list
    }

    /// One connection of a service.
    pub fn info(&self, service: &str, id: &str) -> Option<ConnectionInfo> {
        let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        let state = services.get(service)?;
        state.connections.get(id).map(|c| state.info(c))
    }

    /// Number of connections of a service.
    pub fn count(&self, service: &str) -> usize {
        let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        services
            .get(service)
            .map_or(0, |state| state.connections.len())
    }

    /// Asks every connection of every service (or of one) to close.
    pub(crate) fn close_all(&self, service: Option<&str>, cause: CloseCause) {
        let services = self.services.lock().unwrap_or_else(|e| e.into_inner());
        let targets: Vec<Arc<Connection>> = services
            .iter()
            .filter(|(name, _)| service.is_none_or(|s| s == &***name))
            .flat_map(|(_, state)| state.connections.values().cloned())
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

    #[tokio::test]
    async fn groups_broadcast_share_the_message_and_end_with_the_connection() {
        let router = Router::default();
        let chat: Arc<str> = "chat".into();
        let other: Arc<str> = "other".into();
        let mut a = router.reserve(&chat, ip(), 4, 10).unwrap();
        let mut b = router.reserve(&chat, ip(), 4, 10).unwrap();
        let mut stranger = router.reserve(&other, ip(), 4, 10).unwrap();
        let (a_id, b_id) = (a.connection.id.to_string(), b.connection.id.to_string());
        router.join("chat", "room", &a_id).unwrap();
        router.join("chat", "room", &b_id).unwrap();
        router
            .join("other", "room", &stranger.connection.id)
            .unwrap();
        // Another service's connection cannot be added.
        assert_eq!(
            router
                .join("chat", "room", &stranger.connection.id)
                .unwrap_err()
                .code,
            2202
        );
        assert_eq!(router.join("chat", "", &a_id).unwrap_err().code, 2406);

        let message = Outbound::Text("hi".into());
        assert_eq!(
            router
                .broadcast("chat", "room", message, Some(&a_id))
                .unwrap(),
            1
        );
        assert!(matches!(b.outbound.recv().await, Some(Outbound::Text(t)) if t == "hi"));
        assert!(a.outbound.try_recv().is_err());
        assert!(stranger.outbound.try_recv().is_err());
        assert_eq!(router.members("chat", "room").unwrap().len(), 2);
        assert_eq!(router.info("chat", &a_id).unwrap().groups, ["room"]);

        assert_eq!(router.remove(&a.connection), vec![Arc::<str>::from("room")]);
        assert_eq!(router.members("chat", "room").unwrap(), vec![b_id.clone()]);
        assert!(router.leave("chat", "room", &b_id).unwrap());
        assert_eq!(router.group_count("chat"), 0);
        assert_eq!(router.members("other", "room").unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_broadcast_shares_one_buffer_between_all_members() {
        let router = Router::default();
        let svc: Arc<str> = "svc".into();
        let mut members: Vec<_> = (0..100)
            .map(|_| router.reserve(&svc, ip(), 4, 1000).unwrap())
            .collect();
        for member in &members {
            router.join("svc", "all", &member.connection.id).unwrap();
        }
        let payload = Bytes::from(vec![7u8; 64 << 10]);
        let address = payload.as_ptr();
        let sent = router
            .broadcast("svc", "all", Outbound::Binary(payload), None)
            .unwrap();
        assert_eq!(sent, 100);
        for member in &mut members {
            match member.outbound.recv().await {
                // The same bytes, not a copy.
                Some(Outbound::Binary(bytes)) => assert_eq!(bytes.as_ptr(), address),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn a_connection_has_at_most_so_many_groups() {
        let router = Router::default();
        let svc: Arc<str> = "svc".into();
        let reservation = router.reserve(&svc, ip(), 1, 10).unwrap();
        let id = reservation.connection.id.to_string();
        for n in 0..MAX_GROUPS_PER_CONNECTION {
            router.join("svc", &format!("g{n}"), &id).unwrap();
        }
        // Joining a group again is fine; a new one is not.
        router.join("svc", "g0", &id).unwrap();
        assert_eq!(router.join("svc", "one-more", &id).unwrap_err().code, 2407);
    }
}
