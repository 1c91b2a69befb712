//! The facade: one embeddable [`ResourceManager`] that wires the reservation ledger,
//! validation, allocation policies, contention resolution, pools, autoscaling and monitoring,
//! configured in code or from a TOML [`Config`], and exported to Prometheus.
//!
//! # Where it sits
//! The top of the library: it depends on `rm-model` and every middle crate (`rm-reserve`,
//! `rm-validate`, `rm-policy`, `rm-contention`, `rm-pool`, `rm-scale`, `rm-monitor`), which
//! never depend on each other, and joins them only through `rm-model`'s traits. It is the
//! only crate that depends on `metrics-exporter-prometheus`.
//!
//! # Main types
//! - [`ResourceManager`] and [`ResourceManagerBuilder`]: reserve (with policy admission and
//!   contention resolution), confirm, renew, release, cancel, [`tick`](ResourceManager::tick)
//!   for periodic work, [`dashboard`](ResourceManager::dashboard),
//!   [`contention`](ResourceManager::contention) and [`deadlocks`](ResourceManager::deadlocks)
//!   (what waits for what, from the wait queue), and metrics. Any part can
//!   be replaced by another implementation of its trait: the ledger
//!   ([`ResourceManagerBuilder::ledger`], built from [`LedgerParts`]), the validator, the
//!   policy, the resolver; event sinks can be added.
//! - [`Config`]: resources, limit ranges, policies, priorities, quotas, fair shares,
//!   contention, elastic pools, scaling rules and metrics, from TOML, with unknown fields refused and every
//!   problem named with its path ([`ConfigError::Invalid`] lists [`Problem`]s).
//! - [`PrometheusExporter`]: a recorder of the manager's own (never installed globally unless
//!   asked), rendered by [`ResourceManager::render`] or served at `/metrics` by
//!   [`ResourceManager::serve_metrics_on`] ([`MetricsServer`], default address
//!   [`DEFAULT_METRICS_ADDR`]).
//! - [`Config`]'s sections: [`ManagerSettings`], [`LedgerSettings`] (with [`LedgerBackend`]),
//!   [`PolicySettings`] (with [`PolicyKind`]), [`PrioritySettings`], [`AgingSettings`],
//!   [`QuotaSettings`], [`FairShareSettings`], [`ContentionSettings`] (with
//!   [`HeadOfLineSetting`]), [`PoolSettings`], [`ScalingSettings`] (with [`ScalingRuleKind`]),
//!   [`MetricsSettings`]; [`LimitRange`], the limit ranges' type (from rm-validate).
//! - [`Ticker`] and [`TickReport`]: periodic work on a thread of its own
//!   ([`ResourceManager::start_ticker`]); [`WAIT_BUCKETS`]: the wait histogram's buckets.
//!
//! # Design decisions
//! - Events are the wiring: the ledger publishes to one fan-out that feeds the monitor, the
//!   wait queue's wake-ups, the policies' usage accounting and the embedder's sinks. The
//!   manager adds its own events (refusals, waits, scaling) to the same fan-out, so the
//!   reservation hot path never calls monitoring directly.
//! - Gauges that come from state (utilisation, reservations by state, class shares, the
//!   oldest waiter's age, pools) are sampled from one snapshot per
//!   [`collect`](ResourceManager::collect), which every scrape runs first.
//! - Labels are bounded: requesters appear only as configured classes (`other` for the
//!   rest), so a million requester ids add no series.
//! - The ledger is the embedded `rm-reserve` by default; with the `postgres` cargo feature,
//!   `[ledger] backend = "postgres"` keeps it in PostgreSQL (`rm-postgres`), shared by every
//!   manager on the same schema (see `docs/postgres.md`). Without the feature the client is
//!   not compiled and that backend is a configuration problem, named.
//!
//! # Concurrency
//! [`ResourceManager`] is a cheap `Clone` handle, `Send + Sync`, every method `&self`.
//! [`reserve`](ResourceManager::reserve) may block the calling thread while it waits for
//! capacity (up to `manager.wait_timeout_ms`); [`try_reserve`](ResourceManager::try_reserve)
//! never blocks. The metrics endpoint answers on a thread of its own.
//!
//! # Errors and panics
//! [`Error`]: refusals carry a [`Refusal`](rm_model::Refusal) code (and the ledger's typed
//! error when the ledger refused); configuration problems are all listed; ledger, pool and
//! endpoint errors pass through. A failed operation changes nothing. Nothing panics on input.
//!
//! # Metrics
//! Every metric of `rm-monitor` (see `docs/metrics.md`), in a recorder of the manager's own:
//! grants, refusals by reason, endings by outcome, waits, queue depth, starvation age,
//! utilisation by resource and type, reservations by state, pools, class shares, scaling.
//!
//! # Example
//! The seed's "Resource Monitoring", embedded:
//!
//! ```
//! use rm_facade::{Config, ResourceManager};
//! use rm_model::{RequesterId, ReservationRequest, ResourceRequirement, ResourceType, Unit};
//!
//! let config = Config::from_toml(r#"
//!     [[resources]]
//!     name = "compute-node-1"
//!     type = "compute"
//!     capacity = { maximum = 100, unit = "cores" }
//! "#)?;
//! let manager = ResourceManager::from_config(config)?;
//!
//! let request = ReservationRequest::new(RequesterId::new("task-1")?,
//!     vec![ResourceRequirement::new(ResourceType::Compute, 40, Unit::CORES)]);
//! let reservation = manager.reserve(&request)?;
//! manager.confirm(&reservation.id, None)?;
//!
//! // Collect utilisation metrics and look at the dashboard.
//! manager.collect()?;
//! let dashboard = manager.dashboard();
//! assert_eq!(dashboard.utilization_by_type[0].ratio_ppm, 400_000);
//!
//! // What Prometheus scrapes.
//! let text = manager.render()?;
//! assert!(text.contains(r#"rm_utilization_ratio{resource="compute-node-1",type="compute"} 0.4"#));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod error;
mod exporter;
mod manager;
mod periodic;
mod server;
mod wiring;

pub use config::{
    AgingSettings, Config, ConfigError, ContentionSettings, DEFAULT_METRICS_ADDR,
    FairShareSettings, HeadOfLineSetting, LedgerBackend, LedgerSettings, ManagerSettings,
    MetricsSettings, PolicyKind, PolicySettings, PoolSettings, PrioritySettings, Problem,
    QuotaSettings, ScalingRuleKind, ScalingSettings,
};
pub use error::Error;
pub use exporter::{PrometheusExporter, WAIT_BUCKETS};
pub use manager::{LedgerParts, ResourceManager, ResourceManagerBuilder, TickReport, Ticker};
pub use rm_validate::LimitRange;
pub use server::MetricsServer;

// The layers below, re-exported so that one dependency on the facade is enough to embed it
// (and so that `rm-cli` sees no crate but this one).
pub use rm_contention as contention;
pub use rm_model as model;
pub use rm_monitor as monitor;
pub use rm_policy as policy;
pub use rm_pool as pool;
/// The PostgreSQL ledger (feature `postgres`): `rmctl stress` drives it directly.
#[cfg(feature = "postgres")]
pub use rm_postgres as postgres;
/// The embedded ledger, for drivers that place without the facade's wiring (rmctl's GPU
/// placement experiment drives it directly).
pub use rm_reserve as reserve;
pub use rm_scale as scale;
