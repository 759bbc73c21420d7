//! Groups across the cluster.
//!
//! Membership lives in Redis: each group's members in a sorted set (score
//! 0, so members come back in byte order and pages follow a cursor), and
//! each connection's groups in a set (for the reaper of a dead node, and
//! the rewrite after an outage). The node that holds a connection changes
//! its groups (a join or leave of another node's connection is sent
//! there), in its router first, then in Redis before it answers
//! (`registry.rs`).
//!
//! A broadcast is one `PUBLISH` on the group's channel, with the number of
//! members Redis lists in the same round trip. A node is subscribed to a
//! group's channel exactly while the group has a member on it: a join
//! subscribes before it answers, the last member's leave unsubscribes.
//! Each node delivers to its own members; the sender's node delivers to
//! its members itself and skips its own message when it comes back.
//!
//! Pub/sub delivers at most once: a node whose subscription is down when a
//! broadcast is published (Redis restarting, the connection cut) misses
//! it, and nothing is ever delivered twice. Meanwhile (this node cannot
//! reach Redis, or its writes failed and are not rewritten yet) join,
//! leave and broadcast answer 503/2206 at once, and nothing is done.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use redis::aio::PubSubSink;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::node::Shared;
use super::{bounded, keys, COMMAND_TIMEOUT};
use crate::protocol::{ApiError, ErrNo};
use crate::state::{check_group, MemberPage, Outbound, MEMBERS_PAGE_MAX};

/// The subscriptions of the inbox's pub/sub connection to group channels.
#[derive(Debug, Default)]
pub(super) struct Subscriptions {
    /// The connection's sink while it is up.
    sink: Option<PubSubSink>,
    /// The group channels it is subscribed to.
    channels: HashSet<String>,
}

pub(super) fn unavailable(detail: impl std::fmt::Display) -> ApiError {
    ErrNo::CLUSTER_UNAVAILABLE.with(detail)
}

impl Shared {
    /// Whether group changes and broadcasts can go through Redis now.
    fn groups_available(&self) -> Result<(), ApiError> {
        if !self.subscribed.load(Ordering::Acquire) {
            return Err(unavailable("this node is not subscribed to Redis"));
        }
        if self.stale.load(Ordering::Relaxed) {
            return Err(unavailable(
                "Redis writes failed; they are rewritten once it answers",
            ));
        }
        Ok(())
    }
}

/// Adds connection `id` of this node to `group`, in Redis too, subscribed
/// to the group's channel; undone, 503, when either fails.
pub(super) async fn join(
    shared: &Shared,
    service: &str,
    group: &str,
    id: &str,
) -> Result<(), ApiError> {
    check_group(group)?;
    shared.groups_available()?;
    let (joined, written) = shared
        .write_through(|| shared.router.join(service, group, id))
        .await;
    if !joined? {
        return Ok(());
    }
    let done = match written {
        Ok(()) => subscribe(shared, service, group).await,
        Err(error) => Err(error),
    };
    if let Err(error) = done {
        let _ = shared.router.leave(service, group, id);
        return Err(unavailable(error));
    }
    Ok(())
}

/// Takes connection `id` of this node out of `group`, in Redis too;
/// whether it was in. A leave holds on this node whatever Redis says (no
/// broadcast reaches it any more); Redis is rewritten once it answers.
pub(super) async fn leave(
    shared: &Shared,
    service: &str,
    group: &str,
    id: &str,
) -> Result<bool, ApiError> {
    check_group(group)?;
    shared.groups_available()?;
    let (left, written) = shared
        .write_through(|| shared.router.leave(service, group, id))
        .await;
    if let Err(error) = written {
        tracing::warn!(service, group, conn = id, %error, "left the group on this node; Redis is corrected once it answers");
    }
    left
}

