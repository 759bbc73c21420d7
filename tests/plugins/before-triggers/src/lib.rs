//! Before-triggers: an echo handler built with wit-bindgen straight from
//! `wit/gateway.wit` as it was before the `http` and `timer` roles joined
//! the `role` enum (this crate's own copy, kept as it was). It stands for
//! every handler built before then: the gateway must keep loading it and
//! serving its WebSocket roles, and answer its HTTP requests itself.
//!
//! Register accepts, transfer pushes a text message back, cleanup does
//! nothing.

#[allow(unsafe_code, missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({ path: "wit", world: "handler" });
}

use bindings::wasmgate::gateway::host;
use bindings::wasmgate::gateway::types::{Context, Payload, Role};

struct BeforeTriggers;

impl bindings::Guest for BeforeTriggers {
    fn handle(ctx: Context, event: String) -> Result<String, String> {
        match ctx.role {
            Role::Register => Ok(r#"{"errNo":0,"errMsg":"ok"}"#.to_owned()),
            Role::Transfer => {
                let event: serde_json::Value =
                    serde_json::from_str(&event).map_err(|e| e.to_string())?;
                let data = event["websocket"]["data"].as_str().unwrap_or_default();
                host::push(&ctx.connection_id, &Payload::Text(data.to_owned()))
                    .map_err(|e| e.err_msg)?;
                Ok("{}".to_owned())
            }
            Role::Cleanup => Ok("{}".to_owned()),
        }
    }
}

// The export's glue is unsafe code, allowed here as in the guest SDK's
// `handler!`.
#[allow(unsafe_code)]
const _: () = {
    bindings::export!(BeforeTriggers with_types_in bindings);
};
