//! [`ReplicaCalculator`]: how many replicas a metric asks for, as Kubernetes' horizontal pod
//! autoscaler computes it from per-pod samples, including its handling of unready pods and of
//! pods whose metric is missing. Nothing else: no stabilisation, rate limits or bounds (those
//! are [`ThresholdScaling`](crate::ThresholdScaling)'s), so the calculation can be checked on
//! its own.
//!
//! The rules (Kubernetes' `replica_calculator.go`), in exact integer arithmetic:
//! - The usage is taken over the ready pods only: for a utilisation target,
//!   `floor(100 × Σ usage / Σ request)` percent; for an average-value target,
//!   `floor(Σ usage / n)` per pod. The ratio is usage over target.
//! - With no unready pods on a scale-up (ratio above 1) and no pods missing a metric: within
//!   tolerance, the current count stays; else `ceil(ratio × ready pods)`.
//! - Otherwise the ratio is computed again with the missing pods counted at 0 on a scale-up
//!   and at 100% of their request (at the target for an average value, or at the target when
//!   a utilisation target is above 100%) on a scale-down, and, on a scale-up, the unready pods
//!   counted at 0. If that ratio is within tolerance, or points the other way than the first,
//!   the current count stays; else `ceil(new ratio × pods counted)`, unless that would move
//!   against the new ratio's direction, when the current count stays.
//! - `current` (the scale's replica count) is distinct from the number of pods sampled: a
//!   rolling update may run more pods than replicas. The caller drops failed pods and pods
//!   being deleted before asking.

use rm_model::Quantity;

use crate::Error;

/// One pod as the calculator sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodSample {
    /// A ready pod and its metric.
    Ready {
        /// What it uses (for a utilisation target, in the unit of its request).
        usage: Quantity,
        /// What it requests (needed for a utilisation target only).
        request: Quantity,
    },
    /// A pod that is not ready (pending, starting, or still in its CPU initialisation
    /// period): whatever it reports is not trusted.
    Unready {
        /// What it requests (needed for a utilisation target only).
        request: Quantity,
    },
    /// A pod the metrics pipeline reported nothing for.
    Missing {
        /// What it requests (needed for a utilisation target only).
        request: Quantity,
    },
}

impl PodSample {
    /// A ready pod reporting `usage`, with no request (for average-value targets).
    pub fn ready(usage: Quantity) -> PodSample {
        PodSample::Ready {
            usage,
            request: Quantity::ZERO,
        }
    }

    /// An unready pod, with no request.
    pub fn unready() -> PodSample {
        PodSample::Unready {
            request: Quantity::ZERO,
        }
    }

    /// A pod without a metric, with no request.
    pub fn missing() -> PodSample {
        PodSample::Missing {
            request: Quantity::ZERO,
        }
    }

    /// The same pod requesting `request` (for utilisation targets).
    pub fn with_request(self, request: Quantity) -> PodSample {
        match self {
            PodSample::Ready { usage, .. } => PodSample::Ready { usage, request },
            PodSample::Unready { .. } => PodSample::Unready { request },
            PodSample::Missing { .. } => PodSample::Missing { request },
        }
    }

    fn request(self) -> Quantity {
        match self {
            PodSample::Ready { request, .. }
            | PodSample::Unready { request }
            | PodSample::Missing { request } => request,
        }
    }
}

/// What the pods' metric is compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodTarget {
    /// A percentage of the pods' requests (Kubernetes' `Utilization` target of a resource
    /// metric).
    Utilization(u32),
    /// An average value per pod (`AverageValue`, as for pods metrics).
    AverageValue(Quantity),
}

/// Why the calculation gave the count it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaReason {
    /// The ratio asks for this count.
    Scaled,
    /// The ratio is within tolerance: the current count.
    WithinTolerance,
    /// Counting the unready and missing pods turned the direction around, or left the ratio
    /// within tolerance: the current count.
    Unsettled,
}

