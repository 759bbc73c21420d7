//! Integration tests: each starts a real gateway on `127.0.0.1:0` with real
//! wasm handlers built from source, and drives it with real WebSocket and HTTP
//! clients.

/// The chat demo page in a real browser (Chromium driven by playwright-core).
mod browser;
/// Echo of text and binary through the example `echo` service.
mod echo;
/// The front door under abuse: caps, timeouts, liveness, listeners.
mod front_door;
/// Hostile handlers and hostile clients: each fails only itself.
mod hostile;
/// A tenant's own files used against the gateway: links, FIFOs, sizes.
mod hostile_files;
/// A hostile tenant against host-call inputs, the log and outbound bytes:
/// `route` bombs, log floods, forged log lines, clients that do not read.
mod hostile_limits;
/// Shared resources under attack: the instance pool, call slots, memory.
mod isolation;
/// Handlers in other forms than a Rust component: hand-written core modules.
mod languages;
/// Handlers in Python and JavaScript components: echo, the seed-style
/// `main_handler` port, the compile cache and opt-in instance reuse.
mod languages_scripted;
/// The connection lifecycle: register, transfer order, cleanup for every ending.
mod lifecycle;
/// Reverse push: routing, authorisation, every malformed request.
mod push;
/// Register: refusal, failures, sub-protocol, headers and query, early push.
mod register;
/// Hot reload: swaps, bad files, added and removed services, the compile cache.
mod reload;
/// What a handler can and cannot reach, and how its output is logged.
mod sandbox;
/// Graceful shutdown and `wasmgate invoke`.
mod shutdown;
/// Key-value state, groups and broadcast, the chat example, durability.
mod state;
/// TLS on the public listener: `wss://` echo, an untrusted certificate,
/// a renewed certificate served without a restart, a silent TLS client.
mod tls;
/// The model's other triggers: HTTP API handlers and timers.
mod triggers;
