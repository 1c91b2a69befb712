//! The scenario format: a facade configuration (`[manager]`, `[policy]`, `[contention]`, …)
//! plus what a replay needs: `[simulation]`, `[[cluster]]` node groups, `[[tenants]]`,
//! `[[tasks]]` (with DAG dependencies) or a `[trace]` importer. See `docs/scenario.md`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use rm_facade::model::{Quantity, ReservationStrategy};
use rm_facade::policy::ResourceQuota;
use rm_facade::{Config, ConfigError, PolicyKind, Problem};
use serde::Deserialize;

/// How the next tenant to serve is chosen: from the facade's `[policy]`, or forced by
/// [`Scenario::order`](Scenario::order) (as `rmctl compare --policy` does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Arrival order.
    Fifo,
    /// Highest priority first.
    Priority,
    /// Lowest dominant share first.
    Fair,
    /// Lowest dominant share over weight first.
    Weighted,
}

impl Order {
    /// Parses `fifo`, `priority`, `fair` or `weighted`.
    pub fn parse(name: &str) -> Option<Order> {
        match name {
            "fifo" => Some(Order::Fifo),
            "priority" => Some(Order::Priority),
            "fair" => Some(Order::Fair),
            "weighted" => Some(Order::Weighted),
            _ => None,
        }
    }

    /// The order the facade's `[policy]` gives.
    pub(crate) fn of(config: &Config) -> Order {
        let has = |kind| config.policy.order.contains(&kind);
        if has(PolicyKind::Weighted) {
            Order::Weighted
        } else if has(PolicyKind::Fair) {
            Order::Fair
        } else if has(PolicyKind::Priority) {
            Order::Priority
        } else {
            Order::Fifo
        }
    }

    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            Order::Fifo => "fifo",
            Order::Priority => "priority",
            Order::Fair => "fair",
            Order::Weighted => "weighted",
        }
    }
}

/// Keys of a scenario file that belong to the replay rather than to the facade.
pub const SCENARIO_KEYS: [&str; 6] = [
    "simulation",
    "cluster",
    "tenants",
    "tasks",
    "generate",
    "trace",
];

/// A workload to replay and the system to replay it on.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The facade's configuration (the node groups of [`Scenario::cluster`] are added to its
    /// resources when the replay starts).
    pub config: Config,
    /// The replay's own settings.
    pub simulation: SimulationSettings,
    /// Node groups.
    pub cluster: Vec<NodeGroup>,
    /// Tenants (requesters).
    pub tenants: Vec<Tenant>,
    /// Tasks.
    pub tasks: Vec<TaskSpec>,
    /// A trace to import instead of (or besides) `tasks`.
    pub trace: Option<TraceSettings>,
    /// The folder relative paths are read from (the scenario file's).
    pub base: PathBuf,
    /// Serve tenants in this order whatever `[policy]` says (set by `rmctl compare`).
    pub order: Option<Order>,
}

/// How the replay runs.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulationSettings {
    /// A name for the report.
    pub name: String,
    /// The placement strategy of every request.
    pub strategy: ReservationStrategy,
    /// How many waiting tasks of one tenant a scheduling pass looks at behind a blocked one.
    pub backfill_depth: usize,
    /// Virtual seconds between samples of the time series (0: chosen from the workload).
    pub sample_every_s: u64,
    /// Virtual seconds between ticks of the manager (expiry, autoscaling).
    pub tick_every_s: u64,
}

impl Default for SimulationSettings {
    fn default() -> SimulationSettings {
        SimulationSettings {
            name: "scenario".into(),
            strategy: ReservationStrategy::BinPack,
            backfill_depth: 64,
            sample_every_s: 0,
            tick_every_s: 15,
        }
    }
}

