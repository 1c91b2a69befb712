//! [`ReservationManager`]: the embedded, concurrent implementation of the ledger contract.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use rm_model::{
    AuditReport, CapacityUsage, Clock, Ending, EventKind, EventSink, FencingToken, LedgerError,
    LedgerSnapshot, Quantity, RequesterId, Reservation, ReservationId, ReservationItem,
    ReservationLedger, ReservationRequest, ReservationState, ReservationStrategy, Resource,
    ResourceCapacity, ResourceName, ResourceRequirement, ResourceType, SystemClock, Timestamp,
    ValidationContext, ValidationErrors, Validator, shrink_item,
};
use rm_plan::{Affinity, Placement};
use smallvec::SmallVec;

use crate::Error;
use crate::catalog::{Catalog, MAX_DIMS, Slot, SlotState, lock};
use crate::events::{Observers, Subscription};
use crate::holders::HolderIndex;
use crate::permit::PermitPool;
use crate::record::{Grant, Hold, Record, RecordState};
use crate::timers::TimerHeap;

/// How many times a grant re-plans when another thread took the capacity it planned on
/// between planning (lock-free) and committing (under the slot locks).
const COMMIT_ATTEMPTS: usize = 32;

/// How many forgotten records are kept for reuse, so that steady traffic does not allocate
/// one per reservation.
const SPARE_RECORDS: usize = 256;

/// Inline storage for the few placements, slots and holds of a typical request, so that
/// planning and committing it does not allocate.
type Small<T> = SmallVec<[T; 4]>;

/// The hasher of the id map: foldhash, several times faster than the standard library's
/// SipHash on these short keys, and seeded per map.
pub(crate) type IdHasher = foldhash::fast::RandomState;

/// Why a commit did not happen.
enum Abort {
    /// Capacity moved under the plan: plan again.
    Replan,
    /// A definite answer (an idempotent retry, or an error).
    Done(Box<Result<Reservation, LedgerError>>),
}

/// An event about a record, published after its slot locks are released (so that an
/// observer woken by it does not queue on them) but while its state lock is held (so that the
/// events of one reservation keep their order).
enum Note {
    Ended {
        to: ReservationState,
        by: Option<ReservationId>,
    },
    Confirmed,
    Renewed {
        expires_at: Timestamp,
    },
    Shrunk {
        requirement: usize,
        resource: ResourceName,
        from: Quantity,
        to: Quantity,
    },
}

/// The notes of one operation: at most an expiry and the operation's own change.
#[derive(Default)]
struct Outbox {
    notes: [Option<Note>; 2],
}

impl Outbox {
    fn push(&mut self, note: Note) {
        if let Some(free) = self.notes.iter_mut().find(|n| n.is_none()) {
            *free = Some(note);
        }
    }
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> LedgerError {
    LedgerError::InvalidInput {
        field: field.into(),
        reason: reason.into(),
    }
}

fn rejected(errors: ValidationErrors) -> LedgerError {
    let field = errors
        .violations
        .first()
        .map(|v| v.path.clone())
        .unwrap_or_default();
    invalid(field, errors.to_string())
}

/// Configures a [`ReservationManager`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct ReservationManagerBuilder {
    clock: Arc<dyn Clock>,
    default_ttl: Duration,
    retention: Duration,
    validator: Option<Arc<dyn Validator>>,
    sink: Option<Arc<dyn EventSink>>,
}

impl ReservationManagerBuilder {
    /// The clock TTLs are measured by (default: the system's monotonic clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How long a pending hold lives unless its request names a TTL (default 30 s).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// How long an ended reservation is remembered, so that `get` and retries by id still
    /// find it (default 5 minutes). After that its id is forgotten. Zero is refused by
    /// [`build`](Self::build): it would forget an id the moment its reservation ends, so a
    /// caller retrying a release whose answer it lost would be told the id is unknown.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Validates resources at registration and requests at admission.
    pub fn validator(mut self, validator: Arc<dyn Validator>) -> Self {
        self.validator = Some(validator);
        self
    }

