//! Integration tests of the policies, one module per policy, on the reference ledger.

mod cohorts;
mod compose;
mod drf;
mod first;
mod priority;
mod quota;
mod weighted;

use std::sync::Arc;
use std::time::Duration;

use rm_model::{
    AllocationPolicy, ManualClock, PendingRequest, RequesterId, ReservationLedger,
    ReservationRequest, Resource, ResourceCapacity, ResourceRequirement, ResourceType, Timestamp,
    Unit,
};
use rm_policy::{PolicyObserver, ResourceAllocator};
use rm_testkit::ReferenceLedger;

/// A reference ledger on a manual clock whose events feed `policy`, with `resources`
/// registered, and an allocator over it.
fn setup(
    policy: Arc<dyn AllocationPolicy>,
    resources: Vec<Resource>,
) -> (Arc<ManualClock>, Arc<ReferenceLedger>, ResourceAllocator) {
    let clock = Arc::new(ManualClock::new());
    let ledger = Arc::new(ReferenceLedger::new(
        clock.clone(),
        Arc::new(PolicyObserver(policy)),
        Duration::from_secs(3600),
    ));
    for resource in resources {
        ledger.register_resource(resource).expect("register");
    }
    let allocator = ResourceAllocator::with_clock(ledger.clone(), clock.clone());
    (clock, ledger, allocator)
}

fn requester(name: &str) -> RequesterId {
    RequesterId::new(name).expect("valid")
}

fn cores(amount: i32) -> ResourceRequirement {
    ResourceRequirement::new(ResourceType::Compute, amount, Unit::CORES)
}

fn gib(amount: i32) -> ResourceRequirement {
    ResourceRequirement::new(ResourceType::Memory, amount, Unit::GIB)
}

fn host(name: &str, cores: i32, memory_gib: i32) -> Resource {
    Resource::new(
        name,
        ResourceType::Compute,
        ResourceCapacity::of(cores, Unit::CORES).expect("valid"),
    )
    .expect("valid")
    .with_capacity(
        ResourceType::Memory,
        ResourceCapacity::of(memory_gib, Unit::GIB).expect("valid"),
    )
}

fn pending(request: ReservationRequest, arrival: u64, enqueued_at: Timestamp) -> PendingRequest {
    PendingRequest {
        request: Arc::new(request),
        enqueued_at,
        arrival,
    }
}

/// `clock.now()` without importing the trait everywhere.
trait NowStamp {
    fn now_stamp(&self) -> Timestamp;
}

impl NowStamp for ManualClock {
    fn now_stamp(&self) -> Timestamp {
        rm_model::Clock::now(self)
    }
}
