//! One granted reservation as the manager keeps it: what it holds where, and its life-cycle
//! state behind a small mutex that is only changed while the record's slots are locked.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rm_model::{
    FencingToken, Labels, Priority, RequesterId, Reservation, ReservationId, ReservationItem,
    ReservationRequest, ReservationState, ResourceName, ResourceType, Timestamp,
};

use rm_plan::Placement;

use crate::catalog::{Catalog, Slot, SlotState, lock};

/// What a reservation holds of one capacity of one slot (items of the same type on the same
/// slot are summed).
#[derive(Debug)]
pub(crate) struct Hold {
    /// Index into [`Record::lock_set`] (whose slot names the resource: see
    /// [`Record::resource_of`]).
    pub(crate) slot: usize,
    /// Index of the capacity in the slot (stable for the slot's life).
    pub(crate) dim: usize,
    pub(crate) resource_type: ResourceType,
    /// Thousandths of the slot's unit.
    pub(crate) amount: i64,
}

#[derive(Debug)]
pub(crate) struct RecordState {
    pub(crate) state: ReservationState,
    pub(crate) updated_at: Timestamp,
    pub(crate) expires_at: Option<Timestamp>,
    /// What was granted (elastic items shrink, so this changes).
    pub(crate) items: Arc<[ReservationItem]>,
    pub(crate) holds: Vec<Hold>,
    /// The handle of its expiry timer while pending (see [`crate::timers::TimerHeap`]).
    pub(crate) timer: Option<usize>,
    /// Whether its holds are in the holder index (see [`crate::holders`]).
    pub(crate) indexed: bool,
}

#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) id: ReservationId,
    pub(crate) requester: RequesterId,
    pub(crate) priority: Priority,
    pub(crate) labels: Labels,
    pub(crate) preemptible: bool,
    pub(crate) token: FencingToken,
    pub(crate) created_at: Timestamp,
    /// The slots it holds capacity on, by ascending order: the locks it takes, in that order.
    pub(crate) lock_set: Vec<Arc<Slot>>,
    /// The request, kept when the caller named the id, to tell a retry from a conflict
    /// (boxed: most ids are generated, and a smaller record is cheaper to keep and reuse).
    pub(crate) request: Option<Box<ReservationRequest>>,
    pub(crate) state: Mutex<RecordState>,
}

/// What a new grant's items are: one per placement of its plan (of the grant's request),
/// on the catalog's resources.
#[derive(Clone, Copy)]
pub(crate) struct Items<'a> {
    pub(crate) plan: &'a [Placement],
    pub(crate) catalog: &'a Catalog,
}

impl Items<'_> {
    fn resource(&self, placement: &Placement) -> &ResourceName {
        self.catalog.resources[placement.position].name()
    }
}

/// What a new grant puts in its record, besides the items, holds and slots.
pub(crate) struct Grant<'r> {
    pub(crate) id: ReservationId,
    pub(crate) request: &'r ReservationRequest,
    pub(crate) token: FencingToken,
    pub(crate) now: Timestamp,
    /// The pending hold's deadline; none for a hold confirmed on grant.
    pub(crate) expires_at: Option<Timestamp>,
}

