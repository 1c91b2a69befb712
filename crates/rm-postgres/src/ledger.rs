//! [`PgLedger`]: the ledger contract on PostgreSQL.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use postgres::Row;
use postgres::types::ToSql;
use rm_model::{
    AuditReport, AuditViolation, CapacityUsage, Clock, Event, EventKind, EventSink, FencingToken,
    Labels, LedgerError, LedgerSnapshot, Priority, Quantity, RequesterId, Reservation,
    ReservationId, ReservationItem, ReservationLedger, ReservationRequest, ReservationState,
    Resource, ResourceCapacity, ResourceName, ResourceType, Timestamp, Unit, ValidationContext,
    ValidationErrors, Validator, shrink_item,
};
use rm_plan::{Affinity, MAX_DIMS, Placement};

use crate::pool::{Attempt, Conn, Pool, Settings};
use crate::schema::{channel, check_schema_name, migrate};
use crate::view::{Catalog, PgSlot, View};
use crate::{Error, Listener};

/// How many times a grant plans again when the rows it planned on changed meanwhile.
const COMMIT_ATTEMPTS: usize = 32;

/// How many due holds (and forgotten reservations) one sweep handles.
const SWEEP_BATCH: i32 = 1000;

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> LedgerError {
    LedgerError::InvalidInput {
        field: field.into(),
        reason: reason.into(),
    }
}

fn rejected(errors: ValidationErrors) -> LedgerError {
    let field = errors
        .violations
        .first()
        .map(|v| v.path.clone())
        .unwrap_or_default();
    invalid(field, errors.to_string())
}

fn nanos(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

fn timestamp(nanos: i64) -> Timestamp {
    Timestamp::from_nanos(u64::try_from(nanos).unwrap_or(0))
}

/// A stored value the crate wrote itself but cannot read back: the schema was changed by
/// hand, or by a newer version.
#[derive(Debug, thiserror::Error)]
#[error("read {what} from the database: {reason}")]
struct Corrupt {
    what: &'static str,
    reason: String,
}

fn corrupt(operation: &'static str, what: &'static str, reason: impl ToString) -> LedgerError {
    LedgerError::Unavailable {
        operation,
        source: Arc::new(Corrupt {
            what,
            reason: reason.to_string(),
        }),
    }
}

fn parse_state(text: &str) -> Option<ReservationState> {
    use ReservationState::*;
    [Pending, Confirmed, Released, Expired, Preempted, Cancelled]
        .into_iter()
        .find(|s| s.as_str() == text)
}

/// One reservation as a row holds it, with its holds (capacity, type, amount).
struct Held {
    reservation: Reservation,
    holds: Vec<(String, String, i64)>,
}

/// Reads a reservation from a row with the `reservation` table's columns.
fn held_from(operation: &'static str, row: &Row) -> Result<Held, LedgerError> {
    let bad = |what, reason: &dyn ToString| corrupt(operation, what, reason.to_string());
    let id: String = row.get("id");
    let id = ReservationId::new(&id).map_err(|e| bad("a reservation id", &e))?;
    let state: String = row.get("state");
    let state = parse_state(&state).ok_or_else(|| bad("a state", &state))?;
    let requester: String = row.get("requester");
    let requester = RequesterId::new(&requester).map_err(|e| bad("a requester", &e))?;
    let items: String = row.get("items");
    let items: Vec<ReservationItem> =
        serde_json::from_str(&items).map_err(|e| bad("the items", &e))?;
    let labels: String = row.get("labels");
    let labels: Labels = serde_json::from_str(&labels).map_err(|e| bad("the labels", &e))?;
    let resources: Vec<String> = row.get("hold_resource");
    let types: Vec<String> = row.get("hold_type");
    let amounts: Vec<i64> = row.get("hold_amount");
    let fencing: i64 = row.get("fencing");
    Ok(Held {
        reservation: Reservation {
            id,
            requester,
            priority: Priority(row.get("priority")),
            state,
            items: items.into(),
            fencing_token: FencingToken(u64::try_from(fencing).unwrap_or(0)),
            created_at: timestamp(row.get("created_at")),
            updated_at: timestamp(row.get("updated_at")),
            expires_at: row.get::<_, Option<i64>>("expires_at").map(timestamp),
            labels,
            preemptible: row.get("preemptible"),
        },
        holds: resources
            .into_iter()
            .zip(types)
            .zip(amounts)
            .map(|((r, t), a)| (r, t, a))
            .collect(),
    })
}

/// The text that identifies a request for idempotent retries: every field but the id, with
/// the TTL exact to the nanosecond.
fn request_key(request: &ReservationRequest) -> Result<String, LedgerError> {
    let mut copy = request.clone();
    copy.id = None;
    let ttl = copy.ttl.take().map_or(-1, nanos);
    let json = serde_json::to_string(&copy).map_err(|e| invalid("request", e.to_string()))?;
    Ok(format!("{ttl}|{json}"))
}

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
    clock: Option<Arc<dyn Clock>>,
    validator: Option<Arc<dyn Validator>>,
    sink: Option<Arc<dyn EventSink>>,
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
    /// statement that runs longer fails with [`LedgerError::Timeout`].
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
    /// Events of every process reach a [`Listener`].
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
        Ok(PgLedger {
            pool,
            view: RwLock::new(View::default()),
            clock: self.clock,
            default_ttl: self.default_ttl,
            retention: self.retention,
            max_staleness: self.max_staleness,
            validator: self.validator,
            sink: self.sink,
            sequence: AtomicU64::new(0),
        })
    }
}

/// The reservation ledger on PostgreSQL. See the [crate docs](crate).
pub struct PgLedger {
    pool: Pool,
    view: RwLock<View>,
    clock: Option<Arc<dyn Clock>>,
    default_ttl: Duration,
    retention: Duration,
    max_staleness: Duration,
    validator: Option<Arc<dyn Validator>>,
    sink: Option<Arc<dyn EventSink>>,
    sequence: AtomicU64,
}

impl std::fmt::Debug for PgLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLedger")
            .field("schema", &self.pool.settings().schema)
            .field("default_ttl", &self.default_ttl)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

