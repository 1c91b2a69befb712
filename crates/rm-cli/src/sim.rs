//! The replay: tasks arrive, wait, start, finish (or are preempted) in virtual time, every
//! grant made by the facade's `ResourceManager` on a manual clock.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use rm_facade::model::{
    ColocationGroup, Constraint, ContentionStrategy, Event, EventKind, EventSink, LabelKey, Labels,
    ManualClock, Priority, Quantity, RefusalReason, RequesterId, ReservationId, ReservationLedger,
    ReservationRequest, ReservationState, Resource, ResourceCapacity, ResourceName,
    ResourceRequirement, ResourceType, Timestamp, Unit,
};
use rm_facade::scale::{ScaleRefused, ScaleTarget};
use rm_facade::{ConfigError, Error, PolicyKind, Problem, ResourceManager};

use crate::report::{
    Fairness, GpuShare, GpuSummary, Jobs, Report, Sample, Saturation, TaskRecord, TenantShare,
    TypeUtilization, Waits,
};
use crate::scenario::{GpuMode, NodeGroup, Scenario, TaskSpec, Tenant, TraceSettings};
use crate::trace;

/// The dimensions a replay accounts: cores, bytes, devices.
const TYPES: [(ResourceType, &str); 3] = [
    (ResourceType::Compute, "cpu"),
    (ResourceType::Memory, "memory"),
    (ResourceType::Gpu, "gpu"),
];

/// The most samples a report keeps (the series ends there; figures cover what was sampled).
const MAX_SAMPLES: usize = 20_000;

/// The most ticks run over one quiet gap between events.
const MAX_QUIET_TICKS: u64 = 100;

/// Exact amounts per dimension, in thousandths of cores, bytes and devices.
type Amounts = [i128; 3];

fn amounts(cpu: Quantity, memory: Quantity, gpus: Quantity) -> Amounts {
    [cpu, memory, gpus].map(|q| i128::from(q.as_milli()))
}

use rm_facade::model::ppm;

mod events;
mod finish;
pub(crate) mod measure;
pub(crate) mod nodes;
mod replay;
pub(crate) mod setup;

use events::Events;
use measure::{capacities, histogram, percentile, placement_ok};
use nodes::{GroupTarget, Machine, Preemptions, node};
use replay::{Parts, Replay};
use setup::{Nodes, Settings, Tasks, Wired, Workload};

/// The order of tenants, defined with the scenario that names it (kept here too, where the
/// replay uses it).
pub use crate::scenario::Order;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    /// A task arrives.
    Arrive(usize),
    /// An instance's hold ends: its slot in `holds` and the slot's generation then.
    Finish(usize, u32),
}

struct TaskState {
    spec_index: usize,
    tenant: usize,
    job: usize,
    arrival: u64,
    duration: u64,
    amounts: Amounts,
    priority: i32,
    children: Vec<usize>,
    unmet: u32,
    arrived: bool,
    to_start: u32,
    running: u32,
    finished: u32,
    queued: bool,
    seq: u64,
    ready_at: u64,
    first_start: Option<u64>,
    end: Option<u64>,
    placed_on: Option<ResourceName>,
    /// The GPU devices its first instance holds, with the share of each (GPU devices only).
    devices: Vec<(ResourceName, Quantity)>,
    preempted: u32,
    preempted_by: Option<String>,
    held_back: Option<RefusalReason>,
    rejected: Option<String>,
    request: ReservationRequest,
}

/// A running instance. Slots are reused once an instance ends, so memory follows what runs,
/// not what ran; the generation tells a stale finish event from the slot's current hold.
struct Hold {
    id: ReservationId,
    task: usize,
    group: Option<usize>,
    live: bool,
    generation: u32,
}

/// Runs a replay. `progress` is told (virtual seconds done, tasks finished, tasks) now and then.
pub fn run(
    scenario: &Scenario,
    metrics_addr: Option<std::net::SocketAddr>,
    progress: &mut dyn FnMut(u64, usize, usize),
) -> Result<Report, Error> {
    replay(scenario, metrics_addr, &mut |_| {}, progress).map(|(report, _)| report)
}

/// The `/metrics` endpoint of a finished replay and the manager it serves: kept, they serve
/// the final state (so Prometheus and Grafana can be pointed at a replay); dropped, they stop.
#[derive(Debug)]
pub struct Serving {
    /// The endpoint.
    pub server: rm_facade::MetricsServer,
    /// The manager it serves (the endpoint holds it weakly).
    pub manager: ResourceManager,
}

/// [`run`], serving live metrics on `metrics_addr` when given: `serving` is told the bound
/// address once the endpoint listens (before the replay starts), and the endpoint is handed
/// back with the report, still serving the final state.
pub fn replay(
    scenario: &Scenario,
    metrics_addr: Option<std::net::SocketAddr>,
    serving: &mut dyn FnMut(std::net::SocketAddr),
    progress: &mut dyn FnMut(u64, usize, usize),
) -> Result<(Report, Option<Serving>), Error> {
    let wall = std::time::Instant::now();
    let workload = setup::workload(scenario)?;
    let Settings {
        mut config,
        order,
        priority,
        class_priority,
    } = setup::settings(scenario, &workload.tenants)?;
    let Nodes {
        pools,
        waiting_cpu,
        targets,
        node_group,
        placement_of,
        node_label,
    } = setup::nodes(scenario, &workload.gpu_machines, &mut config)?;
    let Wired {
        clock,
        preemptions,
        manager,
        server,
    } = setup::wire(&config, &targets, metrics_addr, serving)?;
    let tasks = setup::tasks(scenario, &workload, &class_priority, &node_label)?;
    let Workload {
        specs,
        tenants,
        fill,
        device_gpus,
        ..
    } = workload;
    let contention = &config.contention;
    let may_preempt = std::iter::once(contention.default)
        .chain(contention.classes.values().copied())
        .chain(contention.requesters.values().copied())
        .any(|strategy| {
            matches!(
                strategy,
                ContentionStrategy::Preempt | ContentionStrategy::Redistribute
            )
        });
    let mut run = Replay::new(Parts {
        scenario,
        order,
        priority,
        pools,
        waiting_cpu,
        targets,
        node_group,
        placement_of,
        clock,
        preemptions,
        manager,
        tasks,
        specs,
        tenants,
        fill,
        device_gpus,
        may_preempt,
    })?;
    run.run(progress)?;
    let (report, manager) = run.report(wall)?;
    let serving = server.map(|server| Serving { server, manager });
    Ok((report, serving))
}
