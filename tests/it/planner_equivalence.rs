//! The embedded ledger (`rm-reserve`) and the PostgreSQL ledger (`rm-postgres`) plan with
//! one planner (`rm-plan`): fed the same random clusters and the same requests (every
//! strategy, hard constraints, soft preferences, affinity, co-location by resource and by
//! label), they make the same choice every time, and end with the same accounting.
//! `RM_STRESS_ROUNDS` raises the number of operations per cluster.

use std::sync::Arc;
use std::time::Duration;

use rm_model::{
    AffinityKind, AffinityTerm, ColocationGroup, Constraint, LabelKey, LedgerError, ManualClock,
    Quantity, RequesterId, Reservation, ReservationId, ReservationLedger, ReservationRequest,
    ReservationStrategy, Resource, ResourceCapacity, ResourceRequirement, ResourceType, Selector,
    Topology, Unit,
};
use rm_testkit::Rng;
use rm_testkit::postgres::{Durability, server};

/// The two ledgers compared, on one manual clock: the embedded one and a PostgreSQL one in
/// a schema of its own on the server at `url`.
fn ledgers(url: &str) -> (rm_reserve::ReservationManager, rm_postgres::PgLedger) {
    let clock = Arc::new(ManualClock::new());
    let embedded = rm_reserve::ReservationManager::builder()
        .clock(clock.clone())
        .default_ttl(Duration::from_secs(3600))
        .build()
        .expect("valid settings");
    let shared = rm_postgres::PgLedger::builder(url.to_owned())
        .schema(
            server("schema", Durability::Throwaway)
                .expect("the same server")
                .name,
        )
        .clock(clock.clone())
        .default_ttl(Duration::from_secs(3600))
        .connect()
        .expect("connect");
    (embedded, shared)
}

fn cluster(rng: &mut Rng, nodes: u64) -> Vec<Resource> {
    (0..nodes)
        .map(|n| {
            let mut node = Resource::new(
                &format!("node-{n}"),
                ResourceType::Compute,
                ResourceCapacity::of(4 * (1 + rng.below(16)) as i32, Unit::CORES).expect("valid"),
            )
            .expect("valid")
            .with_capacity(
                ResourceType::Memory,
                ResourceCapacity::of(8 * (1 + rng.below(32)) as i32, Unit::GIB).expect("valid"),
            )
            .with_label("zone", &format!("z{}", rng.below(4)))
            .expect("valid")
            .with_label("rack", &format!("r{}", rng.below(8)))
            .expect("valid");
            if rng.below(3) == 0 {
                node = node.with_capacity(
                    ResourceType::Gpu,
                    ResourceCapacity::of(1 + rng.below(8) as i32, Unit::DEVICES).expect("valid"),
                );
            }
            node
        })
        .collect()
}

fn request(rng: &mut Rng, n: u64) -> ReservationRequest {
    let group = ColocationGroup::new("g").expect("valid");
    let colocate = rng.below(4) == 0;
    let requirements = (0..1 + rng.below(3))
        .map(|_| {
            let mut requirement = match rng.below(3) {
                0 => ResourceRequirement::new(
                    ResourceType::Compute,
                    Quantity::from_milli(250 * (1 + rng.below(24)) as i64),
                    Unit::CORES,
                ),
                1 => ResourceRequirement::new(
                    ResourceType::Memory,
                    1 + rng.below(24) as i32,
                    Unit::GIB,
                ),
                _ => ResourceRequirement::new(
                    ResourceType::Gpu,
                    Quantity::from_milli(500 * (1 + rng.below(4)) as i64),
                    Unit::DEVICES,
                ),
            };
            if colocate {
                requirement = requirement.colocated(group.clone());
            }
            if rng.below(5) == 0 {
                requirement = requirement.with_constraint(
                    Constraint::label("zone")
                        .expect("valid")
                        .ne(format!("z{}", rng.below(4))),
                );
            }
            if rng.below(4) == 0 {
                requirement = requirement.with_preference(
                    1 + rng.below(50) as u8,
                    Constraint::label("rack")
                        .expect("valid")
                        .eq(format!("r{}", rng.below(8))),
                );
            }
            if rng.below(4) == 0 {
                let kind = if rng.below(2) == 0 {
                    AffinityKind::Affinity
                } else {
                    AffinityKind::AntiAffinity
                };
                let topology = if rng.below(2) == 0 {
                    Topology::Resource
                } else {
                    Topology::Label(LabelKey::new("zone").expect("valid"))
                };
                let selector = Selector::requester(
                    RequesterId::new(&format!("t{}", rng.below(4))).expect("valid"),
                );
                requirement = requirement.with_affinity(if rng.below(3) == 0 {
                    AffinityTerm::required(kind, selector, topology)
                } else {
                    AffinityTerm::preferred(kind, selector, topology, 1 + rng.below(100) as u8)
                });
            }
            requirement
        })
        .collect();
    let strategy = [
        ReservationStrategy::Greedy,
        ReservationStrategy::Balanced,
        ReservationStrategy::BinPack,
        ReservationStrategy::Aligned,
    ][rng.below(4) as usize];
    let mut request = ReservationRequest::new(
        RequesterId::new(&format!("t{}", rng.below(4))).expect("valid"),
        requirements,
    )
    .with_id(ReservationId::new(&format!("r{n}")).expect("valid"))
    .with_strategy(strategy);
    if rng.below(6) == 0 {
        request = request.with_colocation_label(LabelKey::new("rack").expect("valid"));
    }
    request
}

