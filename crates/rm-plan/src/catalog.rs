//! The registered resources as placement sees them: descriptions by position, the ledger's
//! handle on each one's accounting, and caches of which resources pass each requirement shape
//! and of the resources of each label value.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use crate::strategies::NodeStrategies;
use rm_model::placement::inverse_capacity;
use rm_model::{
    Constraint, Quantity, Resource, ResourceName, ResourceRequirement, ResourceType, Unit,
};

/// The most capacity types one resource may have (cores, memory, GPUs, … on one host): the
/// planner scores candidates in arrays of this size.
pub const MAX_DIMS: usize = 8;

/// The built-in resource types, each with a slot of the plain cache (see
/// [`Catalog::candidates`]).
const PLAIN_TYPES: usize = 5;

/// A slot of the plain cache: the unit that filled it, and the candidates.
type PlainEntry<S> = (Unit, Arc<[Candidate<S>]>);

/// The plain cache's slot for a requirement of a built-in type without constraints.
fn plain_slot(requirement: &ResourceRequirement) -> Option<usize> {
    if !requirement.constraints().is_empty() {
        return None;
    }
    match requirement.resource_type() {
        ResourceType::Compute => Some(0),
        ResourceType::Memory => Some(1),
        ResourceType::Storage => Some(2),
        ResourceType::Network => Some(3),
        ResourceType::Gpu => Some(4),
        _ => None,
    }
}

/// A ledger's handle on one resource's accounting: what the planner reads of it.
///
/// `free` is read once per candidate on every placement, without locks in an in-process
/// ledger; the others are read when a candidate list is built or a refusal explained.
pub trait Slot {
    /// What is free of capacity `dim`, in thousandths of its unit (zero while draining).
    fn free(&self, dim: usize) -> i64;
    /// The index of the live capacity of `resource_type`, if the resource has one.
    fn dim(&self, resource_type: &ResourceType) -> Option<usize>;
    /// What is free of `resource_type` for an explanation, and whether the capacity is
    /// draining (shrunk below what is held).
    fn explain(&self, resource_type: &ResourceType) -> Option<(Quantity, bool)>;
}

fn shape_hash(requirements: &[ResourceRequirement], group: &[usize]) -> u64 {
    // A fixed seed: the key only has to be stable within the process. Every hit is confirmed
    // by comparing shapes, so a collision costs a comparison, never a wrong answer.
    let mut hasher = foldhash::fast::FixedState::default().build_hasher();
    hash_members(group.iter().map(|&i| &requirements[i]), &mut hasher);
    hasher.finish()
}

/// Hashes what a requirement shape is made of (type, unit, constraints; not amounts).
pub(crate) fn hash_members<'r>(
    members: impl Iterator<Item = &'r ResourceRequirement>,
    hasher: &mut impl Hasher,
) {
    for requirement in members {
        requirement.resource_type().hash(hasher);
        requirement.unit().hash(hasher);
        requirement.constraints().hash(hasher);
    }
}

/// A requirement shape: each member's type, unit and constraints.
pub(crate) type Shape = Vec<(ResourceType, Unit, Vec<Constraint>)>;

/// Candidate lists by the hash of their shape; a bucket holds the shapes that share a hash.
type CandidateCache<S> = HashMap<u64, Vec<(Shape, Arc<[Candidate<S>]>)>, Fast>;

/// The catalog's maps hash with foldhash (seeded per map): these lookups sit on every
/// reservation's path.
type Fast = foldhash::fast::RandomState;

fn shape_of(requirements: &[ResourceRequirement], group: &[usize]) -> Shape {
    members_shape(group.iter().map(|&i| &requirements[i]))
}

fn shape_matches(shape: &Shape, requirements: &[ResourceRequirement], group: &[usize]) -> bool {
    shape.len() == group.len() && members_match(shape, group.iter().map(|&i| &requirements[i]))
}

/// The shape of `members`.
pub(crate) fn members_shape<'r>(members: impl Iterator<Item = &'r ResourceRequirement>) -> Shape {
    members
        .map(|r| {
            (
                r.resource_type().clone(),
                r.unit().clone(),
                r.constraints().to_vec(),
            )
        })
        .collect()
}

/// Whether `members` (as many as `shape` has) have that shape.
pub(crate) fn members_match<'r>(
    shape: &Shape,
    members: impl Iterator<Item = &'r ResourceRequirement>,
) -> bool {
    shape.iter().zip(members).all(|((t, u, c), r)| {
        r.resource_type() == t && r.unit() == u && r.constraints() == c.as_slice()
    })
}

