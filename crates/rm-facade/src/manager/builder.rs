//! [`ResourceManagerBuilder`]: the parts of a manager (a ledger, or the factory of one from
//! [`LedgerParts`]; a validator, a policy, a resolver, sinks, scaling rules, pools) and the
//! wiring of them into one [`ResourceManager`], from code or from a [`Config`].

use super::*;

/// What a replacement ledger is built from (see [`ResourceManagerBuilder::ledger`]).
pub struct LedgerParts {
    /// The manager's clock.
    pub clock: Arc<dyn Clock>,
    /// Where the ledger must publish its events: the monitor, the wait queue's wake-ups, the
    /// policies and the embedder's sinks all listen here.
    pub sink: Arc<dyn EventSink>,
    /// The validator to check resources and requests with.
    pub validator: Arc<dyn Validator>,
    /// How long a pending hold lives unconfirmed.
    pub default_ttl: Duration,
    /// How long ended reservations are remembered.
    pub retention: Duration,
}

impl std::fmt::Debug for LedgerParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerParts")
            .field("default_ttl", &self.default_ttl)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

/// The PostgreSQL ledger of `[ledger]` (checked by the configuration: backend, URL), on the
/// database server's clock: hosts' clocks differ, so leases never use the manager's.
#[cfg(feature = "postgres")]
fn postgres_ledger(
    settings: &crate::config::LedgerSettings,
    parts: LedgerParts,
) -> Result<Arc<dyn ReservationLedger>, Error> {
    let mut builder = rm_postgres::PgLedger::builder(settings.url.clone().unwrap_or_default())
        .default_ttl(parts.default_ttl)
        .retention(parts.retention)
        .validator(parts.validator)
        .event_sink(parts.sink)
        .placement_seed(settings.placement_seed.unwrap_or(0));
    if let Some(schema) = &settings.schema {
        builder = builder.schema(schema.clone());
    }
    if let Some(size) = settings.pool_size {
        builder = builder.pool_size(size);
    }
    if let Some(variable) = &settings.password_env {
        let password = std::env::var(variable).map_err(|_| {
            ConfigError::Invalid(vec![Problem {
                path: "ledger.password_env".into(),
                message: format!("the environment variable {variable} is not set"),
            }])
        })?;
        builder = builder.password(password);
    }
    let ledger = builder.connect().map_err(|err| match err {
        rm_postgres::Error::InvalidConfig { field, reason } => {
            ConfigError::Invalid(vec![Problem {
                path: format!("ledger.{field}"),
                message: reason,
            }])
            .into()
        }
        other => Error::LedgerBackend {
            backend: "postgres",
            source: Box::new(other),
        },
    })?;
    Ok(Arc::new(ledger))
}

type LedgerFactory = Box<dyn FnOnce(LedgerParts) -> Arc<dyn ReservationLedger> + Send>;

struct Scaled<R: ScalingRule> {
    autoscaler: Autoscaler<R>,
    target: rm_scale::TargetId,
}

impl<R> Drive for Scaled<R>
where
    R: ScalingRule + Send,
    R::State: Send,
{
    fn tick(&mut self, now: Timestamp) -> Option<(u64, u64, String)> {
        let summary = self.autoscaler.tick(now);
        if summary.changed + summary.failed == 0 {
            return None;
        }
        let record = self.autoscaler.decisions().last()?;
        if record.target != self.target || record.outcome != Outcome::Applied {
            return None;
        }
        let decision = &record.decision;
        Some((
            decision.current,
            decision.desired,
            decision.reason.as_str().to_owned(),
        ))
    }
}

/// Configures and builds a [`ResourceManager`]. Every part has a default; each can be
/// replaced by another implementation of its `rm-model` trait.
#[must_use = "a builder does nothing until `build` is called"]
pub struct ResourceManagerBuilder {
    config: Config,
    clock: Option<Arc<dyn Clock>>,
    ledger: Option<LedgerFactory>,
    validator: Option<Arc<dyn Validator>>,
    policy: Option<Arc<dyn AllocationPolicy>>,
    resolver: Option<Arc<dyn ContentionResolver>>,
    victim_notifier: Option<Arc<dyn VictimNotifier>>,
    scale_target: Option<Arc<dyn rm_model::ScaleTarget>>,
    sinks: Vec<Arc<dyn EventSink>>,
    exporter: Option<PrometheusExporter>,
    pools: Vec<(String, PoolProbe)>,
    autoscaled: Vec<(String, Box<dyn Drive>)>,
    scalable: BTreeMap<String, Arc<dyn rm_scale::ScaleTarget>>,
}

