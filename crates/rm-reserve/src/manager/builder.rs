//! [`ReservationManagerBuilder`]: the manager's settings, checked at `build`.

use super::*;

/// Configures a [`ReservationManager`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct ReservationManagerBuilder {
    clock: Arc<dyn Clock>,
    default_ttl: Duration,
    retention: Duration,
    validator: Option<Arc<dyn Validator>>,
    sink: Option<Arc<dyn EventSink>>,
    placement_seed: u64,
    workload: Option<rm_model::Workload>,
}

impl ReservationManagerBuilder {
    /// The clock TTLs are measured by (default: the system's monotonic clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How long a pending hold lives unless its request names a TTL (default 30 s).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// How long an ended reservation is remembered, so that `get` and retries by id still
    /// find it (default 5 minutes). After that its id is forgotten. Zero is refused by
    /// [`build`](Self::build): it would forget an id the moment its reservation ends, so a
    /// caller retrying a release whose answer it lost would be told the id is unknown.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Validates resources at registration and requests at admission.
    pub fn validator(mut self, validator: Arc<dyn Validator>) -> Self {
        self.validator = Some(validator);
        self
    }

    /// Receives every event, on the thread that causes it.
    pub fn event_sink(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Seeds the `random-fit` strategy's draws and the `fragmentation` strategy's order of
    /// nodes within a band (default 0): the same seed and the same requests give the same
    /// placements.
    pub fn placement_seed(mut self, seed: u64) -> Self {
        self.placement_seed = seed;
        self
    }

    /// The target workload of the `fragmentation` strategy (see [`rm_model::fragment`]). By
    /// default it is learned: every request placed by the strategy counts its shape first.
    pub fn target_workload(mut self, workload: rm_model::Workload) -> Self {
        self.workload = Some(workload);
        self
    }

    /// Builds the manager. Fails on a zero default TTL or a zero retention.
    pub fn build(self) -> Result<ReservationManager, Error> {
        if self.default_ttl.is_zero() {
            return Err(Error::InvalidConfig {
                field: "default_ttl",
                reason: "must be positive",
            });
        }
        if self.retention.is_zero() {
            return Err(Error::InvalidConfig {
                field: "retention",
                reason: "must be positive: retries by id need the ended reservation remembered",
            });
        }
        Ok(self.assemble())
    }

    pub(super) fn assemble(self) -> ReservationManager {
        let catalog = Catalog::default();
        catalog.node_strategies.set_seed(self.placement_seed);
        if let Some(workload) = self.workload {
            catalog.node_strategies.set_workload(workload);
        }
        ReservationManager {
            clock: self.clock,
            default_ttl: self.default_ttl,
            retention: self.retention,
            validator: self.validator,
            observers: Observers::new(self.sink),
            catalog: RwLock::new(catalog),
            records: RecordTable::default(),
            timers: Mutex::new(TimerHeap::default()),
            forgets: Mutex::new(VecDeque::new()),
            holders: HolderIndex::default(),
            next_timer: AtomicU64::new(u64::MAX),
            next_forget: AtomicU64::new(u64::MAX),
            forget_slack: (self.retention / 8).min(Duration::from_secs(1)),
            sweep: Mutex::new(()),
            last_token: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl ReservationManager {
    /// A builder, starting from the defaults of [`ReservationManager::new`].
    pub fn builder() -> ReservationManagerBuilder {
        ReservationManagerBuilder {
            clock: Arc::new(SystemClock::new()),
            default_ttl: Duration::from_secs(30),
            retention: Duration::from_secs(300),
            validator: None,
            sink: None,
            placement_seed: 0,
            workload: None,
        }
    }
}
