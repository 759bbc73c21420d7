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
//! - **A share.** The other G − R slots are split between the services
//!   that are *active*, up to four: those holding a slot now or that took
//!   one in the last [`ACTIVE_WINDOW`] to twice that, counting the asking
//!   service itself. One active service may use them all, two half each,
//!   four or more a quarter each. Services that are loaded but make no
//!   calls do not shrink anyone's share: a busy service beside a hundred
//!   idle ones runs as many calls at once as it would alone.
//!
//! Active services are never more than loaded ones (but for a removed
//! service, counted until its window ends), so no service's share is
//! smaller than it would be if every loaded service counted.
//!
//! When a second service becomes active while a first holds all G − R, its
//! first calls run on the reserve, and the first service takes no new slot
//! above its (now halved) share: the slots come over as the first
//! service's running calls end, each within its `timeout_ms`.
//!
//! A service's own `max_concurrency` applies as well, before these. A call
//! that may not take a slot yet waits (its service's time-out bounds the
//! wait) in its service's queue. A slot that comes back is handed straight
//! to a waiting call that may take it: the services with calls waiting take
//! turns (round robin), and a service's own calls go oldest first. So a
//! returned slot wakes one call, not every waiting one, and no call can
//! lose the race for slots again and again while later ones win: with 100
//! services of 50 busy connections each (5,000 calls waiting for 256
//! slots), waking every waiter per returned slot cost more than the calls
//! and left some waiting past their time-out.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// The gateway-wide slots; see the module documentation. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct FairSlots {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    total: usize,
    reserve: usize,
    // A std mutex: held to count and to pick the next waiter, never across
    // an await (slots are sent to their waiters after it is released).
    state: Mutex<State>,
    /// When window 0 began.
    started: Instant,
    /// How long a service that took a slot counts as active: this window
    /// and the next.
    window: Duration,
}

#[derive(Debug)]
struct State {
    free: usize,
    /// The services with calls waiting, in turn order.
    queues: VecDeque<ServiceQueue>,
    /// Tells waiting calls apart, so a cancelled one can leave its queue.
    next_waiter: u64,
    /// Services holding at least one slot.
    holders: usize,
    /// The window the two counts below are of.
    window: u64,
    /// Services that took a slot in this window.
    seen_now: usize,
    /// Services that took a slot in the window before and none yet in
    /// this one.
    seen_before: usize,
}

/// One service's waiting calls, oldest first.
#[derive(Debug)]
struct ServiceQueue {
    holding: Arc<Holding>,
    waiters: VecDeque<(u64, oneshot::Sender<Slot>)>,
}

/// Calls a service runs before it counts as busy for the reserve.
const QUIET_CALLS: usize = 2;

/// The most services the share is divided between.
const SHARE_DIVISOR_MAX: usize = 4;

/// A service that took a slot counts as active for the rest of this window
/// of time and the whole next one.
pub(crate) const ACTIVE_WINDOW: Duration = Duration::from_secs(5);

/// The slots one service holds; kept by its service across calls.
#[derive(Debug, Default)]
pub(crate) struct Holding {
    held: AtomicUsize,
    /// One more than the last window this service took a slot in (0:
    /// never). Written under the slots' lock.
    seen: AtomicU64,
}

impl Holding {
    /// Slots held now.
    pub(crate) fn count(&self) -> usize {
        self.held.load(Ordering::Acquire)
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
        crate::metrics::global().slot_returned();
        let mut state = self.inner.lock();
        if self.holding.held.fetch_sub(1, Ordering::AcqRel) == 1 {
            state.holders -= 1;
        }
        state.free += 1;
        let handed = self.inner.hand_out(&mut state);
        drop(state);
        send_all(handed);
    }
}

impl Drop for Inner {
    /// This gateway's slots leave the process's count.
    fn drop(&mut self) {
        crate::metrics::global().add_call_slots(self.total, false);
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The window of time `now` falls in.
    fn window_of(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.started);
        (since.as_nanos() / self.window.as_nanos().max(1)) as u64
    }

