//! The monitor fed by a real ledger's events and snapshots, and by queue and scaling events:
//! counts, exact utilisation, bounded history, alerts and the dashboard's data.

use std::sync::Arc;
use std::time::Duration;

use rm_model::{
    Clock, Event, EventKind, EventSink, ManualClock, RequesterId, ReservationLedger,
    ReservationRequest, Resource, ResourceCapacity, ResourceRequirement, ResourceType, Timestamp,
    Unit,
};
use rm_monitor::{
    AlertKind, EndedCounts, MetricsCollector, ResourceDashboard, ResourceMetricsCollector,
    Retention,
};
use rm_testkit::{ReferenceLedger, cores};

mod recorder;

struct Setup {
    clock: Arc<ManualClock>,
    ledger: Arc<ReferenceLedger>,
    metrics: MetricsCollector,
    resources: ResourceMetricsCollector,
}

fn setup(retention: Retention) -> Setup {
    let metrics = MetricsCollector::new(retention);
    let clock = Arc::new(ManualClock::new());
    let ledger = Arc::new(ReferenceLedger::new(
        clock.clone(),
        Arc::new(metrics.clone()),
        Duration::from_secs(30),
    ));
    let resources = ResourceMetricsCollector::new(metrics.clone(), ledger.clone());
    Setup {
        clock,
        ledger,
        metrics,
        resources,
    }
}

fn node(name: &str, cores: i32, memory: i32, memory_unit: Unit) -> Resource {
    let compute = ResourceCapacity::of(cores, Unit::CORES).unwrap();
    Resource::new(name, ResourceType::Compute, compute)
        .unwrap()
        .with_capacity(
            ResourceType::Memory,
            ResourceCapacity::of(memory, memory_unit).unwrap(),
        )
}

fn publish(metrics: &MetricsCollector, at: Timestamp, kind: EventKind) {
    metrics.publish(&Event {
        sequence: 0,
        at,
        kind,
    });
}

#[test]
fn a_ledgers_events_are_counted_by_type_and_outcome() {
    let s = setup(Retention::default());
    s.ledger
        .register_resource(node("n1", 10, 16, Unit::GIB))
        .unwrap();
    let released = s.ledger.reserve(&cores("a", 2)).unwrap();
    s.ledger.confirm(&released.id, None).unwrap();
    s.ledger.release(&released.id, None).unwrap();
    s.ledger
        .reserve(&cores("b", 2).with_ttl(Duration::from_secs(1)))
        .unwrap();
    s.clock.advance(Duration::from_secs(2));
    assert_eq!(s.ledger.expire_due().unwrap().len(), 1);
    let victim = s.ledger.reserve(&cores("c", 8)).unwrap();
    s.ledger
        .reserve_preempting(&cores("d", 9), std::slice::from_ref(&victim.id))
        .unwrap();

    assert_eq!(s.metrics.grants(), 4);
    assert_eq!(s.metrics.confirmed(), 1);
    assert_eq!(
        s.metrics.ended(),
        EndedCounts {
            released: 1,
            expired: 1,
            preempted: 1,
            cancelled: 0
        }
    );
    assert_eq!(
        s.metrics.grants_by_type().get(&ResourceType::Compute),
        Some(&4)
    );
    assert_eq!(s.metrics.recent_expiries(s.clock.now()), 1);
}

#[test]
fn utilisation_is_exact_per_capacity_and_summed_across_units_per_type() {
    let s = setup(Retention::default());
    let first = node("n1", 10, 1, Unit::GIB);
    let second = node("n2", 10, 1024, Unit::MIB);
    s.ledger.register_resource(first.clone()).unwrap();
    s.ledger.register_resource(second.clone()).unwrap();
    s.resources.register_resource(&first);
    s.resources.register_resource(&second);
    let memory = |task: &str, amount: i32, unit: Unit| {
        ReservationRequest::new(
            RequesterId::new(task).unwrap(),
            vec![ResourceRequirement::new(ResourceType::Memory, amount, unit)],
        )
    };
    s.ledger.reserve(&memory("a", 1, Unit::GIB)).unwrap(); // fills one node's memory
    s.ledger.reserve(&cores("b", 3)).unwrap();
    let samples = s.resources.collect_utilization_metrics().unwrap();
    assert_eq!(samples.len(), 4);
    let data = ResourceDashboard::new(s.metrics.clone()).get_dashboard_data(s.clock.now());
    let ratio = |kind: ResourceType| {
        data.utilization_by_type
            .iter()
            .find(|row| row.resource_type == kind)
            .map(|row| row.ratio_ppm)
    };
    // 1 GiB of 1 GiB + 1024 MiB is exactly one half; 3 of 20 cores is 15%.
    assert_eq!(ratio(ResourceType::Memory), Some(500_000));
    assert_eq!(ratio(ResourceType::Compute), Some(150_000));
    assert_eq!(data.most_contended[0].ratio_ppm, 1_000_000);
    assert_eq!(data.most_contended[0].resource_type, ResourceType::Memory);
    // The data serialises as it is.
    let json = serde_json::to_value(&data).unwrap();
    assert_eq!(json["grants"], 2);
}

