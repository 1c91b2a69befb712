//! What only a shared database has: several ledgers (as on several hosts) on one schema, the
//! server's clock, events by NOTIFY, migrations at once, retention, and failures mapped onto
//! the contract.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rm_model::{
    EventKind, LedgerError, ReservationLedger, ReservationState, ReservationStrategy, ResourceType,
    Unit,
};
use rm_postgres::{Error, PgLedger};

use crate::support::{another, builder, connect, cores, host, test_server};

#[test]
fn ledgers_on_one_schema_share_one_pool() {
    let Some(server) = test_server("ledgers_on_one_schema_share_one_pool") else {
        return;
    };
    let a = builder(&server).connect().expect("connect");
    let b = another(&server, &a);
    a.register_resource(host("n0", 8, 16)).expect("register");
    assert_eq!(
        b.resources().expect("resources").len(),
        1,
        "b sees a's resource"
    );
    let held = b.reserve(&cores("b", 8)).expect("b takes all");
    let refused = a.reserve(&cores("a", 1));
    assert!(
        matches!(refused, Err(LedgerError::InsufficientCapacity { .. })),
        "{refused:?}"
    );
    // Fencing tokens grow across both.
    b.confirm(&held.id, Some(held.fencing_token))
        .expect("confirm");
    b.release(&held.id, Some(held.fencing_token))
        .expect("release");
    let next = a
        .reserve(&cores("a", 8))
        .expect("a gets it once b released");
    assert!(next.fencing_token > held.fencing_token);
    // Either ledger acts on a hold by id, fenced by its token.
    let err = b.confirm(&next.id, Some(held.fencing_token)).unwrap_err();
    assert_eq!(err.code(), "stale-fencing-token");
    b.confirm(&next.id, Some(next.fencing_token))
        .expect("confirm from b");
    assert_eq!(
        a.get(&next.id).expect("get").state,
        ReservationState::Confirmed
    );
    assert!(a.audit().expect("audit").is_clean());
}

#[test]
fn leases_run_on_the_servers_clock() {
    let Some(server) = test_server("leases_run_on_the_servers_clock") else {
        return;
    };
    let ledger = builder(&server).connect().expect("connect");
    ledger
        .register_resource(host("n0", 4, 8))
        .expect("register");
    let mut client = connect(&server);
    let server_now: i64 = client
        .query_one(
            "SELECT (extract(epoch FROM clock_timestamp()) * 1e9)::bigint",
            &[],
        )
        .expect("server time")
        .get(0);
    let hold = ledger
        .reserve(&cores("t", 4).with_ttl(Duration::from_millis(300)))
        .expect("reserve");
    let created = hold.created_at.as_nanos() as i64;
    assert!(
        (created - server_now).abs() < 5_000_000_000,
        "created at the server's time: {created} vs {server_now}"
    );
    assert_eq!(
        hold.expires_at
            .map(|e| e.as_nanos() - hold.created_at.as_nanos()),
        Some(300_000_000)
    );
    assert_eq!(
        ledger.get(&hold.id).expect("get").state,
        ReservationState::Pending
    );
    thread::sleep(Duration::from_millis(400));
    assert_eq!(
        ledger.get(&hold.id).expect("get").state,
        ReservationState::Expired
    );
    assert_eq!(
        ledger.confirm(&hold.id, None).unwrap_err().code(),
        "expired"
    );
    assert!(ledger.next_expiry().expect("next expiry").is_none());
    ledger
        .reserve(&cores("t", 4))
        .expect("the capacity came back once");
}

