//! Composition: a quota gate, then fair order, then priority, configured not hard-wired.

use std::sync::Arc;

use rm_model::{
    AllocationPolicy, RefusalReason, ReservationRequest, ResourceType, Timestamp, Unit,
};
use rm_policy::{
    ComposedPolicy, FairAllocationPolicy, PriorityAllocationPolicy, QuotaAllocationPolicy,
    ResourceQuota,
};
use rm_testkit::fakes::StaticPolicy;

use crate::{cores, host, pending, requester, setup};

#[test]
fn gate_then_fair_then_priority() {
    let quota = Arc::new(QuotaAllocationPolicy::new("quota"));
    quota.set_requester_quota(
        requester("a"),
        ResourceQuota::new().limit(ResourceType::Compute, 2, Unit::CORES),
    );
    let fair = Arc::new(FairAllocationPolicy::new("fair"));
    fair.set_capacity(ResourceType::Compute, 10.into(), &Unit::CORES);
    let priority = Arc::new(PriorityAllocationPolicy::new("priority"));
    priority.set_requester_priority(requester("c"), 9);
    let composed = Arc::new(
        ComposedPolicy::new("quota-fair-priority")
            .then(quota.clone())
            .then(fair.clone())
            .then(priority.clone()),
    );
    let (_, _, allocator) = setup(composed.clone(), vec![host("n", 10, 10)]);
    let ask = |who: &str, amount| ReservationRequest::new(requester(who), vec![cores(amount)]);

    assert!(allocator.allocate(&*composed, &ask("a", 2)).is_successful());
    let refused = allocator.allocate(&*composed, &ask("a", 1));
    assert_eq!(
        refused.reason(),
        Some(RefusalReason::QuotaExceeded),
        "{}",
        refused.message()
    );

    // a holds 2 of 10: b and c (share 0) go before a; between b and c, priority decides.
    let waiting = [
        pending(ask("a", 1), 0, Timestamp::ZERO),
        pending(ask("b", 1), 1, Timestamp::ZERO),
        pending(ask("c", 1), 2, Timestamp::ZERO),
    ];
    assert_eq!(composed.order(&waiting, Timestamp::ZERO), [2, 1, 0]);
    // One scheduling cycle admits in that order; a's request is refused by its quota.
    let results = allocator.schedule(&*composed, &waiting);
    let outcomes: Vec<_> = results
        .iter()
        .map(|(i, r)| (*i, r.is_successful()))
        .collect();
    assert_eq!(outcomes, [(2, true), (1, true), (0, false)]);
    assert_eq!(
        format!("{composed:?}"),
        "ComposedPolicy { name: \"quota-fair-priority\", policies: [\"quota\", \"fair\", \"priority\"] }"
    );
}

#[test]
fn a_later_refusal_withdraws_earlier_admissions() {
    let quota = Arc::new(QuotaAllocationPolicy::new("quota"));
    quota.set_requester_quota(
        requester("a"),
        ResourceQuota::new().limit(ResourceType::Compute, 8, Unit::CORES),
    );
    let gate = Arc::new(StaticPolicy::admit_all());
    gate.refuse(
        requester("a"),
        RefusalReason::PolicyDenied,
        "maintenance window for a",
    );
    let composed = Arc::new(ComposedPolicy::new("c").then(quota.clone()).then(gate));
    let (_, _, allocator) = setup(composed.clone(), vec![host("n", 10, 10)]);
    let result = allocator.allocate(
        &*composed,
        &ReservationRequest::new(requester("a"), vec![cores(4)]),
    );
    assert_eq!(result.reason(), Some(RefusalReason::PolicyDenied));
    assert_eq!(result.message(), "maintenance window for a");
    assert_eq!(
        quota.requester_usage(&requester("a"), &ResourceType::Compute, &Unit::CORES),
        0.into()
    );
}
