use super::*;
use crate::{ResourceCapacity, ResourceSpecification};

fn node() -> Resource {
    Resource::new(
        "n1",
        ResourceType::Compute,
        ResourceCapacity::of(32, Unit::CORES).unwrap(),
    )
    .unwrap()
    .with_specification(
        ResourceSpecification::new(ResourceType::Compute)
            .with("arch", "x86_64")
            .unwrap()
            .with("cores", 32)
            .unwrap()
            .with("memory", "128Gi".parse::<Quantity>().unwrap())
            .unwrap()
            .with("ecc", true)
            .unwrap(),
    )
    .with_label("zone", "b")
    .unwrap()
}

fn cap(name: &str) -> ConstraintBuilder {
    Constraint::capability(name).unwrap()
}

fn label(key: &str) -> ConstraintBuilder {
    Constraint::label(key).unwrap()
}

#[test]
fn every_operator_over_capabilities_and_labels() {
    let gi64: Quantity = "64Gi".parse().unwrap();
    let cases: Vec<(Constraint, bool)> = vec![
        (cap("arch").eq("x86_64"), true),
        (cap("arch").eq("arm64"), false),
        (cap("arch").ne("arm64"), true),
        (cap("missing").ne("arm64"), false),
        (cap("arch").is_in(["arm64", "x86_64"]), true),
        (cap("arch").not_in(["arm64"]), true),
        (cap("arch").not_in(["x86_64"]), false),
        (cap("missing").not_in(["x86_64"]), false),
        (cap("cores").gt(16), true),
        (cap("cores").gt(32), false),
        (cap("cores").ge(32), true),
        (cap("cores").lt(33), true),
        (cap("cores").le(31), false),
        (cap("memory").ge(gi64), true),
        (cap("memory").lt(gi64), false),
        (cap("memory").eq("128Gi"), true),
        (cap("arch").gt(1), false),
        (cap("ecc").eq(true), true),
        (cap("ecc").eq(1), false),
        (cap("arch").exists(), true),
        (cap("gpu").exists(), false),
        (cap("gpu").not_exists(), true),
        (label("zone").eq("b"), true),
        (label("zone").is_in(["a", "c"]), false),
        (label("zone").exists(), true),
        (label("rack").not_exists(), true),
    ];
    let node = node();
    for (constraint, expected) in cases {
        assert_eq!(constraint.matches(&node), expected, "{constraint}");
    }
}

