//! The replay's set-up, phase by phase: the workload (the scenario's tasks and an imported
//! trace's), the facade's settings for it, the cluster's nodes, the manager, and the tasks'
//! requests. Each phase is a function of what the phases before it made.

use rm_facade::Config;

use super::*;

/// The workload: tasks and tenants, with an imported trace's; the GPU trace's machines.
pub(super) struct Workload {
    pub(super) specs: Vec<TaskSpec>,
    pub(super) tenants: Vec<Tenant>,
    pub(super) gpu_machines: Vec<trace::GpuNode>,
    /// The GPU trace is replayed to fill the cluster (pods never leave).
    pub(super) fill: bool,
    /// GPUs are devices of their own (fractions stay on one device, a task's parts on one
    /// node).
    pub(super) device_gpus: bool,
}

/// Phase 1, import: the scenario's tasks and tenants, and a trace's.
pub(super) fn workload(scenario: &Scenario) -> Result<Workload, Error> {
    let mut specs: Vec<TaskSpec> = scenario.tasks.clone();
    let mut tenants: Vec<Tenant> = scenario.tenants.clone();
    if let Some(TraceSettings::AlibabaBatch2018 {
        path,
        until_s,
        tenants: spread,
    }) = &scenario.trace
    {
        let memory = scenario
            .cluster
            .first()
            .map(|group| group.memory)
            .filter(|memory| *memory > Quantity::ZERO)
            .ok_or_else(|| {
                ConfigError::Invalid(vec![Problem {
                    path: "cluster[0].memory".into(),
                    message: "the 2018 batch trace gives memory as a share of a machine; the first node group must say how much a machine has".into(),
                }])
            })?;
        let folder = scenario.base.join(path);
        let imported = trace::alibaba_batch_2018(&folder, memory, *until_s, spread.unwrap_or(1))?;
        for index in 0..spread.unwrap_or(1) {
            let name = format!("tenant-{index}");
            if !tenants.iter().any(|t| t.name == name) {
                tenants.push(Tenant {
                    name,
                    weight: 1,
                    class: None,
                    quota: None,
                });
            }
        }
        specs.extend(imported);
    }
    let mut gpu_machines: Vec<trace::GpuNode> = Vec::new();
    let mut fill = false;
    if let Some(TraceSettings::AlibabaGpu2023 {
        nodes,
        pods,
        mode,
        limit,
    }) = &scenario.trace
    {
        fill = *mode == GpuMode::Fill;
        gpu_machines = trace::alibaba_gpu_nodes(&scenario.base.join(nodes))?;
        // The trace's nodes are held to the limits of the file's own groups.
        let devices: u64 = gpu_machines.iter().map(|m| u64::from(m.gpus)).sum();
        let mut too_many = Vec::new();
        if gpu_machines.len() as u64 > u64::from(crate::scenario::MAX_NODES) {
            too_many.push(Problem {
                path: "trace: nodes".into(),
                message: format!(
                    "{} nodes is more than {}",
                    gpu_machines.len(),
                    crate::scenario::MAX_NODES
                ),
            });
        }
        if devices > crate::scenario::MAX_DEVICES {
            too_many.push(Problem {
                path: "trace: nodes".into(),
                message: format!(
                    "{devices} GPU devices in all is more than {}",
                    crate::scenario::MAX_DEVICES
                ),
            });
        }
        if !too_many.is_empty() {
            return Err(ConfigError::Invalid(too_many).into());
        }
        let tenant = "pods";
        if !tenants.iter().any(|t| t.name == tenant) {
            tenants.push(Tenant {
                name: tenant.into(),
                weight: 1,
                class: None,
                quota: None,
            });
        }
        specs.extend(trace::alibaba_gpu_pods(
            &scenario.base.join(pods),
            tenant,
            fill,
            *limit,
        )?);
    }
    // Imported times are data too: the same bound as the file's own tasks.
    let max = crate::scenario::MAX_SECONDS;
    let too_long: Vec<Problem> = specs
        .iter()
        .filter(|t| {
            let max = crate::scenario::Seconds::from_secs(max);
            t.arrival_s > max || t.duration_s > max
        })
        .take(10)
        .map(|t| Problem {
            path: format!("trace: task {}", t.id),
            message: format!(
                "arrival {} s or duration {} s is more than {max} s (a hundred years)",
                t.arrival_s, t.duration_s
            ),
        })
        .collect();
    if !too_long.is_empty() {
        return Err(ConfigError::Invalid(too_long).into());
    }
    // And so are imported sizes: each task's instances, and the totals, as for the file's.
    use crate::scenario::MAX_INSTANCES;
    let mut too_large: Vec<Problem> = specs
        .iter()
        .filter(|t| t.count > MAX_INSTANCES)
        .take(10)
        .map(|t| Problem {
            path: format!("trace: task {}", t.id),
            message: format!("{} is more than {MAX_INSTANCES} instances", t.count),
        })
        .collect();
    let instances = specs
        .iter()
        .fold(0u64, |sum, t| sum.saturating_add(u64::from(t.count)));
    too_large.extend(crate::scenario::total_problems(
        "trace",
        specs.len() as u64,
        instances,
    ));
    if !too_large.is_empty() {
        return Err(ConfigError::Invalid(too_large).into());
    }
    // GPUs are devices of their own (fractions stay on one device, a task's parts on one
    // node) for the GPU trace and for groups that ask for it.
    let device_gpus = !gpu_machines.is_empty() || scenario.cluster.iter().any(|g| g.gpu_devices);
    Ok(Workload {
        specs,
        tenants,
        gpu_machines,
        fill,
        device_gpus,
    })
}

