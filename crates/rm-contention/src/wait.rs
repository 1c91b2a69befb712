//! [`WaitQueue`]: requests that do not fit wait in order (priority, then arrival, or a
//! policy's order) and are granted as soon as capacity frees, by hand-off rather than polling.
//!
//! Waiting is available blocking with a timeout ([`Ticket::wait_timeout`]) and as a
//! runtime-agnostic `Future` (`Ticket` implements it with std's `Waker`). Only the head of the
//! queue tries the ledger: when capacity frees, the ledger's event wakes the head (and only
//! the head); when the head is granted or leaves, it wakes the next. A ticket that is dropped,
//! cancelled or timed out leaves no entry behind.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

use rm_model::backfill::{Amounts, Running, amounts_of_items, amounts_of_request, backfill_allows};
use rm_model::{
    AllocationPolicy, Clock, Event, EventKind, EventSink, LedgerError, PendingRequest, Priority,
    Reservation, ReservationId, ReservationLedger, ReservationRequest, Timestamp,
};

use crate::error::WaitError;

mod ledger;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct Signal {
    /// Set when the waiter should try the ledger (it became head, or capacity freed).
    try_now: bool,
    /// Set while some thread calls the ledger for this waiter.
    busy: bool,
    /// Someone wanted to try for the waiter while `busy`: the try under way may have begun
    /// before capacity was freed, so its end asks the waiter to try again.
    retry: bool,
    /// A grant (or final refusal) made on the waiter's behalf, not yet taken.
    result: Option<Result<Reservation, LedgerError>>,
    /// The owner gave up; a grant delivered now must be given back.
    closed: bool,
    /// Who to wake: set before each park or `Pending`, taken by the first wake.
    waker: Option<Wake>,
}

/// What a waiter leaves to be woken by: a blocked thread its handle, a task its [`Waker`].
/// A thread's handle is moved in before each park and used up by the wake, so the woken
/// thread has nothing of it left to release (a `Waker` of its own would be a reference count
/// the waking thread touched last).
enum Wake {
    Thread(std::thread::Thread),
    Task(Waker),
}

impl Wake {
    fn wake(self) {
        match self {
            Wake::Thread(thread) => thread.unpark(),
            Wake::Task(waker) => waker.wake(),
        }
    }
}

impl Signal {
    /// Takes an answer delivered on the waiter's behalf, if there is one, and closes the
    /// signal: the waiter is done. A thread that picked this waiter as the head just before
    /// the grant took it out of the queue may still call [`Waiter::begin`]; closed, it is
    /// refused, where it would otherwise have reserved again for a waiter nobody waits on and
    /// left that grant in the signal for ever (holding its capacity, found by the
    /// eight-thread hand-off test under load).
    fn take_answer(&mut self) -> Option<Result<Reservation, WaitError>> {
        let answer = self.result.take()?;
        self.closed = true;
        Some(answer.map_err(WaitError::Refused))
    }
}

struct Waiter {
    request: Arc<ReservationRequest>,
    /// How long it is expected to hold once granted (for backfill).
    estimate: Option<Duration>,
    arrival: u64,
    enqueued_at: Timestamp,
    signal: Mutex<Signal>,
}

