//! Placement scoring: how a ledger ranks the resources that can hold a requirement (or a
//! co-located group of requirements).
//!
//! Scores are integers (parts per million), so placement is exact and deterministic: the same
//! state always gives the same choice, and ties go to the resource registered first.

use std::sync::Arc;

use crate::quantity::Quantity;
use crate::reservation::ReservationStrategy;
use crate::resource::{Resource, ResourceType};

/// One dimension of a placement: what is asked of one capacity and what it has.
/// All amounts are in the capacity's unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DimensionFit {
    /// Which capacity.
    pub resource_type: ResourceType,
    /// What the requirement (or the sum of co-located requirements) asks.
    pub requested: Quantity,
    /// What is free before the placement.
    pub free: Quantity,
    /// The capacity's maximum.
    pub capacity: Quantity,
}

impl DimensionFit {
    /// Whether the request fits.
    pub fn fits(&self) -> bool {
        self.requested <= self.free
    }
}

/// A resource that passed the hard constraints, with the dimensions a placement would use.
#[derive(Clone, Copy, Debug)]
pub struct PlacementCandidate<'a> {
    /// The resource.
    pub resource: &'a Resource,
    /// Its position in registration order (lower wins ties).
    pub order: usize,
    /// One entry per capacity the placement uses.
    pub dimensions: &'a [DimensionFit],
}

/// The highest score a strategy gives; soft preferences and preferred affinity add up to the
/// same again each.
pub const MAX_STRATEGY_SCORE: i64 = 1_000_000;

/// Ranks candidates for a placement.
///
/// Contract: `score` is pure (same candidate, same score) and cheap; it returns `None` when
/// the candidate cannot hold the request (some dimension does not fit), and otherwise a score
/// where higher is better, between 0 and [`MAX_STRATEGY_SCORE`]. The ledger adds preference
/// and affinity scores (each also up to [`MAX_STRATEGY_SCORE`]) and breaks ties by `order`.
pub trait PlacementScorer: Send + Sync {
    /// The candidate's score, or `None` when it cannot hold the request.
    fn score(&self, candidate: &PlacementCandidate<'_>) -> Option<i64>;
}

/// One dimension of a placement in raw thousandths of its unit: what is requested, what is
/// free before the placement, and the capacity with its precomputed inverse.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RawFit {
    /// Requested.
    pub requested: i64,
    /// Free before the placement.
    pub free: i64,
    /// The capacity's maximum.
    pub capacity: i64,
    /// `1 / capacity` (0 for an empty capacity), from [`inverse_capacity`]: a ledger may
    /// compute it once per resource instead of once per placement.
    pub inverse_capacity: f64,
}

impl RawFit {
    /// A dimension, computing the inverse of its capacity.
    pub fn new(requested: i64, free: i64, capacity: i64) -> RawFit {
        RawFit {
            requested,
            free,
            capacity,
            inverse_capacity: inverse_capacity(capacity),
        }
    }
}

/// `1 / capacity` as scores use it (0 for an empty capacity). Scores are computed in floating
/// point, which is deterministic in Rust (IEEE arithmetic, no fused or reordered operations),
/// and rounded to integer parts per million; they rank candidates and never touch accounting.
pub fn inverse_capacity(capacity: i64) -> f64 {
    if capacity <= 0 {
        0.0
    } else {
        1.0 / capacity as f64
    }
}

/// `1 / n` for the dimension counts a resource can have.
const INVERSE_COUNT: [f64; 9] = [
    1.0,
    1.0,
    1.0 / 2.0,
    1.0 / 3.0,
    1.0 / 4.0,
    1.0 / 5.0,
    1.0 / 6.0,
    1.0 / 7.0,
    1.0 / 8.0,
];

#[inline]
fn to_ppm(share: f64) -> i64 {
    (share * MAX_STRATEGY_SCORE as f64) as i64
}

/// A built-in strategy's score of raw dimensions: the one formula behind
/// [`ReservationStrategy`]'s [`PlacementScorer`] implementation, for ledgers that keep their
/// counters as integers and want to skip building [`DimensionFit`]s. (A scan over many
/// candidates chooses the [`Scoring`] once instead.)
#[inline]
pub fn strategy_score(strategy: ReservationStrategy, dimensions: &[RawFit]) -> Option<i64> {
    Scoring::of(strategy).score(dimensions)
}

/// What a built-in strategy computes per resource, chosen once per placement, so that a
/// scan over many candidates does not ask the strategy again for each (see
/// [`Scoring::score`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scoring {
    /// Every fitting candidate scores 0 (greedy, and random fit, whose planner draws).
    Fit,
    /// The mean share of each capacity left free after the placement.
    Balanced,
    /// The mean share of each capacity used after the placement.
    BinPack,
    /// The cosine between the request and the free capacity.
    Aligned,
}

