//! Worker sessions: holds bound to a session end with it (pending ones expire, confirmed ones
//! are released or kept as each asked), by the server's clock when the worker stops renewing
//! it; a worker process killed, or paused past its TTL, strands nothing and credits nothing
//! twice. The fault tests run real worker processes: this test binary, started again to run
//! only [`worker_process`].

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rm_model::{ReservationId, ReservationLedger, ReservationState, ResourceType};
use rm_postgres::{OnSessionEnd, PgLedger};

use crate::support::{builder, connect, cores, host, test_server};

fn held(ledger: &PgLedger) -> i64 {
    let snapshot = ledger.snapshot().expect("snapshot");
    let usage = snapshot
        .usage_of("n0", &ResourceType::Compute)
        .expect("n0 is registered");
    (usage.capacity.as_milli() - usage.free.as_milli()) / 1000
}

#[test]
fn holds_end_with_their_session_as_each_asked() {
    let Some(server) = test_server("holds_end_with_their_session_as_each_asked") else {
        return;
    };
    let ledger = Arc::new(builder(&server).connect().expect("connect"));
    ledger
        .register_resource(host("n0", 16, 8))
        .expect("register");
    let session = ledger
        .open_session("worker-a", Duration::from_secs(30))
        .expect("open");
    let pending = session
        .reserve_bound(&cores("a", 1), OnSessionEnd::Release)
        .expect("reserve");
    let released = session
        .reserve_bound(&cores("a", 2), OnSessionEnd::Release)
        .expect("reserve");
    let kept = session
        .reserve_bound(&cores("a", 4), OnSessionEnd::Keep)
        .expect("reserve");
    for hold in [&released, &kept] {
        ledger
            .confirm(&hold.id, Some(hold.fencing_token))
            .expect("confirm");
    }
    let unbound = ledger.reserve(&cores("b", 8)).expect("reserve");
    assert_eq!(held(&ledger), 15);
    let ended = session.end().expect("end");
    let mut states: Vec<_> = ended.iter().map(|r| (r.id.clone(), r.state)).collect();
    states.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected = vec![
        (pending.id.clone(), ReservationState::Expired),
        (released.id.clone(), ReservationState::Released),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(states, expected);
    assert_eq!(
        ledger.get(&kept.id).expect("get").state,
        ReservationState::Confirmed
    );
    assert_eq!(
        ledger.get(&unbound.id).expect("get").state,
        ReservationState::Pending
    );
    assert_eq!(held(&ledger), 12, "the kept and the unbound holds only");
    // The kept hold is the orchestrator's now: released like any other.
    ledger
        .release(&kept.id, Some(kept.fencing_token))
        .expect("release");
    assert!(ledger.audit().expect("audit").is_clean());
}

/// A grant that came through the shared wait queue is bound like any other: granted at once
/// (nobody ahead) or after waiting, it ends with the session.
#[test]
fn waited_grants_end_with_their_session() {
    let Some(server) = test_server("waited_grants_end_with_their_session") else {
        return;
    };
    let ledger = Arc::new(builder(&server).connect().expect("connect"));
    ledger
        .register_resource(host("n0", 4, 8))
        .expect("register");
    let session = ledger
        .open_session("worker-w", Duration::from_secs(30))
        .expect("open");
    let at_once = session
        .wait_bound(
            &cores("w", 2),
            Duration::from_secs(5),
            OnSessionEnd::Release,
        )
        .expect("granted at once");
    let blocker = ledger.reserve(&cores("other", 2)).expect("reserve");
    let waited = thread::scope(|scope| {
        let waiter = scope.spawn(|| {
            session.wait_bound(
                &cores("w", 2),
                Duration::from_secs(10),
                OnSessionEnd::Release,
            )
        });
        thread::sleep(Duration::from_millis(200));
        ledger
            .cancel(&blocker.id, Some(blocker.fencing_token))
            .expect("cancel");
        waiter
            .join()
            .expect("waiter")
            .expect("granted after the cancel")
    });
    for hold in [&at_once, &waited] {
        ledger
            .confirm(&hold.id, Some(hold.fencing_token))
            .expect("confirm");
    }
    assert_eq!(held(&ledger), 4);
    let mut ended: Vec<_> = session
        .end()
        .expect("end")
        .into_iter()
        .map(|r| (r.id, r.state))
        .collect();
    ended.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected = vec![
        (at_once.id.clone(), ReservationState::Released),
        (waited.id.clone(), ReservationState::Released),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(ended, expected);
    assert_eq!(held(&ledger), 0);
    assert!(ledger.audit().expect("audit").is_clean());
}

#[test]
fn a_session_not_renewed_ends_by_the_servers_clock_and_its_worker_is_refused() {
    let Some(server) = test_server("a_session_not_renewed_ends_by_the_servers_clock") else {
        return;
    };
    let ledger = Arc::new(builder(&server).connect().expect("connect"));
    ledger
        .register_resource(host("n0", 16, 8))
        .expect("register");
    // A heartbeat keeps a short session alive well past its TTL.
    let alive = ledger
        .open_session("beating", Duration::from_millis(300))
        .expect("open");
    thread::sleep(Duration::from_millis(900));
    ledger.expire_due().expect("sweep");
    let hold = alive.reserve_bound(&cores("a", 1), OnSessionEnd::Release);
    assert!(hold.is_ok(), "renewed: {hold:?}");
    assert!(!alive.is_lost());
    // One that stops renewing (a hung worker) ends once its TTL runs out.
    let mut hung = ledger
        .open_session("hung", Duration::from_millis(300))
        .expect("open");
    let pending = hung
        .reserve_bound(&cores("b", 2), OnSessionEnd::Release)
        .expect("reserve");
    let confirmed = hung
        .reserve_bound(&cores("b", 4), OnSessionEnd::Release)
        .expect("reserve");
    ledger
        .confirm(&confirmed.id, Some(confirmed.fencing_token))
        .expect("confirm");
    hung.stop_heartbeat();
    thread::sleep(Duration::from_millis(400));
    // Before any sweep, the worker's operations on its holds are refused already.
    let err = ledger
        .confirm(&pending.id, Some(pending.fencing_token))
        .unwrap_err();
    assert_eq!(err.code(), "expired", "{err}");
    let err = ledger
        .release(&confirmed.id, Some(confirmed.fencing_token))
        .unwrap_err();
    assert_eq!(err.code(), "expired", "{err}");
    let err = hung
        .reserve_bound(&cores("b", 1), OnSessionEnd::Release)
        .unwrap_err();
    assert_eq!(err.code(), "invalid-input", "{err}");
    let ended = ledger.expire_due().expect("sweep");
    assert_eq!(ended.len(), 2, "{ended:?}");
    assert_eq!(
        held(&ledger),
        1,
        "credited once: the live session's hold is left"
    );
    assert_eq!(
        ledger.get(&pending.id).expect("get").state,
        ReservationState::Expired
    );
    assert_eq!(
        ledger.get(&confirmed.id).expect("get").state,
        ReservationState::Released
    );
    assert!(
        ledger.expire_due().expect("sweep").is_empty(),
        "never twice"
    );
    assert!(ledger.audit().expect("audit").is_clean());
}

/// Environment of a worker process: the server and schema to use, and its session's TTL.
const WORKER_URL: &str = "RM_PG_WORKER_URL";
const WORKER_SCHEMA: &str = "RM_PG_WORKER_SCHEMA";

/// Not a test: the body of a worker process the fault tests start (this binary, run with
/// `sessions::worker_process --exact --ignored`). It opens a session of 1 s, takes a pending
/// hold, a confirmed hold released at the session's end and a confirmed hold kept, says
/// `WORKER ready <id> <token>` for each, then waits for `confirm` on standard input, tries to
/// confirm its pending hold with its token, says `WORKER confirm <outcome>` and exits.
#[test]
#[ignore = "the body of the worker processes of the fault tests"]
fn worker_process() {
    let (Ok(url), Ok(schema)) = (std::env::var(WORKER_URL), std::env::var(WORKER_SCHEMA)) else {
        return;
    };
    let ledger = Arc::new(
        PgLedger::builder(url)
            .schema(schema)
            .pool_size(2)
            .connect()
            .expect("connect"),
    );
    let session = ledger
        .open_session("worker", Duration::from_secs(1))
        .expect("open");
    let pending = session
        .reserve_bound(&cores("w", 1), OnSessionEnd::Release)
        .expect("reserve");
    let released = session
        .reserve_bound(&cores("w", 2), OnSessionEnd::Release)
        .expect("reserve");
    let kept = session
        .reserve_bound(&cores("w", 4), OnSessionEnd::Keep)
        .expect("reserve");
    for hold in [&released, &kept] {
        ledger
            .confirm(&hold.id, Some(hold.fencing_token))
            .expect("confirm");
    }
    let mut out = std::io::stdout();
    for hold in [&pending, &released, &kept] {
        writeln!(out, "WORKER ready {} {}", hold.id, hold.fencing_token).expect("stdout");
    }
    out.flush().expect("stdout");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("stdin");
    let outcome = match ledger.confirm(&pending.id, Some(pending.fencing_token)) {
        Ok(r) => format!("confirmed {}", r.state),
        Err(err) => err.code().to_owned(),
    };
    writeln!(out, "WORKER confirm {outcome}").expect("stdout");
    out.flush().expect("stdout");
    std::mem::forget(session);
}

struct Worker {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    holds: Vec<(ReservationId, u64)>,
}

impl Worker {
    fn start(url: &str, schema: &str) -> Worker {
        Self::start_under(&[], url, schema)
    }

    /// Starts a worker under `wrapper` (a command and its arguments, before the worker's
    /// own), or directly when it is empty.
    fn start_under(wrapper: &[&str], url: &str, schema: &str) -> Worker {
        let exe = std::env::current_exe().expect("the test binary");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&exe);
                command
            }
            None => Command::new(&exe),
        };
        let mut child = command
            .args([
                "sessions::worker_process",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(WORKER_URL, url)
            .env(WORKER_SCHEMA, schema)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a worker");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut holds = Vec::new();
        while holds.len() < 3 {
            let line = lines
                .next()
                .expect("the worker says it is ready")
                .expect("read");
            // The test harness may print its own words before ours on a line.
            if let Some(rest) = line.split_once("WORKER ready ").map(|(_, rest)| rest) {
                let (id, token) = rest.split_once(' ').expect("id and token");
                holds.push((
                    ReservationId::new(id).expect("an id"),
                    token.parse().expect("a token"),
                ));
            }
        }
        Worker {
            child,
            lines,
            holds,
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sweeps until every hold in `ids` but `kept` has ended; returns how long that took.
fn until_ended(ledger: &PgLedger, ids: &[ReservationId], kept: &ReservationId) -> Duration {
    let start = Instant::now();
    loop {
        ledger.expire_due().expect("sweep");
        let open = ids
            .iter()
            .filter(|id| *id != kept)
            .any(|id| ledger.get(id).expect("get").state.holds_capacity());
        if !open {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(10), "holds stranded");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[expect(
    clippy::print_stderr,
    reason = "the fault test reports its figure, where the test runner shows it"
)]
fn a_killed_worker_strands_no_hold() {
    let Some(server) = test_server("a_killed_worker_strands_no_hold") else {
        return;
    };
    let ledger = builder(&server).connect().expect("connect");
    ledger
        .register_resource(host("n0", 16, 8))
        .expect("register");
    let mut worker = Worker::start(&server.url, ledger.schema());
    assert_eq!(held(&ledger), 7);
    worker.signal("-KILL");
    let _ = worker.child.wait();
    let ids: Vec<_> = worker.holds.iter().map(|(id, _)| id.clone()).collect();
    let took = until_ended(&ledger, &ids, &ids[2]);
    eprintln!(
        "a_killed_worker_strands_no_hold: holds back {took:?} after SIGKILL (session TTL 1 s)"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(held(&ledger), 4, "only the kept hold");
    assert_eq!(
        ledger.get(&ids[0]).expect("get").state,
        ReservationState::Expired
    );
    assert_eq!(
        ledger.get(&ids[1]).expect("get").state,
        ReservationState::Released
    );
    assert_eq!(
        ledger.get(&ids[2]).expect("get").state,
        ReservationState::Confirmed
    );
    assert!(ledger.audit().expect("audit").is_clean());
}

#[test]
fn a_paused_worker_is_refused_when_it_wakes_and_nothing_is_credited_twice() {
    let Some(server) = test_server("a_paused_worker_is_refused_when_it_wakes") else {
        return;
    };
    let ledger = builder(&server).connect().expect("connect");
    ledger
        .register_resource(host("n0", 16, 8))
        .expect("register");
    let mut worker = Worker::start(&server.url, ledger.schema());
    worker.signal("-STOP");
    let ids: Vec<_> = worker.holds.iter().map(|(id, _)| id.clone()).collect();
    let took = until_ended(&ledger, &ids, &ids[2]);
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(held(&ledger), 4);
    worker.signal("-CONT");
    writeln!(worker.child.stdin.as_mut().expect("stdin"), "confirm").expect("write");
    let answer = loop {
        let line = worker
            .lines
            .next()
            .expect("the worker answers")
            .expect("read");
        if let Some(outcome) = line.split_once("WORKER confirm ").map(|(_, rest)| rest) {
            break outcome.to_owned();
        }
    };
    assert_eq!(answer, "expired", "the paused worker's confirm is refused");
    assert_eq!(
        held(&ledger),
        4,
        "nothing credited twice, nothing taken again"
    );
    assert!(ledger.audit().expect("audit").is_clean());
}

/// A worker whose own (wall) clock is ten minutes ahead (libfaketime's `faketime`, which CI
/// installs) changes no lease: its holds' and its session's deadlines are the server's clock
/// plus their TTLs, and its session lives on its heartbeat past its TTL.
#[test]
fn a_worker_whose_clock_is_off_changes_no_lease() {
    let Some(server) = test_server("a_worker_whose_clock_is_off_changes_no_lease") else {
        return;
    };
    let faketime_present = Command::new("faketime")
        .args(["-f", "+10m", "true"])
        .status()
        .is_ok_and(|status| status.success());
    if !faketime_present {
        assert!(
            std::env::var("RM_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "faketime is required with RM_REQUIRE_POSTGRES=1 (Debian's faketime; .ci/run installs it)"
        );
        #[expect(clippy::print_stderr, reason = "a test that skips says why")]
        {
            eprintln!("skipping a_worker_whose_clock_is_off_changes_no_lease: no faketime");
        }
        return;
    }
    let ledger = builder(&server).connect().expect("connect");
    ledger
        .register_resource(host("n0", 16, 8))
        .expect("register");
    // The wall clock is off, as a host's can be; its monotonic clock (which timed waits use)
    // runs as any does.
    let worker = Worker::start_under(
        &["env", "DONT_FAKE_MONOTONIC=1", "faketime", "-f", "+10m"],
        &server.url,
        ledger.schema(),
    );
    let mut client = connect(&server);
    let server_now: i64 = client
        .query_one(
            "SELECT (extract(epoch FROM clock_timestamp()) * 1e9)::bigint",
            &[],
        )
        .expect("server time")
        .get(0);
    // The pending hold: created by the server's clock, expiring its TTL (600 s) later.
    let pending = ledger.get(&worker.holds[0].0).expect("get");
    let created = pending.created_at.as_nanos() as i64;
    assert!(
        (server_now - created).abs() < 60_000_000_000,
        "created at the server's time, not ten minutes ahead: {created} vs {server_now}"
    );
    assert_eq!(
        pending
            .expires_at
            .map(|e| e.as_nanos() - pending.created_at.as_nanos()),
        Some(600_000_000_000)
    );
    let session_deadline: i64 = client
        .query_one(
            &format!(
                "SELECT max(expires_at) FROM \"{}\".session",
                ledger.schema()
            ),
            &[],
        )
        .expect("session")
        .get(0);
    assert!(
        session_deadline - server_now < 2_000_000_000,
        "the session's deadline is the server's time plus its 1 s TTL"
    );
    // Past its TTL, the heartbeat keeps it (and its holds) alive.
    thread::sleep(Duration::from_millis(2_500));
    ledger.expire_due().expect("sweep");
    assert_eq!(
        ledger.get(&worker.holds[0].0).expect("get").state,
        ReservationState::Pending
    );
    drop(worker);
}
