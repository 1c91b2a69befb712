//! Edges of the manager beyond the shared contract: TTL boundaries, bad input that must leave
//! every piece of state unchanged, multi-dimensional strategies, subscriptions, the validator
//! seam, retention.

use std::sync::Arc;
use std::time::Duration;

use rm_model::{
    ColocationGroup, EventKind, FencingToken, Labels, LedgerError, LedgerSnapshot, ManualClock,
    Quantity, RequesterId, Reservation, ReservationId, ReservationLedger, ReservationRequest,
    ReservationState, ReservationStrategy, Resource, ResourceCapacity, ResourceRequirement,
    ResourceType, Unit, ValidationContext, ValidationErrors, Validator, Violation,
};
use rm_reserve::{Error, ReservationManager};

use crate::{host, manager};

fn cores(amount: i32) -> ResourceRequirement {
    ResourceRequirement::new(ResourceType::Compute, amount, Unit::CORES)
}

fn gib(amount: i32) -> ResourceRequirement {
    ResourceRequirement::new(ResourceType::Memory, amount, Unit::GIB)
}

fn ask(requirements: Vec<ResourceRequirement>) -> ReservationRequest {
    ReservationRequest::new(RequesterId::new("t").expect("valid"), requirements)
}

fn placed(reservation: &Reservation) -> Vec<&str> {
    reservation
        .items
        .iter()
        .map(|i| i.resource.as_str())
        .collect()
}

#[test]
fn ttl_is_not_reclaimed_before_its_deadline() {
    let clock = Arc::new(ManualClock::new());
    let manager = manager(&clock);
    manager.register_resource(host("h", 4, 8)).unwrap();
    let hold = manager
        .reserve(&ask(vec![cores(4)]).with_ttl(Duration::from_secs(5)))
        .unwrap();
    clock.advance(Duration::from_secs(5) - Duration::from_nanos(1));
    assert!(manager.expire_due().unwrap().is_empty());
    assert_eq!(
        manager.get(&hold.id).unwrap().state,
        ReservationState::Pending
    );
    assert!(
        manager.reserve(&ask(vec![cores(1)])).is_err(),
        "still held a nanosecond before"
    );
    clock.advance(Duration::from_nanos(1));
    // Reclaimed at the deadline, even without a sweep: the next grant sees the capacity.
    let next = manager.reserve(&ask(vec![cores(4)])).unwrap();
    assert_eq!(
        manager.get(&hold.id).unwrap().state,
        ReservationState::Expired
    );
    assert_eq!(next.items[0].amount, Quantity::from(4));
    assert!(manager.audit().unwrap().is_clean());
}

/// Applies `bad` and checks that it fails with `code` and leaves the snapshot unchanged.
#[track_caller]
fn refused_without_change(
    manager: &ReservationManager,
    code: &str,
    bad: impl FnOnce() -> Result<(), LedgerError>,
) {
    let before: LedgerSnapshot = manager.snapshot().unwrap();
    let remembered = manager.remembered();
    let err = bad().expect_err("the operation must fail");
    assert_eq!(err.code(), code, "{err}");
    assert!(err.is_definite());
    let after = manager.snapshot().unwrap();
    assert_eq!(
        (after.usage, after.active, after.resources),
        (before.usage, before.active, before.resources)
    );
    assert_eq!(after.last_fencing_token, before.last_fencing_token);
    assert_eq!(manager.remembered(), remembered);
}

