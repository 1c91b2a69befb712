//! The validator contract: checks of resources, requests and granted reservations that report
//! every problem with the path of the offending field.

use std::sync::Arc;

use crate::reservation::{Reservation, ReservationRequest};
use crate::resource::Resource;
use crate::violation::ValidationErrors;

/// What a validator may look at besides the value it checks.
#[derive(Clone, Copy, Debug, Default)]
pub struct ValidationContext<'a> {
    /// The registered resources. For an update, the caller leaves out the resource being
    /// replaced, so that its own name is not a duplicate (unless `name_checked`).
    pub resources: &'a [Resource],
    /// The reservations that hold capacity now (for affinity checks of grants).
    pub active: &'a [Reservation],
    /// For [`Validator::validate_resource`]: the caller has already made sure that no other
    /// registered resource has the checked resource's name, with an index of its own (the
    /// ledgers do, under the lock that registers it), so the validator does not look for
    /// the name in `resources`: registering n resources then costs n checks, not n² name
    /// comparisons. An update may then leave the resource it replaces in `resources`.
    /// `false` (the default): the validator compares the name with every resource.
    pub name_checked: bool,
}

/// Checks resources, requests and grants against the constraints of the system.
///
/// Contract:
/// - Each method reports *every* violation it finds, each with a field path, not just the
///   first; `Ok(())` means none.
/// - Validation has no side effects: it changes neither its inputs nor any ledger.
/// - It is cheap enough to run on every admission: implementations do not block or do I/O.
pub trait Validator: Send + Sync {
    /// Checks a resource before it is registered or updated: capacities, units against the
    /// type, name unique among `context.resources` (unless `context.name_checked`).
    fn validate_resource(
        &self,
        resource: &Resource,
        context: &ValidationContext<'_>,
    ) -> Result<(), ValidationErrors>;

    /// Checks a request at admission: amounts, types, units, constraint operators, limit
    /// ranges, and that some registered resource could hold each requirement at its maximum
    /// (otherwise it would wait forever).
    fn validate_request(
        &self,
        request: &ReservationRequest,
        context: &ValidationContext<'_>,
    ) -> Result<(), ValidationErrors>;

    /// Checks a granted reservation against its request: every item satisfies its
    /// requirement's hard constraints, amounts and co-location, and the required affinity
    /// rules against `context.active`.
    fn validate_reservation(
        &self,
        reservation: &Reservation,
        request: &ReservationRequest,
        context: &ValidationContext<'_>,
    ) -> Result<(), ValidationErrors>;
}

macro_rules! forward_validator {
    ($($ptr:ty),*) => {$(
        impl<T: Validator + ?Sized> Validator for $ptr {
            fn validate_resource(&self, resource: &Resource, context: &ValidationContext<'_>) -> Result<(), ValidationErrors> {
                (**self).validate_resource(resource, context)
            }
            fn validate_request(
                &self,
                request: &ReservationRequest,
                context: &ValidationContext<'_>,
            ) -> Result<(), ValidationErrors> {
                (**self).validate_request(request, context)
            }
            fn validate_reservation(
                &self,
                reservation: &Reservation,
                request: &ReservationRequest,
                context: &ValidationContext<'_>,
            ) -> Result<(), ValidationErrors> {
                (**self).validate_reservation(reservation, request, context)
            }
        }
    )*};
}
forward_validator!(&T, Box<T>, Arc<T>);
