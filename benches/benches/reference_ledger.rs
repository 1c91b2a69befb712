//! The reference ledger (one global mutex, linear placement): the baseline that `rm-reserve`
//! must beat. A reserve → confirm → release cycle on one resource, and placement of a
//! co-located task over 1,500 three-dimensional nodes with a label constraint.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rm_model::{
    Constraint, DiscardEvents, RequesterId, ReservationLedger, ReservationRequest,
    ReservationStrategy, Resource, ResourceCapacity, ResourceRequirement, ResourceType,
    SystemClock, Unit,
};
use rm_testkit::ReferenceLedger;

fn ledger() -> ReferenceLedger {
    ReferenceLedger::new(
        Arc::new(SystemClock::new()),
        Arc::new(DiscardEvents),
        Duration::from_secs(30),
    )
}

fn cycle(c: &mut Criterion) {
    let ledger = ledger();
    let node = Resource::new(
        "n",
        ResourceType::Compute,
        ResourceCapacity::of(1_000_000, Unit::CORES).unwrap(),
    )
    .unwrap();
    ledger.register_resource(node).unwrap();
    let request = ReservationRequest::new(
        RequesterId::new("t").unwrap(),
        vec![ResourceRequirement::new(
            ResourceType::Compute,
            1,
            Unit::CORES,
        )],
    );
    c.bench_function("reference_ledger/reserve-confirm-release 1 resource", |b| {
        b.iter(|| {
            let hold = ledger.reserve(black_box(&request)).unwrap();
            ledger.confirm(&hold.id, None).unwrap();
            ledger.release(&hold.id, None).unwrap();
        });
    });
}

fn placement(c: &mut Criterion) {
    let mut group = c.benchmark_group("reference_ledger/place on 1500 nodes");
    group.sample_size(20);
    for strategy in [ReservationStrategy::BinPack, ReservationStrategy::Balanced] {
        let ledger = ledger();
        for node in rm_benches::cluster(1_500).unwrap() {
            ledger.register_resource(node).unwrap();
        }
        let requirements = rm_benches::task_requirements(2, 8)
            .unwrap()
            .into_iter()
            .map(|r| r.with_constraint(Constraint::capability("arch").unwrap().eq("x86_64")))
            .collect();
        let request = ReservationRequest::new(RequesterId::new("t").unwrap(), requirements)
            .with_strategy(strategy);
        group.bench_function(strategy.as_str(), |b| {
            b.iter(|| {
                let hold = ledger.reserve(black_box(&request)).unwrap();
                ledger.cancel(&hold.id, None).unwrap();
            });
        });
    }
    group.finish();
}

criterion_group!(benches, cycle, placement);
criterion_main!(benches);
