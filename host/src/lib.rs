//! wasmgate: a WebSocket gateway whose handlers are sandboxed WebAssembly
//! components.
//!
//! # Layout
//!
//! - [`config`]: gateway-wide and per-service (`service.toml`) settings, validated.
//! - `protocol`: the wire contract — event JSON, register answers, reverse-push
//!   requests and the `errNo` table.
//! - `runtime`: the wasmtime engine, pooling allocator, epoch ticker, the
//!   `wasmgate:gateway` world's host calls, and one fresh store per event.
//! - `reuse`: opt-in instance reuse (`instance_reuse`): pools of idle
//!   instances, one per loaded handler.
//! - `cache`: the on-disk cache of compiled handlers, keyed by content hash.
//! - `capture`: bounded capture of a handler's stdout, stderr and log lines.
//! - `core_module`: wraps plain core modules into handler components.
//! - `services`: services loaded from `plugins/<service>/` folders, and
//!   reloading one service to match its folder.
//! - `watcher`: watches the plugins folder and reloads what changed.
//! - `router`: the connection registry and the one routing function shared
//!   by reverse push and host calls.
//! - `gateway`: shared state, handler dispatch, the HTTP routes and `run`.
//! - `connection`: one WebSocket connection from upgrade to cleanup.
//! - `invoke`: run one handler once from the command line.
//! - [`stages`]: the per-event path split into stages, for benchmarks.

pub mod config;

mod cache;
mod capture;
mod connection;
mod core_module;
mod gateway;
mod invoke;
pub mod kv;
mod protocol;
mod reuse;
mod router;
mod runtime;
mod services;
pub mod stages;
mod watcher;

pub use capture::{LogLevel, OutputLine, OutputSource};
pub use config::{GatewayConfig, ServiceConfig};
pub use gateway::{app, run, serve, Gateway};
pub use invoke::invoke;
pub use protocol::ApiError;
pub use router::{ConnectionInfo, Router};
pub use runtime::{CallError, CallOutcome, LoadError, Role, Runtime};
pub use services::{LoadFailure, LoadedHandler, Service, Services};
