//! Node strategies: placement that judges a whole node (its cores, memory and GPU devices
//! together) for a pod whose parts share a node: fragmentation gradient descent and the FGD
//! paper's baselines (random fit, best fit, dot product, GPU packing, GPU clustering).
//!
//! A node is a domain of the request's co-location label: one resource holding cores and
//! memory (the host) and any number of GPU devices (resources of at most one device each).
//! For each request shape and label the catalog keeps a [`NodeTable`] of its nodes, so a
//! placement reads each node's free counters once and scores it without further locks or
//! allocation (the tables, the workload and the admissions are read under read locks).
//! Requests of another shape (pooled GPUs, affinity, preferences, several hosts on one node)
//! are planned by the generic planner, with the strategy's per-resource score
//! ([`ReservationStrategy::per_resource`]).

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock};

use rm_model::fragment::{NodeFree, PodShape, WHOLE_GPU, Workload};
use rm_model::placement::{RawFit, inverse_capacity, strategy_score};
use rm_model::{ReservationRequest, ReservationStrategy, ResourceType, Unit};
use smallvec::SmallVec;

use crate::catalog::{Catalog, Shape, Slot, hash_members, members_match, members_shape};
use crate::placement::{Placement, Small};
use crate::strategies::Tags;
use crate::table::{Admission, Device, MAX_DEVICES, Node, NodeTable, mix};

/// What a node state was judged in this placement: its score before the node's rank and the
/// devices it would take, or `None` when the pod does not fit it.
type Judged = Option<(i128, Choice)>;

thread_local! {
    /// The node states already judged in this placement (kept per thread so that a placement
    /// does not allocate).
    static SEEN: std::cell::RefCell<std::collections::HashMap<u64, Judged, Premixed>> =
        std::cell::RefCell::default();
}

/// A hasher for keys that are already well mixed: it passes them through.
#[derive(Clone, Copy, Default)]
struct Premixed;

impl std::hash::BuildHasher for Premixed {
    type Hasher = PassThrough;
    fn build_hasher(&self) -> PassThrough {
        PassThrough(0)
    }
}

/// The hasher of [`Premixed`].
struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// How a request is laid out over its requirements.
struct Layout {
    host: SmallVec<[usize; 2]>,
    gpus: SmallVec<[usize; 8]>,
}

fn layout(request: &ReservationRequest) -> Option<Layout> {
    let mut out = Layout {
        host: SmallVec::new(),
        gpus: SmallVec::new(),
    };
    for (i, requirement) in request.requirements.iter().enumerate() {
        let unit = requirement.unit();
        match requirement.resource_type() {
            ResourceType::Compute if *unit == Unit::CORES => out.host.push(i),
            ResourceType::Memory if *unit == Unit::BYTES => out.host.push(i),
            ResourceType::Gpu if *unit == Unit::DEVICES && requirement.colocation().is_none() => {
                out.gpus.push(i)
            }
            _ => return None,
        }
    }
    // Cores and memory are one placement group: one requirement, or all in one co-location
    // group.
    if out.host.len() > 1 {
        let group = request.requirements[out.host[0]].colocation()?;
        if out.host[1..]
            .iter()
            .any(|&i| request.requirements[i].colocation() != Some(group))
        {
            return None;
        }
    }
    if out.host.len() > 2 || out.gpus.len() > MAX_DEVICES {
        return None;
    }
    Some(out)
}

/// The table key of `request` on `label`: its requirements' shape (not amounts), hashed
/// without building it.
fn hash_of(label: &str, request: &ReservationRequest) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut hasher = foldhash::fast::FixedState::default().build_hasher();
    label.hash(&mut hasher);
    hash_members(request.requirements.iter(), &mut hasher);
    hasher.finish()
}

/// Whether `table` was built for `request`'s shape on `label`.
fn table_matches(table: &NodeTable, label: &str, request: &ReservationRequest) -> bool {
    table.label == label
        && table.shape.len() == request.requirements.len()
        && members_match(&table.shape, request.requirements.iter())
}