/// The facade's configuration for the replay, and how tenants are ordered.
pub(super) struct Settings {
    pub(super) config: Config,
    pub(super) order: Order,
    /// Whether the policy orders by priority classes.
    pub(super) priority: bool,
    pub(super) class_priority: HashMap<String, i32>,
}

/// Phase 2, settings: the scenario's configuration with the replay's overrides, and the
/// tenants' quotas, classes and weights in it.
pub(super) fn settings(scenario: &Scenario, tenants: &[Tenant]) -> Result<Settings, Error> {
    let mut config = scenario.config.clone();
    config.manager.wait_timeout_ms = 0;
    // Ended reservations need not be remembered: the replay never retries by id.
    config.manager.retention_ms = 1;
    config.manager.default_ttl_ms = config.manager.default_ttl_ms.max(86_400_000);
    let order = scenario.order.unwrap_or_else(|| Order::of(&config));
    let uses = |kind| config.policy.order.contains(&kind);
    let (quota, priority, weighted) = (
        uses(PolicyKind::Quota),
        uses(PolicyKind::Priority),
        uses(PolicyKind::Weighted),
    );
    let mut problems = Vec::new();
    for (i, tenant) in tenants.iter().enumerate() {
        let id = RequesterId::new(&tenant.name).map_err(|err| {
            ConfigError::Invalid(vec![Problem {
                path: format!("tenants[{i}].name"),
                message: err.to_string(),
            }])
        })?;
        if let Some(limits) = &tenant.quota {
            if quota {
                config.quotas.requesters.insert(id.clone(), limits.clone());
            } else {
                problems.push(Problem {
                    path: format!("tenants[{i}].quota"),
                    message: "policy.order does not include quota".into(),
                });
            }
        }
        if let Some(class) = &tenant.class {
            if priority {
                config
                    .priorities
                    .requesters
                    .insert(id.clone(), class.clone());
            } else {
                problems.push(Problem {
                    path: format!("tenants[{i}].class"),
                    message: "policy.order does not include priority".into(),
                });
            }
        }
        if weighted {
            config.fair_share.weights.insert(id.clone(), tenant.weight);
        }
        config
            .metrics
            .requester_classes
            .insert(id, tenant.name.clone());
        config
            .metrics
            .class_weights
            .insert(tenant.name.clone(), tenant.weight);
    }
    if !problems.is_empty() {
        return Err(ConfigError::Invalid(problems).into());
    }
    let class_priority: HashMap<String, i32> = config
        .priorities
        .classes
        .iter()
        .map(|class| (class.name.clone(), class.priority.0))
        .collect();
    Ok(Settings {
        config,
        order,
        priority,
        class_priority,
    })
}

