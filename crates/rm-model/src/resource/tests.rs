use super::*;

#[test]
fn resource_types_read_and_print() {
    for (text, expected) in [
        ("compute", ResourceType::Compute),
        ("memory", ResourceType::Memory),
        ("storage", ResourceType::Storage),
        ("network", ResourceType::Network),
        ("gpu", ResourceType::Gpu),
    ] {
        assert_eq!(text.parse::<ResourceType>().unwrap(), expected);
        assert_eq!(expected.to_string(), text);
    }
    let licences = ResourceType::custom("licences").unwrap();
    assert_eq!(licences, ResourceType::Custom("licences".into()));
    assert_eq!(ResourceType::custom("gpu").unwrap(), ResourceType::Gpu);
    assert!(ResourceType::custom("").is_err());
    assert_eq!(serde_json::to_string(&licences).unwrap(), "\"licences\"");
}

#[test]
fn units_must_measure_the_type() {
    let cases = [
        (ResourceType::Compute, "millicores", true),
        (ResourceType::Compute, "bytes", false),
        (ResourceType::Memory, "Gi", true),
        (ResourceType::Storage, "TB", true),
        (ResourceType::Memory, "cores", false),
        (ResourceType::Network, "Gbps", true),
        (ResourceType::Network, "GiB", false),
        (ResourceType::Gpu, "devices", true),
        (ResourceType::Gpu, "cores", false),
        (ResourceType::custom("licences").unwrap(), "seats", true),
        (ResourceType::custom("licences").unwrap(), "bytes", false),
    ];
    for (resource_type, unit, expected) in cases {
        let unit = Unit::parse(unit).unwrap();
        assert_eq!(
            resource_type.accepts_unit(&unit),
            expected,
            "{resource_type} in {unit}"
        );
    }
    for resource_type in [
        ResourceType::Compute,
        ResourceType::Memory,
        ResourceType::Network,
        ResourceType::Gpu,
    ] {
        assert!(resource_type.accepts_unit(&resource_type.default_unit()));
    }
}

