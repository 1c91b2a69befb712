//! Waiting for capacity across processes: one queue in the database, ordered by a key (minus
//! the priority, or an allocation policy's key) and then arrival, as rm-contention orders one
//! process's waiters; only its head takes capacity.
//! Waiters wake on the events of every process (`LISTEN`), and poll too, so a lost
//! notification or a dropped listening connection strands no waiter longer than the poll
//! interval.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use rm_model::backfill::{Amounts, Running, amounts_of_items, amounts_of_request};
use rm_model::{
    Clock, LedgerError, PendingRequest, Reservation, ReservationId, ReservationLedger,
    ReservationRequest, Timestamp,
};

use crate::ledger::{Bind, PgLedger, nanos};

/// How long a waiter's row lives unless renewed: a waiter whose process died blocks the
/// queue's head at most this long.
pub(crate) const WAITER_LEASE: Duration = Duration::from_secs(2);

/// How often a waiting thread renews its row.
const RENEW_EVERY: Duration = Duration::from_millis(500);

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
    /// ordered by priority (highest first) or by the [`wait_order`](crate::PgLedgerBuilder::wait_order)
    /// policy's key, then by arrival; only the head takes capacity (unless
    /// [backfill](crate::PgLedgerBuilder::backfill) lets a waiter that cannot delay it
    /// pass), as soon as a release in any process makes room for it (woken by `LISTEN`,
    /// polling every [`wait_poll`](crate::PgLedgerBuilder::wait_poll) as well). A newcomer
    /// waits behind waiters whose key is as low as its own or lower even when it would fit.
    /// Times out with [`LedgerError::InsufficientCapacity`], leaving the queue. The request's
    /// id (generated when it has none) names its place in the queue and its grant, so a retry
    /// after an indeterminate error neither queues twice nor is granted twice.
    ///
    /// [`waiting`](Self::waiting) configures the same wait further (an expected run time,
    /// a session, a future).
    pub fn wait(
        self: &Arc<Self>,
        request: &ReservationRequest,
        timeout: Duration,
    ) -> Result<Reservation, LedgerError> {
        self.waiting(request, timeout).block()
    }

    /// A wait for `request` of up to `timeout`, to configure before it starts:
    /// [`expecting`](Waiting::expecting) its run time (for backfill),
    /// [`bound_to`](Waiting::bound_to) a worker session; then [`block`](Waiting::block) or
    /// [`future`](Waiting::future).
    pub fn waiting<'a>(
        self: &'a Arc<Self>,
        request: &'a ReservationRequest,
        timeout: Duration,
    ) -> Waiting<'a> {
        Waiting {
            ledger: self,
            request,
            spec: WaitSpec {
                timeout,
                session: None,
                estimate: None,
            },
        }
    }

    /// Runs a wait; it stops early, without a grant, once `cancelled` is set (and this
    /// process's waiters are woken).
    pub(crate) fn run_wait(
        self: &Arc<Self>,
        request: &ReservationRequest,
        spec: WaitSpec,
        cancelled: Option<&AtomicBool>,
    ) -> Result<Reservation, LedgerError> {
        let bind = |waiter| Bind {
            session: spec.session.map(|(id, _)| id),
            keep: spec.session.is_some_and(|(_, keep)| keep),
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
        let deadline = Instant::now() + spec.timeout;
        let now = self.now();
        let lease = nanos(WAITER_LEASE);
        let pending = PendingRequest {
            request: Arc::new(request.clone()),
            enqueued_at: self.policy_clock.now(),
            arrival: 0,
        };
        let key = self.order_key(&pending);
        // Waiters whose key is as low as this one's or lower are ahead of a newcomer.
        let ahead: bool = self
            .pool
            .run("wait", |c| {
                c.client.query_one(
                    "SELECT EXISTS (SELECT 1 FROM waiter \
                     WHERE expires_at > coalesce($1::bigint, now_ns()) AND order_key <= $2 \
                     AND reservation <> $3)",
                    &[&now, &key, &id],
                )
            })?
            .get(0);
        if !ahead {
            match self.reserve_with(&request, false, bind(None)) {
                Err(LedgerError::InsufficientCapacity { .. }) => {}
                other => return self.expect_end(other, spec.estimate),
            }
        }
        self.listen_for_waiters();
        let needs = amounts_of_request(&request);
        let need_types: Vec<String> = needs.keys().map(ToString::to_string).collect();
        let need_amounts: Vec<i64> = needs
            .values()
            .map(|&amount| i64::try_from(amount).unwrap_or(i64::MAX))
            .collect();
        let estimate = spec.estimate.map(nanos);
        self.pool.run("wait", |c| {
            c.client.execute(
                "INSERT INTO waiter (reservation, requester, priority, order_key, estimate, \
                     need_types, need_amounts, enqueued_at, expires_at) \
                 VALUES ($1, $2, $3, $6, $7, $8, $9, coalesce($4::bigint, now_ns()), \
                     coalesce($4::bigint, now_ns()) + $5) \
                 ON CONFLICT (reservation) DO UPDATE \
                     SET expires_at = excluded.expires_at, order_key = excluded.order_key",
                &[
                    &id,
                    &request.requester.as_str(),
                    &request.priority.0,
                    &now,
                    &lease,
                    &key,
                    &estimate,
                    &need_types,
                    &need_amounts,
                ],
            )
        })?;
        let place = Place {
            pending: &pending,
            id: &id,
            wanted: &needs,
            estimate: spec.estimate,
        };
        let outcome = self.wait_in_queue(&place, deadline, &bind, cancelled);
        // A grant left the queue in its own transaction; any other end leaves it here (a
        // failure here is swept with the lease).
        if outcome.is_err() {
            let _ = self.pool.run("wait", |c| {
                c.client
                    .execute("DELETE FROM waiter WHERE reservation = $1", &[&id])
            });
        }
        self.expect_end(outcome, spec.estimate)
    }

    /// Where `pending` goes in the shared queue: the policy's key, or minus its priority.
    fn order_key(&self, pending: &PendingRequest) -> i64 {
        match &self.wait_order {
            Some(policy) => policy.order_key(pending, self.policy_clock.now()),
            None => -i64::from(pending.request.priority.0),
        }
    }

    /// Records when a grant to a waiter that gave its run time is expected to end, for the
    /// backfill decisions of every process. Advisory: when it cannot be written the hold's
    /// end is unknown, and backfill, which then allows nothing it needs, stays safe.
    fn expect_end(
        &self,
        outcome: Result<Reservation, LedgerError>,
        estimate: Option<Duration>,
    ) -> Result<Reservation, LedgerError> {
        if let (Ok(granted), Some(estimate)) = (&outcome, estimate) {
            let (id, now, estimate) = (granted.id.to_string(), self.now(), nanos(estimate));
            let _ = self.pool.run("wait", |c| {
                c.client.execute(
                    "UPDATE reservation SET expected_end = coalesce($2::bigint, now_ns()) + $3 \
                     WHERE id = $1",
                    &[&id, &now, &estimate],
                )
            });
        }
        outcome
    }

    fn wait_in_queue<'a>(
        &self,
        place: &Place<'a>,
        deadline: Instant,
        bind: &impl Fn(Option<&'a str>) -> Bind<'a>,
        cancelled: Option<&AtomicBool>,
    ) -> Result<Reservation, LedgerError> {
        let (pending, id) = (place.pending, place.id);
        let request = &*pending.request;
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
                // The lease, and the key again: a policy's order moves with usage and time.
                let key = self.order_key(pending);
                self.pool.run("wait", |c| {
                    c.client.execute(
                        "UPDATE waiter SET expires_at = coalesce($2::bigint, now_ns()) + $3, \
                             order_key = $4 \
                         WHERE reservation = $1",
                        &[&id, &now, &lease, &key],
                    )
                })?;
                renewed = Instant::now();
            }
            let head = self.pool.run("wait", |c| {
                c.client.query_opt(
                    "SELECT reservation, need_types, need_amounts FROM waiter \
                     WHERE expires_at > coalesce($1::bigint, now_ns()) \
                     ORDER BY order_key, id LIMIT 1",
                    &[&now],
                )
            })?;
            let at_head = head.as_ref().is_some_and(|row| row.get::<_, &str>(0) == id);
            let may_go = at_head
                || match (&head, place.estimate) {
                    (Some(head), Some(estimate)) if self.backfill => {
                        self.backfill_allows(head, place.wanted, estimate)?
                    }
                    _ => false,
                };
            if may_go {
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

    /// Whether a waiter that wants `wanted` for `estimate` may go ahead of the `head` (its
    /// waiter row) without delaying it: EASY backfill's rule (`rm_model::backfill`), on what
    /// is free now (one consistent snapshot) and the expected ends of the holds granted to
    /// waiters that gave their run time (any other hold of a type the head needs has no
    /// known end, and then nothing passes).
    fn backfill_allows(
        &self,
        head: &postgres::Row,
        wanted: &Amounts,
        estimate: Duration,
    ) -> Result<bool, LedgerError> {
        let types: Vec<String> = head.get(1);
        let amounts: Vec<i64> = head.get(2);
        let mut needs = Amounts::new();
        for (name, amount) in types.iter().zip(amounts) {
            let Ok(resource_type) = name.parse() else {
                // A type this build cannot name: do not guess.
                return Ok(false);
            };
            needs.insert(resource_type, i128::from(amount));
        }
        let snapshot = self.snapshot()?;
        let now = self.now();
        // One row whatever is held: the time, and the holds whose end is expected.
        let row = self.pool.run("wait", |c| {
            c.client.query_one(
                "SELECT coalesce($1::bigint, now_ns()), \
                     coalesce(array_agg(id), '{}'), coalesce(array_agg(expected_end), '{}') \
                 FROM reservation \
                 WHERE state IN ('pending', 'confirmed') AND expected_end IS NOT NULL",
                &[&now],
            )
        })?;
        let at = |nanos: i64| Timestamp::from_nanos(u64::try_from(nanos).unwrap_or(0));
        let server_now = at(row.get(0));
        let ids: Vec<String> = row.get(1);
        let expected: Vec<i64> = row.get(2);
        let ends: std::collections::HashMap<String, Timestamp> =
            ids.into_iter().zip(expected.into_iter().map(at)).collect();
        let mut free = Amounts::new();
        for usage in &snapshot.usage {
            *free.entry(usage.resource_type.clone()).or_default() +=
                usage.unit.to_base_milli(usage.free);
        }
        let running: Vec<Running> = snapshot
            .active
            .iter()
            .map(|r| Running {
                amounts: amounts_of_items(&r.items),
                ends_at: ends.get(&r.id.to_string()).copied(),
            })
            .collect();
        Ok(rm_model::backfill::backfill_allows(
            server_now, &needs, &free, &running, wanted, estimate,
        ))
    }
}

/// How a wait runs: its timeout, the session its grant is bound to (id, and whether a
/// confirmed hold is kept at the session's end), and the run time its holder expects.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WaitSpec {
    pub(crate) timeout: Duration,
    pub(crate) session: Option<(i64, bool)>,
    pub(crate) estimate: Option<Duration>,
}

