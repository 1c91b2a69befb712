//! [`ReservationManager`]: the embedded, concurrent implementation of the ledger contract.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use dashmap::mapref::entry::Entry;
use rm_model::{
    AuditReport, CapacityUsage, Clock, Ending, EventKind, EventSink, FencingToken, LedgerError,
    LedgerSnapshot, Quantity, RequesterId, Reservation, ReservationId, ReservationLedger,
    ReservationRequest, ReservationState, ReservationStrategy, Resource, ResourceCapacity,
    ResourceName, ResourceRequirement, ResourceType, SystemClock, Timestamp, ValidationContext,
    ValidationErrors, Validator, shrink_item,
};
use rm_plan::{Affinity, Placement};
use smallvec::SmallVec;

use crate::Error;
use crate::catalog::{Catalog, MAX_DIMS, Slot, SlotState, lock};
use crate::events::{Observers, Subscription};
use crate::holders::HolderIndex;
use crate::permit::PermitPool;
use crate::record::{Grant, Hold, Items, Record, RecordState};
use crate::table::RecordTable;
use crate::timers::TimerHeap;

mod builder;
mod commit;
mod expiry;
mod ledger;
mod plan;
mod resources;
#[cfg(test)]
mod tests;

pub use builder::ReservationManagerBuilder;

/// How many times a grant re-plans when another thread took the capacity it planned on
/// between planning (lock-free) and committing (under the slot locks).
const COMMIT_ATTEMPTS: usize = 32;

/// Inline storage for the few placements, slots and holds of a typical request, so that
/// planning and committing it does not allocate.
type Small<T> = SmallVec<[T; 4]>;

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

/// The embedded reservation ledger. See the [crate docs](crate) for its design.
pub struct ReservationManager {
    clock: Arc<dyn Clock>,
    default_ttl: Duration,
    retention: Duration,
    validator: Option<Arc<dyn Validator>>,
    observers: Observers,
    catalog: RwLock<Catalog>,
    /// Remembered reservations by id, and forgotten records kept for reuse.
    records: RecordTable,
    /// The expiry timers of pending holds, one each.
    timers: Mutex<TimerHeap>,
    /// Ended reservations to forget, in the order they ended: retention is one duration for
    /// all, so the order they ended is the order they are due.
    forgets: Mutex<VecDeque<(Timestamp, FencingToken, ReservationId)>>,
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
    /// How long past a retention deadline forgetting may wait, so that one sweep forgets
    /// many reservations instead of every operation forgetting one (an eighth of the
    /// retention, at most a second). Lookups never wait: one that finds an ended
    /// reservation past its retention forgets it first (see [`Self::lapsed`]).
    forget_slack: Duration,
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
    /// A diagnostic: it counts them one by one, so its cost grows with their number.
    pub fn remembered(&self) -> usize {
        self.forget_due(self.clock.now());
        self.records.len()
    }

    /// Whether an ended reservation's retention has run out by `now` (it is forgotten, even
    /// if the sweep has not removed it yet).
    fn lapsed(&self, state: &RecordState, now: Timestamp) -> bool {
        !state.state.holds_capacity() && state.updated_at + self.retention <= now
    }

    /// The record of `id`, unless there is none or its retention has run out by `now` (then
    /// it is forgotten on the spot).
    fn find(&self, id: &ReservationId, now: Timestamp) -> Option<Arc<Record>> {
        let record = self.records.get(id)?;
        if self.lapsed(&lock(&record.state), now) {
            self.forget_due(now);
            return None;
        }
        Some(record)
    }

    fn read_catalog(&self) -> RwLockReadGuard<'_, Catalog> {
        self.catalog.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_catalog(&self) -> RwLockWriteGuard<'_, Catalog> {
        self.catalog.write().unwrap_or_else(PoisonError::into_inner)
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
        // Behind a queued entry, the sweep is already due no later than this one needs.
        if forgets.is_empty() {
            self.next_forget
                .fetch_min((at + self.forget_slack).as_nanos(), Ordering::AcqRel);
        }
        forgets.push_back((at, record.token, record.id.clone()));
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
        let unknown = || LedgerError::UnknownReservation { id: id.clone() };
        let record = self.records.get(id).ok_or_else(unknown)?;
        if let Some(presented) = fence
            && presented != record.token
        {
            if self.lapsed(&lock(&record.state), now) {
                self.forget_due(now);
                return Err(unknown());
            }
            return Err(LedgerError::StaleFencingToken {
                operation,
                id: id.clone(),
                presented,
                current: record.token,
            });
        }
        let mut guards = record.lock_slots();
        let mut state = lock(&record.state);
        if self.lapsed(&state, now) {
            drop((guards, state));
            self.forget_due(now);
            return Err(unknown());
        }
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
}
