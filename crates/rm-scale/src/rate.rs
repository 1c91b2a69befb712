//! [`RateOfChangeScaling`]: reacts to how fast the load rises or falls, in exact integer
//! arithmetic.
//!
//! The load is `current × metric` (busy units, in thousandths). Each decision compares the
//! load now with the oldest load remembered within `window`, projects the same rate of
//! change `horizon` ahead, and applies the threshold rule to that projection (per current
//! unit): a load climbing fast gets capacity before utilisation crosses the target, one
//! falling fast lets it go sooner (still through the scale-down stabilisation window). With
//! no earlier sample in the window it is the threshold rule.

use std::time::Duration;

use rm_model::{Quantity, Timestamp};

use crate::ring::Ring;
use crate::{Decision, Error, Reason, ScalingRule, ScalingState, ThresholdScaling};

/// Rate-of-change scaling: the threshold rule applied to the load projected `horizon` ahead
/// at the rate seen over `window`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateOfChangeScaling {
    limits: ThresholdScaling,
    window: Duration,
    horizon: Duration,
    samples: usize,
}

/// What [`RateOfChangeScaling`] remembers per target: recent loads and the threshold rule's
/// state.
#[derive(Clone, Debug)]
pub struct RateState {
    loads: Ring<i128>,
    scaling: ScalingState,
}

pub(crate) fn load(current: u64, metric: Quantity) -> i128 {
    i128::from(current).saturating_mul(i128::from(metric.as_milli()))
}

/// The metric per current unit that carries `load`, rounded up to a thousandth.
pub(crate) fn per_unit(load: i128, current: u64) -> Quantity {
    if current == 0 {
        return Quantity::ZERO;
    }
    let current = i128::from(current);
    let milli = (load.max(0) + current - 1) / current;
    Quantity::from_milli(i64::try_from(milli).unwrap_or(i64::MAX))
}

impl RateOfChangeScaling {
    /// Projects the rate of change seen over `window` `horizon` ahead, then decides with
    /// `limits` (its target, tolerance, stabilisation, rate policies and bounds). Fails on a
    /// zero window or horizon.
    pub fn new(
        limits: ThresholdScaling,
        window: Duration,
        horizon: Duration,
    ) -> Result<RateOfChangeScaling, Error> {
        if window.is_zero() {
            return Err(Error::InvalidSetting {
                setting: "window",
                reason: "must be longer than zero",
            });
        }
        if horizon.is_zero() {
            return Err(Error::InvalidSetting {
                setting: "horizon",
                reason: "must be longer than zero",
            });
        }
        Ok(RateOfChangeScaling {
            limits,
            window,
            horizon,
            samples: 64,
        })
    }

    /// Remembers up to `samples` loads per target (default 64); size it to cover the window
    /// at the tick rate.
    pub fn with_samples(mut self, samples: usize) -> RateOfChangeScaling {
        self.samples = samples.max(2);
        self
    }
}

impl ScalingRule for RateOfChangeScaling {
    type State = RateState;

    fn new_state(&self) -> RateState {
        RateState {
            loads: Ring::with_capacity(self.samples),
            scaling: self.limits.new_state(),
        }
    }

    fn recommend(
        &self,
        state: &mut RateState,
        now: Timestamp,
        current: u64,
        metric: Quantity,
    ) -> Decision {
        let load_now = load(current, metric);
        let oldest = state.loads.within(now, self.window).last().copied();
        state.loads.push(now, load_now);
        let horizon = i128::from(u64::try_from(self.horizon.as_nanos()).unwrap_or(u64::MAX));
        // With no earlier sample in the window there is no rate: the observation decides.
        let acted_on = oldest
            .map(|(then, load_then)| {
                let elapsed = now.saturating_duration_since(then).as_nanos();
                (i128::try_from(elapsed).unwrap_or(i128::MAX), load_then)
            })
            .filter(|&(elapsed, _)| elapsed > 0)
            .map_or(metric, |(elapsed, load_then)| {
                let rise = (load_now - load_then).saturating_mul(horizon) / elapsed;
                per_unit(load_now.saturating_add(rise).max(0), current)
            });
        self.limits.settle(
            &mut state.scaling,
            now,
            current,
            metric,
            acted_on,
            Reason::Trend,
        )
    }
}