impl std::fmt::Debug for ResourceManagerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceManagerBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ResourceManagerBuilder {
    /// Takes the settings of a [`Config`] (replacing earlier ones).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The clock of TTLs, waits and samples (default: the system's monotonic clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Replaces the embedded [`ReservationManager`] with another ledger, built from the parts
    /// the manager hands over. The ledger must publish its events to [`LedgerParts::sink`].
    pub fn ledger(
        mut self,
        factory: impl FnOnce(LedgerParts) -> Arc<dyn ReservationLedger> + Send + 'static,
    ) -> Self {
        self.ledger = Some(Box::new(factory));
        self
    }

    /// Replaces the `ConstraintValidator` configured by `[limits]`.
    pub fn validator(mut self, validator: Arc<dyn Validator>) -> Self {
        self.validator = Some(validator);
        self
    }

    /// Replaces the policies configured by `[policy]` (and the sections it uses).
    pub fn policy(mut self, policy: Arc<dyn AllocationPolicy>) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Replaces the contention resolver configured by `[contention]`.
    pub fn resolver(mut self, resolver: Arc<dyn ContentionResolver>) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// Tells preemption victims they are being preempted (with their deadline).
    pub fn victim_notifier(mut self, notifier: Arc<dyn VictimNotifier>) -> Self {
        self.victim_notifier = Some(notifier);
        self
    }

    /// The target the `scale` contention strategy asks for more capacity.
    pub fn scale_target(mut self, target: Arc<dyn rm_model::ScaleTarget>) -> Self {
        self.scale_target = Some(target);
        self
    }

    /// Another receiver of every event (an audit log, a bridge to the host's bus).
    pub fn event_sink(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Records into `exporter` instead of a recorder of the manager's own (for hosts that
    /// share one exporter between several components).
    pub fn exporter(mut self, exporter: PrometheusExporter) -> Self {
        self.exporter = Some(exporter);
        self
    }

    /// Reports an object pool's status at every collection, as `pool`.
    pub fn pool<T: Send + 'static>(mut self, name: &str, pool: &Pool<T>) -> Self {
        let pool = pool.clone();
        self.pools
            .push((name.to_owned(), Arc::new(move || pool.status())));
        self
    }

    /// Scales `target` by `rule` at every [`ResourceManager::tick`]; applied decisions are
    /// published as `Scaled` events named `name`.
    pub fn autoscale<R>(
        mut self,
        name: &str,
        target: Arc<dyn rm_scale::ScaleTarget>,
        rule: R,
    ) -> Self
    where
        R: ScalingRule + Send + 'static,
        R::State: Send,
    {
        let mut autoscaler = Autoscaler::new(1);
        let id = autoscaler.add(target, rule);
        self.autoscaled.push((
            name.to_owned(),
            Box::new(Scaled {
                autoscaler,
                target: id,
            }),
        ));
        self
    }

    /// Names a target that `[[scaling]]` entries of the configuration may scale.
    pub fn scalable(mut self, name: &str, target: Arc<dyn rm_scale::ScaleTarget>) -> Self {
        self.scalable.insert(name.to_owned(), target);
        self
    }

