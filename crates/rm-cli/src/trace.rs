//! Trace importers: real workloads turned into [`TaskSpec`]s.

use std::collections::HashMap;
use std::path::Path;

use rm_facade::model::Quantity;
use rm_facade::{ConfigError, Problem};

use crate::scenario::{Seconds, TaskSpec};

fn problem(path: String, message: impl ToString) -> ConfigError {
    ConfigError::Invalid(vec![Problem {
        path,
        message: message.to_string(),
    }])
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
        path: path.display().to_string(),
        message: err.to_string(),
    })
}

/// The task number and parent numbers of a DAG task name (`J5_3_4` → 5, [3, 4]); `None` for
/// an independent task (`task_…`, or any name not of that form).
pub fn dag_name(name: &str) -> Option<(u32, Vec<u32>)> {
    let digits = name.trim_start_matches(|c: char| c.is_ascii_alphabetic());
    if digits.len() == name.len() || name.starts_with("task_") {
        return None;
    }
    let mut numbers = digits.split('_').map(str::parse::<u32>);
    let own = numbers.next()?.ok()?;
    let parents: Result<Vec<u32>, _> = numbers.collect();
    parents.ok().map(|parents| (own, parents))
}

/// A number written with at most `scale` decimals (`50.0`, `0.39`), times 10^`scale`.
fn scaled(text: &str, scale: u32) -> Option<i64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > scale as usize {
        return None;
    }
    let mut value: i64 = whole.parse().ok()?;
    let mut digits = 0;
    for c in fraction.chars() {
        value = value
            .checked_mul(10)?
            .checked_add(i64::from(c.to_digit(10)?))?;
        digits += 1;
    }
    value.checked_mul(10_i64.checked_pow(scale - digits)?)
}

/// Imports Alibaba cluster-trace-v2018 batch tasks from `folder` (`batch_task.csv`, and
/// `batch_instance_by_task.csv` for instance durations): one task per row, `instance_num`
/// instances each holding `plan_cpu` (100 = one core) and `plan_mem` (percent of
/// `machine_memory`) for the task's mean instance duration; dependencies from the task names.
pub fn alibaba_batch_2018(
    folder: &Path,
    machine_memory: Quantity,
    until_s: Option<u64>,
    tenants: u32,
) -> Result<Vec<TaskSpec>, ConfigError> {
    let tasks_path = folder.join("batch_task.csv");
    let stats_path = folder.join("batch_instance_by_task.csv");
    let tasks_text = read(&tasks_path)?;
    let stats_text = read(&stats_path)?;
    let mut stats = stats_text.lines().skip(1);
    let mut out = Vec::new();
    let mut job_index: HashMap<String, u32> = HashMap::new();
    let mut job_tasks: HashMap<String, HashMap<u32, String>> = HashMap::new();
    let mut pending_parents: Vec<(usize, String, Vec<u32>)> = Vec::new();
    for (row, line) in tasks_text.lines().enumerate().skip(1) {
        let at = |field: &str| format!("{}:{}: {field}", tasks_path.display(), row + 1);
        let fields: Vec<&str> = line.split(',').collect();
        let [arrival, job, name, duration, cpu, mem, count] = fields[..] else {
            return Err(problem(
                at("row"),
                format!("expected 7 fields, found {}", fields.len()),
            ));
        };
        let stat_line = stats.next().ok_or_else(|| {
            problem(
                format!("{}", stats_path.display()),
                "has fewer rows than batch_task.csv",
            )
        })?;
        let stat: Vec<&str> = stat_line.split(',').collect();
        if stat.len() < 8 || stat[0] != job || stat[1] != name {
            return Err(problem(
                format!("{}:{}", stats_path.display(), row + 1),
                format!("does not describe task {job}/{name} of batch_task.csv"),
            ));
        }
        let arrival: u64 = arrival.parse().map_err(|_| {
            problem(
                at("job_arrival_time"),
                format!("{arrival:?} is not a number"),
            )
        })?;
        if until_s.is_some_and(|until| arrival >= until) {
            break;
        }
        let _task_duration: u64 = duration
            .parse()
            .map_err(|_| problem(at("duration"), format!("{duration:?} is not a number")))?;
        // Whole numbers written as `50.0`.
        let cpu_centi = scaled(cpu, 1)
            .filter(|tenths| *tenths > 0 && tenths % 10 == 0)
            .map(|tenths| tenths / 10)
            .ok_or_else(|| {
                problem(
                    at("plan_cpu"),
                    format!("{cpu:?} is not a positive whole number"),
                )
            })?;
        let mem_hundredths = scaled(mem, 2).filter(|mem| *mem >= 0).ok_or_else(|| {
            problem(
                at("plan_mem"),
                format!("{mem:?} is not a percentage with 2 decimals"),
            )
        })?;
        let count: u32 = count
            .parse()
            .ok()
            .filter(|count| *count > 0)
            .ok_or_else(|| {
                problem(
                    at("instance_num"),
                    format!("{count:?} is not a positive count"),
                )
            })?;
        let sum: u64 = stat[7].parse().map_err(|_| {
            problem(
                format!("{}:{}: duration_sum", stats_path.display(), row + 1),
                "not a number",
            )
        })?;
        let mean = sum.div_ceil(u64::from(count));
        // 100 = one core: a plan_cpu of 50 is 500 millicores.
        let cpu = Quantity::from_milli(cpu_centi * 10);
        // plan_mem percent of a machine, rounded up to a whole byte.
        let bytes = (i128::from(machine_memory.as_milli()) / 1000) * i128::from(mem_hundredths);
        let memory = Quantity::from_milli(
            i64::try_from(bytes.div_euclid(10_000) + i128::from(bytes.rem_euclid(10_000) != 0))
                .unwrap_or(i64::MAX)
                .saturating_mul(1000),
        );
        let next = u32::try_from(job_index.len()).unwrap_or(u32::MAX);
        let job_number = *job_index.entry(job.to_owned()).or_insert(next);
        let id = format!("{job}/{name}");
        if let Some((own, parents)) = dag_name(name) {
            job_tasks
                .entry(job.to_owned())
                .or_default()
                .insert(own, id.clone());
            if !parents.is_empty() {
                pending_parents.push((out.len(), job.to_owned(), parents));
            }
        }
        out.push(TaskSpec {
            id,
            tenant: format!("tenant-{}", job_number % tenants.max(1)),
            job: Some(job.to_owned()),
            arrival_s: Seconds::from_secs(arrival),
            duration_s: Seconds::from_secs(mean),
            cpu,
            memory,
            gpus: Quantity::ZERO,
            count,
            priority: None,
            after: Vec::new(),
            contention: None,
            gpu_models: Vec::new(),
        });
    }
    for (index, job, parents) in pending_parents {
        let names = &job_tasks[&job];
        for parent in parents {
            let Some(parent) = names.get(&parent) else {
                return Err(problem(
                    format!("{}: job {job}", tasks_path.display()),
                    format!(
                        "task {} depends on task {parent}, which the job lacks",
                        out[index].id
                    ),
                ));
            };
            out[index].after.push(parent.clone());
        }
    }
    Ok(out)
}