impl<S: Slot> Catalog<S> {
    /// Records, for GPU clustering (the node strategies' record), that `request` was placed
    /// as `placements` (in domains of its co-location label). A no-op for other strategies.
    pub fn record_placement(&self, request: &ReservationRequest, placements: &[Placement]) {
        if request.strategy != ReservationStrategy::GpuClustering {
            return;
        }
        let (Some(key), Some(shape)) = (&request.colocate_by, PodShape::of(request)) else {
            return;
        };
        if shape.gpus == 0 {
            return;
        }
        let Some(first) = placements.first() else {
            return;
        };
        let domains = self.domains(key.as_str());
        let Some(domain) = domains
            .iter()
            .position(|(_, positions)| positions.contains(&first.position))
        else {
            return;
        };
        let mut tags = self
            .node_strategies
            .tags
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let per_domain = tags.entry(key.as_str().to_owned()).or_default();
        if per_domain.len() < domains.len() {
            per_domain.resize(domains.len(), Tags::new());
        }
        let node = &mut per_domain[domain];
        let class = gpu_class(shape.gpus, shape.gpu_share);
        match node.iter_mut().find(|(g, s, _)| (*g, *s) == class) {
            Some(tag) => tag.2 += 1,
            None => node.push((class.0, class.1, 1)),
        }
    }

    /// The node table of `request`'s shape on `label`, or `None` when some node cannot be
    /// judged as a whole (then the generic planner places the request).
    fn node_table(
        &self,
        request: &ReservationRequest,
        label: &str,
        layout: &Layout,
    ) -> Option<Arc<NodeTable>> {
        let hash = hash_of(label, request);
        let state = &self.node_strategies;
        if let Some(bucket) = state
            .tables
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&hash)
            && let Some(found) = bucket.iter().find(|t| table_matches(t, label, request))
        {
            return Some(found.clone());
        }
        let table = Arc::new(self.build_node_table(
            request,
            label,
            layout,
            members_shape(request.requirements.iter()),
        )?);
        state
            .tables
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(hash)
            .or_default()
            .push(table.clone());
        Some(table)
    }

    fn build_node_table(
        &self,
        request: &ReservationRequest,
        label: &str,
        layout: &Layout,
        shape: Shape,
    ) -> Option<NodeTable> {
        let requirements = &request.requirements;
        let hosts = if layout.host.is_empty() {
            None
        } else {
            Some(self.candidates(requirements, &layout.host))
        };
        let admitted = layout
            .gpus
            .first()
            .map(|&i| self.candidates(requirements, &[i]));
        let domains = self.domains(label);
        let mut nodes = Vec::with_capacity(domains.len());
        let mut probes = Vec::with_capacity(domains.len());
        for (domain, (_, positions)) in domains.iter().enumerate() {
            let mut host = None;
            let mut devices: SmallVec<[Device; 8]> = SmallVec::new();
            for &position in positions {
                let resource = &self.resources[position];
                let slot = &self.slots[position];
                if let Some(gpu) = resource.capacity_of(&ResourceType::Gpu) {
                    // A device of its own: at most one GPU, and nothing else to place on it.
                    if *gpu.unit() != Unit::DEVICES
                        || gpu.maximum().as_milli() > WHOLE_GPU
                        || resource.capacity_of(&ResourceType::Compute).is_some()
                        || devices.len() == MAX_DEVICES
                    {
                        return None;
                    }
                    let admitted = admitted.as_ref().is_some_and(|list| {
                        list.binary_search_by_key(&(position as u32), |c| c.position)
                            .is_ok()
                    });
                    devices.push(Device {
                        position: position as u32,
                        dim: slot.dim(&ResourceType::Gpu)? as u32,
                        maximum: gpu.maximum().as_milli(),
                        admitted,
                    });
                    continue;
                }
                let Some(hosts) = &hosts else { continue };
                if let Ok(i) = hosts.binary_search_by_key(&(position as u32), |c| c.position) {
                    if host.is_some() {
                        return None;
                    }
                    if hosts[i].members().iter().any(|m| !m.same_unit) {
                        return None;
                    }
                    // Its cores and memory whether or not the request asks them: the
                    // fragmentation measure reads both.
                    let dims = |t: ResourceType, unit: Unit| {
                        let capacity = resource.capacity_of(&t).filter(|c| *c.unit() == unit)?;
                        Some((slot.dim(&t)?, capacity.maximum().as_milli()))
                    };
                    host = Some((
                        position as u32,
                        dims(ResourceType::Compute, Unit::CORES),
                        dims(ResourceType::Memory, Unit::BYTES),
                    ));
                }
            }
            let (host, cpu, memory) = match host {
                Some(found) => found,
                // A request without cores or memory is placed on devices alone.
                None if layout.host.is_empty() => (u32::MAX, None, None),
                None => continue,
            };
            probes.push(
                devices
                    .first()
                    .map(|d| self.resources[d.position as usize].clone()),
            );
            nodes.push(Node {
                host,
                cpu,
                memory,
                devices,
                domain,
            });
        }
        let max_cpu = nodes
            .iter()
            .filter_map(|n| n.cpu.map(|(_, m)| m))
            .max()
            .unwrap_or(0);
        let max_gpu = nodes.iter().map(Node::gpu_capacity).max().unwrap_or(0);
        Some(NodeTable {
            label: label.to_owned(),
            shape,
            nodes,
            max_cpu,
            max_gpu,
            admission: RwLock::new(Arc::new(Admission {
                epoch: u64::MAX,
                ..Admission::default()
            })),
            probes,
        })
    }
}

