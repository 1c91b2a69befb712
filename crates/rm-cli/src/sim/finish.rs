//! The replay's last phase: the report, from what the event loop measured.

use super::*;

/// What the event loop leaves for the report.
pub(super) struct Finished<'a> {
    pub(super) scenario: &'a Scenario,
    pub(super) order: Order,
    pub(super) tasks: &'a [TaskState],
    pub(super) specs: &'a [TaskSpec],
    pub(super) tenants: &'a [Tenant],
    /// Every instance's wait, in milliseconds.
    pub(super) waits: Vec<u64>,
    /// Every completed job's completion time, in milliseconds.
    pub(super) jcts: Vec<u64>,
    /// How many jobs there were.
    pub(super) jobs: usize,
    pub(super) fill: bool,
    pub(super) weights: &'a [i128],
    pub(super) total_weight: i128,
    pub(super) active_samples: &'a [u64],
    pub(super) share_sums: &'a [u128],
    pub(super) entitled_sums: &'a [u128],
    pub(super) contended_samples: u64,
    pub(super) jain_sum: f64,
    pub(super) capacity: Amounts,
    pub(super) samples: Vec<Sample>,
    pub(super) manager: &'a ResourceManager,
    pub(super) held: &'a [Amounts],
    pub(super) saturation: Option<(u64, i128)>,
    pub(super) audited: u64,
    pub(super) placement_violations: u64,
    pub(super) instances: u64,
    pub(super) preempted_total: u64,
    pub(super) pools: &'a [String],
    pub(super) gpu_pools: Vec<bool>,
    pub(super) wall: std::time::Instant,
}

