//! One granted reservation as the manager keeps it: what it holds where, and its life-cycle
//! state behind a small mutex that is only changed while the record's slots are locked.

use std::sync::{Arc, Mutex, MutexGuard};

use rm_model::{
    FencingToken, Labels, Priority, RequesterId, Reservation, ReservationId, ReservationItem,
    ReservationRequest, ReservationState, ResourceName, ResourceType, Timestamp,
};

use crate::catalog::{Slot, SlotState, lock};

/// What a reservation holds of one capacity of one slot (items of the same type on the same
/// slot are summed).
#[derive(Debug)]
pub(crate) struct Hold {
    /// Index into [`Record::lock_set`].
    pub(crate) slot: usize,
    /// The slot's resource.
    pub(crate) resource: ResourceName,
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
    /// The request, kept when the caller named the id, to tell a retry from a conflict.
    pub(crate) request: Option<ReservationRequest>,
    pub(crate) state: Mutex<RecordState>,
}

impl Record {
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
