//! The FGD paper's experiment on the Alibaba 2023 GPU trace (Weng et al., USENIX ATC '23,
//! §6, as its artifact runs it): a pod list in a seeded random order, topped up with pods drawn
//! from it with replacement until the GPU they ask reaches a share of the cluster's
//! ("inflation", 130% in the paper; a list asking more loses pods at random instead); placed
//! one by one in that order by the ledger (`rm-reserve`) under one strategy; never leaving; a
//! pod that fits nowhere fails and is not retried. Measured when the arrived GPU crosses each
//! checkpoint (90, 100, 110, 120 and 130% of the cluster's): the GPU allocated (exact, in
//! milli-GPU), the GPU free in fragments (each node's expected fragment for the pod list's
//! workload, as [`rm_facade::model::fragment`] defines it) and the GPU idle.
//!
//! Every grant is audited against an independent record of each node (cores, memory and the
//! share of each device, never above capacity; every part on one node; a device of an
//! accepted model). Runs are spread over the machine's cores; each run is one thread.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rm_facade::model::fragment::{NodeFree, PodShape, Workload};
use rm_facade::model::{
    ColocationGroup, LabelKey, LedgerError, ManualClock, Quantity, ReservationLedger,
    ReservationRequest, ReservationStrategy, Resource, ResourceType,
};
use rm_facade::reserve::ReservationManager;
use rm_facade::{ConfigError, Problem};
use serde::Serialize;

use crate::scenario::TaskSpec;
use crate::sim::measure::placement_ok;
use crate::sim::nodes::Machine;
use crate::sim::setup::pod_request;
use crate::trace::GpuNode;

/// The paper's checkpoints of arrived workload, in percent of the cluster's GPU.
pub const CHECKPOINTS: [u32; 5] = [90, 100, 110, 120, 130];

/// What to run: the cluster, the pod lists, the strategies and the seeds.
pub struct Experiment {
    /// The node list.
    pub nodes: Vec<GpuNode>,
    /// Each pod list by name, its pods in list order.
    pub lists: Vec<(String, Vec<TaskSpec>)>,
    /// The strategies compared.
    pub strategies: Vec<ReservationStrategy>,
    /// Seeds 0 … `seeds` − 1 (the same pod sample per seed for every strategy).
    pub seeds: u32,
    /// Pods arrive until the GPU they ask reaches this percentage of the cluster's.
    pub inflation_pct: u32,
    /// Threads running runs (at least 1).
    pub threads: usize,
}

/// Mean, spread and range over seeds.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Stat {
    /// Mean.
    pub mean: f64,
    /// Standard deviation (of the sample).
    pub sd: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Stat {
    fn of(values: &[f64]) -> Stat {
        if values.is_empty() {
            return Stat::default();
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = if values.len() > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        Stat {
            mean,
            sd: var.sqrt(),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }
}

/// One run's measures at one checkpoint.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Checkpoint {
    /// Arrived workload, in percent of the cluster's GPU.
    pub arrived_pct: u32,
    /// GPU allocated, milli-GPU.
    pub allocated_milli: i64,
    /// GPU free in fragments, milli-GPU (the sum of each node's expected fragment).
    pub fragmented_milli: i64,
    /// GPU free, milli-GPU.
    pub idle_milli: i64,
    /// Cores allocated, in thousandths of the cluster's cores (parts per thousand).
    pub cpu_allocated_permille: i64,
}

/// One run: one pod list, one strategy, one seed.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Run {
    /// The pod list.
    pub list: String,
    /// The strategy.
    pub strategy: String,
    /// The seed.
    pub seed: u32,
    /// Pods that arrived.
    pub arrived: usize,
    /// Pods placed.
    pub placed: usize,
    /// Pods with GPUs that fitted nowhere.
    pub failed_gpu_pods: usize,
    /// Measures at each checkpoint.
    pub checkpoints: Vec<Checkpoint>,
    /// Grants audited.
    pub audited: u64,
    /// Grants that broke a node's capacity, a device's share, the one-node rule or a model
    /// constraint (0 in a correct ledger).
    pub violations: u64,
    /// Wall time of the run's placements, seconds.
    pub wall_s: f64,
    /// Median time of one placement, microseconds.
    pub placement_p50_us: f64,
    /// 99th percentile of one placement, microseconds.
    pub placement_p99_us: f64,
}

