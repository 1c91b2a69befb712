//! The planner on a plain slot (fixed free amounts): strategies, co-location by label, extra
//! capacity counted for a preemptor, and explained refusals.

use std::sync::Arc;

use rm_model::{
    LabelKey, LedgerError, Quantity, RequesterId, ReservationRequest, ReservationStrategy,
    Resource, ResourceCapacity, ResourceRequirement, ResourceType, Unit,
};

use crate::{Affinity, Catalog, Slot, plan};

/// Free thousandths per capacity type (the node planner's tests use it too).
pub(crate) struct Free(pub(crate) Vec<(ResourceType, i64)>);

impl Slot for Free {
    fn free(&self, dim: usize) -> i64 {
        self.0[dim].1
    }
    fn dim(&self, resource_type: &ResourceType) -> Option<usize> {
        self.0.iter().position(|(t, _)| t == resource_type)
    }
    fn explain(&self, resource_type: &ResourceType) -> Option<(Quantity, bool)> {
        self.dim(resource_type)
            .map(|d| (Quantity::from_milli(self.0[d].1), false))
    }
}

/// Nodes of 8 cores with the given free cores and zone labels.
fn catalog(nodes: &[(&str, i64, &str)]) -> Catalog<Free> {
    let mut catalog = Catalog::default();
    for &(name, free, zone) in nodes {
        let resource = Resource::new(
            name,
            ResourceType::Compute,
            ResourceCapacity::of(8, Unit::CORES).unwrap(),
        )
        .unwrap()
        .with_label("zone", zone)
        .unwrap();
        catalog.insert(
            resource,
            Arc::new(Free(vec![(ResourceType::Compute, free * 1000)])),
        );
    }
    catalog
}

fn cores(amounts: &[i32]) -> ReservationRequest {
    ReservationRequest::new(
        RequesterId::new("t").unwrap(),
        amounts
            .iter()
            .map(|&a| ResourceRequirement::new(ResourceType::Compute, a, Unit::CORES))
            .collect(),
    )
}

fn placed(
    catalog: &Catalog<Free>,
    request: &ReservationRequest,
    extra: &[(usize, usize, i64)],
) -> Result<Vec<String>, LedgerError> {
    let affinity = Affinity::for_request(request);
    plan(catalog, request, &affinity, true, extra).map(|placements| {
        placements
            .iter()
            .map(|p| catalog.resources[p.position].name().to_string())
            .collect()
    })
}

#[test]
fn strategies_choose_as_documented() {
    let nodes = catalog(&[("a", 3, "z1"), ("b", 8, "z1"), ("c", 5, "z2")]);
    for (strategy, expected) in [
        (ReservationStrategy::Greedy, "a"),
        (ReservationStrategy::Balanced, "b"),
        (ReservationStrategy::BinPack, "a"),
    ] {
        let request = cores(&[2]).with_strategy(strategy);
        assert_eq!(
            placed(&nodes, &request, &[]).unwrap(),
            [expected],
            "{strategy:?}"
        );
    }
}

#[test]
fn co_location_by_label_keeps_every_requirement_in_one_domain() {
    // z1 has 3 + 2 free, z2 has 5 + 4: two requirements of 4 fit only in z2.
    let nodes = catalog(&[
        ("a", 3, "z1"),
        ("b", 2, "z1"),
        ("c", 5, "z2"),
        ("d", 4, "z2"),
    ]);
    let request = cores(&[4, 4])
        .with_strategy(ReservationStrategy::Greedy)
        .with_colocation_label(LabelKey::new("zone").unwrap());
    assert_eq!(placed(&nodes, &request, &[]).unwrap(), ["c", "d"]);
}

#[test]
fn extra_capacity_counts_for_a_preemptor_and_refusals_are_explained() {
    let nodes = catalog(&[("a", 1, "z1"), ("b", 2, "z1")]);
    let request = cores(&[3]);
    match placed(&nodes, &request, &[]) {
        Err(LedgerError::InsufficientCapacity { shortfalls, .. }) => {
            assert_eq!(shortfalls.len(), 1);
            assert_eq!(shortfalls[0].short_by, Quantity::from(1));
            assert_eq!(
                shortfalls[0].best_candidate.as_ref().map(|n| n.as_str()),
                Some("b")
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // With a victim's 2 cores on `a` counted as free, `a` has room.
    assert_eq!(placed(&nodes, &request, &[(0, 0, 2000)]).unwrap(), ["a"]);
}
