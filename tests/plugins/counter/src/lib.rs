//! Counter: a test handler for instance reuse. It counts, in a global, the
//! events its instance has handled (register, transfer and cleanup alike).
//! On a text message `count` it pushes back the count including this event;
//! on `trap` it panics. A fresh instance per event always answers `1`.

use std::sync::atomic::{AtomicU32, Ordering};

use wasmgate_guest::{Closing, Connecting, Context, DataSend, Handler, HandlerError, Registration};

/// Events this instance has handled.
static EVENTS: AtomicU32 = AtomicU32::new(0);

struct Counter;

impl Handler for Counter {
    fn register(_ctx: &Context, _event: Connecting) -> Result<Registration, HandlerError> {
        EVENTS.fetch_add(1, Ordering::Relaxed);
        Ok(Registration::accept())
    }

    fn transfer(ctx: &Context, event: DataSend) -> Result<(), HandlerError> {
        let count = EVENTS.fetch_add(1, Ordering::Relaxed) + 1;
        match event.as_text() {
            Some("trap") => panic!("trap on command"),
            _ => wasmgate_guest::push(&ctx.connection_id, count.to_string().into())?,
        }
        Ok(())
    }

    fn cleanup(_ctx: &Context, _event: Closing) -> Result<(), HandlerError> {
        EVENTS.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

wasmgate_guest::handler!(Counter);