/// The cluster: pools, autoscaled groups' targets, where each resource is.
pub(super) struct Nodes {
    pub(super) pools: Vec<String>,
    pub(super) waiting_cpu: Arc<AtomicI64>,
    pub(super) targets: Vec<(usize, Arc<GroupTarget>)>,
    pub(super) node_group: HashMap<String, usize>,
    pub(super) placement_of: HashMap<String, (String, Option<String>)>,
    pub(super) node_label: LabelKey,
}

/// Phase 3, nodes: fixed groups and the GPU trace's machines go into `config` as resources;
/// autoscaled groups get scale targets.
pub(super) fn nodes(
    scenario: &Scenario,
    gpu_machines: &[trace::GpuNode],
    config: &mut Config,
) -> Result<Nodes, Error> {
    // Pools: the node groups, then the GPU trace's machines by GPU model.
    let mut pools: Vec<String> = scenario.cluster.iter().map(|g| g.prefix.clone()).collect();
    for machine in gpu_machines {
        let pool = Machine::of_trace(machine).pool;
        if !pools.iter().any(|p| p == pool) {
            pools.push(pool.to_owned());
        }
    }
    // Nodes: fixed groups go in as resources; autoscaled ones through their scale targets.
    let waiting_cpu = Arc::new(AtomicI64::new(0));
    let mut targets: Vec<(usize, Arc<GroupTarget>)> = Vec::new();
    let mut node_group: HashMap<String, usize> = HashMap::new();
    for (g, group) in scenario.cluster.iter().enumerate() {
        for index in 0..group.count {
            node_group.insert(format!("{}-{index}", group.prefix), g);
        }
        if group.autoscale.is_some() {
            targets.push((
                g,
                Arc::new(GroupTarget {
                    group: group.clone(),
                    ledger: OnceLock::new(),
                    live: Mutex::new(Vec::new()),
                    next: Mutex::new(0),
                    waiting_cpu: waiting_cpu.clone(),
                    held_cpu: AtomicI64::new(0),
                }),
            ));
        } else {
            for index in 0..group.count {
                config.resources.extend(node(group, index)?);
            }
        }
    }
    for machine in gpu_machines {
        let machine = Machine::of_trace(machine);
        node_group.insert(
            machine.name.clone(),
            pools.iter().position(|p| p == machine.pool).unwrap_or(0),
        );
        config.resources.extend(machine.resources()?);
    }
    // Where each resource is: its node and, for a GPU device, its model (for the audit).
    let placement_of: HashMap<String, (String, Option<String>)> = config
        .resources
        .iter()
        .map(|r| {
            (
                r.name().as_str().to_owned(),
                (
                    r.label("node").unwrap_or("").to_owned(),
                    r.label("model").map(str::to_owned),
                ),
            )
        })
        .collect();
    let node_label = LabelKey::new("node").map_err(|err| {
        ConfigError::Invalid(vec![Problem {
            path: "cluster".into(),
            message: err.to_string(),
        }])
    })?;
    Ok(Nodes {
        pools,
        waiting_cpu,
        targets,
        node_group,
        placement_of,
        node_label,
    })
}

/// The manager the replay drives, on a manual clock.
pub(super) struct Wired {
    pub(super) clock: Arc<ManualClock>,
    pub(super) preemptions: Arc<Preemptions>,
    pub(super) manager: ResourceManager,
    pub(super) server: Option<rm_facade::MetricsServer>,
}