    /// Moves the counts of active services on to the window of now.
    fn roll(&self, state: &mut State) -> u64 {
        let window = self.window_of(Instant::now());
        if window != state.window {
            state.seen_before = if window == state.window + 1 {
                state.seen_now
            } else {
                0
            };
            state.seen_now = 0;
            state.window = window;
        }
        window
    }

    /// The most slots the service holding `holding` may hold now: G − R
    /// split between the active services (up to four), `holding`'s own
    /// among them.
    fn share(&self, state: &mut State, holding: &Holding) -> usize {
        let window = self.roll(state);
        let seen = holding.seen.load(Ordering::Acquire);
        // `seen` is one more than a window: 0 is never.
        let lately = seen != 0 && (seen == window + 1 || seen == window);
        let counted = holding.count() > 0 || lately;
        let active = state.holders.max(state.seen_now + state.seen_before) + usize::from(!counted);
        (self.total.saturating_sub(self.reserve) / active.clamp(1, SHARE_DIVISOR_MAX)).max(1)
    }

    /// Whether the service holding `holding` may take a free slot now.
    fn may_take(&self, state: &mut State, holding: &Holding) -> bool {
        let held = holding.count();
        let reserved = if held < QUIET_CALLS { 0 } else { self.reserve };
        state.free > reserved && held < self.share(state, holding)
    }

    /// Takes a slot for `holding`; the caller has checked `may_take` (which
    /// rolled the window).
    fn take(self: &Arc<Self>, state: &mut State, holding: &Arc<Holding>) -> Slot {
        state.free -= 1;
        if holding.held.fetch_add(1, Ordering::AcqRel) == 0 {
            state.holders += 1;
        }
        let seen = holding.seen.load(Ordering::Acquire);
        if seen != state.window + 1 {
            if seen != 0 && seen == state.window {
                // Seen in the window before: it moves to this one.
                state.seen_before = state.seen_before.saturating_sub(1);
            }
            state.seen_now += 1;
            holding.seen.store(state.window + 1, Ordering::Release);
        }
        crate::metrics::global().slot_taken();
        Slot {
            inner: self.clone(),
            holding: holding.clone(),
        }
    }

    /// Hands free slots to waiting calls that may take them, one service
    /// after another in turn, each service's oldest call first. Returns the
    /// slots with where to send them (after the lock is released).
    fn hand_out(self: &Arc<Self>, state: &mut State) -> Vec<(oneshot::Sender<Slot>, Slot)> {
        let mut handed = Vec::new();
        // Each service is looked at once per pass; a pass that hands out
        // nothing ends it.
        let mut unlucky = 0;
        while state.free > 0 && unlucky < state.queues.len() {
            let mut queue = state.queues.pop_front().expect("len checked");
            // Calls that stopped waiting (their time-out) leave no trace.
            while queue.waiters.front().is_some_and(|(_, tx)| tx.is_closed()) {
                queue.waiters.pop_front();
            }
            let Some(_) = queue.waiters.front() else {
                continue;
            };
            if self.may_take(state, &queue.holding) {
                let (_, tx) = queue.waiters.pop_front().expect("front checked");
                let slot = self.take(state, &queue.holding);
                handed.push((tx, slot));
                unlucky = 0;
            } else {
                unlucky += 1;
            }
            if !queue.waiters.is_empty() {
                state.queues.push_back(queue);
            }
        }
        handed
    }
}

/// Sends handed-out slots; a slot whose call stopped waiting in between
/// comes back (and is handed on) when it is dropped here.
fn send_all(handed: Vec<(oneshot::Sender<Slot>, Slot)>) {
    for (tx, slot) in handed {
        let _ = tx.send(slot);
    }
}

impl FairSlots {
    /// `slots` slots, all free.
    pub(crate) fn new(slots: usize) -> Self {
        Self::with_window(slots, ACTIVE_WINDOW)
    }