/// `count` identical nodes named `prefix-0`, `prefix-1`, …
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeGroup {
    /// Name prefix.
    pub prefix: String,
    /// How many nodes at the start.
    pub count: u32,
    /// Cores per node.
    pub cpu: Quantity,
    /// Memory per node, in bytes (`64Gi`).
    #[serde(default)]
    pub memory: Quantity,
    /// GPUs per node.
    #[serde(default)]
    pub gpus: Quantity,
    /// Model each GPU as a device of its own (`<node>-gpu-<k>`, one device each, labelled
    /// with its node), so that a fraction of a GPU stays on one device and a task's parts stay
    /// on one node; otherwise a node's GPUs are one pooled capacity.
    #[serde(default)]
    pub gpu_devices: bool,
    /// Labels of every node (a `pool` label names the group in reports).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Grow and shrink the group between these node counts with `[[scaling]]` rules naming
    /// `prefix` (the metric: the group's busiest dimension with waiting demand, in percent).
    #[serde(default)]
    pub autoscale: Option<AutoscaleRange>,
}

/// The node counts an autoscaled group may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoscaleRange {
    /// Fewest nodes.
    pub min: u32,
    /// Most nodes.
    pub max: u32,
}

/// A tenant: the requester its tasks ask as.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// Its name (the requester id).
    pub name: String,
    /// Its weight under the weighted policy.
    #[serde(default = "one")]
    pub weight: u32,
    /// Its priority class (from `[[priorities.classes]]`).
    #[serde(default)]
    pub class: Option<String>,
    /// Its hard quota per type.
    #[serde(default)]
    pub quota: Option<ResourceQuota>,
}

fn one() -> u32 {
    1
}

/// A task: `count` identical instances, each holding its amounts for `duration_s`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Unique id.
    pub id: String,
    /// The tenant it belongs to.
    pub tenant: String,
    /// The job it belongs to (for job completion times); its own id when absent.
    #[serde(default)]
    pub job: Option<String>,
    /// When it arrives, in virtual seconds (to the millisecond).
    #[serde(default)]
    pub arrival_s: Seconds,
    /// How long each instance runs, in virtual seconds (to the millisecond).
    pub duration_s: Seconds,
    /// Cores per instance.
    pub cpu: Quantity,
    /// Memory per instance, in bytes.
    #[serde(default)]
    pub memory: Quantity,
    /// GPUs per instance.
    #[serde(default)]
    pub gpus: Quantity,
    /// Instances.
    #[serde(default = "one")]
    pub count: u32,
    /// Its priority (the tenant's class decides when absent).
    #[serde(default)]
    pub priority: Option<i32>,
    /// Tasks that must finish before it starts.
    #[serde(default)]
    pub after: Vec<String>,
    /// Label `contention=<class>` for the contention strategy of a request class.
    #[serde(default)]
    pub contention: Option<String>,
    /// GPU models the task accepts (the `model` label of GPU devices); any when empty.
    #[serde(default)]
    pub gpu_models: Vec<String>,
}

/// `tasks` tasks arriving every `every_s` seconds from `start_s`, named `prefix-0`, …; with
/// `chain` > 1, each run of `chain` consecutive tasks is one job whose tasks wait for each
/// other in turn.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generator {
    /// Task id prefix.
    pub prefix: String,
    /// The tenant.
    pub tenant: String,
    /// How many tasks.
    pub tasks: u32,
    /// First arrival, virtual seconds (to the millisecond).
    #[serde(default)]
    pub start_s: Seconds,
    /// Seconds between arrivals (to the millisecond).
    pub every_s: Seconds,
    /// Tasks per dependency chain (1: independent tasks).
    #[serde(default = "one")]
    pub chain: u32,
    /// Each instance's run time, seconds (to the millisecond).
    pub duration_s: Seconds,
    /// Cores per instance.
    pub cpu: Quantity,
    /// Memory per instance, bytes.
    #[serde(default)]
    pub memory: Quantity,
    /// GPUs per instance.
    #[serde(default)]
    pub gpus: Quantity,
    /// Instances per task.
    #[serde(default = "one")]
    pub count: u32,
    /// Priority (the tenant's class decides when absent).
    #[serde(default)]
    pub priority: Option<i32>,
    /// Contention class label.
    #[serde(default)]
    pub contention: Option<String>,
}

