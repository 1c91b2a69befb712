//! Requirements: what a request needs of one resource type, and where it may or would like to
//! land.
//!
//! A [`ResourceRequirement`] names a type, an amount and a unit; hard [`Constraint`]s filter
//! resources by capabilities and labels, weighted [`Preference`]s and preferred
//! [`AffinityTerm`]s rank the ones left, required affinity terms filter by other requesters'
//! holds, and a [`ColocationGroup`] ties requirements of one request to one resource.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::name::{CapabilityName, ColocationGroup, LabelKey, RequesterId};
use crate::quantity::Quantity;
use crate::resource::{CapabilityValue, Labels, Resource, ResourceType, ValueView};
use crate::unit::Unit;
use crate::violation::{FieldPath, Violation};

/// What a constraint looks at: a capability of the resource's specification or a label.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ConstraintKey {
    /// A capability (`arch`, `cores`).
    Capability(CapabilityName),
    /// A label (`zone`).
    Label(LabelKey),
}

impl ConstraintKey {
    /// The value under this key on `resource`, borrowed (a label reads as a string).
    fn lookup<'r>(&self, resource: &'r Resource) -> Option<ValueView<'r>> {
        match self {
            ConstraintKey::Capability(name) => resource
                .capability(name.as_str())
                .map(CapabilityValue::view),
            ConstraintKey::Label(key) => resource.label(key.as_str()).map(ValueView::Text),
        }
    }
}

impl fmt::Display for ConstraintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConstraintKey::Capability(name) => write!(f, "capability {name}"),
            ConstraintKey::Label(key) => write!(f, "label {key}"),
        }
    }
}

/// The test a constraint applies to the value under its key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Operator {
    /// Equal to the value.
    Eq(CapabilityValue),
    /// Present and not equal to the value.
    Ne(CapabilityValue),
    /// Equal to one of the values.
    In(Vec<CapabilityValue>),
    /// Present and equal to none of the values.
    NotIn(Vec<CapabilityValue>),
    /// Numerically greater.
    Gt(CapabilityValue),
    /// Numerically greater or equal.
    Ge(CapabilityValue),
    /// Numerically less.
    Lt(CapabilityValue),
    /// Numerically less or equal.
    Le(CapabilityValue),
    /// The key is present.
    Exists,
    /// The key is absent.
    NotExists,
}

impl Operator {
    /// The operator's name in configuration files (`eq`, `not-in`, `exists`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Operator::Eq(_) => "eq",
            Operator::Ne(_) => "ne",
            Operator::In(_) => "in",
            Operator::NotIn(_) => "not-in",
            Operator::Gt(_) => "gt",
            Operator::Ge(_) => "ge",
            Operator::Lt(_) => "lt",
            Operator::Le(_) => "le",
            Operator::Exists => "exists",
            Operator::NotExists => "not-exists",
        }
    }
}

/// A hard constraint: a resource that fails it is never chosen for the requirement.
///
/// ```
/// use rm_model::{Constraint, Resource, ResourceCapacity, ResourceSpecification, ResourceType, Unit};
///
/// let node = Resource::new("n1", ResourceType::Compute, ResourceCapacity::of(8, Unit::CORES)?)?
///     .with_specification(ResourceSpecification::new(ResourceType::Compute).with("arch", "x86_64")?)
///     .with_label("zone", "b")?;
/// assert!(Constraint::capability("arch")?.eq("x86_64").matches(&node));
/// assert!(Constraint::label("zone")?.is_in(["a", "b"]).matches(&node));
/// assert!(Constraint::label("gpu")?.not_exists().matches(&node));
/// assert!(!Constraint::capability("arch")?.ne("x86_64").matches(&node));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "ConstraintRepr", into = "ConstraintRepr")]
pub struct Constraint {
    key: ConstraintKey,
    operator: Operator,
}

/// Starts a [`Constraint`] on one key; finish it with an operator method.
#[derive(Clone, Debug)]
#[must_use = "a constraint builder does nothing until an operator finishes it"]
pub struct ConstraintBuilder {
    key: ConstraintKey,
}

