//! [`ClusterBroker`]: the [`Broker`] of a clustered node. An id of this
//! node takes the local path (the router, no Redis round trip); an id of
//! another node is sent to that node's inbox, with a definite answer:
//!
//! - delivered (or the other node's own error, e.g. its queue full);
//! - gone, 404/2202: the id's node holds no lease (dead, or reaped), or
//!   does not know the id;
//! - unavailable, 503/2206: Redis did not answer within
//!   [`COMMAND_TIMEOUT`](super::COMMAND_TIMEOUT), this node's inbox is not
//!   subscribed, or the other node did not answer within [`ANSWER_TIMEOUT`].
//!
//! Groups are cluster-wide (`groups.rs`): members and broadcast go through
//! Redis; a join or leave is made by the connection's node, and `groups-of`
//! answered by it, as for push.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{json, Value};

use super::groups::{self, unavailable};
use super::inbox::message_json;
use super::node::Shared;
use super::{bounded, keys, ANSWER_TIMEOUT};
use crate::protocol::{ApiError, ErrNo};
use crate::state::{
    check_group, node_of, Broker, ConnectionInfo, MemberPage, Outbound, MEMBERS_PAGE_MAX,
};

/// Publishes a request to a node that holds its lease: how many
/// subscribers got it (0: it is not listening now). Without a lease, -1:
/// the node is gone; but -2 while Redis, having lost its data, may not
/// know every live node's lease again yet (no renewal seen since it
/// started, or a node rewrote a lost lease less than a lease TTL ago).
const SEND: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  if redis.call('EXISTS', KEYS[3]) == 0 or redis.call('EXISTS', KEYS[4]) == 1 then
    return -2
  end
  return -1
end
return redis.call('PUBLISH', KEYS[2], ARGV[1])
";

/// The nodes, or -1 while Redis may not know every live node again yet
/// (as for [`SEND`]).
const NODES: &str = r"
if redis.call('EXISTS', KEYS[2]) == 0 or redis.call('EXISTS', KEYS[3]) == 1 then
  return -1
end
return redis.call('SMEMBERS', KEYS[1])
";

/// The broker of a clustered node.
#[derive(Debug, Clone)]
pub struct ClusterBroker {
    shared: Arc<Shared>,
}

/// Takes a request out of the waiting list however its wait ends.
struct Waiting<'a> {
    shared: &'a Shared,
    request: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.request);
    }
}

impl ClusterBroker {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The node of `id` when it is another node than this one.
    fn remote<'a>(&self, id: &'a str) -> Option<&'a str> {
        node_of(id).filter(|node| **node != *self.shared.node())
    }

    /// Sends `request` to `node` and waits for its answer. Gone is 2202
    /// about `subject`.
    async fn ask(&self, node: &str, mut request: Value, subject: &str) -> Result<Value, ApiError> {
        let shared = &*self.shared;
        if !shared.subscribed.load(Ordering::Acquire) {
            return Err(unavailable("this node is not subscribed to Redis"));
        }
        let id = shared.next_request.fetch_add(1, Ordering::Relaxed);
        request["rid"] = id.into();
        request["reply"] = keys::replies(&shared.node()).into();
        let (answer, answered) = tokio::sync::oneshot::channel();
        shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, answer);
        let _waiting = Waiting {
            shared,
            request: id,
        };
        let mut redis = shared.redis.clone();
        let sent = bounded(
            redis::Script::new(SEND)
                .key(keys::lease(node))
                .key(keys::inbox(node))
                .key(keys::SINCE)
                .key(keys::RELEARNING)
                .arg(request.to_string())
                .invoke_async::<i64>(&mut redis),
        )
        .await
        .map_err(unavailable)?;
        match sent {
            -1 => return Err(ErrNo::CONNECTION_NOT_FOUND.with(subject)),
            -2 => {
                return Err(unavailable(
                    "Redis restarted; the node has not registered again yet",
                ))
            }
            0 => return Err(unavailable(format_args!("node {node} is not listening"))),
            _ => {}
        }
        match tokio::time::timeout(ANSWER_TIMEOUT, answered).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(unavailable("the answer was lost")),
            Err(_) => Err(unavailable(format_args!(
                "node {node} did not answer within {ANSWER_TIMEOUT:?}"
            ))),
        }
    }

    /// The other nodes that hold a lease.
    async fn other_nodes(&self) -> Result<Vec<String>, ApiError> {
        let me = self.shared.node();
        let mut redis = self.shared.redis.clone();
        let nodes: redis::Value = bounded(
            redis::Script::new(NODES)
                .key(keys::NODES)
                .key(keys::SINCE)
                .key(keys::RELEARNING)
                .invoke_async(&mut redis),
        )
        .await
        .map_err(unavailable)?;
        let nodes: Vec<String> = match nodes {
            redis::Value::Int(_) => {
                return Err(unavailable(
                    "Redis restarted; not every node has registered again yet",
                ))
            }
            other => redis::from_redis_value(other).map_err(unavailable)?,
        };
        Ok(nodes.into_iter().filter(|node| **node != *me).collect())
    }
}