impl Generator {
    fn expand(&self) -> Vec<TaskSpec> {
        let chain = self.chain.max(1);
        (0..self.tasks)
            .map(|i| {
                let job = format!("{}-job-{}", self.prefix, i / chain);
                let after = if i % chain == 0 {
                    Vec::new()
                } else {
                    vec![format!("{}-{}", self.prefix, i - 1)]
                };
                TaskSpec {
                    id: format!("{}-{i}", self.prefix),
                    tenant: self.tenant.clone(),
                    job: Some(job),
                    arrival_s: Seconds::from_millis(
                        self.start_s
                            .as_millis()
                            .saturating_add(u64::from(i).saturating_mul(self.every_s.as_millis())),
                    ),
                    duration_s: self.duration_s,
                    cpu: self.cpu,
                    memory: self.memory,
                    gpus: self.gpus,
                    count: self.count,
                    priority: self.priority,
                    after,
                    contention: self.contention.clone(),
                    gpu_models: Vec::new(),
                }
            })
            .collect()
    }
}

/// A trace importer.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "kebab-case")]
pub enum TraceSettings {
    /// Alibaba cluster-trace-v2018 batch jobs (`batch_task.csv` and
    /// `batch_instance_by_task.csv`).
    #[serde(rename = "alibaba-batch-2018")]
    AlibabaBatch2018 {
        /// The folder with the CSV files.
        path: PathBuf,
        /// Only jobs arriving before this many seconds.
        #[serde(default)]
        until_s: Option<u64>,
        /// Tenants to spread jobs over (round-robin by job), named `tenant-0`, …; 1 by default.
        #[serde(default)]
        tenants: Option<u32>,
    },
    /// Alibaba GPU cluster trace v2023 ("openb"): a node list and a pod list.
    #[serde(rename = "alibaba-gpu-2023")]
    AlibabaGpu2023 {
        /// The node list CSV (`openb_node_list_gpu_node.csv`): the cluster.
        nodes: PathBuf,
        /// The pod list CSV (`openb_pod_list_*.csv`).
        pods: PathBuf,
        /// `fill`: pods arrive one a second in list order and never leave; a pod that does
        /// not fit is dropped (how the FGD paper measures fragmentation). `replay`: pods
        /// arrive at their creation time, hold until their deletion time, and wait for room.
        #[serde(default)]
        mode: GpuMode,
        /// Only the first this many pods.
        #[serde(default)]
        limit: Option<usize>,
    },
}

/// How the GPU trace is replayed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GpuMode {
    /// Arrivals only, until the cluster is full; unplaceable pods are dropped.
    #[default]
    Fill,
    /// Creation and deletion times, with waiting.
    Replay,
}

/// The file as written: the facade's sections and the replay's, every one typed so that a
/// parse error names its line and column (unknown fields included).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    #[serde(default)]
    manager: rm_facade::ManagerSettings,
    #[serde(default)]
    resources: Vec<rm_facade::model::Resource>,
    #[serde(default)]
    limits: BTreeMap<rm_facade::model::ResourceType, rm_facade::LimitRange>,
    #[serde(default)]
    policy: rm_facade::PolicySettings,
    #[serde(default)]
    priorities: rm_facade::PrioritySettings,
    #[serde(default)]
    quotas: rm_facade::QuotaSettings,
    #[serde(default)]
    fair_share: rm_facade::FairShareSettings,
    #[serde(default)]
    contention: rm_facade::ContentionSettings,
    #[serde(default)]
    pools: Vec<rm_facade::PoolSettings>,
    #[serde(default)]
    scaling: Vec<rm_facade::ScalingSettings>,
    #[serde(default)]
    metrics: rm_facade::MetricsSettings,
    #[serde(default)]
    simulation: SimulationSettings,
    #[serde(default)]
    cluster: Vec<NodeGroup>,
    #[serde(default)]
    tenants: Vec<Tenant>,
    #[serde(default)]
    tasks: Vec<TaskSpec>,
    #[serde(default)]
    generate: Vec<Generator>,
    #[serde(default)]
    trace: Option<TraceSettings>,
}

