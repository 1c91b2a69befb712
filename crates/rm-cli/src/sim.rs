//! The replay: tasks arrive, wait, start, finish (or are preempted) in virtual time, every
//! grant made by the facade's `ResourceManager` on a manual clock.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
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

mod finish;
pub(crate) mod measure;
pub(crate) mod nodes;
pub(crate) mod setup;

use measure::{capacities, histogram, percentile, placement_ok};
use nodes::{GroupTarget, Machine, Preemptions, node};
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
        mut node_group,
        placement_of,
        node_label,
    } = setup::nodes(scenario, &workload.gpu_machines, &mut config)?;
    let Wired {
        clock,
        preemptions,
        manager,
        server,
    } = setup::wire(&config, &targets, metrics_addr, serving)?;
    let Tasks {
        mut tasks,
        job_arrival,
        mut job_left,
        instances,
    } = setup::tasks(scenario, &workload, &class_priority, &node_label)?;
    let Workload {
        specs,
        tenants,
        fill,
        device_gpus,
        ..
    } = workload;

    let mut events: BinaryHeap<Reverse<(u64, Ev)>> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| Reverse((t.arrival, Ev::Arrive(i))))
        .collect();
    let horizon = tasks.iter().map(|t| t.arrival).max().unwrap_or(0);
    let sample_every = if scenario.simulation.sample_every_s > 0 {
        scenario.simulation.sample_every_s.saturating_mul(1000)
    } else {
        (horizon / 200).max(1000)
    };
    let tick_every = scenario.simulation.tick_every_s.max(1).saturating_mul(1000);

    let mut queues: Vec<VecDeque<usize>> = vec![VecDeque::new(); tenants.len()];
    // Within a tenant, tasks wait by priority whenever the order involves priorities.
    let by_priority = order == Order::Priority || priority;
    let mut held: Vec<Amounts> = vec![[0; 3]; tenants.len()];
    let mut group_held: Vec<Amounts> = vec![[0; 3]; pools.len()];
    let mut gpu_pools: Vec<bool> = vec![false; pools.len()];
    let mut holds: Vec<Hold> = Vec::new();
    let mut free_slots: Vec<usize> = Vec::new();
    let mut hold_of: HashMap<ReservationId, usize> = HashMap::new();
    // Holds are looked up by id only to handle preemption; without a strategy that ends or
    // shrinks holds, the map is not kept.
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
    let mut waits: Vec<u64> = Vec::with_capacity(usize::try_from(instances).unwrap_or(0));
    let mut samples: Vec<Sample> = Vec::new();
    // Fairness, as schedulers measure it: in each sample where someone waits, among the
    // tenants with demand (tasks waiting or running), entitlements renormalised among them.
    let mut share_sums: Vec<u128> = vec![0; tenants.len()];
    let mut entitled_sums: Vec<u128> = vec![0; tenants.len()];
    let mut active_samples: Vec<u64> = vec![0; tenants.len()];
    let mut jain_sum: f64 = 0.0;
    let mut contended_samples: u64 = 0;
    let mut jcts: Vec<u64> = Vec::new();
    let mut preempted_total: u64 = 0;
    let mut seq: u64 = 0;
    let mut next_sample: u64 = 0;
    let mut next_tick: u64 = tick_every;
    let mut done_tasks = 0usize;
    let mut now: u64 = 0;
    let (mut capacity, mut group_capacity) = capacities(&manager, &pools)?;
    let weights: Vec<i128> = tenants
        .iter()
        .map(|t| i128::from(t.weight.max(1)))
        .collect();
    let total_weight: i128 = weights.iter().sum::<i128>().max(1);
    let mut last_progress = std::time::Instant::now();
    let mut audited: u64 = 0;
    let mut placement_violations: u64 = 0;
    let mut saturation: Option<(u64, i128)> = None;

    // The replay's own waiting reaches the manager's metrics as the wait queue's would
    // (rm_wait_seconds, rm_queue_depth), so the live metrics show what the report shows.
    let monitor = manager.monitor().clone();
    let mut waiting_instances: u64 = 0;
    macro_rules! observe {
        ($kind:expr) => {{
            monitor.publish(&Event {
                sequence: 0,
                at: Timestamp::ZERO + Duration::from_millis(now),
                kind: $kind,
            });
        }};
    }
    // A queued task's instances that will not start leave the queue unanswered.
    macro_rules! abandon {
        ($task:expr) => {{
            let task: usize = $task;
            for _ in 0..tasks[task].to_start {
                waiting_instances = waiting_instances.saturating_sub(1);
                observe!(EventKind::Dequeued {
                    requester: tasks[task].request.requester.clone(),
                    waited: Duration::from_millis(now.saturating_sub(tasks[task].ready_at)),
                    granted: false,
                });
            }
        }};
    }

    macro_rules! enqueue {
        ($task:expr) => {{
            let task: usize = $task;
            if !tasks[task].queued && tasks[task].to_start > 0 && tasks[task].rejected.is_none() {
                seq += 1;
                tasks[task].seq = seq;
                tasks[task].queued = true;
                tasks[task].ready_at = now;
                // Each tenant's queue is in the scenario's order: by priority (highest first,
                // arrival among equals) under `priority`, else by arrival.
                let queue = &mut queues[tasks[task].tenant];
                let position = if by_priority {
                    let priority = tasks[task].priority;
                    queue.partition_point(|&other| tasks[other].priority >= priority)
                } else {
                    queue.len()
                };
                queue.insert(position, task);
                waiting_instances += u64::from(tasks[task].to_start);
                observe!(EventKind::Queued {
                    requester: tasks[task].request.requester.clone(),
                    depth: usize::try_from(waiting_instances).unwrap_or(usize::MAX),
                });
            }
        }};
    }

    // A task whose last instance is done: its end, and its job's completion time.
    macro_rules! finish_task {
        ($task:expr) => {{
            let task: usize = $task;
            tasks[task].end = Some(now);
            done_tasks += 1;
            let job = tasks[task].job;
            job_left[job] -= 1;
            if job_left[job] == 0 {
                jcts.push(now - job_arrival[job]);
            }
        }};
    }

    // Preempted holds go back to waiting.
    macro_rules! drain_preemptions {
        () => {{
            for (victim, by) in preemptions.drain() {
                let Some(h) = hold_of.remove(&victim) else {
                    continue;
                };
                holds[h].live = false;
                free_slots.push(h);
                preempted_total += 1;
                let task = holds[h].task;
                let victim_tenant = tasks[task].tenant;
                let amounts = tasks[task].amounts;
                for d in 0..3 {
                    held[victim_tenant][d] -= amounts[d];
                    if let Some(g) = holds[h].group {
                        group_held[g][d] -= amounts[d];
                    }
                }
                let by_requester = by
                    .and_then(|by| hold_of.get(&by).map(|&bh| holds[bh].task))
                    .map(|t| specs[tasks[t].spec_index].id.clone());
                let state = &mut tasks[task];
                state.running -= 1;
                state.to_start += 1;
                state.preempted += 1;
                if by_requester.is_some() {
                    state.preempted_by = by_requester;
                }
                enqueue!(task);
            }
        }};
    }

    while let Some(&Reverse((at, _))) = events.peek() {
        // Samples and ticks that fall before the next event see the state as it is.
        while (next_sample < at || (next_sample == at && samples.is_empty()))
            && samples.len() < MAX_SAMPLES
        {
            let waiting: u64 = queues
                .iter()
                .flatten()
                .map(|&t| u64::from(tasks[t].to_start))
                .sum();
            let shares: Vec<u64> = held
                .iter()
                .map(|h| (0..3).map(|d| ppm(h[d], capacity[d])).max().unwrap_or(0))
                .collect();
            if waiting > 0 {
                contended_samples += 1;
                let active: Vec<usize> = (0..tenants.len())
                    .filter(|&i| !queues[i].is_empty() || held[i].iter().any(|&h| h > 0))
                    .collect();
                let active_weight: i128 = active.iter().map(|&i| weights[i]).sum::<i128>().max(1);
                let (mut sum, mut squares) = (0.0f64, 0.0f64);
                for &i in &active {
                    let entitled = ppm(weights[i], active_weight);
                    active_samples[i] += 1;
                    share_sums[i] += u128::from(shares[i]);
                    entitled_sums[i] += u128::from(entitled);
                    let x = shares[i] as f64 / entitled.max(1) as f64;
                    sum += x;
                    squares += x * x;
                }
                jain_sum += if squares > 0.0 {
                    sum * sum / (active.len() as f64 * squares)
                } else {
                    1.0
                };
            }
            let total: Amounts = held
                .iter()
                .fold([0; 3], |a, h| [a[0] + h[0], a[1] + h[1], a[2] + h[2]]);
            for (g, c) in group_capacity.iter().enumerate() {
                gpu_pools[g] |= c[2] > 0;
            }
            samples.push(Sample {
                t_s: next_sample as f64 / 1000.0,
                utilization_ppm: (0..3).map(|d| ppm(total[d], capacity[d])).collect(),
                pools_ppm: group_held
                    .iter()
                    .zip(&group_capacity)
                    .map(|(h, c)| ppm(h[0], c[0]))
                    .collect(),
                pools_gpu_ppm: group_held
                    .iter()
                    .zip(&group_capacity)
                    .map(|(h, c)| ppm(h[2], c[2]))
                    .collect(),
                waiting,
                shares_ppm: shares,
            });
            next_sample = next_sample.saturating_add(sample_every);
        }
        if !targets.is_empty() {
            // Nothing changes between events: over a long quiet gap, tick the last few only.
            let quiet = at.saturating_sub(next_tick) / tick_every;
            if quiet > MAX_QUIET_TICKS {
                next_tick = next_tick.saturating_add((quiet - MAX_QUIET_TICKS) * tick_every);
            }
            while next_tick <= at && next_tick < u64::MAX {
                clock.set(Timestamp::from_nanos(next_tick.saturating_mul(1_000_000)));
                let waiting: i128 = queues
                    .iter()
                    .flatten()
                    .map(|&t| tasks[t].amounts[0] * i128::from(tasks[t].to_start))
                    .sum();
                waiting_cpu.store(
                    i64::try_from(waiting).unwrap_or(i64::MAX),
                    Ordering::Relaxed,
                );
                for (g, target) in &targets {
                    target.held_cpu.store(
                        i64::try_from(group_held[*g][0]).unwrap_or(i64::MAX),
                        Ordering::Relaxed,
                    );
                }
                manager.tick()?;
                drain_preemptions!();
                (capacity, group_capacity) = capacities(&manager, &pools)?;
                for (_, target) in &targets {
                    for index in target.live().iter() {
                        node_group
                            .entry(format!("{}-{index}", target.group.prefix))
                            .or_insert_with(|| {
                                scenario
                                    .cluster
                                    .iter()
                                    .position(|g| g.prefix == target.group.prefix)
                                    .unwrap_or(0)
                            });
                    }
                }
                next_tick = next_tick.saturating_add(tick_every);
            }
        }
        now = at;
        clock.set(Timestamp::from_nanos(now.saturating_mul(1_000_000)));
        while let Some(&Reverse((t, event))) = events.peek() {
            if t != now {
                break;
            }
            events.pop();
            match event {
                Ev::Arrive(task) => {
                    tasks[task].arrived = true;
                    if tasks[task].unmet == 0 {
                        enqueue!(task);
                    }
                }
                Ev::Finish(h, generation) => {
                    if !holds[h].live || holds[h].generation != generation {
                        continue;
                    }
                    holds[h].live = false;
                    free_slots.push(h);
                    if may_preempt {
                        hold_of.remove(&holds[h].id);
                    }
                    manager.release(&holds[h].id, None)?;
                    let task = holds[h].task;
                    let amounts = tasks[task].amounts;
                    for d in 0..3 {
                        held[tasks[task].tenant][d] -= amounts[d];
                        if let Some(g) = holds[h].group {
                            group_held[g][d] -= amounts[d];
                        }
                    }
                    let state = &mut tasks[task];
                    state.running -= 1;
                    state.finished += 1;
                    if state.to_start == 0 && state.running == 0 {
                        finish_task!(task);
                        for child in tasks[task].children.clone() {
                            tasks[child].unmet -= 1;
                            if tasks[child].unmet == 0 && tasks[child].arrived {
                                enqueue!(child);
                            }
                        }
                    }
                }
            }
        }

        // One scheduling pass: serve tenants in the policy's order, one instance at a time.
        let mut failed: Vec<Amounts> = Vec::new();
        let mut blocked = vec![false; tenants.len()];
        loop {
            let mut best: Option<(usize, (i128, i128, u64))> = None;
            for (tenant, queue) in queues.iter().enumerate() {
                let Some(&head) = queue.front() else { continue };
                if blocked[tenant] {
                    continue;
                }
                let share = (0..3)
                    .map(|d| ppm(held[tenant][d], capacity[d]))
                    .max()
                    .unwrap_or(0);
                let key = match order {
                    Order::Fifo => (0, 0, tasks[head].seq),
                    Order::Priority => (-i128::from(tasks[head].priority), 0, tasks[head].seq),
                    Order::Fair => (i128::from(share), 0, tasks[head].seq),
                    Order::Weighted => (
                        i128::from(share) * total_weight / weights[tenant],
                        0,
                        tasks[head].seq,
                    ),
                };
                if best.is_none_or(|(_, k)| key < k) {
                    best = Some((tenant, key));
                }
            }
            let Some((tenant, _)) = best else { break };
            let depth = scenario
                .simulation
                .backfill_depth
                .max(1)
                .min(queues[tenant].len());
            let mut started = false;
            let mut position = 0;
            while position < depth.min(queues[tenant].len()) {
                let task = queues[tenant][position];
                let shape = tasks[task].amounts;
                if failed.iter().any(|f| (0..3).all(|d| shape[d] >= f[d])) {
                    position += 1;
                    continue;
                }
                // Each instance is its own reservation; the ledger names it.
                match manager.reserve(&tasks[task].request) {
                    Ok(reservation) => {
                        manager.confirm(&reservation.id, None)?;
                        if device_gpus && shape[2] > 0 {
                            audited += 1;
                            if !placement_ok(
                                &reservation,
                                &placement_of,
                                &specs[tasks[task].spec_index].gpu_models,
                            ) {
                                placement_violations += 1;
                            }
                        }
                        let node = reservation.items.first().map(|item| item.resource.clone());
                        let group = node
                            .as_ref()
                            .and_then(|n| node_group.get(n.as_str()).copied());
                        for d in 0..3 {
                            held[tenant][d] += shape[d];
                            if let Some(g) = group {
                                group_held[g][d] += shape[d];
                            }
                        }
                        let h = match free_slots.pop() {
                            Some(h) => {
                                let hold = &mut holds[h];
                                hold.id = reservation.id.clone();
                                hold.task = task;
                                hold.group = group;
                                hold.live = true;
                                hold.generation = hold.generation.wrapping_add(1);
                                h
                            }
                            None => {
                                holds.push(Hold {
                                    id: reservation.id.clone(),
                                    task,
                                    group,
                                    live: true,
                                    generation: 0,
                                });
                                holds.len() - 1
                            }
                        };
                        let generation = holds[h].generation;
                        if may_preempt {
                            hold_of.insert(reservation.id, h);
                        }
                        waiting_instances = waiting_instances.saturating_sub(1);
                        observe!(EventKind::Dequeued {
                            requester: tasks[task].request.requester.clone(),
                            waited: Duration::from_millis(now - tasks[task].ready_at),
                            granted: true,
                        });
                        let state = &mut tasks[task];
                        waits.push(now - state.ready_at);
                        state.first_start.get_or_insert(now);
                        if state.placed_on.is_none() {
                            if device_gpus {
                                state.devices = reservation
                                    .items
                                    .iter()
                                    .filter(|item| item.resource_type == ResourceType::Gpu)
                                    .map(|item| (item.resource.clone(), item.amount))
                                    .collect();
                            }
                            state.placed_on = node;
                        }
                        state.to_start -= 1;
                        state.running += 1;
                        let all_started = state.to_start == 0;
                        if !fill {
                            events.push(Reverse((
                                now.saturating_add(state.duration),
                                Ev::Finish(h, generation),
                            )));
                        }
                        if all_started {
                            state.queued = false;
                            queues[tenant].remove(position);
                            if fill {
                                // Filling: pods never leave; placed is done.
                                finish_task!(task);
                            }
                        }
                        started = true;
                    }
                    Err(err) => {
                        let reason = err.refusal().map(|r| r.reason);
                        match reason {
                            Some(RefusalReason::InsufficientCapacity) if fill => {
                                // Filling: a pod with no room now is dropped.
                                // Saturation: an unconstrained GPU pod finds no room (one
                                // limited to a rare model may fail long before).
                                if shape[2] > 0
                                    && saturation.is_none()
                                    && specs[tasks[task].spec_index].gpu_models.is_empty()
                                {
                                    let allocated: i128 = held.iter().map(|h| h[2]).sum();
                                    saturation = Some((now, allocated));
                                }
                                let state = &mut tasks[task];
                                state
                                    .held_back
                                    .get_or_insert(RefusalReason::InsufficientCapacity);
                                state.rejected = Some("no room when it arrived".into());
                                state.queued = false;
                                queues[tenant].remove(position);
                                abandon!(task);
                                done_tasks += 1;
                                continue;
                            }
                            Some(RefusalReason::InsufficientCapacity) => {
                                tasks[task]
                                    .held_back
                                    .get_or_insert(RefusalReason::InsufficientCapacity);
                                failed.push(shape);
                                position += 1;
                                continue;
                            }
                            Some(
                                reason @ (RefusalReason::QuotaExceeded
                                | RefusalReason::BorrowingLimitExceeded
                                | RefusalReason::FairShareExceeded
                                | RefusalReason::PriorityTooLow
                                | RefusalReason::PolicyDenied
                                | RefusalReason::Indeterminate),
                            ) => {
                                tasks[task].held_back.get_or_insert(reason);
                                break;
                            }
                            _ => {
                                // Never placeable (unsatisfiable or malformed): give up on it.
                                let state = &mut tasks[task];
                                state.rejected = Some(err.to_string());
                                state
                                    .held_back
                                    .get_or_insert(reason.unwrap_or(RefusalReason::InvalidRequest));
                                state.queued = false;
                                queues[tenant].remove(position);
                                abandon!(task);
                                done_tasks += 1;
                                continue;
                            }
                        }
                    }
                }
                drain_preemptions!();
                break;
            }
            if !started {
                blocked[tenant] = true;
            }
        }
        if last_progress.elapsed() >= Duration::from_millis(200) {
            progress(now / 1000, done_tasks, tasks.len());
            last_progress = std::time::Instant::now();
        }
    }
    progress(now / 1000, done_tasks, tasks.len());

    // The report.
    let report = finish::report(finish::Finished {
        scenario,
        order,
        tasks: &tasks,
        specs: &specs,
        tenants: &tenants,
        waits,
        jcts,
        jobs: job_arrival.len(),
        fill,
        weights: &weights,
        total_weight,
        active_samples: &active_samples,
        share_sums: &share_sums,
        entitled_sums: &entitled_sums,
        contended_samples,
        jain_sum,
        capacity,
        samples,
        manager: &manager,
        held: &held,
        saturation,
        audited,
        placement_violations,
        instances,
        preempted_total,
        pools: &pools,
        gpu_pools,
        wall,
    })?;
    let serving = server.map(|server| Serving { server, manager });
    Ok((report, serving))
}
