//! [`PredictiveScaling`]: forecasts the load from its history and scales ahead of it.
//!
//! The load is `current × metric` (busy units). Each tick feeds it to Holt's linear trend
//! method (exponential smoothing of a level and a trend), with an additive seasonal
//! component (Holt–Winters) when a season length is configured and the first two seasons of
//! history correlate at that lag. The rule then acts on the larger of the load now and the
//! highest forecast up to the lead time ahead (counted in ticks of the observed interval),
//! per current unit, through the threshold rule's tolerance, stabilisation, rate policies
//! and bounds. Until the history is long enough to fit (two samples, or two seasons) it is
//! the threshold rule.
//!
//! The forecast is floating point: it is an estimate that picks a recommendation, never an
//! amount that is accounted. The recommendation itself is an integer as always.

use std::time::Duration;

use rm_model::{Quantity, Timestamp};

use crate::rate::{load, per_unit};
use crate::{Decision, Error, Reason, ScalingRule, ScalingState, ThresholdScaling};

/// Forecasting scaling; see the module docs.
#[derive(Clone, Debug, PartialEq)]
pub struct PredictiveScaling {
    limits: ThresholdScaling,
    lead: Duration,
    level_smoothing: f64,
    trend_smoothing: f64,
    season_smoothing: f64,
    season: usize,
    min_correlation: f64,
}

/// What [`PredictiveScaling`] remembers per target: the fitted level, trend and seasonal
/// offsets, the first seasons of history while fitting, and the threshold rule's state.
#[derive(Clone, Debug)]
pub struct ForecastState {
    level: f64,
    trend: f64,
    seasonal: Box<[f64]>,
    seasonal_on: bool,
    warmup: Vec<f64>,
    warmup_len: usize,
    observed: u64,
    last_at: Option<Timestamp>,
    interval: Duration,
    scaling: ScalingState,
}

impl ForecastState {
    /// Whether the history has been long enough to fit a forecast.
    pub fn is_fitted(&self) -> bool {
        self.observed >= self.warmup_len as u64
    }

    /// Whether a seasonal component was found and is used.
    pub fn is_seasonal(&self) -> bool {
        self.seasonal_on
    }
}

fn smoothing(value: f64, setting: &'static str) -> Result<f64, Error> {
    if value > 0.0 && value <= 1.0 {
        Ok(value)
    } else {
        Err(Error::InvalidSetting {
            setting,
            reason: "must lie in (0, 1]",
        })
    }
}

impl PredictiveScaling {
    /// Forecasts `lead` ahead (how long new capacity takes to be useful) and decides with
    /// `limits`. Defaults: level smoothing 0.5, trend smoothing 0.2, no season.
    pub fn new(limits: ThresholdScaling, lead: Duration) -> PredictiveScaling {
        PredictiveScaling {
            limits,
            lead,
            level_smoothing: 0.5,
            trend_smoothing: 0.2,
            season_smoothing: 0.3,
            season: 0,
            min_correlation: 0.3,
        }
    }

    /// Sets the smoothing factors of the level, the trend and the seasonal offsets, each in
    /// (0, 1]; larger follows recent samples more closely.
    pub fn with_smoothing(
        mut self,
        level: f64,
        trend: f64,
        season: f64,
    ) -> Result<PredictiveScaling, Error> {
        self.level_smoothing = smoothing(level, "level smoothing")?;
        self.trend_smoothing = smoothing(trend, "trend smoothing")?;
        self.season_smoothing = smoothing(season, "season smoothing")?;
        Ok(self)
    }

    /// Looks for a season of `samples` ticks (at least 2): after two seasons of history the
    /// seasonal component is used when the detrended history correlates with itself one
    /// season apart by at least 0.3.
    pub fn with_season(mut self, samples: usize) -> Result<PredictiveScaling, Error> {
        if samples < 2 {
            return Err(Error::InvalidSetting {
                setting: "season",
                reason: "must be at least 2 samples",
            });
        }
        self.season = samples;
        Ok(self)
    }

    /// The metric per current unit that carries the larger of the load now and the highest
    /// forecast up to the lead time ahead.
    fn acted_on(
        &self,
        state: &ForecastState,
        current: u64,
        metric: Quantity,
        load_now: i128,
    ) -> Quantity {
        let steps = self.lead.as_nanos().div_ceil(state.interval.as_nanos());
        let steps = usize::try_from(steps).unwrap_or(usize::MAX).min(MAX_STEPS);
        let peak = (0..=steps)
            .map(|step| self.forecast(state, step))
            .fold(f64::MIN, f64::max);
        if peak.is_finite() && peak > load_now as f64 {
            // `as` saturates; the forecast is an estimate, so rounding it up is safe.
            per_unit(peak.ceil() as i128, current).max(metric)
        } else {
            metric
        }
    }

