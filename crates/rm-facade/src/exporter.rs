//! [`PrometheusExporter`]: a Prometheus recorder of the manager's own, rendered on demand.

use std::sync::Arc;

use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use rm_monitor::{SharedRecorder, names};

/// Histogram buckets of `rm_wait_seconds`: from a millisecond to ten minutes, so that
/// `histogram_quantile` works on both quick hand-offs and long queues.
pub const WAIT_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0, 120.0, 600.0,
];

/// A Prometheus recorder from `metrics-exporter-prometheus`, owned by one manager and not
/// installed globally unless asked ([`PrometheusExporter::install_global`]), so that a host's
/// own recorder and a second manager are left alone. Cloning shares it.
#[derive(Clone)]
pub struct PrometheusExporter {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for PrometheusExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusExporter").finish_non_exhaustive()
    }
}

impl Default for PrometheusExporter {
    fn default() -> PrometheusExporter {
        PrometheusExporter::new()
    }
}

impl PrometheusExporter {
    /// A recorder with histogram buckets for wait times ([`WAIT_BUCKETS`]).
    pub fn new() -> PrometheusExporter {
        // Only an empty bucket list is refused, and this one is not empty.
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(names::WAIT_SECONDS.into()), &WAIT_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = Arc::new(builder.build_recorder());
        let handle = recorder.handle();
        PrometheusExporter { recorder, handle }
    }

    /// The recorder, for [`MetricsCollector::with_recorder`](rm_monitor::MetricsCollector::with_recorder)
    /// or for the host's own metrics.
    pub fn recorder(&self) -> SharedRecorder {
        self.recorder.clone()
    }

    /// The metrics in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Drains histogram buckets and forgets idle series; call it periodically (the served
    /// endpoint does).
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// Installs this recorder as the process's global one, so that `metrics` macros anywhere
    /// in the host record into it. An explicit opt-in: fails when a global recorder is
    /// installed already.
    pub fn install_global(&self) -> Result<(), crate::Error> {
        metrics::set_global_recorder(self.recorder.clone())
            .map_err(|_| crate::Error::GlobalRecorderTaken)
    }
}