/// What a grant sends for its holds: one per capacity, amounts summed over requirements.
struct Holds {
    resources: Vec<String>,
    types: Vec<String>,
    amounts: Vec<i64>,
    generations: Vec<i64>,
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
            clock: None,
            validator: None,
            sink: None,
        }
    }

    /// The schema this ledger's tables live in.
    pub fn schema(&self) -> &str {
        &self.pool.settings().schema
    }

    /// Opens a connection that receives the events of every process using this schema
    /// (published with `NOTIFY` when their transactions commit).
    pub fn listen(&self) -> Result<Listener, Error> {
        let settings = self.pool.settings();
        Listener::open(&settings.config, &channel(&settings.schema))
    }

    /// The instant to pass the database: the injected clock's reading, or `None` for the
    /// server's clock.
    fn now(&self) -> Option<i64> {
        self.clock
            .as_ref()
            .map(|c| i64::try_from(c.now().as_nanos()).unwrap_or(i64::MAX))
    }

    fn publish(&self, at: i64, kind: impl FnOnce() -> EventKind) {
        if let Some(sink) = &self.sink {
            let sequence = self.sequence.fetch_add(1, Ordering::AcqRel) + 1;
            sink.publish(&Event {
                sequence,
                at: timestamp(at),
                kind: kind(),
            });
        }
    }

    fn read_view(&self) -> RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_view(&self) -> RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Expires what is due and forgets what retention let go; credits the view and
    /// publishes for each hold it expired.
    fn sweep(&self) -> Result<Vec<Reservation>, LedgerError> {
        let now = self.now();
        let retention = nanos(self.retention);
        let rows = self.pool.run("expire", |c| {
            c.client
                .query(&c.statements.sweep, &[&now, &retention, &SWEEP_BATCH])
        })?;
        let mut expired = Vec::with_capacity(rows.len());
        for row in &rows {
            let held = held_from("expire", row)?;
            self.ended(&held, row.get("updated_at"), None);
            expired.push(held.reservation);
        }
        Ok(expired)
    }

    /// Credits the view with an ended hold's capacity and publishes its end.
    fn ended(&self, held: &Held, at: i64, by: Option<ReservationId>) {
        {
            let view = self.read_view();
            for (resource, resource_type, amount) in &held.holds {
                view.credit(resource, resource_type, *amount);
            }
        }
        let r = &held.reservation;
        self.publish(at, || EventKind::Ended {
            reservation: r.id.clone(),
            requester: r.requester.clone(),
            reason: r.state,
            items: r.items.clone(),
            preempted_by: by,
        });
    }

    /// Reads what is free of every capacity (and the resources too, when the catalog changed
    /// since the view read it), after a sweep when `sweep` is set.
    fn refresh(&self, sweep: bool) -> Result<(), LedgerError> {
        if sweep {
            self.sweep()?;
        }
        let known = self.read_view().version;
        let now = self.now();
        let (version, specs, capacities, times) = self.pool.run("read capacity", |c| {
            let mut tx = c
                .client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let version: i64 = tx
                .query_one("SELECT value FROM meta WHERE key = 'catalog'", &[])?
                .get(0);
            let specs = if version == known {
                None
            } else {
                Some(tx.query(
                    "SELECT name, generation, spec FROM resource ORDER BY position",
                    &[],
                )?)
            };
            let capacities = tx.query(
                "SELECT resource, resource_type, generation, \
                 maximum - external - pending - confirmed AS free FROM capacity",
                &[],
            )?;
            let times = tx.query_one(
                "SELECT coalesce($1::bigint, now_ns()), \
                 (SELECT min(expires_at) FROM reservation WHERE state = 'pending')",
                &[&now],
            )?;
            tx.commit()?;
            Ok((version, specs, capacities, times))
        })?;
        let mut view = self.write_view();
        if let Some(specs) = specs {
            let mut catalog = Catalog::default();
            for row in &specs {
                let spec: String = row.get("spec");
                let resource: Resource = serde_json::from_str(&spec)
                    .map_err(|e| corrupt("read capacity", "a resource", e))?;
                let types = resource.capacities().map(|(t, _)| t.clone()).collect();
                catalog.insert(
                    resource,
                    Arc::new(PgSlot::new(types, row.get("generation"))),
                );
            }
            view.catalog = catalog;
            view.version = version;
        }
        for row in &capacities {
            let resource: String = row.get("resource");
            let resource_type: String = row.get("resource_type");
            let free: i64 = row.get("free");
            let Ok(name) = ResourceName::new(&resource) else {
                continue;
            };
            if let Some(position) = view.catalog.position(&name) {
                let slot = &view.catalog.slots[position];
                if let Some(d) = slot.types.iter().position(|t| t.as_str() == resource_type) {
                    slot.set(d, free);
                }
            }
        }
        view.read_at = Some(Instant::now());
        view.read_time = times.get(0);
        view.next_due.store(
            times.get::<_, Option<i64>>(1).unwrap_or(i64::MAX),
            Ordering::Release,
        );
        Ok(())
    }

    /// Reads the view again when it was never read or is older than the staleness bound.
    fn refresh_if_stale(&self) -> Result<(), LedgerError> {
        let now = self.now();
        let stale = {
            let view = self.read_view();
            view.version < 0
                || view.may_be_due(now)
                || view
                    .read_at
                    .is_none_or(|at| at.elapsed() >= self.max_staleness)
        };
        if stale {
            self.refresh(true)?;
        }
        Ok(())
    }

    /// Forgets the view's catalog, so the next operation reads it again.
    fn invalidate(&self) {
        self.write_view().version = -1;
    }

    /// Where the holds that `request`'s affinity terms select are, read from the active
    /// reservations.
    fn affinity<'c>(
        &self,
        catalog: &'c Catalog,
        request: &ReservationRequest,
    ) -> Result<Affinity<'c>, LedgerError> {
        let mut affinity = Affinity::for_request(request);
        if affinity.is_empty() {
            return Ok(affinity);
        }
        let rows = self.pool.run("reserve", |c| {
            c.client.query(
                "SELECT requester, labels, hold_resource FROM reservation \
                 WHERE state IN ('pending', 'confirmed')",
                &[],
            )
        })?;
        for row in &rows {
            let requester: String = row.get(0);
            let labels: String = row.get(1);
            let resources: Vec<String> = row.get(2);
            let (Ok(requester), Ok(labels)) = (
                RequesterId::new(&requester),
                serde_json::from_str::<Labels>(&labels),
            ) else {
                continue;
            };
            for (i, requirement) in request.requirements.iter().enumerate() {
                for (j, term) in requirement.affinity().iter().enumerate() {
                    if !term.selector.selects(&requester, &labels) {
                        continue;
                    }
                    for resource in &resources {
                        let Ok(name) = ResourceName::new(resource) else {
                            continue;
                        };
                        if let Some(position) = catalog.position(&name) {
                            affinity.note(request, (i, j), &catalog.resources[position]);
                        }
                    }
                }
            }
        }
        Ok(affinity)
    }

    /// Sums a plan's placements per capacity, with the generations planned on.
    fn holds(catalog: &Catalog, plan: &[Placement]) -> Result<Holds, LedgerError> {
        let mut holds = Holds {
            resources: Vec::with_capacity(plan.len()),
            types: Vec::with_capacity(plan.len()),
            amounts: Vec::with_capacity(plan.len()),
            generations: Vec::with_capacity(plan.len()),
        };
        for placement in plan {
            let name = catalog.resources[placement.position].name().as_str();
            let resource_type = placement.resource_type.as_str();
            match (0..holds.amounts.len())
                .find(|&h| holds.resources[h] == name && holds.types[h] == resource_type)
            {
                Some(h) => {
                    holds.amounts[h] =
                        holds.amounts[h]
                            .checked_add(placement.amount)
                            .ok_or_else(|| {
                                invalid(
                                    format!("requirements[{}].amount", placement.requirement),
                                    "the amounts on one resource overflow",
                                )
                            })?;
                }
                None => {
                    holds.resources.push(name.to_owned());
                    holds.types.push(resource_type.to_owned());
                    holds.amounts.push(placement.amount);
                    holds
                        .generations
                        .push(catalog.slots[placement.position].generation);
                }
            }
        }
        Ok(holds)
    }

    fn items(
        catalog: &Catalog,
        request: &ReservationRequest,
        plan: &[Placement],
    ) -> Vec<ReservationItem> {
        plan.iter()
            .map(|p| {
                let requirement = &request.requirements[p.requirement];
                ReservationItem {
                    requirement: p.requirement,
                    resource: catalog.resources[p.position].name().clone(),
                    resource_type: p.resource_type.clone(),
                    amount: Quantity::from_milli(p.amount),
                    minimum: requirement
                        .minimum()
                        .and_then(|m| requirement.unit().convert(m, &p.unit).ok()),
                    unit: p.unit.clone(),
                }
            })
            .collect()
    }

    fn check_request(&self, request: &ReservationRequest) -> Result<(), LedgerError> {
        if let Some(first) = request.violations().into_iter().next() {
            return Err(invalid(first.path, first.message));
        }
        if let Some(validator) = &self.validator {
            let view = self.read_view();
            let context = ValidationContext {
                resources: &view.catalog.resources,
                active: &[],
            };
            validator
                .validate_request(request, &context)
                .map_err(rejected)?;
        }
        Ok(())
    }

    /// Checks a request; one that is refused but names a used id answers as a retry of
    /// that id would (a conflict, unless it is the same request).
    fn admit(&self, request: &ReservationRequest, key: &str) -> Result<(), LedgerError> {
        match self.check_request(request) {
            Ok(()) => Ok(()),
            Err(err) => match &request.id {
                Some(id) => match self.lookup(&id.to_string(), key, request)? {
                    Some(_) => Err(LedgerError::IdConflict { id: id.clone() }),
                    None => Err(err),
                },
                None => Err(err),
            },
        }
    }

    /// The answer to a request whose id is used: the reservation as it is now when the
    /// request is the same, an id conflict when not, `None` when the id is free.
    fn lookup(
        &self,
        id: &str,
        key: &str,
        request: &ReservationRequest,
    ) -> Result<Option<Reservation>, LedgerError> {
        let empty: Vec<String> = Vec::new();
        let none: Vec<i64> = Vec::new();
        let now = self.now();
        let ttl = 0_i64;
        let labels = "";
        let row = self.pool.run("reserve", |c| {
            c.client.query_one(
                &c.statements.reserve,
                &[
                    &id,
                    &key,
                    &request.requester.as_str(),
                    &request.priority.0,
                    &labels,
                    &request.preemptible,
                    &labels,
                    &empty,
                    &empty,
                    &none,
                    &none,
                    &now,
                    &ttl,
                ],
            )
        })?;
        self.answer_existing(row.get(0), id)
    }

    fn answer_existing(&self, outcome: &str, id: &str) -> Result<Option<Reservation>, LedgerError> {
        let id = ReservationId::new(id).map_err(|e| invalid("id", e.to_string()))?;
        match outcome {
            "existing" => self.get(&id).map(Some),
            "conflict" => Err(LedgerError::IdConflict { id }),
            _ => Ok(None),
        }
    }

    fn reserve_with(
        &self,
        request: &ReservationRequest,
        explain: bool,
    ) -> Result<Reservation, LedgerError> {
        let key = request_key(request)?;
        self.admit(request, &key)?;
        let generated;
        let id = match &request.id {
            Some(id) => id,
            None => {
                generated = ReservationId::generate();
                &generated
            }
        };
        let id_text = id.to_string();
        self.refresh_if_stale()?;
        let ttl = nanos(request.ttl.unwrap_or(self.default_ttl));
        let labels =
            serde_json::to_string(&request.labels).map_err(|e| invalid("labels", e.to_string()))?;
        let mut fresh = false;
        for _ in 0..COMMIT_ATTEMPTS {
            let (holds, items) = {
                let view = self.read_view();
                let affinity = self.affinity(&view.catalog, request)?;
                match rm_plan::plan(&view.catalog, request, &affinity, explain, &[]) {
                    Ok(plan) => (
                        Self::holds(&view.catalog, &plan)?,
                        Self::items(&view.catalog, request, &plan),
                    ),
                    Err(err) => {
                        drop(view);
                        if !fresh {
                            // Refuse only on a fresh read, with what is due expired.
                            self.refresh(true)?;
                            fresh = true;
                            continue;
                        }
                        if request.id.is_some()
                            && let Some(existing) = self.lookup(&id_text, &key, request)?
                        {
                            return Ok(existing);
                        }
                        return Err(err);
                    }
                }
            };
            let items_json = serde_json::to_string(&items)
                .map_err(|e| invalid("requirements", e.to_string()))?;
            let now = self.now();
            let params: [&(dyn ToSql + Sync); 13] = [
                &id_text,
                &key,
                &request.requester.as_str(),
                &request.priority.0,
                &labels,
                &request.preemptible,
                &items_json,
                &holds.resources,
                &holds.types,
                &holds.amounts,
                &holds.generations,
                &now,
                &ttl,
            ];
            let row = self.pool.run("reserve", |c| {
                c.client.query_one(&c.statements.reserve, &params)
            })?;
            let outcome: &str = row.get(0);
            match outcome {
                "granted" => {
                    return Ok(self.granted(id, request, items, &holds, &row));
                }
                "stale" => {
                    self.refresh(false)?;
                    fresh = true;
                }
                other => {
                    if let Some(existing) = self.answer_existing(other, &id_text)? {
                        return Ok(existing);
                    }
                    return Err(corrupt("reserve", "an outcome", other));
                }
            }
        }
        Err(LedgerError::InsufficientCapacity {
            requester: request.requester.clone(),
            shortfalls: Vec::new(),
        })
    }

    /// The reservation a `granted` row of `reserve` made: debits the view, notes the
    /// deadline, publishes.
    fn granted(
        &self,
        id: &ReservationId,
        request: &ReservationRequest,
        items: Vec<ReservationItem>,
        holds: &Holds,
        row: &Row,
    ) -> Reservation {
        let at: i64 = row.get(1);
        let token: i64 = row.get(2);
        let expires_at: i64 = row.get(3);
        {
            let view = self.read_view();
            for h in 0..holds.amounts.len() {
                view.credit(&holds.resources[h], &holds.types[h], -holds.amounts[h]);
            }
            view.due_at(expires_at);
        }
        let reservation = Reservation {
            id: id.clone(),
            requester: request.requester.clone(),
            priority: request.priority,
            state: ReservationState::Pending,
            items: items.into(),
            fencing_token: FencingToken(u64::try_from(token).unwrap_or(0)),
            created_at: timestamp(at),
            updated_at: timestamp(at),
            expires_at: Some(timestamp(expires_at)),
            labels: request.labels.clone(),
            preemptible: request.preemptible,
        };
        self.publish(at, || EventKind::Reserved {
            reservation: reservation.id.clone(),
            requester: reservation.requester.clone(),
            priority: reservation.priority,
            items: reservation.items.clone(),
            fencing_token: reservation.fencing_token,
        });
        reservation
    }

    fn wrong_state(
        operation: &'static str,
        id: &ReservationId,
        state: ReservationState,
    ) -> LedgerError {
        if state == ReservationState::Expired {
            LedgerError::Expired {
                operation,
                id: id.clone(),
            }
        } else {
            LedgerError::InvalidState {
                operation,
                id: id.clone(),
                state,
            }
        }
    }

    /// Runs one operation of `act` and answers as the contract says.
    fn act(
        &self,
        operation: &'static str,
        id: &ReservationId,
        fence: Option<FencingToken>,
        ttl: Option<Duration>,
        by: Option<&ReservationId>,
    ) -> Result<Reservation, LedgerError> {
        let id_text = id.to_string();
        let fence = fence.map(|f| i64::try_from(f.0).unwrap_or(i64::MAX));
        let now = self.now();
        let ttl = ttl.map(nanos);
        let by_text = by.map(ToString::to_string);
        let row = self.pool.run(operation, |c| {
            c.client.query_one(
                &c.statements.act,
                &[&id_text, &fence, &now, &operation, &ttl, &by_text],
            )
        })?;
        self.acted(operation, id, fence, by, &row)
    }

    /// Answers a row of `act`: credits and publishes what changed.
    fn acted(
        &self,
        operation: &'static str,
        id: &ReservationId,
        fence: Option<i64>,
        by: Option<&ReservationId>,
        row: &Row,
    ) -> Result<Reservation, LedgerError> {
        let outcome: &str = row.get("outcome");
        if outcome == "unknown" {
            return Err(LedgerError::UnknownReservation { id: id.clone() });
        }
        let held = held_from(operation, row)?;
        let at: i64 = row.get("at");
        if outcome == "stale-fence" {
            return Err(LedgerError::StaleFencingToken {
                operation,
                id: id.clone(),
                presented: FencingToken(fence.and_then(|f| u64::try_from(f).ok()).unwrap_or(0)),
                current: held.reservation.fencing_token,
            });
        }
        if row.get::<_, bool>("expired_now") {
            let mut expired = Held {
                reservation: held.reservation.clone(),
                holds: held.holds.clone(),
            };
            expired.reservation.state = ReservationState::Expired;
            self.ended(&expired, at, None);
        }
        let r = &held.reservation;
        match outcome {
            "wrong-state" => return Err(Self::wrong_state(operation, id, r.state)),
            "changed" => match operation {
                "confirm" => self.publish(at, || EventKind::Confirmed {
                    reservation: r.id.clone(),
                    requester: r.requester.clone(),
                }),
                "renew" => {
                    if let Some(expires_at) = r.expires_at {
                        self.read_view()
                            .due_at(i64::try_from(expires_at.as_nanos()).unwrap_or(i64::MAX));
                        self.publish(at, || EventKind::Renewed {
                            reservation: r.id.clone(),
                            expires_at,
                        });
                    }
                }
                _ => self.ended(&held, at, by.cloned()),
            },
            _ => {}
        }
        Ok(held.reservation)
    }

    /// Bumps the catalog version in `tx` (serializing catalog changes) and returns it with
    /// the instant of the change.
    fn catalog_change(&self, tx: &mut postgres::Transaction<'_>) -> Attempt<(i64, i64)> {
        let version: i64 = tx
            .query_one(
                "UPDATE meta SET value = value + 1 WHERE key = 'catalog' RETURNING value",
                &[],
            )?
            .get(0);
        let now = self.now();
        let at: i64 = tx
            .query_one("SELECT coalesce($1::bigint, now_ns())", &[&now])?
            .get(0);
        Ok((version, at))
    }

    /// Publishes `kind` to other processes from within `tx`.
    fn notify(tx: &mut postgres::Transaction<'_>, kind: &EventKind, at: i64) -> Attempt<()> {
        let json = serde_json::to_string(kind).unwrap_or_else(|_| "{}".into());
        tx.execute("SELECT notify($1::text::jsonb, $2)", &[&json, &at])?;
        Ok(())
    }

    /// How many active reservations hold capacity on `name`.
    fn holders(tx: &mut postgres::Transaction<'_>, name: &str) -> Attempt<usize> {
        let count: i64 = tx
            .query_one(
                "SELECT count(*) FROM reservation WHERE state IN ('pending', 'confirmed') \
                 AND $1 = ANY (hold_resource)",
                &[&name],
            )?
            .get(0);
        Ok(usize::try_from(count).unwrap_or(usize::MAX))
    }

    /// Runs a catalog change in one transaction; `change` answers `Err` for a definite
    /// refusal (rolled back).
    fn change_catalog<T>(
        &self,
        operation: &'static str,
        mut change: impl FnMut(&mut postgres::Transaction<'_>, i64) -> Attempt<Result<T, LedgerError>>,
    ) -> Result<(T, i64, i64), LedgerError> {
        self.sweep()?;
        self.pool.run(operation, |c: &mut Conn| {
            let mut tx = c.client.transaction()?;
            let (version, at) = self.catalog_change(&mut tx)?;
            match change(&mut tx, at)? {
                Ok(value) => {
                    tx.commit()?;
                    Ok(Ok((value, version, at)))
                }
                Err(refusal) => Ok(Err(refusal)),
            }
        })?
    }

    fn all_resources(&self) -> Result<Vec<Resource>, LedgerError> {
        let rows = self.pool.run("resources", |c| {
            c.client
                .query("SELECT spec FROM resource ORDER BY position", &[])
        })?;
        rows.iter()
            .map(|row| {
                serde_json::from_str(row.get::<_, &str>(0))
                    .map_err(|e| corrupt("resources", "a resource", e))
            })
            .collect()
    }
}

