//! Interleavings of a release through the queue with the head's own try, forced with a
//! hooked ledger: the head tries (and finds no room) while the release frees the capacity, and
//! the releasing thread finds the head busy. The head must try again rather than sleep on
//! free capacity. Also: a release through the queue wakes the head before it calls the
//! ledger, so the head's wake-up overlaps the release.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use rm_contention::{WaitQueue, Wakeup};
use rm_model::{ReservationLedger, SystemClock};
use rm_testkit::ReferenceLedger;
use rm_testkit::hooked::{HookedLedger, Operation};

use crate::{cores, node};

/// A one-shot gate: the first caller to take it gets its channel end.
fn take<T>(gate: &Mutex<Option<T>>) -> Option<T> {
    gate.lock().unwrap_or_else(PoisonError::into_inner).take()
}

type Gated = HookedLedger<ReferenceLedger>;

/// A one-core node behind `hook(HookedLedger)`, its queue woken by its events, and a
/// confirmed hold of the core.
fn held_core(
    hook: impl FnOnce(Gated) -> Gated,
) -> (Arc<Gated>, Arc<WaitQueue>, rm_model::Reservation) {
    let clock = Arc::new(SystemClock::new());
    let wakeup = Wakeup::new();
    let ledger = Arc::new(hook(HookedLedger::new(ReferenceLedger::new(
        clock.clone(),
        Arc::new(wakeup.clone()),
        Duration::from_secs(3600),
    ))));
    ledger.register_resource(node("n", 1)).unwrap();
    let queue = Arc::new(WaitQueue::new(ledger.clone(), clock));
    wakeup.connect(&queue);
    let held = ledger.reserve(&cores("holder", 1, 0)).unwrap();
    ledger.confirm(&held.id, None).unwrap();
    (ledger, queue, held)
}

#[test]
fn a_head_busy_when_the_release_hands_on_tries_again() {
    let (asked_tx, asked_rx) = channel::<()>();
    let (go_tx, go_rx) = channel::<()>();
    // A release waits, before it frees anything, until the head's second try has asked the
    // ledger (and found no room); that try then waits for the test's go-ahead to answer.
    let release_gate: Mutex<Option<Receiver<()>>> = Mutex::new(Some(asked_rx));
    let try_gate: Mutex<Option<(Sender<()>, Receiver<()>)>> = Mutex::new(Some((asked_tx, go_rx)));
    let tries = Arc::new(AtomicUsize::new(0));
    let counted = tries.clone();
    let (_ledger, queue, held) = held_core(|ledger| {
        ledger
            .before(move |operation| {
                if operation == Operation::Release
                    && let Some(asked) = take(&release_gate)
                {
                    asked.recv().expect("the head tries");
                }
            })
            .after(move |operation| {
                if operation == Operation::TryReserve
                    && counted.fetch_add(1, Ordering::SeqCst) == 1
                    && let Some((asked, go)) = take(&try_gate)
                {
                    asked.send(()).expect("the release waits");
                    go.recv().expect("the test lets it go");
                }
            })
    });

    let head = {
        let ticket = queue.enqueue(cores("head", 1, 0));
        thread::spawn(move || ticket.wait_timeout(Duration::from_secs(5)))
    };
    // The head's first try has begun (it finds no room and sleeps, or is about to).
    while tries.load(Ordering::SeqCst) == 0 {
        thread::yield_now();
    }
    let releaser = {
        let queue = queue.clone();
        thread::spawn(move || queue.release(&held.id, None))
    };
    // Something else that may have freed capacity (a resize's event, a caller) asks the head
    // to try again: its second try, held after finding no room, lets the release free the
    // core; the release then finds the head busy, hands nothing on, and returns.
    queue.notify();
    releaser.join().unwrap().unwrap();
    go_tx.send(()).unwrap();
    let granted = head
        .join()
        .unwrap()
        .expect("the head tried again and got the core");
    assert_eq!(granted.requester.as_str(), "head");
    assert!(queue.is_empty());
}