impl Waiter {
    /// Wakes whoever waits, a blocked thread (an unpark, one futex call where a condition
    /// variable takes two) or a task (its [`Waker`]), outside the signal's lock.
    fn wake(&self, mut signal: MutexGuard<'_, Signal>) {
        let waker = signal.waker.take();
        drop(signal);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Asks the waiter to try the ledger itself.
    fn notify(&self) {
        let mut signal = lock(&self.signal);
        signal.try_now = true;
        self.wake(signal);
    }

    /// Claims the right to call the ledger for this waiter; `false` when another thread
    /// does, or the waiter is finished. Whoever finds the waiter busy (the waiter itself,
    /// woken because capacity freed, or a thread handing capacity on) asks for a retry: the
    /// try under way may have begun before that capacity was freed, and [`end`](Self::end)
    /// then wakes the waiter to try again, so freed capacity is never left unclaimed.
    fn begin(&self) -> bool {
        let mut signal = lock(&self.signal);
        if signal.closed || signal.result.is_some() {
            return false;
        }
        if signal.busy {
            signal.retry = true;
            return false;
        }
        signal.busy = true;
        true
    }

    /// Ends a try that found no room; when a retry was asked for meanwhile, wakes the waiter
    /// to try again.
    fn end(&self) {
        let mut signal = lock(&self.signal);
        signal.busy = false;
        if std::mem::take(&mut signal.retry) {
            signal.try_now = true;
            self.wake(signal);
        }
    }

    /// Hands an answer to the waiter; returns a grant back when the waiter has gone.
    fn deliver(&self, result: Result<Reservation, LedgerError>) -> Option<Reservation> {
        let mut signal = lock(&self.signal);
        signal.busy = false;
        signal.retry = false;
        if signal.closed {
            return result.ok();
        }
        signal.result = Some(result);
        self.wake(signal);
        None
    }

    /// The waiter as policies see it.
    fn pending(&self) -> PendingRequest {
        PendingRequest {
            request: self.request.clone(),
            enqueued_at: self.enqueued_at,
            arrival: self.arrival,
        }
    }

    /// Its rank without a policy: priority (highest first), then arrival.
    fn rank(&self) -> (Reverse<Priority>, u64) {
        (Reverse(self.request.priority), self.arrival)
    }
}

/// The waiting requests. Without a policy they are kept ranked (priority, highest first, then
/// arrival), so finding the head and removing anyone cost a logarithm. With a policy they are
/// kept in a list beside the view policies take of them, so the head is one pass of the
/// policy's [`first`](AllocationPolicy::first) and nothing is copied to ask it. A release
/// asks for the head several times, so with thousands waiting this is what a release costs.
#[derive(Default)]
struct Queue {
    /// The head's registration for the early wake of a release through the queue (its
    /// arrival, and who to wake), made when it waits; see `WaitQueue::wake_early`.
    early: Option<(u64, Wake)>,
    ranked: BTreeMap<(Reverse<Priority>, u64), Arc<Waiter>>,
    listed: Vec<Arc<Waiter>>,
    /// `listed` as policies see it, index for index.
    pending: Vec<PendingRequest>,
    next_arrival: u64,
}

impl Queue {
    fn len(&self) -> usize {
        self.ranked.len() + self.listed.len()
    }

    fn iter(&self) -> impl Iterator<Item = &Arc<Waiter>> {
        self.ranked.values().chain(&self.listed)
    }

    fn push(&mut self, waiter: Arc<Waiter>, order: Option<&dyn AllocationPolicy>) {
        match order {
            None => {
                // An arrival of higher priority becomes the head: the registration for the
                // early wake is a displaced head's now.
                if self
                    .ranked
                    .first_key_value()
                    .is_some_and(|(first, _)| waiter.rank() < *first)
                {
                    self.early = None;
                }
                self.ranked.insert(waiter.rank(), waiter);
            }
            Some(_) => {
                self.pending.push(waiter.pending());
                self.listed.push(waiter);
            }
        }
    }

    fn remove(&mut self, waiter: &Arc<Waiter>) {
        if self
            .early
            .as_ref()
            .is_some_and(|(arrival, _)| *arrival == waiter.arrival)
        {
            self.early = None;
        }
        // Arrivals are unique, so a rank names one waiter.
        if self.ranked.remove(&waiter.rank()).is_some() {
            return;
        }
        if let Some(i) = self.listed.iter().position(|w| Arc::ptr_eq(w, waiter)) {
            self.listed.swap_remove(i);
            self.pending.swap_remove(i);
        }
    }

    /// The head; the clock is read only when a policy has to be asked.
    fn head(
        &self,
        order: Option<&dyn AllocationPolicy>,
        clock: &dyn Clock,
    ) -> Option<&Arc<Waiter>> {
        if self.len() == 0 {
            // Most releases find nobody waiting: do not ask the policy.
            return None;
        }
        match order {
            None => self.ranked.values().next(),
            Some(policy) => policy
                .first(&self.pending, clock.now())
                .and_then(|i| self.listed.get(i)),
        }
    }

