//! Backfill never delays the head: a property test on the decision, and the queue on a
//! manual clock.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use rm_contention::{
    Amounts, HeadOfLine, Running, WaitQueue, Wakeup, backfill_allows, shadow_time,
};
use rm_model::{ManualClock, ReservationLedger, ResourceType, Timestamp};
use rm_testkit::ReferenceLedger;

use crate::{cores, node};

fn amounts(n: i64) -> Amounts {
    let mut a = Amounts::new();
    a.insert(ResourceType::Compute, i128::from(n));
    a
}

fn at(seconds: u64) -> Timestamp {
    Timestamp::ZERO + Duration::from_secs(seconds)
}

/// When the head can start: the first moment enough is free, with the holds ending as
/// expected (the ground truth, independent of the decision function).
fn head_start(capacity: i64, running: &[(i64, u64)], head: i64) -> u64 {
    let mut moments: Vec<u64> = running.iter().map(|&(_, end)| end).collect();
    moments.push(0);
    moments.sort_unstable();
    moments
        .into_iter()
        .find(|&t| {
            let held: i64 = running
                .iter()
                .filter(|&&(_, end)| end > t)
                .map(|&(amount, _)| amount)
                .sum();
            capacity - held >= head
        })
        .unwrap_or(u64::MAX)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        rm_testkit::proptest_cases(512)
    ))]

    #[test]
    fn backfill_never_delays_the_head(
        capacity in 8i64..30,
        running in prop::collection::vec((1i64..8, 1u64..50), 1..6),
        head_extra in 0i64..20,
        candidates in prop::collection::vec((1i64..8, 0u64..60), 0..8),
    ) {
        let running: Vec<(i64, u64)> = {
            // Keep what runs within capacity.
            let mut total = 0;
            running.into_iter().filter(|&(amount, _)| { total += amount; total <= capacity }).collect()
        };
        let held: i64 = running.iter().map(|&(a, _)| a).sum();
        prop_assume!(held > 0, "something runs");
        // A blocked head: more than is free, at most the capacity.
        let head = capacity - held + 1 + head_extra % held;
        let before = head_start(capacity, &running, head);

        // Backfill greedily, in order, as the queue does.
        let mut all = running.clone();
        for (amount, estimate) in candidates {
            let free = capacity - all.iter().map(|&(a, _)| a).sum::<i64>();
            let known: Vec<Running> = all
                .iter()
                .map(|&(a, end)| Running { amounts: amounts(a), ends_at: Some(at(end)) })
                .collect();
            if backfill_allows(at(0), &amounts(head), &amounts(free), &known, &amounts(amount), Duration::from_secs(estimate)) {
                all.push((amount, estimate));
            }
        }
        let after = head_start(capacity, &all, head);
        prop_assert!(after <= before, "the head started at {after} instead of {before}");
    }
}

#[test]
fn unknown_ends_allow_no_backfill() {
    let running = [Running {
        amounts: amounts(3),
        ends_at: None,
    }];
    assert_eq!(shadow_time(at(0), &amounts(4), &amounts(2), &running), None);
    assert!(!backfill_allows(
        at(0),
        &amounts(4),
        &amounts(2),
        &running,
        &amounts(1),
        Duration::from_secs(1)
    ));
    // A head that fits now goes first.
    assert_eq!(
        shadow_time(at(5), &amounts(1), &amounts(2), &[]),
        Some(at(5))
    );
}

#[test]
fn the_queue_backfills_only_what_ends_before_the_head_can_start() {
    let clock = Arc::new(ManualClock::new());
    let wakeup = Wakeup::new();
    let ledger = Arc::new(ReferenceLedger::new(
        clock.clone(),
        Arc::new(wakeup.clone()),
        Duration::from_secs(3600),
    ));
    ledger.register_resource(node("n", 5)).unwrap();
    let queue = Arc::new(
        WaitQueue::new(ledger.clone(), clock.clone()).with_head_of_line(HeadOfLine::Backfill),
    );
    wakeup.connect(&queue);

    // Three cores run until t = 10 s; the head needs all five, so it can start at 10 s.
    let running = queue
        .enqueue_with_estimate(cores("running", 3, 0), Duration::from_secs(10))
        .wait_timeout(Duration::from_secs(1))
        .unwrap();
    let head = queue.enqueue(cores("head", 5, 0));
    let long = queue.enqueue_with_estimate(cores("long", 1, 0), Duration::from_secs(20));
    let short = queue.enqueue_with_estimate(cores("short", 1, 0), Duration::from_secs(5));
    let unknown = queue.enqueue(cores("unknown", 1, 0));
    assert!(head.try_take().is_none(), "the head is blocked");
    let granted = short
        .wait_timeout(Duration::from_secs(1))
        .expect("short ends before 10 s: backfilled");
    assert!(long.try_take().is_none(), "long would still run at 10 s");
    assert!(unknown.try_take().is_none(), "no estimate, no backfill");

    // When the running hold and the short one end, the head goes first.
    clock.advance(Duration::from_secs(10));
    for id in [&running.id, &granted.id] {
        ledger.cancel(id, None).unwrap();
    }
    assert!(head.wait_timeout(Duration::from_secs(1)).is_ok());
    assert!(ledger.audit().unwrap().is_clean());
}