impl ConstraintBuilder {
    fn finish(self, operator: Operator) -> Constraint {
        Constraint {
            key: self.key,
            operator,
        }
    }
    /// Equal to `value`.
    pub fn eq(self, value: impl Into<CapabilityValue>) -> Constraint {
        self.finish(Operator::Eq(value.into()))
    }
    /// Present and not equal to `value`.
    pub fn ne(self, value: impl Into<CapabilityValue>) -> Constraint {
        self.finish(Operator::Ne(value.into()))
    }
    /// Equal to one of `values`.
    pub fn is_in<V: Into<CapabilityValue>>(
        self,
        values: impl IntoIterator<Item = V>,
    ) -> Constraint {
        self.finish(Operator::In(values.into_iter().map(Into::into).collect()))
    }
    /// Present and equal to none of `values`.
    pub fn not_in<V: Into<CapabilityValue>>(
        self,
        values: impl IntoIterator<Item = V>,
    ) -> Constraint {
        self.finish(Operator::NotIn(
            values.into_iter().map(Into::into).collect(),
        ))
    }
    /// Numerically greater than `value`.
    pub fn gt(self, value: impl Into<CapabilityValue>) -> Constraint {
        self.finish(Operator::Gt(value.into()))
    }
    /// Numerically at least `value`.
    pub fn ge(self, value: impl Into<CapabilityValue>) -> Constraint {
        self.finish(Operator::Ge(value.into()))
    }
    /// Numerically less than `value`.
    pub fn lt(self, value: impl Into<CapabilityValue>) -> Constraint {
        self.finish(Operator::Lt(value.into()))
    }
    /// Numerically at most `value`.
    pub fn le(self, value: impl Into<CapabilityValue>) -> Constraint {
        self.finish(Operator::Le(value.into()))
    }
    /// The key is present.
    pub fn exists(self) -> Constraint {
        self.finish(Operator::Exists)
    }
    /// The key is absent.
    pub fn not_exists(self) -> Constraint {
        self.finish(Operator::NotExists)
    }
}

impl Constraint {
    /// A constraint on a capability of the resource's specification.
    pub fn capability(name: &str) -> Result<ConstraintBuilder, crate::NameError> {
        Ok(ConstraintBuilder {
            key: ConstraintKey::Capability(CapabilityName::new(name)?),
        })
    }

    /// A constraint on a label of the resource.
    pub fn label(key: &str) -> Result<ConstraintBuilder, crate::NameError> {
        Ok(ConstraintBuilder {
            key: ConstraintKey::Label(LabelKey::new(key)?),
        })
    }

    /// What the constraint looks at.
    pub fn key(&self) -> &ConstraintKey {
        &self.key
    }

    /// The test it applies.
    pub fn operator(&self) -> &Operator {
        &self.operator
    }

    /// Whether `resource` passes. Ordering operators fail when either side is not a number or
    /// quantity; `ne` and `not-in` fail when the key is absent (as in Kubernetes' node
    /// affinity, absence is neither equal nor unequal: use `not-exists` for it).
    pub fn matches(&self, resource: &Resource) -> bool {
        let value = self.key.lookup(resource);
        let ordered = |wanted: &CapabilityValue, accept: fn(std::cmp::Ordering) -> bool| {
            value.is_some_and(|v| {
                v.as_quantity().is_some()
                    && wanted.as_quantity().is_some()
                    && v.compare(wanted.view()).is_some_and(accept)
            })
        };
        match &self.operator {
            Operator::Exists => value.is_some(),
            Operator::NotExists => value.is_none(),
            Operator::Eq(wanted) => value.is_some_and(|v| v.same_as(wanted.view())),
            Operator::Ne(wanted) => value.is_some_and(|v| !v.same_as(wanted.view())),
            Operator::In(set) => value.is_some_and(|v| set.iter().any(|w| v.same_as(w.view()))),
            Operator::NotIn(set) => value.is_some_and(|v| !set.iter().any(|w| v.same_as(w.view()))),
            Operator::Gt(wanted) => ordered(wanted, std::cmp::Ordering::is_gt),
            Operator::Ge(wanted) => ordered(wanted, std::cmp::Ordering::is_ge),
            Operator::Lt(wanted) => ordered(wanted, std::cmp::Ordering::is_lt),
            Operator::Le(wanted) => ordered(wanted, std::cmp::Ordering::is_le),
        }
    }

