//! GPU fragmentation: how much of a node's free GPU a pod of the expected workload could not
//! use, the measure behind [`ReservationStrategy::Fragmentation`] (fragmentation gradient
//! descent, Weng et al., "Beware of Fragmentation", USENIX ATC '23).
//!
//! A node has free cores, free memory and, per GPU device, a free share in milli-GPU (1000 is a
//! whole device). A pod asks cores, memory and either a share of one device or several whole
//! devices, possibly of some GPU models only. For one pod `m`, the node's fragment is:
//! - all its free GPU when the pod cannot run there (too few cores or memory, no device of an
//!   accepted model, too few devices with enough free), and always for a pod without GPUs
//!   (it can use none of them);
//! - otherwise the free GPU on the devices that cannot hold the pod's share.
//!
//! The node's fragmentation for a [`Workload`] (pod shapes with their counts) is the sum over
//! shapes of count × fragment, in milli-GPU, exact in integers; divided by the workload's
//! count it is the expected fragment of a pod drawn from the workload. Placing a pod moves a
//! node's fragmentation; the strategy places each pod where it grows least (compared in the
//! paper's bands, see [`ReservationStrategy::Fragmentation`]).
//!
//! Written as `F = total × free GPU − U`, where `U` (the node's *usable* GPU) sums, over the
//! shapes that can run on the node, count × the free GPU on the devices that can hold their
//! share: [`Workload::usable`] computes `U` in one sweep over the shapes sorted by share, so a
//! node costs a few operations per distinct GPU demand, not per shape.
//!
//! [`ReservationStrategy::Fragmentation`]: crate::ReservationStrategy::Fragmentation

use std::collections::HashMap;

use crate::quantity::Quantity;
use crate::requirement::{Constraint, ResourceRequirement};
use crate::reservation::ReservationRequest;
use crate::resource::ResourceType;
use crate::unit::Unit;

/// A whole GPU device in milli-GPU.
pub const WHOLE_GPU: i64 = 1000;

/// What a pod asks of one node, as the fragmentation measure sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PodShape {
    /// Thousandths of a core.
    pub cpu: i64,
    /// Thousandths of a byte.
    pub memory: i64,
    /// GPU devices (0 for a pod without GPUs).
    pub gpus: u32,
    /// Milli-GPU on each of them: below 1000 for a share of one device, 1000 for whole ones.
    pub gpu_share: i64,
    /// The constraints a device must pass (for example a GPU model), empty for any.
    pub gpu_constraints: Vec<Constraint>,
}

impl PodShape {
    /// The shape of `request` when it is a pod: requirements of cores, memory and GPUs only,
    /// without preferences or affinity, whose GPU requirements are either whole devices or
    /// one share of a device, all with the same constraints. `None` for any other request.
    pub fn of(request: &ReservationRequest) -> Option<PodShape> {
        let mut shape = PodShape {
            cpu: 0,
            memory: 0,
            gpus: 0,
            gpu_share: 0,
            gpu_constraints: Vec::new(),
        };
        let mut whole = 0u32;
        let mut fractions = 0u32;
        for requirement in &request.requirements {
            if !requirement.preferences().is_empty() || !requirement.affinity().is_empty() {
                return None;
            }
            match requirement.resource_type() {
                ResourceType::Compute => shape.cpu += milli_in(requirement, &Unit::CORES)?,
                ResourceType::Memory => shape.memory += milli_in(requirement, &Unit::BYTES)?,
                ResourceType::Gpu => {
                    let amount = milli_in(requirement, &Unit::DEVICES)?;
                    if amount <= 0 || amount > WHOLE_GPU {
                        return None;
                    }
                    if whole + fractions == 0 {
                        shape.gpu_constraints = requirement.constraints().to_vec();
                    } else if shape.gpu_constraints != requirement.constraints() {
                        return None;
                    }
                    if amount == WHOLE_GPU {
                        whole += 1;
                    } else {
                        fractions += 1;
                        shape.gpu_share = amount;
                    }
                }
                _ => return None,
            }
        }
        match (whole, fractions) {
            (0, 0) => {}
            (0, 1) => shape.gpus = 1,
            (n, 0) => {
                shape.gpus = n;
                shape.gpu_share = WHOLE_GPU;
            }
            _ => return None,
        }
        Some(shape)
    }
}

