//! The reference ledger's placement: every resource scanned, the request's strategy scoring
//! candidates through `rm-model`'s placement scoring, co-location by label as plain first
//! fit over the label's values, affinity from the held reservations, and the explanation of
//! a refusal.

use super::*;

impl ReferenceLedger {
    /// Places `request`. With a co-location label, the domains (values of the label) are tried
    /// in registration order of their first resource and the first that holds everything wins
    /// (plainly first fit, whatever the strategy: the oracle answers whether a grant exists).
    pub(super) fn place(
        state: &State,
        request: &ReservationRequest,
    ) -> Result<Vec<ReservationItem>, LedgerError> {
        let Some(key) = &request.colocate_by else {
            return Self::place_in(state, request, None);
        };
        let mut values: Vec<&str> = Vec::new();
        for entry in &state.entries {
            if let Some(value) = entry.resource.label(key.as_str())
                && !values.contains(&value)
            {
                values.push(value);
            }
        }
        for value in values {
            if let Ok(items) = Self::place_in(state, request, Some((key.as_str(), value))) {
                return Ok(items);
            }
        }
        // No domain holds it: explain as if the label did not bind.
        Self::place_in(state, request, None).and_then(|_| {
            Err(LedgerError::InsufficientCapacity {
                requester: request.requester.clone(),
                shortfalls: Vec::new(),
            })
        })
    }

    /// Places `request` on resources whose label `domain.0` is `domain.1`, or anywhere.
    fn place_in(
        state: &State,
        request: &ReservationRequest,
        domain: Option<(&str, &str)>,
    ) -> Result<Vec<ReservationItem>, LedgerError> {
        let groups = request.placement_groups();

        // What this request has already taken, per resource and type, while placing.
        let mut tentative: HashMap<(usize, ResourceType), Quantity> = HashMap::new();
        let mut items: Vec<ReservationItem> = Vec::new();
        let mut shortfalls = Vec::new();
        for group in &groups {
            let mut candidates = Vec::new();
            for (order, entry) in state.entries.iter().enumerate() {
                if domain.is_some_and(|(key, value)| entry.resource.label(key) != Some(value)) {
                    continue;
                }
                if let Some(dims) =
                    Self::dimensions(state, request, group, order, entry, &tentative)
                {
                    let extra = group
                        .iter()
                        .map(|&i| {
                            let requirement = &request.requirements[i];
                            i64::from(requirement.preference_score(&entry.resource))
                                + Self::preferred_affinity(state, requirement, &entry.resource)
                        })
                        .sum::<i64>()
                        / group.len() as i64;
                    candidates.push((order, dims, extra));
                }
            }
            let chosen = best_candidate(
                &request.strategy,
                candidates.iter().map(|(order, dims, extra)| {
                    (
                        PlacementCandidate {
                            resource: &state.entries[*order].resource,
                            order: *order,
                            dimensions: dims,
                        },
                        *extra,
                    )
                }),
            );
            let Some(chosen) = chosen else {
                for &i in group {
                    shortfalls.push(Self::shortfall(state, request, i, group.len() > 1));
                }
                continue;
            };
            let (order, _, _) = &candidates[chosen];
            let entry = &state.entries[*order];
            for &i in group {
                let requirement = &request.requirements[i];
                let resource_type = requirement.resource_type().clone();
                let Some(capacity) = entry.resource.capacity_of(&resource_type) else {
                    continue;
                };
                let Ok(amount) = requirement.amount_in(capacity.unit()) else {
                    continue;
                };
                let taken = tentative
                    .entry((*order, resource_type.clone()))
                    .or_default();
                *taken = sum(*taken, amount);
                items.push(ReservationItem {
                    requirement: i,
                    resource: entry.resource.name().clone(),
                    resource_type,
                    amount,
                    unit: capacity.unit().clone(),
                    minimum: requirement
                        .minimum()
                        .and_then(|m| requirement.unit().convert(m, capacity.unit()).ok()),
                });
            }
        }
        if !shortfalls.is_empty() {
            shortfalls.sort_by_key(|s: &Shortfall| s.requirement);
            return Err(LedgerError::InsufficientCapacity {
                requester: request.requester.clone(),
                shortfalls,
            });
        }
        items.sort_by_key(|item| item.requirement);
        Ok(items)
    }