/// Phase 7, report: waits, jobs, fairness, refusals, utilisation, per-task records, the GPU
/// summary and the audit, as one [`Report`].
pub(super) fn report(finished: Finished<'_>) -> Result<Report, Error> {
    let Finished {
        scenario,
        order,
        tasks,
        specs,
        tenants,
        mut waits,
        mut jcts,
        jobs: job_count,
        fill,
        weights,
        total_weight,
        active_samples,
        share_sums,
        entitled_sums,
        contended_samples,
        jain_sum,
        capacity,
        samples,
        manager,
        held,
        saturation,
        audited,
        placement_violations,
        instances,
        preempted_total,
        pools,
        gpu_pools,
        wall,
    } = finished;
    let wait_histogram = histogram(&waits);
    let makespan = tasks.iter().filter_map(|t| t.end).max().unwrap_or(0);
    waits.sort_unstable();
    let wait = Waits {
        p50_s: percentile(&waits, 50),
        p99_s: percentile(&waits, 99),
        max_s: waits.last().map_or(0.0, |w| *w as f64 / 1000.0),
        mean_s: if waits.is_empty() {
            0.0
        } else {
            waits.iter().map(|w| *w as f64).sum::<f64>() / waits.len() as f64 / 1000.0
        },
    };
    jcts.sort_unstable();
    let jobs = Jobs {
        count: job_count,
        completed: jcts.len(),
        jct_p50_s: percentile(&jcts, 50),
        jct_p99_s: percentile(&jcts, 99),
        jct_mean_s: if jcts.is_empty() {
            0.0
        } else {
            jcts.iter().map(|j| *j as f64).sum::<f64>() / jcts.len() as f64 / 1000.0
        },
        completion_measured: !fill,
    };
    let entitled: Vec<u64> = weights.iter().map(|w| ppm(*w, total_weight)).collect();
    let mean = |sums: &[u128], i: usize| {
        u64::try_from(sums[i] / u128::from(active_samples[i].max(1))).unwrap_or(u64::MAX)
    };
    let average: Vec<u64> = (0..tenants.len()).map(|i| mean(share_sums, i)).collect();
    let entitled_while_active: Vec<u64> = (0..tenants.len())
        .map(|i| {
            if active_samples[i] == 0 {
                entitled[i]
            } else {
                mean(entitled_sums, i)
            }
        })
        .collect();
    let jain = if contended_samples == 0 {
        1.0
    } else {
        jain_sum / contended_samples as f64
    };
    let fairness = Fairness {
        contended_samples,
        jain_index: jain,
        tenants: tenants
            .iter()
            .enumerate()
            .map(|(i, t)| TenantShare {
                tenant: t.name.clone(),
                weight: t.weight,
                active_samples: active_samples[i],
                entitled_ppm: entitled_while_active[i],
                average_share_ppm: average[i],
                share_error_ppm: i64::try_from(average[i]).unwrap_or(i64::MAX)
                    - i64::try_from(entitled_while_active[i]).unwrap_or(i64::MAX),
            })
            .collect(),
    };
    let mut refusals: BTreeMap<String, u64> = BTreeMap::new();
    for task in tasks {
        if let Some(reason) = task.held_back {
            *refusals.entry(reason.as_str().to_owned()).or_default() += 1;
        }
    }
    let utilization = TYPES
        .iter()
        .enumerate()
        .filter(|(d, _)| capacity[*d] > 0)
        .map(|(d, (_, name))| {
            let values: Vec<u64> = samples.iter().map(|s| s.utilization_ppm[d]).collect();
            TypeUtilization {
                resource_type: (*name).to_owned(),
                average_ppm: values.iter().sum::<u64>() / (values.len().max(1) as u64),
                peak_ppm: values.iter().copied().max().unwrap_or(0),
            }
        })
        .collect();
    let dashboard = manager.dashboard();
    let records = tasks
        .iter()
        .map(|t| TaskRecord {
            id: specs[t.spec_index].id.clone(),
            tenant: tenants[t.tenant].name.clone(),
            priority: t.priority,
            arrival_s: t.arrival as f64 / 1000.0,
            start_s: t.first_start.map(|s| s as f64 / 1000.0),
            end_s: t.end.map(|e| e as f64 / 1000.0),
            wait_s: t
                .first_start
                .map(|s| s.saturating_sub(t.arrival) as f64 / 1000.0),
            placed_on: t.placed_on.as_ref().map(|n| n.as_str().to_owned()),
            gpu_devices: t
                .devices
                .iter()
                .map(|(device, share)| GpuShare {
                    device: device.as_str().to_owned(),
                    share: share.to_string(),
                })
                .collect(),
            instances: specs[t.spec_index].count,
            preempted: t.preempted,
            preempted_by: t.preempted_by.clone(),
            rejected: t.rejected.clone(),
        })
        .collect();
    let audit = manager.ledger().audit()?;
    let gpu = (capacity[2] > 0).then(|| {
        let devices = |milli: i128| milli as f64 / 1000.0;
        let allocated: i128 = held.iter().map(|h| h[2]).sum();
        let gpu_tasks: Vec<&TaskState> = tasks.iter().filter(|t| t.amounts[2] > 0).collect();
        let requested: i128 = gpu_tasks
            .iter()
            .map(|t| t.amounts[2] * i128::from(specs[t.spec_index].count))
            .sum();
        let fragmented: i128 = manager
            .snapshot()
            .map(|snapshot| {
                snapshot
                    .usage
                    .iter()
                    .filter(|u| u.resource_type == ResourceType::Gpu)
                    .map(|u| {
                        let capacity = i128::from(u.capacity.as_milli());
                        let free = i128::from(u.free.as_milli());
                        if free > 0 && free < capacity { free } else { 0 }
                    })
                    .sum()
            })
            .unwrap_or(0);
        GpuSummary {
            capacity_gpus: devices(capacity[2]),
            requested_gpus: devices(requested),
            allocated_gpus: devices(allocated),
            allocation_ppm: ppm(allocated, capacity[2]),
            gpu_tasks: gpu_tasks.len(),
            gpu_tasks_placed: gpu_tasks.iter().filter(|t| t.first_start.is_some()).count(),
            saturation: saturation.map(|(at, allocated)| Saturation {
                at_s: at as f64 / 1000.0,
                allocation_ppm: ppm(allocated, capacity[2]),
                unallocated_gpus: devices(capacity[2] - allocated),
            }),
            fragmented_gpus_at_end: devices(fragmented),
            placements_audited: audited,
            placement_violations,
        }
    });
    Ok(Report {
        name: scenario.simulation.name.clone(),
        policy: order.as_str().to_owned(),
        strategy: scenario.simulation.strategy.as_str().to_owned(),
        tasks: tasks.len(),
        instances,
        completed: tasks.iter().filter(|t| t.end.is_some()).count(),
        rejected: tasks.iter().filter(|t| t.rejected.is_some()).count(),
        makespan_s: makespan as f64 / 1000.0,
        utilization,
        wait,
        jobs,
        fairness,
        refusals,
        preemptions: preempted_total,
        scaling: dashboard
            .recent_scaling
            .iter()
            .map(|r| format!("{}: {} -> {} ({})", r.target, r.from, r.to, r.reason))
            .collect(),
        audit_clean: audit.is_clean(),
        types: TYPES
            .iter()
            .enumerate()
            .filter(|(d, _)| capacity[*d] > 0)
            .map(|(_, (_, n))| (*n).to_owned())
            .collect(),
        pools: pools.to_vec(),
        gpu_pools,
        tenant_names: tenants.iter().map(|t| t.name.clone()).collect(),
        entitled_ppm: entitled,
        gpu,
        samples,
        wait_histogram,
        wall_s: wall.elapsed().as_secs_f64(),
        records,
    })
}
