//! [`HookedLedger`]: any ledger, with hooks run around each of its operations, to count calls
//! or to hold a caller at a chosen point so that a test can force one interleaving of threads.

use std::time::Duration;

use rm_model::{
    AuditReport, CapacityUsage, FencingToken, LedgerError, LedgerSnapshot, Quantity, Reservation,
    ReservationId, ReservationLedger, ReservationRequest, Resource, ResourceName, ResourceType,
};

/// The ledger operation a hook is called for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[expect(
    missing_docs,
    reason = "each variant names the ledger method of the same name"
)]
pub enum Operation {
    RegisterResource,
    UpdateResource,
    UnregisterResource,
    SetCapacity,
    Resources,
    Reserve,
    TryReserve,
    Confirm,
    Renew,
    Release,
    Cancel,
    Preempt,
    Shrink,
    ReservePreempting,
    NextExpiry,
    Get,
    ExpireDue,
    Snapshot,
    Audit,
}

type Hook = Box<dyn Fn(Operation) + Send + Sync>;

/// Wraps a ledger and runs a hook before each operation reaches it and another after the
/// operation has run, before its answer returns to the caller. A hook that blocks holds that
/// caller there (and only that caller).
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::time::Duration;
/// use rm_model::{DiscardEvents, ReservationLedger, SystemClock};
/// use rm_testkit::ReferenceLedger;
/// use rm_testkit::hooked::{HookedLedger, Operation};
///
/// let tries = Arc::new(AtomicUsize::new(0));
/// let counted = tries.clone();
/// let ledger = HookedLedger::new(ReferenceLedger::new(
///     Arc::new(SystemClock::new()),
///     Arc::new(DiscardEvents),
///     Duration::from_secs(30),
/// ))
/// .after(move |operation| {
///     if operation == Operation::TryReserve {
///         counted.fetch_add(1, Ordering::SeqCst);
///     }
/// });
/// let nothing = ledger.try_reserve(&rm_testkit::cores("a", 1));
/// assert!(nothing.is_ok_and(|granted| granted.is_none()), "nothing is registered");
/// assert_eq!(tries.load(Ordering::SeqCst), 1);
/// ```
pub struct HookedLedger<L> {
    inner: L,
    before: Option<Hook>,
    after: Option<Hook>,
}

impl<L> std::fmt::Debug for HookedLedger<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookedLedger").finish_non_exhaustive()
    }
}

impl<L: ReservationLedger> HookedLedger<L> {
    /// `inner`, without hooks yet.
    pub fn new(inner: L) -> HookedLedger<L> {
        HookedLedger {
            inner,
            before: None,
            after: None,
        }
    }

    /// Runs `hook` before each operation reaches the inner ledger.
    pub fn before(mut self, hook: impl Fn(Operation) + Send + Sync + 'static) -> Self {
        self.before = Some(Box::new(hook));
        self
    }

    /// Runs `hook` after each operation has run on the inner ledger, before its answer
    /// returns.
    pub fn after(mut self, hook: impl Fn(Operation) + Send + Sync + 'static) -> Self {
        self.after = Some(Box::new(hook));
        self
    }

    /// The wrapped ledger.
    pub fn inner(&self) -> &L {
        &self.inner
    }

    fn around<T>(&self, operation: Operation, call: impl FnOnce(&L) -> T) -> T {
        if let Some(hook) = &self.before {
            hook(operation);
        }
        let answer = call(&self.inner);
        if let Some(hook) = &self.after {
            hook(operation);
        }
        answer
    }
}

impl<L: ReservationLedger> ReservationLedger for HookedLedger<L> {
    fn register_resource(&self, resource: Resource) -> Result<(), LedgerError> {
        self.around(Operation::RegisterResource, |l| {
            l.register_resource(resource)
        })
    }
    fn update_resource(&self, resource: Resource) -> Result<(), LedgerError> {
        self.around(Operation::UpdateResource, |l| l.update_resource(resource))
    }
    fn unregister_resource(&self, name: &ResourceName) -> Result<Resource, LedgerError> {
        self.around(Operation::UnregisterResource, |l| {
            l.unregister_resource(name)
        })
    }
    fn set_capacity(
        &self,
        name: &ResourceName,
        resource_type: &ResourceType,
        maximum: Quantity,
    ) -> Result<CapacityUsage, LedgerError> {
        self.around(Operation::SetCapacity, |l| {
            l.set_capacity(name, resource_type, maximum)
        })
    }
    fn resources(&self) -> Result<Vec<Resource>, LedgerError> {
        self.around(Operation::Resources, |l| l.resources())
    }
    fn reserve(&self, request: &ReservationRequest) -> Result<Reservation, LedgerError> {
        self.around(Operation::Reserve, |l| l.reserve(request))
    }
    fn try_reserve(
        &self,
        request: &ReservationRequest,
    ) -> Result<Option<Reservation>, LedgerError> {
        self.around(Operation::TryReserve, |l| l.try_reserve(request))
    }
    fn confirm(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
    ) -> Result<Reservation, LedgerError> {
        self.around(Operation::Confirm, |l| l.confirm(id, fence))
    }
    fn renew(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
        ttl: Duration,
    ) -> Result<Reservation, LedgerError> {
        self.around(Operation::Renew, |l| l.renew(id, fence, ttl))
    }
    fn release(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
    ) -> Result<Reservation, LedgerError> {
        self.around(Operation::Release, |l| l.release(id, fence))
    }
    fn cancel(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
    ) -> Result<Reservation, LedgerError> {
        self.around(Operation::Cancel, |l| l.cancel(id, fence))
    }
    fn preempt(
        &self,
        id: &ReservationId,
        by: Option<&ReservationId>,
    ) -> Result<Reservation, LedgerError> {
        self.around(Operation::Preempt, |l| l.preempt(id, by))
    }
    fn shrink(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
        requirement: usize,
        to: Quantity,
    ) -> Result<Reservation, LedgerError> {
        self.around(Operation::Shrink, |l| l.shrink(id, fence, requirement, to))
    }
    fn reserve_preempting(
        &self,
        request: &ReservationRequest,
        victims: &[ReservationId],
    ) -> Result<Reservation, LedgerError> {
        self.around(Operation::ReservePreempting, |l| {
            l.reserve_preempting(request, victims)
        })
    }
    fn next_expiry(&self) -> Result<Option<Duration>, LedgerError> {
        self.around(Operation::NextExpiry, |l| l.next_expiry())
    }
    fn get(&self, id: &ReservationId) -> Result<Reservation, LedgerError> {
        self.around(Operation::Get, |l| l.get(id))
    }
    fn expire_due(&self) -> Result<Vec<Reservation>, LedgerError> {
        self.around(Operation::ExpireDue, |l| l.expire_due())
    }
    fn snapshot(&self) -> Result<LedgerSnapshot, LedgerError> {
        self.around(Operation::Snapshot, |l| l.snapshot())
    }
    fn audit(&self) -> Result<AuditReport, LedgerError> {
        self.around(Operation::Audit, |l| l.audit())
    }
}
