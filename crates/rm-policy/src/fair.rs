//! [`FairAllocationPolicy`] (Dominant Resource Fairness) and [`WeightedAllocationPolicy`]
//! (weighted DRF): waiting requests are admitted lowest dominant share first, which is
//! progressive filling when requests are admitted one at a time.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rm_model::{
    Admission, AllocationPolicy, Event, EventKind, PendingRequest, Quantity, ReservationLedger,
    ReservationRequest, ResourceType, Timestamp, Unit,
};

use crate::Error;
use crate::demand::{self, Demand};

/// A share as an order-preserving integer (non-negative floats order like their bits).
fn share_key(share: f64) -> u64 {
    share.max(0.0).to_bits()
}

struct Tenant {
    weight: f64,
    /// What it holds now, per type index, in base thousandths.
    holding: Vec<i128>,
    /// Decayed usage integral (base thousandths × seconds), per type index.
    history: Vec<f64>,
    last_update: Timestamp,
    /// Its key in the index, when it is in it.
    key: u64,
    /// Tasks it has waiting: only a tenant with demand is a candidate for the next grant.
    demand: u64,
}

#[derive(Default)]
struct State {
    types: Vec<ResourceType>,
    /// Total capacity per type index, in base thousandths.
    capacity: Vec<i128>,
    ids: HashMap<rm_model::RequesterId, usize>,
    names: Vec<rm_model::RequesterId>,
    tenants: Vec<Tenant>,
    /// Tenants with demand by weighted dominant share, lowest first (without decay only).
    index: BTreeSet<(u64, usize)>,
    half_life: Option<Duration>,
}

impl State {
    fn type_index(&mut self, resource_type: &ResourceType) -> usize {
        if let Some(i) = self.types.iter().position(|t| t == resource_type) {
            return i;
        }
        self.types.push(resource_type.clone());
        self.capacity.push(0);
        for tenant in &mut self.tenants {
            tenant.holding.push(0);
            tenant.history.push(0.0);
        }
        self.types.len() - 1
    }

    fn tenant(&mut self, requester: &rm_model::RequesterId, now: Timestamp) -> usize {
        if let Some(&t) = self.ids.get(requester) {
            return t;
        }
        let t = self.tenants.len();
        self.ids.insert(requester.clone(), t);
        self.names.push(requester.clone());
        self.tenants.push(Tenant {
            weight: 1.0,
            holding: vec![0; self.types.len()],
            history: vec![0.0; self.types.len()],
            last_update: now,
            key: 0,
            demand: 0,
        });
        t
    }

    /// Folds the time since the tenant's last update into its decayed history.
    fn decay(&mut self, t: usize, now: Timestamp) {
        let Some(half_life) = self.half_life else {
            return;
        };
        let tenant = &mut self.tenants[t];
        let elapsed = now
            .saturating_duration_since(tenant.last_update)
            .as_secs_f64();
        let h = half_life.as_secs_f64();
        let factor = 0.5f64.powf(elapsed / h);
        // The decayed integral of a holding kept constant over the interval.
        let weight = h / std::f64::consts::LN_2 * (1.0 - factor);
        for (history, holding) in tenant.history.iter_mut().zip(&tenant.holding) {
            *history = *history * factor + *holding as f64 * weight;
        }
        tenant.last_update = now;
    }

    /// The tenant's dominant share divided by its weight. With a half-life, shares come from
    /// decayed usage: a constant holding converges to the same share as without decay.
    fn weighted_share(&self, t: usize) -> f64 {
        let tenant = &self.tenants[t];
        let mut dominant = 0.0f64;
        for (i, capacity) in self.capacity.iter().enumerate() {
            if *capacity <= 0 {
                continue;
            }
            let used = match self.half_life {
                None => tenant.holding[i] as f64,
                Some(h) => tenant.history[i] * std::f64::consts::LN_2 / h.as_secs_f64(),
            };
            dominant = dominant.max(used / *capacity as f64);
        }
        dominant / tenant.weight
    }

    fn reindex(&mut self, t: usize) {
        let old = (self.tenants[t].key, t);
        self.index.remove(&old);
        let key = share_key(self.weighted_share(t));
        self.tenants[t].key = key;
        if self.tenants[t].demand > 0 {
            self.index.insert((key, t));
        }
    }

    fn add(
        &mut self,
        requester: &rm_model::RequesterId,
        amounts: &Demand,
        sign: i128,
        now: Timestamp,
    ) {
        let t = self.tenant(requester, now);
        self.decay(t, now);
        for (resource_type, amount) in amounts {
            let i = self.type_index(resource_type);
            self.tenants[t].holding[i] += sign * amount;
        }
        self.reindex(t);
    }
}

