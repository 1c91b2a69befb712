//! Choosing among resources for preemption in kube-scheduler's order
//! (`pickOneNodeForPreemption`): one row per rule, each built so that only that rule decides
//! between the two nodes `x` and `y` (10 cores each; the request needs all 10 of one node).

use std::sync::Arc;
use std::time::Duration;

use rm_contention::{DisruptionBudget, plan_preemption_with};
use rm_model::{
    Constraint, DiscardEvents, Labels, ManualClock, PreemptionPolicy, Priority, RequesterId,
    ReservationLedger, ReservationRequest, Resource, ResourceCapacity, ResourceRequirement,
    ResourceType, Selector, Timestamp, Unit,
};
use rm_testkit::ReferenceLedger;

/// A hold on one node: (node, priority, cores, start in seconds, label `app`).
type Hold = (&'static str, i32, i32, u64, Option<&'static str>);

fn ledger(holds: &[Hold]) -> ReferenceLedger {
    let clock = Arc::new(ManualClock::new());
    let ledger = ReferenceLedger::new(
        clock.clone(),
        Arc::new(DiscardEvents),
        Duration::from_secs(3600),
    );
    for name in ["x", "y"] {
        let node = Resource::new(
            name,
            ResourceType::Compute,
            ResourceCapacity::of(10, Unit::CORES).unwrap(),
        )
        .unwrap()
        .with_label("node", name)
        .unwrap();
        ledger.register_resource(node).unwrap();
    }
    let mut holds: Vec<&Hold> = holds.iter().collect();
    holds.sort_by_key(|h| h.3);
    for (i, &&(node, priority, cores, start, app)) in holds.iter().enumerate() {
        clock.set(Timestamp::ZERO + Duration::from_secs(start));
        let mut labels = Labels::new();
        if let Some(app) = app {
            labels.insert("app", app).unwrap();
        }
        let request = ReservationRequest::new(
            RequesterId::new(&format!("v{i}")).unwrap(),
            vec![
                ResourceRequirement::new(ResourceType::Compute, cores, Unit::CORES)
                    .with_constraint(Constraint::label("node").unwrap().eq(node)),
            ],
        )
        .with_priority(Priority(priority))
        .with_labels(labels);
        ledger.reserve(&request).unwrap();
    }
    clock.set(Timestamp::ZERO + Duration::from_secs(1000));
    ledger
}

fn chosen(holds: &[Hold], budgets: &[DisruptionBudget]) -> String {
    let ledger = ledger(holds);
    let request = ReservationRequest::new(
        RequesterId::new("preemptor").unwrap(),
        vec![ResourceRequirement::new(
            ResourceType::Compute,
            10,
            Unit::CORES,
        )],
    )
    .with_priority(Priority(100));
    let plan = plan_preemption_with(
        &request,
        PreemptionPolicy::PreemptLowerPriority,
        &ledger.snapshot().unwrap(),
        budgets,
    )
    .unwrap();
    plan.resource.to_string()
}

#[test]
fn kube_schedulers_node_order_one_rule_per_row() {
    let db_budget = [DisruptionBudget {
        selector: Selector::labels({
            let mut labels = Labels::new();
            labels.insert("app", "db").unwrap();
            labels
        }),
        max_disruptions: 0,
    }];
    let rows: [(&str, Vec<Hold>, &[DisruptionBudget], &str); 6] = [
        (
            "a node that needs no victims wins, even against a negative-priority victim",
            vec![("x", -5, 10, 1, None)],
            &[],
            "y",
        ),
        (
            "fewest budget violations, before a lower victim priority",
            vec![("x", 1, 10, 1, Some("db")), ("y", 5, 10, 1, None)],
            &db_budget,
            "y",
        ),
        (
            "lowest highest victim priority",
            vec![("x", 5, 10, 1, None), ("y", 3, 10, 1, None)],
            &[],
            "y",
        ),
        (
            "smallest sum of victim priorities",
            vec![
                ("x", 5, 5, 1, None),
                ("x", 3, 5, 1, None),
                ("y", 5, 5, 1, None),
                ("y", 1, 5, 1, None),
            ],
            &[],
            "y",
        ),
        (
            // The sums tie only with Kubernetes' offset of 2^31 per victim: 0 + 2^31 on x,
            // (0 + 2^31) + (-2^31 + 2^31) on y.
            "fewest victims",
            vec![
                ("x", 0, 10, 1, None),
                ("y", 0, 5, 1, None),
                ("y", i32::MIN, 5, 1, None),
            ],
            &[],
            "x",
        ),
        (
            "latest earliest start among the highest-priority victims",
            vec![
                ("x", 3, 5, 1, None),
                ("x", 3, 5, 100, None),
                ("y", 3, 5, 50, None),
                ("y", 3, 5, 60, None),
            ],
            &[],
            "y",
        ),
    ];
    for (rule, holds, budgets, expected) in rows {
        assert_eq!(chosen(&holds, budgets), expected, "{rule}");
    }
}

/// Within a node, the holds whose end would break a budget are spared first.
#[test]
fn budgets_spare_their_holds_within_a_node() {
    let ledger = ledger(&[
        ("x", 1, 5, 1, Some("db")),
        ("x", 2, 5, 2, None),
        ("y", 50, 10, 1, None),
    ]);
    let budget = DisruptionBudget {
        selector: Selector::labels({
            let mut labels = Labels::new();
            labels.insert("app", "db").unwrap();
            labels
        }),
        max_disruptions: 0,
    };
    let request = ReservationRequest::new(
        RequesterId::new("p").unwrap(),
        vec![ResourceRequirement::new(
            ResourceType::Compute,
            5,
            Unit::CORES,
        )],
    )
    .with_priority(Priority(100));
    let snapshot = ledger.snapshot().unwrap();
    let plan = plan_preemption_with(
        &request,
        PreemptionPolicy::PreemptLowerPriority,
        &snapshot,
        &[budget],
    )
    .unwrap();
    let victims: Vec<i32> = plan.victims.iter().map(|v| v.priority.0).collect();
    assert_eq!(
        (plan.resource.as_str(), victims),
        ("x", vec![2]),
        "the db hold is spared"
    );
    let plan = plan_preemption_with(
        &request,
        PreemptionPolicy::PreemptLowerPriority,
        &snapshot,
        &[],
    )
    .unwrap();
    let victims: Vec<i32> = plan.victims.iter().map(|v| v.priority.0).collect();
    assert_eq!(victims, [1], "without the budget, the lowest priority goes");
}
