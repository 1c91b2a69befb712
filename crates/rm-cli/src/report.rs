//! What a replay found: [`Report`], printed as a table, written as JSON, per-task CSV or HTML.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// Utilisation of one dimension over the replay.
#[derive(Clone, Debug, Serialize)]
pub struct TypeUtilization {
    /// `cpu`, `memory` or `gpu`.
    pub resource_type: String,
    /// Mean over the samples, parts per million.
    pub average_ppm: u64,
    /// Highest sample, parts per million.
    pub peak_ppm: u64,
}

/// Waits from ready to start, per instance.
#[derive(Clone, Debug, Serialize)]
pub struct Waits {
    /// Median.
    pub p50_s: f64,
    /// 99th percentile.
    pub p99_s: f64,
    /// Longest.
    pub max_s: f64,
    /// Mean.
    pub mean_s: f64,
}

/// Job completion times (a job is its tasks; from its arrival to its last task's end).
#[derive(Clone, Debug, Serialize)]
pub struct Jobs {
    /// Jobs in the workload.
    pub count: usize,
    /// Jobs that completed.
    pub completed: usize,
    /// Median completion time.
    pub jct_p50_s: f64,
    /// 99th percentile.
    pub jct_p99_s: f64,
    /// Mean.
    pub jct_mean_s: f64,
    /// Whether completion times mean anything: not when filling (pods are placed and never
    /// leave, so a job "completes" when placed).
    pub completion_measured: bool,
}

/// One tenant's share against its entitlement, averaged over contended samples.
#[derive(Clone, Debug, Serialize)]
pub struct TenantShare {
    /// The tenant.
    pub tenant: String,
    /// Its weight.
    pub weight: u32,
    /// Contended samples in which it had demand (tasks waiting or running): the ones its
    /// share is measured on.
    pub active_samples: u64,
    /// Its weight over the weights of the tenants with demand, averaged over its active
    /// samples, parts per million (weight over all weights when it never had demand).
    pub entitled_ppm: u64,
    /// Its mean dominant share over its active samples, parts per million.
    pub average_share_ppm: u64,
    /// Average minus entitled.
    pub share_error_ppm: i64,
}

/// Fairness across tenants.
#[derive(Clone, Debug, Serialize)]
pub struct Fairness {
    /// Samples in which some task waited (the ones fairness is measured on).
    pub contended_samples: u64,
    /// Jain's index of share over entitlement among the tenants with demand in each
    /// contended sample, averaged over those samples (1 is perfectly fair).
    pub jain_index: f64,
    /// Per tenant.
    pub tenants: Vec<TenantShare>,
}

/// When a GPU task without a model constraint first found no room (filling).
#[derive(Clone, Debug, Serialize)]
pub struct Saturation {
    /// Virtual time of the first GPU task dropped for lack of room.
    pub at_s: f64,
    /// GPUs allocated then over the cluster's GPUs, ppm.
    pub allocation_ppm: u64,
    /// GPUs left unallocated then (fragments too small or in the wrong place).
    pub unallocated_gpus: f64,
}

/// GPU allocation, with every GPU placement audited.
#[derive(Clone, Debug, Serialize)]
pub struct GpuSummary {
    /// The cluster's GPUs.
    pub capacity_gpus: f64,
    /// GPUs the GPU tasks ask for in all.
    pub requested_gpus: f64,
    /// GPUs allocated at the end.
    pub allocated_gpus: f64,
    /// `allocated_gpus` over `capacity_gpus`, ppm.
    pub allocation_ppm: u64,
    /// Tasks that ask for GPUs.
    pub gpu_tasks: usize,
    /// Of those, the ones placed.
    pub gpu_tasks_placed: usize,
    /// The moment GPU tasks first found no room, when they did.
    pub saturation: Option<Saturation>,
    /// Free GPU capacity on devices that are partly used, at the end.
    pub fragmented_gpus_at_end: f64,
    /// GPU grants checked: every part on one node, each GPU item on one device, the model
    /// accepted.
    pub placements_audited: u64,
    /// Grants that failed the check.
    pub placement_violations: u64,
}

/// The state at one moment.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    /// Virtual time, seconds.
    pub t_s: f64,
    /// Utilisation per dimension in `Report::types` order (all three kept), ppm.
    pub utilization_ppm: Vec<u64>,
    /// CPU utilisation per node group (pool), in `Report::pools` order, ppm.
    pub pools_ppm: Vec<u64>,
    /// GPU utilisation per node group (pool), in `Report::pools` order, ppm (0 for a pool
    /// without GPUs: see `Report::gpu_pools`).
    pub pools_gpu_ppm: Vec<u64>,
    /// Instances waiting to start.
    pub waiting: u64,
    /// Each tenant's dominant share, ppm, in `Report::tenant_names` order.
    pub shares_ppm: Vec<u64>,
}

