//! [`QuotaAllocationPolicy`]: hard per-type limits per requester, and hierarchical groups
//! (organisation → team → requester) with a guaranteed share, a borrowing limit and a
//! lending limit, as Kubernetes' Kueue has them for cohorts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use rm_model::{
    Admission, AllocationPolicy, Event, EventKind, Priority, Quantity, Refusal, RefusalReason,
    RequesterId, Reservation, ReservationId, ReservationRequest, ResourceType, Timestamp, Unit,
};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::demand::{self, Demand};

/// One limit: an amount in a unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaLimit {
    /// The amount.
    pub amount: Quantity,
    /// Its unit.
    pub unit: Unit,
}

impl QuotaLimit {
    fn base(&self) -> i128 {
        self.unit.to_base_milli(self.amount)
    }

    /// `base` thousandths of the dimension's smallest unit, printed in this limit's unit.
    fn show(&self, base: i128) -> String {
        let per_milli = self.unit.to_base_milli(Quantity::from_milli(1)).max(1);
        let milli = i64::try_from(base / per_milli).unwrap_or(i64::MAX);
        format!("{} {}", Quantity::from_milli(milli), self.unit)
    }
}

/// Limits per resource type (`compute: 16 cores`, `memory: 64 GiB`); types without a limit
/// are not limited.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResourceQuota {
    limits: BTreeMap<ResourceType, QuotaLimit>,
}

impl ResourceQuota {
    /// No limits.
    pub fn new() -> ResourceQuota {
        ResourceQuota::default()
    }

    /// Adds (or replaces) the limit of one type.
    pub fn limit(
        mut self,
        resource_type: ResourceType,
        amount: impl Into<Quantity>,
        unit: Unit,
    ) -> ResourceQuota {
        self.limits.insert(
            resource_type,
            QuotaLimit {
                amount: amount.into(),
                unit,
            },
        );
        self
    }

    /// The limit of one type.
    pub fn get(&self, resource_type: &ResourceType) -> Option<&QuotaLimit> {
        self.limits.get(resource_type)
    }

    /// Every limit, by type.
    pub fn iter(&self) -> impl Iterator<Item = (&ResourceType, &QuotaLimit)> {
        self.limits.iter()
    }
}

/// A node of the quota hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaGroup {
    /// Its name, unique in the policy.
    pub name: String,
    /// The group it belongs to (its cohort is the parent's children); `None` for a root.
    #[serde(default)]
    pub parent: Option<String>,
    /// What it may always use. A root's guaranteed share is a hard cap.
    #[serde(default)]
    pub guaranteed: ResourceQuota,
    /// How much beyond its guaranteed share it may borrow from its siblings' idle share (no
    /// limit on a type when absent).
    #[serde(default)]
    pub borrowing_limit: Option<ResourceQuota>,
    /// How much of its idle guaranteed share siblings may borrow (all of it when absent); the
    /// rest stays for the group itself.
    #[serde(default)]
    pub lending_limit: Option<ResourceQuota>,
}

impl QuotaGroup {
    /// A root group with no limits.
    pub fn new(name: &str) -> QuotaGroup {
        QuotaGroup {
            name: name.to_owned(),
            parent: None,
            guaranteed: ResourceQuota::new(),
            borrowing_limit: None,
            lending_limit: None,
        }
    }

    /// Makes it a child of `parent`.
    pub fn parent(mut self, parent: &str) -> QuotaGroup {
        self.parent = Some(parent.to_owned());
        self
    }

    /// Sets its guaranteed share.
    pub fn guaranteed(mut self, quota: ResourceQuota) -> QuotaGroup {
        self.guaranteed = quota;
        self
    }

    /// Sets its borrowing limit.
    pub fn borrowing_limit(mut self, quota: ResourceQuota) -> QuotaGroup {
        self.borrowing_limit = Some(quota);
        self
    }

    /// Sets its lending limit.
    pub fn lending_limit(mut self, quota: ResourceQuota) -> QuotaGroup {
        self.lending_limit = Some(quota);
        self
    }
}

