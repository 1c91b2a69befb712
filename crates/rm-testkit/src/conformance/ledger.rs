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

/// Registered resources show in `resources()` and the snapshot with all capacity free.
pub fn registers_resources(make: MakeLedger<'_>) {
    let (_, ledger) = setup(make, vec![node("a", 8), host("b", 16, 64)]);
    let names: Vec<_> = ledger
        .resources()
        .unwrap()
        .iter()
        .map(|r| r.name().to_string())
        .collect();
    assert_eq!(names, ["a", "b"], "registration order");
    assert_eq!(free_cores(&*ledger, "a"), 8.into());
    assert_eq!(free(&*ledger, "b", &ResourceType::Memory), 64.into());
    let snapshot = ledger.snapshot().unwrap();
    assert_eq!(snapshot.usage.len(), 3);
    assert!(snapshot.active.is_empty());
    assert_clean(&*ledger);
}

/// A duplicate name is refused and changes nothing.
pub fn duplicate_registration_changes_nothing(make: MakeLedger<'_>) {
    let (_, ledger) = setup(make, vec![node("a", 8)]);
    let before = ledger.snapshot().unwrap();
    let err = ledger.register_resource(node("a", 99)).unwrap_err();
    assert_eq!(err.code(), "duplicate-resource", "{err}");
    let after = ledger.snapshot().unwrap();
    assert_eq!(before.usage, after.usage);
    assert_eq!(before.resources, after.resources);
}

/// A grant debits exactly what was asked, starts pending and keeps the audit clean.
pub fn reserve_debits_exactly(make: MakeLedger<'_>) {
    let (fixture, ledger) = setup(make, vec![node("a", 8)]);
    let reservation = ledger.reserve(&ask("t1", vec![cores(3)])).unwrap();
    assert_eq!(reservation.state, ReservationState::Pending);
    assert_eq!(reservation.requester, requester("t1"));
    assert_eq!(placed_on(&reservation), ["a"]);
    assert_eq!(reservation.items[0].amount, 3.into());
    assert_eq!(reservation.items[0].requirement, 0);
    assert_eq!(
        reservation.expires_at,
        Some(fixture.clock.now_plus(fixture.default_ttl))
    );
    assert_eq!(free_cores(&*ledger, "a"), 5.into());
    let usage = ledger.snapshot().unwrap();
    let usage = usage.usage_of("a", &ResourceType::Compute).unwrap();
    assert_eq!((usage.pending, usage.confirmed), (3.into(), Quantity::ZERO));
    assert_clean(&*ledger);
}

/// A request whose second requirement does not fit grants nothing at all.
pub fn reserve_is_all_or_nothing(make: MakeLedger<'_>) {
    let (_, ledger) = setup(make, vec![node("a", 8), node("b", 4)]);
    let before = ledger.snapshot().unwrap().usage;
    expect_err(
        ledger.reserve(&ask("t1", vec![cores(6), cores(6)])),
        "insufficient-capacity",
    );
    assert_eq!(
        ledger.snapshot().unwrap().usage,
        before,
        "nothing may stay held"
    );
    assert!(ledger.snapshot().unwrap().active.is_empty());
    // Both fit when asked for what there is.
    let both = ledger
        .reserve(&ask("t1", vec![cores(6), cores(4)]))
        .unwrap();
    assert_eq!(both.items.len(), 2);
    assert_clean(&*ledger);
}

/// The refusal explains each requirement: matches, best candidate, availability, shortfall.
pub fn refusal_explains_each_requirement(make: MakeLedger<'_>) {
    let labelled = node("b", 4)
        .with_label("zone", "x")
        .expect("label is well-formed");
    let (_, ledger) = setup(make, vec![node("a", 8), labelled]);
    ledger
        .reserve(&ask("hog", vec![cores(5)]).with_strategy(ReservationStrategy::Greedy))
        .unwrap();
    let request = ask(
        "t1",
        vec![
            cores(1),
            cores(6),
            gib(1),
            cores(1).with_constraint(Constraint::label("zone").expect("key").eq("nowhere")),
        ],
    );
    let err = expect_err(ledger.reserve(&request), "insufficient-capacity");
    let LedgerError::InsufficientCapacity {
        shortfalls,
        requester: who,
    } = err
    else {
        unreachable!("checked by expect_err");
    };
    assert_eq!(who, requester("t1"));
    let indices: Vec<_> = shortfalls.iter().map(|s| s.requirement).collect();
    assert_eq!(
        indices,
        [1, 2, 3],
        "only requirements that cannot be placed: {shortfalls:#?}"
    );
    let six = &shortfalls[0];
    assert_eq!(six.matching_resources, 2);
    assert_eq!(six.best_candidate.as_ref().map(|n| n.as_str()), Some("b"));
    assert_eq!(
        (six.requested, six.available, six.short_by),
        (6.into(), 4.into(), 2.into())
    );
    let memory = &shortfalls[1];
    assert_eq!(
        (memory.matching_resources, memory.best_candidate.clone()),
        (0, None)
    );
    assert!(
        memory
            .detail
            .contains("no registered resource offers memory"),
        "{}",
        memory.detail
    );
    let constrained = &shortfalls[2];
    assert_eq!(constrained.matching_resources, 0);
    assert_eq!(constrained.short_by, 1.into());
}

