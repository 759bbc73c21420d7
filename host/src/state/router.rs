//! The connection registry of this node, and the single-node [`Broker`]:
//! every connection and group a routed request can reach is here.
//!
//! Connections are kept per service: a lookup always names the caller's
//! service, so an id of another service is simply "not found". A connection
//! leaves all of its groups when it leaves the registry.
//!
//! Each service has its own lock (a shard). The map from service names to
//! shards has a lock too, but it is held only to find, add or drop a shard,
//! never while a shard is locked, so no work on one service's connections or
//! groups (a broadcast to a large group, a listing of every connection) ever
//! waits for, or makes wait, another service.
//!
//! In cluster mode the router stays the truth about this node's
//! connections and their groups, and delivers to them; it tells the
//! cluster of every change ([`Membership`]), and the cluster keeps the copy
//! other nodes read in Redis (`cluster/registry.rs`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};

use super::connection::{
    new_connection_id, new_node_connection_id, Connection, ConnectionInfo, Outbound,
};
use super::groups::{check_group, Groups, MemberPage};
use super::outbound::{OutboundBudget, OutboundReceiver, QueueBounds};
use super::{Broker, Membership};
use crate::protocol::{ApiError, CloseCause, ErrNo};

/// Live connections and groups of one service.
#[derive(Debug, Default)]
struct ServiceConnections {
    /// Connections by id.
    connections: HashMap<Arc<str>, Arc<Connection>>,
    groups: Groups,
    /// Set when the shard was emptied and is being dropped from the map: a
    /// caller that found it just before must look the service up again.
    retired: bool,
}

impl ServiceConnections {
    fn connection(&self, id: &str) -> Result<&Arc<Connection>, ApiError> {
        self.connections
            .get(id)
            .ok_or_else(|| ErrNo::CONNECTION_NOT_FOUND.with(id))
    }

    fn info(&self, connection: &Connection) -> ConnectionInfo {
        connection.info(self.groups.of(&connection.id))
    }
}

/// One service's connections behind its own lock. A std mutex: every
/// critical section is map work, never an await.
#[derive(Debug, Default)]
struct Shard(Mutex<ServiceConnections>);

impl Shard {
    fn lock(&self) -> MutexGuard<'_, ServiceConnections> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The registry of this node's connections, by service. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Router {
    /// Service name → its shard. A read lock finds a shard; the write lock
    /// adds or drops one (a service's first connection, its last leaving).
    /// Neither is ever held while a shard is locked.
    services: Arc<RwLock<HashMap<Arc<str>, Arc<Shard>>>>,
    /// Bytes queued for clients, every connection of every service
    /// together, and the most there may be (`--outbound-budget-mb`).
    budget: OutboundBudget,
    /// Cluster mode: names new ids after the node and hears of every
    /// connection added and removed, and of every group change. Set once,
    /// before the first connection.
    membership: Arc<OnceLock<Arc<dyn Membership>>>,
}

/// One live connection as [`Router::entries`] lists it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub service: Arc<str>,
    pub id: Arc<str>,
    /// Compact JSON of an object, if it has attributes.
    pub attributes: Option<Arc<str>>,
    /// The groups it is in, sorted.
    pub groups: Vec<Arc<str>>,
}

/// A connection reserved in the router, with the receiving end of its queue.
pub(crate) struct Reservation {
    pub connection: Arc<Connection>,
    pub outbound: OutboundReceiver,
}

impl Router {
    /// An empty registry whose connections' queues share `budget`.
    pub fn new(budget: OutboundBudget) -> Self {
        Self {
            services: Arc::default(),
            budget,
            membership: Arc::default(),
        }
    }

    /// Cluster mode: names ids after the node and reports connections to
    /// `membership`. Only the first call counts.
    pub fn set_membership(&self, membership: Arc<dyn Membership>) {
        let _ = self.membership.set(membership);
    }

    /// Every service's shard.
    fn shards(&self) -> Vec<(Arc<str>, Arc<Shard>)> {
        let services = self.services.read().unwrap_or_else(|e| e.into_inner());
        services
            .iter()
            .map(|(name, shard)| (name.clone(), shard.clone()))
            .collect()
    }

