//! The reservation ledger contract: the seam between the system and whatever stores holds (the
//! embedded `rm-reserve`, and later a shared PostgreSQL store).
//!
//! The contract is written for a remote, fallible store: every operation returns a `Result`
//! whose errors separate definite outcomes from indeterminate ones, operations are idempotent
//! by reservation id, and the contract speaks in durations, never wall-clock instants.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::name::ResourceName;
use crate::quantity::Quantity;
use crate::reservation::{
    FencingToken, Reservation, ReservationId, ReservationRequest, ReservationState,
};
use crate::resource::{Resource, ResourceType};
use crate::unit::Unit;

/// Why one requirement of a request could not be placed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shortfall {
    /// The requirement's index in the request.
    pub requirement: usize,
    /// Its resource type.
    pub resource_type: ResourceType,
    /// What it asked for, in its own unit.
    pub requested: Quantity,
    /// Its unit.
    pub unit: Unit,
    /// How many registered resources offer the type and pass its hard constraints.
    pub matching_resources: usize,
    /// The candidate that came closest, if any matched.
    pub best_candidate: Option<ResourceName>,
    /// What the best candidate has free, in the requirement's unit (zero when none matched).
    pub available: Quantity,
    /// `requested - available`.
    pub short_by: Quantity,
    /// A sentence for people: which dimension falls short, or which rule excluded everything.
    pub detail: String,
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "requirements[{}] ({} {} {}): {} matching resources",
            self.requirement,
            self.requested,
            self.unit,
            self.resource_type,
            self.matching_resources
        )?;
        if let Some(best) = &self.best_candidate {
            write!(
                f,
                ", best {best} has {} free, short by {}",
                self.available, self.short_by
            )?;
        }
        if !self.detail.is_empty() {
            write!(f, "; {}", self.detail)?;
        }
        Ok(())
    }
}

impl Shortfall {
    /// Explains why requirement `index` could not be placed.
    ///
    /// `offering` counts the registered resources that offer its type; `matching` yields each
    /// resource that also passes its constraints and affinity rules, with what it has free of
    /// the type (in the resource's unit) and whether that capacity is draining; `colocated`
    /// says whether the requirement was placed as part of a co-located group.
    pub fn explain<'a>(
        index: usize,
        requirement: &crate::ResourceRequirement,
        offering: usize,
        matching: impl IntoIterator<Item = (&'a Resource, Quantity, bool)>,
        colocated: bool,
    ) -> Shortfall {
        let resource_type = requirement.resource_type();
        let requested = requirement.amount();
        let mut count = 0;
        let mut best: Option<(Quantity, &Resource, bool)> = None;
        for (resource, free, draining) in matching {
            count += 1;
            let Some(capacity) = resource.capacity_of(resource_type) else {
                continue;
            };
            let Ok(free) = capacity.unit().convert_floor(free, requirement.unit()) else {
                continue;
            };
            if best.is_none_or(|(most, _, _)| free > most) {
                best = Some((free, resource, draining));
            }
        }
        let available = best.map_or(Quantity::ZERO, |(free, _, _)| free);
        let detail = if offering == 0 {
            format!("no registered resource offers {resource_type}")
        } else if count == 0 {
            format!(
                "none of the {offering} resources offering {resource_type} passes the constraints and affinity rules"
            )
        } else if available >= requested && colocated {
            format!(
                "{resource_type} fits alone, but the co-located group fits on no single resource"
            )
        } else if available >= requested {
            format!(
                "{requested} {} is not a whole number of thousandths in the unit of the matching resources",
                requirement.unit()
            )
        } else if best.is_some_and(|(_, _, draining)| draining) {
            format!("{resource_type} falls short (the best candidate is draining)")
        } else {
            format!("{resource_type} falls short")
        };
        Shortfall {
            requirement: index,
            resource_type: resource_type.clone(),
            requested,
            unit: requirement.unit().clone(),
            matching_resources: count,
            best_candidate: best.map(|(_, resource, _)| resource.name().clone()),
            available,
            short_by: requested.saturating_sub_to_zero(available),
            detail,
        }
    }
}