/// Every request that differs from `request` in exactly one field that changes what is granted
/// (requester, priority, strategy, TTL, labels, preemptibility, co-location label, and per
/// requirement its type, unit, amount, constraints, preferences, affinity, co-location group
/// and minimum), each named by that field. A ledger must answer each of them, sent under the
/// id `request` used, with an id conflict.
pub fn single_field_changes(request: &ReservationRequest) -> Vec<(String, ReservationRequest)> {
    let mut changes: Vec<(String, ReservationRequest)> = Vec::new();
    let mut change = |field: &str, edit: &dyn Fn(&mut ReservationRequest)| {
        let mut changed = request.clone();
        edit(&mut changed);
        changes.push((field.to_owned(), changed));
    };
    change("requester", &|r| {
        r.requester = requester(&format!("{}-other", r.requester));
    });
    change("priority", &|r| r.priority.0 = r.priority.0.wrapping_add(1));
    change("strategy", &|r| {
        r.strategy = if r.strategy == ReservationStrategy::Greedy {
            ReservationStrategy::BinPack
        } else {
            ReservationStrategy::Greedy
        };
    });
    change("ttl", &|r| {
        r.ttl = match r.ttl {
            Some(ttl) => Some(ttl + Duration::from_millis(1)),
            None => Some(Duration::from_secs(1)),
        };
    });
    change("labels", &|r| {
        let mut labels = r.labels.clone();
        let value = if labels.get("changed") == Some("yes") {
            "no"
        } else {
            "yes"
        };
        labels.insert("changed", value).expect("a valid label");
        r.labels = labels;
    });
    change("preemptible", &|r| r.preemptible = !r.preemptible);
    change("colocate_by", &|r| {
        r.colocate_by = match &r.colocate_by {
            Some(_) => None,
            None => Some(rm_model::LabelKey::new("zone").expect("a valid label key")),
        };
    });
    for i in 0..request.requirements.len() {
        let field = |name: &str| format!("requirements[{i}].{name}");
        let edit = |r: &mut ReservationRequest,
                    f: &dyn Fn(ResourceRequirement) -> ResourceRequirement| {
            r.requirements[i] = f(r.requirements[i].clone());
        };
        change(&field("type"), &|r| {
            edit(r, &|q| {
                let other = if *q.resource_type() == ResourceType::Gpu {
                    ResourceType::Compute
                } else {
                    ResourceType::Gpu
                };
                ResourceRequirement::new(other, q.amount(), Unit::DEVICES)
            });
        });
        change(&field("unit"), &|r| {
            edit(r, &|q| {
                let unit = if *q.unit() == Unit::MILLICORES {
                    Unit::CORES
                } else {
                    Unit::MILLICORES
                };
                ResourceRequirement::new(q.resource_type().clone(), q.amount(), unit)
            });
        });
        change(&field("amount"), &|r| {
            edit(r, &|q| {
                let more = q
                    .amount()
                    .checked_add(Quantity::from(1))
                    .unwrap_or(Quantity::ZERO);
                q.with_amount(more)
            });
        });
        change(&field("constraints"), &|r| {
            edit(r, &|q| {
                q.with_constraint(Constraint::label("changed").expect("a valid key").exists())
            });
        });
        change(&field("preferences"), &|r| {
            edit(r, &|q| {
                q.with_preference(
                    7,
                    Constraint::label("changed").expect("a valid key").exists(),
                )
            });
        });
        change(&field("affinity"), &|r| {
            edit(r, &|q| {
                q.with_affinity(AffinityTerm::preferred(
                    AffinityKind::AntiAffinity,
                    Selector::requester(requester("changed")),
                    Topology::Resource,
                    3,
                ))
            });
        });
        change(&field("colocate"), &|r| {
            edit(r, &|q| {
                let group = if q.colocation().is_some_and(|g| g.as_str() == "changed") {
                    "other"
                } else {
                    "changed"
                };
                q.colocated(rm_model::ColocationGroup::new(group).expect("a valid group"))
            });
        });
        change(&field("minimum"), &|r| {
            edit(r, &|q| {
                let minimum = match q.minimum() {
                    Some(m) if m.is_positive() => Quantity::ZERO,
                    _ => Quantity::from_milli(1),
                };
                q.elastic(minimum)
            });
        });
    }
    changes
}

