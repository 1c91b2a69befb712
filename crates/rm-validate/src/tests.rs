use rm_model::{
    AffinityKind, AffinityTerm, ColocationGroup, Constraint, FencingToken, Labels, Priority,
    RequesterId, ReservationId, ReservationItem, ReservationState, ResourceCapacity, Selector,
    Timestamp, Topology,
};

use super::*;

fn node(name: &str, cores: i32, memory_gib: i32) -> Resource {
    Resource::new(
        name,
        ResourceType::Compute,
        ResourceCapacity::of(cores, Unit::CORES).unwrap(),
    )
    .unwrap()
    .with_capacity(
        ResourceType::Memory,
        ResourceCapacity::of(memory_gib, Unit::GIB).unwrap(),
    )
    .with_label("zone", if name.ends_with('1') { "a" } else { "b" })
    .unwrap()
}

fn cluster() -> Vec<Resource> {
    vec![node("n1", 8, 32), node("n2", 16, 16)]
}

fn cores(amount: i32) -> ResourceRequirement {
    ResourceRequirement::new(ResourceType::Compute, amount, Unit::CORES)
}

fn gib(amount: i32) -> ResourceRequirement {
    ResourceRequirement::new(ResourceType::Memory, amount, Unit::GIB)
}

fn request(requirements: Vec<ResourceRequirement>) -> ReservationRequest {
    ReservationRequest::new(RequesterId::new("t").unwrap(), requirements)
}

fn group() -> ColocationGroup {
    ColocationGroup::new("g").unwrap()
}

/// Validates `request` against the cluster and checks the violation paths, in order.
#[track_caller]
fn check(validator: &ConstraintValidator, request: ReservationRequest, expected: &[&str]) {
    let resources = cluster();
    let context = ValidationContext {
        resources: &resources,
        active: &[],
        name_checked: false,
    };
    let paths: Vec<String> = match validator.validate_request(&request, &context) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.violations.into_iter().map(|v| v.path).collect(),
    };
    assert_eq!(paths, expected);
}

#[test]
fn requests_are_checked_field_by_field() {
    let v = ConstraintValidator::new();
    let custom = ResourceType::custom("licences").unwrap();
    let cases: Vec<(ReservationRequest, &[&str])> = vec![
        (request(vec![cores(2), gib(4)]), &[]),
        (request(vec![]), &["requirements"]),
        (request(vec![cores(0)]), &["requirements[0].amount"]),
        (
            request(vec![cores(1), cores(-2)]),
            &["requirements[1].amount"],
        ),
        (
            request(vec![ResourceRequirement::new(
                ResourceType::Compute,
                1,
                Unit::BYTES,
            )]),
            &["requirements[0].unit", "requirements[0]"],
        ),
        (
            request(vec![ResourceRequirement::new(
                custom.clone(),
                1,
                Unit::custom("seats").unwrap(),
            )]),
            &["requirements[0].type"],
        ),
        (
            request(vec![ResourceRequirement::new(
                custom,
                0,
                Unit::custom("seats").unwrap(),
            )]),
            &["requirements[0].amount", "requirements[0].type"],
        ),
        (request(vec![cores(17)]), &["requirements[0]"]),
        (
            request(vec![
                cores(1).with_constraint(Constraint::label("zone").unwrap().gt("a")),
            ]),
            &["requirements[0].constraints[0].value", "requirements[0]"],
        ),
        (
            request(vec![
                cores(1).with_constraint(Constraint::label("zone").unwrap().eq("c")),
            ]),
            &["requirements[0]"],
        ),
        // Fits alone on n2 (cores) and n1 (memory), never together.
        (
            request(vec![
                cores(12).colocated(group()),
                gib(20).colocated(group()),
            ]),
            &["requirements[0]", "requirements[1]"],
        ),
        (request(vec![cores(12), gib(20)]), &[]),
    ];
    for (request, expected) in cases {
        check(&v, request, expected);
    }
}

