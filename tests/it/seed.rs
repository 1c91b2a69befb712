//! The seed specification's usage examples, as flows on a ledger.

use std::sync::Arc;
use std::time::Duration;

use rm_model::{
    Quantity, RequesterId, ReservationLedger, ReservationRequest, ReservationState,
    ReservationStrategy, Resource, ResourceCapacity, ResourceRequirement, ResourceSpecification,
    ResourceType, SystemClock, Unit,
};
use rm_testkit::ReferenceLedger;
use rm_testkit::fakes::RecordingSink;

/// "Resource Definition" then "Resource Reservation": register, reserve 50 of 100 cores with
/// the balanced strategy, confirm, use, release.
#[test]
fn seed_reservation_flow() -> Result<(), Box<dyn std::error::Error>> {
    let compute_resource = Resource::new(
        "compute-node-1",
        ResourceType::Compute,
        ResourceCapacity::new(0, 100, Unit::CORES)?,
    )?
    .with_specification(
        ResourceSpecification::new(ResourceType::Compute)
            .with("cores", 32)?
            .with("memory", 128)?
            .with("arch", "x86_64")?,
    );

    let events = Arc::new(RecordingSink::new());
    let manager = ReferenceLedger::new(
        Arc::new(SystemClock::new()),
        events.clone(),
        Duration::from_secs(30),
    );
    manager.register_resource(compute_resource)?;

    let compute_requirement = ResourceRequirement::new(ResourceType::Compute, 50, Unit::CORES);
    let reservation = manager.reserve(
        &ReservationRequest::new(RequesterId::new("task-1")?, vec![compute_requirement])
            .with_strategy(ReservationStrategy::Balanced),
    )?;
    manager.confirm(&reservation.id, None)?;
    let usage = manager.snapshot()?;
    let usage = usage
        .usage_of("compute-node-1", &ResourceType::Compute)
        .ok_or("no usage")?;
    assert_eq!(
        (usage.confirmed, usage.free),
        (Quantity::from(50), Quantity::from(50))
    );
    assert_eq!(usage.utilization(), 0.5);

    let released = manager.release(&reservation.id, None)?;
    assert_eq!(released.state, ReservationState::Released);
    assert!(manager.audit()?.is_clean());
    assert_eq!(
        events.names(),
        [
            "resource-registered",
            "reserved",
            "confirmed",
            "ended:released"
        ]
    );
    Ok(())
}

/// A snapshot is a serialisable view for dashboards: it survives a JSON round trip.
#[test]
fn snapshots_serialise() -> Result<(), Box<dyn std::error::Error>> {
    let ledger = ReferenceLedger::new(
        Arc::new(SystemClock::new()),
        Arc::new(rm_model::DiscardEvents),
        Duration::from_secs(30),
    );
    ledger.register_resource(Resource::new(
        "n",
        ResourceType::Gpu,
        ResourceCapacity::of(8, Unit::DEVICES)?,
    )?)?;
    ledger.reserve(&ReservationRequest::new(
        RequesterId::new("train")?,
        vec![ResourceRequirement::new(
            ResourceType::Gpu,
            Quantity::from_milli(500),
            Unit::DEVICES,
        )],
    ))?;
    let snapshot = ledger.snapshot()?;
    let json = serde_json::to_string(&snapshot)?;
    let back: rm_model::LedgerSnapshot = serde_json::from_str(&json)?;
    assert_eq!(back, snapshot);
    assert!(json.contains(r#""free":"7500m""#), "{json}");
    Ok(())
}