#[test]
fn bad_input_changes_nothing() {
    let clock = Arc::new(ManualClock::new());
    let manager = &manager(&clock);
    manager.register_resource(host("h", 4, 8)).unwrap();
    let named = ReservationId::new("job-1").unwrap();
    manager
        .reserve(&ask(vec![cores(1)]).with_id(named.clone()))
        .unwrap();
    let group = ColocationGroup::new("g").unwrap();
    let huge = Quantity::from_milli(i64::MAX / 2 + 1);
    let licences = ResourceType::custom("licences").unwrap();
    let reserve = |request: ReservationRequest| move || manager.reserve(&request).map(drop);
    refused_without_change(manager, "invalid-input", reserve(ask(vec![cores(0)])));
    refused_without_change(manager, "invalid-input", reserve(ask(vec![cores(-3)])));
    refused_without_change(manager, "invalid-input", reserve(ask(vec![])));
    refused_without_change(
        manager,
        "invalid-input",
        reserve(ask(vec![ResourceRequirement::new(
            ResourceType::Memory,
            1,
            Unit::CORES,
        )])),
    );
    refused_without_change(
        manager,
        "insufficient-capacity",
        reserve(ask(vec![
            ResourceRequirement::new(ResourceType::Compute, huge, Unit::CORES)
                .colocated(group.clone()),
            ResourceRequirement::new(ResourceType::Compute, huge, Unit::CORES).colocated(group),
        ])),
    );
    refused_without_change(
        manager,
        "insufficient-capacity",
        reserve(ask(vec![ResourceRequirement::new(
            licences,
            1,
            Unit::custom("seats").unwrap(),
        )])),
    );
    refused_without_change(
        manager,
        "id-conflict",
        reserve(ask(vec![cores(2)]).with_id(named.clone())),
    );
    let ghost = ReservationId::new("ghost").unwrap();
    refused_without_change(manager, "unknown-reservation", || {
        manager.confirm(&ghost, None).map(drop)
    });
    refused_without_change(manager, "unknown-reservation", || {
        manager.release(&ghost, None).map(drop)
    });
    refused_without_change(manager, "duplicate-resource", || {
        manager.register_resource(host("h", 1, 1))
    });
    refused_without_change(manager, "invalid-input", || {
        manager.renew(&named, None, Duration::ZERO).map(drop)
    });
    refused_without_change(manager, "invalid-state", || {
        manager.release(&named, None).map(drop)
    });
}

#[test]
fn multi_dimensional_strategies() {
    let clock = Arc::new(ManualClock::new());
    // cpu-heavy: 32 cores, 32 GiB; mem-heavy: 8 cores, 128 GiB; even: 16 cores, 64 GiB.
    let cases = [
        // A memory-shaped task aligns with the memory-heavy host.
        (
            ReservationStrategy::Aligned,
            vec![cores(2), gib(32)],
            "mem-heavy",
        ),
        // A cpu-shaped task aligns with the cpu-heavy host.
        (
            ReservationStrategy::Aligned,
            vec![cores(8), gib(4)],
            "cpu-heavy",
        ),
        // Balanced keeps the most headroom on average across both dimensions.
        (
            ReservationStrategy::Balanced,
            vec![cores(4), gib(16)],
            "even",
        ),
        // Bin-pack fills the host it leaves fullest on average.
        (
            ReservationStrategy::BinPack,
            vec![cores(4), gib(8)],
            "mem-heavy",
        ),
        (
            ReservationStrategy::Greedy,
            vec![cores(4), gib(8)],
            "cpu-heavy",
        ),
    ];
    for (strategy, requirements, expected) in cases {
        let manager = manager(&clock);
        for resource in [
            host("cpu-heavy", 32, 32),
            host("mem-heavy", 8, 128),
            host("even", 16, 64),
        ] {
            manager.register_resource(resource).unwrap();
        }
        let group = ColocationGroup::new("task").unwrap();
        let requirements = requirements
            .into_iter()
            .map(|r| r.colocated(group.clone()))
            .collect();
        let hold = manager
            .reserve(&ask(requirements).with_strategy(strategy))
            .unwrap();
        assert_eq!(placed(&hold), [expected, expected], "{strategy:?}");
    }
}

#[test]
fn subscribers_see_every_change_and_can_leave() {
    let clock = Arc::new(ManualClock::new());
    let manager = manager(&clock);
    let events = manager.subscribe();
    manager.register_resource(host("h", 4, 8)).unwrap();
    let hold = manager.reserve(&ask(vec![cores(1)])).unwrap();
    manager.confirm(&hold.id, None).unwrap();
    manager.release(&hold.id, None).unwrap();
    let kinds: Vec<_> = events.try_iter().map(|e| e.kind).collect();
    assert!(matches!(kinds[0], EventKind::ResourceRegistered { .. }));
    assert!(matches!(kinds[1], EventKind::Reserved { .. }));
    assert!(matches!(kinds[2], EventKind::Confirmed { .. }));
    assert!(matches!(
        kinds[3],
        EventKind::Ended {
            reason: ReservationState::Released,
            ..
        }
    ));
    assert_eq!(kinds.len(), 4);
    drop(events);
    // With no one listening, operations go on.
    manager.reserve(&ask(vec![cores(1)])).unwrap();
}

