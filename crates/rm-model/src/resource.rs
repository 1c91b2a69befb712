//! Resources: what can be reserved, described by type, capacity, capabilities and labels.
//!
//! A [`Resource`] is the specification's single-dimension resource (a name, a type and one
//! capacity) that may carry further capacities, one per [`ResourceType`], so a host offers
//! cores, memory and GPUs at once and a request's requirements can land on it together.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::name::{CapabilityName, LabelKey, NameError, ResourceName, check_name};
use crate::quantity::Quantity;
use crate::unit::{Dimension, Unit};

/// The kind of a resource.
///
/// Custom types name anything else that is counted: licences, connection slots, tokens.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    /// Processor time, counted in cores.
    Compute,
    /// Memory, counted in bytes.
    Memory,
    /// Disk or object storage, counted in bytes.
    Storage,
    /// Network bandwidth, counted in bits per second.
    Network,
    /// Accelerators, counted in devices (fractions of a device are allowed).
    Gpu,
    /// Any other countable resource, by name.
    Custom(Arc<str>),
}

impl ResourceType {
    /// A custom type (`licences`, `db-connections`). The built-in names (`compute`, `memory`,
    /// `storage`, `network`, `gpu`) give the built-in types.
    pub fn custom(name: &str) -> Result<ResourceType, NameError> {
        name.parse()
    }

    /// The lower-case name (`compute`, or the custom name).
    pub fn as_str(&self) -> &str {
        match self {
            ResourceType::Compute => "compute",
            ResourceType::Memory => "memory",
            ResourceType::Storage => "storage",
            ResourceType::Network => "network",
            ResourceType::Gpu => "gpu",
            ResourceType::Custom(name) => name,
        }
    }

    /// The unit amounts of this type are given in unless a unit is named.
    pub fn default_unit(&self) -> Unit {
        match self {
            ResourceType::Compute => Unit::CORES,
            ResourceType::Memory | ResourceType::Storage => Unit::BYTES,
            ResourceType::Network => Unit::BPS,
            ResourceType::Gpu => Unit::DEVICES,
            ResourceType::Custom(name) => Unit::parse(name).unwrap_or(Unit::DEVICES),
        }
    }

    /// Whether amounts of this type may be measured in `unit`: compute in CPU units, memory
    /// and storage in bytes, network in bits per second, GPUs in devices, custom types in any
    /// custom unit or in devices.
    pub fn accepts_unit(&self, unit: &Unit) -> bool {
        let dimension = unit.dimension();
        match self {
            ResourceType::Compute => dimension == Dimension::Cpu,
            ResourceType::Memory | ResourceType::Storage => dimension == Dimension::Bytes,
            ResourceType::Network => dimension == Dimension::BitsPerSecond,
            ResourceType::Gpu => dimension == Dimension::Devices,
            ResourceType::Custom(_) => {
                matches!(dimension, Dimension::Custom(_) | Dimension::Devices)
            }
        }
    }
}

impl FromStr for ResourceType {
    type Err = NameError;
    fn from_str(name: &str) -> Result<ResourceType, NameError> {
        Ok(match name {
            "compute" => ResourceType::Compute,
            "memory" => ResourceType::Memory,
            "storage" => ResourceType::Storage,
            "network" => ResourceType::Network,
            "gpu" => ResourceType::Gpu,
            _ => {
                check_name("resource type", name, 63)?;
                ResourceType::Custom(Arc::from(name))
            }
        })
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Debug for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResourceType::Custom(name) => write!(f, "Custom({name:?})"),
            _ => write!(f, "{}", self.as_str()),
        }
    }
}

impl Serialize for ResourceType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ResourceType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ResourceType, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// A capacity that breaks its invariant `maximum >= current >= 0`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("use capacity (current {current}, maximum {maximum}): {field} {reason}")]
pub struct CapacityError {
    /// The offending field, `current` or `maximum`.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
    /// The `current` that was given.
    pub current: Quantity,
    /// The `maximum` that was given.
    pub maximum: Quantity,
}

