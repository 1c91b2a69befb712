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

fn mean(dimensions: &[DimensionFit], per_dimension: impl Fn(&DimensionFit) -> i64) -> i64 {
    if dimensions.is_empty() {
        return 0;
    }
    let total: i64 = dimensions.iter().map(per_dimension).sum();
    total / dimensions.len() as i64
}

/// The cosine between the requested and the free shares of capacity, in parts per million.
fn alignment(dimensions: &[DimensionFit]) -> i64 {
    let share = |q: Quantity, d: &DimensionFit| q.parts_per_million_of(d.capacity).max(0) as u128;
    let (mut dot, mut requested, mut free) = (0u128, 0u128, 0u128);
    for d in dimensions {
        let (r, f) = (share(d.requested, d), share(d.free, d));
        dot += r * f;
        requested += r * r;
        free += f * f;
    }
    let norms = requested.isqrt() * free.isqrt();
    if norms == 0 {
        return 0;
    }
    (dot * MAX_STRATEGY_SCORE as u128 / norms).min(MAX_STRATEGY_SCORE as u128) as i64
}

impl PlacementScorer for ReservationStrategy {
    /// - greedy: every fitting candidate scores 0, so the first registered wins (first fit);
    /// - balanced: the mean share of each capacity left free after the placement;
    /// - bin-pack: the mean share of each capacity used after the placement;
    /// - aligned: the cosine between the request and the free capacity, each as shares of the
    ///   candidate's capacity per dimension, so the resource whose free capacity has the
    ///   request's shape wins (with one dimension every candidate aligns and the first
    ///   registered wins).
    fn score(&self, candidate: &PlacementCandidate<'_>) -> Option<i64> {
        let dims = candidate.dimensions;
        if !dims.iter().all(DimensionFit::fits) {
            return None;
        }
        let left = |d: &DimensionFit| d.free.saturating_sub_to_zero(d.requested);
        Some(
            match self {
                ReservationStrategy::Greedy => 0,
                ReservationStrategy::Balanced => {
                    mean(dims, |d| left(d).parts_per_million_of(d.capacity))
                }
                ReservationStrategy::BinPack => mean(dims, |d| {
                    MAX_STRATEGY_SCORE - left(d).parts_per_million_of(d.capacity)
                }),
                ReservationStrategy::Aligned => alignment(dims),
            }
            .clamp(0, MAX_STRATEGY_SCORE),
        )
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
