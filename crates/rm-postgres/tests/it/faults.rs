//! Faults under load, with the guarantees callers rely on: connections killed mid-transaction
//! (`pg_terminate_backend`) and the server crashed and restarted (`pg_ctl restart -m
//! immediate`) while 4 threads reserve, confirm and release. Callers get indeterminate errors
//! (`Unavailable`, `Timeout`) and retry with the same id; afterwards every acknowledged
//! operation is there exactly once, nothing is over-allocated, and all capacity is back.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rm_model::{
    LedgerError, RequesterId, Reservation, ReservationId, ReservationLedger, ReservationRequest,
    ReservationState, ResourceRequirement, ResourceType, Unit,
};
use rm_postgres::PgLedger;
use rm_testkit::postgres::TestServer;

use crate::support::{builder, connect, host, test_server};

/// Retries `op` while its outcome is indeterminate (as a caller must), up to 60 s.
fn retried<T>(
    faults: &AtomicUsize,
    mut op: impl FnMut() -> Result<T, LedgerError>,
) -> Result<T, LedgerError> {
    let start = Instant::now();
    loop {
        match op() {
            Err(err) if err.is_indeterminate() && start.elapsed() < Duration::from_secs(60) => {
                faults.fetch_add(1, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// What the run did: each acknowledged hold's final state by id, and how many indeterminate
/// answers callers retried through.
struct Run {
    acknowledged: BTreeMap<ReservationId, ReservationState>,
    retried: usize,
}

/// 4 threads of named holds (reserve → confirm → release, or reserve → cancel) for
/// `seconds`, while `fault` runs on another thread until they stop.
fn run(ledger: &PgLedger, rounds: usize, fault: impl Fn(&AtomicBool) + Sync) -> Run {
    let faults = AtomicUsize::new(0);
    let done = AtomicBool::new(false);
    let acknowledged = Mutex::new(BTreeMap::new());
    thread::scope(|scope| {
        scope.spawn(|| fault(&done));
        let workers: Vec<_> = (0..4)
            .map(|t| {
                let (faults, acknowledged) = (&faults, &acknowledged);
                scope.spawn(move || {
                    for n in 0..rounds {
                        let id = ReservationId::new(&format!("w{t}-{n}")).expect("valid");
                        let request = ReservationRequest::new(
                            RequesterId::new(&format!("w{t}")).expect("valid"),
                            vec![ResourceRequirement::new(
                                ResourceType::Compute,
                                1 + (n % 3) as i32,
                                Unit::CORES,
                            )],
                        )
                        .with_id(id.clone())
                        .with_ttl(Duration::from_secs(300));
                        let hold: Reservation = match retried(faults, || ledger.reserve(&request)) {
                            Ok(hold) => hold,
                            Err(LedgerError::InsufficientCapacity { .. }) => continue,
                            Err(other) => panic!("reserve {id}: {other}"),
                        };
                        let fence = Some(hold.fencing_token);
                        let end = if n % 4 == 0 {
                            retried(faults, || ledger.cancel(&id, fence))
                        } else {
                            retried(faults, || ledger.confirm(&id, fence))
                                .unwrap_or_else(|err| panic!("confirm {id}: {err}"));
                            retried(faults, || ledger.release(&id, fence))
                        };
                        let ended = end.unwrap_or_else(|err| panic!("end {id}: {err}"));
                        acknowledged
                            .lock()
                            .expect("not poisoned")
                            .insert(id, ended.state);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("worker panicked");
        }
        done.store(true, Ordering::Release);
    });
    Run {
        acknowledged: acknowledged.into_inner().expect("not poisoned"),
        retried: faults.load(Ordering::Relaxed),
    }
}

/// Every acknowledged hold is there once, in the state it was acknowledged in; nothing is
/// held any more; the audit is clean.
fn check(server: &TestServer, ledger: &PgLedger, run: &Run) {
    assert!(!run.acknowledged.is_empty());
    for (id, state) in &run.acknowledged {
        assert_eq!(ledger.get(id).expect("get").state, *state, "{id}");
    }
    let mut client = connect(server);
    let schema = ledger.schema();
    let rows: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM \"{schema}\".reservation"),
            &[],
        )
        .expect("count")
        .get(0);
    assert_eq!(
        rows as usize,
        run.acknowledged.len(),
        "each hold exactly once"
    );
    let held: i64 = client
        .query_one(
            &format!("SELECT coalesce(sum(held), 0)::bigint FROM \"{schema}\".capacity"),
            &[],
        )
        .expect("sum")
        .get(0);
    assert_eq!(held, 0, "all capacity back");
    assert!(ledger.audit().expect("audit").is_clean());
}

#[test]
#[expect(
    clippy::print_stderr,
    reason = "the fault test reports its figures, where the test runner shows it"
)]
fn killed_connections_lose_no_acknowledged_operation() {
    let Some(server) = test_server("killed_connections_lose_no_acknowledged_operation") else {
        return;
    };
    let ledger = builder(&server)
        .pool_size(4)
        .retention(Duration::from_secs(3600))
        .connect()
        .expect("connect");
    for n in 0..4 {
        ledger
            .register_resource(host(&format!("n{n}"), 8, 8))
            .expect("register");
    }
    let killed = AtomicUsize::new(0);
    let app = format!("rm-postgres/{}", ledger.schema());
    let run = run(&ledger, rm_testkit::stress_rounds(60), |done| {
        let mut admin = connect(&server);
        while !done.load(Ordering::Acquire) {
            let n = admin
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE application_name = $1 AND state = 'active'",
                    &[&app],
                )
                .expect("terminate");
            killed.fetch_add(n as usize, Ordering::Relaxed);
            thread::sleep(Duration::from_millis(15));
        }
    });
    eprintln!(
        "killed_connections: {} holds acknowledged, {} backends killed mid-statement, {} \
         indeterminate answers retried, 0 violations",
        run.acknowledged.len(),
        killed.load(Ordering::Relaxed),
        run.retried
    );
    check(&server, &ledger, &run);
}

#[test]
#[expect(
    clippy::print_stderr,
    reason = "the fault test reports its figures, where the test runner shows it"
)]
fn a_crash_and_restart_loses_no_acknowledged_operation() {
    let Some(own) = rm_testkit::postgres::own_server("a_crash_and_restart_loses_nothing") else {
        return;
    };
    let ledger = builder(&own.server)
        .pool_size(4)
        .retention(Duration::from_secs(3600))
        .connect()
        .expect("connect");
    for n in 0..4 {
        ledger
            .register_resource(host(&format!("n{n}"), 8, 8))
            .expect("register");
    }
    let restarts = AtomicUsize::new(0);
    let run = run(&ledger, rm_testkit::stress_rounds(120), |done| {
        // Two crashes while the workers run.
        for _ in 0..2 {
            thread::sleep(Duration::from_millis(400));
            if done.load(Ordering::Acquire) {
                return;
            }
            own.restart_immediate().expect("restart");
            restarts.fetch_add(1, Ordering::Relaxed);
        }
    });
    eprintln!(
        "crash_and_restart: {} holds acknowledged across {} restarts, {} indeterminate \
         answers retried, 0 violations",
        run.acknowledged.len(),
        restarts.load(Ordering::Relaxed),
        run.retried
    );
    assert!(
        restarts.load(Ordering::Relaxed) > 0,
        "the server was restarted mid-run"
    );
    check(&own.server, &ledger, &run);
}