/// GPU clustering's class of a GPU demand, as the FGD paper's simulator tags pods: every
/// share of one GPU alike (`(1, 0)`), whole GPUs by their count (`(n, 1000)`).
fn gpu_class(gpus: u32, share: i64) -> (u32, i64) {
    if gpus == 1 && share < WHOLE_GPU {
        (1, 0)
    } else {
        (gpus, WHOLE_GPU)
    }
}

/// The fragmentation strategy's score of a pod without GPUs: the change of the node's usable
/// GPU first (a pod without GPUs changes it only by taking cores or memory a GPU demand needs);
/// on a tie, the node left with less free GPU, then with fewer free cores (so that such pods
/// go where they strand no GPU).
fn descent(delta: i128, gpu_after: i64, cpu_after: i64) -> i128 {
    (delta << 48)
        - (i128::from(gpu_after.clamp(0, 1 << 23)) << 24)
        - i128::from(cpu_after.clamp(0, (1 << 24) - 1))
}

/// The fragmentation strategy's bands: a node whose fragmentation falls by at least
/// `BANDS[j]` nano-GPU per pod of the workload scores at least `j + 1`. They are the FGD
/// paper's score, `⌊100 σ(fall in GPUs)⌋` with `σ` the logistic function, written as its 99
/// thresholds `ln((j + 1) / (99 − j))`, in nano-GPU, rounded: fine around no change (40
/// milli-GPU per pod), coarse for large falls and rises.
const BANDS: [i64; 99] = [
    -4595119850,
    -3891820298,
    -3476098690,
    -3178053830,
    -2944438979,
    -2751535313,
    -2586689344,
    -2442347035,
    -2313634929,
    -2197224577,
    -2090741097,
    -1992430165,
    -1900958761,
    -1815289967,
    -1734601055,
    -1658228077,
    -1585627264,
    -1516347489,
    -1450010176,
    -1386294361,
    -1324925415,
    -1265666373,
    -1208311206,
    -1152679510,
    -1098612289,
    -1045968555,
    -994622575,
    -944461609,
    -895384047,
    -847297860,
    -800119300,
    -753771802,
    -708185058,
    -663294217,
    -619039208,
    -575364145,
    -532216814,
    -489548225,
    -447312218,
    -405465108,
    -363965377,
    -322773392,
    -281851152,
    -241162057,
    -200670695,
    -160342650,
    -120144312,
    -80042708,
    -40005335,
    0,
    40005335,
    80042708,
    120144312,
    160342650,
    200670695,
    241162057,
    281851152,
    322773392,
    363965377,
    405465108,
    447312218,
    489548225,
    532216814,
    575364145,
    619039208,
    663294217,
    708185058,
    753771802,
    800119300,
    847297860,
    895384047,
    944461609,
    994622575,
    1045968555,
    1098612289,
    1152679510,
    1208311206,
    1265666373,
    1324925415,
    1386294361,
    1450010176,
    1516347489,
    1585627264,
    1658228077,
    1734601055,
    1815289967,
    1900958761,
    1992430165,
    2090741097,
    2197224577,
    2313634929,
    2442347035,
    2586689344,
    2751535313,
    2944438979,
    3178053830,
    3476098690,
    3891820298,
    4595119850,
];

