//! The host side of the `wasmgate:gateway/handler` world: the bindings
//! generated from `wit/gateway.wit`, and one file per imported interface
//! (`host`, `kv`, `groups`), each implemented on the per-store
//! [`EventState`](super::store::EventState).
//!
//! Every host call acts in the scope the store was given for its event:
//! the calling service, its connection, and the [`Broker`](crate::state::Broker)
//! and key-value store the gateway (or `wasmgate invoke`) handed it. A
//! failed host call answers the guest a `gateway-error` with the same
//! `errNo`/`errMsg` as the reverse-push endpoint, never a trap.

mod groups;
mod host;
mod kv;

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "handler",
        exports: { default: async },
        // Routing goes through a broker that may have to wait for another
        // node's answer, and key-value writes wait for the store's commit
        // (an fsync): neither may block the async runtime's thread.
        imports: {
            "wasmgate:gateway/host.push": async,
            "wasmgate:gateway/host.close": async,
            "wasmgate:gateway/host.route": async,
            "wasmgate:gateway/kv.get": async,
            "wasmgate:gateway/kv.set": async,
            "wasmgate:gateway/kv.delete": async,
            "wasmgate:gateway/kv.exists": async,
            "wasmgate:gateway/kv.list-keys": async,
            "wasmgate:gateway/kv.list-entries": async,
            "wasmgate:gateway/kv.get-many": async,
            "wasmgate:gateway/kv.increment": async,
            "wasmgate:gateway/kv.compare-and-swap": async,
            "wasmgate:gateway/groups.join": async,
            "wasmgate:gateway/groups.leave": async,
            "wasmgate:gateway/groups.members": async,
            "wasmgate:gateway/groups.members-page": async,
            "wasmgate:gateway/groups.groups-of": async,
            "wasmgate:gateway/groups.broadcast": async,
        },
    });
}

use bindings::wasmgate::gateway::types as wit;

use super::store::EventState;
use crate::protocol::{ApiError, Payload, Role};

impl wit::Host for EventState {}

fn to_wit_error(error: ApiError) -> wit::GatewayError {
    wit::GatewayError {
        err_no: error.code,
        err_msg: error.message,
    }
}

fn to_payload(data: wit::Payload) -> Payload {
    match data {
        wit::Payload::Text(text) => Payload::Text(text),
        wit::Payload::Binary(bytes) => Payload::Binary(bytes.into()),
    }
}

impl From<Role> for wit::Role {
    fn from(role: Role) -> Self {
        match role {
            Role::Register => wit::Role::Register,
            Role::Transfer => wit::Role::Transfer,
            Role::Cleanup => wit::Role::Cleanup,
            Role::Http => wit::Role::Http,
            Role::Timer => wit::Role::Timer,
        }
    }
}

impl EventState {
    /// Refuses a message larger than the service's `max_message_bytes`.
    fn check_size(&self, payload: &Payload) -> Result<(), wit::GatewayError> {
        if payload.len() > self.max_message_bytes {
            return Err(to_wit_error(
                crate::protocol::ErrNo::PAYLOAD_TOO_LARGE
                    .over_limit(payload.len(), self.max_message_bytes),
            ));
        }
        Ok(())
    }
}