#[test]
fn events_reach_listeners_in_other_processes() {
    let Some(server) = test_server("events_reach_listeners_in_other_processes") else {
        return;
    };
    let ledger = builder(&server).connect().expect("connect");
    let mut listener = another(&server, &ledger).listen().expect("listen");
    ledger
        .register_resource(host("n0", 4, 8))
        .expect("register");
    let hold = ledger.reserve(&cores("t", 2)).expect("reserve");
    ledger.cancel(&hold.id, None).expect("cancel");
    let mut kinds = Vec::new();
    while let Some(event) = listener.next(Duration::from_secs(2)).expect("receive") {
        kinds.push(event.kind);
        if kinds.len() == 3 {
            break;
        }
    }
    assert!(
        matches!(kinds[0], EventKind::ResourceRegistered { .. }),
        "{kinds:?}"
    );
    match &kinds[1] {
        EventKind::Reserved {
            reservation,
            items,
            fencing_token,
            ..
        } => {
            assert_eq!(reservation, &hold.id);
            assert_eq!(items, &hold.items);
            assert_eq!(*fencing_token, hold.fencing_token);
        }
        other => panic!("expected reserved, got {other:?}"),
    }
    assert!(
        matches!(
            kinds[2],
            EventKind::Ended {
                reason: ReservationState::Cancelled,
                ..
            }
        ),
        "{kinds:?}"
    );
}

#[test]
fn processes_starting_at_once_migrate_once() {
    let Some(server) = test_server("processes_starting_at_once_migrate_once") else {
        return;
    };
    let schema =
        rm_testkit::postgres::server("schema", rm_testkit::postgres::Durability::Throwaway)
            .expect("the same server")
            .name;
    thread::scope(|scope| {
        for _ in 0..6 {
            scope.spawn(|| {
                PgLedger::builder(server.url.clone())
                    .schema(schema.clone())
                    .connect()
                    .expect("every process connects")
            });
        }
    });
    let mut client = connect(&server);
    let versions: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM \"{schema}\".schema_version"),
            &[],
        )
        .expect("versions")
        .get(0);
    assert_eq!(versions, i64::from(rm_postgres::SCHEMA_VERSION));
}

#[test]
fn ended_reservations_are_forgotten_after_retention() {
    let Some(server) = test_server("ended_reservations_are_forgotten_after_retention") else {
        return;
    };
    let ledger = builder(&server)
        .retention(Duration::from_millis(100))
        .connect()
        .expect("connect");
    ledger
        .register_resource(host("n0", 4, 8))
        .expect("register");
    for _ in 0..20 {
        let hold = ledger.reserve(&cores("t", 1)).expect("reserve");
        ledger.cancel(&hold.id, None).expect("cancel");
    }
    let last = ledger.reserve(&cores("t", 1)).expect("reserve");
    ledger.cancel(&last.id, None).expect("cancel");
    // Within retention a retry still finds it and credits nothing twice.
    assert_eq!(
        ledger.cancel(&last.id, None).expect("again").state,
        ReservationState::Cancelled
    );
    thread::sleep(Duration::from_millis(150));
    ledger.expire_due().expect("sweep");
    assert_eq!(
        ledger.get(&last.id).unwrap_err().code(),
        "unknown-reservation"
    );
    let mut client = connect(&server);
    let rows: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM \"{}\".reservation", ledger.schema()),
            &[],
        )
        .expect("count")
        .get(0);
    assert_eq!(rows, 0, "the table does not grow");
}

#[test]
fn bad_settings_and_unreachable_servers_fail_at_start() {
    let err = PgLedger::builder("not a url at all").connect().unwrap_err();
    assert!(
        matches!(err, Error::InvalidConfig { field: "url", .. }),
        "{err}"
    );
    let err = PgLedger::builder("postgres://u@127.0.0.1:1/db")
        .schema("Bad-Name")
        .connect()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                field: "schema",
                ..
            }
        ),
        "{err}"
    );
    let err = PgLedger::builder("postgres://u@127.0.0.1:1/db")
        .retention(Duration::ZERO)
        .connect()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                field: "retention",
                ..
            }
        ),
        "{err}"
    );
    // Nothing listens on port 1.
    let err = PgLedger::builder("postgres://u@127.0.0.1:1/db")
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    // The password given apart is never shown.
    let builder = PgLedger::builder("postgres://u@127.0.0.1:1/db").password("s3cret");
    assert!(!format!("{builder:?}").contains("s3cret"));
}

