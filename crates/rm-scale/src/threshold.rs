//! [`ThresholdScaling`]: the algorithm of Kubernetes' horizontal pod autoscaler, in exact
//! integer arithmetic.
//!
//! `desired = ceil(current × metric / target)`, unless the ratio `metric / target` lies within
//! the tolerance of 1 (per direction; a ratio exactly at the tolerance changes nothing, as in
//! Kubernetes). The raw recommendation is then stabilised (scale-up takes the lowest
//! recommendation of its window, scale-down the highest of its window), limited by rate
//! policies (at most N units or P percent per period, the policy allowing the larger or the
//! smaller change, or the direction disabled), and bounded by the minimum and maximum.

use std::time::Duration;

use rm_model::{Quantity, Timestamp};
use serde::{Deserialize, Serialize};

use crate::replicas::{ceil_div, to_u64};
use crate::ring::Ring;
use crate::{Error, PodSample, PodTarget, ReplicaCalculator, ReplicaReason, ScalingRule};

/// One rate limit: at most `value` units, or `value` percent of the size at the start of the
/// period, per `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum RatePolicy {
    /// At most `value` units per period.
    Units {
        /// The number of units.
        value: u64,
        /// The period.
        #[serde(with = "millis")]
        period: Duration,
    },
    /// At most `value` percent per period.
    Percent {
        /// The percentage.
        value: u64,
        /// The period.
        #[serde(with = "millis")]
        period: Duration,
    },
}

impl RatePolicy {
    fn period(&self) -> Duration {
        match self {
            RatePolicy::Units { period, .. } | RatePolicy::Percent { period, .. } => *period,
        }
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

/// Which rate policy applies when several do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SelectPolicy {
    /// The policy allowing the larger change.
    #[default]
    Max,
    /// The policy allowing the smaller change.
    Min,
    /// No change in this direction at all.
    Disabled,
}

/// How one direction (up or down) behaves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Behavior {
    /// How far back recommendations count for stabilisation.
    #[serde(with = "millis")]
    pub stabilization: Duration,
    /// The rate limits (none: unlimited).
    #[serde(default)]
    pub policies: Vec<RatePolicy>,
    /// Which limit applies.
    #[serde(default)]
    pub select: SelectPolicy,
    /// How far the ratio may stray from 1 in this direction before anything changes, in
    /// parts per million (100,000 is 10%).
    pub tolerance_ppm: u64,
}

impl Behavior {
    /// Kubernetes' default for scaling up: no stabilisation, at most +100% or +4 units per
    /// 15 s (the larger), 10% tolerance.
    pub fn scale_up_default() -> Behavior {
        Behavior {
            stabilization: Duration::ZERO,
            policies: vec![
                RatePolicy::Percent {
                    value: 100,
                    period: Duration::from_secs(15),
                },
                RatePolicy::Units {
                    value: 4,
                    period: Duration::from_secs(15),
                },
            ],
            select: SelectPolicy::Max,
            tolerance_ppm: 100_000,
        }
    }

    /// No stabilisation and no rate limit, with Kubernetes' 10% tolerance: the rule then
    /// acts on each recommendation at once (bounds still apply).
    pub fn immediate() -> Behavior {
        Behavior {
            stabilization: Duration::ZERO,
            policies: Vec::new(),
            select: SelectPolicy::Max,
            tolerance_ppm: 100_000,
        }
    }

    /// Kubernetes' default for scaling down: 300 s stabilisation, at most -100% per 15 s,
    /// 10% tolerance.
    pub fn scale_down_default() -> Behavior {
        Behavior {
            stabilization: Duration::from_secs(300),
            policies: vec![RatePolicy::Percent {
                value: 100,
                period: Duration::from_secs(15),
            }],
            select: SelectPolicy::Max,
            tolerance_ppm: 100_000,
        }
    }
}

/// Why a decision came out as it did (the last rule that changed it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// The metric is within tolerance of the target: no change.
    WithinTolerance,
    /// The metric asks for this size.
    Metric,
    /// The forecast at the lead time asks for this size.
    Forecast,
    /// The metric's rate of change, projected over the horizon, asks for this size.
    Trend,
    /// A lower recommendation in the scale-up window held it back.
    StabilizedUp,
    /// A higher recommendation in the scale-down window held it up.
    StabilizedDown,
    /// A rate policy limited the change.
    RateLimited,
    /// The direction is disabled.
    DirectionDisabled,
    /// The minimum size raised it.
    AtMinimum,
    /// The maximum size capped it.
    AtMaximum,
}

