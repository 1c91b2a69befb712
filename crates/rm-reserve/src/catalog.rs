//! The registered resources: one [`Slot`] per resource with its accounting behind a mutex and
//! atomic counters of what is free, plus a cache of which resources pass each requirement
//! shape's constraints.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use rm_model::placement::inverse_capacity;
use rm_model::{
    CapacityUsage, Constraint, Quantity, Resource, ResourceCapacity, ResourceName,
    ResourceRequirement, ResourceType, Unit,
};

/// The most capacity types one resource may have (cores, memory, GPUs, … on one host).
pub(crate) const MAX_DIMS: usize = 8;

/// What `free` is set to while a capacity is closed (removed or unregistered): far below any
/// amount, so no lease or grant can take from it, and far above `i64::MIN`, so giving back
/// cannot overflow.
pub(crate) const CLOSED: i64 = i64::MIN / 4;

/// Locks a mutex, recovering from poisoning: every mutation in this crate is computed before
/// it is applied, so a panic elsewhere cannot leave the guarded state half-changed.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The accounting of one capacity, in thousandths of its unit, kept under the slot's lock.
/// What is free lives beside it in the slot's atomic counter, which leases change without
/// the lock; whatever is neither free nor accounted here is leased.
#[derive(Clone, Debug)]
pub(crate) struct DimState {
    pub(crate) resource_type: ResourceType,
    pub(crate) unit: Unit,
    pub(crate) maximum: i64,
    pub(crate) external: i64,
    pub(crate) pending: i64,
    pub(crate) confirmed: i64,
    /// Removed by an update; kept so that indices stay stable.
    pub(crate) removed: bool,
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
            removed: false,
        }
    }

    /// What is free with nothing pending, confirmed or leased.
    pub(crate) fn initial_free(&self) -> i64 {
        self.maximum.saturating_sub(self.external)
    }

    pub(crate) fn is_held(&self) -> bool {
        self.pending != 0 || self.confirmed != 0
    }

    /// What leases hold, given the free counter.
    pub(crate) fn leased(&self, free: i64) -> i64 {
        let leased = i128::from(self.maximum)
            - i128::from(self.external)
            - i128::from(self.pending)
            - i128::from(self.confirmed)
            - i128::from(free);
        leased.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    pub(crate) fn usage(&self, resource: &ResourceName, free: i64) -> CapacityUsage {
        CapacityUsage {
            resource: resource.clone(),
            resource_type: self.resource_type.clone(),
            unit: self.unit.clone(),
            capacity: Quantity::from_milli(self.maximum),
            external: Quantity::from_milli(self.external),
            pending: Quantity::from_milli(self.pending),
            confirmed: Quantity::from_milli(self.confirmed),
            leased: Quantity::from_milli(self.leased(free)),
            free: Quantity::from_milli(free.max(0)),
            draining: free < 0,
        }
    }
}

/// What a slot's mutex guards.
#[derive(Debug)]
pub(crate) struct SlotState {
    /// One entry per capacity; indices are stable (removed types stay, marked), and index `d`
    /// is the slot's free counter `d`.
    pub(crate) dims: Vec<DimState>,
    /// How many active reservations hold capacity here.
    pub(crate) holders: usize,
}

impl SlotState {
    pub(crate) fn dim(&self, resource_type: &ResourceType) -> Option<usize> {
        self.dims
            .iter()
            .position(|d| !d.removed && &d.resource_type == resource_type)
    }
}

/// One registered resource.
///
/// Slots are kept in registration order and never reordered (removal keeps the order of the
/// rest): that order is the global lock order.
#[derive(Debug)]
pub(crate) struct Slot {
    /// What is free per capacity (thousandths of its unit): the one place a grant or lease
    /// takes capacity from, by compare-and-swap, so leases need no lock. Negative while
    /// draining.
    free: [AtomicI64; MAX_DIMS],
    pub(crate) state: Mutex<SlotState>,
}

impl Slot {
    /// A slot for `resource`, or `None` when it has more than [`MAX_DIMS`] capacities.
    pub(crate) fn new(resource: &Resource) -> Option<Slot> {
        let dims: Vec<DimState> = resource
            .capacities()
            .map(|(resource_type, capacity)| DimState::from_capacity(resource_type, capacity))
            .collect();
        if dims.len() > MAX_DIMS {
            return None;
        }
        let slot = Slot {
            free: Default::default(),
            state: Mutex::new(SlotState { dims, holders: 0 }),
        };
        for (d, dim) in lock(&slot.state).dims.iter().enumerate() {
            slot.free[d].store(dim.initial_free(), Ordering::Release);
        }
        Some(slot)
    }

    /// What is free of capacity `d` (zero while draining).
    pub(crate) fn free(&self, d: usize) -> i64 {
        self.raw_free(d).max(0)
    }

    /// The free counter of capacity `d`, negative while draining.
    pub(crate) fn raw_free(&self, d: usize) -> i64 {
        self.free[d].load(Ordering::Acquire)
    }

