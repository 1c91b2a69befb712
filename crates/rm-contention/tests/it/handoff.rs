//! Hand-off: released capacity goes to the next waiter at once, in order, with no lost
//! wake-up; timeouts and cancellations leave the queue clean.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::Duration;

use rm_contention::WaitError;
use rm_model::{AllocationPolicy, ReservationLedger};
use rm_testkit::fakes::StaticPolicy;

use crate::{cores, node, queue_on, queue_ordered_by};

const LONG: Duration = Duration::from_secs(60);

#[test]
fn eight_threads_hand_off_one_core() {
    let rounds = rm_testkit::stress_rounds(300);
    let (ledger, queue) = queue_on(vec![node("n", 1)]);
    let holding = Arc::new(AtomicUsize::new(0));
    let grants = Arc::new(AtomicUsize::new(0));
    thread::scope(|scope| {
        for t in 0..8 {
            let (ledger, queue, holding, grants) = (
                ledger.clone(),
                queue.clone(),
                holding.clone(),
                grants.clone(),
            );
            scope.spawn(move || {
                for _ in 0..rounds {
                    // Threads 0-3 block; threads 4-7 await the ticket as a future.
                    let ticket = queue.enqueue(cores(&format!("w{t}"), 1, 0));
                    let granted = if t < 4 {
                        ticket.wait_timeout(LONG)
                    } else {
                        rm_testkit::block_on(ticket, Some(LONG))
                            .expect("a waiting future was never woken")
                    };
                    let hold = granted.expect("no wake-up is lost: every waiter is granted");
                    assert_eq!(
                        holding.fetch_add(1, Ordering::SeqCst),
                        0,
                        "two holders of one core"
                    );
                    grants.fetch_add(1, Ordering::Relaxed);
                    holding.fetch_sub(1, Ordering::SeqCst);
                    ledger.confirm(&hold.id, None).unwrap();
                    // Half the threads release through the queue (which grants the head on
                    // this thread while the head may be trying on its own), half straight on
                    // the ledger (whose event wakes the head).
                    if t % 2 == 0 {
                        queue.release(&hold.id, None).unwrap();
                    } else {
                        ledger.release(&hold.id, None).unwrap();
                    }
                }
            });
        }
    });
    assert_eq!(grants.load(Ordering::Relaxed), 8 * rounds);
    assert!(queue.is_empty());
    assert!(ledger.audit().unwrap().is_clean());
    assert_eq!(ledger.snapshot().unwrap().usage[0].free, 1.into());
}

#[test]
fn each_release_grants_exactly_one_waiter_in_priority_order() {
    let (ledger, queue) = queue_on(vec![node("n", 1)]);
    let first = queue
        .enqueue(cores("holder", 1, 0))
        .wait_timeout(LONG)
        .unwrap();
    let low = queue.enqueue(cores("low", 1, 1));
    let high = queue.enqueue(cores("high", 1, 9));
    let mid = queue.enqueue(cores("mid", 1, 5));
    assert!(low.try_take().is_none() && high.try_take().is_none() && mid.try_take().is_none());
    assert_eq!(queue.len(), 3);
    ledger.confirm(&first.id, None).unwrap();
    ledger.release(&first.id, None).unwrap();
    let granted = high.wait_timeout(LONG).unwrap();
    assert_eq!(granted.requester.as_str(), "high");
    assert_eq!(queue.len(), 2, "one release, one grant");
    assert!(low.try_take().is_none(), "the head is mid, not low");
    ledger.cancel(&granted.id, None).unwrap();
    assert_eq!(mid.wait_timeout(LONG).unwrap().requester.as_str(), "mid");
    assert_eq!(queue.len(), 1);
    drop(low);
    assert!(queue.is_empty());
}

