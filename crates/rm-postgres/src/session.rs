//! [`WorkerSession`]: a worker process's lease on the pool. Holds bound to it end when the
//! process dies or stops renewing it, so no slot stays stuck behind a dead worker.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rm_model::{
    AuditReport, CapacityUsage, FencingToken, LedgerError, LedgerSnapshot, Quantity, Reservation,
    ReservationId, ReservationLedger, ReservationRequest, Resource, ResourceName, ResourceType,
};

use crate::ledger::{Bind, PgLedger, held_from, nanos};
use crate::wait::{PgWait, Waiting};

/// What happens to a confirmed hold when the session it is bound to ends. (Pending holds
/// always expire with their session.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnSessionEnd {
    /// It is released, its capacity back to the pool: the work died with its worker.
    #[default]
    Release,
    /// It stays confirmed, bound to no session, until the orchestrator or an operator
    /// releases it: the work outlives its worker (a job that runs elsewhere).
    Keep,
}

/// A worker's session with the pool: a lease measured by the database server's clock,
/// renewed by a heartbeat thread every third of its TTL. Holds taken through it are bound to
/// it; when the session ends (dropped, [`end`](Self::end)ed, or not renewed within its TTL
/// because the process died, hung or lost the database) its pending holds expire and its
/// confirmed holds are released or kept as each asked ([`OnSessionEnd`]). A session that has
/// ended is never revived: its worker's later operations on its holds are refused.
///
/// It is a [`ReservationLedger`] itself: every operation goes to the ledger, and grants are
/// bound to the session (confirmed holds released at its end), so it can stand wherever a
/// ledger is expected, the facade included.
pub struct WorkerSession {
    ledger: Arc<PgLedger>,
    id: i64,
    ttl: Duration,
    shared: Arc<Shared>,
    heartbeat: Option<JoinHandle<()>>,
}

struct Shared {
    stopped: Mutex<bool>,
    wake: Condvar,
    lost: AtomicBool,
}

impl std::fmt::Debug for WorkerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerSession")
            .field("id", &self.id)
            .field("ttl", &self.ttl)
            .field("lost", &self.is_lost())
            .finish_non_exhaustive()
    }
}

impl PgLedger {
    /// Opens a session named `name` (for operators: it shows in the `session` table) with
    /// a lease of `ttl` on the server's clock, and starts its heartbeat.
    pub fn open_session(
        self: &Arc<Self>,
        name: &str,
        ttl: Duration,
    ) -> Result<WorkerSession, LedgerError> {
        if ttl.is_zero() {
            return Err(LedgerError::InvalidInput {
                field: "ttl".into(),
                reason: "must be positive".into(),
            });
        }
        let now = self.now();
        let ttl_ns = nanos(ttl);
        let row = self.pool.run("open session", |c| {
            c.client.query_one(
                "SELECT id FROM open_session($1, $2, $3)",
                &[&name, &ttl_ns, &now],
            )
        })?;
        let id: i64 = row.get(0);
        let shared = Arc::new(Shared {
            stopped: Mutex::new(false),
            wake: Condvar::new(),
            lost: AtomicBool::new(false),
        });
        let heartbeat = {
            let (ledger, shared) = (self.clone(), shared.clone());
            let every = ttl / 3;
            std::thread::Builder::new()
                .name(format!("rm-postgres-session-{id}"))
                .spawn(move || heartbeat(&ledger, id, every, &shared))
                .map_err(|err| LedgerError::Unavailable {
                    operation: "open session",
                    source: Arc::new(err),
                })?
        };
        Ok(WorkerSession {
            ledger: self.clone(),
            id,
            ttl,
            shared,
            heartbeat: Some(heartbeat),
        })
    }

    /// Extends session `id` by its TTL; `false` when it has ended.
    fn renew_session(&self, id: i64) -> Result<bool, LedgerError> {
        let now = self.now();
        let row = self.pool.run("renew session", |c| {
            c.client
                .query_one("SELECT renew_session($1, $2)", &[&id, &now])
        })?;
        Ok(row.get::<_, Option<i64>>(0).is_some())
    }

