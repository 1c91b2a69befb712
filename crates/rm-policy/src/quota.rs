//! [`QuotaAllocationPolicy`]: hard per-type limits per requester, and hierarchical groups
//! (organisation → team → requester) with a guaranteed share, a borrowing limit and a
//! lending limit, as Kubernetes' Kueue has them for cohorts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use rm_model::{
    Admission, AllocationPolicy, Event, EventKind, Quantity, Refusal, RefusalReason, RequesterId,
    ReservationId, ReservationRequest, ResourceType, Timestamp, Unit,
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

struct Node {
    group: QuotaGroup,
    parent: Option<usize>,
    usage: Demand,
}

impl Node {
    fn used(&self, resource_type: &ResourceType) -> i128 {
        self.usage.get(resource_type).copied().unwrap_or_default()
    }

    /// What siblings may borrow from this group's idle guaranteed share now.
    fn lendable(&self, resource_type: &ResourceType) -> i128 {
        let Some(guaranteed) = self.group.guaranteed.get(resource_type) else {
            return 0;
        };
        let idle = (guaranteed.base() - self.used(resource_type)).max(0);
        let limit = self
            .group
            .lending_limit
            .as_ref()
            .map_or(Some(idle), |l| l.get(resource_type).map(QuotaLimit::base))
            .unwrap_or(idle);
        idle.min(limit)
    }

    fn borrowed(&self, resource_type: &ResourceType) -> i128 {
        self.group
            .guaranteed
            .get(resource_type)
            .map_or(0, |g| (self.used(resource_type) - g.base()).max(0))
    }
}

#[derive(Default)]
struct State {
    nodes: Vec<Node>,
    by_name: HashMap<String, usize>,
    member_of: HashMap<RequesterId, usize>,
    requester_limits: HashMap<RequesterId, ResourceQuota>,
    requester_usage: HashMap<RequesterId, Demand>,
    charges: HashMap<ReservationId, (RequesterId, Demand)>,
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
        for node in self.path(requester) {
            let group = &self.nodes[node];
            for (resource_type, amount) in asked {
                let Some(guaranteed) = group.group.guaranteed.get(resource_type) else {
                    continue;
                };
                let after = group.used(resource_type) + amount;
                let over = after - guaranteed.base();
                if over <= 0 {
                    continue;
                }
                let name = &group.group.name;
                let Some(parent) = group.parent else {
                    return Err(Refusal::new(
                        RefusalReason::QuotaExceeded,
                        format!(
                            "quota of group {name} for {resource_type}: {} of {} used, {} more asked",
                            guaranteed.show(group.used(resource_type)),
                            guaranteed.show(guaranteed.base()),
                            guaranteed.show(*amount)
                        ),
                    ));
                };
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
                // Across the cohort, what is borrowed never exceeds what is lent.
                let siblings = (0..self.nodes.len())
                    .filter(|&s| s != node && self.nodes[s].parent == Some(parent));
                let (mut lendable, mut borrowed) = (0i128, over);
                for sibling in siblings {
                    lendable += self.nodes[sibling].lendable(resource_type);
                    borrowed += self.nodes[sibling].borrowed(resource_type);
                }
                if borrowed > lendable {
                    return Err(Refusal::new(
                        RefusalReason::BorrowingLimitExceeded,
                        format!(
                            "lending limits in group {} for {resource_type}: group {name} would borrow {}, its siblings lend {} of which {} is borrowed",
                            self.nodes[parent].group.name,
                            guaranteed.show(over),
                            guaranteed.show(lendable),
                            guaranteed.show(borrowed - over)
                        ),
                    ));
                }
            }
        }
        Ok(())
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
