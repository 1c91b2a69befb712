//! Weighted shares: four tenants weighted 1:2:3:4 competing in closed loops for one pool.

use std::collections::VecDeque;
use std::sync::Arc;

use rm_model::{
    AllocationPolicy, ReservationLedger, ReservationRequest, Resource, ResourceCapacity,
    ResourceRequirement, ResourceType, Unit,
};
use rm_policy::WeightedAllocationPolicy;

use crate::{NowStamp, pending, requester, setup};

#[test]
fn four_tenants_reach_their_weighted_shares() {
    let grants: usize = std::env::var("RM_WEIGHTED_GRANTS")
        .ok()
        .and_then(|g| g.parse().ok())
        .unwrap_or(100_000);
    let policy = Arc::new(WeightedAllocationPolicy::new("weighted"));
    let slots = ResourceType::custom("slots").unwrap();
    let seats = Unit::custom("slots").unwrap();
    let pool = Resource::new(
        "pool",
        slots.clone(),
        ResourceCapacity::of(100, seats.clone()).unwrap(),
    )
    .unwrap();
    let (clock, ledger, allocator) = setup(policy.clone(), vec![pool]);
    policy.fair().refresh_capacity(&*ledger).unwrap();
    let weights = [1u32, 2, 3, 4];
    let waiting: Vec<_> = weights
        .iter()
        .enumerate()
        .map(|(i, &weight)| {
            let tenant = requester(&format!("tenant-{weight}"));
            policy.set_weight(tenant.clone(), weight).unwrap();
            let one = ResourceRequirement::new(slots.clone(), 1, seats.clone());
            pending(
                ReservationRequest::new(tenant, vec![one]),
                i as u64,
                clock.now_stamp(),
            )
        })
        .collect();
    let mut held = VecDeque::new();
    let mut counts = [0usize; 4];
    for _ in 0..grants {
        // Closed loop: when the pool is full, the oldest hold finishes.
        if held.len() == 100 {
            let id = held.pop_front().unwrap();
            ledger.confirm(&id, None).unwrap();
            ledger.release(&id, None).unwrap();
        }
        let order = policy.order(&waiting, clock.now_stamp());
        let first = order[0];
        let result = allocator.allocate(&*policy, &waiting[first].request);
        let reservation = result.reservation().expect("a slot is free");
        held.push_back(reservation.id.clone());
        counts[first] += 1;
    }
    let total: usize = counts.iter().sum();
    for (i, &weight) in weights.iter().enumerate() {
        let share = counts[i] as f64 / total as f64;
        let expected = f64::from(weight) / 10.0;
        assert!(
            (share - expected).abs() <= 0.01 * expected,
            "tenant weighted {weight}: {share:.4} of grants, expected {expected} within 1%: {counts:?}"
        );
    }
}
