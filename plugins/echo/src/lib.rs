//! Echo handler: sends every message back to its sender, text as text and
//! binary as binary. Build it with `cargo xtask build-plugins` (writes
//! `plugins/echo/handler.wasm`), run `cargo run -- serve --plugins plugins` and
//! connect any WebSocket client to `ws://127.0.0.1:8080/ws/echo`.

use wasmgate_guest::{Context, DataSend, Handler, HandlerError};

struct Echo;

impl Handler for Echo {
    fn transfer(ctx: &Context, event: DataSend) -> Result<(), HandlerError> {
        wasmgate_guest::push(&ctx.connection_id, event.into_payload()?)?;
        Ok(())
    }
}

wasmgate_guest::handler!(Echo);
