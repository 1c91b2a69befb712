//! Property: a request that reuses a used id and differs from the first in any one field
//! that changes what is granted is an id conflict, and the first request's retry still
//! returns the first reservation. `RM_PROPTEST_CASES` raises the number of cases.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use rm_model::{
    ColocationGroup, LabelKey, Labels, LedgerError, ManualClock, Priority, Quantity, RequesterId,
    ReservationId, ReservationLedger, ReservationRequest, ReservationStrategy, ResourceRequirement,
    ResourceType, Unit,
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
