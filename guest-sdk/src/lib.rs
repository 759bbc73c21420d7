//! Write [wasmgate] WebSocket handlers in Rust.
//!
//! A handler is a WebAssembly component of the `wasmgate:gateway/handler` world
//! (`wit/gateway.wit`). The gateway calls it once per lifecycle moment of a
//! connection, with the event JSON of the gateway contract:
//!
//! | moment | role | event type | method |
//! |---|---|---|---|
//! | a client asks to connect | [`Role::Register`] | [`Connecting`] | [`Handler::register`] |
//! | a client sent a message | [`Role::Transfer`] | [`DataSend`] | [`Handler::transfer`] |
//! | a connection ended | [`Role::Cleanup`] | [`Closing`] | [`Handler::cleanup`] |
//! | an HTTP request to `/http/<service>/…` | [`Role::Http`] | [`HttpRequest`] | [`Handler::http`] |
//! | a timer of `service.toml` fired | [`Role::Timer`] | [`TimerEvent`] | [`Handler::timer`] |
//!
//! Implement [`Handler`] for a type, override the methods you need and export
//! it with [`handler!`]. An echo handler:
//!
//! ```
//! use wasmgate_guest::{Context, DataSend, Handler, HandlerError};
//!
//! struct Echo;
//!
//! impl Handler for Echo {
//!     fn transfer(ctx: &Context, event: DataSend) -> Result<(), HandlerError> {
//!         wasmgate_guest::push(&ctx.connection_id, event.into_payload()?)?;
//!         Ok(())
//!     }
//! }
//!
//! wasmgate_guest::handler!(Echo);
//! ```
//!
//! Build it as a `cdylib` for `wasm32-wasip2`:
//!
//! ```text
//! cargo build --target wasm32-wasip2 --release
//! ```
//!
//! and drop the `.wasm` file into the service's plugin folder.
//!
//! # Layout
//!
//! - [`Context`] and [`Role`] (`context.rs`): what the gateway says about a call.
//! - [`Connecting`], [`DataSend`], [`Closing`] and their parts (`event.rs`): the
//!   typed events.
//! - [`Payload`] (`payload.rs`): a message body, text or bytes.
//! - [`HttpRequest`], [`HttpResponse`] and [`TimerEvent`] (`triggers.rs`):
//!   the HTTP trigger's event and answer, and the timer event.
//! - [`Registration`] (`answer.rs`): the register handler's answer.
//! - [`Handler`] and [`dispatch`] (`handler.rs`): the trait a handler implements
//!   and the routing from a role to its method.
//! - [`push`], [`close`], [`route`], [`log`] and friends (`host.rs`): calls into
//!   the gateway.
//! - [`kv`]: the service's durable key-value state; [`groups`]: named groups
//!   of connections and broadcast.
//! - [`GatewayError`], [`HandlerError`], [`EventError`] (`error.rs`).
//!
//! # Testing handlers natively
//!
//! The crate also builds for the machine's own target so that handler logic and
//! JSON handling can be unit-tested with a plain `cargo test`. Outside a wasm
//! gateway the host calls do nothing useful: [`push`], [`close`] and [`route`]
//! answer a [`GatewayError`] with [`GatewayError::NOT_IN_GATEWAY`], and [`log`]
//! writes to standard error.
//!
//! [wasmgate]: https://example.invalid/wasmgate
#![deny(missing_docs)]

mod answer;
mod context;
mod error;
mod event;
pub mod groups;
mod handler;
mod host;
pub mod kv;
mod payload;
mod triggers;

pub use answer::Registration;
pub use context::{Context, Role};
pub use error::{close_code, EventError, GatewayError, HandlerError};
pub use event::{
    CloseReason, Closing, ClosingWebSocket, Connecting, ConnectingWebSocket, DataSend,
    DataSendWebSocket, DataType, RequestContext,
};
pub use handler::{dispatch, Handler};
pub use host::{close, log, push, push_binary, push_text, route, set_attributes, LogLevel};
pub use payload::Payload;
pub use triggers::{HttpRequest, HttpRequestContext, HttpResponse, QueryValue, TimerEvent};

/// The bindings generated from `wit/gateway.wit`: the crate's own copy of the
/// workspace's `wit/gateway.wit`, so that a packaged crate carries it (a test
/// of `xtask` checks the two are identical). Not part of the public API: use
/// [`handler!`] and the typed wrappers instead.
#[doc(hidden)]
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "handler",
        // The export macro is used from handler crates through `handler!`.
        pub_export_macro: true,
        default_bindings_module: "wasmgate_guest::bindings",
    });
}

/// What [`handler!`] expands to. Not part of the public API.
#[doc(hidden)]
pub mod __export {
    pub use crate::bindings::export;
    use crate::bindings::wasmgate::gateway::types::{Context as RawContext, Role as RawRole};
    pub use crate::bindings::Guest;
    use crate::{Context, Handler, Role};

    /// Converts the generated context and calls the handler's `handle`.
    pub fn handle<H: Handler + ?Sized>(ctx: RawContext, event: String) -> Result<String, String> {
        let ctx = Context {
            service: ctx.service,
            role: match ctx.role {
                RawRole::Register => Role::Register,
                RawRole::Transfer => Role::Transfer,
                RawRole::Cleanup => Role::Cleanup,
                RawRole::Http => Role::Http,
                RawRole::Timer => Role::Timer,
            },
            request_id: ctx.request_id,
            connection_id: ctx.connection_id,
            deadline_ms: ctx.deadline_ms,
        };
        H::handle(&ctx, &event).map_err(|error| error.to_string())
    }
}

/// Exports a [`Handler`] implementation as the component's `handle` function.
///
/// Use it once per handler crate, at the top level of `lib.rs`, with the type
/// that implements [`Handler`]. The crate must be built as a `cdylib`:
///
/// ```toml
/// [lib]
/// crate-type = ["cdylib"]
/// ```
///
/// # Example
///
/// ```
/// use wasmgate_guest::{Connecting, Context, Handler, HandlerError, Registration};
///
/// /// Admits clients that bring the right token in the query string.
/// struct Gatekeeper;
///
/// impl Handler for Gatekeeper {
///     fn register(_ctx: &Context, event: Connecting) -> Result<Registration, HandlerError> {
///         match event.query("token") {
///             Some("let-me-in") => Ok(Registration::accept()),
///             _ => Ok(Registration::refuse(4001, "missing or wrong token")),
///         }
///     }
/// }
///
/// wasmgate_guest::handler!(Gatekeeper);
/// ```
#[macro_export]
macro_rules! handler {
    ($handler:ty) => {
        #[allow(unsafe_code)]
        const _: () = {
            struct WasmgateExport;

            impl $crate::__export::Guest for WasmgateExport {
                fn handle(
                    ctx: $crate::bindings::wasmgate::gateway::types::Context,
                    event: ::std::string::String,
                ) -> ::core::result::Result<::std::string::String, ::std::string::String> {
                    $crate::__export::handle::<$handler>(ctx, event)
                }
            }

    $crate::__export::export!(WasmgateExport with_types_in $crate::bindings);
        };
    };
}
