//! Scenarios read from TOML, as users write them, and replayed on a ledger.

use std::sync::Arc;
use std::time::Duration;

use rm_model::{
    DiscardEvents, LedgerError, Quantity, ReservationLedger, ResourceType, SystemClock,
};
use rm_testkit::ReferenceLedger;
use rm_tests::Scenario;

const SCENARIO: &str = r#"
[[resources]]
name = "gpu-node-1"
type = "compute"
capacity = { maximum = 64, unit = "cores" }
capacities.memory = { maximum = "512Gi", unit = "bytes" }
capacities.gpu = { maximum = 8, unit = "devices" }
capabilities = { arch = "x86_64", "gpu.model" = "A100", memory = "512Gi" }
labels = { zone = "eu-1a" }

[[resources]]
name = "cpu-node-1"
type = "compute"
capacity = { current = 4, maximum = 32, unit = "cores" }
capacities.memory = { maximum = 128, unit = "GiB" }
labels = { zone = "eu-1b" }

[[requests]]
id = "train-1"
requester = "team-a/train"
priority = 10
strategy = "bin-pack"
ttl = 60000
labels = { app = "train" }

[[requests.requirements]]
type = "gpu"
amount = "1500m"
colocate = "main"
constraints = [{ capability = "gpu.model", op = "in", values = ["A100", "H100"] }]

[[requests.requirements]]
type = "memory"
amount = "64Gi"
colocate = "main"

[[requests]]
requester = "team-b/etl"
strategy = "least-allocated"

[[requests.requirements]]
type = "compute"
amount = "500m"
preferences = [{ weight = 50, constraint = { label = "zone", op = "eq", value = "eu-1b" } }]
"#;

fn ledger() -> ReferenceLedger {
    ReferenceLedger::new(
        Arc::new(SystemClock::new()),
        Arc::new(DiscardEvents),
        Duration::from_secs(30),
    )
}

#[test]
fn a_toml_scenario_replays() -> Result<(), Box<dyn std::error::Error>> {
    let scenario: Scenario = toml::from_str(SCENARIO)?;
    assert_eq!(scenario.resources.len(), 2);
    assert_eq!(scenario.requests[0].ttl, Some(Duration::from_secs(60)));
    let ledger = ledger();
    for resource in scenario.resources.clone() {
        ledger.register_resource(resource)?;
    }
    let train = ledger.reserve(&scenario.requests[0])?;
    let places: Vec<_> = train.items.iter().map(|i| i.resource.as_str()).collect();
    assert_eq!(places, ["gpu-node-1", "gpu-node-1"]);
    assert_eq!(train.items[0].amount, Quantity::from_milli(1500));
    let etl = ledger.reserve(&scenario.requests[1])?;
    assert_eq!(
        etl.items[0].resource.as_str(),
        "cpu-node-1",
        "the zone preference decides"
    );
    let snapshot = ledger.snapshot()?;
    let cpu = snapshot
        .usage_of("cpu-node-1", &ResourceType::Compute)
        .ok_or("no usage")?;
    assert_eq!(cpu.external, Quantity::from(4));
    assert_eq!(cpu.free, Quantity::from_milli(27_500));
    assert!(snapshot.audit().is_clean());
    // A retry of the named request is idempotent.
    assert_eq!(
        ledger.reserve(&scenario.requests[0])?.fencing_token,
        train.fencing_token
    );
    Ok(())
}

#[test]
fn mistakes_in_a_scenario_are_named() {
    let cases = [
        (
            SCENARIO.replace("maximum = 64", "maximum = 64.5"),
            "write it as a string",
        ),
        (
            SCENARIO.replace(r#"op = "in""#, r#"op = "within""#),
            "\"within\" is unknown",
        ),
        (
            SCENARIO.replace("strategy = \"bin-pack\"", "strategy = \"fastest\""),
            "unknown variant `fastest`",
        ),
        (
            SCENARIO.replace(
                "colocate = \"main\"\nconstraints",
                "colocation = \"main\"\nconstraints",
            ),
            "unknown field `colocation`",
        ),
        (
            SCENARIO.replace("amount = \"64Gi\"", "amount = \"64 Gi\""),
            "unknown suffix",
        ),
        (
            SCENARIO.replace("current = 4, maximum = 32", "current = 40, maximum = 32"),
            "current exceeds maximum",
        ),
    ];
    for (text, expected) in cases {
        let err = toml::from_str::<Scenario>(&text)
            .expect_err(expected)
            .to_string();
        assert!(err.contains(expected), "expected {expected:?} in: {err}");
    }
}

#[test]
fn a_request_no_resource_can_hold_is_explained() -> Result<(), Box<dyn std::error::Error>> {
    let mut scenario: Scenario = toml::from_str(SCENARIO)?;
    let ledger = ledger();
    for resource in scenario.resources.drain(..) {
        ledger.register_resource(resource)?;
    }
    let mut request = scenario.requests[0].clone();
    request.id = None;
    for _ in 0..5 {
        ledger.reserve(&request)?;
    }
    match ledger.reserve(&request) {
        Err(LedgerError::InsufficientCapacity { shortfalls, .. }) => {
            let gpu = &shortfalls[0];
            assert_eq!(gpu.resource_type, ResourceType::Gpu);
            assert_eq!(gpu.matching_resources, 1);
            assert_eq!(gpu.available, Quantity::from_milli(500));
            assert_eq!(gpu.short_by, Quantity::from(1));
        }
        other => panic!("expected insufficient capacity, got {other:?}"),
    }
    Ok(())
}