/// A retry under a used id that differs in any one field that changes what is granted is an
/// id conflict, and leaves the first reservation as it was.
pub fn retries_that_change_any_field_conflict(make: MakeLedger<'_>) {
    let (_, ledger) = setup(make, vec![host("a", 8, 16), host("b", 8, 16)]);
    let request = ask("t1", vec![cores(2), gib(1)])
        .with_id(rid("job-1"))
        .with_ttl(Duration::from_secs(5));
    let first = ledger.reserve(&request).unwrap();
    let before = ledger.snapshot().unwrap().usage;
    for (field, changed) in single_field_changes(&request) {
        assert!(
            !changed.same_request_as(&request),
            "changing {field} makes another request"
        );
        let answer = ledger.reserve(&changed);
        assert!(
            matches!(answer, Err(LedgerError::IdConflict { .. })),
            "changing {field}: expected an id conflict, got {answer:?}"
        );
    }
    assert_eq!(ledger.snapshot().unwrap().usage, before, "nothing changed");
    assert_eq!(ledger.reserve(&request).unwrap(), first);
    assert_clean(&*ledger);
}

/// Retrying with the same id and request returns the same reservation; a different request
/// under a used id is a conflict.
pub fn retries_by_id_are_idempotent(make: MakeLedger<'_>) {
    let (_, ledger) = setup(make, vec![node("a", 8)]);
    let request = ask("t1", vec![cores(2)]).with_id(rid("job-1"));
    let first = ledger.reserve(&request).unwrap();
    let again = ledger.reserve(&request).unwrap();
    assert_eq!(first.id, rid("job-1"));
    assert_eq!(again, first, "a retry returns the same reservation");
    assert_eq!(free_cores(&*ledger, "a"), 6.into(), "debited once");
    expect_err(
        ledger.reserve(&ask("t1", vec![cores(3)]).with_id(rid("job-1"))),
        "id-conflict",
    );
    expect_err(
        ledger.reserve(&ask("t2", vec![cores(2)]).with_id(rid("job-1"))),
        "id-conflict",
    );
    ledger.confirm(&first.id, None).unwrap();
    ledger.release(&first.id, None).unwrap();
    let late = ledger.reserve(&request).unwrap();
    assert_eq!(
        late.state,
        ReservationState::Released,
        "a late retry sees the current state"
    );
    assert_eq!(
        free_cores(&*ledger, "a"),
        8.into(),
        "and grants nothing again"
    );
    assert_clean(&*ledger);
}

/// Confirm, then release; repeating either changes nothing; release of a pending hold is
/// refused.
pub fn confirm_and_release(make: MakeLedger<'_>) {
    let (fixture, ledger) = setup(make, vec![node("a", 8)]);
    let pending = ledger.reserve(&ask("t1", vec![cores(2)])).unwrap();
    expect_err(ledger.release(&pending.id, None), "invalid-state");
    let confirmed = ledger.confirm(&pending.id, None).unwrap();
    assert_eq!(confirmed.state, ReservationState::Confirmed);
    assert_eq!(
        confirmed.expires_at, None,
        "a confirmed hold does not expire"
    );
    assert_eq!(
        ledger.confirm(&pending.id, None).unwrap().state,
        ReservationState::Confirmed
    );
    fixture.clock.advance(fixture.default_ttl * 2);
    assert_eq!(
        ledger.get(&pending.id).unwrap().state,
        ReservationState::Confirmed
    );
    let usage = ledger.snapshot().unwrap();
    let usage = usage.usage_of("a", &ResourceType::Compute).unwrap();
    assert_eq!((usage.pending, usage.confirmed), (Quantity::ZERO, 2.into()));
    assert_eq!(
        ledger.release(&pending.id, None).unwrap().state,
        ReservationState::Released
    );
    assert_eq!(
        ledger.release(&pending.id, None).unwrap().state,
        ReservationState::Released
    );
    assert_eq!(free_cores(&*ledger, "a"), 8.into(), "credited once");
    expect_err(ledger.confirm(&pending.id, None), "invalid-state");
    assert_clean(&*ledger);
}

