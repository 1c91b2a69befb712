//! Detection: contention ratios, waiting, starvation age and hot spots.

use std::sync::Arc;
use std::time::Duration;

use rm_contention::detect;
use rm_model::{PendingRequest, Quantity, ReservationLedger, ResourceType, Timestamp};

use crate::{cores, node, queue_on};

#[test]
fn demand_against_capacity_and_hot_spots() {
    let (ledger, _) = queue_on(vec![node("a", 10), node("b", 10)]);
    ledger.reserve(&cores("x", 10, 0)).unwrap(); // a is full
    ledger.reserve(&cores("y", 4, 0)).unwrap(); // b has 6 free
    let waiting: Vec<PendingRequest> = [(8, 30), (5, 10)]
        .into_iter()
        .enumerate()
        .map(|(i, (amount, seconds))| PendingRequest {
            request: Arc::new(cores(&format!("w{i}"), amount, 0)),
            enqueued_at: Timestamp::ZERO + Duration::from_secs(seconds),
            arrival: i as u64,
        })
        .collect();
    let now = Timestamp::ZERO + Duration::from_secs(100);
    let report = detect(&ledger.snapshot().unwrap(), &waiting, now);
    assert_eq!(report.queue_depth, 2);
    assert_eq!(report.oldest_wait, Duration::from_secs(90));
    let a = &report.resources[0];
    assert_eq!(
        (a.used, a.waiting_demand),
        (Quantity::from(10), Quantity::from(13))
    );
    assert!((a.contention_ratio - 2.3).abs() < 1e-9);
    let b = &report.resources[1];
    assert!((b.contention_ratio - 1.7).abs() < 1e-9);
    assert_eq!(
        report.hot_spots,
        vec![
            ("a".parse().unwrap(), ResourceType::Compute),
            ("b".parse().unwrap(), ResourceType::Compute)
        ]
    );
    let compute = &report.types[0];
    assert!((compute.utilization - 0.7).abs() < 1e-9);
    assert!(
        (compute.contention_ratio - 1.35).abs() < 1e-9,
        "{}",
        compute.contention_ratio
    );
    assert_eq!(
        (compute.waiting, compute.oldest_wait),
        (2, Duration::from_secs(90))
    );
    // Nothing waiting, nothing hot.
    let calm = detect(&ledger.snapshot().unwrap(), &[], now);
    assert!(calm.hot_spots.is_empty() && calm.queue_depth == 0 && calm.oldest_wait.is_zero());
}
