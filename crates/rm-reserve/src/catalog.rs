//! The registered resources: one [`Slot`] per resource with its accounting behind a mutex and
//! lock-free hints of what is free, plus a cache of which resources pass each requirement
//! shape's constraints.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use rm_model::{
    CapacityUsage, Constraint, Quantity, Resource, ResourceCapacity, ResourceName,
    ResourceRequirement, ResourceType, Unit,
};

/// How many dimensions of a resource get lock-free hints; further ones are read under the lock.
pub(crate) const HINTED_DIMS: usize = 4;

/// Locks a mutex, recovering from poisoning: every mutation in this crate is computed before
/// it is applied, so a panic elsewhere cannot leave the guarded state half-changed.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The accounting of one capacity, in thousandths of its unit.
#[derive(Clone, Debug)]
pub(crate) struct DimState {
    pub(crate) resource_type: ResourceType,
    pub(crate) unit: Unit,
    pub(crate) maximum: i64,
    pub(crate) external: i64,
    pub(crate) pending: i64,
    pub(crate) confirmed: i64,
}

impl DimState {
    pub(crate) fn from_capacity(
        resource_type: &ResourceType,
        capacity: &ResourceCapacity,
    ) -> DimState {
        DimState {
            resource_type: resource_type.clone(),
            unit: capacity.unit().clone(),
            maximum: capacity.maximum().as_milli(),
            external: capacity.current().as_milli(),
            pending: 0,
            confirmed: 0,
        }
    }

    fn used(&self) -> i128 {
        i128::from(self.external) + i128::from(self.pending) + i128::from(self.confirmed)
    }

    /// What is free for new grants: zero while draining.
    pub(crate) fn free(&self) -> i64 {
        let free = i128::from(self.maximum) - self.used();
        free.clamp(0, i128::from(i64::MAX)) as i64
    }

    pub(crate) fn is_held(&self) -> bool {
        self.pending != 0 || self.confirmed != 0
    }

    pub(crate) fn usage(&self, resource: &ResourceName) -> CapacityUsage {
        CapacityUsage {
            resource: resource.clone(),
            resource_type: self.resource_type.clone(),
            unit: self.unit.clone(),
            capacity: Quantity::from_milli(self.maximum),
            external: Quantity::from_milli(self.external),
            pending: Quantity::from_milli(self.pending),
            confirmed: Quantity::from_milli(self.confirmed),
            free: Quantity::from_milli(self.free()),
            draining: self.used() > i128::from(self.maximum),
        }
    }
}

/// What a slot's mutex guards.
#[derive(Debug)]
pub(crate) struct SlotState {
    /// One entry per capacity, in the resource's type order.
    pub(crate) dims: Vec<DimState>,
    /// How many active reservations hold capacity here.
    pub(crate) holders: usize,
}

impl SlotState {
    pub(crate) fn dim(&self, resource_type: &ResourceType) -> Option<usize> {
        self.dims
            .iter()
            .position(|d| &d.resource_type == resource_type)
    }
}

/// One registered resource.
#[derive(Debug)]
///
/// Slots are kept in registration order and never reordered (removal keeps the order of the
/// rest): that order is the global lock order.
pub(crate) struct Slot {
    /// What is free per hinted dimension, written under the lock after every change, read
    /// without it by placement. Only a hint: every grant re-checks under the lock.
    hints: [AtomicI64; HINTED_DIMS],
    /// The types of the hinted dimensions, fixed at registration (an update that changes the
    /// set of types leaves hints stale, which only costs a retry).
    hint_types: Vec<ResourceType>,
    pub(crate) state: Mutex<SlotState>,
}

impl Slot {
    fn new(resource: &Resource) -> Slot {
        let dims: Vec<DimState> = resource
            .capacities()
            .map(|(resource_type, capacity)| DimState::from_capacity(resource_type, capacity))
            .collect();
        let slot = Slot {
            hints: Default::default(),
            hint_types: dims
                .iter()
                .take(HINTED_DIMS)
                .map(|d| d.resource_type.clone())
                .collect(),
            state: Mutex::new(SlotState { dims, holders: 0 }),
        };
        slot.refresh_hints(&lock(&slot.state));
        slot
    }

    /// Writes the hints from the locked state.
    pub(crate) fn refresh_hints(&self, state: &SlotState) {
        for (i, resource_type) in self.hint_types.iter().enumerate() {
            let free = state.dim(resource_type).map_or(0, |d| state.dims[d].free());
            self.hints[i].store(free, Ordering::Release);
        }
    }

    /// The hint slot of a type, or `None` when the type is not hinted here.
    pub(crate) fn hint_index(&self, resource_type: &ResourceType) -> Option<usize> {
        self.hint_types.iter().position(|t| t == resource_type)
    }

