//! Reservations: requests for resources, the holds granted for them, and their life cycle.
//!
//! A [`ReservationRequest`] is a gang of requirements granted all together or not at all. The
//! granted [`Reservation`] moves through [`ReservationState`]s
//! (`Pending → Confirmed → Released`, `Pending → Expired`, `Pending|Confirmed → Preempted`,
//! `Pending → Cancelled`) and carries a [`FencingToken`] that grows with every grant.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::clock::Timestamp;
use crate::name::{LabelKey, NameError, RequesterId, ResourceName, check_name};
use crate::quantity::Quantity;
use crate::requirement::ResourceRequirement;
use crate::resource::{Labels, Resource, ResourceType};
use crate::unit::Unit;
use crate::violation::{FieldPath, Violation};

/// How important a request is: higher wins (as Kubernetes' pod priority).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Priority(pub i32);

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Whether a request may displace lower-priority holds to make room.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PreemptionPolicy {
    /// It may preempt preemptible holds of lower priority.
    #[default]
    PreemptLowerPriority,
    /// It never preempts, whatever its priority (Kubernetes' `Never`).
    Never,
}

/// A named priority level with its preemption policy (`batch-low`, `interactive`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityClass {
    /// The class name.
    pub name: String,
    /// The priority it gives.
    pub priority: Priority,
    /// Whether its requests may preempt.
    #[serde(default)]
    pub preemption: PreemptionPolicy,
}

/// The id of a reservation: chosen by the caller (so a retry can name it) or generated.
///
/// Generated ids are 128 random bits held inline, so generating one does not allocate; they
/// print as `r-` followed by 32 hex digits, and that text parses back to the same id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReservationId(IdRepr);

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
enum IdRepr {
    Generated(u128),
    Named(Arc<str>),
}

impl std::hash::Hash for IdRepr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            // The bits alone, without the variant's tag (a generated id never equals a named
            // one): every lookup of a reservation by id hashes it.
            IdRepr::Generated(value) => state.write_u128(*value),
            IdRepr::Named(name) => name.hash(state),
        }
    }
}

impl ReservationId {
    /// A caller-chosen id, checked against the name rule (at most 253 characters).
    pub fn new(id: &str) -> Result<ReservationId, NameError> {
        if let Some(value) = parse_generated(id) {
            return Ok(ReservationId(IdRepr::Generated(value)));
        }
        check_name("reservation id", id, 253)?;
        Ok(ReservationId(IdRepr::Named(Arc::from(id))))
    }

    /// A fresh id, unique with overwhelming probability across processes and hosts: 128 bits
    /// from a per-thread generator seeded by the operating system's randomness (through the
    /// standard library's hasher keys). It does not allocate.
    pub fn generate() -> ReservationId {
        thread_local! {
            static STATE: std::cell::Cell<u64> = std::cell::Cell::new({
                let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
                hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
                hasher.finish()
            });
        }
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        // splitmix64: a bijection of its counter, so one thread never repeats a value.
        fn next(state: &std::cell::Cell<u64>) -> u64 {
            let s = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            state.set(s);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        let value = STATE.with(|state| (u128::from(next(state)) << 64) | u128::from(next(state)));
        ReservationId(IdRepr::Generated(value))
    }

    /// Whether the id was generated rather than chosen.
    pub fn is_generated(&self) -> bool {
        matches!(self.0, IdRepr::Generated(_))
    }

    /// The 128 bits of a generated id (`None` for a chosen one).
    pub fn generated_bits(&self) -> Option<u128> {
        match self.0 {
            IdRepr::Generated(bits) => Some(bits),
            IdRepr::Named(_) => None,
        }
    }

    /// The generated id of these bits: the id that prints as `r-` and their 32 hex digits.
    /// A ledger may put a locator of its own in some of the bits of a [generated](Self::generate)
    /// id, keeping the rest random (rm-reserve keeps 96 random bits).
    pub fn from_generated_bits(bits: u128) -> ReservationId {
        ReservationId(IdRepr::Generated(bits))
    }
}

fn parse_generated(id: &str) -> Option<u128> {
    let hex = id.strip_prefix("r-")?;
    if hex.len() != 32 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u128::from_str_radix(hex, 16).ok()
}

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            IdRepr::Generated(value) => write!(f, "r-{value:032x}"),
            IdRepr::Named(name) => f.write_str(name),
        }
    }
}

