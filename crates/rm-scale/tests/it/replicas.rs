//! The replica calculation against Kubernetes' own replica-calculator test table
//! (`pkg/controller/podautoscaler/replica_calculator_test.go`), restated as facts: each case
//! names the Kubernetes test it comes from. Kubernetes' pods there have two containers with the
//! same request and usage each; the ratios are the same per pod, so one sample per pod is
//! given here. Failed pods and pods being deleted are dropped by the caller, as the Kubernetes
//! controller's grouping does; pending pods and pods in their CPU initialisation period are
//! unready; for pods metrics (not CPU), readiness is not consulted, so every pod reporting is
//! ready.

use rm_model::{Quantity, Timestamp};
use rm_scale::{
    Behavior, Error, PodSample, PodTarget, ReplicaCalculator, ReplicaReason, ThresholdScaling,
};

fn ready(milli: i64) -> PodSample {
    PodSample::ready(Quantity::from_milli(milli))
}

fn unready() -> PodSample {
    PodSample::unready()
}

fn missing() -> PodSample {
    PodSample::missing()
}

/// Every pod requesting `milli` (CPU, in thousandths of a core).
fn requesting(milli: i64, pods: &[PodSample]) -> Vec<PodSample> {
    pods.iter()
        .map(|p| p.with_request(Quantity::from_milli(milli)))
        .collect()
}

