//! Model-based testing of ledgers: random operation sequences run on a ledger under test and
//! on the [`ReferenceLedger`]; every result must agree and the invariants must hold after
//! every step. Each ledger's tests drive it with proptest:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use proptest::strategy::{Strategy, ValueTree};
//! use proptest::test_runner::TestRunner;
//! use rm_model::ManualClock;
//! use rm_testkit::model::{op, run, with_resources};
//!
//! // In a test, `proptest!` draws the sequences; here one is drawn by hand.
//! let ops = proptest::collection::vec(op(), 1..20)
//!     .new_tree(&mut TestRunner::deterministic())
//!     .expect("a sequence")
//!     .current();
//! let clock = Arc::new(ManualClock::new());
//! let subject = rm_testkit::ReferenceLedger::new(
//!     clock.clone(),
//!     Arc::new(rm_model::DiscardEvents),
//!     Duration::from_secs(10),
//! );
//! run(&subject, &clock, with_resources(ops)).expect("the reference agrees with itself");
//! ```

use std::sync::Arc;
use std::time::Duration;

use crate::ReferenceLedger;
use proptest::prelude::*;
use rm_model::{
    DiscardEvents, LedgerError, ManualClock, Quantity, RequesterId, Reservation, ReservationId,
    ReservationLedger, ReservationRequest, ReservationStrategy, ResourceName, ResourceRequirement,
    ResourceType, Unit,
};

use rm_model::{Resource, ResourceCapacity};

fn host(name: &str, cores: i32, memory_gib: i32) -> Resource {
    Resource::new(
        name,
        ResourceType::Compute,
        ResourceCapacity::of(cores, Unit::CORES).expect("valid"),
    )
    .expect("valid name")
    .with_capacity(
        ResourceType::Memory,
        ResourceCapacity::of(memory_gib, Unit::GIB).expect("valid"),
    )
}

/// One step of a sequence.
#[derive(Clone, Debug)]
#[expect(
    missing_docs,
    reason = "the variants name the ledger operations they run"
)]
pub enum Op {
    Register(u8),
    Reserve {
        id: u8,
        parts: Vec<(bool, u8)>,
        colocate: bool,
        strategy: u8,
        ttl: Option<u8>,
        /// Confirmed on grant (with a TTL too, a malformed request).
        direct: bool,
    },
    Confirm(u8),
    Release(u8),
    Cancel(u8),
    Preempt(u8),
    Renew(u8, u8),
    Shrink(u8, u8),
    SetCapacity(u8, u8),
    Advance(u8),
    Expire,
}

/// Random steps, weighted towards grants, confirmations and releases.
pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0u8..6).prop_map(Op::Register),
        4 => (
            0u8..12,
            prop::collection::vec((any::<bool>(), 1u8..6), 1..4),
            any::<bool>(),
            0u8..4,
            prop::option::of(1u8..20),
            prop::bool::weighted(0.25)
        )
            .prop_map(|(id, parts, colocate, strategy, ttl, direct)| Op::Reserve { id, parts, colocate, strategy, ttl, direct }),
        3 => (0u8..12).prop_map(Op::Confirm),
        3 => (0u8..12).prop_map(Op::Release),
        1 => (0u8..12).prop_map(Op::Cancel),
        1 => (0u8..12).prop_map(Op::Preempt),
        1 => (0u8..12, 1u8..20).prop_map(|(id, ttl)| Op::Renew(id, ttl)),
        1 => (0u8..12, 0u8..8).prop_map(|(id, to)| Op::Shrink(id, to)),
        1 => (0u8..6, 0u8..16).prop_map(|(r, c)| Op::SetCapacity(r, c)),
        2 => (1u8..8).prop_map(Op::Advance),
        1 => Just(Op::Expire),
    ]
}

fn rid(id: u8) -> ReservationId {
    ReservationId::new(&format!("r{id}")).expect("valid id")
}

fn request(
    id: u8,
    parts: &[(bool, u8)],
    colocate: bool,
    strategy: u8,
    ttl: Option<u8>,
    direct: bool,
) -> ReservationRequest {
    let group = rm_model::ColocationGroup::new("g").expect("valid group");
    let requirements = parts
        .iter()
        .map(|&(memory, amount)| {
            let requirement = if memory {
                ResourceRequirement::new(ResourceType::Memory, i32::from(amount) * 2, Unit::GIB)
            } else {
                ResourceRequirement::new(
                    ResourceType::Compute,
                    Quantity::from_milli(i64::from(amount) * 500),
                    Unit::CORES,
                )
            };
            if colocate {
                requirement.colocated(group.clone())
            } else {
                requirement
            }
        })
        .collect();
    let strategy = [
        ReservationStrategy::Greedy,
        ReservationStrategy::Balanced,
        ReservationStrategy::BinPack,
        ReservationStrategy::Aligned,
    ][usize::from(strategy)];
    let mut request = ReservationRequest::new(
        RequesterId::new(&format!("t{}", id % 3)).expect("valid"),
        requirements,
    )
    .with_id(rid(id))
    .with_strategy(strategy)
    .confirm_on_grant(direct);
    if let Some(ttl) = ttl {
        request = request.with_ttl(Duration::from_secs(u64::from(ttl)));
    }
    request
}