fn list_shortfalls(list: &[Shortfall]) -> String {
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Shrinks the item of elastic requirement `requirement` in `items` to `to`, as
/// [`ReservationLedger::shrink`] specifies: returns the changed item's index and its amount
/// before, `None` when `to` is the current amount (nothing to do), or the error naming what
/// is wrong. One rule for every ledger.
pub fn shrink_item(
    items: &mut [crate::ReservationItem],
    requirement: usize,
    to: Quantity,
) -> Result<Option<(usize, Quantity)>, LedgerError> {
    let invalid = |field: &str, reason: String| LedgerError::InvalidInput {
        field: field.to_owned(),
        reason,
    };
    let index = items
        .iter()
        .position(|i| i.requirement == requirement)
        .ok_or_else(|| {
            invalid(
                "requirement",
                format!("requirement {requirement} has no item"),
            )
        })?;
    let item = &mut items[index];
    let minimum = item.minimum.ok_or_else(|| {
        invalid(
            "requirement",
            format!("requirement {requirement} is not elastic"),
        )
    })?;
    if to < minimum || to > item.amount {
        return Err(invalid(
            "to",
            format!(
                "must lie between the minimum {minimum} and the current {}",
                item.amount
            ),
        ));
    }
    if to == item.amount {
        return Ok(None);
    }
    let from = item.amount;
    item.amount = to;
    Ok(Some((index, from)))
}

/// A failure of a ledger operation.
///
/// Definite errors mean the operation did not apply and nothing changed. Indeterminate errors
/// ([`LedgerError::Timeout`], [`LedgerError::Unavailable`]) mean it may or may not have applied:
/// retry with the same reservation id, which is safe because operations are idempotent by id.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// Not enough free capacity among the resources that match, for at least one requirement.
    #[error("reserve for {requester}: insufficient capacity: {}", list_shortfalls(.shortfalls))]
    InsufficientCapacity {
        /// Who asked.
        requester: crate::RequesterId,
        /// One entry per requirement that could not be placed.
        shortfalls: Vec<Shortfall>,
    },
    /// The input is malformed.
    #[error("accept input: {field}: {reason}")]
    InvalidInput {
        /// The path of the offending field (`requirements[0].amount`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No reservation has this id.
    #[error("find reservation {id}: it does not exist")]
    UnknownReservation {
        /// The id asked for.
        id: ReservationId,
    },
    /// No resource has this name (or it lacks the capacity type named).
    #[error("find resource {name}: it does not exist")]
    UnknownResource {
        /// The name asked for.
        name: ResourceName,
    },
    /// A resource with this name is already registered.
    #[error("register resource {name}: a resource with this name exists")]
    DuplicateResource {
        /// The name.
        name: ResourceName,
    },
    /// The resource still has active holds on capacity the change would remove.
    #[error("change resource {name}: {active} active reservations hold capacity on it")]
    ResourceBusy {
        /// The resource.
        name: ResourceName,
        /// How many reservations hold capacity on it.
        active: usize,
    },
    /// The reservation's TTL ran out before the operation.
    #[error("{operation} reservation {id}: it expired")]
    Expired {
        /// The operation tried.
        operation: &'static str,
        /// The reservation.
        id: ReservationId,
    },
    /// The reservation is in a state that does not allow the operation.
    #[error("{operation} reservation {id}: it is {state}")]
    InvalidState {
        /// The operation tried.
        operation: &'static str,
        /// The reservation.
        id: ReservationId,
        /// Its current state.
        state: ReservationState,
    },
    /// The caller presented a fencing token of an earlier grant.
    #[error("{operation} reservation {id}: fencing token {presented} is stale (current {current})")]
    StaleFencingToken {
        /// The operation tried.
        operation: &'static str,
        /// The reservation.
        id: ReservationId,
        /// The token presented.
        presented: FencingToken,
        /// The reservation's token.
        current: FencingToken,
    },
    /// The id is already used by a different request.
    #[error("reserve with id {id}: the id is used by a different request")]
    IdConflict {
        /// The id.
        id: ReservationId,
    },
    /// The store did not answer in time; the operation may have applied.
    #[error("{operation}: timed out after {after:?}; it may have applied, retry with the same id")]
    Timeout {
        /// The operation tried.
        operation: &'static str,
        /// How long the caller waited.
        after: Duration,
    },
    /// The store could not be reached or failed; the operation may have applied.
    #[error("{operation}: the ledger is unavailable; it may have applied, retry with the same id")]
    Unavailable {
        /// The operation tried.
        operation: &'static str,
        /// The underlying failure.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
}

impl LedgerError {
    /// Whether the outcome is known: the operation did not apply. `false` for timeouts and
    /// unavailability, where it may have.
    pub fn is_definite(&self) -> bool {
        !self.is_indeterminate()
    }

    /// Whether the operation may have applied (retry with the same id to find out).
    pub fn is_indeterminate(&self) -> bool {
        matches!(
            self,
            LedgerError::Timeout { .. } | LedgerError::Unavailable { .. }
        )
    }

    /// The refusal of `operation` on reservation `id` because it is in `state`: `Expired` for
    /// an expired hold, `InvalidState` otherwise. One rule for every ledger.
    pub fn wrong_state(
        operation: &'static str,
        id: &ReservationId,
        state: ReservationState,
    ) -> LedgerError {
        if state == ReservationState::Expired {
            LedgerError::Expired {
                operation,
                id: id.clone(),
            }
        } else {
            LedgerError::InvalidState {
                operation,
                id: id.clone(),
                state,
            }
        }
    }

    /// A stable machine-readable code for the error (`insufficient-capacity`, `timeout`, …),
    /// fit for metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            LedgerError::InsufficientCapacity { .. } => "insufficient-capacity",
            LedgerError::InvalidInput { .. } => "invalid-input",
            LedgerError::UnknownReservation { .. } => "unknown-reservation",
            LedgerError::UnknownResource { .. } => "unknown-resource",
            LedgerError::DuplicateResource { .. } => "duplicate-resource",
            LedgerError::ResourceBusy { .. } => "resource-busy",
            LedgerError::Expired { .. } => "expired",
            LedgerError::InvalidState { .. } => "invalid-state",
            LedgerError::StaleFencingToken { .. } => "stale-fencing-token",
            LedgerError::IdConflict { .. } => "id-conflict",
            LedgerError::Timeout { .. } => "timeout",
            LedgerError::Unavailable { .. } => "unavailable",
        }
    }
}

