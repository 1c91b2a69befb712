//! Eight threads on eight connections reserve, confirm, renew, release, cancel and let holds
//! expire on one pool of 16 resources, while an auditor on a connection of its own reads the
//! sums in SQL, in its own transaction, every few milliseconds. `RM_STRESS_ROUNDS` raises
//! the rounds per thread.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use rm_model::{
    LedgerError, RequesterId, ReservationLedger, ReservationRequest, ReservationStrategy,
    ResourceRequirement, ResourceType, Unit,
};
use rm_testkit::Rng;

use rm_testkit::postgres::{Auditor, Findings};

use crate::support::{builder, host, test_server};

#[test]
fn eight_connections_never_overbook_under_an_independent_auditor() {
    let Some(server) = test_server("eight_connections_never_overbook_under_an_independent_auditor")
    else {
        return;
    };
    let ledger = builder(&server)
        .pool_size(8)
        .default_ttl(Duration::from_secs(30))
        .connect()
        .expect("connect");
    for n in 0..16 {
        ledger
            .register_resource(host(&format!("n{n}"), 4, 8))
            .expect("register");
    }
    let schema = ledger.schema().to_owned();
    let rounds = rm_testkit::stress_rounds(120);
    let stop = AtomicBool::new(false);
    let (checks, violations, granted) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    thread::scope(|scope| {
        scope.spawn(|| {
            let mut auditor = Auditor::connect(&server, &schema).expect("auditor");
            while !stop.load(Ordering::Acquire) {
                let findings = auditor.audit().expect("audit");
                checks.fetch_add(1, Ordering::Relaxed);
                violations.fetch_add(findings.total() as usize, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(3));
            }
        });
        let workers: Vec<_> = (0..8_u64)
            .map(|t| {
                let (ledger, granted) = (&ledger, &granted);
                scope.spawn(move || {
                    let mut rng = Rng::new(t + 1);
                    for _ in 0..rounds {
                        // Holds of 1 to 4 resources: requirements placed independently.
                        let requirements = (0..1 + rng.below(4))
                            .map(|_| {
                                if rng.below(3) == 0 {
                                    ResourceRequirement::new(
                                        ResourceType::Memory,
                                        1 + rng.below(4) as i32,
                                        Unit::GIB,
                                    )
                                } else {
                                    ResourceRequirement::new(
                                        ResourceType::Compute,
                                        1 + rng.below(3) as i32,
                                        Unit::CORES,
                                    )
                                }
                            })
                            .collect();
                        let strategy = [
                            ReservationStrategy::Greedy,
                            ReservationStrategy::Balanced,
                            ReservationStrategy::BinPack,
                            ReservationStrategy::Aligned,
                        ][rng.below(4) as usize];
                        let mut request = ReservationRequest::new(
                            RequesterId::new(&format!("w{t}")).expect("valid"),
                            requirements,
                        )
                        .with_strategy(strategy);
                        let expiring = rng.below(8) == 0;
                        // Some holds are granted confirmed (no TTL), and only released.
                        let direct = !expiring && rng.below(6) == 0;
                        if expiring {
                            request = request.with_ttl(Duration::from_millis(20));
                        }
                        request = request.confirm_on_grant(direct);
                        let hold = match ledger.reserve(&request) {
                            Ok(hold) => hold,
                            Err(LedgerError::InsufficientCapacity { .. }) => continue,
                            Err(other) => panic!("unexpected error under contention: {other}"),
                        };
                        granted.fetch_add(1, Ordering::Relaxed);
                        let fence = Some(hold.fencing_token);
                        if expiring {
                            continue;
                        }
                        if direct {
                            assert_eq!(hold.state, rm_model::ReservationState::Confirmed);
                            ledger.release(&hold.id, fence).expect("release own hold");
                            continue;
                        }
                        match rng.below(4) {
                            0 => {
                                ledger.cancel(&hold.id, fence).expect("cancel own hold");
                            }
                            1 => {
                                ledger
                                    .renew(&hold.id, fence, Duration::from_secs(30))
                                    .expect("renew own hold");
                                ledger.cancel(&hold.id, fence).expect("cancel own hold");
                            }
                            _ => {
                                ledger.confirm(&hold.id, fence).expect("confirm own hold");
                                ledger.release(&hold.id, fence).expect("release own hold");
                            }
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("worker panicked");
        }
        stop.store(true, Ordering::Release);
    });
    thread::sleep(Duration::from_millis(50));
    ledger.expire_due().expect("expire");
    let mut auditor = Auditor::connect(&server, &schema).expect("auditor");
    assert_eq!(auditor.audit().expect("audit"), Findings::default());
    assert!(checks.load(Ordering::Relaxed) > 0, "the auditor ran");
    assert_eq!(
        violations.load(Ordering::Relaxed),
        0,
        "the auditor saw a violation"
    );
    assert!(granted.load(Ordering::Relaxed) > 0);
    let report = ledger.audit().expect("audit");
    assert!(report.is_clean(), "{:?}", report.violations);
    let snapshot = ledger.snapshot().expect("snapshot");
    assert!(snapshot.active.is_empty(), "{:?}", snapshot.active);
    for usage in &snapshot.usage {
        assert_eq!(usage.free, usage.capacity, "all capacity back: {usage:?}");
    }
}
