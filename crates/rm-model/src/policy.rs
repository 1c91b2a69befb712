//! The allocation-policy contract: who may have capacity now, and in which order waiting
//! requests are admitted.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::event::Event;
use crate::ledger::{LedgerError, ReservationLedger};
use crate::reservation::{Reservation, ReservationId, ReservationRequest};

/// Why a request was refused, as a stable machine-readable code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RefusalReason {
    /// A hard quota of the requester or one of its groups would be exceeded.
    QuotaExceeded,
    /// The group would borrow more idle capacity than its borrowing limit.
    BorrowingLimitExceeded,
    /// Granting would take the requester beyond its fair or weighted share while others wait.
    FairShareExceeded,
    /// The requester's priority is too low for the capacity left.
    PriorityTooLow,
    /// Not enough free capacity among matching resources.
    InsufficientCapacity,
    /// No registered resource could ever hold a requirement.
    Unsatisfiable,
    /// The request is malformed.
    InvalidRequest,
    /// The ledger did not answer definitely (timeout, unavailable).
    Indeterminate,
    /// Any other refusal by a policy.
    PolicyDenied,
}

impl RefusalReason {
    /// Every reason, so that a counter per reason can be there (at zero) from the start.
    pub const ALL: [RefusalReason; 9] = [
        RefusalReason::QuotaExceeded,
        RefusalReason::BorrowingLimitExceeded,
        RefusalReason::FairShareExceeded,
        RefusalReason::PriorityTooLow,
        RefusalReason::InsufficientCapacity,
        RefusalReason::Unsatisfiable,
        RefusalReason::InvalidRequest,
        RefusalReason::Indeterminate,
        RefusalReason::PolicyDenied,
    ];

    /// The code (`quota-exceeded`, …), fit for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::QuotaExceeded => "quota-exceeded",
            RefusalReason::BorrowingLimitExceeded => "borrowing-limit-exceeded",
            RefusalReason::FairShareExceeded => "fair-share-exceeded",
            RefusalReason::PriorityTooLow => "priority-too-low",
            RefusalReason::InsufficientCapacity => "insufficient-capacity",
            RefusalReason::Unsatisfiable => "unsatisfiable",
            RefusalReason::InvalidRequest => "invalid-request",
            RefusalReason::Indeterminate => "indeterminate",
            RefusalReason::PolicyDenied => "policy-denied",
        }
    }

    /// The reason a ledger error amounts to.
    pub fn of_ledger_error(error: &LedgerError) -> RefusalReason {
        match error {
            LedgerError::InsufficientCapacity { .. } => RefusalReason::InsufficientCapacity,
            LedgerError::InvalidInput { .. } | LedgerError::IdConflict { .. } => {
                RefusalReason::InvalidRequest
            }
            error if error.is_indeterminate() => RefusalReason::Indeterminate,
            _ => RefusalReason::PolicyDenied,
        }
    }
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A refusal: a code, and a message for people that names the limit that refused.
#[derive(Clone, Debug)]
pub struct Refusal {
    /// The code.
    pub reason: RefusalReason,
    /// What refused and why (`quota of team-a for compute: 12 of 12 cores used`).
    pub message: String,
    /// The ledger's error, when the ledger refused.
    pub ledger_error: Option<LedgerError>,
}

impl Refusal {
    /// A refusal by a policy.
    pub fn new(reason: RefusalReason, message: impl Into<String>) -> Refusal {
        Refusal {
            reason,
            message: message.into(),
            ledger_error: None,
        }
    }

