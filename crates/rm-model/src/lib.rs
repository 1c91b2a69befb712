//! The vocabulary of the resource manager and the trait contracts every other crate speaks
//! through.
//!
//! # Where it sits
//! `rm-model` is the bottom layer: the middle crates (`rm-reserve`, `rm-validate`,
//! `rm-policy`, `rm-contention`, `rm-pool`, `rm-scale`, `rm-monitor`) depend on it and never on
//! each other, and `rm-facade` wires them together through the traits defined here. It knows
//! nothing of dashmap, crossbeam or metrics: its only dependencies are std, serde and
//! thiserror, so a new backend or policy needs nothing else to implement a contract.
//!
//! # Main types
//! - Amounts: [`Quantity`] (exact integer thousandths, Kubernetes quantity syntax) and
//!   [`Unit`] (exact conversion within a [`Dimension`]).
//! - Resources: [`ResourceType`], [`ResourceCapacity`], [`ResourceSpecification`] with typed
//!   [`CapabilityValue`]s, [`Labels`], and [`Resource`] (one capacity per type, so a host is
//!   one multi-dimensional resource).
//! - Requests: [`ResourceRequirement`] with hard [`Constraint`]s, weighted [`Preference`]s,
//!   [`AffinityTerm`]s and a [`ColocationGroup`]; [`ReservationRequest`] (a gang, all or
//!   nothing) with [`RequesterId`], [`Priority`] and [`ReservationStrategy`].
//! - Holds: [`Reservation`], [`ReservationId`], [`ReservationState`] and its legal
//!   transitions, [`FencingToken`].
//! - Time and events: [`Clock`] ([`SystemClock`], [`ManualClock`]), [`Event`], [`EventKind`].
//! - Shared arithmetic: [`backfill`] (EASY backfill's shadow time and rule, for every wait
//!   queue), [`ppm`] and [`nearest_rank`].
//! - GPU fragmentation: [`fragment`] ([`Workload`] of [`PodShape`]s, the measure behind the
//!   fragmentation strategy, on a node's [`NodeFree`] capacity).
//! - The items that go with them: [`Timestamp`], [`ContentionAction`], [`ContentionStrategy`],
//!   [`ResolutionOutcome`], [`ECHO_LIMIT`], [`clip`], [`clip_lines`], [`DiscardEvents`],
//!   [`AuditReport`], [`AuditViolation`], [`CapacityUsage`], [`LedgerSnapshot`], [`Shortfall`],
//!   [`shrink_item`], [`CapabilityName`], [`LabelKey`], [`ResourceName`], [`DimensionFit`],
//!   [`PlacementCandidate`], [`RawFit`] (with [`placement::Scoring`] and
//!   [`placement::strategy_score`]), [`Admission`], [`AllocationResult`],
//!   [`PendingRequest`], [`MILLI_PER_UNIT`], [`QuantityFormat`], [`AffinityKind`],
//!   [`ConstraintBuilder`], [`ConstraintError`], [`ConstraintKey`], [`Operator`], [`Selector`],
//!   [`Topology`], [`Ending`], [`PreemptionPolicy`], [`PriorityClass`], [`ReservationItem`],
//!   [`TransitionError`], [`UnknownStrategy`], [`ResourceError`], [`ScaleStatus`],
//!   [`ValidationContext`], [`FieldPath`], [`Violation`].
//!
//! # Contracts
//! Each trait documents its contract; errors that are part of a contract sit beside it.
//!
//! | trait | what it does | contract errors |
//! |---|---|---|
//! | [`ReservationLedger`] | holds, all-or-nothing, idempotent by id | [`LedgerError`] (definite vs indeterminate) |
//! | [`AllocationPolicy`] | admission and queue order | [`Refusal`] with a [`RefusalReason`] |
//! | [`PlacementScorer`] | ranks candidate resources | none (`None` = does not fit) |
//! | [`ContentionResolver`] | what to do when a request does not fit | [`Resolution`] |
//! | [`ScaleTarget`] | something whose size can change | [`ScaleError`] |
//! | [`Validator`] | every problem, with field paths | [`ValidationErrors`] |
//! | [`EventSink`] | receives events, never blocks | none |
//! | [`Clock`] | monotonic time | none |
//!
//! All are object-safe, `Send + Sync`, take `&self`, and are implemented for `&T`, `Box<T>`
//! and `Arc<T>`, so `Arc<dyn ReservationLedger>` is a ledger.
//!
//! # Design decisions
//! - **No floats in accounting.** Quantities are `i64` thousandths; conversions that would lose
//!   precision are errors. Floats appear only in reporting helpers (`ratio_of`,
//!   `utilization`) and in placement scores.
//! - **Scores are deterministic integers** (parts per million, computed in IEEE floating
//!   point and rounded), so the same state always gives the same placement; scores only rank
//!   candidates and never enter accounting.
//! - **Time is a trait.** Timestamps are monotonic readings of a [`Clock`]; the ledger contract
//!   speaks in durations, so a remote store can use its own clock.
//! - **Names are checked newtypes** that clone by reference count; generated reservation ids
//!   are inline 128-bit values, so generating one does not allocate.
//!
//! # Concurrency
//! Every type is `Send + Sync`. Values are immutable once built (builders take `self`);
//! [`ManualClock`] is the one type with interior mutability (an atomic).
//!
//! # Errors and panics
//! Malformed input is a typed error naming what is wrong ([`QuantityError`], [`UnitError`],
//! [`NameError`], [`CapacityError`], …; [`ModelError`] gathers them for `?`). Nothing in this
//! crate panics on input.
//!
//! # Metrics
//! None: this crate emits nothing. Metric names and emission live in the crates that do work.
//!
//! # Example
//! The seed's "Resource Definition", then a requirement it satisfies:
//!
//! ```
//! use rm_model::{Constraint, Resource, ResourceCapacity, ResourceRequirement,
//!     ResourceSpecification, ResourceType, Unit};
//!
//! // Create a compute resource
//! let compute_resource = Resource::new(
//!     "compute-node-1",
//!     ResourceType::Compute,
//!     ResourceCapacity::new(0, 100, Unit::CORES)?,
//! )?
//! .with_specification(
//!     ResourceSpecification::new(ResourceType::Compute)
//!         .with("cores", 32)?
//!         .with("memory", 128)?
//!         .with("arch", "x86_64")?,
//! );
//!
//! let compute_requirement = ResourceRequirement::new(ResourceType::Compute, 50, Unit::CORES)
//!     .with_constraint(Constraint::capability("arch")?.eq("x86_64"));
//! assert!(compute_requirement.admits(&compute_resource));
//! assert_eq!(compute_resource.capacity().available(), "100".parse()?);
//! # Ok::<(), rm_model::ModelError>(())
//! ```

