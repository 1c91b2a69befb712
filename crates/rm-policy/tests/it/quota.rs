//! Quotas: hard limits per requester, group borrowing and lending, usage that follows the
//! ledger, and refusals that name the limit.

use std::sync::Arc;
use std::thread;

use rm_model::{
    AllocationPolicy, RefusalReason, ReservationLedger, ReservationRequest, ResourceType, Unit,
};
use rm_policy::{QuotaAllocationPolicy, QuotaGroup, ResourceQuota};

use crate::{cores, host, requester, setup};

fn limit(amount: i32) -> ResourceQuota {
    ResourceQuota::new().limit(ResourceType::Compute, amount, Unit::CORES)
}

#[test]
fn a_requester_never_exceeds_its_hard_limit_and_releases_return_quota() {
    let policy = Arc::new(QuotaAllocationPolicy::new("quota"));
    policy.set_requester_quota(requester("alice"), limit(4));
    let (_, ledger, allocator) = setup(policy.clone(), vec![host("n", 64, 64)]);
    let ask = |amount| ReservationRequest::new(requester("alice"), vec![cores(amount)]);
    let first = allocator.allocate(&*policy, &ask(3));
    assert!(first.is_successful(), "{}", first.message());
    let refused = allocator.allocate(&*policy, &ask(2));
    assert_eq!(refused.reason(), Some(RefusalReason::QuotaExceeded));
    assert_eq!(
        refused.message(),
        "quota of alice for compute: 3 cores of 4 cores used, 2 cores more asked"
    );
    assert_eq!(
        policy.requester_usage(&requester("alice"), &ResourceType::Compute, &Unit::CORES),
        3.into()
    );
    // Amounts in other units count exactly: 1000 millicores is one core.
    let milli = ReservationRequest::new(
        requester("alice"),
        vec![rm_model::ResourceRequirement::new(
            ResourceType::Compute,
            1000,
            Unit::MILLICORES,
        )],
    );
    assert!(allocator.allocate(&*policy, &milli).is_successful());
    // Releasing returns quota (the ledger's event reaches the policy).
    let id = first.reservation().unwrap().id.clone();
    ledger.confirm(&id, None).unwrap();
    ledger.release(&id, None).unwrap();
    assert_eq!(
        policy.requester_usage(&requester("alice"), &ResourceType::Compute, &Unit::CORES),
        1.into()
    );
    assert!(allocator.allocate(&*policy, &ask(3)).is_successful());
    // A refusal by the ledger withdraws the admission.
    let huge = ReservationRequest::new(requester("bob"), vec![cores(1_000)]);
    assert_eq!(
        allocator.allocate(&*policy, &huge).reason(),
        Some(RefusalReason::InsufficientCapacity)
    );
    assert_eq!(
        policy.requester_usage(&requester("bob"), &ResourceType::Compute, &Unit::CORES),
        0.into()
    );
}

