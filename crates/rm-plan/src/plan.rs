//! The planner: where each requirement of a request goes, by the request's strategy, hard
//! constraints, soft preferences, affinity and co-location, against the free capacity a
//! [`Catalog`]'s slots report. Pure: it reads and chooses; the ledger commits.

use rm_model::placement::{RawFit, Scoring, strategy_score};
use rm_model::{
    LedgerError, Quantity, ReservationRequest, ReservationStrategy, ResourceRequirement,
    ResourceType, Shortfall, Unit,
};
use std::sync::Arc;

use crate::affinity::Affinity;
use crate::catalog::{Candidate, Catalog, MAX_DIMS, MemberFit, Slot};
use crate::placement::{Placement, Small};

/// How well `placements` suit `strategy`, summed over the placed amounts: what decides
/// between domains of a co-location label.
fn domain_score<S: Slot>(
    catalog: &Catalog<S>,
    strategy: ReservationStrategy,
    placements: &[Placement],
) -> i64 {
    let mut total: i64 = 0;
    for placement in placements {
        let slot = &catalog.slots[placement.position];
        let Some(d) = slot.dim(&placement.resource_type) else {
            continue;
        };
        let maximum = catalog.resources[placement.position]
            .capacity_of(&placement.resource_type)
            .map_or(0, |c| c.maximum().as_milli());
        let fit = RawFit {
            requested: placement.amount,
            free: slot.free(d),
            capacity: maximum,
            inverse_capacity: rm_model::placement::inverse_capacity(maximum),
        };
        if let Some(score) = strategy_score(strategy, &[fit]) {
            total = total.saturating_add(score);
        }
    }
    total
}

/// A refusal without an explanation (for a caller that only wants to know).
fn unexplained(request: &ReservationRequest) -> LedgerError {
    LedgerError::InsufficientCapacity {
        requester: request.requester.clone(),
        shortfalls: Vec::new(),
    }
}

/// The amount of `requirement` in thousandths of `unit`, or `None` when it does not convert
/// exactly.
#[inline]
pub fn amount_in(requirement: &ResourceRequirement, unit: &Unit) -> Option<i64> {
    if requirement.unit() == unit {
        Some(requirement.amount().as_milli())
    } else {
        requirement.amount_in(unit).ok().map(Quantity::as_milli)
    }
}

/// Chooses where each requirement of `request` goes, reading what is free from the slots
/// (plus `extra`: (position, dim, amount) to count as free beyond them, for a preemptor
/// planning with its victims' holds), judging affinity by `affinity`; `Err` explains, per
/// requirement, what cannot be placed (only when `explain`, else the shortfalls are left
/// empty). Nothing is taken: the ledger commits the plan.
///
/// Chooses where each requirement goes. With a co-location label, the request is planned
/// within each domain of that label (the resources sharing one value) and the best domain
/// by the strategy wins (the first that fits, for greedy). A pod whose parts share a node
/// (cores and memory on one host, GPUs on the node's devices) is planned over whole nodes by
/// the node planner, which chooses as the per-domain search does for the built-in strategies
/// and judges whole nodes for the fragmentation strategy and its baselines.
pub fn plan<S: Slot>(
    catalog: &Catalog<S>,
    request: &ReservationRequest,
    affinity: &Affinity<'_>,
    explain: bool,
    extra: &[(usize, usize, i64)],
) -> Result<Small<Placement>, LedgerError> {
    if let Some(planned) = plan_single(catalog, request, affinity, explain, extra) {
        return planned;
    }
    if extra.is_empty()
        && affinity.is_empty()
        && let Some(planned) = crate::nodes::plan_nodes(catalog, request, explain)
    {
        return planned.map_err(|()| unexplained(request));
    }
    plan_generic(catalog, request, affinity, explain, extra)
}