    /// Ends session `id` now: its holds end as they asked; credits and publishes them.
    fn end_session(&self, id: i64) -> Result<Vec<Reservation>, LedgerError> {
        let now = self.now();
        let rows = self.pool.run("end session", |c| {
            c.client
                .query("SELECT * FROM end_session($1, $2)", &[&id, &now])
        })?;
        let mut ended = Vec::with_capacity(rows.len());
        for row in &rows {
            let held = held_from("end session", row)?;
            self.ended(&held, row.get("updated_at"), None);
            ended.push(held.reservation);
        }
        Ok(ended)
    }
}

/// Renews the session every `every` until stopped or the session is found ended. A renewal
/// that fails (the database unreachable) is tried again at the next beat: the session lives
/// while some renewal lands within its TTL.
fn heartbeat(ledger: &PgLedger, id: i64, every: Duration, shared: &Shared) {
    let mut stopped = shared
        .stopped
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    loop {
        let (guard, _) = shared
            .wake
            .wait_timeout(stopped, every)
            .unwrap_or_else(PoisonError::into_inner);
        stopped = guard;
        if *stopped {
            return;
        }
        drop(stopped);
        if let Ok(false) = ledger.renew_session(id) {
            shared.lost.store(true, Ordering::Release);
            return;
        }
        stopped = shared
            .stopped
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
    }
}

impl WorkerSession {
    /// The session's id (its row in the `session` table).
    pub fn id(&self) -> i64 {
        self.id
    }

    /// The lease's TTL.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether the heartbeat found the session ended (it was not renewed within its TTL):
    /// its holds are gone or going, and the worker should stop the work they covered.
    pub fn is_lost(&self) -> bool {
        self.shared.lost.load(Ordering::Acquire)
    }

    /// Grants `request` bound to this session, its confirmed hold released or kept at the
    /// session's end as `on_end` says. Fails with `InvalidInput` (field `session`) when the
    /// session has ended.
    pub fn reserve_bound(
        &self,
        request: &ReservationRequest,
        on_end: OnSessionEnd,
    ) -> Result<Reservation, LedgerError> {
        self.ledger.reserve_with(
            request,
            true,
            Bind {
                session: Some(self.id),
                keep: on_end == OnSessionEnd::Keep,
                waiter: None,
            },
        )
    }

    /// Waits up to `timeout` for `request` in the queue every process shares, as
    /// [`PgLedger::wait`] does, and binds the grant to this session as
    /// [`reserve_bound`](Self::reserve_bound) does: a worker that dies after its wait was
    /// granted strands nothing.
    pub fn wait_bound(
        &self,
        request: &ReservationRequest,
        timeout: Duration,
        on_end: OnSessionEnd,
    ) -> Result<Reservation, LedgerError> {
        self.waiting(request, timeout, on_end).block()
    }

    /// [`wait_bound`](Self::wait_bound) as a runtime-agnostic future ([`PgWait`]).
    pub fn wait_async(
        &self,
        request: &ReservationRequest,
        timeout: Duration,
        on_end: OnSessionEnd,
    ) -> PgWait {
        self.waiting(request, timeout, on_end).future()
    }

    /// A wait bound to this session, to configure further ([`Waiting::expecting`]) before it
    /// blocks or becomes a future.
    pub fn waiting<'a>(
        &'a self,
        request: &'a ReservationRequest,
        timeout: Duration,
        on_end: OnSessionEnd,
    ) -> Waiting<'a> {
        self.ledger
            .waiting(request, timeout)
            .with_session((self.id, on_end == OnSessionEnd::Keep))
    }

    /// Ends the session now (as dropping it does, but with the holds it ended, or the error).
    pub fn end(mut self) -> Result<Vec<Reservation>, LedgerError> {
        self.stop_heartbeat();
        self.ledger.end_session(self.id)
    }

    /// Stops the heartbeat without ending the session, as a worker that hangs would: the
    /// session then ends when its TTL runs out. For tests and fault drills.
    pub fn stop_heartbeat(&mut self) {
        *self
            .shared
            .stopped
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.shared.wake.notify_all();
        if let Some(heartbeat) = self.heartbeat.take() {
            let _ = heartbeat.join();
        }
    }
}