/// A pending hold expires after its TTL by the ledger's clock; its capacity comes back once,
/// and confirm, renew and release then fail with `expired`.
pub fn pending_holds_expire(make: MakeLedger<'_>) {
    let (fixture, ledger) = setup(make, vec![node("a", 8)]);
    let short = ledger
        .reserve(&ask("t1", vec![cores(3)]).with_ttl(Duration::from_secs(5)))
        .unwrap();
    let default = ledger.reserve(&ask("t2", vec![cores(4)])).unwrap();
    fixture.clock.advance(Duration::from_secs(4));
    assert_eq!(
        ledger.get(&short.id).unwrap().state,
        ReservationState::Pending
    );
    fixture.clock.advance(Duration::from_secs(1));
    assert_eq!(
        ledger.get(&short.id).unwrap().state,
        ReservationState::Expired
    );
    assert_eq!(free_cores(&*ledger, "a"), 4.into());
    expect_err(ledger.confirm(&short.id, None), "expired");
    expect_err(
        ledger.renew(&short.id, None, Duration::from_secs(5)),
        "expired",
    );
    expect_err(ledger.release(&short.id, None), "expired");
    expect_err(ledger.cancel(&short.id, None), "expired");
    assert_eq!(free_cores(&*ledger, "a"), 4.into(), "never credited twice");
    // The capacity it held is grantable again.
    ledger.reserve(&ask("t3", vec![cores(4)])).unwrap();
    fixture.clock.advance(fixture.default_ttl);
    let swept: Vec<_> = ledger
        .expire_due()
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert!(
        swept.len() <= 2 && !swept.contains(&short.id),
        "expired once: {swept:?}"
    );
    assert_eq!(
        ledger.get(&default.id).unwrap().state,
        ReservationState::Expired
    );
    assert!(ledger.expire_due().unwrap().is_empty());
    assert_eq!(free_cores(&*ledger, "a"), 8.into());
    let ended: Vec<_> = fixture
        .events
        .kinds()
        .into_iter()
        .filter(|k| {
            matches!(
                k,
                EventKind::Ended {
                    reason: ReservationState::Expired,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(ended.len(), 3, "one expiry event per hold");
    assert_clean(&*ledger);
}

/// Renewing a pending hold moves its expiry to `ttl` from now.
pub fn renew_extends_the_ttl(make: MakeLedger<'_>) {
    let (fixture, ledger) = setup(make, vec![node("a", 8)]);
    let hold = ledger
        .reserve(&ask("t1", vec![cores(1)]).with_ttl(Duration::from_secs(10)))
        .unwrap();
    fixture.clock.advance(Duration::from_secs(8));
    let renewed = ledger
        .renew(&hold.id, None, Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        renewed.expires_at,
        Some(fixture.clock.now_plus(Duration::from_secs(10)))
    );
    fixture.clock.advance(Duration::from_secs(8));
    assert_eq!(
        ledger.get(&hold.id).unwrap().state,
        ReservationState::Pending
    );
    expect_err(
        ledger.renew(&hold.id, None, Duration::ZERO),
        "invalid-input",
    );
    fixture.clock.advance(Duration::from_secs(2));
    assert_eq!(
        ledger.get(&hold.id).unwrap().state,
        ReservationState::Expired
    );
    assert_clean(&*ledger);
}

/// Fencing tokens grow with every grant; an operation with another grant's token fails and
/// changes nothing.
pub fn fencing_tokens_grow_and_guard(make: MakeLedger<'_>) {
    let (_, ledger) = setup(make, vec![node("a", 8)]);
    let mut last = FencingToken(0);
    let mut holds = Vec::new();
    for i in 0..5 {
        let hold = ledger
            .reserve(&ask(&format!("t{i}"), vec![cores(1)]))
            .unwrap();
        assert!(
            hold.fencing_token > last,
            "{} after {last}",
            hold.fencing_token
        );
        last = hold.fencing_token;
        holds.push(hold);
    }
    assert_eq!(ledger.snapshot().unwrap().last_fencing_token, last);
    let (first, second) = (&holds[0], &holds[1]);
    expect_err(
        ledger.confirm(&first.id, Some(second.fencing_token)),
        "stale-fencing-token",
    );
    assert_eq!(
        ledger.get(&first.id).unwrap().state,
        ReservationState::Pending
    );
    ledger
        .confirm(&first.id, Some(first.fencing_token))
        .unwrap();
    expect_err(
        ledger.release(&first.id, Some(second.fencing_token)),
        "stale-fencing-token",
    );
    ledger
        .release(&first.id, Some(first.fencing_token))
        .unwrap();
    assert_clean(&*ledger);
}

/// Cancel ends a pending hold; preempt ends a pending or confirmed one; both credit once.
pub fn cancel_and_preempt(make: MakeLedger<'_>) {
    let (fixture, ledger) = setup(make, vec![node("a", 8)]);
    let pending = ledger.reserve(&ask("t1", vec![cores(2)])).unwrap();
    let confirmed = ledger.reserve(&ask("t2", vec![cores(3)])).unwrap();
    ledger.confirm(&confirmed.id, None).unwrap();
    expect_err(ledger.cancel(&confirmed.id, None), "invalid-state");
    assert_eq!(
        ledger.cancel(&pending.id, None).unwrap().state,
        ReservationState::Cancelled
    );
    assert_eq!(
        ledger.cancel(&pending.id, None).unwrap().state,
        ReservationState::Cancelled
    );
    let winner = rid("urgent");
    assert_eq!(
        ledger.preempt(&confirmed.id, Some(&winner)).unwrap().state,
        ReservationState::Preempted
    );
    assert_eq!(
        ledger.preempt(&confirmed.id, Some(&winner)).unwrap().state,
        ReservationState::Preempted
    );
    expect_err(ledger.release(&confirmed.id, None), "invalid-state");
    expect_err(ledger.preempt(&pending.id, None), "invalid-state");
    assert_eq!(free_cores(&*ledger, "a"), 8.into());
    let preempted_by: Vec<_> = fixture
        .events
        .kinds()
        .into_iter()
        .filter_map(|k| match k {
            EventKind::Ended {
                reason: ReservationState::Preempted,
                preempted_by,
                ..
            } => Some(preempted_by),
            _ => None,
        })
        .collect();
    assert_eq!(
        preempted_by,
        [Some(winner)],
        "one preemption event naming the winner"
    );
    assert_clean(&*ledger);
}

/// Shrinking below what is held drains: holds stay, new grants wait until enough is released.
pub fn shrinking_drains_without_revoking(make: MakeLedger<'_>) {
    let (_, ledger) = setup(make, vec![node("a", 8)]);
    let big = ledger.reserve(&ask("t1", vec![cores(6)])).unwrap();
    ledger.confirm(&big.id, None).unwrap();
    let usage = ledger
        .set_capacity(&rname("a"), &ResourceType::Compute, 4.into())
        .unwrap();
    assert!(usage.draining);
    assert_eq!(
        (usage.capacity, usage.free, usage.confirmed),
        (4.into(), Quantity::ZERO, 6.into())
    );
    assert_eq!(
        ledger.get(&big.id).unwrap().state,
        ReservationState::Confirmed,
        "never revoked"
    );
    assert_clean(&*ledger);
    expect_err(
        ledger.reserve(&ask("t2", vec![cores(1)])),
        "insufficient-capacity",
    );
    ledger.release(&big.id, None).unwrap();
    let usage = ledger.snapshot().unwrap();
    let usage = usage.usage_of("a", &ResourceType::Compute).unwrap();
    assert!(!usage.draining);
    assert_eq!(usage.free, 4.into());
    ledger.reserve(&ask("t2", vec![cores(4)])).unwrap();
    expect_err(
        ledger.reserve(&ask("t3", vec![cores(1)])),
        "insufficient-capacity",
    );
    assert!(
        ledger
            .set_capacity(&rname("a"), &ResourceType::Compute, Quantity::from(-1))
            .is_err()
    );
    assert_eq!(
        ledger
            .set_capacity(&rname("a"), &ResourceType::Memory, 1.into())
            .unwrap_err()
            .code(),
        "unknown-resource"
    );
    assert_clean(&*ledger);
}

/// Unknown ids and names are definite errors.
pub fn unknown_ids_and_names(make: MakeLedger<'_>) {
    let (_, ledger) = setup(make, vec![node("a", 8)]);
    let ghost = rid("ghost");
    expect_err(ledger.get(&ghost), "unknown-reservation");
    expect_err(ledger.confirm(&ghost, None), "unknown-reservation");
    expect_err(
        ledger.renew(&ghost, None, Duration::from_secs(1)),
        "unknown-reservation",
    );
    expect_err(ledger.release(&ghost, None), "unknown-reservation");
    expect_err(ledger.cancel(&ghost, None), "unknown-reservation");
    expect_err(ledger.preempt(&ghost, None), "unknown-reservation");
    assert_eq!(
        ledger
            .unregister_resource(&rname("nope"))
            .unwrap_err()
            .code(),
        "unknown-resource"
    );
    assert_eq!(
        ledger.update_resource(node("nope", 1)).unwrap_err().code(),
        "unknown-resource"
    );
    assert_eq!(
        ledger
            .set_capacity(&rname("nope"), &ResourceType::Compute, 1.into())
            .unwrap_err()
            .code(),
        "unknown-resource"
    );
}

/// Malformed requests are refused with the offending field named, changing nothing.
pub fn invalid_input_names_the_field(make: MakeLedger<'_>) {
    let (_, ledger) = setup(make, vec![node("a", 8)]);
    let before = ledger.snapshot().unwrap().usage;
    let cases = [
        (ask("t", vec![]), "requirements"),
        (ask("t", vec![cores(0)]), "requirements[0].amount"),
        (
            ask("t", vec![cores(1), cores(-1)]),
            "requirements[1].amount",
        ),
        (
            ask(
                "t",
                vec![ResourceRequirement::new(
                    ResourceType::Compute,
                    1,
                    Unit::BYTES,
                )],
            ),
            "requirements[0].unit",
        ),
        (ask("t", vec![cores(1)]).with_ttl(Duration::ZERO), "ttl"),
    ];
    for (request, field) in cases {
        let err = expect_err(ledger.reserve(&request), "invalid-input");
        let LedgerError::InvalidInput { field: named, .. } = &err else {
            unreachable!("checked by expect_err");
        };
        assert_eq!(named, field, "{err}");
    }
    assert_eq!(ledger.snapshot().unwrap().usage, before);
    assert_eq!(
        ledger.snapshot().unwrap().last_fencing_token,
        FencingToken(0)
    );
}

/// Hard constraints decide where a requirement may land.
pub fn constraints_filter_resources(make: MakeLedger<'_>) {
    let arm = node("arm", 8).with_label("arch", "arm64").expect("label");
    let x86 = node("x86", 8).with_label("arch", "x86_64").expect("label");
    let (_, ledger) = setup(make, vec![arm, x86]);
    let wants_x86 = cores(2).with_constraint(Constraint::label("arch").expect("key").eq("x86_64"));
    let hold = ledger
        .reserve(&ask("t1", vec![wants_x86.clone()]).with_strategy(ReservationStrategy::Greedy))
        .unwrap();
    assert_eq!(placed_on(&hold), ["x86"]);
    let too_big = cores(7).with_constraint(Constraint::label("arch").expect("key").eq("x86_64"));
    expect_err(
        ledger.reserve(&ask("t2", vec![too_big])),
        "insufficient-capacity",
    );
    assert_clean(&*ledger);
}

/// Greedy takes the first that fits, balanced the least allocated, bin-pack the most
/// allocated that still fits; with one dimension, aligned takes the first that fits.
pub fn strategies_choose_as_documented(make: MakeLedger<'_>) {
    for (strategy, expected) in [
        (ReservationStrategy::Greedy, "a"),
        (ReservationStrategy::Balanced, "c"),
        (ReservationStrategy::BinPack, "b"),
        (ReservationStrategy::Aligned, "a"),
    ] {
        let (_, ledger) = setup(make, vec![node("a", 10), node("b", 10), node("c", 10)]);
        // Load: a has 6 free, b has 3 free, c has 10 free.
        for (who, amount) in [("load-a", 4), ("load-b", 7)] {
            ledger
                .reserve(&ask(who, vec![cores(amount)]).with_strategy(ReservationStrategy::Greedy))
                .unwrap();
        }
        assert_eq!(free_cores(&*ledger, "a"), 6.into());
        assert_eq!(free_cores(&*ledger, "b"), 3.into());
        let hold = ledger
            .reserve(&ask("t", vec![cores(3)]).with_strategy(strategy))
            .unwrap();
        assert_eq!(placed_on(&hold), [expected], "{strategy:?}");
        assert_clean(&*ledger);
    }
}

/// Requirements of one co-location group land on one resource.
pub fn colocated_requirements_share_a_resource(make: MakeLedger<'_>) {
    let (_, ledger) = setup(
        make,
        vec![
            host("small", 8, 8),
            host("wide", 4, 64),
            host("big", 16, 64),
        ],
    );
    let group = rm_model::ColocationGroup::new("task").expect("group name");
    let request = ask(
        "t",
        vec![
            cores(6).colocated(group.clone()),
            gib(32).colocated(group.clone()),
        ],
    )
    .with_strategy(ReservationStrategy::Greedy);
    let hold = ledger.reserve(&request).unwrap();
    assert_eq!(placed_on(&hold), ["big", "big"]);
    // The same sizes without co-location may split.
    let split = ask("t2", vec![cores(6), gib(24)]).with_strategy(ReservationStrategy::Greedy);
    let hold = ledger.reserve(&split).unwrap();
    assert_eq!(placed_on(&hold), ["small", "wide"]);
    // Now big has 10 cores and 32 GiB free, wide 4 cores and 40 GiB: each part fits
    // somewhere, but no resource holds both at once.
    let again = ask(
        "t3",
        vec![cores(5).colocated(group.clone()), gib(36).colocated(group)],
    );
    let err = expect_err(ledger.reserve(&again), "insufficient-capacity");
    assert!(err.to_string().contains("co-located"), "{err}");
    assert_clean(&*ledger);
}

/// Amounts in a convertible unit are converted exactly; inexact ones are not granted.
pub fn units_convert_exactly(make: MakeLedger<'_>) {
    let (_, ledger) = setup(make, vec![host("h", 4, 8)]);
    let milli = ResourceRequirement::new(ResourceType::Compute, 1500, Unit::MILLICORES);
    let mib = ResourceRequirement::new(ResourceType::Memory, 512, Unit::MIB);
    let hold = ledger.reserve(&ask("t", vec![milli, mib])).unwrap();
    assert_eq!(hold.items[0].amount, Quantity::from_milli(1500));
    assert_eq!(hold.items[0].unit, Unit::CORES);
    assert_eq!(hold.items[1].amount, Quantity::from_milli(500));
    assert_eq!(hold.items[1].unit, Unit::GIB);
    assert_eq!(
        free(&*ledger, "h", &ResourceType::Memory),
        Quantity::from_milli(7500)
    );
    let one_byte = ResourceRequirement::new(ResourceType::Memory, 1, Unit::BYTES);
    expect_err(
        ledger.reserve(&ask("t", vec![one_byte])),
        "insufficient-capacity",
    );
    assert_clean(&*ledger);
}

/// Required anti-affinity keeps a requester's holds apart; required affinity keeps them
/// together.
pub fn affinity_rules_place_relative_to_other_holds(make: MakeLedger<'_>) {
    let (_, ledger) = setup(make, vec![node("a", 8), node("b", 8), node("c", 8)]);
    let web = Selector::requester(requester("web"));
    let apart = AffinityTerm::required(AffinityKind::AntiAffinity, web.clone(), Topology::Resource);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let hold = ledger
            .reserve(
                &ask("web", vec![cores(1).with_affinity(apart.clone())])
                    .with_strategy(ReservationStrategy::Greedy),
            )
            .unwrap();
        seen.extend(placed_on(&hold).into_iter().map(str::to_owned));
    }
    assert_eq!(seen, ["a", "b", "c"]);
    expect_err(
        ledger.reserve(&ask("web", vec![cores(1).with_affinity(apart)])),
        "insufficient-capacity",
    );
    let near = AffinityTerm::required(
        AffinityKind::Affinity,
        Selector::requester(requester("db")),
        Topology::Resource,
    );
    let db = ledger
        .reserve(&ask("db", vec![cores(1)]).with_strategy(ReservationStrategy::BinPack))
        .unwrap();
    let cache = ledger
        .reserve(
            &ask("cache", vec![cores(1).with_affinity(near)])
                .with_strategy(ReservationStrategy::Balanced),
        )
        .unwrap();
    assert_eq!(placed_on(&cache), placed_on(&db));
    assert_clean(&*ledger);
}

/// Elastic holds shrink toward their minimum and give the difference back; never below the
/// minimum, above the current amount, or for a requirement that is not elastic.
pub fn elastic_holds_shrink_to_their_minimum(make: MakeLedger<'_>) {
    let (fixture, ledger) = setup(make, vec![node("a", 8)]);
    let hold = ledger
        .reserve(&ask("t", vec![cores(6).elastic(2), cores(1)]))
        .unwrap();
    assert_eq!(hold.items[0].minimum, Some(2.into()));
    assert_eq!(hold.items[1].minimum, None);
    assert_eq!(free_cores(&*ledger, "a"), 1.into());
    ledger.confirm(&hold.id, None).unwrap();
    let shrunk = ledger
        .shrink(&hold.id, Some(hold.fencing_token), 0, 3.into())
        .unwrap();
    assert_eq!(shrunk.items[0].amount, 3.into());
    assert_eq!(free_cores(&*ledger, "a"), 4.into());
    assert_clean(&*ledger);
    expect_err(ledger.shrink(&hold.id, None, 0, 1.into()), "invalid-input");
    expect_err(ledger.shrink(&hold.id, None, 0, 4.into()), "invalid-input");
    expect_err(
        ledger.shrink(&hold.id, None, 1, Quantity::from_milli(500)),
        "invalid-input",
    );
    expect_err(ledger.shrink(&hold.id, None, 7, 1.into()), "invalid-input");
    assert_eq!(
        ledger.shrink(&hold.id, None, 0, 3.into()).unwrap(),
        ledger.get(&hold.id).unwrap()
    );
    assert!(fixture.events.names().contains(&"shrunk".to_owned()));
    ledger.release(&hold.id, None).unwrap();
    assert_eq!(
        free_cores(&*ledger, "a"),
        8.into(),
        "the release gives back what is left"
    );
    expect_err(ledger.shrink(&hold.id, None, 0, 2.into()), "invalid-state");
    expect_err(
        ledger.reserve(&ask("t", vec![cores(2).elastic(3)])),
        "invalid-input",
    );
    assert_clean(&*ledger);
}

/// Preempting for a request is one step: the victims end and the request is granted, or
/// (when it would not fit even so, or a victim does not hold capacity) nothing changes.
pub fn preemption_grants_in_one_step(make: MakeLedger<'_>) {
    let (fixture, ledger) = setup(make, vec![node("a", 4)]);
    let first = ledger.reserve(&ask("v1", vec![cores(2)])).unwrap();
    let second = ledger.reserve(&ask("v2", vec![cores(2)])).unwrap();
    ledger.confirm(&second.id, None).unwrap();
    let victims = [first.id.clone(), second.id.clone()];
    let before = ledger.snapshot().unwrap();
    // Too big even with both victims: nothing changes.
    expect_err(
        ledger.reserve_preempting(&ask("big", vec![cores(5)]), &victims),
        "insufficient-capacity",
    );
    expect_err(
        ledger.reserve_preempting(&ask("x", vec![cores(1)]), &[rid("ghost")]),
        "unknown-reservation",
    );
    let after = ledger.snapshot().unwrap();
    assert_eq!((after.usage, after.active), (before.usage, before.active));
    // Enough: both end as preempted by the request, which holds what it asked.
    let urgent = ask("urgent", vec![cores(3)]).with_id(rid("urgent-1"));
    let granted = ledger.reserve_preempting(&urgent, &victims).unwrap();
    assert_eq!(granted.id, rid("urgent-1"));
    assert_eq!(granted.items[0].amount, 3.into());
    for victim in &victims {
        assert_eq!(
            ledger.get(victim).unwrap().state,
            ReservationState::Preempted
        );
    }
    assert_eq!(free_cores(&*ledger, "a"), 1.into());
    let preempted_by: Vec<_> = fixture
        .events
        .kinds()
        .into_iter()
        .filter_map(|k| match k {
            EventKind::Ended {
                reason: ReservationState::Preempted,
                preempted_by,
                ..
            } => preempted_by,
            _ => None,
        })
        .collect();
    assert_eq!(preempted_by, [rid("urgent-1"), rid("urgent-1")]);
    // Ended victims cannot be preempted again.
    expect_err(
        ledger.reserve_preempting(&ask("y", vec![cores(1)]), &victims),
        "invalid-state",
    );
    assert_clean(&*ledger);
}

/// Every state change is published, in order, with growing sequence numbers.
pub fn events_follow_state_changes(make: MakeLedger<'_>) {
    let (fixture, ledger) = setup(make, vec![node("a", 8)]);
    let hold = ledger.reserve(&ask("t", vec![cores(1)])).unwrap();
    ledger
        .renew(&hold.id, None, Duration::from_secs(60))
        .unwrap();
    ledger.confirm(&hold.id, None).unwrap();
    ledger.release(&hold.id, None).unwrap();
    ledger
        .set_capacity(&rname("a"), &ResourceType::Compute, 4.into())
        .unwrap();
    ledger.unregister_resource(&rname("a")).unwrap();
    assert_eq!(
        fixture.events.names(),
        [
            "resource-registered",
            "reserved",
            "renewed",
            "confirmed",
            "ended:released",
            "capacity-changed",
            "resource-unregistered"
        ]
    );
    let sequences: Vec<_> = fixture.events.events().iter().map(|e| e.sequence).collect();
    assert!(
        sequences.windows(2).all(|w| w[1] == w[0] + 1),
        "{sequences:?}"
    );
    match &fixture.events.kinds()[1] {
        EventKind::Reserved {
            items,
            fencing_token,
            ..
        } => {
            assert_eq!(items, &hold.items);
            assert_eq!(*fencing_token, hold.fencing_token);
        }
        other => panic!("expected a reserved event, got {other:?}"),
    }
}

/// A resource with holds cannot be unregistered or lose a held type; once free it can.
pub fn busy_resources_stay_registered(make: MakeLedger<'_>) {
    let (_, ledger) = setup(make, vec![host("h", 8, 16)]);
    let hold = ledger.reserve(&ask("t", vec![gib(4)])).unwrap();
    let err = ledger.unregister_resource(&rname("h")).unwrap_err();
    assert_eq!(err.code(), "resource-busy", "{err}");
    assert_eq!(
        ledger.update_resource(node("h", 8)).unwrap_err().code(),
        "resource-busy"
    );
    // Changing what is not held is fine, and so is growing what is.
    ledger.update_resource(host("h", 4, 32)).unwrap();
    assert_eq!(free(&*ledger, "h", &ResourceType::Memory), 28.into());
    ledger.cancel(&hold.id, None).unwrap();
    ledger.unregister_resource(&rname("h")).unwrap();
    assert!(ledger.resources().unwrap().is_empty());
}

/// Many threads reserving, confirming and releasing at once never over-allocate, never leak
/// and never deadlock. `RM_STRESS_ROUNDS` raises the number of rounds per thread.
pub fn concurrent_use_conserves_capacity(make: MakeLedger<'_>) {
    let (_, ledger) = setup(make, vec![host("a", 8, 16), host("b", 8, 16), node("c", 4)]);
    let rounds = crate::stress_rounds(200);
    let ledger: &dyn ReservationLedger = &*ledger;
    let granted = thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|t| {
                scope.spawn(move || {
                    let mut granted = 0usize;
                    for round in 0..rounds {
                        let amount = 1 + ((t + round) % 3) as i32;
                        let requirements = if round % 2 == 0 {
                            vec![cores(amount), gib(amount)]
                        } else {
                            vec![cores(amount)]
                        };
                        let request =
                            ask(&format!("w{t}"), requirements).with_strategy(if t % 2 == 0 {
                                ReservationStrategy::BinPack
                            } else {
                                ReservationStrategy::Balanced
                            });
                        match ledger.reserve(&request) {
                            Ok(hold) => {
                                granted += 1;
                                if round % 3 == 0 {
                                    ledger
                                        .cancel(&hold.id, Some(hold.fencing_token))
                                        .expect("cancel own hold");
                                } else {
                                    ledger
                                        .confirm(&hold.id, Some(hold.fencing_token))
                                        .expect("confirm own hold");
                                    ledger
                                        .release(&hold.id, Some(hold.fencing_token))
                                        .expect("release own hold");
                                }
                            }
                            Err(LedgerError::InsufficientCapacity { .. }) => {}
                            Err(other) => panic!("unexpected error under contention: {other}"),
                        }
                        if round % 16 == 0 {
                            let snapshot = ledger.snapshot().expect("snapshot");
                            assert!(snapshot.audit().is_clean(), "{:#?}", snapshot.audit());
                        }
                    }
                    granted
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("worker panicked"))
            .sum::<usize>()
    });
    assert!(granted > 0, "some requests must have been granted");
    assert_clean(ledger);
    let snapshot = ledger.snapshot().unwrap();
    assert!(snapshot.active.is_empty(), "every hold was ended");
    for usage in &snapshot.usage {
        assert_eq!(usage.free, usage.capacity, "{usage:?}");
    }
    assert!(snapshot.last_fencing_token.0 >= granted as u64);
}

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
