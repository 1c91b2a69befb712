use std::time::Duration;

use proptest::prelude::*;
use rm_model::{Quantity, Timestamp};
use rm_scale::{Behavior, Error, RatePolicy, Reason, SelectPolicy, ThresholdScaling};

fn at(seconds: u64) -> Timestamp {
    Timestamp::ZERO + Duration::from_secs(seconds)
}

fn percent(value: i32) -> Quantity {
    Quantity::from_units(value)
}

fn decide(rule: &ThresholdScaling, current: u64, metric: Quantity) -> rm_scale::Decision {
    let mut state = rule.new_state();
    rule.recommend(&mut state, at(0), current, metric)
}

#[test]
fn three_units_at_50_percent_with_a_30_percent_target_become_five() {
    let rule = ThresholdScaling::new(percent(30), 1, 100).unwrap();
    let decision = decide(&rule, 3, percent(50));
    assert_eq!(
        (decision.raw, decision.desired, decision.reason),
        (5, 5, Reason::Metric)
    );
}

#[test]
fn five_units_at_28_percent_with_a_50_percent_target_become_three() {
    let rule = ThresholdScaling::new(percent(50), 1, 100).unwrap();
    let decision = decide(&rule, 5, percent(28));
    assert_eq!(
        (decision.raw, decision.desired, decision.reason),
        (3, 3, Reason::Metric)
    );
}

#[test]
fn a_ratio_within_tolerance_changes_nothing() {
    let rule = ThresholdScaling::new(percent(50), 1, 100).unwrap();
    for metric in [percent(50), percent(52), percent(47)] {
        let decision = decide(&rule, 10, metric);
        assert_eq!(
            (decision.desired, decision.reason),
            (10, Reason::WithinTolerance),
            "{metric}"
        );
    }
}

#[test]
fn a_ratio_exactly_at_the_tolerance_changes_nothing_and_just_past_it_scales() {
    let rule = ThresholdScaling::new(percent(50), 1, 100).unwrap();
    // 10% tolerance: 55 / 50 = 1.1 and 45 / 50 = 0.9 are at the boundary.
    assert_eq!(
        decide(&rule, 10, percent(55)).reason,
        Reason::WithinTolerance
    );
    assert_eq!(
        decide(&rule, 10, percent(45)).reason,
        Reason::WithinTolerance
    );
    assert_eq!(decide(&rule, 10, Quantity::from_milli(55_001)).desired, 12);
    assert_eq!(decide(&rule, 10, Quantity::from_milli(44_999)).desired, 9);
}

#[test]
fn tolerances_are_per_direction() {
    let up = Behavior {
        tolerance_ppm: 0,
        ..Behavior::scale_up_default()
    };
    let rule = ThresholdScaling::new(percent(50), 1, 100)
        .unwrap()
        .with_scale_up(up);
    assert_eq!(decide(&rule, 10, percent(52)).desired, 11);
    assert_eq!(
        decide(&rule, 10, percent(47)).reason,
        Reason::WithinTolerance
    );
}

#[test]
fn default_policies_let_three_units_asked_to_become_twenty_grow_to_seven_per_period() {
    let rule = ThresholdScaling::new(percent(30), 1, 100).unwrap();
    let mut state = rule.new_state();
    let first = rule.recommend(&mut state, at(0), 3, percent(200));
    assert_eq!(
        (first.raw, first.desired, first.reason),
        (20, 7, Reason::RateLimited)
    );
    // Later in the same period the limit still counts from 3: no further growth.
    let again = rule.recommend(&mut state, at(5), 7, Quantity::from_milli(85_700));
    assert_eq!(
        (again.raw, again.desired, again.reason),
        (20, 7, Reason::RateLimited)
    );
    // Once the period has passed, the limit counts from 7: +100% is the larger change.
    let next = rule.recommend(&mut state, at(15), 7, Quantity::from_milli(85_700));
    assert_eq!((next.desired, next.reason), (14, Reason::RateLimited));
    let last = rule.recommend(&mut state, at(30), 14, Quantity::from_milli(42_857));
    assert_eq!(
        (last.raw, last.desired, last.reason),
        (20, 20, Reason::Metric)
    );
}

#[test]
fn select_min_takes_the_smaller_change_and_disabled_takes_none() {
    let min = Behavior {
        select: SelectPolicy::Min,
        ..Behavior::scale_up_default()
    };
    let rule = ThresholdScaling::new(percent(30), 1, 100)
        .unwrap()
        .with_scale_up(min);
    assert_eq!(decide(&rule, 3, percent(200)).desired, 6);

    let disabled = Behavior {
        select: SelectPolicy::Disabled,
        ..Behavior::scale_down_default()
    };
    let rule = ThresholdScaling::new(percent(50), 1, 100)
        .unwrap()
        .with_scale_down(disabled);
    let decision = decide(&rule, 5, percent(10));
    assert_eq!(
        (decision.desired, decision.reason),
        (5, Reason::DirectionDisabled)
    );
}