/// One strategy on one pod list, over the seeds.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StrategyResult {
    /// The strategy.
    pub strategy: String,
    /// GPU allocation ratio (allocated / cluster GPU, percent) at each checkpoint.
    pub allocation_pct: Vec<Stat>,
    /// GPU in fragments at each checkpoint, in GPUs.
    pub fragmented_gpus: Vec<Stat>,
    /// GPU idle at each checkpoint, in GPUs.
    pub idle_gpus: Vec<Stat>,
    /// Pods with GPUs that fitted nowhere.
    pub failed_gpu_pods: Stat,
    /// Grants audited, all seeds.
    pub audited: u64,
    /// Violations found, all seeds.
    pub violations: u64,
    /// Median placement time, microseconds (median over seeds).
    pub placement_p50_us: f64,
    /// 99th percentile placement time, microseconds (largest over seeds).
    pub placement_p99_us: f64,
}

/// One pod list's results.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ListResult {
    /// The pod list's name.
    pub list: String,
    /// Pods in the list.
    pub pods: usize,
    /// Per strategy.
    pub strategies: Vec<StrategyResult>,
}

/// The experiment's report.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Report {
    /// Nodes.
    pub nodes: usize,
    /// Cluster GPU, in GPUs.
    pub gpus: f64,
    /// Inflation, percent.
    pub inflation_pct: u32,
    /// Seeds per strategy and list.
    pub seeds: u32,
    /// Checkpoints, percent of arrived workload.
    pub checkpoints_pct: Vec<u32>,
    /// Per pod list.
    pub lists: Vec<ListResult>,
    /// Every run.
    pub runs: Vec<Run>,
    /// Wall time of the whole experiment, seconds.
    pub wall_s: f64,
}

/// A SplitMix64 stream: the experiment's seeded sampling.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), without modulo bias.
    fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next();
            if x < zone {
                return x % n;
            }
        }
    }
}

/// The pods of one seed, as indices into the list, in arrival order, as the paper's artifact
/// builds them (its simulator's `--shuffle-pod` and workload tuning): the whole list in a
/// seeded random order, then topped up with pods drawn from the list with replacement until
/// the GPU they ask reaches `inflation_pct` of `capacity_milli` (the last draw may cross
/// it), or, when the list alone asks more than that, pods removed at random until it no
/// longer does.
pub fn sample(pods: &[TaskSpec], seed: u32, inflation_pct: u32, capacity_milli: i64) -> Vec<usize> {
    let target = i128::from(capacity_milli) * i128::from(inflation_pct) / 100;
    let mut rng = Rng(u64::from(seed).wrapping_mul(0xA076_1D64_78BD_642F) ^ 0x5EED);
    if pods.iter().all(|p| p.gpus == Quantity::ZERO) {
        return Vec::new();
    }
    let gpus = |i: usize| i128::from(pods[i].gpus.as_milli());
    let mut out: Vec<usize> = (0..pods.len()).collect();
    for k in (1..out.len()).rev() {
        let j = rng.below(k as u64 + 1) as usize;
        out.swap(k, j);
    }
    let mut asked: i128 = out.iter().map(|&i| gpus(i)).sum();
    // The artifact removes pods at random positions, keeping the others' order; the last pod
    // of a random order is as random, and removing it costs nothing to move.
    while asked > target {
        let Some(i) = out.pop() else { break };
        asked -= gpus(i);
    }
    while asked < target {
        let i = rng.below(pods.len() as u64) as usize;
        asked += gpus(i);
        out.push(i);
    }
    out
}

