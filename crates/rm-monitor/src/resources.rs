//! [`ResourceMetricsCollector`]: samples the utilisation of registered resources from a
//! ledger's snapshots into a [`MetricsCollector`].

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use rm_model::{
    LedgerError, LedgerSnapshot, ReservationLedger, ReservationState, Resource, ResourceName,
};

use crate::{MetricsCollector, ReservationCounts, UtilizationSample};

/// Samples the utilisation of the resources registered with it (the seed's
/// `ResourceMetricsCollector`). Each collection takes one ledger snapshot, outside the
/// reservation hot path, and records every capacity of every registered resource.
pub struct ResourceMetricsCollector {
    metrics: MetricsCollector,
    ledger: Arc<dyn ReservationLedger>,
    registered: Mutex<BTreeSet<ResourceName>>,
}

impl std::fmt::Debug for ResourceMetricsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceMetricsCollector")
            .field("registered", &self.registered())
            .finish()
    }
}

impl ResourceMetricsCollector {
    /// Samples `ledger` into `metrics`.
    pub fn new(
        metrics: MetricsCollector,
        ledger: Arc<dyn ReservationLedger>,
    ) -> ResourceMetricsCollector {
        ResourceMetricsCollector {
            metrics,
            ledger,
            registered: Mutex::new(BTreeSet::new()),
        }
    }

    /// Monitors `resource` from the next collection on.
    pub fn register_resource(&self, resource: &Resource) {
        self.lock().insert(resource.name().clone());
    }

    /// Stops monitoring `resource` and forgets its history.
    pub fn unregister_resource(&self, resource: &ResourceName) {
        self.lock().remove(resource);
        self.metrics.forget(resource);
    }

    /// The monitored resources.
    pub fn registered(&self) -> Vec<ResourceName> {
        self.lock().iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<ResourceName>> {
        self.registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes one snapshot and records every capacity of every registered resource (a
    /// registered resource the ledger no longer has is skipped) and the active reservations
    /// by state. Returns the utilisation samples.
    pub fn collect_utilization_metrics(&self) -> Result<Vec<UtilizationSample>, LedgerError> {
        Ok(self.collect_from(&self.ledger.snapshot()?))
    }

    /// Records what `snapshot` shows, as [`collect_utilization_metrics`] does from its own
    /// snapshot (for a caller that reads the same snapshot for other figures too).
    ///
    /// [`collect_utilization_metrics`]: ResourceMetricsCollector::collect_utilization_metrics
    pub fn collect_from(&self, snapshot: &LedgerSnapshot) -> Vec<UtilizationSample> {
        let mut counts = ReservationCounts::default();
        for reservation in &snapshot.active {
            match reservation.state {
                ReservationState::Pending => counts.pending += 1,
                ReservationState::Confirmed => counts.confirmed += 1,
                _ => {}
            }
        }
        self.metrics.record_reservations(counts);
        let registered = self.lock().clone();
        snapshot
            .usage
            .iter()
            .filter(|usage| registered.contains(&usage.resource))
            .map(|usage| self.metrics.record_usage(snapshot.taken_at, usage))
            .collect()
    }
}