    /// A refusal by the ledger.
    pub fn from_ledger(error: LedgerError) -> Refusal {
        Refusal {
            reason: RefusalReason::of_ledger_error(&error),
            message: error.to_string(),
            ledger_error: Some(error),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

/// A policy's answer to "may this request have capacity now?".
#[derive(Clone, Debug)]
pub enum Admission {
    /// Go ahead and reserve.
    Admit,
    /// Not now.
    Refuse(Refusal),
}

/// The outcome of [`AllocationPolicy::allocate`]: a reservation, or a refusal with its reason.
#[derive(Clone, Debug)]
pub struct AllocationResult {
    /// The policy that decided.
    pub policy: String,
    /// The grant or the refusal.
    pub outcome: Result<Reservation, Refusal>,
}

impl AllocationResult {
    /// Whether capacity was granted.
    pub fn is_successful(&self) -> bool {
        self.outcome.is_ok()
    }

    /// A message for people: what was granted, or why not.
    pub fn message(&self) -> String {
        match &self.outcome {
            Ok(reservation) => format!(
                "granted reservation {} ({} items)",
                reservation.id,
                reservation.items.len()
            ),
            Err(refusal) => refusal.message.clone(),
        }
    }

    /// The refusal code, when refused.
    pub fn reason(&self) -> Option<RefusalReason> {
        self.outcome.as_ref().err().map(|refusal| refusal.reason)
    }

    /// The reservation, when granted.
    pub fn reservation(&self) -> Option<&Reservation> {
        self.outcome.as_ref().ok()
    }
}

/// A request waiting for admission, as policies see it when they order a queue.
#[derive(Clone, Debug)]
pub struct PendingRequest {
    /// The request.
    pub request: Arc<ReservationRequest>,
    /// When it started waiting.
    pub enqueued_at: Timestamp,
    /// Arrival order among waiting requests (lower came first).
    pub arrival: u64,
}

/// Decides who may have capacity when not everyone can.
///
/// Contract:
/// - `admit` changes no ledger. A policy that tracks usage (quota, fair share) learns it from
///   [`AllocationPolicy::observe`], fed with ledger events, so releases and expiries return
///   what they held. A gating policy may set usage aside for an admitted request's id (so
///   that concurrent admissions cannot both pass a limit); the caller then either reserves
///   (the grant's event confirms it) or calls [`AllocationPolicy::withdraw`].
/// - `order` returns a permutation of `0..pending.len()`: the order in which the policy would
///   admit the waiting requests now, by `order_key` then arrival. It is deterministic for
///   equal inputs. `first` names the request `order` puts first, without ordering the rest
///   (a wait queue asks it on every release); a policy that overrides `order` overrides
///   `first` to match.
/// - `allocate` is `admit` then `ledger.reserve`; the result says which policy decided and
///   carries a reason code for every refusal.
/// - Implementations are `Send + Sync` with `&self`, safe to call from many threads.
pub trait AllocationPolicy: Send + Sync {
    /// The policy's name, for results and metrics labels.
    fn name(&self) -> &str;

    /// May `request` have capacity now?
    fn admit(&self, request: &ReservationRequest, now: Timestamp) -> Admission;

    /// The order in which to admit `pending`. The default is priority (highest first), then
    /// arrival.
    fn order(&self, pending: &[PendingRequest], now: Timestamp) -> Vec<usize> {
        let keys = self.order_keys(pending, now);
        let mut order: Vec<usize> = (0..pending.len()).collect();
        order.sort_by_key(|&i| (keys[i], pending[i].arrival));
        order
    }

    /// The request [`order`](Self::order) puts first (`None` when nothing waits), found in
    /// one pass: the lowest key, then the earliest arrival. A policy that overrides `order`
    /// overrides this to match.
    fn first(&self, pending: &[PendingRequest], now: Timestamp) -> Option<usize> {
        let keys = self.order_keys(pending, now);
        (0..pending.len()).min_by_key(|&i| (keys[i], pending[i].arrival))
    }

    /// The keys of `pending`, index for index: each one's [`order_key`](Self::order_key).
    /// A policy whose keys need a lock or a lookup overrides it to take the lock once per
    /// call; `order` and `first` go through it.
    fn order_keys(&self, pending: &[PendingRequest], now: Timestamp) -> Vec<i64> {
        pending.iter().map(|p| self.order_key(p, now)).collect()
    }

    /// The key this policy orders a waiting request by: lower goes first, ties by arrival.
    /// Composed policies sort by their keys in turn. The default is the request's priority,
    /// highest first.
    fn order_key(&self, pending: &PendingRequest, now: Timestamp) -> i64 {
        let _ = now;
        -i64::from(pending.request.priority.0)
    }

    /// Learns from a ledger event (grants, releases, expiries). The default ignores it.
    fn observe(&self, event: &Event) {
        let _ = event;
    }

    /// Undoes an admission whose reservation was not granted, releasing whatever the policy
    /// set aside for the request's id in `admit`. The default does nothing.
    fn withdraw(&self, request: &ReservationRequest) {
        let _ = request;
    }

    /// When [`admit`](Self::admit) refuses `request` for quota that ending some of the
    /// `active` holds would give back (Kueue's reclaim within a cohort, or preemption within a
    /// queue): those holds, in the order to end them, a minimal set with which `admit` would
    /// accept the request. Empty when nothing may be reclaimed for it. It only answers; the
    /// caller ends the holds (and may still need room on a resource). The default reclaims
    /// nothing.
    fn reclaim(&self, request: &ReservationRequest, active: &[Reservation]) -> Vec<ReservationId> {
        let _ = (request, active);
        Vec::new()
    }

    /// Admits and reserves: the seed's `policy.allocate(allocator, requester_id, requirements)`.
    /// Gives the request an id when it has none (so that an admission can be tracked and
    /// withdrawn), and withdraws the admission when the ledger refuses.
    fn allocate(
        &self,
        ledger: &dyn ReservationLedger,
        request: &ReservationRequest,
        now: Timestamp,
    ) -> AllocationResult {
        let named;
        let request = if request.id.is_some() {
            request
        } else {
            named = request.clone().with_id(crate::ReservationId::generate());
            &named
        };
        let outcome = match self.admit(request, now) {
            Admission::Refuse(refusal) => Err(refusal),
            Admission::Admit => ledger.reserve(request).map_err(|err| {
                self.withdraw(request);
                Refusal::from_ledger(err)
            }),
        };
        AllocationResult {
            policy: self.name().to_owned(),
            outcome,
        }
    }
}

macro_rules! forward_policy {
    ($($ptr:ty),*) => {$(
        impl<T: AllocationPolicy + ?Sized> AllocationPolicy for $ptr {
            fn name(&self) -> &str {
                (**self).name()
            }
            fn admit(&self, request: &ReservationRequest, now: Timestamp) -> Admission {
                (**self).admit(request, now)
            }
            fn order(&self, pending: &[PendingRequest], now: Timestamp) -> Vec<usize> {
                (**self).order(pending, now)
            }
            fn first(&self, pending: &[PendingRequest], now: Timestamp) -> Option<usize> {
                (**self).first(pending, now)
            }
            fn order_keys(&self, pending: &[PendingRequest], now: Timestamp) -> Vec<i64> {
                (**self).order_keys(pending, now)
            }
            fn order_key(&self, pending: &PendingRequest, now: Timestamp) -> i64 {
                (**self).order_key(pending, now)
            }
            fn observe(&self, event: &Event) {
                (**self).observe(event)
            }
            fn withdraw(&self, request: &ReservationRequest) {
                (**self).withdraw(request)
            }
            fn reclaim(&self, request: &ReservationRequest, active: &[Reservation]) -> Vec<ReservationId> {
                (**self).reclaim(request, active)
            }
            fn allocate(&self, ledger: &dyn ReservationLedger, request: &ReservationRequest, now: Timestamp) -> AllocationResult {
                (**self).allocate(ledger, request, now)
            }
        }
    )*};
}
forward_policy!(&T, Box<T>, Arc<T>);