    /// The season slot of the `index`-th sample.
    fn slot(&self, index: u64) -> usize {
        if self.season == 0 {
            0
        } else {
            (index % self.season as u64) as usize
        }
    }

    fn forecast(&self, state: &ForecastState, steps: usize) -> f64 {
        let seasonal = if state.seasonal_on {
            state.seasonal[self.slot(state.observed + steps as u64)]
        } else {
            0.0
        };
        state.level + state.trend * steps as f64 + seasonal
    }

    fn observe(&self, state: &mut ForecastState, y: f64) {
        let index = state.observed;
        state.observed += 1;
        if state.warmup.len() < state.warmup_len {
            state.warmup.push(y);
            if state.warmup.len() == state.warmup_len {
                self.fit(state);
            }
            return;
        }
        let slot = self.slot(index);
        let offset = if state.seasonal_on {
            state.seasonal[slot]
        } else {
            0.0
        };
        let previous = state.level;
        state.level = self.level_smoothing * (y - offset)
            + (1.0 - self.level_smoothing) * (state.level + state.trend);
        state.trend = self.trend_smoothing * (state.level - previous)
            + (1.0 - self.trend_smoothing) * state.trend;
        if state.seasonal_on {
            state.seasonal[slot] = self.season_smoothing * (y - state.level)
                + (1.0 - self.season_smoothing) * state.seasonal[slot];
        }
    }

    /// Initial level, trend and seasonal offsets from the warm-up history.
    fn fit(&self, state: &mut ForecastState) {
        let history = &state.warmup;
        if self.season == 0 {
            state.level = history[1];
            state.trend = history[1] - history[0];
            return;
        }
        let m = self.season;
        let first = history[..m].iter().sum::<f64>() / m as f64;
        let second = history[m..].iter().sum::<f64>() / m as f64;
        state.trend = (second - first) / m as f64;
        // The level at the last warm-up sample: the second season's mean, carried half a
        // season forward along the trend.
        state.level = second + state.trend * (m as f64 - 1.0) / 2.0;
        for (slot, offset) in state.seasonal.iter_mut().enumerate() {
            let mid = |season: usize| season as f64 * m as f64 + (m as f64 - 1.0) / 2.0;
            let a = history[slot] - (first + state.trend * (slot as f64 - mid(0)));
            let b = history[m + slot] - (second + state.trend * (slot as f64 + m as f64 - mid(1)));
            *offset = (a + b) / 2.0;
        }
        state.seasonal_on = self.correlation(history) >= self.min_correlation;
        if !state.seasonal_on {
            state.seasonal.iter_mut().for_each(|offset| *offset = 0.0);
        }
    }

    /// The autocorrelation one season apart of the history less its least-squares line.
    fn correlation(&self, history: &[f64]) -> f64 {
        let n = history.len() as f64;
        let mean_x = (n - 1.0) / 2.0;
        let mean_y = history.iter().sum::<f64>() / n;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for (x, y) in history.iter().enumerate() {
            sxy += (x as f64 - mean_x) * (y - mean_y);
            sxx += (x as f64 - mean_x) * (x as f64 - mean_x);
        }
        let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
        let residual = |x: usize| history[x] - (mean_y + slope * (x as f64 - mean_x));
        let m = self.season;
        let variance: f64 = (0..history.len()).map(|x| residual(x) * residual(x)).sum();
        if variance <= f64::EPSILON {
            return 0.0;
        }
        let covariance: f64 = (0..history.len() - m)
            .map(|x| residual(x) * residual(x + m))
            .sum();
        covariance / variance
    }
}

/// The most ticks ahead a forecast looks.
const MAX_STEPS: usize = 256;

impl ScalingRule for PredictiveScaling {
    type State = ForecastState;

    fn new_state(&self) -> ForecastState {
        let warmup_len = if self.season > 0 { 2 * self.season } else { 2 };
        ForecastState {
            level: 0.0,
            trend: 0.0,
            seasonal: vec![0.0; self.season.max(1)].into_boxed_slice(),
            seasonal_on: false,
            warmup: Vec::with_capacity(warmup_len),
            warmup_len,
            observed: 0,
            last_at: None,
            interval: Duration::ZERO,
            scaling: self.limits.new_state(),
        }
    }

    fn recommend(
        &self,
        state: &mut ForecastState,
        now: Timestamp,
        current: u64,
        metric: Quantity,
    ) -> Decision {
        let load_now = load(current, metric);
        if let Some(last) = state.last_at {
            state.interval = now.saturating_duration_since(last);
        }
        state.last_at = Some(now);
        self.observe(state, load_now as f64);
        // Until there is history to forecast from, the observation decides.
        let acted_on = if state.is_fitted() && !state.interval.is_zero() {
            self.acted_on(state, current, metric, load_now)
        } else {
            metric
        };
        self.limits.settle(
            &mut state.scaling,
            now,
            current,
            metric,
            acted_on,
            Reason::Forecast,
        )
    }
}
