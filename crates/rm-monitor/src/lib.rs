//! Monitoring: utilisation, grants, refusals, expiries, preemptions, waits and scaling,
//! counted from events and snapshots, kept as bounded recent history, emitted through the
//! `metrics` macros, and summarised for a dashboard.
//!
//! # Where it sits
//! A middle crate: it depends on `rm-model` (events, snapshots, the ledger trait) and the
//! `metrics` facade, never on another middle crate. It is fed, never called, by the
//! reservation path: the ledger publishes events to a [`MetricsCollector`] (an
//! [`EventSink`](rm_model::EventSink)), and [`ResourceMetricsCollector`] takes snapshots
//! when asked. `rm-facade` installs the Prometheus recorder; this crate never installs one.
//!
//! # Main types
//! The seed's names and shape:
//! - [`MetricsCollector`]: counters, the queue-depth gauge and wait-time histogram, with
//!   bounded recent history ([`Retention`]).
//! - [`ResourceMetricsCollector`]: `register_resource` and `collect_utilization_metrics`,
//!   exact [`UtilizationSample`]s per resource capacity.
//! - [`ResourceDashboard`]: `get_dashboard_data` returns a serialisable [`DashboardData`]
//!   with utilisation by type, the most contended capacities, wait p50/p99, recent scaling
//!   and [`Alert`]s (sustained saturation, starvation, expiry spikes; [`AlertRules`]).
//! - [`class_shares`]: each requester class's dominant share of capacity against its
//!   weight's entitlement, from one snapshot ([`ShareSample`]s for the class gauges;
//!   requesters of no class are [`OTHER_CLASS`]).
//! - [`names`]: every metric's name and help text.
//! - The items that go with them: [`EndedCounts`], [`PoolSample`], [`ReservationCounts`],
//!   [`ScalingRecord`], [`SharedRecorder`], [`AlertKind`], [`TypeUtilization`].
//!
//! # Design decisions
//! - Utilisation is exact: used and capacity are quantities, the ratio is integer parts per
//!   million, and sums across resources convert exactly to the dimension's base unit. The
//!   `metrics` gauge gets the ratio as a float, for export only.
//! - Nothing global is needed: [`MetricsCollector::with_recorder`] registers every handle
//!   with the recorder it is given, so two managers in one process keep separate metrics
//!   and a host's own global recorder is left alone. Without one, the global recorder is
//!   used.
//! - Labels are bounded: resource, type, refusal reason, outcome and scale target; requester
//!   ids never become labels.
//! - History lives in bounded queues sized by [`Retention`], so memory does not grow with
//!   uptime and no external database is needed for recent trends.
//!
//! # Concurrency
//! Every type is `Send + Sync`. Publishing is a few relaxed atomic increments, plus one
//! short lock for events that carry history; readers take the same lock briefly.
//!
//! # Errors and panics
//! Collection returns the ledger's [`LedgerError`](rm_model::LedgerError); nothing else
//! fails, and nothing panics on input.
//!
//! # Metrics
//! See [`names`]: `rm_grants_total`, `rm_refusals_total`, `rm_reservations_ended_total`,
//! `rm_reservations_confirmed_total`, `rm_wait_seconds`, `rm_queue_depth`,
//! `rm_scaling_decisions_total`, `rm_utilization_ratio`, `rm_reservations`,
//! `rm_pool_utilization_ratio`, `rm_pool_waiting`, `rm_starvation_seconds`, `rm_share_ratio`,
//! `rm_entitled_share_ratio`.
//!
//! # Example
//! The seed's "Resource Monitoring":
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use rm_model::{ManualClock, RequesterId, ReservationLedger, ReservationRequest, Resource,
//!     ResourceCapacity, ResourceRequirement, ResourceType, Unit};
//! use rm_monitor::{MetricsCollector, ResourceDashboard, ResourceMetricsCollector};
//! use rm_testkit::ReferenceLedger;
//!
//! // Create metrics collectors; the ledger publishes its events to the first.
//! let metrics_collector = MetricsCollector::default();
//! let clock = Arc::new(ManualClock::new());
//! let ledger = Arc::new(ReferenceLedger::new(clock.clone(), Arc::new(metrics_collector.clone()), Duration::from_secs(30)));
//! let compute_resource = Resource::new("compute-node-1", ResourceType::Compute, ResourceCapacity::of(100, Unit::CORES)?)?;
//! ledger.register_resource(compute_resource.clone())?;
//! let resource_metrics = ResourceMetricsCollector::new(metrics_collector.clone(), ledger.clone());
//!
//! // Register resources for monitoring
//! resource_metrics.register_resource(&compute_resource);
//!
//! let request = ReservationRequest::new(RequesterId::new("task-1")?,
//!     vec![ResourceRequirement::new(ResourceType::Compute, 40, Unit::CORES)]);
//! ledger.reserve(&request)?;
//!
//! // Collect utilization metrics
//! resource_metrics.collect_utilization_metrics()?;
//!
//! // Create a dashboard and get its data
//! let dashboard = ResourceDashboard::new(metrics_collector);
//! let dashboard_data = dashboard.get_dashboard_data(clock.now());
//! assert_eq!(dashboard_data.grants, 1);
//! assert_eq!(dashboard_data.utilization_by_type[0].ratio_ppm, 400_000); // 40%
//! # use rm_model::Clock;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod collector;
mod dashboard;
pub mod names;
mod resources;
mod shares;

pub use collector::{
    EndedCounts, MetricsCollector, PoolSample, ReservationCounts, Retention, ScalingRecord,
    ShareSample, SharedRecorder, UtilizationSample,
};
pub use dashboard::{
    Alert, AlertKind, AlertRules, DashboardData, ResourceDashboard, TypeUtilization,
};
pub use resources::ResourceMetricsCollector;
pub use shares::{OTHER_CLASS, class_shares};
