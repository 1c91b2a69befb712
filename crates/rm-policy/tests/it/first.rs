//! `first` names the request `order` puts first, for every built-in policy and for
//! compositions, on random queues (priorities, arrivals, ages and shares all vary, with ties).

use std::sync::Arc;
use std::time::Duration;

use rm_model::{AllocationPolicy, Priority, ReservationRequest, ResourceType, Timestamp, Unit};
use rm_policy::{
    Aging, ComposedPolicy, FairAllocationPolicy, PriorityAllocationPolicy, QuotaAllocationPolicy,
    WeightedAllocationPolicy,
};

use rm_testkit::Rng;

use crate::{cores, host, pending, requester, setup};

fn policies() -> Vec<Arc<dyn AllocationPolicy>> {
    let aging = || {
        Arc::new(
            PriorityAllocationPolicy::new("aging")
                .with_aging(Aging {
                    step: 1,
                    every: Duration::from_secs(10),
                    cap: 6,
                })
                .expect("valid aging"),
        )
    };
    let priority = Arc::new(PriorityAllocationPolicy::new("priority"));
    priority.set_requester_priority(requester("t1"), 3);
    let fair = Arc::new(FairAllocationPolicy::new("fair"));
    fair.set_capacity(ResourceType::Compute, 64.into(), &Unit::CORES);
    let weighted = Arc::new(WeightedAllocationPolicy::new("weighted"));
    weighted
        .set_weight(requester("t2"), 3)
        .expect("valid weight");
    vec![
        aging(),
        priority.clone(),
        fair.clone(),
        weighted.clone(),
        Arc::new(QuotaAllocationPolicy::new("quota")),
        Arc::new(ComposedPolicy::new("empty")),
        Arc::new(
            ComposedPolicy::new("fair-then-aging")
                .then(fair.clone())
                .then(aging()),
        ),
        Arc::new(
            ComposedPolicy::new("weighted-priority-aging")
                .then(weighted)
                .then(priority)
                .then(aging()),
        ),
    ]
}

#[test]
fn first_is_what_order_puts_first() {
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    for policy in policies() {
        // Some usage, so that fair shares differ between tenants.
        let (_, _, allocator) = setup(policy.clone(), vec![host("n", 64, 64)]);
        for tenant in ["t0", "t1", "t2"] {
            let held = rng.below(8) as i32;
            if held > 0 {
                let _ = allocator.allocate(
                    &*policy,
                    &ReservationRequest::new(requester(tenant), vec![cores(held)]),
                );
            }
        }
        assert_eq!(policy.first(&[], Timestamp::ZERO), None);
        for _ in 0..200 {
            let now = Timestamp::ZERO + Duration::from_secs(rng.below(120));
            let waiting: Vec<_> = (0..1 + rng.below(12))
                .map(|_| {
                    let tenant = format!("t{}", rng.below(3));
                    let request = ReservationRequest::new(requester(&tenant), vec![cores(1)])
                        .with_priority(Priority(rng.below(4) as i32));
                    let waited = Duration::from_secs(rng.below(60));
                    let enqueued = Timestamp::from_nanos(
                        now.as_nanos().saturating_sub(waited.as_nanos() as u64),
                    );
                    // Arrivals may repeat: ties are part of the contract too.
                    pending(request, rng.below(20), enqueued)
                })
                .collect();
            assert_eq!(
                policy.first(&waiting, now),
                policy.order(&waiting, now).first().copied(),
                "policy {}: {waiting:#?}",
                policy.name()
            );
        }
    }
}