/// What must agree: where each requirement went and how much it took, or the error.
fn choice(result: &Result<Reservation, LedgerError>) -> Result<Vec<(usize, String, i64)>, String> {
    match result {
        Ok(reservation) => Ok(reservation
            .items
            .iter()
            .map(|i| (i.requirement, i.resource.to_string(), i.amount.as_milli()))
            .collect()),
        Err(LedgerError::InsufficientCapacity { shortfalls, .. }) => Err(format!(
            "insufficient-capacity {:?}",
            shortfalls
                .iter()
                .map(|s| (s.requirement, s.matching_resources, s.available))
                .collect::<Vec<_>>()
        )),
        Err(other) => Err(other.code().to_owned()),
    }
}

#[test]
fn both_ledgers_choose_the_same_resources_on_random_clusters() {
    let Some(test_server) = server(
        "both_ledgers_choose_the_same_resources_on_random_clusters",
        Durability::Throwaway,
    ) else {
        return;
    };
    let operations = rm_testkit::stress_rounds(150) as u64;
    for seed in 1..=6_u64 {
        let mut rng = Rng::new(seed);
        let (embedded, shared) = ledgers(&test_server.url);
        let nodes = 8 + rng.below(32);
        for node in cluster(&mut rng, nodes) {
            embedded.register_resource(node.clone()).expect("register");
            shared.register_resource(node).expect("register");
        }
        let mut active: Vec<ReservationId> = Vec::new();
        let mut granted = 0;
        for n in 0..operations {
            match rng.below(10) {
                0..7 => {
                    let request = request(&mut rng, n);
                    let (a, b) = (embedded.reserve(&request), shared.reserve(&request));
                    assert_eq!(choice(&a), choice(&b), "seed {seed}, op {n}: {request:?}");
                    if let Ok(held) = a {
                        granted += 1;
                        active.push(held.id);
                    }
                }
                pick if !active.is_empty() => {
                    let id = active.swap_remove(rng.below(active.len() as u64) as usize);
                    let (a, b) = if pick == 7 {
                        (embedded.cancel(&id, None), shared.cancel(&id, None))
                    } else {
                        embedded.confirm(&id, None).expect("confirm");
                        shared.confirm(&id, None).expect("confirm");
                        (embedded.release(&id, None), shared.release(&id, None))
                    };
                    assert_eq!(
                        a.map(|r| r.state).map_err(|e| e.code()),
                        b.map(|r| r.state).map_err(|e| e.code()),
                        "seed {seed}, op {n}"
                    );
                }
                _ => {}
            }
        }
        assert!(granted > 0, "seed {seed}: something was granted");
        let (a, b) = (
            embedded.snapshot().expect("snapshot"),
            shared.snapshot().expect("snapshot"),
        );
        assert_eq!(a.usage, b.usage, "seed {seed}: the same accounting");
    }
}

/// GPU nodes as the Alibaba 2023 trace has them: a host with cores and memory and GPU
/// devices of their own, all labelled `node`, devices with their model.
fn gpu_cluster(rng: &mut Rng, nodes: u64) -> Vec<Resource> {
    let mut out = Vec::new();
    for n in 0..nodes {
        let name = format!("gpu-node-{n}");
        let model = ["T4", "V100", "G2"][rng.below(3) as usize];
        out.push(
            Resource::new(
                &name,
                ResourceType::Compute,
                ResourceCapacity::of(8 * (1 + rng.below(8)) as i32, Unit::CORES).expect("valid"),
            )
            .expect("valid")
            .with_capacity(
                ResourceType::Memory,
                ResourceCapacity::of(
                    Quantity::from_milli((64 << 30) * 1000 * (1 + rng.below(4) as i64)),
                    Unit::BYTES,
                )
                .expect("valid"),
            )
            .with_label("node", &name)
            .expect("valid"),
        );
        for d in 0..[1, 2, 4, 8][rng.below(4) as usize] {
            out.push(
                Resource::new(
                    &format!("{name}-gpu-{d}"),
                    ResourceType::Gpu,
                    ResourceCapacity::of(1, Unit::DEVICES).expect("valid"),
                )
                .expect("valid")
                .with_label("node", &name)
                .expect("valid")
                .with_label("model", model)
                .expect("valid"),
            );
        }
    }
    out
}

