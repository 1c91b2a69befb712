//! [`ResourceManager`] and its builder: the embedded ledger, validator, policies, contention
//! resolver, pools, autoscaler and monitor wired through the `rm-model` traits.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use rm_contention::{HeadOfLine, Resolver, VictimNotifier, WaitQueue, Wakeup};
use rm_model::{
    Admission, AllocationPolicy, Clock, ContentionResolver, Event, EventKind, EventSink,
    FencingToken, LedgerError, LedgerSnapshot, Refusal, RequesterId, Reservation, ReservationId,
    ReservationLedger, ReservationRequest, ResolutionOutcome, Resource, ResourceName, SystemClock,
    Timestamp, Validator, ppm,
};
use rm_monitor::{
    DashboardData, MetricsCollector, ResourceDashboard, ResourceMetricsCollector, Retention,
    ShareSample,
};
use rm_policy::{PolicyObserver, PriorityAllocationPolicy};
use rm_pool::{ElasticGroup, Pool, PoolStatus};
use rm_reserve::ReservationManager;
use rm_scale::{Autoscaler, Outcome, ScalingRule};

use crate::Error;
use crate::config::{Config, ConfigError, HeadOfLineSetting, Problem};
use crate::exporter::PrometheusExporter;
use crate::periodic::Periodic;
use crate::server::MetricsServer;
use crate::wiring::{AnyRule, CapacityRefresh, CodeParts, Parts, preemption_policy_of};

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
        .event_sink(parts.sink);
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
type PoolProbe = Arc<dyn Fn() -> PoolStatus + Send + Sync>;

/// One autoscaled target: ticks and reports what changed.
trait Drive: Send {
    fn tick(&mut self, now: Timestamp) -> Option<(u64, u64, String)>;
}

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

/// Publishes the manager's own events (refusals, waits, scaling) to the same sinks as the
/// ledger's, numbered in a stream of their own.
struct Emitter {
    sinks: Vec<Arc<dyn EventSink>>,
    sequence: AtomicU64,
    clock: Arc<dyn Clock>,
}

impl EventSink for Emitter {
    fn publish(&self, event: &Event) {
        for sink in &self.sinks {
            sink.publish(event);
        }
    }
}

impl Emitter {
    fn emit(&self, kind: EventKind) {
        let event = Event {
            sequence: self.sequence.fetch_add(1, Ordering::Relaxed),
            at: self.clock.now(),
            kind,
        };
        self.publish(&event);
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

struct Inner {
    clock: Arc<dyn Clock>,
    ledger: Arc<dyn ReservationLedger>,
    policy: Option<Arc<dyn AllocationPolicy>>,
    priority: Option<Arc<PriorityAllocationPolicy>>,
    refresh: Option<CapacityRefresh>,
    queue: Arc<WaitQueue>,
    resolver: Arc<dyn ContentionResolver>,
    graceful: Option<Arc<Resolver>>,
    emitter: Arc<Emitter>,
    monitor: MetricsCollector,
    resources: ResourceMetricsCollector,
    dashboard: ResourceDashboard,
    exporter: Option<PrometheusExporter>,
    elastic: Option<ElasticGroup>,
    pools: Vec<(String, PoolProbe)>,
    autoscaled: Mutex<Vec<(String, Box<dyn Drive>)>>,
    classes: BTreeMap<RequesterId, String>,
    class_weights: BTreeMap<String, u32>,
    listen: Option<SocketAddr>,
}

/// Runs [`ResourceManager::tick`] periodically on a thread of its own (see
/// [`ResourceManager::start_ticker`]); dropping it stops the thread.
#[derive(Debug)]
pub struct Ticker {
    _periodic: Periodic,
    last_error: Arc<Mutex<Option<String>>>,
}

impl Ticker {
    /// The error of the latest tick, if it failed (ticks go on after a failure).
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What one [`ResourceManager::tick`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Pending reservations that expired.
    pub expired: usize,
    /// Preemption victims ended at their grace deadline.
    pub preempted: usize,
    /// Scale targets resized.
    pub scaled: usize,
}

/// The whole resource manager, embedded: a ledger, validation, allocation policies,
/// contention resolution, pools, autoscaling and monitoring, with a Prometheus endpoint.
/// Cloning shares it; every method takes `&self` and may be called from many threads.
#[derive(Clone)]
pub struct ResourceManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ResourceManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceManager")
            .field(
                "policy",
                &self.inner.policy.as_ref().map(|p| p.name().to_owned()),
            )
            .field("queued", &self.inner.queue.len())
            .finish_non_exhaustive()
    }
}

const OTHER_CLASS: &str = "other";

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

