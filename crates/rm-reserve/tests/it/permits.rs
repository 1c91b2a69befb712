//! Permits share capacity with reservations, show in snapshots as leased, keep the audit
//! clean, and hold a resource in place until dropped.

use std::sync::Arc;
use std::thread;

use rm_model::{
    LedgerError, ManualClock, Quantity, RequesterId, ReservationLedger, ReservationRequest,
    ResourceName, ResourceRequirement, ResourceType, Unit,
};
use rm_reserve::PermitError;

use crate::{host, manager};

fn cores(amount: i32) -> ReservationRequest {
    ReservationRequest::new(
        RequesterId::new("t").unwrap(),
        vec![ResourceRequirement::new(
            ResourceType::Compute,
            amount,
            Unit::CORES,
        )],
    )
}

fn name(text: &str) -> ResourceName {
    ResourceName::new(text).unwrap()
}

#[test]
fn permits_and_reservations_share_one_capacity() {
    let clock = Arc::new(ManualClock::new());
    let manager = manager(&clock);
    manager.register_resource(host("h", 4, 8)).unwrap();
    let pool = manager.permits(&name("h"), &ResourceType::Compute).unwrap();
    assert_eq!(pool.unit(), &Unit::CORES);
    let permit = pool.try_acquire(Quantity::from(3)).unwrap();
    assert_eq!(permit.amount(), Quantity::from(3));
    assert!(matches!(
        manager.reserve(&cores(2)),
        Err(LedgerError::InsufficientCapacity { .. })
    ));
    let hold = manager.reserve(&cores(1)).unwrap();
    assert!(
        permit.fencing_token() < hold.fencing_token,
        "one token sequence"
    );
    assert_eq!(
        pool.try_acquire(Quantity::from_milli(1)).unwrap_err(),
        PermitError::NoPermits {
            resource: name("h"),
            requested: Quantity::from_milli(1),
            available: Quantity::ZERO
        }
    );
    let snapshot = manager.snapshot().unwrap();
    let usage = snapshot.usage_of("h", &ResourceType::Compute).unwrap();
    assert_eq!(
        (usage.leased, usage.pending, usage.free),
        (Quantity::from(3), Quantity::from(1), Quantity::ZERO)
    );
    assert!(snapshot.audit().is_clean(), "{:?}", snapshot.audit());
    drop(permit);
    assert_eq!(pool.available(), Quantity::from(3));
    manager.reserve(&cores(3)).unwrap();
    assert!(manager.audit().unwrap().is_clean());
}

#[test]
fn permits_keep_their_resource_and_see_capacity_changes() {
    let clock = Arc::new(ManualClock::new());
    let manager = manager(&clock);
    manager.register_resource(host("h", 4, 8)).unwrap();
    let pool = manager.permits(&name("h"), &ResourceType::Memory).unwrap();
    let permit = pool.try_acquire(Quantity::from(6)).unwrap();
    assert_eq!(
        manager.unregister_resource(&name("h")).unwrap_err().code(),
        "resource-busy"
    );
    assert_eq!(
        manager
            .update_resource(host("h", 4, 8).with_capacity(
                ResourceType::Memory,
                rm_model::ResourceCapacity::of(16, Unit::GIB).unwrap()
            ))
            .map_err(|e| e.code()),
        Ok(())
    );
    assert_eq!(
        pool.available(),
        Quantity::from(10),
        "growing the capacity frees more"
    );
    let cpu_only = rm_model::Resource::new(
        "h",
        ResourceType::Compute,
        rm_model::ResourceCapacity::of(4, Unit::CORES).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manager
            .update_resource(cpu_only.clone())
            .unwrap_err()
            .code(),
        "resource-busy"
    );
    // Shrinking below what permits hold drains: no new permits, the old ones stay.
    let usage = manager
        .set_capacity(&name("h"), &ResourceType::Memory, Quantity::from(4))
        .unwrap();
    assert!(usage.draining);
    assert_eq!(usage.leased, Quantity::from(6));
    assert!(pool.try_acquire(Quantity::from(1)).is_err());
    assert!(manager.audit().unwrap().is_clean());
    drop(permit);
    manager.update_resource(cpu_only).unwrap();
    assert_eq!(
        pool.try_acquire(Quantity::from(1)).unwrap_err(),
        PermitError::Closed {
            resource: name("h")
        }
    );
    manager.unregister_resource(&name("h")).unwrap();
    assert_eq!(
        manager
            .permits(&name("h"), &ResourceType::Compute)
            .unwrap_err()
            .code(),
        "unknown-resource"
    );
    assert!(matches!(
        pool.try_acquire(Quantity::ZERO),
        Err(PermitError::InvalidAmount { .. })
    ));
}

#[test]
fn permits_and_reservations_under_contention() {
    let clock = Arc::new(ManualClock::new());
    let manager = Arc::new(manager(&clock));
    for i in 0..4 {
        manager
            .register_resource(host(&format!("n{i}"), 8, 8))
            .unwrap();
    }
    let rounds = i32::try_from(rm_testkit::stress_rounds(2_000)).unwrap_or(i32::MAX);
    thread::scope(|scope| {
        for t in 0..4 {
            let manager = manager.clone();
            scope.spawn(move || {
                let pool = manager
                    .permits(&name(&format!("n{t}")), &ResourceType::Compute)
                    .unwrap();
                for round in 0..rounds {
                    let amount = Quantity::from_milli(500 * (1 + (round % 4) as i64));
                    if let Ok(permit) = pool.try_acquire(amount) {
                        assert!(permit.amount() == amount);
                    }
                }
            });
        }
        for t in 0..2 {
            let manager = manager.clone();
            scope.spawn(move || {
                for round in 0..rounds {
                    match manager.reserve(&cores(1 + ((round + t) % 3))) {
                        Ok(hold) => {
                            manager.confirm(&hold.id, None).unwrap();
                            manager.release(&hold.id, None).unwrap();
                        }
                        Err(LedgerError::InsufficientCapacity { .. }) => {}
                        Err(other) => panic!("{other}"),
                    }
                }
            });
        }
        let manager = manager.clone();
        scope.spawn(move || {
            for _ in 0..200 {
                let report = manager.audit().unwrap();
                assert!(report.is_clean(), "{report:?}");
            }
        });
    });
    let snapshot = manager.snapshot().unwrap();
    for usage in &snapshot.usage {
        assert_eq!(usage.free, usage.capacity, "{usage:?}");
        assert_eq!(usage.leased, Quantity::ZERO);
    }
}
