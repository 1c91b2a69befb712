use std::collections::VecDeque;
use std::time::Duration;

use rm_model::{Quantity, Timestamp};
use rm_scale::{
    Decision, Error, PredictiveScaling, RateOfChangeScaling, Reason, ScalingRule, ThresholdScaling,
};

const TICK: Duration = Duration::from_secs(15);

fn at(tick: u64) -> Timestamp {
    Timestamp::ZERO + TICK * u32::try_from(tick).unwrap()
}

fn limits() -> ThresholdScaling {
    ThresholdScaling::new(Quantity::from_units(60), 1, 1_000).unwrap()
}

/// A synthetic periodic load with a trend, in busy units: a 20-minute wave of ±20 units on
/// a base of 40 growing by 0.1 unit per tick.
fn load(tick: u64) -> f64 {
    let t = tick as f64;
    40.0 + 0.1 * t + 20.0 * (2.0 * std::f64::consts::PI * t / 80.0).sin()
}

/// Runs `rule` against the load for `ticks` ticks, with new capacity arriving `delay` ticks
/// after it is asked for (removals take effect at once). Returns the ticks spent above the
/// target utilisation and the average capacity.
fn simulate<R: ScalingRule>(rule: &R, ticks: u64, delay: u64) -> (u64, f64) {
    let mut state = rule.new_state();
    let mut running: u64 = 100;
    let mut pending: VecDeque<(u64, u64)> = VecDeque::new();
    let (mut above, mut capacity) = (0, 0u64);
    for tick in 0..ticks {
        while pending.front().is_some_and(|&(due, _)| due <= tick) {
            running = pending.pop_front().unwrap().1;
        }
        let busy = (load(tick) * 1_000.0).round() as i64;
        let utilisation = Quantity::from_milli(busy * 100 / i64::try_from(running).unwrap());
        if utilisation > Quantity::from_units(60) {
            above += 1;
        }
        capacity += running;
        let decision = rule.recommend(&mut state, at(tick), running, utilisation);
        if decision.desired < running {
            running = decision.desired;
            pending.clear();
        } else if decision.desired > running {
            pending.push_back((tick + delay, decision.desired));
        }
    }
    (above, capacity as f64 / ticks as f64)
}

#[test]
#[expect(
    clippy::print_stderr,
    reason = "the comparison's figures go to docs/performance.md"
)]
fn predictive_beats_threshold_on_a_periodic_load_with_a_trend() {
    let (ticks, delay) = (800, 4);
    let threshold = limits();
    let predictive = PredictiveScaling::new(limits(), TICK * 4)
        .with_season(80)
        .unwrap();
    let (threshold_above, threshold_capacity) = simulate(&threshold, ticks, delay);
    let (predictive_above, predictive_capacity) = simulate(&predictive, ticks, delay);
    let rate = RateOfChangeScaling::new(limits(), TICK * 4, TICK * 4).unwrap();
    let (rate_above, rate_capacity) = simulate(&rate, ticks, delay);
    eprintln!(
        "of {ticks} ticks, above target / average capacity: threshold {threshold_above} / \
         {threshold_capacity:.1}, predictive {predictive_above} / {predictive_capacity:.1}, \
         rate of change {rate_above} / {rate_capacity:.1}"
    );
    assert!(predictive_above < threshold_above);
    assert!(predictive_capacity <= threshold_capacity * 1.1);
}

#[test]
fn predictive_is_the_threshold_rule_while_history_is_short() {
    let predictive = PredictiveScaling::new(limits(), TICK * 4)
        .with_season(80)
        .unwrap();
    let threshold = limits();
    let (mut forecast_state, mut threshold_state) = (predictive.new_state(), threshold.new_state());
    for tick in 0..159 {
        let metric = Quantity::from_units(30 + i32::try_from(tick % 50).unwrap());
        let a: Decision = predictive.recommend(&mut forecast_state, at(tick), 10, metric);
        let b = threshold.recommend(&mut threshold_state, at(tick), 10, metric);
        assert_eq!(a, b, "tick {tick}");
    }
    assert!(!forecast_state.is_fitted());
}