/// The commonest request of all, one requirement with nothing but hard constraints (no
/// preferences, affinity, co-location or capacity to add), planned by the specialised scan
/// alone, without the general search's set-up: the same choice as [`plan_in`] makes, which
/// it is left to when a candidate needs a unit conversion or a refusal is to be explained.
pub(crate) fn plan_single<S: Slot>(
    catalog: &Catalog<S>,
    request: &ReservationRequest,
    affinity: &Affinity<'_>,
    explain: bool,
    extra: &[(usize, usize, i64)],
) -> Option<Result<Small<Placement>, LedgerError>> {
    let [requirement] = request.requirements.as_slice() else {
        return None;
    };
    // Random fit draws once per placement: left to the search, so that a scan that gives up
    // (a unit conversion) does not take a draw the search then takes again.
    if request.strategy == ReservationStrategy::RandomFit
        || request.colocate_by.is_some()
        || !extra.is_empty()
        || !affinity.is_empty()
        || !requirement.preferences().is_empty()
        || !requirement.affinity().is_empty()
    {
        return None;
    }
    let strategy = request.strategy;
    let filled;
    let candidates = match catalog.plain_candidates(requirement) {
        Some(found) => found,
        None => {
            filled = catalog.candidates(&request.requirements, &[0]);
            &filled[..]
        }
    };
    let amount = requirement.amount().as_milli();
    let found = scan_plain(
        candidates,
        &[amount],
        Scoring::of(strategy),
        strategy == ReservationStrategy::Greedy,
        None,
    )?;
    let Some((_, position)) = found else {
        if explain {
            return None;
        }
        return Some(Err(unexplained(request)));
    };
    // Every candidate measured the type in the requirement's own unit (the scan checked).
    let mut placed = Small::new();
    placed.push(Placement {
        requirement: 0,
        position,
        resource_type: requirement.resource_type().clone(),
        amount,
        unit: requirement.unit().clone(),
    });
    Some(Ok(placed))
}

/// [`plan`] without the node planner: every request through the per-domain search.
pub(crate) fn plan_generic<S: Slot>(
    catalog: &Catalog<S>,
    request: &ReservationRequest,
    affinity: &Affinity<'_>,
    explain: bool,
    extra: &[(usize, usize, i64)],
) -> Result<Small<Placement>, LedgerError> {
    let draw = if request.strategy == ReservationStrategy::RandomFit {
        catalog.node_strategies.draw()
    } else {
        0
    };
    let Some(key) = &request.colocate_by else {
        return plan_in(catalog, request, affinity, explain, extra, None, draw);
    };
    let domains = catalog.domains(key.as_str());
    let mut best: Option<(i64, Small<Placement>)> = None;
    for (d, (_, positions)) in domains.iter().enumerate() {
        let Ok(placements) = plan_in(
            catalog,
            request,
            affinity,
            false,
            extra,
            Some(positions),
            draw,
        ) else {
            continue;
        };
        if request.strategy == ReservationStrategy::Greedy {
            return Ok(placements);
        }
        let score = if request.strategy == ReservationStrategy::RandomFit {
            random_score(draw, d)
        } else {
            domain_score(catalog, request.strategy, &placements)
        };
        if best.as_ref().is_none_or(|(top, _)| score > *top) {
            best = Some((score, placements));
        }
    }
    if let Some((_, placements)) = best {
        return Ok(placements);
    }
    if !explain {
        return Err(unexplained(request));
    }
    // Explain as if the label did not bind; if even that fits, the label is the reason.
    plan_in(catalog, request, affinity, true, extra, None, draw)?;
    Err(LedgerError::InsufficientCapacity {
        requester: request.requester.clone(),
        shortfalls: request
            .requirements
            .iter()
            .enumerate()
            .map(|(i, requirement)| Shortfall {
                requirement: i,
                resource_type: requirement.resource_type().clone(),
                requested: requirement.amount(),
                unit: requirement.unit().clone(),
                matching_resources: catalog.candidates(&request.requirements, &[i]).len(),
                best_candidate: None,
                available: Quantity::ZERO,
                short_by: requirement.amount(),
                detail: format!(
                    "no single value of label {} has room for every requirement together",
                    key.as_str()
                ),
            })
            .collect(),
    })
}