    /// Builds the manager and registers the configured resources. Fails with every problem of
    /// the configuration ([`ConfigError::Invalid`]), or with the ledger's error for a resource
    /// it refuses.
    pub fn build(mut self) -> Result<ResourceManager, Error> {
        let config = std::mem::take(&mut self.config);
        let code = CodeParts {
            custom_policy: self.policy.is_some(),
            scale_target: self.scale_target.is_some(),
            scalable: Some(self.scalable.keys().cloned().collect()),
        };
        let mut parts = Parts::from_config(&config, &code)?;
        let mut builder = self;
        for (name, rule) in std::mem::take(&mut parts.scaling) {
            // Every name was checked against the scalable targets above.
            let Some(target) = builder.scalable.get(&name).cloned() else {
                continue;
            };
            builder = match rule {
                AnyRule::Threshold(rule) => builder.autoscale(&name, target, rule),
                AnyRule::Predictive(rule) => builder.autoscale(&name, target, rule),
                AnyRule::RateOfChange(rule) => builder.autoscale(&name, target, rule),
            };
        }
        let this = builder;
        let clock: Arc<dyn Clock> = this.clock.unwrap_or_else(|| Arc::new(SystemClock::new()));
        let validator: Arc<dyn Validator> = match this.validator {
            Some(validator) => validator,
            None => Arc::new(parts.validator.clone()),
        };
        let policy = this.policy.or(parts.policy.take());
        let (exporter, monitor) = if let Some(exporter) = this.exporter {
            let monitor = MetricsCollector::with_recorder(retention(&config), exporter.recorder());
            (Some(exporter), monitor)
        } else if config.metrics.prometheus {
            let exporter = PrometheusExporter::new();
            let monitor = MetricsCollector::with_recorder(retention(&config), exporter.recorder());
            (Some(exporter), monitor)
        } else {
            (None, MetricsCollector::new(retention(&config)))
        };

        // The scaling counters of every target are there from the first scrape.
        for (target, _) in &this.autoscaled {
            monitor.expect_scaling_target(target);
        }

        let wakeup = Wakeup::new();
        let mut sinks: Vec<Arc<dyn EventSink>> =
            vec![Arc::new(monitor.clone()), Arc::new(wakeup.clone())];
        if let Some(policy) = &policy {
            sinks.push(Arc::new(PolicyObserver(policy.clone())));
        }
        sinks.extend(this.sinks);
        let emitter = Arc::new(Emitter {
            sinks,
            sequence: AtomicU64::new(0),
            clock: clock.clone(),
        });
        let ledger_parts = LedgerParts {
            clock: clock.clone(),
            sink: emitter.clone(),
            validator,
            default_ttl: config.default_ttl(),
            retention: Duration::from_millis(config.manager.retention_ms),
        };
        let ledger: Arc<dyn ReservationLedger> = match this.ledger {
            Some(factory) => factory(ledger_parts),
            #[cfg(feature = "postgres")]
            None if config.ledger.backend == crate::config::LedgerBackend::Postgres => {
                postgres_ledger(&config.ledger, ledger_parts)?
            }
            None => Arc::new(
                ReservationManager::builder()
                    .placement_seed(config.ledger.placement_seed.unwrap_or(0))
                    .clock(ledger_parts.clock)
                    .default_ttl(ledger_parts.default_ttl)
                    .retention(ledger_parts.retention)
                    .validator(ledger_parts.validator)
                    .event_sink(ledger_parts.sink)
                    .build()
                    .map_err(|err| {
                        let path = match err {
                            rm_reserve::Error::InvalidConfig {
                                field: "retention", ..
                            } => "manager.retention_ms",
                            _ => "manager.default_ttl_ms",
                        };
                        ConfigError::Invalid(vec![Problem {
                            path: path.into(),
                            message: err.to_string(),
                        }])
                    })?,
            ),
        };

        let mut queue = WaitQueue::new(ledger.clone(), clock.clone());
        if config.contention.head_of_line == HeadOfLineSetting::Backfill {
            queue = queue.with_head_of_line(HeadOfLine::Backfill);
        }
        if let Some(policy) = &policy {
            queue = queue.with_order(policy.clone());
        }
        let queue = Arc::new(queue);
        wakeup.connect(&queue);
        let wait_timeout = Duration::from_millis(config.manager.wait_timeout_ms);
        let (resolver, graceful): (Arc<dyn ContentionResolver>, Option<Arc<Resolver>>) =
            match this.resolver {
                Some(resolver) => (resolver, None),
                None => {
                    let resolver = Arc::new(resolver_from(
                        &config,
                        queue.clone(),
                        wait_timeout,
                        this.victim_notifier,
                        preemption_policy_of(parts.priority.clone()),
                        this.scale_target,
                    )?);
                    (resolver.clone(), Some(resolver))
                }
            };

        // One way through: the manager holds the wait queue as its ledger. Releases and
        // cancellations hand the freed capacity to the queue's head; every other operation
        // is the inner ledger's own.
        let ledger: Arc<dyn ReservationLedger> = queue.clone();
        let resources = ResourceMetricsCollector::new(monitor.clone(), ledger.clone());
        let inner = Arc::new(Inner {
            clock,
            ledger,
            policy,
            priority: parts.priority.take(),
            refresh: parts.refresh.take(),
            queue,
            resolver,
            graceful,
            emitter,
            dashboard: ResourceDashboard::new(monitor.clone()),
            monitor,
            resources,
            exporter,
            elastic: parts.pools.take(),
            pools: this.pools,
            autoscaled: Mutex::new(this.autoscaled),
            classes: config.metrics.requester_classes.clone(),
            class_weights: config.metrics.class_weights.clone(),
            listen: config.metrics.listen,
        });
        let manager = ResourceManager { inner };
        // A shared ledger may hold the configured resources already (another process
        // registered them): the file says what they should be, so a different one is updated.
        let ledger = &manager.inner.ledger;
        let existing = ledger.resources()?;
        for resource in config.resources {
            match existing.iter().find(|r| r.name() == resource.name()) {
                None => ledger.register_resource(resource)?,
                Some(current) if *current == resource => {}
                Some(_) => ledger.update_resource(resource)?,
            }
        }
        // Every resource the ledger has is monitored, whoever registered it.
        for resource in ledger.resources()? {
            manager.inner.resources.register_resource(&resource);
        }
        manager.refresh_capacity();
        Ok(manager)
    }
}