    fn ordered(&self, order: Option<&dyn AllocationPolicy>, clock: &dyn Clock) -> Vec<Arc<Waiter>> {
        match order {
            None => self.ranked.values().cloned().collect(),
            Some(policy) => policy
                .order(&self.pending, clock.now())
                .into_iter()
                .filter_map(|i| self.listed.get(i).cloned())
                .collect(),
        }
    }

    /// The waiting requests in arrival order, as policies and detection see them.
    fn pending(&self) -> Vec<PendingRequest> {
        let mut pending: Vec<PendingRequest> = if self.ranked.is_empty() {
            self.pending.clone()
        } else {
            self.ranked.values().map(|w| w.pending()).collect()
        };
        pending.sort_by_key(|p| p.arrival);
        pending
    }
}

/// What may pass a blocked head of the queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HeadOfLine {
    /// Nothing: strict order.
    #[default]
    StrictFifo,
    /// A later request with an expected duration, if it cannot delay the head's start (see
    /// [`backfill_allows`](crate::backfill_allows)).
    Backfill,
}

/// An ordered queue of requests waiting for capacity on one ledger.
///
/// Wire it to the ledger's events with a [`Wakeup`] sink, or call [`WaitQueue::notify`] after
/// anything that frees capacity. Head-of-line blocking is strict: nobody behind the head is
/// granted before it, so a large request is not starved by a stream of small ones.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use rm_contention::{WaitQueue, Wakeup};
/// use rm_model::{ReservationLedger, ReservationRequest, RequesterId, Resource, ResourceCapacity,
///     ResourceRequirement, ResourceType, SystemClock, Unit};
/// use rm_testkit::ReferenceLedger;
///
/// let clock = Arc::new(SystemClock::new());
/// let wakeup = Wakeup::new();
/// let ledger = Arc::new(ReferenceLedger::new(clock.clone(), Arc::new(wakeup.clone()), Duration::from_secs(30)));
/// ledger.register_resource(Resource::new("n", ResourceType::Compute, ResourceCapacity::of(1, Unit::CORES)?)?)?;
/// let queue = Arc::new(WaitQueue::new(ledger.clone(), clock));
/// wakeup.connect(&queue);
///
/// let one = |who: &str| ReservationRequest::new(RequesterId::new(who).unwrap(),
///     vec![ResourceRequirement::new(ResourceType::Compute, 1, Unit::CORES)]);
/// let first = queue.enqueue(one("a")).wait_timeout(Duration::from_secs(1))?;
/// let second = queue.enqueue(one("b"));
/// assert!(second.try_take().is_none(), "the only core is held");
/// ledger.confirm(&first.id, None)?;
/// ledger.release(&first.id, None)?; // hands the core to the next waiter
/// assert!(second.wait_timeout(Duration::from_secs(1)).is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct WaitQueue {
    ledger: Arc<dyn ReservationLedger>,
    clock: Arc<dyn Clock>,
    order: Option<Arc<dyn AllocationPolicy>>,
    head_of_line: HeadOfLine,
    queue: Mutex<Queue>,
    /// Expected ends of the holds granted through this queue with an estimate.
    running: Mutex<HashMap<ReservationId, Timestamp>>,
    /// The waiter answered last by a thread handing capacity on (see `keep_delivered`).
    delivered: Mutex<Option<Arc<Waiter>>>,
}

impl std::fmt::Debug for WaitQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitQueue")
            .field("waiting", &self.len())
            .finish_non_exhaustive()
    }
}

impl WaitQueue {
    /// A queue on `ledger`, ordering by priority then arrival.
    pub fn new(ledger: Arc<dyn ReservationLedger>, clock: Arc<dyn Clock>) -> WaitQueue {
        WaitQueue {
            ledger,
            clock,
            order: None,
            head_of_line: HeadOfLine::StrictFifo,
            queue: Mutex::new(Queue::default()),
            running: Mutex::new(HashMap::new()),
            delivered: Mutex::new(None),
        }
    }