    /// A manager built from a configuration with the other parts at their defaults.
    pub fn from_config(config: Config) -> Result<ResourceManager, Error> {
        ResourceManager::builder().config(config).build()
    }

    /// The ledger, for operations the manager does not wrap.
    pub fn ledger(&self) -> &Arc<dyn ReservationLedger> {
        &self.inner.ledger
    }

    /// The clock.
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// Registers a resource (validated) and starts monitoring it.
    pub fn register_resource(&self, resource: Resource) -> Result<(), Error> {
        // Monitored only once registered: a refused resource leaves no trace.
        self.inner.ledger.register_resource(resource.clone())?;
        self.inner.resources.register_resource(&resource);
        self.refresh_capacity();
        Ok(())
    }

    /// Unregisters a resource that holds nothing and forgets its history.
    pub fn unregister_resource(&self, name: &ResourceName) -> Result<Resource, Error> {
        let resource = self.inner.ledger.unregister_resource(name)?;
        self.inner.resources.unregister_resource(name);
        self.refresh_capacity();
        Ok(resource)
    }

    fn refresh_capacity(&self) {
        if let Some(refresh) = &self.inner.refresh {
            refresh(&*self.inner.ledger);
        }
    }

    /// Admits `request` through the policies and reserves it now, or refuses it at once
    /// (no waiting). Every refusal is counted by reason.
    pub fn try_reserve(&self, request: &ReservationRequest) -> Result<Reservation, Error> {
        self.reserve_with(request, false)
    }

    /// Admits `request` through the policies and reserves it; when it does not fit, resolves
    /// the contention (waits up to the configured timeout, preempts, scales or shrinks elastic
    /// holds, by the configured strategy) before refusing.
    pub fn reserve(&self, request: &ReservationRequest) -> Result<Reservation, Error> {
        self.reserve_with(request, true)
    }

    fn reserve_with(
        &self,
        request: &ReservationRequest,
        resolve: bool,
    ) -> Result<Reservation, Error> {
        let inner = &*self.inner;
        // The request gets an id when a policy admits it (so that the admission can be
        // withdrawn, or confirmed by the grant's event) and its priority class's priority (so
        // that preemption and queue order see it); otherwise it goes on as it is, uncopied.
        let priority = inner.priority.as_ref().map_or(request.priority, |policy| {
            policy.base_priority(&request.requester, request.priority)
        });
        let adjusted;
        let needs_id = request.id.is_none() && inner.policy.is_some();
        let request = if !needs_id && priority == request.priority {
            request
        } else {
            let mut copy = request.clone();
            if needs_id {
                copy.id = Some(ReservationId::generate());
            }
            copy.priority = priority;
            adjusted = copy;
            &adjusted
        };
        if let Some(policy) = &inner.policy
            && let Admission::Refuse(refusal) = policy.admit(request, inner.clock.now())
        {
            let reclaimed = resolve && self.reclaim(&**policy, request)?;
            if !reclaimed {
                return Err(self.refused(request, refusal, None));
            }
            if let Admission::Refuse(refusal) = policy.admit(request, inner.clock.now()) {
                return Err(self.refused(request, refusal, None));
            }
        }
        let cause = match inner.ledger.reserve(request) {
            Ok(reservation) => return Ok(reservation),
            Err(cause) => cause,
        };
        if !resolve || !matches!(cause, LedgerError::InsufficientCapacity { .. }) {
            self.withdraw(request);
            return Err(self.refused(request, Refusal::from_ledger(cause), None));
        }
        inner.emitter.emit(EventKind::Queued {
            requester: request.requester.clone(),
            depth: inner.queue.len() + 1,
        });
        let started = inner.clock.now();
        let resolution = inner.resolver.resolve(&*inner.ledger, request, &cause);
        let waited = inner.clock.now().saturating_duration_since(started);
        let granted = matches!(resolution.outcome, ResolutionOutcome::Granted(_));
        inner.emitter.emit(EventKind::Dequeued {
            requester: request.requester.clone(),
            waited,
            granted,
        });
        match resolution.outcome {
            ResolutionOutcome::Granted(reservation) => Ok(reservation),
            ResolutionOutcome::Refused(refusal) => {
                self.withdraw(request);
                Err(self.refused(request, refusal, Some(resolution.explanation)))
            }
            ResolutionOutcome::Queued { position } => Err(Error::Queued {
                position,
                explanation: resolution.explanation,
            }),
        }
    }

