//! Dominant Resource Fairness on the example of Ghodsi et al. (NSDI 2011).

use std::sync::Arc;

use rm_model::{AllocationPolicy, ReservationRequest, ResourceType, Timestamp, Unit};
use rm_policy::FairAllocationPolicy;

use crate::{NowStamp, cores, gib, host, pending, requester, setup};

#[test]
fn the_paper_example_gives_a_three_tasks_and_b_two() {
    let policy = Arc::new(FairAllocationPolicy::new("drf"));
    let (clock, ledger, allocator) = setup(policy.clone(), vec![host("cluster", 9, 18)]);
    policy.refresh_capacity(&*ledger).unwrap();
    // A's tasks need <1 CPU, 4 GB>, B's <3 CPU, 1 GB>; both always have tasks waiting.
    let waiting = [
        pending(
            ReservationRequest::new(requester("a"), vec![cores(1), gib(4)]),
            0,
            clock.now_stamp(),
        ),
        pending(
            ReservationRequest::new(requester("b"), vec![cores(3), gib(1)]),
            1,
            clock.now_stamp(),
        ),
    ];
    let mut granted = [0usize; 2];
    loop {
        // Progressive filling: one task at a time, to the lowest dominant share that fits.
        let order = policy.order(&waiting, clock.now_stamp());
        let next = order.into_iter().find(|&i| {
            allocator
                .allocate(&*policy, &waiting[i].request)
                .is_successful()
        });
        match next {
            Some(i) => granted[i] += 1,
            None => break,
        }
    }
    assert_eq!(granted, [3, 2]);
    let (a, b) = (
        policy.dominant_share(&requester("a"), clock.now_stamp()),
        policy.dominant_share(&requester("b"), clock.now_stamp()),
    );
    assert!(
        (a - 2.0 / 3.0).abs() < 1e-9 && (b - 2.0 / 3.0).abs() < 1e-9,
        "{a} {b}"
    );
}

#[test]
fn releases_lower_a_share_and_decay_forgets_the_past() {
    let policy = FairAllocationPolicy::new("drf")
        .with_half_life(std::time::Duration::from_secs(60))
        .unwrap();
    policy.set_capacity(ResourceType::Compute, 10.into(), &Unit::CORES);
    let (a, b) = (requester("a"), requester("b"));
    policy.record(
        &a,
        &ResourceType::Compute,
        5.into(),
        &Unit::CORES,
        Timestamp::ZERO,
    );
    policy.record(
        &b,
        &ResourceType::Compute,
        0.into(),
        &Unit::CORES,
        Timestamp::ZERO,
    );
    policy.set_demand(&a, 1);
    policy.set_demand(&b, 1);
    let minute = |m: u64| Timestamp::ZERO + std::time::Duration::from_secs(60 * m);
    // Holding half the capacity for a long time converges to a share of one half.
    let share = policy.dominant_share(&a, minute(30));
    assert!((share - 0.5).abs() < 0.01, "{share}");
    assert_eq!(policy.next(minute(30)), Some(b.clone()));
    // After a release, the decayed share halves every half-life.
    policy.record(
        &a,
        &ResourceType::Compute,
        (-5).into(),
        &Unit::CORES,
        minute(30),
    );
    let later = policy.dominant_share(&a, minute(31));
    assert!((later - 0.25).abs() < 0.01, "{later}");
    assert!(
        FairAllocationPolicy::new("x")
            .with_half_life(std::time::Duration::ZERO)
            .is_err()
    );
}

#[test]
fn decisions_among_many_tenants_pick_the_lowest_share() {
    let policy = FairAllocationPolicy::new("drf");
    for (resource_type, amount) in [(ResourceType::Compute, 1000), (ResourceType::Memory, 4000)] {
        policy.set_capacity(resource_type, amount.into(), &Unit::CORES);
    }
    let tenants: Vec<_> = (0..50).map(|i| requester(&format!("t{i}"))).collect();
    for (i, tenant) in tenants.iter().enumerate() {
        policy.record(
            tenant,
            &ResourceType::Compute,
            ((i as i32 * 7) % 13).into(),
            &Unit::CORES,
            Timestamp::ZERO,
        );
    }
    for tenant in &tenants {
        policy.set_demand(tenant, 1_000);
    }
    let share = |t| policy.dominant_share(t, Timestamp::ZERO);
    let lowest = tenants
        .iter()
        .min_by(|a, b| share(a).total_cmp(&share(b)))
        .unwrap();
    let next = policy.next(Timestamp::ZERO).unwrap();
    assert_eq!(share(&next), share(lowest));
    // Repeated grants keep dominant shares within one task of each other.
    let task = [(ResourceType::Compute, 1.into(), Unit::CORES)];
    for _ in 0..500 {
        policy.grant_next(&task, Timestamp::ZERO).unwrap();
    }
    let shares: Vec<f64> = tenants.iter().map(share).collect();
    let (min, max) = shares
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), s| (lo.min(*s), hi.max(*s)));
    assert!(max - min <= 1.0 / 1000.0 + 1e-12, "{min} {max}");
}

/// DRF serves only users with tasks waiting: an idle user, however low its share, is never
/// named next, and a user leaves the running once its tasks are all launched.
#[test]
fn only_users_with_demand_are_served_next() {
    let policy = FairAllocationPolicy::new("drf");
    policy.set_capacity(ResourceType::Compute, 9.into(), &Unit::CORES);
    policy.set_capacity(ResourceType::Memory, 18.into(), &Unit::GIB);
    let (idle, busy) = (requester("idle"), requester("busy"));
    policy.record(
        &busy,
        &ResourceType::Compute,
        3.into(),
        &Unit::CORES,
        Timestamp::ZERO,
    );
    policy.record(
        &idle,
        &ResourceType::Compute,
        0.into(),
        &Unit::CORES,
        Timestamp::ZERO,
    );
    assert_eq!(policy.next(Timestamp::ZERO), None, "nobody has demand");
    policy.set_demand(&busy, 2);
    assert_eq!(
        policy.next(Timestamp::ZERO),
        Some(busy.clone()),
        "the idle user is skipped"
    );
    let task = [(ResourceType::Compute, 1.into(), Unit::CORES)];
    assert_eq!(
        policy.grant_next(&task, Timestamp::ZERO),
        Some(busy.clone())
    );
    assert_eq!(
        policy.grant_next(&task, Timestamp::ZERO),
        Some(busy.clone())
    );
    assert_eq!(
        policy.grant_next(&task, Timestamp::ZERO),
        None,
        "its tasks are all launched"
    );
    // With decay, the same rule.
    let decayed = FairAllocationPolicy::new("drf")
        .with_half_life(std::time::Duration::from_secs(60))
        .unwrap();
    decayed.set_capacity(ResourceType::Compute, 9.into(), &Unit::CORES);
    decayed.record(
        &busy,
        &ResourceType::Compute,
        3.into(),
        &Unit::CORES,
        Timestamp::ZERO,
    );
    decayed.record(
        &idle,
        &ResourceType::Compute,
        0.into(),
        &Unit::CORES,
        Timestamp::ZERO,
    );
    decayed.set_demand(&busy, 1);
    assert_eq!(decayed.next(Timestamp::ZERO), Some(busy));
}
