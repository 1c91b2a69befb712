//! Waiting across processes: one queue in the database. A release in one process grants the
//! head waiter in another within milliseconds; the queue keeps priority, then arrival order,
//! across processes; a waiter whose process died does not block the head; a release nobody is
//! notified of is still found by polling. Each ledger here stands for a process (its own
//! connections, view and listener).

use std::sync::Arc;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use std::collections::HashMap;

use rm_model::{
    Admission, AllocationPolicy, PendingRequest, Priority, ReservationLedger, ReservationRequest,
    Timestamp,
};

use crate::support::{another, builder, connect, cores, host, test_server};

/// Waits until the queue holds `n` waiters.
fn until_queued(server: &rm_testkit::postgres::TestServer, schema: &str, n: i64) {
    let mut client = connect(server);
    let start = Instant::now();
    loop {
        let queued: i64 = client
            .query_one(&format!("SELECT count(*) FROM \"{schema}\".waiter"), &[])
            .expect("count")
            .get(0);
        if queued == n {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{queued} queued");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
#[expect(
    clippy::print_stderr,
    reason = "the test reports the hand-off latency, where the test runner shows it"
)]
fn a_release_in_one_process_grants_the_waiter_in_another() {
    let Some(server) = test_server("a_release_in_one_process_grants_the_waiter_in_another") else {
        return;
    };
    let a = Arc::new(builder(&server).connect().expect("connect"));
    a.register_resource(host("n0", 4, 8)).expect("register");
    let b = Arc::new(another(&server, &a));
    let mut latencies = Vec::new();
    for _ in 0..20 {
        let held = a.reserve(&cores("a", 4)).expect("all of it");
        a.confirm(&held.id, None).expect("confirm");
        let waiter = {
            let b = b.clone();
            thread::spawn(move || {
                let granted = b.wait(&cores("b", 4), Duration::from_secs(10));
                (granted, Instant::now())
            })
        };
        until_queued(&server, a.schema(), 1);
        let released_at = Instant::now();
        a.release(&held.id, None).expect("release");
        let (granted, at) = waiter.join().expect("waiter");
        let granted = granted.expect("granted after the release");
        latencies.push(at.duration_since(released_at));
        b.cancel(&granted.id, None).expect("cancel");
    }
    latencies.sort();
    eprintln!(
        "hand-off across ledgers: p50 {:?}, max {:?} (20 releases)",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    assert!(latencies[latencies.len() / 2] < Duration::from_millis(100));
}

#[test]
fn the_queue_keeps_priority_then_arrival_order_across_processes() {
    let Some(server) = test_server("the_queue_keeps_priority_then_arrival_order") else {
        return;
    };
    let a = Arc::new(builder(&server).connect().expect("connect"));
    a.register_resource(host("n0", 1, 8)).expect("register");
    let (b, c) = (
        Arc::new(another(&server, &a)),
        Arc::new(another(&server, &a)),
    );
    let held = a.reserve(&cores("a", 1)).expect("the one core");
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    // Arrival: low-1 (b), low-2 (c), high (b); expected grants: high, low-1, low-2.
    for (n, (ledger, who, priority)) in [
        (b.clone(), "low-1", 0),
        (c.clone(), "low-2", 0),
        (b.clone(), "high", 10),
    ]
    .into_iter()
    .enumerate()
    {
        let order = order.clone();
        waiters.push(thread::spawn(move || {
            let granted = ledger
                .wait(
                    &cores(who, 1).with_priority(Priority(priority)),
                    Duration::from_secs(20),
                )
                .expect("granted in turn");
            order.lock().expect("not poisoned").push(who.to_owned());
            // Hold it a moment, then pass it on.
            thread::sleep(Duration::from_millis(50));
            ledger.cancel(&granted.id, None).expect("cancel");
        }));
        until_queued(&server, a.schema(), n as i64 + 1);
    }
    a.cancel(&held.id, None).expect("release the core");
    for waiter in waiters {
        waiter.join().expect("waiter");
    }
    assert_eq!(
        *order.lock().expect("not poisoned"),
        ["high", "low-1", "low-2"]
    );
}

#[test]
fn a_dead_waiter_does_not_block_the_queue_and_polling_finds_silent_releases() {
    let Some(server) = test_server("a_dead_waiter_does_not_block_the_queue") else {
        return;
    };
    let a = Arc::new(
        builder(&server)
            .wait_poll(Duration::from_millis(50))
            .connect()
            .expect("connect"),
    );
    a.register_resource(host("n0", 1, 8)).expect("register");
    let schema = a.schema().to_owned();
    let mut client = connect(&server);
    // A waiter of a process that died: at the head (higher priority), its lease about to run
    // out and never renewed.
    client
        .execute(
            &format!(
                "INSERT INTO \"{schema}\".waiter (reservation, requester, priority, order_key, \
                 enqueued_at, expires_at) VALUES ('dead', 'dead', 100, -100, 0, \
                 (extract(epoch FROM clock_timestamp()) * 1e9)::bigint + 500000000)"
            ),
            &[],
        )
        .expect("a dead waiter");
    // Capacity appears without any event: grown behind the ledgers' backs.
    client
        .execute(
            &format!("UPDATE \"{schema}\".capacity SET maximum = 0 WHERE resource = 'n0'"),
            &[],
        )
        .expect("no capacity");
    let b = Arc::new(another(&server, &a));
    let waiter = {
        let b = b.clone();
        thread::spawn(move || b.wait(&cores("b", 1), Duration::from_secs(10)))
    };
    thread::sleep(Duration::from_millis(200));
    let grown = Instant::now();
    client
        .execute(
            &format!("UPDATE \"{schema}\".capacity SET maximum = 1000 WHERE resource = 'n0'"),
            &[],
        )
        .expect("capacity back, silently");
    let granted = waiter.join().expect("waiter").expect("granted by polling");
    // Within the dead waiter's lease (0.5 s) plus a poll.
    assert!(
        grown.elapsed() < Duration::from_secs(2),
        "{:?}",
        grown.elapsed()
    );
    assert_eq!(granted.requester.as_str(), "b");
    a.expire_due().expect("sweep");
    let left: i64 = client
        .query_one(&format!("SELECT count(*) FROM \"{schema}\".waiter"), &[])
        .expect("count")
        .get(0);
    assert_eq!(left, 0, "the dead waiter is swept, the served one left");
}

#[test]
fn a_wait_that_times_out_leaves_the_queue() {
    let Some(server) = test_server("a_wait_that_times_out_leaves_the_queue") else {
        return;
    };
    let a = Arc::new(builder(&server).connect().expect("connect"));
    a.register_resource(host("n0", 1, 8)).expect("register");
    let _held = a.reserve(&cores("a", 1)).expect("the one core");
    let start = Instant::now();
    let err = a
        .wait(&cores("b", 1), Duration::from_millis(300))
        .unwrap_err();
    assert_eq!(err.code(), "insufficient-capacity");
    assert!(start.elapsed() >= Duration::from_millis(300));
    let mut client = connect(&server);
    let left: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM \"{}\".waiter", a.schema()),
            &[],
        )
        .expect("count")
        .get(0);
    assert_eq!(left, 0);
}