    /// Structural problems: ordering operators with a value that is not a number or quantity,
    /// and empty sets for `in` / `not-in`, each under `path`.
    pub fn violations(&self, path: &FieldPath<'_>, out: &mut Vec<Violation>) {
        match &self.operator {
            Operator::Gt(v) | Operator::Ge(v) | Operator::Lt(v) | Operator::Le(v)
                if v.as_quantity().is_none() =>
            {
                out.push(path.field("value").violation(format!(
                    "operator {} needs a number or quantity, not the {} {}",
                    self.operator.name(),
                    v.type_name(),
                    crate::clip(&format!("{v:?}")),
                )));
            }
            Operator::In(values) | Operator::NotIn(values) if values.is_empty() => {
                out.push(path.field("values").violation(format!(
                    "operator {} needs at least one value",
                    self.operator.name()
                )));
            }
            _ => {}
        }
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |values: &[CapabilityValue]| {
            values
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match &self.operator {
            Operator::Eq(v) => write!(f, "{} == {v}", self.key),
            Operator::Ne(v) => write!(f, "{} != {v}", self.key),
            Operator::In(vs) => write!(f, "{} in [{}]", self.key, list(vs)),
            Operator::NotIn(vs) => write!(f, "{} not in [{}]", self.key, list(vs)),
            Operator::Gt(v) => write!(f, "{} > {v}", self.key),
            Operator::Ge(v) => write!(f, "{} >= {v}", self.key),
            Operator::Lt(v) => write!(f, "{} < {v}", self.key),
            Operator::Le(v) => write!(f, "{} <= {v}", self.key),
            Operator::Exists => write!(f, "{} exists", self.key),
            Operator::NotExists => write!(f, "{} does not exist", self.key),
        }
    }
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConstraintRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    capability: Option<CapabilityName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    label: Option<LabelKey>,
    op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<CapabilityValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    values: Option<Vec<CapabilityValue>>,
}

/// A constraint description that cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("read constraint: {field} {reason}")]
pub struct ConstraintError {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl TryFrom<ConstraintRepr> for Constraint {
    type Error = ConstraintError;
    fn try_from(repr: ConstraintRepr) -> Result<Constraint, ConstraintError> {
        let error = |field, reason: &str| ConstraintError {
            field,
            reason: reason.to_owned(),
        };
        let key = match (repr.capability, repr.label) {
            (Some(name), None) => ConstraintKey::Capability(name),
            (None, Some(key)) => ConstraintKey::Label(key),
            _ => {
                return Err(error(
                    "capability",
                    "or label must be given, exactly one of them",
                ));
            }
        };
        let single = |value: Option<CapabilityValue>, values: &Option<Vec<CapabilityValue>>| {
            if values.is_some() {
                return Err(error("values", "is only for in and not-in"));
            }
            value.ok_or_else(|| error("value", "is required by this operator"))
        };
        let operator = match repr.op.as_str() {
            "eq" => Operator::Eq(single(repr.value, &repr.values)?),
            "ne" => Operator::Ne(single(repr.value, &repr.values)?),
            "gt" => Operator::Gt(single(repr.value, &repr.values)?),
            "ge" => Operator::Ge(single(repr.value, &repr.values)?),
            "lt" => Operator::Lt(single(repr.value, &repr.values)?),
            "le" => Operator::Le(single(repr.value, &repr.values)?),
            "in" | "not-in" => {
                if repr.value.is_some() {
                    return Err(error("value", "is not for in and not-in: use values"));
                }
                let values = repr
                    .values
                    .ok_or_else(|| error("values", "is required by this operator"))?;
                if repr.op == "in" {
                    Operator::In(values)
                } else {
                    Operator::NotIn(values)
                }
            }
            "exists" | "not-exists" => {
                if repr.value.is_some() || repr.values.is_some() {
                    return Err(error("value", "is not for exists and not-exists"));
                }
                if repr.op == "exists" {
                    Operator::Exists
                } else {
                    Operator::NotExists
                }
            }
            other => {
                return Err(error(
                    "op",
                    &format!(
                        "{:?} is unknown: use eq, ne, in, not-in, gt, ge, lt, le, exists or not-exists",
                        crate::clip(other)
                    ),
                ));
            }
        };
        Ok(Constraint { key, operator })
    }
}

impl From<Constraint> for ConstraintRepr {
    fn from(constraint: Constraint) -> ConstraintRepr {
        let (capability, label) = match constraint.key {
            ConstraintKey::Capability(name) => (Some(name), None),
            ConstraintKey::Label(key) => (None, Some(key)),
        };
        let op = constraint.operator.name().to_owned();
        let (value, values) = match constraint.operator {
            Operator::Eq(v)
            | Operator::Ne(v)
            | Operator::Gt(v)
            | Operator::Ge(v)
            | Operator::Lt(v)
            | Operator::Le(v) => (Some(v), None),
            Operator::In(vs) | Operator::NotIn(vs) => (None, Some(vs)),
            Operator::Exists | Operator::NotExists => (None, None),
        };
        ConstraintRepr {
            capability,
            label,
            op,
            value,
            values,
        }
    }
}

/// A soft preference: resources that satisfy `constraint` score `weight` (1 to 100) more.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preference {
    /// How much satisfying the constraint is worth, 1 to 100 (as in Kubernetes).
    pub weight: u8,
    /// What is preferred.
    pub constraint: Constraint,
}

/// Whether an [`AffinityTerm`] attracts or repels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AffinityKind {
    /// Land in the same topology domain as the selected holds.
    Affinity,
    /// Land in a different topology domain from the selected holds.
    AntiAffinity,
}