/// The registered resources, in registration order, each with the ledger's handle on its
/// accounting (`S`), and the caches placement reads: which resources pass each requirement
/// shape, and the resources of each label value.
pub struct Catalog<S> {
    /// The ledger's handle per resource, by position (registration order, which is the global
    /// lock order of a ledger that locks resources).
    pub slots: Vec<Arc<S>>,
    /// The descriptions, by the same position as `slots`.
    pub resources: Vec<Resource>,
    by_name: HashMap<ResourceName, usize, Fast>,
    /// Positions of the resources that pass each requirement shape's type, unit and
    /// constraints; cleared whenever the catalog changes.
    candidates: RwLock<CandidateCache<S>>,
    /// The candidate lists of the plainest shapes (one requirement of a built-in type,
    /// without constraints, in the first unit asked for it), each set once until the catalog
    /// changes, so that the commonest lookups take no lock and hash nothing.
    plain: [OnceLock<PlainEntry<S>>; PLAIN_TYPES],
    /// Per label key: each value's resource positions, in order of first appearance;
    /// cleared whenever the catalog changes.
    domains: RwLock<HashMap<String, Arc<Domains>>>,
    /// What the node strategies keep between placements (the fragmentation strategy's target
    /// workload, random fit's seed, GPU clustering's records).
    pub node_strategies: NodeStrategies,
}

impl<S> Default for Catalog<S> {
    fn default() -> Catalog<S> {
        Catalog {
            slots: Vec::new(),
            resources: Vec::new(),
            by_name: HashMap::default(),
            candidates: RwLock::default(),
            plain: Default::default(),
            domains: RwLock::default(),
            node_strategies: NodeStrategies::default(),
        }
    }
}

impl<S> std::fmt::Debug for Catalog<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("resources", &self.resources.len())
            .finish_non_exhaustive()
    }
}

/// The resources of each value of one label: (value, positions in registration order).
pub type Domains = Vec<(String, Vec<usize>)>;

impl<S: Slot> Catalog<S> {
    /// The position of the resource named `name`.
    pub fn position(&self, name: &ResourceName) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// [`Catalog::position`] of a name given as text.
    pub(crate) fn position_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Registers `resource` with the ledger's handle on its accounting, at the end.
    pub fn insert(&mut self, resource: Resource, slot: Arc<S>) {
        self.by_name
            .insert(resource.name().clone(), self.slots.len());
        self.slots.push(slot);
        self.resources.push(resource);
        self.changed();
    }

