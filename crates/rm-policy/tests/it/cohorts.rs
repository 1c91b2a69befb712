//! Cohorts as Kueue has them: members lend their share to a pool (all of it, or up to their
//! lending limit) and borrow from it (up to their borrowing limit); the pool is never
//! over-committed, and what a member does not lend is always its own.

use proptest::prelude::*;
use rm_model::{
    Admission, AllocationPolicy, RefusalReason, ReservationId, ReservationRequest, ResourceType,
    Timestamp, Unit,
};
use rm_policy::{QuotaAllocationPolicy, QuotaGroup, ResourceQuota};

use crate::{cores, requester};

fn limit(amount: i32) -> ResourceQuota {
    ResourceQuota::new().limit(ResourceType::Compute, amount, Unit::CORES)
}

/// A request with its own id (so that the policy keeps its admission until withdrawn).
fn ask(who: &str, id: usize, amount: i32) -> ReservationRequest {
    ReservationRequest::new(requester(who), vec![cores(amount)])
        .with_id(ReservationId::new(&format!("r{id}")).unwrap())
}

fn admitted(
    policy: &QuotaAllocationPolicy,
    request: &ReservationRequest,
) -> Result<(), RefusalReason> {
    match policy.admit(request, Timestamp::ZERO) {
        Admission::Admit => Ok(()),
        Admission::Refuse(refusal) => Err(refusal.reason),
    }
}

fn used(policy: &QuotaAllocationPolicy, group: &str) -> i64 {
    policy
        .group_usage(group, &ResourceType::Compute, &Unit::CORES)
        .unwrap()
        .to_units_floor()
}

/// `a` and `b` have 10 each in one cohort; `b` uses 20 (10 borrowed from `a`); `a` asking
/// for 5 of its own is refused until its lent quota is back, never admitted beyond the pool.
#[test]
fn a_lender_is_not_admitted_while_its_share_is_lent_out() {
    let policy = QuotaAllocationPolicy::new("quota");
    policy.add_group(QuotaGroup::new("cohort")).unwrap();
    for team in ["a", "b"] {
        policy
            .add_group(QuotaGroup::new(team).parent("cohort").guaranteed(limit(10)))
            .unwrap();
        policy.assign(requester(team), team).unwrap();
    }
    let borrowing = ask("b", 1, 20);
    assert_eq!(admitted(&policy, &borrowing), Ok(()));
    assert_eq!(
        admitted(&policy, &ask("a", 2, 5)),
        Err(RefusalReason::BorrowingLimitExceeded)
    );
    assert_eq!(used(&policy, "cohort"), 20, "the cohort holds 20 of 20");
    // Once the borrower gives back, the lender gets its share.
    policy.withdraw(&borrowing);
    assert_eq!(admitted(&policy, &ask("a", 3, 10)), Ok(()));
}

/// `b` lends 8 of its 10 (keeps 2); `a` (10) borrows those 8. `b` keeps its 2, but a third
/// core is lent out and refused.
#[test]
fn a_lender_keeps_what_it_does_not_lend_and_no_more() {
    let policy = QuotaAllocationPolicy::new("quota");
    policy.add_group(QuotaGroup::new("cohort")).unwrap();
    policy
        .add_group(QuotaGroup::new("a").parent("cohort").guaranteed(limit(10)))
        .unwrap();
    policy
        .add_group(
            QuotaGroup::new("b")
                .parent("cohort")
                .guaranteed(limit(10))
                .lending_limit(limit(8)),
        )
        .unwrap();
    policy.assign(requester("a"), "a").unwrap();
    policy.assign(requester("b"), "b").unwrap();
    assert_eq!(admitted(&policy, &ask("a", 1, 18)), Ok(()));
    assert_eq!(
        admitted(&policy, &ask("a", 2, 1)),
        Err(RefusalReason::BorrowingLimitExceeded)
    );
    assert_eq!(admitted(&policy, &ask("b", 3, 2)), Ok(()), "its own 2");
    assert_eq!(
        admitted(&policy, &ask("b", 4, 1)),
        Err(RefusalReason::BorrowingLimitExceeded),
        "its third core is lent to a"
    );
    assert_eq!(used(&policy, "cohort"), 20);
}

#[derive(Clone, Debug)]
struct Member {
    share: i32,
    borrowing: Option<i32>,
    lending: Option<i32>,
}

fn member() -> impl Strategy<Value = Member> {
    (
        0..12i32,
        prop::option::of(0..8i32),
        prop::option::of(0..12i32),
    )
        .prop_map(|(share, borrowing, lending)| Member {
            share,
            borrowing,
            lending,
        })
}

