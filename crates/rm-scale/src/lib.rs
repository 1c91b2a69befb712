//! Autoscaling: how large a pool (or anything with a size) should be, decided from a metric
//! with the rules Kubernetes' horizontal autoscaler users know, with every decision recorded
//! and explained.
//!
//! # Where it sits
//! A middle crate: it depends on `rm-model` only. It never names `rm-pool`; anything that
//! has a size and a metric implements [`ScaleTarget`] (a pool, a worker fleet, a connection
//! limit), and `rm-facade` wires pools to it.
//!
//! # Main types
//! - [`ThresholdScaling`]: `desired = ceil(current × metric / target)` with a tolerance, a
//!   stabilisation window and rate policies per direction ([`Behavior`], [`RatePolicy`],
//!   [`SelectPolicy`]), and minimum and maximum bounds. Its memory is a [`ScalingState`],
//!   which can be seeded with recommendations recorded earlier (a restarted autoscaler keeps
//!   its window). [`ThresholdScaling::recommend_pods`] takes one sample per pod.
//! - [`ReplicaCalculator`]: Kubernetes' replica calculation alone (no stabilisation, rate
//!   limits or bounds), from per-pod samples ([`PodSample`]: ready with its usage, unready,
//!   or missing its metric) against a utilisation or average-value [`PodTarget`]: missing
//!   pods count at 0% on a scale-up and 100% on a scale-down, unready pods at 0% on a
//!   scale-up, and no change when that recount flips the direction or lands within
//!   tolerance. The replica count is distinct from the number of pods sampled.
//! - [`PredictiveScaling`]: Holt's linear trend (with Holt–Winters seasonality when the
//!   history shows it) forecasts the load a lead time ahead; the threshold rule acts on the
//!   larger of the load now and the forecast. [`ForecastState`] is its memory.
//! - [`RateOfChangeScaling`]: projects the load's recent rate of change over a horizon.
//!   [`RateState`] is its memory.
//! - [`Decision`]: the size decided with its inputs (including the metric the rule acted
//!   on) and [`Reason`].
//! - [`ScalingRule`]: what a rule provides; [`Autoscaler`] drives any number of
//!   [`ScaleTarget`]s with one, keeps a bounded log of [`DecisionRecord`]s and has a dry-run
//!   mode.
//! - The items that go with them: [`TargetId`], [`ScaleRefused`], [`ReplicaCount`],
//!   [`ReplicaReason`].
//!
//! # Design decisions
//! - Exact arithmetic: metrics are [`Quantity`]s (thousandths), the ratio
//!   is computed in 128-bit integers and rounded up, tolerances are parts per million. The
//!   same inputs give the same decision on every machine.
//! - A ratio exactly at the tolerance changes nothing (Kubernetes compares strictly too):
//!   with a 10% tolerance, 55% against a 50% target keeps the size, 55.001% scales.
//! - Rate limits count from the size at the start of each policy's period, as Kubernetes
//!   does: the current size less the net change recorded within the period. Percentages
//!   round up going up and down going down.
//! - The predictive and rate-of-change rules reuse the threshold rule for everything after
//!   the estimate (tolerance, stabilisation, rate limits, bounds), so one set of limits
//!   governs all three, and both are the threshold rule until they have history.
//! - The forecast is the one floating-point step: an estimate that picks a recommendation,
//!   never an accounted amount. Rate-of-change projection is exact.
//! - Windows are fixed-size rings allocated when a target is added: a tick allocates nothing.
//!
//! # Concurrency
//! Rules are immutable and `Send + Sync`; a [`ScalingState`] belongs to one target and is
//! updated through `&mut`. One thread drives an [`Autoscaler`]; its targets may be shared.
//!
//! # Errors and panics
//! Invalid settings are [`Error::InvalidSetting`], naming the setting. A replica calculation
//! without pods, without any ready pod's metric, or without a request under a utilisation
//! target is [`Error::NoPods`], [`Error::NoMetrics`] or [`Error::MissingRequest`]. A target's refusal to
//! resize is logged as [`Outcome::Failed`] and counted; it never stops a tick. Nothing
//! panics on input.
//!
//! # Metrics
//! None directly; [`TickSummary`] and the decision log are what `rm-monitor` and the facade
//! export.
//!
//! # Example
//! Kubernetes' documented case: 3 replicas at 50% utilisation against a 30% target become 5.
//!
//! ```
//! use rm_model::{Quantity, Timestamp};
//! use rm_scale::{Reason, ThresholdScaling};
//!
//! let rule = ThresholdScaling::new(Quantity::from_units(30), 1, 10)?;
//! let mut state = rule.new_state();
//! let decision = rule.recommend(&mut state, Timestamp::ZERO, 3, Quantity::from_units(50));
//! assert_eq!(decision.desired, 5);
//! assert_eq!(decision.reason, Reason::Metric);
//! # Ok::<(), rm_scale::Error>(())
//! ```

mod autoscaler;
mod error;
mod predictive;
mod rate;
mod replicas;
mod ring;
mod threshold;

use rm_model::{Quantity, Timestamp};

pub use autoscaler::{Autoscaler, DecisionRecord, Outcome, TargetId, TickSummary};
pub use error::{Error, ScaleRefused};
pub use predictive::{ForecastState, PredictiveScaling};
pub use rate::{RateOfChangeScaling, RateState};
pub use replicas::{PodSample, PodTarget, ReplicaCalculator, ReplicaCount, ReplicaReason};
pub use threshold::{
    Behavior, Decision, RatePolicy, Reason, ScalingState, SelectPolicy, ThresholdScaling,
};

/// Something with a size in units and a metric to scale on: a pool, a worker fleet.
pub trait ScaleTarget: Send + Sync {
    /// The current size in units.
    fn size(&self) -> u64;

    /// The metric now, in the rule's terms (for example utilisation in percent).
    fn metric(&self) -> Quantity;

    /// Resizes to `size` units. Shrinking should drain, not revoke.
    fn scale_to(&self, size: u64) -> Result<(), ScaleRefused>;
}

/// A scaling rule: from a size and a metric to a decision, with per-target memory.
pub trait ScalingRule {
    /// What the rule remembers per target.
    type State;

    /// Fresh memory for a new target.
    fn new_state(&self) -> Self::State;

    /// Decides the size for `current` units observing `metric` at `now`.
    fn recommend(
        &self,
        state: &mut Self::State,
        now: Timestamp,
        current: u64,
        metric: Quantity,
    ) -> Decision;
}