/// The wait as a future, on no runtime at all (a thread-parking executor): granted by a
/// release in another process; dropped while pending, it leaves the queue at once and the
/// capacity it would have had is not stranded.
#[test]
fn the_wait_as_a_future_is_granted_and_leaves_the_queue_when_dropped() {
    let Some(server) = test_server("the_wait_as_a_future") else {
        return;
    };
    let a = Arc::new(builder(&server).connect().expect("connect"));
    a.register_resource(host("n0", 4, 8)).expect("register");
    let b = Arc::new(another(&server, &a));

    let held = a.reserve(&cores("a", 4)).expect("all of it");
    let future = b.wait_async(&cores("b", 4), Duration::from_secs(10));
    let waiter = thread::spawn(move || rm_testkit::block_on(future, Some(Duration::from_secs(10))));
    until_queued(&server, a.schema(), 1);
    a.cancel(&held.id, None).expect("cancel");
    let granted = waiter
        .join()
        .expect("waiter")
        .expect("ready in time")
        .expect("granted after the cancel");
    assert_eq!(b.get(&granted.id).expect("get").items.len(), 1);
    until_queued(&server, a.schema(), 0);

    // Pending, then dropped: out of the queue well within the poll interval's few rounds, and
    // the capacity freed later stays free.
    let future = b.wait_async(&cores("c", 4), Duration::from_secs(30));
    assert!(rm_testkit::block_on(future, Some(Duration::from_millis(300))).is_none());
    // `block_on` dropped the future when its limit passed.
    let dropped_at = Instant::now();
    until_queued(&server, a.schema(), 0);
    assert!(dropped_at.elapsed() < Duration::from_secs(5));
    b.cancel(&granted.id, None).expect("cancel");
    thread::sleep(Duration::from_millis(300));
    let snapshot = a.snapshot().expect("snapshot");
    assert!(
        snapshot.active.is_empty(),
        "nothing stranded: {:?}",
        snapshot.active
    );
    assert!(a.audit().expect("audit").is_clean());
}

