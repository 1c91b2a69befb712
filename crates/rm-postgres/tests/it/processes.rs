//! Many processes, one pool: 4 worker processes of 4 threads each run random reserve / wait
//! (in the shared queue) / confirm / renew / release / cancel on 16 resources for `RM_PG_STRESS_SECONDS` (30 by
//! default) while an auditor on a connection of its own reads, every few milliseconds in its
//! own transaction, whether any capacity is over-allocated or differs from its holds' sums.
//! Each worker is this test binary started again to run only [`stress_worker_process`].

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rm_model::{
    LedgerError, RequesterId, ReservationLedger, ReservationRequest, ReservationStrategy,
    ResourceRequirement, ResourceType, Unit,
};
use rm_postgres::{OnSessionEnd, PgLedger};
use rm_testkit::Rng;

use rm_testkit::postgres::Auditor;

use crate::support::{builder, host, retrying, test_server};

const STRESS_URL: &str = "RM_PG_STRESS_URL";
const STRESS_SCHEMA: &str = "RM_PG_STRESS_SCHEMA";
const STRESS_UNTIL: &str = "RM_PG_STRESS_SECONDS";

/// Not a test: the body of a stress worker process (4 threads of random operations in a
/// session of its own, until the given number of seconds has passed); says `STRESS ops <n>`.
#[test]
#[ignore = "the body of the worker processes of the multi-process stress"]
fn stress_worker_process() {
    let (Ok(url), Ok(schema), Ok(seconds)) = (
        std::env::var(STRESS_URL),
        std::env::var(STRESS_SCHEMA),
        std::env::var(STRESS_UNTIL),
    ) else {
        return;
    };
    let seconds: u64 = seconds.parse().expect("seconds");
    let ledger = Arc::new(
        PgLedger::builder(url)
            .schema(schema)
            .pool_size(4)
            .connect()
            .expect("connect"),
    );
    let session = ledger
        .open_session("stress", Duration::from_secs(4))
        .expect("open");
    let ops = AtomicUsize::new(0);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    thread::scope(|scope| {
        for t in 0..4_u64 {
            let (ledger, session, ops) = (&ledger, &session, &ops);
            scope.spawn(move || {
                let mut rng = Rng::new(u64::from(std::process::id()) * 8 + t);
                let mut mine = Vec::new();
                while Instant::now() < deadline {
                    let requirements = (0..1 + rng.below(3))
                        .map(|_| {
                            ResourceRequirement::new(
                                ResourceType::Compute,
                                1 + rng.below(2) as i32,
                                Unit::CORES,
                            )
                        })
                        .collect();
                    let request = ReservationRequest::new(
                        RequesterId::new(&format!("p{}", std::process::id())).expect("valid"),
                        requirements,
                    )
                    .with_strategy(
                        [ReservationStrategy::Balanced, ReservationStrategy::BinPack]
                            [rng.below(2) as usize],
                    )
                    .with_ttl(Duration::from_millis(200 + rng.below(2000)));
                    let bound = match rng.below(3) {
                        0 => session.reserve_bound(&request, OnSessionEnd::Release),
                        1 => session.wait_bound(
                            &request,
                            Duration::from_millis(100),
                            OnSessionEnd::Release,
                        ),
                        _ => ledger.reserve(&request),
                    };
                    match bound {
                        Ok(hold) => mine.push(hold),
                        Err(LedgerError::InsufficientCapacity { .. }) => {}
                        Err(err) if err.is_indeterminate() => {}
                        // A session that ended under a worker starved past its TTL on a
                        // loaded host: the contract's answer (its holds ended with it).
                        Err(LedgerError::InvalidInput { field, .. }) if field == "session" => {}
                        Err(other) => panic!("reserve: {other}"),
                    }
                    ops.fetch_add(1, Ordering::Relaxed);
                    if mine.is_empty() {
                        continue;
                    }
                    let hold = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                    let fence = Some(hold.fencing_token);
                    // Holds may have expired meanwhile: expired and invalid-state answers are
                    // the contract's, not failures.
                    let _ = match rng.below(4) {
                        0 => ledger.cancel(&hold.id, fence),
                        1 => ledger
                            .renew(&hold.id, fence, Duration::from_secs(1))
                            .and_then(|_| ledger.cancel(&hold.id, fence)),
                        _ => ledger
                            .confirm(&hold.id, fence)
                            .and_then(|_| ledger.release(&hold.id, fence)),
                    };
                    ops.fetch_add(2, Ordering::Relaxed);
                }
                for hold in mine {
                    let _ = ledger.cancel(&hold.id, Some(hold.fencing_token));
                }
            });
        }
    });
    let mut out = std::io::stdout();
    writeln!(out, "STRESS ops {}", ops.load(Ordering::Relaxed)).expect("stdout");
    out.flush().expect("stdout");
    drop(session);
}