/// The calculation's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaCount {
    /// The replica count the metric asks for.
    pub replicas: u64,
    /// The usage over the ready pods: percent of their requests for a utilisation target
    /// (`Quantity::from(50)` is 50%), the average per pod for an average-value target.
    pub usage: Quantity,
    /// Why.
    pub reason: ReplicaReason,
}

/// Kubernetes' replica calculation with a tolerance per direction (10% each by default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaCalculator {
    up_ppm: u64,
    down_ppm: u64,
}

impl Default for ReplicaCalculator {
    fn default() -> ReplicaCalculator {
        ReplicaCalculator::new()
    }
}

/// A usage over a target, as a fraction.
#[derive(Clone, Copy, Debug)]
struct Ratio {
    usage: i128,
    target: i128,
}

impl Ratio {
    fn above_one(self) -> bool {
        self.usage > self.target
    }

    fn below_one(self) -> bool {
        self.usage < self.target
    }
}

pub(crate) fn ceil_div(numerator: i128, denominator: i128) -> i128 {
    (numerator + denominator - 1).div_euclid(denominator)
}

pub(crate) fn to_u64(value: i128) -> u64 {
    u64::try_from(value.max(0)).unwrap_or(u64::MAX)
}

impl ReplicaCalculator {
    /// A calculator with Kubernetes' default tolerance of 10% in both directions.
    pub fn new() -> ReplicaCalculator {
        ReplicaCalculator {
            up_ppm: 100_000,
            down_ppm: 100_000,
        }
    }

    /// The tolerances, in parts per million of the target: how far the ratio may rise above
    /// 1 (`up_ppm`) or fall below it (`down_ppm`) before the count changes.
    pub fn with_tolerance(mut self, up_ppm: u64, down_ppm: u64) -> ReplicaCalculator {
        self.up_ppm = up_ppm;
        self.down_ppm = down_ppm;
        self
    }

    /// Whether `usage / target` lies within tolerance of 1 (a ratio exactly at the tolerance
    /// does).
    pub(crate) fn within(&self, usage: i128, target: i128) -> bool {
        let million = 1_000_000i128;
        let above = usage * million > target * (million + i128::from(self.up_ppm));
        let below = usage * million < target * (million - i128::from(self.down_ppm.min(1_000_000)));
        !above && !below
    }

    /// The count `current` replicas should become when every one of them is ready and the
    /// metric averages `usage` against `target` (the single-metric case).
    pub fn for_average(&self, current: u64, usage: Quantity, target: Quantity) -> ReplicaCount {
        let (u, t) = (i128::from(usage.as_milli()), i128::from(target.as_milli()));
        let (replicas, reason) = if current == 0 || t <= 0 || self.within(u, t) {
            (current, ReplicaReason::WithinTolerance)
        } else {
            (
                to_u64(ceil_div(i128::from(current) * u, t)),
                ReplicaReason::Scaled,
            )
        };
        ReplicaCount {
            replicas,
            usage,
            reason,
        }
    }