impl Reason {
    /// The reason's name, as serialised (`metric`, `stabilized-up`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::WithinTolerance => "within-tolerance",
            Reason::Metric => "metric",
            Reason::Forecast => "forecast",
            Reason::Trend => "trend",
            Reason::StabilizedUp => "stabilized-up",
            Reason::StabilizedDown => "stabilized-down",
            Reason::RateLimited => "rate-limited",
            Reason::DirectionDisabled => "direction-disabled",
            Reason::AtMinimum => "at-minimum",
            Reason::AtMaximum => "at-maximum",
        }
    }
}

/// One decision with its inputs: what an autoscaler records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// When.
    pub at: Timestamp,
    /// The size before.
    pub current: u64,
    /// The metric observed.
    pub metric: Quantity,
    /// The metric the rule acted on: the observation for threshold scaling, a forecast or a
    /// projection of it (per current unit) for the predictive and rate-of-change rules.
    pub acted_on: Quantity,
    /// The metric's target.
    pub target: Quantity,
    /// What the metric alone asks for.
    pub raw: u64,
    /// After stabilisation.
    pub stabilized: u64,
    /// The size decided.
    pub desired: u64,
    /// Why.
    pub reason: Reason,
}

/// The memory of one scaled thing: recent recommendations and recent changes, in rings of
/// fixed size (a tick allocates nothing).
#[derive(Clone, Debug)]
pub struct ScalingState {
    recommendations: Ring<u64>,
    changes: Ring<i64>,
}

impl ScalingState {
    /// A state remembering up to `window` recommendations and changes.
    pub fn new(window: usize) -> ScalingState {
        ScalingState {
            recommendations: Ring::with_capacity(window),
            changes: Ring::with_capacity(window),
        }
    }

    /// Seeds the stabilisation window with a recommendation made at `at` (by an earlier
    /// process, or recorded by Kubernetes' controller), so that a restarted autoscaler keeps
    /// honouring its window. Seed in time order, before the first decision.
    pub fn record_recommendation(&mut self, at: Timestamp, replicas: u64) {
        self.recommendations.push(at, replicas);
    }

    /// Seeds the rate limits' memory with a change of `delta` replicas made at `at`.
    pub fn record_change(&mut self, at: Timestamp, delta: i64) {
        self.changes.push(at, delta);
    }

    /// The remembered recommendations, oldest first: what to persist to seed a later state.
    pub fn recommendations(&self) -> impl Iterator<Item = (Timestamp, u64)> + '_ {
        self.recommendations.iter().copied()
    }
}

const DEFAULT_WINDOW: usize = 64;

/// Threshold scaling with Kubernetes' semantics: `desired = ceil(current × metric / target)`
/// within tolerance, stabilisation, rate policies and bounds (see the crate docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThresholdScaling {
    target: Quantity,
    minimum: u64,
    maximum: u64,
    up: Behavior,
    down: Behavior,
    window: usize,
}

impl ThresholdScaling {
    /// Scales to keep the metric at `target`, between `minimum` and `maximum` units, with
    /// Kubernetes' default behaviours. Fails on a non-positive target or `minimum > maximum`.
    pub fn new(target: Quantity, minimum: u64, maximum: u64) -> Result<ThresholdScaling, Error> {
        if !target.is_positive() {
            return Err(Error::InvalidSetting {
                setting: "target",
                reason: "must be positive",
            });
        }
        if minimum > maximum {
            return Err(Error::InvalidSetting {
                setting: "minimum",
                reason: "exceeds the maximum",
            });
        }
        Ok(ThresholdScaling {
            target,
            minimum,
            maximum,
            up: Behavior::scale_up_default(),
            down: Behavior::scale_down_default(),
            window: DEFAULT_WINDOW,
        })
    }

