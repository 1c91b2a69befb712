//! Shared arithmetic of reports: exact parts per million and nearest-rank percentiles, written
//! once so that the simulator, the monitor and the facade cannot disagree.

/// `part / whole` in parts per million, rounded down: 0 when either is not positive (a
/// negative part is nothing held, not a wrapped-around maximum), saturating at `u64::MAX`.
///
/// ```
/// assert_eq!(rm_model::ppm(1, 4), 250_000);
/// assert_eq!(rm_model::ppm(-5, 4), 0);
/// assert_eq!(rm_model::ppm(3, 0), 0);
/// ```
pub fn ppm(part: i128, whole: i128) -> u64 {
    if part <= 0 || whole <= 0 {
        return 0;
    }
    u64::try_from(part.saturating_mul(1_000_000) / whole).unwrap_or(u64::MAX)
}

/// The `percentile` (0 to 100, larger clamped to 100) of `sorted` (ascending) by the
/// nearest-rank method: the smallest value with at least that share of the values at or
/// below it; `None` when `sorted` is empty. Percentile 0 gives the smallest value.
///
/// ```
/// let sorted = [10, 20, 30, 40];
/// assert_eq!(rm_model::nearest_rank(&sorted, 50), Some(20));
/// assert_eq!(rm_model::nearest_rank(&sorted, 99), Some(40));
/// assert_eq!(rm_model::nearest_rank::<u64>(&[], 50), None);
/// ```
pub fn nearest_rank<T: Copy>(sorted: &[T], percentile: u8) -> Option<T> {
    let rank = (usize::from(percentile.min(100)) * sorted.len())
        .div_ceil(100)
        .max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_per_million_round_down_and_never_wrap() {
        assert_eq!(ppm(1, 3), 333_333);
        assert_eq!(ppm(2, 3), 666_666);
        assert_eq!(ppm(3, 3), 1_000_000);
        assert_eq!(ppm(6, 3), 2_000_000, "over-use above a million");
        assert_eq!(ppm(-1, 3), 0, "a negative part is none, not u64::MAX");
        assert_eq!(ppm(1, -3), 0);
        assert_eq!(ppm(i128::MAX, 1), u64::MAX, "saturates");
    }

    #[test]
    fn nearest_rank_matches_its_definition() {
        let values: Vec<u32> = (1..=100).collect();
        for p in 1..=100_u8 {
            assert_eq!(nearest_rank(&values, p), Some(u32::from(p)), "p{p}");
        }
        assert_eq!(nearest_rank(&values, 0), Some(1));
        assert_eq!(nearest_rank(&values, 200), Some(100));
        assert_eq!(nearest_rank(&[7], 1), Some(7));
        assert_eq!(nearest_rank(&[1, 2, 3], 50), Some(2));
    }
}