impl fmt::Debug for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReservationId({self})")
    }
}

impl FromStr for ReservationId {
    type Err = NameError;
    fn from_str(id: &str) -> Result<ReservationId, NameError> {
        ReservationId::new(id)
    }
}

impl Serialize for ReservationId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ReservationId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ReservationId, D::Error> {
        let id = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        ReservationId::new(&id).map_err(serde::de::Error::custom)
    }
}

/// A number that grows with every grant of a ledger, so that a holder whose lease was
/// reclaimed (expired, preempted) can be told apart from the current holder of the capacity.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct FencingToken(pub u64);

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How a ledger chooses among resources that could hold a requirement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ReservationStrategy {
    /// First fit: the first registered resource that can hold it.
    #[serde(alias = "first-fit")]
    Greedy,
    /// Least allocated: spreads load, keeping the most headroom everywhere.
    #[default]
    #[serde(alias = "least-allocated")]
    Balanced,
    /// Most allocated that still fits: packs tightly, keeping whole resources free.
    #[serde(alias = "most-allocated")]
    BinPack,
    /// Multi-dimensional alignment: prefers resources whose free capacity has the shape of
    /// the request (Tetris), for co-located requirements over several types.
    Aligned,
    /// Fragmentation gradient descent (FGD, Weng et al., USENIX ATC '23): for a pod of cores,
    /// memory and whole or fractional GPUs, the node (and, for a fraction, the GPU) whose
    /// expected GPU fragmentation for the target workload grows least; see
    /// [`fragment`](crate::fragment). Nodes are compared by the paper's score of that change
    /// (100 bands of the logistic function, finest around no change); within a band a fixed
    /// order of the nodes drawn from the ledger's placement seed decides. A pod without GPUs
    /// goes where the measure falls least, then where it strands the least free GPU.
    /// Elsewhere it scores as `bin-pack`.
    #[serde(alias = "fgd")]
    Fragmentation,
    /// A uniformly random node among those that fit (seeded by the ledger, so repeatable).
    #[serde(alias = "random")]
    RandomFit,
    /// The FGD paper's best fit: the node with the least cores and GPU left after the
    /// placement, each as a share of the largest node's (a fraction goes to the fullest GPU
    /// that fits). Elsewhere it scores as `bin-pack`.
    BestFit,
    /// The FGD paper's dot product (Tetris-style): the node (and GPU) whose free cores and
    /// GPU, as shares of its capacity, have the least dot product with the pod's demand.
    /// Elsewhere it scores as `aligned`.
    DotProduct,
    /// The FGD paper's GPU packing: a fraction first onto a GPU already in use, then onto a
    /// node already in use, and only then onto an idle node. Elsewhere it scores as
    /// `bin-pack`.
    GpuPacking,
    /// The FGD paper's GPU clustering: a pod onto a node that already runs pods of the same
    /// GPU class only (any share of one GPU is one class, whole GPUs a class per count), then
    /// of that class among others, then onto an idle node, fuller nodes first. Elsewhere it
    /// scores as `bin-pack`.
    GpuClustering,
}