    /// `slots` slots, all free, with services active for `window` to twice
    /// that after their last call.
    fn with_window(slots: usize, window: Duration) -> Self {
        crate::metrics::global().add_call_slots(slots, true);
        Self {
            inner: Arc::new(Inner {
                total: slots,
                reserve: (slots / 8).max(1),
                state: Mutex::new(State {
                    free: slots,
                    queues: VecDeque::new(),
                    next_waiter: 0,
                    holders: 0,
                    window: 0,
                    seen_now: 0,
                    seen_before: 0,
                }),
                started: Instant::now(),
                window,
            }),
        }
    }

    /// The most slots the service holding `holding` may hold now.
    #[cfg(test)]
    pub(crate) fn share(&self, holding: &Holding) -> usize {
        self.inner.share(&mut self.inner.lock(), holding)
    }

    /// A slot for the service holding `holding`, if the rules allow one now.
    pub(crate) fn try_acquire(&self, holding: &Arc<Holding>) -> Option<Slot> {
        let mut state = self.inner.lock();
        self.inner
            .may_take(&mut state, holding)
            .then(|| self.inner.take(&mut state, holding))
    }

    /// Waits until the service holding `holding` may take a slot, behind
    /// its service's calls already waiting.
    pub(crate) async fn acquire(&self, holding: &Arc<Holding>) -> Slot {
        loop {
            let (id, rx) = {
                let mut state = self.inner.lock();
                if self.inner.may_take(&mut state, holding) {
                    return self.inner.take(&mut state, holding);
                }
                let (tx, rx) = oneshot::channel();
                let id = state.next_waiter;
                state.next_waiter += 1;
                match state
                    .queues
                    .iter_mut()
                    .find(|queue| Arc::ptr_eq(&queue.holding, holding))
                {
                    Some(queue) => queue.waiters.push_back((id, tx)),
                    None => state.queues.push_back(ServiceQueue {
                        holding: holding.clone(),
                        waiters: VecDeque::from([(id, tx)]),
                    }),
                }
                (id, rx)
            };
            let mut waiting = Waiting {
                inner: &self.inner,
                holding,
                id,
                queued: true,
            };
            // A waiter leaves its queue only when it is sent a slot (or
            // when it stops waiting); should it ever be dropped unsent,
            // the call asks again.
            let received = rx.await;
            // Sent or dropped, the entry is out of the queue already.
            waiting.queued = false;
            if let Ok(slot) = received {
                return slot;
            }
        }
    }

    /// Slots free now.
    #[cfg(test)]
    pub(crate) fn free(&self) -> usize {
        self.inner.lock().free
    }

    /// Calls waiting now.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        let state = self.inner.lock();
        state.queues.iter().map(|queue| queue.waiters.len()).sum()
    }
}

