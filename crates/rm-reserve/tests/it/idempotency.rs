//! Property: a request that reuses a used id and differs from the first in any one field
//! that changes what is granted is an id conflict, and the first request's retry still
//! returns the first reservation. `RM_PROPTEST_CASES` raises the number of cases.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use rm_model::{
    ColocationGroup, LabelKey, Labels, LedgerError, ManualClock, Priority, Quantity, RequesterId,
    ReservationId, ReservationLedger, ReservationRequest, ReservationState, ReservationStrategy,
    ResourceRequirement, ResourceType, Unit,
};
use rm_testkit::conformance::ledger::single_field_changes;

use crate::{host, manager};

prop_compose! {
    fn request()(
        parts in prop::collection::vec((any::<bool>(), 1i64..4, any::<bool>(), any::<bool>()), 1..4),
        priority in -5i32..5,
        strategy in 0usize..4,
        ttl in prop::option::of(1u64..60),
        labelled in any::<bool>(),
        preemptible in any::<bool>(),
        by_zone in any::<bool>(),
    ) -> ReservationRequest {
        let requirements = parts
            .into_iter()
            .map(|(memory, amount, colocated, elastic)| {
                let mut requirement = if memory {
                    ResourceRequirement::new(ResourceType::Memory, Quantity::try_from(amount).unwrap(), Unit::GIB)
                } else {
                    ResourceRequirement::new(ResourceType::Compute, Quantity::from_milli(500 * amount), Unit::CORES)
                };
                if colocated {
                    requirement = requirement.colocated(ColocationGroup::new("g").unwrap());
                }
                if elastic {
                    requirement = requirement.elastic(Quantity::from_milli(250));
                }
                requirement
            })
            .collect();
        let strategies = [
            ReservationStrategy::Greedy,
            ReservationStrategy::Balanced,
            ReservationStrategy::BinPack,
            ReservationStrategy::Aligned,
        ];
        let mut request = ReservationRequest::new(RequesterId::new("t").unwrap(), requirements)
            .with_id(ReservationId::new("job").unwrap())
            .with_priority(Priority(priority))
            .with_strategy(strategies[strategy]);
        if let Some(ttl) = ttl {
            request = request.with_ttl(Duration::from_secs(ttl));
        }
        if labelled {
            let mut labels = Labels::new();
            labels.insert("team", "ml").unwrap();
            request = request.with_labels(labels);
        }
        request.preemptible = preemptible;
        if by_zone {
            request = request.with_colocation_label(LabelKey::new("zone").unwrap());
        }
        request
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(rm_testkit::proptest_cases(64)))]

    #[test]
    fn changing_any_one_field_under_a_used_id_conflicts(request in request(), pick in any::<prop::sample::Index>()) {
        let clock = Arc::new(ManualClock::new());
        let manager = manager(&clock);
        for i in 0..4 {
            let zone = if i < 2 { "a" } else { "b" };
            manager
                .register_resource(host(&format!("n{i}"), 8, 16).with_label("zone", zone).unwrap())
                .unwrap();
        }
        let first = manager.reserve(&request).expect("the first request fits");
        let changes = single_field_changes(&request);
        let (field, changed) = &changes[pick.index(changes.len())];
        let answer = manager.reserve(changed);
        prop_assert!(
            matches!(answer, Err(LedgerError::IdConflict { .. })),
            "changing {}: expected an id conflict, got {:?}", field, answer
        );
        prop_assert_eq!(manager.reserve(&request).unwrap(), first);
    }
}

/// Generated ids name the manager's place for their record, which a later grant reuses once
/// the reservation is forgotten: the old id must then find nothing (not the place's new
/// reservation), and an id the caller supplies that names a live record's place is still a
/// reservation of its own.
#[test]
fn forgotten_ids_and_caller_ids_never_reach_another_reservation() {
    let clock = Arc::new(ManualClock::new());
    let manager = manager(&clock);
    manager.register_resource(host("h", 8, 16)).unwrap();
    let one = || {
        ReservationRequest::new(
            RequesterId::new("t").unwrap(),
            vec![ResourceRequirement::new(
                ResourceType::Compute,
                1,
                Unit::CORES,
            )],
        )
    };
    let place = |id: &ReservationId| id.generated_bits().map(|bits| bits as u32);
    let unknown = |answer: Result<_, LedgerError>| {
        matches!(answer, Err(LedgerError::UnknownReservation { .. }))
    };
    let first = manager.reserve(&one()).unwrap();
    manager.cancel(&first.id, None).unwrap();
    // Past the retention and the sweep's slack: the first is forgotten and its place free.
    clock.advance(Duration::from_secs(70));
    let second = manager.reserve(&one()).unwrap();
    assert_eq!(place(&second.id), place(&first.id), "the place is reused");
    assert_ne!(second.id, first.id);
    assert!(unknown(manager.get(&first.id)));
    assert!(unknown(manager.confirm(&first.id, None)));
    assert!(unknown(manager.cancel(&first.id, None)));
    assert_eq!(
        manager.get(&second.id).unwrap().state,
        ReservationState::Pending
    );

    // A generated id of the caller's own that names the second's place.
    let bits = second.id.generated_bits().unwrap();
    let theirs = ReservationId::from_generated_bits(bits ^ (1 << 100));
    assert_eq!(place(&theirs), place(&second.id));
    let named = one()
        .with_id(theirs.clone())
        .with_ttl(Duration::from_secs(600));
    let third = manager.reserve(&named).unwrap();
    assert_eq!(third.id, theirs);
    assert_ne!(third.fencing_token, second.fencing_token);
    // Its retry answers it, not the second.
    let retried = manager.reserve(&named).unwrap();
    assert_eq!(retried.fencing_token, third.fencing_token);
    manager.cancel(&second.id, None).unwrap();
    assert_eq!(
        manager.get(&theirs).unwrap().state,
        ReservationState::Pending
    );
    // Naming the generated id of a reservation granted without one is a conflict.
    assert!(matches!(
        manager.reserve(&one().with_id(second.id.clone())),
        Err(LedgerError::IdConflict { .. })
    ));
    assert_eq!(manager.remembered(), 2);
    clock.advance(Duration::from_secs(70));
    assert_eq!(manager.remembered(), 1, "the third is still pending");
    assert!(unknown(manager.get(&second.id)));
}