/// A pod: cores and memory on its node's host, a share of one GPU or whole GPUs on its
/// devices (sometimes of one model only), every part on one node.
fn gpu_pod(rng: &mut Rng, n: u64, strategy: ReservationStrategy) -> ReservationRequest {
    let group = ColocationGroup::new("host").expect("valid");
    let mut requirements = vec![
        ResourceRequirement::new(ResourceType::Compute, 1 + rng.below(16) as i32, Unit::CORES)
            .colocated(group.clone()),
        ResourceRequirement::new(
            ResourceType::Memory,
            Quantity::from_milli((1 << 30) * 1000 * (1 + rng.below(32) as i64)),
            Unit::BYTES,
        )
        .colocated(group),
    ];
    let only = (rng.below(4) == 0).then(|| {
        Constraint::label("model")
            .expect("valid")
            .is_in([["T4", "V100", "G2"][rng.below(3) as usize]])
    });
    let gpu = |amount: Quantity| {
        let requirement = ResourceRequirement::new(ResourceType::Gpu, amount, Unit::DEVICES);
        match &only {
            Some(constraint) => requirement.with_constraint(constraint.clone()),
            None => requirement,
        }
    };
    match rng.below(4) {
        0 => {}
        1 => requirements.push(gpu(Quantity::from_milli(
            [250, 460, 500, 810][rng.below(4) as usize],
        ))),
        _ => {
            for _ in 0..[1, 1, 2, 4][rng.below(4) as usize] {
                requirements.push(gpu(Quantity::from_units(1)));
            }
        }
    }
    ReservationRequest::new(
        RequesterId::new(&format!("t{}", rng.below(4))).expect("valid"),
        requirements,
    )
    .with_id(ReservationId::new(&format!("p{n}")).expect("valid"))
    .with_strategy(strategy)
    .with_colocation_label(LabelKey::new("node").expect("valid"))
}

/// The node planner on both ledgers: for every strategy but random fit (whose draws follow
/// each ledger's own retries), the same GPU pods on the same GPU nodes land in the same
/// places, the fragmentation strategy learning the same workload in both.
#[test]
fn both_ledgers_place_gpu_pods_alike_under_every_node_strategy() {
    let Some(test_server) = server(
        "both_ledgers_place_gpu_pods_alike_under_every_node_strategy",
        Durability::Throwaway,
    ) else {
        return;
    };
    let operations = rm_testkit::stress_rounds(120) as u64;
    let strategies: Vec<ReservationStrategy> = ReservationStrategy::ALL
        .into_iter()
        .filter(|s| *s != ReservationStrategy::RandomFit)
        .collect();
    for (seed, &strategy) in strategies.iter().enumerate() {
        let mut rng = Rng::new(100 + seed as u64);
        let (embedded, shared) = ledgers(&test_server.url);
        let nodes = 4 + rng.below(12);
        for resource in gpu_cluster(&mut rng, nodes) {
            embedded
                .register_resource(resource.clone())
                .expect("register");
            shared.register_resource(resource).expect("register");
        }
        let mut active: Vec<ReservationId> = Vec::new();
        let mut granted = 0;
        for n in 0..operations {
            if rng.below(5) == 0 && !active.is_empty() {
                let id = active.swap_remove(rng.below(active.len() as u64) as usize);
                let (a, b) = (embedded.cancel(&id, None), shared.cancel(&id, None));
                assert_eq!(a.map(|r| r.state).ok(), b.map(|r| r.state).ok());
                continue;
            }
            let request = gpu_pod(&mut rng, n, strategy);
            let (a, b) = (embedded.reserve(&request), shared.reserve(&request));
            assert_eq!(choice(&a), choice(&b), "{strategy}, op {n}: {request:?}");
            if let Ok(held) = a {
                granted += 1;
                active.push(held.id);
            }
        }
        assert!(granted > 0, "{strategy}: something was granted");
        let (a, b) = (
            embedded.snapshot().expect("snapshot"),
            shared.snapshot().expect("snapshot"),
        );
        assert_eq!(a.usage, b.usage, "{strategy}: the same accounting");
    }
}