#[test]
fn messages_explain_why() {
    let resources = cluster();
    let context = ValidationContext {
        resources: &resources,
        active: &[],
        name_checked: false,
    };
    let v = ConstraintValidator::new();
    let err = v
        .validate_request(
            &request(vec![
                cores(17),
                cores(12).colocated(group()),
                gib(20).colocated(group()),
            ]),
            &context,
        )
        .unwrap_err();
    let messages: Vec<_> = err.violations.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "requirements[0]: 17 cores exceeds the capacity of all 2 matching resources",
            "requirements[1]: its co-located group fits on no registered resource, even when empty",
            "requirements[2]: its co-located group fits on no registered resource, even when empty",
        ]
    );
    assert!(
        err.to_string()
            .starts_with("validate request by t: requirements[0]"),
        "{err}"
    );
}

#[test]
fn limit_ranges_bound_and_default_amounts() {
    let v = ConstraintValidator::new()
        .with_limit_range(
            ResourceType::Compute,
            LimitRange::new(Unit::MILLICORES)
                .min(250)
                .max(4000)
                .default(500),
        )
        .unwrap();
    check(&v, request(vec![cores(4)]), &[]);
    check(&v, request(vec![cores(5)]), &["requirements[0].amount"]);
    check(
        &v,
        request(vec![ResourceRequirement::new(
            ResourceType::Compute,
            100,
            Unit::MILLICORES,
        )]),
        &["requirements[0].amount"],
    );
    let defaulted = v.apply_defaults(&request(vec![cores(0), gib(0)]));
    assert_eq!(
        defaulted.requirements[0].amount(),
        Quantity::from_milli(500)
    );
    assert_eq!(defaulted.requirements[0].unit(), &Unit::CORES);
    assert_eq!(
        defaulted.requirements[1].amount(),
        Quantity::ZERO,
        "no default for memory"
    );
    assert_eq!(
        v.limit_range(&ResourceType::Compute).unwrap().unit,
        Unit::MILLICORES
    );
}