/// How much of one resource type a resource has: `current` in use and `maximum`, in `unit`.
///
/// `current` is what is already used outside the ledger when the resource is registered (a
/// host's system reserve, say); a ledger counts it as unavailable. The invariant
/// `maximum >= current >= 0` holds for every value of this type.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "CapacityRepr", into = "CapacityRepr")]
pub struct ResourceCapacity {
    current: Quantity,
    maximum: Quantity,
    unit: Unit,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CapacityRepr {
    #[serde(default)]
    current: Quantity,
    maximum: Quantity,
    unit: Unit,
}

impl TryFrom<CapacityRepr> for ResourceCapacity {
    type Error = CapacityError;
    fn try_from(repr: CapacityRepr) -> Result<ResourceCapacity, CapacityError> {
        ResourceCapacity::new(repr.current, repr.maximum, repr.unit)
    }
}

impl From<ResourceCapacity> for CapacityRepr {
    fn from(capacity: ResourceCapacity) -> CapacityRepr {
        CapacityRepr {
            current: capacity.current,
            maximum: capacity.maximum,
            unit: capacity.unit,
        }
    }
}

impl ResourceCapacity {
    /// A capacity of `maximum` with `current` already in use.
    pub fn new(
        current: impl Into<Quantity>,
        maximum: impl Into<Quantity>,
        unit: Unit,
    ) -> Result<ResourceCapacity, CapacityError> {
        let (current, maximum) = (current.into(), maximum.into());
        let fail = |field, reason| {
            Err(CapacityError {
                field,
                reason,
                current,
                maximum,
            })
        };
        if maximum.is_negative() {
            return fail("maximum", "is negative");
        }
        if current.is_negative() {
            return fail("current", "is negative");
        }
        if current > maximum {
            return fail("current", "exceeds maximum");
        }
        Ok(ResourceCapacity {
            current,
            maximum,
            unit,
        })
    }

    /// An unused capacity of `maximum`.
    pub fn of(maximum: impl Into<Quantity>, unit: Unit) -> Result<ResourceCapacity, CapacityError> {
        ResourceCapacity::new(Quantity::ZERO, maximum, unit)
    }

    /// What is in use.
    pub fn current(&self) -> Quantity {
        self.current
    }

    /// The total.
    pub fn maximum(&self) -> Quantity {
        self.maximum
    }

    /// The unit of both amounts.
    pub fn unit(&self) -> &Unit {
        &self.unit
    }

    /// `maximum - current`.
    pub fn available(&self) -> Quantity {
        self.maximum.saturating_sub_to_zero(self.current)
    }

    /// `current / maximum`, for reports only.
    pub fn utilization(&self) -> f64 {
        self.current.ratio_of(self.maximum)
    }
}

/// A typed capability value: an integer, an exact quantity, a string or a flag.
///
/// Serialised as the plain JSON/TOML value; quantities as their string form. Reading a string
/// that parses as a quantity gives a quantity, so a round trip never changes how constraints
/// compare it (see [`CapabilityValue::compare`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CapabilityValue {
    /// A whole number (`cores = 32`).
    Integer(i64),
    /// An exact amount (`memory = "64Gi"`).
    Quantity(Quantity),
    /// Text (`arch = "x86_64"`).
    String(String),
    /// A flag (`ecc = true`).
    Bool(bool),
}

impl CapabilityValue {
    /// The value as an exact amount: integers, quantities and strings that parse as quantities.
    pub fn as_quantity(&self) -> Option<Quantity> {
        self.view().as_quantity()
    }

