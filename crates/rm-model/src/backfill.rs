//! Backfill: a later, smaller request may start before the blocked head of the queue only if
//! it cannot delay the head's start (EASY backfilling, as Slurm does it).
//!
//! The head's *shadow time* is the earliest moment at which enough capacity will be free for
//! it, given what is free now and when each running hold is expected to end. A candidate may
//! start now if it fits now and is expected to end by the shadow time. The rule is safe only
//! when every running hold of a type the head needs has an expected end; otherwise nothing is
//! backfilled. Amounts are per resource type, summed over resources: fragmentation across
//! resources can only make the head start later than the shadow time, never earlier, so a
//! candidate ending by the shadow time still cannot delay it. Concurrent backfills need no
//! coordination: each ends by the shadow time, so at that time all of their capacity is back.
//!
//! Written once for every wait queue: rm-contention's in one process and rm-postgres's shared
//! by many.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::{ReservationItem, ReservationRequest, ResourceType, Timestamp};

/// Amounts per resource type, in thousandths of each dimension's smallest unit.
pub type Amounts = BTreeMap<ResourceType, i128>;

/// A running hold as backfill sees it: what it holds and when it is expected to end (`None`
/// when nobody knows).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Running {
    /// What it holds.
    pub amounts: Amounts,
    /// When it is expected to end.
    pub ends_at: Option<Timestamp>,
}

fn covers(have: &Amounts, need: &Amounts) -> bool {
    need.iter()
        .all(|(resource_type, amount)| have.get(resource_type).copied().unwrap_or(0) >= *amount)
}

/// The earliest time at which `head` fits, given `free` now and the expected ends of
/// `running`; `None` when it cannot be bounded (a hold of a needed type has no expected end
/// and the known ends do not suffice).
pub fn shadow_time(
    now: Timestamp,
    head: &Amounts,
    free: &Amounts,
    running: &[Running],
) -> Option<Timestamp> {
    if covers(free, head) {
        return Some(now);
    }
    let unknown_needed = running
        .iter()
        .any(|r| r.ends_at.is_none() && r.amounts.keys().any(|t| head.contains_key(t)));
    if unknown_needed {
        return None;
    }
    let mut ends: Vec<&Running> = running.iter().filter(|r| r.ends_at.is_some()).collect();
    ends.sort_by_key(|r| r.ends_at);
    let mut available = free.clone();
    for hold in ends {
        for (resource_type, amount) in &hold.amounts {
            *available.entry(resource_type.clone()).or_default() += amount;
        }
        if covers(&available, head) {
            return hold.ends_at;
        }
    }
    None
}

/// Whether `candidate`, expected to run for `estimate`, may start now ahead of the blocked
/// `head` without delaying it: it fits in `free` and ends by the head's shadow time.
pub fn backfill_allows(
    now: Timestamp,
    head: &Amounts,
    free: &Amounts,
    running: &[Running],
    candidate: &Amounts,
    estimate: Duration,
) -> bool {
    if !covers(free, candidate) {
        return false;
    }
    match shadow_time(now, head, free, running) {
        Some(shadow) => now + estimate <= shadow,
        None => false,
    }
}

/// What `request` asks for, per type, in thousandths of each dimension's smallest unit.
pub fn amounts_of_request(request: &ReservationRequest) -> Amounts {
    let mut amounts = Amounts::new();
    for requirement in &request.requirements {
        *amounts
            .entry(requirement.resource_type().clone())
            .or_default() += requirement.unit().to_base_milli(requirement.amount());
    }
    amounts
}

/// What `items` hold, per type, in thousandths of each dimension's smallest unit.
pub fn amounts_of_items(items: &[ReservationItem]) -> Amounts {
    let mut amounts = Amounts::new();
    for item in items {
        *amounts.entry(item.resource_type.clone()).or_default() +=
            item.unit.to_base_milli(item.amount);
    }
    amounts
}