/// The accounting of one capacity (one resource, one type) at a moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityUsage {
    /// The resource.
    pub resource: ResourceName,
    /// Which of its capacities.
    pub resource_type: ResourceType,
    /// The capacity's unit; all amounts below are in it.
    pub unit: Unit,
    /// The maximum.
    pub capacity: Quantity,
    /// In use outside the ledger (the capacity's `current` at registration).
    pub external: Quantity,
    /// Held by pending reservations.
    pub pending: Quantity,
    /// Held by confirmed reservations.
    pub confirmed: Quantity,
    /// Held by leases: confirmed holds taken through a ledger's lightweight permit path,
    /// without a reservation record (zero for ledgers without one).
    #[serde(default)]
    pub leased: Quantity,
    /// Free for new grants: `capacity - external - pending - confirmed - leased`, or zero
    /// while draining.
    pub free: Quantity,
    /// Whether more is held than the capacity (after a shrink); no new grants until it drains.
    pub draining: bool,
}

impl CapacityUsage {
    /// `external + pending + confirmed + leased`, saturating.
    pub fn used(&self) -> Quantity {
        [self.external, self.pending, self.confirmed, self.leased]
            .into_iter()
            .fold(Quantity::ZERO, |sum, q| {
                sum.checked_add(q).unwrap_or(Quantity::MAX)
            })
    }

    /// `used / capacity`, for reports only.
    pub fn utilization(&self) -> f64 {
        self.used().ratio_of(self.capacity)
    }
}

/// A consistent view of a ledger: every capacity's accounting and every active reservation,
/// taken at one moment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LedgerSnapshot {
    /// When it was taken, by the ledger's clock.
    pub taken_at: Timestamp,
    /// The registered resources.
    pub resources: Vec<Resource>,
    /// One entry per resource and type, in resource then type order.
    pub usage: Vec<CapacityUsage>,
    /// The reservations that hold capacity (pending or confirmed).
    pub active: Vec<Reservation>,
    /// The highest fencing token granted so far.
    pub last_fencing_token: FencingToken,
}

impl LedgerSnapshot {
    /// The accounting of one capacity.
    pub fn usage_of(&self, resource: &str, resource_type: &ResourceType) -> Option<&CapacityUsage> {
        self.usage
            .iter()
            .find(|u| u.resource.as_str() == resource && &u.resource_type == resource_type)
    }