#[test]
fn lost_connections_and_timeouts_are_indeterminate_and_retries_are_safe() {
    let Some(server) = test_server("lost_connections_and_timeouts_are_indeterminate") else {
        return;
    };
    let ledger = builder(&server)
        .pool_size(1)
        .statement_timeout(Duration::from_millis(200))
        .connect()
        .expect("connect");
    ledger
        .register_resource(host("n0", 4, 8))
        .expect("register");
    let request = cores("t", 2).with_id(rm_model::ReservationId::new("job-1").expect("valid"));
    let first = ledger.reserve(&request).expect("reserve");
    // Kill the ledger's connection from outside.
    let mut admin = connect(&server);
    let killed = admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1",
            &[&format!("rm-postgres/{}", ledger.schema())],
        )
        .expect("terminate");
    assert_eq!(killed, 1, "the ledger's one connection");
    let lost = ledger.reserve(&request).unwrap_err();
    assert_eq!(lost.code(), "unavailable", "{lost}");
    assert!(lost.is_indeterminate());
    // The retry with the same id finds the one reservation.
    assert_eq!(ledger.reserve(&request).expect("retry"), first);
    // A statement that waits on a row lock past the statement timeout times out.
    let mut tx = admin.transaction().expect("begin");
    tx.execute(
        &format!(
            "SELECT 1 FROM \"{}\".capacity WHERE resource = 'n0' FOR UPDATE",
            ledger.schema()
        ),
        &[],
    )
    .expect("lock");
    let timed_out = ledger.reserve(&cores("t", 1)).unwrap_err();
    assert_eq!(timed_out.code(), "timeout", "{timed_out}");
    assert!(timed_out.is_indeterminate());
    tx.rollback().expect("rollback");
    ledger.reserve(&cores("t", 1)).expect("works again");
    assert!(ledger.audit().expect("audit").is_clean());
}

/// The crate documentation's example, against the test server.
#[test]
fn the_crate_example_runs() {
    let Some(server) = test_server("the_crate_example_runs") else {
        return;
    };
    let ledger = builder(&server).connect().expect("connect");
    ledger
        .register_resource(
            rm_model::Resource::new(
                "runner-1",
                ResourceType::Compute,
                rm_model::ResourceCapacity::of(16, Unit::CORES).expect("valid"),
            )
            .expect("valid"),
        )
        .expect("register");
    let hold = ledger.reserve(&cores("build-42", 4)).expect("reserve");
    ledger
        .confirm(&hold.id, Some(hold.fencing_token))
        .expect("confirm");
    let released = ledger
        .release(&hold.id, Some(hold.fencing_token))
        .expect("release");
    assert_eq!(released.state, ReservationState::Released);
}

/// A listener registers itself so that events are published, and one whose connection is
/// gone is removed by the next sweep (a pool nobody watches publishes nothing).
#[test]
fn listeners_register_and_dead_ones_are_swept() {
    let Some(server) = test_server("listeners_register_and_dead_ones_are_swept") else {
        return;
    };
    let ledger = builder(&server).connect().expect("connect");
    let mut client = connect(&server);
    let count = |client: &mut postgres::Client| -> i64 {
        client
            .query_one(
                &format!("SELECT count(*) FROM \"{}\".listener", ledger.schema()),
                &[],
            )
            .expect("count")
            .get(0)
    };
    let listener = ledger.listen().expect("listen");
    assert_eq!(count(&mut client), 1);
    drop(listener);
    assert_eq!(count(&mut client), 0, "dropping unregisters");
    let _kept = ledger.listen().expect("listen");
    let pid: i32 = client
        .query_one(
            &format!("SELECT pid FROM \"{}\".listener", ledger.schema()),
            &[],
        )
        .expect("pid")
        .get(0);
    client
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .expect("terminate");
    thread::sleep(Duration::from_millis(100));
    ledger.expire_due().expect("sweep");
    assert_eq!(count(&mut client), 0, "the dead listener is swept");
}