fn milli_in(requirement: &ResourceRequirement, unit: &Unit) -> Option<i64> {
    if requirement.unit() == unit {
        Some(requirement.amount().as_milli())
    } else {
        requirement.amount_in(unit).ok().map(Quantity::as_milli)
    }
}

/// A node's free capacity as the measure reads it.
#[derive(Clone, Copy, Debug)]
pub struct NodeFree<'a> {
    /// Free cores, in thousandths.
    pub cpu: i64,
    /// Free memory, in thousandths of a byte.
    pub memory: i64,
    /// Free milli-GPU of each device (each at most [`WHOLE_GPU`]).
    pub devices: &'a [i64],
}

impl NodeFree<'_> {
    /// All free GPU of the node, in milli-GPU.
    pub fn free_gpu(&self) -> i64 {
        self.devices.iter().map(|d| (*d).max(0)).sum()
    }
}

/// The pods of one GPU demand (share, device count and device constraints) in a workload,
/// by their cores and memory.
#[derive(Clone, Debug)]
pub struct GpuDemand {
    /// Milli-GPU on each device (0 for pods without GPUs).
    pub share: i64,
    /// Devices.
    pub gpus: u32,
    /// What a device must pass.
    pub constraints: Vec<Constraint>,
    /// The pods of this demand.
    pub count: u64,
    /// (cores, memory, count) of each distinct pod shape of this demand.
    points: Vec<(i64, i64, u64)>,
    max_cpu: i64,
    max_memory: i64,
    min_cpu: i64,
    min_memory: i64,
}

impl GpuDemand {
    /// How many of its pods fit in `cpu` cores and `memory` (thousandths each).
    fn hosted(&self, cpu: i64, memory: i64) -> u64 {
        if cpu >= self.max_cpu && memory >= self.max_memory {
            self.count
        } else if cpu < self.min_cpu || memory < self.min_memory {
            0
        } else {
            self.points
                .iter()
                .filter(|(c, m, _)| *c <= cpu && *m <= memory)
                .map(|(_, _, n)| n)
                .sum()
        }
    }
}

/// The target workload: pod shapes with how often each was seen (or is expected), kept so
/// that a pod stream updates it in constant time ([`observe`](Workload::observe)) and a node
/// is measured in one sweep over its GPU demands.
#[derive(Clone, Debug, Default)]
pub struct Workload {
    /// By id (order of first appearance): ids stay valid as demands are added.
    demands: Vec<GpuDemand>,
    /// Demand ids by ascending share, then device count.
    by_share: Vec<usize>,
    /// Where each shape is counted: (demand id, point index).
    index: HashMap<PodShape, (usize, usize)>,
    total: u64,
}

impl Workload {
    /// An empty workload.
    pub fn new() -> Workload {
        Workload::default()
    }