/// The band (0 to 99) of a fall of `fall` milli-GPU × pods in a node's fragmentation for a
/// workload of `pods` pods, in exact integers against [`BANDS`]; 50 (no change) for an empty
/// workload.
pub(crate) fn band(fall: i128, pods: u64) -> i128 {
    if pods == 0 {
        return 50;
    }
    // `fall / pods` milli-GPU is `fall × 10⁶ / pods` nano-GPU.
    let scaled = fall.saturating_mul(1_000_000);
    BANDS.partition_point(|&t| i128::from(t) * i128::from(pods) <= scaled) as i128
}

/// A node's free counters as read for one placement.
struct Free {
    cpu: i64,
    memory: i64,
    devices: [i64; MAX_DEVICES],
    len: usize,
}

/// Plans `request` over whole nodes when its strategy judges nodes and it is a pod on one
/// node of its co-location label; `None` to leave it to the generic planner (another shape,
/// or no node fits and the caller wants the refusal explained).
pub(crate) fn plan_nodes<S: Slot>(
    catalog: &Catalog<S>,
    request: &ReservationRequest,
    explain: bool,
) -> Option<Result<Small<Placement>, ()>> {
    let key = request.colocate_by.as_ref()?;
    let pod = PodShape::of(request)?;
    let layout = layout(request)?;
    let table = catalog.node_table(request, key.as_str(), &layout)?;
    let state = &catalog.node_strategies;
    let strategy = request.strategy;
    let order = mix(state.seed() ^ 0x006F_7264_6572);
    let draw = if strategy == ReservationStrategy::RandomFit {
        state.draw()
    } else {
        0
    };
    let workload_guard;
    let mut admission = Arc::new(Admission::default());
    let workload = if strategy == ReservationStrategy::Fragmentation {
        workload_guard = state
            .workload
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        admission = table.admission(&workload_guard, state.epoch.load(Ordering::Relaxed));
        Some(&*workload_guard)
    } else {
        None
    };
    // GPU clustering reads its records under their lock for the whole placement.
    let records = (strategy == ReservationStrategy::GpuClustering)
        .then(|| state.tags.lock().unwrap_or_else(PoisonError::into_inner));
    let tags = records.as_ref().and_then(|r| r.get(key.as_str()));
    let judge = Judge {
        pod: &pod,
        host: layout
            .host
            .iter()
            .map(|&i| {
                let r = &request.requirements[i];
                (
                    *r.resource_type() == ResourceType::Compute,
                    r.amount().as_milli(),
                )
            })
            .collect(),
        gpus: layout
            .gpus
            .iter()
            .map(|&i| request.requirements[i].amount().as_milli())
            .collect(),
        strategy,
        table: &table,
        workload,
        admission: &admission,
        tags: tags.map(Vec::as_slice),
        draw,
        order,
    };
    let mut best: Option<(i128, usize, Choice)> = None;
    // The fragmentation strategy's score depends only on a node's free capacity and which
    // demands it admits: nodes alike in both are judged once. Without a rank only the first
    // of them can win (ties go to the first), so the others are skipped; with one, each adds
    // its rank to the state's score.
    let dedupe = strategy == ReservationStrategy::Fragmentation;
    let ranked = dedupe && pod.gpus > 0;
    SEEN.with_borrow_mut(|seen| {
        seen.clear();
        for (n, node) in table.nodes.iter().enumerate() {
            let free = read(catalog, node);
            if free.cpu < pod.cpu || free.memory < pod.memory {
                continue;
            }
            let judged = if dedupe {
                // A multiplicative hash of the state (the map does not hash again). A
                // collision could only give a node another state's score; the devices it
                // would take are checked again, so a pod is never placed where it does not
                // fit.
                let step =
                    |h: u64, x: u64| (h ^ x).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(31);
                let mut key = admission.signatures.get(n).copied().unwrap_or(0);
                key = step(key, free.cpu as u64);
                key = step(key, free.memory as u64);
                for (device, value) in node.devices.iter().zip(&free.devices) {
                    key = step(key, (*value as u64) ^ (u64::from(device.admitted) << 63));
                }
                match seen.entry(mix(key)) {
                    std::collections::hash_map::Entry::Occupied(_) if !ranked => continue,
                    std::collections::hash_map::Entry::Occupied(seen) => match seen.get() {
                        Some((_, choice)) if judge.still_fits(node, &free, choice) => {
                            seen.get().clone()
                        }
                        _ => judge.node(n, node, &free),
                    },
                    std::collections::hash_map::Entry::Vacant(vacant) => {
                        vacant.insert(judge.node(n, node, &free)).clone()
                    }
                }
            } else {
                judge.node(n, node, &free)
            };
            let Some((score, choice)) = judged else {
                continue;
            };
            let score = if ranked {
                score + judge.rank(node)
            } else {
                score
            };
            if best.as_ref().is_none_or(|(top, _, _)| score > *top) {
                best = Some((score, n, choice));
                // First fit: every node scores alike, so the first that fits wins.
                if strategy == ReservationStrategy::Greedy {
                    break;
                }
            }
        }
    });
    let Some((_, n, choice)) = best else {
        return if explain { None } else { Some(Err(())) };
    };
    let node = &table.nodes[n];
    let mut placements = Small::new();
    for &i in &layout.host {
        let requirement = &request.requirements[i];
        placements.push(Placement {
            requirement: i,
            position: node.host as usize,
            resource_type: requirement.resource_type().clone(),
            amount: requirement.amount().as_milli(),
            unit: requirement.unit().clone(),
        });
    }
    for (&i, &d) in layout.gpus.iter().zip(&choice) {
        let requirement = &request.requirements[i];
        placements.push(Placement {
            requirement: i,
            position: node.devices[usize::from(d)].position as usize,
            resource_type: ResourceType::Gpu,
            amount: requirement.amount().as_milli(),
            unit: Unit::DEVICES,
        });
    }
    placements.sort_by_key(|p| p.requirement);
    Some(Ok(placements))
}