pub mod backfill;
mod clock;
mod contention;
mod echo;
mod error;
mod event;
pub mod fragment;
mod ledger;
mod name;
pub mod placement;
mod policy;
mod quantity;
mod ratio;
mod requirement;
mod reservation;
mod resource;
mod scale;
mod unit;
mod validate;
mod violation;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use contention::{
    ContentionAction, ContentionResolver, ContentionStrategy, Resolution, ResolutionOutcome,
};
pub use echo::{ECHO_LIMIT, clip, clip_lines};
pub use error::ModelError;
pub use event::{DiscardEvents, Event, EventKind, EventSink};
pub use fragment::{NodeFree, PodShape, Workload};
pub use ledger::{
    AuditReport, AuditViolation, CapacityUsage, LedgerError, LedgerSnapshot, ReservationLedger,
    Shortfall, shrink_item,
};
pub use name::{CapabilityName, ColocationGroup, LabelKey, NameError, RequesterId, ResourceName};
pub use placement::{DimensionFit, PlacementCandidate, PlacementScorer, RawFit};
pub use policy::{
    Admission, AllocationPolicy, AllocationResult, PendingRequest, Refusal, RefusalReason,
};
pub use quantity::{MILLI_PER_UNIT, Quantity, QuantityError, QuantityFormat};
pub use ratio::{nearest_rank, ppm};
pub use requirement::{
    AffinityKind, AffinityTerm, Constraint, ConstraintBuilder, ConstraintError, ConstraintKey,
    Operator, Preference, ResourceRequirement, Selector, Topology,
};
pub use reservation::{
    Ending, FencingToken, PreemptionPolicy, Priority, PriorityClass, Reservation, ReservationId,
    ReservationItem, ReservationRequest, ReservationState, ReservationStrategy, TransitionError,
    UnknownStrategy,
};
pub use resource::{
    CapabilityValue, CapacityError, Labels, Resource, ResourceCapacity, ResourceError,
    ResourceSpecification, ResourceType,
};
pub use scale::{ScaleError, ScaleStatus, ScaleTarget};
pub use unit::{Dimension, Unit, UnitError};
pub use validate::{ValidationContext, Validator};
pub use violation::{FieldPath, ValidationErrors, Violation};

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        send_sync::<Quantity>();
        send_sync::<Unit>();
        send_sync::<Resource>();
        send_sync::<ResourceRequirement>();
        send_sync::<ReservationRequest>();
        send_sync::<Reservation>();
        send_sync::<Event>();
        send_sync::<LedgerError>();
        send_sync::<LedgerSnapshot>();
        send_sync::<ManualClock>();
        send_sync::<SystemClock>();
        send_sync::<AllocationResult>();
        send_sync::<Resolution>();
        send_sync::<ScaleError>();
        send_sync::<ValidationErrors>();
    }

    /// Every contract is object-safe, and `&T`, `Box<T>` and `Arc<T>` of an implementation
    /// implement it too.
    #[test]
    fn contracts_are_object_safe_and_forwarded() {
        fn ledger<T: ReservationLedger>() {}
        fn policy<T: AllocationPolicy>() {}
        fn scorer<T: PlacementScorer>() {}
        fn resolver<T: ContentionResolver>() {}
        fn target<T: ScaleTarget>() {}
        fn validator<T: Validator>() {}
        fn sink<T: EventSink>() {}
        fn clock<T: Clock>() {}
        ledger::<Arc<dyn ReservationLedger>>();
        ledger::<Box<dyn ReservationLedger>>();
        ledger::<&dyn ReservationLedger>();
        policy::<Arc<dyn AllocationPolicy>>();
        policy::<Box<dyn AllocationPolicy>>();
        policy::<&dyn AllocationPolicy>();
        scorer::<Arc<dyn PlacementScorer>>();
        scorer::<Box<dyn PlacementScorer>>();
        scorer::<&dyn PlacementScorer>();
        resolver::<Arc<dyn ContentionResolver>>();
        resolver::<Box<dyn ContentionResolver>>();
        resolver::<&dyn ContentionResolver>();
        target::<Arc<dyn ScaleTarget>>();
        target::<Box<dyn ScaleTarget>>();
        target::<&dyn ScaleTarget>();
        validator::<Arc<dyn Validator>>();
        validator::<Box<dyn Validator>>();
        validator::<&dyn Validator>();
        sink::<Arc<dyn EventSink>>();
        sink::<Box<dyn EventSink>>();
        sink::<&dyn EventSink>();
        sink::<Vec<DiscardEvents>>();
        clock::<Arc<dyn Clock>>();
        clock::<Box<dyn Clock>>();
        clock::<&dyn Clock>();
    }

    #[test]
    fn ledger_errors_split_definite_from_indeterminate() {
        let timeout = LedgerError::Timeout {
            operation: "reserve",
            after: std::time::Duration::from_secs(1),
        };
        assert!(timeout.is_indeterminate() && !timeout.is_definite());
        let unavailable = LedgerError::Unavailable {
            operation: "reserve",
            source: Arc::new(std::io::Error::other("connection refused")),
        };
        assert!(unavailable.is_indeterminate());
        assert!(std::error::Error::source(&unavailable).is_some());
        let expired = LedgerError::Expired {
            operation: "confirm",
            id: ReservationId::new("r1").unwrap(),
        };
        assert!(expired.is_definite());
        assert_eq!(expired.to_string(), "confirm reservation r1: it expired");
        assert_eq!(
            RefusalReason::of_ledger_error(&timeout),
            RefusalReason::Indeterminate
        );
    }
}