impl Scoring {
    /// The scoring `strategy` uses per resource (see [`ReservationStrategy::per_resource`]).
    pub fn of(strategy: ReservationStrategy) -> Scoring {
        match strategy.per_resource() {
            ReservationStrategy::Balanced => Scoring::Balanced,
            ReservationStrategy::BinPack => Scoring::BinPack,
            ReservationStrategy::Aligned => Scoring::Aligned,
            // Greedy and random fit; `per_resource` maps every other strategy onto these four.
            _ => Scoring::Fit,
        }
    }

    /// The score of `dimensions` in parts per million, or `None` when one does not fit.
    /// Always inlined: with `self` known at the call (a scan that matched on it once) the
    /// choice between formulas disappears from the loop.
    #[inline(always)]
    pub fn score(self, dimensions: &[RawFit]) -> Option<i64> {
        if dimensions.iter().any(|d| d.requested > d.free) {
            return None;
        }
        let left_share =
            |d: &RawFit| d.free.saturating_sub(d.requested).max(0) as f64 * d.inverse_capacity;
        // The usual task (cores and memory) spelled out for a ledger's scan over every
        // candidate: the same operations in the same order as the sums below (which start
        // from -0.0, and -0.0 + x is x), so the same scores, some 15% sooner.
        if let [a, b] = dimensions {
            match self {
                Scoring::Balanced => {
                    let share = left_share(a) + left_share(b);
                    return Some(to_ppm(share * INVERSE_COUNT[2]).clamp(0, MAX_STRATEGY_SCORE));
                }
                Scoring::BinPack => {
                    let share = (1.0 - left_share(a)) + (1.0 - left_share(b));
                    return Some(to_ppm(share * INVERSE_COUNT[2]).clamp(0, MAX_STRATEGY_SCORE));
                }
                Scoring::Fit | Scoring::Aligned => {}
            }
        }
        let inverse_count = INVERSE_COUNT
            .get(dimensions.len())
            .copied()
            .unwrap_or_else(|| 1.0 / dimensions.len() as f64);
        let score = match self {
            Scoring::Fit => 0,
            Scoring::Balanced => {
                to_ppm(dimensions.iter().map(left_share).sum::<f64>() * inverse_count)
            }
            Scoring::BinPack => {
                to_ppm(dimensions.iter().map(|d| 1.0 - left_share(d)).sum::<f64>() * inverse_count)
            }
            Scoring::Aligned => alignment(dimensions),
        };
        Some(score.clamp(0, MAX_STRATEGY_SCORE))
    }
}

/// The cosine between the requested and the free shares of capacity, in parts per million.
fn alignment(dimensions: &[RawFit]) -> i64 {
    let (mut dot, mut requested, mut free) = (0.0f64, 0.0f64, 0.0f64);
    for d in dimensions {
        let r = (d.requested as f64 * d.inverse_capacity).max(0.0);
        let f = (d.free as f64 * d.inverse_capacity).max(0.0);
        dot += r * f;
        requested += r * r;
        free += f * f;
    }
    let norms = requested.sqrt() * free.sqrt();
    if norms == 0.0 {
        return 0;
    }
    to_ppm(dot / norms)
}

/// The most dimensions [`ReservationStrategy`] scores without allocating.
const INLINE_DIMENSIONS: usize = 8;

impl PlacementScorer for ReservationStrategy {
    /// See [`strategy_score`]:
    /// - greedy: every fitting candidate scores 0, so the first registered wins (first fit);
    /// - balanced: the mean share of each capacity left free after the placement;
    /// - bin-pack: the mean share of each capacity used after the placement;
    /// - aligned: the cosine between the request and the free capacity, each as shares of the
    ///   candidate's capacity per dimension, so the resource whose free capacity has the
    ///   request's shape wins (with one dimension every candidate aligns and the first
    ///   registered wins).
    fn score(&self, candidate: &PlacementCandidate<'_>) -> Option<i64> {
        let raw = |d: &DimensionFit| {
            RawFit::new(
                d.requested.as_milli(),
                d.free.as_milli(),
                d.capacity.as_milli(),
            )
        };
        let dims = candidate.dimensions;
        if dims.len() <= INLINE_DIMENSIONS {
            let mut inline = [RawFit::default(); INLINE_DIMENSIONS];
            for (slot, d) in inline.iter_mut().zip(dims) {
                *slot = raw(d);
            }
            strategy_score(*self, &inline[..dims.len()])
        } else {
            strategy_score(*self, &dims.iter().map(raw).collect::<Vec<_>>())
        }
    }
}

impl<T: PlacementScorer + ?Sized> PlacementScorer for &T {
    fn score(&self, candidate: &PlacementCandidate<'_>) -> Option<i64> {
        (**self).score(candidate)
    }
}

impl<T: PlacementScorer + ?Sized> PlacementScorer for Box<T> {
    fn score(&self, candidate: &PlacementCandidate<'_>) -> Option<i64> {
        (**self).score(candidate)
    }
}

impl<T: PlacementScorer + ?Sized> PlacementScorer for Arc<T> {
    fn score(&self, candidate: &PlacementCandidate<'_>) -> Option<i64> {
        (**self).score(candidate)
    }
}