/// A grant keeps its holds in the global lock order (registration position, then type by
/// bytes), whatever the order of its requirements: the order its rows are locked in, by the
/// grant and again by the release.
#[test]
fn holds_are_kept_in_the_lock_order() {
    let Some(server) = test_server("holds_are_kept_in_the_lock_order") else {
        return;
    };
    let ledger = builder(&server).connect().expect("connect");
    let gpus = rm_model::ResourceCapacity::of(2, Unit::DEVICES).expect("valid");
    // Registered first, named last.
    let zz = rm_model::Resource::new(
        "zz",
        ResourceType::Compute,
        rm_model::ResourceCapacity::of(8, Unit::CORES).expect("valid"),
    )
    .expect("valid")
    .with_capacity(ResourceType::Gpu, gpus)
    .with_label("host", "zz")
    .expect("valid");
    ledger.register_resource(zz).expect("register");
    let aa = host("aa", 8, 16).with_label("host", "aa").expect("valid");
    ledger.register_resource(aa).expect("register");
    let on = |name: &str| rm_model::Constraint::label("host").expect("valid").eq(name);
    let request = rm_model::ReservationRequest::new(
        rm_model::RequesterId::new("t").expect("valid"),
        vec![
            rm_model::ResourceRequirement::new(ResourceType::Memory, 1, Unit::GIB),
            rm_model::ResourceRequirement::new(ResourceType::Gpu, 1, Unit::DEVICES),
            rm_model::ResourceRequirement::new(ResourceType::Compute, 1, Unit::CORES)
                .with_constraint(on("aa")),
            rm_model::ResourceRequirement::new(ResourceType::Compute, 2, Unit::CORES)
                .with_constraint(on("zz")),
        ],
    );
    let hold = ledger.reserve(&request).expect("granted");
    let row = connect(&server)
        .query_one(
            &format!(
                "SELECT hold_resource, hold_type, hold_amount FROM {}.reservation WHERE id = $1",
                ledger.schema()
            ),
            &[&hold.id.to_string()],
        )
        .expect("the reservation's row");
    let (resources, types, amounts): (Vec<String>, Vec<String>, Vec<i64>) =
        (row.get(0), row.get(1), row.get(2));
    assert_eq!(resources, ["zz", "zz", "aa", "aa"]);
    assert_eq!(types, ["compute", "gpu", "compute", "memory"]);
    assert_eq!(amounts, [2_000, 1_000, 1_000, 1_000]);
    ledger.confirm(&hold.id, None).expect("confirm");
    ledger.release(&hold.id, None).expect("release");
    assert!(ledger.audit().expect("audit").is_clean());
    let snapshot = ledger.snapshot().expect("snapshot");
    assert!(
        snapshot.usage.iter().all(|u| u.free == u.capacity),
        "all given back"
    );
}

/// The schema's own rules hold whatever a client sends: no amount below zero, no state but
/// the six (since version 5 as domains, checked without reading the rule again per
/// statement), and a refused write changes nothing.
#[test]
fn the_tables_refuse_negative_amounts_and_unknown_states() {
    let Some(server) = test_server("the_tables_refuse_negative_amounts_and_unknown_states") else {
        return;
    };
    let ledger = builder(&server).connect().expect("connect");
    ledger
        .register_resource(host("n0", 4, 8))
        .expect("register");
    let hold = ledger.reserve(&cores("t", 1)).expect("granted");
    let schema = ledger.schema().to_owned();
    let mut client = connect(&server);
    for (what, sql) in [
        (
            "a negative hold",
            format!("UPDATE {schema}.capacity SET held = -1 WHERE resource = 'n0'"),
        ),
        (
            "a negative maximum",
            format!("UPDATE {schema}.capacity SET maximum = -5 WHERE resource = 'n0'"),
        ),
        (
            "an unknown state",
            format!("UPDATE {schema}.reservation SET state = 'lost'"),
        ),
    ] {
        let err = client.batch_execute(&sql).expect_err(what);
        assert_eq!(
            err.code(),
            Some(&postgres::error::SqlState::CHECK_VIOLATION),
            "{what}: {err}"
        );
    }
    assert_eq!(
        ledger.get(&hold.id).expect("get").state,
        ReservationState::Pending
    );
    let usage = ledger.snapshot().expect("snapshot");
    let usage = usage.usage_of("n0", &ResourceType::Compute).expect("cores");
    assert_eq!(usage.pending, 1.into(), "nothing changed");
    assert!(ledger.audit().expect("audit").is_clean());
}