/// One task's fate.
#[derive(Clone, Debug, Serialize)]
pub struct TaskRecord {
    /// Its id.
    pub id: String,
    /// Its tenant.
    pub tenant: String,
    /// Its priority.
    pub priority: i32,
    /// Arrival.
    pub arrival_s: f64,
    /// Its first instance's start.
    pub start_s: Option<f64>,
    /// Its last instance's end.
    pub end_s: Option<f64>,
    /// First start minus arrival.
    pub wait_s: Option<f64>,
    /// Where its first instance ran.
    pub placed_on: Option<String>,
    /// The GPU devices its first instance held and its share of each (`500m` is half a
    /// GPU), when GPUs are devices; empty otherwise.
    pub gpu_devices: Vec<GpuShare>,
    /// Instances.
    pub instances: u32,
    /// How many times an instance of it was preempted.
    pub preempted: u32,
    /// The task whose request preempted it last.
    pub preempted_by: Option<String>,
    /// Why it was given up, if it was.
    pub rejected: Option<String>,
}

/// One GPU device a task held, and how much of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GpuShare {
    /// The device (`<node>-gpu-<k>`).
    pub device: String,
    /// The share of it, in GPUs (`1`, `500m`).
    pub share: String,
}

/// Everything a replay found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub name: String,
    /// The ordering policy (`priority`, `fair`, `weighted`, `fifo`).
    pub policy: String,
    /// The placement strategy.
    pub strategy: String,
    /// Tasks.
    pub tasks: usize,
    /// Instances.
    pub instances: u64,
    /// Tasks that finished.
    pub completed: usize,
    /// Tasks given up as never placeable.
    pub rejected: usize,
    /// Virtual time until the last task ended.
    pub makespan_s: f64,
    /// Utilisation per dimension.
    pub utilization: Vec<TypeUtilization>,
    /// Waits.
    pub wait: Waits,
    /// Job completion times.
    pub jobs: Jobs,
    /// Fairness.
    pub fairness: Fairness,
    /// Tasks held back at least once, by the first reason.
    pub refusals: BTreeMap<String, u64>,
    /// Instances preempted.
    pub preemptions: u64,
    /// Scaling decisions, oldest first.
    pub scaling: Vec<String>,
    /// Whether the ledger's audit found nothing wrong at the end.
    pub audit_clean: bool,
    /// GPU allocation, when the cluster has GPUs.
    pub gpu: Option<GpuSummary>,
    /// The dimensions with capacity.
    pub types: Vec<String>,
    /// Node groups (pools).
    pub pools: Vec<String>,
    /// Whether each pool (in `pools` order) had GPU capacity at some sample.
    pub gpu_pools: Vec<bool>,
    /// Tenants.
    pub tenant_names: Vec<String>,
    /// Each tenant's entitlement, ppm.
    pub entitled_ppm: Vec<u64>,
    /// The time series.
    pub samples: Vec<Sample>,
    /// Instances by wait from ready to start: (bucket label, count).
    pub wait_histogram: Vec<(String, u64)>,
    /// Wall-clock seconds the replay took.
    pub wall_s: f64,
    /// Per task (written by `--tasks`; left out of the JSON report).
    #[serde(skip)]
    pub records: Vec<TaskRecord>,
}

/// How one row of a side-by-side table reads a report.
type Cell = Box<dyn Fn(&Report) -> String>;

fn util(report: &Report, resource_type: &str, peak: bool) -> String {
    report
        .utilization
        .iter()
        .find(|u| u.resource_type == resource_type)
        .map_or_else(
            || "-".into(),
            |u| percent(if peak { u.peak_ppm } else { u.average_ppm }),
        )
}

/// A virtual duration in a unit that reads: milliseconds below a second (short tasks are
/// expressed to the millisecond), seconds with one decimal above.
fn span(seconds: f64) -> String {
    if seconds > 0.0 && seconds < 1.0 {
        format!("{:.0} ms", seconds * 1000.0)
    } else {
        format!("{seconds:.1} s")
    }
}

fn percent(ppm: u64) -> String {
    format!("{:.1}%", ppm as f64 / 10_000.0)
}

