//! Wake-ups for the waiting threads of one process: the ledger owns them (and stops their
//! listener when it is dropped), the shared queue's waiters wait on them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// Wake-ups for this process's waiting threads: a generation bumped by a listener thread on
/// every event of any process (started with the first wait, stopped with the ledger).
#[derive(Default)]
pub(crate) struct Wakeups {
    generation: Mutex<u64>,
    changed: Condvar,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) listener: OnceLock<()>,
}

impl Wakeups {
    pub(crate) fn current(&self) -> u64 {
        *self
            .generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn bump(&self) {
        *self
            .generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner) += 1;
        self.changed.notify_all();
    }

    /// Waits until the generation moves past `seen`, or `at_most` passes.
    pub(crate) fn wait_past(&self, seen: u64, at_most: Duration) {
        let generation = self
            .generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let _ = self
            .changed
            .wait_timeout_while(generation, at_most, |g| *g == seen)
            .unwrap_or_else(PoisonError::into_inner);
    }

    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }
}