/// The cluster as the ledger's resources, and where each resource is.
struct Cluster {
    resources: Vec<Resource>,
    /// By resource name: (node index, device index on the node or `None` for the host).
    at: HashMap<String, (usize, Option<usize>)>,
    /// For the audit: resource name → (node name, model).
    placement_of: HashMap<String, (String, Option<String>)>,
    /// Per node: cores, memory (milli) and device count.
    capacity: Vec<(i64, i64, usize)>,
    /// Per node: its first device, to judge a demand's constraints by.
    probes: Vec<Option<Resource>>,
    gpu_milli: i64,
}

fn invalid(path: &str, message: String) -> ConfigError {
    ConfigError::Invalid(vec![Problem {
        path: path.to_owned(),
        message,
    }])
}

/// The ledger's resources of a node list: per node, a host with its cores and memory and a
/// resource per GPU device, all labelled `node` (and devices `model`).
pub fn resources(nodes: &[GpuNode]) -> Result<Vec<Resource>, ConfigError> {
    Ok(cluster(nodes)?.resources)
}

fn cluster(nodes: &[GpuNode]) -> Result<Cluster, ConfigError> {
    let mut resources = Vec::new();
    let mut at = HashMap::new();
    let mut placement_of = HashMap::new();
    let mut capacity = Vec::new();
    let mut probes = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        let machine = Machine::of_trace(node);
        let made = machine.resources()?;
        let mut device = 0;
        let mut probe = None;
        for resource in made {
            let name = resource.name().as_str().to_owned();
            let is_device = resource.capacity_of(&ResourceType::Gpu).is_some();
            at.insert(name.clone(), (n, is_device.then_some(device)));
            placement_of.insert(
                name,
                (
                    resource.label("node").unwrap_or("").to_owned(),
                    resource.label("model").map(str::to_owned),
                ),
            );
            if is_device {
                device += 1;
                if probe.is_none() {
                    probe = Some(resource.clone());
                }
            }
            resources.push(resource);
        }
        capacity.push((node.cpu.as_milli(), node.memory.as_milli(), device));
        probes.push(probe);
    }
    let gpu_milli = nodes.iter().map(|n| i64::from(n.gpus) * 1000).sum();
    Ok(Cluster {
        resources,
        at,
        placement_of,
        capacity,
        probes,
        gpu_milli,
    })
}

/// The independent record of each node: what the grants took.
struct Record {
    cpu: Vec<i64>,
    memory: Vec<i64>,
    devices: Vec<Vec<i64>>,
}

impl Record {
    fn new(cluster: &Cluster) -> Record {
        Record {
            cpu: cluster.capacity.iter().map(|c| c.0).collect(),
            memory: cluster.capacity.iter().map(|c| c.1).collect(),
            devices: cluster.capacity.iter().map(|c| vec![1000; c.2]).collect(),
        }
    }

    /// Takes a grant; `false` when it breaks a capacity.
    fn take(&mut self, cluster: &Cluster, items: &[rm_facade::model::ReservationItem]) -> bool {
        let mut ok = true;
        for item in items {
            let Some(&(n, device)) = cluster.at.get(item.resource.as_str()) else {
                return false;
            };
            let amount = item.amount.as_milli();
            let left = match (device, &item.resource_type) {
                (Some(d), ResourceType::Gpu) => &mut self.devices[n][d],
                (None, ResourceType::Compute) => &mut self.cpu[n],
                (None, ResourceType::Memory) => &mut self.memory[n],
                _ => return false,
            };
            *left -= amount;
            ok &= *left >= 0;
        }
        ok
    }

    /// Cores taken, in thousandths of the cluster's.
    fn cpu_permille(&self, cluster: &Cluster) -> i64 {
        let capacity: i128 = cluster.capacity.iter().map(|c| i128::from(c.0)).sum();
        let free: i128 = self.cpu.iter().map(|c| i128::from(*c)).sum();
        i64::try_from((capacity - free) * 1000 / capacity.max(1)).unwrap_or(0)
    }

    fn free(&self, n: usize) -> NodeFree<'_> {
        NodeFree {
            cpu: self.cpu[n],
            memory: self.memory[n],
            devices: &self.devices[n],
        }
    }
}

