//! A service's cap on its handler calls running at once, which a reload of
//! its settings may raise or lower while calls run.
//!
//! A tokio semaphore can only take away permits that are free at the time
//! (`forget_permits`); a cap lowered while calls hold its permits would
//! otherwise come back at the old size as they finish. The permits that
//! could not be taken at once are owed, and each permit that comes back
//! while some are owed is forgotten instead of returned, so the number of
//! permits always converges on the current cap.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A resizable cap on concurrent calls.
#[derive(Debug)]
pub(crate) struct ConcurrencyCap {
    semaphore: Arc<Semaphore>,
    /// Permits still to be taken away as running calls return them.
    owed: Arc<AtomicUsize>,
    // A std mutex: held only to serialize resizes, never across an await.
    limit: Mutex<usize>,
}

/// One running call's share of a [`ConcurrencyCap`], given back on drop.
#[derive(Debug)]
pub(crate) struct CapPermit {
    permit: Option<OwnedSemaphorePermit>,
    owed: Arc<AtomicUsize>,
}

impl Drop for CapPermit {
    fn drop(&mut self) {
        let paid = self
            .owed
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |owed| {
                owed.checked_sub(1)
            })
            .is_ok();
        if let (true, Some(permit)) = (paid, self.permit.take()) {
            permit.forget();
        }
    }
}

impl ConcurrencyCap {
    /// A cap of `limit` calls.
    pub fn new(limit: usize) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(limit)),
            owed: Arc::default(),
            limit: Mutex::new(limit),
        }
    }

    /// Changes the cap. Lowering it below the calls running now takes
    /// effect as they finish.
    pub fn set_limit(&self, new: usize) {
        let mut limit = self.limit.lock().unwrap_or_else(|e| e.into_inner());
        if new > *limit {
            // Cancel what is still owed before adding permits.
            let mut grow = new - *limit;
            let _ = self
                .owed
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |owed| {
                    let cancelled = owed.min(grow);
                    grow -= cancelled;
                    Some(owed - cancelled)
                });
            self.semaphore.add_permits(grow);
        } else if new < *limit {
            let shrink = *limit - new;
            let taken = self.semaphore.forget_permits(shrink);
            self.owed.fetch_add(shrink - taken, Ordering::AcqRel);
        }
        *limit = new;
    }

    fn permit(&self, permit: OwnedSemaphorePermit) -> CapPermit {
        CapPermit {
            permit: Some(permit),
            owed: self.owed.clone(),
        }
    }

    /// A permit if one is free now.
    pub fn try_acquire(&self) -> Option<CapPermit> {
        let permit = self.semaphore.clone().try_acquire_owned().ok()?;
        Some(self.permit(permit))
    }

    /// Waits for a permit, in arrival order.
    pub async fn acquire(&self) -> CapPermit {
        let permit = self
            .semaphore
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        self.permit(permit)
    }

    /// Permits free now.
    #[cfg(test)]
    fn available(&self) -> usize {
        self.semaphore.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(cap: &ConcurrencyCap, n: usize) -> Vec<CapPermit> {
        (0..n).map(|_| cap.try_acquire().unwrap()).collect()
    }

    #[test]
    fn lowering_the_cap_while_every_permit_is_held_holds_once_they_return() {
        let cap = ConcurrencyCap::new(4);
        let running = hold(&cap, 4);
        cap.set_limit(2);
        assert!(cap.try_acquire().is_none());
        drop(running);
        assert_eq!(cap.available(), 2);
        let again = hold(&cap, 2);
        assert!(cap.try_acquire().is_none());
        drop(again);
        assert_eq!(cap.available(), 2);
    }

    #[test]
    fn raising_the_cap_cancels_what_is_owed_first() {
        let cap = ConcurrencyCap::new(4);
        let running = hold(&cap, 3);
        // One free permit is taken at once, two are owed.
        cap.set_limit(1);
        assert_eq!(cap.available(), 0);
        cap.set_limit(2);
        drop(running);
        assert_eq!(cap.available(), 2);
        cap.set_limit(5);
        assert_eq!(cap.available(), 5);
    }

    #[test]
    fn many_resizes_converge_on_the_last_cap() {
        let cap = ConcurrencyCap::new(8);
        let mut running = hold(&cap, 6);
        for limit in [3, 7, 1, 5, 2] {
            cap.set_limit(limit);
            running.pop();
        }
        drop(running);
        assert_eq!(cap.available(), 2);
    }
}
