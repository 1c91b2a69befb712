//! [`PgLedgerBuilder`]: the settings of a [`PgLedger`], checked at connect.

use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use crate::Error;
use crate::pool::{Pool, Settings};
use crate::schema::{check_schema_name, migrate};
use crate::view::View;

/// Configures a [`PgLedger`]. Start from [`PgLedger::builder`].
#[must_use = "a builder does nothing until `connect` is called"]
pub struct PgLedgerBuilder {
    url: String,
    password: Option<String>,
    schema: String,
    pool_size: usize,
    default_ttl: Duration,
    retention: Duration,
    statement_timeout: Duration,
    lock_timeout: Duration,
    connect_timeout: Duration,
    max_staleness: Duration,
    wait_poll: Duration,
    clock: Option<Arc<dyn Clock>>,
    validator: Option<Arc<dyn Validator>>,
    sink: Option<Arc<dyn EventSink>>,
    wait_order: Option<Arc<dyn AllocationPolicy>>,
    backfill: bool,
    placement_seed: u64,
}

impl std::fmt::Debug for PgLedgerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the URL (it may carry a password) nor the password is shown.
        f.debug_struct("PgLedgerBuilder")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("default_ttl", &self.default_ttl)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

use crate::ledger::PgLedger;
use rm_model::{AllocationPolicy, Clock, EventSink, Validator};

impl PgLedgerBuilder {
    /// The password, kept apart from the URL so it can come from a secret store or an
    /// environment variable. It is never logged or shown by `Debug`.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// The schema the ledger's tables live in (default `rm`): pools that share a database
    /// use one schema each. Created (with its tables) at connect when absent.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// How many connections the ledger opens at most (default 8): one per thread in an
    /// operation at once; more threads wait for a free one.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// How long a pending hold lives unless its request names a TTL (default 30 s).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// How long an ended reservation is remembered for `get` and retries by id (default 5
    /// minutes); older ones are deleted by the sweep, so the table does not grow without
    /// bound. Zero is refused.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// The server's `statement_timeout` for the ledger's connections (default 5 s); a
    /// statement that runs longer fails with [`LedgerError::Timeout`](rm_model::LedgerError::Timeout).
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// The server's `lock_timeout` (default 2 s): how long one statement waits for a row
    /// lock before the ledger retries it.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// How long opening a connection may take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How old this process's view of free capacity may get before a grant reads it again
    /// (default 1 s). The view only guides the choice of resources: grants are checked
    /// against the rows, and refusals are given only after a fresh read.
    pub fn max_staleness(mut self, staleness: Duration) -> Self {
        self.max_staleness = staleness;
        self
    }

    /// How often a waiter ([`PgLedger::wait`]) looks again without being woken (default
    /// 100 ms): the longest a lost notification can delay a grant.
    pub fn wait_poll(mut self, poll: Duration) -> Self {
        self.wait_poll = poll;
        self
    }

    /// Orders this process's waiters in the shared queue by `policy`'s
    /// [`order_key`](AllocationPolicy::order_key) (lower first, then arrival), as
    /// rm-contention's `WaitQueue::with_order` orders one process's: weighted fair shares,
    /// quotas, priority classes. Each waiter's key is computed by its own process when it
    /// queues and again with every renewal of its row (every 500 ms), and the database elects
    /// the head from the stored keys, so every process agrees on it at any instant. Give
    /// every process on the schema the same policy, fed the same events (a
    /// [`Listener`](crate::Listener) delivers every process's), or their keys will not be
    /// comparable. A composite policy orders across processes by its first policy's key.
    /// Without one the key is minus the priority: priority, then arrival.
    pub fn wait_order(mut self, policy: Arc<dyn AllocationPolicy>) -> Self {
        self.wait_order = Some(policy);
        self
    }

    /// Lets this process's waiters that give their run time
    /// ([`Waiting::expecting`](crate::Waiting::expecting)) take capacity ahead of a blocked
    /// head of the shared queue when they fit now and are expected to end before the head
    /// could start (EASY backfill, as rm-contention's `HeadOfLine::Backfill`; the rule is
    /// `rm_model::backfill`'s). Off by default: strict order. Safe for the other processes'
    /// waiters whatever they chose: a backfilled hold is expected to be gone by the time the
    /// head could start.
    pub fn backfill(mut self, on: bool) -> Self {
        self.backfill = on;
        self
    }

