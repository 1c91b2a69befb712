//! The wait queue as a ledger: [`WaitQueue`] implements [`ReservationLedger`] over the ledger it
//! queues for, so that a program (the facade) holds one ledger and every operation goes the
//! same way. Releases and cancellations go through [`WaitQueue::release`] and
//! [`WaitQueue::cancel`], which hand the freed capacity to the head on the releasing thread;
//! everything else is the inner ledger's own, whose events wake the head as they always do.

use std::time::Duration;

use rm_model::{
    AuditReport, CapacityUsage, FencingToken, LedgerError, LedgerSnapshot, Quantity, Reservation,
    ReservationId, ReservationLedger, ReservationRequest, Resource, ResourceName, ResourceType,
};

use super::WaitQueue;

impl ReservationLedger for WaitQueue {
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
        self.ledger.reserve(request)
    }

    fn try_reserve(
        &self,
        request: &ReservationRequest,
    ) -> Result<Option<Reservation>, LedgerError> {
        self.ledger.try_reserve(request)
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
        WaitQueue::release(self, id, fence)
    }

    fn cancel(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
    ) -> Result<Reservation, LedgerError> {
        WaitQueue::cancel(self, id, fence)
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