/// Phase 4, wiring: the manager (autoscaled groups connected and grown to their count), and
/// the metrics endpoint when asked for.
pub(super) fn wire(
    config: &Config,
    targets: &[(usize, Arc<GroupTarget>)],
    metrics_addr: Option<std::net::SocketAddr>,
    serving: &mut dyn FnMut(std::net::SocketAddr),
) -> Result<Wired, Error> {
    let clock = Arc::new(ManualClock::new());
    let preemptions = Arc::new(Preemptions::default());
    let mut builder = ResourceManager::builder()
        .config(config.clone())
        .clock(clock.clone())
        .event_sink(preemptions.clone());
    for (_, target) in targets {
        builder = builder.scalable(&target.group.prefix, target.clone());
    }
    let manager = builder.build()?;
    for (_, target) in targets {
        // Connected after the build (the ledger is built there), then grown to its count.
        let _ = target.ledger.set(manager.ledger().clone());
        target
            .scale_to(u64::from(target.group.count))
            .map_err(|err| {
                Error::Config(ConfigError::Invalid(vec![Problem {
                    path: format!("cluster.{}", target.group.prefix),
                    message: err.message,
                }]))
            })?;
    }
    let server = match metrics_addr {
        Some(addr) => {
            let server = manager.serve_metrics_on(addr)?;
            serving(server.local_addr());
            Some(server)
        }
        None => None,
    };
    Ok(Wired {
        clock,
        preemptions,
        manager,
        server,
    })
}

/// The tasks' states and requests, and their jobs.
pub(super) struct Tasks {
    pub(super) tasks: Vec<TaskState>,
    pub(super) job_arrival: Vec<u64>,
    pub(super) job_left: Vec<u32>,
    pub(super) instances: u64,
}

/// Phase 5, tasks: each task's request (a task's parts on one node; GPUs as devices when the
/// workload says so), its tenant, job, priority and dependencies.
pub(super) fn tasks(
    scenario: &Scenario,
    workload: &Workload,
    class_priority: &HashMap<String, i32>,
    node_label: &LabelKey,
) -> Result<Tasks, Error> {
    let (specs, tenants, device_gpus) = (&workload.specs, &workload.tenants, workload.device_gpus);
    // Tasks. A task's parts land on one node.
    let colocation = ColocationGroup::new("node").map_err(|err| {
        ConfigError::Invalid(vec![Problem {
            path: "tasks".into(),
            message: err.to_string(),
        }])
    })?;
    let tenant_index: HashMap<&str, usize> = tenants
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i))
        .collect();
    let id_index: HashMap<&str, usize> = specs
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let mut job_index: HashMap<&str, usize> = HashMap::new();
    let mut job_arrival: Vec<u64> = Vec::new();
    let mut job_left: Vec<u32> = Vec::new();
    let mut tasks: Vec<TaskState> = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let tenant = *tenant_index.get(spec.tenant.as_str()).ok_or_else(|| {
            ConfigError::Invalid(vec![Problem {
                path: format!("tasks[{i}].tenant"),
                message: format!("no tenant named {:?}", rm_facade::model::clip(&spec.tenant)),
            }])
        })?;
        let job_name = spec.job.as_deref().unwrap_or(spec.id.as_str());
        let next = job_index.len();
        let job = *job_index.entry(job_name).or_insert(next);
        if job == job_arrival.len() {
            job_arrival.push(spec.arrival_s.as_millis());
            job_left.push(0);
        }
        job_arrival[job] = job_arrival[job].min(spec.arrival_s.as_millis());
        job_left[job] += 1;
        let class = tenants[tenant].class.as_deref();
        let priority = spec
            .priority
            .or_else(|| class.and_then(|c| class_priority.get(c).copied()))
            .unwrap_or(0);
        let mut request = pod_request(
            spec,
            i,
            scenario.simulation.strategy,
            device_gpus,
            &colocation,
            node_label,
        )?
        .with_priority(Priority(priority));
        if let Some(class) = &spec.contention {
            let mut labels = Labels::new();
            labels.insert("contention", class).map_err(|err| {
                ConfigError::Invalid(vec![Problem {
                    path: format!("tasks[{i}].contention"),
                    message: err.to_string(),
                }])
            })?;
            request = request.with_labels(labels);
        }
        tasks.push(TaskState {
            spec_index: i,
            tenant,
            job,
            arrival: spec.arrival_s.as_millis(),
            duration: spec.duration_s.as_millis(),
            amounts: amounts(spec.cpu, spec.memory, spec.gpus),
            priority,
            children: Vec::new(),
            unmet: 0,
            arrived: false,
            to_start: spec.count,
            running: 0,
            finished: 0,
            queued: false,
            seq: 0,
            ready_at: 0,
            first_start: None,
            end: None,
            placed_on: None,
            devices: Vec::new(),
            preempted: 0,
            preempted_by: None,
            held_back: None,
            rejected: None,
            request,
        });
    }
    for (i, spec) in specs.iter().enumerate() {
        for parent in &spec.after {
            if let Some(&p) = id_index.get(parent.as_str()) {
                tasks[p].children.push(i);
                tasks[i].unmet += 1;
            }
        }
    }
    let instances: u64 = tasks.iter().map(|t| u64::from(t.to_start)).sum();
    Ok(Tasks {
        tasks,
        job_arrival,
        job_left,
        instances,
    })
}

