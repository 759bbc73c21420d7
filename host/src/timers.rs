//! The timer trigger: one task that fires every service's `[[timers]]`
//! (`service.toml`) on their cron schedules, in UTC, calling the service's
//! `timer` role (its `timer.wasm`, else `handler.wasm`) with the model's
//! timer event.
//!
//! - A tick is delivered asynchronously: its answer is ignored, and a
//!   failure is logged with the service, the timer and the reason.
//! - A tick that comes while the previous run of the same timer is still
//!   going is skipped, and logged.
//! - Ticks missed while the gateway was down, or while this task was late,
//!   are not replayed: after a late wake the timer fires once, for its
//!   latest due tick, and then goes on from now.
//! - Timers follow hot reload: the services tell this task when a
//!   `service.toml` changed or a service came or went, and it reads every
//!   service's table again at once. A timer whose name and cron are
//!   unchanged keeps its schedule and its run in flight; a removed service's
//!   timers stop.
//! - In cluster mode a tick fires on one node of the cluster: every node
//!   schedules the timer, and at each tick the node that claims it in Redis
//!   first (`SET NX`, one key per service, timer and tick second) runs it.
//!   With Redis unreachable no node can claim the tick, and it fires
//!   nowhere (logged): a tick is at most once per cluster, never doubled.
//!
//! With no timer anywhere the task only waits for a change: an idle
//! gateway pays nothing for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::cron::{CivilTime, Cron};
use crate::dispatch::{new_request_id, Event, Gateway, WeakGateway};
use crate::protocol::{timer_event, Role};

/// The longest the task sleeps without looking at the clock again, so a
/// wall clock set back or forward is noticed within this much.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// One timer of one service, as scheduled.
struct Scheduled {
    service: Arc<str>,
    name: Arc<str>,
    cron_text: String,
    cron: Cron,
    message: Option<Arc<str>>,
    /// Its next tick, in Unix seconds; `None` once it has none (past 2099).
    next: Option<i64>,
    /// Set while a run of this timer is going.
    running: Arc<AtomicBool>,
}

