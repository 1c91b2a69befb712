//! Metrics reach the recorder a collector was given, and only it; series stay bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use rm_model::{
    Event, EventKind, EventSink, ManualClock, RequesterId, ReservationLedger, ReservationRequest,
    Resource, ResourceCapacity, ResourceRequirement, ResourceType, Timestamp,
};
use rm_monitor::{MetricsCollector, Retention, names};
use rm_testkit::ReferenceLedger;

/// Counters and gauges by `name{label=value,...}`, and the names given help text.
#[derive(Default)]
struct Captured {
    series: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    described: Mutex<BTreeSet<String>>,
}

impl Captured {
    fn series(&self, key: &Key) -> Arc<AtomicU64> {
        let labels: Vec<String> = key
            .labels()
            .map(|label| format!("{}={}", label.key(), label.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        self.series.lock().unwrap().entry(name).or_default().clone()
    }

    fn value(&self, name: &str) -> Option<u64> {
        self.series
            .lock()
            .unwrap()
            .get(name)
            .map(|value| value.load(Ordering::SeqCst))
    }

    fn count(&self) -> usize {
        self.series.lock().unwrap().len()
    }
}

struct Shared(Arc<Captured>);

impl Recorder for Shared {
    fn describe_counter(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        self.0
            .described
            .lock()
            .unwrap()
            .insert(key.as_str().to_owned());
    }
    fn describe_gauge(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        self.0
            .described
            .lock()
            .unwrap()
            .insert(key.as_str().to_owned());
    }
    fn describe_histogram(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        self.0
            .described
            .lock()
            .unwrap()
            .insert(key.as_str().to_owned());
    }
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.0.series(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.0.series(key))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

fn collector() -> (MetricsCollector, Arc<Captured>) {
    let captured = Arc::new(Captured::default());
    let collector =
        MetricsCollector::with_recorder(Retention::default(), Arc::new(Shared(captured.clone())));
    (collector, captured)
}

#[test]
fn each_collector_emits_to_its_own_recorder_with_help_text() {
    let (first, first_seen) = collector();
    let (_second, second_seen) = collector();
    let ledger = ReferenceLedger::new(
        Arc::new(ManualClock::new()),
        Arc::new(first.clone()),
        Duration::from_secs(30),
    );
    ledger
        .register_resource(
            Resource::new(
                "n1",
                ResourceType::Compute,
                ResourceCapacity::of(4, rm_model::Unit::CORES).unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
    let request = ReservationRequest::new(
        RequesterId::new("a").unwrap(),
        vec![ResourceRequirement::new(
            ResourceType::Compute,
            1,
            rm_model::Unit::CORES,
        )],
    );
    let held = ledger.reserve(&request).unwrap();
    ledger.confirm(&held.id, None).unwrap();
    ledger.release(&held.id, None).unwrap();
    assert_eq!(first_seen.value("rm_grants_total{type=compute}"), Some(1));
    assert_eq!(
        first_seen.value("rm_reservations_ended_total{outcome=released}"),
        Some(1)
    );
    assert_eq!(second_seen.value("rm_grants_total{type=compute}"), None);
    assert_eq!(
        second_seen.value("rm_reservations_ended_total{outcome=released}"),
        Some(0)
    );
    let described = first_seen.described.lock().unwrap().clone();
    for name in [
        names::GRANTS_TOTAL,
        names::REFUSALS_TOTAL,
        names::ENDED_TOTAL,
        names::WAIT_SECONDS,
        names::UTILIZATION_RATIO,
    ] {
        assert!(described.contains(name), "{name} has no help text");
    }
}

#[test]
fn ten_thousand_requesters_add_no_series() {
    let (collector, seen) = collector();
    let publish = |requester: &str, depth: usize| {
        let requester = RequesterId::new(requester).unwrap();
        for kind in [
            EventKind::Refused {
                requester: requester.clone(),
                reason: "insufficient-capacity".into(),
            },
            EventKind::Queued {
                requester: requester.clone(),
                depth,
            },
            EventKind::Dequeued {
                requester,
                waited: Duration::from_millis(5),
                granted: true,
            },
        ] {
            collector.publish(&Event {
                sequence: 0,
                at: Timestamp::ZERO,
                kind,
            });
        }
    };
    publish("warm-up", 1);
    let before = seen.count();
    for index in 0..10_000 {
        publish(&format!("task-{index}"), 1);
    }
    assert_eq!(seen.count(), before);
    assert_eq!(
        seen.value("rm_refusals_total{reason=insufficient-capacity}"),
        Some(10_001)
    );
}
