//! The gateway's handler-call slots, shared between services so that no
//! service, and no few, can take them all.
//!
//! There are as many slots as the instance pool has room for running calls
//! (`--max-concurrency`, G). Two rules bound what one service holds:
//!
//! - **A reserve.** The last R = G/8 (at least 1) free slots go only to a
//!   service running fewer than two calls: a quiet service's call finds a
//!   slot unless R/2 other services each have two calls running at the
//!   same moment, whatever the busy services do.
//! - **A share.** The other G − R slots are split between the loaded
//!   services, up to four: with one service loaded it may use them all,
//!   with two half each, with four or more a quarter each. So one noisy
//!   service (or three) leaves room for the rest before the reserve is
//!   even touched.
//!
//! A service's own `max_concurrency` applies as well, before these. A call
//! that may not take a slot yet waits (its service's time-out bounds the
//! wait) and is woken whenever a slot comes back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The gateway-wide slots; see the module documentation. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct FairSlots {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    total: usize,
    reserve: usize,
    // A std mutex: held for a compare and an add, never across an await.
    free: Mutex<usize>,
    /// Services loaded now, which the share is divided by (up to four).
    services: AtomicUsize,
    /// Calls waiting for a slot; a returned slot wakes them only if any.
    waiting: AtomicUsize,
    returned: Notify,
}

/// Calls a service runs before it counts as busy for the reserve.
const QUIET_CALLS: usize = 2;

/// The most services the share is divided between.
const SHARE_DIVISOR_MAX: usize = 4;

/// The slots one service holds; kept by its service across calls.
#[derive(Debug, Default)]
pub(crate) struct Holding(AtomicUsize);

impl Holding {
    /// Slots held now.
    pub(crate) fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// One slot, given back on drop.
#[derive(Debug)]
pub(crate) struct Slot {
    inner: Arc<Inner>,
    holding: Arc<Holding>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.holding.0.fetch_sub(1, Ordering::AcqRel);
        *self.inner.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        crate::metrics::global().slot_returned();
        if self.inner.waiting.load(Ordering::Acquire) > 0 {
            self.inner.returned.notify_waiters();
        }
    }
}

impl Drop for Inner {
    /// This gateway's slots leave the process's count.
    fn drop(&mut self) {
        crate::metrics::global().add_call_slots(self.total, false);
    }
}

impl FairSlots {
    /// `slots` slots, all free.
    pub(crate) fn new(slots: usize) -> Self {
        crate::metrics::global().add_call_slots(slots, true);
        Self {
            inner: Arc::new(Inner {
                total: slots,
                reserve: (slots / 8).max(1),
                free: Mutex::new(slots),
                services: AtomicUsize::new(1),
                waiting: AtomicUsize::new(0),
                returned: Notify::new(),
            }),
        }
    }

    /// Tells how many services are loaded (the share depends on it).
    pub(crate) fn set_services(&self, services: usize) {
        self.inner
            .services
            .store(services.max(1), Ordering::Release);
    }

    /// The most slots one service may hold now.
    pub(crate) fn share(&self) -> usize {
        let inner = &self.inner;
        let divisor = inner
            .services
            .load(Ordering::Acquire)
            .clamp(1, SHARE_DIVISOR_MAX);
        (inner.total.saturating_sub(inner.reserve) / divisor).max(1)
    }

    /// A slot for the service holding `holding`, if the rules allow one now.
    pub(crate) fn try_acquire(&self, holding: &Arc<Holding>) -> Option<Slot> {
        let held = holding.count();
        if held >= self.share() {
            return None;
        }
        let reserved = if held < QUIET_CALLS {
            0
        } else {
            self.inner.reserve
        };
        let mut free = self.inner.free.lock().unwrap_or_else(|e| e.into_inner());
        if *free <= reserved {
            return None;
        }
        *free -= 1;
        holding.0.fetch_add(1, Ordering::AcqRel);
        crate::metrics::global().slot_taken();
        Some(Slot {
            inner: self.inner.clone(),
            holding: holding.clone(),
        })
    }

    /// Waits until the service holding `holding` may take a slot.
    pub(crate) async fn acquire(&self, holding: &Arc<Holding>) -> Slot {
        if let Some(slot) = self.try_acquire(holding) {
            return slot;
        }
        self.inner.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(&self.inner);
        loop {
            let returned = self.inner.returned.notified();
            tokio::pin!(returned);
            // Registered before the check, so a slot returned in between
            // still wakes this call.
            returned.as_mut().enable();
            if let Some(slot) = self.try_acquire(holding) {
                return slot;
            }
            returned.await;
        }
    }

    /// Slots free now.
    #[cfg(test)]
    pub(crate) fn free(&self) -> usize {
        *self.inner.free.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Counts a waiting call for as long as it waits (also when its wait is
/// cancelled by a time-out).
struct Waiting<'a>(&'a Inner);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(slots: &FairSlots, holding: &Arc<Holding>) -> Vec<Slot> {
        std::iter::from_fn(|| slots.try_acquire(holding)).collect()
    }

    #[test]
    fn the_share_splits_what_is_outside_the_reserve_between_up_to_four_services() {
        let slots = FairSlots::new(256);
        let noisy = Arc::new(Holding::default());
        slots.set_services(1);
        let held = take(&slots, &noisy);
        // Alone, all but the reserve of 32.
        assert_eq!(held.len(), 224);
        assert_eq!(slots.free(), 32);
        drop(held);
        slots.set_services(2);
        assert_eq!(take(&slots, &noisy).len(), 112);
        slots.set_services(100);
        assert_eq!(slots.share(), 56);
        assert_eq!(slots.free(), 256);
        assert_eq!(noisy.count(), 0);
    }

    #[test]
    fn while_few_services_run_two_calls_at_once_a_quiet_one_finds_a_slot() {
        for (total, services) in [(8, 3), (32, 10), (256, 100)] {
            let slots = FairSlots::new(total);
            slots.set_services(services + 1);
            let noisy: Vec<Arc<Holding>> = (0..services).map(|_| Arc::default()).collect();
            let mut held = Vec::new();
            // Every service but the quiet one runs as many calls as it may.
            for _ in 0..4 {
                for service in &noisy {
                    held.extend(take(&slots, service));
                }
            }
            let busy = noisy.iter().filter(|h| h.count() >= QUIET_CALLS).count();
            let quiet = Arc::new(Holding::default());
            let found = slots.try_acquire(&quiet).is_some();
            // The guarantee: a slot, unless reserve/2 services are at two
            // calls or more.
            let reserve = (total / 8).max(1);
            assert!(
                found || busy * QUIET_CALLS >= reserve,
                "{total} slots, {services} noisy: none for the quiet one"
            );
            if services < 4 {
                assert!(found, "{total} slots, {services} noisy");
            }
        }
    }

    #[tokio::test]
    async fn a_waiting_call_gets_the_slot_its_own_service_returns() {
        let slots = FairSlots::new(4);
        slots.set_services(2);
        let noisy = Arc::new(Holding::default());
        // The share of one of two services: (4 - 1) / 2 = 1 slot.
        let mut held = take(&slots, &noisy);
        assert_eq!(held.len(), 1);
        let waiter = {
            let (slots, noisy) = (slots.clone(), noisy.clone());
            tokio::spawn(async move { slots.acquire(&noisy).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        held.pop();
        let slot = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken when a slot came back")
            .unwrap();
        assert_eq!(noisy.count(), 1);
        drop(slot);
    }
}