    /// Every live connection, with its attributes and groups.
    pub fn entries(&self) -> Vec<Entry> {
        let mut all = Vec::new();
        for (service, shard) in self.shards() {
            let state = shard.lock();
            all.extend(state.connections.values().map(|connection| {
                Entry {
                    service: service.clone(),
                    id: connection.id.clone(),
                    attributes: connection.attributes(),
                    groups: state
                        .groups
                        .of(&connection.id)
                        .map(|groups| groups.iter().cloned().collect())
                        .unwrap_or_default(),
                }
            }));
        }
        all
    }

    /// The gateway-wide outbound budget, with the bytes queued now.
    pub fn outbound_budget(&self) -> &OutboundBudget {
        &self.budget
    }

    /// The shard of `service`, if it has one.
    fn shard(&self, service: &str) -> Option<Arc<Shard>> {
        let services = self.services.read().unwrap_or_else(|e| e.into_inner());
        services.get(service).cloned()
    }

    /// The shard of `service`, added if it has none (or only a retired one).
    fn shard_or_new(&self, service: &Arc<str>) -> Arc<Shard> {
        if let Some(shard) = self.shard(service) {
            return shard;
        }
        let mut services = self.services.write().unwrap_or_else(|e| e.into_inner());
        services.entry(service.clone()).or_default().clone()
    }

    /// Drops `shard` from the map, if it is still the service's shard.
    fn drop_shard(&self, service: &str, shard: &Arc<Shard>) {
        let mut services = self.services.write().unwrap_or_else(|e| e.into_inner());
        if services
            .get(service)
            .is_some_and(|current| Arc::ptr_eq(current, shard))
        {
            services.remove(service);
        }
    }

    /// Runs `read` on the connections of `service` (none: an empty set).
    fn with<T>(&self, service: &str, read: impl FnOnce(&ServiceConnections) -> T) -> T {
        match self.shard(service) {
            Some(shard) => read(&shard.lock()),
            None => read(&ServiceConnections::default()),
        }
    }

    /// Reserves a new connection of `service` whose queue holds at most
    /// `queue`, or refuses when the service already holds `max_connections`.
    pub(crate) fn reserve(
        &self,
        service: &Arc<str>,
        source_ip: IpAddr,
        queue: QueueBounds,
        max_connections: usize,
    ) -> Result<Reservation, ApiError> {
        let membership = self.membership.get();
        let node = membership.map(|membership| membership.node());
        let id = match &node {
            Some(node) => new_node_connection_id(node),
            None => new_connection_id(),
        };
        let (connection, outbound) = Connection::new(
            id,
            service,
            source_ip,
            queue,
            &self.budget,
            membership.cloned(),
        );
        let connection = Arc::new(connection);
        loop {
            let shard = self.shard_or_new(service);
            let mut state = shard.lock();
            if state.retired {
                // Emptied by the last connection's removal just now.
                drop(state);
                self.drop_shard(service, &shard);
                continue;
            }
            if state.connections.len() >= max_connections {
                return Err(ErrNo::TOO_MANY_CONNECTIONS.with(max_connections));
            }
            state
                .connections
                .insert(connection.id.clone(), connection.clone());
            drop(state);
            if let Some(membership) = membership {
                membership.added(service, &connection.id);
            }
            return Ok(Reservation {
                connection,
                outbound,
            });
        }
    }

    /// Removes a connection, and takes it out of every group; later pushes
    /// to it are "not found". Returns the groups it was in. In cluster
    /// mode it leaves the node's registry too: for a connection whose
    /// cleanup is still to run, use [`Router::detach`] then
    /// [`Router::forget`].
    pub(crate) fn remove(&self, connection: &Connection) -> Vec<Arc<str>> {
        let groups = self.detach(connection);
        self.forget(connection);
        groups
    }

    /// Cluster mode: takes a connection out of the node's registry, once
    /// its cleanup has run. Until then, a survivor of this node's crash
    /// would run the cleanup itself.
    pub(crate) fn forget(&self, connection: &Connection) {
        if let Some(membership) = self.membership.get() {
            membership.removed(&connection.service, &connection.id);
        }
    }