/// Up to `limit` members of `group` after `cursor`, cluster-wide, sorted;
/// 503 while Redis may not list every node's members (it restarted empty
/// and a node has not written its groups again yet).
pub(super) async fn members_page(
    shared: &Shared,
    service: &str,
    group: &str,
    cursor: Option<&str>,
    limit: usize,
) -> Result<MemberPage, ApiError> {
    check_group(group)?;
    let limit = limit.clamp(1, MEMBERS_PAGE_MAX);
    let after = cursor.map_or_else(|| "-".to_owned(), |cursor| format!("({cursor}"));
    let mut read = redis::pipe();
    read.exists(keys::SINCE)
        .exists(keys::RELEARNING)
        .zrangebylex_limit(
            keys::group(service, group),
            after,
            "+",
            0,
            limit as isize + 1,
        );
    let mut redis = shared.redis.clone();
    let (since, relearning, mut members): (bool, bool, Vec<String>) =
        bounded(read.query_async(&mut redis))
            .await
            .map_err(unavailable)?;
    if !since || relearning {
        return Err(unavailable(
            "Redis restarted; not every node has written its groups again yet",
        ));
    }
    let cursor = if members.len() > limit {
        members.truncate(limit);
        members.last().cloned()
    } else {
        None
    };
    Ok(MemberPage { members, cursor })
}

/// Publishes `message` for every member of `group` but `except`, and
/// delivers it to this node's members. How many members Redis listed at
/// publish time, but `except`: whether each then gets it depends on its
/// node's subscription and its queue.
pub(super) async fn broadcast(
    shared: &Shared,
    service: &str,
    group: &str,
    message: Outbound,
    except: Option<&str>,
) -> Result<usize, ApiError> {
    check_group(group)?;
    shared.groups_available()?;
    let members = keys::group(service, group);
    let mut publish = redis::pipe();
    publish
        .zcard(&members)
        .zscore(&members, except.unwrap_or_default())
        .publish(
            keys::broadcast(service, group),
            frame(&shared.instance, service, group, except, &message),
        )
        .ignore();
    let mut redis = shared.redis.clone();
    let (listed, excepted): (usize, Option<f64>) = bounded(publish.query_async(&mut redis))
        .await
        .map_err(unavailable)?;
    let _ = shared.router.broadcast(service, group, message, except);
    Ok(listed.saturating_sub(usize::from(excepted.is_some())))
}

/// A broadcast as published: a JSON header line, then the message's bytes
/// as they are (no Base64).
fn frame(
    instance: &str,
    service: &str,
    group: &str,
    except: Option<&str>,
    message: &Outbound,
) -> Vec<u8> {
    let (binary, body): (bool, &[u8]) = match message {
        Outbound::Text(text) => (false, text.as_bytes()),
        Outbound::Binary(bytes) => (true, bytes),
        Outbound::Ping => (false, b""),
    };
    let header = json!({
        "from": instance, "service": service, "group": group, "except": except, "binary": binary,
    });
    let mut frame = header.to_string().into_bytes();
    frame.push(b'\n');
    frame.extend_from_slice(body);
    frame
}

/// A broadcast as received: (header, message).
fn unframe(frame: &[u8]) -> Option<(Value, Outbound)> {
    let split = frame.iter().position(|&byte| byte == b'\n')?;
    let header: Value = serde_json::from_slice(&frame[..split]).ok()?;
    let body = Bytes::copy_from_slice(&frame[split + 1..]);
    let message = if header["binary"] == json!(true) {
        Outbound::Binary(body)
    } else {
        Outbound::Text(tungstenite::Utf8Bytes::try_from(body).ok()?)
    };
    Some((header, message))
}

/// A broadcast from another node: delivered to this node's members.
pub(super) fn on_broadcast(shared: &Shared, frame: &[u8]) {
    let Some((header, message)) = unframe(frame) else {
        tracing::warn!("cluster: a broadcast that is not one; ignored");
        return;
    };
    if header["from"].as_str() == Some(&*shared.instance) {
        return;
    }
    let (Some(service), Some(group)) = (header["service"].as_str(), header["group"].as_str())
    else {
        return;
    };
    let _ = shared
        .router
        .broadcast(service, group, message, header["except"].as_str());
}