    /// Replaces the scale-up behaviour.
    pub fn with_scale_up(mut self, behavior: Behavior) -> ThresholdScaling {
        self.up = behavior;
        self
    }

    /// Replaces the scale-down behaviour.
    pub fn with_scale_down(mut self, behavior: Behavior) -> ThresholdScaling {
        self.down = behavior;
        self
    }

    /// Remembers up to `samples` recommendations and changes per scaled thing (default 64:
    /// enough for Kubernetes' 300 s scale-down window at one tick every 5 s). Older ones drop
    /// out even when still inside a window, so size it to cover the longest window.
    pub fn with_window(mut self, samples: usize) -> ThresholdScaling {
        self.window = samples.max(1);
        self
    }

    /// A fresh state sized for this rule.
    pub fn new_state(&self) -> ScalingState {
        ScalingState::new(self.window)
    }

    /// The metric's target.
    pub fn target(&self) -> Quantity {
        self.target
    }

    /// The replica calculation this rule's tolerances make.
    pub fn calculator(&self) -> ReplicaCalculator {
        ReplicaCalculator::new().with_tolerance(self.up.tolerance_ppm, self.down.tolerance_ppm)
    }

    /// The size the metric alone asks for, and whether it lies within tolerance.
    fn raw(&self, current: u64, metric: Quantity) -> (u64, bool) {
        let count = self.calculator().for_average(current, metric, self.target);
        (count.replicas, count.reason != ReplicaReason::Scaled)
    }

    /// Decides the size for `current` units observing `metric` at `now`, and remembers the
    /// recommendation and any change in `state`.
    pub fn recommend(
        &self,
        state: &mut ScalingState,
        now: Timestamp,
        current: u64,
        metric: Quantity,
    ) -> Decision {
        self.settle(state, now, current, metric, metric, Reason::Metric)
    }

    /// Decides the size for `current` replicas from one sample per pod, with Kubernetes'
    /// handling of unready pods and pods without metrics (see [`ReplicaCalculator`]), the
    /// rule's target read as `target` says (a utilisation percentage of the pods' requests,
    /// or an average value per pod); then stabilisation, rate limits and bounds as for
    /// [`recommend`](Self::recommend). The decision's `metric` is the usage over the ready
    /// pods. Fails as [`ReplicaCalculator::for_pods`] does, changing nothing in `state`.
    pub fn recommend_pods(
        &self,
        state: &mut ScalingState,
        now: Timestamp,
        current: u64,
        target: PodTarget,
        pods: &[PodSample],
    ) -> Result<Decision, Error> {
        let count = self.calculator().for_pods(current, target, pods)?;
        let within = count.reason != ReplicaReason::Scaled;
        Ok(self.settle_raw(
            state,
            now,
            current,
            (count.usage, count.usage),
            (count.replicas, within),
            Reason::Metric,
        ))
    }

    /// The threshold rule applied to `acted_on` (the observation, or an estimate from it)
    /// instead of the observed `metric`; `estimated` is the reason when an estimate that
    /// differs from the observation decides. Tolerance, stabilisation, rate limits and bounds
    /// apply as to the observation.
    pub(crate) fn settle(
        &self,
        state: &mut ScalingState,
        now: Timestamp,
        current: u64,
        metric: Quantity,
        acted_on: Quantity,
        estimated: Reason,
    ) -> Decision {
        let because = if acted_on == metric {
            Reason::Metric
        } else {
            estimated
        };
        let raw = self.raw(current, acted_on);
        self.settle_raw(state, now, current, (metric, acted_on), raw, because)
    }