#[async_trait::async_trait]
impl Broker for ClusterBroker {
    async fn deliver(&self, service: &str, id: &str, message: Outbound) -> Result<(), ApiError> {
        let Some(node) = self.remote(id) else {
            return self.shared.router.deliver(service, id, message);
        };
        let request = json!({
            "op": "push", "service": service, "id": id, "message": message_json(&message),
        });
        self.ask(node, request, id).await.map(|_| ())
    }

    async fn close(&self, service: &str, id: &str) -> Result<(), ApiError> {
        let Some(node) = self.remote(id) else {
            return self.shared.router.close(service, id);
        };
        let request = json!({ "op": "close", "service": service, "id": id });
        self.ask(node, request, id).await.map(|_| ())
    }

    async fn broadcast(
        &self,
        service: &str,
        group: &str,
        message: Outbound,
        except: Option<&str>,
    ) -> Result<usize, ApiError> {
        groups::broadcast(&self.shared, service, group, message, except).await
    }

    async fn join(&self, service: &str, group: &str, id: &str) -> Result<(), ApiError> {
        let Some(node) = self.remote(id) else {
            return groups::join(&self.shared, service, group, id).await;
        };
        check_group(group)?;
        let request = json!({ "op": "join", "service": service, "group": group, "id": id });
        self.ask(node, request, id).await.map(|_| ())
    }

    async fn leave(&self, service: &str, group: &str, id: &str) -> Result<bool, ApiError> {
        let Some(node) = self.remote(id) else {
            return groups::leave(&self.shared, service, group, id).await;
        };
        check_group(group)?;
        let request = json!({ "op": "leave", "service": service, "group": group, "id": id });
        let left = self.ask(node, request, id).await?;
        Ok(left == Value::Bool(true))
    }

    async fn members(&self, service: &str, group: &str) -> Result<Vec<String>, ApiError> {
        let page = self
            .members_page(service, group, None, MEMBERS_PAGE_MAX)
            .await?;
        Ok(page.members)
    }

