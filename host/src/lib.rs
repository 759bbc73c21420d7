//! wasmgate: a WebSocket gateway whose handlers are sandboxed WebAssembly
//! components.
//!
//! # Layout
//!
//! Dependencies point one way, from the edge inward: `http` and `session`
//! call `dispatch`, which calls `plugins`, `wasm`, `cluster` and `state`; `protocol`
//! and `config` are leaves every layer may use.
//!
//! - [`http`]: the two listeners (public: `/ws/<service>` upgrades and the
//!   HTTP trigger `/http/<service>/...`; control:
//!   reverse push, info, admin), their admission caps and timeouts, and
//!   serving them until shutdown ([`run`], [`serve`], [`public_app`],
//!   [`control_app`]).
//! - `session`: one WebSocket connection from upgrade to cleanup, its
//!   writer, and its idle and liveness clocks.
//! - `timers`: the timer trigger, firing each service's `[[timers]]` on
//!   its cron schedule (an edge, like `http` and `session`).
//! - `dispatch`: the gateway's shared state ([`Gateway`]) and handler calls
//!   within concurrency caps, with their output logged.
//! - [`plugins`]: services loaded from `plugins/<service>/` folders
//!   ([`PluginFile`], [`Service`], [`Services`]) and the watcher that reloads
//!   them.
//! - [`wasm`]: the engine, one store per event, limits, instance reuse, the
//!   compile cache, core modules wrapped into components, and the host calls
//!   of each WIT interface (`wasm/host_calls/`).
//! - [`state`]: the connection registry and groups ([`Router`]), the
//!   [`Broker`] seam with the one routing function ([`state::route`]), and
//!   the key-value store with its backend seam ([`state::kv`]).
//! - [`protocol`]: the wire contract of `docs/protocol.md`: event JSON, the
//!   register answer, the reverse-push request, the `errNo` table
//!   ([`ErrNo`]) and close codes ([`CloseCause`]).
//! - [`metrics`]: the process's Prometheus metrics, served by the control
//!   listener's `GET /metrics`; a leaf every layer records into.
//! - [`config`]: gateway-wide and per-service (`service.toml`) settings,
//!   and the config file of `wasmgate serve` ([`config::file`]).
//! - [`cluster`]: cluster mode on Redis: node identity, lease and fencing,
//!   the registry of live connections, the [`cluster::ClusterBroker`] that
//!   reaches other nodes' connections, and running a dead node's cleanups.
//! - `invoke`: run one handler once from the command line.
//! - [`client`]: `wasmgate client URL`, a WebSocket from the terminal.
//! - [`check`]: `wasmgate check FILE` and `wasmgate componentize IN OUT`.
//! - [`scaffold`]: `wasmgate new NAME` and `wasmgate build DIR`.
//! - [`stages`]: the per-event path split into stages, for benchmarks.

pub mod check;
pub mod client;
pub mod cluster;
pub mod config;
mod dispatch;
pub mod http;
mod invoke;
pub mod logging;
pub mod metrics;
pub mod plugins;
pub mod protocol;
pub mod scaffold;
mod session;
pub mod stages;
pub mod state;
mod timers;
pub mod wasm;

pub use config::{
    CompileMode, CompilerConfig, FrontDoorConfig, GatewayConfig, KvConfig, ServiceConfig, TlsConfig,
};
pub use dispatch::Gateway;
pub use http::{control_app, public_app, run, serve, Listeners};
pub use invoke::{invoke, invoke_script, output_line, ScriptStep};
pub use plugins::{LoadFailure, LoadedHandler, PluginFile, Service, Services};
pub use protocol::{ApiError, CloseCause, ErrNo};
pub use state::{Broker, ConnectionInfo, Router};
pub use wasm::capture::{LogLevel, OutputLine, OutputSource};
pub use wasm::{CallError, CallOutcome, LoadError, Runtime};
