//! The ledger contract of `rm_model::ReservationLedger` as test cases.
//!
//! Each case is a plain function taking a factory that builds a fresh, empty ledger around a
//! [`LedgerFixture`] (a manual clock, a recording event sink, a default TTL). Run them all
//! with [`ledger_conformance_tests!`](crate::ledger_conformance_tests), which writes one
//! `#[test]` per case, or with [`run_all`].

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rm_model::{
    AffinityKind, AffinityTerm, Constraint, EventKind, FencingToken, LedgerError, Quantity,
    RequesterId, Reservation, ReservationId, ReservationLedger, ReservationRequest,
    ReservationState, ReservationStrategy, Resource, ResourceCapacity, ResourceName,
    ResourceRequirement, ResourceType, Selector, Topology, Unit,
};

use crate::fakes::{FakeClock, RecordingSink};

/// What a factory gets to build a ledger with.
pub struct LedgerFixture {
    /// The clock the ledger must read time from.
    pub clock: Arc<FakeClock>,
    /// The sink the ledger must publish events to.
    pub events: Arc<RecordingSink>,
    /// The TTL of pending holds whose request names none.
    pub default_ttl: Duration,
}

impl LedgerFixture {
    /// A clock at its origin, an empty sink and a 30 s default TTL.
    pub fn new() -> LedgerFixture {
        LedgerFixture {
            clock: Arc::new(FakeClock::new()),
            events: Arc::new(RecordingSink::new()),
            default_ttl: Duration::from_secs(30),
        }
    }
}

impl Default for LedgerFixture {
    fn default() -> LedgerFixture {
        LedgerFixture::new()
    }
}

/// Builds a fresh, empty ledger around a fixture.
pub type MakeLedger<'a> = &'a dyn Fn(&LedgerFixture) -> Box<dyn ReservationLedger>;

// ---------------------------------------------------------------------------------------------
// Helpers.

fn requester(name: &str) -> RequesterId {
    RequesterId::new(name).expect("test requester ids are well-formed")
}

fn rid(name: &str) -> ReservationId {
    ReservationId::new(name).expect("test reservation ids are well-formed")
}

fn rname(name: &str) -> ResourceName {
    ResourceName::new(name).expect("test resource names are well-formed")
}

fn cores(amount: i32) -> ResourceRequirement {
    ResourceRequirement::new(ResourceType::Compute, amount, Unit::CORES)
}

fn gib(amount: i32) -> ResourceRequirement {
    ResourceRequirement::new(ResourceType::Memory, amount, Unit::GIB)
}

fn node(name: &str, cores: i32) -> Resource {
    let capacity = ResourceCapacity::of(cores, Unit::CORES).expect("test capacities are valid");
    Resource::new(name, ResourceType::Compute, capacity)
        .expect("test resource names are well-formed")
}

fn host(name: &str, cores: i32, memory_gib: i32) -> Resource {
    let memory = ResourceCapacity::of(memory_gib, Unit::GIB).expect("test capacities are valid");
    node(name, cores).with_capacity(ResourceType::Memory, memory)
}

fn ask(who: &str, requirements: Vec<ResourceRequirement>) -> ReservationRequest {
    ReservationRequest::new(requester(who), requirements)
}

fn setup(
    make: MakeLedger<'_>,
    resources: Vec<Resource>,
) -> (LedgerFixture, Box<dyn ReservationLedger>) {
    let fixture = LedgerFixture::new();
    let ledger = make(&fixture);
    for resource in resources {
        ledger
            .register_resource(resource)
            .expect("registering a fresh resource succeeds");
    }
    (fixture, ledger)
}

fn free(ledger: &dyn ReservationLedger, name: &str, resource_type: &ResourceType) -> Quantity {
    let snapshot = ledger.snapshot().expect("snapshot succeeds");
    snapshot
        .usage_of(name, resource_type)
        .unwrap_or_else(|| panic!("{name} has no {resource_type} capacity"))
        .free
}

fn free_cores(ledger: &dyn ReservationLedger, name: &str) -> Quantity {
    free(ledger, name, &ResourceType::Compute)
}

