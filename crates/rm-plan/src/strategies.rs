//! What the node strategies keep in a catalog between placements: the fragmentation
//! strategy's target workload (learned or given), random fit's seed and draws, GPU
//! clustering's record of which GPU demands run on each node, and the node tables.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use rm_model::fragment::{PodShape, Workload};
use rm_model::{ReservationRequest, ReservationStrategy};
use smallvec::SmallVec;

use crate::table::{NodeTable, mix};

/// What the node strategies keep between placements: the target workload of the
/// fragmentation strategy, random fit's draws, GPU clustering's record of which GPU demands
/// run on each node, and the node tables.
#[derive(Debug)]
pub struct NodeStrategies {
    pub(crate) workload: RwLock<Workload>,
    learning: AtomicBool,
    /// Bumped when the workload is replaced: demand ids restart.
    pub(crate) epoch: AtomicU64,
    seed: AtomicU64,
    draws: AtomicU64,
    /// Per label, per domain index: the GPU classes of the pods placed there (see
    /// `nodes::gpu_class`), counted.
    pub(crate) tags: Mutex<HashMap<String, Vec<Tags>>>,
    pub(crate) tables: RwLock<HashMap<u64, Vec<Arc<NodeTable>>>>,
}

pub(crate) type Tags = SmallVec<[(u32, i64, u32); 4]>;

impl Default for NodeStrategies {
    fn default() -> NodeStrategies {
        NodeStrategies {
            workload: RwLock::default(),
            learning: AtomicBool::new(true),
            epoch: AtomicU64::new(0),
            seed: AtomicU64::new(0),
            draws: AtomicU64::new(0),
            tags: Mutex::default(),
            tables: RwLock::default(),
        }
    }
}

impl NodeStrategies {
    /// Counts `request`'s shape into the target workload, when it is a pod placed by the
    /// fragmentation strategy and the workload is learned (not given).
    pub fn observe(&self, request: &ReservationRequest) {
        if request.strategy != ReservationStrategy::Fragmentation
            || !self.learning.load(Ordering::Relaxed)
        {
            return;
        }
        if let Some(shape) = PodShape::of(request) {
            self.workload
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .observe(&shape);
        }
    }

    /// Fixes the target workload: the fragmentation strategy measures against `workload` and
    /// stops learning from the requests it places.
    pub fn set_workload(&self, workload: Workload) {
        *self
            .workload
            .write()
            .unwrap_or_else(PoisonError::into_inner) = workload;
        self.learning.store(false, Ordering::Relaxed);
        self.epoch.fetch_add(1, Ordering::Relaxed);
    }

    /// Seeds random fit's draws (the same seed and the same requests give the same choices).
    pub fn set_seed(&self, seed: u64) {
        self.seed.store(seed, Ordering::Relaxed);
        self.draws.store(0, Ordering::Relaxed);
    }

    /// The placement seed (random fit's draws and the fragmentation strategy's order of
    /// nodes come from it).
    pub(crate) fn seed(&self) -> u64 {
        self.seed.load(Ordering::Relaxed)
    }

    /// The next of random fit's draws.
    pub(crate) fn draw(&self) -> u64 {
        mix(self.seed.load(Ordering::Relaxed) ^ mix(self.draws.fetch_add(1, Ordering::Relaxed)))
    }

    /// Forgets the node tables and clustering records (the catalog changed).
    pub(crate) fn changed(&mut self) {
        self.tables
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.tags
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}