impl Report {
    /// The report as a readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let mut line = |text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        line(format!("scenario      {}", self.name));
        line(format!(
            "policy        {} (placement {})",
            self.policy, self.strategy
        ));
        line(format!(
            "tasks         {} ({} instances), {} completed, {} rejected",
            self.tasks, self.instances, self.completed, self.rejected
        ));
        line(format!("makespan      {}", span(self.makespan_s)));
        line(String::new());
        line("utilisation   type      average   peak".into());
        for u in &self.utilization {
            line(format!(
                "              {:<9} {:>7}   {:>6}",
                u.resource_type,
                percent(u.average_ppm),
                percent(u.peak_ppm)
            ));
        }
        if !self.pools.is_empty() && !self.samples.is_empty() {
            let per_pool = |of: &dyn Fn(&Sample) -> u64, pool: &str| {
                let values: Vec<u64> = self.samples.iter().map(of).collect();
                let average = values.iter().sum::<u64>() / values.len().max(1) as u64;
                let peak = values.iter().copied().max().unwrap_or(0);
                format!(
                    "              {:<9} {:>7}   {:>6}",
                    pool,
                    percent(average),
                    percent(peak)
                )
            };
            line("pool cpu      pool      average   peak".into());
            for (i, pool) in self.pools.iter().enumerate() {
                line(per_pool(&|s: &Sample| s.pools_ppm[i], pool));
            }
            if self.gpu_pools.iter().any(|&g| g) {
                line("pool gpu      pool      average   peak".into());
                for (i, pool) in self.pools.iter().enumerate() {
                    if self.gpu_pools.get(i).copied().unwrap_or(false) {
                        line(per_pool(&|s: &Sample| s.pools_gpu_ppm[i], pool));
                    }
                }
            }
        }
        line(String::new());
        line(format!(
            "wait          p50 {}   p99 {}   max {}   mean {}",
            span(self.wait.p50_s),
            span(self.wait.p99_s),
            span(self.wait.max_s),
            span(self.wait.mean_s)
        ));
        if self.jobs.completion_measured {
            line(format!(
                "jobs          {} of {} completed; completion time p50 {}, p99 {}, mean {}",
                self.jobs.completed,
                self.jobs.count,
                span(self.jobs.jct_p50_s),
                span(self.jobs.jct_p99_s),
                span(self.jobs.jct_mean_s)
            ));
        } else {
            line(format!(
                "jobs          {} of {} placed; completion times not measured (filling: pods never leave)",
                self.jobs.completed, self.jobs.count
            ));
        }
        line(String::new());
        if self.fairness.contended_samples == 0 {
            // Shares against entitlements mean something only while someone waits.
            line("fairness      not measured: no task ever waited".into());
        } else {
            line(format!(
                "fairness      Jain's index {:.3} over {} contended samples, among tenants with demand",
                self.fairness.jain_index, self.fairness.contended_samples
            ));
            line(
                "              tenant          weight  entitled  average share  error  (while it had demand)"
                    .into(),
            );
            for t in &self.fairness.tenants {
                line(format!(
                    "              {:<15} {:>6}  {:>8}  {:>13}  {:>+6.1}%",
                    t.tenant,
                    t.weight,
                    percent(t.entitled_ppm),
                    percent(t.average_share_ppm),
                    t.share_error_ppm as f64 / 10_000.0
                ));
            }
        }
        line(String::new());
        if self.refusals.is_empty() {
            line("held back     none".into());
        } else {
            let parts: Vec<String> = self
                .refusals
                .iter()
                .map(|(reason, count)| format!("{reason} {count}"))
                .collect();
            line(format!(
                "held back     {} (tasks, by first reason)",
                parts.join(", ")
            ));
        }
        line(format!("preemptions   {}", self.preemptions));
        if self.scaling.is_empty() {
            line("scaling       none".into());
        } else {
            line(format!("scaling       {} decisions", self.scaling.len()));
            for decision in &self.scaling {
                line(format!("              {decision}"));
            }
        }
        if let Some(gpu) = &self.gpu {
            line(format!(
                "gpu           {:.1} of {:.0} GPUs allocated ({}), {} of {} GPU tasks placed; {:.1} GPUs free in fragments",
                gpu.allocated_gpus,
                gpu.capacity_gpus,
                percent(gpu.allocation_ppm),
                gpu.gpu_tasks_placed,
                gpu.gpu_tasks,
                gpu.fragmented_gpus_at_end
            ));
            if let Some(saturation) = &gpu.saturation {
                line(format!(
                    "              saturation at {:.0} s: {} allocated, {:.1} GPUs unallocated",
                    saturation.at_s,
                    percent(saturation.allocation_ppm),
                    saturation.unallocated_gpus
                ));
            }
            line(format!(
                "              placements audited {}, violations {}",
                gpu.placements_audited, gpu.placement_violations
            ));
        }
        line(format!(
            "audit         {}",
            if self.audit_clean {
                "clean"
            } else {
                "VIOLATIONS"
            }
        ));
        line(format!("replayed in   {:.2} s", self.wall_s));
        out
    }

    /// Several reports of one workload side by side, a column each.
    pub fn side_by_side(reports: &[(String, Report)]) -> String {
        let rows: Vec<(&str, Cell)> = vec![
            (
                "tasks completed",
                Box::new(|r: &Report| format!("{}/{}", r.completed, r.tasks)),
            ),
            (
                "makespan",
                Box::new(|r: &Report| format!("{:.0} s", r.makespan_s)),
            ),
            ("cpu average", Box::new(|r: &Report| util(r, "cpu", false))),
            ("cpu peak", Box::new(|r: &Report| util(r, "cpu", true))),
            (
                "memory average",
                Box::new(|r: &Report| util(r, "memory", false)),
            ),
            ("gpu average", Box::new(|r: &Report| util(r, "gpu", false))),
            ("wait p50", Box::new(|r: &Report| span(r.wait.p50_s))),
            ("wait p99", Box::new(|r: &Report| span(r.wait.p99_s))),
            ("wait max", Box::new(|r: &Report| span(r.wait.max_s))),
            (
                "job completion p50",
                Box::new(|r: &Report| span(r.jobs.jct_p50_s)),
            ),
            (
                "job completion p99",
                Box::new(|r: &Report| span(r.jobs.jct_p99_s)),
            ),
            (
                "Jain's index",
                Box::new(|r: &Report| format!("{:.3}", r.fairness.jain_index)),
            ),
            (
                "held back",
                Box::new(|r: &Report| r.refusals.values().sum::<u64>().to_string()),
            ),
            (
                "preemptions",
                Box::new(|r: &Report| r.preemptions.to_string()),
            ),
            (
                "scaling decisions",
                Box::new(|r: &Report| r.scaling.len().to_string()),
            ),
            (
                "GPU allocated",
                Box::new(|r: &Report| {
                    r.gpu
                        .as_ref()
                        .map_or_else(|| "-".into(), |g| percent(g.allocation_ppm))
                }),
            ),
            (
                "GPU tasks placed",
                Box::new(|r: &Report| {
                    r.gpu.as_ref().map_or_else(
                        || "-".into(),
                        |g| format!("{}/{}", g.gpu_tasks_placed, g.gpu_tasks),
                    )
                }),
            ),
            (
                "GPUs unallocated at saturation",
                Box::new(|r: &Report| {
                    r.gpu
                        .as_ref()
                        .and_then(|g| g.saturation.as_ref())
                        .map_or_else(|| "-".into(), |s| format!("{:.1}", s.unallocated_gpus))
                }),
            ),
            (
                "GPUs in fragments at end",
                Box::new(|r: &Report| {
                    r.gpu.as_ref().map_or_else(
                        || "-".into(),
                        |g| format!("{:.1}", g.fragmented_gpus_at_end),
                    )
                }),
            ),
            (
                "GPU placement violations",
                Box::new(|r: &Report| {
                    r.gpu
                        .as_ref()
                        .map_or_else(|| "-".into(), |g| g.placement_violations.to_string())
                }),
            ),
            (
                "audit",
                Box::new(|r: &Report| {
                    if r.audit_clean {
                        "clean".into()
                    } else {
                        "VIOLATIONS".into()
                    }
                }),
            ),
        ];
        let width = reports
            .iter()
            .map(|(name, _)| name.len())
            .max()
            .unwrap_or(0)
            .max(12);
        let mut out = format!("{:<20}", "");
        for (name, _) in reports {
            let _ = write!(out, "  {name:>width$}");
        }
        out.push('\n');
        for (label, value) in rows {
            let cells: Vec<String> = reports.iter().map(|(_, report)| value(report)).collect();
            // A row that applies to none of the reports (GPU rows without GPUs) is left out.
            if cells.iter().all(|cell| cell == "-") {
                continue;
            }
            let _ = write!(out, "{label:<30}");
            for cell in cells {
                let _ = write!(out, "  {cell:>width$}");
            }
            out.push('\n');
        }
        out
    }

    /// One CSV record per task.
    pub fn tasks_csv(&self) -> String {
        let mut out = String::from(
            "id,tenant,priority,arrival_s,start_s,end_s,wait_s,placed_on,gpu_devices,instances,preempted,preempted_by,rejected\n",
        );
        let opt = |value: Option<f64>| value.map(|v| format!("{v:.3}")).unwrap_or_default();
        for r in &self.records {
            let _ = writeln!(
                out,
                "{},{},{},{:.3},{},{},{},{},{},{},{},{},{}",
                csv(&r.id),
                csv(&r.tenant),
                r.priority,
                r.arrival_s,
                opt(r.start_s),
                opt(r.end_s),
                opt(r.wait_s),
                csv(r.placed_on.as_deref().unwrap_or("")),
                csv(&r
                    .gpu_devices
                    .iter()
                    .map(|d| format!("{}={}", d.device, d.share))
                    .collect::<Vec<_>>()
                    .join(";")),
                r.instances,
                r.preempted,
                csv(r.preempted_by.as_deref().unwrap_or("")),
                csv(r.rejected.as_deref().unwrap_or("")),
            );
        }
        out
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}