    /// Takes `amount` of capacity `d` if that much is free.
    pub(crate) fn take(&self, d: usize, amount: i64) -> bool {
        self.free[d]
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |free| {
                (free >= amount).then(|| free - amount)
            })
            .is_ok()
    }

    /// Gives back `amount` of capacity `d` (or changes its size by `amount`).
    pub(crate) fn give(&self, d: usize, amount: i64) {
        self.free[d].fetch_add(amount, Ordering::AcqRel);
    }

    /// Closes capacity `d` to new takers and returns what was free.
    pub(crate) fn close(&self, d: usize) -> i64 {
        self.free[d].swap(CLOSED, Ordering::AcqRel)
    }

    /// Reopens a capacity closed with `free` free.
    pub(crate) fn reopen(&self, d: usize, free: i64) {
        self.free[d].store(free, Ordering::Release);
    }

    /// The usage of every live capacity, from the locked state.
    pub(crate) fn usage(&self, state: &SlotState, name: &ResourceName) -> Vec<CapacityUsage> {
        let mut usage = state
            .dims
            .iter()
            .enumerate()
            .filter(|(_, dim)| !dim.removed)
            .map(|(d, dim)| dim.usage(name, self.raw_free(d)))
            .collect::<Vec<_>>();
        // Types added by an update sit at the end of `dims`; report in type order.
        usage.sort_by(|a, b| a.resource_type.cmp(&b.resource_type));
        usage
    }
}

fn shape_hash(requirements: &[ResourceRequirement], group: &[usize]) -> u64 {
    // A fixed seed: the key only has to be stable within the process. Every hit is confirmed
    // by comparing shapes, so a collision costs a comparison, never a wrong answer.
    let mut hasher = foldhash::fast::FixedState::default().build_hasher();
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
type CandidateCache = HashMap<u64, Vec<(Shape, Arc<[Candidate]>)>, Fast>;

/// The catalog's maps hash with foldhash (seeded per map): these lookups sit on every
/// reservation's path.
type Fast = foldhash::fast::RandomState;

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
    pub(crate) by_name: HashMap<ResourceName, usize, Fast>,
    /// Positions of the resources that pass each requirement shape's type, unit and
    /// constraints; cleared whenever the catalog changes.
    candidates: RwLock<CandidateCache>,
    /// Per label key: each value's resource positions, in order of first appearance;
    /// cleared whenever the catalog changes.
    domains: RwLock<HashMap<String, Arc<Domains>>>,
}

/// The resources of each value of one label: (value, positions in registration order).
pub(crate) type Domains = Vec<(String, Vec<usize>)>;

impl Catalog {
    pub(crate) fn position(&self, name: &ResourceName) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Registers `resource`; `false` when it has too many capacity types.
    pub(crate) fn insert(&mut self, resource: Resource) -> bool {
        let Some(slot) = Slot::new(&resource) else {
            return false;
        };
        let slot = Arc::new(slot);
        self.by_name
            .insert(resource.name().clone(), self.slots.len());
        self.slots.push(slot);
        self.resources.push(resource);
        self.changed();
        true
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
        self.domains
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The resources grouped by their value of label `key` (resources without it are in no
    /// domain), cached until the catalog changes.
    pub(crate) fn domains(&self, key: &str) -> Arc<Domains> {
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
                let state = lock(&slot.state);
                let mut members = Vec::with_capacity(group.len());
                let mut units = Vec::with_capacity(group.len());
                for &i in group {
                    let requirement = &requirements[i];
                    let capacity = resource.capacity_of(requirement.resource_type())?;
                    members.push(MemberFit {
                        dim: state.dim(requirement.resource_type())?,
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
pub(crate) struct MemberFit {
    /// The index of the member's type among the candidate's capacities.
    pub(crate) dim: usize,
    /// The candidate's maximum of the type, in thousandths of its unit.
    pub(crate) maximum: i64,
    /// Its inverse, as placement scores use it.
    pub(crate) inverse_capacity: f64,
    /// Whether the candidate measures the type in the requirement's own unit (no conversion).
    pub(crate) same_unit: bool,
}

/// How many members a candidate keeps inline, next to its slot, so that the placement scan
/// reads one contiguous array.
const INLINE_MEMBERS: usize = 4;

/// A resource that passes a requirement shape's type, unit and constraints.
#[derive(Debug)]
pub(crate) struct Candidate {
    /// Its position in the catalog (registration order).
    pub(crate) position: u32,
    pub(crate) slot: Arc<Slot>,
    len: usize,
    inline: [MemberFit; INLINE_MEMBERS],
    /// The members, when there are more than fit inline.
    spilled: Vec<MemberFit>,
    /// The candidate's unit per member, kept only when some member needs a conversion.
    pub(crate) units: Vec<Unit>,
}

impl Candidate {
    fn new(position: u32, slot: Arc<Slot>, members: Vec<MemberFit>, units: Vec<Unit>) -> Candidate {
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
    pub(crate) fn all_same_unit(&self) -> bool {
        self.units.is_empty()
    }

    /// One entry per member of the group, in group order.
    pub(crate) fn members(&self) -> &[MemberFit] {
        if self.len <= INLINE_MEMBERS {
            &self.inline[..self.len]
        } else {
            &self.spilled
        }
    }
}