    async fn members_page(
        &self,
        service: &str,
        group: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<MemberPage, ApiError> {
        groups::members_page(&self.shared, service, group, cursor, limit).await
    }

    /// Answered by the connection's node, which holds the truth.
    async fn groups_of(&self, service: &str, id: &str) -> Result<Vec<String>, ApiError> {
        match self.remote(id) {
            None => self.shared.router.groups_of(service, id),
            Some(_) => Ok(self.connection(service, id).await?.groups),
        }
    }

    /// Every node's connections of the service, oldest first; 503 rather
    /// than a partial list when a live node cannot be asked.
    async fn connections(&self, service: &str) -> Result<Vec<ConnectionInfo>, ApiError> {
        let mut all = self.shared.router.list(service);
        let nodes = self.other_nodes().await?;
        let asks = nodes.iter().map(|node| {
            let request = json!({ "op": "list", "service": service });
            self.ask(node, request, node)
        });
        for answer in futures_util::future::join_all(asks).await {
            match answer {
                Ok(list) => {
                    let list: Vec<ConnectionInfo> = serde_json::from_value(list)
                        .map_err(|error| unavailable(format_args!("a bad answer: {error}")))?;
                    all.extend(list);
                }
                // A node that died meanwhile: its connections are gone.
                Err(error) if error.code == ErrNo::CONNECTION_NOT_FOUND.number => {}
                Err(error) => return Err(error),
            }
        }
        all.sort_by_key(|info| info.connected_at);
        Ok(all)
    }

    async fn connection(&self, service: &str, id: &str) -> Result<ConnectionInfo, ApiError> {
        let Some(node) = self.remote(id) else {
            return self.shared.router.info(service, id);
        };
        let request = json!({ "op": "info", "service": service, "id": id });
        let info = self.ask(node, request, id).await?;
        serde_json::from_value(info)
            .map_err(|error| unavailable(format_args!("a bad answer: {error}")))
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::cluster::ClusterNode;
    use crate::state::{QueueBounds, Router};

    /// Without any Redis: an id of this node is served locally, an id of
    /// another node answers 503/2206 at once, and a malformed id is simply
    /// not found here. Group changes, broadcasts and members answer
    /// 503/2206 too.
    #[tokio::test]
    async fn a_local_id_needs_no_redis_and_a_remote_one_is_unavailable_without_it() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let router = Router::default();
        let node =
            ClusterNode::new(&format!("redis://127.0.0.1:{closed}"), router.clone()).unwrap();
        let broker = node.broker();
        let service: Arc<str> = "svc".into();
        let bounds = QueueBounds {
            messages: 4,
            bytes: 1 << 20,
        };
        let mut reservation = router
            .reserve(&service, IpAddr::V4(Ipv4Addr::LOCALHOST), bounds, 10)
            .unwrap();
        let id = reservation.connection.id.to_string();
        assert_eq!(node_of(&id), Some(&*node.node_id()));

        broker
            .deliver("svc", &id, Outbound::Text("hi".into()))
            .await
            .unwrap();
        assert!(matches!(reservation.outbound.recv().await, Some(Outbound::Text(t)) if t == "hi"));
        assert_eq!(
            broker
                .connection("svc", &id)
                .await
                .unwrap()
                .sec_connection_id,
            id
        );
        // Another service's view of the same id: not found, as on one node.
        assert_eq!(broker.close("other", &id).await.unwrap_err().code, 2202);

        let elsewhere = format!("Zz9-Zz9_.{}", &id[id.len() - 22..]);
        for error in [
            broker
                .deliver("svc", &elsewhere, Outbound::Text("hi".into()))
                .await
                .unwrap_err(),
            broker.close("svc", &elsewhere).await.unwrap_err(),
            broker.connection("svc", &elsewhere).await.unwrap_err(),
            broker.connections("svc").await.unwrap_err(),
        ] {
            assert_eq!((error.code, error.status.as_u16()), (2206, 503), "{error}");
        }
        let malformed = broker
            .deliver("svc", "not-a-cluster-id", Outbound::Text("hi".into()))
            .await
            .unwrap_err();
        assert_eq!(malformed.code, 2202);

        // Groups go through Redis: unavailable, and nothing is done here.
        for error in [
            broker.join("svc", "room", &id).await.unwrap_err(),
            broker.join("svc", "room", &elsewhere).await.unwrap_err(),
            broker.leave("svc", "room", &id).await.unwrap_err(),
            broker
                .broadcast("svc", "room", Outbound::Text("all".into()), None)
                .await
                .unwrap_err(),
            broker.members("svc", "room").await.unwrap_err(),
            broker.groups_of("svc", &elsewhere).await.unwrap_err(),
        ] {
            assert_eq!((error.code, error.status.as_u16()), (2206, 503), "{error}");
        }
        assert!(broker.groups_of("svc", &id).await.unwrap().is_empty());
        assert!(reservation.outbound.try_recv().is_err());
        // A bad group name is refused first, as on one node.
        assert_eq!(broker.join("svc", "", &id).await.unwrap_err().code, 2406);
        assert_eq!(broker.members("svc", "").await.unwrap_err().code, 2406);
    }
}