/// A transaction of `client` holding the capacity rows of `resource` locked.
fn lock_rows<'c>(
    client: &'c mut postgres::Client,
    schema: &str,
    resource: &str,
) -> postgres::Transaction<'c> {
    let mut tx = client.transaction().expect("begin");
    tx.execute(
        &format!("SELECT 1 FROM {schema}.capacity WHERE resource = $1 FOR UPDATE"),
        &[&resource],
    )
    .expect("lock the rows");
    tx
}

#[test]
fn a_grant_in_flight_steers_the_processs_other_plans() {
    let Some(server) = test_server("a_grant_in_flight_steers_the_processs_other_plans") else {
        return;
    };
    // Balanced puts one core on the emptier share: n0 (7 of 8 left) before n1 (5 of 6),
    // and n1 (5 of 6) before n0 once one core of n0 is taken (6 of 8).
    let ledger = builder(&server)
        .lock_timeout(Duration::from_secs(30))
        // Every plan reads the rows first: a grant in flight must survive that read (its
        // hold is not in the rows until it commits).
        .max_staleness(Duration::from_millis(1))
        .connect()
        .expect("connect");
    ledger
        .register_resource(host("n0", 8, 16))
        .expect("register");
    ledger
        .register_resource(host("n1", 6, 16))
        .expect("register");
    let one = || cores("t", 1).with_strategy(ReservationStrategy::Balanced);
    // Another transaction holds n0's rows, so a grant on n0 waits in flight.
    let mut blocker = connect(&server);
    let blocker_pid: i32 = blocker
        .query_one("SELECT pg_backend_pid()", &[])
        .expect("pid")
        .get(0);
    let tx = lock_rows(&mut blocker, ledger.schema(), "n0");
    thread::scope(|scope| {
        let ledger = &ledger;
        let first = scope.spawn(move || ledger.reserve(&one()));
        let mut watcher = connect(&server);
        // Waiting on this test's blocker (other tests may share the server).
        let waiting = |watcher: &mut postgres::Client| -> i64 {
            watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE $1 = ANY (pg_blocking_pids(pid))",
                    &[&blocker_pid],
                )
                .expect("pg_stat_activity")
                .get(0)
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while waiting(&mut watcher) == 0 {
            assert!(
                Instant::now() < deadline,
                "the first grant never waited on n0"
            );
            thread::sleep(Duration::from_millis(10));
        }
        // While it waits, the process's next plan counts its hold as taken: n1, at once.
        let (sent, received) = mpsc::channel();
        scope.spawn(move || {
            // The receiver is gone only once the test has failed.
            let _ = sent.send(ledger.reserve(&one()));
        });
        let second = received.recv_timeout(Duration::from_secs(20));
        tx.rollback().expect("let n0 go");
        let second = second
            .expect("the second grant did not queue behind the first")
            .expect("granted");
        assert_eq!(second.items[0].resource.as_str(), "n1");
        let first = first.join().expect("no panic").expect("granted");
        assert_eq!(first.items[0].resource.as_str(), "n0");
    });
    // A grant that fails in flight gives its plan's holds back: after a lock timeout on n0,
    // the same ledger's next plan sees n0 as it was.
    for hold in ledger.snapshot().expect("snapshot").active {
        ledger.cancel(&hold.id, None).expect("cancel");
    }
    let quick = builder(&server)
        .schema(ledger.schema())
        .lock_timeout(Duration::from_millis(50))
        // No read between the two grants: the view says what the first one gave back.
        .max_staleness(Duration::from_secs(600))
        .connect()
        .expect("connect");
    let tx = lock_rows(&mut blocker, ledger.schema(), "n0");
    let timed_out = quick.reserve(&one());
    assert!(
        matches!(timed_out, Err(LedgerError::Timeout { .. })),
        "{timed_out:?}"
    );
    tx.rollback().expect("let n0 go");
    let again = quick.reserve(&one()).expect("granted");
    assert_eq!(again.items[0].resource.as_str(), "n0");
    assert!(ledger.audit().expect("audit").is_clean());
}