/// Random fit's score of the candidate at `position` for the draw `draw`: uniform over
/// candidates, the same for the same draw.
fn random_score(draw: u64, position: usize) -> i64 {
    (crate::table::mix(draw ^ position as u64) % rm_model::placement::MAX_STRATEGY_SCORE as u64)
        as i64
}

/// Plans `request`, considering only the resources at `domain`'s positions when given;
/// `draw` is random fit's draw for this placement.
fn plan_in<S: Slot>(
    catalog: &Catalog<S>,
    request: &ReservationRequest,
    affinity: &Affinity<'_>,
    explain: bool,
    extra: &[(usize, usize, i64)],
    domain: Option<&[usize]>,
    draw: u64,
) -> Result<Small<Placement>, LedgerError> {
    let random = request.strategy == ReservationStrategy::RandomFit;
    // Capacity to count as free beyond the counters: (position, dim, amount), for a
    // preemptor planning with its victims' holds.
    let free_of = |position: usize, slot: &Arc<S>, dim: usize| {
        let free = slot.free(dim);
        if extra.is_empty() {
            free
        } else {
            extra
                .iter()
                .filter(|(p, d, _)| *p == position && *d == dim)
                .fold(free, |f, (_, _, amount)| f.saturating_add(*amount))
        }
    };
    let mut placed: Small<Placement> = Small::new();
    let mut shortfalls = Vec::new();
    for members in request.each_placement_group() {
        let mut group: Small<usize> = Small::new();
        for member in members {
            group.push(member);
        }
        let group = group.as_slice();
        let all_candidates = catalog.candidates(&request.requirements, group);
        // Within a domain, only its resources that are candidates (both in position order).
        let mut within = domain.unwrap_or_default().iter().filter_map(|&p| {
            all_candidates
                .binary_search_by_key(&p, |c| c.position as usize)
                .ok()
                .map(|i| &all_candidates[i])
        });
        let mut everywhere = all_candidates.iter();
        let candidates: &mut dyn Iterator<Item = &Candidate<S>> = if domain.is_some() {
            &mut within
        } else {
            &mut everywhere
        };
        let soft = group.iter().any(|&i| {
            let r = &request.requirements[i];
            !r.preferences().is_empty() || r.affinity().iter().any(|t| t.weight.is_some())
        });
        let first_fit = request.strategy == ReservationStrategy::Greedy && !soft;
        let mut best: Option<(i64, usize)> = None;
        // Each member's distinct type, so that members of one type add up on a candidate.
        let mut type_of_member: Small<(usize, bool)> = Small::new();
        let mut types: Small<&ResourceType> = Small::new();
        for &i in group {
            let resource_type = request.requirements[i].resource_type();
            match types.iter().position(|t| *t == resource_type) {
                Some(t) => type_of_member.push((t, false)),
                None => {
                    type_of_member.push((types.len(), true));
                    types.push(resource_type);
                }
            }
        }
        let mut fits = [RawFit::default(); MAX_DIMS];
        // The common case gets a tight loop: one member per type, nothing placed yet, no
        // affinity, no soft scores, amounts in the candidate's own unit.
        let plain = types.len() == group.len()
            && placed.is_empty()
            && !soft
            && affinity.is_empty()
            && group.len() <= MAX_DIMS;
        let mut amounts = [0i64; MAX_DIMS];
        if plain {
            for (k, &i) in group.iter().enumerate() {
                amounts[k] = request.requirements[i].amount().as_milli();
            }
        }
        // The commonest case of all (the plain case over every candidate, nothing to add to
        // the counters) in a loop of its own per scoring and member count; `None` leaves it
        // to the loop below, which chooses the same.
        let scanned = (plain && domain.is_none() && extra.is_empty())
            .then(|| {
                scan_plain(
                    &all_candidates,
                    &amounts[..group.len()],
                    Scoring::of(request.strategy),
                    first_fit,
                    random.then_some(draw),
                )
            })
            .flatten();
        let candidates: &mut dyn Iterator<Item = &Candidate<S>> = match scanned {
            Some(found) => {
                best = found;
                &mut std::iter::empty()
            }
            None => candidates,
        };
        // The group's affinity terms judged per resource once, not per candidate and term.
        let terms = affinity.for_group(catalog, request, group);
        'candidates: for candidate in candidates {
            let position = candidate.position as usize;
            if plain && candidate.all_same_unit() {
                let members = candidate.members();
                for (k, member) in members.iter().enumerate() {
                    fits[k] = RawFit {
                        requested: amounts[k],
                        free: free_of(position, &candidate.slot, member.dim),
                        capacity: member.maximum,
                        inverse_capacity: member.inverse_capacity,
                    };
                }
                if let Some(score) =
                    strategy_score(request.strategy, &fits[..members.len()]).map(|score| {
                        if random {
                            random_score(draw, position)
                        } else {
                            score
                        }
                    })
                    && best.is_none_or(|(top, _)| score > top)
                {
                    best = Some((score, position));
                    if first_fit {
                        break;
                    }
                }
                continue;
            }
            let resource = &catalog.resources[position];
            if !terms.admits(position) {
                continue;
            }
            for (m, ((member, &i), &(t, first))) in candidate
                .members()
                .iter()
                .zip(group)
                .zip(&type_of_member)
                .enumerate()
            {
                let requirement = &request.requirements[i];
                let amount = if member.same_unit {
                    requirement.amount().as_milli()
                } else {
                    match amount_in(requirement, &candidate.units[m]) {
                        Some(amount) => amount,
                        None => continue 'candidates,
                    }
                };
                let fit = &mut fits[t];
                if first {
                    let taken: i64 = if placed.is_empty() {
                        0
                    } else {
                        placed
                            .iter()
                            .filter(|p| p.position == position && &p.resource_type == types[t])
                            .map(|p| p.amount)
                            .sum()
                    };
                    *fit = RawFit {
                        requested: amount,
                        free: free_of(position, &candidate.slot, member.dim).saturating_sub(taken),
                        capacity: member.maximum,
                        inverse_capacity: member.inverse_capacity,
                    };
                } else {
                    fit.requested = fit.requested.saturating_add(amount);
                }
            }
            let Some(mut score) = strategy_score(request.strategy, &fits[..types.len()]) else {
                continue;
            };
            if random {
                score = random_score(draw, position);
            }
            let total = if soft {
                score + terms.soft_score(request, group, resource, position)
            } else {
                score
            };
            if best.is_none_or(|(top, _)| total > top) {
                best = Some((total, position));
            }
            if first_fit {
                break;
            }
        }
        match best {
            Some((_, position)) => {
                let resource = &catalog.resources[position];
                for &i in group {
                    let requirement = &request.requirements[i];
                    let Some(capacity) = resource.capacity_of(requirement.resource_type()) else {
                        continue;
                    };
                    let Some(amount) = amount_in(requirement, capacity.unit()) else {
                        continue;
                    };
                    placed.push(Placement {
                        requirement: i,
                        position,
                        resource_type: requirement.resource_type().clone(),
                        amount,
                        unit: capacity.unit().clone(),
                    });
                }
            }
            None => {
                if !explain {
                    // The caller only wants to know; skip the explanation.
                    return Err(unexplained(request));
                }
                for &i in group {
                    shortfalls.push(shortfall(catalog, request, i, group.len() > 1, affinity));
                }
            }
        }
    }
    if shortfalls.is_empty() {
        Ok(placed)
    } else {
        shortfalls.sort_by_key(|s| s.requirement);
        Err(LedgerError::InsufficientCapacity {
            requester: request.requester.clone(),
            shortfalls,
        })
    }
}

