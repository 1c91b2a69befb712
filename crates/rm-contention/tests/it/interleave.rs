//! One interleaving of a release through the queue with the head's own try, forced with a
//! hooked ledger: the head tries (and finds no room) while the release frees the capacity, and
//! the releasing thread finds the head busy. The head must try again rather than sleep on
//! free capacity.

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

#[test]
fn a_head_busy_when_the_release_hands_on_tries_again() {
    let clock = Arc::new(SystemClock::new());
    let wakeup = Wakeup::new();
    let (asked_tx, asked_rx) = channel::<()>();
    let (go_tx, go_rx) = channel::<()>();
    // A release waits, before it frees anything, until the head's second try has asked the
    // ledger (and found no room); that try then waits for the test's go-ahead to answer.
    let release_gate: Mutex<Option<Receiver<()>>> = Mutex::new(Some(asked_rx));
    let try_gate: Mutex<Option<(Sender<()>, Receiver<()>)>> = Mutex::new(Some((asked_tx, go_rx)));
    let tries = Arc::new(AtomicUsize::new(0));
    let counted = tries.clone();
    let ledger = Arc::new(
        HookedLedger::new(ReferenceLedger::new(
            clock.clone(),
            Arc::new(wakeup.clone()),
            Duration::from_secs(3600),
        ))
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
        }),
    );
    ledger.register_resource(node("n", 1)).unwrap();
    let queue = Arc::new(WaitQueue::new(ledger.clone(), clock));
    wakeup.connect(&queue);
    let held = ledger.reserve(&cores("holder", 1, 0)).unwrap();
    ledger.confirm(&held.id, None).unwrap();

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
    // The release woke the head, which tried again (the second try, held after finding no
    // room) before the release freed the core; the release then found the head busy, handed
    // nothing on, and returned.
    releaser.join().unwrap().unwrap();
    go_tx.send(()).unwrap();
    let granted = head
        .join()
        .unwrap()
        .expect("the head tried again and got the core");
    assert_eq!(granted.requester.as_str(), "head");
    assert!(queue.is_empty());
}
