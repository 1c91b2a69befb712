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
    Timestamp, Validator,
};
use rm_monitor::{
    DashboardData, MetricsCollector, ResourceDashboard, ResourceMetricsCollector, Retention,
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

mod builder;

pub use builder::{LedgerParts, ResourceManagerBuilder};

type PoolProbe = Arc<dyn Fn() -> PoolStatus + Send + Sync>;

/// One autoscaled target: ticks and reports what changed.
trait Drive: Send {
    fn tick(&mut self, now: Timestamp) -> Option<(u64, u64, String)>;
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

impl ResourceManager {
    /// A manager built from a configuration with the other parts at their defaults.
    pub fn from_config(config: Config) -> Result<ResourceManager, Error> {
        ResourceManager::builder().config(config).build()
    }

    /// The ledger, for operations the manager does not wrap: the wait queue over the
    /// configured ledger (the one way every operation goes), so a release or a cancellation
    /// made here also hands its capacity to the next waiter.
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
        Ok(self.inner.ledger.release(id, fence)?)
    }

    /// Cancels a reservation; its capacity goes to the next waiter as with
    /// [`release`](Self::release).
    pub fn cancel(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
    ) -> Result<Reservation, Error> {
        Ok(self.inner.ledger.cancel(id, fence)?)
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

    /// Where demand exceeds capacity now: per resource and per type, what is held and what
    /// the requests waiting in [`reserve`](Self::reserve) ask, and how long the oldest has
    /// waited (`rm-contention`'s [`detect`](rm_contention::detect) on a snapshot and the
    /// wait queue).
    pub fn contention(&self) -> Result<rm_contention::ContentionReport, Error> {
        let snapshot = self.snapshot()?;
        let waiting = self.inner.queue.pending();
        Ok(rm_contention::detect(&snapshot, &waiting, self.now()))
    }

    /// Deadlocks among waiting requesters: each cycle of requesters waiting for capacity only
    /// the next one's holds could free (`rm-contention`'s
    /// [`WaitForGraph`](rm_contention::WaitForGraph)); empty when none.
    pub fn deadlocks(&self) -> Result<Vec<Vec<RequesterId>>, Error> {
        let snapshot = self.snapshot()?;
        let waiting: Vec<ReservationRequest> = self
            .inner
            .queue
            .pending()
            .into_iter()
            .map(|p| (*p.request).clone())
            .collect();
        Ok(
            rm_contention::WaitForGraph::build(&snapshot.resources, &snapshot.active, &waiting)
                .deadlocks(),
        )
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
        .map_err(Error::Thread)?;
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
        inner.monitor.record_shares(&rm_monitor::class_shares(
            &snapshot,
            &inner.classes,
            &inner.class_weights,
        ));
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
                source: err,
            }
        })
    }
}