/// The GPU in fragments over the cluster, in milli-GPU: each node's expected fragment for
/// `workload`.
fn fragmented(
    cluster: &Cluster,
    record: &Record,
    workload: &Workload,
    admission: &[Vec<bool>],
) -> i64 {
    (0..cluster.capacity.len())
        .map(|n| {
            workload.expected_fragment(&record.free(n), |d| {
                admission
                    .get(d)
                    .and_then(|c| c.get(n))
                    .copied()
                    .unwrap_or(false)
            })
        })
        .sum()
}

/// A pod list prepared for runs: its requests per strategy are built on demand.
struct List {
    name: String,
    pods: Vec<TaskSpec>,
    /// The pod list's own workload, for the fragment measure.
    workload: Workload,
    admission: Vec<Vec<bool>>,
}

/// The ledger's requests of `pods`, placed by `strategy`: each pod's cores and memory on its
/// node's host resource, its GPUs on that node's devices (see [`resources`]).
pub fn requests(
    pods: &[TaskSpec],
    strategy: ReservationStrategy,
) -> Result<Vec<ReservationRequest>, ConfigError> {
    let colocation =
        ColocationGroup::new("node").map_err(|err| invalid("tasks", err.to_string()))?;
    let node_label = LabelKey::new("node").map_err(|err| invalid("tasks", err.to_string()))?;
    pods.iter()
        .enumerate()
        .map(|(i, spec)| pod_request(spec, i, strategy, true, &colocation, &node_label))
        .collect()
}

/// Each pod list's requests per strategy, built by the first run that needs them.
type RequestCache = HashMap<(usize, ReservationStrategy), Arc<Vec<ReservationRequest>>>;

/// Runs the experiment (in parallel over `threads`), reporting each finished run to
/// `progress` (done, total).
pub fn run(
    experiment: &Experiment,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Report, rm_facade::Error> {
    let started = Instant::now();
    let cluster = cluster(&experiment.nodes)?;
    let mut lists = Vec::new();
    for (name, pods) in &experiment.lists {
        let shapes: Vec<PodShape> = requests(pods, ReservationStrategy::Greedy)?
            .iter()
            .filter_map(PodShape::of)
            .collect();
        let workload = Workload::from_shapes(&shapes);
        let admission = workload
            .demands()
            .iter()
            .map(|demand| {
                cluster
                    .probes
                    .iter()
                    .map(|p| {
                        p.as_ref()
                            .is_some_and(|p| demand.constraints.iter().all(|c| c.matches(p)))
                    })
                    .collect()
            })
            .collect();
        lists.push(List {
            name: name.clone(),
            pods: pods.clone(),
            workload,
            admission,
        });
    }
    let mut jobs = Vec::new();
    for (l, _) in lists.iter().enumerate() {
        for &strategy in &experiment.strategies {
            for seed in 0..experiment.seeds {
                jobs.push((l, strategy, seed));
            }
        }
    }
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Run, rm_facade::Error>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    let requests_cache: Mutex<RequestCache> = Mutex::default();
    std::thread::scope(|scope| {
        for _ in 0..experiment.threads.max(1) {
            scope.spawn(|| {
                loop {
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(l, strategy, seed)) = jobs.get(j) else {
                        break;
                    };
                    let list = &lists[l];
                    let built = {
                        let cached = requests_cache
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .get(&(l, strategy))
                            .cloned();
                        match cached {
                            Some(found) => Ok(found),
                            None => requests(&list.pods, strategy).map(|r| {
                                let r = Arc::new(r);
                                requests_cache
                                    .lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                                    .insert((l, strategy), r.clone());
                                r
                            }),
                        }
                    };
                    let outcome = built.map_err(rm_facade::Error::from).and_then(|requests| {
                        one_run(
                            &cluster,
                            list,
                            &requests,
                            strategy,
                            seed,
                            experiment.inflation_pct,
                        )
                    });
                    results
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)[j] = Some(outcome);
                    progress(done.fetch_add(1, Ordering::Relaxed) + 1, jobs.len());
                }
            });
        }
    });
    let mut runs = Vec::with_capacity(jobs.len());
    for outcome in results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .into_iter()
        .flatten()
    {
        runs.push(outcome?);
    }
    let gpus = cluster.gpu_milli as f64 / 1000.0;
    let lists = lists
        .iter()
        .map(|list| ListResult {
            list: list.name.clone(),
            pods: list.pods.len(),
            strategies: experiment
                .strategies
                .iter()
                .map(|strategy| summarise(&runs, &list.name, *strategy, cluster.gpu_milli))
                .collect(),
        })
        .collect();
    Ok(Report {
        nodes: experiment.nodes.len(),
        gpus,
        inflation_pct: experiment.inflation_pct,
        seeds: experiment.seeds,
        checkpoints_pct: CHECKPOINTS
            .iter()
            .copied()
            .filter(|c| *c <= experiment.inflation_pct)
            .collect(),
        lists,
        runs,
        wall_s: started.elapsed().as_secs_f64(),
    })
}

