//! [`PgLedger`]: the ledger contract on PostgreSQL.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use postgres::Row;
use rm_model::{
    Clock, Event, EventKind, EventSink, FencingToken, Labels, LedgerError, Priority, RequesterId,
    Reservation, ReservationId, ReservationItem, ReservationLedger, ReservationRequest,
    ReservationState, ReservationStrategy, Resource, ResourceName, Timestamp, ValidationContext,
    ValidationErrors, Validator,
};
use rm_plan::{Affinity, Placement};

use crate::holds::{Holds, InFlight};
use crate::pool::{Pool, is_session_ended, is_stale};
use crate::schema::channel;
use crate::view::{Catalog, PgSlot, View, read};
use crate::{Error, Listener};

/// How many times a grant plans again when the rows it planned on changed meanwhile.
pub(crate) const COMMIT_ATTEMPTS: usize = 32;

/// How many due holds (and forgotten reservations) one sweep handles.
pub(crate) const SWEEP_BATCH: i32 = 1000;

pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> LedgerError {
    LedgerError::InvalidInput {
        field: field.into(),
        reason: reason.into(),
    }
}

pub(crate) fn rejected(errors: ValidationErrors) -> LedgerError {
    let field = errors
        .violations
        .first()
        .map(|v| v.path.clone())
        .unwrap_or_default();
    invalid(field, errors.to_string())
}