    /// Like [`Router::remove`], but it stays in the node's registry (cluster
    /// mode) until [`Router::forget`].
    pub(crate) fn detach(&self, connection: &Connection) -> Vec<Arc<str>> {
        let Some(shard) = self.shard(&connection.service) else {
            return Vec::new();
        };
        let mut state = shard.lock();
        let groups = match state.connections.get(&connection.id) {
            // Only the connection itself, not a later one that reused the id.
            Some(current) if std::ptr::eq(&**current, connection) => {
                state.connections.remove(&connection.id);
                let groups = state.groups.leave_all(&connection.id);
                if let Some(membership) = self.membership.get().filter(|_| !groups.is_empty()) {
                    membership.departed(&connection.service, &connection.id, &groups);
                }
                groups
            }
            _ => Vec::new(),
        };
        let emptied = state.connections.is_empty() && !state.retired;
        if emptied {
            state.retired = true;
        }
        drop(state);
        if emptied {
            self.drop_shard(&connection.service, &shard);
        }
        groups
    }

    fn find(&self, service: &str, id: &str) -> Result<Arc<Connection>, ApiError> {
        self.with(service, |state| state.connection(id).cloned())
    }

    /// Queues `message` for one connection of `service`.
    pub fn deliver(&self, service: &str, id: &str, message: Outbound) -> Result<(), ApiError> {
        self.find(service, id)?.send(message)
    }

    /// Asks one connection of `service` to close, as the service's own close.
    pub fn close(&self, service: &str, id: &str) -> Result<(), ApiError> {
        self.close_with(service, id, CloseCause::SERVER)
    }

    /// Asks one connection of `service` to close, for `cause`.
    pub(crate) fn close_with(
        &self,
        service: &str,
        id: &str,
        cause: CloseCause,
    ) -> Result<(), ApiError> {
        self.find(service, id)?.close(cause);
        Ok(())
    }

    /// Queues `message` for every member of `group` but `except`. The
    /// message is shared between the members' queues, not copied. A member
    /// whose queue is full is closed as a slow client and not counted.
    pub fn broadcast(
        &self,
        service: &str,
        group: &str,
        message: Outbound,
        except: Option<&str>,
    ) -> Result<usize, ApiError> {
        check_group(group)?;
        let members = self.with(service, |state| state.groups.members(group, except));
        // Sending wakes the members' writers; do it outside the lock.
        Ok(members
            .iter()
            .filter(|member| member.send(message.clone()).is_ok())
            .count())
    }

    /// Adds a live connection of `service` to `group`; whether it was not
    /// in already.
    pub fn join(&self, service: &str, group: &str, id: &str) -> Result<bool, ApiError> {
        check_group(group)?;
        let shard = self
            .shard(service)
            .ok_or_else(|| ErrNo::CONNECTION_NOT_FOUND.with(id))?;
        let mut state = shard.lock();
        let connection = state.connection(id)?.clone();
        let Some(group) = state.groups.join(group, &connection)? else {
            return Ok(false);
        };
        if let Some(membership) = self.membership.get() {
            membership.joined(&connection.service, &group, &connection.id);
        }
        Ok(true)
    }

    /// Takes a live connection of `service` out of `group`; whether it was in.
    pub fn leave(&self, service: &str, group: &str, id: &str) -> Result<bool, ApiError> {
        check_group(group)?;
        let shard = self
            .shard(service)
            .ok_or_else(|| ErrNo::CONNECTION_NOT_FOUND.with(id))?;
        let mut state = shard.lock();
        let connection = state.connection(id)?.clone();
        let left = state.groups.leave(group, id);
        if let Some(membership) = self.membership.get().filter(|_| left) {
            membership.left(&connection.service, &group.into(), &connection.id);
        }
        Ok(left)
    }

    /// Whether `group` of `service` has a member on this node.
    pub fn has_members(&self, service: &str, group: &str) -> bool {
        self.with(service, |state| state.groups.has_members(group))
    }

    /// Every group with a member on this node: (service, group).
    pub fn groups_with_members(&self) -> Vec<(Arc<str>, Arc<str>)> {
        let mut all = Vec::new();
        for (service, shard) in self.shards() {
            let state = shard.lock();
            all.extend(
                state
                    .groups
                    .names()
                    .map(|group| (service.clone(), group.clone())),
            );
        }
        all
    }