    /// Ends the holds the policy names for a request it refused for quota lent out or held
    /// by lower priorities (Kueue's reclaim within a cohort and preemption within a queue),
    /// when the requester's priority class may preempt. Returns whether any hold was ended;
    /// the victims are ended at once (the quota is the request's own), and the ledger's
    /// events return their quota before the request is admitted again.
    fn reclaim(
        &self,
        policy: &dyn AllocationPolicy,
        request: &ReservationRequest,
    ) -> Result<bool, Error> {
        let inner = &*self.inner;
        let may_preempt = inner.priority.as_ref().is_none_or(|p| {
            p.preemption_policy(&request.requester) != rm_model::PreemptionPolicy::Never
        });
        if !may_preempt {
            return Ok(false);
        }
        let snapshot = inner.ledger.snapshot()?;
        let victims = policy.reclaim(request, &snapshot.active);
        let mut ended = false;
        for victim in &victims {
            match inner.ledger.preempt(victim, request.id.as_ref()) {
                Ok(_) => ended = true,
                // Ended meanwhile: its quota is back already.
                Err(
                    LedgerError::InvalidState { .. }
                    | LedgerError::Expired { .. }
                    | LedgerError::UnknownReservation { .. },
                ) => {}
                Err(other) => return Err(other.into()),
            }
        }
        Ok(ended)
    }

    fn withdraw(&self, request: &ReservationRequest) {
        if let Some(policy) = &self.inner.policy {
            policy.withdraw(request);
        }
    }

    fn refused(
        &self,
        request: &ReservationRequest,
        refusal: Refusal,
        explanation: Option<String>,
    ) -> Error {
        self.inner.emitter.emit(EventKind::Refused {
            requester: request.requester.clone(),
            reason: refusal.reason.as_str().to_owned(),
        });
        Error::Refused {
            refusal: Box::new(refusal),
            explanation,
        }
    }

    /// Confirms a pending reservation (`fence`, when given, must be its token).
    pub fn confirm(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
    ) -> Result<Reservation, Error> {
        Ok(self.inner.ledger.confirm(id, fence)?)
    }

    /// Extends a pending reservation's TTL.
    pub fn renew(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
        ttl: Duration,
    ) -> Result<Reservation, Error> {
        Ok(self.inner.ledger.renew(id, fence, ttl)?)
    }

    /// Releases a reservation; its capacity goes to the next waiter at once: this thread
    /// grants it to the head of the wait queue and wakes the head with its grant.
    pub fn release(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
    ) -> Result<Reservation, Error> {
        Ok(self.inner.queue.release(id, fence)?)
    }

    /// Cancels a reservation; its capacity goes to the next waiter as with
    /// [`release`](Self::release).
    pub fn cancel(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
    ) -> Result<Reservation, Error> {
        Ok(self.inner.queue.cancel(id, fence)?)
    }

    /// A reservation by id (active, or ended and still remembered).
    pub fn get(&self, id: &ReservationId) -> Result<Reservation, Error> {
        Ok(self.inner.ledger.get(id)?)
    }

    /// How many requests wait for capacity now (blocked in [`reserve`](Self::reserve)).
    pub fn waiting(&self) -> usize {
        self.inner.queue.len()
    }

    /// A consistent snapshot of the ledger.
    pub fn snapshot(&self) -> Result<LedgerSnapshot, Error> {
        Ok(self.inner.ledger.snapshot()?)
    }

    /// Units from the configured elastic pool `pool`; returned when the lease drops.
    pub fn acquire_units(&self, pool: &str, units: u64) -> Result<rm_pool::ElasticLease, Error> {
        match &self.inner.elastic {
            Some(group) => Ok(group.acquire(pool, units)?),
            None => Err(rm_pool::Error::UnknownPool {
                pool: pool.to_owned(),
            }
            .into()),
        }
    }