#[test]
fn history_stays_bounded_and_unregistered_resources_are_forgotten() {
    let s = setup(Retention {
        utilization: 8,
        ..Retention::default()
    });
    let first = node("n1", 10, 1, Unit::GIB);
    s.ledger.register_resource(first.clone()).unwrap();
    s.resources.register_resource(&first);
    for _ in 0..100 {
        s.clock.advance(Duration::from_secs(1));
        s.resources.collect_utilization_metrics().unwrap();
    }
    let history = s
        .metrics
        .utilization_history(first.name(), &ResourceType::Compute);
    assert_eq!(history.len(), 8);
    assert!(history.windows(2).all(|pair| pair[0].at < pair[1].at));
    s.resources.unregister_resource(first.name());
    assert!(
        s.metrics
            .utilization_history(first.name(), &ResourceType::Compute)
            .is_empty()
    );
    assert!(
        s.resources
            .collect_utilization_metrics()
            .unwrap()
            .is_empty()
    );
}

/// The history keeps each sample's instant and amounts only: what it gives back is what each
/// collection returned, field by field; a capacity measured in another unit starts anew.
#[test]
fn history_gives_back_the_samples_collected_and_restarts_with_a_new_unit() {
    let s = setup(Retention {
        utilization: 3,
        ..Retention::default()
    });
    let first = node("n1", 10, 1, Unit::GIB);
    s.ledger.register_resource(first.clone()).unwrap();
    s.resources.register_resource(&first);
    let mut returned = Vec::new();
    for task in ["a", "b", "c", "d"] {
        s.clock.advance(Duration::from_secs(1));
        s.ledger.reserve(&cores(task, 2)).unwrap();
        returned.extend(
            s.resources
                .collect_utilization_metrics()
                .unwrap()
                .into_iter()
                .filter(|sample| sample.resource_type == ResourceType::Memory),
        );
    }
    let history = s
        .metrics
        .utilization_history(first.name(), &ResourceType::Memory);
    assert_eq!(history, returned[1..]);

    let mut usage = s.ledger.snapshot().unwrap().usage.remove(0);
    usage.unit = Unit::MIB;
    usage.capacity = 1024.into();
    usage.external = 512.into();
    (usage.pending, usage.confirmed, usage.leased) = Default::default();
    s.metrics.record_usage(s.clock.now(), &usage);
    let history = s
        .metrics
        .utilization_history(&usage.resource, &usage.resource_type);
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].ratio_ppm, 500_000);
}

/// A retention far beyond what a run records (a configuration's `utilization_samples =
/// 1000000000000`) reserves nothing up front: collecting works and keeps what came.
#[test]
fn a_huge_retention_reserves_nothing_up_front() {
    let s = setup(Retention {
        waits: usize::MAX,
        scaling: usize::MAX,
        utilization: usize::MAX,
        ..Retention::default()
    });
    let first = node("n1", 10, 1, Unit::GIB);
    s.ledger.register_resource(first.clone()).unwrap();
    s.resources.register_resource(&first);
    for _ in 0..3 {
        s.clock.advance(Duration::from_secs(1));
        s.resources.collect_utilization_metrics().unwrap();
    }
    let history = s
        .metrics
        .utilization_history(first.name(), &ResourceType::Compute);
    assert_eq!(history.len(), 3);
    s.metrics.publish(&Event {
        sequence: 0,
        at: s.clock.now(),
        kind: EventKind::Dequeued {
            requester: RequesterId::new("t").unwrap(),
            waited: Duration::from_secs(2),
            granted: true,
        },
    });
    assert_eq!(s.metrics.wait_percentile(100), Some(Duration::from_secs(2)));
}

#[test]
fn sustained_saturation_raises_an_alert_only_after_enough_samples() {
    let s = setup(Retention::default());
    let first = node("n1", 10, 1, Unit::GIB);
    s.ledger.register_resource(first.clone()).unwrap();
    s.resources.register_resource(&first);
    s.ledger.reserve(&cores("a", 10)).unwrap();
    let dashboard = ResourceDashboard::new(s.metrics.clone());
    for _ in 0..4 {
        s.resources.collect_utilization_metrics().unwrap();
    }
    assert!(
        dashboard
            .get_dashboard_data(s.clock.now())
            .alerts
            .is_empty()
    );
    s.resources.collect_utilization_metrics().unwrap();
    let alerts = dashboard.get_dashboard_data(s.clock.now()).alerts;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].kind, AlertKind::SustainedSaturation);
    assert_eq!(alerts[0].subject, "n1/compute");
}