#[derive(Clone, Debug)]
enum Step {
    Ask { member: usize, amount: i32 },
    Give { pick: prop::sample::Index },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..4usize, 1..6i32).prop_map(|(member, amount)| Step::Ask { member, amount }),
        1 => any::<prop::sample::Index>().prop_map(|pick| Step::Give { pick }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(rm_testkit::proptest_cases(128)))]

    /// Random cohorts, limits and request sequences: after every step the cohort's usage is
    /// within the sum of its shares, the pool within what members lend, every member within
    /// its borrowing limit, and the root within its cap; a member asking within what it keeps
    /// is always admitted.
    #[test]
    fn a_cohort_is_never_over_committed(
        members in prop::collection::vec(member(), 2..5),
        cap in prop::option::of(0..40i32),
        steps in prop::collection::vec(step(), 1..60),
    ) {
        let policy = QuotaAllocationPolicy::new("quota");
        let mut root = QuotaGroup::new("cohort");
        if let Some(cap) = cap {
            root = root.guaranteed(limit(cap));
        }
        policy.add_group(root).unwrap();
        for (i, m) in members.iter().enumerate() {
            let mut group = QuotaGroup::new(&format!("m{i}")).parent("cohort").guaranteed(limit(m.share));
            if let Some(b) = m.borrowing {
                group = group.borrowing_limit(limit(b));
            }
            if let Some(l) = m.lending {
                group = group.lending_limit(limit(l));
            }
            policy.add_group(group).unwrap();
            policy.assign(requester(&format!("m{i}")), &format!("m{i}")).unwrap();
        }
        let lent = |m: &Member| m.lending.map_or(m.share, |l| l.min(m.share));
        let kept = |m: &Member| m.share - lent(m);
        let mut held: Vec<(ReservationRequest, usize, i32)> = Vec::new();
        let mut usage = vec![0i32; members.len()];
        for (n, step) in steps.into_iter().enumerate() {
            match step {
                Step::Ask { member, amount } => {
                    let member = member % members.len();
                    let request = ask(&format!("m{member}"), n, amount);
                    let m = &members[member];
                    let within_kept = usage[member] + amount <= kept(m)
                        && cap.is_none_or(|c| usage.iter().sum::<i32>() + amount <= c);
                    match admitted(&policy, &request) {
                        Ok(()) => {
                            usage[member] += amount;
                            held.push((request, member, amount));
                        }
                        Err(_) => prop_assert!(!within_kept, "m{member} refused {amount} within what it keeps"),
                    }
                }
                Step::Give { pick } => {
                    if !held.is_empty() {
                        let (request, member, amount) = held.swap_remove(pick.index(held.len()));
                        policy.withdraw(&request);
                        usage[member] -= amount;
                    }
                }
            }
            let total: i32 = usage.iter().sum();
            let shares: i32 = members.iter().map(|m| m.share).sum();
            let pool: i32 = members.iter().map(lent).sum();
            let drawn: i32 = members.iter().zip(&usage).map(|(m, u)| (u - kept(m)).max(0)).sum();
            prop_assert!(total <= shares, "cohort uses {total} of {shares}");
            prop_assert!(drawn <= pool, "pool: {drawn} drawn of {pool}");
            for (i, (m, u)) in members.iter().zip(&usage).enumerate() {
                if let Some(b) = m.borrowing {
                    prop_assert!(u - m.share <= b, "m{i} borrows {} beyond {b}", u - m.share);
                }
                prop_assert_eq!(used(&policy, &format!("m{i}")), i64::from(*u));
            }
            if let Some(cap) = cap {
                prop_assert!(total <= cap);
            }
        }
    }
}

mod reclaim {
    use std::sync::Arc;

    use rm_model::{AllocationPolicy, Priority, ReservationLedger, ReservationRequest};
    use rm_policy::{
        QuotaAllocationPolicy, QuotaGroup, QuotaPreemption, ReclaimWithinCohort, WithinGroup,
    };

    use super::limit;
    use crate::{cores, host, requester, setup};

    /// Three groups of 10 in one cohort, on one 30-core node, with `rules`.
    fn cohort(
        rules: QuotaPreemption,
    ) -> (Arc<QuotaAllocationPolicy>, Arc<rm_testkit::ReferenceLedger>) {
        let policy = Arc::new(QuotaAllocationPolicy::new("quota"));
        policy.add_group(QuotaGroup::new("cohort")).unwrap();
        for team in ["a", "b", "c"] {
            policy
                .add_group(QuotaGroup::new(team).parent("cohort").guaranteed(limit(10)))
                .unwrap();
            policy.assign(requester(team), team).unwrap();
        }
        policy.set_preemption(rules);
        let (clock, ledger, _) = setup(policy.clone(), vec![host("n", 30, 64)]);
        drop(clock);
        (policy, ledger)
    }

