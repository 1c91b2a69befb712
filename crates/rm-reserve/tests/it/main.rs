//! Integration tests of the reservation manager, one module per area.

mod affinity;
mod colocation;
mod conformance;
mod edges;
mod events;
mod expiry;
mod idempotency;
mod model;
mod permits;
mod stress;

use std::sync::Arc;
use std::time::Duration;

use rm_model::{ManualClock, Resource, ResourceCapacity, ResourceType, Unit};
use rm_reserve::ReservationManager;

/// A manager on a manual clock with a 10 s default TTL and 60 s retention.
fn manager(clock: &Arc<ManualClock>) -> ReservationManager {
    ReservationManager::builder()
        .clock(clock.clone())
        .default_ttl(Duration::from_secs(10))
        .retention(Duration::from_secs(60))
        .build()
        .expect("valid settings")
}

/// A host with `cores` cores and `memory_gib` GiB.
fn host(name: &str, cores: i32, memory_gib: i32) -> Resource {
    Resource::new(
        name,
        ResourceType::Compute,
        ResourceCapacity::of(cores, Unit::CORES).expect("valid"),
    )
    .expect("valid name")
    .with_capacity(
        ResourceType::Memory,
        ResourceCapacity::of(memory_gib, Unit::GIB).expect("valid"),
    )
}