#[test]
fn constraints_read_from_configuration() {
    let read = |json: &str| serde_json::from_str::<Constraint>(json);
    assert_eq!(
        read(r#"{"capability": "arch", "op": "eq", "value": "x86_64"}"#).unwrap(),
        cap("arch").eq("x86_64")
    );
    assert_eq!(
        read(r#"{"label": "zone", "op": "in", "values": ["a", "b"]}"#).unwrap(),
        label("zone").is_in(["a", "b"])
    );
    assert_eq!(
        read(r#"{"label": "gpu", "op": "not-exists"}"#).unwrap(),
        label("gpu").not_exists()
    );
    let errors = [
        (
            r#"{"op": "eq", "value": 1}"#,
            "capability or label must be given",
        ),
        (
            r#"{"capability": "a", "label": "b", "op": "exists"}"#,
            "capability or label must be given",
        ),
        (r#"{"capability": "a", "op": "eq"}"#, "value is required"),
        (
            r#"{"capability": "a", "op": "in", "value": 1}"#,
            "value is not for in",
        ),
        (r#"{"capability": "a", "op": "in"}"#, "values is required"),
        (
            r#"{"capability": "a", "op": "eq", "value": 1, "values": [1]}"#,
            "values is only for in",
        ),
        (
            r#"{"capability": "a", "op": "exists", "value": 1}"#,
            "value is not for exists",
        ),
        (
            r#"{"capability": "a", "op": "like", "value": 1}"#,
            "\"like\" is unknown",
        ),
        (
            r#"{"capability": "a", "op": "eq", "value": 1, "extra": 2}"#,
            "unknown field",
        ),
    ];
    for (json, expected) in errors {
        let err = read(json).unwrap_err().to_string();
        assert!(err.contains(expected), "{json}: {err}");
    }
    for constraint in [
        cap("cores").ge(4),
        label("zone").not_in(["a"]),
        cap("x").exists(),
    ] {
        let json = serde_json::to_string(&constraint).unwrap();
        assert_eq!(read(&json).unwrap(), constraint, "{json}");
    }
}

#[test]
fn preferences_score_the_share_of_weight_matched() {
    let requirement = ResourceRequirement::new(ResourceType::Compute, 1, Unit::CORES)
        .with_preference(30, label("zone").eq("b"))
        .with_preference(10, label("zone").eq("a"));
    assert_eq!(requirement.preference_score(&node()), 750_000);
    let plain = ResourceRequirement::new(ResourceType::Compute, 1, Unit::CORES);
    assert_eq!(plain.preference_score(&node()), 0);
}

#[test]
fn admits_checks_type_unit_and_constraints() {
    let node = node();
    assert!(ResourceRequirement::new(ResourceType::Compute, 1, Unit::MILLICORES).admits(&node));
    assert!(!ResourceRequirement::new(ResourceType::Memory, 1, Unit::GIB).admits(&node));
    assert!(!ResourceRequirement::new(ResourceType::Compute, 1, Unit::BYTES).admits(&node));
    assert!(
        !ResourceRequirement::new(ResourceType::Compute, 1, Unit::CORES)
            .with_constraint(cap("arch").eq("arm64"))
            .admits(&node)
    );
    assert_eq!(
        ResourceRequirement::new(ResourceType::Compute, 2, Unit::CORES)
            .amount_in(&Unit::MILLICORES),
        Ok(2000.into())
    );
}

#[test]
fn affinity_by_resource_and_by_label() {
    let at = |name: &str, zone: &str| {
        Resource::new(
            name,
            ResourceType::Compute,
            ResourceCapacity::of(1, Unit::CORES).unwrap(),
        )
        .unwrap()
        .with_label("zone", zone)
        .unwrap()
    };
    let (a1, a2, b1) = (at("a1", "a"), at("a2", "a"), at("b1", "b"));
    let requester = RequesterId::new("web").unwrap();
    let zone = Topology::Label(LabelKey::new("zone").unwrap());
    let together = AffinityTerm::required(
        AffinityKind::Affinity,
        Selector::requester(requester.clone()),
        zone.clone(),
    );
    let apart = AffinityTerm::required(
        AffinityKind::AntiAffinity,
        Selector::requester(requester),
        Topology::Resource,
    );
    // Existing holds of the selected requester sit on a1.
    assert!(together.is_satisfied_by(&a2, [&a1].into_iter()));
    assert!(!together.is_satisfied_by(&b1, [&a1].into_iter()));
    assert!(
        together.is_satisfied_by(&b1, std::iter::empty()),
        "the first of a group can land anywhere"
    );
    assert!(apart.is_satisfied_by(&a2, [&a1].into_iter()));
    assert!(!apart.is_satisfied_by(&a1, [&a1].into_iter()));
    let unlabelled = Resource::new(
        "x",
        ResourceType::Compute,
        ResourceCapacity::of(1, Unit::CORES).unwrap(),
    )
    .unwrap();
    assert!(!zone.same_domain(&unlabelled, &unlabelled));
}

#[test]
fn selectors_match_requesters_and_labels() {
    let web = RequesterId::new("web").unwrap();
    let db = RequesterId::new("db").unwrap();
    let tier = Labels::try_from(&[("tier", "front")][..]).unwrap();
    assert!(Selector::requester(web.clone()).selects(&web, &Labels::new()));
    assert!(!Selector::requester(web.clone()).selects(&db, &tier));
    assert!(Selector::labels(tier.clone()).selects(&db, &tier));
    assert!(!Selector::labels(tier).selects(&db, &Labels::new()));
}

#[test]
fn requirements_read_from_configuration_with_default_unit() {
    let json = r#"{"type": "memory", "amount": "16Gi", "constraints": [{"label": "zone", "op": "eq", "value": "a"}],
        "colocate": "main"}"#;
    let requirement: ResourceRequirement = serde_json::from_str(json).unwrap();
    assert_eq!(requirement.unit(), &Unit::BYTES);
    assert_eq!(requirement.amount(), "16Gi".parse().unwrap());
    assert_eq!(requirement.colocation().map(|g| g.as_str()), Some("main"));
    assert_eq!(requirement.constraints().len(), 1);
    let back: ResourceRequirement =
        serde_json::from_str(&serde_json::to_string(&requirement).unwrap()).unwrap();
    assert_eq!(back, requirement);
    assert!(
        serde_json::from_str::<ResourceRequirement>(r#"{"type": "memory", "amount": 1, "amt": 2}"#)
            .is_err()
    );
}