/// A policy that orders by a key per requester, changed by the test as a fair-share
/// policy's keys move with usage (lower first; 0 for requesters it does not know).
#[derive(Default)]
struct Keys(Mutex<HashMap<String, i64>>);

impl Keys {
    fn set(&self, requester: &str, key: i64) {
        self.0
            .lock()
            .expect("not poisoned")
            .insert(requester.to_owned(), key);
    }
}

impl AllocationPolicy for Keys {
    fn name(&self) -> &str {
        "keys"
    }

    fn admit(&self, _: &ReservationRequest, _: Timestamp) -> Admission {
        Admission::Admit
    }

    fn order_key(&self, pending: &PendingRequest, _: Timestamp) -> i64 {
        self.0
            .lock()
            .expect("not poisoned")
            .get(pending.request.requester.as_str())
            .copied()
            .unwrap_or(0)
    }
}

/// With a policy as the wait order (as rm-contention's `with_order`), the shared queue goes
/// by the policy's keys across processes, not by arrival; and a key that moves while its
/// waiter waits moves it in the queue within a renewal.
#[test]
fn a_policy_orders_the_shared_queue_and_its_keys_move_waiters() {
    let Some(server) = test_server("a_policy_orders_the_shared_queue") else {
        return;
    };
    let policy = Arc::new(Keys::default());
    policy.set("bronze", 10);
    policy.set("gold", 1);
    policy.set("late", 20);
    let open = || {
        Arc::new(
            builder(&server)
                .wait_order(policy.clone())
                .connect()
                .expect("connect"),
        )
    };
    let a = open();
    a.register_resource(host("n0", 1, 8)).expect("register");
    let schema = a.schema().to_owned();
    let other = || {
        Arc::new(
            rm_postgres::PgLedger::builder(server.url.clone())
                .schema(schema.clone())
                .wait_order(policy.clone())
                .connect()
                .expect("connect"),
        )
    };
    let (b, c) = (other(), other());
    let held = a.reserve(&cores("a", 1)).expect("the one core");
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    // Arrival: bronze (b), late (c), gold (c), keys 10, 20 and 1. Before the release late's
    // key drops to 0, so the grants go late, gold, bronze (by arrival, or by priority alone,
    // bronze would be first).
    for (n, (ledger, who)) in [
        (b.clone(), "bronze"),
        (c.clone(), "late"),
        (c.clone(), "gold"),
    ]
    .into_iter()
    .enumerate()
    {
        let order = order.clone();
        waiters.push(thread::spawn(move || {
            let granted = ledger
                .wait(&cores(who, 1), Duration::from_secs(20))
                .expect("granted in turn");
            order.lock().expect("not poisoned").push(who.to_owned());
            thread::sleep(Duration::from_millis(50));
            ledger.cancel(&granted.id, None).expect("cancel");
        }));
        until_queued(&server, &schema, n as i64 + 1);
    }
    // The key of late moves ahead of everyone; its row says so after its next renewal.
    policy.set("late", 0);
    let mut client = connect(&server);
    let start = Instant::now();
    loop {
        let key: i64 = client
            .query_one(
                &format!("SELECT order_key FROM \"{schema}\".waiter WHERE requester = 'late'"),
                &[],
            )
            .expect("late's row")
            .get(0);
        if key == 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "never renewed");
        thread::sleep(Duration::from_millis(20));
    }
    a.cancel(&held.id, None).expect("release the core");
    for waiter in waiters {
        waiter.join().expect("waiter");
    }
    assert_eq!(
        *order.lock().expect("not poisoned"),
        ["late", "gold", "bronze"]
    );
}