    /// Seeds the `random-fit` strategy's draws and the `fragmentation` strategy's order of
    /// nodes within a band in this process (default 0).
    pub fn placement_seed(mut self, seed: u64) -> Self {
        self.placement_seed = seed;
        self
    }

    /// Measures TTLs by this clock instead of the database server's. For tests and
    /// simulations with a manual clock: in production every process must use the server's
    /// clock (the default), since hosts' clocks differ.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Validates resources at registration and requests at admission.
    pub fn validator(mut self, validator: Arc<dyn Validator>) -> Self {
        self.validator = Some(validator);
        self
    }

    /// Receives the events of this process's operations, on the thread that causes them.
    /// Events of every process reach a [`Listener`](crate::Listener).
    pub fn event_sink(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Checks the settings, connects, and brings the schema to this build's version (safe
    /// when many processes start at once).
    pub fn connect(self) -> Result<PgLedger, Error> {
        let positive = |field: &'static str, value: Duration| {
            if value.is_zero() {
                Err(Error::InvalidConfig {
                    field,
                    reason: "must be positive".into(),
                })
            } else {
                Ok(())
            }
        };
        positive("default_ttl", self.default_ttl)?;
        positive("retention", self.retention)?;
        positive("statement_timeout", self.statement_timeout)?;
        positive("lock_timeout", self.lock_timeout)?;
        positive("connect_timeout", self.connect_timeout)?;
        positive("wait_poll", self.wait_poll)?;
        if self.pool_size == 0 {
            return Err(Error::InvalidConfig {
                field: "pool_size",
                reason: "must be at least 1".into(),
            });
        }
        check_schema_name(&self.schema)?;
        let mut config: postgres::Config =
            self.url
                .parse()
                .map_err(|err: postgres::Error| Error::InvalidConfig {
                    field: "url",
                    reason: format!(
                        "is not a PostgreSQL URL (postgres://user@host:port/database) or \
                     key=value list: {err}"
                    ),
                })?;
        if let Some(password) = &self.password {
            config.password(password);
        }
        config.connect_timeout(self.connect_timeout);
        // Operators (and tests) tell each pool's connections apart in `pg_stat_activity`.
        config.application_name(&format!("rm-postgres/{}", self.schema));
        let mut first = config
            .connect(postgres::NoTls)
            .map_err(|source| Error::Connect { source })?;
        migrate(&mut first, &self.schema)?;
        drop(first);
        let pool = Pool::new(
            Settings {
                config,
                schema: self.schema,
                statement_timeout: self.statement_timeout,
                lock_timeout: self.lock_timeout,
            },
            self.pool_size,
        );
        // One connection now, so that a database that refuses the ledger's statements says
        // so at start.
        let conn = pool.connect()?;
        pool.put(conn);
        let policy_clock: Arc<dyn Clock> = match &self.clock {
            Some(clock) => clock.clone(),
            None => Arc::new(rm_model::SystemClock::new()),
        };
        Ok(PgLedger {
            pool,
            view: RwLock::new({
                let view = View::default();
                view.catalog.node_strategies.set_seed(self.placement_seed);
                view
            }),
            policy_clock,
            clock: self.clock,
            default_ttl: self.default_ttl,
            retention: self.retention,
            max_staleness: self.max_staleness,
            validator: self.validator,
            sink: self.sink,
            sequence: AtomicU64::new(0),
            wakeups: Arc::default(),
            wait_poll: self.wait_poll,
            wait_order: self.wait_order,
            backfill: self.backfill,
        })
    }
}

impl PgLedger {
    /// A builder for a ledger at `url` (`postgres://user@host:5432/database`, or PostgreSQL's
    /// `key=value` form), with the defaults: schema `rm`, 8 connections, 30 s default TTL,
    /// 5 minutes of retention, the server's clock.
    pub fn builder(url: impl Into<String>) -> PgLedgerBuilder {
        PgLedgerBuilder {
            url: url.into(),
            password: None,
            schema: "rm".into(),
            pool_size: 8,
            default_ttl: Duration::from_secs(30),
            retention: Duration::from_secs(300),
            statement_timeout: Duration::from_secs(5),
            lock_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(5),
            max_staleness: Duration::from_secs(1),
            wait_poll: Duration::from_millis(100),
            clock: None,
            validator: None,
            sink: None,
            wait_order: None,
            backfill: false,
            placement_seed: 0,
        }
    }
}