pub(crate) fn nanos(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

pub(crate) fn timestamp(nanos: i64) -> Timestamp {
    Timestamp::from_nanos(u64::try_from(nanos).unwrap_or(0))
}

/// A stored value the crate wrote itself but cannot read back: the schema was changed by
/// hand, or by a newer version.
#[derive(Debug, thiserror::Error)]
#[error("read {what} from the database: {reason}")]
pub(crate) struct Corrupt {
    what: &'static str,
    reason: String,
}

pub(crate) fn corrupt(
    operation: &'static str,
    what: &'static str,
    reason: impl ToString,
) -> LedgerError {
    LedgerError::Unavailable {
        operation,
        source: Arc::new(Corrupt {
            what,
            reason: reason.to_string(),
        }),
    }
}

/// A hold's session ended: the worker acted after its session's TTL ran out (paused, cut
/// off). Definite: nothing changed.
#[derive(Debug, thiserror::Error)]
#[error("the session this hold is bound to has ended (its worker stopped renewing it)")]
struct SessionEnded;

/// The contract's answer for an operation refused because its session ended: the hold is as
/// good as expired (the sweep ends it).
pub(crate) fn session_ended(operation: &'static str) -> LedgerError {
    LedgerError::InvalidInput {
        field: "session".into(),
        reason: format!("{operation}: {SessionEnded}"),
    }
}

pub(crate) fn parse_state(text: &str) -> Option<ReservationState> {
    use ReservationState::*;
    [Pending, Confirmed, Released, Expired, Preempted, Cancelled]
        .into_iter()
        .find(|s| s.as_str() == text)
}

/// One reservation as a row holds it, with its holds (capacity, type, amount).
pub(crate) struct Held {
    pub(crate) reservation: Reservation,
    pub(crate) holds: Vec<(String, String, i64)>,
}

/// Reads a reservation from a row with the `reservation` table's columns.
pub(crate) fn held_from(operation: &'static str, row: &Row) -> Result<Held, LedgerError> {
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
pub(crate) fn request_key(request: &ReservationRequest) -> Result<String, LedgerError> {
    let mut copy = request.clone();
    copy.id = None;
    let ttl = copy.ttl.take().map_or(-1, nanos);
    let json = serde_json::to_string(&copy).map_err(|e| invalid("request", e.to_string()))?;
    Ok(format!("{ttl}|{json}"))
}

/// The reservation ledger on PostgreSQL. See the [crate docs](crate).
pub struct PgLedger {
    pub(crate) pool: Pool,
    pub(crate) view: RwLock<View>,
    pub(crate) clock: Option<Arc<dyn Clock>>,
    pub(crate) default_ttl: Duration,
    pub(crate) retention: Duration,
    pub(crate) max_staleness: Duration,
    pub(crate) validator: Option<Arc<dyn Validator>>,
    pub(crate) sink: Option<Arc<dyn EventSink>>,
    pub(crate) sequence: AtomicU64,
    pub(crate) wakeups: Arc<crate::wakeups::Wakeups>,
    pub(crate) wait_poll: Duration,
    pub(crate) wait_order: Option<Arc<dyn rm_model::AllocationPolicy>>,
    /// The time the wait order's policy is asked at: the injected clock, or a monotonic
    /// clock of this process (keys compare durations measured in one process).
    pub(crate) policy_clock: Arc<dyn Clock>,
    /// Whether this process's waiters with a run time may backfill.
    pub(crate) backfill: bool,
}

impl Drop for PgLedger {
    fn drop(&mut self) {
        // The waiters' listener thread (if one started) ends within its next poll.
        self.wakeups.stop();
    }
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

/// The session a grant binds its hold to, if any, whether a confirmed hold outlives it, and
/// the queue place a waiter's grant leaves.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Bind<'a> {
    pub(crate) session: Option<i64>,
    pub(crate) keep: bool,
    pub(crate) waiter: Option<&'a str>,
}

/// One call of the `reserve` function: the request with its key and labels as stored, the
/// plan's items and holds (none: only look the id up), and what the hold is bound to.
pub(crate) struct GrantCall<'a> {
    pub(crate) id: &'a str,
    pub(crate) key: &'a str,
    pub(crate) request: &'a ReservationRequest,
    pub(crate) labels: &'a str,
    pub(crate) items: &'a str,
    pub(crate) holds: &'a Holds,
    pub(crate) now: Option<i64>,
    /// The pending phase's length; none for a hold confirmed on grant.
    pub(crate) ttl: Option<i64>,
    pub(crate) bind: Bind<'a>,
}

impl GrantCall<'_> {
    /// Runs the call with the prepared `reserve` statement, on a connection or in a
    /// transaction.
    pub(crate) fn query(
        &self,
        client: &mut impl postgres::GenericClient,
        reserve: &postgres::Statement,
    ) -> Result<Row, postgres::Error> {
        client.query_one(
            reserve,
            &[
                &self.id,
                &self.key,
                &self.request.requester.as_str(),
                &self.request.priority.0,
                &self.labels,
                &self.request.preemptible,
                &self.items,
                &self.holds.resources,
                &self.holds.types,
                &self.holds.amounts,
                &self.holds.generations,
                &self.now,
                &self.ttl,
                &self.bind.session,
                &self.bind.keep,
                &self.bind.waiter,
            ],
        )
    }
}

impl PgLedger {
    /// The schema this ledger's tables live in.
    pub fn schema(&self) -> &str {
        &self.pool.settings().schema
    }

    /// Opens a connection that receives the events of every process using this schema
    /// (published with `NOTIFY` when their transactions commit).
    pub fn listen(&self) -> Result<Listener, Error> {
        let settings = self.pool.settings();
        Listener::open(
            &settings.config,
            &settings.schema,
            &channel(&settings.schema),
        )
    }