impl Record {
    /// The record of a new grant (pending, or confirmed when it has no deadline), filled into `spare` (a record emptied by
    /// [`Record::empty_for_reuse`]) when one is given, so that its storage (the record, its
    /// items, holds and slot list) is reused instead of allocated.
    pub(crate) fn fill(
        spare: Option<Arc<Record>>,
        grant: Grant<'_>,
        items: Items<'_>,
        holds: impl IntoIterator<Item = Hold>,
        slots: &[&Arc<Slot>],
    ) -> Arc<Record> {
        let request = grant.request;
        let mut record = spare.unwrap_or_else(|| {
            Arc::new(Record {
                id: grant.id.clone(),
                requester: request.requester.clone(),
                priority: request.priority,
                labels: Labels::default(),
                preemptible: false,
                token: grant.token,
                created_at: grant.now,
                lock_set: Vec::new(),
                request: None,
                state: Mutex::new(RecordState {
                    state: ReservationState::Pending,
                    updated_at: grant.now,
                    expires_at: None,
                    items: Arc::from([]),
                    holds: Vec::new(),
                    timer: None,
                    indexed: false,
                }),
            })
        });
        let Some(fields) = Arc::get_mut(&mut record) else {
            // A spare is never shared (it was unique when emptied and nobody can reach it
            // since), but should that ever change, a fresh record is still correct.
            return Record::fill(None, grant, items, holds, slots);
        };
        fields.id = grant.id;
        fields.requester.clone_from(&request.requester);
        fields.priority = request.priority;
        fields.labels.clone_from(&request.labels);
        fields.preemptible = request.preemptible;
        fields.token = grant.token;
        fields.created_at = grant.now;
        // A spare keeps the slots of its last life: when they are the same, nothing changes
        // (no reference counts move).
        let same_slots = fields.lock_set.len() == slots.len()
            && fields
                .lock_set
                .iter()
                .zip(slots)
                .all(|(a, b)| Arc::ptr_eq(a, b));
        if !same_slots {
            fields.lock_set.clear();
            fields
                .lock_set
                .extend(slots.iter().map(|&slot| slot.clone()));
        }
        // A named request is kept to tell a retry from a conflict; the kept copy of the
        // record's last life is refilled in place.
        match (&mut fields.request, request.id.is_some()) {
            (Some(kept), true) => kept.as_mut().clone_from(request),
            (kept, named) => *kept = named.then(|| Box::new(request.clone())),
        }
        let state = fields
            .state
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        state.state = match grant.expires_at {
            Some(_) => ReservationState::Pending,
            None => ReservationState::Confirmed,
        };
        state.updated_at = grant.now;
        state.expires_at = grant.expires_at;
        state.timer = None;
        state.indexed = false;
        state.holds.clear();
        state.holds.extend(holds);
        match Arc::get_mut(&mut state.items) {
            // Nobody kept a reservation of the record's last life: overwrite its items.
            Some(old) if old.len() == items.plan.len() => {
                for (old, placement) in old.iter_mut().zip(items.plan) {
                    placement.write_item(old, request, items.resource(placement));
                }
            }
            _ => {
                state.items = items
                    .plan
                    .iter()
                    .map(|p| p.item(request, items.resource(p)))
                    .collect();
            }
        }
        record
    }

    /// Empties a forgotten record so that [`Record::fill`] can reuse it, keeping its storage;
    /// false when someone else still holds it (then it is simply dropped).
    pub(crate) fn empty_for_reuse(self: &mut Arc<Self>) -> bool {
        let Some(fields) = Arc::get_mut(self) else {
            return false;
        };
        // Let go of the labels, keep the storage (the kept request and the slots too: a spare
        // is unreachable, and the next grant overwrites, keeps or drops them; the spare list
        // is bounded, so this keeps at most that many slots of unregistered resources alive).
        fields.labels = Labels::default();
        let state = fields
            .state
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        state.holds.clear();
        state.timer = None;
        true
    }

    pub(crate) fn reservation(&self, state: &RecordState) -> Reservation {
        Reservation {
            id: self.id.clone(),
            requester: self.requester.clone(),
            priority: self.priority,
            state: state.state,
            items: state.items.clone(),
            fencing_token: self.token,
            created_at: self.created_at,
            updated_at: state.updated_at,
            expires_at: state.expires_at,
            labels: self.labels.clone(),
            preemptible: self.preemptible,
        }
    }

    /// The reservation as it is now, without the slot locks (a state read is atomic on its
    /// own).
    pub(crate) fn current(&self) -> Reservation {
        self.reservation(&lock(&self.state))
    }

    /// The resource a hold of this record is on.
    pub(crate) fn resource_of(&self, hold: &Hold) -> &ResourceName {
        &self.lock_set[hold.slot].name
    }

    /// Locks the record's slots in the global order.
    pub(crate) fn lock_slots(&self) -> Guards<'_> {
        match self.lock_set.as_slice() {
            [only] => Guards::One([lock(&only.state)]),
            slots => Guards::Many(slots.iter().map(|slot| lock(&slot.state)).collect()),
        }
    }
}

/// The guards of a record's slots: one without allocating, the common case, or several.
pub(crate) enum Guards<'a> {
    One([MutexGuard<'a, SlotState>; 1]),
    Many(Vec<MutexGuard<'a, SlotState>>),
}

impl<'a> std::ops::Deref for Guards<'a> {
    type Target = [MutexGuard<'a, SlotState>];
    fn deref(&self) -> &Self::Target {
        match self {
            Guards::One(one) => one,
            Guards::Many(many) => many,
        }
    }
}

impl std::ops::DerefMut for Guards<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            Guards::One(one) => one,
            Guards::Many(many) => many,
        }
    }
}