#[test]
fn predictive_scales_ahead_of_a_rising_trend_and_finds_the_season() {
    let predictive = PredictiveScaling::new(limits(), TICK * 8);
    let mut state = predictive.new_state();
    // Load rising by 1 unit per tick on 10 units: utilisation climbs 10% per tick.
    let mut last = None;
    for tick in 0..4u64 {
        let metric = Quantity::from_units(i32::try_from(30 + 10 * tick).unwrap());
        last = Some(predictive.recommend(&mut state, at(tick), 10, metric));
    }
    let decision = last.unwrap();
    assert!(state.is_fitted());
    // 60% now asks for nothing, but 8 ticks ahead the load is 14 units: 24 at 60%.
    assert_eq!(decision.reason, Reason::RateLimited);
    assert!(
        decision.raw > 10 && decision.acted_on > decision.metric,
        "{decision:?}"
    );

    let seasonal = PredictiveScaling::new(limits(), TICK)
        .with_season(80)
        .unwrap();
    let mut state = seasonal.new_state();
    for tick in 0..200 {
        let busy = (load(tick) * 1_000.0) as i64;
        seasonal.recommend(&mut state, at(tick), 100, Quantity::from_milli(busy));
    }
    assert!(state.is_seasonal());
    let flat = PredictiveScaling::new(limits(), TICK)
        .with_season(80)
        .unwrap();
    let mut state = flat.new_state();
    for tick in 0..200u64 {
        // A ramp with pseudo-random noise: a trend, but no season.
        let noise = splitmix(tick) % 10;
        let busy = 50_000 + tick * 300 + noise * 1_000;
        flat.recommend(
            &mut state,
            at(tick),
            100,
            Quantity::from_milli(i64::try_from(busy).unwrap()),
        );
    }
    assert!(!state.is_seasonal());
}

#[test]
fn rate_of_change_projects_the_trend_over_its_horizon() {
    let rule = RateOfChangeScaling::new(limits(), TICK * 4, TICK * 4).unwrap();
    let mut state = rule.new_state();
    // First sample: nothing to compare with, so the threshold rule (60% is on target).
    let first = rule.recommend(&mut state, at(0), 10, Quantity::from_units(60));
    assert_eq!(first.reason, Reason::WithinTolerance);
    // 60% to 66% over one tick (within tolerance by itself): projected 4 ticks ahead, 90%
    // per unit, so 15 units at 60%.
    let rising = rule.recommend(&mut state, at(1), 10, Quantity::from_units(66));
    assert_eq!(rising.acted_on, Quantity::from_units(90));
    assert_eq!(
        (rising.raw, rising.desired, rising.reason),
        (15, 15, Reason::Trend)
    );
    // Steady load: no trend, the observation decides.
    let mut state = rule.new_state();
    for tick in 0..3 {
        let steady = rule.recommend(&mut state, at(tick), 10, Quantity::from_units(90));
        assert_eq!(
            (steady.acted_on, steady.raw),
            (Quantity::from_units(90), 15)
        );
    }
}

#[test]
fn rate_of_change_lets_go_sooner_when_the_load_falls_fast() {
    let rule = RateOfChangeScaling::new(limits(), TICK * 4, TICK * 2).unwrap();
    let mut state = rule.new_state();
    rule.recommend(&mut state, at(0), 10, Quantity::from_units(60));
    let falling = rule.recommend(&mut state, at(1), 10, Quantity::from_units(45));
    // 45% less 2 × 15% projects to 15%: 3 units at 60%.
    assert_eq!(
        (falling.acted_on, falling.raw),
        (Quantity::from_units(15), 3)
    );
}

#[test]
fn bad_forecast_settings_are_refused_by_name() {
    assert!(matches!(
        RateOfChangeScaling::new(limits(), Duration::ZERO, TICK),
        Err(Error::InvalidSetting {
            setting: "window",
            ..
        })
    ));
    assert!(matches!(
        PredictiveScaling::new(limits(), TICK).with_season(1),
        Err(Error::InvalidSetting {
            setting: "season",
            ..
        })
    ));
    assert!(matches!(
        PredictiveScaling::new(limits(), TICK).with_smoothing(0.5, 1.5, 0.5),
        Err(Error::InvalidSetting {
            setting: "trend smoothing",
            ..
        })
    ));
}

/// A well-mixed hash of `x` (SplitMix64's finaliser): noise without a period.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
