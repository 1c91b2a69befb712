//! Constraint validation: checks resources, requests and granted reservations, and reports
//! every violation with the path of the offending field.
//!
//! # Where it sits
//! A middle crate: it depends on `rm-model` only and implements its [`Validator`] trait. It
//! knows nothing of `rm-reserve`: the ledger takes any validator through the trait, and the
//! facade wires this one in.
//!
//! # Main types
//! - [`ConstraintValidator`]: the [`Validator`] implementation, configured with
//!   [`LimitRange`]s (per-type minimum, maximum and default amounts per requirement).
//!
//! # What it checks
//! - **Resources**: units consistent with each capacity's type, names unique among the
//!   registered resources. (Names are well-formed and capacities sane,
//!   `maximum >= current >= 0`, by construction of the model types.)
//! - **Requests**: everything [`ReservationRequest::violations`] checks (a non-empty request,
//!   positive amounts, units that measure the type, constraint operators applied to values of
//!   the right type, weights 1 to 100), the limit ranges, and that some registered resource
//!   could hold each requirement (or co-located group) at its maximum, so an impossible
//!   request is rejected at admission instead of waiting forever.
//! - **Grants**: one item per requirement, of the right type and exact amount, on a registered
//!   resource that passes the requirement's hard constraints, co-located groups on one
//!   resource, and required affinity rules against the other active reservations.
//!
//! # Design decisions
//! - Every violation is collected, in field order; nothing stops at the first.
//! - Amounts compare exactly across units ([`Unit::compare`]), so `1536Mi` against a `1.5Gi`
//!   maximum is equal, not off by rounding.
//! - A zero amount means "unspecified" only to [`ConstraintValidator::apply_defaults`]; to the
//!   checks it is a violation.
//!
//! # Concurrency
//! [`ConstraintValidator`] is immutable after configuration, `Send + Sync`, and takes `&self`.
//!
//! # Errors and panics
//! Validation returns [`ValidationErrors`] (every violation with its path). Configuring a limit
//! range returns [`Error`]. Nothing panics on input.
//!
//! # Metrics
//! None; the facade counts refusals by reason.
//!
//! # Example
//! ```
//! use rm_model::{RequesterId, ReservationRequest, Resource, ResourceCapacity, ResourceRequirement,
//!     ResourceType, Unit, ValidationContext, Validator};
//! use rm_validate::{ConstraintValidator, LimitRange};
//!
//! let validator = ConstraintValidator::new().with_limit_range(
//!     ResourceType::Compute,
//!     LimitRange::new(Unit::CORES).max(16).default(1),
//! )?;
//! let nodes = [Resource::new("n1", ResourceType::Compute, ResourceCapacity::of(8, Unit::CORES)?)?];
//! let context = ValidationContext { resources: &nodes, active: &[], name_checked: false };
//!
//! let too_big = ReservationRequest::new(
//!     RequesterId::new("t1")?,
//!     vec![
//!         ResourceRequirement::new(ResourceType::Compute, 32, Unit::CORES),
//!         ResourceRequirement::new(ResourceType::Memory, 0, Unit::GIB),
//!     ],
//! );
//! let errors = validator.validate_request(&too_big, &context).unwrap_err();
//! let paths: Vec<_> = errors.violations.iter().map(|v| v.path.as_str()).collect();
//! assert_eq!(paths, ["requirements[1].amount", "requirements[0].amount", "requirements[0]", "requirements[1].type"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;

use std::cmp::Ordering;
use std::collections::BTreeMap;

pub use error::Error;
use rm_model::{
    ColocationGroup, Quantity, Reservation, ReservationRequest, Resource, ResourceRequirement,
    ResourceType, Unit, ValidationContext, ValidationErrors, Validator, Violation,
};
use serde::{Deserialize, Serialize};

/// Per-type bounds on the amount of one requirement, and the amount that fills an unspecified
/// (zero) one, as Kubernetes' `LimitRange` does for containers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitRange {
    /// The smallest amount one requirement may ask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Quantity>,
    /// The largest amount one requirement may ask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Quantity>,
    /// The amount a requirement of zero is given by [`ConstraintValidator::apply_defaults`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Quantity>,
    /// The unit of the three amounts.
    pub unit: Unit,
}

impl LimitRange {
    /// No bounds and no default, in `unit`.
    pub fn new(unit: Unit) -> LimitRange {
        LimitRange {
            min: None,
            max: None,
            default: None,
            unit,
        }
    }

    /// Sets the minimum.
    pub fn min(mut self, min: impl Into<Quantity>) -> LimitRange {
        self.min = Some(min.into());
        self
    }

