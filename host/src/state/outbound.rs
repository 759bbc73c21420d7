//! The outbound queue of one connection, bounded twice: in messages
//! (`outbound_queue`) and in bytes (`outbound_queue_bytes`); and every queue
//! together bounded in bytes by the gateway's [`OutboundBudget`].
//!
//! The message bound alone let one client that does not read hold 1024
//! messages of 256 KiB, 256 MiB, per connection. Every queued message now
//! carries a charge against its connection's and the gateway's byte counts;
//! the charge is given back when the writer takes the message off the queue,
//! or when the queue is dropped with the message still in it, so the counts
//! cannot drift from what is queued. The message being written and the
//! socket's own buffers are not counted: the writer holds one message at a
//! time, and the WebSocket sink flushes before it takes more than its write
//! buffer.
//!
//! A message is always accepted into an empty queue (within the gateway's
//! budget), so a service whose `max_message_bytes` is above its
//! `outbound_queue_bytes` can still deliver one message at a time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::connection::Outbound;
use crate::config::DEFAULT_OUTBOUND_BUDGET_BYTES;

/// How much one connection's queue may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueBounds {
    /// Messages (the service's `outbound_queue`).
    pub messages: usize,
    /// Bytes of message bodies (the service's `outbound_queue_bytes`).
    pub bytes: usize,
}

/// Bytes queued for clients across the whole gateway, and the most there
/// may be. Cheap to clone; clones share the count.
#[derive(Debug, Clone)]
pub struct OutboundBudget {
    inner: Arc<BudgetState>,
}

#[derive(Debug)]
struct BudgetState {
    queued: AtomicUsize,
    limit: usize,
}

impl Default for OutboundBudget {
    fn default() -> Self {
        Self::new(DEFAULT_OUTBOUND_BUDGET_BYTES)
    }
}

impl OutboundBudget {
    /// A budget of `limit` bytes, none of it used.
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Arc::new(BudgetState {
                queued: AtomicUsize::new(0),
                limit,
            }),
        }
    }

    /// Bytes queued for clients now, all connections together.
    pub fn queued(&self) -> usize {
        self.inner.queued.load(Ordering::Relaxed)
    }

    /// Takes `bytes` of the budget, unless that would go past its limit.
    fn take(&self, bytes: usize) -> bool {
        let before = self.inner.queued.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > self.inner.limit {
            self.inner.queued.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn give_back(&self, bytes: usize) {
        self.inner.queued.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// Why a message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The queue holds `outbound_queue` messages, or the message would take
    /// it past `outbound_queue_bytes`: the client is not keeping up.
    QueueFull,
    /// The gateway's budget has no room for the message. `behind`: the
    /// connection's own queue is not empty, so its client is behind too.
    BudgetSpent {
        /// Whether the connection already had bytes waiting.
        behind: bool,
    },
    /// The connection's writer is gone.
    Closed,
}

/// The sending side of a connection's queue.
#[derive(Debug)]
pub(crate) struct OutboundSender {
    sender: mpsc::Sender<Queued>,
    meter: Arc<Meter>,
    max_bytes: usize,
}

/// The receiving side of a connection's queue, for its writer: taking a
/// message off gives its bytes back.
#[derive(Debug)]
pub(crate) struct OutboundReceiver {
    receiver: mpsc::Receiver<Queued>,
}

/// One connection's queued bytes, and the gateway's budget they count
/// against too.
#[derive(Debug)]
struct Meter {
    queued: AtomicUsize,
    budget: OutboundBudget,
}

/// A queued message's share of its connection's and the gateway's counts,
/// given back when dropped.
#[derive(Debug)]
struct Charge {
    bytes: usize,
    meter: Arc<Meter>,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.meter.queued.fetch_sub(self.bytes, Ordering::Relaxed);
        self.meter.budget.give_back(self.bytes);
    }
}

#[derive(Debug)]
struct Queued {
    message: Outbound,
    _charge: Charge,
}

/// A new queue within `bounds`, counting against `budget`.
pub(crate) fn queue(
    bounds: QueueBounds,
    budget: &OutboundBudget,
) -> (OutboundSender, OutboundReceiver) {
    let (sender, receiver) = mpsc::channel(bounds.messages.max(1));
    let meter = Arc::new(Meter {
        queued: AtomicUsize::new(0),
        budget: budget.clone(),
    });
    (
        OutboundSender {
            sender,
            meter,
            max_bytes: bounds.bytes,
        },
        OutboundReceiver { receiver },
    )
}

impl OutboundSender {
    /// Queues `message` if both bounds and the gateway's budget have room.
    pub(crate) fn try_send(&self, message: Outbound) -> Result<(), Refused> {
        let bytes = message.len();
        let meter = &self.meter;
        let before = meter.queued.fetch_add(bytes, Ordering::Relaxed);
        if before > 0 && before.saturating_add(bytes) > self.max_bytes {
            meter.queued.fetch_sub(bytes, Ordering::Relaxed);
            return Err(Refused::QueueFull);
        }
        if !meter.budget.take(bytes) {
            meter.queued.fetch_sub(bytes, Ordering::Relaxed);
            return Err(Refused::BudgetSpent { behind: before > 0 });
        }
        let charge = Charge {
            bytes,
            meter: meter.clone(),
        };
        self.sender
            .try_send(Queued {
                message,
                _charge: charge,
            })
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => Refused::QueueFull,
                mpsc::error::TrySendError::Closed(_) => Refused::Closed,
            })
    }

    /// Bytes waiting in this queue now.
    #[cfg(test)]
    fn queued_bytes(&self) -> usize {
        self.meter.queued.load(Ordering::Relaxed)
    }
}