impl ReservationStrategy {
    /// The strategy's name in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationStrategy::Greedy => "greedy",
            ReservationStrategy::Balanced => "balanced",
            ReservationStrategy::BinPack => "bin-pack",
            ReservationStrategy::Aligned => "aligned",
            ReservationStrategy::Fragmentation => "fragmentation",
            ReservationStrategy::RandomFit => "random-fit",
            ReservationStrategy::BestFit => "best-fit",
            ReservationStrategy::DotProduct => "dot-product",
            ReservationStrategy::GpuPacking => "gpu-packing",
            ReservationStrategy::GpuClustering => "gpu-clustering",
        }
    }

    /// Every strategy, in the order the docs list them.
    pub const ALL: [ReservationStrategy; 10] = [
        ReservationStrategy::Greedy,
        ReservationStrategy::Balanced,
        ReservationStrategy::BinPack,
        ReservationStrategy::Aligned,
        ReservationStrategy::Fragmentation,
        ReservationStrategy::RandomFit,
        ReservationStrategy::BestFit,
        ReservationStrategy::DotProduct,
        ReservationStrategy::GpuPacking,
        ReservationStrategy::GpuClustering,
    ];

    /// Whether the strategy judges whole nodes (cores, memory and GPU devices together) when
    /// a pod's parts share a node: the fragmentation strategy and the FGD paper's baselines.
    pub fn judges_nodes(self) -> bool {
        !matches!(
            self,
            ReservationStrategy::Greedy
                | ReservationStrategy::Balanced
                | ReservationStrategy::BinPack
                | ReservationStrategy::Aligned
        )
    }

    /// The built-in strategy whose per-resource score this one uses where it does not judge
    /// whole nodes (a request that is not a pod of cores, memory and GPUs on one node):
    /// `aligned` for dot product, `bin-pack` for the other node strategies, itself for the
    /// four built-in ones. Random fit is random everywhere.
    pub fn per_resource(self) -> ReservationStrategy {
        match self {
            ReservationStrategy::DotProduct => ReservationStrategy::Aligned,
            ReservationStrategy::Fragmentation
            | ReservationStrategy::BestFit
            | ReservationStrategy::GpuPacking
            | ReservationStrategy::GpuClustering => ReservationStrategy::BinPack,
            other => other,
        }
    }
}

impl fmt::Display for ReservationStrategy {
    /// The configuration name (`bin-pack`), as [`as_str`](Self::as_str).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A strategy name that is none of [`ReservationStrategy`]'s.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown strategy {name:?}: expected greedy, balanced, bin-pack, aligned, fragmentation, random-fit, best-fit, dot-product, gpu-packing or gpu-clustering (or first-fit, least-allocated, most-allocated, fgd, random)"
)]
pub struct UnknownStrategy {
    /// The name given.
    pub name: String,
}

impl FromStr for ReservationStrategy {
    type Err = UnknownStrategy;

    /// The configuration names and the aliases configuration files accept
    /// (`first-fit`, `least-allocated`, `most-allocated`, `fgd`, `random`).
    fn from_str(name: &str) -> Result<ReservationStrategy, UnknownStrategy> {
        Ok(match name {
            "greedy" | "first-fit" => ReservationStrategy::Greedy,
            "balanced" | "least-allocated" => ReservationStrategy::Balanced,
            "bin-pack" | "most-allocated" => ReservationStrategy::BinPack,
            "aligned" => ReservationStrategy::Aligned,
            "fragmentation" | "fgd" => ReservationStrategy::Fragmentation,
            "random-fit" | "random" => ReservationStrategy::RandomFit,
            "best-fit" => ReservationStrategy::BestFit,
            "dot-product" => ReservationStrategy::DotProduct,
            "gpu-packing" => ReservationStrategy::GpuPacking,
            "gpu-clustering" => ReservationStrategy::GpuClustering,
            _ => {
                return Err(UnknownStrategy {
                    name: name.to_owned(),
                });
            }
        })
    }
}

/// A request for resources: a gang of requirements granted all together or not at all.
///
/// ```
/// use std::time::Duration;
/// use rm_model::{Priority, RequesterId, ReservationRequest, ReservationStrategy,
///     ResourceRequirement, ResourceType, Unit};
///
/// let request = ReservationRequest::new(
///     RequesterId::new("task-1")?,
///     vec![
///         ResourceRequirement::new(ResourceType::Compute, 4, Unit::CORES),
///         ResourceRequirement::new(ResourceType::Memory, 16, Unit::GIB),
///     ],
/// )
/// .with_strategy(ReservationStrategy::BinPack)
/// .with_priority(Priority(10))
/// .with_ttl(Duration::from_secs(30));
/// assert!(request.violations().is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReservationRequest {
    /// The id to use; a retry with the same id and the same request returns the same
    /// reservation. Generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ReservationId>,
    /// Who asks.
    pub requester: RequesterId,
    /// How important it is.
    #[serde(default)]
    pub priority: Priority,
    /// What is needed, all or nothing.
    pub requirements: Vec<ResourceRequirement>,
    /// How resources are chosen.
    #[serde(default)]
    pub strategy: ReservationStrategy,
    /// How long the hold stays pending before it expires unless confirmed; the ledger's
    /// default when absent.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::clock::opt_duration_ms"
    )]
    pub ttl: Option<Duration>,
    /// Labels of the request, which other requests' affinity selectors match.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// Whether a higher-priority request may preempt the hold.
    #[serde(default = "yes")]
    pub preemptible: bool,
    /// When set, every requirement lands on resources that carry the same value of this label:
    /// co-location by a shared label rather than on one resource (with `node`, a pod's CPU and
    /// memory on its machine and each GPU on one of that machine's devices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colocate_by: Option<LabelKey>,
    /// When set, the hold is granted already confirmed: no pending phase, no TTL, nothing to
    /// confirm. For callers that start using the capacity as soon as it is granted (a
    /// direct allocation, as Slurm's `salloc` or an Airflow pool slot gives); it saves the
    /// confirm's round trip, which on a shared ledger is a commit. `ttl` must then be
    /// absent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub confirm_on_grant: bool,
}