    /// Lets later requests pass a blocked head under `head_of_line`.
    pub fn with_head_of_line(mut self, head_of_line: HeadOfLine) -> WaitQueue {
        self.head_of_line = head_of_line;
        self
    }

    /// Orders waiting requests by `policy` (priority with aging, fair share, …) instead.
    pub fn with_order(mut self, policy: Arc<dyn AllocationPolicy>) -> WaitQueue {
        self.order = Some(policy);
        self
    }

    /// How many requests wait.
    pub fn len(&self) -> usize {
        lock(&self.queue).len()
    }

    /// Whether nobody waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How long the oldest request has waited (zero when none waits).
    pub fn starvation_age(&self) -> Duration {
        let queue = lock(&self.queue);
        let now = self.clock.now();
        queue
            .iter()
            .map(|w| now.saturating_duration_since(w.enqueued_at))
            .max()
            .unwrap_or_default()
    }

    /// Queues `request`. The ticket tries the ledger when it is at the head, so wait on it.
    pub fn enqueue(self: &Arc<Self>, request: ReservationRequest) -> Ticket {
        self.enqueue_with(request, None)
    }

    /// Queues `request`, expected to hold its grant for `estimate`: with
    /// [`HeadOfLine::Backfill`] it may then pass a blocked head it cannot delay.
    pub fn enqueue_with_estimate(
        self: &Arc<Self>,
        request: ReservationRequest,
        estimate: Duration,
    ) -> Ticket {
        self.enqueue_with(request, Some(estimate))
    }

    fn enqueue_with(
        self: &Arc<Self>,
        request: ReservationRequest,
        estimate: Option<Duration>,
    ) -> Ticket {
        let waiter = {
            let mut queue = lock(&self.queue);
            let waiter = Arc::new(Waiter {
                request: Arc::new(request),
                estimate,
                arrival: queue.next_arrival,
                enqueued_at: self.clock.now(),
                signal: Mutex::new(Signal {
                    try_now: true,
                    ..Signal::default()
                }),
            });
            queue.next_arrival += 1;
            queue.push(waiter.clone(), self.order.as_deref());
            waiter
        };
        Ticket {
            queue: self.clone(),
            waiter,
            done: false,
        }
    }

    /// Releases a confirmed hold through the queue: the head of the queue is woken first (so
    /// the kernel's wake-up of its thread or task overlaps what follows), the ledger releases
    /// the hold, and this thread then grants the freed capacity to the head and hands it the
    /// grant, so the woken waiter has nothing left to do (a release straight on the ledger
    /// works too, but then the woken waiter asks the ledger itself).
    pub fn release(
        &self,
        id: &ReservationId,
        fence: Option<rm_model::FencingToken>,
    ) -> Result<Reservation, LedgerError> {
        self.handing_on(|| self.ledger.release(id, fence))
    }

    /// Cancels a pending hold through the queue, handing the capacity on as
    /// [`release`](Self::release) does.
    pub fn cancel(
        &self,
        id: &ReservationId,
        fence: Option<rm_model::FencingToken>,
    ) -> Result<Reservation, LedgerError> {
        self.handing_on(|| self.ledger.cancel(id, fence))
    }

    /// Wakes the head early, makes the ledger `call` that frees capacity, and hands the
    /// capacity on. While the call runs, this queue's [`observe`](Self::observe) skips looking
    /// for the head on this thread: `hand_on` follows, and tries for it here.
    fn handing_on(
        &self,
        call: impl FnOnce() -> Result<Reservation, LedgerError>,
    ) -> Result<Reservation, LedgerError> {
        self.wake_early();
        let result = {
            let _marked = HandingOn::mark(self);
            call()
        };
        let freed = result?;
        self.hand_on();
        Ok(freed)
    }

    /// Has the ledger expire the pending holds whose TTL has run out, which wakes the head
    /// when capacity frees. Blocking waiters do this themselves at the earliest expiry; a
    /// program that awaits tickets calls it from its own timer.
    pub fn expire_due(&self) {
        let _ = self.ledger.expire_due();
    }