/// (Kubernetes test, current replicas, target %, pods, expected replicas, expected
/// utilisation %)
type UtilizationCase = (&'static str, u64, u32, Vec<PodSample>, u64, i32);

fn utilization_cases() -> Vec<UtilizationCase> {
    let r = |pods: &[PodSample]| requesting(1000, pods);
    vec![
        (
            "ScaleUp",
            3,
            30,
            r(&[ready(300), ready(500), ready(700)]),
            5,
            50,
        ),
        (
            "ScaleUpUnreadyLessScale",
            3,
            30,
            r(&[unready(), ready(500), ready(700)]),
            4,
            60,
        ),
        (
            "ScaleUpHotCpuLessScale",
            3,
            30,
            r(&[unready(), ready(500), ready(700)]),
            4,
            60,
        ),
        (
            "ScaleUpUnreadyNoScale",
            3,
            30,
            r(&[ready(400), unready(), unready()]),
            3,
            40,
        ),
        (
            "ScaleHotCpuNoScale",
            3,
            30,
            r(&[ready(400), unready(), unready()]),
            3,
            40,
        ),
        // Two more pods failed (or are being deleted): dropped before asking.
        (
            "ScaleUpIgnoresFailedPods",
            2,
            30,
            r(&[ready(500), ready(700)]),
            4,
            60,
        ),
        (
            "ScaleUpIgnoresDeletionPods",
            2,
            30,
            r(&[ready(500), ready(700)]),
            4,
            60,
        ),
        (
            "ScaleDown",
            5,
            50,
            r(&[ready(100), ready(300), ready(500), ready(250), ready(250)]),
            3,
            28,
        ),
        (
            "ScaleDownIncludeUnreadyPods",
            5,
            50,
            r(&[ready(100), ready(300), ready(500), unready(), unready()]),
            2,
            30,
        ),
        (
            "ScaleDownExcludeUnscheduledPods",
            5,
            50,
            r(&[ready(100), unready(), unready(), unready(), unready()]),
            1,
            10,
        ),
        (
            "ScaleDownIgnoreHotCpuPods",
            5,
            50,
            r(&[ready(100), ready(300), ready(500), unready(), unready()]),
            2,
            30,
        ),
        (
            "ScaleDownIgnoresFailedPods",
            5,
            50,
            r(&[ready(100), ready(300), ready(500), ready(250), ready(250)]),
            3,
            28,
        ),
        (
            "Tolerance",
            3,
            100,
            vec![
                ready(1010).with_request(Quantity::from_milli(900)),
                ready(1030).with_request(Quantity::from_milli(1000)),
                ready(1020).with_request(Quantity::from_milli(1100)),
            ],
            3,
            102,
        ),
        // The metrics of two pods that do not exist are not given.
        (
            "SuperfluousMetrics",
            4,
            100,
            r(&[ready(4000), ready(9500), ready(3000), ready(7000)]),
            24,
            587,
        ),
        (
            "MissingMetrics",
            4,
            100,
            r(&[ready(400), ready(95), missing(), missing()]),
            3,
            24,
        ),
        (
            "MissingMetricsNoChangeEq",
            2,
            100,
            r(&[ready(1000), missing()]),
            2,
            100,
        ),
        (
            "MissingMetricsNoChangeGt",
            2,
            100,
            r(&[ready(1900), missing()]),
            2,
            190,
        ),
        (
            "MissingMetricsNoChangeLt",
            2,
            100,
            r(&[ready(600), missing()]),
            2,
            60,
        ),
        (
            "MissingMetricsUnreadyChange",
            3,
            50,
            r(&[unready(), ready(450), missing()]),
            3,
            45,
        ),
        (
            "MissingMetricsHotCpuNoChange",
            3,
            50,
            r(&[unready(), ready(450), missing()]),
            3,
            45,
        ),
        (
            "MissingMetricsUnreadyScaleUp",
            3,
            50,
            r(&[unready(), ready(2000), missing()]),
            4,
            200,
        ),
        (
            "MissingMetricsHotCpuScaleUp",
            3,
            50,
            r(&[unready(), ready(2000), missing()]),
            4,
            200,
        ),
        (
            "MissingMetricsUnreadyScaleDown",
            4,
            50,
            r(&[unready(), ready(100), ready(100), missing()]),
            3,
            10,
        ),
        // Three pods run for two replicas; the surge pod has no metric yet.
        (
            "DuringRollingUpdateWithMaxSurge",
            2,
            50,
            r(&[ready(100), ready(100), missing()]),
            2,
            10,
        ),
    ]
}

#[test]
fn utilization_targets_match_kubernetes() {
    let calculator = ReplicaCalculator::new();
    for (name, current, target, pods, replicas, utilization) in utilization_cases() {
        let count = calculator
            .for_pods(current, PodTarget::Utilization(target), &pods)
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(
            (count.replicas, count.usage),
            (replicas, Quantity::from_units(utilization)),
            "{name}"
        );
    }
}

/// TestReplicaCalcComputedToleranceAlgImplementation: ten pods at 150m each with requests
/// around 300m; a 56% target scales to 9, a 55% target (within tolerance) keeps 10.
#[test]
fn computed_tolerance_matches_kubernetes() {
    let requests = [400, 200, 310, 290, 302, 298, 301, 299, 300, 300];
    let pods: Vec<PodSample> = requests
        .iter()
        .map(|&r| ready(150).with_request(Quantity::from_milli(r)))
        .collect();
    let calculator = ReplicaCalculator::new();
    let scaled = calculator
        .for_pods(10, PodTarget::Utilization(56), &pods)
        .unwrap();
    assert_eq!(
        (scaled.replicas, scaled.usage),
        (9, Quantity::from_units(50))
    );
    let kept = calculator
        .for_pods(10, PodTarget::Utilization(55), &pods)
        .unwrap();
    assert_eq!(
        (kept.replicas, kept.reason),
        (10, ReplicaReason::WithinTolerance)
    );
}

/// (Kubernetes test, current replicas, target per pod, levels per pod, expected replicas,
/// expected average) for pods metrics, in thousandths.
type AverageCase = (&'static str, u64, i64, &'static [i64], u64, i64);

#[test]
fn average_value_targets_match_kubernetes() {
    let cases: [AverageCase; 6] = [
        ("ScaleUpCM", 3, 15_000, &[20_000, 10_000, 30_000], 4, 20_000),
        (
            "ScaleUpCMUnreadyHotCpuNoLessScale",
            3,
            15_000,
            &[50_000, 10_000, 30_000],
            6,
            30_000,
        ),
        (
            "ScaleUpCMUnreadyHotCpuScaleWouldScaleDown",
            3,
            15_000,
            &[50_000, 15_000, 30_000],
            7,
            31_666,
        ),
        ("ScaleUpCMExternalNoLabels", 1, 4_400, &[8_600], 2, 8_600),
        ("ScaleDownCM", 5, 20_000, &[12_000; 5], 3, 12_000),
        (
            "ToleranceCM",
            3,
            20_000,
            &[20_000, 21_000, 21_000],
            3,
            20_666,
        ),
    ];
    let calculator = ReplicaCalculator::new();
    for (name, current, target, levels, replicas, average) in cases {
        let pods: Vec<PodSample> = levels.iter().map(|&l| ready(l)).collect();
        let count = calculator
            .for_pods(
                current,
                PodTarget::AverageValue(Quantity::from_milli(target)),
                &pods,
            )
            .unwrap();
        assert_eq!(
            (count.replicas, count.usage),
            (replicas, Quantity::from_milli(average)),
            "{name}"
        );
    }
}

#[test]
fn missing_pods_count_at_the_target_on_a_scale_down_of_an_average_value() {
    // 3 replicas, one reporting 1000 against 2000, two missing: at the target they make the
    // average 1666, a scale-down to ceil(0.833 × 3) = 3, so nothing changes.
    let pods = [ready(1_000), missing(), missing()];
    let count = ReplicaCalculator::new()
        .for_pods(
            3,
            PodTarget::AverageValue(Quantity::from_milli(2_000)),
            &pods,
        )
        .unwrap();
    assert_eq!(count.replicas, 3);
    // A utilisation target above 100% counts missing pods at the target, not at 100%.
    let pods = requesting(1000, &[ready(100), missing()]);
    let count = ReplicaCalculator::new()
        .for_pods(2, PodTarget::Utilization(150), &pods)
        .unwrap();
    // First 10% of 150%; then (100 + 1500) / 2000 = 80% of 150%: ceil(0.533 × 2) = 2.
    assert_eq!((count.replicas, count.reason), (2, ReplicaReason::Scaled));
}

#[test]
fn errors_name_what_is_missing() {
    let calculator = ReplicaCalculator::new();
    // TestReplicaCalcEmptyMetrics and TestReplicaCalcDisjointResourcesMetrics: no pod the
    // calculation knows reported a metric.
    assert_eq!(
        calculator.for_pods(
            4,
            PodTarget::Utilization(100),
            &requesting(1000, &[missing(); 3])
        ),
        Err(Error::NoMetrics)
    );
    assert_eq!(
        calculator.for_pods(
            1,
            PodTarget::Utilization(100),
            &requesting(1000, &[missing()])
        ),
        Err(Error::NoMetrics)
    );
    // TestReplicaCalcEmptyCPURequest.
    assert_eq!(
        calculator.for_pods(1, PodTarget::Utilization(100), &[ready(200)]),
        Err(Error::MissingRequest { pod: 0 })
    );
    assert_eq!(
        calculator.for_pods(1, PodTarget::Utilization(100), &[]),
        Err(Error::NoPods)
    );
    assert!(matches!(
        calculator.for_pods(1, PodTarget::Utilization(0), &[ready(1)]),
        Err(Error::InvalidSetting { .. })
    ));
}

/// The same calculation through the full rule: with `Behavior::immediate` nothing else
/// intervenes; with the defaults, a seeded stabilisation window holds a scale-down back.
#[test]
fn the_rule_acts_on_per_pod_samples_and_a_seeded_window() {
    let at = |s: u64| Timestamp::ZERO + std::time::Duration::from_secs(s);
    let immediate = ThresholdScaling::new(Quantity::from_units(50), 1, 100)
        .unwrap()
        .with_scale_up(Behavior::immediate())
        .with_scale_down(Behavior::immediate());
    for (name, current, target, pods, replicas, _) in utilization_cases() {
        let rule = ThresholdScaling::new(Quantity::from_units(target as i32), 1, 100)
            .unwrap()
            .with_scale_up(Behavior::immediate())
            .with_scale_down(Behavior::immediate());
        let mut state = rule.new_state();
        let decision = rule
            .recommend_pods(
                &mut state,
                at(0),
                current,
                PodTarget::Utilization(target),
                &pods,
            )
            .unwrap();
        assert_eq!(decision.desired, replicas, "{name}");
    }
    let pods = requesting(
        1000,
        &[ready(100), ready(300), ready(500), ready(250), ready(250)],
    );
    let mut state = immediate.new_state();
    let decision = immediate
        .recommend_pods(&mut state, at(0), 5, PodTarget::Utilization(50), &pods)
        .unwrap();
    assert_eq!(decision.desired, 3);

    // Kubernetes' default scale-down window (300 s), seeded with a recommendation of 5 made
    // 100 s ago by an earlier process: the fall to 3 waits.
    let rule = ThresholdScaling::new(Quantity::from_units(50), 1, 100).unwrap();
    let mut state = rule.new_state();
    state.record_recommendation(at(0), 5);
    let held = rule
        .recommend_pods(&mut state, at(100), 5, PodTarget::Utilization(50), &pods)
        .unwrap();
    assert_eq!((held.raw, held.desired), (3, 5));
    let later = rule
        .recommend_pods(&mut state, at(301), 5, PodTarget::Utilization(50), &pods)
        .unwrap();
    assert_eq!(later.desired, 3);
    let remembered: Vec<u64> = state.recommendations().map(|(_, r)| r).collect();
    assert_eq!(remembered, [5, 3, 3]);
    // A failed calculation changes nothing.
    let before: Vec<_> = state.recommendations().collect();
    assert!(
        rule.recommend_pods(
            &mut state,
            at(302),
            5,
            PodTarget::Utilization(50),
            &[missing()]
        )
        .is_err()
    );
    assert_eq!(state.recommendations().collect::<Vec<_>>(), before);
}