fn yes() -> bool {
    true
}

/// Cloning is field by field; `clone_from` reuses the target's requirement list, so a
/// ledger that keeps a copy of each named request can refill one without allocating.
impl Clone for ReservationRequest {
    fn clone(&self) -> ReservationRequest {
        ReservationRequest {
            id: self.id.clone(),
            requester: self.requester.clone(),
            priority: self.priority,
            requirements: self.requirements.clone(),
            strategy: self.strategy,
            ttl: self.ttl,
            labels: self.labels.clone(),
            preemptible: self.preemptible,
            colocate_by: self.colocate_by.clone(),
            confirm_on_grant: self.confirm_on_grant,
        }
    }

    fn clone_from(&mut self, source: &ReservationRequest) {
        // Destructured, so that a new field is a compile error here rather than forgotten.
        let ReservationRequest {
            id,
            requester,
            priority,
            requirements,
            strategy,
            ttl,
            labels,
            preemptible,
            colocate_by,
            confirm_on_grant,
        } = source;
        self.id.clone_from(id);
        self.requester.clone_from(requester);
        self.priority = *priority;
        self.requirements.clone_from(requirements);
        self.strategy = *strategy;
        self.ttl = *ttl;
        self.labels.clone_from(labels);
        self.preemptible = *preemptible;
        self.colocate_by.clone_from(colocate_by);
        self.confirm_on_grant = *confirm_on_grant;
    }
}

impl ReservationRequest {
    /// A request by `requester` for `requirements`, with default priority, the balanced
    /// strategy, the ledger's default TTL, no labels, preemptible.
    pub fn new(
        requester: RequesterId,
        requirements: Vec<ResourceRequirement>,
    ) -> ReservationRequest {
        ReservationRequest {
            id: None,
            requester,
            priority: Priority::default(),
            requirements,
            strategy: ReservationStrategy::default(),
            ttl: None,
            labels: Labels::new(),
            preemptible: true,
            colocate_by: None,
            confirm_on_grant: false,
        }
    }

    /// Places every requirement on resources sharing one value of `label` (see
    /// [`ReservationRequest::colocate_by`]).
    pub fn with_colocation_label(mut self, label: LabelKey) -> ReservationRequest {
        self.colocate_by = Some(label);
        self
    }

