//! Integration tests of contention handling, one module per area, on the reference ledger.

mod backfill;
mod conformance;
mod deadlock;
mod detect;
mod handoff;
mod interleave;
mod node_order;
mod preempt;
mod resolver;

use std::sync::Arc;
use std::time::Duration;

use rm_contention::{WaitQueue, Wakeup};
use rm_model::{
    AllocationPolicy, Priority, RequesterId, ReservationLedger, ReservationRequest,
    ReservationStrategy, Resource, ResourceCapacity, ResourceRequirement, ResourceType,
    SystemClock, Unit,
};
use rm_testkit::ReferenceLedger;

fn node(name: &str, cores: i32) -> Resource {
    Resource::new(
        name,
        ResourceType::Compute,
        ResourceCapacity::of(cores, Unit::CORES).expect("valid"),
    )
    .expect("valid")
}

fn cores(who: &str, amount: i32, priority: i32) -> ReservationRequest {
    ReservationRequest::new(
        RequesterId::new(who).expect("valid"),
        vec![ResourceRequirement::new(
            ResourceType::Compute,
            amount,
            Unit::CORES,
        )],
    )
    .with_priority(Priority(priority))
    .with_strategy(ReservationStrategy::Greedy)
}

/// A ledger whose events wake a queue on it.
fn queue_on(resources: Vec<Resource>) -> (Arc<ReferenceLedger>, Arc<WaitQueue>) {
    queue_ordered_by(resources, None)
}

/// [`queue_on`], the queue ordered by `order` when given.
fn queue_ordered_by(
    resources: Vec<Resource>,
    order: Option<Arc<dyn AllocationPolicy>>,
) -> (Arc<ReferenceLedger>, Arc<WaitQueue>) {
    let clock = Arc::new(SystemClock::new());
    let wakeup = Wakeup::new();
    let ledger = Arc::new(ReferenceLedger::new(
        clock.clone(),
        Arc::new(wakeup.clone()),
        Duration::from_secs(3600),
    ));
    for resource in resources {
        ledger.register_resource(resource).expect("register");
    }
    let mut queue = WaitQueue::new(ledger.clone(), clock);
    if let Some(order) = order {
        queue = queue.with_order(order);
    }
    let queue = Arc::new(queue);
    wakeup.connect(&queue);
    (ledger, queue)
}
