//! Detection: where demand exceeds capacity, how long requests have waited, and which
//! resources are hot, from a ledger snapshot and the waiting requests.

use std::collections::BTreeMap;
use std::time::Duration;

use rm_model::{
    LedgerSnapshot, PendingRequest, Quantity, ResourceName, ResourceType, Timestamp, Unit,
};

/// Contention on one capacity (one resource, one type), in the capacity's unit.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceContention {
    /// The resource.
    pub resource: ResourceName,
    /// The capacity's type.
    pub resource_type: ResourceType,
    /// The capacity's unit.
    pub unit: Unit,
    /// The maximum.
    pub capacity: Quantity,
    /// Held or in use now.
    pub used: Quantity,
    /// What waiting requests could take here: every waiting requirement that this capacity
    /// could hold counts in full (a request waiting for either of two nodes counts on both).
    pub waiting_demand: Quantity,
    /// `(used + waiting demand) / capacity`; above 1 means contended.
    pub contention_ratio: f64,
}

/// Contention on one resource type, summed over resources.
#[derive(Clone, Debug, PartialEq)]
pub struct TypeContention {
    /// The type.
    pub resource_type: ResourceType,
    /// `used / capacity`.
    pub utilization: f64,
    /// `(used + waiting demand) / capacity`, each waiting requirement counted once.
    pub contention_ratio: f64,
    /// How many waiting requests need the type.
    pub waiting: usize,
    /// How long the oldest of them has waited.
    pub oldest_wait: Duration,
}

/// Everything detection found.
#[derive(Clone, Debug, PartialEq)]
pub struct ContentionReport {
    /// When, by the ledger's clock.
    pub at: Timestamp,
    /// How many requests wait.
    pub queue_depth: usize,
    /// How long the oldest waiting request has waited (its starvation age).
    pub oldest_wait: Duration,
    /// Per type.
    pub types: Vec<TypeContention>,
    /// Per capacity, in snapshot order.
    pub resources: Vec<ResourceContention>,
    /// The contended capacities (ratio above 1), most contended first, at most ten.
    pub hot_spots: Vec<(ResourceName, ResourceType)>,
}

fn ratio(part: i128, whole: i128) -> f64 {
    if whole <= 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Measures contention on `snapshot` with `waiting` requests at `now`.
pub fn detect(
    snapshot: &LedgerSnapshot,
    waiting: &[PendingRequest],
    now: Timestamp,
) -> ContentionReport {
    let oldest = |requests: &mut dyn Iterator<Item = &PendingRequest>| {
        requests
            .map(|p| now.saturating_duration_since(p.enqueued_at))
            .max()
            .unwrap_or_default()
    };
    let mut resources = Vec::with_capacity(snapshot.usage.len());
    for usage in &snapshot.usage {
        let Some(resource) = snapshot
            .resources
            .iter()
            .find(|r| r.name() == &usage.resource)
        else {
            continue;
        };
        let demand: i128 = waiting
            .iter()
            .flat_map(|p| p.request.requirements.iter())
            .filter(|r| r.resource_type() == &usage.resource_type && r.admits(resource))
            .map(|r| r.unit().to_base_milli(r.amount()))
            .sum();
        let per_milli = usage.unit.to_base_milli(Quantity::from_milli(1)).max(1);
        let demand_here =
            Quantity::from_milli(i64::try_from(demand / per_milli).unwrap_or(i64::MAX));
        let used = usage.used();
        resources.push(ResourceContention {
            resource: usage.resource.clone(),
            resource_type: usage.resource_type.clone(),
            unit: usage.unit.clone(),
            capacity: usage.capacity,
            used,
            waiting_demand: demand_here,
            contention_ratio: ratio(
                i128::from(used.as_milli()) + i128::from(demand_here.as_milli()),
                i128::from(usage.capacity.as_milli()),
            ),
        });
    }
    let mut totals: BTreeMap<ResourceType, (i128, i128, i128)> = BTreeMap::new();
    for usage in &snapshot.usage {
        let entry = totals.entry(usage.resource_type.clone()).or_default();
        entry.0 += usage.unit.to_base_milli(usage.capacity);
        entry.1 += usage.unit.to_base_milli(usage.used());
    }
    for requirement in waiting.iter().flat_map(|p| p.request.requirements.iter()) {
        if let Some(entry) = totals.get_mut(requirement.resource_type()) {
            entry.2 += requirement.unit().to_base_milli(requirement.amount());
        }
    }
    let types = totals
        .into_iter()
        .map(|(resource_type, (capacity, used, demand))| {
            let needing: Vec<&PendingRequest> = waiting
                .iter()
                .filter(|p| {
                    p.request
                        .requirements
                        .iter()
                        .any(|r| r.resource_type() == &resource_type)
                })
                .collect();
            TypeContention {
                utilization: ratio(used, capacity),
                contention_ratio: ratio(used + demand, capacity),
                waiting: needing.len(),
                oldest_wait: oldest(&mut needing.iter().copied()),
                resource_type,
            }
        })
        .collect();
    let mut hot: Vec<&ResourceContention> = resources
        .iter()
        .filter(|r| r.contention_ratio > 1.0)
        .collect();
    hot.sort_by(|a, b| b.contention_ratio.total_cmp(&a.contention_ratio));
    ContentionReport {
        at: now,
        queue_depth: waiting.len(),
        oldest_wait: oldest(&mut waiting.iter()),
        types,
        hot_spots: hot
            .into_iter()
            .take(10)
            .map(|r| (r.resource.clone(), r.resource_type.clone()))
            .collect(),
        resources,
    }
}