    /// The ids of the first [`MEMBERS_PAGE_MAX`](super::MEMBERS_PAGE_MAX)
    /// members of `group`, sorted.
    pub fn members(&self, service: &str, group: &str) -> Result<Vec<String>, ApiError> {
        check_group(group)?;
        Ok(self.with(service, |state| state.groups.member_ids(group)))
    }

    /// Up to `limit` members of `group` after `cursor`, sorted.
    pub fn members_page(
        &self,
        service: &str,
        group: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<MemberPage, ApiError> {
        check_group(group)?;
        Ok(self.with(service, |state| {
            state.groups.member_page(group, cursor, limit)
        }))
    }

    /// The groups of a live connection of `service`, sorted.
    pub fn groups_of(&self, service: &str, id: &str) -> Result<Vec<String>, ApiError> {
        self.with(service, |state| {
            state.connection(id)?;
            Ok(state
                .groups
                .of(id)
                .map(|groups| groups.iter().map(|g| g.to_string()).collect())
                .unwrap_or_default())
        })
    }

    /// Number of groups with at least one member, per service.
    pub fn group_count(&self, service: &str) -> usize {
        self.with(service, |state| state.groups.len())
    }

    /// Live connections of a service, oldest first.
    pub fn list(&self, service: &str) -> Vec<ConnectionInfo> {
        let mut list: Vec<_> = self.with(service, |state| {
            state.connections.values().map(|c| state.info(c)).collect()
        });
        list.sort_by_key(|c| c.connected_at);
        list
    }

    /// One connection of a service.
    pub fn info(&self, service: &str, id: &str) -> Result<ConnectionInfo, ApiError> {
        self.with(service, |state| Ok(state.info(state.connection(id)?)))
    }

    /// Number of connections of a service.
    pub fn count(&self, service: &str) -> usize {
        self.with(service, |state| state.connections.len())
    }

    /// Asks every connection of every service (or of one) to close.
    pub(crate) fn close_all(&self, service: Option<&str>, cause: CloseCause) {
        let shards = self.shards().into_iter();
        for (_, shard) in shards.filter(|(name, _)| service.is_none_or(|s| s == &**name)) {
            let targets: Vec<Arc<Connection>> =
                shard.lock().connections.values().cloned().collect();
            for connection in targets {
                connection.close(cause);
            }
        }
    }
}

/// On a single node every connection is local: each call is answered from
/// the registry at once.
#[async_trait::async_trait]
impl Broker for Router {
    async fn deliver(&self, service: &str, id: &str, message: Outbound) -> Result<(), ApiError> {
        Router::deliver(self, service, id, message)
    }

    async fn close(&self, service: &str, id: &str) -> Result<(), ApiError> {
        Router::close(self, service, id)
    }

    async fn broadcast(
        &self,
        service: &str,
        group: &str,
        message: Outbound,
        except: Option<&str>,
    ) -> Result<usize, ApiError> {
        Router::broadcast(self, service, group, message, except)
    }

    async fn join(&self, service: &str, group: &str, id: &str) -> Result<(), ApiError> {
        Router::join(self, service, group, id).map(|_| ())
    }

    async fn leave(&self, service: &str, group: &str, id: &str) -> Result<bool, ApiError> {
        Router::leave(self, service, group, id)
    }

    async fn members(&self, service: &str, group: &str) -> Result<Vec<String>, ApiError> {
        Router::members(self, service, group)
    }

