//! The node planner's tables: per label and request shape, each node's host and GPU devices
//! (positions, capacity indices, maxima, admission by the request), with which workload
//! demands each node admits; and random fit's mixing function.

use std::sync::{Arc, PoisonError, RwLock};

use rm_model::fragment::Workload;
use rm_model::{Resource, ResourceType, Unit};
use smallvec::SmallVec;

/// A node's GPU device: its position, the index of its GPU capacity, its maximum and whether
/// the request's GPU requirements admit it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Device {
    pub(crate) position: u32,
    pub(crate) dim: u32,
    pub(crate) maximum: i64,
    pub(crate) admitted: bool,
}

/// One node of a table.
#[derive(Debug)]
pub(crate) struct Node {
    /// The resource with the cores and memory.
    pub(crate) host: u32,
    pub(crate) cpu: Option<(usize, i64)>,
    pub(crate) memory: Option<(usize, i64)>,
    pub(crate) devices: SmallVec<[Device; 8]>,
    /// Its index among the label's domains.
    pub(crate) domain: usize,
}

impl Node {
    pub(crate) fn gpu_capacity(&self) -> i64 {
        self.devices.iter().map(|d| d.maximum).sum()
    }
}

/// The nodes of one label for one request shape, with what scoring them needs.
#[derive(Debug)]
pub(crate) struct NodeTable {
    pub(crate) label: String,
    pub(crate) shape: Vec<(ResourceType, Unit, Vec<rm_model::Constraint>)>,
    pub(crate) nodes: Vec<Node>,
    /// The largest node's cores and GPU (best fit's scale).
    pub(crate) max_cpu: i64,
    pub(crate) max_gpu: i64,
    /// Per workload demand id, per node: whether the demand's devices are admitted there
    /// (computed when the demand first appears), for the workload of `epoch`.
    pub(crate) admission: RwLock<Arc<Admission>>,
    /// The first device of each node, to judge admission by.
    pub(crate) probes: Vec<Option<Resource>>,
}

/// Which workload demands each node admits, for one workload epoch.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    pub(crate) epoch: u64,
    /// Per demand id, per node.
    pub(crate) columns: Vec<Vec<bool>>,
    /// Per node, a hash of its admissions over every demand: nodes with the same signature
    /// (and the same free capacity) score alike.
    pub(crate) signatures: Vec<u64>,
}

impl NodeTable {
    /// Admission of every demand of `workload` on every node, extended for new demands.
    pub(crate) fn admission(&self, workload: &Workload, epoch: u64) -> Arc<Admission> {
        {
            let cached = self
                .admission
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if cached.epoch == epoch && cached.columns.len() == workload.demands().len() {
                return cached.clone();
            }
        }
        let mut cached = self
            .admission
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if cached.epoch == epoch && cached.columns.len() == workload.demands().len() {
            return cached.clone();
        }
        let mut next = Admission {
            epoch,
            columns: if cached.epoch == epoch {
                cached.columns.clone()
            } else {
                Vec::new()
            },
            signatures: Vec::new(),
        };
        for demand in &workload.demands()[next.columns.len()..] {
            let column = self
                .probes
                .iter()
                .map(|probe| {
                    probe
                        .as_ref()
                        .is_some_and(|p| demand.constraints.iter().all(|c| c.matches(p)))
                })
                .collect();
            next.columns.push(column);
        }
        next.signatures = (0..self.nodes.len())
            .map(|n| {
                let mut h = 0x51_7C_C1_B7_27_22_0A_95u64;
                for (d, column) in next.columns.iter().enumerate() {
                    if column[n] {
                        h = mix(h ^ d as u64);
                    }
                }
                h
            })
            .collect();
        *cached = Arc::new(next);
        cached.clone()
    }
}

/// A 64-bit mix (SplitMix64's finaliser): random fit's draws.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The most GPU devices one node may have for the node strategies to judge it.
pub(crate) const MAX_DEVICES: usize = 16;
