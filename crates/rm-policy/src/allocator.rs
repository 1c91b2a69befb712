//! [`ResourceAllocator`]: a ledger and a clock, which policies allocate through; and the
//! scheduling cycle that admits waiting requests in a policy's order.

use std::sync::Arc;

use rm_model::{
    AllocationPolicy, AllocationResult, Clock, Event, EventSink, PendingRequest, RequesterId,
    ReservationLedger, ReservationRequest, ResourceRequirement, SystemClock, Timestamp,
};

/// What policies allocate through: any ledger (the seed's `ResourceAllocator(manager)`) and a
/// clock for aging and decay.
///
/// ```
/// use std::sync::Arc;
/// use rm_model::{ManualClock, RequesterId, ResourceRequirement, ResourceType, Unit};
/// use rm_policy::{PriorityAllocationPolicy, ResourceAllocator};
/// use rm_testkit::ReferenceLedger;
/// # use rm_model::{DiscardEvents, ReservationLedger, Resource, ResourceCapacity};
///
/// let clock = Arc::new(ManualClock::new());
/// let ledger = ReferenceLedger::new(clock.clone(), Arc::new(DiscardEvents), std::time::Duration::from_secs(30));
/// # ledger.register_resource(Resource::new("n", ResourceType::Compute, ResourceCapacity::of(4, Unit::CORES)?)?)?;
/// let allocator = ResourceAllocator::with_clock(Arc::new(ledger), clock);
/// let policy = PriorityAllocationPolicy::new("task-priority");
/// let result = policy.allocate(
///     &allocator,
///     &RequesterId::new("task-1")?,
///     &[ResourceRequirement::new(ResourceType::Compute, 2, Unit::CORES)],
/// );
/// assert!(result.is_successful());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ResourceAllocator {
    ledger: Arc<dyn ReservationLedger>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for ResourceAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceAllocator").finish_non_exhaustive()
    }
}

impl ResourceAllocator {
    /// An allocator over `ledger`, on the system clock.
    pub fn new(ledger: Arc<dyn ReservationLedger>) -> ResourceAllocator {
        ResourceAllocator::with_clock(ledger, Arc::new(SystemClock::new()))
    }

    /// An allocator over `ledger`, reading time from `clock` (the ledger's own clock, so
    /// waiting times and TTLs agree).
    pub fn with_clock(
        ledger: Arc<dyn ReservationLedger>,
        clock: Arc<dyn Clock>,
    ) -> ResourceAllocator {
        ResourceAllocator { ledger, clock }
    }

    /// The ledger.
    pub fn ledger(&self) -> &dyn ReservationLedger {
        &*self.ledger
    }

    /// The clock's reading now.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Admits `request` with `policy` and reserves it.
    pub fn allocate(
        &self,
        policy: &dyn AllocationPolicy,
        request: &ReservationRequest,
    ) -> AllocationResult {
        policy.allocate(&*self.ledger, request, self.now())
    }

    /// One scheduling cycle: tries the waiting requests in `policy`'s order and returns, in
    /// that order, each request's index in `pending` with its result. Requests refused for
    /// lack of capacity stay for the next cycle; the caller decides what to keep waiting.
    pub fn schedule(
        &self,
        policy: &dyn AllocationPolicy,
        pending: &[PendingRequest],
    ) -> Vec<(usize, AllocationResult)> {
        let now = self.now();
        policy
            .order(pending, now)
            .into_iter()
            .map(|i| (i, policy.allocate(&*self.ledger, &pending[i].request, now)))
            .collect()
    }
}

/// The seed's `policy.allocate(allocator, requester_id, requirements)`: a request by
/// `requester` with the policy's defaults, admitted and reserved.
pub(crate) fn allocate_seed(
    policy: &dyn AllocationPolicy,
    allocator: &ResourceAllocator,
    requester: &RequesterId,
    requirements: &[ResourceRequirement],
) -> AllocationResult {
    allocator.allocate(
        policy,
        &ReservationRequest::new(requester.clone(), requirements.to_vec()),
    )
}

/// Feeds ledger events to a policy: register it as the ledger's event sink (or a subscriber's
/// consumer), so usage-tracking policies see grants, releases and expiries.
pub struct PolicyObserver(pub Arc<dyn AllocationPolicy>);

impl std::fmt::Debug for PolicyObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PolicyObserver")
            .field(&self.0.name())
            .finish()
    }
}

impl EventSink for PolicyObserver {
    fn publish(&self, event: &Event) {
        self.0.observe(event);
    }
}
