//! Placement planning against a view of free capacity: the one planner that every ledger
//! calls, so that the embedded ledger and a ledger kept in a database choose the same
//! resources for the same request on the same state.
//!
//! # Where it sits
//! Below the middle crates and above `rm-model`: it depends on `rm-model` (and two small
//! crates for hashing and inline vectors) only, and knows nothing of how a ledger keeps its
//! accounting (atomics and locks in `rm-reserve`, rows in a database): a ledger hands it a
//! [`Catalog`] whose [`Slot`]s say what is free.
//!
//! # Main types
//! - [`Catalog`]: the registered resources by position, each with the ledger's [`Slot`], and
//!   the caches placement reads: the [`Candidate`]s that pass each requirement shape's type,
//!   unit and hard constraints, and the resources of each label value ([`Domains`]).
//! - [`plan`]: chooses a resource for every requirement of a request by its strategy (scored
//!   by `rm-model`'s placement scoring), soft preferences, [`Affinity`] and co-location (by
//!   resource, or by a shared label value); or explains, per requirement, why it cannot.
//! - [`Placement`]: one requirement on one resource, for the ledger to commit.
//! - [`NodeStrategies`]: what the node strategies keep in the catalog between placements:
//!   the fragmentation strategy's target workload (learned by
//!   [`observe`](NodeStrategies::observe) or given), random fit's seed, GPU clustering's record
//!   of which GPU demands run on each node ([`Catalog::record_placement`]). A pod whose
//!   parts share a node of its co-location label (a host with cores and memory, GPU devices of
//!   one device each) is planned over whole nodes: the fragmentation strategy and the FGD
//!   paper's baselines judge each node as a whole; the built-in strategies choose exactly as
//!   the per-domain search does, reading each node's counters once.
//! - The items that go with them: [`MAX_DIMS`], [`MemberFit`], [`amount_in`], and [`Small`]
//!   (inline storage for the few placements of a typical request).
//!
//! # Design decisions
//! - The planner only reads: it takes nothing, so a ledger commits the plan its own way
//!   (compare-and-swap on counters, guarded updates in SQL) and plans again when capacity
//!   moved meanwhile.
//! - Candidate lists are cached per requirement shape until the catalog changes, so a scan
//!   reads only each candidate's free counters: the cost of a placement is one pass over the
//!   candidates, without locks or allocation. The commonest group (one member per type, in
//!   each candidate's own unit, nothing else placed) is scanned in a loop specialised per
//!   scoring ([`rm_model::placement::Scoring`], chosen once per placement) and member count;
//!   a request of one requirement with only hard constraints goes to that scan directly.
//! - Gathering the holds that affinity terms select is the ledger's (an index, a scan, a
//!   query); [`Affinity`] only records where they are, and the planner judges a group's
//!   terms once per label domain into a table by position before scoring candidates.
//!
//! # Concurrency
//! [`Catalog`] is `Send + Sync` when its slots are; its caches sit behind read-write locks.
//! Planning takes `&Catalog`; a ledger changes the catalog under its own exclusive access.
//!
//! # Errors and panics
//! [`plan`] returns the contract's [`LedgerError::InsufficientCapacity`](rm_model::LedgerError)
//! with a [`Shortfall`](rm_model::Shortfall) per unplaced requirement. Nothing panics on input.
//!
//! # Metrics
//! None.
//!
//! # Example
//! ```
//! use rm_model::{Quantity, RequesterId, ReservationRequest, Resource, ResourceCapacity,
//!     ResourceRequirement, ResourceType, Unit};
//! use rm_plan::{Affinity, Catalog, Slot, plan};
//!
//! /// A ledger's view of one resource: a fixed amount free per capacity.
//! struct Free(Vec<(ResourceType, i64)>);
//!
//! impl Slot for Free {
//!     fn free(&self, dim: usize) -> i64 {
//!         self.0[dim].1
//!     }
//!     fn dim(&self, resource_type: &ResourceType) -> Option<usize> {
//!         self.0.iter().position(|(t, _)| t == resource_type)
//!     }
//!     fn explain(&self, resource_type: &ResourceType) -> Option<(Quantity, bool)> {
//!         self.dim(resource_type).map(|d| (Quantity::from_milli(self.0[d].1), false))
//!     }
//! }
//!
//! let mut catalog = Catalog::default();
//! for (name, free_cores) in [("a", 2), ("b", 6)] {
//!     let resource = Resource::new(name, ResourceType::Compute, ResourceCapacity::of(8, Unit::CORES)?)?;
//!     catalog.insert(resource, std::sync::Arc::new(Free(vec![(ResourceType::Compute, free_cores * 1000)])));
//! }
//! let request = ReservationRequest::new(
//!     RequesterId::new("task")?,
//!     vec![ResourceRequirement::new(ResourceType::Compute, 4, Unit::CORES)],
//! );
//! let placements = plan(&catalog, &request, &Affinity::for_request(&request), true, &[])?;
//! assert_eq!(catalog.resources[placements[0].position].name().as_str(), "b");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod affinity;
mod catalog;
mod nodes;
mod placement;
mod plan;
mod strategies;
mod table;

pub use affinity::Affinity;
pub use catalog::{Candidate, Catalog, Domains, MAX_DIMS, MemberFit, Slot};
pub use placement::{Placement, Small};
pub use plan::{amount_in, plan};
pub use strategies::NodeStrategies;

#[cfg(test)]
mod node_tests;
#[cfg(test)]
mod tests;
