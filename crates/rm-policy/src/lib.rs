//! Allocation policies: who may have capacity when not everyone can, and in which order
//! waiting requests are admitted.
//!
//! # Where it sits
//! A middle crate: it implements `rm-model`'s [`AllocationPolicy`](rm_model::AllocationPolicy) and works with any
//! [`ReservationLedger`](rm_model::ReservationLedger) through [`ResourceAllocator`]; it never
//! names `rm-reserve`. Usage-tracking policies learn grants and releases from ledger events
//! ([`PolicyObserver`] turns a policy into an event sink), so the ledger's hot path never
//! calls into them.
//!
//! # Main types
//! - [`ResourceAllocator`]: a ledger and a clock (the seed's `ResourceAllocator(manager)`),
//!   with [`ResourceAllocator::schedule`], one scheduling cycle in a policy's order.
//! - [`PriorityAllocationPolicy`]: requester priorities, [priority classes](rm_model::PriorityClass)
//!   (including non-preempting ones) and [`Aging`], so a waiting request cannot starve.
//! - [`QuotaAllocationPolicy`] with [`ResourceQuota`] and [`QuotaGroup`]: hard per-type
//!   limits per requester, and hierarchical groups with guaranteed shares, borrowing limits
//!   and lending limits; [`QuotaPreemption`] says what a refused request may reclaim.
//! - [`FairAllocationPolicy`]: Dominant Resource Fairness, optionally over usage decayed by a
//!   half-life; [`WeightedAllocationPolicy`]: weighted DRF.
//! - [`ComposedPolicy`]: policies in sequence (a quota gate, then fair order, then priority).
//! - The items that go with them: [`QuotaLimit`], [`ReclaimWithinCohort`], [`WithinGroup`].
//!
//! # Design decisions
//! - Amounts are exact: demands and usage are integer thousandths of each dimension's
//!   smallest unit, so `1500 millicores` and `1.5 cores` count the same. Shares and scores
//!   (ratios for ordering) are floating point and never decide a limit.
//! - A gate sets an admitted request's amounts aside under its id until the grant's event
//!   confirms them or the admission is withdrawn, so two concurrent admissions cannot both
//!   pass one limit.
//! - DRF decisions use an ordered index of shares, so choosing the next requester among
//!   thousands is logarithmic; only requesters with demand
//!   ([`FairAllocationPolicy::set_demand`]) are candidates, as in progressive filling.
//!
//! # Borrowing and reclaim (Kueue's cohorts)
//! - The children of a group form a cohort. Each lends its guaranteed share to the cohort's
//!   pool (all of it, or up to its lending limit) and keeps the rest. Usage beyond what a
//!   group keeps draws on the pool; a request is refused when the pool would be over-drawn,
//!   or when its group would borrow beyond its borrowing limit, or a root group's share (a
//!   hard cap) would be passed. So a cohort's usage never exceeds the sum of its members'
//!   shares, and a group within what it keeps is always admitted.
//! - A lender whose share is lent out is refused, not admitted on top: it gets its share
//!   back by reclaim. [`AllocationPolicy::reclaim`](rm_model::AllocationPolicy::reclaim)
//!   names the holds to end, by [`QuotaPreemption`] (Kueue's `reclaimWithinCohort`: never,
//!   lower priority or any; `withinClusterQueue` as `within_group`: never or lower
//!   priority): holds of borrowing groups first, then lower priority, then the most recently
//!   granted, taken until the request fits and then spared where not needed; a group that
//!   no longer borrows gives no more. `rm-facade` ends them when the requester's class may
//!   preempt, and admits again.
//! - Where it differs from Kueue: there are no resource flavours (a group's share is per
//!   resource type), no fair sharing between cohorts, and `within_group` has no
//!   `LowerOrNewerEqualPriority` (a request has no creation time of its own); Kueue's
//!   `borrowWithinCohort` (preempting to borrow) is not offered. Cohorts nest: a group's own
//!   share, when it has one, also caps its subtree.
//! - A wait queue asks for the first of thousands of waiters on every release: policies
//!   answer [`order_keys`](rm_model::AllocationPolicy::order_keys) under one lock per call
//!   (not one per waiter), and a composition finds its
//!   [`first`](rm_model::AllocationPolicy::first) by comparing its policies' key columns in
//!   one pass, without sorting.
//!
//! # Concurrency
//! Every policy is `Send + Sync` and takes `&self`; state sits behind one mutex or
//! read-write lock per policy, held for a decision, never across a ledger call.
//!
//! # Errors and panics
//! Refusals are [`Refusal`](rm_model::Refusal)s with a [`RefusalReason`](rm_model::RefusalReason)
//! code and a message naming the limit that refused; configuration mistakes are [`Error`]s.
//! Nothing panics on input.
//!
//! # Metrics
//! None directly; refusals carry codes that `rm-monitor` counts.
//!
//! # Example
//! The seed's "Resource Allocation with Policies":
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use rm_model::{ManualClock, RequesterId, ReservationLedger, Resource, ResourceCapacity,
//!     ResourceRequirement, ResourceType, Unit};
//! use rm_policy::{PriorityAllocationPolicy, ResourceAllocator};
//! use rm_testkit::ReferenceLedger;
//!
//! let clock = Arc::new(ManualClock::new());
//! let manager = ReferenceLedger::new(clock.clone(), Arc::new(rm_model::DiscardEvents), Duration::from_secs(30));
//! manager.register_resource(Resource::new("compute-node-1", ResourceType::Compute, ResourceCapacity::of(100, Unit::CORES)?)?)?;
//! let compute_requirement = ResourceRequirement::new(ResourceType::Compute, 50, Unit::CORES);
//!
//! // Create an allocator with a reservation manager
//! let allocator = ResourceAllocator::with_clock(Arc::new(manager), clock);
//!
//! // Create a priority-based allocation policy
//! let priority_policy = PriorityAllocationPolicy::new("task-priority");
//! priority_policy.set_requester_priority(RequesterId::new("task-1")?, 10); // High priority
//! priority_policy.set_requester_priority(RequesterId::new("task-2")?, 5); // Medium priority
//!
//! // Allocate resources using the policy
//! let result = priority_policy.allocate(&allocator, &RequesterId::new("task-1")?, &[compute_requirement]);
//!
//! // Check allocation result
//! assert!(result.is_successful(), "{}", result.message());
//! assert_eq!(result.reservation().map(|r| r.priority.0), Some(10));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod allocator;
mod compose;
mod demand;
mod error;
mod fair;
mod priority;
mod quota;

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use allocator::{PolicyObserver, ResourceAllocator};
pub use compose::ComposedPolicy;
pub use error::Error;
pub use fair::{FairAllocationPolicy, WeightedAllocationPolicy};
pub use priority::{Aging, PriorityAllocationPolicy};
pub use quota::{
    QuotaAllocationPolicy, QuotaGroup, QuotaLimit, QuotaPreemption, ReclaimWithinCohort,
    ResourceQuota, WithinGroup,
};

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}
