//! Demands and usage as exact vectors: one amount per resource type, in thousandths of the
//! dimension's smallest unit, so amounts asked in `cores` and `millicores` add up exactly.

use std::collections::BTreeMap;

use rm_model::{ReservationItem, ReservationRequest, ResourceType};

/// Amounts per resource type, in base thousandths (see [`rm_model::Unit::to_base_milli`]).
pub(crate) type Demand = BTreeMap<ResourceType, i128>;

/// What a request asks, summed per type.
pub(crate) fn of_request(request: &ReservationRequest) -> Demand {
    let mut demand = Demand::new();
    for requirement in &request.requirements {
        *demand
            .entry(requirement.resource_type().clone())
            .or_default() += requirement.unit().to_base_milli(requirement.amount());
    }
    demand
}

/// What granted items hold, summed per type.
pub(crate) fn of_items(items: &[ReservationItem]) -> Demand {
    let mut demand = Demand::new();
    for item in items {
        *demand.entry(item.resource_type.clone()).or_default() +=
            item.unit.to_base_milli(item.amount);
    }
    demand
}

/// `into += from` (or `-=` when `sign` is negative), per type.
pub(crate) fn add(into: &mut Demand, from: &Demand, sign: i128) {
    for (resource_type, amount) in from {
        *into.entry(resource_type.clone()).or_default() += sign * amount;
    }
}
