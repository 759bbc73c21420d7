//! The epoch ticker: one thread that advances the engine's epoch every
//! [`EPOCH_TICK`] while handler calls run, so a running guest yields at each
//! tick and traps once its deadline has passed (see `call.rs`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::Engine;

/// How often the epoch advances: the granularity of handler time-outs and how
/// long a busy guest runs before it lets other tasks on its thread proceed.
pub const EPOCH_TICK: Duration = Duration::from_micros(250);

/// The thread that advances the engine's epoch every [`EPOCH_TICK`] while
/// calls run. It goes on ticking for [`TICKER_LINGER`] ticks after the last
/// call ends, so a steady stream of short events does not pay a thread
/// wake-up each, and then sleeps (parked, no wake-ups), so an idle or
/// push-only gateway does not pay for 4,000 wake-ups a second. It holds
/// only a weak handle to the engine and ends when the engine is dropped.
pub(crate) struct EpochTicker {
    /// Calls running now.
    active: AtomicUsize,
    /// Set while the ticker thread is parked (or about to park).
    parked: AtomicBool,
    /// The ticker thread, to unpark when a call starts while it sleeps.
    thread: std::sync::OnceLock<std::thread::Thread>,
}

/// Ticks the ticker keeps running after the last call ends (10 ms).
const TICKER_LINGER: u32 = 40;

/// Keeps the ticker running while alive (one per running call).
pub(crate) struct Ticking<'a>(&'a EpochTicker);

impl Drop for Ticking<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl EpochTicker {
    pub(crate) fn spawn(engine: &Engine) -> Arc<Self> {
        let ticker = Arc::new(Self {
            active: AtomicUsize::new(0),
            parked: AtomicBool::new(false),
            thread: std::sync::OnceLock::new(),
        });
        let weak = engine.weak();
        let state = Arc::downgrade(&ticker);
        let thread = std::thread::Builder::new()
            .name("wasmgate-epoch".into())
            .spawn(move || {
                let mut idle_ticks = 0u32;
                loop {
                    let Some(ticker) = state.upgrade() else { break };
                    if ticker.active.load(Ordering::Acquire) > 0 {
                        idle_ticks = 0;
                    } else {
                        idle_ticks = idle_ticks.saturating_add(1);
                    }
                    if idle_ticks > TICKER_LINGER {
                        ticker.parked.store(true, Ordering::SeqCst);
                        // A call that started before `parked` was set is
                        // seen here; one that starts after it unparks us
                        // (an unpark that comes before the park is kept).
                        if ticker.active.load(Ordering::SeqCst) == 0 {
                            drop(ticker);
                            std::thread::park_timeout(Duration::from_secs(1));
                        } else {
                            ticker.parked.store(false, Ordering::SeqCst);
                        }
                        // Woken by a call: `active` is above 0 at the top
                        // of the loop. Timed out: still idle, park again.
                        continue;
                    }
                    drop(ticker);
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .expect("spawn epoch ticker thread");
        let _ = ticker.thread.set(thread.thread().clone());
        ticker
    }

    /// Marks a call as running until the guard is dropped.
    pub(crate) fn hold(&self) -> Ticking<'_> {
        self.active.fetch_add(1, Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst) && self.parked.swap(false, Ordering::SeqCst) {
            if let Some(thread) = self.thread.get() {
                thread.unpark();
            }
        }
        Ticking(self)
    }
}
