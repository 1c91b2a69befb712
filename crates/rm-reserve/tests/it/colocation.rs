//! Co-location by a shared label: a pod's CPU on its node, each GPU on one of that node's
//! devices, all in one grant; on the manager and on the reference ledger.

use std::sync::Arc;
use std::time::Duration;

use rm_model::{
    DiscardEvents, LabelKey, LedgerError, ManualClock, Quantity, RequesterId, Reservation,
    ReservationLedger, ReservationRequest, ReservationStrategy, Resource, ResourceCapacity,
    ResourceRequirement, ResourceType, Unit,
};
use rm_testkit::ReferenceLedger;

use crate::manager;

/// Nodes `a` and `b` with 8 cores each and two GPU devices each, all labelled `node`.
fn cluster(ledger: &dyn ReservationLedger) {
    for node in ["a", "b"] {
        let host = Resource::new(
            node,
            ResourceType::Compute,
            ResourceCapacity::of(8, Unit::CORES).unwrap(),
        )
        .unwrap()
        .with_label("node", node)
        .unwrap();
        ledger.register_resource(host).unwrap();
        for device in 0..2 {
            let gpu = Resource::new(
                &format!("{node}-gpu-{device}"),
                ResourceType::Gpu,
                ResourceCapacity::of(1, Unit::DEVICES).unwrap(),
            )
            .unwrap()
            .with_label("node", node)
            .unwrap();
            ledger.register_resource(gpu).unwrap();
        }
    }
}

/// A pod of `cores` cores and one GPU requirement per entry of `gpus` (in devices).
fn pod(cores: i32, gpus: &[Quantity], strategy: ReservationStrategy) -> ReservationRequest {
    let mut requirements = vec![ResourceRequirement::new(
        ResourceType::Compute,
        cores,
        Unit::CORES,
    )];
    for gpu in gpus {
        requirements.push(ResourceRequirement::new(
            ResourceType::Gpu,
            *gpu,
            Unit::DEVICES,
        ));
    }
    ReservationRequest::new(RequesterId::new("pod").unwrap(), requirements)
        .with_strategy(strategy)
        .with_colocation_label(LabelKey::new("node").unwrap())
}

fn nodes(reservation: &Reservation) -> Vec<&str> {
    reservation
        .items
        .iter()
        .map(|item| &item.resource.as_str()[..1])
        .collect()
}

fn ledgers() -> Vec<(&'static str, Box<dyn ReservationLedger>)> {
    let clock = Arc::new(ManualClock::new());
    vec![
        ("manager", Box::new(manager(&clock))),
        (
            "reference",
            Box::new(ReferenceLedger::new(
                clock,
                Arc::new(DiscardEvents),
                Duration::from_secs(10),
            )),
        ),
    ]
}

const HALF: Quantity = Quantity::from_milli(500);
const ONE: Quantity = Quantity::from_units(1);

#[test]
fn every_part_of_a_pod_lands_on_one_node() {
    for (name, ledger) in ledgers() {
        cluster(&*ledger);
        // Node a's cores are taken: the next pod goes wholly to b, although a's GPUs are free.
        ledger
            .reserve(&pod(8, &[], ReservationStrategy::Greedy))
            .unwrap();
        let granted = ledger
            .reserve(&pod(2, &[ONE, HALF], ReservationStrategy::Greedy))
            .unwrap();
        assert_eq!(nodes(&granted), ["b", "b", "b"], "{name}");
        // Two GPU requirements on one node use two devices.
        let devices: Vec<&str> = granted.items[1..]
            .iter()
            .map(|i| i.resource.as_str())
            .collect();
        assert_ne!(devices[0], devices[1], "{name}");
        assert!(ledger.audit().unwrap().is_clean(), "{name}");
    }
}

