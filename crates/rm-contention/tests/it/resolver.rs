//! The resolver: wait, preempt, scale, fall back, and say what it did.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rm_contention::{Resolver, ResolverError};
use rm_model::{
    ContentionAction, ContentionResolver, ContentionStrategy, LedgerError, PreemptionPolicy,
    RefusalReason, ReservationLedger, ReservationState, ResolutionOutcome,
};
use rm_testkit::fakes::FakeScaleTarget;

use crate::{cores, node, queue_on};

fn cause() -> LedgerError {
    LedgerError::InsufficientCapacity {
        requester: "x".parse().unwrap(),
        shortfalls: Vec::new(),
    }
}

fn granted(outcome: &ResolutionOutcome) -> &rm_model::Reservation {
    match outcome {
        ResolutionOutcome::Granted(reservation) => reservation,
        other => panic!("expected a grant, got {other:?}"),
    }
}

#[test]
fn waiting_is_granted_when_capacity_frees_or_refused_after_the_timeout() {
    let (ledger, queue) = queue_on(vec![node("n", 1)]);
    let held = ledger.reserve(&cores("holder", 1, 0)).unwrap();
    let resolver = Resolver::new(queue.clone(), Duration::from_secs(5));
    let releaser = {
        let ledger = ledger.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            ledger.cancel(&held.id, None).unwrap();
        })
    };
    let resolution = resolver.resolve(&*ledger, &cores("waiter", 1, 0), &cause());
    releaser.join().unwrap();
    assert_eq!(resolution.strategy, ContentionStrategy::Wait);
    assert_eq!(granted(&resolution.outcome).requester.as_str(), "waiter");
    assert_eq!(resolution.explanation, "granted after waiting in order");

    let impatient = Resolver::new(queue.clone(), Duration::from_millis(30));
    let resolution = impatient.resolve(&*ledger, &cores("late", 1, 0), &cause());
    match &resolution.outcome {
        ResolutionOutcome::Refused(refusal) => {
            assert_eq!(refusal.reason, RefusalReason::InsufficientCapacity)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(
        resolution
            .explanation
            .starts_with("no capacity freed within"),
        "{}",
        resolution.explanation
    );
    assert!(queue.is_empty());
    // Other refusals are not contention.
    let invalid = LedgerError::InvalidInput {
        field: "x".into(),
        reason: "y".into(),
    };
    assert!(matches!(
        resolver
            .resolve(&*ledger, &cores("w", 1, 0), &invalid)
            .outcome,
        ResolutionOutcome::Refused(_)
    ));
}

#[test]
fn preemption_makes_room_for_a_higher_priority_request() {
    let (ledger, queue) = queue_on(vec![node("n", 1)]);
    let victim = ledger.reserve(&cores("batch", 1, 1)).unwrap();
    let resolver = Resolver::new(queue, Duration::from_secs(5))
        .for_requester("urgent".parse().unwrap(), ContentionStrategy::Preempt)
        .unwrap();
    let resolution = resolver.resolve(&*ledger, &cores("urgent", 1, 9), &cause());
    assert_eq!(resolution.strategy, ContentionStrategy::Preempt);
    assert_eq!(granted(&resolution.outcome).requester.as_str(), "urgent");
    assert_eq!(
        resolution.actions,
        vec![ContentionAction::Preempted {
            victim: victim.id.clone()
        }]
    );
    assert!(
        resolution
            .explanation
            .starts_with("preempted 1 hold(s) of priority <= 1 on n"),
        "{}",
        resolution.explanation
    );
    assert_eq!(
        ledger.get(&victim.id).unwrap().state,
        ReservationState::Preempted
    );
    assert!(ledger.audit().unwrap().is_clean());
}

#[test]
fn a_class_that_never_preempts_falls_back_to_waiting() {
    let (ledger, queue) = queue_on(vec![node("n", 1)]);
    ledger.reserve(&cores("batch", 1, 1)).unwrap();
    let mut labels = rm_model::Labels::new();
    labels.insert("contention", "urgent").unwrap();
    let resolver = Resolver::new(queue, Duration::from_millis(30))
        .for_class("urgent", ContentionStrategy::Preempt)
        .unwrap()
        .with_preemption(
            Duration::ZERO,
            Arc::new(NoNotices),
            Arc::new(|_| PreemptionPolicy::Never),
        );
    let request = cores("ui", 1, 9).with_labels(labels);
    assert_eq!(resolver.strategy_for(&request), ContentionStrategy::Preempt);
    let resolution = resolver.resolve(&*ledger, &request, &cause());
    assert!(matches!(resolution.outcome, ResolutionOutcome::Refused(_)));
    assert!(
        resolution
            .explanation
            .contains("never preempts; falling back to wait"),
        "{}",
        resolution.explanation
    );
}

struct NoNotices;

impl rm_contention::VictimNotifier for NoNotices {
    fn notify(
        &self,
        _: &rm_model::Reservation,
        _: &rm_model::ReservationId,
        _: rm_model::Timestamp,
    ) {
    }
}

#[test]
fn scaling_out_brings_capacity_in() {
    let (ledger, queue) = queue_on(vec![node("n0", 1)]);
    ledger.reserve(&cores("holder", 1, 0)).unwrap();
    let target = Arc::new(FakeScaleTarget::new("pool", 1, 1, 4));
    let resolver = Resolver::new(queue, Duration::from_millis(30))
        .with_scale_target(target.clone(), Duration::from_secs(5))
        .with_default(ContentionStrategy::Scale)
        .unwrap();
    // The provider: when the pool is asked to grow, a node joins the ledger.
    let provider = {
        let (ledger, target) = (ledger.clone(), target.clone());
        thread::spawn(move || {
            for _ in 0..500 {
                if let Some(&size) = target.requests().last() {
                    ledger
                        .register_resource(node(&format!("n{}", size - 1), 1))
                        .unwrap();
                    return;
                }
                thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let resolution = resolver.resolve(&*ledger, &cores("job", 1, 0), &cause());
    provider.join().unwrap();
    assert_eq!(
        granted(&resolution.outcome).items[0].resource.as_str(),
        "n1"
    );
    assert_eq!(
        resolution.actions,
        vec![ContentionAction::ScaleRequested {
            target: "pool".into(),
            desired: 2
        }]
    );
}

#[test]
fn configuration_refuses_what_cannot_work() {
    let (_, queue) = queue_on(vec![node("n", 1)]);
    let resolver = || Resolver::new(queue.clone(), Duration::from_millis(10));
    assert!(matches!(
        resolver().with_default(ContentionStrategy::Scale),
        Err(ResolverError::Unsupported { .. })
    ));
    assert!(
        resolver()
            .with_fallback(ContentionStrategy::Preempt)
            .is_err()
    );
    assert!(
        resolver()
            .with_fallback(ContentionStrategy::Priority)
            .is_ok()
    );
}

struct Shrinks(std::sync::Mutex<Vec<(usize, rm_model::Quantity)>>);

impl rm_contention::ShrinkNotifier for Shrinks {
    fn notify_shrink(&self, _: &rm_model::Reservation, requirement: usize, to: rm_model::Quantity) {
        self.0.lock().unwrap().push((requirement, to));
    }
}

#[test]
fn redistribution_shrinks_elastic_holds_with_a_notice() {
    let (ledger, queue) = queue_on(vec![node("n", 8)]);
    let mut elastic = cores("elastic", 6, 0);
    elastic.requirements[0] = elastic.requirements[0].clone().elastic(2);
    let held = ledger.reserve(&elastic).unwrap();
    let notices = Arc::new(Shrinks(std::sync::Mutex::new(Vec::new())));
    let resolver = Resolver::new(queue.clone(), Duration::from_secs(5))
        .with_default(ContentionStrategy::Redistribute)
        .unwrap()
        .with_shrink_notifier(notices.clone());
    let resolution = resolver.resolve(&*ledger, &cores("job", 5, 0), &cause());
    assert_eq!(granted(&resolution.outcome).requester.as_str(), "job");
    assert_eq!(
        resolution.actions,
        vec![ContentionAction::Shrunk {
            reservation: held.id.clone()
        }]
    );
    assert_eq!(
        *notices.0.lock().unwrap(),
        vec![(0, 3.into())],
        "one notice, shrunk to what frees enough"
    );
    assert_eq!(ledger.get(&held.id).unwrap().items[0].amount, 3.into());
    assert!(
        resolution
            .explanation
            .starts_with("shrank 1 elastic hold(s) on n"),
        "{}",
        resolution.explanation
    );
    // Only 1 core of slack is left above the minimum: a request for 4 cannot be made room
    // for, so it falls back to waiting and times out.
    let impatient = Resolver::new(queue.clone(), Duration::from_millis(20))
        .with_default(ContentionStrategy::Redistribute)
        .unwrap();
    let resolution = impatient.resolve(&*ledger, &cores("big", 4, 0), &cause());
    assert!(matches!(resolution.outcome, ResolutionOutcome::Refused(_)));
    assert!(ledger.audit().unwrap().is_clean());
}

#[test]
fn the_preemptor_gets_the_freed_capacity_before_other_waiters() {
    let (ledger, queue) = queue_on(vec![node("n", 1)]);
    let victim = ledger.reserve(&cores("batch", 1, 1)).unwrap();
    // A waiter of priority 2 queued first: it cannot preempt and would take any freed core.
    let waiter = queue.enqueue(cores("waiter", 1, 2));
    assert!(waiter.try_take().is_none());
    let resolver = Resolver::new(queue.clone(), Duration::from_secs(5))
        .with_default(ContentionStrategy::Preempt)
        .unwrap();
    let resolution = resolver.resolve(&*ledger, &cores("urgent", 1, 9), &cause());
    assert_eq!(granted(&resolution.outcome).requester.as_str(), "urgent");
    assert_eq!(
        ledger.get(&victim.id).unwrap().state,
        ReservationState::Preempted
    );
    assert!(waiter.try_take().is_none(), "the waiter still waits");
    assert_eq!(queue.len(), 1);
}
