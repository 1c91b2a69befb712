//! Ledgers that each break one rule of the contract, to show that the suite catches it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use rm_model::{
    AuditReport, CapacityUsage, DiscardEvents, FencingToken, LedgerError, LedgerSnapshot, Quantity,
    Reservation, ReservationId, ReservationLedger, ReservationRequest, Resource, ResourceName,
    ResourceType,
};

use crate::ReferenceLedger;
use crate::conformance::ledger::{self, LedgerFixture, MakeLedger};

/// How the wrapped ledger misbehaves.
#[derive(Clone, Copy)]
enum Fault {
    /// Drops fencing tokens before checking them.
    IgnoresFencing,
    /// Forgets the caller's id, so retries grant again.
    ForgetsIds,
}

struct Broken {
    inner: ReferenceLedger,
    fault: Fault,
}

impl ReservationLedger for Broken {
    fn register_resource(&self, resource: Resource) -> Result<(), LedgerError> {
        self.inner.register_resource(resource)
    }
    fn update_resource(&self, resource: Resource) -> Result<(), LedgerError> {
        self.inner.update_resource(resource)
    }
    fn unregister_resource(&self, name: &ResourceName) -> Result<Resource, LedgerError> {
        self.inner.unregister_resource(name)
    }
    fn set_capacity(
        &self,
        name: &ResourceName,
        t: &ResourceType,
        maximum: Quantity,
    ) -> Result<CapacityUsage, LedgerError> {
        self.inner.set_capacity(name, t, maximum)
    }
    fn resources(&self) -> Result<Vec<Resource>, LedgerError> {
        self.inner.resources()
    }
    fn reserve(&self, request: &ReservationRequest) -> Result<Reservation, LedgerError> {
        match self.fault {
            Fault::ForgetsIds => {
                let mut request = request.clone();
                request.id = None;
                self.inner.reserve(&request)
            }
            Fault::IgnoresFencing => self.inner.reserve(request),
        }
    }
    fn confirm(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
    ) -> Result<Reservation, LedgerError> {
        self.inner.confirm(id, self.fence(fence))
    }
    fn renew(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
        ttl: Duration,
    ) -> Result<Reservation, LedgerError> {
        self.inner.renew(id, self.fence(fence), ttl)
    }
    fn release(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
    ) -> Result<Reservation, LedgerError> {
        self.inner.release(id, self.fence(fence))
    }
    fn cancel(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
    ) -> Result<Reservation, LedgerError> {
        self.inner.cancel(id, self.fence(fence))
    }
    fn preempt(
        &self,
        id: &ReservationId,
        by: Option<&ReservationId>,
    ) -> Result<Reservation, LedgerError> {
        self.inner.preempt(id, by)
    }
    fn shrink(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
        requirement: usize,
        to: Quantity,
    ) -> Result<Reservation, LedgerError> {
        self.inner.shrink(id, self.fence(fence), requirement, to)
    }
    fn reserve_preempting(
        &self,
        request: &ReservationRequest,
        victims: &[ReservationId],
    ) -> Result<Reservation, LedgerError> {
        self.inner.reserve_preempting(request, victims)
    }
    fn get(&self, id: &ReservationId) -> Result<Reservation, LedgerError> {
        self.inner.get(id)
    }
    fn expire_due(&self) -> Result<Vec<Reservation>, LedgerError> {
        self.inner.expire_due()
    }
    fn snapshot(&self) -> Result<LedgerSnapshot, LedgerError> {
        self.inner.snapshot()
    }
    fn audit(&self) -> Result<AuditReport, LedgerError> {
        self.inner.audit()
    }
}

impl Broken {
    fn fence(&self, fence: Option<FencingToken>) -> Option<FencingToken> {
        match self.fault {
            Fault::IgnoresFencing => None,
            Fault::ForgetsIds => fence,
        }
    }
}

#[track_caller]
fn fails(case: fn(MakeLedger<'_>), make: MakeLedger<'_>) {
    assert!(
        catch_unwind(AssertUnwindSafe(|| case(make))).is_err(),
        "the case should catch the fault"
    );
}

fn broken(fault: Fault) -> impl Fn(&LedgerFixture) -> Box<dyn ReservationLedger> {
    move |f| {
        Box::new(Broken {
            inner: ReferenceLedger::new(f.clock.clone(), f.events.clone(), f.default_ttl),
            fault,
        })
    }
}

#[test]
fn ignoring_fencing_tokens_is_caught() {
    fails(
        ledger::fencing_tokens_grow_and_guard,
        &broken(Fault::IgnoresFencing),
    );
}

#[test]
fn forgetting_ids_is_caught() {
    fails(
        ledger::retries_by_id_are_idempotent,
        &broken(Fault::ForgetsIds),
    );
}

#[test]
fn dropping_events_is_caught() {
    let silent = |f: &LedgerFixture| -> Box<dyn ReservationLedger> {
        Box::new(ReferenceLedger::new(
            f.clock.clone(),
            Arc::new(DiscardEvents),
            f.default_ttl,
        ))
    };
    fails(ledger::events_follow_state_changes, &silent);
    fails(ledger::pending_holds_expire, &silent);
}

#[test]
fn run_all_reports_failures() {
    fails(ledger::run_all, &broken(Fault::IgnoresFencing));
    ledger::run_all(&|f: &LedgerFixture| -> Box<dyn ReservationLedger> {
        Box::new(ReferenceLedger::new(
            f.clock.clone(),
            f.events.clone(),
            f.default_ttl,
        ))
    });
}