#[test]
fn percent_limits_round_down_when_shrinking() {
    let down = Behavior {
        stabilization: Duration::ZERO,
        policies: vec![RatePolicy::Percent {
            value: 50,
            period: Duration::from_secs(60),
        }],
        select: SelectPolicy::Max,
        tolerance_ppm: 100_000,
    };
    let rule = ThresholdScaling::new(percent(50), 1, 100)
        .unwrap()
        .with_scale_down(down);
    // 5 units may lose 50%: 2.5 rounds down to 2 units left.
    let decision = decide(&rule, 5, percent(5));
    assert_eq!(
        (decision.desired, decision.reason),
        (2, Reason::RateLimited)
    );
}

#[test]
fn scale_down_waits_for_the_highest_recommendation_in_its_window() {
    let rule = ThresholdScaling::new(percent(50), 1, 100).unwrap();
    let mut state = rule.new_state();
    assert_eq!(
        rule.recommend(&mut state, at(0), 10, percent(50)).desired,
        10
    );
    let held = rule.recommend(&mut state, at(60), 10, percent(25));
    assert_eq!(
        (held.raw, held.desired, held.reason),
        (5, 10, Reason::StabilizedDown)
    );
    // After 300 s the recommendation of 10 has left the window.
    let released = rule.recommend(&mut state, at(301), 10, percent(25));
    assert_eq!((released.desired, released.reason), (5, Reason::Metric));
}

#[test]
fn scale_up_takes_the_lowest_recommendation_in_its_window() {
    let up = Behavior {
        stabilization: Duration::from_secs(60),
        ..Behavior::scale_up_default()
    };
    let rule = ThresholdScaling::new(percent(50), 1, 100)
        .unwrap()
        .with_scale_up(up);
    let mut state = rule.new_state();
    rule.recommend(&mut state, at(0), 10, percent(50));
    let spike = rule.recommend(&mut state, at(10), 10, percent(80));
    assert_eq!(
        (spike.raw, spike.desired, spike.reason),
        (16, 10, Reason::StabilizedUp)
    );
    let sustained = rule.recommend(&mut state, at(61), 10, percent(80));
    assert_eq!(sustained.desired, 16);
}

#[test]
fn minimum_and_maximum_bound_the_decision() {
    let rule = ThresholdScaling::new(percent(30), 2, 6).unwrap();
    let high = decide(&rule, 3, percent(100));
    assert_eq!((high.desired, high.reason), (6, Reason::AtMaximum));
    let rule = ThresholdScaling::new(percent(50), 2, 6).unwrap();
    let low = decide(&rule, 5, percent(1));
    assert_eq!((low.desired, low.reason), (2, Reason::AtMinimum));
}

#[test]
fn bad_settings_are_refused_by_name() {
    assert_eq!(
        ThresholdScaling::new(Quantity::ZERO, 1, 2),
        Err(Error::InvalidSetting {
            setting: "target",
            reason: "must be positive"
        })
    );
    assert!(matches!(
        ThresholdScaling::new(percent(50), 3, 2),
        Err(Error::InvalidSetting {
            setting: "minimum",
            ..
        })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever the inputs, the decision stays within the bounds and never moves against the
    /// metric.
    #[test]
    fn decisions_stay_in_bounds_and_follow_the_metric(
        minimum in 0u64..10,
        extra in 0u64..50,
        target in 1i64..200_000,
        samples in proptest::collection::vec((0u64..60, 0i64..400_000), 1..30),
    ) {
        let maximum = minimum + extra;
        let rule = ThresholdScaling::new(Quantity::from_milli(target), minimum, maximum).unwrap();
        let mut state = rule.new_state();
        let mut current = minimum;
        let mut now = 0;
        for (step, metric) in samples {
            now += step;
            let decision = rule.recommend(&mut state, at(now), current, Quantity::from_milli(metric));
            prop_assert!(decision.desired >= minimum && decision.desired <= maximum);
            let inside = current >= minimum && current <= maximum;
            if inside && metric > target {
                prop_assert!(decision.desired >= current);
            }
            if inside && metric < target {
                prop_assert!(decision.desired <= current);
            }
            current = decision.desired;
        }
    }
}