/// What "the same place" means for affinity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Topology {
    /// The same resource.
    Resource,
    /// Resources that carry the same value of this label (for example the same `zone`).
    Label(LabelKey),
}

impl Topology {
    /// The domain `resource` is in: its name, or its value of the label. A resource without
    /// the label is in no domain.
    pub fn domain<'r>(&self, resource: &'r Resource) -> Option<&'r str> {
        match self {
            Topology::Resource => Some(resource.name().as_str()),
            Topology::Label(key) => resource.label(key.as_str()),
        }
    }

    /// Whether two resources are in the same domain. A resource without the label is in no
    /// domain, so it is never the same as another.
    pub fn same_domain(&self, a: &Resource, b: &Resource) -> bool {
        self.domain(a)
            .is_some_and(|domain| self.domain(b) == Some(domain))
    }
}

/// Which holds an affinity term looks at: those of the listed requesters (any requester when
/// the list is empty) whose request labels contain all of `labels`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// Requesters whose holds are selected; empty selects every requester.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requesters: Vec<RequesterId>,
    /// Labels a hold's request must carry.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
}

impl Selector {
    /// Selects the holds of one requester.
    pub fn requester(requester: RequesterId) -> Selector {
        Selector {
            requesters: vec![requester],
            labels: Labels::new(),
        }
    }

    /// Selects holds whose request carries all of `labels`.
    pub fn labels(labels: Labels) -> Selector {
        Selector {
            requesters: Vec::new(),
            labels,
        }
    }

    /// Whether a hold by `requester` with request labels `labels` is selected.
    pub fn selects(&self, requester: &RequesterId, labels: &Labels) -> bool {
        (self.requesters.is_empty() || self.requesters.contains(requester))
            && labels.contains_all(&self.labels)
    }
}

/// Affinity or anti-affinity to other requesters' holds: required (a filter) when `weight` is
/// `None`, preferred (a score of `weight`, 1 to 100) otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AffinityTerm {
    /// Attract or repel.
    pub kind: AffinityKind,
    /// Which holds count.
    pub selector: Selector,
    /// What counts as the same place.
    pub topology: Topology,
    /// `None` for a required term, `Some(1..=100)` for a preferred one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u8>,
}

impl AffinityTerm {
    /// A required term.
    pub fn required(kind: AffinityKind, selector: Selector, topology: Topology) -> AffinityTerm {
        AffinityTerm {
            kind,
            selector,
            topology,
            weight: None,
        }
    }

    /// A preferred term of `weight` (1 to 100).
    pub fn preferred(
        kind: AffinityKind,
        selector: Selector,
        topology: Topology,
        weight: u8,
    ) -> AffinityTerm {
        AffinityTerm {
            kind,
            selector,
            topology,
            weight: Some(weight),
        }
    }

    /// Whether placing on `candidate` satisfies the term, given the resources of the selected
    /// holds. Affinity with no selected hold anywhere is satisfied, so the first member of a
    /// group can land (Kubernetes does the same).
    pub fn is_satisfied_by<'a>(
        &self,
        candidate: &Resource,
        mut selected_hold_resources: impl Iterator<Item = &'a Resource>,
    ) -> bool {
        let mut any = false;
        let same = selected_hold_resources.any(|resource| {
            any = true;
            self.topology.same_domain(candidate, resource)
        });
        // `any` only says whether the iterator yielded a resource at all; stopping at the
        // first one in the candidate's domain leaves it right.
        self.verdict(any, same)
    }

    /// [`is_satisfied_by`](Self::is_satisfied_by) for a caller that has gathered the selected
    /// holds by domain once (a ledger placing on many candidates) and judged the candidate's
    /// domain (see [`Topology::domain`]): whether any selected hold is on a resource it knows,
    /// and whether one is in the candidate's domain (a candidate in no domain never is).
    /// Affinity wants the candidate's domain among the selected holds' (or no selected hold
    /// anywhere); anti-affinity wants it not among them.
    pub fn verdict(&self, any_selected: bool, same_domain: bool) -> bool {
        match self.kind {
            AffinityKind::Affinity => !any_selected || same_domain,
            AffinityKind::AntiAffinity => !same_domain,
        }
    }
}