#[test]
fn concurrent_admissions_cannot_pass_one_limit() {
    let policy = Arc::new(QuotaAllocationPolicy::new("quota"));
    policy.set_requester_quota(requester("alice"), limit(10));
    let (_, _, allocator) = setup(policy.clone(), vec![host("n", 100, 100)]);
    let granted: usize = thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let (policy, allocator) = (policy.clone(), allocator.clone());
                scope.spawn(move || {
                    (0..10)
                        .filter(|_| {
                            let ask = ReservationRequest::new(requester("alice"), vec![cores(1)]);
                            allocator.allocate(&*policy, &ask).is_successful()
                        })
                        .count()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    assert_eq!(granted, 10);
}

/// org (16 cores) → team-a (guaranteed 4, may borrow 2), team-b (guaranteed 4, lends 1),
/// team-c (guaranteed 8, lends 3, may borrow 1).
fn groups() -> Arc<QuotaAllocationPolicy> {
    let policy = Arc::new(QuotaAllocationPolicy::new("quota"));
    policy
        .add_group(QuotaGroup::new("org").guaranteed(limit(16)))
        .unwrap();
    policy
        .add_group(
            QuotaGroup::new("team-a")
                .parent("org")
                .guaranteed(limit(4))
                .borrowing_limit(limit(2)),
        )
        .unwrap();
    policy
        .add_group(
            QuotaGroup::new("team-b")
                .parent("org")
                .guaranteed(limit(4))
                .lending_limit(limit(1)),
        )
        .unwrap();
    policy
        .add_group(
            QuotaGroup::new("team-c")
                .parent("org")
                .guaranteed(limit(8))
                .lending_limit(limit(0))
                .borrowing_limit(limit(1)),
        )
        .unwrap();
    for (who, team) in [("a", "team-a"), ("b", "team-b"), ("c", "team-c")] {
        policy.assign(requester(who), team).unwrap();
    }
    policy
}

#[test]
fn groups_borrow_within_their_limits_and_owners_keep_what_they_do_not_lend() {
    let policy = groups();
    let (_, _, allocator) = setup(policy.clone(), vec![host("n", 16, 64)]);
    let ask = |who: &str, amount| ReservationRequest::new(requester(who), vec![cores(amount)]);
    assert!(
        allocator.allocate(&*policy, &ask("a", 4)).is_successful(),
        "its guaranteed share"
    );
    // team-a may borrow 2, but only team-b lends (1 core): the lending limit refuses.
    let refused = allocator.allocate(&*policy, &ask("a", 2));
    assert_eq!(
        refused.reason(),
        Some(RefusalReason::BorrowingLimitExceeded)
    );
    assert!(
        refused
            .message()
            .starts_with("lending limits in group org for compute"),
        "{}",
        refused.message()
    );
    assert!(
        allocator.allocate(&*policy, &ask("a", 1)).is_successful(),
        "borrows the one core team-b lends"
    );
    assert_eq!(
        policy.group_usage("team-a", &ResourceType::Compute, &Unit::CORES),
        Some(5.into())
    );
    // team-b keeps the 3 cores it does not lend.
    assert!(allocator.allocate(&*policy, &ask("b", 3)).is_successful());
    // team-c may borrow only 1 beyond its 8.
    let refused = allocator.allocate(&*policy, &ask("c", 10));
    assert_eq!(
        refused.reason(),
        Some(RefusalReason::BorrowingLimitExceeded)
    );
    assert_eq!(
        refused.message(),
        "borrowing limit of group team-c for compute: it may borrow 1 cores, this would borrow 2 cores"
    );
    // The org's own share is a hard cap: a 5, b 3, c 8 use all 16.
    assert!(allocator.allocate(&*policy, &ask("c", 8)).is_successful());
    let refused = allocator.allocate(&*policy, &ask("b", 1));
    assert_eq!(refused.reason(), Some(RefusalReason::QuotaExceeded));
    assert_eq!(
        refused.message(),
        "quota of group org for compute: 16 cores of 16 cores used, 1 cores more asked"
    );
}

#[test]
fn configuration_mistakes_are_errors() {
    let policy = groups();
    assert!(policy.add_group(QuotaGroup::new("org")).is_err());
    assert!(
        policy
            .add_group(QuotaGroup::new("x").parent("nowhere"))
            .is_err()
    );
    assert!(policy.assign(requester("z"), "nowhere").is_err());
    assert_eq!(
        policy.group_usage("nowhere", &ResourceType::Compute, &Unit::CORES),
        None
    );
    let read: ResourceQuota =
        serde_json::from_str(r#"{"compute": {"amount": 4, "unit": "cores"}}"#).unwrap();
    assert_eq!(read, limit(4));
    assert_eq!(policy.name(), "quota");
}

#[test]
fn reservations_made_around_the_policy_still_count() {
    let policy = Arc::new(QuotaAllocationPolicy::new("quota"));
    policy.set_requester_quota(requester("alice"), limit(4));
    let (_, ledger, allocator) = setup(policy.clone(), vec![host("n", 16, 16)]);
    ledger
        .reserve(&ReservationRequest::new(requester("alice"), vec![cores(3)]))
        .unwrap();
    let refused = allocator.allocate(
        &*policy,
        &ReservationRequest::new(requester("alice"), vec![cores(2)]),
    );
    assert_eq!(refused.reason(), Some(RefusalReason::QuotaExceeded));
}
