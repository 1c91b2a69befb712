//! The [`ReservationLedger`] contract on [`PgLedger`]: each operation goes to the grant,
//! the one-reservation operations, the catalog changes, the sweep or the inspections written
//! beside it.

use std::time::Duration;

use rm_model::{
    AuditReport, CapacityUsage, FencingToken, LedgerError, LedgerSnapshot, Quantity, Reservation,
    ReservationId, ReservationLedger, ReservationRequest, Resource, ResourceName, ResourceType,
};

use crate::ledger::{Bind, PgLedger, SWEEP_BATCH, invalid};

impl ReservationLedger for PgLedger {
    fn register_resource(&self, resource: Resource) -> Result<(), LedgerError> {
        self.register(resource)
    }

    fn update_resource(&self, resource: Resource) -> Result<(), LedgerError> {
        self.update(resource)
    }

    fn unregister_resource(&self, name: &ResourceName) -> Result<Resource, LedgerError> {
        self.unregister(name)
    }

    fn set_capacity(
        &self,
        name: &ResourceName,
        resource_type: &ResourceType,
        maximum: Quantity,
    ) -> Result<CapacityUsage, LedgerError> {
        self.change_capacity(name, resource_type, maximum)
    }

    fn resources(&self) -> Result<Vec<Resource>, LedgerError> {
        self.all_resources()
    }

    fn reserve(&self, request: &ReservationRequest) -> Result<Reservation, LedgerError> {
        self.reserve_with(request, true, Bind::default())
    }

    fn try_reserve(
        &self,
        request: &ReservationRequest,
    ) -> Result<Option<Reservation>, LedgerError> {
        match self.reserve_with(request, false, Bind::default()) {
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
        self.shrink_hold(id, fence, requirement, to)
    }

    fn reserve_preempting(
        &self,
        request: &ReservationRequest,
        victims: &[ReservationId],
    ) -> Result<Reservation, LedgerError> {
        self.grant_preempting(request, victims)
    }

    fn next_expiry(&self) -> Result<Option<Duration>, LedgerError> {
        self.earliest_expiry()
    }

    fn get(&self, id: &ReservationId) -> Result<Reservation, LedgerError> {
        self.act("get", id, None, None, None)
    }

    fn expire_due(&self) -> Result<Vec<Reservation>, LedgerError> {
        let mut expired = Vec::new();
        loop {
            let batch = self.sweep(true)?;
            let more = batch.len() >= SWEEP_BATCH as usize;
            expired.extend(batch);
            if !more {
                return Ok(expired);
            }
        }
    }

    fn snapshot(&self) -> Result<LedgerSnapshot, LedgerError> {
        self.take_snapshot()
    }

    fn audit(&self) -> Result<AuditReport, LedgerError> {
        self.audit_in_sql()
    }
}