/// One node of the GPU trace: its name, cores, memory, GPUs and GPU model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuNode {
    /// `sn`.
    pub name: String,
    /// `cpu_milli` as cores.
    pub cpu: Quantity,
    /// `memory_mib` in bytes.
    pub memory: Quantity,
    /// `gpu`.
    pub gpus: u32,
    /// `model` (empty without GPUs).
    pub model: String,
}

fn number<T: std::str::FromStr>(text: &str, at: impl Fn() -> String) -> Result<T, ConfigError> {
    text.parse()
        .map_err(|_| problem(at(), format!("{text:?} is not a number")))
}

const MIB: i64 = 1024 * 1024;

/// Reads an `openb_node_list_*.csv` of the Alibaba GPU trace (2023).
pub fn alibaba_gpu_nodes(path: &Path) -> Result<Vec<GpuNode>, ConfigError> {
    let text = read(path)?;
    let mut nodes = Vec::new();
    for (row, line) in text.lines().enumerate().skip(1) {
        let at = |field: &str| format!("{}:{}: {field}", path.display(), row + 1);
        let fields: Vec<&str> = line.split(',').collect();
        let [name, cpu, memory, gpus, model] = fields[..] else {
            return Err(problem(
                at("row"),
                format!("expected 5 fields, found {}", fields.len()),
            ));
        };
        let cpu: i64 = number(cpu, || at("cpu_milli"))?;
        let memory: i64 = number(memory, || at("memory_mib"))?;
        nodes.push(GpuNode {
            name: name.to_owned(),
            cpu: Quantity::from_milli(cpu),
            memory: Quantity::from_milli(memory.saturating_mul(MIB).saturating_mul(1000)),
            gpus: number(gpus, || at("gpu"))
                .ok()
                .filter(|gpus| u64::from(*gpus) <= crate::scenario::MAX_NODE_DEVICES)
                .ok_or_else(|| {
                    problem(
                        at("gpu"),
                        format!(
                            "{:?} is not a count of GPUs from 0 to {}",
                            rm_facade::model::clip(gpus),
                            crate::scenario::MAX_NODE_DEVICES
                        ),
                    )
                })?,
            model: model.to_owned(),
        });
    }
    Ok(nodes)
}