    /// When the earliest pending hold expires, as an instant of the system's monotonic time.
    fn next_expiry_at(&self) -> Option<Instant> {
        let after = self.ledger.next_expiry().ok()??;
        Some(Instant::now() + after)
    }

    /// Wakes the head of the queue to try the ledger: call it when capacity may have freed.
    /// It never calls the ledger itself, so it is safe inside the ledger's event publication.
    pub fn notify(&self) {
        let head = {
            let queue = lock(&self.queue);
            self.head(&queue).cloned()
        };
        if let Some(head) = head {
            head.notify();
        }
    }

    /// The waiting requests in the order they go.
    fn ordered(&self, queue: &Queue) -> Vec<Arc<Waiter>> {
        queue.ordered(self.order.as_deref(), &*self.clock)
    }

    /// The waiting requests as policies and detection see them, in arrival order.
    pub fn pending(&self) -> Vec<PendingRequest> {
        lock(&self.queue).pending()
    }

    /// The request that goes next.
    fn head<'q>(&self, queue: &'q Queue) -> Option<&'q Arc<Waiter>> {
        queue.head(self.order.as_deref(), &*self.clock)
    }

    /// Wakes the head registered for an early wake, if any, without asking it to try: a hint
    /// that an answer is coming, so the head's wake-up (tens of microseconds on a virtual
    /// machine) overlaps the release and the grant made for it. It touches only the queue's
    /// lock and the registration beside it, so it is the least a release does before the
    /// wake. A head woken before its answer arrives finds none and waits again; the answer
    /// (or a request to try) wakes it through its signal, so correctness never rests on this
    /// wake.
    ///
    /// In priority order the registration is always the head's: an arrival that displaces the
    /// head drops it. Under a policy, whose order moves with usage and time, it is the waiter
    /// that was the head when it began to wait; if the order has moved since, that waiter
    /// wakes for nothing (it finds no answer and waits again) and the head is woken by its
    /// grant. Asking the policy here instead would put its pass over the waiters before the
    /// wake (measured with weighted fair shares: release to grant 1.010-1.013x the semaphore's,
    /// against 0.995-0.998x).
    fn wake_early(&self) {
        let early = lock(&self.queue).early.take();
        if let Some((_, wake)) = early {
            wake.wake();
        }
    }

    /// Whether `waiter` is the head; if it is, registers `wake` for the early wake (replacing
    /// an earlier head's, which a new head of higher priority displaced). A waiter's
    /// registration goes when it leaves the queue.
    fn register_head(&self, waiter: &Arc<Waiter>, wake: impl FnOnce() -> Wake) -> bool {
        let mut queue = lock(&self.queue);
        let is_head = self.heads(&queue, waiter);
        if is_head {
            queue.early = Some((waiter.arrival, wake()));
        }
        is_head
    }

    fn is_head(&self, waiter: &Arc<Waiter>) -> bool {
        self.heads(&lock(&self.queue), waiter)
    }

    /// Whether `waiter` heads `queue`.
    fn heads(&self, queue: &Queue, waiter: &Arc<Waiter>) -> bool {
        self.head(queue)
            .is_some_and(|head| Arc::ptr_eq(head, waiter))
    }

    fn remove(&self, waiter: &Arc<Waiter>) {
        lock(&self.queue).remove(waiter);
    }

    /// Takes a waiter out for good (timeout, cancellation, drop); gives back a grant that
    /// was delivered but not taken, and lets the next head try.
    fn leave(&self, waiter: &Arc<Waiter>) {
        self.remove(waiter);
        let orphan = {
            let mut signal = lock(&waiter.signal);
            signal.closed = true;
            signal.result.take()
        };
        if let Some(Ok(reservation)) = orphan {
            let _ = self
                .ledger
                .cancel(&reservation.id, Some(reservation.fencing_token));
        }
        self.hand_on();
    }

    /// Calls the ledger for `waiter`, which this thread has claimed; `true` when the waiter
    /// left the queue with an answer.
    fn try_for(&self, waiter: &Arc<Waiter>) -> Option<Result<Reservation, LedgerError>> {
        match self.ledger.try_reserve(&waiter.request) {
            Ok(None) => {
                waiter.end();
                None
            }
            result => {
                self.remove(waiter);
                if let (Ok(Some(granted)), Some(estimate)) = (&result, waiter.estimate) {
                    lock(&self.running).insert(granted.id.clone(), self.clock.now() + estimate);
                }
                Some(result.and_then(|granted| {
                    granted.ok_or_else(|| LedgerError::InsufficientCapacity {
                        requester: waiter.request.requester.clone(),
                        shortfalls: Vec::new(),
                    })
                }))
            }
        }
    }

    /// After a departure, tries the ledger for the next heads on this thread and hands them
    /// their grants, so a waiter is woken only when it has been granted.
    fn hand_on(&self) {
        loop {
            let head = {
                let queue = lock(&self.queue);
                self.head(&queue).cloned()
            };
            let Some(head) = head else {
                return;
            };
            if !head.begin() {
                return;
            }
            let Some(result) = self.try_for(&head) else {
                self.backfill();
                return;
            };
            if let Some(orphan) = head.deliver(result) {
                let _ = self.ledger.cancel(&orphan.id, Some(orphan.fencing_token));
            }
            self.keep_delivered(head);
        }
    }

    /// Keeps the waiter this thread just answered until the next answer, so that its ticket's
    /// owner, woken, is not the one to free it (and its request): freeing is work the woken
    /// thread would do before it can use its grant, and this thread has time to spare.
    fn keep_delivered(&self, waiter: Arc<Waiter>) {
        let previous = lock(&self.delivered).replace(waiter);
        drop(previous);
    }

    /// With [`HeadOfLine::Backfill`], after the head failed to fit: grants later requests
    /// with estimates that cannot delay it, in order, on this thread.
    fn backfill(&self) {
        if self.head_of_line != HeadOfLine::Backfill {
            return;
        }
        let ordered = {
            let queue = lock(&self.queue);
            self.ordered(&queue)
        };
        let Some((head, later)) = ordered.split_first() else {
            return;
        };
        if later.iter().all(|w| w.estimate.is_none()) {
            return;
        }
        let Ok(snapshot) = self.ledger.snapshot() else {
            return;
        };
        let now = self.clock.now();
        let mut free = Amounts::new();
        for usage in &snapshot.usage {
            *free.entry(usage.resource_type.clone()).or_default() +=
                usage.unit.to_base_milli(usage.free);
        }
        let mut running: Vec<Running> = {
            let expected = lock(&self.running);
            snapshot
                .active
                .iter()
                .map(|r| Running {
                    amounts: amounts_of_items(&r.items),
                    ends_at: expected.get(&r.id).copied(),
                })
                .collect()
        };
        let head_amounts = amounts_of_request(&head.request);
        for candidate in later {
            let Some(estimate) = candidate.estimate else {
                continue;
            };
            let wanted = amounts_of_request(&candidate.request);
            if !backfill_allows(now, &head_amounts, &free, &running, &wanted, estimate)
                || !candidate.begin()
            {
                continue;
            }
            let Some(result) = self.try_for(candidate) else {
                continue;
            };
            if let Ok(granted) = &result {
                for (resource_type, amount) in &wanted {
                    *free.entry(resource_type.clone()).or_default() -= amount;
                }
                running.push(Running {
                    amounts: amounts_of_items(&granted.items),
                    ends_at: Some(now + estimate),
                });
            }
            if let Some(orphan) = candidate.deliver(result) {
                let _ = self.ledger.cancel(&orphan.id, Some(orphan.fencing_token));
            }
        }
    }

    /// Learns from a ledger event: forgets the expected end of a hold that ended, and wakes
    /// the head when capacity may have freed. Safe inside the ledger's event publication.
    pub fn observe(&self, event: &Event) {
        let frees = match &event.kind {
            EventKind::Ended { reservation, .. } => {
                lock(&self.running).remove(reservation);
                true
            }
            EventKind::CapacityChanged { .. }
            | EventKind::ResourceRegistered { .. }
            | EventKind::ResourceUpdated { .. } => true,
            _ => false,
        };
        if frees && !HandingOn::is_marked(self) {
            self.notify();
        }
    }

    /// One attempt by `waiter` on its own thread: `Some` when it leaves with an answer.
    fn attempt(&self, waiter: &Arc<Waiter>) -> Option<Result<Reservation, WaitError>> {
        if let Some(answer) = lock(&waiter.signal).take_answer() {
            return Some(answer);
        }
        if !self.is_head(waiter) || !waiter.begin() {
            return None;
        }
        let Some(result) = self.try_for(waiter) else {
            self.backfill();
            return None;
        };
        {
            let mut signal = lock(&waiter.signal);
            signal.busy = false;
            signal.closed = true;
        }
        // Capacity may remain for whoever is next.
        self.hand_on();
        Some(result.map_err(WaitError::Refused))
    }
}