#[test]
fn waits_give_percentiles_queue_depth_and_starvation() {
    let metrics = MetricsCollector::default();
    let requester = RequesterId::new("t").unwrap();
    for depth in 1..=3 {
        publish(
            &metrics,
            Timestamp::ZERO,
            EventKind::Queued {
                requester: requester.clone(),
                depth,
            },
        );
    }
    assert_eq!(metrics.queue_depth(), 3);
    for millis in 1..=100u64 {
        publish(
            &metrics,
            Timestamp::ZERO,
            EventKind::Dequeued {
                requester: requester.clone(),
                waited: Duration::from_millis(millis),
                granted: true,
            },
        );
    }
    assert_eq!(metrics.queue_depth(), 0, "never below zero");
    let data = ResourceDashboard::new(metrics.clone()).get_dashboard_data(Timestamp::ZERO);
    assert_eq!((data.wait_p50_ms, data.wait_p99_ms), (Some(50), Some(99)));
    assert!(data.alerts.is_empty());
    publish(
        &metrics,
        Timestamp::ZERO,
        EventKind::Dequeued {
            requester,
            waited: Duration::from_secs(61),
            granted: false,
        },
    );
    let alerts = ResourceDashboard::new(metrics)
        .get_dashboard_data(Timestamp::ZERO)
        .alerts;
    assert_eq!(alerts[0].kind, AlertKind::Starvation);
}

#[test]
fn expiry_spikes_are_counted_within_the_window() {
    let s = setup(Retention::default());
    s.ledger
        .register_resource(node("n1", 100, 1, Unit::GIB))
        .unwrap();
    for index in 0..10 {
        s.ledger
            .reserve(&cores(&format!("t{index}"), 1).with_ttl(Duration::from_secs(1)))
            .unwrap();
    }
    s.clock.advance(Duration::from_secs(2));
    s.ledger.expire_due().unwrap();
    let dashboard = ResourceDashboard::new(s.metrics.clone());
    let alerts = dashboard.get_dashboard_data(s.clock.now()).alerts;
    assert_eq!(
        alerts.iter().map(|alert| alert.kind).collect::<Vec<_>>(),
        [AlertKind::ExpirySpike]
    );
    // Five minutes later the spike has passed.
    s.clock.advance(Duration::from_secs(300));
    assert!(
        dashboard
            .get_dashboard_data(s.clock.now())
            .alerts
            .is_empty()
    );
}

#[test]
fn many_requesters_and_scaling_requests_stay_bounded() {
    let metrics = MetricsCollector::new(Retention {
        scaling: 4,
        waits: 16,
        ..Retention::default()
    });
    for index in 0..10_000 {
        publish(
            &metrics,
            Timestamp::ZERO,
            EventKind::Refused {
                requester: RequesterId::new(&format!("task-{index}")).unwrap(),
                reason: "insufficient-capacity".into(),
            },
        );
    }
    // Refusals are counted by reason, never by requester.
    assert_eq!(metrics.refusals().len(), 1);
    assert_eq!(metrics.refusals()["insufficient-capacity"], 10_000);
    for to in 0..10 {
        publish(
            &metrics,
            Timestamp::ZERO,
            EventKind::Scaled {
                target: "workers".into(),
                from: to,
                to: to + 1,
                reason: "metric".into(),
            },
        );
    }
    let recent = metrics.recent_scaling();
    assert_eq!(
        recent.iter().map(|record| record.to).collect::<Vec<_>>(),
        [7, 8, 9, 10]
    );
}

#[test]
fn pools_and_reservations_by_state_reach_the_dashboard() {
    let s = setup(Retention::default());
    let first = node("n1", 10, 1, Unit::GIB);
    s.ledger.register_resource(first.clone()).unwrap();
    s.resources.register_resource(&first);
    let confirmed = s.ledger.reserve(&cores("a", 1)).unwrap();
    s.ledger.confirm(&confirmed.id, None).unwrap();
    s.ledger.reserve(&cores("b", 1)).unwrap();
    s.ledger.reserve(&cores("c", 1)).unwrap();
    s.resources.collect_utilization_metrics().unwrap();
    s.metrics.record_pool(s.clock.now(), "licences", 4, 3, 2);
    s.metrics.record_pool(s.clock.now(), "empty", 0, 0, 0);
    let data = ResourceDashboard::new(s.metrics.clone()).get_dashboard_data(s.clock.now());
    assert_eq!(
        (data.reservations.pending, data.reservations.confirmed),
        (2, 1)
    );
    let licences = data
        .pools
        .iter()
        .find(|pool| pool.pool == "licences")
        .unwrap();
    assert_eq!((licences.ratio_ppm, licences.waiting), (750_000, 2));
    assert_eq!(
        data.pools
            .iter()
            .find(|pool| pool.pool == "empty")
            .unwrap()
            .ratio_ppm,
        0
    );
}