fn summarise(
    runs: &[Run],
    list: &str,
    strategy: ReservationStrategy,
    gpu_milli: i64,
) -> StrategyResult {
    let mine: Vec<&Run> = runs
        .iter()
        .filter(|r| r.list == list && r.strategy == strategy.as_str())
        .collect();
    let points = mine.first().map_or(0, |r| r.checkpoints.len());
    let per_point = |f: &dyn Fn(&Checkpoint) -> f64| -> Vec<Stat> {
        (0..points)
            .map(|k| {
                let values: Vec<f64> = mine
                    .iter()
                    .filter_map(|r| r.checkpoints.get(k).map(f))
                    .collect();
                Stat::of(&values)
            })
            .collect()
    };
    let mut p50s: Vec<f64> = mine.iter().map(|r| r.placement_p50_us).collect();
    p50s.sort_by(f64::total_cmp);
    StrategyResult {
        strategy: strategy.as_str().to_owned(),
        allocation_pct: per_point(&|c| c.allocated_milli as f64 * 100.0 / gpu_milli as f64),
        fragmented_gpus: per_point(&|c| c.fragmented_milli as f64 / 1000.0),
        idle_gpus: per_point(&|c| c.idle_milli as f64 / 1000.0),
        failed_gpu_pods: Stat::of(
            &mine
                .iter()
                .map(|r| r.failed_gpu_pods as f64)
                .collect::<Vec<_>>(),
        ),
        audited: mine.iter().map(|r| r.audited).sum(),
        violations: mine.iter().map(|r| r.violations).sum(),
        placement_p50_us: p50s.get(p50s.len() / 2).copied().unwrap_or(0.0),
        placement_p99_us: mine.iter().map(|r| r.placement_p99_us).fold(0.0, f64::max),
    }
}