/// Starts the scheduler for `gateway`'s services. It stops when `stop` is
/// cancelled, or when the gateway is gone.
pub(crate) fn spawn(gateway: &Gateway, changed: Arc<Notify>, stop: CancellationToken) {
    let weak = gateway.downgrade();
    tokio::spawn(async move {
        let mut timers: HashMap<(Arc<str>, Arc<str>), Scheduled> = HashMap::new();
        loop {
            // Read the tables first: a change notified while this runs
            // leaves a permit, so the wait below returns at once.
            {
                let Some(gateway) = weak.upgrade() else {
                    return;
                };
                reschedule(&gateway, &mut timers);
                fire_due(&weak, &mut timers, now_ms());
            }
            let next = timers.values().filter_map(|timer| timer.next).min();
            // Wake at the next tick's second, to the millisecond; with no
            // tick ahead, only a change or the stop wakes it.
            let sleep = async {
                match next {
                    Some(next) => {
                        let wait = u64::try_from(next * 1000 - now_ms()).unwrap_or(0);
                        tokio::time::sleep(Duration::from_millis(wait).min(MAX_SLEEP)).await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = changed.notified() => {}
                _ = sleep => {}
            }
        }
    });
}

/// Makes `timers` match every service's table now: new timers are
/// scheduled from now, unchanged ones keep their next tick and run flag,
/// removed ones go.
fn reschedule(gateway: &Gateway, timers: &mut HashMap<(Arc<str>, Arc<str>), Scheduled>) {
    let now = now_ms().div_euclid(1000);
    let mut current = HashMap::with_capacity(timers.len());
    for name in gateway.services().names() {
        let Some(service) = gateway.services().get(&name) else {
            continue;
        };
        let config = service.config();
        for timer in config.timers.iter() {
            let key = (service.name.clone(), Arc::<str>::from(timer.name.as_str()));
            let kept = timers
                .remove(&key)
                .filter(|scheduled| scheduled.cron_text == timer.cron_text);
            let scheduled = match kept {
                Some(mut scheduled) => {
                    scheduled.message = timer.message.as_deref().map(Arc::from);
                    scheduled
                }
                None => {
                    tracing::info!(service = %service.name, timer = %timer.name, cron = %timer.cron_text, "timer scheduled");
                    Scheduled {
                        service: key.0.clone(),
                        name: key.1.clone(),
                        cron_text: timer.cron_text.clone(),
                        cron: timer.cron.clone(),
                        message: timer.message.as_deref().map(Arc::from),
                        next: timer.cron.next_after(now),
                        running: Arc::default(),
                    }
                }
            };
            current.insert(key, scheduled);
        }
    }
    for ((service, name), _) in timers.drain() {
        tracing::info!(%service, timer = %name, "timer removed");
    }
    *timers = current;
}

/// Fires every timer whose tick is due at `now_ms`: once, for its latest
/// due tick, then schedules its next tick after now.
fn fire_due(
    gateway: &WeakGateway,
    timers: &mut HashMap<(Arc<str>, Arc<str>), Scheduled>,
    now_ms: i64,
) {
    let now = now_ms.div_euclid(1000);
    for timer in timers.values_mut() {
        let Some(mut tick) = timer.next.filter(|next| next * 1000 <= now_ms) else {
            continue;
        };
        // Late by more than a tick: only the latest due one fires.
        while let Some(later) = timer.cron.next_after(tick).filter(|later| *later <= now) {
            tick = later;
        }
        timer.next = timer.cron.next_after(now.max(tick));
        let time = CivilTime::from_unix(tick).to_string();
        if timer.running.swap(true, Ordering::AcqRel) {
            tracing::warn!(service = %timer.service, timer = %timer.name, %time, "timer tick skipped: the previous run of this timer is still going");
            continue;
        }
        let run = Run {
            running: timer.running.clone(),
        };
        let (gateway, service, name, message) = (
            gateway.clone(),
            timer.service.clone(),
            timer.name.clone(),
            timer.message.clone(),
        );
        tokio::spawn(async move {
            let _run = run;
            let Some(gateway) = gateway.upgrade() else {
                return;
            };
            let Some(service) = gateway.services().get(&service) else {
                return;
            };
            // A handler file that has not loaded cannot run the tick: skip
            // it before claiming, so in a cluster a node that has the
            // handler can still run it.
            if let Err(file) = service.handler(Role::Timer) {
                if service.failure(file).is_some() {
                    tracing::warn!(service = %service.name, timer = %name, %time, %file, "timer tick skipped: the handler file failed to load");
                } else {
                    tracing::debug!(service = %service.name, timer = %name, %time, %file, "timer tick skipped: the handler has not loaded yet");
                }
                return;
            }
            if let Some(cluster) = gateway.cluster() {
                match cluster.claim_tick(&service.name, &name, tick).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::debug!(service = %service.name, timer = %name, %time, "timer tick claimed by another node");
                        return;
                    }
                    Err(reason) => {
                        tracing::warn!(service = %service.name, timer = %name, %time, %reason, "timer tick skipped: Redis did not answer, so no node could claim it");
                        return;
                    }
                }
            }
            let request_id = new_request_id();
            let event = Event {
                connection_id: "".into(),
                request_id: request_id.clone(),
                json: timer_event(&name, &time, message.as_deref()),
                departed_groups: None,
                connection: None,
            };
            match gateway.call(&service, Role::Timer, event).await {
                Some(Ok(_)) => {
                    tracing::debug!(service = %service.name, timer = %name, %time, request_id = %request_id, "timer ran");
                }
                Some(Err(reason)) => {
                    tracing::warn!(service = %service.name, timer = %name, %time, request_id = %request_id, %reason, "timer run failed");
                }
                None => {
                    tracing::warn!(service = %service.name, timer = %name, %time, reason = "the service has no handler for the timer role", "timer run failed");
                }
            }
        });
    }
}

/// Clears a timer's run flag when its run ends, however it ends.
struct Run {
    running: Arc<AtomicBool>,
}

impl Drop for Run {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Release);
    }
}

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}