/// Releasing through the queue grants the head on the releasing thread (its grant is in the
/// ledger before its ticket is asked), one waiter per release, in priority then arrival
/// order, whether the queue ranks by priority itself or asks a policy; a waiter that leaves
/// is never granted.
#[test]
fn a_release_through_the_queue_grants_the_head_on_the_releasing_thread() {
    let orders: [Option<Arc<dyn AllocationPolicy>>; 2] =
        [None, Some(Arc::new(StaticPolicy::admit_all()))];
    for order in orders {
        let policy = order.is_some();
        let (ledger, queue) = queue_ordered_by(vec![node("n", 1)], order);
        let mut held = queue
            .enqueue(cores("holder", 1, 0))
            .wait_timeout(LONG)
            .unwrap();
        let low = queue.enqueue(cores("low", 1, 1));
        let high = queue.enqueue(cores("high", 1, 9));
        let gone = queue.enqueue(cores("gone", 1, 7));
        let mid = queue.enqueue(cores("mid", 1, 5));
        let later_high = queue.enqueue(cores("later-high", 1, 9));
        assert_eq!(queue.len(), 5);
        drop(gone);
        let mut served = Vec::new();
        for ticket in [high, later_high, mid, low] {
            ledger.confirm(&held.id, None).unwrap();
            queue.release(&held.id, None).unwrap();
            let active = ledger.snapshot().unwrap().active;
            assert_eq!(active.len(), 1, "policy {policy}: {active:?}");
            held = ticket.try_take().expect("answered").expect("granted");
            assert_eq!(held.id, active[0].id, "policy {policy}");
            served.push(held.requester.as_str().to_owned());
        }
        assert_eq!(
            served,
            ["high", "later-high", "mid", "low"],
            "policy {policy}"
        );
        assert!(queue.is_empty());
        queue.cancel(&held.id, None).unwrap();
        assert!(ledger.snapshot().unwrap().active.is_empty());
    }
}

#[test]
fn the_head_is_not_passed_by_smaller_requests() {
    let (ledger, queue) = queue_on(vec![node("n", 2)]);
    let held = queue.enqueue(cores("a", 1, 0)).wait_timeout(LONG).unwrap();
    let big = queue.enqueue(cores("big", 2, 0));
    let small = queue.enqueue(cores("small", 1, 0));
    assert!(big.try_take().is_none());
    assert!(
        small.try_take().is_none(),
        "a core is free, but the head waits for two"
    );
    ledger.cancel(&held.id, None).unwrap();
    assert!(big.wait_timeout(LONG).is_ok());
    assert!(small.try_take().is_none());
}

#[test]
fn timeouts_and_cancellations_leave_no_entry() {
    let (ledger, queue) = queue_on(vec![node("n", 1)]);
    let held = queue
        .enqueue(cores("holder", 1, 0))
        .wait_timeout(LONG)
        .unwrap();
    thread::scope(|scope| {
        for t in 0..4 {
            let queue = queue.clone();
            scope.spawn(move || {
                let err = queue
                    .enqueue(cores(&format!("w{t}"), 1, 0))
                    .wait_timeout(Duration::from_millis(30))
                    .unwrap_err();
                assert!(matches!(err, WaitError::TimedOut { .. }), "{err}");
            });
        }
    });
    assert!(queue.is_empty());
    let cancelled = queue.enqueue(cores("c", 1, 0));
    cancelled.cancel();
    assert!(queue.is_empty());
    ledger.cancel(&held.id, None).unwrap();
    assert_eq!(
        ledger.snapshot().unwrap().usage[0].free,
        1.into(),
        "no grant leaked"
    );
    let invalid = queue
        .enqueue(cores("bad", 0, 0))
        .wait_timeout(LONG)
        .unwrap_err();
    assert!(matches!(invalid, WaitError::Refused(_)), "{invalid}");
    assert!(queue.is_empty());
}

/// A waker that counts its wakes.
struct Count(Mutex<usize>);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        *self.0.lock().unwrap() += 1;
    }
}