    /// Checks the snapshot's own consistency: conservation
    /// (`free + external + pending + confirmed + leased = capacity` when not draining;
    /// `free = 0` and
    /// more held than the capacity when draining), that the pending and confirmed totals equal
    /// the sums of the active reservations' items, and that every item names a registered
    /// capacity. Any ledger can implement [`ReservationLedger::audit`] with it.
    pub fn audit(&self) -> AuditReport {
        let mut violations = Vec::new();
        let mut held: BTreeMap<(ResourceName, ResourceType), (i128, i128)> = BTreeMap::new();
        for reservation in &self.active {
            for item in reservation.items.iter() {
                let key = (item.resource.clone(), item.resource_type.clone());
                if self
                    .usage_of(item.resource.as_str(), &item.resource_type)
                    .is_none()
                {
                    violations.push(AuditViolation {
                        resource: item.resource.clone(),
                        resource_type: item.resource_type.clone(),
                        message: format!(
                            "reservation {} holds capacity that is not registered",
                            reservation.id
                        ),
                    });
                }
                let entry = held.entry(key).or_default();
                let amount = i128::from(item.amount.as_milli());
                match reservation.state {
                    ReservationState::Pending => entry.0 += amount,
                    _ => entry.1 += amount,
                }
            }
        }
        for usage in &self.usage {
            let violation = |message: String| AuditViolation {
                resource: usage.resource.clone(),
                resource_type: usage.resource_type.clone(),
                message,
            };
            let milli = |q: Quantity| i128::from(q.as_milli());
            let used = milli(usage.external)
                + milli(usage.pending)
                + milli(usage.confirmed)
                + milli(usage.leased);
            let capacity = milli(usage.capacity);
            let free = milli(usage.free);
            if [
                usage.external,
                usage.pending,
                usage.confirmed,
                usage.leased,
                usage.free,
                usage.capacity,
            ]
            .iter()
            .any(|q| q.is_negative())
            {
                violations.push(violation(format!("a negative amount in {usage:?}")));
            }
            if usage.draining {
                if free != 0 || used <= capacity {
                    violations.push(violation(format!(
                        "draining with {} free and {} used of {}",
                        usage.free,
                        usage.used(),
                        usage.capacity
                    )));
                }
            } else if free + used != capacity {
                violations.push(violation(format!(
                    "free {} + external {} + pending {} + confirmed {} + leased {} != capacity {}",
                    usage.free,
                    usage.external,
                    usage.pending,
                    usage.confirmed,
                    usage.leased,
                    usage.capacity
                )));
            }
            let (pending, confirmed) = held
                .get(&(usage.resource.clone(), usage.resource_type.clone()))
                .copied()
                .unwrap_or_default();
            if pending != milli(usage.pending) || confirmed != milli(usage.confirmed) {
                violations.push(violation(format!(
                    "accounted pending {} and confirmed {}, but active reservations hold {}m and {}m",
                    usage.pending, usage.confirmed, pending, confirmed
                )));
            }
        }
        AuditReport {
            checked_capacities: self.usage.len(),
            checked_reservations: self.active.len(),
            violations,
        }
    }
}

/// One broken invariant found by an audit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditViolation {
    /// The resource.
    pub resource: ResourceName,
    /// The capacity type.
    pub resource_type: ResourceType,
    /// What is wrong.
    pub message: String,
}

/// The result of an audit: empty `violations` means every invariant holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReport {
    /// How many capacities were checked.
    pub checked_capacities: usize,
    /// How many active reservations were checked.
    pub checked_reservations: usize,
    /// What is broken.
    pub violations: Vec<AuditViolation>,
}

impl AuditReport {
    /// Whether every invariant holds.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }
}

/// The reservation ledger: registered resources and the holds on them.
///
/// # Contract
/// Every implementation runs the conformance suite in `rm-testkit`, which states this as tests.
///
/// - **Fallible.** Every operation returns `Result`. A definite error means nothing changed;
///   an indeterminate one ([`LedgerError::is_indeterminate`]) means it may have applied.
/// - **Idempotent by id.** `reserve` with the id of an existing reservation and the same
///   request ([`ReservationRequest::same_request_as`]) returns that reservation, in whatever
///   state it is now, without granting again; with a different request it fails with
///   [`LedgerError::IdConflict`]. Confirming a confirmed reservation, releasing a released one
///   and cancelling a cancelled one succeed and change nothing.
/// - **Never credits twice.** Confirm, renew and release of an expired hold fail with
///   [`LedgerError::Expired`]; of a preempted or cancelled one with
///   [`LedgerError::InvalidState`]; its capacity went back exactly once.
/// - **Durations, not instants.** TTLs are durations; a pending hold expires once the ledger's
///   own clock has moved `ttl` past its grant or last renewal. Expiry may be applied eagerly
///   (a sweep) or lazily, but an expired hold never blocks a grant and never confirms.
/// - **Atomic, all or nothing.** A request's requirements are all granted or none is, and no
///   observer (snapshot, other threads) ever sees part of a reservation.
/// - **Fencing.** Each grant gets a fencing token greater than every earlier one. Operations
///   given `Some(token)` fail with [`LedgerError::StaleFencingToken`] when it is not the
///   reservation's own.
/// - **Draining, never revoking.** Shrinking a capacity below what is held succeeds, marks it
///   draining and refuses new grants there until enough is released; no hold is revoked.
/// - **Consistent views.** `snapshot()` is taken at one moment; `audit()` checks conservation
///   (`free + external + pending + confirmed + leased = capacity`) and reports violations rather than
///   failing.
/// - **Concurrency.** `&self` everywhere; implementations are `Send + Sync` and safe to call
///   from many threads at once, without deadlock.
pub trait ReservationLedger: Send + Sync {
    /// Registers a resource. Fails with [`LedgerError::DuplicateResource`] if the name is
    /// taken.
    fn register_resource(&self, resource: Resource) -> Result<(), LedgerError>;

