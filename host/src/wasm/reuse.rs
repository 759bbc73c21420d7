//! Opt-in instance reuse (`instance_reuse` in `service.toml`).
//!
//! By default every event gets a fresh store and instance. A service that sets
//! `instance_reuse = N` lets one instance serve up to `N` events: after a
//! successful call the (store, instance) pair goes back into the pool of the
//! loaded handler it came from, and the next event of that handler may take it
//! instead of instantiating again. A pair is dropped (retired) after its `N`th
//! event, after any failed call (trap, time-out, memory limit, error result,
//! oversized answer), when the service's environment or memory limit changed,
//! and with its pool when the handler is replaced (hot reload) or unloaded.
//!
//! A pool belongs to one loaded handler file of one service, so an instance
//! never serves another service, nor another version of its handler. Idle
//! instances keep their slots of the engine's instance pool; the gateway
//! reserves extra slots for them and caps how many may idle at once
//! ([`IdleBudget`]), so reuse never starves fresh instantiations.
//!
//! Without reuse, the same pool holds at most one *prepared* instance: one
//! instantiated after an event for the handler's next event, which it serves
//! as its one and only event (`uses` 0, taken with `max_uses` 1).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Gateway-wide cap on idle instances, shared by every pool.
#[derive(Clone, Debug)]
pub(crate) struct IdleBudget {
    idle: Arc<AtomicUsize>,
    capacity: usize,
}

impl IdleBudget {
    /// A budget of `capacity` idle instances.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            idle: Arc::new(AtomicUsize::new(0)),
            capacity,
        }
    }

    /// A unit of the budget, if any is left.
    pub(crate) fn acquire(&self) -> Option<IdleToken> {
        self.idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |idle| {
                (idle < self.capacity).then_some(idle + 1)
            })
            .ok()
            .map(|_| IdleToken {
                idle: self.idle.clone(),
            })
    }
}

/// One unit of the [`IdleBudget`], released when the idle instance leaves the
/// pool (taken for an event, or dropped).
pub(crate) struct IdleToken {
    idle: Arc<AtomicUsize>,
}

impl Drop for IdleToken {
    fn drop(&mut self) {
        self.idle.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What an idle instance was set up with; an instance is only reused for
/// events with the same settings.
pub(crate) trait ReuseKey {
    /// The settings of an event.
    type Key;
    /// Whether this instance may serve an event with settings `key`.
    fn fits(&self, key: &Self::Key) -> bool;
}

/// A live instance between events, with the number of events it has served.
pub(crate) struct Reusable<T> {
    /// The store and instance.
    pub(crate) live: T,
    /// Events served so far.
    pub(crate) uses: u32,
}

struct Idle<T> {
    reusable: Reusable<T>,
    _token: IdleToken,
}

/// The idle instances of one loaded handler of one service.
pub(crate) struct InstancePool<T> {
    idle: Mutex<Vec<Idle<T>>>,
}

impl<T> Default for InstancePool<T> {
    fn default() -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
        }
    }
}

impl<T: ReuseKey> InstancePool<T> {
    /// Takes an idle instance that may serve another event under `key` with
    /// at most `max_uses` events in all; drops idle ones that no longer fit.
    pub(crate) fn take(&self, key: &T::Key, max_uses: u32) -> Option<Reusable<T>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(entry) = idle.pop() {
            if entry.reusable.uses < max_uses && entry.reusable.live.fits(key) {
                return Some(entry.reusable);
            }
        }
        None
    }

    /// Returns an instance after a successful event; it is dropped instead
    /// when it has served `max_uses` events or the idle budget is spent.
    pub(crate) fn put(&self, reusable: Reusable<T>, max_uses: u32, budget: &IdleBudget) {
        if reusable.uses >= max_uses {
            return;
        }
        let Some(token) = budget.acquire() else {
            return;
        };
        self.put_within(reusable, token);
    }

    /// Returns an instance made to wait, under a unit of the idle budget
    /// its maker took before making it.
    pub(crate) fn put_within(&self, reusable: Reusable<T>, token: IdleToken) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Idle {
                reusable,
                _token: token,
            });
    }

    /// Whether no instance waits in this pool.
    pub(crate) fn is_empty(&self) -> bool {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Idle instances in this pool.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.idle.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Item(u8);

    impl ReuseKey for Item {
        type Key = u8;
        fn fits(&self, key: &u8) -> bool {
            self.0 == *key
        }
    }

    #[test]
    fn instances_retire_after_their_uses_and_on_a_changed_key() {
        let budget = IdleBudget::new(1);
        let pool = InstancePool::default();
        pool.put(
            Reusable {
                live: Item(1),
                uses: 1,
            },
            2,
            &budget,
        );
        assert_eq!(pool.len(), 1);
        // The budget of one is spent.
        pool.put(
            Reusable {
                live: Item(1),
                uses: 1,
            },
            2,
            &budget,
        );
        assert_eq!(pool.len(), 1);
        // A changed key drops the idle instance and frees its budget.
        assert!(pool.take(&2, 2).is_none());
        assert_eq!(pool.len(), 0);
        pool.put(
            Reusable {
                live: Item(1),
                uses: 1,
            },
            2,
            &budget,
        );
        let taken = pool.take(&1, 2).unwrap();
        assert_eq!(taken.uses, 1);
        // Used up: not kept.
        pool.put(
            Reusable {
                live: taken.live,
                uses: 2,
            },
            2,
            &budget,
        );
        assert_eq!(pool.len(), 0);
    }
}