fn read<S: Slot>(catalog: &Catalog<S>, node: &Node) -> Free {
    let host = catalog.slots.get(node.host as usize);
    let free_of = |dim: Option<(usize, i64)>| match (dim, host) {
        (Some((d, _)), Some(slot)) => slot.free(d),
        // The pod asks none of it.
        _ => i64::MAX,
    };
    let mut free = Free {
        cpu: free_of(node.cpu),
        memory: free_of(node.memory),
        devices: [0; MAX_DEVICES],
        len: node.devices.len(),
    };
    for (slot, device) in free.devices.iter_mut().zip(&node.devices) {
        *slot = catalog.slots[device.position as usize].free(device.dim as usize);
    }
    free
}

/// The devices chosen on a node, by index among its devices, one per GPU requirement.
type Choice = SmallVec<[u8; 8]>;

/// Scores nodes for one placement.
struct Judge<'a> {
    pod: &'a PodShape,
    /// The request's cores and memory requirements: (is cores, amount), in order.
    host: SmallVec<[(bool, i64); 2]>,
    /// Its GPU requirements' amounts, in order.
    gpus: SmallVec<[i64; 8]>,
    strategy: ReservationStrategy,
    table: &'a NodeTable,
    workload: Option<&'a Workload>,
    admission: &'a Admission,
    tags: Option<&'a [Tags]>,
    draw: u64,
    /// The seed of the fragmentation strategy's order of nodes.
    order: u64,
}