    /// Periodic work: expires due holds and queue entries, ends preemption victims whose
    /// grace is over, runs the autoscalers, and collects the gauges.
    pub fn tick(&self) -> Result<TickReport, Error> {
        let inner = &*self.inner;
        let now = inner.clock.now();
        let expired = inner.ledger.expire_due()?.len();
        inner.queue.expire_due();
        let preempted = match &inner.graceful {
            Some(resolver) => resolver.preemption().tick(&*inner.ledger, now)?.len(),
            None => 0,
        };
        let mut scaled = 0;
        {
            let mut autoscaled = inner
                .autoscaled
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for (name, drive) in autoscaled.iter_mut() {
                if let Some((from, to, reason)) = drive.tick(now) {
                    scaled += 1;
                    inner.emitter.emit(EventKind::Scaled {
                        target: name.clone(),
                        from,
                        to,
                        reason,
                    });
                }
            }
        }
        self.collect()?;
        Ok(TickReport {
            expired,
            preempted,
            scaled,
        })
    }

    /// Ticks every `interval` on a thread of its own until the returned [`Ticker`] is
    /// dropped: expiries, preemption deadlines, autoscaling and gauges without a host loop.
    /// The thread holds the manager weakly and stops ticking once every handle is gone.
    pub fn start_ticker(&self, interval: Duration) -> Result<Ticker, Error> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let last_error = Arc::new(Mutex::new(None));
        let record = last_error.clone();
        let periodic = Periodic::start("rm-ticker", interval, move || {
            if let Some(inner) = weak.upgrade() {
                let outcome = ResourceManager { inner }.tick();
                *record.lock().unwrap_or_else(PoisonError::into_inner) =
                    outcome.err().map(|err| err.to_string());
            }
        })
        .map_err(|err| Error::Thread(err.to_string()))?;
        Ok(Ticker {
            _periodic: periodic,
            last_error,
        })
    }

    /// Samples the gauges from one ledger snapshot: utilisation per capacity, reservations
    /// by state, each requester class's share, the oldest waiter's age, and pools.
    pub fn collect(&self) -> Result<(), Error> {
        let inner = &*self.inner;
        let snapshot = inner.ledger.snapshot()?;
        inner.resources.collect_from(&snapshot);
        inner.monitor.record_shares(&self.shares(&snapshot));
        inner
            .monitor
            .record_starvation(inner.queue.starvation_age());
        let at = snapshot.taken_at;
        for (name, probe) in &inner.pools {
            let status = probe();
            inner.monitor.record_pool(
                at,
                name,
                status.size as u64,
                status.in_use as u64,
                status.waiting as u64,
            );
        }
        if let Some(group) = &inner.elastic {
            for status in group.status() {
                let size = status.guaranteed + status.borrowed;
                let in_use = status.used_own + status.borrowed;
                inner.monitor.record_pool(at, &status.name, size, in_use, 0);
            }
        }
        Ok(())
    }

    /// Each class's dominant share of capacity against its weight's entitlement.
    fn shares(&self, snapshot: &LedgerSnapshot) -> Vec<ShareSample> {
        let inner = &*self.inner;
        let mut totals: BTreeMap<&rm_model::ResourceType, i128> = BTreeMap::new();
        for usage in &snapshot.usage {
            *totals.entry(&usage.resource_type).or_default() +=
                usage.unit.to_base_milli(usage.capacity);
        }
        // Every configured class and `other` always have a series, so the set of series does
        // not change with who holds what.
        let mut held: BTreeMap<&str, BTreeMap<&rm_model::ResourceType, i128>> = BTreeMap::new();
        held.entry(OTHER_CLASS).or_default();
        for class in inner.classes.values() {
            held.entry(class.as_str()).or_default();
        }
        for class in inner.class_weights.keys() {
            held.entry(class.as_str()).or_default();
        }
        for reservation in &snapshot.active {
            let class = inner
                .classes
                .get(&reservation.requester)
                .map_or(OTHER_CLASS, String::as_str);
            let by_type = held.entry(class).or_default();
            for item in reservation.items.iter() {
                *by_type.entry(&item.resource_type).or_default() +=
                    item.unit.to_base_milli(item.amount);
            }
        }
        let weight = |class: &str| i128::from(*inner.class_weights.get(class).unwrap_or(&1));
        // Configured classes are always entitled; `other` only while someone outside them
        // holds capacity (an empty `other` would otherwise dilute every class's share).
        let counts = |class: &str, by_type: &BTreeMap<&rm_model::ResourceType, i128>| {
            class != OTHER_CLASS || by_type.values().any(|amount| *amount > 0)
        };
        let total_weight: i128 = held
            .iter()
            .filter(|(class, by_type)| counts(class, by_type))
            .map(|(class, _)| weight(class))
            .sum();
        held.iter()
            .map(|(class, by_type)| {
                let share_ppm = by_type
                    .iter()
                    .map(|(resource_type, amount)| {
                        ppm(*amount, totals.get(resource_type).copied().unwrap_or(0))
                    })
                    .max()
                    .unwrap_or(0);
                ShareSample {
                    class: (*class).to_owned(),
                    share_ppm,
                    entitled_ppm: if counts(class, by_type) {
                        ppm(weight(class), total_weight)
                    } else {
                        0
                    },
                }
            })
            .collect()
    }

    /// The dashboard's data as of now (collect first for fresh gauges).
    pub fn dashboard(&self) -> DashboardData {
        self.inner
            .dashboard
            .get_dashboard_data(self.inner.clock.now())
    }

    /// The monitor that counts events.
    pub fn monitor(&self) -> &MetricsCollector {
        &self.inner.monitor
    }

    /// The Prometheus exporter, unless `metrics.prometheus` is off.
    pub fn exporter(&self) -> Option<&PrometheusExporter> {
        self.inner.exporter.as_ref()
    }

    /// Collects the gauges and renders every metric in the Prometheus text format, for hosts
    /// that serve `/metrics` themselves.
    pub fn render(&self) -> Result<String, Error> {
        let exporter = self
            .inner
            .exporter
            .as_ref()
            .ok_or(Error::PrometheusDisabled)?;
        self.collect()?;
        Ok(exporter.render())
    }

    /// Serves `/metrics` on the configured `metrics.listen` address, or on
    /// [`DEFAULT_METRICS_ADDR`](crate::DEFAULT_METRICS_ADDR) when none is configured. Keep
    /// the returned server: dropping it stops serving.
    #[must_use = "dropping the server stops it: keep the handle for as long as it should serve"]
    pub fn serve_metrics(&self) -> Result<MetricsServer, Error> {
        let addr = match self.inner.listen {
            Some(addr) => addr,
            None => crate::DEFAULT_METRICS_ADDR
                .parse()
                .map_err(|_| Error::PrometheusDisabled)?,
        };
        self.serve_metrics_on(addr)
    }

    /// Serves `/metrics` on `addr` (port 0 picks a free one: see
    /// [`MetricsServer::local_addr`]), running the exporter's upkeep every 5 seconds. The
    /// address is bound before this returns. A scrape collects the gauges and renders, on a
    /// thread of its own; scrapes within 250 ms of a render share it. The server holds the
    /// manager weakly: once every handle is dropped it answers 503. It is hyper's HTTP/1
    /// server: a request head must arrive within 2 s and an exchange end within 10 s, up to
    /// 512 connections are served at once, `HEAD` gets the length without the body, other
    /// methods `405` with `Allow`, a malformed request `400` (see `docs/metrics.md`).
    #[must_use = "dropping the server stops it: keep the handle for as long as it should serve"]
    pub fn serve_metrics_on(&self, addr: SocketAddr) -> Result<MetricsServer, Error> {
        let exporter = self
            .inner
            .exporter
            .clone()
            .ok_or(Error::PrometheusDisabled)?;
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let render = Arc::new(move || {
            let inner = weak.upgrade()?;
            let manager = ResourceManager { inner };
            manager.render().ok()
        });
        let upkeep = Arc::new(move || exporter.run_upkeep());
        MetricsServer::start(addr, render, upkeep, Duration::from_secs(5)).map_err(|err| {
            Error::Serve {
                address: addr,
                message: err.to_string(),
            }
        })
    }
}