    /// Replaces a resource's description (capabilities, labels, capacities). Capacities that
    /// shrink below what is held make it draining; removing a type that is held fails with
    /// [`LedgerError::ResourceBusy`].
    fn update_resource(&self, resource: Resource) -> Result<(), LedgerError>;

    /// Unregisters a resource, returning it. Fails with [`LedgerError::ResourceBusy`] while
    /// reservations hold capacity on it.
    fn unregister_resource(&self, name: &ResourceName) -> Result<Resource, LedgerError>;

    /// Changes the maximum of one capacity at run time and returns its new accounting.
    fn set_capacity(
        &self,
        name: &ResourceName,
        resource_type: &ResourceType,
        maximum: Quantity,
    ) -> Result<CapacityUsage, LedgerError>;

    /// The registered resources, in registration order.
    fn resources(&self) -> Result<Vec<Resource>, LedgerError>;

    /// Grants all of a request's requirements or none; the reservation starts pending.
    fn reserve(&self, request: &ReservationRequest) -> Result<Reservation, LedgerError>;

    /// Like [`reserve`](Self::reserve), for callers that only need to know whether the request
    /// fits now (wait queues, pollers): `Ok(None)` instead of
    /// [`LedgerError::InsufficientCapacity`], which lets a ledger skip building the
    /// explanation. Other errors are as for `reserve`.
    fn try_reserve(
        &self,
        request: &ReservationRequest,
    ) -> Result<Option<Reservation>, LedgerError> {
        match self.reserve(request) {
            Err(LedgerError::InsufficientCapacity { .. }) => Ok(None),
            other => other.map(Some),
        }
    }

    /// Confirms a pending reservation: it is held until released and no longer expires.
    fn confirm(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
    ) -> Result<Reservation, LedgerError>;

    /// Extends a pending reservation's TTL to `ttl` from now.
    fn renew(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
        ttl: Duration,
    ) -> Result<Reservation, LedgerError>;

    /// Releases a confirmed reservation, returning its capacity.
    fn release(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
    ) -> Result<Reservation, LedgerError>;

    /// Cancels a pending reservation, returning its capacity.
    fn cancel(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
    ) -> Result<Reservation, LedgerError>;

    /// Ends a pending or confirmed reservation for a higher-priority one (`by`, when known),
    /// returning its capacity. Choosing victims is the caller's business.
    fn preempt(
        &self,
        id: &ReservationId,
        by: Option<&ReservationId>,
    ) -> Result<Reservation, LedgerError>;

    /// Shrinks the item of elastic requirement `requirement` of a pending or confirmed
    /// reservation to `to` (in the item's unit), giving the difference back. Fails with
    /// [`LedgerError::InvalidInput`] when the requirement is not elastic or `to` lies outside
    /// its minimum and current amount; shrinking to the current amount changes nothing.
    fn shrink(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
        requirement: usize,
        to: Quantity,
    ) -> Result<Reservation, LedgerError>;

    /// Preempts `victims` (pending or confirmed holds) for `request` and grants it, in one
    /// step: when the request would not fit even with the victims' capacity, or a victim is
    /// unknown or no longer holds capacity, nothing changes. Each victim ends as preempted by
    /// the request's id (generated when the request has none). Choosing victims is the
    /// caller's business.
    fn reserve_preempting(
        &self,
        request: &ReservationRequest,
        victims: &[ReservationId],
    ) -> Result<Reservation, LedgerError>;

