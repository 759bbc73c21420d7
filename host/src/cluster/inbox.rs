//! The node's inbox: one pub/sub connection subscribed to the node's
//! request channel, its answer channel, and the channel of each group with
//! a member on this node (`groups.rs`). Requests from other nodes are
//! served from the local router and answered on the asker's answer
//! channel; answers to this node's requests wake the request waiting;
//! broadcasts reach this node's members.
//!
//! The loop owns its connection: when it drops (Redis restarted, network
//! cut) or the node id changes (fenced), it connects and subscribes again
//! by itself, group channels included, every 250 ms until Redis answers.
//! While it is not subscribed, [`Shared::subscribed`] says so and requests
//! to other nodes, group changes and broadcasts answer 503 at once rather
//! than wait for answers that cannot arrive.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::node::Shared;
use super::{bounded, keys};
use crate::protocol::{ApiError, ErrNo};
use crate::state::{node_of, Outbound};

/// How long the inbox waits before connecting again.
const RECONNECT_EVERY: Duration = Duration::from_millis(250);

/// Another node's answer to a request: its JSON result, or its error.
pub(super) type Answer = Result<Value, ApiError>;

/// A message as it travels in a request: `{"text": ...}` or `{"binary":
/// <standard Base64>}`.
pub(super) fn message_json(message: &Outbound) -> Value {
    match message {
        Outbound::Text(text) => json!({ "text": text.as_str() }),
        Outbound::Binary(bytes) => json!({ "binary": crate::protocol::BASE64.encode(bytes) }),
        Outbound::Ping => Value::Null,
    }
}

fn message_of(request: &Value) -> Option<Outbound> {
    if let Some(text) = request["message"]["text"].as_str() {
        return Some(Outbound::Text(text.into()));
    }
    let binary = request["message"]["binary"].as_str()?;
    let bytes = crate::protocol::BASE64.decode(binary).ok()?;
    Some(Outbound::Binary(Bytes::from(bytes)))
}

/// Keeps the inbox subscribed until `stop`.
pub(super) async fn inbox_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let mut node_changes = shared.node_changes.subscribe();
    let mut failing = false;
    loop {
        if stop.is_cancelled() {
            return;
        }
        let node = node_changes.borrow_and_update().clone();
        let channels = [keys::inbox(&node), keys::replies(&node)];
        let connected = async {
            let (mut sink, messages) = bounded(shared.client.get_async_pubsub()).await?.split();
            bounded(sink.subscribe(&channels[..])).await?;
            super::groups::subscribe_all(&shared, sink).await?;
            Ok::<_, String>(messages)
        };
        let mut messages = match connected.await {
            Ok(messages) => messages,
            Err(error) => {
                if !failing {
                    tracing::warn!(node = %node, %error, "cluster inbox cannot subscribe; retrying");
                    failing = true;
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(RECONNECT_EVERY) => continue,
                }
            }
        };
        failing = false;
        shared.subscribed.store(true, Ordering::Release);
        tracing::info!(node = %node, "cluster inbox subscribed");
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = node_changes.changed() => break,
                message = messages.next() => match message {
                    None => {
                        tracing::warn!(node = %node, "cluster inbox connection lost; subscribing again");
                        break;
                    }
                    Some(message) => {
                        on_message(&shared, message.get_channel_name(), message.get_payload_bytes(), &node);
                    }
                }
            }
        }
        shared.subscribed.store(false, Ordering::Release);
        super::groups::unsubscribed(&shared).await;
    }
}

/// A request from another node, an answer to one of ours, or a broadcast.
fn on_message(shared: &Arc<Shared>, channel: &str, payload: &[u8], node: &str) {
    if channel.starts_with(keys::BROADCAST_PREFIX) {
        // Delivered in order, on this task.
        super::groups::on_broadcast(shared, payload);
        return;
    }
    let Ok(message) = serde_json::from_slice::<Value>(payload) else {
        tracing::warn!(
            channel,
            "cluster inbox: a message that is not JSON; ignored"
        );
        return;
    };
    if channel == keys::replies(node) {
        let Some(request) = message["rid"].as_u64() else {
            return;
        };
        let waiting = shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&request);
        if let Some(waiting) = waiting {
            let _ = waiting.send(answer_of(&message));
        }
        return;
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        let answer = serve(&shared, &message).await;
        let Some(reply_to) = message["reply"].as_str() else {
            return;
        };
        let body = match answer {
            Ok(result) => json!({ "rid": message["rid"], "ok": result }),
            Err(error) => json!({
                "rid": message["rid"],
                "err": { "code": error.code, "status": error.status.as_u16(), "message": error.message },
            }),
        };
        let mut redis = shared.redis.clone();
        let published = bounded(
            redis::cmd("PUBLISH")
                .arg(reply_to)
                .arg(body.to_string())
                .query_async::<i64>(&mut redis),
        )
        .await;
        if let Err(error) = published {
            tracing::warn!(reply_to, %error, "cluster inbox: could not answer a request");
        }
    });
}

/// Serves another node's request from the local router.
async fn serve(shared: &Shared, request: &Value) -> Answer {
    let service = request["service"].as_str().unwrap_or_default();
    let id = request["id"].as_str().unwrap_or_default();
    let op = request["op"].as_str().unwrap_or_default();
    let group = request["group"].as_str().unwrap_or_default();
    if op != "list" && node_of(id) != Some(&*shared.node()) {
        // An id of this node before it was fenced, or of no node.
        return Err(ErrNo::CONNECTION_NOT_FOUND.with(id));
    }
    let router = &shared.router;
    match op {
        "push" => {
            let message =
                message_of(request).ok_or_else(|| ErrNo::MISSING_FIELD.with("message"))?;
            router.deliver(service, id, message).map(|()| Value::Null)
        }
        "close" => router.close(service, id).map(|()| Value::Null),
        "info" => router
            .info(service, id)
            .map(|info| serde_json::to_value(info).unwrap_or_default()),
        "list" => Ok(serde_json::to_value(router.list(service)).unwrap_or_default()),
        "join" => super::groups::join(shared, service, group, id)
            .await
            .map(|()| Value::Null),
        "leave" => super::groups::leave(shared, service, group, id)
            .await
            .map(Value::Bool),
        _ => Err(ErrNo::UNKNOWN_ACTION.with(op)),
    }
}

/// The answer carried by an answer message.
fn answer_of(message: &Value) -> Answer {
    match message.get("err") {
        None => Ok(message["ok"].clone()),
        Some(error) => Err(ApiError {
            status: error["status"]
                .as_u64()
                .and_then(|status| StatusCode::from_u16(status as u16).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: error["code"].as_i64().unwrap_or_default() as i32,
            message: error["message"].as_str().unwrap_or_default().to_owned(),
        }),
    }
}
