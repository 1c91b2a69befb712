//! What the Prometheus recorder costs the reservation path (issue 7's target: the
//! one-resource reserve → confirm → release cycle at most 15% slower with the recorder than
//! without), every variant in one binary:
//!
//! - `ledger`: the bare `ReservationManager`, no event sink;
//! - `ledger+events`: the same, publishing its events to a sink that drops them (what
//!   building and publishing events costs);
//! - `ledger+collector`: the same, publishing to a `MetricsCollector` with no recorder (the
//!   `metrics` macros go to the no-op global recorder);
//! - `ledger+collector+prometheus`: publishing to a collector that records into the facade's
//!   Prometheus recorder;
//! - `facade`, `facade+prometheus`: the whole `ResourceManager` (policy admission, ledger,
//!   the event fan-out to the monitor, the wait queue's wake-ups and the policy), with
//!   `metrics.prometheus` off and on.
//!
//! Allocations per cycle are printed before the criterion run.
#![expect(clippy::print_stderr, reason = "the bench reports allocation counts")]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use rm_benches::{CountingAllocator, allocations, one_core};
use rm_facade::{Config, PrometheusExporter, ResourceManager};
use rm_model::{
    EventSink, ReservationLedger, ReservationRequest, Resource, ResourceCapacity, ResourceType,
    Unit,
};
use rm_monitor::{MetricsCollector, Retention};
use rm_reserve::ReservationManager;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn node() -> Resource {
    Resource::new(
        "n",
        ResourceType::Compute,
        ResourceCapacity::of(1_000_000, Unit::CORES).expect("valid"),
    )
    .expect("valid")
}

fn ledger(sink: Option<Arc<dyn EventSink>>) -> ReservationManager {
    let builder = ReservationManager::builder().retention(Duration::from_millis(1));
    let builder = match sink {
        Some(sink) => builder.event_sink(sink),
        None => builder,
    };
    let ledger = builder.build().expect("valid settings");
    ledger.register_resource(node()).expect("register");
    ledger
}

fn facade(prometheus: bool) -> ResourceManager {
    let mut config = Config::default();
    config.metrics.prometheus = prometheus;
    config.manager.retention_ms = 1;
    config.resources.push(node());
    ResourceManager::from_config(config).expect("valid configuration")
}

fn ledger_cycle(ledger: &ReservationManager, request: &ReservationRequest) {
    let hold = ledger.reserve(request).expect("reserve");
    ledger
        .confirm(&hold.id, Some(hold.fencing_token))
        .expect("confirm");
    ledger
        .release(&hold.id, Some(hold.fencing_token))
        .expect("release");
}

fn facade_cycle(manager: &ResourceManager, request: &ReservationRequest) {
    let hold = manager.try_reserve(request).expect("reserve");
    manager
        .confirm(&hold.id, Some(hold.fencing_token))
        .expect("confirm");
    manager
        .release(&hold.id, Some(hold.fencing_token))
        .expect("release");
}

fn allocations_per_cycle(mut cycle: impl FnMut()) -> f64 {
    for _ in 0..10_000 {
        cycle();
    }
    let before = allocations();
    const N: u64 = 10_000;
    for _ in 0..N {
        cycle();
    }
    (allocations() - before) as f64 / N as f64
}

fn recorder(c: &mut Criterion) {
    let request = one_core();
    let bare = ledger(None);
    let published = ledger(Some(Arc::new(rm_model::DiscardEvents)));
    let collected = ledger(Some(Arc::new(MetricsCollector::new(Retention::default()))));
    let exporter = PrometheusExporter::new();
    let exported = ledger(Some(Arc::new(MetricsCollector::with_recorder(
        Retention::default(),
        exporter.recorder(),
    ))));
    let quiet = facade(false);
    let loud = facade(true);

    let ledgers = [
        ("ledger", &bare),
        ("ledger+events", &published),
        ("ledger+collector", &collected),
        ("ledger+collector+prometheus", &exported),
    ];
    let facades = [("facade", &quiet), ("facade+prometheus", &loud)];
    for (name, ledger) in ledgers {
        let per = allocations_per_cycle(|| ledger_cycle(ledger, &request));
        eprintln!("{name}: {per:.1} allocations per cycle");
    }
    for (name, manager) in facades {
        let per = allocations_per_cycle(|| facade_cycle(manager, &request));
        eprintln!("{name}: {per:.1} allocations per cycle");
    }

    let mut group = c.benchmark_group("recorder cycle");
    for (name, ledger) in ledgers {
        group.bench_function(name, |b| {
            b.iter(|| ledger_cycle(ledger, black_box(&request)));
        });
    }
    for (name, manager) in facades {
        group.bench_function(name, |b| {
            b.iter(|| facade_cycle(manager, black_box(&request)));
        });
    }
    group.finish();
    // The recorder saw the cycles (a wrong wiring would leave it empty).
    assert!(exporter.render().contains("rm_grants_total"));
    assert!(loud.render().expect("render").contains("rm_grants_total"));
}

criterion_group!(benches, recorder);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