/// Picks the best of `candidates` by `scorer` plus each candidate's extra (soft) score; ties
/// go to the lowest `order`. Returns the index into `candidates`.
pub fn best_candidate<'a, S: PlacementScorer + ?Sized>(
    scorer: &S,
    candidates: impl IntoIterator<Item = (PlacementCandidate<'a>, i64)>,
) -> Option<usize> {
    let mut best: Option<(i64, usize, usize)> = None;
    for (index, (candidate, extra)) in candidates.into_iter().enumerate() {
        let Some(score) = scorer.score(&candidate) else {
            continue;
        };
        let total = score.saturating_add(extra);
        let better = match best {
            None => true,
            Some((best_total, best_order, _)) => {
                total > best_total || (total == best_total && candidate.order < best_order)
            }
        };
        if better {
            best = Some((total, candidate.order, index));
        }
    }
    best.map(|(_, _, index)| index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ResourceCapacity, Unit};

    proptest::proptest! {
        /// Two dimensions are scored by their own branch; it must give what the general sums
        /// give, to the last part per million.
        #[test]
        fn two_dimensions_score_as_the_general_formula(
            dims in proptest::collection::vec((0..2_000_i64, -500..2_000_i64, 0..2_000_i64), 2)
        ) {
            let fits: Vec<RawFit> = dims
                .iter()
                .map(|&(requested, free, capacity)| RawFit::new(requested, free, capacity))
                .collect();
            for strategy in [ReservationStrategy::BinPack, ReservationStrategy::Balanced] {
                // The general sums, as strategy_score writes them for any count.
                let general = (!fits.iter().any(|d| d.requested > d.free)).then(|| {
                    let left = |d: &RawFit| {
                        d.free.saturating_sub(d.requested).max(0) as f64 * d.inverse_capacity
                    };
                    let share: f64 = match strategy {
                        ReservationStrategy::BinPack => fits.iter().map(|d| 1.0 - left(d)).sum(),
                        _ => fits.iter().map(left).sum(),
                    };
                    to_ppm(share * 0.5).clamp(0, MAX_STRATEGY_SCORE)
                });
                proptest::prop_assert_eq!(strategy_score(strategy, &fits), general);
            }
        }
    }

    fn node(name: &str) -> Resource {
        Resource::new(
            name,
            ResourceType::Compute,
            ResourceCapacity::of(10, Unit::CORES).unwrap(),
        )
        .unwrap()
    }

    fn fit(requested: i32, free: i32) -> Vec<DimensionFit> {
        vec![DimensionFit {
            resource_type: ResourceType::Compute,
            requested: requested.into(),
            free: free.into(),
            capacity: 10.into(),
        }]
    }

    /// The candidates for `nodes` with `fits`, each with the extra score `extra(order)`.
    fn candidates<'a>(
        nodes: &'a [Resource],
        fits: &'a [Vec<DimensionFit>],
        extra: impl Fn(usize) -> i64 + Clone + 'a,
    ) -> impl Iterator<Item = (PlacementCandidate<'a>, i64)> + Clone + 'a {
        nodes
            .iter()
            .zip(fits)
            .enumerate()
            .map(move |(order, (resource, dims))| {
                let candidate = PlacementCandidate {
                    resource,
                    order,
                    dimensions: dims,
                };
                (candidate, extra(order))
            })
    }

    /// Which of three nodes with 2, 6 and 9 cores free wins a 2-core request.
    fn winner(strategy: ReservationStrategy) -> Option<usize> {
        let nodes = [node("a"), node("b"), node("c")];
        let fits = [fit(2, 2), fit(2, 6), fit(2, 9)];
        best_candidate(&strategy, candidates(&nodes, &fits, |_| 0))
    }

    #[test]
    fn strategies_pick_as_documented() {
        assert_eq!(winner(ReservationStrategy::Greedy), Some(0));
        assert_eq!(winner(ReservationStrategy::Balanced), Some(2));
        assert_eq!(winner(ReservationStrategy::BinPack), Some(0));
        // One dimension: every candidate aligns perfectly, so the first wins.
        assert_eq!(winner(ReservationStrategy::Aligned), Some(0));
    }

    #[test]
    fn infeasible_candidates_are_skipped_and_extras_count() {
        let nodes = [node("a"), node("b")];
        let fits = [fit(5, 4), fit(5, 9)];
        let all = candidates(&nodes, &fits, |_| 0);
        assert_eq!(
            best_candidate(&ReservationStrategy::BinPack, all.clone()),
            Some(1)
        );
        let first = all.clone().next().map(|(c, _)| c);
        assert_eq!(
            first.and_then(|c| ReservationStrategy::Greedy.score(&c)),
            None
        );

        let fits = [fit(1, 9), fit(1, 9)];
        let with_extra = candidates(&nodes, &fits, |order| if order == 1 { 5 } else { 0 });
        assert_eq!(
            best_candidate(&ReservationStrategy::Greedy, with_extra),
            Some(1)
        );
    }
}