/// A call's place in its service's queue, taken out if the call stops
/// waiting (a time-out) before it is sent a slot.
struct Waiting<'a> {
    inner: &'a Inner,
    holding: &'a Arc<Holding>,
    id: u64,
    /// Whether the entry may still be in the queue (the call stopped
    /// waiting before its channel answered).
    queued: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.queued {
            return;
        }
        let mut state = self.inner.lock();
        if let Some(at) = state
            .queues
            .iter()
            .position(|queue| Arc::ptr_eq(&queue.holding, self.holding))
        {
            state.queues[at].waiters.retain(|(id, _)| *id != self.id);
            if state.queues[at].waiters.is_empty() {
                state.queues.remove(at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(slots: &FairSlots, holding: &Arc<Holding>) -> Vec<Slot> {
        std::iter::from_fn(|| slots.try_acquire(holding)).collect()
    }

    /// Makes `holding`'s service active: one call, at once returned.
    fn call_once(slots: &FairSlots, holding: &Arc<Holding>) {
        drop(slots.try_acquire(holding).expect("a slot"));
    }

    #[test]
    fn the_share_splits_what_is_outside_the_reserve_between_up_to_four_active_services() {
        let slots = FairSlots::new(256);
        let noisy = Arc::new(Holding::default());
        // A hundred services that make no calls change nothing.
        let idle: Vec<Arc<Holding>> = (0..100).map(|_| Arc::default()).collect();
        let held = take(&slots, &noisy);
        // Alone, all but the reserve of 32.
        assert_eq!(held.len(), 224);
        assert_eq!(slots.free(), 32);
        // A second service's call runs on the reserve, and the first takes
        // nothing more above its halved share.
        let other = Arc::new(Holding::default());
        let other_slot = slots.try_acquire(&other).expect("the reserve");
        assert!(slots.try_acquire(&noisy).is_none());
        assert_eq!(slots.share(&noisy), 112);
        drop(held);
        drop(other_slot);
        // The second service stays active after its call: half each.
        assert_eq!(take(&slots, &noisy).len(), 112);
        for service in &idle[..3] {
            call_once(&slots, service);
        }
        assert_eq!(slots.share(&noisy), 56);
        assert_eq!(slots.free(), 256);
        assert_eq!(noisy.count(), 0);
    }

    #[tokio::test]
    async fn a_service_stops_counting_two_windows_after_its_last_call_unless_it_holds_a_slot() {
        let window = std::time::Duration::from_millis(40);
        let slots = FairSlots::with_window(256, window);
        let (noisy, other) = (Arc::new(Holding::default()), Arc::new(Holding::default()));
        call_once(&slots, &other);
        assert_eq!(slots.share(&noisy), 112);
        tokio::time::sleep(window * 3).await;
        assert_eq!(slots.share(&noisy), 224);
        // A call that runs long counts as long as it runs.
        let long = slots.try_acquire(&other).expect("a slot");
        tokio::time::sleep(window * 3).await;
        assert_eq!(slots.share(&noisy), 112);
        drop(long);
        assert_eq!(slots.share(&noisy), 224);
    }

    #[test]
    fn while_few_services_run_two_calls_at_once_a_quiet_one_finds_a_slot() {
        for active in [false, true] {
            for (total, services) in [(8, 3), (32, 10), (256, 100)] {
                let slots = FairSlots::new(total);
                let noisy: Vec<Arc<Holding>> = (0..services).map(|_| Arc::default()).collect();
                let quiet = Arc::new(Holding::default());
                if active {
                    for service in noisy.iter().chain([&quiet]) {
                        call_once(&slots, service);
                    }
                }
                let mut held = Vec::new();
                // Every service but the quiet one runs as many calls as it may.
                for _ in 0..4 {
                    for service in &noisy {
                        held.extend(take(&slots, service));
                    }
                }
                let busy = noisy.iter().filter(|h| h.count() >= QUIET_CALLS).count();
                let found = slots.try_acquire(&quiet).is_some();
                // The guarantee: a slot, unless reserve/2 services are at two
                // calls or more.
                let reserve = (total / 8).max(1);
                assert!(
                    found || busy * QUIET_CALLS >= reserve,
                    "{total} slots, {services} noisy: none for the quiet one"
                );
                // With the quiet service active, fewer than four noisy ones
                // leave it room beyond the reserve.
                if active && services < 4 {
                    assert!(found, "{total} slots, {services} noisy");
                }
            }
        }
    }

    /// Spawns a call of `holding` waiting for a slot; sends its number
    /// on `done` when it has one, and keeps the slot until `release`.
    fn waiter(
        slots: &FairSlots,
        holding: &Arc<Holding>,
        n: usize,
        done: &tokio::sync::mpsc::UnboundedSender<usize>,
    ) -> tokio::task::JoinHandle<Slot> {
        let (slots, holding, done) = (slots.clone(), holding.clone(), done.clone());
        tokio::spawn(async move {
            let slot = slots.acquire(&holding).await;
            done.send(n).unwrap();
            slot
        })
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_returned_slot_goes_to_the_next_service_in_turn_and_its_oldest_call() {
        // 10 slots, reserve 1, share (10 - 1) / 4 = 2 with four services.
        let slots = FairSlots::new(10);
        let services: Vec<Arc<Holding>> = (0..4).map(|_| Arc::default()).collect();
        for service in &services {
            call_once(&slots, service);
        }
        let mut held: Vec<Slot> = Vec::new();
        for service in &services {
            held.extend(take(&slots, service));
        }
        assert_eq!(held.len(), 8);
        let (done, mut order) = tokio::sync::mpsc::unbounded_channel();
        // Service 0 queues three calls (0, 1, 2), then service 1 one (10).
        let mut waiting = Vec::new();
        for n in 0..3 {
            waiting.push(waiter(&slots, &services[0], n, &done));
            settle().await;
        }
        waiting.push(waiter(&slots, &services[1], 10, &done));
        settle().await;
        assert_eq!(slots.waiting(), 4);
        // Each service returns a slot in turn: service 0's oldest call,
        // then service 1's, then service 0's next.
        let of = |held: &[Slot], i: usize| {
            held.iter()
                .position(|slot| Arc::ptr_eq(&slot.holding, &services[i]))
                .unwrap()
        };
        for (returning, expected) in [(0, 0), (1, 10), (0, 1)] {
            let at = of(&held, returning);
            held.remove(at);
            let next = tokio::time::timeout(std::time::Duration::from_secs(5), order.recv())
                .await
                .expect("a waiting call was handed the slot");
            assert_eq!(next, Some(expected));
        }
        assert_eq!(slots.waiting(), 1);
        // Calls 0, 1 and 10 hold slots; call 2 still waits (its service
        // is at its share again).
        let last = waiting.remove(2);
        for call in waiting {
            held.push(call.await.unwrap());
        }
        assert!(!last.is_finished());
        last.abort();
        assert_eq!(services[0].count(), 2);
        assert_eq!(services[1].count(), 2);
    }

    #[tokio::test]
    async fn a_call_that_stops_waiting_leaves_its_queue_and_its_slot_goes_on() {
        let slots = FairSlots::new(4);
        call_once(&slots, &Arc::default());
        let noisy = Arc::new(Holding::default());
        let held = take(&slots, &noisy);
        assert_eq!(held.len(), 1);
        // Ten calls give up after a moment.
        for _ in 0..10 {
            let wait = slots.acquire(&noisy);
            assert!(
                tokio::time::timeout(std::time::Duration::from_millis(1), wait)
                    .await
                    .is_err()
            );
        }
        assert_eq!(slots.waiting(), 0);
        // One still waiting gets the slot when it comes back.
        let (done, mut order) = tokio::sync::mpsc::unbounded_channel();
        let call = waiter(&slots, &noisy, 7, &done);
        settle().await;
        drop(held);
        assert_eq!(order.recv().await, Some(7));
        drop(call.await.unwrap());
        assert_eq!(slots.free(), 4);
        assert_eq!(noisy.count(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn thousands_of_calls_of_many_services_all_get_slots_and_give_them_back() {
        let slots = FairSlots::new(64);
        let services: Vec<Arc<Holding>> = (0..100).map(|_| Arc::default()).collect();
        let calls: Vec<_> = (0..5_000)
            .map(|n| {
                let (slots, holding) = (slots.clone(), services[n % 100].clone());
                tokio::spawn(async move {
                    for _ in 0..4 {
                        let slot = slots.acquire(&holding).await;
                        tokio::task::yield_now().await;
                        drop(slot);
                    }
                })
            })
            .collect();
        for call in calls {
            tokio::time::timeout(std::time::Duration::from_secs(60), call)
                .await
                .expect("no call starves")
                .unwrap();
        }
        assert_eq!(slots.free(), 64);
        assert_eq!(slots.waiting(), 0);
        assert!(services.iter().all(|service| service.count() == 0));
    }

    #[tokio::test]
    async fn a_waiting_call_gets_the_slot_its_own_service_returns() {
        let slots = FairSlots::new(4);
        call_once(&slots, &Arc::default());
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
