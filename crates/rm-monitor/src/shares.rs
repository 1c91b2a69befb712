//! Class shares: what each requester class holds against what its weight entitles it to,
//! the `rm_share_ratio` and `rm_entitled_share_ratio` gauges and the dashboard's fairness.

use std::collections::BTreeMap;

use rm_model::{LedgerSnapshot, RequesterId, ResourceType, ppm};

use crate::collector::ShareSample;

/// The class of requesters that belong to no configured class.
pub const OTHER_CLASS: &str = "other";

/// Each requester class's dominant share of capacity (the largest, over resource types, of
/// what its members hold over the type's total) against its weight's entitlement (its weight
/// over the sum of the weights of the classes that count), from one snapshot. `classes` maps
/// requesters to their class; everyone else is [`OTHER_CLASS`]. Every configured class (in
/// `classes` or `class_weights`) and `other` always get a sample, so the set of series does
/// not change with who holds what; `other` is entitled only while someone outside the
/// classes holds capacity. Weights default to 1.
pub fn class_shares(
    snapshot: &LedgerSnapshot,
    classes: &BTreeMap<RequesterId, String>,
    class_weights: &BTreeMap<String, u32>,
) -> Vec<ShareSample> {
    let mut totals: BTreeMap<&ResourceType, i128> = BTreeMap::new();
    for usage in &snapshot.usage {
        *totals.entry(&usage.resource_type).or_default() +=
            usage.unit.to_base_milli(usage.capacity);
    }
    // Every configured class and `other` always have a series, so the set of series does
    // not change with who holds what.
    let mut held: BTreeMap<&str, BTreeMap<&ResourceType, i128>> = BTreeMap::new();
    held.entry(OTHER_CLASS).or_default();
    for class in classes.values() {
        held.entry(class.as_str()).or_default();
    }
    for class in class_weights.keys() {
        held.entry(class.as_str()).or_default();
    }
    for reservation in &snapshot.active {
        let class = classes
            .get(&reservation.requester)
            .map_or(OTHER_CLASS, String::as_str);
        let by_type = held.entry(class).or_default();
        for item in reservation.items.iter() {
            *by_type.entry(&item.resource_type).or_default() +=
                item.unit.to_base_milli(item.amount);
        }
    }
    let weight = |class: &str| i128::from(*class_weights.get(class).unwrap_or(&1));
    // Configured classes are always entitled; `other` only while someone outside them
    // holds capacity (an empty `other` would otherwise dilute every class's share).
    let counts = |class: &str, by_type: &BTreeMap<&ResourceType, i128>| {
        class != OTHER_CLASS || by_type.values().any(|amount| *amount > 0)
    };
    let total_weight: i128 = held
        .iter()
        .filter(|(class, by_type)| counts(class, by_type))
        .map(|(class, _)| weight(class))
        .sum();
    held.iter()
        .map(|(class, by_type)| {
            let share_ppm = by_type
                .iter()
                .map(|(resource_type, amount)| {
                    ppm(*amount, totals.get(resource_type).copied().unwrap_or(0))
                })
                .max()
                .unwrap_or(0);
            ShareSample {
                class: (*class).to_owned(),
                share_ppm,
                entitled_ppm: if counts(class, by_type) {
                    ppm(weight(class), total_weight)
                } else {
                    0
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rm_model::{
        CapacityUsage, FencingToken, Labels, Priority, Quantity, Reservation, ReservationId,
        ReservationItem, ReservationState, ResourceName, Timestamp, Unit,
    };

    use super::*;

    fn usage(capacity: i64) -> CapacityUsage {
        CapacityUsage {
            resource: ResourceName::new("n").unwrap(),
            resource_type: ResourceType::Compute,
            unit: Unit::CORES,
            capacity: Quantity::from_units(capacity as i32),
            external: Quantity::ZERO,
            pending: Quantity::ZERO,
            confirmed: Quantity::ZERO,
            leased: Quantity::ZERO,
            free: Quantity::from_units(capacity as i32),
            draining: false,
        }
    }

    fn hold(requester: &str, cores: i32) -> Reservation {
        Reservation {
            id: ReservationId::generate(),
            requester: RequesterId::new(requester).unwrap(),
            priority: Priority(0),
            state: ReservationState::Confirmed,
            items: Arc::new([ReservationItem {
                requirement: 0,
                resource: ResourceName::new("n").unwrap(),
                resource_type: ResourceType::Compute,
                amount: Quantity::from_units(cores),
                unit: Unit::CORES,
                minimum: None,
            }]),
            fencing_token: FencingToken(1),
            created_at: Timestamp::ZERO,
            updated_at: Timestamp::ZERO,
            expires_at: None,
            labels: Labels::new(),
            preemptible: false,
        }
    }

    #[test]
    fn shares_are_dominant_and_entitlements_follow_weights() {
        let classes = BTreeMap::from([
            (RequesterId::new("etl-1").unwrap(), "etl".to_owned()),
            (RequesterId::new("web-1").unwrap(), "web".to_owned()),
        ]);
        let weights = BTreeMap::from([("etl".to_owned(), 1), ("web".to_owned(), 3)]);
        let mut snapshot = LedgerSnapshot {
            taken_at: Timestamp::ZERO,
            resources: Vec::new(),
            usage: vec![usage(100)],
            active: vec![hold("etl-1", 30), hold("web-1", 10)],
            last_fencing_token: FencingToken(1),
        };
        let shares = class_shares(&snapshot, &classes, &weights);
        let get = |class: &str| shares.iter().find(|s| s.class == class).cloned().unwrap();
        // Nobody outside the classes holds anything: `other` is listed, but not entitled.
        assert_eq!(
            (get("etl").share_ppm, get("etl").entitled_ppm),
            (300_000, 250_000)
        );
        assert_eq!(
            (get("web").share_ppm, get("web").entitled_ppm),
            (100_000, 750_000)
        );
        assert_eq!(
            (get(OTHER_CLASS).share_ppm, get(OTHER_CLASS).entitled_ppm),
            (0, 0)
        );
        // Someone outside holds: `other` counts with weight 1.
        snapshot.active.push(hold("adhoc", 20));
        let shares = class_shares(&snapshot, &classes, &weights);
        let get = |class: &str| shares.iter().find(|s| s.class == class).cloned().unwrap();
        assert_eq!(
            (get(OTHER_CLASS).share_ppm, get(OTHER_CLASS).entitled_ppm),
            (200_000, 200_000)
        );
        assert_eq!(get("web").entitled_ppm, 600_000);
    }
}