    /// Receives every event, on the thread that causes it.
    pub fn event_sink(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Builds the manager. Fails on a zero default TTL or a zero retention.
    pub fn build(self) -> Result<ReservationManager, Error> {
        if self.default_ttl.is_zero() {
            return Err(Error::InvalidConfig {
                field: "default_ttl",
                reason: "must be positive",
            });
        }
        if self.retention.is_zero() {
            return Err(Error::InvalidConfig {
                field: "retention",
                reason: "must be positive: retries by id need the ended reservation remembered",
            });
        }
        Ok(self.assemble())
    }

    fn assemble(self) -> ReservationManager {
        ReservationManager {
            clock: self.clock,
            default_ttl: self.default_ttl,
            retention: self.retention,
            validator: self.validator,
            observers: Observers::new(self.sink),
            catalog: RwLock::new(Catalog::default()),
            records: DashMap::with_hasher(IdHasher::default()),
            timers: Mutex::new(TimerHeap::default()),
            forgets: Mutex::new(VecDeque::new()),
            spare: Mutex::new(Vec::new()),
            holders: HolderIndex::default(),
            next_timer: AtomicU64::new(u64::MAX),
            next_forget: AtomicU64::new(u64::MAX),
            sweep: Mutex::new(()),
            last_token: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// The embedded reservation ledger. See the [crate docs](crate) for its design.
pub struct ReservationManager {
    clock: Arc<dyn Clock>,
    default_ttl: Duration,
    retention: Duration,
    validator: Option<Arc<dyn Validator>>,
    observers: Observers,
    catalog: RwLock<Catalog>,
    records: DashMap<ReservationId, Arc<Record>, IdHasher>,
    /// The expiry timers of pending holds, one each.
    timers: Mutex<TimerHeap>,
    /// Ended reservations to forget, in the order they ended: retention is one duration for
    /// all, so the order they ended is the order they are due.
    forgets: Mutex<VecDeque<(Timestamp, FencingToken, ReservationId)>>,
    /// Forgotten records nobody else holds, emptied, to be filled by the next grants.
    spare: Mutex<Vec<Arc<Record>>>,
    /// Active holds by requester and label, kept once affinity is used.
    holders: HolderIndex,
    /// At most the earliest expiry timer, in nanoseconds of the clock (`u64::MAX` for none): a
    /// lock-free check of whether any hold may be due. Lowered under the timer heap's lock by
    /// whoever schedules a timer; raised only by a sweep that has expired everything due, so
    /// it is never above a deadline whose hold is still pending (see [`Self::run_timers`]).
    next_timer: AtomicU64,
    /// At most the earliest deadline of the retention queue (`u64::MAX` for none), kept under
    /// the queue's lock.
    next_forget: AtomicU64,
    /// Held by the one thread running due expiry timers, so that every other thread that
    /// finds a timer due waits until that hold is expired instead of planning around it.
    sweep: Mutex<()>,
    last_token: Arc<AtomicU64>,
}

impl Default for ReservationManager {
    fn default() -> ReservationManager {
        ReservationManager::new()
    }
}

impl std::fmt::Debug for ReservationManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReservationManager")
            .field("default_ttl", &self.default_ttl)
            .field("retention", &self.retention)
            .field("reservations", &self.records.len())
            .finish_non_exhaustive()
    }
}

impl ReservationManager {
    /// A manager on the system clock, with a 30 s default TTL, 5 minutes of retention, no
    /// validator and no event sink.
    pub fn new() -> ReservationManager {
        ReservationManager::builder().assemble()
    }

    /// A builder, starting from the defaults of [`ReservationManager::new`].
    pub fn builder() -> ReservationManagerBuilder {
        ReservationManagerBuilder {
            clock: Arc::new(SystemClock::new()),
            default_ttl: Duration::from_secs(30),
            retention: Duration::from_secs(300),
            validator: None,
            sink: None,
        }
    }

    /// The seed's `create_reservation(requester_id, requirements, strategy)`: reserves all of
    /// `requirements` for `requester` or none, with a generated id and the default TTL.
    pub fn create_reservation(
        &self,
        requester: RequesterId,
        requirements: Vec<ResourceRequirement>,
        strategy: ReservationStrategy,
    ) -> Result<Reservation, LedgerError> {
        self.reserve(&ReservationRequest::new(requester, requirements).with_strategy(strategy))
    }

    /// The seed's `confirm_reservation(id)`.
    pub fn confirm_reservation(&self, id: &ReservationId) -> Result<Reservation, LedgerError> {
        self.confirm(id, None)
    }

    /// The seed's `release_reservation(id)`.
    pub fn release_reservation(&self, id: &ReservationId) -> Result<Reservation, LedgerError> {
        self.release(id, None)
    }

    /// A subscription that receives every event from now on. Dropping it unsubscribes. It is
    /// unbounded: a subscriber that stops reading should drop it.
    ///
    /// Order: the subscription receives every event published after this call, in sequence order
    /// and with consecutive sequence numbers (no gaps), however many threads publish at once,
    /// so a reader that keeps the last sequence it saw can rely on it. (An
    /// [`EventSink`](rm_model::EventSink) is called on the publishing thread instead, and
    /// events of different threads may reach it out of sequence order.)
    pub fn subscribe(&self) -> Subscription {
        self.observers.subscribe()
    }

    /// The permits of one capacity: lightweight leases for semaphore-like uses (see
    /// [`PermitPool`]). Fails when the resource or its capacity type does not exist.
    pub fn permits(
        &self,
        resource: &ResourceName,
        resource_type: &ResourceType,
    ) -> Result<PermitPool, LedgerError> {
        let catalog = self.read_catalog();
        let unknown = || LedgerError::UnknownResource {
            name: resource.clone(),
        };
        let position = catalog.position(resource).ok_or_else(unknown)?;
        let slot = catalog.slots[position].clone();
        let (dim, unit) = {
            let state = lock(&slot.state);
            let d = state.dim(resource_type).ok_or_else(unknown)?;
            (d, state.dims[d].unit.clone())
        };
        Ok(PermitPool {
            slot,
            dim,
            resource: resource.clone(),
            resource_type: resource_type.clone(),
            unit,
            tokens: self.last_token.clone(),
        })
    }

    /// How many reservations are remembered (active ones and ended ones within retention).
    pub fn remembered(&self) -> usize {
        self.records.len()
    }

    fn read_catalog(&self) -> RwLockReadGuard<'_, Catalog> {
        self.catalog.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_catalog(&self) -> RwLockWriteGuard<'_, Catalog> {
        self.catalog.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Schedules the pending hold's expiry at `at`, or moves its timer there; the caller
    /// holds the record's state lock.
    fn arm(&self, record: &Record, state: &mut RecordState, at: Timestamp) {
        let mut timers = lock(&self.timers);
        let moved = state
            .timer
            .is_some_and(|handle| timers.reschedule(handle, record.token, at));
        if !moved {
            state.timer = Some(timers.insert(at, record.token, record.id.clone()));
        }
        // Under the heap's lock, so that a sweep finishing now cannot raise the hint past it.
        self.next_timer.fetch_min(at.as_nanos(), Ordering::AcqRel);
    }

    /// Cancels the hold's expiry timer, if it has one; the caller holds its state lock.
    fn disarm(&self, record: &Record, state: &mut RecordState) {
        if let Some(handle) = state.timer.take() {
            lock(&self.timers).remove(handle, record.token);
        }
    }

    /// Runs every timer due by `now`; returns the holds it expired.
    ///
    /// When it returns, every hold whose deadline is at or before `now` has ended, whatever
    /// other threads are doing: a thread that finds a timer due while another thread sweeps
    /// waits for that sweep (which may be expiring the very hold it needs) and then runs what
    /// is left. The hint is raised only at the end of a sweep, so no thread skips expiry while
    /// a due hold is still pending.
    fn run_timers(&self, now: Timestamp) -> Vec<Reservation> {
        if now.as_nanos() >= self.next_forget.load(Ordering::Acquire) {
            // Forgetting frees no capacity, so nobody waits for it: threads share the work.
            self.forget_due(now);
        }
        if now.as_nanos() < self.next_timer.load(Ordering::Acquire) {
            return Vec::new();
        }
        let _sweep = lock(&self.sweep);
        let mut expired = Vec::new();
        loop {
            // One at a time, so that no list is built and the heap's lock is never held
            // while a record's locks are taken.
            let due = {
                let mut timers = lock(&self.timers);
                let due = timers.pop_due(now);
                if due.is_none() {
                    // Every timer due by `now` has run: nothing below the heap's earliest
                    // deadline remains, and a timer scheduled meanwhile lowers it again.
                    let next = timers.next().map_or(u64::MAX, Timestamp::as_nanos);
                    self.next_timer.store(next, Ordering::Release);
                }
                due
            };
            let Some(due) = due else {
                break;
            };
            let Some(record) = self.records.get(&due.id).map(|r| r.clone()) else {
                continue;
            };
            if record.token != due.token {
                continue;
            }
            let mut guards = record.lock_slots();
            let mut state = lock(&record.state);
            let mut outbox = Outbox::default();
            if self.expire_if_due(&record, &mut guards, &mut state, now, &mut outbox) {
                expired.push(record.reservation(&state));
            }
            drop(guards);
            self.flush(&record, &state, &mut outbox, now);
        }
        expired
    }

    /// Puts every active hold in the holder index, which was just switched on, and marks it
    /// ready (see [`crate::holders`]).
    fn fill_holder_index(&self) {
        for record in self.records.iter() {
            let mut state = lock(&record.state);
            if state.state.holds_capacity() {
                self.holders.add(&record, &mut state);
            }
        }
        self.holders.ready();
    }

    /// Forgets the ended reservations whose retention ran out by `now`, keeping their records
    /// for reuse.
    fn forget_due(&self, now: Timestamp) {
        /// Entries taken per lock of the retention queue (and records kept per lock of the
        /// spare list), on the stack.
        const BATCH: usize = 16;
        loop {
            let mut due: SmallVec<[(Timestamp, FencingToken, ReservationId); BATCH]> =
                SmallVec::new();
            {
                let mut forgets = lock(&self.forgets);
                while due.len() < BATCH {
                    match forgets.front() {
                        Some((at, _, _)) if *at <= now => due.extend(forgets.pop_front()),
                        _ => break,
                    }
                }
                let next = forgets.front().map_or(u64::MAX, |(at, _, _)| at.as_nanos());
                self.next_forget.store(next, Ordering::Release);
            }
            let more = due.len() == BATCH;
            let mut reusable: SmallVec<[Arc<Record>; BATCH]> = SmallVec::new();
            for (_, token, id) in due {
                let forgotten = self.records.remove_if(&id, |_, record| {
                    record.token == token && lock(&record.state).state.is_terminal()
                });
                if let Some((_, mut record)) = forgotten
                    && record.empty_for_reuse()
                {
                    reusable.push(record);
                }
            }
            if !reusable.is_empty() {
                let mut spare = lock(&self.spare);
                let room = SPARE_RECORDS.saturating_sub(spare.len());
                spare.extend(reusable.drain(..).take(room));
            }
            if !more {
                return;
            }
        }
    }

    /// Expires the reservation if it is pending and its TTL has run out by `now`; the caller
    /// holds its slot locks and state lock. Returns whether it expired it.
    fn expire_if_due(
        &self,
        record: &Record,
        guards: &mut [MutexGuard<'_, SlotState>],
        state: &mut RecordState,
        now: Timestamp,
        outbox: &mut Outbox,
    ) -> bool {
        let due = state.state == ReservationState::Pending
            && state.expires_at.is_some_and(|at| at <= now);
        if due {
            self.end(
                record,
                guards,
                state,
                (ReservationState::Expired, None),
                now,
                outbox,
            );
        }
        due
    }

    /// Publishes an operation's notes; the caller has released the slot locks and holds the
    /// record's state lock.
    fn flush(&self, record: &Record, state: &RecordState, outbox: &mut Outbox, now: Timestamp) {
        for note in outbox.notes.iter_mut().filter_map(Option::take) {
            self.observers.publish(now, || match note {
                Note::Ended { to, by } => EventKind::Ended {
                    reservation: record.id.clone(),
                    requester: record.requester.clone(),
                    reason: to,
                    items: state.items.clone(),
                    preempted_by: by,
                },
                Note::Confirmed => EventKind::Confirmed {
                    reservation: record.id.clone(),
                    requester: record.requester.clone(),
                },
                Note::Renewed { expires_at } => EventKind::Renewed {
                    reservation: record.id.clone(),
                    expires_at,
                },
                Note::Shrunk {
                    requirement,
                    resource,
                    from,
                    to,
                } => EventKind::Shrunk {
                    reservation: record.id.clone(),
                    requester: record.requester.clone(),
                    requirement,
                    resource,
                    from,
                    to,
                },
            });
        }
    }

    /// Ends an active reservation: credits what it holds and moves it to `to`. The caller
    /// holds the record's slot locks (`guards`) and its state lock.
    fn end(
        &self,
        record: &Record,
        guards: &mut [MutexGuard<'_, SlotState>],
        state: &mut RecordState,
        (to, by): (ReservationState, Option<ReservationId>),
        now: Timestamp,
        outbox: &mut Outbox,
    ) {
        let from = state.state;
        self.disarm(record, state);
        self.holders.remove(record, state);
        for hold in &state.holds {
            let dim = &mut guards[hold.slot].dims[hold.dim];
            if from == ReservationState::Pending {
                dim.pending -= hold.amount;
            } else {
                dim.confirmed -= hold.amount;
            }
            record.lock_set[hold.slot].give(hold.dim, hold.amount);
        }
        for guard in guards.iter_mut() {
            guard.holders = guard.holders.saturating_sub(1);
        }
        state.state = to;
        state.updated_at = now;
        state.expires_at = None;
        outbox.push(Note::Ended { to, by });
        let at = now + self.retention;
        let mut forgets = lock(&self.forgets);
        forgets.push_back((at, record.token, record.id.clone()));
        self.next_forget.fetch_min(at.as_nanos(), Ordering::AcqRel);
    }

    /// Runs `change` on the record `id` with its slots and state locked, after applying a due
    /// expiry. `fence`, when given, must be the record's token.
    fn with_record<T>(
        &self,
        operation: &'static str,
        id: &ReservationId,
        fence: Option<FencingToken>,
        change: impl FnOnce(
            &Record,
            &mut [MutexGuard<'_, SlotState>],
            &mut RecordState,
            Timestamp,
            &mut Outbox,
        ) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        let now = self.clock.now();
        self.run_timers(now);
        let record = self
            .records
            .get(id)
            .map(|r| r.clone())
            .ok_or_else(|| LedgerError::UnknownReservation { id: id.clone() })?;
        if let Some(presented) = fence
            && presented != record.token
        {
            return Err(LedgerError::StaleFencingToken {
                operation,
                id: id.clone(),
                presented,
                current: record.token,
            });
        }
        let mut guards = record.lock_slots();
        let mut state = lock(&record.state);
        let mut outbox = Outbox::default();
        self.expire_if_due(&record, &mut guards, &mut state, now, &mut outbox);
        let result = change(&record, &mut guards, &mut state, now, &mut outbox);
        drop(guards);
        self.flush(&record, &state, &mut outbox, now);
        drop(state);
        result
    }

    /// Ends a reservation through a caller's operation: it must be in one of `from`; being in
    /// `to` already is an idempotent success.
    fn finish(
        &self,
        ending: Ending,
        id: &ReservationId,
        fence: Option<FencingToken>,
        by: Option<&ReservationId>,
    ) -> Result<Reservation, LedgerError> {
        let (operation, from, to) = (ending.operation(), ending.from(), ending.to());
        self.with_record(
            operation,
            id,
            fence,
            |record, guards, state, now, outbox| {
                if state.state != to {
                    if !from.contains(&state.state) {
                        return Err(LedgerError::wrong_state(operation, &record.id, state.state));
                    }
                    self.end(record, guards, state, (to, by.cloned()), now, outbox);
                }
                Ok(record.reservation(state))
            },
        )
    }

    /// What answers a request whose id is already used.
    fn retry_of(
        existing: &Record,
        request: &ReservationRequest,
    ) -> Result<Reservation, LedgerError> {
        match &existing.request {
            Some(original) if original.same_request_as(request) => Ok(existing.current()),
            _ => Err(LedgerError::IdConflict {
                id: existing.id.clone(),
            }),
        }
    }

    /// Plans `request` with the shared planner, gathering the holds its affinity terms
    /// select first.
    fn plan(
        &self,
        catalog: &Catalog,
        request: &ReservationRequest,
        explain: bool,
        extra: &[(usize, usize, i64)],
    ) -> Result<Small<Placement>, LedgerError> {
        let affinity = self.affinity(catalog, request);
        rm_plan::plan(catalog, request, &affinity, explain, extra)
    }

    /// Commits a plan under the slot locks, or says why not.
    fn commit(
        &self,
        catalog: &Catalog,
        request: &ReservationRequest,
        plan: Small<Placement>,
        now: Timestamp,
    ) -> Result<Reservation, Abort> {
        // Positions are in registration order, which is the lock order.
        let mut positions: Small<usize> = plan.iter().map(|p| p.position).collect();
        positions.sort_unstable();
        positions.dedup();
        let mut holds: Small<Hold> = Small::new();
        for placement in &plan {
            let slot = positions
                .binary_search(&placement.position)
                .unwrap_or_default();
            match holds
                .iter_mut()
                .find(|h| h.slot == slot && h.resource_type == placement.resource_type)
            {
                Some(hold) => {
                    hold.amount = hold.amount.checked_add(placement.amount).ok_or_else(|| {
                        Abort::Done(Box::new(Err(invalid(
                            format!("requirements[{}].amount", placement.requirement),
                            "the amounts on one resource overflow",
                        ))))
                    })?;
                }
                None => holds.push(Hold {
                    slot,
                    resource: catalog.resources[placement.position].name().clone(),
                    dim: usize::MAX,
                    resource_type: placement.resource_type.clone(),
                    amount: placement.amount,
                }),
            }
        }
        let mut guards: Small<MutexGuard<'_, SlotState>> = positions
            .iter()
            .map(|&p| lock(&catalog.slots[p].state))
            .collect();
        // The units planned with must still be the capacities' units.
        for placement in &plan {
            let slot = positions
                .binary_search(&placement.position)
                .unwrap_or_default();
            let state = &guards[slot];
            if state
                .dim(&placement.resource_type)
                .is_none_or(|d| state.dims[d].unit != placement.unit)
            {
                return Err(Abort::Replan);
            }
        }
        for hold in &mut holds {
            match guards[hold.slot].dim(&hold.resource_type) {
                Some(d) => hold.dim = d,
                None => return Err(Abort::Replan),
            }
        }
        let id = request.id.clone().unwrap_or_else(ReservationId::generate);
        let vacant = match self.records.entry(id.clone()) {
            Entry::Occupied(existing) => {
                let existing = existing.get().clone();
                drop(guards);
                return Err(Abort::Done(Box::new(Self::retry_of(&existing, request))));
            }
            Entry::Vacant(vacant) => vacant,
        };
        // Take from the free counters, all or nothing: leases may have taken capacity since
        // the plan, without the locks.
        for (taken, hold) in holds.iter().enumerate() {
            if !catalog.slots[positions[hold.slot]].take(hold.dim, hold.amount) {
                for undo in &holds[..taken] {
                    catalog.slots[positions[undo.slot]].give(undo.dim, undo.amount);
                }
                return Err(Abort::Replan);
            }
        }
        for hold in &holds {
            guards[hold.slot].dims[hold.dim].pending += hold.amount;
        }
        for guard in guards.iter_mut() {
            guard.holders += 1;
        }
        let token = FencingToken(self.last_token.fetch_add(1, Ordering::AcqRel) + 1);
        let expires_at = now + request.ttl.unwrap_or(self.default_ttl);
        let items = plan.into_iter().map(|p| {
            let requirement = &request.requirements[p.requirement];
            ReservationItem {
                requirement: p.requirement,
                resource: catalog.resources[p.position].name().clone(),
                resource_type: p.resource_type,
                amount: Quantity::from_milli(p.amount),
                minimum: requirement
                    .minimum()
                    .and_then(|m| requirement.unit().convert(m, &p.unit).ok()),
                unit: p.unit,
            }
        });
        let grant = Grant {
            id: id.clone(),
            request,
            token,
            now,
            expires_at,
        };
        let slots = positions.iter().map(|&p| catalog.slots[p].clone());
        let spare = lock(&self.spare).pop();
        let record = Record::fill(spare, grant, items, holds, slots);
        // Locked before it is reachable, and held until the event is out: nothing about this
        // reservation can be published before its grant, and its timer is armed before
        // anyone can end it.
        let mut state = lock(&record.state);
        let reservation = record.reservation(&state);
        vacant.insert(record.clone());
        // After the insertion: see `crate::holders` for why the order matters.
        if self.holders.is_kept() {
            self.holders.add(&record, &mut state);
        }
        self.arm(&record, &mut state, expires_at);
        // Publish after the slot locks go (an observer woken by the event must not queue on
        // them).
        drop(guards);
        self.observers.publish(now, || EventKind::Reserved {
            reservation: id,
            requester: record.requester.clone(),
            priority: record.priority,
            items: state.items.clone(),
            fencing_token: token,
        });
        drop(state);
        Ok(reservation)
    }
}

impl ReservationManager {
    /// Where the holds that `request`'s affinity terms select are, gathered once per request
    /// (and not at all for requests without affinity): from the holder index for terms it
    /// answers, by one pass over the holds for the others.
    fn affinity<'c>(&self, catalog: &'c Catalog, request: &ReservationRequest) -> Affinity<'c> {
        let mut affinity = Affinity::for_request(request);
        if affinity.is_empty() {
            return affinity;
        }
        let index = &self.holders;
        if index.switch_on() {
            self.fill_holder_index();
        }
        let ready = index.is_ready();
        // Terms whose selector the index answers; the others pass over the holds.
        let mut unanswered: Small<(usize, usize)> = Small::new();
        for (i, requirement) in request.requirements.iter().enumerate() {
            for (j, term) in requirement.affinity().iter().enumerate() {
                let answered = ready
                    && index.selected(&term.selector, |name| {
                        if let Some(position) = catalog.position(name) {
                            affinity.note(request, (i, j), &catalog.resources[position]);
                        }
                    });
                if !answered {
                    unanswered.push((i, j));
                }
            }
        }
        if unanswered.is_empty() {
            return affinity;
        }
        let term_at = |(i, j): (usize, usize)| &request.requirements[i].affinity()[j];
        let mut selecting: Small<(usize, usize)> = Small::new();
        for record in self.records.iter() {
            // Who a hold is and what it carries do not change while it is in the map: ask the
            // selectors before looking at its state.
            selecting.clear();
            selecting.extend(unanswered.iter().copied().filter(|&at| {
                term_at(at)
                    .selector
                    .selects(&record.requester, &record.labels)
            }));
            if selecting.is_empty() {
                continue;
            }
            let items = {
                let state = lock(&record.state);
                if !state.state.holds_capacity() {
                    continue;
                }
                state.items.clone()
            };
            for item in items.iter() {
                let Some(position) = catalog.position(&item.resource) else {
                    continue;
                };
                for &at in &selecting {
                    affinity.note(request, at, &catalog.resources[position]);
                }
            }
        }
        affinity
    }
}

impl ReservationManager {
    /// `reserve`, with or without explaining a refusal.
    fn reserve_with(
        &self,
        request: &ReservationRequest,
        explain: bool,
    ) -> Result<Reservation, LedgerError> {
        let catalog = self.read_catalog();
        self.reserve_in(&catalog, request, explain)
    }

    /// `reserve` with the catalog already held (for reading, or for writing by a preemptor).
    fn reserve_in(
        &self,
        catalog: &Catalog,
        request: &ReservationRequest,
        explain: bool,
    ) -> Result<Reservation, LedgerError> {
        let now = self.clock.now();
        self.run_timers(now);
        if let Some(id) = &request.id
            && let Some(existing) = self.records.get(id).map(|r| r.clone())
        {
            return Self::retry_of(&existing, request);
        }
        if let Some(first) = request.violations().into_iter().next() {
            return Err(invalid(first.path, first.message));
        }
        if let Some(validator) = &self.validator {
            let context = ValidationContext {
                resources: &catalog.resources,
                active: &[],
            };
            validator
                .validate_request(request, &context)
                .map_err(rejected)?;
        }
        for _ in 0..COMMIT_ATTEMPTS {
            let plan = match self.plan(catalog, request, explain, &[]) {
                Ok(plan) => plan,
                Err(err) => {
                    // An expired hold must never block a grant: expire what is due, then plan
                    // again.
                    if !self.run_timers(self.clock.now()).is_empty() {
                        continue;
                    }
                    return Err(err);
                }
            };
            match self.commit(catalog, request, plan, now) {
                Ok(reservation) => return Ok(reservation),
                Err(Abort::Done(result)) => return *result,
                Err(Abort::Replan) => {}
            }
        }
        // Capacity kept moving under every plan: a definite refusal that says so.
        Err(LedgerError::InsufficientCapacity {
            requester: request.requester.clone(),
            shortfalls: Vec::new(),
        })
    }

    fn confirm_inner(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
    ) -> Result<Reservation, LedgerError> {
        self.with_record(
            "confirm",
            id,
            fence,
            |record, guards, state, now, outbox| {
                match state.state {
                    ReservationState::Confirmed => return Ok(record.reservation(state)),
                    ReservationState::Pending => {}
                    other => return Err(LedgerError::wrong_state("confirm", &record.id, other)),
                }
                for hold in &state.holds {
                    let dim = &mut guards[hold.slot].dims[hold.dim];
                    dim.pending -= hold.amount;
                    dim.confirmed += hold.amount;
                }
                self.disarm(record, state);
                state.state = ReservationState::Confirmed;
                state.updated_at = now;
                state.expires_at = None;
                outbox.push(Note::Confirmed);
                Ok(record.reservation(state))
            },
        )
    }
}

impl ReservationLedger for ReservationManager {
    fn register_resource(&self, resource: Resource) -> Result<(), LedgerError> {
        // Expired holds must not count against the change.
        self.run_timers(self.clock.now());
        let mut catalog = self.write_catalog();
        if catalog.position(resource.name()).is_some() {
            return Err(LedgerError::DuplicateResource {
                name: resource.name().clone(),
            });
        }
        if let Some(validator) = &self.validator {
            let context = ValidationContext {
                resources: &catalog.resources,
                active: &[],
            };
            validator
                .validate_resource(&resource, &context)
                .map_err(rejected)?;
        }
        let name = resource.name().clone();
        let Some(slot) = Slot::new(&resource) else {
            return Err(invalid(
                "capacities",
                format!("a resource has at most {MAX_DIMS} capacity types"),
            ));
        };
        catalog.insert(resource, Arc::new(slot));
        drop(catalog);
        self.observers
            .publish(self.clock.now(), || EventKind::ResourceRegistered {
                resource: name,
            });
        Ok(())
    }

    fn update_resource(&self, resource: Resource) -> Result<(), LedgerError> {
        self.run_timers(self.clock.now());
        let mut catalog = self.write_catalog();
        let position =
            catalog
                .position(resource.name())
                .ok_or_else(|| LedgerError::UnknownResource {
                    name: resource.name().clone(),
                })?;
        if let Some(validator) = &self.validator {
            let others: Vec<Resource> = catalog
                .resources
                .iter()
                .filter(|r| r.name() != resource.name())
                .cloned()
                .collect();
            let context = ValidationContext {
                resources: &others,
                active: &[],
            };
            validator
                .validate_resource(&resource, &context)
                .map_err(rejected)?;
        }
        let slot = catalog.slots[position].clone();
        {
            let mut state = lock(&slot.state);
            // Check everything first.
            let busy = || LedgerError::ResourceBusy {
                name: resource.name().clone(),
                active: state.holders,
            };
            let mut added = 0;
            for (resource_type, capacity) in resource.capacities() {
                match state.dim(resource_type) {
                    Some(d) => {
                        let dim = &state.dims[d];
                        let in_use = dim.is_held() || dim.leased(slot.raw_free(d)) != 0;
                        if in_use && &dim.unit != capacity.unit() {
                            return Err(invalid(
                                format!("capacities.{resource_type}.unit"),
                                "cannot change the unit of a capacity that is held",
                            ));
                        }
                    }
                    None => added += 1,
                }
            }
            if state.dims.len() + added > MAX_DIMS {
                return Err(invalid(
                    "capacities",
                    format!(
                        "a resource has at most {MAX_DIMS} capacity types, counting removed ones"
                    ),
                ));
            }
            let removed: Vec<usize> = (0..state.dims.len())
                .filter(|&d| {
                    !state.dims[d].removed
                        && resource.capacity_of(&state.dims[d].resource_type).is_none()
                })
                .collect();
            if removed.iter().any(|&d| state.dims[d].is_held()) {
                return Err(busy());
            }
            // Close the removed capacities; a lease may hold some of one, which makes it busy.
            let closed: Vec<(usize, i64)> = removed.iter().map(|&d| (d, slot.close(d))).collect();
            if closed
                .iter()
                .any(|&(d, free)| state.dims[d].leased(free) != 0)
            {
                for (d, free) in closed {
                    slot.reopen(d, free);
                }
                return Err(busy());
            }
            // Apply.
            for (d, _) in closed {
                state.dims[d].removed = true;
            }
            for (resource_type, capacity) in resource.capacities() {
                let fresh = crate::catalog::DimState::from_capacity(resource_type, capacity);
                match state.dim(resource_type) {
                    Some(d) => {
                        let dim = &mut state.dims[d];
                        slot.give(d, fresh.initial_free() - dim.initial_free());
                        dim.unit = fresh.unit;
                        dim.maximum = fresh.maximum;
                        dim.external = fresh.external;
                    }
                    None => {
                        let d = state.dims.len();
                        slot.reopen(d, fresh.initial_free());
                        state.dims.push(fresh);
                    }
                }
            }
        }
        let name = resource.name().clone();
        catalog.resources[position] = resource;
        catalog.changed();
        drop(catalog);
        self.observers
            .publish(self.clock.now(), || EventKind::ResourceUpdated {
                resource: name,
            });
        Ok(())
    }

    fn unregister_resource(&self, name: &ResourceName) -> Result<Resource, LedgerError> {
        self.run_timers(self.clock.now());
        let mut catalog = self.write_catalog();
        let position = catalog
            .position(name)
            .ok_or_else(|| LedgerError::UnknownResource { name: name.clone() })?;
        let slot = catalog.slots[position].clone();
        {
            let state = lock(&slot.state);
            let busy = LedgerError::ResourceBusy {
                name: name.clone(),
                active: state.holders,
            };
            if state.holders > 0 {
                return Err(busy);
            }
            let closed: Vec<(usize, i64)> = (0..state.dims.len())
                .filter(|&d| !state.dims[d].removed)
                .map(|d| (d, slot.close(d)))
                .collect();
            if closed
                .iter()
                .any(|&(d, free)| state.dims[d].leased(free) != 0)
            {
                for (d, free) in closed {
                    slot.reopen(d, free);
                }
                return Err(busy);
            }
        }
        let resource = catalog.remove(position);
        drop(catalog);
        self.observers
            .publish(self.clock.now(), || EventKind::ResourceUnregistered {
                resource: name.clone(),
            });
        Ok(resource)
    }

    fn set_capacity(
        &self,
        name: &ResourceName,
        resource_type: &ResourceType,
        maximum: Quantity,
    ) -> Result<CapacityUsage, LedgerError> {
        self.run_timers(self.clock.now());
        let mut catalog = self.write_catalog();
        let position = catalog
            .position(name)
            .ok_or_else(|| LedgerError::UnknownResource { name: name.clone() })?;
        let old = catalog.resources[position]
            .capacity_of(resource_type)
            .ok_or_else(|| LedgerError::UnknownResource { name: name.clone() })?
            .clone();
        let new = ResourceCapacity::new(old.current(), maximum, old.unit().clone())
            .map_err(|err| invalid("maximum", err.to_string()))?;
        let slot = catalog.slots[position].clone();
        let usage = {
            let mut state = lock(&slot.state);
            let d = state
                .dim(resource_type)
                .ok_or_else(|| LedgerError::UnknownResource { name: name.clone() })?;
            let dim = &mut state.dims[d];
            slot.give(d, maximum.as_milli() - dim.maximum);
            dim.maximum = maximum.as_milli();
            dim.usage(name, slot.raw_free(d))
        };
        let resource = catalog.resources[position]
            .clone()
            .with_capacity(resource_type.clone(), new);
        catalog.resources[position] = resource;
        catalog.changed();
        drop(catalog);
        self.observers
            .publish(self.clock.now(), || EventKind::CapacityChanged {
                resource: name.clone(),
                resource_type: resource_type.clone(),
                old_maximum: old.maximum(),
                new_maximum: maximum,
                draining: usage.draining,
            });
        Ok(usage)
    }

    fn resources(&self) -> Result<Vec<Resource>, LedgerError> {
        Ok(self.read_catalog().resources.clone())
    }

    fn reserve(&self, request: &ReservationRequest) -> Result<Reservation, LedgerError> {
        self.reserve_with(request, true)
    }

    fn try_reserve(
        &self,
        request: &ReservationRequest,
    ) -> Result<Option<Reservation>, LedgerError> {
        match self.reserve_with(request, false) {
            Err(LedgerError::InsufficientCapacity { .. }) => Ok(None),
            other => other.map(Some),
        }
    }

    fn confirm(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
    ) -> Result<Reservation, LedgerError> {
        self.confirm_inner(id, fence)
    }
    fn renew(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
        ttl: Duration,
    ) -> Result<Reservation, LedgerError> {
        if ttl.is_zero() {
            return Err(invalid("ttl", "must be positive"));
        }
        self.with_record("renew", id, fence, |record, _, state, now, outbox| {
            match state.state {
                ReservationState::Confirmed => return Ok(record.reservation(state)),
                ReservationState::Pending => {}
                other => return Err(LedgerError::wrong_state("renew", &record.id, other)),
            }
            let expires_at = now + ttl;
            state.expires_at = Some(expires_at);
            state.updated_at = now;
            self.arm(record, state, expires_at);
            outbox.push(Note::Renewed { expires_at });
            Ok(record.reservation(state))
        })
    }

    fn release(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
    ) -> Result<Reservation, LedgerError> {
        self.finish(Ending::Release, id, fence, None)
    }

    fn cancel(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
    ) -> Result<Reservation, LedgerError> {
        self.finish(Ending::Cancel, id, fence, None)
    }

    fn preempt(
        &self,
        id: &ReservationId,
        by: Option<&ReservationId>,
    ) -> Result<Reservation, LedgerError> {
        self.finish(Ending::Preempt, id, None, by)
    }

    fn shrink(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
        requirement: usize,
        to: Quantity,
    ) -> Result<Reservation, LedgerError> {
        self.with_record("shrink", id, fence, |record, guards, state, now, outbox| {
            if !state.state.holds_capacity() {
                return Err(LedgerError::wrong_state("shrink", &record.id, state.state));
            }
            let mut items = state.items.to_vec();
            let Some((index, from)) = shrink_item(&mut items, requirement, to)? else {
                return Ok(record.reservation(state));
            };
            let given_back = from.as_milli() - to.as_milli();
            let resource = items[index].resource.clone();
            let resource_type = items[index].resource_type.clone();
            // The hold of that type on that resource gives the difference back.
            let Some(h) = state
                .holds
                .iter()
                .position(|h| h.resource_type == resource_type && h.resource == resource)
            else {
                return Err(invalid("requirement", "its hold is not found"));
            };
            let hold = &mut state.holds[h];
            hold.amount -= given_back;
            let dim = &mut guards[hold.slot].dims[hold.dim];
            if state.state == ReservationState::Pending {
                dim.pending -= given_back;
            } else {
                dim.confirmed -= given_back;
            }
            record.lock_set[hold.slot].give(hold.dim, given_back);
            state.items = items.into();
            state.updated_at = now;
            outbox.push(Note::Shrunk {
                requirement,
                resource,
                from,
                to,
            });
            Ok(record.reservation(state))
        })
    }

    fn reserve_preempting(
        &self,
        request: &ReservationRequest,
        victims: &[ReservationId],
    ) -> Result<Reservation, LedgerError> {
        // Grants read the catalog: holding it for writing keeps every other grant out while
        // the victims end and the request is placed, so the freed capacity goes to it.
        // (Permits take capacity without the catalog; they can still race for it.)
        let catalog = self.write_catalog();
        self.run_timers(self.clock.now());
        if let Some(id) = &request.id
            && let Some(existing) = self.records.get(id).map(|r| r.clone())
        {
            return Self::retry_of(&existing, request);
        }
        if let Some(first) = request.violations().into_iter().next() {
            return Err(invalid(first.path, first.message));
        }
        let mut extra: Vec<(usize, usize, i64)> = Vec::new();
        for id in victims {
            let record = self
                .records
                .get(id)
                .map(|r| r.clone())
                .ok_or_else(|| LedgerError::UnknownReservation { id: id.clone() })?;
            let state = lock(&record.state);
            if !state.state.holds_capacity() {
                return Err(LedgerError::wrong_state("preempt", &record.id, state.state));
            }
            for hold in &state.holds {
                if let Some(position) = catalog.position(&hold.resource) {
                    extra.push((position, hold.dim, hold.amount));
                }
            }
        }
        // Nothing changes unless the request fits with the victims' capacity.
        self.plan(&catalog, request, true, &extra)?;
        let preemptor = request.id.clone().unwrap_or_else(ReservationId::generate);
        for id in victims {
            self.finish(Ending::Preempt, id, None, Some(&preemptor))?;
        }
        self.reserve_in(&catalog, &request.clone().with_id(preemptor), true)
    }

    fn next_expiry(&self) -> Result<Option<Duration>, LedgerError> {
        // The earliest expiry only: forgetting ended reservations frees no capacity, so a
        // waiter has no reason to wake for it (and a short timed park is dear: it makes the
        // kernel reprogram its timer).
        let next = lock(&self.timers).next();
        Ok(next.map(|at| at.saturating_duration_since(self.clock.now())))
    }

    fn get(&self, id: &ReservationId) -> Result<Reservation, LedgerError> {
        self.with_record("get", id, None, |record, _, state, _, _| {
            Ok(record.reservation(state))
        })
    }

    fn expire_due(&self) -> Result<Vec<Reservation>, LedgerError> {
        Ok(self.run_timers(self.clock.now()))
    }

    fn snapshot(&self) -> Result<LedgerSnapshot, LedgerError> {
        let catalog = self.read_catalog();
        let now = self.clock.now();
        loop {
            self.run_timers(now);
            // Every state change holds the locks of the slots it touches, and the slots are in
            // registration order, which is the global lock order: holding all of them gives one
            // consistent moment.
            let guards: Vec<MutexGuard<'_, SlotState>> =
                catalog.slots.iter().map(|slot| lock(&slot.state)).collect();
            let mut active: Vec<Reservation> = self
                .records
                .iter()
                .filter_map(|record| {
                    let state = lock(&record.state);
                    state
                        .state
                        .holds_capacity()
                        .then(|| record.reservation(&state))
                })
                .collect();
            // A grant that read the clock before `now` may have committed since the timers
            // ran, with a deadline already past: run its timer and look again, so that no
            // hold past its deadline is shown pending.
            let overdue = active.iter().any(|r| {
                r.state == ReservationState::Pending && r.expires_at.is_some_and(|at| at <= now)
            });
            if overdue {
                continue;
            }
            let usage = guards
                .iter()
                .zip(&catalog.resources)
                .zip(&catalog.slots)
                .flat_map(|((state, resource), slot)| slot.usage(state, resource.name()))
                .collect();
            drop(guards);
            active.sort_by_key(|r| r.fencing_token);
            return Ok(LedgerSnapshot {
                taken_at: now,
                resources: catalog.resources.clone(),
                usage,
                active,
                last_fencing_token: FencingToken(self.last_token.load(Ordering::Acquire)),
            });
        }
    }

    fn audit(&self) -> Result<AuditReport, LedgerError> {
        self.snapshot().map(|snapshot| snapshot.audit())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rm_model::{
        AffinityKind, AffinityTerm, LabelKey, Labels, RequesterId, Resource, ResourceCapacity,
        ResourceRequirement, ResourceType, Selector, Topology, Unit,
    };

    use super::*;

    /// What the holder index should hold: every active hold, counted by requester and by
    /// label on each resource it holds.
    fn expected(manager: &ReservationManager) -> Vec<(String, String, u32)> {
        let mut counts: BTreeMap<(String, String), u32> = BTreeMap::new();
        for record in manager.records.iter() {
            let state = lock(&record.state);
            if !state.state.holds_capacity() {
                continue;
            }
            for hold in &state.holds {
                let resource = hold.resource.to_string();
                *counts
                    .entry((record.requester.to_string(), resource.clone()))
                    .or_default() += 1;
                for (key, value) in record.labels.iter() {
                    *counts
                        .entry((format!("{key}={value}"), resource.clone()))
                        .or_default() += 1;
                }
            }
        }
        counts.into_iter().map(|((k, r), c)| (k, r, c)).collect()
    }

    /// Eight threads grant, confirm and cancel labelled holds while some of them start to
    /// place with anti-affinity part-way, which switches the holder index on while holds come
    /// and go; once they are done, the index counts exactly the active holds.
    #[test]
    fn the_holder_index_counts_exactly_the_active_holds() {
        let rounds = rm_testkit::stress_rounds(300);
        for run in 0..4_u64 {
            let manager = ReservationManager::builder()
                .default_ttl(Duration::from_secs(3600))
                .retention(Duration::from_millis(1))
                .build()
                .expect("valid settings");
            for n in 0..8 {
                let node = Resource::new(
                    &format!("n{n}"),
                    ResourceType::Compute,
                    ResourceCapacity::of(64, Unit::CORES).expect("valid"),
                )
                .expect("valid")
                .with_label("zone", &format!("z{}", n % 4))
                .expect("valid");
                manager.register_resource(node).expect("register");
            }
            std::thread::scope(|scope| {
                for thread in 0..8_u64 {
                    let manager = &manager;
                    scope.spawn(move || {
                        let mut rng = rm_testkit::Rng::new(run * 8 + thread + 1);
                        let team = ["a", "b", "c"][thread as usize % 3];
                        let labels = Labels::try_from(&[("team", team)][..]).expect("valid");
                        let mut mine = Vec::new();
                        for round in 0..rounds {
                            let mut requirement =
                                ResourceRequirement::new(ResourceType::Compute, 1, Unit::CORES);
                            if thread % 2 == 0 && round > rounds / 3 {
                                requirement = requirement.with_affinity(AffinityTerm::preferred(
                                    AffinityKind::AntiAffinity,
                                    Selector::labels(labels.clone()),
                                    Topology::Label(LabelKey::new("zone").expect("valid")),
                                    10,
                                ));
                            }
                            let request = ReservationRequest::new(
                                RequesterId::new(team).expect("valid"),
                                vec![requirement],
                            )
                            .with_labels(labels.clone());
                            if let Ok(held) = manager.reserve(&request) {
                                if rng.below(2) == 0 {
                                    let _ = manager.confirm(&held.id, None);
                                }
                                mine.push(held.id);
                            }
                            if mine.len() > 8 || (!mine.is_empty() && rng.below(2) == 0) {
                                let id = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                                let _ = manager.cancel(&id, None);
                            }
                        }
                    });
                }
            });
            assert!(manager.holders.is_ready());
            assert_eq!(manager.holders.contents(), expected(&manager), "run {run}");
        }
    }
}
