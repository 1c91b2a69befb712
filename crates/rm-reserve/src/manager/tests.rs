use std::collections::BTreeMap;

use rm_model::{
    AffinityKind, AffinityTerm, LabelKey, Labels, RequesterId, Resource, ResourceCapacity,
    ResourceRequirement, ResourceType, Selector, Topology, Unit,
};

use super::*;

/// What the holder index should hold: every active hold, counted by requester and by
/// label on each resource it holds.
fn expected(manager: &ReservationManager) -> Vec<(String, String, u32)> {
    let mut counts: BTreeMap<(String, String), u32> = BTreeMap::new();
    manager.records.for_each(|record| {
        let state = lock(&record.state);
        if !state.state.holds_capacity() {
            return;
        }
        for hold in &state.holds {
            let resource = record.resource_of(hold).to_string();
            *counts
                .entry((record.requester.to_string(), resource.clone()))
                .or_default() += 1;
            for (key, value) in record.labels.iter() {
                *counts
                    .entry((format!("{key}={value}"), resource.clone()))
                    .or_default() += 1;
            }
        }
    });
    counts.into_iter().map(|((k, r), c)| (k, r, c)).collect()
}

/// Eight threads grant, confirm and cancel labelled holds while some of them start to
/// place with anti-affinity part-way, which switches the holder index on while holds come
/// and go; once they are done, the index counts exactly the active holds.
#[test]
fn the_holder_index_counts_exactly_the_active_holds() {
    let rounds = rm_testkit::stress_rounds(300);
    for run in 0..4_u64 {
        let manager = ReservationManager::builder()
            .default_ttl(Duration::from_secs(3600))
            .retention(Duration::from_millis(1))
            .build()
            .expect("valid settings");
        for n in 0..8 {
            let node = Resource::new(
                &format!("n{n}"),
                ResourceType::Compute,
                ResourceCapacity::of(64, Unit::CORES).expect("valid"),
            )
            .expect("valid")
            .with_label("zone", &format!("z{}", n % 4))
            .expect("valid");
            manager.register_resource(node).expect("register");
        }
        std::thread::scope(|scope| {
            for thread in 0..8_u64 {
                let manager = &manager;
                scope.spawn(move || {
                    let mut rng = rm_testkit::Rng::new(run * 8 + thread + 1);
                    let team = ["a", "b", "c"][thread as usize % 3];
                    let labels = Labels::try_from(&[("team", team)][..]).expect("valid");
                    let mut mine = Vec::new();
                    for round in 0..rounds {
                        let mut requirement =
                            ResourceRequirement::new(ResourceType::Compute, 1, Unit::CORES);
                        if thread % 2 == 0 && round > rounds / 3 {
                            requirement = requirement.with_affinity(AffinityTerm::preferred(
                                AffinityKind::AntiAffinity,
                                Selector::labels(labels.clone()),
                                Topology::Label(LabelKey::new("zone").expect("valid")),
                                10,
                            ));
                        }
                        let request = ReservationRequest::new(
                            RequesterId::new(team).expect("valid"),
                            vec![requirement],
                        )
                        .with_labels(labels.clone());
                        if let Ok(held) = manager.reserve(&request) {
                            if rng.below(2) == 0 {
                                let _ = manager.confirm(&held.id, None);
                            }
                            mine.push(held.id);
                        }
                        if mine.len() > 8 || (!mine.is_empty() && rng.below(2) == 0) {
                            let id = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                            let _ = manager.cancel(&id, None);
                        }
                    }
                });
            }
        });
        assert!(manager.holders.is_ready());
        assert_eq!(manager.holders.contents(), expected(&manager), "run {run}");
    }
}