impl OutboundReceiver {
    /// The next message, once there is one; `None` once every sender is gone.
    pub(crate) async fn recv(&mut self) -> Option<Outbound> {
        self.receiver.recv().await.map(|queued| queued.message)
    }

    /// The next message if one is queued.
    pub(crate) fn try_recv(&mut self) -> Result<Outbound, mpsc::error::TryRecvError> {
        self.receiver.try_recv().map(|queued| queued.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn message(bytes: usize) -> Outbound {
        Outbound::Binary(Bytes::from(vec![0; bytes]))
    }

    #[test]
    fn a_queue_is_bounded_in_bytes_and_gives_them_back_when_read() {
        let budget = OutboundBudget::new(1 << 20);
        let bounds = QueueBounds {
            messages: 100,
            bytes: 1000,
        };
        let (sender, mut receiver) = queue(bounds, &budget);
        // An empty queue takes one message of any size.
        sender.try_send(message(1500)).unwrap();
        assert_eq!(sender.try_send(message(1)), Err(Refused::QueueFull));
        assert_eq!((sender.queued_bytes(), budget.queued()), (1500, 1500));
        receiver.try_recv().unwrap();
        assert_eq!((sender.queued_bytes(), budget.queued()), (0, 0));
        for _ in 0..10 {
            sender.try_send(message(100)).unwrap();
        }
        assert_eq!(sender.try_send(message(1)), Err(Refused::QueueFull));
        // Dropped with messages in it: every byte is given back.
        drop(receiver);
        assert_eq!(budget.queued(), 0);
        assert_eq!(sender.try_send(message(1)), Err(Refused::Closed));
        assert_eq!(budget.queued(), 0);
    }

    #[test]
    fn the_gateway_budget_bounds_every_queue_together() {
        let budget = OutboundBudget::new(1000);
        let bounds = QueueBounds {
            messages: 100,
            bytes: 800,
        };
        let (first, _first_writer) = queue(bounds, &budget);
        let (second, _second_writer) = queue(bounds, &budget);
        first.try_send(message(700)).unwrap();
        assert_eq!(
            second.try_send(message(400)),
            Err(Refused::BudgetSpent { behind: false })
        );
        second.try_send(message(300)).unwrap();
        assert_eq!(
            second.try_send(message(1)),
            Err(Refused::BudgetSpent { behind: true })
        );
        assert_eq!(budget.queued(), 1000);
    }
}
