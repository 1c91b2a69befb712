//! Waiting for capacity across processes: one queue in the database, ordered by priority and
//! then arrival as rm-contention orders one process's waiters; only its head takes capacity.
//! Waiters wake on the events of every process (`LISTEN`), and poll too, so a lost
//! notification or a dropped listening connection strands no waiter longer than the poll
//! interval.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use rm_model::{LedgerError, Reservation, ReservationId, ReservationLedger, ReservationRequest};

use crate::ledger::{Bind, PgLedger, nanos};

/// How long a waiter's row lives unless renewed: a waiter whose process died blocks the
/// queue's head at most this long.
pub(crate) const WAITER_LEASE: Duration = Duration::from_secs(2);

/// How often a waiting thread renews its row.
const RENEW_EVERY: Duration = Duration::from_millis(500);

/// Wake-ups for this process's waiting threads: a generation bumped by a listener thread on
/// every event of any process (started with the first wait, stopped with the ledger).
#[derive(Default)]
pub(crate) struct Wakeups {
    generation: Mutex<u64>,
    changed: Condvar,
    stop: Arc<AtomicBool>,
    listener: OnceLock<()>,
}

impl Wakeups {
    fn current(&self) -> u64 {
        *self
            .generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn bump(&self) {
        *self
            .generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner) += 1;
        self.changed.notify_all();
    }

    /// Waits until the generation moves past `seen`, or `at_most` passes.
    fn wait_past(&self, seen: u64, at_most: Duration) {
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

impl PgLedger {
    /// Starts the listener thread of this process's waiters, once.
    fn listen_for_waiters(self: &Arc<Self>) {
        let wakeups = self.wakeups.clone();
        self.wakeups.listener.get_or_init(|| {
            let ledger = Arc::downgrade(self);
            let stop = wakeups.stop.clone();
            let spawned = std::thread::Builder::new()
                .name("rm-postgres-waiters".into())
                .spawn(move || {
                    let mut listener = None;
                    while !stop.load(Ordering::Acquire) {
                        if listener.is_none() {
                            // (Re)connect; until then, waiters poll.
                            let Some(ledger) = ledger.upgrade() else {
                                return;
                            };
                            listener = ledger.listen().ok();
                            drop(ledger);
                            if listener.is_none() {
                                std::thread::sleep(Duration::from_millis(200));
                                continue;
                            }
                        }
                        if let Some(open) = listener.as_mut() {
                            match open.next(Duration::from_millis(200)) {
                                Ok(Some(_)) => wakeups.bump(),
                                Ok(None) => {}
                                Err(_) => listener = None,
                            }
                        }
                    }
                });
            // Without the thread, waiters still poll.
            drop(spawned);
        });
    }

    /// Waits up to `timeout` for `request` to be granted, in the queue every process shares:
    /// ordered by priority (highest first), then by arrival; only the head takes capacity, as
    /// soon as a release in any process makes room for it (woken by `LISTEN`, polling every
    /// [`wait_poll`](crate::PgLedgerBuilder::wait_poll) as well). A newcomer waits behind
    /// waiters of its priority or higher even when it would fit. Times out with
    /// [`LedgerError::InsufficientCapacity`], leaving the queue. The request's id (generated
    /// when it has none) names its place in the queue and its grant, so a retry after an
    /// indeterminate error neither queues twice nor is granted twice.
    pub fn wait(
        self: &Arc<Self>,
        request: &ReservationRequest,
        timeout: Duration,
    ) -> Result<Reservation, LedgerError> {
        self.wait_bound(request, timeout, None, None)
    }

    /// [`wait`](Self::wait), the grant bound to the session `session` (its id, and whether a
    /// confirmed hold is kept at its end) when given.
    /// The wait stops early, without a grant, once `cancelled` is set (and this process's
    /// waiters are woken).
    pub(crate) fn wait_bound(
        self: &Arc<Self>,
        request: &ReservationRequest,
        timeout: Duration,
        session: Option<(i64, bool)>,
        cancelled: Option<&AtomicBool>,
    ) -> Result<Reservation, LedgerError> {
        let bind = |waiter| Bind {
            session: session.map(|(id, _)| id),
            keep: session.is_some_and(|(_, keep)| keep),
            waiter,
        };
        let request = match &request.id {
            Some(_) => request.clone(),
            None => request.clone().with_id(ReservationId::generate()),
        };
        let id = request
            .id
            .clone()
            .map(|id| id.to_string())
            .unwrap_or_default();
        let deadline = Instant::now() + timeout;
        let now = self.now();
        let lease = nanos(WAITER_LEASE);
        let ahead: bool = self
            .pool
            .run("wait", |c| {
                c.client.query_one(
                    "SELECT EXISTS (SELECT 1 FROM waiter \
                     WHERE expires_at > coalesce($1::bigint, now_ns()) AND priority >= $2 \
                     AND reservation <> $3)",
                    &[&now, &request.priority.0, &id],
                )
            })?
            .get(0);
        if !ahead {
            match self.reserve_with(&request, false, bind(None)) {
                Err(LedgerError::InsufficientCapacity { .. }) => {}
                other => return other,
            }
        }
        self.listen_for_waiters();
        self.pool.run("wait", |c| {
            c.client.execute(
                "INSERT INTO waiter (reservation, requester, priority, enqueued_at, expires_at) \
                 VALUES ($1, $2, $3, coalesce($4::bigint, now_ns()), \
                     coalesce($4::bigint, now_ns()) + $5) \
                 ON CONFLICT (reservation) DO UPDATE SET expires_at = excluded.expires_at",
                &[
                    &id,
                    &request.requester.as_str(),
                    &request.priority.0,
                    &now,
                    &lease,
                ],
            )
        })?;
        let outcome = self.wait_in_queue(&request, &id, deadline, &bind, cancelled);
        // Out of the queue whatever happened (a failure here is swept with the lease).
        let _ = self.pool.run("wait", |c| {
            c.client
                .execute("DELETE FROM waiter WHERE reservation = $1", &[&id])
        });
        outcome
    }

    fn wait_in_queue<'a>(
        &self,
        request: &ReservationRequest,
        id: &'a str,
        deadline: Instant,
        bind: &impl Fn(Option<&'a str>) -> Bind<'a>,
        cancelled: Option<&AtomicBool>,
    ) -> Result<Reservation, LedgerError> {
        let lease = nanos(WAITER_LEASE);
        let mut renewed = Instant::now();
        let gave_up = || LedgerError::InsufficientCapacity {
            requester: request.requester.clone(),
            shortfalls: Vec::new(),
        };
        loop {
            if cancelled.is_some_and(|c| c.load(Ordering::Acquire)) {
                return Err(gave_up());
            }
            let seen = self.wakeups.current();
            let now = self.now();
            if renewed.elapsed() >= RENEW_EVERY {
                self.pool.run("wait", |c| {
                    c.client.execute(
                        "UPDATE waiter SET expires_at = coalesce($2::bigint, now_ns()) + $3 \
                         WHERE reservation = $1",
                        &[&id, &now, &lease],
                    )
                })?;
                renewed = Instant::now();
            }
            let head: Option<String> = self
                .pool
                .run("wait", |c| {
                    c.client.query_opt(
                        "SELECT reservation FROM waiter \
                         WHERE expires_at > coalesce($1::bigint, now_ns()) \
                         ORDER BY priority DESC, id LIMIT 1",
                        &[&now],
                    )
                })?
                .map(|row| row.get(0));
            if head.as_deref() == Some(id) {
                // Woken for capacity another process freed: plan on a fresh read, and leave
                // the queue in the grant's own transaction.
                self.refresh(false)?;
                match self.reserve_with(request, false, bind(Some(id))) {
                    Ok(granted) => return Ok(granted),
                    Err(LedgerError::InsufficientCapacity { .. }) => {}
                    Err(other) => return Err(other),
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(gave_up());
            }
            self.wakeups.wait_past(seen, left.min(self.wait_poll));
        }
    }
}

/// A wait for capacity in the shared queue as a runtime-agnostic future (any executor, or
/// none: it needs no reactor). Made by [`PgLedger::wait_async`] and
/// [`WorkerSession::wait_async`](crate::WorkerSession::wait_async). The waiting itself runs on
/// a thread of its own, which wakes the task when it has the answer, so no executor thread
/// blocks. Dropping it before it is ready leaves the queue; a grant that arrives after the
/// drop is cancelled, never stranded.
#[must_use = "dropping the wait leaves the queue"]
pub struct PgWait {
    slot: Arc<Slot>,
    ledger: Arc<PgLedger>,
}

impl std::fmt::Debug for PgWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgWait").finish_non_exhaustive()
    }
}

/// What the waiting thread and the future share.
#[derive(Default)]
struct Slot {
    cancelled: AtomicBool,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    answer: Option<Result<Reservation, LedgerError>>,
    waker: Option<Waker>,
    taken: bool,
}

impl PgLedger {
    /// [`wait`](Self::wait) as a future: the same queue, order and timeout, without blocking
    /// the task's thread (one thread per pending wait does the waiting).
    pub fn wait_async(self: &Arc<Self>, request: &ReservationRequest, timeout: Duration) -> PgWait {
        self.wait_future(request, timeout, None)
    }