#[track_caller]
fn assert_clean(ledger: &dyn ReservationLedger) {
    let report = ledger.audit().expect("audit succeeds");
    assert!(report.is_clean(), "audit found {:#?}", report.violations);
}

fn placed_on(reservation: &Reservation) -> Vec<&str> {
    reservation
        .items
        .iter()
        .map(|i| i.resource.as_str())
        .collect()
}

#[track_caller]
fn expect_err(result: Result<Reservation, LedgerError>, code: &str) -> LedgerError {
    match result {
        Ok(reservation) => panic!("expected {code}, got {reservation:?}"),
        Err(err) => {
            assert_eq!(err.code(), code, "{err}");
            assert!(err.is_definite(), "{err} should be definite");
            err
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Cases.

// The cases, by topic, each file a group of them.
mod events;
mod grants;
mod lifecycle;
mod placement;

pub use events::*;
pub use grants::*;
pub use lifecycle::*;
pub use placement::*;

// ---------------------------------------------------------------------------------------------
// Running the suite.

trait NowPlus {
    fn now_plus(&self, duration: Duration) -> rm_model::Timestamp;
}

impl NowPlus for FakeClock {
    fn now_plus(&self, duration: Duration) -> rm_model::Timestamp {
        rm_model::Clock::now(self) + duration
    }
}

macro_rules! define_cases {
    ($d:tt $($name:ident),* $(,)?) => {
        /// Every case with its name, in the order they are documented.
        pub const CASES: &[(&str, fn(MakeLedger<'_>))] = &[$((stringify!($name), $name)),*];

        /// Writes one `#[test]` per ledger conformance case, for a factory expression of type
        /// `Fn(&LedgerFixture) -> L` where `L: ReservationLedger + 'static`.
        ///
        /// ```
        /// use rm_testkit::conformance::ledger::LedgerFixture;
        /// use rm_testkit::ReferenceLedger;
        ///
        /// mod conformance {
        ///     use super::*;
        ///     rm_testkit::ledger_conformance_tests!(|f: &LedgerFixture| {
        ///         ReferenceLedger::new(f.clock.clone(), f.events.clone(), f.default_ttl)
        ///     });
        /// }
        /// # fn main() {}
        /// ```
        #[macro_export]
        macro_rules! ledger_conformance_tests {
            ($d make:expr) => {
                $(
                    #[test]
                    fn $name() {
                        let make = $d make;
                        $crate::conformance::ledger::$name(&|fixture: &$crate::conformance::ledger::LedgerFixture| {
                            ::std::boxed::Box::new(make(fixture)) as ::std::boxed::Box<dyn $crate::ReservationLedger>
                        });
                    }
                )*
            };
        }
    };
}

define_cases!($
    registers_resources,
    duplicate_registration_changes_nothing,
    reserve_debits_exactly,
    reserve_is_all_or_nothing,
    refusal_explains_each_requirement,
    retries_by_id_are_idempotent,
    retries_that_change_any_field_conflict,
    confirm_and_release,
    holds_confirmed_on_grant,
    pending_holds_expire,
    renew_extends_the_ttl,
    fencing_tokens_grow_and_guard,
    cancel_and_preempt,
    shrinking_drains_without_revoking,
    unknown_ids_and_names,
    invalid_input_names_the_field,
    constraints_filter_resources,
    strategies_choose_as_documented,
    colocated_requirements_share_a_resource,
    units_convert_exactly,
    affinity_rules_place_relative_to_other_holds,
    events_follow_state_changes,
    busy_resources_stay_registered,
    elastic_holds_shrink_to_their_minimum,
    preemption_grants_in_one_step,
    concurrent_use_conserves_capacity,
);

/// Runs every case, each on a fresh ledger, and panics at the end naming every case that
/// failed (so one failure does not hide the others).
pub fn run_all(make: MakeLedger<'_>) {
    let mut failed = Vec::new();
    for (name, case) in CASES {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(make))).is_err() {
            failed.push(*name);
        }
    }
    assert!(
        failed.is_empty(),
        "ledger conformance cases failed: {failed:?}"
    );
}