/// Subscribes the inbox's connection to the channel of `group`, unless it
/// is already.
async fn subscribe(shared: &Shared, service: &str, group: &str) -> Result<(), String> {
    let channel = keys::broadcast(service, group);
    let subscribed = async {
        let mut subscriptions = shared.subscriptions.lock().await;
        let Subscriptions { sink, channels } = &mut *subscriptions;
        let Some(sink) = sink else {
            return Err("this node is not subscribed to Redis".to_owned());
        };
        if !channels.contains(&channel) {
            bounded(sink.subscribe(&channel)).await?;
            channels.insert(channel);
        }
        Ok(())
    };
    tokio::time::timeout(COMMAND_TIMEOUT * 2, subscribed)
        .await
        .unwrap_or_else(|_| Err("no subscription within the time allowed".into()))
}

/// The inbox connected: subscribes `sink`'s connection to the channel of
/// every group with a member on this node, and keeps it for joins to come.
pub(super) async fn subscribe_all(shared: &Shared, mut sink: PubSubSink) -> Result<(), String> {
    let mut subscriptions = shared.subscriptions.lock().await;
    let channels: Vec<String> = shared
        .router
        .groups_with_members()
        .iter()
        .map(|(service, group)| keys::broadcast(service, group))
        .collect();
    for chunk in channels.chunks(1000) {
        bounded(sink.subscribe(chunk)).await?;
    }
    *subscriptions = Subscriptions {
        sink: Some(sink),
        channels: channels.into_iter().collect(),
    };
    Ok(())
}

/// The inbox's connection is gone: so are its subscriptions.
pub(super) async fn unsubscribed(shared: &Shared) {
    *shared.subscriptions.lock().await = Subscriptions::default();
}

/// Unsubscribes from the channels of groups left without a member on this
/// node, for as long as the node lives.
pub(super) async fn unsubscribe_vacated(
    shared: Arc<Shared>,
    mut vacated: mpsc::UnboundedReceiver<(Arc<str>, Arc<str>)>,
) {
    while let Some(first) = vacated.recv().await {
        let mut groups = HashSet::from([first]);
        while let Ok(group) = vacated.try_recv() {
            groups.insert(group);
        }
        // Under the lock, so that no join subscribes in between: one that
        // came first has its member counted here.
        let mut subscriptions = shared.subscriptions.lock().await;
        let Subscriptions { sink, channels } = &mut *subscriptions;
        let Some(sink) = sink else {
            continue;
        };
        let empty: Vec<String> = groups
            .iter()
            .filter(|(service, group)| !shared.router.has_members(service, group))
            .map(|(service, group)| keys::broadcast(service, group))
            .filter(|channel| channels.contains(channel))
            .collect();
        if empty.is_empty() {
            continue;
        }
        // On failure the connection is in trouble: the inbox subscribes
        // again from the router when it reconnects.
        if bounded(sink.unsubscribe(&empty)).await.is_ok() {
            for channel in &empty {
                channels.remove(channel);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broadcast_frame_carries_the_message_as_it_is() {
        let binary = Outbound::Binary(Bytes::from_static(b"\n\x00\xff"));
        let framed = frame("me", "chat", "room:a\nb", Some("x.y"), &binary);
        let (header, message) = unframe(&framed).unwrap();
        assert_eq!(
            header,
            json!({"from": "me", "service": "chat", "group": "room:a\nb", "except": "x.y", "binary": true})
        );
        assert!(matches!(message, Outbound::Binary(bytes) if &bytes[..] == b"\n\x00\xff"));

        let text = Outbound::Text("héllo".into());
        let (header, message) = unframe(&frame("me", "chat", "g", None, &text)).unwrap();
        assert_eq!(header["except"], Value::Null);
        assert!(matches!(message, Outbound::Text(text) if text.as_str() == "héllo"));
        // Text that is not UTF-8 is no message.
        let mut bad = frame("me", "chat", "g", None, &text);
        bad.push(0xff);
        assert!(unframe(&bad).is_none());
    }
}
