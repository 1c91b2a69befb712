//! Preemption in Kubernetes' order, graceful notices, and the classes that never preempt.

use std::sync::Mutex;
use std::time::Duration;

use rm_contention::{GracefulPreemption, PreemptionError, VictimNotifier, plan_preemption};
use rm_model::{
    PreemptionPolicy, Reservation, ReservationId, ReservationLedger, ReservationRequest, Timestamp,
};

use crate::{cores, node, queue_on};

/// Fills nodes `a` then `b` (100 cores each, first fit) with holds of the given
/// (priority, cores).
fn cluster(a: &[(i32, i32)], b: &[(i32, i32)]) -> std::sync::Arc<rm_testkit::ReferenceLedger> {
    let (ledger, _) = queue_on(vec![node("a", 100), node("b", 100)]);
    for (i, &(priority, amount)) in a.iter().chain(b).enumerate() {
        ledger
            .reserve(&cores(&format!("v{i}"), amount, priority))
            .unwrap();
    }
    ledger
}

fn plan_on(
    ledger: &dyn ReservationLedger,
    request: &ReservationRequest,
) -> Result<(String, Vec<i32>), PreemptionError> {
    plan_preemption(
        request,
        PreemptionPolicy::PreemptLowerPriority,
        &ledger.snapshot().unwrap(),
    )
    .map(|plan| {
        (
            plan.resource.to_string(),
            plan.victims.iter().map(|v| v.priority.0).collect(),
        )
    })
}

#[test]
fn the_lowest_highest_victim_priority_wins() {
    // a: one hold of priority 100 (100 cores); b: two of priority 50 (50 cores each).
    let ledger = cluster(&[(100, 100)], &[(50, 50), (50, 50)]);
    assert_eq!(
        plan_on(&*ledger, &cores("p", 100, 200)),
        Ok(("b".into(), vec![50, 50]))
    );
}

#[test]
fn then_the_fewest_victims() {
    // a: two holds of priority 50 (50 each); b: one of priority 50 (50) and 50 free.
    let ledger = cluster(&[(50, 50), (50, 50)], &[(50, 50)]);
    assert_eq!(
        plan_on(&*ledger, &cores("p", 100, 200)),
        Ok(("b".into(), vec![50]))
    );
}

#[test]
fn equal_or_higher_priority_is_never_a_victim() {
    let ledger = cluster(&[(200, 100)], &[(300, 100)]);
    assert_eq!(
        plan_on(&*ledger, &cores("p", 10, 200)),
        Err(PreemptionError::NoVictims {
            requester: "p".parse().unwrap()
        })
    );
    let never = plan_preemption(
        &cores("p", 10, 900),
        PreemptionPolicy::Never,
        &ledger.snapshot().unwrap(),
    );
    assert!(matches!(never, Err(PreemptionError::NeverPreempts { .. })));
    // Holds that are not preemptible are never victims either.
    let (ledger, _) = queue_on(vec![node("a", 10)]);
    ledger
        .reserve(&cores("pinned", 10, 0).preemptible(false))
        .unwrap();
    assert!(plan_on(&*ledger, &cores("p", 5, 9)).is_err());
}

#[test]
fn only_as_many_victims_as_needed_and_the_most_recent_first() {
    let (ledger, _) = queue_on(vec![node("a", 100)]);
    for i in 0..4 {
        ledger.reserve(&cores(&format!("v{i}"), 25, 1)).unwrap();
    }
    let plan = plan_preemption(
        &cores("p", 50, 9),
        PreemptionPolicy::PreemptLowerPriority,
        &ledger.snapshot().unwrap(),
    )
    .unwrap();
    assert_eq!(plan.victims.len(), 2);
    let names: Vec<_> = plan
        .victims
        .iter()
        .map(|v| v.requester.to_string())
        .collect();
    assert_eq!(names, ["v2", "v3"], "the earliest started are spared first");
}

struct Notices(Mutex<Vec<(ReservationId, Timestamp)>>);

impl VictimNotifier for Notices {
    fn notify(&self, victim: &Reservation, _preemptor: &ReservationId, deadline: Timestamp) {
        self.0.lock().unwrap().push((victim.id.clone(), deadline));
    }
}

#[test]
fn graceful_preemption_notifies_once_then_ends_victims_and_the_preemptor_fits() {
    let ledger = cluster(&[(1, 60), (1, 40)], &[(5, 100)]);
    let urgent = cores("urgent", 100, 9);
    let plan = plan_preemption(
        &urgent,
        PreemptionPolicy::PreemptLowerPriority,
        &ledger.snapshot().unwrap(),
    )
    .unwrap();
    assert_eq!(plan.resource.as_str(), "a");
    let notices = Notices(Mutex::new(Vec::new()));
    let graceful = GracefulPreemption::new(Duration::from_secs(30));
    let preemptor = ReservationId::new("urgent-1").unwrap();
    let t0 = Timestamp::ZERO;
    let deadline = graceful
        .begin(&*ledger, &plan, &preemptor, &notices, t0)
        .unwrap();
    graceful
        .begin(&*ledger, &plan, &preemptor, &notices, t0)
        .unwrap();
    assert_eq!(
        notices.0.lock().unwrap().len(),
        2,
        "each victim is notified exactly once"
    );
    // One victim leaves on its own before the deadline.
    let first = &plan.victims[0];
    ledger.cancel(&first.id, None).unwrap();
    assert!(
        graceful
            .tick(&*ledger, t0 + Duration::from_secs(29))
            .unwrap()
            .is_empty()
    );
    let ended = graceful.tick(&*ledger, deadline).unwrap();
    assert_eq!(ended.len(), 1, "only the one still holding is forced");
    assert_eq!(graceful.outstanding(), 0);
    let granted = ledger.reserve(&urgent.with_id(preemptor)).unwrap();
    assert_eq!(granted.items[0].resource.as_str(), "a");
    assert!(ledger.audit().unwrap().is_clean());
}
