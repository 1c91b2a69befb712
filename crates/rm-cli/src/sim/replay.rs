//! Phases 5 and 6, the event loop and its sampling: a [`Replay`] holds what the loop changes
//! (queues, holds, what each tenant and pool holds, the measures) and runs it in named steps:
//! [`sample`](Replay::sample) and [`tick`](Replay::tick) up to the next event,
//! [`handle`](Replay::handle) the events due, [`schedule`](Replay::schedule) one pass over
//! the queues; [`finished`](Replay::finished) hands the measures to the report phase.

use super::*;

/// The set-up phases' results the loop reads and changes.
pub(super) struct Parts<'s> {
    pub(super) scenario: &'s Scenario,
    pub(super) order: Order,
    pub(super) priority: bool,
    pub(super) pools: Vec<String>,
    pub(super) waiting_cpu: Arc<AtomicI64>,
    pub(super) targets: Vec<(usize, Arc<GroupTarget>)>,
    pub(super) node_group: HashMap<String, usize>,
    pub(super) placement_of: HashMap<String, (String, Option<String>)>,
    pub(super) clock: Arc<ManualClock>,
    pub(super) preemptions: Arc<Preemptions>,
    pub(super) manager: ResourceManager,
    pub(super) tasks: Tasks,
    pub(super) specs: Vec<TaskSpec>,
    pub(super) tenants: Vec<Tenant>,
    pub(super) fill: bool,
    pub(super) device_gpus: bool,
    pub(super) may_preempt: bool,
}

/// The replay between set-up and report.
pub(super) struct Replay<'s> {
    scenario: &'s Scenario,
    order: Order,
    /// Within a tenant, tasks wait by priority whenever the order involves priorities.
    by_priority: bool,
    fill: bool,
    device_gpus: bool,
    /// Holds are looked up by id only to handle preemption; without a strategy that ends or
    /// shrinks holds, the map is not kept.
    may_preempt: bool,
    pools: Vec<String>,
    waiting_cpu: Arc<AtomicI64>,
    targets: Vec<(usize, Arc<GroupTarget>)>,
    node_group: HashMap<String, usize>,
    placement_of: HashMap<String, (String, Option<String>)>,
    clock: Arc<ManualClock>,
    preemptions: Arc<Preemptions>,
    pub(super) manager: ResourceManager,
    monitor: rm_facade::monitor::MetricsCollector,
    pub(super) tasks: Vec<TaskState>,
    pub(super) specs: Vec<TaskSpec>,
    pub(super) tenants: Vec<Tenant>,
    job_arrival: Vec<u64>,
    job_left: Vec<u32>,
    instances: u64,
    events: Events,
    sample_every: u64,
    tick_every: u64,
    queues: Vec<VecDeque<usize>>,
    held: Vec<Amounts>,
    group_held: Vec<Amounts>,
    gpu_pools: Vec<bool>,
    holds: Vec<Hold>,
    free_slots: Vec<usize>,
    hold_of: HashMap<ReservationId, usize>,
    waits: Vec<u64>,
    samples: Vec<Sample>,
    // Fairness, as schedulers measure it: in each sample where someone waits, among the
    // tenants with demand (tasks waiting or running), entitlements renormalised among them.
    share_sums: Vec<u128>,
    entitled_sums: Vec<u128>,
    active_samples: Vec<u64>,
    jain_sum: f64,
    contended_samples: u64,
    jcts: Vec<u64>,
    preempted_total: u64,
    seq: u64,
    next_sample: u64,
    next_tick: u64,
    done_tasks: usize,
    now: u64,
    capacity: Amounts,
    group_capacity: Vec<Amounts>,
    weights: Vec<i128>,
    total_weight: i128,
    audited: u64,
    placement_violations: u64,
    saturation: Option<(u64, i128)>,
    /// The replay's own waiting reaches the manager's metrics as the wait queue's would
    /// (rm_wait_seconds, rm_queue_depth), so the live metrics show what the report shows.
    /// The instances still to start of the queued tasks, kept as they change (samples and
    /// ticks read it without a walk over a queue that may hold a million tasks).
    waiting_instances: u64,
    /// The cores (in milli-cores) that the queued instances ask for, kept the same way.
    queued_cpu: i128,
}

