//! The process's view of the pool: the registered resources as the planner reads them, and
//! what was free of each capacity when last read or changed by this process, less what its
//! grants in flight take (a grant counts as taken from the moment it is sent: see
//! `InFlight`).
//!
//! The view only guides planning. Every grant is checked against the rows themselves (the
//! guarded update in `reserve`), so a view that is behind can cost a re-plan, never an
//! over-allocation; a refusal is only given after planning against a fresh read.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};
use std::time::Instant;

use rm_model::{Quantity, ResourceType};
use rm_plan::MAX_DIMS;

/// One resource's capacities as the planner reads them.
#[derive(Debug)]
pub(crate) struct PgSlot {
    /// The capacity types, by dimension.
    pub(crate) types: Vec<ResourceType>,
    /// Free per dimension (negative while draining), in thousandths of the unit: as last
    /// read from the rows, with this process's committed changes since.
    pub(crate) free: [AtomicI64; MAX_DIMS],
    /// Taken per dimension by this process's grants in flight (sent, not yet answered): not
    /// in the rows until they commit, so a read of the rows leaves them alone.
    pub(crate) in_flight: [AtomicI64; MAX_DIMS],
    /// The resource's generation: a grant planned on an older description is refused by the
    /// database.
    pub(crate) generation: i64,
}

impl PgSlot {
    pub(crate) fn new(types: Vec<ResourceType>, generation: i64) -> PgSlot {
        PgSlot {
            types,
            free: Default::default(),
            in_flight: Default::default(),
            generation,
        }
    }

    /// What the planner may count on: free less what grants in flight take.
    pub(crate) fn raw_free(&self, dim: usize) -> i64 {
        self.free[dim]
            .load(Ordering::Acquire)
            .saturating_sub(self.in_flight[dim].load(Ordering::Acquire))
    }

    pub(crate) fn set(&self, dim: usize, free: i64) {
        self.free[dim].store(free, Ordering::Release);
    }

    pub(crate) fn add(&self, dim: usize, delta: i64) {
        self.free[dim].fetch_add(delta, Ordering::AcqRel);
    }

    /// Adds `delta` to what grants in flight take of dimension `dim`.
    pub(crate) fn add_in_flight(&self, dim: usize, delta: i64) {
        self.in_flight[dim].fetch_add(delta, Ordering::AcqRel);
    }
}

impl rm_plan::Slot for PgSlot {
    #[inline]
    fn free(&self, dim: usize) -> i64 {
        self.raw_free(dim).max(0)
    }

    fn dim(&self, resource_type: &ResourceType) -> Option<usize> {
        self.types.iter().position(|t| t == resource_type)
    }

    fn explain(&self, resource_type: &ResourceType) -> Option<(Quantity, bool)> {
        let d = self.dim(resource_type)?;
        let raw = self.raw_free(d);
        Some((Quantity::from_milli(raw.max(0)), raw < 0))
    }
}

/// The catalog placement reads.
pub(crate) type Catalog = rm_plan::Catalog<PgSlot>;

/// The view: the catalog, the catalog version it was read at, and when free amounts were
/// last read in full.
pub(crate) struct View {
    pub(crate) catalog: Catalog,
    /// The `meta.catalog` value the resources were read at (`-1`: never read).
    pub(crate) version: i64,
    /// When the free amounts were last read from the database.
    pub(crate) read_at: Option<Instant>,
    /// The ledger's time (nanoseconds) when they were read.
    pub(crate) read_time: i64,
    /// The earliest deadline of a pending hold this process knows of (read then, or granted
    /// and renewed since): planning sweeps first once it has passed, so that an expired hold
    /// never steers a choice.
    pub(crate) next_due: AtomicI64,
}

impl Default for View {
    fn default() -> View {
        View {
            catalog: Catalog::default(),
            version: -1,
            read_at: None,
            read_time: 0,
            next_due: AtomicI64::new(i64::MAX),
        }
    }
}

impl View {
    /// Notes a pending hold's deadline.
    pub(crate) fn due_at(&self, deadline: i64) {
        self.next_due.fetch_min(deadline, Ordering::AcqRel);
    }

    /// Whether a hold this process knows of may be due by `now` (the ledger's time), or, on
    /// the server's clock (`None`), by the server's time estimated from the last read.
    pub(crate) fn may_be_due(&self, now: Option<i64>) -> bool {
        let next = self.next_due.load(Ordering::Acquire);
        if next == i64::MAX {
            return false;
        }
        let now = now.unwrap_or_else(|| {
            let elapsed = self.read_at.map_or(0, |at| at.elapsed().as_nanos());
            self.read_time
                .saturating_add(i64::try_from(elapsed).unwrap_or(i64::MAX))
        });
        next <= now
    }

    /// Adds `delta` to what is free of `resource_type` on the resource named `resource`.
    pub(crate) fn credit(&self, resource: &str, resource_type: &str, delta: i64) {
        if let Some((slot, d)) = self.slot(resource, resource_type) {
            slot.add(d, delta);
        }
    }

    /// The slot of the resource named `resource`, and the dimension of `resource_type`.
    pub(crate) fn slot(
        &self,
        resource: &str,
        resource_type: &str,
    ) -> Option<(&Arc<PgSlot>, usize)> {
        let name = rm_model::ResourceName::new(resource).ok()?;
        let slot = &self.catalog.slots[self.catalog.position(&name)?];
        let d = slot
            .types
            .iter()
            .position(|t| t.as_str() == resource_type)?;
        Some((slot, d))
    }
}

/// Reads the view, recovering from poisoning (every change to it is a store of its own).
pub(crate) fn read(view: &RwLock<View>) -> RwLockReadGuard<'_, View> {
    view.read().unwrap_or_else(PoisonError::into_inner)
}
