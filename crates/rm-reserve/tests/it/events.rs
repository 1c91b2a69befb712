//! Event order as subscribers see it: every event published after a subscription, numbered
//! consecutively, in sequence order, however many threads publish at once.

use std::sync::Arc;
use std::thread;

use rm_model::{
    DiscardEvents, Event, ManualClock, ReservationLedger, ResourceRequirement, ResourceType, Unit,
};
use rm_reserve::ReservationManager;

use crate::host;

/// Eight threads reserve, confirm and release while two subscribers (one from the start, one
/// joining half-way) read: each sees consecutive sequence numbers, in order, to the end.
fn run(manager: Arc<ReservationManager>) {
    let rounds = rm_testkit::stress_rounds(1_000);
    for i in 0..4 {
        manager
            .register_resource(host(&format!("n{i}"), 64, 64))
            .unwrap();
    }
    let early = manager.subscribe();
    let workers: Vec<_> = (0..8)
        .map(|t| {
            let manager = manager.clone();
            thread::spawn(move || {
                let request = rm_testkit::cores(&format!("w{t}"), 1);
                for _ in 0..rounds {
                    let r = manager.reserve(&request).expect("fits");
                    manager.confirm(&r.id, None).expect("confirm");
                    manager.release(&r.id, None).expect("release");
                }
            })
        })
        .collect();
    while manager.remembered() < 100 {
        thread::yield_now();
    }
    let late = manager.subscribe();
    for worker in workers {
        worker.join().expect("no worker panicked");
    }
    // One more event after the workers, so that the late subscriber sees at least one.
    manager
        .reserve(&rm_model::ReservationRequest::new(
            rm_model::RequesterId::new("last").unwrap(),
            vec![ResourceRequirement::new(
                ResourceType::Compute,
                1,
                Unit::CORES,
            )],
        ))
        .unwrap();
    let early: Vec<Event> = early.try_iter().collect();
    let late: Vec<Event> = late.try_iter().collect();
    assert_eq!(
        early.len(),
        3 * 8 * rounds + 1,
        "every event from the start"
    );
    for (name, events) in [("early", &early), ("late", &late)] {
        let out_of_order = events
            .windows(2)
            .filter(|w| w[1].sequence != w[0].sequence + 1)
            .count();
        assert_eq!(
            out_of_order,
            0,
            "{name}: {out_of_order} of {} events out of sequence order",
            events.len()
        );
    }
    assert_eq!(
        late.last().map(|e| e.sequence),
        early.last().map(|e| e.sequence)
    );
}

#[test]
fn subscribers_receive_events_in_sequence_order_under_eight_threads() {
    let clock = Arc::new(ManualClock::new());
    run(Arc::new(crate::manager(&clock)));
}

#[test]
fn subscribers_beside_a_sink_receive_events_in_sequence_order() {
    let clock = Arc::new(ManualClock::new());
    let manager = ReservationManager::builder()
        .clock(clock)
        .event_sink(Arc::new(DiscardEvents))
        .build()
        .unwrap();
    run(Arc::new(manager));
}

/// A subscription is the crate's own type: it waits for events with or without a timeout,
/// iterates what is waiting, and ends once the ledger is gone and everything is read.
#[test]
fn a_subscription_waits_iterates_and_ends_with_the_ledger() {
    let manager = rm_reserve::ReservationManager::new();
    let mut events = manager.subscribe();
    assert!(events.is_empty());
    assert!(events.try_recv().is_none());
    assert!(
        events
            .recv_timeout(std::time::Duration::from_millis(10))
            .is_none()
    );
    manager
        .register_resource(
            rm_model::Resource::new(
                "a",
                rm_model::ResourceType::Compute,
                rm_model::ResourceCapacity::of(1, rm_model::Unit::CORES).expect("valid"),
            )
            .expect("valid"),
        )
        .expect("register");
    assert_eq!(events.len(), 1);
    let first = events
        .recv_timeout(std::time::Duration::from_secs(1))
        .expect("the registration");
    assert!(
        matches!(first.kind, rm_model::EventKind::ResourceRegistered { .. }),
        "{first:?}"
    );
    drop(manager);
    assert!(events.next().is_none(), "ends with the ledger");
}