    /// Sets the maximum.
    pub fn max(mut self, max: impl Into<Quantity>) -> LimitRange {
        self.max = Some(max.into());
        self
    }

    /// Sets the default.
    pub fn default(mut self, default: impl Into<Quantity>) -> LimitRange {
        self.default = Some(default.into());
        self
    }
}

/// The [`Validator`] of the system. See the [crate docs](crate) for what it checks.
#[derive(Clone, Debug, Default)]
pub struct ConstraintValidator {
    limits: BTreeMap<ResourceType, LimitRange>,
}

fn capacity_path(resource: &Resource, resource_type: &ResourceType) -> String {
    if resource_type == resource.resource_type() {
        "capacity".to_owned()
    } else {
        format!("capacities.{resource_type}")
    }
}

/// Whether `resource` could hold the requirements `group` of `requirements` at all, with its
/// whole capacity free.
fn could_ever_hold(
    resource: &Resource,
    requirements: &[ResourceRequirement],
    group: &[usize],
) -> bool {
    // Each type's members are summed where the type first appears in the group (groups
    // are a few requirements, so the repeated scan is cheaper than a map and allocates
    // nothing: this runs for every registered resource at admission).
    group.iter().enumerate().all(|(k, &i)| {
        let requirement = &requirements[i];
        let resource_type = requirement.resource_type();
        let Some(capacity) = resource.capacity_of(resource_type) else {
            return false;
        };
        if !requirement.admits(resource) {
            return false;
        }
        if group[..k]
            .iter()
            .any(|&j| requirements[j].resource_type() == resource_type)
        {
            return true;
        }
        let mut total = Quantity::ZERO;
        for &j in &group[k..] {
            let member = &requirements[j];
            if member.resource_type() != resource_type {
                continue;
            }
            let Some(sum) = member
                .amount_in(capacity.unit())
                .ok()
                .and_then(|amount| total.checked_add(amount).ok())
            else {
                return false;
            };
            total = sum;
        }
        total <= capacity.available()
    })
}

impl ConstraintValidator {
    /// A validator without limit ranges.
    pub fn new() -> ConstraintValidator {
        ConstraintValidator::default()
    }

    /// Adds (or replaces) the limit range of one type. Fails when the unit does not measure the
    /// type, or the bounds are not positive and ordered `min <= default <= max`.
    pub fn with_limit_range(
        mut self,
        resource_type: ResourceType,
        range: LimitRange,
    ) -> Result<Self, Error> {
        if !resource_type.accepts_unit(&range.unit) {
            return Err(Error::UnitMismatch {
                resource_type,
                unit: range.unit.to_string(),
            });
        }
        let bounds = [
            ("min", range.min),
            ("default", range.default),
            ("max", range.max),
        ];
        if let Some((name, _)) = bounds
            .iter()
            .find(|(_, q)| q.is_some_and(|q| !q.is_positive()))
        {
            return Err(Error::Bounds {
                resource_type,
                reason: format!("{name} must be positive"),
            });
        }
        let present: Vec<_> = bounds
            .iter()
            .filter_map(|(n, q)| q.map(|q| (*n, q)))
            .collect();
        if let Some(pair) = present.windows(2).find(|w| w[0].1 > w[1].1) {
            return Err(Error::Bounds {
                resource_type,
                reason: format!(
                    "{} {} exceeds {} {}",
                    pair[0].0, pair[0].1, pair[1].0, pair[1].1
                ),
            });
        }
        self.limits.insert(resource_type, range);
        Ok(self)
    }

    /// The limit range of one type, if set.
    pub fn limit_range(&self, resource_type: &ResourceType) -> Option<&LimitRange> {
        self.limits.get(resource_type)
    }

    /// The request with every zero amount replaced by its type's default (converted to the
    /// requirement's unit when that is exact; otherwise given in the limit range's unit).
    pub fn apply_defaults(&self, request: &ReservationRequest) -> ReservationRequest {
        let mut request = request.clone();
        request.requirements = request
            .requirements
            .into_iter()
            .map(|requirement| {
                let default = self
                    .limits
                    .get(requirement.resource_type())
                    .and_then(|range| range.default.map(|d| (d, &range.unit)));
                match default {
                    Some((default, unit)) if requirement.amount().is_zero() => {
                        match unit.convert(default, requirement.unit()) {
                            Ok(amount) => requirement.with_amount(amount),
                            Err(_) => ResourceRequirement::new(
                                requirement.resource_type().clone(),
                                default,
                                unit.clone(),
                            ),
                        }
                    }
                    _ => requirement,
                }
            })
            .collect();
        request
    }