/// Dominant Resource Fairness (Ghodsi et al., NSDI 2011): each requester's dominant share is
/// its largest share of any resource type; waiting requests are ordered lowest dominant share
/// first. Holdings follow ledger events (feed them with
/// [`PolicyObserver`](crate::PolicyObserver)); total capacity comes from
/// [`set_capacity`](Self::set_capacity) or [`refresh_capacity`](Self::refresh_capacity).
/// With a half-life, shares come from usage decayed over time, so past heavy use lowers a
/// requester's standing for a while.
pub struct FairAllocationPolicy {
    name: String,
    state: Mutex<State>,
}

impl std::fmt::Debug for FairAllocationPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FairAllocationPolicy")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl FairAllocationPolicy {
    /// A policy named `name`, without decay.
    pub fn new(name: &str) -> FairAllocationPolicy {
        FairAllocationPolicy {
            name: name.to_owned(),
            state: Mutex::new(State::default()),
        }
    }

    /// Decays historical usage with `half_life`. Fails on a zero half-life.
    pub fn with_half_life(self, half_life: Duration) -> Result<FairAllocationPolicy, Error> {
        if half_life.is_zero() {
            return Err(Error::InvalidSetting {
                setting: "half_life",
                reason: "must be positive",
            });
        }
        self.state().half_life = Some(half_life);
        Ok(self)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the total capacity of one type that shares are measured against.
    pub fn set_capacity(&self, resource_type: ResourceType, amount: Quantity, unit: &Unit) {
        let mut state = self.state();
        let i = state.type_index(&resource_type);
        state.capacity[i] = unit.to_base_milli(amount);
        for t in 0..state.tenants.len() {
            state.reindex(t);
        }
    }

    /// Sets every type's total capacity from the ledger's registered resources.
    pub fn refresh_capacity(
        &self,
        ledger: &dyn ReservationLedger,
    ) -> Result<(), rm_model::LedgerError> {
        let mut totals: Demand = Demand::new();
        for resource in ledger.resources()? {
            for (resource_type, capacity) in resource.capacities() {
                *totals.entry(resource_type.clone()).or_default() += capacity.unit().to_base_milli(
                    capacity
                        .maximum()
                        .saturating_sub_to_zero(capacity.current()),
                );
            }
        }
        let mut state = self.state();
        for (resource_type, total) in totals {
            let i = state.type_index(&resource_type);
            state.capacity[i] = total;
        }
        for t in 0..state.tenants.len() {
            state.reindex(t);
        }
        Ok(())
    }

    /// Sets a requester's weight (its share counts `weight` times: 2 gets twice the share).
    pub fn set_weight(&self, requester: rm_model::RequesterId, weight: u32) -> Result<(), Error> {
        if weight == 0 {
            return Err(Error::InvalidSetting {
                setting: "weight",
                reason: "must be positive",
            });
        }
        let mut state = self.state();
        let t = state.tenant(&requester, Timestamp::ZERO);
        state.tenants[t].weight = f64::from(weight);
        state.reindex(t);
        Ok(())
    }

    /// Records that `requester` holds `amount` more (or less, when negative) of a type: what
    /// ledger events do through [`AllocationPolicy::observe`], for simulations and tests.
    pub fn record(
        &self,
        requester: &rm_model::RequesterId,
        resource_type: &ResourceType,
        amount: Quantity,
        unit: &Unit,
        now: Timestamp,
    ) {
        let mut amounts = Demand::new();
        amounts.insert(resource_type.clone(), unit.to_base_milli(amount));
        self.state().add(requester, &amounts, 1, now);
    }

    /// The requester's weighted dominant share now (0 for an unknown requester).
    pub fn dominant_share(&self, requester: &rm_model::RequesterId, now: Timestamp) -> f64 {
        Self::share_in(&mut self.state(), requester, now)
    }

    fn share_in(state: &mut State, requester: &rm_model::RequesterId, now: Timestamp) -> f64 {
        match state.ids.get(requester).copied() {
            Some(t) => {
                state.decay(t, now);
                state.weighted_share(t)
            }
            None => 0.0,
        }
    }

    /// The order key of a dominant share: parts per billion, lower goes first.
    fn share_key(share: f64) -> i64 {
        (share * 1e9) as i64
    }

    /// Sets how many tasks `requester` has waiting. Only requesters with demand are
    /// candidates for [`next`](Self::next) and [`grant_next`](Self::grant_next): as in DRF's
    /// progressive filling, an idle user (however low its share) is never the next served.
    /// (Waiting requests ordered through [`AllocationPolicy::order`] need none of this: they
    /// are the demand.)
    pub fn set_demand(&self, requester: &rm_model::RequesterId, tasks: u64) {
        let mut state = self.state();
        let t = state.tenant(requester, Timestamp::ZERO);
        state.tenants[t].demand = tasks;
        state.reindex(t);
    }

    /// The requester with demand ([`set_demand`](Self::set_demand)) with the lowest weighted
    /// dominant share: the DRF decision of who is served next (ties go to the requester seen
    /// first). `None` when nobody has demand.
    pub fn next(&self, now: Timestamp) -> Option<rm_model::RequesterId> {
        let mut state = self.state();
        Self::next_in(&mut state, now).map(|t| state.names[t].clone())
    }

    fn next_in(state: &mut State, now: Timestamp) -> Option<usize> {
        if state.half_life.is_some() {
            for t in 0..state.tenants.len() {
                state.decay(t, now);
            }
            return (0..state.tenants.len())
                .filter(|&t| state.tenants[t].demand > 0)
                .min_by(|&a, &b| {
                    state
                        .weighted_share(a)
                        .total_cmp(&state.weighted_share(b))
                        .then(a.cmp(&b))
                });
        }
        state.index.first().map(|&(_, t)| t)
    }

    /// Like [`next`](Self::next), and launches one of the chosen requester's tasks at once:
    /// charges it `amounts` and counts one task less of its demand. One progressive-filling
    /// step.
    pub fn grant_next(
        &self,
        amounts: &[(ResourceType, Quantity, Unit)],
        now: Timestamp,
    ) -> Option<rm_model::RequesterId> {
        let mut state = self.state();
        let t = Self::next_in(&mut state, now)?;
        let requester = state.names[t].clone();
        let mut charged = Demand::new();
        for (resource_type, amount, unit) in amounts {
            *charged.entry(resource_type.clone()).or_default() += unit.to_base_milli(*amount);
        }
        state.tenants[t].demand -= 1;
        state.add(&requester, &charged, 1, now);
        Some(requester)
    }
}