/// Which holds of its cohort a request may end to get back quota lent out: Kueue's
/// `reclaimWithinCohort`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReclaimWithinCohort {
    /// None (Kueue's default): a lender waits until borrowers give back.
    #[default]
    Never,
    /// Holds of borrowing groups with a lower priority than the request.
    LowerPriority,
    /// Holds of borrowing groups, whatever their priority.
    Any,
}

/// Which holds of its own group a request may end to fit its group's quota: Kueue's
/// `withinClusterQueue`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WithinGroup {
    /// None (Kueue's default).
    #[default]
    Never,
    /// Holds of the same group with a lower priority than the request.
    LowerPriority,
}

/// What a request refused for quota may end to be admitted, as Kueue's cluster-queue
/// `preemption` settings: reclaim from groups of its cohort that borrow, and preempt within its
/// own group. Candidates are ordered as Kueue orders them (borrowing groups' holds first, then
/// lower priority first, then the most recently granted first), taken until the request fits,
/// then each one not needed is spared, so the set is minimal. A group that no longer borrows
/// once some of its holds are taken gives no more.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaPreemption {
    /// Holds of borrowing groups in the cohort.
    pub reclaim_within_cohort: ReclaimWithinCohort,
    /// Holds of the request's own group.
    pub within_group: WithinGroup,
}

/// A hold a request may end, in Kueue's order: holds of other (borrowing) groups first, then
/// lower priority, then the most recently granted (by time, then fencing token); with its index among the active holds and
/// the cohort member whose borrowing it is (none for the request's own group).
type Candidate = (
    bool,
    Priority,
    std::cmp::Reverse<(Timestamp, rm_model::FencingToken)>,
    usize,
    Option<usize>,
);

#[derive(Clone)]
struct Node {
    group: QuotaGroup,
    parent: Option<usize>,
    usage: Demand,
}

impl Node {
    fn used(&self, resource_type: &ResourceType) -> i128 {
        self.usage.get(resource_type).copied().unwrap_or_default()
    }

    /// The part of its share the group lends to its cohort's pool (all of it without a
    /// lending limit; Kueue's `lendingLimit`).
    fn lent_to_pool(&self, resource_type: &ResourceType) -> i128 {
        let Some(guaranteed) = self.group.guaranteed.get(resource_type) else {
            return 0;
        };
        let share = guaranteed.base();
        self.group
            .lending_limit
            .as_ref()
            .and_then(|l| l.get(resource_type))
            .map_or(share, |l| l.base().clamp(0, share))
    }

    /// The part of its share the group keeps for itself: what it does not lend.
    fn kept(&self, resource_type: &ResourceType) -> i128 {
        self.group
            .guaranteed
            .get(resource_type)
            .map_or(0, |g| g.base() - self.lent_to_pool(resource_type))
    }

    /// What the group uses of its cohort's pool: its usage beyond the part it keeps.
    fn drawn_from_pool(&self, resource_type: &ResourceType) -> i128 {
        (self.used(resource_type) - self.kept(resource_type)).max(0)
    }

    /// Whether the group uses more than its share, taking from its cohort.
    fn borrows(&self, resource_type: &ResourceType) -> bool {
        self.group
            .guaranteed
            .get(resource_type)
            .is_some_and(|g| self.used(resource_type) > g.base())
    }
}

#[derive(Clone, Default)]
struct State {
    nodes: Vec<Node>,
    by_name: HashMap<String, usize>,
    member_of: HashMap<RequesterId, usize>,
    requester_limits: HashMap<RequesterId, ResourceQuota>,
    requester_usage: HashMap<RequesterId, Demand>,
    charges: HashMap<ReservationId, (RequesterId, Demand)>,
    preemption: QuotaPreemption,
}

impl State {
    fn path(&self, requester: &RequesterId) -> Vec<usize> {
        let mut path = Vec::new();
        let mut at = self.member_of.get(requester).copied();
        while let Some(node) = at {
            path.push(node);
            at = self.nodes[node].parent;
        }
        path
    }