impl<'s> Replay<'s> {
    /// Phase 5, the loop's state: every task's arrival on the event heap, empty queues.
    pub(super) fn new(parts: Parts<'s>) -> Result<Replay<'s>, Error> {
        let Parts {
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
            tasks:
                Tasks {
                    tasks,
                    job_arrival,
                    job_left,
                    instances,
                },
            specs,
            tenants,
            fill,
            device_gpus,
            may_preempt,
        } = parts;
        let events = Events::new(
            tasks
                .iter()
                .enumerate()
                .map(|(i, t)| (t.arrival, Ev::Arrive(i)))
                .collect(),
        );
        let horizon = tasks.iter().map(|t| t.arrival).max().unwrap_or(0);
        let sample_every = if scenario.simulation.sample_every_s > 0 {
            scenario.simulation.sample_every_s.saturating_mul(1000)
        } else {
            (horizon / 200).max(1000)
        };
        let tick_every = scenario.simulation.tick_every_s.max(1).saturating_mul(1000);
        let (capacity, group_capacity) = capacities(&manager, &pools)?;
        let weights: Vec<i128> = tenants
            .iter()
            .map(|t| i128::from(t.weight.max(1)))
            .collect();
        let total_weight: i128 = weights.iter().sum::<i128>().max(1);
        let monitor = manager.monitor().clone();
        let n = tenants.len();
        Ok(Replay {
            scenario,
            order,
            by_priority: order == Order::Priority || priority,
            fill,
            device_gpus,
            may_preempt,
            group_held: vec![[0; 3]; pools.len()],
            gpu_pools: vec![false; pools.len()],
            pools,
            waiting_cpu,
            targets,
            node_group,
            placement_of,
            clock,
            preemptions,
            manager,
            monitor,
            waits: Vec::with_capacity(usize::try_from(instances).unwrap_or(0)),
            tasks,
            specs,
            tenants,
            job_arrival,
            job_left,
            instances,
            events,
            sample_every,
            tick_every,
            queues: vec![VecDeque::new(); n],
            held: vec![[0; 3]; n],
            holds: Vec::new(),
            free_slots: Vec::new(),
            hold_of: HashMap::new(),
            samples: Vec::new(),
            share_sums: vec![0; n],
            entitled_sums: vec![0; n],
            active_samples: vec![0; n],
            jain_sum: 0.0,
            contended_samples: 0,
            jcts: Vec::new(),
            preempted_total: 0,
            seq: 0,
            next_sample: 0,
            next_tick: tick_every,
            done_tasks: 0,
            now: 0,
            capacity,
            group_capacity,
            weights,
            total_weight,
            audited: 0,
            placement_violations: 0,
            saturation: None,
            waiting_instances: 0,
            queued_cpu: 0,
        })
    }

    /// Phase 6, the event loop: samples and ticks up to each event time, the events due,
    /// then one scheduling pass; `progress` told now and then.
    pub(super) fn run(&mut self, progress: &mut dyn FnMut(u64, usize, usize)) -> Result<(), Error> {
        let mut last_progress = std::time::Instant::now();
        while let Some((at, _)) = self.events.peek() {
            self.sample(at);
            self.tick(at)?;
            self.now = at;
            self.clock
                .set(Timestamp::from_nanos(self.now.saturating_mul(1_000_000)));
            self.handle()?;
            self.schedule()?;
            if last_progress.elapsed() >= Duration::from_millis(200) {
                progress(self.now / 1000, self.done_tasks, self.tasks.len());
                last_progress = std::time::Instant::now();
            }
        }
        progress(self.now / 1000, self.done_tasks, self.tasks.len());
        Ok(())
    }

    /// Publishes a waiting event of the replay's own to the manager's monitor.
    fn observe(&self, kind: EventKind) {
        self.monitor.publish(&Event {
            sequence: 0,
            at: Timestamp::ZERO + Duration::from_millis(self.now),
            kind,
        });
    }

    /// A queued task's instances that will not start leave the queue unanswered.
    fn abandon(&mut self, task: usize) {
        self.queued_cpu -= self.tasks[task].amounts[0] * i128::from(self.tasks[task].to_start);
        for _ in 0..self.tasks[task].to_start {
            self.waiting_instances = self.waiting_instances.saturating_sub(1);
            self.observe(EventKind::Dequeued {
                requester: self.tasks[task].request.requester.clone(),
                waited: Duration::from_millis(self.now.saturating_sub(self.tasks[task].ready_at)),
                granted: false,
            });
        }
    }

    /// Queues a ready task (once) in its tenant's queue, in the scenario's order: by priority
    /// (highest first, arrival among equals) under `priority`, else by arrival.
    fn enqueue(&mut self, task: usize) {
        let state = &self.tasks[task];
        if state.queued || state.to_start == 0 || state.rejected.is_some() {
            return;
        }
        self.seq += 1;
        let state = &mut self.tasks[task];
        state.seq = self.seq;
        state.queued = true;
        state.ready_at = self.now;
        let (tenant, priority, to_start) = (state.tenant, state.priority, state.to_start);
        let tasks = &self.tasks;
        let queue = &mut self.queues[tenant];
        let position = if self.by_priority {
            queue.partition_point(|&other| tasks[other].priority >= priority)
        } else {
            queue.len()
        };
        queue.insert(position, task);
        self.waiting_instances += u64::from(to_start);
        self.queued_cpu += self.tasks[task].amounts[0] * i128::from(to_start);
        self.observe(EventKind::Queued {
            requester: self.tasks[task].request.requester.clone(),
            depth: usize::try_from(self.waiting_instances).unwrap_or(usize::MAX),
        });
    }

    /// A task whose last instance is done: its end, and its job's completion time.
    fn finish_task(&mut self, task: usize) {
        self.tasks[task].end = Some(self.now);
        self.done_tasks += 1;
        let job = self.tasks[task].job;
        self.job_left[job] -= 1;
        if self.job_left[job] == 0 {
            self.jcts.push(self.now - self.job_arrival[job]);
        }
    }

    /// Takes back what a hold of `task` held, from its tenant and its pool.
    fn credit(&mut self, h: usize) {
        let task = self.holds[h].task;
        let tenant = self.tasks[task].tenant;
        let group = self.holds[h].group;
        for (d, amount) in self.tasks[task].amounts.iter().enumerate() {
            self.held[tenant][d] -= amount;
            if let Some(g) = group {
                self.group_held[g][d] -= amount;
            }
        }
    }

    /// Preempted holds go back to waiting.
    fn drain_preemptions(&mut self) {
        for (victim, by) in self.preemptions.drain() {
            let Some(h) = self.hold_of.remove(&victim) else {
                continue;
            };
            self.holds[h].live = false;
            self.free_slots.push(h);
            self.preempted_total += 1;
            self.credit(h);
            let task = self.holds[h].task;
            let by_requester = by
                .and_then(|by| self.hold_of.get(&by).map(|&bh| self.holds[bh].task))
                .map(|t| self.specs[self.tasks[t].spec_index].id.clone());
            let state = &mut self.tasks[task];
            state.running -= 1;
            state.to_start += 1;
            state.preempted += 1;
            if by_requester.is_some() {
                state.preempted_by = by_requester;
            }
            if state.queued {
                // Its other instances still wait: this one waits with them.
                let cpu = state.amounts[0];
                self.waiting_instances += 1;
                self.queued_cpu += cpu;
            }
            self.enqueue(task);
        }
    }

    /// The samples that fall before `at` (and the first, at time 0) see the state as it is:
    /// utilisation per type and pool, waiting instances, each tenant's dominant share and the
    /// fairness sums.
    fn sample(&mut self, at: u64) {
        while (self.next_sample < at || (self.next_sample == at && self.samples.is_empty()))
            && self.samples.len() < MAX_SAMPLES
        {
            let waiting = self.waiting_instances;
            debug_assert_eq!(
                (waiting, self.queued_cpu),
                self.queues.iter().flatten().fold((0, 0), |(n, cpu), &t| (
                    n + u64::from(self.tasks[t].to_start),
                    cpu + self.tasks[t].amounts[0] * i128::from(self.tasks[t].to_start)
                )),
                "the waiting kept as it changes is the waiting counted"
            );
            let capacity = self.capacity;
            let shares: Vec<u64> = self
                .held
                .iter()
                .map(|h| (0..3).map(|d| ppm(h[d], capacity[d])).max().unwrap_or(0))
                .collect();
            if waiting > 0 {
                self.contended_samples += 1;
                let active: Vec<usize> = (0..self.tenants.len())
                    .filter(|&i| !self.queues[i].is_empty() || self.held[i].iter().any(|&h| h > 0))
                    .collect();
                let active_weight: i128 =
                    active.iter().map(|&i| self.weights[i]).sum::<i128>().max(1);
                let (mut sum, mut squares) = (0.0f64, 0.0f64);
                for &i in &active {
                    let entitled = ppm(self.weights[i], active_weight);
                    self.active_samples[i] += 1;
                    self.share_sums[i] += u128::from(shares[i]);
                    self.entitled_sums[i] += u128::from(entitled);
                    let x = shares[i] as f64 / entitled.max(1) as f64;
                    sum += x;
                    squares += x * x;
                }
                self.jain_sum += if squares > 0.0 {
                    sum * sum / (active.len() as f64 * squares)
                } else {
                    1.0
                };
            }
            let total: Amounts = self
                .held
                .iter()
                .fold([0; 3], |a, h| [a[0] + h[0], a[1] + h[1], a[2] + h[2]]);
            for (g, c) in self.group_capacity.iter().enumerate() {
                self.gpu_pools[g] |= c[2] > 0;
            }
            self.samples.push(Sample {
                t_s: self.next_sample as f64 / 1000.0,
                utilization_ppm: (0..3).map(|d| ppm(total[d], capacity[d])).collect(),
                pools_ppm: self
                    .group_held
                    .iter()
                    .zip(&self.group_capacity)
                    .map(|(h, c)| ppm(h[0], c[0]))
                    .collect(),
                pools_gpu_ppm: self
                    .group_held
                    .iter()
                    .zip(&self.group_capacity)
                    .map(|(h, c)| ppm(h[2], c[2]))
                    .collect(),
                waiting,
                shares_ppm: shares,
            });
            self.next_sample = self.next_sample.saturating_add(self.sample_every);
        }
    }

    /// The manager's periodic work up to `at` (autoscaling reads the waiting and held cores):
    /// over a long quiet gap, only the last few ticks, since nothing changes between events.
    fn tick(&mut self, at: u64) -> Result<(), Error> {
        if self.targets.is_empty() {
            return Ok(());
        }
        let tick_every = self.tick_every;
        let quiet = at.saturating_sub(self.next_tick) / tick_every;
        if quiet > MAX_QUIET_TICKS {
            self.next_tick = self
                .next_tick
                .saturating_add((quiet - MAX_QUIET_TICKS) * tick_every);
        }
        while self.next_tick <= at && self.next_tick < u64::MAX {
            self.clock.set(Timestamp::from_nanos(
                self.next_tick.saturating_mul(1_000_000),
            ));
            self.waiting_cpu.store(
                i64::try_from(self.queued_cpu).unwrap_or(i64::MAX),
                Ordering::Relaxed,
            );
            for (g, target) in &self.targets {
                target.held_cpu.store(
                    i64::try_from(self.group_held[*g][0]).unwrap_or(i64::MAX),
                    Ordering::Relaxed,
                );
            }
            self.manager.tick()?;
            self.drain_preemptions();
            (self.capacity, self.group_capacity) = capacities(&self.manager, &self.pools)?;
            for (_, target) in &self.targets {
                for index in target.live().iter() {
                    self.node_group
                        .entry(format!("{}-{index}", target.group.prefix))
                        .or_insert_with(|| {
                            self.scenario
                                .cluster
                                .iter()
                                .position(|g| g.prefix == target.group.prefix)
                                .unwrap_or(0)
                        });
                }
            }
            self.next_tick = self.next_tick.saturating_add(tick_every);
        }
        Ok(())
    }

    /// The events due now: arrivals queue their task once its parents are done; a finish
    /// releases its hold, and the task's last finish readies its children.
    fn handle(&mut self) -> Result<(), Error> {
        while let Some((t, event)) = self.events.peek() {
            if t != self.now {
                break;
            }
            self.events.pop();
            match event {
                Ev::Arrive(task) => {
                    self.tasks[task].arrived = true;
                    if self.tasks[task].unmet == 0 {
                        self.enqueue(task);
                    }
                }
                Ev::Finish(h, generation) => {
                    if !self.holds[h].live || self.holds[h].generation != generation {
                        continue;
                    }
                    self.holds[h].live = false;
                    self.free_slots.push(h);
                    if self.may_preempt {
                        self.hold_of.remove(&self.holds[h].id);
                    }
                    self.manager.release(&self.holds[h].id, None)?;
                    self.credit(h);
                    let task = self.holds[h].task;
                    let state = &mut self.tasks[task];
                    state.running -= 1;
                    state.finished += 1;
                    if state.to_start == 0 && state.running == 0 {
                        self.finish_task(task);
                        for child in self.tasks[task].children.clone() {
                            self.tasks[child].unmet -= 1;
                            if self.tasks[child].unmet == 0 && self.tasks[child].arrived {
                                self.enqueue(child);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The tenant to serve next by the order's key (among those with a head not blocked).
    fn next_tenant(&self, blocked: &[bool]) -> Option<usize> {
        let mut best: Option<(usize, (i128, i128, u64))> = None;
        for (tenant, queue) in self.queues.iter().enumerate() {
            let Some(&head) = queue.front() else { continue };
            if blocked[tenant] {
                continue;
            }
            let share = (0..3)
                .map(|d| ppm(self.held[tenant][d], self.capacity[d]))
                .max()
                .unwrap_or(0);
            let head = &self.tasks[head];
            let key = match self.order {
                Order::Fifo => (0, 0, head.seq),
                Order::Priority => (-i128::from(head.priority), 0, head.seq),
                Order::Fair => (i128::from(share), 0, head.seq),
                Order::Weighted => (
                    i128::from(share) * self.total_weight / self.weights[tenant],
                    0,
                    head.seq,
                ),
            };
            if best.is_none_or(|(_, k)| key < k) {
                best = Some((tenant, key));
            }
        }
        best.map(|(tenant, _)| tenant)
    }

    /// One scheduling pass: tenants served in the order's turn, one instance at a time, each
    /// from the first `backfill_depth` of its queue; a shape that found no room is not tried
    /// again in the pass.
    fn schedule(&mut self) -> Result<(), Error> {
        let mut failed: Vec<Amounts> = Vec::new();
        let mut blocked = vec![false; self.tenants.len()];
        while let Some(tenant) = self.next_tenant(&blocked) {
            let depth = self
                .scenario
                .simulation
                .backfill_depth
                .max(1)
                .min(self.queues[tenant].len());
            let mut started = false;
            let mut position = 0;
            while position < depth.min(self.queues[tenant].len()) {
                let task = self.queues[tenant][position];
                let shape = self.tasks[task].amounts;
                if failed.iter().any(|f| (0..3).all(|d| shape[d] >= f[d])) {
                    position += 1;
                    continue;
                }
                // Each instance is its own reservation; the ledger names it.
                match self.manager.reserve(&self.tasks[task].request) {
                    Ok(reservation) => {
                        self.start(tenant, position, task, reservation)?;
                        started = true;
                    }
                    Err(err) => match self.refused(tenant, position, task, &err) {
                        Refused::Dropped => continue,
                        Refused::Skip => {
                            failed.push(shape);
                            position += 1;
                            continue;
                        }
                        Refused::Stop => break,
                    },
                }
                self.drain_preemptions();
                break;
            }
            if !started {
                blocked[tenant] = true;
            }
        }
        Ok(())
    }

    /// A granted instance: confirmed, audited (GPU grants), accounted to its tenant and pool,
    /// given a hold slot and (unless filling) its finish event; the task leaves its queue
    /// once all its instances started.
    fn start(
        &mut self,
        tenant: usize,
        position: usize,
        task: usize,
        reservation: rm_facade::model::Reservation,
    ) -> Result<(), Error> {
        let shape = self.tasks[task].amounts;
        self.manager.confirm(&reservation.id, None)?;
        if self.device_gpus && shape[2] > 0 {
            self.audited += 1;
            if !placement_ok(
                &reservation,
                &self.placement_of,
                &self.specs[self.tasks[task].spec_index].gpu_models,
            ) {
                self.placement_violations += 1;
            }
        }
        let node = reservation.items.first().map(|item| item.resource.clone());
        let group = node
            .as_ref()
            .and_then(|n| self.node_group.get(n.as_str()).copied());
        for (d, amount) in shape.iter().enumerate() {
            self.held[tenant][d] += amount;
            if let Some(g) = group {
                self.group_held[g][d] += amount;
            }
        }
        let h = match self.free_slots.pop() {
            Some(h) => {
                let hold = &mut self.holds[h];
                hold.id = reservation.id.clone();
                hold.task = task;
                hold.group = group;
                hold.live = true;
                hold.generation = hold.generation.wrapping_add(1);
                h
            }
            None => {
                self.holds.push(Hold {
                    id: reservation.id.clone(),
                    task,
                    group,
                    live: true,
                    generation: 0,
                });
                self.holds.len() - 1
            }
        };
        let generation = self.holds[h].generation;
        if self.may_preempt {
            self.hold_of.insert(reservation.id.clone(), h);
        }
        self.waiting_instances = self.waiting_instances.saturating_sub(1);
        self.queued_cpu -= self.tasks[task].amounts[0];
        self.observe(EventKind::Dequeued {
            requester: self.tasks[task].request.requester.clone(),
            waited: Duration::from_millis(self.now - self.tasks[task].ready_at),
            granted: true,
        });
        let now = self.now;
        let state = &mut self.tasks[task];
        self.waits.push(now - state.ready_at);
        state.first_start.get_or_insert(now);
        if state.placed_on.is_none() {
            if self.device_gpus {
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
        if !self.fill {
            self.events.push(
                now.saturating_add(state.duration),
                Ev::Finish(h, generation),
            );
        }
        if all_started {
            self.tasks[task].queued = false;
            self.queues[tenant].remove(position);
            if self.fill {
                // Filling: pods never leave; placed is done.
                self.finish_task(task);
            }
        }
        Ok(())
    }

    /// A refused instance: what the pass does next, and what the task records of it.
    fn refused(
        &mut self,
        tenant: usize,
        position: usize,
        task: usize,
        err: &rm_facade::Error,
    ) -> Refused {
        let shape = self.tasks[task].amounts;
        let reason = err.refusal().map(|r| r.reason);
        match reason {
            Some(RefusalReason::InsufficientCapacity) if self.fill => {
                // Filling: a pod with no room now is dropped.
                // Saturation: an unconstrained GPU pod finds no room (one limited to a rare
                // model may fail long before).
                if shape[2] > 0
                    && self.saturation.is_none()
                    && self.specs[self.tasks[task].spec_index]
                        .gpu_models
                        .is_empty()
                {
                    let allocated: i128 = self.held.iter().map(|h| h[2]).sum();
                    self.saturation = Some((self.now, allocated));
                }
                let state = &mut self.tasks[task];
                state
                    .held_back
                    .get_or_insert(RefusalReason::InsufficientCapacity);
                state.rejected = Some("no room when it arrived".into());
                state.queued = false;
                self.queues[tenant].remove(position);
                self.abandon(task);
                self.done_tasks += 1;
                Refused::Dropped
            }
            Some(RefusalReason::InsufficientCapacity) => {
                self.tasks[task]
                    .held_back
                    .get_or_insert(RefusalReason::InsufficientCapacity);
                Refused::Skip
            }
            Some(
                reason @ (RefusalReason::QuotaExceeded
                | RefusalReason::BorrowingLimitExceeded
                | RefusalReason::FairShareExceeded
                | RefusalReason::PriorityTooLow
                | RefusalReason::PolicyDenied
                | RefusalReason::Indeterminate),
            ) => {
                self.tasks[task].held_back.get_or_insert(reason);
                Refused::Stop
            }
            _ => {
                // Never placeable (unsatisfiable or malformed): give up on it.
                let state = &mut self.tasks[task];
                state.rejected = Some(err.to_string());
                state
                    .held_back
                    .get_or_insert(reason.unwrap_or(RefusalReason::InvalidRequest));
                state.queued = false;
                self.queues[tenant].remove(position);
                self.abandon(task);
                self.done_tasks += 1;
                Refused::Dropped
            }
        }
    }

    /// Phase 7's input: what the loop measured.
    pub(super) fn report(
        self,
        wall: std::time::Instant,
    ) -> Result<(Report, ResourceManager), Error> {
        let report = finish::report(finish::Finished {
            scenario: self.scenario,
            order: self.order,
            tasks: &self.tasks,
            specs: &self.specs,
            tenants: &self.tenants,
            waits: self.waits,
            jcts: self.jcts,
            jobs: self.job_arrival.len(),
            fill: self.fill,
            weights: &self.weights,
            total_weight: self.total_weight,
            active_samples: &self.active_samples,
            share_sums: &self.share_sums,
            entitled_sums: &self.entitled_sums,
            contended_samples: self.contended_samples,
            jain_sum: self.jain_sum,
            capacity: self.capacity,
            samples: self.samples,
            manager: &self.manager,
            held: &self.held,
            saturation: self.saturation,
            audited: self.audited,
            placement_violations: self.placement_violations,
            instances: self.instances,
            preempted_total: self.preempted_total,
            pools: &self.pools,
            gpu_pools: self.gpu_pools,
            wall,
        })?;
        Ok((report, self.manager))
    }
}

/// What a refusal means for the scheduling pass.
enum Refused {
    /// The task left its queue (dropped or never placeable): the same position again.
    Dropped,
    /// No room for its shape now: try the next position, and no larger shape this pass.
    Skip,
    /// A policy said no: the tenant's turn ends.
    Stop,
}
