//! What the replay's cluster is made of: machines as resources (a node group's, or the GPU
//! trace's), autoscaled node groups as `rm-scale` targets, and the record of preemptions the
//! ledger reports.

use super::*;

/// Records preemptions as the ledger reports them.
#[derive(Default)]
pub(super) struct Preemptions(Mutex<Vec<(ReservationId, Option<ReservationId>)>>);

impl EventSink for Preemptions {
    fn publish(&self, event: &Event) {
        if let EventKind::Ended {
            reservation,
            reason: ReservationState::Preempted,
            preempted_by,
            ..
        } = &event.kind
        {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((reservation.clone(), preempted_by.clone()));
        }
    }
}

impl Preemptions {
    pub(super) fn drain(&self) -> Vec<(ReservationId, Option<ReservationId>)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// A machine: one resource with its cores and memory (and its GPUs, pooled, unless they are
/// devices of their own), then one resource per GPU device; all labelled `node` = its name,
/// `group` = its pool, and with `labels`.
pub(crate) struct Machine<'a> {
    pub(crate) name: String,
    pub(crate) pool: &'a str,
    pub(crate) cpu: Quantity,
    pub(crate) memory: Quantity,
    pub(crate) gpus: Quantity,
    pub(crate) gpu_devices: bool,
    pub(crate) labels: Vec<(&'a str, &'a str)>,
}

impl Machine<'_> {
    pub(crate) fn resources(&self) -> Result<Vec<Resource>, ConfigError> {
        let invalid = |message: String| {
            ConfigError::Invalid(vec![Problem {
                path: format!("cluster.{}", self.pool),
                message,
            }])
        };
        let capacity = |amount: Quantity, unit: Unit| {
            ResourceCapacity::of(amount, unit).map_err(|err| invalid(err.to_string()))
        };
        let mut labels = Labels::new();
        for (key, value) in [("group", self.pool), ("node", self.name.as_str())]
            .into_iter()
            .chain(self.labels.iter().copied())
        {
            labels
                .insert(key, value)
                .map_err(|err| invalid(format!("label {key}: {err}")))?;
        }
        let mut node = Resource::new(
            &self.name,
            ResourceType::Compute,
            capacity(self.cpu, Unit::CORES)?,
        )
        .map_err(|err| invalid(err.to_string()))?;
        if self.memory > Quantity::ZERO {
            node = node.with_capacity(ResourceType::Memory, capacity(self.memory, Unit::BYTES)?);
        }
        if self.gpus > Quantity::ZERO && !self.gpu_devices {
            node = node.with_capacity(ResourceType::Gpu, capacity(self.gpus, Unit::DEVICES)?);
        }
        let mut out = vec![node.with_labels(labels.clone())];
        if self.gpu_devices {
            let devices = self.gpus.as_milli() / 1000;
            for k in 0..devices {
                let device = Resource::new(
                    &format!("{}-gpu-{k}", self.name),
                    ResourceType::Gpu,
                    capacity(Quantity::from_units(1), Unit::DEVICES)?,
                )
                .map_err(|err| invalid(err.to_string()))?;
                out.push(device.with_labels(labels.clone()));
            }
        }
        Ok(out)
    }
}

impl<'a> Machine<'a> {
    /// A machine of the GPU trace: its pool is its GPU model (`cpu-only` without GPUs), its
    /// GPUs devices of their own labelled with the model.
    pub(crate) fn of_trace(node: &'a crate::trace::GpuNode) -> Machine<'a> {
        let pool = if node.model.is_empty() {
            "cpu-only"
        } else {
            node.model.as_str()
        };
        let mut labels = Vec::new();
        if !node.model.is_empty() {
            labels.push(("model", node.model.as_str()));
        }
        Machine {
            name: node.name.clone(),
            pool,
            cpu: node.cpu,
            memory: node.memory,
            gpus: Quantity::from_units(i32::try_from(node.gpus).unwrap_or(i32::MAX)),
            gpu_devices: true,
            labels,
        }
    }
}

pub(super) fn node(group: &NodeGroup, index: u32) -> Result<Vec<Resource>, ConfigError> {
    Machine {
        name: format!("{}-{index}", group.prefix),
        pool: &group.prefix,
        cpu: group.cpu,
        memory: group.memory,
        gpus: group.gpus,
        gpu_devices: group.gpu_devices,
        labels: group
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
    }
    .resources()
}

/// An autoscaled node group as a scale target: nodes are registered and unregistered in the
/// ledger; the metric is the group's cores held plus the cores waiting tasks ask for, over its
/// cores, in percent.
pub(super) struct GroupTarget {
    pub(super) group: NodeGroup,
    pub(super) ledger: OnceLock<Arc<dyn ReservationLedger>>,
    pub(super) live: Mutex<Vec<u32>>,
    pub(super) next: Mutex<u32>,
    pub(super) waiting_cpu: Arc<AtomicI64>,
    pub(super) held_cpu: AtomicI64,
}

impl GroupTarget {
    pub(super) fn live(&self) -> std::sync::MutexGuard<'_, Vec<u32>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ScaleTarget for GroupTarget {
    fn size(&self) -> u64 {
        self.live().len() as u64
    }

    fn metric(&self) -> Quantity {
        let nodes = self.live().len() as i128;
        let capacity = i128::from(self.group.cpu.as_milli()) * nodes.max(1);
        let demand = i128::from(self.held_cpu.load(Ordering::Relaxed))
            + i128::from(self.waiting_cpu.load(Ordering::Relaxed));
        let milli_percent = demand * 100_000 / capacity;
        Quantity::from_milli(i64::try_from(milli_percent).unwrap_or(i64::MAX))
    }

    fn scale_to(&self, size: u64) -> Result<(), ScaleRefused> {
        let refused = |message: String| ScaleRefused { message };
        let ledger = self
            .ledger
            .get()
            .ok_or_else(|| refused("the ledger is not connected yet".into()))?;
        let mut live = self.live();
        while (live.len() as u64) < size {
            let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
            let index = *next;
            *next += 1;
            for resource in node(&self.group, index).map_err(|err| refused(err.to_string()))? {
                ledger
                    .register_resource(resource)
                    .map_err(|err| refused(err.to_string()))?;
            }
            live.push(index);
        }
        // Shrink by removing idle nodes, newest first; busy ones stay until a later tick.
        let mut at = live.len();
        while live.len() as u64 > size && at > 0 {
            at -= 1;
            let machine = format!("{}-{}", self.group.prefix, live[at]);
            let name = ResourceName::new(&machine).map_err(|err| refused(err.to_string()))?;
            if ledger.unregister_resource(&name).is_ok() {
                // Its devices hold nothing either: every hold has a part on the node.
                let devices = self.group.gpus.as_milli() / 1000;
                for k in 0..if self.group.gpu_devices { devices } else { 0 } {
                    if let Ok(device) = ResourceName::new(&format!("{machine}-gpu-{k}")) {
                        let _ = ledger.unregister_resource(&device);
                    }
                }
                live.remove(at);
            }
        }
        Ok(())
    }
}
