//! Event fan-out: an optional sink and any number of channel subscribers, with events built
//! only when someone listens.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};
use rm_model::{Event, EventKind, EventSink, Timestamp};

use crate::catalog::lock;

pub(crate) struct Observers {
    sink: Option<Arc<dyn EventSink>>,
    subscribers: Mutex<Vec<Sender<Event>>>,
    listening: AtomicBool,
    /// Whether any channel subscriber may be listening, so that a ledger with a sink only
    /// does not take the subscribers' lock per event.
    subscribed: AtomicBool,
    sequence: AtomicU64,
}

impl Observers {
    pub(crate) fn new(sink: Option<Arc<dyn EventSink>>) -> Observers {
        Observers {
            listening: AtomicBool::new(sink.is_some()),
            sink,
            subscribers: Mutex::new(Vec::new()),
            subscribed: AtomicBool::new(false),
            sequence: AtomicU64::new(0),
        }
    }

    /// Publishes the event `kind` builds, if anyone listens; `kind` is not called otherwise, so
    /// an unobserved ledger allocates nothing for events.
    pub(crate) fn publish(&self, at: Timestamp, kind: impl FnOnce() -> EventKind) {
        if !self.listening.load(Ordering::Acquire) {
            return;
        }
        let event = Event {
            sequence: self.sequence.fetch_add(1, Ordering::Relaxed),
            at,
            kind: kind(),
        };
        if let Some(sink) = &self.sink {
            sink.publish(&event);
        }
        if !self.subscribed.load(Ordering::Acquire) {
            return;
        }
        let mut subscribers = lock(&self.subscribers);
        // A dropped receiver unsubscribes.
        subscribers.retain(|subscriber| subscriber.send(event.clone()).is_ok());
        if subscribers.is_empty() {
            self.subscribed.store(false, Ordering::Release);
            if self.sink.is_none() {
                self.listening.store(false, Ordering::Release);
            }
        }
    }

    pub(crate) fn subscribe(&self) -> Receiver<Event> {
        let (sender, receiver) = crossbeam_channel::unbounded();
        let mut subscribers = lock(&self.subscribers);
        subscribers.push(sender);
        self.subscribed.store(true, Ordering::Release);
        self.listening.store(true, Ordering::Release);
        receiver
    }
}