    fn hold(
        ledger: &dyn ReservationLedger,
        policy: &QuotaAllocationPolicy,
        who: &str,
        amount: i32,
        priority: i32,
    ) -> rm_model::Reservation {
        let request = ReservationRequest::new(requester(who), vec![cores(amount)])
            .with_priority(Priority(priority))
            .with_id(rm_model::ReservationId::generate());
        assert!(matches!(
            policy.admit(&request, rm_model::Timestamp::ZERO),
            rm_model::Admission::Admit
        ));
        ledger.reserve(&request).unwrap()
    }

    fn asking(who: &str, amount: i32, priority: i32) -> ReservationRequest {
        ReservationRequest::new(requester(who), vec![cores(amount)])
            .with_priority(Priority(priority))
            .with_id(rm_model::ReservationId::generate())
    }

    /// Kueue's example: `c` holds its own 10 at priority 0, `b` 20 (10 borrowed) at priority
    /// 5, and `a` asks for its own 10 at priority 10: the borrower gives back, `c` keeps its
    /// own, and the newest of `b`'s holds goes first.
    #[test]
    fn a_lender_reclaims_from_the_borrower_not_from_a_lower_priority_owner() {
        let rules = QuotaPreemption {
            reclaim_within_cohort: ReclaimWithinCohort::Any,
            within_group: WithinGroup::LowerPriority,
        };
        let (policy, ledger) = cohort(rules);
        let _c = hold(&*ledger, &policy, "c", 10, 0);
        let _b1 = hold(&*ledger, &policy, "b", 10, 5);
        let b2 = hold(&*ledger, &policy, "b", 10, 5);
        let request = asking("a", 10, 10);
        let active = ledger.snapshot().unwrap().active;
        assert_eq!(
            policy.reclaim(&request, &active),
            std::slice::from_ref(&b2.id)
        );
        ledger.preempt(&b2.id, None).unwrap();
        assert!(matches!(
            policy.admit(&request, rm_model::Timestamp::ZERO),
            rm_model::Admission::Admit
        ));
        // Without permission to reclaim, nothing is named.
        let (policy, ledger) = cohort(QuotaPreemption::default());
        hold(&*ledger, &policy, "c", 10, 0);
        hold(&*ledger, &policy, "b", 20, 5);
        let active = ledger.snapshot().unwrap().active;
        assert!(policy.reclaim(&asking("a", 10, 10), &active).is_empty());
        // With `lower-priority`, a borrower of higher priority is kept.
        let (policy, ledger) = cohort(QuotaPreemption {
            reclaim_within_cohort: ReclaimWithinCohort::LowerPriority,
            within_group: WithinGroup::Never,
        });
        hold(&*ledger, &policy, "c", 10, 0);
        hold(&*ledger, &policy, "b", 20, 50);
        let active = ledger.snapshot().unwrap().active;
        assert!(policy.reclaim(&asking("a", 10, 10), &active).is_empty());
    }

    /// Lower priority goes first, and a hold taken on the way that the request turns out not
    /// to need is spared: the set is minimal.
    #[test]
    fn the_set_is_minimal_and_in_kueue_order() {
        let rules = QuotaPreemption {
            reclaim_within_cohort: ReclaimWithinCohort::Any,
            within_group: WithinGroup::Never,
        };
        let (policy, ledger) = cohort(rules);
        hold(&*ledger, &policy, "c", 9, 0);
        let small = hold(&*ledger, &policy, "b", 1, 1);
        let big = hold(&*ledger, &policy, "b", 10, 2);
        hold(&*ledger, &policy, "b", 10, 3);
        let active = ledger.snapshot().unwrap().active;
        let victims = policy.reclaim(&asking("a", 10, 10), &active);
        assert_eq!(
            victims,
            std::slice::from_ref(&big.id),
            "{} spared",
            small.id
        );
    }

    /// Within its own group, a request may end its lower-priority holds.
    #[test]
    fn within_the_group_lower_priority_holds_give_way() {
        let rules = QuotaPreemption {
            reclaim_within_cohort: ReclaimWithinCohort::Never,
            within_group: WithinGroup::LowerPriority,
        };
        let (policy, ledger) = cohort(rules);
        let own = hold(&*ledger, &policy, "a", 10, 1);
        hold(&*ledger, &policy, "b", 10, 0);
        hold(&*ledger, &policy, "c", 10, 0);
        let active = ledger.snapshot().unwrap().active;
        assert_eq!(
            policy.reclaim(&asking("a", 5, 10), &active),
            std::slice::from_ref(&own.id)
        );
        assert!(
            policy.reclaim(&asking("a", 5, 1), &active).is_empty(),
            "equal priority"
        );
    }
}
