//! The request, id and state types' unit tests.

use super::*;

/// Names parse as configuration files read them, and print as they are written.
#[test]
fn strategy_names_parse_as_serde_reads_them() {
    let names = [
        "greedy",
        "first-fit",
        "balanced",
        "least-allocated",
        "bin-pack",
        "most-allocated",
        "best-fit",
        "aligned",
        "fgd",
        "fragmentation",
        "random",
        "random-fit",
        "dot-product",
        "gpu-packing",
        "gpu-clustering",
        "Greedy",
        "binpack",
        "",
    ];
    for name in names {
        let parsed = name.parse::<ReservationStrategy>().ok();
        let read: Option<ReservationStrategy> =
            serde_json::from_value(serde_json::Value::String(name.to_owned())).ok();
        assert_eq!(parsed, read, "{name:?}");
    }
    for strategy in ReservationStrategy::ALL {
        assert_eq!(strategy.to_string().parse(), Ok(strategy));
    }
    let err = "binpack".parse::<ReservationStrategy>().unwrap_err();
    assert!(err.to_string().contains("\"binpack\""), "{err}");
}

proptest::proptest! {
    /// Each requirement is in no co-location group (`None`) or in one of three.
    #[test]
    fn placement_groups_join_each_group_at_its_first_member(
        groups in proptest::collection::vec(proptest::option::of(0..3_usize), 1..10)
    ) {
        let names = ["a", "b", "c"].map(|n| crate::ColocationGroup::new(n).expect("valid"));
        let requirements = groups
            .iter()
            .map(|group| {
                let requirement = ResourceRequirement::new(ResourceType::Compute, 1, Unit::CORES);
                match group {
                    Some(g) => requirement.colocated(names[*g].clone()),
                    None => requirement,
                }
            })
            .collect();
        let request = ReservationRequest::new(RequesterId::new("t").expect("valid"), requirements);
        // The plain way: a requirement joins the group whose first member shares its
        // co-location group, or starts one.
        let mut expected: Vec<Vec<usize>> = Vec::new();
        for (i, group) in groups.iter().enumerate() {
            match expected.iter_mut().find(|m| group.is_some() && groups[m[0]] == *group) {
                Some(members) => members.push(i),
                None => expected.push(vec![i]),
            }
        }
        proptest::prop_assert_eq!(request.placement_groups(), expected);
    }
}

#[test]
fn clone_from_makes_an_equal_request_in_the_old_storage() {
    let requirement = |amount| ResourceRequirement::new(ResourceType::Compute, amount, Unit::CORES);
    let mut labels = Labels::new();
    labels.insert("team", "ml").expect("valid label");
    let source =
        ReservationRequest::new(RequesterId::new("b").expect("valid"), vec![requirement(2)])
            .with_id(ReservationId::new("named").expect("valid"))
            .with_priority(Priority(4))
            .with_ttl(Duration::from_secs(9))
            .with_labels(labels)
            .with_strategy(ReservationStrategy::BinPack);
    let mut target = ReservationRequest::new(
        RequesterId::new("a").expect("valid"),
        vec![requirement(1), requirement(1), requirement(1)],
    );
    let storage = target.requirements.as_ptr();
    target.clone_from(&source);
    assert_eq!(target, source);
    assert_eq!(target.clone(), source);
    assert_eq!(target.requirements.as_ptr(), storage, "the list was reused");
}

#[test]
fn life_cycle_transitions() {
    use ReservationState::*;
    let all = [Pending, Confirmed, Released, Expired, Preempted, Cancelled];
    let allowed = [
        (Pending, Confirmed),
        (Pending, Expired),
        (Pending, Preempted),
        (Pending, Cancelled),
        (Confirmed, Released),
        (Confirmed, Preempted),
    ];
    for from in all {
        for to in all {
            let expected = allowed.contains(&(from, to));
            assert_eq!(from.can_transition_to(to), expected, "{from} -> {to}");
            assert_eq!(from.transition(to).is_ok(), expected);
        }
        assert_eq!(from.holds_capacity(), matches!(from, Pending | Confirmed));
    }
}

#[test]
fn endings_follow_the_life_cycle() {
    for ending in [Ending::Release, Ending::Cancel, Ending::Preempt] {
        for from in ending.from() {
            assert!(
                from.can_transition_to(ending.to()),
                "{ending:?} from {from}"
            );
        }
        assert!(ending.to().is_terminal());
    }
}