/// The usage of one capacity row.
fn usage_of(resource: &ResourceName, row: &Row) -> Result<CapacityUsage, LedgerError> {
    let resource_type: ResourceType = row
        .get::<_, &str>("resource_type")
        .parse()
        .map_err(|e| corrupt("snapshot", "a capacity type", e))?;
    let unit: Unit = row
        .get::<_, &str>("unit")
        .parse()
        .map_err(|e| corrupt("snapshot", "a unit", e))?;
    let (maximum, external, pending, confirmed): (i64, i64, i64, i64) = (
        row.get("maximum"),
        row.get("external"),
        row.get("pending"),
        row.get("confirmed"),
    );
    let free = maximum
        .saturating_sub(external)
        .saturating_sub(pending)
        .saturating_sub(confirmed);
    Ok(CapacityUsage {
        resource: resource.clone(),
        resource_type,
        unit,
        capacity: Quantity::from_milli(maximum),
        external: Quantity::from_milli(external),
        pending: Quantity::from_milli(pending),
        confirmed: Quantity::from_milli(confirmed),
        leased: Quantity::ZERO,
        free: Quantity::from_milli(free.max(0)),
        draining: free < 0,
    })
}

impl ReservationLedger for PgLedger {
    fn register_resource(&self, resource: Resource) -> Result<(), LedgerError> {
        if resource.capacities().count() > MAX_DIMS {
            return Err(invalid(
                "capacities",
                format!("a resource has at most {MAX_DIMS} capacity types"),
            ));
        }
        if let Some(validator) = &self.validator {
            let resources = self.all_resources()?;
            let context = ValidationContext {
                resources: &resources,
                active: &[],
            };
            validator
                .validate_resource(&resource, &context)
                .map_err(rejected)?;
        }
        let name = resource.name().clone();
        let spec =
            serde_json::to_string(&resource).map_err(|e| invalid("resource", e.to_string()))?;
        let ((), version, at) = self.change_catalog("register", |tx, at| {
            if tx
                .query_opt("SELECT 1 FROM resource WHERE name = $1", &[&name.as_str()])?
                .is_some()
            {
                return Ok(Err(LedgerError::DuplicateResource { name: name.clone() }));
            }
            let row = tx.query_one(
                "INSERT INTO resource (name, spec) VALUES ($1, $2) RETURNING position, generation",
                &[&name.as_str(), &spec],
            )?;
            let (position, generation): (i64, i64) = (row.get(0), row.get(1));
            for (resource_type, capacity) in resource.capacities() {
                tx.execute(
                    "INSERT INTO capacity (resource, resource_type, position, generation, unit, \
                     maximum, external) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &[
                        &name.as_str(),
                        &resource_type.as_str(),
                        &position,
                        &generation,
                        &capacity.unit().to_string(),
                        &capacity.maximum().as_milli(),
                        &capacity.current().as_milli(),
                    ],
                )?;
            }
            Self::notify(
                tx,
                &EventKind::ResourceRegistered {
                    resource: name.clone(),
                },
                at,
            )?;
            Ok(Ok(()))
        })?;
        {
            // The view follows when it saw every change before this one; else it reads again.
            let mut view = self.write_view();
            if view.version == version - 1 {
                let types: Vec<ResourceType> =
                    resource.capacities().map(|(t, _)| t.clone()).collect();
                let slot = PgSlot::new(types, 1);
                for (d, (_, capacity)) in resource.capacities().enumerate() {
                    slot.set(
                        d,
                        capacity.maximum().as_milli() - capacity.current().as_milli(),
                    );
                }
                view.catalog.insert(resource, Arc::new(slot));
                view.version = version;
            } else {
                view.version = -1;
            }
        }
        self.publish(at, || EventKind::ResourceRegistered { resource: name });
        Ok(())
    }

    fn update_resource(&self, resource: Resource) -> Result<(), LedgerError> {
        if resource.capacities().count() > MAX_DIMS {
            return Err(invalid(
                "capacities",
                format!("a resource has at most {MAX_DIMS} capacity types"),
            ));
        }
        if let Some(validator) = &self.validator {
            let others: Vec<Resource> = self
                .all_resources()?
                .into_iter()
                .filter(|r| r.name() != resource.name())
                .collect();
            let context = ValidationContext {
                resources: &others,
                active: &[],
            };
            validator
                .validate_resource(&resource, &context)
                .map_err(rejected)?;
        }
        let name = resource.name().clone();
        let spec =
            serde_json::to_string(&resource).map_err(|e| invalid("resource", e.to_string()))?;
        let (_, _, at) = self.change_catalog("update", |tx, at| {
            let Some(row) = tx.query_opt(
                "SELECT position, generation FROM resource WHERE name = $1 FOR UPDATE",
                &[&name.as_str()],
            )?
            else {
                return Ok(Err(LedgerError::UnknownResource { name: name.clone() }));
            };
            let (position, generation): (i64, i64) = (row.get(0), row.get(1));
            let rows = tx.query(
                "SELECT resource_type, unit, pending, confirmed FROM capacity \
                 WHERE resource = $1 ORDER BY position, resource_type FOR UPDATE",
                &[&name.as_str()],
            )?;
            let mut removed = Vec::new();
            for row in &rows {
                let type_text: String = row.get(0);
                let unit: String = row.get(1);
                let held = row.get::<_, i64>(2) != 0 || row.get::<_, i64>(3) != 0;
                let new = type_text
                    .parse::<ResourceType>()
                    .ok()
                    .and_then(|t| resource.capacity_of(&t).cloned());
                match new {
                    None if held => {
                        let active = Self::holders(tx, name.as_str())?;
                        return Ok(Err(LedgerError::ResourceBusy {
                            name: name.clone(),
                            active,
                        }));
                    }
                    None => removed.push(type_text),
                    Some(capacity) if held && capacity.unit().to_string() != unit => {
                        return Ok(Err(invalid(
                            format!("capacities.{type_text}.unit"),
                            "cannot change the unit of a capacity that is held",
                        )));
                    }
                    Some(_) => {}
                }
            }
            let generation = generation + 1;
            tx.execute(
                "DELETE FROM capacity WHERE resource = $1 AND resource_type = ANY ($2)",
                &[&name.as_str(), &removed],
            )?;
            for (resource_type, capacity) in resource.capacities() {
                tx.execute(
                    "INSERT INTO capacity (resource, resource_type, position, generation, unit, \
                     maximum, external) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (resource, resource_type) DO UPDATE SET \
                     generation = excluded.generation, unit = excluded.unit, \
                     maximum = excluded.maximum, external = excluded.external",
                    &[
                        &name.as_str(),
                        &resource_type.as_str(),
                        &position,
                        &generation,
                        &capacity.unit().to_string(),
                        &capacity.maximum().as_milli(),
                        &capacity.current().as_milli(),
                    ],
                )?;
            }
            tx.execute(
                "UPDATE resource SET spec = $2, generation = $3 WHERE name = $1",
                &[&name.as_str(), &spec, &generation],
            )?;
            Self::notify(
                tx,
                &EventKind::ResourceUpdated {
                    resource: name.clone(),
                },
                at,
            )?;
            Ok(Ok(()))
        })?;
        self.invalidate();
        self.publish(at, || EventKind::ResourceUpdated { resource: name });
        Ok(())
    }

    fn unregister_resource(&self, name: &ResourceName) -> Result<Resource, LedgerError> {
        let (spec, _, at) = self.change_catalog("unregister", |tx, at| {
            let Some(row) = tx.query_opt(
                "SELECT spec FROM resource WHERE name = $1 FOR UPDATE",
                &[&name.as_str()],
            )?
            else {
                return Ok(Err(LedgerError::UnknownResource { name: name.clone() }));
            };
            let spec: String = row.get(0);
            // Locking its capacity rows waits for grants in flight on it.
            tx.execute(
                "SELECT 1 FROM capacity WHERE resource = $1 \
                 ORDER BY position, resource_type FOR UPDATE",
                &[&name.as_str()],
            )?;
            let active = Self::holders(tx, name.as_str())?;
            if active > 0 {
                return Ok(Err(LedgerError::ResourceBusy {
                    name: name.clone(),
                    active,
                }));
            }
            tx.execute("DELETE FROM resource WHERE name = $1", &[&name.as_str()])?;
            Self::notify(
                tx,
                &EventKind::ResourceUnregistered {
                    resource: name.clone(),
                },
                at,
            )?;
            Ok(Ok(spec))
        })?;
        let resource: Resource =
            serde_json::from_str(&spec).map_err(|e| corrupt("unregister", "a resource", e))?;
        self.invalidate();
        self.publish(at, || EventKind::ResourceUnregistered {
            resource: name.clone(),
        });
        Ok(resource)
    }

    fn set_capacity(
        &self,
        name: &ResourceName,
        resource_type: &ResourceType,
        maximum: Quantity,
    ) -> Result<CapacityUsage, LedgerError> {
        let ((usage, old), version, at) = self.change_catalog("set capacity", |tx, at| {
            let unknown = || LedgerError::UnknownResource { name: name.clone() };
            let Some(row) = tx.query_opt(
                "SELECT spec FROM resource WHERE name = $1 FOR UPDATE",
                &[&name.as_str()],
            )?
            else {
                return Ok(Err(unknown()));
            };
            let Ok(resource) = serde_json::from_str::<Resource>(row.get(0)) else {
                return Ok(Err(unknown()));
            };
            let Some(old) = resource.capacity_of(resource_type).cloned() else {
                return Ok(Err(unknown()));
            };
            let new = match ResourceCapacity::new(old.current(), maximum, old.unit().clone()) {
                Ok(new) => new,
                Err(err) => return Ok(Err(invalid("maximum", err.to_string()))),
            };
            let Some(row) = tx.query_opt(
                "UPDATE capacity SET maximum = $3 WHERE resource = $1 AND resource_type = $2 \
                 RETURNING resource_type, unit, maximum, external, pending, confirmed",
                &[&name.as_str(), &resource_type.as_str(), &maximum.as_milli()],
            )?
            else {
                return Ok(Err(unknown()));
            };
            let usage = match usage_of(name, &row) {
                Ok(usage) => usage,
                Err(err) => return Ok(Err(err)),
            };
            let resource = resource.with_capacity(resource_type.clone(), new);
            let spec = serde_json::to_string(&resource).unwrap_or_default();
            tx.execute(
                "UPDATE resource SET spec = $2 WHERE name = $1",
                &[&name.as_str(), &spec],
            )?;
            Self::notify(
                tx,
                &EventKind::CapacityChanged {
                    resource: name.clone(),
                    resource_type: resource_type.clone(),
                    old_maximum: old.maximum(),
                    new_maximum: maximum,
                    draining: usage.draining,
                },
                at,
            )?;
            Ok(Ok((usage, old)))
        })?;
        {
            let mut view = self.write_view();
            let position = view.catalog.position(name);
            match position {
                Some(position) if view.version == version - 1 => {
                    let slot = view.catalog.slots[position].clone();
                    if let Some(d) = slot.types.iter().position(|t| t == resource_type) {
                        slot.add(d, maximum.as_milli() - old.maximum().as_milli());
                    }
                    if let Ok(new) =
                        ResourceCapacity::new(old.current(), maximum, old.unit().clone())
                    {
                        let resource = view.catalog.resources[position]
                            .clone()
                            .with_capacity(resource_type.clone(), new);
                        view.catalog.resources[position] = resource;
                        view.catalog.changed();
                    }
                    view.version = version;
                }
                _ => view.version = -1,
            }
        }
        self.publish(at, || EventKind::CapacityChanged {
            resource: name.clone(),
            resource_type: resource_type.clone(),
            old_maximum: old.maximum(),
            new_maximum: maximum,
            draining: usage.draining,
        });
        Ok(usage)
    }

    fn resources(&self) -> Result<Vec<Resource>, LedgerError> {
        self.all_resources()
    }

    fn reserve(&self, request: &ReservationRequest) -> Result<Reservation, LedgerError> {
        self.reserve_with(request, true)
    }

    fn try_reserve(
        &self,
        request: &ReservationRequest,
    ) -> Result<Option<Reservation>, LedgerError> {
        match self.reserve_with(request, false) {
            Err(LedgerError::InsufficientCapacity { .. }) => Ok(None),
            other => other.map(Some),
        }
    }

    fn confirm(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
    ) -> Result<Reservation, LedgerError> {
        self.act("confirm", id, fence, None, None)
    }

    fn renew(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
        ttl: Duration,
    ) -> Result<Reservation, LedgerError> {
        if ttl.is_zero() {
            return Err(invalid("ttl", "must be positive"));
        }
        self.act("renew", id, fence, Some(ttl), None)
    }

    fn release(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
    ) -> Result<Reservation, LedgerError> {
        self.act("release", id, fence, None, None)
    }

    fn cancel(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
    ) -> Result<Reservation, LedgerError> {
        self.act("cancel", id, fence, None, None)
    }

    fn preempt(
        &self,
        id: &ReservationId,
        by: Option<&ReservationId>,
    ) -> Result<Reservation, LedgerError> {
        self.act("preempt", id, None, None, by)
    }

    fn shrink(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
        requirement: usize,
        to: Quantity,
    ) -> Result<Reservation, LedgerError> {
        let id_text = id.to_string();
        let fence_value = fence.map(|f| i64::try_from(f.0).unwrap_or(i64::MAX));
        let now = self.now();
        let no_ttl: Option<i64> = None;
        let no_by: Option<String> = None;
        // The locked row (with a due expiry applied), and the change when there is one.
        type Shrunk = (Row, Option<(Reservation, usize, Quantity, i64, i64)>);
        let (row, change): Shrunk = self.pool.run("shrink", |c| {
            let mut tx = c.client.transaction()?;
            let row = tx.query_one(
                &c.statements.act,
                &[&id_text, &fence_value, &now, &"lock", &no_ttl, &no_by],
            )?;
            let outcome: &str = row.get("outcome");
            if outcome == "unknown" {
                tx.commit()?;
                return Ok((row, None));
            }
            let Ok(held) = held_from("shrink", &row) else {
                tx.commit()?;
                return Ok((row, None));
            };
            if outcome != "same" || !held.reservation.state.holds_capacity() {
                tx.commit()?;
                return Ok((row, None));
            }
            let mut items = held.reservation.items.to_vec();
            let Ok(Some((index, from))) = shrink_item(&mut items, requirement, to) else {
                tx.commit()?;
                return Ok((row, None));
            };
            let given_back = from.as_milli() - to.as_milli();
            let resource = items[index].resource.as_str().to_owned();
            let resource_type = items[index].resource_type.as_str().to_owned();
            let Some(h) = held
                .holds
                .iter()
                .position(|(r, t, _)| *r == resource && *t == resource_type)
            else {
                tx.commit()?;
                return Ok((row, None));
            };
            let amounts: Vec<i64> = held
                .holds
                .iter()
                .enumerate()
                .map(|(k, (_, _, a))| if k == h { a - given_back } else { *a })
                .collect();
            let column = if held.reservation.state == ReservationState::Pending {
                "pending"
            } else {
                "confirmed"
            };
            tx.execute(
                &format!(
                    "UPDATE capacity SET {column} = {column} - $3 \
                     WHERE resource = $1 AND resource_type = $2"
                ),
                &[&resource, &resource_type, &given_back],
            )?;
            let at: i64 = row.get("at");
            let items_json = serde_json::to_string(&items).unwrap_or_default();
            tx.execute(
                "UPDATE reservation SET items = $2, hold_amount = $3, updated_at = $4 \
                 WHERE id = $1",
                &[&id_text, &items_json, &amounts, &at],
            )?;
            let mut reservation = held.reservation.clone();
            reservation.items = items.into();
            reservation.updated_at = timestamp(at);
            let kind = EventKind::Shrunk {
                reservation: reservation.id.clone(),
                requester: reservation.requester.clone(),
                requirement,
                resource: reservation.items[index].resource.clone(),
                from,
                to,
            };
            Self::notify(&mut tx, &kind, at)?;
            tx.commit()?;
            Ok((row, Some((reservation, index, from, given_back, at))))
        })?;
        // Errors, expiry and the idempotent cases as any other operation.
        let current = self.acted("shrink", id, fence_value, None, &row)?;
        let Some((reservation, index, from, given_back, at)) = change else {
            if !current.state.holds_capacity() {
                return Err(Self::wrong_state("shrink", id, current.state));
            }
            let mut items = current.items.to_vec();
            // Nothing changed: either `to` is the current amount, or it is refused.
            shrink_item(&mut items, requirement, to)?;
            return Ok(current);
        };
        let item = &reservation.items[index];
        self.read_view().credit(
            item.resource.as_str(),
            item.resource_type.as_str(),
            given_back,
        );
        self.publish(at, || EventKind::Shrunk {
            reservation: reservation.id.clone(),
            requester: reservation.requester.clone(),
            requirement,
            resource: item.resource.clone(),
            from,
            to,
        });
        Ok(reservation)
    }

    fn reserve_preempting(
        &self,
        request: &ReservationRequest,
        victims: &[ReservationId],
    ) -> Result<Reservation, LedgerError> {
        let key = request_key(request)?;
        self.admit(request, &key)?;
        let preemptor = request.id.clone().unwrap_or_else(ReservationId::generate);
        let preemptor_text = preemptor.to_string();
        if request.id.is_some()
            && let Some(existing) = self.lookup(&preemptor_text, &key, request)?
        {
            return Ok(existing);
        }
        self.refresh(true)?;
        let mut sorted: Vec<String> = victims.iter().map(ToString::to_string).collect();
        sorted.sort();
        sorted.dedup();
        let ttl = nanos(request.ttl.unwrap_or(self.default_ttl));
        let labels =
            serde_json::to_string(&request.labels).map_err(|e| invalid("labels", e.to_string()))?;
        let now = self.now();
        let no_ttl: Option<i64> = None;
        let no_by: Option<String> = None;
        let no_fence: Option<i64> = None;
        for _ in 0..COMMIT_ATTEMPTS {
            // Rows of the victims as ended, the grant's outcome, and what it planned.
            type Outcome = Result<(Vec<Row>, Row, Vec<ReservationItem>, Holds), LedgerError>;
            let outcome: Outcome = self.pool.run("reserve", |c| {
                let mut tx = c.client.transaction()?;
                let mut extra: Vec<(usize, usize, i64)> = Vec::new();
                let mut victim_holds: Vec<(String, String)> = Vec::new();
                for victim in &sorted {
                    let row = tx.query_one(
                        &c.statements.act,
                        &[victim, &no_fence, &now, &"lock", &no_ttl, &no_by],
                    )?;
                    let outcome: &str = row.get("outcome");
                    let Ok(id) = ReservationId::new(victim) else {
                        return Ok(Err(invalid("victims", "not a reservation id")));
                    };
                    if outcome == "unknown" {
                        return Ok(Err(LedgerError::UnknownReservation { id }));
                    }
                    let held = match held_from("preempt", &row) {
                        Ok(held) => held,
                        Err(err) => return Ok(Err(err)),
                    };
                    if !held.reservation.state.holds_capacity() {
                        return Ok(Err(Self::wrong_state(
                            "preempt",
                            &id,
                            held.reservation.state,
                        )));
                    }
                    let view = self.read_view();
                    for (resource, resource_type, amount) in &held.holds {
                        victim_holds.push((resource.clone(), resource_type.clone()));
                        let Ok(name) = ResourceName::new(resource) else {
                            continue;
                        };
                        if let Some(position) = view.catalog.position(&name)
                            && let Some(d) = view.catalog.slots[position]
                                .types
                                .iter()
                                .position(|t| t.as_str() == resource_type)
                        {
                            extra.push((position, d, *amount));
                        }
                    }
                }
                let (holds, items) = {
                    let view = self.read_view();
                    let affinity = match self.affinity(&view.catalog, request) {
                        Ok(affinity) => affinity,
                        Err(err) => return Ok(Err(err)),
                    };
                    match rm_plan::plan(&view.catalog, request, &affinity, true, &extra) {
                        Ok(plan) => match Self::holds(&view.catalog, &plan) {
                            Ok(holds) => (holds, Self::items(&view.catalog, request, &plan)),
                            Err(err) => return Ok(Err(err)),
                        },
                        Err(err) => return Ok(Err(err)),
                    }
                };
                // Every capacity row this touches, locked in the global order first.
                let mut lock_res: Vec<&str> = holds.resources.iter().map(String::as_str).collect();
                let mut lock_type: Vec<&str> = holds.types.iter().map(String::as_str).collect();
                for (r, t) in &victim_holds {
                    lock_res.push(r);
                    lock_type.push(t);
                }
                tx.execute(
                    "SELECT 1 FROM capacity c JOIN unnest($1::text[], $2::text[]) AS h(res, typ) \
                     ON c.resource = h.res AND c.resource_type = h.typ \
                     ORDER BY c.position, c.resource_type FOR UPDATE OF c",
                    &[&lock_res, &lock_type],
                )?;
                let mut ended = Vec::with_capacity(sorted.len());
                for victim in &sorted {
                    ended.push(tx.query_one(
                        &c.statements.act,
                        &[
                            victim,
                            &no_fence,
                            &now,
                            &"preempt",
                            &no_ttl,
                            &Some(&preemptor_text),
                        ],
                    )?);
                }
                let items_json = serde_json::to_string(&items).unwrap_or_default();
                let row = tx.query_one(
                    &c.statements.reserve,
                    &[
                        &preemptor_text,
                        &key,
                        &request.requester.as_str(),
                        &request.priority.0,
                        &labels,
                        &request.preemptible,
                        &items_json,
                        &holds.resources,
                        &holds.types,
                        &holds.amounts,
                        &holds.generations,
                        &now,
                        &ttl,
                    ],
                )?;
                if row.get::<_, &str>(0) == "granted" {
                    tx.commit()?;
                }
                Ok(Ok((ended, row, items, holds)))
            })?;
            let (ended, row, items, holds) = outcome?;
            match row.get::<_, &str>(0) {
                "granted" => {
                    for victim in &ended {
                        let Ok(held) = held_from("preempt", victim) else {
                            continue;
                        };
                        self.ended(&held, victim.get("at"), Some(preemptor.clone()));
                    }
                    return Ok(self.granted(&preemptor, request, items, &holds, &row));
                }
                "stale" => self.refresh(false)?,
                other => {
                    if let Some(existing) = self.answer_existing(other, &preemptor_text)? {
                        return Ok(existing);
                    }
                    return Err(corrupt("reserve", "an outcome", other));
                }
            }
        }
        Err(LedgerError::InsufficientCapacity {
            requester: request.requester.clone(),
            shortfalls: Vec::new(),
        })
    }

    fn next_expiry(&self) -> Result<Option<Duration>, LedgerError> {
        let now = self.now();
        let row = self.pool.run("next expiry", |c| {
            c.client.query_one(
                "SELECT min(expires_at) - coalesce($1::bigint, now_ns()) FROM reservation \
                 WHERE state = 'pending'",
                &[&now],
            )
        })?;
        Ok(row
            .get::<_, Option<i64>>(0)
            .map(|left| Duration::from_nanos(u64::try_from(left).unwrap_or(0))))
    }

    fn get(&self, id: &ReservationId) -> Result<Reservation, LedgerError> {
        self.act("get", id, None, None, None)
    }

    fn expire_due(&self) -> Result<Vec<Reservation>, LedgerError> {
        let mut expired = Vec::new();
        loop {
            let batch = self.sweep()?;
            let more = batch.len() >= SWEEP_BATCH as usize;
            expired.extend(batch);
            if !more {
                return Ok(expired);
            }
        }
    }

    fn snapshot(&self) -> Result<LedgerSnapshot, LedgerError> {
        loop {
            self.expire_due()?;
            let now = self.now();
            let (taken_at, resources, capacities, active, last) =
                self.pool.run("snapshot", |c| {
                    let mut tx = c
                        .client
                        .build_transaction()
                        .isolation_level(postgres::IsolationLevel::RepeatableRead)
                        .read_only(true)
                        .start()?;
                    let taken_at: i64 = tx
                        .query_one("SELECT coalesce($1::bigint, now_ns())", &[&now])?
                        .get(0);
                    let resources =
                        tx.query("SELECT name, spec FROM resource ORDER BY position", &[])?;
                    let capacities = tx.query("SELECT * FROM capacity", &[])?;
                    let active = tx.query(
                        "SELECT * FROM reservation WHERE state IN ('pending', 'confirmed') \
                         ORDER BY fencing",
                        &[],
                    )?;
                    let last: i64 = tx
                        .query_one(
                            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM fencing",
                            &[],
                        )?
                        .get(0);
                    tx.commit()?;
                    Ok((taken_at, resources, capacities, active, last))
                })?;
            let active: Vec<Reservation> = active
                .iter()
                .map(|row| held_from("snapshot", row).map(|h| h.reservation))
                .collect::<Result<_, _>>()?;
            let taken = timestamp(taken_at);
            if active.iter().any(|r| {
                r.state == ReservationState::Pending && r.expires_at.is_some_and(|at| at <= taken)
            }) {
                continue;
            }
            let mut by_resource: std::collections::HashMap<&str, Vec<&Row>> =
                std::collections::HashMap::new();
            for row in &capacities {
                by_resource
                    .entry(row.get::<_, &str>("resource"))
                    .or_default()
                    .push(row);
            }
            let mut described = Vec::with_capacity(resources.len());
            let mut usage = Vec::with_capacity(capacities.len());
            for row in &resources {
                let resource: Resource = serde_json::from_str(row.get::<_, &str>("spec"))
                    .map_err(|e| corrupt("snapshot", "a resource", e))?;
                let mut rows: Vec<CapacityUsage> = by_resource
                    .get(row.get::<_, &str>("name"))
                    .map(|rows| {
                        rows.iter()
                            .map(|r| usage_of(resource.name(), r))
                            .collect::<Result<_, _>>()
                    })
                    .transpose()?
                    .unwrap_or_default();
                rows.sort_by(|a, b| a.resource_type.cmp(&b.resource_type));
                usage.extend(rows);
                described.push(resource);
            }
            return Ok(LedgerSnapshot {
                taken_at: taken,
                resources: described,
                usage,
                active,
                last_fencing_token: FencingToken(u64::try_from(last).unwrap_or(0)),
            });
        }
    }

    fn audit(&self) -> Result<AuditReport, LedgerError> {
        let (capacities, reservations, rows) = self.pool.run("audit", |c| {
            let mut tx = c
                .client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let capacities: i64 = tx.query_one("SELECT count(*) FROM capacity", &[])?.get(0);
            let reservations: i64 = tx
                .query_one(
                    "SELECT count(*) FROM reservation WHERE state IN ('pending', 'confirmed')",
                    &[],
                )?
                .get(0);
            let rows = tx.query(AUDIT, &[])?;
            tx.commit()?;
            Ok((capacities, reservations, rows))
        })?;
        let violations = rows
            .iter()
            .filter_map(|row| {
                Some(AuditViolation {
                    resource: ResourceName::new(row.get::<_, &str>(0)).ok()?,
                    resource_type: row.get::<_, &str>(1).parse().ok()?,
                    message: row.get(2),
                })
            })
            .collect();
        Ok(AuditReport {
            checked_capacities: usize::try_from(capacities).unwrap_or(0),
            checked_reservations: usize::try_from(reservations).unwrap_or(0),
            violations,
        })
    }
}