    /// The name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            CapabilityValue::Integer(_) => "integer",
            CapabilityValue::Quantity(_) => "quantity",
            CapabilityValue::String(_) => "string",
            CapabilityValue::Bool(_) => "bool",
        }
    }

    /// Compares two values the way constraints do: numerically when both read as amounts,
    /// flags with flags, and otherwise by their text. `None` when they do not compare (a flag
    /// against a number).
    pub fn compare(&self, other: &CapabilityValue) -> Option<Ordering> {
        self.view().compare(other.view())
    }

    /// Whether two values are equal the way constraints see them.
    pub fn same_as(&self, other: &CapabilityValue) -> bool {
        self.compare(other) == Some(Ordering::Equal)
    }

    /// The value borrowed.
    pub(crate) fn view(&self) -> ValueView<'_> {
        match self {
            CapabilityValue::Integer(value) => ValueView::Integer(*value),
            CapabilityValue::Quantity(value) => ValueView::Quantity(*value),
            CapabilityValue::String(text) => ValueView::Text(text),
            CapabilityValue::Bool(flag) => ValueView::Bool(*flag),
        }
    }
}

/// A [`CapabilityValue`] borrowed, or a label's text read as a string value: what a
/// constraint tests on each candidate resource, without copying it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ValueView<'a> {
    Integer(i64),
    Quantity(Quantity),
    Text(&'a str),
    Bool(bool),
}

impl ValueView<'_> {
    /// See [`CapabilityValue::as_quantity`]. Text that is not a quantity costs no allocation.
    pub(crate) fn as_quantity(self) -> Option<Quantity> {
        match self {
            ValueView::Integer(value) => Quantity::try_from_units(value).ok(),
            ValueView::Quantity(value) => Some(value),
            ValueView::Text(text) => crate::quantity::read(text).ok(),
            ValueView::Bool(_) => None,
        }
    }

    /// See [`CapabilityValue::compare`].
    pub(crate) fn compare(self, other: ValueView<'_>) -> Option<Ordering> {
        if let (Some(a), Some(b)) = (self.as_quantity(), other.as_quantity()) {
            return Some(a.cmp(&b));
        }
        match (self, other) {
            (ValueView::Bool(a), ValueView::Bool(b)) => Some(a.cmp(&b)),
            (ValueView::Bool(_), _) | (_, ValueView::Bool(_)) => None,
            (ValueView::Text(a), ValueView::Text(b)) => Some(a.cmp(b)),
            _ => Some(self.to_string().cmp(&other.to_string())),
        }
    }

    /// Whether two values are equal the way constraints see them.
    pub(crate) fn same_as(self, other: ValueView<'_>) -> bool {
        self.compare(other) == Some(Ordering::Equal)
    }
}

impl fmt::Display for ValueView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueView::Integer(value) => write!(f, "{value}"),
            ValueView::Quantity(value) => write!(f, "{value}"),
            ValueView::Text(text) => f.write_str(text),
            ValueView::Bool(flag) => write!(f, "{flag}"),
        }
    }
}

impl fmt::Display for CapabilityValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.view().fmt(f)
    }
}

impl From<i64> for CapabilityValue {
    fn from(value: i64) -> CapabilityValue {
        CapabilityValue::Integer(value)
    }
}

impl From<i32> for CapabilityValue {
    fn from(value: i32) -> CapabilityValue {
        CapabilityValue::Integer(i64::from(value))
    }
}

impl From<u32> for CapabilityValue {
    fn from(value: u32) -> CapabilityValue {
        CapabilityValue::Integer(i64::from(value))
    }
}

impl From<Quantity> for CapabilityValue {
    fn from(value: Quantity) -> CapabilityValue {
        CapabilityValue::Quantity(value)
    }
}

impl From<&str> for CapabilityValue {
    fn from(value: &str) -> CapabilityValue {
        CapabilityValue::String(value.to_owned())
    }
}

impl From<String> for CapabilityValue {
    fn from(value: String) -> CapabilityValue {
        CapabilityValue::String(value)
    }
}

impl From<bool> for CapabilityValue {
    fn from(value: bool) -> CapabilityValue {
        CapabilityValue::Bool(value)
    }
}