    /// Stabilisation, rate limits and bounds applied to the raw recommendation `raw` (and
    /// whether it was within tolerance), remembered in `state`.
    fn settle_raw(
        &self,
        state: &mut ScalingState,
        now: Timestamp,
        current: u64,
        (metric, acted_on): (Quantity, Quantity),
        (raw, within): (u64, bool),
        because: Reason,
    ) -> Decision {
        state.recommendations.push(now, raw);
        // Stabilisation, as Kubernetes does it: the lowest recommendation of the up window
        // bounds a rise, the highest of the down window bounds a fall. A window can only
        // matter in the direction the raw recommendation points, so only that one is walked.
        let (mut up, mut down) = (raw, raw);
        if raw > current {
            for &(_, recommendation) in state.recommendations.within(now, self.up.stabilization) {
                up = up.min(recommendation);
            }
        } else if raw < current {
            for &(_, recommendation) in state.recommendations.within(now, self.down.stabilization) {
                down = down.max(recommendation);
            }
        }
        let mut reason = if within {
            Reason::WithinTolerance
        } else {
            because
        };
        let mut stabilized = current;
        if stabilized < up {
            stabilized = up;
        }
        if stabilized > down {
            stabilized = down;
        }
        if stabilized != raw && !within {
            reason = if raw > current {
                Reason::StabilizedUp
            } else {
                Reason::StabilizedDown
            };
        }
        let mut desired = stabilized;
        if desired > current {
            match self.limit(state, now, current, &self.up, true) {
                None => {
                    desired = current;
                    reason = Reason::DirectionDisabled;
                }
                Some(limit) if desired > limit => {
                    desired = limit;
                    reason = Reason::RateLimited;
                }
                Some(_) => {}
            }
        } else if desired < current {
            match self.limit(state, now, current, &self.down, false) {
                None => {
                    desired = current;
                    reason = Reason::DirectionDisabled;
                }
                Some(limit) if desired < limit => {
                    desired = limit;
                    reason = Reason::RateLimited;
                }
                Some(_) => {}
            }
        }
        if desired < self.minimum {
            desired = self.minimum;
            reason = Reason::AtMinimum;
        } else if desired > self.maximum {
            desired = self.maximum;
            reason = Reason::AtMaximum;
        }
        if desired != current {
            let change = i64::try_from(i128::from(desired) - i128::from(current)).unwrap_or(0);
            state.changes.push(now, change);
        }
        Decision {
            at: now,
            current,
            metric,
            acted_on,
            target: self.target,
            raw,
            stabilized,
            desired,
            reason,
        }
    }

    /// The furthest the size may move in one direction now, or `None` when the direction is
    /// disabled. Limits count from the size at the start of each policy's period (the current
    /// size less the net change within the period, as Kubernetes counts it); a percentage
    /// rounds up going up and down going down.
    fn limit(
        &self,
        state: &ScalingState,
        now: Timestamp,
        current: u64,
        behavior: &Behavior,
        up: bool,
    ) -> Option<u64> {
        if behavior.select == SelectPolicy::Disabled {
            return None;
        }
        if behavior.policies.is_empty() {
            return Some(if up { u64::MAX } else { 0 });
        }
        let mut chosen: Option<u64> = None;
        for policy in &behavior.policies {
            let moved: i128 = state
                .changes
                .within(now, policy.period())
                .map(|&(_, change)| i128::from(change))
                .sum();
            let start = i128::from(current) - moved;
            let limit = match (*policy, up) {
                (RatePolicy::Units { value, .. }, true) => start + i128::from(value),
                (RatePolicy::Units { value, .. }, false) => start - i128::from(value),
                (RatePolicy::Percent { value, .. }, true) => {
                    ceil_div(start * (100 + i128::from(value)), 100)
                }
                (RatePolicy::Percent { value, .. }, false) => {
                    (start * (100 - i128::from(value).min(100))).div_euclid(100)
                }
            };
            let limit = to_u64(limit);
            // "Max" allows the larger change: the higher limit going up, the lower going down.
            let larger_change = |a: u64, b: u64| if up { a.max(b) } else { a.min(b) };
            let smaller_change = |a: u64, b: u64| if up { a.min(b) } else { a.max(b) };
            chosen = Some(match (chosen, behavior.select) {
                (None, _) => limit,
                (Some(c), SelectPolicy::Max) => larger_change(c, limit),
                (Some(c), _) => smaller_change(c, limit),
            });
        }
        chosen
    }
}

impl ScalingRule for ThresholdScaling {
    type State = ScalingState;

    fn new_state(&self) -> ScalingState {
        ThresholdScaling::new_state(self)
    }

    fn recommend(
        &self,
        state: &mut ScalingState,
        now: Timestamp,
        current: u64,
        metric: Quantity,
    ) -> Decision {
        ThresholdScaling::recommend(self, state, now, current, metric)
    }
}