    fn limit_violations(
        &self,
        index: usize,
        requirement: &ResourceRequirement,
        out: &mut Vec<Violation>,
    ) {
        let Some(range) = self.limits.get(requirement.resource_type()) else {
            return;
        };
        let compare = |bound: Quantity| {
            requirement
                .unit()
                .compare(requirement.amount(), &range.unit, bound)
                .ok()
        };
        let path = format!("requirements[{index}].amount");
        if let Some(min) = range.min
            && compare(min) == Some(Ordering::Less)
        {
            out.push(Violation::new(
                path.clone(),
                format!(
                    "{} {} is below the minimum of {min} {} for {}",
                    requirement.amount(),
                    requirement.unit(),
                    range.unit,
                    requirement.resource_type()
                ),
            ));
        }
        if let Some(max) = range.max
            && compare(max) == Some(Ordering::Greater)
        {
            out.push(Violation::new(
                path,
                format!(
                    "{} {} is above the maximum of {max} {} for {}",
                    requirement.amount(),
                    requirement.unit(),
                    range.unit,
                    requirement.resource_type()
                ),
            ));
        }
    }

    fn satisfiability_violations(
        &self,
        request: &ReservationRequest,
        resources: &[Resource],
        out: &mut Vec<Violation>,
    ) {
        // One requirement is one group: skip building the grouping.
        if request.requirements.len() == 1 {
            Self::group_violations(request, &[0], resources, out);
            return;
        }
        let mut group = Vec::with_capacity(request.requirements.len());
        for members in request.each_placement_group() {
            group.clear();
            group.extend(members);
            Self::group_violations(request, &group, resources, out);
        }
    }

    fn group_violations(
        request: &ReservationRequest,
        group: &[usize],
        resources: &[Resource],
        out: &mut Vec<Violation>,
    ) {
        // Amounts that are not positive are reported already; only the type can be judged.
        let well_formed = group
            .iter()
            .all(|&i| request.requirements[i].amount().is_positive());
        if well_formed
            && resources
                .iter()
                .any(|resource| could_ever_hold(resource, &request.requirements, group))
        {
            return;
        }
        for &i in group {
            let requirement = &request.requirements[i];
            let resource_type = requirement.resource_type();
            let offering: Vec<&Resource> = resources
                .iter()
                .filter(|r| r.capacity_of(resource_type).is_some())
                .collect();
            if !well_formed && !offering.is_empty() {
                continue;
            }
            if offering.is_empty() {
                out.push(Violation::new(
                    format!("requirements[{i}].type"),
                    format!("no registered resource offers {resource_type}"),
                ));
                continue;
            }
            let matching = offering.iter().filter(|r| requirement.admits(r)).count();
            let alone = offering
                .iter()
                .any(|r| could_ever_hold(r, &request.requirements, &[i]));
            let message = if matching == 0 {
                format!(
                    "none of the {} resources offering {resource_type} passes its constraints",
                    offering.len()
                )
            } else if alone {
                "its co-located group fits on no registered resource, even when empty".to_owned()
            } else {
                format!(
                    "{} {} exceeds the capacity of all {matching} matching resources",
                    requirement.amount(),
                    requirement.unit()
                )
            };
            out.push(Violation::new(format!("requirements[{i}]"), message));
        }
    }
}

impl Validator for ConstraintValidator {
    fn validate_resource(
        &self,
        resource: &Resource,
        context: &ValidationContext<'_>,
    ) -> Result<(), ValidationErrors> {
        let mut out = Vec::new();
        if !context.name_checked
            && context
                .resources
                .iter()
                .any(|r| r.name() == resource.name())
        {
            out.push(Violation::new(
                "name",
                format!("{} duplicates a registered resource", resource.name()),
            ));
        }
        for (resource_type, capacity) in resource.capacities() {
            if !resource_type.accepts_unit(capacity.unit()) {
                out.push(Violation::new(
                    format!("{}.unit", capacity_path(resource, resource_type)),
                    format!("{} does not measure {resource_type}", capacity.unit()),
                ));
            }
        }
        ValidationErrors::check_with(|| format!("resource {}", resource.name()), out)
    }

    fn validate_request(
        &self,
        request: &ReservationRequest,
        context: &ValidationContext<'_>,
    ) -> Result<(), ValidationErrors> {
        let mut out = request.violations();
        for (i, requirement) in request.requirements.iter().enumerate() {
            self.limit_violations(i, requirement, &mut out);
        }
        self.satisfiability_violations(request, context.resources, &mut out);
        ValidationErrors::check_with(|| format!("request by {}", request.requester), out)
    }