    async fn members_page(
        &self,
        service: &str,
        group: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<MemberPage, ApiError> {
        Router::members_page(self, service, group, cursor, limit)
    }

    async fn groups_of(&self, service: &str, id: &str) -> Result<Vec<String>, ApiError> {
        Router::groups_of(self, service, id)
    }

    async fn connections(&self, service: &str) -> Result<Vec<ConnectionInfo>, ApiError> {
        Ok(Router::list(self, service))
    }

    async fn connection(&self, service: &str, id: &str) -> Result<ConnectionInfo, ApiError> {
        Router::info(self, service, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Payload, PushRequest};
    use crate::state::groups::MAX_GROUPS_PER_CONNECTION;
    use crate::state::route;
    use bytes::Bytes;

    fn ip() -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }

    /// A queue of `messages` messages and 1 MiB.
    fn bounds(messages: usize) -> QueueBounds {
        QueueBounds {
            messages,
            bytes: 1 << 20,
        }
    }

    #[tokio::test]
    async fn routes_only_within_the_service() {
        let router = Router::default();
        let chat: Arc<str> = "chat".into();
        let mut reservation = router.reserve(&chat, ip(), bounds(4), 10).unwrap();
        let id = reservation.connection.id.to_string();
        let send = |service: &'static str| {
            let request = PushRequest::Send {
                connection_id: id.clone(),
                payload: Payload::Text("hi".into()),
            };
            let router = router.clone();
            async move { route(&router, service, request).await }
        };
        assert_eq!(send("other").await.unwrap_err().code, 2202);
        send("chat").await.unwrap();
        assert!(matches!(reservation.outbound.recv().await, Some(Outbound::Text(t)) if t == "hi"));
        assert_eq!(router.list("chat").len(), 1);
        assert!(router.list("other").is_empty());
        router.remove(&reservation.connection);
        assert_eq!(send("chat").await.unwrap_err().code, 2202);
    }

    #[test]
    fn full_queue_closes_the_slow_client() {
        let router = Router::default();
        let svc: Arc<str> = "svc".into();
        let reservation = router.reserve(&svc, ip(), bounds(1), 10).unwrap();
        let id = reservation.connection.id.to_string();
        let push = || router.deliver("svc", &id, Outbound::Binary(Bytes::from_static(b"x")));
        push().unwrap();
        assert_eq!(push().unwrap_err().code, 2203);
        assert_eq!(
            reservation.connection.close_cause(),
            Some(CloseCause::SLOW_CLIENT)
        );
    }

    #[test]
    fn a_queue_over_its_bytes_closes_the_slow_client_and_the_budget_refuses_alone() {
        let router = Router::new(OutboundBudget::new(3 << 20));
        let svc: Arc<str> = "svc".into();
        let slow = router.reserve(&svc, ip(), bounds(1000), 10).unwrap();
        let other = router.reserve(&svc, ip(), bounds(1000), 10).unwrap();
        let push = |id: &str, bytes: usize| {
            router.deliver("svc", id, Outbound::Binary(Bytes::from(vec![0; bytes])))
        };
        for _ in 0..4 {
            push(&slow.connection.id, 256 << 10).unwrap();
        }
        // A fifth message would pass the 1 MiB of the queue.
        assert_eq!(push(&slow.connection.id, 1).unwrap_err().code, 2203);
        assert_eq!(slow.connection.close_cause(), Some(CloseCause::SLOW_CLIENT));
        assert_eq!(router.outbound_budget().queued(), 1 << 20);
        // The gateway's 3 MiB: a connection with an empty queue is refused
        // a message that does not fit, and stays open.
        let third = router.reserve(&svc, ip(), bounds(1000), 10).unwrap();
        push(&third.connection.id, 1 << 20).unwrap();
        assert_eq!(
            push(&other.connection.id, (1 << 20) + 1).unwrap_err().code,
            2205
        );
        assert_eq!(other.connection.close_cause(), None);
        push(&other.connection.id, 1 << 20).unwrap();
        // The slow client's queue goes with its writer; its bytes come back.
        drop(slow);
        assert_eq!(router.outbound_budget().queued(), 2 << 20);
    }

    #[test]
    fn connection_cap_is_per_service() {
        let router = Router::default();
        let a: Arc<str> = "a".into();
        let b: Arc<str> = "b".into();
        let _first = router.reserve(&a, ip(), bounds(1), 1).unwrap();
        assert_eq!(
            router.reserve(&a, ip(), bounds(1), 1).err().unwrap().code,
            2303
        );
        assert!(router.reserve(&b, ip(), bounds(1), 1).is_ok());
    }