/// The other side: the head, woken because capacity freed, finds itself claimed by a thread
/// handing capacity on whose try began before that capacity was freed. The head must be woken
/// to try again when that claim ends.
#[test]
fn a_head_woken_while_claimed_by_a_hand_off_tries_after_it() {
    let (asked_tx, asked_rx) = channel::<()>();
    let (go_tx, go_rx) = channel::<()>();
    // The first try (the hand-off's, for the head) reports that it found no room and waits.
    let try_gate: Mutex<Option<(Sender<()>, Receiver<()>)>> = Mutex::new(Some((asked_tx, go_rx)));
    let (ledger, queue, held) = held_core(|ledger| {
        ledger.after(move |operation| {
            if operation == Operation::TryReserve
                && let Some((asked, go)) = take(&try_gate)
            {
                asked.send(()).expect("the test waits");
                go.recv().expect("the test lets it go");
            }
        })
    });

    // `first` is the head but never waits; `head` waits behind it.
    let first = queue.enqueue(cores("first", 1, 0));
    let head = {
        let ticket = queue.enqueue(cores("head", 1, 0));
        thread::spawn(move || ticket.wait_timeout(Duration::from_secs(5)))
    };
    // `first` leaves: its thread hands on to `head`, claims it, and its try (no room yet)
    // is held in the gate.
    let leaving = thread::spawn(move || drop(first));
    asked_rx.recv().unwrap();
    // The core frees straight on the ledger: its event wakes `head`, which finds itself
    // claimed and goes back to sleep.
    ledger.release(&held.id, None).unwrap();
    thread::sleep(Duration::from_millis(100));
    go_tx.send(()).unwrap();
    leaving.join().unwrap();
    let granted = head
        .join()
        .unwrap()
        .expect("the end of the claim woke the head to try again");
    assert_eq!(granted.requester.as_str(), "head");
    assert!(queue.is_empty());
}

/// Counts the wakes of a task.
struct CountingWaker(AtomicUsize);

impl std::task::Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls `ticket` once with `waker`.
fn poll_once(
    ticket: &mut rm_contention::Ticket,
    waker: &std::task::Waker,
) -> std::task::Poll<Result<rm_model::Reservation, rm_contention::WaitError>> {
    use std::future::Future;
    std::pin::Pin::new(ticket).poll(&mut std::task::Context::from_waker(waker))
}

#[test]
fn a_release_through_the_queue_wakes_the_head_before_it_calls_the_ledger() {
    let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
    let seen = counter.clone();
    let woken_at_release = Arc::new(Mutex::new(None));
    let recorded = woken_at_release.clone();
    let (_ledger, queue, held) = held_core(|ledger| {
        ledger.before(move |operation| {
            if operation == Operation::Release {
                *recorded.lock().unwrap() = Some(seen.0.load(Ordering::SeqCst));
            }
        })
    });
    let waker = std::task::Waker::from(counter.clone());
    let mut ticket = queue.enqueue(cores("head", 1, 0));
    assert!(
        poll_once(&mut ticket, &waker).is_pending(),
        "the core is held"
    );
    let behind_counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
    let behind_waker = std::task::Waker::from(behind_counter.clone());
    let mut behind = queue.enqueue(cores("behind", 1, 0));
    assert!(poll_once(&mut behind, &behind_waker).is_pending());

    queue.release(&held.id, None).unwrap();
    assert_eq!(
        *woken_at_release.lock().unwrap(),
        Some(1),
        "the head was woken once before the ledger released the core"
    );
    assert_eq!(
        behind_counter.0.load(Ordering::SeqCst),
        0,
        "one release wakes one waiter: the head, not the one behind it"
    );
    let std::task::Poll::Ready(granted) = poll_once(&mut ticket, &waker) else {
        panic!("the release handed the core to the head");
    };
    assert_eq!(granted.unwrap().requester.as_str(), "head");
}

#[test]
fn a_ticket_that_leaves_keeps_no_waker_of_its_task() {
    let (_ledger, queue, _held) = held_core(|ledger| ledger);
    let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
    let waker = std::task::Waker::from(counter.clone());
    let mut ticket = queue.enqueue(cores("head", 1, 0));
    assert!(
        poll_once(&mut ticket, &waker).is_pending(),
        "the core is held"
    );
    drop(waker);
    assert!(
        Arc::strong_count(&counter) > 1,
        "the waiting ticket keeps its waker"
    );
    drop(ticket);
    assert_eq!(
        Arc::strong_count(&counter),
        1,
        "nothing in the queue keeps the task's waker after its ticket left"
    );
    assert!(queue.is_empty());
}
