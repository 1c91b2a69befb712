//! The accounting of the registered resources: one [`Slot`] per resource with its accounting
//! behind a mutex and atomic counters of what is free. The catalog placement reads
//! ([`rm_plan::Catalog`]) holds them by position.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rm_model::{
    CapacityUsage, Quantity, Resource, ResourceCapacity, ResourceName, ResourceType, Unit,
};
pub(crate) use rm_plan::MAX_DIMS;

/// The registered resources as placement reads them, each with its slot.
pub(crate) type Catalog = rm_plan::Catalog<Slot>;

/// What `free` is set to while a capacity is closed (removed or unregistered): far below any
/// amount, so no lease or grant can take from it, and far above `i64::MIN`, so giving back
/// cannot overflow.
pub(crate) const CLOSED: i64 = i64::MIN / 4;

/// Locks a mutex, recovering from poisoning: every mutation in this crate is computed before
/// it is applied, so a panic elsewhere cannot leave the guarded state half-changed.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The accounting of one capacity, in thousandths of its unit, kept under the slot's lock.
/// What is free lives beside it in the slot's atomic counter, which leases change without
/// the lock; whatever is neither free nor accounted here is leased.
#[derive(Clone, Debug)]
pub(crate) struct DimState {
    pub(crate) resource_type: ResourceType,
    pub(crate) unit: Unit,
    pub(crate) maximum: i64,
    pub(crate) external: i64,
    pub(crate) pending: i64,
    pub(crate) confirmed: i64,
    /// Removed by an update; kept so that indices stay stable.
    pub(crate) removed: bool,
}

impl DimState {
    pub(crate) fn from_capacity(
        resource_type: &ResourceType,
        capacity: &ResourceCapacity,
    ) -> DimState {
        DimState {
            resource_type: resource_type.clone(),
            unit: capacity.unit().clone(),
            maximum: capacity.maximum().as_milli(),
            external: capacity.current().as_milli(),
            pending: 0,
            confirmed: 0,
            removed: false,
        }
    }

    /// What is free with nothing pending, confirmed or leased.
    pub(crate) fn initial_free(&self) -> i64 {
        self.maximum.saturating_sub(self.external)
    }

    pub(crate) fn is_held(&self) -> bool {
        self.pending != 0 || self.confirmed != 0
    }

    /// What leases hold, given the free counter.
    pub(crate) fn leased(&self, free: i64) -> i64 {
        let leased = i128::from(self.maximum)
            - i128::from(self.external)
            - i128::from(self.pending)
            - i128::from(self.confirmed)
            - i128::from(free);
        leased.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    pub(crate) fn usage(&self, resource: &ResourceName, free: i64) -> CapacityUsage {
        CapacityUsage {
            resource: resource.clone(),
            resource_type: self.resource_type.clone(),
            unit: self.unit.clone(),
            capacity: Quantity::from_milli(self.maximum),
            external: Quantity::from_milli(self.external),
            pending: Quantity::from_milli(self.pending),
            confirmed: Quantity::from_milli(self.confirmed),
            leased: Quantity::from_milli(self.leased(free)),
            free: Quantity::from_milli(free.max(0)),
            draining: free < 0,
        }
    }
}

/// What a slot's mutex guards.
#[derive(Debug)]
pub(crate) struct SlotState {
    /// One entry per capacity; indices are stable (removed types stay, marked), and index `d`
    /// is the slot's free counter `d`.
    pub(crate) dims: Vec<DimState>,
    /// How many active reservations hold capacity here.
    pub(crate) holders: usize,
}

impl SlotState {
    pub(crate) fn dim(&self, resource_type: &ResourceType) -> Option<usize> {
        self.dims
            .iter()
            .position(|d| !d.removed && &d.resource_type == resource_type)
    }
}

/// One registered resource.
///
/// Slots are kept in registration order and never reordered (removal keeps the order of the
/// rest): that order is the global lock order.
#[derive(Debug)]
pub(crate) struct Slot {
    /// What is free per capacity (thousandths of its unit): the one place a grant or lease
    /// takes capacity from, by compare-and-swap, so leases need no lock. Negative while
    /// draining.
    free: [AtomicI64; MAX_DIMS],
    pub(crate) state: Mutex<SlotState>,
    /// The resource's name (a resource keeps its name for its slot's life).
    pub(crate) name: ResourceName,
}

impl Slot {
    /// A slot for `resource`, or `None` when it has more than [`MAX_DIMS`] capacities.
    pub(crate) fn new(resource: &Resource) -> Option<Slot> {
        let dims: Vec<DimState> = resource
            .capacities()
            .map(|(resource_type, capacity)| DimState::from_capacity(resource_type, capacity))
            .collect();
        if dims.len() > MAX_DIMS {
            return None;
        }
        let slot = Slot {
            name: resource.name().clone(),
            free: Default::default(),
            state: Mutex::new(SlotState { dims, holders: 0 }),
        };
        for (d, dim) in lock(&slot.state).dims.iter().enumerate() {
            slot.free[d].store(dim.initial_free(), Ordering::Release);
        }
        Some(slot)
    }

    /// What is free of capacity `d` (zero while draining).
    pub(crate) fn free(&self, d: usize) -> i64 {
        self.raw_free(d).max(0)
    }

    /// The free counter of capacity `d`, negative while draining.
    pub(crate) fn raw_free(&self, d: usize) -> i64 {
        self.free[d].load(Ordering::Acquire)
    }

    /// Takes `amount` of capacity `d` if that much is free.
    pub(crate) fn take(&self, d: usize, amount: i64) -> bool {
        self.free[d]
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |free| {
                (free >= amount).then(|| free - amount)
            })
            .is_ok()
    }

    /// Gives back `amount` of capacity `d` (or changes its size by `amount`).
    pub(crate) fn give(&self, d: usize, amount: i64) {
        self.free[d].fetch_add(amount, Ordering::AcqRel);
    }

    /// Closes capacity `d` to new takers and returns what was free.
    pub(crate) fn close(&self, d: usize) -> i64 {
        self.free[d].swap(CLOSED, Ordering::AcqRel)
    }

    /// Reopens a capacity closed with `free` free.
    pub(crate) fn reopen(&self, d: usize, free: i64) {
        self.free[d].store(free, Ordering::Release);
    }

    /// The usage of every live capacity, from the locked state.
    pub(crate) fn usage(&self, state: &SlotState, name: &ResourceName) -> Vec<CapacityUsage> {
        let mut usage = state
            .dims
            .iter()
            .enumerate()
            .filter(|(_, dim)| !dim.removed)
            .map(|(d, dim)| dim.usage(name, self.raw_free(d)))
            .collect::<Vec<_>>();
        // Types added by an update sit at the end of `dims`; report in type order.
        usage.sort_by(|a, b| a.resource_type.cmp(&b.resource_type));
        usage
    }
}

/// What the planner reads of a slot: the free counters without a lock, the capacity types
/// and explanations under it.
impl rm_plan::Slot for Slot {
    #[inline]
    fn free(&self, dim: usize) -> i64 {
        Slot::free(self, dim)
    }

    fn dim(&self, resource_type: &ResourceType) -> Option<usize> {
        lock(&self.state).dim(resource_type)
    }

    fn explain(&self, resource_type: &ResourceType) -> Option<(Quantity, bool)> {
        let state = lock(&self.state);
        let d = state.dim(resource_type)?;
        let raw = self.raw_free(d);
        Some((Quantity::from_milli(raw.max(0)), raw < 0))
    }
}