thread_local! {
    /// The address of the queue this thread is releasing through while it calls the ledger
    /// (0 for none).
    static HANDING_ON: Cell<usize> = const { Cell::new(0) };
}

/// Marks this thread as releasing through a queue until dropped (also on unwinding, so a
/// panicking ledger cannot leave the mark behind and silence later events).
struct HandingOn(usize);

impl HandingOn {
    fn mark(queue: &WaitQueue) -> HandingOn {
        HandingOn(HANDING_ON.replace(std::ptr::from_ref(queue).addr()))
    }

    fn is_marked(queue: &WaitQueue) -> bool {
        HANDING_ON.get() == std::ptr::from_ref(queue).addr()
    }
}

impl Drop for HandingOn {
    fn drop(&mut self) {
        HANDING_ON.set(self.0);
    }
}

/// A request's place in a [`WaitQueue`]. Wait on it with [`Ticket::wait_timeout`] or
/// `.await` it; dropping it leaves the queue.
#[must_use = "dropping a ticket leaves the queue"]
pub struct Ticket {
    queue: Arc<WaitQueue>,
    waiter: Arc<Waiter>,
    done: bool,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("arrival", &self.waiter.arrival)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Ticket {
    /// Tries once, without waiting: the reservation when this request is at the head and
    /// fits, `None` while it waits.
    pub fn try_take(&self) -> Option<Result<Reservation, WaitError>> {
        self.queue.attempt(&self.waiter)
    }

    /// Blocks until granted or `timeout` passes; on timeout the request leaves the queue.
    pub fn wait_timeout(mut self, timeout: Duration) -> Result<Reservation, WaitError> {
        let start = Instant::now();
        let deadline = start + timeout;
        loop {
            // The head also wakes when the earliest pending hold expires, and has the ledger
            // apply the expiry: expired capacity is handed on without anyone polling.
            let expiry = if self
                .queue
                .register_head(&self.waiter, || Wake::Thread(std::thread::current()))
            {
                self.queue.next_expiry_at()
            } else {
                None
            };
            let mut expiry_due = false;
            {
                let mut signal = lock(&self.waiter.signal);
                while !signal.try_now && signal.result.is_none() {
                    let now = Instant::now();
                    if now >= deadline {
                        drop(signal);
                        self.done = true;
                        self.queue.leave(&self.waiter);
                        return Err(WaitError::TimedOut {
                            after: start.elapsed(),
                        });
                    }
                    let mut sleep = deadline - now;
                    if let Some(at) = expiry {
                        let until = at.saturating_duration_since(now);
                        if until.is_zero() {
                            expiry_due = true;
                            break;
                        }
                        sleep = sleep.min(until);
                    }
                    // A wake between the unlock and the park leaves the unpark token, so the
                    // park returns at once: no wake-up is lost.
                    signal.waker = Some(Wake::Thread(std::thread::current()));
                    drop(signal);
                    std::thread::park_timeout(sleep);
                    signal = lock(&self.waiter.signal);
                }
                signal.try_now = false;
                // A grant handed over by a releasing thread: nothing else to do.
                if let Some(answer) = signal.take_answer() {
                    self.done = true;
                    return answer;
                }
            }
            if expiry_due {
                // Publishes the expiries, which wake the head (this ticket) again.
                WaitQueue::expire_due(&self.queue);
            }
            if let Some(answer) = self.queue.attempt(&self.waiter) {
                self.done = true;
                return answer;
            }
        }
    }

    /// Leaves the queue.
    pub fn cancel(self) {
        drop(self);
    }
}

impl Future for Ticket {
    type Output = Result<Reservation, WaitError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.done {
            return Poll::Ready(Err(WaitError::Cancelled));
        }
        loop {
            let handed = {
                let mut signal = lock(&self.waiter.signal);
                if !signal.try_now && signal.result.is_none() {
                    signal.waker = Some(Wake::Task(cx.waker().clone()));
                    drop(signal);
                    self.queue
                        .register_head(&self.waiter, || Wake::Task(cx.waker().clone()));
                    return Poll::Pending;
                }
                signal.try_now = false;
                signal.take_answer()
            };
            // A grant handed over by a releasing thread: nothing else to do.
            if let Some(answer) = handed {
                self.done = true;
                return Poll::Ready(answer);
            }
            if let Some(answer) = self.queue.attempt(&self.waiter) {
                self.done = true;
                return Poll::Ready(answer);
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            self.queue.leave(&self.waiter);
        }
    }
}

/// An event sink that wakes a [`WaitQueue`]'s head when capacity may have freed (a release,
/// an expiry, a preemption, a cancellation, a capacity change, a new resource). Create it
/// before the ledger (the ledger takes its sink at construction), then
/// [`connect`](Self::connect) the queue built on that ledger. It holds the queue weakly.
#[derive(Clone, Default)]
pub struct Wakeup {
    queue: Arc<OnceLock<Weak<WaitQueue>>>,
}

impl std::fmt::Debug for Wakeup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wakeup")
            .field("connected", &self.queue.get().is_some())
            .finish()
    }
}

