//! Deadlock detection: cycles of requesters waiting for each other's holds.

use rm_contention::WaitForGraph;
use rm_model::{RequesterId, ReservationLedger};

use crate::{cores, node, queue_on};

fn id(name: &str) -> RequesterId {
    RequesterId::new(name).unwrap()
}

#[test]
fn a_constructed_cycle_is_reported_with_its_members() {
    let mut graph = WaitForGraph::new();
    for (waiter, holder) in [
        ("a", "b"),
        ("b", "c"),
        ("c", "a"),
        ("d", "a"),
        ("e", "e"),
        ("f", "g"),
    ] {
        graph.add_wait(id(waiter), id(holder));
    }
    assert_eq!(
        graph.deadlocks(),
        vec![vec![id("a"), id("b"), id("c")], vec![id("e")]]
    );
    assert!(WaitForGraph::new().deadlocks().is_empty());
}

#[test]
fn holders_waiting_for_each_other_deadlock() {
    let (ledger, _) = queue_on(vec![node("x", 1), node("y", 1)]);
    // First fit: p holds x, q holds y; each now waits for one more core (all are held).
    ledger.reserve(&cores("p", 1, 0)).unwrap();
    ledger.reserve(&cores("q", 1, 0)).unwrap();
    let snapshot = ledger.snapshot().unwrap();
    let waiting = [cores("p", 1, 0), cores("q", 1, 0)];
    let graph = WaitForGraph::build(&snapshot.resources, &snapshot.active, &waiting);
    assert_eq!(graph.deadlocks(), vec![vec![id("p"), id("q")]]);
}
