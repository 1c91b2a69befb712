//! [`ResourceDashboard`]: a serialisable summary of what a [`MetricsCollector`] holds.

use std::collections::BTreeMap;
use std::time::Duration;

use rm_model::{ResourceType, Timestamp};
use serde::{Deserialize, Serialize};

use crate::collector::ppm;
use crate::{
    EndedCounts, MetricsCollector, PoolSample, ReservationCounts, ScalingRecord, ShareSample,
    UtilizationSample,
};

/// When the dashboard raises alerts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlertRules {
    /// A capacity is saturated at or above this utilisation (parts per million)...
    pub saturation_ppm: u64,
    /// ...for this many consecutive samples.
    pub saturation_samples: usize,
    /// A wait this long or longer is starvation.
    pub starvation: Duration,
    /// This many expiries within the collector's expiry window is a spike.
    pub expiry_spike: usize,
}

impl Default for AlertRules {
    fn default() -> AlertRules {
        AlertRules {
            saturation_ppm: 950_000,
            saturation_samples: 5,
            starvation: Duration::from_secs(60),
            expiry_spike: 10,
        }
    }
}

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertKind {
    /// A capacity stayed at or above the saturation threshold.
    SustainedSaturation,
    /// A request waited at least the starvation threshold.
    Starvation,
    /// Many reservations expired unconfirmed recently.
    ExpirySpike,
}

/// An active alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// What it is about.
    pub kind: AlertKind,
    /// What it concerns (a `resource/type`, or `queues`, or `reservations`).
    pub subject: String,
    /// A sentence for people.
    pub message: String,
}

/// Utilisation of one resource type across the monitored resources.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeUtilization {
    /// The type.
    pub resource_type: ResourceType,
    /// Total used over total capacity, in parts per million (amounts summed exactly in the
    /// dimension's base unit).
    pub ratio_ppm: u64,
    /// How many capacities of this type were summed.
    pub capacities: usize,
}

/// The dashboard's data (the seed's `get_dashboard_data()`), serialisable as is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DashboardData {
    /// When it was put together.
    pub generated_at: Timestamp,
    /// Utilisation by type, from each capacity's latest sample.
    pub utilization_by_type: Vec<TypeUtilization>,
    /// Every pool's latest sample.
    pub pools: Vec<PoolSample>,
    /// Active reservations by state, as of the last collection.
    pub reservations: ReservationCounts,
    /// The most utilised capacities, most first (latest samples).
    pub most_contended: Vec<UtilizationSample>,
    /// Reservations granted.
    pub grants: u64,
    /// Grants by resource type.
    pub grants_by_type: BTreeMap<ResourceType, u64>,
    /// Reservations confirmed.
    pub confirmed: u64,
    /// Reservations ended, by how.
    pub ended: EndedCounts,
    /// Refusals by reason code.
    pub refusals: BTreeMap<String, u64>,
    /// Requests waiting in queues.
    pub queue_depth: u64,
    /// Median of recent waits, in milliseconds.
    pub wait_p50_ms: Option<u64>,
    /// 99th percentile of recent waits, in milliseconds.
    pub wait_p99_ms: Option<u64>,
    /// How long the oldest request still waiting has waited, in milliseconds, as of the last
    /// collection.
    pub starvation_age_ms: u64,
    /// Each requester class's share of capacity against its entitlement, as of the last
    /// collection.
    pub fair_share: Vec<ShareSample>,
    /// Recent scaling requests, oldest first.
    pub recent_scaling: Vec<ScalingRecord>,
    /// Active alerts.
    pub alerts: Vec<Alert>,
}