/// Parses and checks a scenario; relative paths are read from `base`.
pub fn parse(text: &str, base: &Path) -> Result<Scenario, ConfigError> {
    let file: ScenarioFile = toml::from_str(text)
        .map_err(|err| ConfigError::Parse(rm_facade::model::clip_lines(&err.to_string())))?;
    let config = Config {
        ledger: Default::default(),
        manager: file.manager,
        resources: file.resources,
        limits: file.limits,
        policy: file.policy,
        priorities: file.priorities,
        quotas: file.quotas,
        fair_share: file.fair_share,
        contention: file.contention,
        pools: file.pools,
        scaling: file.scaling,
        metrics: file.metrics,
    };
    // Sizes and times are checked before anything is generated, so that a count of billions
    // fails at once instead of allocating for it.
    check_generators(&file.tasks, &file.generate, &file.tenants)?;
    let mut tasks = file.tasks;
    for generator in &file.generate {
        tasks.extend(generator.expand());
    }
    let scenario = Scenario {
        config,
        simulation: file.simulation,
        cluster: file.cluster,
        tenants: file.tenants,
        tasks,
        trace: file.trace,
        base: base.to_path_buf(),
        order: None,
    };
    scenario.check()?;
    Ok(scenario)
}

/// Reads, parses and checks a scenario file.
pub fn read(path: &Path) -> Result<Scenario, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
        path: path.display().to_string(),
        message: err.to_string(),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base).map_err(|err| match err {
        ConfigError::Parse(message) => ConfigError::Parse(format!("{}: {message}", path.display())),
        other => other,
    })
}

/// The longest virtual time a scenario may name: a hundred years, in seconds.
pub const MAX_SECONDS: u64 = 100 * 365 * 24 * 3600;

/// A virtual time or duration, exact to the millisecond: written as whole seconds (`30`) or
/// decimal seconds (`0.25`, `1.5`, down to `0.001`), so that short tasks (CI jobs, build
/// actions, pipeline steps of a few hundred milliseconds) can be expressed. A value finer
/// than a millisecond, negative, or beyond the 64-bit range of milliseconds is an error that
/// names the field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seconds {
    millis: u64,
}

impl Seconds {
    /// Whole seconds (saturating).
    pub const fn from_secs(seconds: u64) -> Seconds {
        Seconds {
            millis: seconds.saturating_mul(1000),
        }
    }

    /// Milliseconds.
    pub const fn from_millis(millis: u64) -> Seconds {
        Seconds { millis }
    }

    /// The value in milliseconds: the replay's unit of virtual time.
    pub const fn as_millis(self) -> u64 {
        self.millis
    }

    /// Whether the value was too large for milliseconds and is held at the largest.
    pub const fn is_saturated(self) -> bool {
        self.millis == u64::MAX
    }

    /// The value as an error message names it.
    fn named(self) -> String {
        if self.is_saturated() {
            "the value".to_owned()
        } else {
            format!("{self}")
        }
    }

    /// The value in seconds, for reports.
    pub fn as_secs_f64(self) -> f64 {
        self.millis as f64 / 1000.0
    }
}

