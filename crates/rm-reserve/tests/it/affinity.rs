//! Affinity and anti-affinity on the manager against the reference ledger: random clusters,
//! random holds of several teams, random requests with required and preferred terms; both
//! ledgers must agree on every grant and every refusal.

use std::sync::Arc;
use std::time::Duration;

use rm_model::{
    AffinityKind, AffinityTerm, DiscardEvents, LabelKey, Labels, ManualClock, RequesterId,
    ReservationLedger, ReservationRequest, ReservationStrategy, Resource, ResourceCapacity,
    ResourceRequirement, ResourceType, Selector, Topology, Unit,
};
use rm_testkit::{ReferenceLedger, Rng};

use crate::manager;

const TEAMS: [&str; 3] = ["web", "db", "cache"];

fn team(name: &str) -> Labels {
    Labels::try_from(&[("team", name)][..]).expect("valid label")
}

fn term(rng: &mut Rng) -> AffinityTerm {
    let kind = if rng.below(2) == 0 {
        AffinityKind::Affinity
    } else {
        AffinityKind::AntiAffinity
    };
    let selector = match rng.below(3) {
        0 => Selector::requester(RequesterId::new(TEAMS[rng.below(3) as usize]).expect("valid")),
        _ => Selector::labels(team(TEAMS[rng.below(3) as usize])),
    };
    let topology = match rng.below(3) {
        0 => Topology::Resource,
        1 => Topology::Label(LabelKey::new("zone").expect("valid")),
        // No node carries this label: no domain anywhere.
        _ => Topology::Label(LabelKey::new("rack").expect("valid")),
    };
    match rng.below(2) {
        0 => AffinityTerm::required(kind, selector, topology),
        _ => AffinityTerm::preferred(kind, selector, topology, 1 + rng.below(100) as u8),
    }
}

fn request(rng: &mut Rng, requester: &str, terms: usize) -> ReservationRequest {
    let mut requirement = ResourceRequirement::new(ResourceType::Compute, 1, Unit::CORES);
    for _ in 0..terms {
        requirement = requirement.with_affinity(term(rng));
    }
    let strategy = match rng.below(3) {
        0 => ReservationStrategy::Greedy,
        1 => ReservationStrategy::Balanced,
        _ => ReservationStrategy::BinPack,
    };
    ReservationRequest::new(
        RequesterId::new(requester).expect("valid"),
        vec![requirement],
    )
    .with_labels(team(requester))
    .with_strategy(strategy)
}

#[test]
fn placements_with_affinity_agree_with_the_reference() {
    let rounds = rm_testkit::stress_rounds(60);
    for seed in 1..=rounds as u64 {
        let mut rng = Rng::new(seed);
        let clock = Arc::new(ManualClock::new());
        let ours = manager(&clock);
        let reference =
            ReferenceLedger::new(clock, Arc::new(DiscardEvents), Duration::from_secs(10));
        let ledgers: [&dyn ReservationLedger; 2] = [&ours, &reference];
        let nodes = 2 + rng.below(7);
        for n in 0..nodes {
            let mut node = Resource::new(
                &format!("n{n}"),
                ResourceType::Compute,
                ResourceCapacity::of(1 + rng.below(4) as i32, Unit::CORES).expect("valid"),
            )
            .expect("valid");
            // Some nodes are in no zone.
            if rng.below(4) != 0 {
                node = node
                    .with_label("zone", &format!("z{}", rng.below(3)))
                    .expect("valid");
            }
            for ledger in ledgers {
                ledger.register_resource(node.clone()).expect("register");
            }
        }
        for step in 0..12 {
            let requester = TEAMS[rng.below(3) as usize];
            let terms = rng.below(3) as usize;
            let ask = request(&mut rng, requester, terms);
            let answers = ledgers.map(|ledger| ledger.reserve(&ask));
            let placed = answers.each_ref().map(|answer| {
                answer
                    .as_ref()
                    .map(|held| held.items[0].resource.to_string())
                    .map_err(std::mem::discriminant)
            });
            assert_eq!(
                placed[0], placed[1],
                "seed {seed}, step {step}: {ask:?}\nmanager {:?}\nreference {:?}",
                answers[0], answers[1]
            );
        }
    }
}
