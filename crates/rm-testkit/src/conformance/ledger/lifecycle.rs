//! A hold's life: confirm and release, expiry by the ledger's clock, renewal, fencing, cancel and preempt, draining, unknown ids, malformed input.

use super::*;

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

/// A request confirmed on grant is held from the start: confirmed, no deadline, never
/// expired by the clock, published as reserved then confirmed, released as any confirmed
/// hold; it cannot also name a TTL.
pub fn holds_confirmed_on_grant(make: MakeLedger<'_>) {
    let (fixture, ledger) = setup(make, vec![node("a", 8)]);
    let direct = ask("t1", vec![cores(2)])
        .with_id(rid("direct"))
        .confirm_on_grant(true);
    let held = ledger.reserve(&direct).unwrap();
    assert_eq!(held.state, ReservationState::Confirmed);
    assert_eq!(held.expires_at, None, "no pending phase, no deadline");
    assert_eq!(held.created_at, held.updated_at);
    assert_eq!(
        ledger.reserve(&direct).unwrap(),
        held,
        "a retry is the same hold"
    );
    let usage = ledger.snapshot().unwrap();
    let usage = usage.usage_of("a", &ResourceType::Compute).unwrap();
    assert_eq!((usage.pending, usage.confirmed), (Quantity::ZERO, 2.into()));
    assert_eq!(
        fixture.events.names(),
        ["resource-registered", "reserved", "confirmed"]
    );
    fixture.clock.advance(fixture.default_ttl * 3);
    assert!(ledger.expire_due().unwrap().is_empty(), "nothing to expire");
    assert_eq!(
        ledger.get(&held.id).unwrap().state,
        ReservationState::Confirmed
    );
    assert_eq!(free_cores(&*ledger, "a"), 6.into());
    // Confirming (or renewing) it again is a no-op; cancelling is for pending holds only.
    assert_eq!(ledger.confirm(&held.id, None).unwrap(), held);
    assert_eq!(
        ledger
            .renew(&held.id, None, Duration::from_secs(5))
            .unwrap()
            .expires_at,
        None
    );
    expect_err(ledger.cancel(&held.id, None), "invalid-state");
    // With a TTL the request is malformed: the field is named, nothing changes.
    let err = expect_err(
        ledger.reserve(
            &ask("t2", vec![cores(1)])
                .confirm_on_grant(true)
                .with_ttl(Duration::from_secs(5)),
        ),
        "invalid-input",
    );
    assert!(
        matches!(&err, LedgerError::InvalidInput { field, .. } if field == "ttl"),
        "{err}"
    );
    assert_eq!(free_cores(&*ledger, "a"), 6.into());
    let stale = FencingToken(held.fencing_token.0 + 1);
    expect_err(ledger.release(&held.id, Some(stale)), "stale-fencing-token");
    let released = ledger.release(&held.id, Some(held.fencing_token)).unwrap();
    assert_eq!(released.state, ReservationState::Released);
    assert_eq!(free_cores(&*ledger, "a"), 8.into(), "credited once");
    assert_eq!(
        &fixture.events.names()[1..],
        ["reserved", "confirmed", "ended:released"]
    );
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