/// What a request needs of one resource type: an amount in a unit, with constraints,
/// preferences, affinity and optional co-location.
///
/// The seed's `ResourceRequirement(resource_type=COMPUTE, amount=50, unit="cores")`:
///
/// ```
/// use rm_model::{Constraint, ResourceRequirement, ResourceType, Unit};
///
/// let requirement = ResourceRequirement::new(ResourceType::Compute, 50, Unit::CORES)
///     .with_constraint(Constraint::capability("arch")?.eq("x86_64"))
///     .with_preference(10, Constraint::label("zone")?.eq("eu-1a"));
/// assert_eq!(requirement.amount(), 50.into());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RequirementRepr", into = "RequirementRepr")]
pub struct ResourceRequirement {
    resource_type: ResourceType,
    amount: Quantity,
    unit: Unit,
    constraints: Vec<Constraint>,
    preferences: Vec<Preference>,
    affinity: Vec<AffinityTerm>,
    colocation: Option<ColocationGroup>,
    minimum: Option<Quantity>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequirementRepr {
    #[serde(rename = "type")]
    resource_type: ResourceType,
    amount: Quantity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unit: Option<Unit>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    constraints: Vec<Constraint>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    preferences: Vec<Preference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    affinity: Vec<AffinityTerm>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    colocate: Option<ColocationGroup>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    minimum: Option<Quantity>,
}

impl From<RequirementRepr> for ResourceRequirement {
    fn from(repr: RequirementRepr) -> ResourceRequirement {
        let unit = repr
            .unit
            .unwrap_or_else(|| repr.resource_type.default_unit());
        ResourceRequirement {
            resource_type: repr.resource_type,
            amount: repr.amount,
            unit,
            constraints: repr.constraints,
            preferences: repr.preferences,
            affinity: repr.affinity,
            colocation: repr.colocate,
            minimum: repr.minimum,
        }
    }
}

impl From<ResourceRequirement> for RequirementRepr {
    fn from(req: ResourceRequirement) -> RequirementRepr {
        RequirementRepr {
            resource_type: req.resource_type,
            amount: req.amount,
            unit: Some(req.unit),
            constraints: req.constraints,
            preferences: req.preferences,
            affinity: req.affinity,
            colocate: req.colocation,
            minimum: req.minimum,
        }
    }
}

impl ResourceRequirement {
    /// `amount` of `resource_type`, measured in `unit`.
    pub fn new(
        resource_type: ResourceType,
        amount: impl Into<Quantity>,
        unit: Unit,
    ) -> ResourceRequirement {
        ResourceRequirement {
            resource_type,
            amount: amount.into(),
            unit,
            constraints: Vec::new(),
            preferences: Vec::new(),
            affinity: Vec::new(),
            colocation: None,
            minimum: None,
        }
    }

    /// Replaces the amount (for example with a limit range's default).
    pub fn with_amount(mut self, amount: impl Into<Quantity>) -> ResourceRequirement {
        self.amount = amount.into();
        self
    }

    /// Adds a hard constraint.
    pub fn with_constraint(mut self, constraint: Constraint) -> ResourceRequirement {
        self.constraints.push(constraint);
        self
    }

    /// Adds a soft preference of `weight` (1 to 100).
    pub fn with_preference(mut self, weight: u8, constraint: Constraint) -> ResourceRequirement {
        self.preferences.push(Preference { weight, constraint });
        self
    }

    /// Adds an affinity or anti-affinity term.
    pub fn with_affinity(mut self, term: AffinityTerm) -> ResourceRequirement {
        self.affinity.push(term);
        self
    }

    /// Makes the requirement elastic: it is granted its full amount, and may later be shrunk
    /// toward `minimum` (in the requirement's unit) to make room for others.
    pub fn elastic(mut self, minimum: impl Into<Quantity>) -> ResourceRequirement {
        self.minimum = Some(minimum.into());
        self
    }