impl Serialize for CapabilityValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            CapabilityValue::Integer(value) => serializer.serialize_i64(*value),
            CapabilityValue::Quantity(value) => value.serialize(serializer),
            CapabilityValue::String(text) => serializer.serialize_str(text),
            CapabilityValue::Bool(flag) => serializer.serialize_bool(*flag),
        }
    }
}

impl<'de> Deserialize<'de> for CapabilityValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<CapabilityValue, D::Error> {
        struct ValueVisitor;
        impl serde::de::Visitor<'_> for ValueVisitor {
            type Value = CapabilityValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer, a quantity string, a string or a bool")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<CapabilityValue, E> {
                Ok(CapabilityValue::Bool(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<CapabilityValue, E> {
                Ok(CapabilityValue::Integer(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<CapabilityValue, E> {
                i64::try_from(v)
                    .map(CapabilityValue::Integer)
                    .map_err(|_| E::custom("the integer is out of range"))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<CapabilityValue, E> {
                Err(E::custom(crate::QuantityError::Float {
                    value: v.to_string(),
                }))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<CapabilityValue, E> {
                Ok(match v.parse() {
                    Ok(quantity) => CapabilityValue::Quantity(quantity),
                    Err(_) => CapabilityValue::String(v.to_owned()),
                })
            }
        }
        deserializer.deserialize_any(ValueVisitor)
    }
}

/// The typed capabilities of a resource (`cores = 32`, `arch = "x86_64"`), which hard
/// constraints and soft preferences of requirements test.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpecification {
    resource_type: ResourceType,
    #[serde(default)]
    capabilities: BTreeMap<CapabilityName, CapabilityValue>,
}

impl ResourceSpecification {
    /// An empty specification for a resource of `resource_type`.
    pub fn new(resource_type: ResourceType) -> ResourceSpecification {
        ResourceSpecification {
            resource_type,
            capabilities: BTreeMap::new(),
        }
    }

    /// Adds (or replaces) a capability, failing on a malformed name.
    pub fn with(
        mut self,
        name: &str,
        value: impl Into<CapabilityValue>,
    ) -> Result<ResourceSpecification, NameError> {
        self.capabilities
            .insert(CapabilityName::new(name)?, value.into());
        Ok(self)
    }

    /// The resource type this specification describes.
    pub fn resource_type(&self) -> &ResourceType {
        &self.resource_type
    }

    /// One capability.
    pub fn get(&self, name: &str) -> Option<&CapabilityValue> {
        self.capabilities.get(name)
    }

    /// All capabilities, by name.
    pub fn capabilities(&self) -> impl Iterator<Item = (&CapabilityName, &CapabilityValue)> {
        self.capabilities.iter()
    }
}

/// Key-value labels on a resource or a request (`zone = "eu-1a"`), which constraints,
/// selectors and affinity rules match.
///
/// Shared: a clone does not copy the labels (every reservation a ledger returns carries its
/// request's labels, so a clone is an atomic increment, never an allocation); a change to a
/// shared set copies it first. No labels take no storage.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(
    /// `None` when there are no labels: a set in use is never empty, so equal label sets
    /// always have equal representations.
    Option<Arc<BTreeMap<LabelKey, String>>>,
);

impl Labels {
    /// No labels.
    pub fn new() -> Labels {
        Labels::default()
    }

    /// Sets a label, failing on a malformed key or a value over 253 characters.
    pub fn insert(&mut self, key: &str, value: &str) -> Result<(), NameError> {
        let key = LabelKey::new(key)?;
        check_label_value(value)?;
        Arc::make_mut(self.0.get_or_insert_default()).insert(key, value.to_owned());
        Ok(())
    }

    /// One label's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.as_deref()?.get(key).map(String::as_str)
    }

    /// Whether every label in `selector` is present here with the same value.
    pub fn contains_all(&self, selector: &Labels) -> bool {
        selector
            .iter()
            .all(|(key, value)| self.get(key.as_str()) == Some(value))
    }

    /// All labels, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&LabelKey, &str)> {
        self.0
            .as_deref()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k, v.as_str()))
    }

    /// How many labels there are.
    pub fn len(&self) -> usize {
        self.0.as_deref().map_or(0, BTreeMap::len)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

/// A label value: at most 253 characters.
fn check_label_value(value: &str) -> Result<(), NameError> {
    if value.len() > 253 {
        return Err(NameError {
            kind: "label value",
            name: crate::clip(value),
            reason: "it is too long",
        });
    }
    Ok(())
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Written as a map of key to value.
impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

/// Read from a map of key to value; a malformed key or an over-long value is an error.
impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Labels, D::Error> {
        let labels = BTreeMap::<LabelKey, String>::deserialize(deserializer)?;
        for value in labels.values() {
            check_label_value(value).map_err(serde::de::Error::custom)?;
        }
        Ok(Labels((!labels.is_empty()).then(|| Arc::new(labels))))
    }
}

impl<'a> TryFrom<&[(&'a str, &'a str)]> for Labels {
    type Error = NameError;
    fn try_from(pairs: &[(&'a str, &'a str)]) -> Result<Labels, NameError> {
        let mut labels = Labels::new();
        for (key, value) in pairs {
            labels.insert(key, value)?;
        }
        Ok(labels)
    }
}