#[test]
fn generated_ids_are_unique_and_round_trip() {
    let ids: std::collections::HashSet<_> =
        (0..10_000).map(|_| ReservationId::generate()).collect();
    assert_eq!(ids.len(), 10_000);
    for id in ids.iter().take(10) {
        let text = id.to_string();
        assert!(text.starts_with("r-") && text.len() == 34, "{text}");
        let parsed: ReservationId = text.parse().unwrap();
        assert_eq!(&parsed, id);
        assert!(parsed.is_generated());
        let bits = id.generated_bits().unwrap();
        assert_eq!(ReservationId::from_generated_bits(bits), *id);
        assert_eq!(text, format!("r-{bits:032x}"));
    }
    let named = ReservationId::new("job-7/step-2").unwrap();
    assert!(!named.is_generated());
    assert_eq!(named.generated_bits(), None);
    assert_eq!(named.to_string(), "job-7/step-2");
    assert!(ReservationId::new("").is_err());
}

#[test]
fn request_structure_is_checked_with_paths() {
    use crate::{Constraint, ResourceRequirement, ResourceType, Unit};
    let requester = RequesterId::new("t").unwrap();
    let empty = ReservationRequest::new(requester.clone(), vec![]).with_ttl(Duration::ZERO);
    let paths: Vec<_> = empty.violations().into_iter().map(|v| v.path).collect();
    assert_eq!(paths, ["requirements", "ttl"]);

    let bad = ReservationRequest::new(
        requester,
        vec![
            ResourceRequirement::new(ResourceType::Compute, 1, Unit::CORES),
            ResourceRequirement::new(ResourceType::Memory, 0, Unit::CORES)
                .with_constraint(Constraint::capability("arch").unwrap().gt("x86"))
                .with_preference(
                    0,
                    Constraint::label("zone").unwrap().is_in(Vec::<&str>::new()),
                ),
        ],
    );
    let paths: Vec<_> = bad.violations().into_iter().map(|v| v.path).collect();
    assert_eq!(
        paths,
        [
            "requirements[1].amount",
            "requirements[1].unit",
            "requirements[1].constraints[0].value",
            "requirements[1].preferences[0].weight",
            "requirements[1].preferences[0].constraint.values",
        ]
    );
}

/// A request by `t` for one core.
fn one_core() -> ReservationRequest {
    use crate::{ResourceRequirement, ResourceType, Unit};
    ReservationRequest::new(
        RequesterId::new("t").unwrap(),
        vec![ResourceRequirement::new(
            ResourceType::Compute,
            1,
            Unit::CORES,
        )],
    )
}

#[test]
fn retries_compare_everything_but_the_id() {
    let base = one_core();
    let named = base.clone().with_id(ReservationId::new("x").unwrap());
    assert!(named.same_request_as(&base));
    assert!(!named.same_request_as(&base.clone().with_priority(Priority(1))));
    assert!(!named.same_request_as(&base.clone().preemptible(false)));
    assert!(!named.same_request_as(&base.clone().confirm_on_grant(true)));
}

#[test]
fn a_hold_confirmed_on_grant_has_no_ttl() {
    let direct = one_core().confirm_on_grant(true);
    assert!(direct.violations().is_empty());
    let paths: Vec<_> = direct
        .clone()
        .with_ttl(Duration::from_secs(5))
        .violations()
        .into_iter()
        .map(|v| v.path)
        .collect();
    assert_eq!(paths, ["ttl"]);
    // Absent from JSON unless set, so requests written before the field read the same.
    let json = serde_json::to_string(&direct).unwrap();
    assert!(json.contains("\"confirm_on_grant\":true"), "{json}");
    let back: ReservationRequest = serde_json::from_str(&json).unwrap();
    assert_eq!(back, direct);
    let plain = direct.confirm_on_grant(false);
    assert!(
        !serde_json::to_string(&plain)
            .unwrap()
            .contains("confirm_on_grant")
    );
}

#[test]
fn strategies_read_their_aliases() {
    let read = |s: &str| serde_json::from_str::<ReservationStrategy>(&format!("\"{s}\"")).unwrap();
    assert_eq!(read("first-fit"), ReservationStrategy::Greedy);
    assert_eq!(read("least-allocated"), ReservationStrategy::Balanced);
    assert_eq!(read("most-allocated"), ReservationStrategy::BinPack);
    assert_eq!(read("bin-pack"), ReservationStrategy::BinPack);
    assert_eq!(read("aligned"), ReservationStrategy::Aligned);
}