    /// A workload of `shapes`, each counted once per appearance.
    pub fn from_shapes<'a>(shapes: impl IntoIterator<Item = &'a PodShape>) -> Workload {
        let mut workload = Workload::new();
        for shape in shapes {
            workload.observe(shape);
        }
        workload
    }

    /// Counts one more pod of `shape`.
    pub fn observe(&mut self, shape: &PodShape) {
        self.observe_n(shape, 1);
    }

    /// Counts `n` more pods of `shape`.
    pub fn observe_n(&mut self, shape: &PodShape, n: u64) {
        if n == 0 {
            return;
        }
        self.total = self.total.saturating_add(n);
        if let Some(&(d, p)) = self.index.get(shape) {
            let demand = &mut self.demands[d];
            demand.count = demand.count.saturating_add(n);
            demand.points[p].2 = demand.points[p].2.saturating_add(n);
            return;
        }
        let share = if shape.gpus == 0 { 0 } else { shape.gpu_share };
        let found = self.demands.iter().position(|d| {
            d.share == share && d.gpus == shape.gpus && d.constraints == shape.gpu_constraints
        });
        let d = match found {
            Some(d) => d,
            None => {
                self.demands.push(GpuDemand {
                    share,
                    gpus: shape.gpus,
                    constraints: shape.gpu_constraints.clone(),
                    count: 0,
                    points: Vec::new(),
                    max_cpu: i64::MIN,
                    max_memory: i64::MIN,
                    min_cpu: i64::MAX,
                    min_memory: i64::MAX,
                });
                let id = self.demands.len() - 1;
                let at = self.by_share.partition_point(|&other| {
                    let o = &self.demands[other];
                    (o.share, o.gpus) <= (share, shape.gpus)
                });
                self.by_share.insert(at, id);
                id
            }
        };
        let demand = &mut self.demands[d];
        demand.count = demand.count.saturating_add(n);
        demand.points.push((shape.cpu, shape.memory, n));
        demand.max_cpu = demand.max_cpu.max(shape.cpu);
        demand.max_memory = demand.max_memory.max(shape.memory);
        demand.min_cpu = demand.min_cpu.min(shape.cpu);
        demand.min_memory = demand.min_memory.min(shape.memory);
        self.index
            .insert(shape.clone(), (d, demand.points.len() - 1));
    }

    /// Pods counted.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Whether no pod was counted.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The GPU demands, by id (order of first appearance).
    pub fn demands(&self) -> &[GpuDemand] {
        &self.demands
    }

    /// The node's usable GPU `U`: over the demands whose devices `admits` (by demand id; it is
    /// asked only for demands with constraints), the count of their pods the node can run ×
    /// the free GPU of the devices that can hold their share. Milli-GPU × pods.
    pub fn usable(&self, node: &NodeFree<'_>, admits: impl Fn(usize) -> bool) -> i128 {
        let mut inline = [0i64; 16];
        let mut spilled = Vec::new();
        let devices: &mut [i64] = if node.devices.len() <= inline.len() {
            let slots = &mut inline[..node.devices.len()];
            slots.copy_from_slice(node.devices);
            slots
        } else {
            spilled.extend_from_slice(node.devices);
            &mut spilled
        };
        if devices.is_empty() {
            return 0;
        }
        // Largest free first; prefix[k] = the free of the k largest.
        devices.sort_unstable_by(|a, b| b.cmp(a));
        let mut prefix = [0i64; 17];
        let mut spilled_prefix = Vec::new();
        let prefix: &mut [i64] = if devices.len() < prefix.len() {
            &mut prefix[..=devices.len()]
        } else {
            spilled_prefix.resize(devices.len() + 1, 0);
            &mut spilled_prefix
        };
        for (k, free) in devices.iter().enumerate() {
            prefix[k + 1] = prefix[k] + free;
        }
        let mut holding = devices.len();
        let mut usable: i128 = 0;
        for &d in &self.by_share {
            let demand = &self.demands[d];
            if demand.share <= 0 || demand.count == 0 {
                continue;
            }
            while holding > 0 && devices[holding - 1] < demand.share {
                holding -= 1;
            }
            if holding == 0 {
                break;
            }
            if (holding as u64) < u64::from(demand.gpus) {
                continue;
            }
            if !demand.constraints.is_empty() && !admits(d) {
                continue;
            }
            let hosted = demand.hosted(node.cpu, node.memory);
            if hosted == 0 {
                continue;
            }
            usable += i128::from(hosted) * i128::from(prefix[holding]);
        }
        usable
    }

    /// The node's fragmentation `F`: over every counted pod, the free GPU it could not use on
    /// the node, summed (milli-GPU × pods). Divide by [`total`](Workload::total) for the
    /// expected fragment of one pod ([`expected_fragment`](Workload::expected_fragment)).
    pub fn fragmentation(&self, node: &NodeFree<'_>, admits: impl Fn(usize) -> bool) -> i128 {
        i128::from(self.total) * i128::from(node.free_gpu()) - self.usable(node, admits)
    }

    /// The expected fragment of one pod of the workload on the node, in milli-GPU (rounded
    /// down; 0 for an empty workload).
    pub fn expected_fragment(&self, node: &NodeFree<'_>, admits: impl Fn(usize) -> bool) -> i64 {
        if self.total == 0 {
            return 0;
        }
        i64::try_from(self.fragmentation(node, admits) / i128::from(self.total)).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RequesterId, ResourceRequirement};

    const CORE: i64 = 1000;
    const GIB: i64 = 1024 * 1024 * 1024 * 1000;

    fn pod(cpu: i64, memory_gib: i64, gpus: u32, share: i64) -> PodShape {
        PodShape {
            cpu: cpu * CORE,
            memory: memory_gib * GIB,
            gpus,
            gpu_share: if gpus == 0 { 0 } else { share },
            gpu_constraints: Vec::new(),
        }
    }

    fn node(cpu: i64, memory_gib: i64, devices: &[i64]) -> NodeFree<'_> {
        NodeFree {
            cpu: cpu * CORE,
            memory: memory_gib * GIB,
            devices,
        }
    }

    fn any(_: usize) -> bool {
        true
    }

    /// Eight free GPUs and room for every pod: a whole-GPU pod or a half-GPU pod can use all
    /// of it; a CPU-only pod none; an 8-GPU pod all of it.
    #[test]
    fn eight_free_gpus() {
        let free = [1000; 8];
        let n = node(96, 512, &free);
        for (shape, fragment) in [
            (pod(8, 32, 1, 1000), 0),
            (pod(4, 16, 1, 500), 0),
            (pod(64, 256, 8, 1000), 0),
            (pod(4, 16, 0, 0), 8000),
        ] {
            let workload = Workload::from_shapes([&shape]);
            assert_eq!(workload.fragmentation(&n, any), fragment, "{shape:?}");
        }
        // A mix: 3 whole-GPU pods and 1 CPU pod: (3 × 0 + 1 × 8000) / 4 = 2000 expected.
        let mut mix = Workload::new();
        mix.observe_n(&pod(8, 32, 1, 1000), 3);
        mix.observe(&pod(4, 16, 0, 0));
        assert_eq!(mix.fragmentation(&n, any), 8000);
        assert_eq!(mix.expected_fragment(&n, any), 2000);
    }

    /// Half a GPU free on each of 4 devices: a 0.5-GPU pod uses all 2000; a 0.6-GPU pod,
    /// a whole-GPU pod and a 2-GPU pod none of it.
    #[test]
    fn half_free_on_four_devices() {
        let free = [500; 4];
        let n = node(32, 128, &free);
        for (shape, fragment) in [
            (pod(2, 8, 1, 500), 0),
            (pod(2, 8, 1, 300), 0),
            (pod(2, 8, 1, 600), 2000),
            (pod(2, 8, 1, 1000), 2000),
            (pod(2, 8, 2, 1000), 2000),
        ] {
            let workload = Workload::from_shapes([&shape]);
            assert_eq!(workload.fragmentation(&n, any), fragment, "{shape:?}");
        }
        // 1 pod of 0.5, 1 of 0.6: (0 + 2000) / 2 = 1000.
        let workload = Workload::from_shapes([&pod(2, 8, 1, 500), &pod(2, 8, 1, 600)]);
        assert_eq!(workload.expected_fragment(&n, any), 1000);
    }

    /// Devices with different free shares: a 0.4-GPU pod cannot use the 0.3 device.
    #[test]
    fn devices_below_the_share_are_fragments() {
        let free = [1000, 300, 700, 0];
        let n = node(32, 128, &free);
        let workload = Workload::from_shapes([&pod(2, 8, 1, 400)]);
        assert_eq!(workload.fragmentation(&n, any), 300);
        assert_eq!(workload.usable(&n, any), 1700);
        // Two whole GPUs need two free devices: only one is whole, so all 2000 is fragment.
        let two = Workload::from_shapes([&pod(2, 8, 2, 1000)]);
        assert_eq!(two.fragmentation(&n, any), 2000);
    }

    /// A node out of cores (or memory) strands all its GPUs for pods that need more.
    #[test]
    fn cpu_bound_nodes_strand_their_gpus() {
        let free = [1000, 1000];
        let short_of_cores = node(2, 128, &free);
        let short_of_memory = node(32, 4, &free);
        let big = Workload::from_shapes([&pod(8, 16, 1, 1000)]);
        assert_eq!(big.fragmentation(&short_of_cores, any), 2000);
        assert_eq!(big.fragmentation(&short_of_memory, any), 2000);
        // Half the pods are small enough: (1 × 0 + 1 × 2000) / 2.
        let mixed = Workload::from_shapes([&pod(8, 16, 1, 1000), &pod(1, 2, 1, 1000)]);
        assert_eq!(mixed.fragmentation(&short_of_cores, any), 2000);
        assert_eq!(mixed.expected_fragment(&short_of_cores, any), 1000);
        assert_eq!(mixed.fragmentation(&node(32, 128, &free), any), 0);
    }

    /// A demand with constraints counts only where its devices are admitted.
    #[test]
    fn constrained_demands_ask_admission() {
        let free = [1000];
        let n = node(32, 128, &free);
        let mut shape = pod(2, 8, 1, 1000);
        shape.gpu_constraints = vec![
            crate::Constraint::label("model")
                .expect("valid")
                .is_in(["V100"]),
        ];
        let workload = Workload::from_shapes([&shape]);
        assert_eq!(workload.fragmentation(&n, |_| false), 1000);
        assert_eq!(workload.fragmentation(&n, |_| true), 0);
    }

    /// Counting again only moves counts; the sweep sees shapes in share order however they
    /// arrived.
    #[test]
    fn observing_keeps_counts_and_order() {
        let mut workload = Workload::new();
        let shapes = [pod(2, 8, 1, 700), pod(2, 8, 1, 200), pod(2, 8, 1, 700)];
        for shape in &shapes {
            workload.observe(shape);
        }
        assert_eq!(workload.total(), 3);
        assert_eq!(workload.demands().len(), 2);
        assert_eq!(workload.demands()[0].count, 2);
        let free = [600, 250];
        let n = node(32, 128, &free);
        // 0.2 pods (1) use 850; 0.7 pods (2) use none: F = 3 × 850 − 850 = 1700.
        assert_eq!(workload.fragmentation(&n, any), 1700);
    }

    #[test]
    fn shapes_of_requests() {
        let requester = RequesterId::new("t").expect("valid");
        let request = ReservationRequest::new(
            requester.clone(),
            vec![
                ResourceRequirement::new(ResourceType::Compute, 4, Unit::CORES),
                ResourceRequirement::new(
                    ResourceType::Memory,
                    Quantity::from_units(1024),
                    Unit::BYTES,
                ),
                ResourceRequirement::new(
                    ResourceType::Gpu,
                    Quantity::from_milli(250),
                    Unit::DEVICES,
                ),
            ],
        );
        let shape = PodShape::of(&request).expect("a pod");
        assert_eq!(
            (shape.cpu, shape.memory, shape.gpus, shape.gpu_share),
            (4000, 1_024_000, 1, 250)
        );
        let two = ReservationRequest::new(
            requester.clone(),
            vec![
                ResourceRequirement::new(ResourceType::Gpu, 1, Unit::DEVICES),
                ResourceRequirement::new(ResourceType::Gpu, 1, Unit::DEVICES),
            ],
        );
        let shape = PodShape::of(&two).expect("a pod");
        assert_eq!((shape.gpus, shape.gpu_share), (2, 1000));
        // A whole GPU and a share of another, or a pooled 2-GPU requirement: not a pod.
        let mixed = ReservationRequest::new(
            requester.clone(),
            vec![
                ResourceRequirement::new(ResourceType::Gpu, 1, Unit::DEVICES),
                ResourceRequirement::new(
                    ResourceType::Gpu,
                    Quantity::from_milli(500),
                    Unit::DEVICES,
                ),
            ],
        );
        assert_eq!(PodShape::of(&mixed), None);
        let pooled = ReservationRequest::new(
            requester,
            vec![ResourceRequirement::new(
                ResourceType::Gpu,
                2,
                Unit::DEVICES,
            )],
        );
        assert_eq!(PodShape::of(&pooled), None);
    }
}