/// A resource that can be reserved: a name, a primary type and capacity, optional further
/// capacities (one per type), a specification of capabilities and labels.
///
/// ```
/// use rm_model::{Resource, ResourceCapacity, ResourceType, Unit};
///
/// // A host with 64 cores and 256 GiB: one resource, two dimensions.
/// let host = Resource::new("host-1", ResourceType::Compute, ResourceCapacity::of(64, Unit::CORES)?)?
///     .with_capacity(ResourceType::Memory, ResourceCapacity::of(256, Unit::GIB)?)
///     .with_label("zone", "eu-1a")?;
/// assert_eq!(host.capacity_of(&ResourceType::Memory).map(|c| c.maximum()), Some(256.into()));
/// assert_eq!(host.label("zone"), Some("eu-1a"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ResourceRepr", into = "ResourceRepr")]
pub struct Resource {
    name: ResourceName,
    resource_type: ResourceType,
    // Shared between clones, as the labels are (a ledger's snapshot copies every resource
    // at each collection: a quarter of the monitor's work on 20,000 nodes), copied on change.
    capacities: Arc<BTreeMap<ResourceType, ResourceCapacity>>,
    specification: Arc<ResourceSpecification>,
    labels: Labels,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceRepr {
    name: ResourceName,
    #[serde(rename = "type")]
    resource_type: ResourceType,
    capacity: ResourceCapacity,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    capacities: BTreeMap<ResourceType, ResourceCapacity>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    capabilities: BTreeMap<CapabilityName, CapabilityValue>,
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    labels: Labels,
}

/// A resource description that cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("read resource {name}: {reason}")]
pub struct ResourceError {
    /// The resource's name.
    pub name: String,
    /// What is wrong.
    pub reason: String,
}

impl TryFrom<ResourceRepr> for Resource {
    type Error = ResourceError;
    fn try_from(repr: ResourceRepr) -> Result<Resource, ResourceError> {
        if repr.capacities.contains_key(&repr.resource_type) {
            return Err(ResourceError {
                name: repr.name.to_string(),
                reason: format!(
                    "capacities.{} repeats the primary capacity",
                    repr.resource_type
                ),
            });
        }
        let mut resource = Resource::named(repr.name, repr.resource_type.clone(), repr.capacity);
        Arc::make_mut(&mut resource.capacities).extend(repr.capacities);
        resource.specification = Arc::new(ResourceSpecification {
            resource_type: repr.resource_type,
            capabilities: repr.capabilities,
        });
        resource.labels = repr.labels;
        Ok(resource)
    }
}

impl From<Resource> for ResourceRepr {
    fn from(resource: Resource) -> ResourceRepr {
        let mut capacities = Arc::unwrap_or_clone(resource.capacities);
        let capacity = capacities
            .remove(&resource.resource_type)
            .expect("the primary capacity is kept by construction");
        ResourceRepr {
            name: resource.name,
            resource_type: resource.resource_type,
            capacity,
            capacities,
            capabilities: Arc::unwrap_or_clone(resource.specification).capabilities,
            labels: resource.labels,
        }
    }
}

impl Resource {
    /// A resource with one dimension: `capacity` of `resource_type`. Fails when `name` breaks
    /// the name rule.
    pub fn new(
        name: &str,
        resource_type: ResourceType,
        capacity: ResourceCapacity,
    ) -> Result<Resource, NameError> {
        Ok(Resource::named(
            ResourceName::new(name)?,
            resource_type,
            capacity,
        ))
    }