/// A one-core node, its queue, the core's hold (pending), and a waker that counts its wakes.
fn held_core_and_counted_waker() -> (
    Arc<rm_testkit::ReferenceLedger>,
    Arc<rm_contention::WaitQueue>,
    rm_model::Reservation,
    Arc<Count>,
    Waker,
) {
    let (ledger, queue) = queue_on(vec![node("n", 1)]);
    let held = queue
        .enqueue(cores("holder", 1, 0))
        .wait_timeout(LONG)
        .unwrap();
    let count = Arc::new(Count(Mutex::new(0)));
    let waker = Waker::from(count.clone());
    (ledger, queue, held, count, waker)
}

#[test]
fn a_ticket_is_a_future_woken_by_the_release() {
    let (ledger, queue, held, count, waker) = held_core_and_counted_waker();
    let mut context = Context::from_waker(&waker);
    let mut ticket = pin!(queue.enqueue(cores("async", 1, 0)));
    assert!(ticket.as_mut().poll(&mut context).is_pending());
    assert_eq!(*count.0.lock().unwrap(), 0);
    ledger.confirm(&held.id, None).unwrap();
    ledger.release(&held.id, None).unwrap();
    assert_eq!(
        *count.0.lock().unwrap(),
        1,
        "the release woke the task once"
    );
    match ticket.as_mut().poll(&mut context) {
        Poll::Ready(Ok(reservation)) => assert_eq!(reservation.requester.as_str(), "async"),
        other => panic!("expected a grant, got {other:?}"),
    }
    assert!(queue.is_empty());
}

/// A waiter that was the head when it began to wait, displaced since by an arrival of higher
/// priority that has not waited yet: a release through the queue wakes nobody but the new
/// head.
#[test]
fn a_release_wakes_no_displaced_head() {
    let (ledger, queue, held, count, waker) = held_core_and_counted_waker();
    let mut context = Context::from_waker(&waker);
    let mut displaced = pin!(queue.enqueue(cores("low", 1, 1)));
    assert!(displaced.as_mut().poll(&mut context).is_pending());
    let high = queue.enqueue(cores("high", 1, 9));
    ledger.confirm(&held.id, None).unwrap();
    queue.release(&held.id, None).unwrap();
    assert_eq!(
        *count.0.lock().unwrap(),
        0,
        "the displaced head was not woken"
    );
    let granted = high.try_take().expect("answered").expect("granted");
    assert_eq!(granted.requester.as_str(), "high");
    assert!(displaced.as_mut().poll(&mut context).is_pending());
}

#[test]
fn expired_capacity_is_handed_to_a_blocking_waiter() {
    use rm_contention::WaitQueue;
    use rm_model::SystemClock;
    // A real clock and a ledger that only applies expiry when called: nobody calls it but the
    // waiting head, at the hold's expiry.
    let clock = Arc::new(SystemClock::new());
    let wakeup = rm_contention::Wakeup::new();
    let ledger = Arc::new(rm_testkit::ReferenceLedger::new(
        clock.clone(),
        Arc::new(wakeup.clone()),
        Duration::from_secs(60),
    ));
    ledger.register_resource(node("n", 1)).unwrap();
    let queue = Arc::new(WaitQueue::new(ledger.clone(), clock));
    wakeup.connect(&queue);
    let forgotten = ledger
        .reserve(&cores("never-confirmed", 1, 0).with_ttl(Duration::from_millis(50)))
        .unwrap();
    let start = std::time::Instant::now();
    let granted = queue
        .enqueue(cores("waiter", 1, 0))
        .wait_timeout(Duration::from_secs(5))
        .unwrap();
    assert_eq!(granted.requester.as_str(), "waiter");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "woke at the expiry, not the timeout"
    );
    assert_eq!(
        ledger.get(&forgotten.id).unwrap().state,
        rm_model::ReservationState::Expired
    );
}