    #[tokio::test]
    async fn groups_broadcast_share_the_message_and_end_with_the_connection() {
        let router = Router::default();
        let chat: Arc<str> = "chat".into();
        let other: Arc<str> = "other".into();
        let mut a = router.reserve(&chat, ip(), bounds(4), 10).unwrap();
        let mut b = router.reserve(&chat, ip(), bounds(4), 10).unwrap();
        let mut stranger = router.reserve(&other, ip(), bounds(4), 10).unwrap();
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
            .map(|_| router.reserve(&svc, ip(), bounds(4), 1000).unwrap())
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
        let reservation = router.reserve(&svc, ip(), bounds(1), 10).unwrap();
        let id = reservation.connection.id.to_string();
        for n in 0..MAX_GROUPS_PER_CONNECTION {
            router.join("svc", &format!("g{n}"), &id).unwrap();
        }
        // Joining a group again is fine; a new one is not.
        router.join("svc", "g0", &id).unwrap();
        assert_eq!(router.join("svc", "one-more", &id).unwrap_err().code, 2407);
    }

    #[test]
    fn members_are_capped_and_read_in_pages() {
        use crate::state::MEMBERS_PAGE_MAX;
        let router = Router::default();
        let svc: Arc<str> = "svc".into();
        let crowd: Vec<_> = (0..2500)
            .map(|_| router.reserve(&svc, ip(), bounds(1), 10_000).unwrap())
            .collect();
        for member in &crowd {
            router.join("svc", "all", &member.connection.id).unwrap();
        }
        let mut everyone: Vec<String> = crowd.iter().map(|m| m.connection.id.to_string()).collect();
        everyone.sort();
        // Plain `members` answers the first page only.
        let first = router.members("svc", "all").unwrap();
        assert_eq!(first, everyone[..MEMBERS_PAGE_MAX]);
        // Pages walk the whole group once, in order.
        let mut walked = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = router
                .members_page("svc", "all", cursor.as_deref(), 700)
                .unwrap();
            assert!(page.members.len() <= 700);
            walked.extend(page.members);
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(walked, everyone);
        // A limit above the cap is the cap; 0 is one.
        let page = router.members_page("svc", "all", None, 1 << 20).unwrap();
        assert_eq!(page.members.len(), MEMBERS_PAGE_MAX);
        let page = router.members_page("svc", "all", None, 0).unwrap();
        assert_eq!(page.members, everyone[..1]);
        assert_eq!(page.cursor.as_deref(), Some(everyone[0].as_str()));
        // The last page, and a group that does not exist, have no cursor.
        let last = router
            .members_page("svc", "all", Some(&everyone[2498]), 10)
            .unwrap();
        assert_eq!(
            (last.members, last.cursor),
            (vec![everyone[2499].clone()], None)
        );
        assert_eq!(
            router.members_page("svc", "none", None, 10).unwrap(),
            MemberPage::default()
        );
        assert_eq!(
            router.members_page("other", "all", None, 10).unwrap(),
            MemberPage::default()
        );
    }

    /// While one service's shard is locked (as during a broadcast to a huge
    /// group), every operation of another service completes. With one lock
    /// for all services, the other thread would wait forever.
    #[test]
    fn a_locked_service_holds_up_no_other() {
        let router = Router::default();
        let busy: Arc<str> = "busy".into();
        let _busy_connection = router.reserve(&busy, ip(), bounds(1), 10).unwrap();
        let shard = router.shard("busy").unwrap();
        let held = shard.lock();
        let (done, finished) = std::sync::mpsc::channel();
        let other = router.clone();
        std::thread::spawn(move || {
            let quiet: Arc<str> = "quiet".into();
            let mut reservation = other.reserve(&quiet, ip(), bounds(4), 10).unwrap();
            let id = reservation.connection.id.to_string();
            other.join("quiet", "room", &id).unwrap();
            other
                .deliver("quiet", &id, Outbound::Text("hi".into()))
                .unwrap();
            let reached = other
                .broadcast("quiet", "room", Outbound::Text("all".into()), None)
                .unwrap();
            let members = other.members_page("quiet", "room", None, 10).unwrap();
            let listed = other.list("quiet").len();
            other.remove(&reservation.connection);
            let got = [
                reservation.outbound.try_recv().is_ok(),
                reservation.outbound.try_recv().is_ok(),
            ];
            done.send((reached, members.members.len(), listed, got))
                .unwrap();
        });
        // A hang guard, not a timing claim: the other service does not wait.
        let answer = finished.recv_timeout(std::time::Duration::from_secs(60));
        drop(held);
        assert_eq!(answer.unwrap(), (1, 1, 1, [true, true]));
    }