#[test]
#[expect(
    clippy::print_stderr,
    reason = "the stress reports its figures, where the test runner shows it"
)]
fn four_processes_never_overbook_under_an_independent_auditor() {
    let Some(server) = test_server("four_processes_never_overbook") else {
        return;
    };
    let ledger = builder(&server).connect().expect("connect");
    for n in 0..16 {
        ledger
            .register_resource(host(&format!("n{n}"), 4, 8))
            .expect("register");
    }
    let seconds = std::env::var(STRESS_UNTIL)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(30);
    let schema = ledger.schema().to_owned();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            Command::new(std::env::current_exe().expect("the test binary"))
                .args([
                    "processes::stress_worker_process",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(STRESS_URL, &server.url)
                .env(STRESS_SCHEMA, &schema)
                .env(STRESS_UNTIL, seconds.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start a worker")
        })
        .collect();
    let stop = AtomicBool::new(false);
    let (checks, seen) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let ops: usize = thread::scope(|scope| {
        scope.spawn(|| {
            let mut auditor = Auditor::connect(&server, &schema).expect("auditor");
            while !stop.load(Ordering::Acquire) {
                let findings = auditor.audit().expect("audit");
                seen.fetch_add(findings.total() as usize, Ordering::Relaxed);
                checks.fetch_add(1, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(5));
            }
        });
        let mut ops = 0;
        for mut worker in workers {
            let stdout = worker.stdout.take().expect("stdout");
            for line in BufReader::new(stdout).lines() {
                let line = line.expect("read");
                if let Some((_, n)) = line.split_once("STRESS ops ") {
                    ops += n.trim().parse::<usize>().expect("a count");
                }
            }
            assert!(worker.wait().expect("wait").success(), "a worker failed");
        }
        stop.store(true, Ordering::Release);
        ops
    });
    // Every worker ended its session and cancelled what it held; what expired is swept.
    thread::sleep(Duration::from_millis(2_500));
    // The final reads after the stress retry what the contract calls safe to retry.
    retrying(|| ledger.expire_due()).expect("sweep");
    let mut auditor = Auditor::connect(&server, &schema).expect("auditor");
    assert_eq!(auditor.audit().expect("audit").total(), 0);
    eprintln!(
        "four_processes: {ops} operations by 4 processes x 4 threads in {seconds} s, {} audits, \
         {} violations",
        checks.load(Ordering::Relaxed),
        seen.load(Ordering::Relaxed)
    );
    assert!(ops > 0 && checks.load(Ordering::Relaxed) > 0);
    assert_eq!(
        seen.load(Ordering::Relaxed),
        0,
        "the auditor saw a violation"
    );
    let snapshot = retrying(|| ledger.snapshot()).expect("snapshot");
    assert!(snapshot.active.is_empty(), "{:?}", snapshot.active);
    for usage in &snapshot.usage {
        assert_eq!(usage.free, usage.capacity, "all capacity back: {usage:?}");
    }
    assert!(retrying(|| ledger.audit()).expect("audit").is_clean());
}