fn retention(config: &Config) -> Retention {
    Retention {
        utilization: config.metrics.utilization_samples,
        ..Retention::default()
    }
}

fn resolver_from(
    config: &Config,
    queue: Arc<WaitQueue>,
    wait_timeout: Duration,
    notifier: Option<Arc<dyn VictimNotifier>>,
    policy_of: rm_contention::PreemptionPolicyOf,
    scale_target: Option<Arc<dyn rm_model::ScaleTarget>>,
) -> Result<Resolver, ConfigError> {
    let settings = &config.contention;
    let problem = |path: String, err: rm_contention::ResolverError| {
        ConfigError::Invalid(vec![Problem {
            path,
            message: err.to_string(),
        }])
    };
    let mut resolver =
        Resolver::new(queue, wait_timeout).with_disruption_budgets(settings.budgets.clone());
    if let Some(target) = scale_target {
        resolver =
            resolver.with_scale_target(target, Duration::from_millis(settings.scale_timeout_ms));
    }
    let grace = Duration::from_millis(settings.grace_ms);
    resolver = match notifier {
        Some(notifier) => resolver.with_preemption(grace, notifier, policy_of),
        None => resolver.with_preemption(grace, Arc::new(Silent), policy_of),
    };
    resolver = resolver
        .with_default(settings.default)
        .map_err(|err| problem("contention.default".into(), err))?
        .with_fallback(settings.fallback)
        .map_err(|err| problem("contention.fallback".into(), err))?;
    for (class, strategy) in &settings.classes {
        resolver = resolver
            .for_class(class, *strategy)
            .map_err(|err| problem(format!("contention.classes.{class}"), err))?;
    }
    for (requester, strategy) in &settings.requesters {
        resolver = resolver
            .for_requester(requester.clone(), *strategy)
            .map_err(|err| problem(format!("contention.requesters.{requester}"), err))?;
    }
    Ok(resolver)
}

struct Silent;

impl VictimNotifier for Silent {
    fn notify(&self, _: &Reservation, _: &ReservationId, _: Timestamp) {}
}

impl ResourceManager {
    /// A builder with every default: the embedded ledger, the priority policy, waiting on
    /// contention, a Prometheus recorder of its own.
    pub fn builder() -> ResourceManagerBuilder {
        ResourceManagerBuilder {
            config: Config::default(),
            clock: None,
            ledger: None,
            validator: None,
            policy: None,
            resolver: None,
            victim_notifier: None,
            scale_target: None,
            sinks: Vec::new(),
            exporter: None,
            pools: Vec::new(),
            autoscaled: Vec::new(),
            scalable: BTreeMap::new(),
        }
    }
}