    /// How long until the earliest pending hold expires by the ledger's clock (`None` when
    /// none is pending): a hint for waiters that want to wake when expiry frees capacity. It
    /// may be early (waking finds nothing to expire), never late. The default reads a
    /// snapshot; ledgers that keep a timer can answer cheaply.
    fn next_expiry(&self) -> Result<Option<Duration>, LedgerError> {
        let snapshot = self.snapshot()?;
        Ok(snapshot
            .active
            .iter()
            .filter(|r| r.state == ReservationState::Pending)
            .filter_map(|r| r.expires_at)
            .min()
            .map(|at| at.saturating_duration_since(snapshot.taken_at)))
    }

    /// One reservation, in whatever state it is.
    fn get(&self, id: &ReservationId) -> Result<Reservation, LedgerError>;

    /// Expires every pending reservation whose TTL has run out by the ledger's clock and
    /// returns them.
    fn expire_due(&self) -> Result<Vec<Reservation>, LedgerError>;

    /// A consistent view of all accounting and active reservations.
    fn snapshot(&self) -> Result<LedgerSnapshot, LedgerError>;

    /// Checks the invariants and reports what is broken.
    fn audit(&self) -> Result<AuditReport, LedgerError>;
}

macro_rules! forward_ledger {
    ($($ptr:ty),*) => {$(
        impl<T: ReservationLedger + ?Sized> ReservationLedger for $ptr {
            fn register_resource(&self, resource: Resource) -> Result<(), LedgerError> {
                (**self).register_resource(resource)
            }
            fn update_resource(&self, resource: Resource) -> Result<(), LedgerError> {
                (**self).update_resource(resource)
            }
            fn unregister_resource(&self, name: &ResourceName) -> Result<Resource, LedgerError> {
                (**self).unregister_resource(name)
            }
            fn set_capacity(
                &self,
                name: &ResourceName,
                resource_type: &ResourceType,
                maximum: Quantity,
            ) -> Result<CapacityUsage, LedgerError> {
                (**self).set_capacity(name, resource_type, maximum)
            }
            fn resources(&self) -> Result<Vec<Resource>, LedgerError> {
                (**self).resources()
            }
            fn reserve(&self, request: &ReservationRequest) -> Result<Reservation, LedgerError> {
                (**self).reserve(request)
            }
            fn try_reserve(&self, request: &ReservationRequest) -> Result<Option<Reservation>, LedgerError> {
                (**self).try_reserve(request)
            }
            fn confirm(&self, id: &ReservationId, fence: Option<FencingToken>) -> Result<Reservation, LedgerError> {
                (**self).confirm(id, fence)
            }
            fn renew(&self, id: &ReservationId, fence: Option<FencingToken>, ttl: Duration) -> Result<Reservation, LedgerError> {
                (**self).renew(id, fence, ttl)
            }
            fn release(&self, id: &ReservationId, fence: Option<FencingToken>) -> Result<Reservation, LedgerError> {
                (**self).release(id, fence)
            }
            fn cancel(&self, id: &ReservationId, fence: Option<FencingToken>) -> Result<Reservation, LedgerError> {
                (**self).cancel(id, fence)
            }
            fn preempt(&self, id: &ReservationId, by: Option<&ReservationId>) -> Result<Reservation, LedgerError> {
                (**self).preempt(id, by)
            }
            fn shrink(
                &self,
                id: &ReservationId,
                fence: Option<FencingToken>,
                requirement: usize,
                to: Quantity,
            ) -> Result<Reservation, LedgerError> {
                (**self).shrink(id, fence, requirement, to)
            }
            fn reserve_preempting(
                &self,
                request: &ReservationRequest,
                victims: &[ReservationId],
            ) -> Result<Reservation, LedgerError> {
                (**self).reserve_preempting(request, victims)
            }
            fn next_expiry(&self) -> Result<Option<Duration>, LedgerError> {
                (**self).next_expiry()
            }
            fn get(&self, id: &ReservationId) -> Result<Reservation, LedgerError> {
                (**self).get(id)
            }
            fn expire_due(&self) -> Result<Vec<Reservation>, LedgerError> {
                (**self).expire_due()
            }
            fn snapshot(&self) -> Result<LedgerSnapshot, LedgerError> {
                (**self).snapshot()
            }
            fn audit(&self) -> Result<AuditReport, LedgerError> {
                (**self).audit()
            }
        }
    )*};
}
forward_ledger!(&T, Box<T>, Arc<T>);