impl AllocationPolicy for FairAllocationPolicy {
    fn name(&self) -> &str {
        &self.name
    }

    fn admit(&self, _request: &ReservationRequest, _now: Timestamp) -> Admission {
        Admission::Admit
    }

    /// The weighted dominant share in parts per billion: lower goes first.
    fn order_key(&self, pending: &PendingRequest, now: Timestamp) -> i64 {
        Self::share_key(self.dominant_share(&pending.request.requester, now))
    }

    /// One lock of the usage state for all of them.
    fn order_keys(&self, pending: &[PendingRequest], now: Timestamp) -> Vec<i64> {
        let mut state = self.state();
        pending
            .iter()
            .map(|p| Self::share_key(Self::share_in(&mut state, &p.request.requester, now)))
            .collect()
    }

    fn observe(&self, event: &Event) {
        match &event.kind {
            EventKind::Reserved {
                requester, items, ..
            } => {
                self.state()
                    .add(requester, &demand::of_items(items), 1, event.at);
            }
            EventKind::Ended {
                requester, items, ..
            } => {
                self.state()
                    .add(requester, &demand::of_items(items), -1, event.at);
            }
            _ => {}
        }
    }
}

/// Weighted fair shares: DRF where each requester's dominant share is divided by its weight,
/// so over time requesters receive capacity in proportion to their weights.
#[derive(Debug)]
pub struct WeightedAllocationPolicy {
    fair: FairAllocationPolicy,
}

impl WeightedAllocationPolicy {
    /// A policy named `name`; every requester weighs 1 until set.
    pub fn new(name: &str) -> WeightedAllocationPolicy {
        WeightedAllocationPolicy {
            fair: FairAllocationPolicy::new(name),
        }
    }

    /// Sets a requester's weight.
    pub fn set_weight(&self, requester: rm_model::RequesterId, weight: u32) -> Result<(), Error> {
        self.fair.set_weight(requester, weight)
    }

    /// The shares and decisions underneath.
    pub fn fair(&self) -> &FairAllocationPolicy {
        &self.fair
    }
}

impl AllocationPolicy for WeightedAllocationPolicy {
    fn name(&self) -> &str {
        self.fair.name()
    }

    fn admit(&self, request: &ReservationRequest, now: Timestamp) -> Admission {
        self.fair.admit(request, now)
    }

    fn order_key(&self, pending: &PendingRequest, now: Timestamp) -> i64 {
        self.fair.order_key(pending, now)
    }

    fn order_keys(&self, pending: &[PendingRequest], now: Timestamp) -> Vec<i64> {
        self.fair.order_keys(pending, now)
    }

    fn observe(&self, event: &Event) {
        self.fair.observe(event);
    }
}