/// A validator that refuses requests asking for more than two requirements and resources
/// named `bad-*`, to show the seam; it records what the ledger hands it for each resource
/// (whether the name was checked, and how many resources it is lent).
#[derive(Default)]
struct Picky(std::sync::Mutex<Vec<(bool, usize)>>);

impl Validator for Picky {
    fn validate_resource(
        &self,
        resource: &Resource,
        context: &ValidationContext<'_>,
    ) -> Result<(), ValidationErrors> {
        self.0
            .lock()
            .unwrap()
            .push((context.name_checked, context.resources.len()));
        let mut out = Vec::new();
        if resource.name().as_str().starts_with("bad-") {
            out.push(Violation::new("name", "is reserved"));
        }
        ValidationErrors::check("resource", out)
    }
    fn validate_request(
        &self,
        request: &ReservationRequest,
        context: &ValidationContext<'_>,
    ) -> Result<(), ValidationErrors> {
        let mut out = Vec::new();
        if request.requirements.len() > 2 {
            out.push(Violation::new("requirements", "at most two"));
        }
        if context.resources.is_empty() {
            out.push(Violation::new("requirements", "nothing is registered"));
        }
        ValidationErrors::check("request", out)
    }
    fn validate_reservation(
        &self,
        _: &Reservation,
        _: &ReservationRequest,
        _: &ValidationContext<'_>,
    ) -> Result<(), ValidationErrors> {
        Ok(())
    }
}

#[test]
fn the_validator_seam() {
    let manager = ReservationManager::builder()
        .validator(Arc::new(Picky::default()))
        .build()
        .unwrap();
    let err = manager.reserve(&ask(vec![cores(1)])).unwrap_err();
    assert!(err.to_string().contains("nothing is registered"), "{err}");
    let err = manager.register_resource(host("bad-1", 1, 1)).unwrap_err();
    assert!(
        matches!(&err, LedgerError::InvalidInput { field, .. } if field == "name"),
        "{err}"
    );
    manager.register_resource(host("h", 4, 8)).unwrap();
    let err = manager
        .reserve(&ask(vec![cores(1), cores(1), cores(1)]))
        .unwrap_err();
    assert!(
        matches!(&err, LedgerError::InvalidInput { field, .. } if field == "requirements"),
        "{err}"
    );
    manager.reserve(&ask(vec![cores(1), gib(1)])).unwrap();
}

/// The ledger checks a resource's name with its own index, so a validator need not compare
/// it with every registered resource (n registrations would cost n² comparisons), and an
/// update hands over the catalog as it is (no copy without the replaced resource).
#[test]
fn the_ledger_checks_names_and_lends_its_catalog_to_the_validator() {
    let recording = Arc::new(Picky::default());
    let manager = ReservationManager::builder()
        .validator(recording.clone())
        .build()
        .unwrap();
    for name in ["a", "b", "c"] {
        manager.register_resource(host(name, 4, 8)).unwrap();
    }
    manager.update_resource(host("b", 8, 8)).unwrap();
    let err = manager.register_resource(host("a", 1, 1)).unwrap_err();
    assert!(
        matches!(err, LedgerError::DuplicateResource { .. }),
        "{err}"
    );
    assert_eq!(
        *recording.0.lock().unwrap(),
        [(true, 0), (true, 1), (true, 2), (true, 3)]
    );
}

#[test]
fn ended_reservations_are_forgotten_after_retention() {
    let clock = Arc::new(ManualClock::new());
    let manager = manager(&clock);
    manager.register_resource(host("h", 4, 8)).unwrap();
    let hold = manager.reserve(&ask(vec![cores(1)])).unwrap();
    manager.cancel(&hold.id, None).unwrap();
    clock.advance(Duration::from_secs(59));
    manager.expire_due().unwrap();
    assert_eq!(
        manager.get(&hold.id).unwrap().state,
        ReservationState::Cancelled
    );
    clock.advance(Duration::from_secs(1));
    manager.expire_due().unwrap();
    assert_eq!(manager.remembered(), 0);
    assert_eq!(
        manager.get(&hold.id).unwrap_err().code(),
        "unknown-reservation"
    );
}