#[test]
fn capacities_keep_their_invariant() {
    let ok = ResourceCapacity::new(10, 100, Unit::CORES).unwrap();
    assert_eq!(ok.available(), Quantity::from(90));
    assert_eq!(ok.utilization(), 0.1);
    let over = ResourceCapacity::new(101, 100, Unit::CORES).unwrap_err();
    assert_eq!((over.field, over.reason), ("current", "exceeds maximum"));
    let negative = ResourceCapacity::new(0, -1, Unit::CORES).unwrap_err();
    assert_eq!(
        (negative.field, negative.reason),
        ("maximum", "is negative")
    );
    let negative = ResourceCapacity::new(-1, 1, Unit::CORES).unwrap_err();
    assert_eq!(negative.field, "current");
    let read = serde_json::from_str::<ResourceCapacity>(
        r#"{"current": 5, "maximum": 4, "unit": "cores"}"#,
    );
    assert!(
        read.unwrap_err()
            .to_string()
            .contains("current exceeds maximum")
    );
    let unknown =
        serde_json::from_str::<ResourceCapacity>(r#"{"maximum": 4, "unit": "cores", "max": 3}"#);
    assert!(unknown.unwrap_err().to_string().contains("unknown field"));
}

#[test]
fn capability_values_compare_by_meaning() {
    use std::cmp::Ordering::*;
    let cases: [(CapabilityValue, CapabilityValue, Option<std::cmp::Ordering>); 7] = [
        (128.into(), 64.into(), Some(Greater)),
        (
            "64Gi".parse::<Quantity>().unwrap().into(),
            CapabilityValue::from("64Gi"),
            Some(Equal),
        ),
        (2.into(), "2000m".into(), Some(Equal)),
        ("x86_64".into(), "x86_64".into(), Some(Equal)),
        ("arm64".into(), "x86_64".into(), Some(Less)),
        (true.into(), true.into(), Some(Equal)),
        (true.into(), 1.into(), None),
    ];
    for (a, b, expected) in cases {
        assert_eq!(a.compare(&b), expected, "{a:?} vs {b:?}");
    }
}

#[test]
fn resources_round_trip_through_serde() {
    let host = Resource::new(
        "host-1",
        ResourceType::Compute,
        ResourceCapacity::of(64, Unit::CORES).unwrap(),
    )
    .unwrap()
    .with_capacity(
        ResourceType::Memory,
        ResourceCapacity::of(256, Unit::GIB).unwrap(),
    )
    .with_specification(
        ResourceSpecification::new(ResourceType::Compute)
            .with("arch", "x86_64")
            .unwrap()
            .with("cores", 64)
            .unwrap()
            .with("memory", "256Gi".parse::<Quantity>().unwrap())
            .unwrap()
            .with("ecc", true)
            .unwrap(),
    )
    .with_label("zone", "eu-1a")
    .unwrap();
    let json = serde_json::to_string(&host).unwrap();
    assert_eq!(serde_json::from_str::<Resource>(&json).unwrap(), host);
    assert!(json.contains(r#""type":"compute""#), "{json}");
    assert_eq!(host.dimension_count(), 2);
    assert_eq!(host.specification().resource_type(), &ResourceType::Compute);

    let duplicate = r#"{"name": "n", "type": "compute", "capacity": {"maximum": 1, "unit": "cores"},
        "capacities": {"compute": {"maximum": 2, "unit": "cores"}}}"#;
    let err = serde_json::from_str::<Resource>(duplicate)
        .unwrap_err()
        .to_string();
    assert!(err.contains("repeats the primary capacity"), "{err}");
    let bad_name =
        r#"{"name": "bad name", "type": "compute", "capacity": {"maximum": 1, "unit": "cores"}}"#;
    assert!(serde_json::from_str::<Resource>(bad_name).is_err());
}

#[test]
fn labels_are_checked() {
    let mut labels = Labels::new();
    labels.insert("topology.example/zone", "a").unwrap();
    assert!(labels.insert("bad key", "a").is_err());
    assert!(labels.insert("k", &"v".repeat(254)).is_err());
    let selector = Labels::try_from(&[("topology.example/zone", "a")][..]).unwrap();
    assert!(labels.contains_all(&selector));
    assert!(labels.contains_all(&Labels::new()));
    assert!(!Labels::new().contains_all(&selector));
    assert_eq!(labels.len(), 1);
}

#[test]
fn labels_are_shared_by_clones_and_copied_on_change() {
    let mut original = Labels::try_from(&[("team", "ml"), ("zone", "a")][..]).unwrap();
    let copy = original.clone();
    // A clone shares the set: no copy of the labels.
    assert!(std::ptr::eq(
        original.iter().next().unwrap().1,
        copy.iter().next().unwrap().1
    ));
    // A change to a shared set leaves the other holders as they were.
    original.insert("zone", "b").unwrap();
    assert_eq!(original.get("zone"), Some("b"));
    assert_eq!(copy.get("zone"), Some("a"));
    assert_ne!(original, copy);
    // A failed change changes nothing.
    assert!(original.insert("bad key", "c").is_err());
    assert_eq!(original.len(), 2);
}

#[test]
fn resources_are_shared_by_clones_and_copied_on_change() {
    let original = Resource::new(
        "n",
        ResourceType::Compute,
        ResourceCapacity::of(4, Unit::CORES).unwrap(),
    )
    .unwrap()
    .with_capacity(
        ResourceType::Memory,
        ResourceCapacity::of(8, Unit::GIB).unwrap(),
    );
    let copy = original.clone();
    // A clone shares the capacities: no copy of the map.
    assert!(std::ptr::eq(original.capacity(), copy.capacity()));
    // Building on a clone leaves the original as it was.
    let grown = copy
        .with_capacity(
            ResourceType::Gpu,
            ResourceCapacity::of(1, Unit::DEVICES).unwrap(),
        )
        .with_label("zone", "a")
        .unwrap();
    assert_eq!(grown.dimension_count(), 3);
    assert_eq!(original.dimension_count(), 2);
    assert_eq!(original.label("zone"), None);
    assert_ne!(grown, original);
    assert_eq!(original, original.clone());
}

#[test]
fn no_labels_are_one_value() {
    let mut labels = Labels::new();
    assert!(labels.insert("bad key", "a").is_err());
    assert!(labels.insert("k", &"v".repeat(254)).is_err());
    // Failed inserts leave no empty set behind: still equal to (and hashed as) no labels.
    assert_eq!(labels, Labels::default());
    assert!(labels.is_empty());
    assert_eq!(labels.iter().count(), 0);
    let read: Labels = serde_json::from_str("{}").unwrap();
    assert_eq!(read, Labels::new());
    use std::hash::BuildHasher;
    let state = std::hash::RandomState::new();
    assert_eq!(state.hash_one(&read), state.hash_one(&labels));
}

#[test]
fn labels_read_and_write_as_a_map() {
    let labels = Labels::try_from(&[("team", "ml"), ("zone", "a")][..]).unwrap();
    let text = serde_json::to_string(&labels).unwrap();
    assert_eq!(text, r#"{"team":"ml","zone":"a"}"#);
    assert_eq!(serde_json::from_str::<Labels>(&text).unwrap(), labels);
    // Read labels are checked as inserted ones are.
    let bad_key = serde_json::from_str::<Labels>(r#"{"bad key": "a"}"#).unwrap_err();
    assert!(bad_key.to_string().contains("label key"), "{bad_key}");
    let long = format!(r#"{{"k": "{}"}}"#, "v".repeat(254));
    let long = serde_json::from_str::<Labels>(&long).unwrap_err();
    assert!(long.to_string().contains("label value"), "{long}");
}
