//! [`PriorityAllocationPolicy`]: requester priorities and priority classes, with aging so a
//! waiting request gains priority over time and cannot starve.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use rm_model::{
    Admission, AllocationPolicy, AllocationResult, PendingRequest, PreemptionPolicy, Priority,
    PriorityClass, RequesterId, ReservationRequest, ResourceRequirement, Timestamp,
};

use crate::Error;
use crate::allocator::{ResourceAllocator, allocate_seed};

/// How waiting raises priority: `step` every `every` waited, up to `cap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Aging {
    /// Priority gained per period.
    pub step: i32,
    /// The period.
    pub every: Duration,
    /// The highest effective priority aging can reach.
    pub cap: i32,
}

impl Aging {
    /// The longest a request of priority `low` waits behind a steady stream of fresh requests
    /// of priority `high`, counted in whole periods: once it has waited this long its
    /// effective priority exceeds `high` (when `cap` allows), so it is next. Add one
    /// scheduling cycle for the admission itself.
    pub fn bound(&self, low: i32, high: i32) -> Option<Duration> {
        if self.cap <= high || self.step <= 0 {
            return None;
        }
        let periods = (i64::from(high) - i64::from(low)).max(0) / i64::from(self.step) + 1;
        u32::try_from(periods)
            .ok()
            .and_then(|p| self.every.checked_mul(p))
    }
}

#[derive(Default)]
struct Settings {
    priorities: HashMap<RequesterId, Priority>,
    classes: HashMap<String, PriorityClass>,
    class_of: HashMap<RequesterId, String>,
}

/// Orders waiting requests by priority (highest first), raised by aging.
///
/// A requester's priority comes from [`set_requester_priority`](Self::set_requester_priority),
/// else from its [priority class](Self::set_requester_class), else from the request. It admits
/// every request: priority decides order and, for `rm-contention`, who may preempt whom
/// ([`preemption_policy`](Self::preemption_policy)).
pub struct PriorityAllocationPolicy {
    name: String,
    settings: RwLock<Settings>,
    aging: Option<Aging>,
}

impl std::fmt::Debug for PriorityAllocationPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PriorityAllocationPolicy")
            .field("name", &self.name)
            .field("aging", &self.aging)
            .finish_non_exhaustive()
    }
}

impl PriorityAllocationPolicy {
    /// A policy named `name`, without aging.
    pub fn new(name: &str) -> PriorityAllocationPolicy {
        PriorityAllocationPolicy {
            name: name.to_owned(),
            settings: RwLock::new(Settings::default()),
            aging: None,
        }
    }

    /// Raises a waiting request's priority by `aging.step` every `aging.every`, up to
    /// `aging.cap`. Fails on a non-positive step or a zero period.
    pub fn with_aging(mut self, aging: Aging) -> Result<PriorityAllocationPolicy, Error> {
        if aging.step <= 0 || aging.every.is_zero() {
            return Err(Error::InvalidSetting {
                setting: "aging",
                reason: "the step and the period must be positive",
            });
        }
        self.aging = Some(aging);
        Ok(self)
    }

    /// The seed's `set_requester_priority(requester_id, priority)`.
    pub fn set_requester_priority(&self, requester: RequesterId, priority: i32) {
        crate::write(&self.settings)
            .priorities
            .insert(requester, Priority(priority));
    }

    /// Defines (or redefines) a priority class.
    pub fn add_class(&self, class: PriorityClass) {
        crate::write(&self.settings)
            .classes
            .insert(class.name.clone(), class);
    }

    /// Puts a requester in a class; fails for an undefined class.
    pub fn set_requester_class(&self, requester: RequesterId, class: &str) -> Result<(), Error> {
        let mut settings = crate::write(&self.settings);
        if !settings.classes.contains_key(class) {
            return Err(Error::UnknownClass {
                class: rm_model::clip(class),
            });
        }
        settings.class_of.insert(requester, class.to_owned());
        Ok(())
    }

    /// The priority a request of `requester` gets before aging.
    pub fn base_priority(&self, requester: &RequesterId, requested: Priority) -> Priority {
        Self::base_in(&crate::read(&self.settings), requester, requested)
    }

    fn base_in(settings: &Settings, requester: &RequesterId, requested: Priority) -> Priority {
        if let Some(priority) = settings.priorities.get(requester) {
            return *priority;
        }
        settings
            .class_of
            .get(requester)
            .and_then(|class| settings.classes.get(class))
            .map_or(requested, |class| class.priority)
    }

    /// Whether `requester` may preempt (false for a class with `PreemptionPolicy::Never`).
    pub fn preemption_policy(&self, requester: &RequesterId) -> PreemptionPolicy {
        let settings = crate::read(&self.settings);
        settings
            .class_of
            .get(requester)
            .and_then(|class| settings.classes.get(class))
            .map_or(PreemptionPolicy::PreemptLowerPriority, |class| {
                class.preemption
            })
    }

    /// The priority a waiting request has now: its base priority raised by aging.
    pub fn effective_priority(&self, pending: &PendingRequest, now: Timestamp) -> i64 {
        self.effective_in(&crate::read(&self.settings), pending, now)
    }

    fn effective_in(&self, settings: &Settings, pending: &PendingRequest, now: Timestamp) -> i64 {
        let base = i64::from(
            Self::base_in(
                settings,
                &pending.request.requester,
                pending.request.priority,
            )
            .0,
        );
        let Some(aging) = self.aging else {
            return base;
        };
        let waited = now.saturating_duration_since(pending.enqueued_at);
        let periods = i64::try_from(waited.as_nanos() / aging.every.as_nanos()).unwrap_or(i64::MAX);
        let raised = base.saturating_add(periods.saturating_mul(i64::from(aging.step)));
        raised.min(i64::from(aging.cap).max(base))
    }

    /// The seed's `allocate(allocator, requester_id, requirements)`, with the requester's
    /// priority on the request.
    pub fn allocate(
        &self,
        allocator: &ResourceAllocator,
        requester: &RequesterId,
        requirements: &[ResourceRequirement],
    ) -> AllocationResult {
        let priority = self.base_priority(requester, Priority::default());
        let request = ReservationRequest::new(requester.clone(), requirements.to_vec())
            .with_priority(priority);
        allocator.allocate(self, &request)
    }
}

impl AllocationPolicy for PriorityAllocationPolicy {
    fn name(&self) -> &str {
        &self.name
    }

    fn admit(&self, _request: &ReservationRequest, _now: Timestamp) -> Admission {
        Admission::Admit
    }

    fn order_key(&self, pending: &PendingRequest, now: Timestamp) -> i64 {
        -self.effective_priority(pending, now)
    }

    /// One read of the settings for all of them.
    fn order_keys(&self, pending: &[PendingRequest], now: Timestamp) -> Vec<i64> {
        let settings = crate::read(&self.settings);
        pending
            .iter()
            .map(|p| -self.effective_in(&settings, p, now))
            .collect()
    }
}

// The seed-shaped allocate of the other policies shares one implementation.
macro_rules! seed_allocate {
    ($($policy:ty),*) => {$(
        impl $policy {
            /// The seed's `allocate(allocator, requester_id, requirements)`.
            pub fn allocate(
                &self,
                allocator: &ResourceAllocator,
                requester: &RequesterId,
                requirements: &[ResourceRequirement],
            ) -> AllocationResult {
                allocate_seed(self, allocator, requester, requirements)
            }
        }
    )*};
}
seed_allocate!(
    crate::QuotaAllocationPolicy,
    crate::FairAllocationPolicy,
    crate::WeightedAllocationPolicy,
    crate::ComposedPolicy
);