/// Forgetting may be swept in batches a little after retention runs out, but no answer may
/// show it: every lookup past the deadline treats the reservation as forgotten.
#[test]
fn answers_past_retention_treat_the_reservation_as_forgotten() {
    let clock = Arc::new(ManualClock::new());
    let manager = manager(&clock);
    manager.register_resource(host("h", 4, 8)).unwrap();
    let named = |name: &str| ReservationId::new(name).unwrap();
    let mut ended = Vec::new();
    for name in ["a", "b", "c", "d"] {
        let hold = manager
            .reserve(&ask(vec![cores(1)]).with_id(named(name)))
            .unwrap();
        manager.cancel(&hold.id, None).unwrap();
        ended.push(hold);
    }
    // One reservation still active keeps the manager busy with other work.
    let active = manager.reserve(&ask(vec![cores(1)])).unwrap();
    manager.confirm(&active.id, None).unwrap();
    clock.advance(Duration::from_secs(60));
    let unknown = |result: Result<Reservation, LedgerError>| {
        assert_eq!(result.unwrap_err().code(), "unknown-reservation");
    };
    // Each kind of lookup, each on a reservation no earlier lookup has forgotten.
    unknown(manager.release(&ended[0].id, Some(ended[0].fencing_token)));
    unknown(manager.confirm(&ended[1].id, Some(FencingToken(u64::MAX))));
    unknown(manager.reserve_preempting(&ask(vec![cores(1)]), std::slice::from_ref(&ended[2].id)));
    // The id is free again: a different request under it is a new grant, not a conflict.
    let again = manager
        .reserve(&ask(vec![cores(2)]).with_id(named("d")))
        .unwrap();
    assert_ne!(again.fencing_token, ended[3].fencing_token);
    assert_eq!(again.state, ReservationState::Pending);
    assert_eq!(manager.remembered(), 2, "the active hold and the new grant");
    manager.release(&active.id, None).unwrap();
    assert!(manager.audit().unwrap().violations.is_empty());
}

/// A forgotten record's storage is reused by a later grant: answers given in its earlier life
/// stay as they were, and the new grant has its own id, items, labels and expiry timer.
#[test]
fn a_reused_record_keeps_earlier_answers_intact() {
    let clock = Arc::new(ManualClock::new());
    let manager = manager(&clock);
    manager.register_resource(host("h", 4, 8)).unwrap();
    let first = manager.reserve(&ask(vec![cores(1)])).unwrap();
    manager.cancel(&first.id, None).unwrap();
    clock.advance(Duration::from_secs(60));
    manager.expire_due().unwrap();
    assert_eq!(manager.remembered(), 0);

    manager.register_resource(host("g", 8, 8)).unwrap();
    let named = ReservationId::new("second").unwrap();
    let second = manager
        .reserve(
            &ask(vec![cores(6), gib(2)])
                .with_id(named.clone())
                .with_labels(team_ml())
                .with_ttl(Duration::from_secs(5)),
        )
        .unwrap();
    assert_eq!(placed(&first), ["h"], "an earlier answer is not rewritten");
    assert_eq!(first.items[0].amount, Quantity::from_milli(1_000));
    assert_eq!(first.state, ReservationState::Pending);
    assert_eq!(placed(&second), ["g", "h"], "first fit, per requirement");
    assert_eq!(manager.get(&named).unwrap(), second);
    assert_eq!(second.labels.get("team"), Some("ml"));
    assert!(second.fencing_token > first.fencing_token);
    // A third grant with a longer TTL, renewed: each keeps its own timer.
    let third = manager.reserve(&ask(vec![cores(1)])).unwrap();
    manager
        .renew(&third.id, None, Duration::from_secs(20))
        .unwrap();
    clock.advance(Duration::from_secs(5));
    let expired = manager.expire_due().unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].id, named);
    assert_eq!(
        manager.get(&third.id).unwrap().state,
        ReservationState::Pending
    );
    clock.advance(Duration::from_secs(15));
    let expired = manager.expire_due().unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].id, third.id);
    assert!(manager.audit().unwrap().is_clean());
}

fn team_ml() -> Labels {
    let mut labels = Labels::new();
    labels.insert("team", "ml").unwrap();
    labels
}