#[test]
fn no_node_with_room_for_everything_is_a_shortfall_naming_the_label() {
    for (name, ledger) in ledgers() {
        cluster(&*ledger);
        ledger
            .reserve(&pod(8, &[], ReservationStrategy::Greedy))
            .unwrap();
        ledger
            .reserve(&pod(1, &[ONE, ONE], ReservationStrategy::Greedy))
            .unwrap();
        let before = ledger.snapshot().unwrap();
        // Cores are left only on b, GPUs only on a: enough in total, never on one node.
        let err = ledger
            .reserve(&pod(1, &[HALF], ReservationStrategy::Greedy))
            .unwrap_err();
        assert!(
            matches!(err, LedgerError::InsufficientCapacity { .. }),
            "{name}: {err}"
        );
        if name == "manager" {
            assert!(err.to_string().contains("label node"), "{err}");
        }
        let mut after = ledger.snapshot().unwrap();
        after.taken_at = before.taken_at;
        assert_eq!(before, after, "{name}");
    }
}

#[test]
fn bin_pack_fills_a_shared_device_before_a_fresh_one() {
    let clock = Arc::new(ManualClock::new());
    let ledger = manager(&clock);
    cluster(&ledger);
    let first = ledger
        .reserve(&pod(1, &[HALF], ReservationStrategy::BinPack))
        .unwrap();
    let second = ledger
        .reserve(&pod(1, &[HALF], ReservationStrategy::BinPack))
        .unwrap();
    assert_eq!(
        first.items[1].resource, second.items[1].resource,
        "the same half-used device"
    );
    // Balanced spreads instead.
    let third = ledger
        .reserve(&pod(1, &[HALF], ReservationStrategy::Balanced))
        .unwrap();
    assert_ne!(third.items[1].resource, first.items[1].resource);
}

/// Random fit through the ledger: the same placement seed draws the same nodes, another
/// seed others; every grant keeps its pod on one node.
#[test]
fn random_fit_is_repeatable_by_its_seed() {
    let draws = |seed: u64| -> Vec<String> {
        let ledger = rm_reserve::ReservationManager::builder()
            .clock(Arc::new(ManualClock::new()))
            .placement_seed(seed)
            .build()
            .unwrap();
        cluster(&ledger);
        (0..40)
            .map(|_| {
                let hold = ledger
                    .reserve(&pod(
                        1,
                        &[Quantity::from_milli(100)],
                        ReservationStrategy::RandomFit,
                    ))
                    .unwrap();
                let placed = nodes(&hold);
                assert!(placed.iter().all(|n| *n == placed[0]), "{placed:?}");
                ledger.cancel(&hold.id, None).unwrap();
                placed[0].to_owned()
            })
            .collect()
    };
    let first = draws(11);
    assert_eq!(first, draws(11));
    assert_ne!(first, draws(12));
    assert!(first.iter().any(|n| n == "a") && first.iter().any(|n| n == "b"));
}

/// The fragmentation strategy learns its workload from the pods it places: after half-GPU
/// pods, another half goes beside the first (the device left whole stays usable); and many
/// threads placing with it never overbook a device.
#[test]
fn fragmentation_learns_and_never_overbooks() {
    let clock = Arc::new(ManualClock::new());
    let ledger = manager(&clock);
    cluster(&ledger);
    let half = pod(
        1,
        &[Quantity::from_milli(500)],
        ReservationStrategy::Fragmentation,
    );
    let first = ledger.reserve(&half).unwrap();
    let second = ledger.reserve(&half).unwrap();
    assert_eq!(
        first.items[1].resource, second.items[1].resource,
        "the same device"
    );
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for share in [300, 700, 250, 1000, 150] {
                    let request = pod(
                        1,
                        &[Quantity::from_milli(share)],
                        ReservationStrategy::Fragmentation,
                    );
                    match ledger.reserve(&request) {
                        Ok(_) | Err(LedgerError::InsufficientCapacity { .. }) => {}
                        Err(other) => panic!("{other}"),
                    }
                }
            });
        }
    });
    let audit = ledger.audit().unwrap();
    assert!(audit.is_clean(), "{:?}", audit.violations);
    for usage in ledger.snapshot().unwrap().usage {
        let held =
            usage.external.as_milli() + usage.pending.as_milli() + usage.confirmed.as_milli();
        assert!(held <= usage.capacity.as_milli(), "{usage:?}");
    }
}
