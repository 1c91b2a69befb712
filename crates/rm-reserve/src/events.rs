//! Event fan-out: an optional sink and any number of channel subscribers, with events built
//! only when someone listens.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};
use rm_model::{Event, EventKind, EventSink, Timestamp};

use crate::catalog::lock;

/// The top bit of [`Observers::sequence`]: set while channel subscribers may be listening.
/// Kept in the same word as the counter, so that whether an event goes to the subscribers and
/// which number it gets are decided in one atomic step.
const SUBSCRIBED: u64 = 1 << 63;

pub(crate) struct Observers {
    sink: Option<Arc<dyn EventSink>>,
    subscribers: Mutex<Vec<Sender<Event>>>,
    listening: AtomicBool,
    /// The next sequence number (the low 63 bits) and [`SUBSCRIBED`]. While the flag is set,
    /// numbers are taken under the subscribers' lock and sent before it is released, so every
    /// subscriber receives its events in sequence order and without gaps; without
    /// subscribers, a sink-only ledger takes a number with one compare-and-swap and no lock.
    sequence: AtomicU64,
}

impl Observers {
    pub(crate) fn new(sink: Option<Arc<dyn EventSink>>) -> Observers {
        Observers {
            listening: AtomicBool::new(sink.is_some()),
            sink,
            subscribers: Mutex::new(Vec::new()),
            sequence: AtomicU64::new(0),
        }
    }

    /// Publishes the event `kind` builds, if anyone listens; `kind` is not called otherwise, so
    /// an unobserved ledger allocates nothing for events.
    #[inline]
    pub(crate) fn publish(&self, at: Timestamp, kind: impl FnOnce() -> EventKind) {
        if self.listening.load(Ordering::Acquire) {
            self.publish_numbered(at, kind);
        }
    }

    /// [`Self::publish`] once someone listens: numbers the event and hands it on.
    fn publish_numbered(&self, at: Timestamp, kind: impl FnOnce() -> EventKind) {
        let mut current = self.sequence.load(Ordering::Acquire);
        loop {
            if current & SUBSCRIBED != 0 {
                self.publish_in_order(at, kind);
                return;
            }
            match self.sequence.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        if let Some(sink) = &self.sink {
            sink.publish(&Event {
                sequence: current,
                at,
                kind: kind(),
            });
        }
    }

    /// Numbers and sends the event under the subscribers' lock, then hands it to the sink.
    fn publish_in_order(&self, at: Timestamp, kind: impl FnOnce() -> EventKind) {
        let mut subscribers = lock(&self.subscribers);
        let event = Event {
            sequence: self.sequence.fetch_add(1, Ordering::AcqRel) & !SUBSCRIBED,
            at,
            kind: kind(),
        };
        // A dropped receiver unsubscribes.
        subscribers.retain(|subscriber| subscriber.send(event.clone()).is_ok());
        if subscribers.is_empty() {
            self.sequence.fetch_and(!SUBSCRIBED, Ordering::AcqRel);
            if self.sink.is_none() {
                self.listening.store(false, Ordering::Release);
            }
        }
        drop(subscribers);
        if let Some(sink) = &self.sink {
            sink.publish(&event);
        }
    }

    pub(crate) fn subscribe(&self) -> Subscription {
        let (sender, receiver) = crossbeam_channel::unbounded();
        let mut subscribers = lock(&self.subscribers);
        subscribers.push(sender);
        self.sequence.fetch_or(SUBSCRIBED, Ordering::AcqRel);
        self.listening.store(true, Ordering::Release);
        Subscription { receiver }
    }
}

/// The events a ledger published since [`subscribe`](crate::ReservationManager::subscribe)
/// was called, in sequence order and with consecutive sequence numbers. Unbounded: a
/// subscriber that stops reading should drop it, which unsubscribes. (The channel behind it
/// is the crate's business: it may change without changing this type.)
pub struct Subscription {
    receiver: Receiver<Event>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("pending", &self.receiver.len())
            .finish()
    }
}

impl Subscription {
    /// The next event if one has been published, without waiting.
    pub fn try_recv(&self) -> Option<Event> {
        self.receiver.try_recv().ok()
    }

    /// The next event, waiting for it; `None` once the ledger is gone and every event read.
    pub fn recv(&self) -> Option<Event> {
        self.receiver.recv().ok()
    }

    /// The next event, waiting at most `timeout`; `None` when none came (or the ledger is
    /// gone and every event read).
    pub fn recv_timeout(&self, timeout: std::time::Duration) -> Option<Event> {
        self.receiver.recv_timeout(timeout).ok()
    }

    /// The events published so far and not yet read, without waiting.
    pub fn try_iter(&self) -> impl Iterator<Item = Event> + '_ {
        self.receiver.try_iter()
    }

    /// How many events are waiting to be read.
    pub fn len(&self) -> usize {
        self.receiver.len()
    }

    /// Whether no event is waiting to be read.
    pub fn is_empty(&self) -> bool {
        self.receiver.is_empty()
    }
}

/// Every event, waiting for each; ends once the ledger is gone and every event is read.
impl Iterator for Subscription {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        self.recv()
    }
}