impl Judge<'_> {
    /// The node's place in the fragmentation strategy's seeded order of nodes (its host's
    /// position mixed with the seed), below 2⁶³: among nodes in one band, the highest wins.
    fn rank(&self, node: &Node) -> i128 {
        i128::from(mix(self.order ^ u64::from(node.host)) >> 1)
    }

    /// Whether the devices `choice` names can still hold the pod on `node` as `free` reads.
    fn still_fits(&self, node: &Node, free: &Free, choice: &Choice) -> bool {
        let mut taken = [0i64; MAX_DEVICES];
        choice.iter().all(|&k| {
            let k = usize::from(k);
            taken[k] += self.pod.gpu_share;
            k < free.len && node.devices[k].admitted && free.devices[k] >= taken[k]
        })
    }

    /// The node's score (higher wins) and the devices the pod would take there, or `None`
    /// when its devices cannot hold the pod.
    fn node(&self, n: usize, node: &Node, free: &Free) -> Option<(i128, Choice)> {
        if !self.strategy.judges_nodes() {
            return self.per_resource(node, free);
        }
        let pod = self.pod;
        let devices = &free.devices[..free.len];
        let fits = |k: usize| node.devices[k].admitted && devices[k] >= pod.gpu_share;
        let mut choice = Choice::new();
        let fraction = pod.gpus == 1 && pod.gpu_share < WHOLE_GPU;
        if pod.gpus > 0 && !fraction {
            for k in 0..devices.len() {
                if choice.len() == pod.gpus as usize {
                    break;
                }
                if fits(k) {
                    choice.push(k as u8);
                }
            }
            if choice.len() < pod.gpus as usize {
                return None;
            }
        }
        if fraction {
            // Best fit among the devices: the fullest that holds the share (first on ties);
            // the fragmentation strategy and random fit choose their own below.
            let best = (0..devices.len())
                .filter(|&k| fits(k))
                .min_by_key(|&k| (devices[k], k))?;
            choice.push(best as u8);
        }
        let gpu_asked = i64::from(pod.gpus) * pod.gpu_share;
        let gpu_free: i64 = devices.iter().sum();
        let score = match self.strategy {
            ReservationStrategy::Fragmentation => {
                return self.fragmentation(n, node, free, choice, fraction);
            }
            ReservationStrategy::RandomFit => {
                if fraction {
                    let pick = (0..devices.len())
                        .filter(|&k| fits(k))
                        .max_by_key(|&k| (mix(self.draw ^ node.devices[k].position as u64), k))?;
                    choice[0] = pick as u8;
                }
                i128::from(mix(self.draw ^ (n as u64)) >> 1)
            }
            ReservationStrategy::BestFit => {
                // Least (cores left / largest node's cores + GPU left / largest node's GPU),
                // compared exactly over the common denominator.
                let cpu_left = node.cpu.map_or(0, |_| free.cpu - pod.cpu);
                let gpu_left = gpu_free - gpu_asked;
                -(i128::from(cpu_left) * i128::from(self.table.max_gpu.max(1))
                    + i128::from(gpu_left) * i128::from(self.table.max_cpu.max(1)))
            }
            ReservationStrategy::DotProduct => {
                // Least dot product of the demand and the free capacity, each as shares of
                // the node's capacity (on the device taken, for a fraction).
                let mut dot = 0.0f64;
                if let Some((_, cap)) = node.cpu
                    && cap > 0
                {
                    dot += (pod.cpu as f64 / cap as f64) * (free.cpu as f64 / cap as f64);
                }
                let gpu_cap = node.gpu_capacity();
                if gpu_cap > 0 && gpu_asked > 0 {
                    let gpu_free = if fraction {
                        devices[usize::from(choice[0])]
                    } else {
                        gpu_free
                    };
                    dot += (gpu_asked as f64 / gpu_cap as f64) * (gpu_free as f64 / gpu_cap as f64);
                }
                -((dot * 1e12) as i128)
            }
            ReservationStrategy::GpuPacking => {
                const TIER: i128 = 1 << 40;
                let whole_free = node
                    .devices
                    .iter()
                    .zip(devices)
                    .filter(|(d, f)| **f >= d.maximum)
                    .count() as i128;
                if pod.gpus == 0 {
                    0
                } else if whole_free == node.devices.len() as i128 {
                    // An idle node: smaller first.
                    TIER - whole_free
                } else if choice
                    .iter()
                    .all(|&k| devices[usize::from(k)] < node.devices[usize::from(k)].maximum)
                {
                    // Only devices already in use: the fullest first.
                    3 * TIER
                        - choice
                            .iter()
                            .map(|&k| i128::from(devices[usize::from(k)]))
                            .sum::<i128>()
                } else {
                    // Whole devices of a node in use: fewer first.
                    2 * TIER - choice.len() as i128
                }
            }
            ReservationStrategy::GpuClustering => {
                const TIER: i128 = 1 << 40;
                if pod.gpus == 0 {
                    0
                } else {
                    let tags = self
                        .tags
                        .and_then(|t| t.get(node.domain))
                        .map(|t| t.as_slice())
                        .unwrap_or_default();
                    // Records of pods that left a node stay until its GPUs are all free.
                    let idle = gpu_free >= node.gpu_capacity();
                    let tags = if idle { &[][..] } else { tags };
                    let class = gpu_class(pod.gpus, pod.gpu_share);
                    let same = tags.iter().any(|(g, s, c)| *c > 0 && (*g, *s) == class);
                    let tier = match (same, tags.len()) {
                        (true, 1) => 4,
                        (true, _) => 3,
                        (false, 0) => 2,
                        (false, _) => 1,
                    };
                    // Within a tier, fuller nodes first.
                    tier * TIER - i128::from(gpu_free)
                }
            }
            _ => 0,
        };
        Some((score, choice))
    }

    /// A built-in strategy, exactly as the generic planner judges a domain of the co-location
    /// label: each requirement on its best resource of the node by the strategy's score of
    /// that one capacity (the first on ties, the first that fits for greedy), the node scored
    /// by the sum of those scores over the free capacity before the placement.
    fn per_resource(&self, node: &Node, free: &Free) -> Option<(i128, Choice)> {
        let strategy = self.strategy;
        let score = |requested: i64, free: i64, capacity: i64| {
            strategy_score(
                strategy,
                &[RawFit {
                    requested,
                    free,
                    capacity,
                    inverse_capacity: inverse_capacity(capacity),
                }],
            )
        };
        let mut total: i64 = 0;
        for &(cores, amount) in &self.host {
            let (dim, free) = if cores {
                (node.cpu, free.cpu)
            } else {
                (node.memory, free.memory)
            };
            let (_, maximum) = dim?;
            if let Some(s) = score(amount, free, maximum) {
                total = total.saturating_add(s);
            }
        }
        let devices = &free.devices[..free.len];
        let mut taken = [0i64; MAX_DEVICES];
        let mut choice = Choice::new();
        for &amount in &self.gpus {
            let mut best: Option<(i64, usize)> = None;
            for (k, device) in node.devices.iter().enumerate() {
                if !device.admitted {
                    continue;
                }
                let Some(s) = score(amount, devices[k].saturating_sub(taken[k]), device.maximum)
                else {
                    continue;
                };
                if best.is_none_or(|(top, _)| s > top) {
                    best = Some((s, k));
                    if strategy == ReservationStrategy::Greedy {
                        break;
                    }
                }
            }
            let (_, k) = best?;
            taken[k] += amount;
            choice.push(k as u8);
            if let Some(s) = score(amount, devices[k], node.devices[k].maximum) {
                total = total.saturating_add(s);
            }
        }
        Some((i128::from(total), choice))
    }

    /// Fragmentation gradient descent: how much the node's usable GPU for the workload falls
    /// (the growth of its fragmentation, less the GPU the pod takes, which is the same on
    /// every node), trying each distinct free share for a fraction.
    fn fragmentation(
        &self,
        n: usize,
        node: &Node,
        free: &Free,
        mut choice: Choice,
        fraction: bool,
    ) -> Option<(i128, Choice)> {
        let workload = self.workload?;
        let pod = self.pod;
        let admits = |d: usize| {
            self.admission
                .columns
                .get(d)
                .and_then(|c| c.get(n))
                .copied()
                .unwrap_or(false)
        };
        let mut devices = free.devices;
        let len = free.len;
        let usable = |cpu: i64, memory: i64, devices: &[i64]| {
            workload.usable(
                &NodeFree {
                    cpu,
                    memory,
                    devices,
                },
                admits,
            )
        };
        let (cpu, memory) = (free.cpu, free.memory);
        let before = usable(cpu, memory, &devices[..len]);
        let (cpu_after, memory_after) = (cpu - pod.cpu, memory - pod.memory);
        if !fraction {
            for &k in &choice {
                devices[usize::from(k)] -= pod.gpu_share;
            }
            let after = usable(cpu_after, memory_after, &devices[..len]);
            let gpu_after: i64 = devices[..len].iter().sum();
            return Some((
                self.fall_score(after - before, gpu_after, cpu_after),
                choice,
            ));
        }
        let mut best: Option<(i128, usize)> = None;
        for k in 0..len {
            let value = free.devices[k];
            if !node.devices[k].admitted
                || value < pod.gpu_share
                || (0..k).any(|j| node.devices[j].admitted && free.devices[j] == value)
            {
                continue;
            }
            devices[k] -= pod.gpu_share;
            let after = usable(cpu_after, memory_after, &devices[..len]);
            devices[k] += pod.gpu_share;
            if best.is_none_or(|(top, _)| after > top) {
                best = Some((after, k));
            }
        }
        let (after, k) = best?;
        choice[0] = k as u8;
        let gpu_after: i64 = free.devices[..len].iter().sum::<i64>() - pod.gpu_share;
        Some((
            self.fall_score(after - before, gpu_after, cpu_after),
            choice,
        ))
    }

    /// The fragmentation strategy's score of a node whose usable GPU for the workload changes
    /// by `delta` (milli-GPU × pods): for a pod with GPUs, the band of the fall of its
    /// fragmentation (the rank among nodes in one band is added by the caller); for a pod
    /// without, the exact [`descent`].
    fn fall_score(&self, delta: i128, gpu_after: i64, cpu_after: i64) -> i128 {
        let pod = self.pod;
        if pod.gpus == 0 {
            return descent(delta, gpu_after, cpu_after);
        }
        let pods = self.workload.map_or(0, Workload::total);
        // Fragmentation is pods × free GPU − usable GPU: the pod takes its GPU off the first
        // term on every node, and `delta` is the change of the second.
        let asked = i128::from(i64::from(pod.gpus) * pod.gpu_share);
        band(asked * i128::from(pods) + delta, pods) << 64
    }
}