impl Drop for WorkerSession {
    fn drop(&mut self) {
        if self.heartbeat.is_some() {
            self.stop_heartbeat();
            // Best effort: a session that cannot be ended now ends when its TTL runs out.
            let _ = self.ledger.end_session(self.id);
        }
    }
}

impl ReservationLedger for WorkerSession {
    fn register_resource(&self, resource: Resource) -> Result<(), LedgerError> {
        self.ledger.register_resource(resource)
    }

    fn update_resource(&self, resource: Resource) -> Result<(), LedgerError> {
        self.ledger.update_resource(resource)
    }

    fn unregister_resource(&self, name: &ResourceName) -> Result<Resource, LedgerError> {
        self.ledger.unregister_resource(name)
    }

    fn set_capacity(
        &self,
        name: &ResourceName,
        resource_type: &ResourceType,
        maximum: Quantity,
    ) -> Result<CapacityUsage, LedgerError> {
        self.ledger.set_capacity(name, resource_type, maximum)
    }

    fn resources(&self) -> Result<Vec<Resource>, LedgerError> {
        self.ledger.resources()
    }

    fn reserve(&self, request: &ReservationRequest) -> Result<Reservation, LedgerError> {
        self.reserve_bound(request, OnSessionEnd::Release)
    }

    fn try_reserve(
        &self,
        request: &ReservationRequest,
    ) -> Result<Option<Reservation>, LedgerError> {
        let bind = Bind {
            session: Some(self.id),
            keep: false,
            waiter: None,
        };
        match self.ledger.reserve_with(request, false, bind) {
            Err(LedgerError::InsufficientCapacity { .. }) => Ok(None),
            other => other.map(Some),
        }
    }

    fn confirm(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
    ) -> Result<Reservation, LedgerError> {
        self.ledger.confirm(id, fence)
    }

    fn renew(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
        ttl: Duration,
    ) -> Result<Reservation, LedgerError> {
        self.ledger.renew(id, fence, ttl)
    }

    fn release(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
    ) -> Result<Reservation, LedgerError> {
        self.ledger.release(id, fence)
    }

    fn cancel(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
    ) -> Result<Reservation, LedgerError> {
        self.ledger.cancel(id, fence)
    }

    fn preempt(
        &self,
        id: &ReservationId,
        by: Option<&ReservationId>,
    ) -> Result<Reservation, LedgerError> {
        self.ledger.preempt(id, by)
    }

    fn shrink(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
        requirement: usize,
        to: Quantity,
    ) -> Result<Reservation, LedgerError> {
        self.ledger.shrink(id, fence, requirement, to)
    }

    /// Preempts and grants as the ledger does; the grant is not bound to the session.
    fn reserve_preempting(
        &self,
        request: &ReservationRequest,
        victims: &[ReservationId],
    ) -> Result<Reservation, LedgerError> {
        self.ledger.reserve_preempting(request, victims)
    }

    fn next_expiry(&self) -> Result<Option<Duration>, LedgerError> {
        self.ledger.next_expiry()
    }

    fn get(&self, id: &ReservationId) -> Result<Reservation, LedgerError> {
        self.ledger.get(id)
    }

    fn expire_due(&self) -> Result<Vec<Reservation>, LedgerError> {
        self.ledger.expire_due()
    }

    fn snapshot(&self) -> Result<LedgerSnapshot, LedgerError> {
        self.ledger.snapshot()
    }

    fn audit(&self) -> Result<AuditReport, LedgerError> {
        self.ledger.audit()
    }
}

impl Waiting<'_> {
    /// Binds the grant to `session` ([`WorkerSession::reserve_bound`]'s rules): a worker
    /// that dies after its wait was granted strands nothing.
    ///
    /// [`WorkerSession::reserve_bound`]: WorkerSession::reserve_bound
    pub fn bound_to(self, session: &WorkerSession, on_end: OnSessionEnd) -> Self {
        self.with_session((session.id(), on_end == OnSessionEnd::Keep))
    }
}
