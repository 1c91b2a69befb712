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

/// A small deterministic generator: each call gives the next number below its argument.
fn xorshift(mut seed: u64) -> impl FnMut(u64) -> u64 {
    move |n| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    }
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

/// A plain request (requirements of distinct types, alone or co-located on one resource) on
/// random nodes goes where the model's scorer puts it: `best_candidate` over each candidate's
/// `DimensionFit`s, in the candidate's own unit, after what earlier groups of the same request
/// took. Nodes measured in the request's units take the planner's specialised scan; some
/// nodes measured in other units (converted) send it to the general loop.
#[test]
fn plain_requests_go_where_the_models_scorer_puts_them() {
    use rm_model::placement::{DimensionFit, PlacementCandidate, best_candidate};
    use rm_model::{ColocationGroup, Resource};

    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    // (type, the request's unit, another unit the node may count in, how many of it make one
    // of the request's)
    let types = [
        (ResourceType::Compute, Unit::CORES, Unit::MILLICORES, 1000),
        (ResourceType::Memory, Unit::GIB, Unit::MIB, 1024),
        (ResourceType::Gpu, Unit::DEVICES, Unit::DEVICES, 1),
    ];
    let strategies = [
        ReservationStrategy::Greedy,
        ReservationStrategy::Balanced,
        ReservationStrategy::BinPack,
        ReservationStrategy::Aligned,
    ];
    let mut scanned = 0;
    for case in 0..400 {
        let mixed_units = case % 4 == 0;
        let mut catalog = Catalog::default();
        for i in 0..1 + next(30) {
            let mut resource: Option<Resource> = None;
            let mut free = Vec::new();
            for (t, (resource_type, unit, other, factor)) in types.iter().enumerate() {
                if t > 0 && next(4) == 0 {
                    continue;
                }
                let (unit, scale) = if mixed_units && next(3) == 0 {
                    (other, *factor)
                } else {
                    (unit, 1)
                };
                let maximum = next(17) as i64 * scale;
                let capacity =
                    ResourceCapacity::of(Quantity::from_milli(maximum * 1000), unit.clone())
                        .unwrap();
                resource = Some(match resource {
                    None => {
                        Resource::new(&format!("n{i}"), resource_type.clone(), capacity).unwrap()
                    }
                    Some(r) => r.with_capacity(resource_type.clone(), capacity),
                });
                free.push((
                    resource_type.clone(),
                    next(maximum as u64 * 1000 + 1) as i64,
                ));
            }
            catalog.insert(resource.unwrap(), Arc::new(Free(free)));
        }
        let colocated = case % 2 == 1;
        let requirements: Vec<ResourceRequirement> = types[..1 + next(3) as usize]
            .iter()
            .map(|(resource_type, unit, _, _)| {
                let r = ResourceRequirement::new(
                    resource_type.clone(),
                    1 + next(6) as i32,
                    unit.clone(),
                );
                if colocated {
                    r.colocated(ColocationGroup::new("pod").unwrap())
                } else {
                    r
                }
            })
            .collect();
        let groups: Vec<Vec<usize>> = if colocated {
            vec![(0..requirements.len()).collect()]
        } else {
            (0..requirements.len()).map(|i| vec![i]).collect()
        };
        for strategy in strategies {
            let request =
                ReservationRequest::new(RequesterId::new("t").unwrap(), requirements.clone())
                    .with_strategy(strategy);
            // The model's choice, group after group.
            let mut taken: Vec<(usize, ResourceType, i64)> = Vec::new();
            let mut expected = Some(Vec::new());
            for group in &groups {
                let fits: Vec<(usize, Vec<DimensionFit>)> = catalog
                    .resources
                    .iter()
                    .enumerate()
                    .filter_map(|(position, resource)| {
                        let dims = group
                            .iter()
                            .map(|&i| {
                                let r = &requirements[i];
                                let capacity = resource.capacity_of(r.resource_type())?;
                                let d = catalog.slots[position].dim(r.resource_type())?;
                                let before: i64 = taken
                                    .iter()
                                    .filter(|(p, t, _)| *p == position && t == r.resource_type())
                                    .map(|(_, _, a)| a)
                                    .sum();
                                Some(DimensionFit {
                                    resource_type: r.resource_type().clone(),
                                    requested: r.amount_in(capacity.unit()).ok()?,
                                    free: Quantity::from_milli(
                                        catalog.slots[position].free(d) - before,
                                    ),
                                    capacity: capacity.maximum(),
                                })
                            })
                            .collect::<Option<Vec<_>>>()?;
                        Some((position, dims))
                    })
                    .collect();
                let best = best_candidate(
                    &strategy,
                    fits.iter().map(|(position, dims)| {
                        let candidate = PlacementCandidate {
                            resource: &catalog.resources[*position],
                            order: *position,
                            dimensions: dims,
                        };
                        (candidate, 0)
                    }),
                );
                match (best, expected.as_mut()) {
                    (Some(index), Some(names)) => {
                        let (position, dims) = &fits[index];
                        for dim in dims {
                            taken.push((
                                *position,
                                dim.resource_type.clone(),
                                dim.requested.as_milli(),
                            ));
                        }
                        for _ in group {
                            names.push(catalog.resources[*position].name().to_string());
                        }
                    }
                    _ => expected = None,
                }
            }
            let got = placed(&catalog, &request, &[]).ok();
            assert_eq!(got, expected, "case {case}, {strategy:?}, {requirements:?}");
            scanned += usize::from(got.is_some());
        }
    }
    // Most cases place something: the comparison is not only of refusals.
    assert!(scanned > 800, "{scanned} placements");
}