    pub(crate) fn wait_future(
        self: &Arc<Self>,
        request: &ReservationRequest,
        timeout: Duration,
        session: Option<(i64, bool)>,
    ) -> PgWait {
        let slot = Arc::new(Slot::default());
        let (ledger, shared, request) = (self.clone(), slot.clone(), request.clone());
        let spawned = std::thread::Builder::new()
            .name("rm-postgres-wait".into())
            .spawn(move || {
                let answer = ledger.wait_bound(&request, timeout, session, Some(&shared.cancelled));
                let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
                if shared.cancelled.load(Ordering::Acquire) {
                    drop(state);
                    // Nobody will take it: give it back.
                    if let Ok(granted) = answer {
                        let _ = ledger.cancel(&granted.id, Some(granted.fencing_token));
                    }
                    return;
                }
                state.answer = Some(answer);
                if let Some(waker) = state.waker.take() {
                    waker.wake();
                }
            });
        if let Err(err) = spawned {
            slot.state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .answer = Some(Err(LedgerError::Unavailable {
                operation: "wait",
                source: Arc::new(err),
            }));
        }
        PgWait {
            slot,
            ledger: self.clone(),
        }
    }
}

impl Future for PgWait {
    type Output = Result<Reservation, LedgerError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self
            .slot
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match state.answer.take() {
            Some(answer) => {
                state.taken = true;
                Poll::Ready(answer)
            }
            None if state.taken => Poll::Ready(Err(LedgerError::InvalidInput {
                field: "wait".into(),
                reason: "polled again after it was ready".into(),
            })),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for PgWait {
    fn drop(&mut self) {
        let mut state = self
            .slot
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if state.taken {
            return;
        }
        self.slot.cancelled.store(true, Ordering::Release);
        let unclaimed = state.answer.take();
        drop(state);
        match unclaimed {
            // Granted but never taken: back to the pool.
            Some(Ok(granted)) => {
                let _ = self.ledger.cancel(&granted.id, Some(granted.fencing_token));
            }
            Some(Err(_)) => {}
            // Still waiting: wake this process's waiters so the thread sees the flag now.
            None => self.ledger.wakeups.bump(),
        }
    }
}