    /// The count `current` replicas should become, from one sample per pod.
    ///
    /// Errors: no pods ([`Error::NoPods`]), no ready pod with a metric
    /// ([`Error::NoMetrics`]), a pod without a request under a utilisation target
    /// ([`Error::MissingRequest`], naming its index), or a target that is not positive
    /// ([`Error::InvalidSetting`]).
    pub fn for_pods(
        &self,
        current: u64,
        target: PodTarget,
        pods: &[PodSample],
    ) -> Result<ReplicaCount, Error> {
        let target_value = match target {
            PodTarget::Utilization(percent) => i128::from(percent),
            PodTarget::AverageValue(value) => i128::from(value.as_milli()),
        };
        if target_value <= 0 {
            return Err(Error::InvalidSetting {
                setting: "target",
                reason: "must be positive",
            });
        }
        if pods.is_empty() {
            return Err(Error::NoPods);
        }
        if let PodTarget::Utilization(_) = target
            && let Some(pod) = pods.iter().position(|p| !p.request().is_positive())
        {
            return Err(Error::MissingRequest { pod });
        }
        let ready = pods
            .iter()
            .filter(|p| matches!(p, PodSample::Ready { .. }))
            .count();
        if ready == 0 {
            return Err(Error::NoMetrics);
        }
        let missing = pods
            .iter()
            .filter(|p| matches!(p, PodSample::Missing { .. }))
            .count();
        let unready = pods.len() - ready - missing;
        // The first pass: ready pods only.
        let (first, _) = Self::ratio(target, target_value, pods, |pod| match pod {
            PodSample::Ready { usage, .. } => Some(i128::from(usage.as_milli())),
            _ => None,
        });
        let clamped = i64::try_from(first.usage).unwrap_or(i64::MAX);
        let usage = match target {
            PodTarget::Utilization(_) => Quantity::try_from(clamped).unwrap_or(Quantity::MAX),
            PodTarget::AverageValue(_) => Quantity::from_milli(clamped),
        };
        let answer = |replicas, reason| {
            Ok(ReplicaCount {
                replicas,
                usage,
                reason,
            })
        };
        let scale_up_with_unready = unready > 0 && first.above_one();
        if !scale_up_with_unready && missing == 0 {
            if self.within(first.usage, first.target) {
                return answer(current, ReplicaReason::WithinTolerance);
            }
            let replicas = ceil_div(first.usage * ready as i128, first.target);
            return answer(to_u64(replicas), ReplicaReason::Scaled);
        }
        // The second pass: missing pods at 0 going up and at their request (or the target)
        // going down; unready pods at 0 when going up.
        let (second, counted) = Self::ratio(target, target_value, pods, |pod| match pod {
            PodSample::Ready { usage, .. } => Some(i128::from(usage.as_milli())),
            PodSample::Missing { request } if first.below_one() => Some(match target {
                PodTarget::Utilization(percent) => {
                    i128::from(request.as_milli()) * i128::from(percent.max(100)) / 100
                }
                PodTarget::AverageValue(value) => i128::from(value.as_milli()),
            }),
            PodSample::Missing { .. } if first.above_one() => Some(0),
            PodSample::Unready { .. } if scale_up_with_unready => Some(0),
            _ => None,
        });
        if self.within(second.usage, second.target)
            || (first.below_one() && second.above_one())
            || (first.above_one() && second.below_one())
        {
            return answer(current, ReplicaReason::Unsettled);
        }
        let replicas = to_u64(ceil_div(second.usage * counted, second.target));
        if (second.below_one() && replicas > current) || (second.above_one() && replicas < current)
        {
            return answer(current, ReplicaReason::Unsettled);
        }
        answer(replicas, ReplicaReason::Scaled)
    }

    /// The usage of the pods `value` counts (in thousandths), against the target: utilisation
    /// in whole percent of the counted pods' requests, or the average per counted pod, both
    /// rounded down as Kubernetes does; and how many pods it counted.
    fn ratio(
        target: PodTarget,
        target_value: i128,
        pods: &[PodSample],
        value: impl Fn(PodSample) -> Option<i128>,
    ) -> (Ratio, i128) {
        let (mut total, mut requests, mut counted) = (0i128, 0i128, 0i128);
        for &pod in pods {
            if let Some(v) = value(pod) {
                total += v;
                requests += i128::from(pod.request().as_milli());
                counted += 1;
            }
        }
        let usage = match target {
            PodTarget::Utilization(_) if requests > 0 => total * 100 / requests,
            PodTarget::Utilization(_) => 0,
            PodTarget::AverageValue(_) if counted > 0 => total.div_euclid(counted),
            PodTarget::AverageValue(_) => 0,
        };
        (
            Ratio {
                usage,
                target: target_value,
            },
            counted,
        )
    }
}