/// Conservation in SQL: every capacity's pending and confirmed counters equal the sums of
/// the active reservations' holds on it, no counter is negative, and every hold names a
/// registered capacity. (Holding more than the maximum is allowed only as draining after a
/// shrink, which grants never cause: the guard refuses them.)
const AUDIT: &str = "
WITH held AS (
    SELECT h.res, h.typ,
        sum(CASE WHEN r.state = 'pending' THEN h.amount ELSE 0 END) AS pending,
        sum(CASE WHEN r.state = 'confirmed' THEN h.amount ELSE 0 END) AS confirmed
    FROM reservation r,
        unnest(r.hold_resource, r.hold_type, r.hold_amount) AS h(res, typ, amount)
    WHERE r.state IN ('pending', 'confirmed')
    GROUP BY h.res, h.typ
)
SELECT coalesce(c.resource, held.res), coalesce(c.resource_type, held.typ),
    CASE
        WHEN c.resource IS NULL THEN
            'active reservations hold capacity that is not registered'
        WHEN c.pending < 0 OR c.confirmed < 0 THEN
            format('a negative amount: pending %sm, confirmed %sm', c.pending, c.confirmed)
        ELSE format('accounted pending %sm and confirmed %sm, but active reservations hold \
%sm and %sm', c.pending, c.confirmed, coalesce(held.pending, 0), coalesce(held.confirmed, 0))
    END
FROM capacity c FULL JOIN held ON c.resource = held.res AND c.resource_type = held.typ
WHERE c.resource IS NULL OR c.pending < 0 OR c.confirmed < 0
    OR c.pending <> coalesce(held.pending, 0) OR c.confirmed <> coalesce(held.confirmed, 0)
";