/// `next_expiry` names the earliest pending hold's expiry and nothing else: a waiter that
/// sleeps until it must not wake for the forgetting of ended reservations.
#[test]
fn next_expiry_is_the_earliest_pending_expiry() {
    let clock = Arc::new(ManualClock::new());
    let manager = manager(&clock);
    manager.register_resource(host("h", 4, 8)).unwrap();
    assert_eq!(manager.next_expiry().unwrap(), None);
    let ended = manager.reserve(&ask(vec![cores(1)])).unwrap();
    manager.cancel(&ended.id, None).unwrap();
    assert_eq!(
        manager.next_expiry().unwrap(),
        None,
        "a forgetting (due in 60 s) is not an expiry"
    );
    let long = manager
        .reserve(&ask(vec![cores(1)]).with_ttl(Duration::from_secs(20)))
        .unwrap();
    let short = manager.reserve(&ask(vec![cores(1)])).unwrap();
    clock.advance(Duration::from_secs(4));
    assert_eq!(manager.next_expiry().unwrap(), Some(Duration::from_secs(6)));
    manager.confirm(&short.id, None).unwrap();
    assert_eq!(
        manager.next_expiry().unwrap(),
        Some(Duration::from_secs(16))
    );
    manager
        .renew(&long.id, None, Duration::from_secs(2))
        .unwrap();
    assert_eq!(manager.next_expiry().unwrap(), Some(Duration::from_secs(2)));
    manager.cancel(&long.id, None).unwrap();
    assert_eq!(manager.next_expiry().unwrap(), None);
}

#[test]
fn the_builder_checks_its_settings() {
    let err = ReservationManager::builder()
        .default_ttl(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        Error::InvalidConfig {
            field: "default_ttl",
            reason: "must be positive"
        }
    );
    assert_eq!(
        err.to_string(),
        "configure the reservation manager: default_ttl must be positive"
    );
    // A zero retention would forget an id as its reservation ends.
    let err = ReservationManager::builder()
        .retention(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                field: "retention",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        ReservationManager::builder()
            .retention(Duration::from_nanos(1))
            .build()
            .is_ok()
    );
}

/// Within retention, a caller whose release answer was lost retries it and is told it is
/// released, and a retry of the original request by id returns the ended reservation; no
/// capacity is credited twice.
#[test]
fn retries_within_retention_see_the_ended_reservation() {
    let clock = Arc::new(ManualClock::new());
    let manager = manager(&clock);
    manager.register_resource(host("h", 4, 8)).unwrap();
    let request = ask(vec![cores(3)]).with_id(ReservationId::new("job").unwrap());
    let hold = manager.reserve(&request).unwrap();
    manager.confirm(&hold.id, None).unwrap();
    manager.release(&hold.id, Some(hold.fencing_token)).unwrap();
    clock.advance(Duration::from_secs(59));
    let again = manager.release(&hold.id, Some(hold.fencing_token)).unwrap();
    assert_eq!(again.state, ReservationState::Released);
    let retried = manager.reserve(&request).unwrap();
    assert_eq!(
        (retried.id.clone(), retried.state),
        (hold.id.clone(), ReservationState::Released)
    );
    let snapshot = manager.snapshot().unwrap();
    let usage = snapshot.usage_of("h", &ResourceType::Compute).unwrap();
    assert_eq!(usage.free, Quantity::from(4), "credited once");
    assert!(snapshot.audit().is_clean());
}

#[test]
fn capacity_in_other_units_and_resources_without_the_type() {
    let clock = Arc::new(ManualClock::new());
    let manager = manager(&clock);
    let gpu = Resource::new(
        "g",
        ResourceType::Gpu,
        ResourceCapacity::of(2, Unit::DEVICES).unwrap(),
    )
    .unwrap();
    manager.register_resource(gpu).unwrap();
    manager.register_resource(host("h", 4, 8)).unwrap();
    let half =
        ResourceRequirement::new(ResourceType::Gpu, Quantity::from_milli(500), Unit::DEVICES);
    let a = manager.reserve(&ask(vec![half.clone(), cores(1)])).unwrap();
    assert_eq!(placed(&a), ["g", "h"]);
    let milli = ResourceRequirement::new(ResourceType::Compute, 2500, Unit::MILLICORES);
    let b = manager.reserve(&ask(vec![milli])).unwrap();
    assert_eq!(b.items[0].amount, Quantity::from_milli(2500));
    let usage = manager.snapshot().unwrap();
    let usage = usage.usage_of("h", &ResourceType::Compute).unwrap();
    assert_eq!(usage.free, Quantity::from_milli(500));
}
