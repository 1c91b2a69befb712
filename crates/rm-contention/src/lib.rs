//! Contention: what happens when demand exceeds capacity — ordered waiting with hand-off,
//! preemption in Kubernetes' order with graceful notice, and deadlock detection.
//!
//! # Where it sits
//! A middle crate: it works on any `rm-model` [`ReservationLedger`](rm_model::ReservationLedger)
//! and takes its order from any [`AllocationPolicy`](rm_model::AllocationPolicy) (for example
//! `rm-policy`'s priority with aging), never naming `rm-reserve` or `rm-policy`.
//!
//! # Main types
//! - [`WaitQueue`] and [`Ticket`]: requests wait in order (priority then arrival, or a
//!   policy's order) with strict head-of-line blocking or [backfill](HeadOfLine::Backfill)
//!   (a later request with an expected duration passes only if it cannot delay the head);
//!   waiting blocks with a timeout or is awaited as a runtime-agnostic `Future`; [`Wakeup`]
//!   wakes the head as soon as the ledger reports freed capacity, without polling, and a
//!   release through the queue ([`WaitQueue::release`], [`WaitQueue::cancel`]) wakes the
//!   head first (through the registration a waiting head leaves beside the queue's lock, so
//!   its wake-up overlaps the release) and grants it on the releasing thread, which hands it
//!   the grant: release to grant, no slower than tokio's FIFO semaphore (see
//!   `docs/performance.md`). Finding the head costs a logarithm in
//!   priority order and one pass of the policy's [`first`](rm_model::AllocationPolicy::first)
//!   under a policy, so thousands may wait.
//! - [`plan_preemption`] (and [`plan_preemption_with`] for [`DisruptionBudget`]s) and
//!   [`GracefulPreemption`]: victims are lower-priority, preemptible holds, spared from the
//!   most important down (those a budget covers first); among resources, kube-scheduler's
//!   `pickOneNodeForPreemption` order: a resource that needs no victims at once, then the
//!   fewest budget violations, the lowest highest victim priority, the smallest sum of victim
//!   priorities (each offset by 2³¹ as Kubernetes does), the fewest victims, and the latest
//!   earliest start among the highest-priority victims. Victims get one notice and a
//!   deadline before they are ended. Unlike Kubernetes, a budget limits disruptions per
//!   preemption (it does not track holds already disrupted), and there is no nominated node.
//!   Quota-aware victims (reclaiming lent quota from borrowers first, as Kueue does) are the
//!   allocation policy's to name (`AllocationPolicy::reclaim`), since only it knows who
//!   borrows; the facade ends them.
//! - [`detect`]: a [`ContentionReport`] of demand against capacity per resource and per
//!   type, queue depth, starvation age and hot spots (the facade's
//!   `ResourceManager::contention` runs it on a snapshot and its wait queue).
//! - [`WaitForGraph`]: deadlocks as cycles of requesters waiting for each other's holds (the
//!   facade's `ResourceManager::deadlocks`).
//! - [`Resolver`]: the `rm-model` [`ContentionResolver`](rm_model::ContentionResolver):
//!   picks wait, priority, preempt, scale or redistribute (shrinking elastic holds toward their
//!   minimum, with a notice) per requester or request class, falls back to waiting when a
//!   strategy cannot help, and says what it did and why.
//! - The items that go with them: [`ResourceContention`], [`TypeContention`],
//!   [`ResolverError`], [`PreemptionPlan`], [`VictimNotifier`], [`PreemptionPolicyOf`],
//!   [`ShrinkNotifier`], [`Amounts`], [`Running`], [`backfill_allows`], [`shadow_time`].
//!
//! # Concurrency
//! Everything is `Send + Sync` with `&self`. Only a queue's head is granted, by its own thread
//! or by a thread releasing through the queue on its behalf, one try at a time: a waiter is
//! claimed before a try, and whoever finds it claimed (the waiter itself, woken because
//! capacity freed, or a hand-off) asks for another try, which the end of the claimed one
//! wakes it for (so freed capacity is never left unclaimed). The
//! [`Wakeup`] sink never calls the ledger (it runs inside the ledger's event publication), it
//! only wakes the head. Locks are held for bookkeeping, never across a ledger call.
//!
//! # Errors and panics
//! [`WaitError`] (timed out, cancelled, refused by the ledger) and [`PreemptionError`] (never
//! preempts, no victims); ledger errors pass through. Nothing panics on input.
//!
//! # Metrics
//! None directly; queue depth and starvation age are available
//! ([`WaitQueue::len`], [`WaitQueue::starvation_age`]) for `rm-monitor`.
//!
//! # Example
//! Choosing victims: a request of priority 10 needing 100 cores on one of two full nodes.
//!
//! ```
//! use rm_contention::plan_preemption;
//! use rm_model::{PreemptionPolicy, Priority, RequesterId, ReservationLedger, ReservationRequest,
//!     Resource, ResourceCapacity, ResourceRequirement, ResourceType, SystemClock, Unit};
//! use rm_testkit::ReferenceLedger;
//! # use std::sync::Arc;
//!
//! let ledger = ReferenceLedger::new(Arc::new(SystemClock::new()), Arc::new(rm_model::DiscardEvents), std::time::Duration::from_secs(60));
//! for name in ["a", "b"] {
//!     ledger.register_resource(Resource::new(name, ResourceType::Compute, ResourceCapacity::of(100, Unit::CORES)?)?)?;
//! }
//! let hold = |who: &str, priority, cores| ReservationRequest::new(RequesterId::new(who).unwrap(),
//!     vec![ResourceRequirement::new(ResourceType::Compute, cores, Unit::CORES)])
//!     .with_priority(Priority(priority))
//!     .with_strategy(rm_model::ReservationStrategy::Greedy);
//! ledger.reserve(&hold("one-big", 5, 100))?;   // fills a
//! ledger.reserve(&hold("small-1", 1, 50))?;    // fills b ...
//! ledger.reserve(&hold("small-2", 1, 50))?;    // ... with two lower-priority holds
//!
//! let urgent = hold("urgent", 10, 100);
//! let plan = plan_preemption(&urgent, PreemptionPolicy::PreemptLowerPriority, &ledger.snapshot()?)?;
//! assert_eq!(plan.resource.as_str(), "b");
//! assert_eq!(plan.victims.len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod deadlock;
mod detect;
mod error;
mod preempt;
mod resolver;
mod wait;

pub use deadlock::WaitForGraph;
pub use detect::{ContentionReport, ResourceContention, TypeContention, detect};
pub use error::{PreemptionError, ResolverError, WaitError};
pub use preempt::{
    DisruptionBudget, GracefulPreemption, PreemptionPlan, VictimNotifier, plan_preemption,
    plan_preemption_with,
};
pub use resolver::{PreemptionPolicyOf, Resolver, ShrinkNotifier};
pub use rm_model::backfill::{Amounts, Running, backfill_allows, shadow_time};
pub use wait::{HeadOfLine, Ticket, WaitQueue, Wakeup};