fn one_run(
    cluster: &Cluster,
    list: &List,
    requests: &[ReservationRequest],
    strategy: ReservationStrategy,
    seed: u32,
    inflation_pct: u32,
) -> Result<Run, rm_facade::Error> {
    let ledger = ReservationManager::builder()
        .clock(Arc::new(ManualClock::new()))
        .default_ttl(Duration::from_secs(365 * 24 * 3600))
        .placement_seed(u64::from(seed))
        .build()
        .map_err(|err| invalid("experiment", err.to_string()))?;
    for resource in &cluster.resources {
        ledger
            .register_resource(resource.clone())
            .map_err(|err| invalid("experiment", err.to_string()))?;
    }
    let order = sample(&list.pods, seed, inflation_pct, cluster.gpu_milli);
    let mut record = Record::new(cluster);
    let mut checkpoints = Vec::new();
    let mut next_checkpoint = CHECKPOINTS
        .iter()
        .copied()
        .filter(|c| *c <= inflation_pct)
        .peekable();
    let (mut arrived_milli, mut allocated_milli) = (0i128, 0i64);
    let (mut placed, mut failed_gpu_pods, mut audited, mut violations) = (0, 0, 0u64, 0u64);
    let mut times = Vec::with_capacity(order.len());
    let started = Instant::now();
    for &i in &order {
        let spec = &list.pods[i];
        let gpus = spec.gpus.as_milli();
        let began = Instant::now();
        let outcome = ledger.reserve(&requests[i]);
        times.push(began.elapsed());
        match outcome {
            Ok(reservation) => {
                placed += 1;
                allocated_milli += gpus;
                audited += 1;
                let fits = record.take(cluster, &reservation.items);
                if !fits || !placement_ok(&reservation, &cluster.placement_of, &spec.gpu_models) {
                    violations += 1;
                }
            }
            Err(LedgerError::InsufficientCapacity { .. }) => {
                if gpus > 0 {
                    failed_gpu_pods += 1;
                }
            }
            Err(err) => return Err(invalid("experiment", err.to_string()).into()),
        }
        arrived_milli += i128::from(gpus);
        while let Some(&c) = next_checkpoint.peek() {
            if arrived_milli * 100 < i128::from(cluster.gpu_milli) * i128::from(c) {
                break;
            }
            next_checkpoint.next();
            checkpoints.push(Checkpoint {
                arrived_pct: c,
                allocated_milli,
                fragmented_milli: fragmented(cluster, &record, &list.workload, &list.admission),
                idle_milli: cluster.gpu_milli - allocated_milli,
                cpu_allocated_permille: record.cpu_permille(cluster),
            });
        }
    }
    let wall_s = started.elapsed().as_secs_f64();
    times.sort_unstable();
    let at = |q: usize| {
        times
            .get((times.len() * q / 100).min(times.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    Ok(Run {
        list: list.name.clone(),
        strategy: strategy.as_str().to_owned(),
        seed,
        arrived: order.len(),
        placed,
        failed_gpu_pods,
        checkpoints,
        audited,
        violations,
        wall_s,
        placement_p50_us: at(50),
        placement_p99_us: at(99),
    })
}

impl Report {
    /// The report as a text table: per pod list, a row per strategy with the allocation ratio
    /// (mean ± spread over seeds) at each checkpoint, then the GPU in fragments and idle at
    /// the last one.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut out = format!(
            "FGD protocol: {} nodes, {:.0} GPUs, the pod list shuffled and topped up with replacement to {}% of the GPU, {} seeds\n",
            self.nodes, self.gpus, self.inflation_pct, self.seeds
        );
        for list in &self.lists {
            let _ = writeln!(
                out,
                "\npod list {} ({} pods): GPU allocation ratio at arrived workload",
                list.list, list.pods
            );
            let _ = write!(out, "{:<16}", "strategy");
            for c in &self.checkpoints_pct {
                let _ = write!(out, "{:>16}", format!("{c}%"));
            }
            let _ = writeln!(
                out,
                "{:>12}{:>10}{:>10}{:>10}",
                "fragmented", "idle", "failed", "p50 µs"
            );
            for s in &list.strategies {
                let _ = write!(out, "{:<16}", s.strategy);
                for stat in &s.allocation_pct {
                    let _ = write!(out, "{:>16}", format!("{:.2} ± {:.2}", stat.mean, stat.sd));
                }
                let last = |v: &[Stat]| v.last().map_or(0.0, |s| s.mean);
                let _ = writeln!(
                    out,
                    "{:>12.1}{:>10.1}{:>10.0}{:>10.1}",
                    last(&s.fragmented_gpus),
                    last(&s.idle_gpus),
                    s.failed_gpu_pods.mean,
                    s.placement_p50_us
                );
            }
        }
        let audited: u64 = self.runs.iter().map(|r| r.audited).sum();
        let violations: u64 = self.runs.iter().map(|r| r.violations).sum();
        let _ = writeln!(
            out,
            "\nplacement audit: {audited} grants, {violations} violations; {} runs in {:.0} s",
            self.runs.len(),
            self.wall_s
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Seconds;
    use rm_facade::model::{ReservationItem, ResourceName};

    fn pod(gpus: i64) -> TaskSpec {
        TaskSpec {
            id: "p".into(),
            tenant: "pods".into(),
            job: None,
            arrival_s: Seconds::from_secs(0),
            duration_s: Seconds::from_secs(0),
            cpu: Quantity::from_units(1),
            memory: Quantity::ZERO,
            gpus: Quantity::from_milli(gpus),
            count: 1,
            priority: None,
            after: Vec::new(),
            contention: None,
            gpu_models: Vec::new(),
        }
    }

    #[test]
    fn sampling_reaches_the_inflation_and_repeats_by_seed() {
        let pods = [pod(1000), pod(0), pod(500), pod(2000)];
        let order = sample(&pods, 3, 130, 10_000);
        let asked: i64 = order.iter().map(|&i| pods[i].gpus.as_milli()).sum();
        assert!((13_000..15_000).contains(&asked), "{asked}");
        assert_eq!(order, sample(&pods, 3, 130, 10_000));
        assert_ne!(order, sample(&pods, 4, 130, 10_000));
        // Every pod can be drawn, CPU-only ones too.
        let long = sample(&pods, 1, 10_000, 10_000);
        for i in 0..pods.len() {
            assert!(long.contains(&i), "pod {i} never drawn");
        }
        assert!(sample(&[pod(0)], 1, 130, 10_000).is_empty());
        // The whole list first, in a seeded order, then the draws.
        let list: Vec<TaskSpec> = (0..40).map(|i| pod(100 + i)).collect();
        let order = sample(&list, 7, 130, 10_000);
        let mut first: Vec<usize> = order[..list.len()].to_vec();
        assert_ne!(first, (0..list.len()).collect::<Vec<_>>(), "shuffled");
        first.sort_unstable();
        assert_eq!(first, (0..list.len()).collect::<Vec<_>>(), "each pod once");
        let asked: i64 = order.iter().map(|&i| list[i].gpus.as_milli()).sum();
        assert!((13_000..13_140).contains(&asked), "{asked}");
        // A list that asks more than the target loses pods at random, then the last draw
        // crosses the target.
        let order = sample(&list, 7, 40, 10_000);
        assert!(order.len() < list.len());
        let asked: i64 = order.iter().map(|&i| list[i].gpus.as_milli()).sum();
        assert!((4_000..4_140).contains(&asked), "{asked}");
    }

    #[test]
    fn stats_over_seeds() {
        let stat = Stat::of(&[1.0, 2.0, 3.0]);
        assert_eq!(
            (stat.mean, stat.sd, stat.min, stat.max),
            (2.0, 1.0, 1.0, 3.0)
        );
        assert_eq!(Stat::of(&[]), Stat::default());
    }

    /// The independent record refuses a grant past a device's share or a node's cores.
    #[test]
    fn the_record_catches_overdrawn_capacity() {
        let nodes = [GpuNode {
            name: "n".into(),
            cpu: Quantity::from_units(8),
            memory: Quantity::from_units(1024),
            gpus: 2,
            model: "T4".into(),
        }];
        let cluster = cluster(&nodes).unwrap();
        let mut record = Record::new(&cluster);
        let item = |resource: &str, resource_type: ResourceType, milli: i64| ReservationItem {
            requirement: 0,
            minimum: None,
            resource: ResourceName::new(resource).unwrap(),
            resource_type: resource_type.clone(),
            amount: Quantity::from_milli(milli),
            unit: match &resource_type {
                ResourceType::Gpu => rm_facade::model::Unit::DEVICES,
                _ => rm_facade::model::Unit::CORES,
            },
        };
        assert!(record.take(
            &cluster,
            &[
                item("n", ResourceType::Compute, 6000),
                item("n-gpu-1", ResourceType::Gpu, 600)
            ]
        ));
        assert!(!record.take(&cluster, &[item("n-gpu-1", ResourceType::Gpu, 500)]));
        assert!(!record.take(&cluster, &[item("n", ResourceType::Compute, 3000)]));
        assert!(!record.take(&cluster, &[item("elsewhere", ResourceType::Gpu, 1)]));
    }
}