    /// A [`Membership`] that writes down what it hears.
    #[derive(Debug, Default)]
    struct Heard(Mutex<Vec<String>>);

    impl Heard {
        fn say(&self, line: String) {
            self.0.lock().unwrap().push(line);
        }

        fn take(&self) -> Vec<String> {
            std::mem::take(&mut self.0.lock().unwrap())
        }
    }

    impl Membership for Heard {
        fn node(&self) -> Arc<str> {
            "node1".into()
        }
        fn added(&self, service: &Arc<str>, _id: &Arc<str>) {
            self.say(format!("added {service}"));
        }
        fn attributes(&self, _service: &Arc<str>, _id: &Arc<str>, attributes: Option<&Arc<str>>) {
            self.say(format!("attributes {attributes:?}"));
        }
        fn joined(&self, _service: &Arc<str>, group: &Arc<str>, _id: &Arc<str>) {
            self.say(format!("joined {group}"));
        }
        fn left(&self, _service: &Arc<str>, group: &Arc<str>, _id: &Arc<str>) {
            self.say(format!("left {group}"));
        }
        fn departed(&self, _service: &Arc<str>, _id: &Arc<str>, groups: &[Arc<str>]) {
            self.say(format!("departed {groups:?}"));
        }
        fn removed(&self, service: &Arc<str>, _id: &Arc<str>) {
            self.say(format!("removed {service}"));
        }
    }

    /// Cluster mode: ids name the node, and the cluster hears of every
    /// change that other nodes must see, once, in order.
    #[test]
    fn the_cluster_hears_of_every_change_once() {
        let router = Router::default();
        let heard = Arc::new(Heard::default());
        router.set_membership(heard.clone());
        let svc: Arc<str> = "svc".into();
        let reservation = router.reserve(&svc, ip(), bounds(1), 10).unwrap();
        let connection = &reservation.connection;
        assert!(connection.id.starts_with("node1."));
        assert!(router.join("svc", "b", &connection.id).unwrap());
        assert!(!router.join("svc", "b", &connection.id).unwrap());
        router.join("svc", "a", &connection.id).unwrap();
        assert!(router.leave("svc", "b", &connection.id).unwrap());
        assert!(!router.leave("svc", "b", &connection.id).unwrap());
        connection.set_attributes(Some(r#"{"user":"u1"}"#.into()));
        assert!(router.has_members("svc", "a") && !router.has_members("svc", "b"));
        assert_eq!(router.groups_with_members(), [(svc.clone(), "a".into())]);
        let entries = router.entries();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].groups, [Arc::<str>::from("a")]);
        assert_eq!(entries[0].attributes.as_deref(), Some(r#"{"user":"u1"}"#));
        assert_eq!(router.detach(connection), [Arc::<str>::from("a")]);
        router.forget(connection);
        assert_eq!(
            heard.take(),
            [
                "added svc",
                "joined b",
                "joined a",
                "left b",
                r#"attributes Some("{\"user\":\"u1\"}")"#,
                r#"departed ["a"]"#,
                "removed svc",
            ]
        );
        assert!(!router.has_members("svc", "a"));
    }

    #[test]
    fn a_service_whose_last_connection_left_starts_afresh() {
        let router = Router::default();
        let svc: Arc<str> = "svc".into();
        let first = router.reserve(&svc, ip(), bounds(1), 1).unwrap();
        router.join("svc", "g", &first.connection.id).unwrap();
        router.remove(&first.connection);
        assert!(router.shard("svc").is_none());
        let second = router.reserve(&svc, ip(), bounds(1), 1).unwrap();
        router.join("svc", "g", &second.connection.id).unwrap();
        assert_eq!(
            router.members("svc", "g").unwrap(),
            [second.connection.id.to_string()]
        );
        assert_eq!(router.count("svc"), 1);
    }
}