/// Backfill across processes (EASY, as rm-contention's `HeadOfLine::Backfill`): behind a
/// blocked head, a waiter that fits now and is expected to end before the head could start
/// goes ahead; one expected to end later, one from a process without backfill, and any
/// waiter while a hold the head needs has no known end, wait.
#[test]
fn backfill_lets_short_waiters_pass_a_blocked_head_without_delaying_it() {
    let Some(server) = test_server("backfill_lets_short_waiters_pass") else {
        return;
    };
    let a = Arc::new(builder(&server).backfill(true).connect().expect("connect"));
    a.register_resource(host("n0", 4, 8)).expect("register");
    let schema = a.schema().to_owned();
    let open = |backfill: bool| {
        Arc::new(
            rm_postgres::PgLedger::builder(server.url.clone())
                .schema(schema.clone())
                .backfill(backfill)
                .connect()
                .expect("connect"),
        )
    };
    let (b, c, strict) = (open(true), open(true), open(false));
    // 3 of 4 cores, expected to be held for 3 s: the head's shadow time is then.
    let long = a
        .waiting(&cores("long", 3), Duration::from_secs(5))
        .expecting(Duration::from_secs(3))
        .block()
        .expect("granted at once");
    // The head wants all 4 cores: blocked.
    let head = {
        let b = b.clone();
        thread::spawn(move || b.wait(&cores("head", 4), Duration::from_secs(20)))
    };
    until_queued(&server, &schema, 1);
    // Fits in the free core, but would still run after the head could start.
    let too_long = c
        .waiting(&cores("too-long", 1), Duration::from_millis(600))
        .expecting(Duration::from_secs(60))
        .block();
    assert!(too_long.is_err(), "{too_long:?}");
    // A process without backfill keeps strict order even with an estimate.
    let strict_wait = strict
        .waiting(&cores("strict", 1), Duration::from_millis(600))
        .expecting(Duration::from_millis(100))
        .block();
    assert!(strict_wait.is_err(), "{strict_wait:?}");
    // Short enough: passes the head.
    let short = c
        .waiting(&cores("short", 1), Duration::from_secs(5))
        .expecting(Duration::from_millis(500))
        .block()
        .expect("backfilled ahead of the blocked head");
    assert!(!head.is_finished(), "the head still waits");
    c.cancel(&short.id, None).expect("cancel");
    // A hold of unknown end (no estimate) on the type the head needs: nothing passes.
    let unknown = a.reserve(&cores("unknown", 1)).expect("the free core");
    a.cancel(&long.id, None).expect("cancel");
    let blocked = c
        .waiting(&cores("short-2", 1), Duration::from_millis(600))
        .expecting(Duration::from_millis(100))
        .block();
    assert!(blocked.is_err(), "{blocked:?}");
    a.cancel(&unknown.id, None).expect("cancel");
    let granted = head
        .join()
        .expect("head")
        .expect("the head is granted once all is free");
    b.cancel(&granted.id, None).expect("cancel");
    assert!(a.audit().expect("audit").is_clean());
}