/// Prints as decimal seconds without trailing zeros (`30`, `0.25`).
impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, fraction) = (self.millis / 1000, self.millis % 1000);
        if fraction == 0 {
            write!(f, "{whole}")
        } else {
            let digits = format!("{fraction:03}");
            write!(f, "{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Seconds, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Seconds;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("seconds, whole (30) or decimal to the millisecond (0.25)")
            }

            fn visit_u64<E: serde::de::Error>(self, seconds: u64) -> Result<Seconds, E> {
                // Saturating: the scenario's checks refuse anything past a hundred years, with
                // the field's path, together with every other problem.
                Ok(Seconds::from_secs(seconds))
            }

            fn visit_i64<E: serde::de::Error>(self, seconds: i64) -> Result<Seconds, E> {
                u64::try_from(seconds)
                    .map_err(|_| E::custom(format!("{seconds} s is negative")))
                    .and_then(|s| self.visit_u64(s))
            }

            fn visit_f64<E: serde::de::Error>(self, seconds: f64) -> Result<Seconds, E> {
                let millis = seconds * 1000.0;
                if millis.is_nan() || millis < 0.0 {
                    return Err(E::custom(format!(
                        "{seconds} s is negative or not a number"
                    )));
                }
                if millis >= u64::MAX as f64 {
                    return Ok(Seconds::from_millis(u64::MAX));
                }
                let rounded = millis.round();
                // Decimal fractions are not exact in binary: accept what is a whole number of
                // milliseconds to within far less than one.
                if (millis - rounded).abs() > 1e-6 * rounded.max(1.0) {
                    return Err(E::custom(format!(
                        "{seconds} s is finer than a millisecond, the resolution of virtual time"
                    )));
                }
                Ok(Seconds::from_millis(rounded as u64))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The most tasks a scenario may name, written out and generated together.
pub const MAX_TASKS: u64 = 1_000_000;

/// The most instances one task may have.
pub const MAX_INSTANCES: u32 = 1_000_000;

/// The most nodes one `[[cluster]]` group may have (at the start, or at its autoscaled most),
/// and all groups together.
pub const MAX_NODES: u32 = 100_000;

/// The most instances all tasks together may have, written out and generated (three times
/// the Alibaba 2018 hour's 3.06 million).
pub const MAX_ALL_INSTANCES: u64 = 10_000_000;

/// The most GPU devices one node may have where each is a resource of its own
/// (`gpu_devices`, and every node of the GPU trace).
pub const MAX_NODE_DEVICES: u64 = 64;

/// The most GPU devices of their own all nodes together may have (each is a resource).
pub const MAX_DEVICES: u64 = 200_000;

/// The longest text a generator repeats in every task it makes (`prefix`, `contention`).
pub const MAX_GENERATOR_TEXT: usize = 253;

/// Whether `text` is a scenario (it has one of [`SCENARIO_KEYS`] as a top-level table or key),
/// read from its lines, so that a file whose values do not parse is still told apart from a
/// configuration by what it is.
pub fn looks_like_scenario(text: &str) -> bool {
    let mut in_table = false;
    for line in text.lines() {
        let line = line.trim_start();
        if let Some(header) = line.strip_prefix('[') {
            let name = header.trim_start_matches('[').trim_start();
            let name = name
                .split(|c: char| c == ']' || c == '.' || c.is_whitespace())
                .next()
                .unwrap_or_default()
                .trim_matches('"');
            if SCENARIO_KEYS.contains(&name) {
                return true;
            }
            in_table = true;
        } else if !in_table
            && let Some((key, _)) = line.split_once('=')
            && SCENARIO_KEYS.contains(&key.trim().trim_matches('"'))
        {
            return true;
        }
    }
    false
}

/// Every problem of the generators (sizes, times, the tenant and the text each task repeats),
/// and of the total numbers of tasks and instances: what must hold before a generator makes
/// its tasks, so that it never makes a million of something the run would refuse.
fn check_generators(
    tasks: &[TaskSpec],
    generators: &[Generator],
    tenants: &[Tenant],
) -> Result<(), ConfigError> {
    let mut problems = Problems(Vec::new());
    let mut total = tasks.len() as u64;
    let mut instances = tasks
        .iter()
        .fold(0u64, |sum, task| sum.saturating_add(u64::from(task.count)));
    for (i, generator) in generators.iter().enumerate() {
        let path = |field: &str| format!("generate[{i}].{field}");
        total = total.saturating_add(u64::from(generator.tasks));
        instances = instances
            .saturating_add(u64::from(generator.tasks).saturating_mul(u64::from(generator.count)));
        if !tenants.iter().any(|t| t.name == generator.tenant) {
            problems.add(
                path("tenant"),
                format!(
                    "no tenant named {:?}",
                    rm_facade::model::clip(&generator.tenant)
                ),
            );
        }
        for (field, text) in [
            ("prefix", Some(&generator.prefix)),
            ("contention", generator.contention.as_ref()),
        ] {
            if let Some(text) = text
                && text.len() > MAX_GENERATOR_TEXT
            {
                problems.add(
                    path(field),
                    format!(
                        "{} bytes is longer than {MAX_GENERATOR_TEXT} (every task repeats it)",
                        text.len()
                    ),
                );
            }
        }
        if u64::from(generator.tasks) > MAX_TASKS {
            problems.add(
                path("tasks"),
                format!("{} is more than {MAX_TASKS} tasks", generator.tasks),
            );
        }
        if generator.count > MAX_INSTANCES {
            problems.add(
                path("count"),
                format!("{} is more than {MAX_INSTANCES} instances", generator.count),
            );
        }
        problems.times(
            &path,
            &[
                ("start_s", generator.start_s),
                ("every_s", generator.every_s),
                ("duration_s", generator.duration_s),
            ],
        );
        let last = u64::from(generator.tasks.saturating_sub(1))
            .checked_mul(generator.every_s.as_millis())
            .and_then(|span| span.checked_add(generator.start_s.as_millis()));
        if last.is_none_or(|last| last > MAX_SECONDS * 1000) {
            problems.add(
                path("every_s"),
                format!(
                    "the last of {} tasks would arrive after {MAX_SECONDS} s (a hundred years of virtual time)",
                    generator.tasks
                ),
            );
        }
    }
    let path = if generators.is_empty() {
        "tasks"
    } else {
        "generate"
    };
    problems.0.extend(total_problems(path, total, instances));
    if problems.0.is_empty() {
        Ok(())
    } else {
        Err(ConfigError::Invalid(problems.0))
    }
}

/// What is wrong with `tasks` tasks of `instances` instances in all, at `path`: the totals
/// every source of tasks is held to (the file's, generated, imported from a trace).
pub(crate) fn total_problems(path: &str, tasks: u64, instances: u64) -> Vec<Problem> {
    [
        (tasks, MAX_TASKS, "tasks"),
        (instances, MAX_ALL_INSTANCES, "instances"),
    ]
    .into_iter()
    .filter(|(count, max, _)| count > max)
    .map(|(count, max, what)| Problem {
        path: path.into(),
        message: format!("{count} {what} in all is more than {max}"),
    })
    .collect()
}

struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, path: String, message: impl ToString) {
        self.0.push(Problem {
            path,
            message: message.to_string(),
        });
    }

    /// Refuses each of `times` past a hundred years of virtual time, at `path(field)`.
    fn times(&mut self, path: &dyn Fn(&str) -> String, times: &[(&str, Seconds)]) {
        for &(field, seconds) in times {
            if seconds > Seconds::from_secs(MAX_SECONDS) {
                self.add(
                    path(field),
                    format!(
                        "{} is more than {MAX_SECONDS} (a hundred years of virtual time)",
                        seconds.named()
                    ),
                );
            }
        }
    }
}