    /// [`Resource::new`] with a name that is already checked.
    pub fn named(
        name: ResourceName,
        resource_type: ResourceType,
        capacity: ResourceCapacity,
    ) -> Resource {
        let mut capacities = BTreeMap::new();
        capacities.insert(resource_type.clone(), capacity);
        Resource {
            name,
            specification: Arc::new(ResourceSpecification::new(resource_type.clone())),
            resource_type,
            capacities: Arc::new(capacities),
            labels: Labels::new(),
        }
    }

    /// Adds (or replaces) the capacity of another resource type, making the resource
    /// multi-dimensional. Replacing the primary type's capacity is allowed.
    pub fn with_capacity(
        mut self,
        resource_type: ResourceType,
        capacity: ResourceCapacity,
    ) -> Resource {
        Arc::make_mut(&mut self.capacities).insert(resource_type, capacity);
        self
    }

    /// Replaces the specification. Its capabilities are kept; its resource type is set to the
    /// resource's primary type.
    pub fn with_specification(mut self, specification: ResourceSpecification) -> Resource {
        self.specification = Arc::new(ResourceSpecification {
            resource_type: self.resource_type.clone(),
            capabilities: specification.capabilities,
        });
        self
    }

    /// Sets a label, failing on a malformed key or value.
    pub fn with_label(mut self, key: &str, value: &str) -> Result<Resource, NameError> {
        self.labels.insert(key, value)?;
        Ok(self)
    }

    /// Replaces all labels.
    pub fn with_labels(mut self, labels: Labels) -> Resource {
        self.labels = labels;
        self
    }

    /// The unique name.
    pub fn name(&self) -> &ResourceName {
        &self.name
    }

    /// The primary type (the specification's single dimension).
    pub fn resource_type(&self) -> &ResourceType {
        &self.resource_type
    }

    /// The capacity of the primary type.
    pub fn capacity(&self) -> &ResourceCapacity {
        self.capacities
            .get(&self.resource_type)
            .expect("the primary capacity is kept by construction")
    }

    /// The capacity of one type, if the resource offers it.
    pub fn capacity_of(&self, resource_type: &ResourceType) -> Option<&ResourceCapacity> {
        self.capacities.get(resource_type)
    }

    /// Every capacity, one per type, in type order.
    pub fn capacities(&self) -> impl Iterator<Item = (&ResourceType, &ResourceCapacity)> {
        self.capacities.iter()
    }

    /// How many types the resource offers.
    pub fn dimension_count(&self) -> usize {
        self.capacities.len()
    }

    /// The capabilities.
    pub fn specification(&self) -> &ResourceSpecification {
        &self.specification
    }

    /// One capability.
    pub fn capability(&self, name: &str) -> Option<&CapabilityValue> {
        self.specification.get(name)
    }

    /// The labels.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// One label's value.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key)
    }
}

#[cfg(test)]
mod tests;