/// Puts a [`MetricsCollector`]'s figures together for display (the seed's
/// `ResourceDashboard`).
#[derive(Clone, Debug)]
pub struct ResourceDashboard {
    metrics: MetricsCollector,
    rules: AlertRules,
    top: usize,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl ResourceDashboard {
    /// A dashboard over `metrics` with the default alert rules, listing the five most
    /// contended capacities.
    pub fn new(metrics: MetricsCollector) -> ResourceDashboard {
        ResourceDashboard {
            metrics,
            rules: AlertRules::default(),
            top: 5,
        }
    }

    /// Replaces the alert rules.
    pub fn with_rules(mut self, rules: AlertRules) -> ResourceDashboard {
        self.rules = rules;
        self
    }

    /// Lists the `top` most contended capacities.
    pub fn with_top(mut self, top: usize) -> ResourceDashboard {
        self.top = top;
        self
    }

    /// The summary as of `now` (expiries count within the collector's window before `now`).
    pub fn get_dashboard_data(&self, now: Timestamp) -> DashboardData {
        let needed = self.rules.saturation_samples.max(1);
        // Only what the summary reads: each capacity's last samples, not its whole history.
        let histories = self.metrics.recent_utilization(needed);
        let latest: Vec<UtilizationSample> = histories
            .iter()
            .filter_map(|samples| samples.last().cloned())
            .collect();
        let mut by_type: BTreeMap<ResourceType, (i128, i128, usize)> = BTreeMap::new();
        for sample in &latest {
            let entry = by_type.entry(sample.resource_type.clone()).or_default();
            entry.0 = entry.0.saturating_add(sample.base.0);
            entry.1 = entry.1.saturating_add(sample.base.1);
            entry.2 += 1;
        }
        let utilization_by_type = by_type
            .into_iter()
            .map(
                |(resource_type, (used, capacity, capacities))| TypeUtilization {
                    resource_type,
                    ratio_ppm: ppm(used, capacity),
                    capacities,
                },
            )
            .collect();
        let mut most_contended = latest;
        most_contended.sort_by(|a, b| {
            b.ratio_ppm
                .cmp(&a.ratio_ppm)
                .then_with(|| a.resource.cmp(&b.resource))
        });
        most_contended.truncate(self.top);

        let mut alerts = Vec::new();
        for samples in &histories {
            let saturated = samples.len() >= needed
                && samples
                    .iter()
                    .rev()
                    .take(needed)
                    .all(|sample| sample.ratio_ppm >= self.rules.saturation_ppm);
            if let Some(last) = samples.last().filter(|_| saturated) {
                alerts.push(Alert {
                    kind: AlertKind::SustainedSaturation,
                    subject: format!("{}/{}", last.resource, last.resource_type.as_str()),
                    message: format!(
                        "{} of {} at or above {}% for the last {needed} samples",
                        last.resource_type.as_str(),
                        last.resource,
                        self.rules.saturation_ppm / 10_000,
                    ),
                });
            }
        }
        let waiting = self.metrics.starvation_age();
        // The longest finished wait, or the current waiter's age when that is longer.
        let longest = match self.metrics.wait_percentile(100) {
            None if waiting.is_zero() => None,
            finished => Some(finished.unwrap_or_default().max(waiting)),
        };
        if let Some(longest) = longest.filter(|longest| *longest >= self.rules.starvation) {
            alerts.push(Alert {
                kind: AlertKind::Starvation,
                subject: "queues".into(),
                message: format!(
                    "a request waited {} ms (threshold {} ms)",
                    millis(longest),
                    millis(self.rules.starvation)
                ),
            });
        }
        let expiries = self.metrics.recent_expiries(now);
        if expiries >= self.rules.expiry_spike {
            alerts.push(Alert {
                kind: AlertKind::ExpirySpike,
                subject: "reservations".into(),
                message: format!(
                    "{expiries} reservations expired unconfirmed recently (threshold {})",
                    self.rules.expiry_spike
                ),
            });
        }
        DashboardData {
            generated_at: now,
            utilization_by_type,
            pools: self.metrics.pools(),
            reservations: self.metrics.reservations(),
            most_contended,
            grants: self.metrics.grants(),
            grants_by_type: self.metrics.grants_by_type(),
            confirmed: self.metrics.confirmed(),
            ended: self.metrics.ended(),
            refusals: self.metrics.refusals(),
            queue_depth: self.metrics.queue_depth(),
            wait_p50_ms: self.metrics.wait_percentile(50).map(millis),
            wait_p99_ms: self.metrics.wait_percentile(99).map(millis),
            starvation_age_ms: millis(waiting),
            fair_share: self.metrics.shares(),
            recent_scaling: self.metrics.recent_scaling(),
            alerts,
        }
    }
}
