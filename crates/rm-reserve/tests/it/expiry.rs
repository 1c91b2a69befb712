//! Expiry racing with other threads: a hold whose deadline has passed when a call begins never
//! makes that call refuse a grant or show it pending, whoever else is running the timers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use rm_model::{
    Event, EventKind, EventSink, LedgerError, ManualClock, RequesterId, ReservationLedger,
    ReservationRequest, ReservationState, Resource, ResourceCapacity, ResourceRequirement,
    ResourceType, Unit,
};
use rm_reserve::ReservationManager;
use rm_testkit::Rng;

/// The type and unit of the two resources: `x` counts cores, `y` GiB of memory, so a request
/// names its resource by its type.
fn kind(name: &str) -> (ResourceType, Unit) {
    if name == "x" {
        (ResourceType::Compute, Unit::CORES)
    } else {
        (ResourceType::Memory, Unit::GIB)
    }
}

fn node(name: &str, size: i32) -> Resource {
    let (resource_type, unit) = kind(name);
    Resource::new(
        name,
        resource_type,
        ResourceCapacity::of(size, unit).expect("valid"),
    )
    .expect("valid name")
}

/// `amount` of the resource `on`, pending for `ttl`.
fn hold(requester: &str, on: &str, amount: i32, ttl: Duration) -> ReservationRequest {
    let (resource_type, unit) = kind(on);
    ReservationRequest::new(
        RequesterId::new(requester).expect("valid"),
        vec![ResourceRequirement::new(resource_type, amount, unit)],
    )
    .with_ttl(ttl)
}

/// Counts expiries as the sweeping thread reports them.
#[derive(Default)]
struct Expiries(AtomicU64);

impl EventSink for Expiries {
    fn publish(&self, event: &Event) {
        if let EventKind::Ended {
            reason: ReservationState::Expired,
            ..
        } = event.kind
        {
            self.0.fetch_add(1, Ordering::Release);
        }
    }
}

/// The outside reproduction: while one thread is part-way through expiring 20,000 due holds,
/// a reserve on a resource whose only hold is also due is granted, and a snapshot shows no
/// hold past its deadline.
#[test]
fn a_grant_waits_for_a_sweep_under_way_instead_of_being_refused() {
    let clock = Arc::new(ManualClock::new());
    let expiries = Arc::new(Expiries::default());
    let manager = Arc::new(
        ReservationManager::builder()
            .clock(clock.clone())
            .event_sink(expiries.clone())
            .build()
            .expect("valid settings"),
    );
    manager.register_resource(node("x", 20_000)).unwrap();
    manager.register_resource(node("y", 1)).unwrap();
    for i in 0..20_000 {
        manager
            .reserve(&hold(&format!("x{i}"), "x", 1, Duration::from_millis(1)))
            .unwrap();
    }
    manager
        .reserve(&hold("y", "y", 1, Duration::from_millis(2)))
        .unwrap();
    clock.advance(Duration::from_secs(1));

    let sweeper = {
        let manager = manager.clone();
        thread::spawn(move || manager.expire_due().expect("expire").len())
    };
    // Wait until the sweep is under way: its first expiries are reported, y's is the last.
    while expiries.0.load(Ordering::Acquire) == 0 {
        thread::yield_now();
    }
    let snapshot = manager.snapshot().unwrap();
    assert!(
        snapshot.active.is_empty(),
        "{} holds past their deadline shown",
        snapshot.active.len()
    );
    let granted = manager.reserve(&hold("late", "y", 1, Duration::from_secs(10)));
    assert!(
        granted.is_ok(),
        "refused because of an expired hold: {granted:?}"
    );
    assert_eq!(
        sweeper.join().unwrap() as u64,
        expiries.0.load(Ordering::Acquire)
    );
    assert_eq!(expiries.0.load(Ordering::Acquire), 20_001);
    assert!(manager.audit().unwrap().is_clean());
}

/// Eight threads: holds with short TTLs on `x`, sweepers, snapshot readers that check no hold
/// past its deadline is shown pending, and a thread that alone uses `y`, letting each of its
/// holds run out before asking again, which must then always be granted.
#[test]
fn expiry_races_with_reserves_and_snapshots() {
    let rounds = rm_testkit::stress_rounds(400) as u64;
    let clock = Arc::new(ManualClock::new());
    let manager = Arc::new(
        ReservationManager::builder()
            .clock(clock.clone())
            .retention(Duration::from_millis(5))
            .build()
            .expect("valid settings"),
    );
    manager.register_resource(node("x", 64)).unwrap();
    manager.register_resource(node("y", 4)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut background = Vec::new();
    // Three threads fill x with holds of 1-2 ms, confirming and releasing some.
    for t in 0..3u64 {
        let (manager, clock, stop) = (manager.clone(), clock.clone(), stop.clone());
        background.push(thread::spawn(move || {
            let mut rng = Rng::new(0x51ed_270b_2b52_a3c1 ^ t);
            while !stop.load(Ordering::Acquire) {
                let ttl = Duration::from_millis(1 + rng.below(2));
                match manager.reserve(&hold(&format!("f{t}"), "x", 1 + rng.below(4) as i32, ttl)) {
                    Ok(r) if rng.below(4) == 0 => {
                        // It may have expired meanwhile: either answer is fine.
                        let _ = manager.confirm(&r.id, Some(r.fencing_token));
                        let _ = manager.release(&r.id, Some(r.fencing_token));
                    }
                    Ok(_) | Err(LedgerError::InsufficientCapacity { .. }) => {}
                    Err(err) => panic!("unexpected: {err}"),
                }
                if rng.below(8) == 0 {
                    clock.advance(Duration::from_micros(500));
                }
            }
        }));
    }
    // Two sweepers.
    for _ in 0..2 {
        let (manager, stop) = (manager.clone(), stop.clone());
        background.push(thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                manager.expire_due().expect("expire");
                thread::yield_now();
            }
        }));
    }
    // Two snapshot readers.
    for _ in 0..2 {
        let (manager, stop) = (manager.clone(), stop.clone());
        background.push(thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                let snapshot = manager.snapshot().expect("snapshot");
                for r in &snapshot.active {
                    assert!(
                        r.state != ReservationState::Pending
                            || r.expires_at.is_some_and(|at| at > snapshot.taken_at),
                        "a pending hold past its deadline at {}: {r:?}",
                        snapshot.taken_at
                    );
                }
                assert!(snapshot.audit().is_clean());
            }
        }));
    }
    // The eighth thread owns y.
    for round in 0..rounds {
        let ttl = Duration::from_millis(1 + round % 3);
        let granted = manager.reserve(&hold("y", "y", 4, ttl));
        assert!(
            granted.is_ok(),
            "round {round}: refused although every earlier hold on y had run out: {granted:?}"
        );
        clock.advance(ttl);
    }
    stop.store(true, Ordering::Release);
    for handle in background {
        handle.join().expect("no thread panicked");
    }
    clock.advance(Duration::from_secs(1));
    manager.expire_due().unwrap();
    let snapshot = manager.snapshot().unwrap();
    assert!(snapshot.active.is_empty(), "{:?}", snapshot.active);
    assert!(snapshot.audit().is_clean());
}