/// A task's request: its cores and memory on one resource and its GPUs (on devices of their
/// own when `device_gpus`, each whole GPU and a fraction on one device of an accepted model),
/// every part on one node, placed by `strategy`. `i` names the task in errors.
pub(crate) fn pod_request(
    spec: &TaskSpec,
    i: usize,
    strategy: rm_facade::model::ReservationStrategy,
    device_gpus: bool,
    colocation: &ColocationGroup,
    node_label: &LabelKey,
) -> Result<ReservationRequest, ConfigError> {
    let mut requirements = vec![ResourceRequirement::new(
        ResourceType::Compute,
        spec.cpu,
        Unit::CORES,
    )];
    if spec.memory > Quantity::ZERO {
        requirements.push(
            ResourceRequirement::new(ResourceType::Memory, spec.memory, Unit::BYTES)
                .colocated(colocation.clone()),
        );
        requirements[0] = requirements[0].clone().colocated(colocation.clone());
    }
    let model_constraint = if spec.gpu_models.is_empty() {
        None
    } else {
        let builder = Constraint::label("model").map_err(|err| {
            ConfigError::Invalid(vec![Problem {
                path: format!("tasks[{i}].gpu_models"),
                message: err.to_string(),
            }])
        })?;
        Some(builder.is_in(spec.gpu_models.iter().map(String::as_str)))
    };
    let with_model = |requirement: ResourceRequirement| match &model_constraint {
        Some(constraint) => requirement.with_constraint(constraint.clone()),
        None => requirement,
    };
    if spec.gpus > Quantity::ZERO && device_gpus {
        // One requirement per whole GPU and one for a fraction, each on one device; the
        // request keeps every part on one node.
        let milli = spec.gpus.as_milli();
        for _ in 0..milli / 1000 {
            requirements.push(with_model(ResourceRequirement::new(
                ResourceType::Gpu,
                Quantity::from_units(1),
                Unit::DEVICES,
            )));
        }
        if milli % 1000 != 0 {
            requirements.push(with_model(ResourceRequirement::new(
                ResourceType::Gpu,
                Quantity::from_milli(milli % 1000),
                Unit::DEVICES,
            )));
        }
    } else if spec.gpus > Quantity::ZERO {
        requirements.push(with_model(
            ResourceRequirement::new(ResourceType::Gpu, spec.gpus, Unit::DEVICES)
                .colocated(colocation.clone()),
        ));
        requirements[0] = requirements[0].clone().colocated(colocation.clone());
    }
    let requester = RequesterId::new(&spec.tenant).map_err(|err| {
        ConfigError::Invalid(vec![Problem {
            path: format!("tasks[{i}].tenant"),
            message: err.to_string(),
        }])
    })?;
    let mut request = ReservationRequest::new(requester, requirements).with_strategy(strategy);
    if device_gpus && (spec.gpus > Quantity::ZERO || strategy.judges_nodes()) {
        // A GPU task's parts on one node; a task without GPUs names its node too for the
        // strategies that judge whole nodes (its cores beside a node's free GPUs matter).
        request = request.with_colocation_label(node_label.clone());
    }
    Ok(request)
}