    /// Whether `resources` (where the requirements landed) satisfy
    /// [`ReservationRequest::colocate_by`]: all carry the label with one value. True when
    /// the request sets no label.
    pub fn same_domain<'a>(&self, mut resources: impl Iterator<Item = &'a Resource>) -> bool {
        let Some(key) = &self.colocate_by else {
            return true;
        };
        let Some(first) = resources.next().map(|r| r.label(key.as_str())) else {
            return true;
        };
        first.is_some() && resources.all(|r| r.label(key.as_str()) == first)
    }

    /// Names the reservation, so that retries are idempotent.
    pub fn with_id(mut self, id: ReservationId) -> ReservationRequest {
        self.id = Some(id);
        self
    }

    /// Sets the priority.
    pub fn with_priority(mut self, priority: Priority) -> ReservationRequest {
        self.priority = priority;
        self
    }

    /// Sets the placement strategy.
    pub fn with_strategy(mut self, strategy: ReservationStrategy) -> ReservationRequest {
        self.strategy = strategy;
        self
    }

    /// Sets the pending TTL.
    pub fn with_ttl(mut self, ttl: Duration) -> ReservationRequest {
        self.ttl = Some(ttl);
        self
    }

    /// Sets the request's labels.
    pub fn with_labels(mut self, labels: Labels) -> ReservationRequest {
        self.labels = labels;
        self
    }

    /// Sets whether the hold may be preempted.
    pub fn preemptible(mut self, preemptible: bool) -> ReservationRequest {
        self.preemptible = preemptible;
        self
    }

    /// Sets whether the hold is granted already confirmed (see
    /// [`ReservationRequest::confirm_on_grant`]).
    pub fn confirm_on_grant(mut self, confirm_on_grant: bool) -> ReservationRequest {
        self.confirm_on_grant = confirm_on_grant;
        self
    }

    /// Whether `other` asks for the same thing, ignoring the id: the test for an idempotent
    /// retry. Every field but the id is compared (a field added later must be compared too:
    /// the destructuring below does not compile until it is).
    pub fn same_request_as(&self, other: &ReservationRequest) -> bool {
        let ReservationRequest {
            id: _,
            requester,
            priority,
            requirements,
            strategy,
            ttl,
            labels,
            preemptible,
            colocate_by,
            confirm_on_grant,
        } = self;
        *requester == other.requester
            && *priority == other.priority
            && *requirements == other.requirements
            && *strategy == other.strategy
            && *ttl == other.ttl
            && *labels == other.labels
            && *preemptible == other.preemptible
            && *colocate_by == other.colocate_by
            && *confirm_on_grant == other.confirm_on_grant
    }

    /// The requirements grouped for placement: those sharing a co-location group together,
    /// every other one alone; groups in order of their first requirement, members in order.
    pub fn placement_groups(&self) -> Vec<Vec<usize>> {
        self.each_placement_group()
            .map(|members| members.collect())
            .collect()
    }

    /// [`placement_groups`](Self::placement_groups) without allocating: each group as an
    /// iterator of its members' indices (a ledger plans every request with it).
    pub fn each_placement_group(
        &self,
    ) -> impl Iterator<Item = impl Iterator<Item = usize> + '_> + '_ {
        let requirements = &self.requirements;
        requirements
            .iter()
            .enumerate()
            .filter(|(i, requirement)| {
                // A group starts at its first member.
                requirement.colocation().is_none_or(|group| {
                    requirements[..*i]
                        .iter()
                        .all(|earlier| earlier.colocation() != Some(group))
                })
            })
            .map(move |(i, requirement)| {
                let group = requirement.colocation();
                let later = if group.is_some() {
                    i + 1..requirements.len()
                } else {
                    0..0
                };
                std::iter::once(i)
                    .chain(later.filter(move |&k| requirements[k].colocation() == group))
            })
    }

    /// Structural problems with their field paths: no requirements, a zero TTL, and each
    /// requirement's own (see [`ResourceRequirement::violations`]).
    pub fn violations(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        if self.requirements.is_empty() {
            out.push(Violation::new("requirements", "must not be empty"));
        }
        if self.ttl == Some(Duration::ZERO) {
            out.push(Violation::new("ttl", "must be positive"));
        } else if self.confirm_on_grant && self.ttl.is_some() {
            out.push(Violation::new(
                "ttl",
                "must be absent when the hold is confirmed on grant (it has no pending phase)",
            ));
        }
        let requirements = FieldPath::root("requirements");
        for (i, requirement) in self.requirements.iter().enumerate() {
            requirement.violations(&requirements.index(i), &mut out);
        }
        out
    }
}

/// One granted piece of a reservation: an amount of one type on one resource.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReservationItem {
    /// Which requirement of the request this item grants (its index).
    pub requirement: usize,
    /// Where.
    pub resource: ResourceName,
    /// Which of the resource's capacities.
    pub resource_type: ResourceType,
    /// How much, in the resource's unit.
    pub amount: Quantity,
    /// The resource's unit.
    pub unit: Unit,
    /// For an elastic requirement, the least the item may be shrunk to, in the resource's
    /// unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<Quantity>,
}