    /// Removes the resource at `position` (the others keep their order) and returns it.
    pub fn remove(&mut self, position: usize) -> Resource {
        self.slots.remove(position);
        let resource = self.resources.remove(position);
        self.by_name = self
            .resources
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name().clone(), i))
            .collect();
        self.changed();
        resource
    }

    /// Takes over what the node strategies of `previous` (a catalog this one replaces) keep:
    /// the learned or given workload and random fit's seed and draws; its node tables and
    /// clustering records, which name positions, are dropped.
    pub fn carry_node_strategies<T>(&mut self, previous: &mut Catalog<T>) {
        self.node_strategies = std::mem::take(&mut previous.node_strategies);
        self.node_strategies.changed();
    }

    /// Forgets cached candidate lists; call it on every change of a description or of a
    /// slot's capacity types.
    pub fn changed(&mut self) {
        self.candidates
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.plain = Default::default();
        self.domains
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.node_strategies.changed();
    }

    /// The resources grouped by their value of label `key` (resources without it are in no
    /// domain), cached until the catalog changes.
    pub fn domains(&self, key: &str) -> Arc<Domains> {
        if let Some(found) = self
            .domains
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
        {
            return found.clone();
        }
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut domains: Domains = Vec::new();
        for (position, resource) in self.resources.iter().enumerate() {
            let Some(value) = resource.label(key) else {
                continue;
            };
            match index.get(value) {
                Some(&d) => domains[d].1.push(position),
                None => {
                    index.insert(value, domains.len());
                    domains.push((value.to_owned(), vec![position]));
                }
            }
        }
        let domains = Arc::new(domains);
        self.domains
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.to_owned(), domains.clone());
        domains
    }

    /// The resources that offer every requirement of `group` in a convertible unit and pass
    /// its hard constraints, with what placement needs to score them without locks.
    pub fn candidates(
        &self,
        requirements: &[ResourceRequirement],
        group: &[usize],
    ) -> Arc<[Candidate<S>]> {
        let plain = match group {
            [i] => plain_slot(&requirements[*i]).map(|slot| (slot, &requirements[*i])),
            _ => None,
        };
        if let Some((slot, requirement)) = plain
            && let Some(found) = self.plain_in(slot, requirement)
        {
            return found.clone();
        }
        let found = self.cached_candidates(requirements, group);
        if let Some((slot, requirement)) = plain {
            // The first unit asked for wins the slot; other units keep to the general cache.
            let _ = self.plain[slot].set((requirement.unit().clone(), found.clone()));
        }
        found
    }

    /// The candidates of one requirement when the plain cache holds them (a built-in type,
    /// no constraints, the unit that filled the slot), borrowed: no lock, no hashing, no
    /// reference count. [`Self::candidates`] fills the slot.
    pub fn plain_candidates(&self, requirement: &ResourceRequirement) -> Option<&[Candidate<S>]> {
        plain_slot(requirement)
            .and_then(|slot| self.plain_in(slot, requirement))
            .map(|found| &**found)
    }

    fn plain_in(
        &self,
        slot: usize,
        requirement: &ResourceRequirement,
    ) -> Option<&Arc<[Candidate<S>]>> {
        self.plain[slot]
            .get()
            .filter(|(unit, _)| unit == requirement.unit())
            .map(|(_, found)| found)
    }

    /// [`Self::candidates`] through the cache of every shape, by the shape's hash.
    fn cached_candidates(
        &self,
        requirements: &[ResourceRequirement],
        group: &[usize],
    ) -> Arc<[Candidate<S>]> {
        let hash = shape_hash(requirements, group);
        {
            let cache = self
                .candidates
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(bucket) = cache.get(&hash)
                && let Some((_, found)) = bucket
                    .iter()
                    .find(|(s, _)| shape_matches(s, requirements, group))
            {
                return found.clone();
            }
        }
        let found: Arc<[Candidate<S>]> = self
            .resources
            .iter()
            .enumerate()
            .filter(|(_, resource)| group.iter().all(|&i| requirements[i].admits(resource)))
            .filter_map(|(position, resource)| {
                let slot = &self.slots[position];
                let mut members = Vec::with_capacity(group.len());
                let mut units = Vec::with_capacity(group.len());
                for &i in group {
                    let requirement = &requirements[i];
                    let capacity = resource.capacity_of(requirement.resource_type())?;
                    members.push(MemberFit {
                        dim: slot.dim(requirement.resource_type())?,
                        maximum: capacity.maximum().as_milli(),
                        inverse_capacity: inverse_capacity(capacity.maximum().as_milli()),
                        same_unit: capacity.unit() == requirement.unit(),
                    });
                    units.push(capacity.unit().clone());
                }
                if members.iter().all(|m| m.same_unit) {
                    units.clear();
                    units.shrink_to_fit();
                }
                Some(Candidate::new(
                    position as u32,
                    slot.clone(),
                    members,
                    units,
                ))
            })
            .collect();
        let mut cache = self
            .candidates
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let bucket = cache.entry(hash).or_default();
        if !bucket
            .iter()
            .any(|(s, _)| shape_matches(s, requirements, group))
        {
            bucket.push((shape_of(requirements, group), found.clone()));
        }
        found
    }
}

/// What placement needs to know of one member requirement on one candidate.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemberFit {
    /// The index of the member's type among the candidate's capacities.
    pub dim: usize,
    /// The candidate's maximum of the type, in thousandths of its unit.
    pub maximum: i64,
    /// Its inverse, as placement scores use it.
    pub inverse_capacity: f64,
    /// Whether the candidate measures the type in the requirement's own unit (no conversion).
    pub same_unit: bool,
}

/// How many members a candidate keeps inline, next to its slot, so that the placement scan
/// reads one contiguous array.
const INLINE_MEMBERS: usize = 4;

/// A resource that passes a requirement shape's type, unit and constraints.
#[derive(Debug)]
pub struct Candidate<S> {
    /// Its position in the catalog (registration order).
    pub position: u32,
    /// The ledger's handle on its accounting, next to the members so that the scan reads one
    /// array.
    pub slot: Arc<S>,
    len: usize,
    inline: [MemberFit; INLINE_MEMBERS],
    /// The members, when there are more than fit inline.
    spilled: Vec<MemberFit>,
    /// The candidate's unit per member, kept only when some member needs a conversion.
    pub units: Vec<Unit>,
}

impl<S> Candidate<S> {
    fn new(position: u32, slot: Arc<S>, members: Vec<MemberFit>, units: Vec<Unit>) -> Candidate<S> {
        let mut inline = [MemberFit::default(); INLINE_MEMBERS];
        let len = members.len();
        let spilled = if len <= INLINE_MEMBERS {
            inline[..len].copy_from_slice(&members);
            Vec::new()
        } else {
            members
        };
        Candidate {
            position,
            slot,
            len,
            inline,
            spilled,
            units,
        }
    }

    /// Whether every member is measured in its requirement's own unit.
    pub fn all_same_unit(&self) -> bool {
        self.units.is_empty()
    }

    /// One entry per member of the group, in group order.
    pub fn members(&self) -> &[MemberFit] {
        if self.len <= INLINE_MEMBERS {
            &self.inline[..self.len]
        } else {
            &self.spilled
        }
    }
}