/// What must agree between the two ledgers: the outcome without generated detail.
fn outcome(
    result: Result<Option<Reservation>, LedgerError>,
) -> Result<Option<Reservation>, String> {
    result.map_err(|err| match err {
        // Explanations are compared as codes plus the requirements they name.
        LedgerError::InsufficientCapacity { shortfalls, .. } => format!(
            "insufficient-capacity {:?}",
            shortfalls
                .iter()
                .map(|s| (s.requirement, s.matching_resources, s.available))
                .collect::<Vec<_>>()
        ),
        other => other.code().to_owned(),
    })
}

fn node_name(i: u8) -> ResourceName {
    ResourceName::new(&format!("n{i}")).expect("valid name")
}

/// Runs `ops` on `subject` (a fresh ledger on `clock`, with a 10 s default TTL and a
/// retention that outlasts any sequence) and on the reference ledger, comparing every result
/// and the snapshots after every step.
pub fn run(
    subject: &dyn ReservationLedger,
    clock: &Arc<ManualClock>,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let model = ReferenceLedger::new(
        clock.clone(),
        Arc::new(DiscardEvents),
        Duration::from_secs(10),
    );
    for (step, op) in ops.into_iter().enumerate() {
        let (a, b) = match &op {
            Op::Register(i) => {
                let resource = host(
                    &format!("n{i}"),
                    4 + i32::from(*i),
                    8 * (1 + i32::from(*i % 3)),
                );
                let a = subject
                    .register_resource(resource.clone())
                    .map_err(|e| e.code());
                let b = model.register_resource(resource).map_err(|e| e.code());
                prop_assert_eq!(a, b, "step {}: {:?}", step, op);
                continue;
            }
            Op::SetCapacity(i, cores) => {
                let name = node_name(*i);
                let to = Quantity::from(i32::from(*cores));
                let a = subject
                    .set_capacity(&name, &ResourceType::Compute, to)
                    .map_err(|e| e.code());
                let b = model
                    .set_capacity(&name, &ResourceType::Compute, to)
                    .map_err(|e| e.code());
                prop_assert_eq!(a, b, "step {}: {:?}", step, op);
                continue;
            }
            Op::Advance(seconds) => {
                clock.advance(Duration::from_secs(u64::from(*seconds)));
                continue;
            }
            Op::Expire => {
                // Which call observes an expiry may differ (any operation may apply due expiries);
                // the resulting state may not: it is compared below.
                subject
                    .expire_due()
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                model
                    .expire_due()
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                (Ok(None), Ok(None))
            }
            Op::Reserve {
                id,
                parts,
                colocate,
                strategy,
                ttl,
                direct,
            } => {
                let request = request(*id, parts, *colocate, *strategy, *ttl, *direct);
                (
                    subject.reserve(&request).map(Some),
                    model.reserve(&request).map(Some),
                )
            }
            Op::Confirm(id) => (
                subject.confirm(&rid(*id), None).map(Some),
                model.confirm(&rid(*id), None).map(Some),
            ),
            Op::Release(id) => (
                subject.release(&rid(*id), None).map(Some),
                model.release(&rid(*id), None).map(Some),
            ),
            Op::Cancel(id) => (
                subject.cancel(&rid(*id), None).map(Some),
                model.cancel(&rid(*id), None).map(Some),
            ),
            Op::Preempt(id) => (
                subject.preempt(&rid(*id), None).map(Some),
                model.preempt(&rid(*id), None).map(Some),
            ),
            Op::Shrink(id, to) => {
                let to = Quantity::from_milli(i64::from(*to) * 500);
                (
                    subject.shrink(&rid(*id), None, 0, to).map(Some),
                    model.shrink(&rid(*id), None, 0, to).map(Some),
                )
            }
            Op::Renew(id, ttl) => {
                let ttl = Duration::from_secs(u64::from(*ttl));
                (
                    subject.renew(&rid(*id), None, ttl).map(Some),
                    model.renew(&rid(*id), None, ttl).map(Some),
                )
            }
        };
        prop_assert_eq!(outcome(a), outcome(b), "step {}: {:?}", step, op);
        let (sa, sb) = (
            subject
                .snapshot()
                .map_err(|e| TestCaseError::fail(e.to_string()))?,
            model
                .snapshot()
                .map_err(|e| TestCaseError::fail(e.to_string()))?,
        );
        prop_assert_eq!(&sa.usage, &sb.usage, "step {}: usage after {:?}", step, op);
        prop_assert_eq!(
            &sa.active,
            &sb.active,
            "step {}: active after {:?}",
            step,
            op
        );
        let audit = sa.audit();
        prop_assert!(audit.is_clean(), "step {}: {:?}", step, audit.violations);
    }
    Ok(())
}

/// Three resources first, then `ops`: so most sequences exercise grants.
pub fn with_resources(ops: Vec<Op>) -> Vec<Op> {
    let mut all = vec![Op::Register(0), Op::Register(1), Op::Register(2)];
    all.extend(ops);
    all
}