#[test]
fn limit_ranges_are_checked_when_set() {
    let bad = [
        (
            LimitRange::new(Unit::BYTES).max(1),
            "bytes does not measure compute",
        ),
        (
            LimitRange::new(Unit::CORES).min(4).max(2),
            "min 4 exceeds max 2",
        ),
        (
            LimitRange::new(Unit::CORES).default(8).max(2),
            "default 8 exceeds max 2",
        ),
        (LimitRange::new(Unit::CORES).min(0), "min must be positive"),
    ];
    for (range, expected) in bad {
        let err = ConstraintValidator::new()
            .with_limit_range(ResourceType::Compute, range)
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{err}");
    }
    let read: LimitRange = serde_json::from_str(r#"{"max": "4", "unit": "cores"}"#).unwrap();
    assert_eq!(read, LimitRange::new(Unit::CORES).max(4));
}

#[test]
fn resources_are_checked() {
    let v = ConstraintValidator::new();
    let resources = cluster();
    let context = ValidationContext {
        resources: &resources,
        active: &[],
        name_checked: false,
    };
    assert!(v.validate_resource(&node("n3", 1, 1), &context).is_ok());
    let wrong_units = Resource::new(
        "n1",
        ResourceType::Compute,
        ResourceCapacity::of(1, Unit::GIB).unwrap(),
    )
    .unwrap()
    .with_capacity(
        ResourceType::Gpu,
        ResourceCapacity::of(1, Unit::CORES).unwrap(),
    );
    let err = v.validate_resource(&wrong_units, &context).unwrap_err();
    let paths: Vec<_> = err.violations.iter().map(|v| v.path.as_str()).collect();
    assert_eq!(paths, ["name", "capacity.unit", "capacities.gpu.unit"]);
    // A caller that checked the name with its own index (an update, here, of `n1` itself)
    // gets every other rule, and no duplicate.
    let checked = ValidationContext {
        name_checked: true,
        ..context
    };
    let err = v.validate_resource(&wrong_units, &checked).unwrap_err();
    let paths: Vec<_> = err.violations.iter().map(|v| v.path.as_str()).collect();
    assert_eq!(paths, ["capacity.unit", "capacities.gpu.unit"]);
    assert!(v.validate_resource(&node("n1", 1, 1), &checked).is_ok());
}

fn granted(items: Vec<(usize, &str, ResourceType, i32, Unit)>) -> Reservation {
    Reservation {
        id: ReservationId::new("r").unwrap(),
        requester: RequesterId::new("t").unwrap(),
        priority: Priority::default(),
        state: ReservationState::Pending,
        items: items
            .into_iter()
            .map(
                |(requirement, resource, resource_type, amount, unit)| ReservationItem {
                    requirement,
                    resource: resource.parse().unwrap(),
                    resource_type,
                    amount: amount.into(),
                    unit,
                    minimum: None,
                },
            )
            .collect(),
        fencing_token: FencingToken(1),
        created_at: Timestamp::ZERO,
        updated_at: Timestamp::ZERO,
        expires_at: None,
        labels: Labels::new(),
        preemptible: true,
    }
}

#[track_caller]
fn check_grant(
    request: &ReservationRequest,
    reservation: &Reservation,
    active: &[Reservation],
    expected: &[&str],
) {
    let resources = cluster();
    let context = ValidationContext {
        resources: &resources,
        active,
        name_checked: false,
    };
    let paths: Vec<String> =
        match ConstraintValidator::new().validate_reservation(reservation, request, &context) {
            Ok(()) => Vec::new(),
            Err(errors) => errors.violations.into_iter().map(|v| v.path).collect(),
        };
    assert_eq!(paths, expected);
}

#[test]
fn grants_are_checked_against_their_request() {
    use ResourceType::{Compute, Memory};
    let zone_a = Constraint::label("zone").unwrap().eq("a");
    let req = request(vec![
        cores(2).with_constraint(zone_a).colocated(group()),
        gib(4).colocated(group()),
    ]);
    let good = granted(vec![
        (0, "n1", Compute, 2, Unit::CORES),
        (1, "n1", Memory, 4, Unit::GIB),
    ]);
    check_grant(&req, &good, &[], &[]);
    let in_millicores = granted(vec![
        (0, "n1", Compute, 2000, Unit::MILLICORES),
        (1, "n1", Memory, 4, Unit::GIB),
    ]);
    check_grant(&req, &in_millicores, &[], &[]);
    let wrong = granted(vec![
        (0, "n2", Compute, 3, Unit::CORES),
        (1, "n1", Memory, 4, Unit::GIB),
        (7, "n1", Memory, 4, Unit::GIB),
    ]);
    check_grant(
        &req,
        &wrong,
        &[],
        &[
            "items[0].amount",
            "items[0]",
            "items[1].resource",
            "items[2].requirement",
        ],
    );
    let missing = granted(vec![
        (0, "n1", Compute, 2, Unit::CORES),
        (0, "gone", Compute, 2, Unit::CORES),
    ]);
    check_grant(
        &req,
        &missing,
        &[],
        &["items", "items", "items[1].resource"],
    );
    let wrong_type = granted(vec![
        (0, "n1", Memory, 2, Unit::GIB),
        (1, "n1", Memory, 4, Unit::GIB),
    ]);
    check_grant(
        &req,
        &wrong_type,
        &[],
        &["items[0].resource_type", "items[0].amount"],
    );
}

#[test]
fn grants_honour_required_affinity() {
    use ResourceType::Compute;
    let web = Selector::requester(RequesterId::new("web").unwrap());
    let apart = AffinityTerm::required(AffinityKind::AntiAffinity, web, Topology::Resource);
    let req = request(vec![cores(1).with_affinity(apart)]);
    let mut other = granted(vec![(0, "n1", Compute, 1, Unit::CORES)]);
    other.id = ReservationId::new("other").unwrap();
    other.requester = RequesterId::new("web").unwrap();
    check_grant(
        &req,
        &granted(vec![(0, "n2", Compute, 1, Unit::CORES)]),
        std::slice::from_ref(&other),
        &[],
    );
    check_grant(
        &req,
        &granted(vec![(0, "n1", Compute, 1, Unit::CORES)]),
        &[other],
        &["items[0]"],
    );
}

#[test]
fn grants_co_located_by_a_label_share_its_value() {
    use ResourceType::{Compute, Memory};
    let req = request(vec![cores(2), gib(4)])
        .with_colocation_label(rm_model::LabelKey::new("zone").unwrap());
    let together = granted(vec![
        (0, "n1", Compute, 2, Unit::CORES),
        (1, "n1", Memory, 4, Unit::GIB),
    ]);
    check_grant(&req, &together, &[], &[]);
    let split = granted(vec![
        (0, "n2", Compute, 2, Unit::CORES),
        (1, "n1", Memory, 4, Unit::GIB),
    ]);
    check_grant(&req, &split, &[], &["items"]);
}