    /// Drops this pool's schema and everything in it: every resource, hold, session and
    /// waiter of every process using it. For throw-away pools (`rmctl stress` drops the one it
    /// made); other processes still on the schema get errors from then on.
    ///
    /// # Errors
    /// `Unavailable` or `Timeout` when the server could not be asked, as for any operation.
    pub fn drop_schema(self) -> Result<(), LedgerError> {
        let statement = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema());
        self.pool
            .run("drop schema", |c| c.client.batch_execute(&statement))
    }

    /// The instant to pass the database: the injected clock's reading, or `None` for the
    /// server's clock.
    pub(crate) fn now(&self) -> Option<i64> {
        self.clock
            .as_ref()
            .map(|c| i64::try_from(c.now().as_nanos()).unwrap_or(i64::MAX))
    }

    pub(crate) fn publish(&self, at: i64, kind: impl FnOnce() -> EventKind) {
        if let Some(sink) = &self.sink {
            let sequence = self.sequence.fetch_add(1, Ordering::AcqRel) + 1;
            sink.publish(&Event {
                sequence,
                at: timestamp(at),
                kind: kind(),
            });
        }
    }

    pub(crate) fn read_view(&self) -> RwLockReadGuard<'_, View> {
        read(&self.view)
    }

    pub(crate) fn write_view(&self) -> RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Expires what is due and forgets what retention let go; credits the view and
    /// publishes for each hold it expired.
    pub(crate) fn sweep(&self, listeners: bool) -> Result<Vec<Reservation>, LedgerError> {
        let now = self.now();
        let retention = nanos(self.retention);
        let rows = self.pool.run("expire", |c| {
            c.client.query(
                &c.statements.sweep,
                &[&now, &retention, &SWEEP_BATCH, &listeners],
            )
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
    pub(crate) fn ended(&self, held: &Held, at: i64, by: Option<ReservationId>) {
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
    pub(crate) fn refresh(&self, sweep: bool) -> Result<(), LedgerError> {
        if sweep {
            self.sweep(false)?;
        }
        let known = self.read_view().version;
        let now = self.now();
        if known >= 0 {
            // The common case, one statement (one snapshot): what is free, when the catalog
            // has not changed since the view read it.
            let rows = self.pool.run("read capacity", |c| {
                c.client.query(
                    "WITH m AS (SELECT (SELECT value FROM meta WHERE key = 'catalog') AS version, \
                         coalesce($1::bigint, now_ns()) AS now, \
                         (SELECT min(expires_at) FROM reservation WHERE state = 'pending') \
                             AS next_due) \
                     SELECT m.version, m.now, m.next_due, c.resource, c.resource_type, \
                         c.maximum - c.external - c.held AS free \
                     FROM m LEFT JOIN capacity c ON true",
                    &[&now],
                )
            })?;
            if rows
                .first()
                .is_some_and(|row| row.get::<_, i64>(0) == known)
            {
                let view = self.write_view();
                for row in &rows {
                    let (Some(resource), Some(resource_type), Some(free)) = (
                        row.get::<_, Option<&str>>(3),
                        row.get::<_, Option<&str>>(4),
                        row.get::<_, Option<i64>>(5),
                    ) else {
                        continue;
                    };
                    let Ok(name) = ResourceName::new(resource) else {
                        continue;
                    };
                    if let Some(position) = view.catalog.position(&name) {
                        let slot = &view.catalog.slots[position];
                        if let Some(d) = slot.types.iter().position(|t| t.as_str() == resource_type)
                        {
                            slot.set(d, free);
                        }
                    }
                }
                let mut view = view;
                view.read_at = Some(Instant::now());
                if let Some(row) = rows.first() {
                    view.read_time = row.get(1);
                    view.next_due.store(
                        row.get::<_, Option<i64>>(2).unwrap_or(i64::MAX),
                        Ordering::Release,
                    );
                }
                return Ok(());
            }
        }
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
                 maximum - external - held AS free FROM capacity",
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
            // What the node strategies learned survives a new read of the resources.
            catalog.carry_node_strategies(&mut view.catalog);
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
    pub(crate) fn refresh_if_stale(&self) -> Result<(), LedgerError> {
        let now = self.now();
        let (due, old) = {
            let view = self.read_view();
            (
                view.may_be_due(now),
                view.version < 0
                    || view
                        .read_at
                        .is_none_or(|at| at.elapsed() >= self.max_staleness),
            )
        };
        if old {
            // The periodic sweep: also forgets listeners whose backend is gone.
            self.sweep(true)?;
            self.refresh(false)?;
        } else if due {
            self.refresh(true)?;
        }
        Ok(())
    }

    /// Forgets the view's catalog, so the next operation reads it again.
    pub(crate) fn invalidate(&self) {
        self.write_view().version = -1;
    }

    /// Where the holds that `request`'s affinity terms select are, read from the active
    /// reservations.
    pub(crate) fn affinity<'c>(
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
    pub(crate) fn holds(catalog: &Catalog, plan: &[Placement]) -> Result<Holds, LedgerError> {
        // In the global lock order: catalog position (the registration position: the view
        // reads resources in that order), then type by bytes.
        let mut order: Vec<&Placement> = plan.iter().collect();
        order.sort_by(|a, b| {
            (a.position, a.resource_type.as_str().as_bytes())
                .cmp(&(b.position, b.resource_type.as_str().as_bytes()))
        });
        let mut holds = Holds {
            resources: Vec::with_capacity(plan.len()),
            types: Vec::with_capacity(plan.len()),
            amounts: Vec::with_capacity(plan.len()),
            generations: Vec::with_capacity(plan.len()),
        };
        let mut last: Option<(usize, &str)> = None;
        for placement in order {
            let resource_type = placement.resource_type.as_str();
            if last == Some((placement.position, resource_type)) {
                let h = holds.amounts.len() - 1;
                holds.amounts[h] =
                    holds.amounts[h]
                        .checked_add(placement.amount)
                        .ok_or_else(|| {
                            invalid(
                                format!("requirements[{}].amount", placement.requirement),
                                "the amounts on one resource overflow",
                            )
                        })?;
                continue;
            }
            last = Some((placement.position, resource_type));
            holds.resources.push(
                catalog.resources[placement.position]
                    .name()
                    .as_str()
                    .to_owned(),
            );
            holds.types.push(resource_type.to_owned());
            holds.amounts.push(placement.amount);
            holds
                .generations
                .push(catalog.slots[placement.position].generation);
        }
        Ok(holds)
    }

    pub(crate) fn items(
        catalog: &Catalog,
        request: &ReservationRequest,
        plan: &[Placement],
    ) -> Vec<ReservationItem> {
        plan.iter()
            .map(|p| p.item(request, catalog.resources[p.position].name()))
            .collect()
    }

    pub(crate) fn check_request(&self, request: &ReservationRequest) -> Result<(), LedgerError> {
        if let Some(first) = request.violations().into_iter().next() {
            return Err(invalid(first.path, first.message));
        }
        if let Some(validator) = &self.validator {
            self.refresh_if_stale()?;
            let check = || {
                let view = self.read_view();
                let context = ValidationContext {
                    resources: &view.catalog.resources,
                    active: &[],
                    name_checked: false,
                };
                validator.validate_request(request, &context)
            };
            if check().is_err() {
                // Another process may have registered what the request needs since the view
                // was read: judge on a fresh read.
                self.refresh(false)?;
                check().map_err(rejected)?;
            }
        }
        Ok(())
    }

    /// Checks a request; one that is refused but names a used id answers as a retry of
    /// that id would (a conflict, unless it is the same request).
    pub(crate) fn admit(&self, request: &ReservationRequest, key: &str) -> Result<(), LedgerError> {
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
    pub(crate) fn lookup(
        &self,
        id: &str,
        key: &str,
        request: &ReservationRequest,
    ) -> Result<Option<Reservation>, LedgerError> {
        let call = GrantCall {
            id,
            key,
            request,
            labels: "",
            items: "",
            holds: &Holds::default(),
            now: self.now(),
            ttl: None,
            bind: Bind::default(),
        };
        let row = self.pool.run("reserve", |c| {
            call.query(&mut c.client, &c.statements.reserve)
        })?;
        self.answer_existing(row.get(0), id)
    }

    pub(crate) fn answer_existing(
        &self,
        outcome: &str,
        id: &str,
    ) -> Result<Option<Reservation>, LedgerError> {
        let id = ReservationId::new(id).map_err(|e| invalid("id", e.to_string()))?;
        match outcome {
            "existing" => self.get(&id).map(Some),
            "conflict" => Err(LedgerError::IdConflict { id }),
            _ => Ok(None),
        }
    }

    /// The pending phase a grant of `request` has, in nanoseconds: its TTL or the default;
    /// none when the hold is confirmed on grant.
    pub(crate) fn grant_ttl(&self, request: &ReservationRequest) -> Option<i64> {
        (!request.confirm_on_grant).then(|| nanos(request.ttl.unwrap_or(self.default_ttl)))
    }

    pub(crate) fn reserve_with(
        &self,
        request: &ReservationRequest,
        explain: bool,
        bind: Bind<'_>,
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
        let ttl = self.grant_ttl(request);
        let labels =
            serde_json::to_string(&request.labels).map_err(|e| invalid("labels", e.to_string()))?;
        let mut fresh = false;
        // The fragmentation strategy learns the workload of this process's requests.
        self.read_view().catalog.node_strategies.observe(request);
        let mut clustered = None;
        for _ in 0..COMMIT_ATTEMPTS {
            let (holds, items) = {
                let view = self.read_view();
                let affinity = self.affinity(&view.catalog, request)?;
                match rm_plan::plan(&view.catalog, request, &affinity, explain, &[]) {
                    Ok(plan) => {
                        if request.strategy == ReservationStrategy::GpuClustering {
                            clustered = Some(plan.clone());
                        }
                        (
                            Self::holds(&view.catalog, &plan)?,
                            Self::items(&view.catalog, request, &plan),
                        )
                    }
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
            let in_flight = InFlight::take(&self.view, &holds);
            let now = self.now();
            let call = GrantCall {
                id: &id_text,
                key: &key,
                request,
                labels: &labels,
                items: &items_json,
                holds: &holds,
                now,
                ttl,
                bind,
            };
            let row = self.pool.run("reserve", |c| {
                match call.query(&mut c.client, &c.statements.reserve) {
                    Ok(row) => Ok(Ok(Some(row))),
                    Err(err) if is_stale(&err) => Ok(Ok(None)),
                    Err(err) if is_session_ended(&err) => Ok(Err(session_ended("reserve"))),
                    Err(err) => Err(err),
                }
            })??;
            let Some(row) = row else {
                // The rows moved under the plan: read them and plan again.
                drop(in_flight);
                self.refresh(false)?;
                fresh = true;
                continue;
            };
            let outcome: &str = row.get(0);
            match outcome {
                "granted" => {
                    in_flight.landed();
                    if let Some(plan) = clustered {
                        // GPU clustering's record of what runs where (this process's grants).
                        let view = self.read_view();
                        view.catalog.record_placement(request, &plan);
                    }
                    return Ok(self.granted(id, request, items, &row));
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

    /// The reservation a `granted` row of `reserve` made (its holds already taken from the
    /// view): notes the deadline, publishes.
    pub(crate) fn granted(
        &self,
        id: &ReservationId,
        request: &ReservationRequest,
        items: Vec<ReservationItem>,
        row: &Row,
    ) -> Reservation {
        let at: i64 = row.get(1);
        let token: i64 = row.get(2);
        let expires_at: Option<i64> = row.get(3);
        if let Some(at) = expires_at {
            self.read_view().due_at(at);
        }
        let reservation = Reservation {
            id: id.clone(),
            requester: request.requester.clone(),
            priority: request.priority,
            state: match expires_at {
                Some(_) => ReservationState::Pending,
                None => ReservationState::Confirmed,
            },
            items: items.into(),
            fencing_token: FencingToken(u64::try_from(token).unwrap_or(0)),
            created_at: timestamp(at),
            updated_at: timestamp(at),
            expires_at: expires_at.map(timestamp),
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
        if reservation.state == ReservationState::Confirmed {
            self.publish(at, || EventKind::Confirmed {
                reservation: reservation.id.clone(),
                requester: reservation.requester.clone(),
            });
        }
        reservation
    }

    /// Runs one operation of `act` and answers as the contract says.
    pub(crate) fn act(
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
    pub(crate) fn acted(
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
            "wrong-state" => return Err(LedgerError::wrong_state(operation, id, r.state)),
            "session-ended" => {
                return Err(LedgerError::Expired {
                    operation,
                    id: id.clone(),
                });
            }
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
}
