//! A grant's holds: what it sends to the `reserve` function, and how the process's view counts
//! them while the grant is in flight.

use std::sync::{Arc, RwLock};

use crate::view::{PgSlot, View, read};

/// What a grant sends for its holds: one per capacity, amounts summed over requirements, in
/// the global lock order (catalog position, then type by bytes), which the `reserve`
/// function locks them in and the reservation keeps them in for its release.
#[derive(Default)]
pub(crate) struct Holds {
    pub(crate) resources: Vec<String>,
    pub(crate) types: Vec<String>,
    pub(crate) amounts: Vec<i64>,
    pub(crate) generations: Vec<i64>,
}

impl Holds {
    /// Adds `sign` times the amounts to what `view` says is free of their capacities.
    pub(crate) fn credit(&self, view: &View, sign: i64) {
        for h in 0..self.amounts.len() {
            view.credit(&self.resources[h], &self.types[h], sign * self.amounts[h]);
        }
    }
}

/// A plan's holds counted as taken in the view while its grant is in flight, so that this
/// process's other planners see them at once and choose other rows (instead of queueing on
/// the same row locks). They are kept apart from what the view read from the rows (which a
/// read of the rows replaces: the grant is not in them until it commits), on the slots they
/// were added to (a new read of the resources replaces the slots); when the grant commits
/// ([`InFlight::landed`]) they move into what is free, otherwise they are given back.
pub(crate) struct InFlight<'a> {
    view: &'a RwLock<View>,
    holds: &'a Holds,
    taken: Vec<(Arc<PgSlot>, usize, i64)>,
    landed: bool,
}

impl<'a> InFlight<'a> {
    pub(crate) fn take(view_lock: &'a RwLock<View>, holds: &'a Holds) -> InFlight<'a> {
        let view = read(view_lock);
        let mut taken = Vec::with_capacity(holds.amounts.len());
        for h in 0..holds.amounts.len() {
            if let Some((slot, d)) = view.slot(&holds.resources[h], &holds.types[h]) {
                slot.add_in_flight(d, holds.amounts[h]);
                taken.push((slot.clone(), d, holds.amounts[h]));
            }
        }
        InFlight {
            view: view_lock,
            holds,
            taken,
            landed: false,
        }
    }

    /// The grant committed: the holds are taken from what is free.
    pub(crate) fn landed(mut self) {
        self.landed = true;
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        // Taken from what is free before the flight ends: a planner in between counts the
        // holds twice (for a moment), never not at all.
        if self.landed {
            self.holds.credit(&read(self.view), -1);
        }
        for (slot, d, amount) in &self.taken {
            slot.add_in_flight(*d, -amount);
        }
    }
}