/// The best candidate of a plain group (one member per type, amounts in each candidate's
/// own unit, nothing placed or added yet) by `scoring`, as [`plan_in`]'s loop chooses it:
/// the highest score, the first of equal ones, the first that fits for `first_fit`, random
/// fit's score of the draw when `draw` is given. `None` when the group has more members
/// than the scan is specialised for or a candidate needs a unit conversion: the general loop
/// then chooses.
fn scan_plain<S: Slot>(
    candidates: &[Candidate<S>],
    amounts: &[i64],
    scoring: Scoring,
    first_fit: bool,
    draw: Option<u64>,
) -> Option<Option<(i64, usize)>> {
    match amounts.len() {
        1 => scan_members::<S, 1>(candidates, amounts, scoring, first_fit, draw),
        2 => scan_members::<S, 2>(candidates, amounts, scoring, first_fit, draw),
        3 => scan_members::<S, 3>(candidates, amounts, scoring, first_fit, draw),
        _ => None,
    }
}

/// [`scan_plain`] for `N` members: one loop per scoring, so that neither the strategy nor
/// the member count is asked again per candidate.
fn scan_members<S: Slot, const N: usize>(
    candidates: &[Candidate<S>],
    amounts: &[i64],
    scoring: Scoring,
    first_fit: bool,
    draw: Option<u64>,
) -> Option<Option<(i64, usize)>> {
    let amounts: [i64; N] = amounts.try_into().ok()?;
    match scoring {
        Scoring::Fit => scan_scored(candidates, amounts, first_fit, draw, |f| {
            Scoring::Fit.score(f)
        }),
        Scoring::Balanced => scan_scored(candidates, amounts, first_fit, draw, |f| {
            Scoring::Balanced.score(f)
        }),
        Scoring::BinPack => scan_scored(candidates, amounts, first_fit, draw, |f| {
            Scoring::BinPack.score(f)
        }),
        Scoring::Aligned => scan_scored(candidates, amounts, first_fit, draw, |f| {
            Scoring::Aligned.score(f)
        }),
    }
}

