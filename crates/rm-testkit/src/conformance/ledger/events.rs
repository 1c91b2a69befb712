//! Events in order, busy resources kept registered, and many threads conserving capacity.

use super::*;

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