    /// The dimensions a group would use on `entry`, or `None` when the entry is not a
    /// candidate (a requirement does not admit it, or a required affinity term fails).
    fn dimensions(
        state: &State,
        request: &ReservationRequest,
        group: &[usize],
        order: usize,
        entry: &Entry,
        tentative: &HashMap<(usize, ResourceType), Quantity>,
    ) -> Option<Vec<DimensionFit>> {
        let mut dims: Vec<DimensionFit> = Vec::new();
        for &i in group {
            let requirement = &request.requirements[i];
            if !requirement.admits(&entry.resource)
                || !Self::required_affinity(state, requirement, &entry.resource)
            {
                return None;
            }
            let resource_type = requirement.resource_type();
            let capacity = entry.resource.capacity_of(resource_type)?;
            let amount = requirement.amount_in(capacity.unit()).ok()?;
            match dims.iter_mut().find(|d| &d.resource_type == resource_type) {
                Some(dim) => dim.requested = sum(dim.requested, amount),
                None => {
                    let taken = tentative
                        .get(&(order, resource_type.clone()))
                        .copied()
                        .unwrap_or_default();
                    dims.push(DimensionFit {
                        resource_type: resource_type.clone(),
                        requested: amount,
                        free: entry.free(resource_type).saturating_sub_to_zero(taken),
                        capacity: capacity.maximum(),
                    });
                }
            }
        }
        Some(dims)
    }

    /// The resources on which holds selected by `selector` sit.
    fn selected_resources<'s>(
        state: &'s State,
        selector: &'s rm_model::Selector,
    ) -> impl Iterator<Item = &'s Resource> {
        state
            .records
            .values()
            .filter(|r| {
                r.reservation.is_active()
                    && selector.selects(&r.reservation.requester, &r.reservation.labels)
            })
            .flat_map(|r| r.reservation.items.iter())
            .filter_map(|item| {
                state
                    .entries
                    .iter()
                    .find(|e| e.resource.name() == &item.resource)
                    .map(|e| &e.resource)
            })
    }

    fn required_affinity(
        state: &State,
        requirement: &ResourceRequirement,
        resource: &Resource,
    ) -> bool {
        requirement
            .affinity()
            .iter()
            .filter(|term| term.weight.is_none())
            .all(|term| {
                term.is_satisfied_by(resource, Self::selected_resources(state, &term.selector))
            })
    }

    /// Preferred affinity terms: the share of their weight satisfied, in parts per million.
    fn preferred_affinity(
        state: &State,
        requirement: &ResourceRequirement,
        resource: &Resource,
    ) -> i64 {
        let mut total = 0i64;
        let mut matched = 0i64;
        for term in requirement.affinity() {
            if let Some(weight) = term.weight {
                total += i64::from(weight);
                if term.is_satisfied_by(resource, Self::selected_resources(state, &term.selector)) {
                    matched += i64::from(weight);
                }
            }
        }
        if total == 0 {
            0
        } else {
            matched * 1_000_000 / total
        }
    }

    fn shortfall(
        state: &State,
        request: &ReservationRequest,
        index: usize,
        colocated: bool,
    ) -> Shortfall {
        let requirement = &request.requirements[index];
        let resource_type = requirement.resource_type();
        let offering = state
            .entries
            .iter()
            .filter(|e| e.resource.capacity_of(resource_type).is_some())
            .count();
        let matching = state
            .entries
            .iter()
            .filter(|e| {
                requirement.admits(&e.resource)
                    && Self::required_affinity(state, requirement, &e.resource)
            })
            .filter_map(|e| {
                let capacity = e.resource.capacity_of(resource_type)?;
                Some((
                    &e.resource,
                    e.free(resource_type),
                    e.usage(resource_type, capacity).draining,
                ))
            });
        Shortfall::explain(index, requirement, offering, matching, colocated)
    }
}
