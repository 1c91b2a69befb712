//! Fakes for the `rm-model` traits: a recording event sink, a scale target that records what
//! it was asked, and a policy that admits or refuses by requester.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

pub use rm_model::ManualClock as FakeClock;
use rm_model::{
    Admission, AllocationPolicy, Event, EventKind, EventSink, Refusal, RefusalReason, RequesterId,
    ReservationRequest, ScaleError, ScaleStatus, ScaleTarget, Timestamp,
};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An event sink that keeps every event it receives, in order.
#[derive(Debug, Default)]
pub struct RecordingSink {
    events: Mutex<Vec<Event>>,
}

impl RecordingSink {
    /// An empty sink.
    pub fn new() -> RecordingSink {
        RecordingSink::default()
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Event> {
        lock(&self.events).clone()
    }

    /// The kinds of every event so far.
    pub fn kinds(&self) -> Vec<EventKind> {
        lock(&self.events).iter().map(|e| e.kind.clone()).collect()
    }

    /// A short name per event so far (`reserved`, `ended:released`, …), for compact asserts.
    pub fn names(&self) -> Vec<String> {
        lock(&self.events)
            .iter()
            .map(|e| event_name(&e.kind))
            .collect()
    }

    /// Forgets every event so far.
    pub fn clear(&self) {
        lock(&self.events).clear();
    }
}

/// A short name for an event kind: `reserved`, `confirmed`, `ended:expired`, ….
pub fn event_name(kind: &EventKind) -> String {
    match kind {
        EventKind::ResourceRegistered { .. } => "resource-registered".into(),
        EventKind::ResourceUpdated { .. } => "resource-updated".into(),
        EventKind::ResourceUnregistered { .. } => "resource-unregistered".into(),
        EventKind::CapacityChanged { .. } => "capacity-changed".into(),
        EventKind::Reserved { .. } => "reserved".into(),
        EventKind::Confirmed { .. } => "confirmed".into(),
        EventKind::Renewed { .. } => "renewed".into(),
        EventKind::Shrunk { .. } => "shrunk".into(),
        EventKind::Ended { reason, .. } => format!("ended:{reason}"),
        EventKind::Refused { .. } => "refused".into(),
        EventKind::Queued { .. } => "queued".into(),
        EventKind::Dequeued { .. } => "dequeued".into(),
        EventKind::Scaled { .. } => "scaled".into(),
        _ => "other".into(),
    }
}

impl EventSink for RecordingSink {
    fn publish(&self, event: &Event) {
        lock(&self.events).push(event.clone());
    }
}

/// A scale target with bounds that applies every request at once and records it.
#[derive(Debug)]
pub struct FakeScaleTarget {
    name: String,
    state: Mutex<(ScaleStatus, Vec<u64>, Option<String>)>,
}

impl FakeScaleTarget {
    /// A target named `name` of `current` units within `minimum..=maximum`.
    pub fn new(name: &str, current: u64, minimum: u64, maximum: u64) -> FakeScaleTarget {
        FakeScaleTarget {
            name: name.to_owned(),
            state: Mutex::new((
                ScaleStatus {
                    current,
                    desired: current,
                    minimum,
                    maximum,
                },
                Vec::new(),
                None,
            )),
        }
    }

    /// Every size asked for that was accepted, in order.
    pub fn requests(&self) -> Vec<u64> {
        lock(&self.state).1.clone()
    }

    /// Makes every later request fail with [`ScaleError::Rejected`] for `reason` (or succeed
    /// again with `None`).
    pub fn reject_with(&self, reason: Option<&str>) {
        lock(&self.state).2 = reason.map(str::to_owned);
    }
}

impl ScaleTarget for FakeScaleTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn status(&self) -> Result<ScaleStatus, ScaleError> {
        Ok(lock(&self.state).0)
    }

    fn scale_to(&self, desired: u64) -> Result<ScaleStatus, ScaleError> {
        let mut state = lock(&self.state);
        if let Some(reason) = &state.2 {
            return Err(ScaleError::Rejected {
                target: self.name.clone(),
                reason: reason.clone(),
            });
        }
        let status = state.0;
        if !(status.minimum..=status.maximum).contains(&desired) {
            return Err(ScaleError::OutOfBounds {
                target: self.name.clone(),
                requested: desired,
                minimum: status.minimum,
                maximum: status.maximum,
            });
        }
        state.0.current = desired;
        state.0.desired = desired;
        state.1.push(desired);
        Ok(state.0)
    }
}

/// A policy that admits everyone except the requesters it was told to refuse, and remembers
/// every event it observed.
#[derive(Debug, Default)]
pub struct StaticPolicy {
    refused: Mutex<BTreeMap<RequesterId, (RefusalReason, String)>>,
    observed: Mutex<Vec<Event>>,
}

impl StaticPolicy {
    /// A policy that admits everyone.
    pub fn admit_all() -> StaticPolicy {
        StaticPolicy::default()
    }

    /// Refuses `requester` from now on with `reason` and `message`.
    pub fn refuse(&self, requester: RequesterId, reason: RefusalReason, message: &str) {
        lock(&self.refused).insert(requester, (reason, message.to_owned()));
    }

    /// Every event observed so far.
    pub fn observed(&self) -> Vec<Event> {
        lock(&self.observed).clone()
    }
}

impl AllocationPolicy for StaticPolicy {
    fn name(&self) -> &str {
        "static"
    }

    fn admit(&self, request: &ReservationRequest, _now: Timestamp) -> Admission {
        match lock(&self.refused).get(&request.requester) {
            Some((reason, message)) => Admission::Refuse(Refusal::new(*reason, message.clone())),
            None => Admission::Admit,
        }
    }

    fn observe(&self, event: &Event) {
        lock(&self.observed).push(event.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_target_honours_bounds_and_rejection() {
        let target = FakeScaleTarget::new("pool", 2, 1, 4);
        assert_eq!(target.scale_to(4).unwrap().current, 4);
        assert!(matches!(
            target.scale_to(5),
            Err(ScaleError::OutOfBounds { requested: 5, .. })
        ));
        target.reject_with(Some("cooldown"));
        assert!(matches!(
            target.scale_to(3),
            Err(ScaleError::Rejected { .. })
        ));
        target.reject_with(None);
        assert_eq!(target.scale_to(1).unwrap().desired, 1);
        assert_eq!(target.requests(), [4, 1]);
        assert_eq!(target.name(), "pool");
    }

    #[test]
    fn static_policy_refuses_only_whom_it_was_told() {
        use rm_model::{ResourceRequirement, ResourceType, Unit};
        let policy = StaticPolicy::admit_all();
        let alice = RequesterId::new("alice").unwrap();
        let request = ReservationRequest::new(
            alice.clone(),
            vec![ResourceRequirement::new(
                ResourceType::Compute,
                1,
                Unit::CORES,
            )],
        );
        assert!(matches!(
            policy.admit(&request, Timestamp::ZERO),
            Admission::Admit
        ));
        policy.refuse(
            alice,
            RefusalReason::QuotaExceeded,
            "quota of alice: 0 cores left",
        );
        match policy.admit(&request, Timestamp::ZERO) {
            Admission::Refuse(refusal) => {
                assert_eq!(refusal.reason, RefusalReason::QuotaExceeded);
                assert!(refusal.message.contains("quota of alice"));
            }
            Admission::Admit => panic!("alice should be refused"),
        }
    }
}