/// Where a reservation is in its life cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReservationState {
    /// Granted and held, expiring at the end of its TTL unless confirmed.
    Pending,
    /// Confirmed by the holder: held until released or preempted.
    Confirmed,
    /// Given back by the holder after use.
    Released,
    /// Not confirmed within its TTL; the capacity went back.
    Expired,
    /// Taken away for a higher-priority request.
    Preempted,
    /// Withdrawn before confirmation.
    Cancelled,
}

/// A state change that the life cycle does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("move a reservation from {from:?} to {to:?}: the life cycle does not allow it")]
pub struct TransitionError {
    /// The current state.
    pub from: ReservationState,
    /// The state asked for.
    pub to: ReservationState,
}

impl ReservationState {
    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationState::Pending => "pending",
            ReservationState::Confirmed => "confirmed",
            ReservationState::Released => "released",
            ReservationState::Expired => "expired",
            ReservationState::Preempted => "preempted",
            ReservationState::Cancelled => "cancelled",
        }
    }

    /// Whether the reservation holds capacity in this state.
    pub fn holds_capacity(self) -> bool {
        matches!(
            self,
            ReservationState::Pending | ReservationState::Confirmed
        )
    }

    /// Whether no further transition is possible.
    pub fn is_terminal(self) -> bool {
        !self.holds_capacity()
    }

    /// Whether the life cycle allows moving to `next`.
    pub fn can_transition_to(self, next: ReservationState) -> bool {
        use ReservationState::*;
        matches!(
            (self, next),
            (Pending, Confirmed | Expired | Preempted | Cancelled)
                | (Confirmed, Released | Preempted)
        )
    }

    /// `next` when the life cycle allows it, an error otherwise.
    pub fn transition(self, next: ReservationState) -> Result<ReservationState, TransitionError> {
        if self.can_transition_to(next) {
            Ok(next)
        } else {
            Err(TransitionError {
                from: self,
                to: next,
            })
        }
    }
}

impl fmt::Display for ReservationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The caller operations that end a reservation and give its capacity back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ending {
    /// Release after use: confirmed to released.
    Release,
    /// Withdraw before confirmation: pending to cancelled.
    Cancel,
    /// Take away for a higher-priority request: pending or confirmed to preempted.
    Preempt,
}

impl Ending {
    /// The operation's name, for errors.
    pub fn operation(self) -> &'static str {
        match self {
            Ending::Release => "release",
            Ending::Cancel => "cancel",
            Ending::Preempt => "preempt",
        }
    }

    /// The states it applies to.
    pub fn from(self) -> &'static [ReservationState] {
        match self {
            Ending::Release => &[ReservationState::Confirmed],
            Ending::Cancel => &[ReservationState::Pending],
            Ending::Preempt => &[ReservationState::Pending, ReservationState::Confirmed],
        }
    }

    /// The state it ends in; being there already makes the operation an idempotent success.
    pub fn to(self) -> ReservationState {
        match self {
            Ending::Release => ReservationState::Released,
            Ending::Cancel => ReservationState::Cancelled,
            Ending::Preempt => ReservationState::Preempted,
        }
    }
}

/// A granted reservation as a ledger reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    /// The id.
    pub id: ReservationId,
    /// Who holds it.
    pub requester: RequesterId,
    /// Its priority.
    pub priority: Priority,
    /// Where it is in its life cycle.
    pub state: ReservationState,
    /// What was granted, one item per requirement, in requirement order. Shared: cloning a
    /// reservation does not copy its items.
    pub items: Arc<[ReservationItem]>,
    /// The grant's fencing token.
    pub fencing_token: FencingToken,
    /// When it was granted, by the ledger's clock.
    pub created_at: Timestamp,
    /// When it last changed state or was renewed, by the ledger's clock.
    pub updated_at: Timestamp,
    /// When it expires while pending, by the ledger's clock.
    pub expires_at: Option<Timestamp>,
    /// The request's labels.
    pub labels: Labels,
    /// Whether it may be preempted.
    pub preemptible: bool,
}

impl Reservation {
    /// Whether it holds capacity now.
    pub fn is_active(&self) -> bool {
        self.state.holds_capacity()
    }
}

#[cfg(test)]
mod tests;