/// Reads an `openb_pod_list_*.csv` of the Alibaba GPU trace (2023) as tasks of tenant
/// `tenant`: a pod asks `cpu_milli`, `memory_mib` and `num_gpu` whole GPUs, or
/// `gpu_milli` thousandths of one GPU, of the models in `gpu_spec`. With `fill`, pods arrive
/// one a second in list order and never leave; otherwise at their creation time (rebased to
/// the first) until their deletion time.
pub fn alibaba_gpu_pods(
    path: &Path,
    tenant: &str,
    fill: bool,
    limit: Option<usize>,
) -> Result<Vec<TaskSpec>, ConfigError> {
    let text = read(path)?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name);
    let need = |name: &str| {
        column(name).ok_or_else(|| {
            problem(
                format!("{}: header", path.display()),
                format!("no column {name}"),
            )
        })
    };
    let (name_at, cpu_at, memory_at, gpus_at, milli_at) = (
        need("name")?,
        need("cpu_milli")?,
        need("memory_mib")?,
        need("num_gpu")?,
        need("gpu_milli")?,
    );
    let spec_at = column("gpu_spec");
    let (created_at, deleted_at) = (column("creation_time"), column("deletion_time"));
    if !fill && (created_at.is_none() || deleted_at.is_none()) {
        return Err(problem(
            format!("{}: header", path.display()),
            "replay needs creation_time and deletion_time (this list has none: use mode = \"fill\")",
        ));
    }
    let mut out = Vec::new();
    let mut origin = None;
    for (row, line) in lines.enumerate() {
        if limit.is_some_and(|limit| out.len() >= limit) {
            break;
        }
        let at = |field: &str| format!("{}:{}: {field}", path.display(), row + 2);
        let fields: Vec<&str> = line.split(',').collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or("");
        let cpu: i64 = number(field(cpu_at), || at("cpu_milli"))?;
        let memory: i64 = number(field(memory_at), || at("memory_mib"))?;
        let gpus: i64 = number(field(gpus_at), || at("num_gpu"))?;
        let milli: i64 = number(field(milli_at), || at("gpu_milli"))?;
        let gpus = if gpus == 1 && milli > 0 && milli < 1000 {
            Quantity::from_milli(milli)
        } else {
            Quantity::from_milli(gpus * 1000)
        };
        let mut models: Vec<String> = spec_at
            .map(field)
            .unwrap_or("")
            .split('|')
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect();
        models.sort();
        models.dedup();
        let (arrival_s, duration_s) = if fill {
            // Filling never ends a pod: the replay keeps every placed pod to the end.
            (out.len() as u64, 0)
        } else {
            let created: u64 = number(field(created_at.unwrap_or(0)), || at("creation_time"))?;
            let deleted: u64 = number(field(deleted_at.unwrap_or(0)), || at("deletion_time"))?;
            let origin = *origin.get_or_insert(created);
            (
                created.saturating_sub(origin),
                deleted.saturating_sub(created),
            )
        };
        out.push(TaskSpec {
            id: field(name_at).to_owned(),
            tenant: tenant.to_owned(),
            job: None,
            arrival_s: Seconds::from_secs(arrival_s),
            duration_s: Seconds::from_secs(duration_s),
            cpu: Quantity::from_milli(cpu),
            memory: Quantity::from_milli(memory.saturating_mul(MIB).saturating_mul(1000)),
            gpus,
            count: 1,
            priority: None,
            after: Vec::new(),
            contention: None,
            gpu_models: models,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dag_names_give_the_task_and_its_parents() {
        assert_eq!(dag_name("M1"), Some((1, vec![])));
        assert_eq!(dag_name("R2_1"), Some((2, vec![1])));
        assert_eq!(dag_name("J5_3_4"), Some((5, vec![3, 4])));
        assert_eq!(dag_name("task_ODk2MzU=="), None);
        assert_eq!(dag_name("R2_x"), None);
    }

    #[test]
    fn numbers_scale_exactly() {
        assert_eq!(scaled("50.0", 0), None);
        assert_eq!(scaled("50", 0), Some(50));
        assert_eq!(scaled("0.39", 2), Some(39));
        assert_eq!(scaled("5.1", 2), Some(510));
        assert_eq!(scaled("0.391", 2), None);
    }
}