#[inline(always)]
fn scan_scored<S: Slot, const N: usize>(
    candidates: &[Candidate<S>],
    amounts: [i64; N],
    first_fit: bool,
    draw: Option<u64>,
    score: impl Fn(&[RawFit]) -> Option<i64>,
) -> Option<Option<(i64, usize)>> {
    let mut best: Option<(i64, usize)> = None;
    for candidate in candidates {
        if !candidate.all_same_unit() {
            return None;
        }
        let members: &[MemberFit; N] = candidate.members().try_into().ok()?;
        let mut fits = [RawFit::default(); N];
        for ((fit, member), &requested) in fits.iter_mut().zip(members).zip(&amounts) {
            *fit = RawFit {
                requested,
                free: candidate.slot.free(member.dim),
                capacity: member.maximum,
                inverse_capacity: member.inverse_capacity,
            };
        }
        let Some(score) = score(&fits) else {
            continue;
        };
        let position = candidate.position as usize;
        let score = draw.map_or(score, |draw| random_score(draw, position));
        if best.is_none_or(|(top, _)| score > top) {
            best = Some((score, position));
            if first_fit {
                break;
            }
        }
    }
    Some(best)
}

fn shortfall<S: Slot>(
    catalog: &Catalog<S>,
    request: &ReservationRequest,
    index: usize,
    colocated: bool,
    affinity: &Affinity<'_>,
) -> Shortfall {
    let requirement = &request.requirements[index];
    let resource_type = requirement.resource_type();
    let offering = catalog
        .resources
        .iter()
        .filter(|r| r.capacity_of(resource_type).is_some())
        .count();
    let terms = affinity.for_group(catalog, request, &[index]);
    let matching = catalog
        .resources
        .iter()
        .zip(&catalog.slots)
        .enumerate()
        .filter(|(position, (resource, _))| requirement.admits(resource) && terms.admits(*position))
        .map(|(_, (resource, slot))| {
            let (free, draining) = slot
                .explain(resource_type)
                .unwrap_or((Quantity::ZERO, false));
            (resource, free, draining)
        });
    Shortfall::explain(index, requirement, offering, matching, colocated)
}
