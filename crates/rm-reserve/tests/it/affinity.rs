//! Affinity and anti-affinity on the manager against the reference ledger: random clusters,
//! random holds of several teams that are granted, confirmed, cancelled and left to expire,
//! random requests with required and preferred terms; both ledgers must agree on every grant
//! and every refusal. The selectors include those the manager's holder index answers (one
//! requester, one label) and those it leaves to a pass over the holds.

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

fn selector(rng: &mut Rng) -> Selector {
    let name = TEAMS[rng.below(3) as usize];
    match rng.below(7) {
        0 | 1 => Selector::requester(RequesterId::new(name).expect("valid")),
        2 | 3 => Selector::labels(team(name)),
        // What the index cannot answer alone: a requester and a label, two labels, everyone.
        4 => Selector {
            requesters: vec![RequesterId::new(name).expect("valid")],
            labels: team(TEAMS[rng.below(3) as usize]),
        },
        5 => Selector::labels(
            Labels::try_from(&[("team", name), ("tier", "gold")][..]).expect("valid"),
        ),
        _ => Selector::default(),
    }
}

fn term(rng: &mut Rng) -> AffinityTerm {
    let kind = if rng.below(2) == 0 {
        AffinityKind::Affinity
    } else {
        AffinityKind::AntiAffinity
    };
    let selector = selector(rng);
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
    let mut labels = team(requester);
    if rng.below(2) == 0 {
        labels.insert("tier", "gold").expect("valid label");
    }
    ReservationRequest::new(
        RequesterId::new(requester).expect("valid"),
        vec![requirement],
    )
    .with_labels(labels)
    .with_strategy(strategy)
}

#[test]
fn placements_with_affinity_agree_with_the_reference() {
    let rounds = rm_testkit::stress_rounds(60);
    for seed in 1..=rounds as u64 {
        let mut rng = Rng::new(seed);
        let clock = Arc::new(ManualClock::new());
        let ours = manager(&clock);
        let reference = ReferenceLedger::new(
            clock.clone(),
            Arc::new(DiscardEvents),
            Duration::from_secs(10),
        );
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
        // Holds granted by both, as (ours, the reference's) ids.
        let mut held = Vec::new();
        for step in 0..30 {
            match rng.below(8) {
                0 if !held.is_empty() => {
                    let (mine, theirs) = held.swap_remove(rng.below(held.len() as u64) as usize);
                    let ended = [ours.cancel(&mine, None), reference.cancel(&theirs, None)];
                    assert_eq!(
                        ended[0].as_ref().map(|r| r.state).map_err(|_| ()),
                        ended[1].as_ref().map(|r| r.state).map_err(|_| ()),
                        "seed {seed}, step {step}: cancel"
                    );
                    continue;
                }
                // Pending holds expire (their TTL is 10 s).
                1 => {
                    clock.advance(Duration::from_secs(rng.below(8)));
                    continue;
                }
                _ => {}
            }
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
            if let [Ok(mine), Ok(theirs)] = &answers {
                // Some are confirmed, and so outlive the clock's moves.
                if rng.below(2) == 0 {
                    ours.confirm(&mine.id, None).expect("confirm");
                    reference.confirm(&theirs.id, None).expect("confirm");
                }
                held.push((mine.id.clone(), theirs.id.clone()));
            }
        }
    }
}