/// A request of one requirement with nothing but hard constraints is planned by the
/// specialised scan alone: the same placements (resource, amount, unit) as the general
/// search, and the same refusals, explained or not, for every strategy, with and without
/// unit conversions and constraints.
#[test]
fn single_requirements_are_planned_as_the_general_search_plans_them() {
    use rm_model::Constraint;

    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    let strategies = [
        ReservationStrategy::Greedy,
        ReservationStrategy::Balanced,
        ReservationStrategy::BinPack,
        ReservationStrategy::Aligned,
        ReservationStrategy::RandomFit,
        ReservationStrategy::Fragmentation,
        ReservationStrategy::GpuClustering,
    ];
    let (mut fast, mut placed_count, mut refused) = (0, 0, 0);
    for case in 0..300 {
        let mut catalog = Catalog::default();
        for i in 0..1 + next(20) {
            // Some nodes count cores in millicores: the scan leaves those to the search.
            let (unit, scale) = if case % 3 == 0 && next(4) == 0 {
                (Unit::MILLICORES, 1000)
            } else {
                (Unit::CORES, 1)
            };
            let maximum = 1 + next(16) as i64;
            let resource = Resource::new(
                &format!("n{i}"),
                ResourceType::Compute,
                ResourceCapacity::of(Quantity::from_milli(maximum * scale * 1000), unit).unwrap(),
            )
            .unwrap()
            .with_label("zone", if next(2) == 0 { "a" } else { "b" })
            .unwrap();
            let free = next((maximum * scale * 1000) as u64 + 1) as i64;
            catalog.insert(
                resource,
                Arc::new(Free(vec![(ResourceType::Compute, free)])),
            );
        }
        let mut requirement =
            ResourceRequirement::new(ResourceType::Compute, 1 + next(8) as i32, Unit::CORES);
        if next(3) == 0 {
            requirement = requirement.with_constraint(Constraint::label("zone").unwrap().eq("a"));
        }
        for strategy in strategies {
            let request =
                ReservationRequest::new(RequesterId::new("t").unwrap(), vec![requirement.clone()])
                    .with_strategy(strategy);
            let affinity = Affinity::for_request(&request);
            for explain in [true, false] {
                catalog.node_strategies.set_seed(case);
                let single = super::plan::plan_single(&catalog, &request, &affinity, explain, &[]);
                catalog.node_strategies.set_seed(case);
                let general =
                    super::plan::plan_generic(&catalog, &request, &affinity, explain, &[]);
                catalog.node_strategies.set_seed(case);
                let planned = plan(&catalog, &request, &affinity, explain, &[]);
                let context = format!("case {case}, {strategy:?}, explain {explain}");
                // Errors compare by their text (every field shows in it).
                let general_text = format!("{general:?}");
                assert_eq!(format!("{planned:?}"), general_text, "{context}");
                if let Some(single) = single {
                    fast += 1;
                    assert_eq!(format!("{single:?}"), general_text, "{context}");
                }
                match &general {
                    Ok(_) => placed_count += 1,
                    Err(_) => refused += 1,
                }
            }
        }
    }
    // The comparison covers the scan itself, grants and refusals alike.
    assert!(
        fast > 2_000 && placed_count > 1_000 && refused > 300,
        "{fast} {placed_count} {refused}"
    );
}

/// The plain cache (one requirement of a built-in type without constraints) answers what
/// the cache of every shape answers, keeps other units and constrained shapes apart, and
/// forgets its lists when the catalog changes.
#[test]
fn plain_candidate_lists_match_the_general_cache_and_follow_changes() {
    let mut catalog = catalog(&[("a", 8, "x"), ("b", 2, "y")]);
    let positions = |c: &Catalog<Free>, requirement: ResourceRequirement| -> Vec<(u32, usize)> {
        let list = c.candidates(&[requirement], &[0]);
        list.iter().map(|c| (c.position, c.units.len())).collect()
    };
    let in_cores = || ResourceRequirement::new(ResourceType::Compute, 1, Unit::CORES);
    let in_millicores = || ResourceRequirement::new(ResourceType::Compute, 1, Unit::MILLICORES);
    let expected = vec![(0, 0), (1, 0)];
    let borrowed = |c: &Catalog<Free>, requirement: &ResourceRequirement| {
        c.plain_candidates(requirement)
            .map(|list| list.iter().map(|c| c.position).collect::<Vec<_>>())
    };
    assert_eq!(borrowed(&catalog, &in_cores()), None, "nothing asked yet");
    // First asked (fills the slot), then answered by it.
    assert_eq!(positions(&catalog, in_cores()), expected);
    assert_eq!(positions(&catalog, in_cores()), expected);
    assert_eq!(borrowed(&catalog, &in_cores()), Some(vec![0, 1]));
    // Another unit keeps to the general cache: the candidates need a conversion.
    assert_eq!(positions(&catalog, in_millicores()), vec![(0, 1), (1, 1)]);
    assert_eq!(positions(&catalog, in_cores()), expected);
    // A constrained shape is not plain.
    let in_zone = in_cores().with_constraint(rm_model::Constraint::label("zone").unwrap().eq("y"));
    assert_eq!(positions(&catalog, in_zone), vec![(1, 0)]);
    // A new resource is a candidate at once: the change cleared the slot.
    catalog.insert(
        Resource::new(
            "c",
            ResourceType::Compute,
            ResourceCapacity::of(4, Unit::CORES).unwrap(),
        )
        .unwrap(),
        Arc::new(Free(vec![(ResourceType::Compute, 4000)])),
    );
    assert_eq!(
        borrowed(&catalog, &in_cores()),
        None,
        "cleared by the change"
    );
    assert_eq!(
        positions(&catalog, in_cores()),
        vec![(0, 0), (1, 0), (2, 0)]
    );
    assert_eq!(borrowed(&catalog, &in_millicores()), None, "another unit");
}
