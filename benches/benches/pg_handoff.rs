//! Release-to-grant hand-off across processes on PostgreSQL (issue 18's target: p50 ≤ 5 ms,
//! p99 ≤ 25 ms on loopback), with the in-process hand-off as the peer in the same run.
//!
//! - across processes: this binary holds the only core of a pool in a durable private
//!   cluster, and a second process (this binary again, in waiter mode) waits for it with
//!   `PgLedger::wait`; from just before the release to the waiter's return, measured on the
//!   system clock both processes share. The waiter is woken by `LISTEN`/`NOTIFY`.
//! - in process: the same turn on `rm-reserve` with `rm-contention`'s `WaitQueue` (a release
//!   through the queue hands the core to the waiting thread).
//!
//! Prints the median and 99th percentile of 200 hand-offs of each; no criterion statistics
//! (each sample needs the other process), so `cargo bench --bench pg_handoff` is the command.
#![expect(clippy::print_stderr, reason = "the bench reports percentiles")]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rm_contention::{WaitQueue, Wakeup};
use rm_model::{
    RequesterId, ReservationId, ReservationLedger, ReservationRequest, Resource, ResourceCapacity,
    ResourceRequirement, ResourceType, SystemClock, Unit,
};
use rm_postgres::PgLedger;
use rm_reserve::ReservationManager;
use rm_testkit::postgres::{Durability, server};

const WAITER_URL: &str = "RM_BENCH_WAITER_URL";
const WAITER_SCHEMA: &str = "RM_BENCH_WAITER_SCHEMA";
const HANDOFFS: usize = 200;

fn core(who: &str) -> ReservationRequest {
    ReservationRequest::new(
        RequesterId::new(who).expect("valid"),
        vec![ResourceRequirement::new(
            ResourceType::Compute,
            1,
            Unit::CORES,
        )],
    )
    .with_ttl(Duration::from_secs(600))
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Waiter mode: for each `wait N` line, waits for the core, answers `granted N <id> <time>`.
fn waiter(url: String, schema: String) {
    let ledger = Arc::new(
        PgLedger::builder(url)
            .schema(schema)
            .pool_size(2)
            .connect()
            .expect("connect"),
    );
    let mut out = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("stdin");
        let Some(n) = line.strip_prefix("wait ") else {
            continue;
        };
        let granted = ledger
            .wait(&core("waiter"), Duration::from_secs(30))
            .expect("granted");
        let at = unix_nanos();
        writeln!(out, "granted {n} {} {at}", granted.id).expect("stdout");
        out.flush().expect("stdout");
    }
}

fn percentiles(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort_unstable();
    (times[times.len() / 2], times[times.len() * 99 / 100])
}

fn across_processes() -> Option<(Duration, Duration)> {
    let server = server("the pg_handoff bench", Durability::Durable)?;
    let schema = server.name.clone();
    let ledger = PgLedger::builder(server.url.clone())
        .schema(schema.clone())
        .connect()
        .expect("connect");
    ledger
        .register_resource(
            Resource::new(
                "n",
                ResourceType::Compute,
                ResourceCapacity::of(1, Unit::CORES).expect("valid"),
            )
            .expect("valid"),
        )
        .expect("register");
    let mut child = Command::new(std::env::current_exe().expect("this binary"))
        .env(WAITER_URL, &server.url)
        .env(WAITER_SCHEMA, &schema)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the waiter process");
    let mut to_child = child.stdin.take().expect("stdin");
    let mut from_child = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut admin = postgres::Client::connect(&server.url, postgres::NoTls).expect("connect");
    let mut times = Vec::with_capacity(HANDOFFS);
    for n in 0..HANDOFFS + 10 {
        let held = ledger.reserve(&core("holder")).expect("the core");
        writeln!(to_child, "wait {n}").expect("to the waiter");
        to_child.flush().expect("to the waiter");
        // Until the waiter is queued.
        let start = Instant::now();
        loop {
            let queued: i64 = admin
                .query_one(&format!("SELECT count(*) FROM \"{schema}\".waiter"), &[])
                .expect("count")
                .get(0);
            if queued == 1 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the waiter never queued"
            );
            thread::sleep(Duration::from_millis(1));
        }
        // Let the waiter settle into its wait, as a waiter that has waited a while would.
        thread::sleep(Duration::from_millis(5));
        let released_at = unix_nanos();
        ledger
            .release(&held.id, None)
            .or_else(|_| ledger.cancel(&held.id, None))
            .expect("end");
        let line = from_child.next().expect("an answer").expect("read");
        let mut words = line.split_whitespace().skip(2);
        let id = ReservationId::new(words.next().expect("an id")).expect("valid");
        let at: u128 = words.next().expect("a time").parse().expect("nanoseconds");
        if n >= 10 {
            times.push(Duration::from_nanos(
                u64::try_from(at.saturating_sub(released_at)).unwrap_or(u64::MAX),
            ));
        }
        ledger.cancel(&id, None).expect("the waiter's grant back");
    }
    drop(to_child);
    let _ = child.wait();
    Some(percentiles(times))
}

fn in_process() -> (Duration, Duration) {
    let wakeup = Wakeup::new();
    let manager = Arc::new(
        ReservationManager::builder()
            .event_sink(Arc::new(wakeup.clone()))
            .build()
            .expect("valid settings"),
    );
    manager
        .register_resource(
            Resource::new(
                "n",
                ResourceType::Compute,
                ResourceCapacity::of(1, Unit::CORES).expect("valid"),
            )
            .expect("valid"),
        )
        .expect("register");
    let queue = Arc::new(WaitQueue::new(
        manager.clone(),
        Arc::new(SystemClock::new()),
    ));
    wakeup.connect(&queue);
    let mut times = Vec::with_capacity(HANDOFFS);
    for n in 0..HANDOFFS + 10 {
        let held = manager.reserve(&core("holder")).expect("the core");
        let waiter = {
            let queue = queue.clone();
            thread::spawn(move || {
                let granted = queue
                    .enqueue(core("waiter"))
                    .wait_timeout(Duration::from_secs(10))
                    .expect("granted");
                (granted, Instant::now())
            })
        };
        while queue.is_empty() {
            thread::yield_now();
        }
        thread::sleep(Duration::from_millis(5));
        let released_at = Instant::now();
        queue.cancel(&held.id, None).expect("release");
        let (granted, at) = waiter.join().expect("waiter");
        if n >= 10 {
            times.push(at.duration_since(released_at));
        }
        manager.cancel(&granted.id, None).expect("back");
    }
    percentiles(times)
}

fn main() {
    if let (Ok(url), Ok(schema)) = (std::env::var(WAITER_URL), std::env::var(WAITER_SCHEMA)) {
        waiter(url, schema);
        return;
    }
    let (peer_p50, peer_p99) = in_process();
    eprintln!("in process (rm-reserve + WaitQueue): p50 {peer_p50:?}, p99 {peer_p99:?}");
    match across_processes() {
        Some((p50, p99)) => eprintln!(
            "across processes (rm-postgres, LISTEN/NOTIFY): p50 {p50:?}, p99 {p99:?} \
             (targets 5 ms, 25 ms)"
        ),
        None => eprintln!("across processes: skipped (no PostgreSQL)"),
    }
}