/// A waiter's place in the queue, as its loop needs it.
struct Place<'a> {
    pending: &'a PendingRequest,
    id: &'a str,
    wanted: &'a Amounts,
    estimate: Option<Duration>,
}

/// A wait in the shared queue, configured before it starts (from [`PgLedger::waiting`] or
/// [`WorkerSession::waiting`](crate::WorkerSession::waiting)).
#[must_use = "a wait does nothing until it blocks or becomes a future"]
pub struct Waiting<'a> {
    ledger: &'a Arc<PgLedger>,
    request: &'a ReservationRequest,
    spec: WaitSpec,
}

impl std::fmt::Debug for Waiting<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiting")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl<'a> Waiting<'a> {
    /// Says how long the holder expects to keep what it is granted. With
    /// [backfill](crate::PgLedgerBuilder::backfill) on, a waiter that says so may take
    /// capacity ahead of a blocked head when it fits now and is expected to end before the
    /// head could start (EASY backfill, as rm-contention's `HeadOfLine::Backfill`); its grant
    /// records its expected end for every process's later decisions. An estimate that
    /// proves short can delay the head, as in Slurm: give honest ones.
    pub fn expecting(mut self, run_time: Duration) -> Self {
        self.spec.estimate = Some(run_time);
        self
    }

    pub(crate) fn with_session(mut self, session: (i64, bool)) -> Self {
        self.spec.session = Some(session);
        self
    }

    /// Waits on this thread.
    pub fn block(self) -> Result<Reservation, LedgerError> {
        self.ledger.run_wait(self.request, self.spec, None)
    }

    /// The wait as a runtime-agnostic future ([`PgWait`]).
    pub fn future(self) -> PgWait {
        self.ledger.wait_future(self.request, self.spec)
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
        self.waiting(request, timeout).future()
    }

    fn wait_future(self: &Arc<Self>, request: &ReservationRequest, spec: WaitSpec) -> PgWait {
        let slot = Arc::new(Slot::default());
        let (ledger, shared, request) = (self.clone(), slot.clone(), request.clone());
        let spawned = std::thread::Builder::new()
            .name("rm-postgres-wait".into())
            .spawn(move || {
                let answer = ledger.run_wait(&request, spec, Some(&shared.cancelled));
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
