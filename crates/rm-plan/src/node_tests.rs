//! The node strategies on hand-checked nodes: each baseline's choice, the fragmentation
//! strategy's node and device, random fit's draws, and the fallback for other shapes.

use std::sync::Arc;

use rm_model::fragment::{PodShape, Workload};
use rm_model::{
    ColocationGroup, Constraint, LabelKey, Quantity, RequesterId, ReservationRequest,
    ReservationStrategy, Resource, ResourceCapacity, ResourceRequirement, ResourceType, Unit,
};

use crate::tests::Free;
use crate::{Affinity, Catalog, plan};

const GIB: i64 = 1 << 30;

/// A node: its name, cores of 64 free, memory (GiB) of 256 free, each device's free
/// milli-GPU, and its GPU model.
struct Node<'a>(&'a str, i64, i64, &'a [i64], &'a str);

fn cluster(nodes: &[Node<'_>]) -> Catalog<Free> {
    let mut catalog = Catalog::default();
    for Node(name, cpu, memory, devices, model) in nodes {
        let host = Resource::new(
            name,
            ResourceType::Compute,
            ResourceCapacity::of(64, Unit::CORES).unwrap(),
        )
        .unwrap()
        .with_capacity(
            ResourceType::Memory,
            ResourceCapacity::of(Quantity::from_milli(256 * GIB * 1000), Unit::BYTES).unwrap(),
        )
        .with_label("node", name)
        .unwrap();
        catalog.insert(
            host,
            Arc::new(Free(vec![
                (ResourceType::Compute, cpu * 1000),
                (ResourceType::Memory, memory * GIB * 1000),
            ])),
        );
        for (k, free) in devices.iter().enumerate() {
            let device = Resource::new(
                &format!("{name}-gpu-{k}"),
                ResourceType::Gpu,
                ResourceCapacity::of(1, Unit::DEVICES).unwrap(),
            )
            .unwrap()
            .with_label("node", name)
            .unwrap()
            .with_label("model", model)
            .unwrap();
            catalog.insert(device, Arc::new(Free(vec![(ResourceType::Gpu, *free)])));
        }
    }
    catalog
}

/// A pod of `cpu` cores, `memory` GiB and `gpus` whole GPUs or a `share` of one.
fn pod(
    cpu: i32,
    memory: i64,
    gpus: u32,
    share: i64,
    strategy: ReservationStrategy,
) -> ReservationRequest {
    let group = ColocationGroup::new("host").unwrap();
    let mut requirements = vec![
        ResourceRequirement::new(ResourceType::Compute, cpu, Unit::CORES).colocated(group.clone()),
        ResourceRequirement::new(
            ResourceType::Memory,
            Quantity::from_milli(memory * GIB * 1000),
            Unit::BYTES,
        )
        .colocated(group),
    ];
    if share < 1000 && gpus == 1 {
        requirements.push(ResourceRequirement::new(
            ResourceType::Gpu,
            Quantity::from_milli(share),
            Unit::DEVICES,
        ));
    } else {
        for _ in 0..gpus {
            requirements.push(ResourceRequirement::new(
                ResourceType::Gpu,
                1,
                Unit::DEVICES,
            ));
        }
    }
    ReservationRequest::new(RequesterId::new("t").unwrap(), requirements)
        .with_colocation_label(LabelKey::new("node").unwrap())
        .with_strategy(strategy)
}

/// Where `request` goes: the resource names, in requirement order.
fn place(catalog: &Catalog<Free>, request: &ReservationRequest) -> Vec<String> {
    let placements = plan(catalog, request, &Affinity::for_request(request), true, &[])
        .unwrap_or_else(|err| panic!("{err}"));
    placements
        .iter()
        .map(|p| catalog.resources[p.position].name().as_str().to_owned())
        .collect()
}

#[test]
fn best_fit_takes_the_fullest_node_and_device() {
    let catalog = cluster(&[
        Node("a", 64, 256, &[1000; 8], "G2"),
        Node("b", 64, 256, &[1000, 1000, 0, 0, 0, 0, 0, 0], "G2"),
    ]);
    // A whole GPU: b is left with 1 GPU, a with 7.
    let whole = pod(4, 8, 1, 1000, ReservationStrategy::BestFit);
    assert_eq!(place(&catalog, &whole), ["b", "b", "b-gpu-0"]);
    // Cores count too: with fewer cores free, a is the fuller node.
    let catalog = cluster(&[
        Node("a", 4, 256, &[1000; 4], "G2"),
        Node("b", 64, 256, &[1000, 1000, 0, 0], "G2"),
    ]);
    assert_eq!(place(&catalog, &whole)[0], "a");
    // A quarter GPU: on the fullest device that holds it.
    let catalog = cluster(&[Node("c", 64, 256, &[1000, 300, 600, 200], "G2")]);
    let quarter = pod(4, 8, 1, 250, ReservationStrategy::BestFit);
    assert_eq!(place(&catalog, &quarter)[2], "c-gpu-1");
}

#[test]
fn dot_product_takes_the_least_aligned_free_capacity() {
    let catalog = cluster(&[
        Node("idle", 64, 256, &[1000; 4], "T4"),
        Node("busy", 8, 256, &[1000, 0, 0, 0], "T4"),
    ]);
    // Demand (4/64 cores, 1/4 GPU) · free: idle (1, 1) = 0.3125; busy (1/8, 1/4) = 0.07.
    let request = pod(4, 8, 1, 1000, ReservationStrategy::DotProduct);
    assert_eq!(place(&catalog, &request)[0], "busy");
}

#[test]
fn gpu_packing_prefers_shared_gpus_then_used_nodes_then_idle_ones() {
    let catalog = cluster(&[
        Node("idle", 64, 256, &[1000; 2], "T4"),
        Node("used", 64, 256, &[1000, 0], "T4"),
        Node("shared", 64, 256, &[1000, 600], "T4"),
    ]);
    // A share fits on the GPU already in use.
    let share = pod(2, 4, 1, 500, ReservationStrategy::GpuPacking);
    assert_eq!(place(&catalog, &share)[2], "shared-gpu-1");
    // A whole GPU: a node in use (the first of them), before the idle one.
    let whole = pod(2, 4, 1, 1000, ReservationStrategy::GpuPacking);
    assert_eq!(place(&catalog, &whole)[0], "used");
    // Two whole GPUs fit only on the idle node.
    let two = pod(2, 4, 2, 1000, ReservationStrategy::GpuPacking);
    assert_eq!(place(&catalog, &two)[0], "idle");
}

#[test]
fn gpu_clustering_keeps_pods_of_one_class_together() {
    let catalog = cluster(&[
        Node("a", 64, 256, &[1000; 4], "T4"),
        Node("b", 64, 256, &[1000; 4], "T4"),
        Node("c", 64, 256, &[1000; 4], "T4"),
    ]);
    let half = pod(2, 4, 1, 500, ReservationStrategy::GpuClustering);
    let whole = pod(2, 4, 1, 1000, ReservationStrategy::GpuClustering);
    // Record what runs where (the ledger does after each commit), with the devices' free
    // counters as they would be: a half on b, a whole GPU on c.
    let mut catalog = catalog;
    for (node, request, device, left) in [("b", &half, 6, 500), ("c", &whole, 11, 0)] {
        catalog.slots[device] = Arc::new(Free(vec![(ResourceType::Gpu, left)]));
        let placements = plan(
            &catalog,
            request,
            &Affinity::for_request(request),
            true,
            &[],
        )
        .unwrap();
        let mut placed = placements.clone();
        for p in &mut placed {
            if p.resource_type == ResourceType::Gpu {
                p.position = device;
            } else {
                p.position = catalog
                    .position(&rm_model::ResourceName::new(node).unwrap())
                    .unwrap();
            }
        }
        catalog.record_placement(request, &placed);
    }
    // Another half goes where halves run; a whole GPU where whole GPUs run; a quarter (a
    // share too: one class, as the paper's simulator tags pods) with the halves; two whole
    // GPUs (a class of their own) to the idle node.
    assert_eq!(place(&catalog, &half)[0], "b");
    assert_eq!(place(&catalog, &whole)[0], "c");
    let quarter = pod(2, 4, 1, 250, ReservationStrategy::GpuClustering);
    assert_eq!(place(&catalog, &quarter)[0], "b");
    let two = pod(2, 4, 2, 1000, ReservationStrategy::GpuClustering);
    assert_eq!(place(&catalog, &two)[0], "a");
}

#[test]
fn random_fit_draws_among_the_nodes_that_fit_by_its_seed() {
    let catalog = cluster(&[
        Node("a", 64, 256, &[1000; 2], "T4"),
        Node("full", 64, 256, &[0, 0], "T4"),
        Node("b", 64, 256, &[1000; 2], "T4"),
        Node("c", 64, 256, &[1000; 2], "T4"),
    ]);
    let request = pod(2, 4, 1, 1000, ReservationStrategy::RandomFit);
    let draws = |seed: u64| -> Vec<String> {
        catalog.node_strategies.set_seed(seed);
        (0..300)
            .map(|_| place(&catalog, &request)[0].clone())
            .collect()
    };
    let first = draws(7);
    assert_eq!(first, draws(7), "the same seed draws the same nodes");
    assert_ne!(first, draws(8));
    for node in ["a", "b", "c"] {
        let count = first.iter().filter(|n| *n == node).count();
        assert!((60..=140).contains(&count), "{node}: {count} of 300");
    }
    assert!(!first.iter().any(|n| n == "full"));
}

/// A 0.5-GPU pod where the workload is 0.5-GPU pods: best fit fills the 0.6 device (0.1
/// left, usable by none); the fragmentation strategy takes the whole device, leaving 0.6 and
/// 0.5, both usable.
#[test]
fn fragmentation_keeps_shares_usable() {
    let catalog = cluster(&[Node("a", 64, 256, &[600, 1000], "T4")]);
    let half = pod(2, 4, 1, 500, ReservationStrategy::Fragmentation);
    catalog
        .node_strategies
        .set_workload(Workload::from_shapes([&PodShape::of(&half).unwrap()]));
    assert_eq!(place(&catalog, &half)[2], "a-gpu-1");
    let best_fit = pod(2, 4, 1, 500, ReservationStrategy::BestFit);
    assert_eq!(place(&catalog, &best_fit)[2], "a-gpu-0");
}

/// A CPU-only pod goes where the GPUs are all taken rather than take the cores a GPU pod
/// would need; a whole-GPU pod goes where it strands no share.
#[test]
fn fragmentation_keeps_cores_beside_free_gpus() {
    let catalog = cluster(&[
        Node("gpus-free", 8, 256, &[1000, 1000], "T4"),
        Node("gpus-taken", 8, 256, &[0, 0], "T4"),
    ]);
    let gpu_pod = pod(8, 8, 1, 1000, ReservationStrategy::Fragmentation);
    let cpu_pod = pod(4, 8, 0, 0, ReservationStrategy::Fragmentation);
    catalog.node_strategies.set_workload(Workload::from_shapes([
        &PodShape::of(&gpu_pod).unwrap(),
        &PodShape::of(&cpu_pod).unwrap(),
    ]));
    assert_eq!(place(&catalog, &cpu_pod)[0], "gpus-taken");
    // Greedy takes the first node that fits.
    let greedy = pod(4, 8, 0, 0, ReservationStrategy::Greedy);
    assert_eq!(place(&catalog, &greedy)[0], "gpus-free");
}

/// The bands are the FGD paper's score, `⌊100 σ(fall per pod in GPUs)⌋`: no change scores
/// 50; a fall of 40 milli-GPU per pod stays in it, 41 reaches 51; a rise of 1 milli-GPU is
/// 49; large falls and rises saturate at 99 and 0; the fall is per pod of the workload.
#[test]
fn fragmentation_bands_are_the_papers_score() {
    use crate::nodes::band;
    assert_eq!(band(0, 1), 50);
    assert_eq!(band(40, 1), 50);
    assert_eq!(band(41, 1), 51);
    assert_eq!(band(-1, 1), 49);
    assert_eq!(band(-40_006, 1_000), 48);
    assert_eq!(band(410, 10), 51);
    assert_eq!(band(100_000, 1), 99);
    assert_eq!(band(-100_000, 1), 0);
    assert_eq!(band(i128::MAX / 2, 3), 99);
    assert_eq!(band(123, 0), 50);
    // Against the logistic function in floating point, away from the thresholds.
    for milli in (-5_000..=5_000).step_by(7) {
        let sigma = 1.0 / (1.0 + (-(f64::from(milli) / 1000.0)).exp());
        let paper = (100.0 * sigma).floor() as i128;
        let near = ((100.0 * sigma) - (100.0 * sigma).round()).abs() < 1e-6;
        if !near {
            assert_eq!(band(i128::from(milli) * 7, 7), paper, "{milli} milli-GPU");
        }
    }
}

/// Nodes in one band are ranked by the placement seed: alike nodes are chosen by the seed's
/// order, the same seed repeats its choice, and different seeds spread over the nodes.
#[test]
fn fragmentation_ranks_a_band_by_the_seed() {
    let names = ["a", "b", "c", "d", "e", "f"];
    let nodes: Vec<Node<'_>> = names
        .iter()
        .map(|n| Node(n, 64, 256, &[1000, 1000, 1000, 1000], "T4"))
        .collect();
    let half = pod(2, 4, 1, 500, ReservationStrategy::Fragmentation);
    let mut chosen = std::collections::BTreeSet::new();
    for seed in 0..12 {
        let catalog = cluster(&nodes);
        catalog.node_strategies.set_seed(seed);
        catalog
            .node_strategies
            .set_workload(Workload::from_shapes([&PodShape::of(&half).unwrap()]));
        let first = place(&catalog, &half)[0].clone();
        assert_eq!(place(&catalog, &half)[0], first, "seed {seed} repeats");
        chosen.insert(first);
    }
    assert!(chosen.len() >= 3, "{chosen:?}");
}

/// A demand limited to one model measures only the nodes of that model: a pod of any model
/// goes to the node the constrained pods cannot use.
#[test]
fn fragmentation_spares_the_models_constrained_pods_need() {
    let catalog = cluster(&[
        Node("v100", 64, 256, &[1000; 2], "V100"),
        Node("t4", 64, 256, &[1000; 2], "T4"),
    ]);
    let any = pod(2, 4, 1, 1000, ReservationStrategy::Fragmentation);
    let mut v100 = pod(2, 4, 1, 1000, ReservationStrategy::Fragmentation);
    let only_v100 = Constraint::label("model").unwrap().is_in(["V100"]);
    v100.requirements[2] = v100.requirements[2].clone().with_constraint(only_v100);
    let mut workload = Workload::new();
    workload.observe_n(&PodShape::of(&v100).unwrap(), 3);
    workload.observe(&PodShape::of(&any).unwrap());
    catalog.node_strategies.set_workload(workload);
    assert_eq!(place(&catalog, &any)[0], "t4");
    assert_eq!(place(&catalog, &v100)[0], "v100");
}

/// Requests the node strategies cannot judge as a pod are planned by their per-resource
/// score: a pooled GPU count on a node is placed (bin-pack: the fullest node).
#[test]
fn other_shapes_fall_back_to_the_per_resource_score() {
    let mut catalog = Catalog::default();
    for (name, free) in [("a", 4), ("b", 1)] {
        let resource = Resource::new(
            name,
            ResourceType::Gpu,
            ResourceCapacity::of(4, Unit::DEVICES).unwrap(),
        )
        .unwrap();
        catalog.insert(
            resource,
            Arc::new(Free(vec![(ResourceType::Gpu, free * 1000)])),
        );
    }
    for strategy in [
        ReservationStrategy::Fragmentation,
        ReservationStrategy::BestFit,
        ReservationStrategy::GpuPacking,
        ReservationStrategy::GpuClustering,
    ] {
        let request = ReservationRequest::new(
            RequesterId::new("t").unwrap(),
            vec![ResourceRequirement::new(
                ResourceType::Gpu,
                1,
                Unit::DEVICES,
            )],
        )
        .with_strategy(strategy);
        let placements = plan(
            &catalog,
            &request,
            &Affinity::for_request(&request),
            true,
            &[],
        )
        .unwrap();
        assert_eq!(
            catalog.resources[placements[0].position].name().as_str(),
            "b",
            "{strategy}"
        );
    }
}

/// The node planner chooses what the generic planner chooses for the built-in strategies,
/// on random clusters of GPU nodes (random free capacity, models, device counts) and random
/// pods (CPU-only, shares, whole and multi-GPU, with and without model constraints).
#[test]
fn built_in_strategies_choose_as_the_generic_planner() {
    let mut state = 0x1234_5678_u64;
    let mut next = move |n: u64| {
        state = crate::table::mix(state);
        state % n
    };
    let models = ["T4", "V100", "G2"];
    for case in 0..200 {
        let count = 1 + next(12) as usize;
        let names: Vec<String> = (0..count).map(|i| format!("n{i}")).collect();
        let frees: Vec<Vec<i64>> = (0..count)
            .map(|_| {
                let devices = [0, 1, 2, 4, 8][next(5) as usize];
                (0..devices)
                    .map(|_| [0, 1000, 1000, 500, 190, 810][next(6) as usize])
                    .collect()
            })
            .collect();
        let nodes: Vec<Node<'_>> = (0..count)
            .map(|i| {
                Node(
                    &names[i],
                    next(65) as i64,
                    next(257) as i64,
                    &frees[i],
                    models[next(3) as usize],
                )
            })
            .collect();
        let catalog = cluster(&nodes);
        for strategy in [
            ReservationStrategy::Greedy,
            ReservationStrategy::Balanced,
            ReservationStrategy::BinPack,
            ReservationStrategy::Aligned,
        ] {
            let (gpus, share) =
                [(0, 0), (1, 250), (1, 500), (1, 1000), (2, 1000), (4, 1000)][next(6) as usize];
            let mut request = pod(1 + next(32) as i32, next(64) as i64, gpus, share, strategy);
            if gpus > 0 && next(3) == 0 {
                let only = Constraint::label("model")
                    .unwrap()
                    .is_in([models[next(3) as usize]]);
                for r in request.requirements.iter_mut().skip(2) {
                    *r = r.clone().with_constraint(only.clone());
                }
            }
            assert!(
                crate::nodes::plan_nodes(&catalog, &request, false).is_some(),
                "the node planner judges case {case}"
            );
            let affinity = Affinity::for_request(&request);
            let fast = plan(&catalog, &request, &affinity, false, &[]).ok();
            let generic = crate::plan::plan_generic(&catalog, &request, &affinity, false, &[]).ok();
            assert_eq!(fast, generic, "case {case}, {strategy}");
        }
    }
}