    /// The least an elastic requirement may be shrunk to, if it is elastic.
    pub fn minimum(&self) -> Option<Quantity> {
        self.minimum
    }

    /// Puts the requirement in a co-location group: all requirements of one request in the
    /// same group land on the same resource.
    pub fn colocated(mut self, group: ColocationGroup) -> ResourceRequirement {
        self.colocation = Some(group);
        self
    }

    /// The resource type.
    pub fn resource_type(&self) -> &ResourceType {
        &self.resource_type
    }

    /// The amount, in [`ResourceRequirement::unit`].
    pub fn amount(&self) -> Quantity {
        self.amount
    }

    /// The unit of the amount.
    pub fn unit(&self) -> &Unit {
        &self.unit
    }

    /// The hard constraints.
    pub fn constraints(&self) -> &[Constraint] {
        &self.constraints
    }

    /// The soft preferences.
    pub fn preferences(&self) -> &[Preference] {
        &self.preferences
    }

    /// The affinity and anti-affinity terms.
    pub fn affinity(&self) -> &[AffinityTerm] {
        &self.affinity
    }

    /// The co-location group, if any.
    pub fn colocation(&self) -> Option<&ColocationGroup> {
        self.colocation.as_ref()
    }

    /// The amount converted to `unit`, exactly.
    pub fn amount_in(&self, unit: &Unit) -> Result<Quantity, crate::UnitError> {
        self.unit.convert(self.amount, unit)
    }

    /// Whether `resource` offers the type in a convertible unit and passes every hard
    /// constraint. Capacity and affinity are the ledger's to check.
    pub fn admits(&self, resource: &Resource) -> bool {
        resource
            .capacity_of(&self.resource_type)
            .is_some_and(|capacity| self.unit.is_convertible_to(capacity.unit()))
            && self.constraints.iter().all(|c| c.matches(resource))
    }

    /// The soft-preference score of `resource` in parts per million: the share of preference
    /// weight it satisfies (0 when there are no preferences).
    pub fn preference_score(&self, resource: &Resource) -> u32 {
        let total: u32 = self.preferences.iter().map(|p| u32::from(p.weight)).sum();
        if total == 0 {
            return 0;
        }
        let matched: u32 = self
            .preferences
            .iter()
            .filter(|p| p.constraint.matches(resource))
            .map(|p| u32::from(p.weight))
            .sum();
        (u64::from(matched) * 1_000_000 / u64::from(total)) as u32
    }

    /// Structural problems, each with its field path under `path` (for example
    /// `requirements[0]`): a non-positive amount, a unit that does not measure the type,
    /// malformed constraints, weights outside 1 to 100. Paths are formatted only for the
    /// violations found.
    pub fn violations(&self, path: &FieldPath<'_>, out: &mut Vec<Violation>) {
        if !self.amount.is_positive() {
            out.push(
                path.field("amount")
                    .violation(format!("must be positive, not {}", self.amount)),
            );
        }
        if !self.resource_type.accepts_unit(&self.unit) {
            out.push(path.field("unit").violation(format!(
                "{} does not measure {}",
                self.unit, self.resource_type
            )));
        }
        if let Some(minimum) = self.minimum
            && (!minimum.is_positive() || minimum > self.amount)
        {
            out.push(path.field("minimum").violation(format!(
                "must be positive and at most the amount {}, not {minimum}",
                self.amount
            )));
        }
        let constraints = path.field("constraints");
        for (i, constraint) in self.constraints.iter().enumerate() {
            constraint.violations(&constraints.index(i), out);
        }
        let preferences = path.field("preferences");
        for (i, preference) in self.preferences.iter().enumerate() {
            let at = preferences.index(i);
            if !(1..=100).contains(&preference.weight) {
                out.push(
                    at.field("weight")
                        .violation(format!("must be 1 to 100, not {}", preference.weight)),
                );
            }
            preference
                .constraint
                .violations(&at.field("constraint"), out);
        }
        let affinity = path.field("affinity");
        for (i, term) in self.affinity.iter().enumerate() {
            if let Some(weight) = term.weight
                && !(1..=100).contains(&weight)
            {
                out.push(
                    affinity
                        .index(i)
                        .field("weight")
                        .violation(format!("must be 1 to 100, not {weight}")),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
