//! [`ComposedPolicy`]: policies in sequence, configured rather than hard-wired (for example a
//! quota gate, then fair order, then priority).

use std::cmp::Ordering;
use std::sync::Arc;

use rm_model::{
    Admission, AllocationPolicy, Event, PendingRequest, Reservation, ReservationId,
    ReservationRequest, Timestamp,
};

/// Several policies as one: a request is admitted when every policy admits it (the first
/// refusal is the answer, and earlier admissions are withdrawn); waiting requests are ordered
/// by the first policy's key, ties by the second's, and so on, then by arrival; every policy
/// observes every event.
pub struct ComposedPolicy {
    name: String,
    policies: Vec<Arc<dyn AllocationPolicy>>,
}

impl std::fmt::Debug for ComposedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.policies.iter().map(|p| p.name()).collect();
        f.debug_struct("ComposedPolicy")
            .field("name", &self.name)
            .field("policies", &names)
            .finish()
    }
}

impl ComposedPolicy {
    /// An empty composition, which admits everything in arrival order.
    pub fn new(name: &str) -> ComposedPolicy {
        ComposedPolicy {
            name: name.to_owned(),
            policies: Vec::new(),
        }
    }

    /// Appends a policy.
    pub fn then(mut self, policy: Arc<dyn AllocationPolicy>) -> ComposedPolicy {
        self.policies.push(policy);
        self
    }
}

impl ComposedPolicy {
    /// Each policy's keys of `pending`, one column per policy (each computed in one call).
    fn columns(&self, pending: &[PendingRequest], now: Timestamp) -> Vec<Vec<i64>> {
        self.policies
            .iter()
            .map(|policy| policy.order_keys(pending, now))
            .collect()
    }
}

/// The composed order of two waiting requests: key by key, policy by policy, then arrival.
fn compare(columns: &[Vec<i64>], pending: &[PendingRequest], a: usize, b: usize) -> Ordering {
    columns
        .iter()
        .map(|keys| keys[a].cmp(&keys[b]))
        .find(|ordering| ordering.is_ne())
        .unwrap_or(Ordering::Equal)
        .then(pending[a].arrival.cmp(&pending[b].arrival))
}

impl AllocationPolicy for ComposedPolicy {
    fn name(&self) -> &str {
        &self.name
    }

    fn admit(&self, request: &ReservationRequest, now: Timestamp) -> Admission {
        for (i, policy) in self.policies.iter().enumerate() {
            if let Admission::Refuse(refusal) = policy.admit(request, now) {
                for earlier in &self.policies[..i] {
                    earlier.withdraw(request);
                }
                return Admission::Refuse(refusal);
            }
        }
        Admission::Admit
    }

    fn order(&self, pending: &[PendingRequest], now: Timestamp) -> Vec<usize> {
        let columns = self.columns(pending, now);
        let mut order: Vec<usize> = (0..pending.len()).collect();
        order.sort_by(|&a, &b| compare(&columns, pending, a, b));
        order
    }

    fn first(&self, pending: &[PendingRequest], now: Timestamp) -> Option<usize> {
        if pending.is_empty() {
            return None;
        }
        let columns = self.columns(pending, now);
        (0..pending.len()).min_by(|&a, &b| compare(&columns, pending, a, b))
    }

    fn order_keys(&self, pending: &[PendingRequest], now: Timestamp) -> Vec<i64> {
        match self.policies.first() {
            Some(policy) => policy.order_keys(pending, now),
            None => vec![0; pending.len()],
        }
    }

    fn order_key(&self, pending: &PendingRequest, now: Timestamp) -> i64 {
        self.policies
            .first()
            .map_or(0, |p| p.order_key(pending, now))
    }

    fn observe(&self, event: &Event) {
        for policy in &self.policies {
            policy.observe(event);
        }
    }

    fn withdraw(&self, request: &ReservationRequest) {
        for policy in &self.policies {
            policy.withdraw(request);
        }
    }

    /// What the first policy with something to reclaim for the request would reclaim.
    fn reclaim(&self, request: &ReservationRequest, active: &[Reservation]) -> Vec<ReservationId> {
        self.policies
            .iter()
            .map(|policy| policy.reclaim(request, active))
            .find(|victims| !victims.is_empty())
            .unwrap_or_default()
    }
}