    fn check(&self, requester: &RequesterId, asked: &Demand) -> Result<(), Refusal> {
        if let Some(limits) = self.requester_limits.get(requester) {
            let used = self.requester_usage.get(requester);
            for (resource_type, amount) in asked {
                let Some(limit) = limits.get(resource_type) else {
                    continue;
                };
                let now = used
                    .and_then(|u| u.get(resource_type))
                    .copied()
                    .unwrap_or_default();
                if now + amount > limit.base() {
                    return Err(Refusal::new(
                        RefusalReason::QuotaExceeded,
                        format!(
                            "quota of {requester} for {resource_type}: {} of {} used, {} more asked",
                            limit.show(now),
                            limit.show(limit.base()),
                            limit.show(*amount)
                        ),
                    ));
                }
            }
        }
        let path = self.path(requester);
        // Each group's own limits first (a root's share is a hard cap; a child may borrow up
        // to its borrowing limit), then each cohort's pool.
        for &node in &path {
            let group = &self.nodes[node];
            for (resource_type, amount) in asked {
                let Some(guaranteed) = group.group.guaranteed.get(resource_type) else {
                    continue;
                };
                let over = group.used(resource_type) + amount - guaranteed.base();
                if over <= 0 {
                    continue;
                }
                let name = &group.group.name;
                if group.parent.is_none() {
                    return Err(Refusal::new(
                        RefusalReason::QuotaExceeded,
                        format!(
                            "quota of group {name} for {resource_type}: {} of {} used, {} more asked",
                            guaranteed.show(group.used(resource_type)),
                            guaranteed.show(guaranteed.base()),
                            guaranteed.show(*amount)
                        ),
                    ));
                }
                if let Some(limit) = group
                    .group
                    .borrowing_limit
                    .as_ref()
                    .and_then(|b| b.get(resource_type))
                    && over > limit.base()
                {
                    return Err(Refusal::new(
                        RefusalReason::BorrowingLimitExceeded,
                        format!(
                            "borrowing limit of group {name} for {resource_type}: it may borrow {}, this would borrow {}",
                            guaranteed.show(limit.base()),
                            guaranteed.show(over)
                        ),
                    ));
                }
            }
        }
        for &node in &path {
            let group = &self.nodes[node];
            let Some(parent) = group.parent else {
                continue;
            };
            for (resource_type, amount) in asked {
                let Some(guaranteed) = group.group.guaranteed.get(resource_type) else {
                    continue;
                };
                // What the group adds to its cohort's pool: usage beyond the part of its
                // share it does not lend. Within that part it never waits for the pool.
                let kept = group.kept(resource_type);
                let before = (group.used(resource_type) - kept).max(0);
                let after = (group.used(resource_type) + amount - kept).max(0);
                if after <= before {
                    continue;
                }
                let (mut pool, mut drawn) = (0i128, after - before);
                for member in self.cohort(parent, resource_type) {
                    pool += self.nodes[member].lent_to_pool(resource_type);
                    drawn += self.nodes[member].drawn_from_pool(resource_type);
                }
                if drawn > pool {
                    return Err(Refusal::new(
                        RefusalReason::BorrowingLimitExceeded,
                        format!(
                            "lending limits in group {} for {resource_type}: group {} would use {} of the cohort's {}, of which {} is in use",
                            self.nodes[parent].group.name,
                            group.group.name,
                            guaranteed.show(after - before),
                            guaranteed.show(pool),
                            guaranteed.show(drawn - (after - before))
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The children of `parent` that have a share of `resource_type`: one cohort's members.
    fn cohort<'a>(
        &'a self,
        parent: usize,
        resource_type: &'a ResourceType,
    ) -> impl Iterator<Item = usize> + 'a {
        (0..self.nodes.len()).filter(move |&m| {
            self.nodes[m].parent == Some(parent)
                && self.nodes[m].group.guaranteed.get(resource_type).is_some()
        })
    }

    /// The holds `request` may end so that [`check`](Self::check) admits it (see
    /// [`QuotaPreemption`]); empty when none may be ended or ending them cannot help.
    fn reclaim(&self, request: &ReservationRequest, active: &[Reservation]) -> Vec<ReservationId> {
        let asked = demand::of_request(request);
        let Some(&own) = self.member_of.get(&request.requester) else {
            return Vec::new();
        };
        if self.check(&request.requester, &asked).is_ok() {
            return Vec::new();
        }
        let rules = self.preemption;
        let cohort = self.nodes[own].parent;
        let shares_a_type =
            |demand: &Demand| asked.keys().any(|t| demand.get(t).is_some_and(|v| *v > 0));
        let mut candidates: Vec<Candidate> = Vec::new();
        for (index, hold) in active.iter().enumerate() {
            if Some(&hold.id) == request.id.as_ref() || !hold.state.holds_capacity() {
                continue;
            }
            let Some((holder, demand)) = self.charges.get(&hold.id) else {
                continue;
            };
            if !shares_a_type(demand) {
                continue;
            }
            let lower = hold.priority < request.priority;
            let path = self.path(holder);
            let entry = if path.first() == Some(&own) {
                let allowed = match rules.within_group {
                    WithinGroup::Never => false,
                    WithinGroup::LowerPriority => lower,
                };
                allowed.then_some((false, None))
            } else {
                let member = path
                    .iter()
                    .copied()
                    .find(|&n| n != own && cohort.is_some() && self.nodes[n].parent == cohort);
                let allowed = match rules.reclaim_within_cohort {
                    ReclaimWithinCohort::Never => false,
                    ReclaimWithinCohort::LowerPriority => lower,
                    ReclaimWithinCohort::Any => true,
                };
                member.filter(|_| allowed).map(|m| (true, Some(m)))
            };
            if let Some((other, member)) = entry {
                candidates.push((
                    !other,
                    hold.priority,
                    std::cmp::Reverse((hold.created_at, hold.fencing_token)),
                    index,
                    member,
                ));
            }
        }
        candidates.sort();
        let mut sim = self.clone();
        let mut taken: Vec<(ReservationId, RequesterId, Demand)> = Vec::new();
        let mut fits = false;
        for (_, _, _, index, member) in candidates {
            if let Some(member) = member
                && !asked.keys().any(|t| sim.nodes[member].borrows(t))
            {
                continue;
            }
            let id = &active[index].id;
            let Some((holder, demand)) = sim.charges.get(id).cloned() else {
                continue;
            };
            sim.uncharge(id);
            taken.push((id.clone(), holder, demand));
            if sim.check(&request.requester, &asked).is_ok() {
                fits = true;
                break;
            }
        }
        if !fits {
            return Vec::new();
        }
        // Spare every hold the request fits without, the last taken excepted.
        let mut victims = vec![true; taken.len()];
        for i in (0..taken.len().saturating_sub(1)).rev() {
            let (id, holder, demand) = &taken[i];
            sim.charge(id.clone(), holder, demand.clone());
            if sim.check(&request.requester, &asked).is_ok() {
                victims[i] = false;
            } else {
                sim.uncharge(id);
            }
        }
        taken
            .into_iter()
            .zip(victims)
            .filter_map(|((id, _, _), victim)| victim.then_some(id))
            .collect()
    }

    fn apply(&mut self, requester: &RequesterId, amounts: &Demand, sign: i128) {
        demand::add(
            self.requester_usage.entry(requester.clone()).or_default(),
            amounts,
            sign,
        );
        for node in self.path(requester) {
            demand::add(&mut self.nodes[node].usage, amounts, sign);
        }
    }

    fn charge(&mut self, id: ReservationId, requester: &RequesterId, amounts: Demand) {
        if self.charges.contains_key(&id) {
            return;
        }
        self.apply(requester, &amounts, 1);
        self.charges.insert(id, (requester.clone(), amounts));
    }

    fn uncharge(&mut self, id: &ReservationId) {
        if let Some((requester, amounts)) = self.charges.remove(id) {
            self.apply(&requester, &amounts, -1);
        }
    }
}

/// Admits a request only within its requester's hard limits and its groups' shares.
///
/// Usage follows the ledger: admission sets the request's amounts aside under its id (so
/// concurrent admissions cannot both pass a limit), a grant event keeps them, and a release,
/// expiry, preemption or cancellation event returns them. A requester in no group is limited
/// only by its own quota.
pub struct QuotaAllocationPolicy {
    name: String,
    state: Mutex<State>,
}

impl std::fmt::Debug for QuotaAllocationPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaAllocationPolicy")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl QuotaAllocationPolicy {
    /// A policy named `name`, without quotas.
    pub fn new(name: &str) -> QuotaAllocationPolicy {
        QuotaAllocationPolicy {
            name: name.to_owned(),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a group; its parent must exist already.
    pub fn add_group(&self, group: QuotaGroup) -> Result<(), Error> {
        let mut state = self.state();
        if state.by_name.contains_key(&group.name) {
            return Err(Error::InvalidGroup {
                group: rm_model::clip(&group.name),
                reason: "a group of that name exists",
            });
        }
        let parent = match &group.parent {
            Some(parent) => {
                Some(
                    *state
                        .by_name
                        .get(parent)
                        .ok_or_else(|| Error::UnknownGroup {
                            group: rm_model::clip(parent),
                        })?,
                )
            }
            None => None,
        };
        let index = state.nodes.len();
        state.by_name.insert(group.name.clone(), index);
        state.nodes.push(Node {
            group,
            parent,
            usage: Demand::new(),
        });
        Ok(())
    }

    /// Puts a requester in a group.
    pub fn assign(&self, requester: RequesterId, group: &str) -> Result<(), Error> {
        let mut state = self.state();
        let node = *state
            .by_name
            .get(group)
            .ok_or_else(|| Error::UnknownGroup {
                group: rm_model::clip(group),
            })?;
        state.member_of.insert(requester, node);
        Ok(())
    }

    /// What a request refused for quota may end to be admitted (Kueue's defaults: nothing).
    pub fn set_preemption(&self, preemption: QuotaPreemption) {
        self.state().preemption = preemption;
    }

    /// Sets a requester's hard limits.
    pub fn set_requester_quota(&self, requester: RequesterId, quota: ResourceQuota) {
        self.state().requester_limits.insert(requester, quota);
    }

    /// What a requester uses of a type now (admitted or granted), in `unit`, rounded down.
    pub fn requester_usage(
        &self,
        requester: &RequesterId,
        resource_type: &ResourceType,
        unit: &Unit,
    ) -> Quantity {
        let state = self.state();
        let base = state
            .requester_usage
            .get(requester)
            .and_then(|u| u.get(resource_type))
            .copied()
            .unwrap_or_default();
        in_unit(base, unit)
    }

    /// What a group uses of a type now, in `unit`, rounded down.
    pub fn group_usage(
        &self,
        group: &str,
        resource_type: &ResourceType,
        unit: &Unit,
    ) -> Option<Quantity> {
        let state = self.state();
        let node = *state.by_name.get(group)?;
        Some(in_unit(state.nodes[node].used(resource_type), unit))
    }
}

fn in_unit(base: i128, unit: &Unit) -> Quantity {
    let per_milli = unit.to_base_milli(Quantity::from_milli(1)).max(1);
    Quantity::from_milli(i64::try_from(base / per_milli).unwrap_or(i64::MAX))
}

impl AllocationPolicy for QuotaAllocationPolicy {
    fn name(&self) -> &str {
        &self.name
    }

    fn admit(&self, request: &ReservationRequest, _now: Timestamp) -> Admission {
        let mut state = self.state();
        if let Some(id) = &request.id
            && state.charges.contains_key(id)
        {
            return Admission::Admit;
        }
        let asked = demand::of_request(request);
        if let Err(refusal) = state.check(&request.requester, &asked) {
            return Admission::Refuse(refusal);
        }
        if let Some(id) = &request.id {
            state.charge(id.clone(), &request.requester, asked);
        }
        Admission::Admit
    }

    fn withdraw(&self, request: &ReservationRequest) {
        if let Some(id) = &request.id {
            self.state().uncharge(id);
        }
    }

    fn reclaim(&self, request: &ReservationRequest, active: &[Reservation]) -> Vec<ReservationId> {
        self.state().reclaim(request, active)
    }

    fn observe(&self, event: &Event) {
        match &event.kind {
            EventKind::Reserved {
                reservation,
                requester,
                items,
                ..
            } => self
                .state()
                .charge(reservation.clone(), requester, demand::of_items(items)),
            EventKind::Ended { reservation, .. } => self.state().uncharge(reservation),
            _ => {}
        }
    }
}