    /// What is free of a type: the hint when there is one, otherwise read under the lock.
    pub(crate) fn free(&self, hint: Option<usize>, resource_type: &ResourceType) -> i64 {
        match hint {
            Some(i) => self.hints[i].load(Ordering::Acquire),
            None => {
                let state = lock(&self.state);
                state.dim(resource_type).map_or(0, |d| state.dims[d].free())
            }
        }
    }
}

/// A requirement as the candidate cache sees it: what decides which resources pass.
fn shape_hash(requirements: &[ResourceRequirement], group: &[usize]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for &i in group {
        let requirement = &requirements[i];
        requirement.resource_type().hash(&mut hasher);
        requirement.unit().hash(&mut hasher);
        requirement.constraints().hash(&mut hasher);
    }
    hasher.finish()
}

type Shape = Vec<(ResourceType, Unit, Vec<Constraint>)>;

/// Candidate lists by the hash of their shape; a bucket holds the shapes that share a hash.
type CandidateCache = HashMap<u64, Vec<(Shape, Arc<[Candidate]>)>>;

fn shape_of(requirements: &[ResourceRequirement], group: &[usize]) -> Shape {
    group
        .iter()
        .map(|&i| {
            let r = &requirements[i];
            (
                r.resource_type().clone(),
                r.unit().clone(),
                r.constraints().to_vec(),
            )
        })
        .collect()
}

fn shape_matches(shape: &Shape, requirements: &[ResourceRequirement], group: &[usize]) -> bool {
    shape.len() == group.len()
        && shape.iter().zip(group).all(|((t, u, c), &i)| {
            let r = &requirements[i];
            r.resource_type() == t && r.unit() == u && r.constraints() == c.as_slice()
        })
}

/// The registered resources, in registration order.
#[derive(Default)]
pub(crate) struct Catalog {
    pub(crate) slots: Vec<Arc<Slot>>,
    /// The descriptions, by the same position as `slots`.
    pub(crate) resources: Vec<Resource>,
    pub(crate) by_name: HashMap<ResourceName, usize>,
    /// Positions of the resources that pass each requirement shape's type, unit and
    /// constraints; cleared whenever the catalog changes.
    candidates: RwLock<CandidateCache>,
}

impl Catalog {
    pub(crate) fn position(&self, name: &ResourceName) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub(crate) fn insert(&mut self, resource: Resource) {
        let slot = Arc::new(Slot::new(&resource));
        self.by_name
            .insert(resource.name().clone(), self.slots.len());
        self.slots.push(slot);
        self.resources.push(resource);
        self.changed();
    }

    pub(crate) fn remove(&mut self, position: usize) -> Resource {
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

    /// Forgets cached candidate lists; called on every change of the catalog.
    pub(crate) fn changed(&mut self) {
        self.candidates
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The resources that offer every requirement of `group` in a convertible unit and pass
    /// its hard constraints, with what placement needs to score them without locks.
    pub(crate) fn candidates(
        &self,
        requirements: &[ResourceRequirement],
        group: &[usize],
    ) -> Arc<[Candidate]> {
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
        let found: Arc<[Candidate]> = self
            .resources
            .iter()
            .enumerate()
            .filter(|(_, resource)| group.iter().all(|&i| requirements[i].admits(resource)))
            .filter_map(|(position, resource)| {
                let slot = &self.slots[position];
                let members = group
                    .iter()
                    .map(|&i| {
                        let requirement = &requirements[i];
                        let capacity = resource.capacity_of(requirement.resource_type())?;
                        Some(MemberFit {
                            hint: slot.hint_index(requirement.resource_type()),
                            maximum: capacity.maximum().as_milli(),
                            unit: capacity.unit().clone(),
                        })
                    })
                    .collect::<Option<Vec<_>>>()?;
                Some(Candidate {
                    position: position as u32,
                    slot: slot.clone(),
                    members,
                })
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
#[derive(Debug)]
pub(crate) struct MemberFit {
    /// The hint slot of the member's type on the candidate.
    pub(crate) hint: Option<usize>,
    /// The candidate's maximum of the type, in thousandths of `unit`.
    pub(crate) maximum: i64,
    /// The candidate's unit for the type.
    pub(crate) unit: Unit,
}

/// A resource that passes a requirement shape's type, unit and constraints.
#[derive(Debug)]
pub(crate) struct Candidate {
    /// Its position in the catalog (registration order).
    pub(crate) position: u32,
    pub(crate) slot: Arc<Slot>,
    /// One entry per member of the group, in group order.
    pub(crate) members: Vec<MemberFit>,
}