impl Scenario {
    /// Reads the trace from `dir` (a user's own copy) instead of the file's `path`.
    pub fn set_trace_path(&mut self, dir: &Path) {
        match &mut self.trace {
            Some(TraceSettings::AlibabaBatch2018 { path, .. }) => {
                *path = std::env::current_dir().unwrap_or_default().join(dir);
            }
            Some(TraceSettings::AlibabaGpu2023 { nodes, pods, .. }) => {
                let dir = std::env::current_dir().unwrap_or_default().join(dir);
                for file in [nodes, pods] {
                    if let Some(name) = file.file_name() {
                        *file = dir.join(name);
                    }
                }
            }
            None => {}
        }
    }

    /// What validates but would not run as meant: a group with no nodes that cannot grow, and
    /// a task no node of the cluster can ever hold (too large, or asking for GPUs where there
    /// are none), which would wait for ever. Not judged when the cluster comes from a trace
    /// or from `[[resources]]`.
    pub fn warnings(&self) -> Vec<Problem> {
        let mut warnings = Problems(Vec::new());
        if self.trace.is_some() || !self.config.resources.is_empty() {
            return warnings.0;
        }
        for (i, group) in self.cluster.iter().enumerate() {
            if group.count == 0 && group.autoscale.is_none_or(|a| a.max == 0) {
                warnings.add(
                    format!("cluster[{i}].count"),
                    "the group has no nodes and cannot grow: nothing runs on it",
                );
            }
        }
        let live: Vec<&NodeGroup> = self
            .cluster
            .iter()
            .filter(|g| g.count > 0 || g.autoscale.is_some_and(|a| a.max > 0))
            .collect();
        for (i, task) in self.tasks.iter().enumerate() {
            let fits = |g: &&NodeGroup| {
                g.cpu >= task.cpu
                    && (task.memory <= Quantity::ZERO || g.memory >= task.memory)
                    && (task.gpus <= Quantity::ZERO || g.gpus >= task.gpus)
            };
            if live.iter().any(fits) {
                continue;
            }
            let why = if task.gpus > Quantity::ZERO && live.iter().all(|g| g.gpus <= Quantity::ZERO)
            {
                "asks for GPUs and no node has any: it would never run".to_owned()
            } else {
                format!(
                    "asks for {} cores, {} memory, {} GPUs per instance, more than any node has: it would never run",
                    task.cpu, task.memory, task.gpus
                )
            };
            warnings.add(format!("tasks[{i}]"), why);
        }
        warnings.0
    }