    fn validate_reservation(
        &self,
        reservation: &Reservation,
        request: &ReservationRequest,
        context: &ValidationContext<'_>,
    ) -> Result<(), ValidationErrors> {
        let mut out = Vec::new();
        if reservation.requester != request.requester {
            out.push(Violation::new(
                "requester",
                format!(
                    "{} is not the requester {}",
                    reservation.requester, request.requester
                ),
            ));
        }
        for (i, _) in request.requirements.iter().enumerate() {
            let count = reservation
                .items
                .iter()
                .filter(|item| item.requirement == i)
                .count();
            if count != 1 {
                out.push(Violation::new(
                    "items",
                    format!("requirements[{i}] is granted by {count} items, not one"),
                ));
            }
        }
        if let Some(key) = &request.colocate_by {
            let resources: Vec<&rm_model::Resource> = reservation
                .items
                .iter()
                .filter_map(|item| {
                    context
                        .resources
                        .iter()
                        .find(|r| r.name() == &item.resource)
                })
                .collect();
            if !request.same_domain(resources.iter().copied()) {
                let places: Vec<String> = resources
                    .iter()
                    .map(|r| format!("{}={}", r.name(), r.label(key.as_str()).unwrap_or("(none)")))
                    .collect();
                out.push(Violation::new(
                    "items",
                    format!(
                        "not co-located by label {}: {}",
                        key.as_str(),
                        places.join(", ")
                    ),
                ));
            }
        }
        let mut colocated: BTreeMap<&ColocationGroup, (usize, &str)> = BTreeMap::new();
        for (j, item) in reservation.items.iter().enumerate() {
            let at = format!("items[{j}]");
            let Some(requirement) = request.requirements.get(item.requirement) else {
                out.push(Violation::new(
                    format!("{at}.requirement"),
                    format!("{} names no requirement", item.requirement),
                ));
                continue;
            };
            let i = item.requirement;
            let Some(resource) = context
                .resources
                .iter()
                .find(|r| r.name() == &item.resource)
            else {
                out.push(Violation::new(
                    format!("{at}.resource"),
                    format!("{} is not registered", item.resource),
                ));
                continue;
            };
            if &item.resource_type != requirement.resource_type() {
                out.push(Violation::new(
                    format!("{at}.resource_type"),
                    format!(
                        "{} is not the {} requirements[{i}] asks",
                        item.resource_type,
                        requirement.resource_type()
                    ),
                ));
            }
            if requirement
                .unit()
                .compare(requirement.amount(), &item.unit, item.amount)
                != Ok(Ordering::Equal)
            {
                out.push(Violation::new(
                    format!("{at}.amount"),
                    format!(
                        "{} {} is not the {} {} requirements[{i}] asks",
                        item.amount,
                        item.unit,
                        requirement.amount(),
                        requirement.unit()
                    ),
                ));
            }
            if resource.capacity_of(&item.resource_type).is_none() {
                out.push(Violation::new(
                    format!("{at}.resource"),
                    format!("{} offers no {}", item.resource, item.resource_type),
                ));
            }
            for (k, constraint) in requirement.constraints().iter().enumerate() {
                if !constraint.matches(resource) {
                    out.push(Violation::new(
                        at.clone(),
                        format!(
                            "{} breaks requirements[{i}].constraints[{k}] ({constraint})",
                            item.resource
                        ),
                    ));
                }
            }
            if let Some(group) = requirement.colocation() {
                match colocated.get(group) {
                    Some((first, place)) if *place != item.resource.as_str() => out.push(Violation::new(
                        format!("{at}.resource"),
                        format!(
                            "{} is not co-located with items[{first}] on {place} (group {group})",
                            item.resource
                        ),
                    )),
                    Some(_) => {}
                    None => {
                        colocated.insert(group, (j, item.resource.as_str()));
                    }
                }
            }
            for (t, term) in requirement.affinity().iter().enumerate() {
                if term.weight.is_some() {
                    continue;
                }
                let selected = context
                    .active
                    .iter()
                    .filter(|other| {
                        other.id != reservation.id
                            && term.selector.selects(&other.requester, &other.labels)
                    })
                    .flat_map(|other| other.items.iter())
                    .filter_map(|held| {
                        context
                            .resources
                            .iter()
                            .find(|r| r.name() == &held.resource)
                    });
                if !term.is_satisfied_by(resource, selected) {
                    out.push(Violation::new(
                        at.clone(),
                        format!("{} breaks requirements[{i}].affinity[{t}]", item.resource),
                    ));
                }
            }
        }
        ValidationErrors::check_with(|| format!("reservation {}", reservation.id), out)
    }
}

#[cfg(test)]
mod tests;