impl Wakeup {
    /// A sink not yet connected to a queue (events are ignored until it is).
    pub fn new() -> Wakeup {
        Wakeup::default()
    }

    /// Connects the queue to wake; a second call is ignored.
    pub fn connect(&self, queue: &Arc<WaitQueue>) {
        let _ = self.queue.set(Arc::downgrade(queue));
    }
}

impl EventSink for Wakeup {
    fn publish(&self, event: &Event) {
        if let Some(queue) = self.queue.get().and_then(Weak::upgrade) {
            queue.observe(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter() -> Waiter {
        Waiter {
            request: Arc::new(ReservationRequest::new(
                rm_model::RequesterId::new("w").expect("valid"),
                Vec::new(),
            )),
            estimate: None,
            arrival: 0,
            enqueued_at: Timestamp::ZERO,
            signal: Mutex::new(Signal::default()),
        }
    }

    fn grant() -> Reservation {
        Reservation {
            id: ReservationId::generate(),
            requester: rm_model::RequesterId::new("w").expect("valid"),
            priority: Priority(0),
            state: rm_model::ReservationState::Pending,
            items: Arc::new([]),
            fencing_token: rm_model::FencingToken(1),
            created_at: Timestamp::ZERO,
            updated_at: Timestamp::ZERO,
            expires_at: None,
            labels: rm_model::Labels::new(),
            preemptible: false,
        }
    }

    /// Once a waiter has taken the answer delivered to it, a late try for it (by a thread
    /// that picked it as the head before it left the queue) is refused, and a late delivery
    /// comes back to be given back: nothing is reserved for a waiter nobody waits on.
    #[test]
    fn a_waiter_that_took_its_answer_takes_no_more() {
        let waiter = waiter();
        assert!(waiter.begin(), "a waiting waiter may be tried for");
        assert!(waiter.deliver(Ok(grant())).is_none(), "delivered");
        assert!(lock(&waiter.signal).take_answer().is_some());
        assert!(!waiter.begin(), "no try for a waiter that has its answer");
        assert!(
            waiter.deliver(Ok(grant())).is_some(),
            "a late grant comes back"
        );
    }
}