    /// Every problem of the replay's own sections (the facade's are checked when it is built).
    pub fn check(&self) -> Result<(), ConfigError> {
        let mut problems = Problems(Vec::new());
        let mut prefixes = BTreeSet::new();
        let mut all_nodes = 0u64;
        let (mut all_devices, mut node_devices_refused) = (0u64, false);
        for (i, group) in self.cluster.iter().enumerate() {
            let path = |field: &str| format!("cluster[{i}].{field}");
            if !prefixes.insert(group.prefix.as_str()) {
                problems.add(path("prefix"), format!("{} is used twice", group.prefix));
            }
            if group.cpu <= Quantity::ZERO {
                problems.add(path("cpu"), "must be positive");
            }
            let most = group
                .autoscale
                .map_or(group.count, |a| a.max.max(group.count));
            all_nodes += u64::from(most);
            if most > MAX_NODES {
                problems.add(
                    path(if group.count > MAX_NODES {
                        "count"
                    } else {
                        "autoscale"
                    }),
                    format!("{most} nodes is more than {MAX_NODES} in one group"),
                );
            }
            if group.memory < Quantity::ZERO {
                problems.add(path("memory"), "must not be negative");
            }
            if group.gpus < Quantity::ZERO {
                problems.add(path("gpus"), "must not be negative");
            }
            let devices = u64::try_from(group.gpus.as_milli() / 1000).unwrap_or(0);
            let devices = if group.gpu_devices { devices } else { 0 };
            all_devices = all_devices.saturating_add(devices.saturating_mul(u64::from(most)));
            if devices > MAX_NODE_DEVICES {
                node_devices_refused = true;
                let why = "(gpu_devices makes each a resource)";
                let more = format!("is more than {MAX_NODE_DEVICES} {why}");
                problems.add(
                    path("gpus"),
                    format!("{devices} GPU devices on one node {more}"),
                );
            }
            if let Some(range) = group.autoscale
                && (range.min > range.max || group.count < range.min || group.count > range.max)
            {
                problems.add(
                    path("autoscale"),
                    format!(
                        "needs min <= count <= max (min {}, count {}, max {})",
                        range.min, group.count, range.max
                    ),
                );
            }
        }
        if all_nodes > u64::from(MAX_NODES)
            && self
                .cluster
                .iter()
                .all(|g| g.count <= MAX_NODES && g.autoscale.is_none_or(|a| a.max <= MAX_NODES))
        {
            problems.add(
                "cluster".into(),
                format!("{all_nodes} nodes in all groups is more than {MAX_NODES}"),
            );
        }
        if all_devices > MAX_DEVICES && !node_devices_refused {
            problems.add(
                "cluster".into(),
                format!("{all_devices} GPU devices in all groups is more than {MAX_DEVICES}"),
            );
        }
        let gpu_trace = matches!(self.trace, Some(TraceSettings::AlibabaGpu2023 { .. }));
        if self.cluster.is_empty() && self.config.resources.is_empty() && !gpu_trace {
            problems.add(
                "cluster".into(),
                "the scenario has no nodes and no [[resources]]",
            );
        }
        let mut tenants = BTreeSet::new();
        for (i, tenant) in self.tenants.iter().enumerate() {
            if !tenants.insert(tenant.name.as_str()) {
                problems.add(
                    format!("tenants[{i}].name"),
                    format!("{} is defined twice", tenant.name),
                );
            }
            if tenant.weight == 0 {
                problems.add(format!("tenants[{i}].weight"), "must be at least 1");
            }
            // The name is the requester id the run asks as.
            if let Err(err) = rm_facade::model::RequesterId::new(&tenant.name) {
                problems.add(format!("tenants[{i}].name"), err);
            }
        }
        let mut ids: HashMap<&str, usize> = HashMap::new();
        for (i, task) in self.tasks.iter().enumerate() {
            if ids.insert(task.id.as_str(), i).is_some() {
                problems.add(
                    format!("tasks[{i}].id"),
                    format!("{} is defined twice", task.id),
                );
            }
        }
        for (i, task) in self.tasks.iter().enumerate() {
            let path = |field: &str| format!("tasks[{i}].{field}");
            if !tenants.contains(task.tenant.as_str()) {
                problems.add(
                    path("tenant"),
                    format!("no tenant named {:?}", rm_facade::model::clip(&task.tenant)),
                );
            }
            if task.cpu <= Quantity::ZERO {
                problems.add(path("cpu"), format!("must be positive, not {}", task.cpu));
            }
            for (field, amount) in [("memory", task.memory), ("gpus", task.gpus)] {
                if amount < Quantity::ZERO {
                    problems.add(path(field), format!("must not be negative, not {amount}"));
                }
            }
            if task.count == 0 {
                problems.add(path("count"), "must be at least 1");
            } else if task.count > MAX_INSTANCES {
                problems.add(
                    path("count"),
                    format!("{} is more than {MAX_INSTANCES} instances", task.count),
                );
            }
            problems.times(
                &path,
                &[
                    ("arrival_s", task.arrival_s),
                    ("duration_s", task.duration_s),
                ],
            );
            for parent in &task.after {
                if !ids.contains_key(parent.as_str()) {
                    problems.add(path("after"), format!("no task named {parent:?}"));
                } else if parent == &task.id {
                    problems.add(path("after"), "a task cannot wait for itself");
                }
            }
        }
        if let Some(cycle) = self.cycle(&ids) {
            let first = ids[cycle[0].as_str()];
            problems.add(
                format!("tasks[{first}].after"),
                format!("dependency cycle: {}", cycle.join(" -> ")),
            );
        }
        if problems.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems.0))
        }
    }

    /// A dependency cycle among the tasks, as ids from a task back to itself.
    fn cycle(&self, ids: &HashMap<&str, usize>) -> Option<Vec<String>> {
        // Iterative depth-first search; 0 unvisited, 1 on the stack, 2 done.
        let mut state = vec![0u8; self.tasks.len()];
        for start in 0..self.tasks.len() {
            if state[start] != 0 {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            state[start] = 1;
            while let Some(&mut (task, ref mut next)) = stack.last_mut() {
                let parents = &self.tasks[task].after;
                if *next < parents.len() {
                    let parent = parents[*next].as_str();
                    *next += 1;
                    let Some(&p) = ids.get(parent) else { continue };
                    match state[p] {
                        0 => {
                            state[p] = 1;
                            stack.push((p, 0));
                        }
                        1 => {
                            let at = stack.iter().position(|(t, _)| *t == p).unwrap_or(0);
                            let mut cycle: Vec<String> = stack[at..]
                                .iter()
                                .map(|(t, _)| self.tasks[*t].id.clone())
                                .collect();
                            cycle.push(self.tasks[p].id.clone());
                            return Some(cycle);
                        }
                        _ => {}
                    }
                } else {
                    state[task] = 2;
                    stack.pop();
                }
            }
        }
        None
    }
}
