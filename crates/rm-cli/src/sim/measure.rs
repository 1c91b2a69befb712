//! The replay's measurements: the placement audit of every GPU grant, the wait histogram and
//! percentiles, and the cluster's capacity per dimension and pool.

use super::*;

/// Whether a grant keeps every part on one node, each GPU item within one device, and each
/// device of an accepted model.
pub(crate) fn placement_ok(
    reservation: &rm_facade::model::Reservation,
    placement_of: &HashMap<String, (String, Option<String>)>,
    models: &[String],
) -> bool {
    let mut node: Option<&str> = None;
    for item in reservation.items.iter() {
        let Some((item_node, model)) = placement_of.get(item.resource.as_str()) else {
            return false;
        };
        if *node.get_or_insert(item_node) != item_node.as_str() || item_node.is_empty() {
            return false;
        }
        if item.resource_type == ResourceType::Gpu {
            if item.amount > Quantity::from_units(1) {
                return false;
            }
            if !models.is_empty() && !model.as_ref().is_some_and(|m| models.contains(m)) {
                return false;
            }
        }
    }
    true
}

/// Waits (milliseconds) counted into buckets from "0 s" to "> 1 h".
pub(super) fn histogram(waits: &[u64]) -> Vec<(String, u64)> {
    const BOUNDS_S: [u64; 11] = [1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, u64::MAX];
    let mut counts = vec![0u64; BOUNDS_S.len() + 1];
    for wait in waits {
        let bucket = if *wait == 0 {
            0
        } else {
            1 + BOUNDS_S
                .iter()
                .position(|bound| *wait <= bound.saturating_mul(1000))
                .unwrap_or(BOUNDS_S.len() - 1)
        };
        counts[bucket] += 1;
    }
    let mut labels = vec!["0 s".to_owned()];
    let mut previous = 0;
    for bound in BOUNDS_S {
        labels.push(if bound == u64::MAX {
            format!("> {}", short(previous))
        } else {
            format!("≤ {}", short(bound))
        });
        previous = bound;
    }
    labels.into_iter().zip(counts).collect()
}

pub(super) fn short(seconds: u64) -> String {
    if seconds >= 3600 {
        format!("{} h", seconds / 3600)
    } else if seconds >= 60 {
        format!("{} min", seconds / 60)
    } else {
        format!("{seconds} s")
    }
}

/// The `p`th percentile (nearest rank) of `sorted` milliseconds, in seconds; 0 for none.
pub(super) fn percentile(sorted: &[u64], p: u8) -> f64 {
    rm_facade::model::nearest_rank(sorted, p).map_or(0.0, |ms| ms as f64 / 1000.0)
}

/// Capacity per accounted dimension from one listing of the ledger's resources: in all, and
/// per pool (by the `group` label).
pub(super) fn capacities(
    manager: &ResourceManager,
    pools: &[String],
) -> Result<(Amounts, Vec<Amounts>), Error> {
    let mut total = [0; 3];
    let mut per_pool = vec![[0; 3]; pools.len()];
    for resource in manager.ledger().resources()? {
        let pool = resource
            .label("group")
            .and_then(|label| pools.iter().position(|pool| pool == label));
        for (d, (resource_type, _)) in TYPES.iter().enumerate() {
            if let Some(capacity) = resource.capacity_of(resource_type) {
                let amount = i128::from(capacity.maximum().as_milli());
                total[d] += amount;
                if let Some(g) = pool {
                    per_pool[g][d] += amount;
                }
            }
        }
    }
    Ok((total, per_pool))
}
