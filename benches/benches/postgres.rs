//! The PostgreSQL ledger against its peers on the same server, a private cluster with
//! durability on (`fsync`, synchronous commit), in the same binary:
//!
//! - `cycle`: reserve → confirm → release of one core on one connection, against `floor`:
//!   a one-row `UPDATE … RETURNING` in its own transaction, the least a transactional round
//!   trip costs on this server.
//!   Beside it, a hold confirmed on grant (reserve → release), for reference.
//! - `contention`: 8 connections on 8 threads, one pool of 16 resources, holds of 1 to 4
//!   resources (reserve → confirm → release, and a hold confirmed on grant: reserve →
//!   release, two commits as the slot table's), against an Airflow-style slot table done right:
//!   the pool's row locked with `SELECT … FOR UPDATE` (waiting, not `NOWAIT`), the running
//!   holders of each resource asked for counted against its slots, a row inserted per slot,
//!   committed; released by deleting them. The slot table runs twice: with its statements
//!   prepared once per connection (one round trip each, nothing parsed again: the strongest
//!   peer), and as Airflow's driver sends them (simple queries with the values in the text,
//!   parsed and planned each time, one round trip each). Time per hold of all threads
//!   together (lower is more throughput); over-allocation is counted in SQL after each run,
//!   for every variant.
//! - `placement`: a co-located task on 1,500 three-dimensional nodes with label constraints
//!   through PostgreSQL (bin-pack); the median and p99 of 2,000 single placements are printed
//!   before the criterion run.
//!
//! Without a server (no `RM_POSTGRES_URL`, no PostgreSQL binaries) the bench says so and
//! measures nothing.
#![expect(
    clippy::print_stderr,
    reason = "the bench reports percentiles, over-allocation and why it skips"
)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group};
use postgres::{Client, NoTls};
use rm_model::{
    Constraint, LedgerError, RequesterId, ReservationLedger, ReservationRequest,
    ReservationStrategy, Resource, ResourceCapacity, ResourceRequirement, ResourceType, Unit,
};
use rm_postgres::PgLedger;
use rm_testkit::postgres::{Durability, TestServer, server};

fn durable() -> Option<TestServer> {
    server("the postgres bench", Durability::Durable)
}

/// A fresh schema's ledger on the durable server.
fn ledger(server: &TestServer, connections: usize) -> PgLedger {
    let schema = rm_testkit::postgres::server("schema", Durability::Durable)
        .expect("the same server")
        .name;
    PgLedger::builder(server.url.clone())
        .schema(schema)
        .pool_size(connections)
        .retention(Duration::from_secs(1))
        .connect()
        .expect("connect")
}

fn one_core() -> ReservationRequest {
    ReservationRequest::new(
        RequesterId::new("bench").expect("valid"),
        vec![ResourceRequirement::new(
            ResourceType::Compute,
            1,
            Unit::CORES,
        )],
    )
}

fn node(name: &str, cores: i32) -> Resource {
    Resource::new(
        name,
        ResourceType::Compute,
        ResourceCapacity::of(cores, Unit::CORES).expect("valid"),
    )
    .expect("valid")
}

fn cycle(c: &mut Criterion) {
    let Some(server) = durable() else { return };
    let ledger = ledger(&server, 1);
    ledger
        .register_resource(node("n0", 1_000_000))
        .expect("register");
    let mut floor = Client::connect(&server.url, NoTls).expect("connect");
    let name = rm_testkit::postgres::server("schema", Durability::Durable)
        .expect("the same server")
        .name;
    floor
        .batch_execute(&format!(
            "CREATE TABLE {name} (id int PRIMARY KEY, n bigint NOT NULL);
             INSERT INTO {name} VALUES (1, 0);"
        ))
        .expect("create the floor's table");
    let update = floor
        .prepare(&format!(
            "UPDATE {name} SET n = n + 1 WHERE id = 1 RETURNING n"
        ))
        .expect("prepare");
    let request = one_core();
    let mut group = c.benchmark_group("postgres cycle");
    group.bench_function("floor: one-row UPDATE RETURNING", |b| {
        b.iter(|| black_box(floor.query_one(&update, &[]).expect("update")));
    });
    let direct = one_core().confirm_on_grant(true);
    group.bench_function("rm-postgres: reserve confirmed on grant, release", |b| {
        b.iter(|| {
            let hold = ledger.reserve(black_box(&direct)).expect("reserve");
            ledger
                .release(&hold.id, Some(hold.fencing_token))
                .expect("release");
        });
    });
    group.bench_function("rm-postgres: reserve, confirm, release", |b| {
        b.iter(|| {
            let hold = ledger.reserve(black_box(&request)).expect("reserve");
            ledger
                .confirm(&hold.id, Some(hold.fencing_token))
                .expect("confirm");
            ledger
                .release(&hold.id, Some(hold.fencing_token))
                .expect("release");
        });
    });
    group.finish();
}

/// Holds of 1 to 4 of 16 resources (4 slots each), chosen by a per-thread sequence.
fn pick(state: &mut u64) -> Vec<usize> {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1);
    let count = 1 + (*state >> 33) as usize % 4;
    let first = (*state >> 40) as usize % 16;
    let mut picked: Vec<usize> = (0..count).map(|k| (first + k * 5) % 16).collect();
    picked.sort_unstable();
    picked.dedup();
    picked
}

/// The slot table done right, as Airflow keeps pools: one row for the pool, locked by every
/// hold; per resource its slots; one row per running holder and resource.
struct SlotTable {
    schema: String,
}

/// A connection's prepared statements of the slot table.
struct SlotStatements {
    lock: postgres::Statement,
    full: postgres::Statement,
    insert: postgres::Statement,
    release: postgres::Statement,
}

impl SlotTable {
    fn create(server: &TestServer) -> SlotTable {
        let schema = rm_testkit::postgres::server("schema", Durability::Durable)
            .expect("the same server")
            .name;
        let mut client = Client::connect(&server.url, NoTls).expect("connect");
        client
            .batch_execute(&format!(
                "CREATE SCHEMA {schema};
                 CREATE TABLE {schema}.slot_pool (name text PRIMARY KEY);
                 INSERT INTO {schema}.slot_pool VALUES ('default_pool');
                 CREATE TABLE {schema}.slot (resource text PRIMARY KEY, slots int NOT NULL);
                 CREATE TABLE {schema}.task_instance (id bigserial PRIMARY KEY,
                     resource text NOT NULL REFERENCES {schema}.slot (resource),
                     hold bigint NOT NULL, state text NOT NULL);
                 CREATE INDEX ON {schema}.task_instance (resource, state);
                 CREATE INDEX ON {schema}.task_instance (hold);
                 INSERT INTO {schema}.slot
                     SELECT 'p' || lpad(i::text, 2, '0'), 4 FROM generate_series(0, 15) i;"
            ))
            .expect("create the slot table");
        SlotTable { schema }
    }

    /// The hold's statements, prepared once per connection (as a driver with a statement
    /// cache does), so that each is one round trip.
    fn prepare(&self, client: &mut Client) -> SlotStatements {
        let schema = &self.schema;
        let mut prepare = |sql: String| client.prepare(&sql).expect("prepare");
        SlotStatements {
            lock: prepare(format!(
                "SELECT 1 FROM {schema}.slot_pool WHERE name = 'default_pool' FOR UPDATE"
            )),
            full: prepare(format!(
                "SELECT count(*) FROM {schema}.slot s WHERE s.resource = ANY ($1) \
                 AND s.slots <= (SELECT count(*) FROM {schema}.task_instance t \
                     WHERE t.resource = s.resource AND t.state = 'running')"
            )),
            insert: prepare(format!(
                "INSERT INTO {schema}.task_instance (resource, hold, state) \
                 SELECT unnest($1::text[]), $2, 'running'"
            )),
            release: prepare(format!(
                "DELETE FROM {schema}.task_instance WHERE hold = $1"
            )),
        }
    }

    /// One hold: granted (and released) or refused; `false` when refused.
    fn cycle(
        client: &mut Client,
        statements: &SlotStatements,
        resources: &[usize],
        hold: i64,
    ) -> bool {
        let names: Vec<String> = resources.iter().map(|p| format!("p{p:02}")).collect();
        let mut tx = client.transaction().expect("begin");
        tx.execute(&statements.lock, &[]).expect("lock the pool");
        let full: i64 = tx
            .query_one(&statements.full, &[&names])
            .expect("count")
            .get(0);
        if full > 0 {
            tx.rollback().expect("rollback");
            return false;
        }
        tx.execute(&statements.insert, &[&names, &hold])
            .expect("insert");
        tx.commit().expect("commit");
        client
            .execute(&statements.release, &[&hold])
            .expect("release");
        true
    }

    /// The same hold as Airflow's driver sends it: each statement a simple query with its
    /// values written into the text (parsed and planned by the server each time), one round
    /// trip each, `BEGIN` and `COMMIT` included.
    fn cycle_simple(&self, client: &mut Client, resources: &[usize], hold: i64) -> bool {
        let schema = &self.schema;
        let names: Vec<String> = resources.iter().map(|p| format!("'p{p:02}'")).collect();
        let names = format!("ARRAY[{}]::text[]", names.join(","));
        client.batch_execute("BEGIN").expect("begin");
        client
            .batch_execute(&format!(
                "SELECT 1 FROM {schema}.slot_pool WHERE name = 'default_pool' FOR UPDATE"
            ))
            .expect("lock the pool");
        let counted = client
            .simple_query(&format!(
                "SELECT count(*) FROM {schema}.slot s WHERE s.resource = ANY ({names}) \
                 AND s.slots <= (SELECT count(*) FROM {schema}.task_instance t \
                     WHERE t.resource = s.resource AND t.state = 'running')"
            ))
            .expect("count");
        let full = counted.iter().any(|message| {
            matches!(message, postgres::SimpleQueryMessage::Row(row)
                if row.get(0).is_some_and(|count| count != "0"))
        });
        if full {
            client.batch_execute("ROLLBACK").expect("rollback");
            return false;
        }
        client
            .batch_execute(&format!(
                "INSERT INTO {schema}.task_instance (resource, hold, state) \
                 SELECT unnest({names}), {hold}, 'running'"
            ))
            .expect("insert");
        client.batch_execute("COMMIT").expect("commit");
        client
            .batch_execute(&format!(
                "DELETE FROM {schema}.task_instance WHERE hold = {hold}"
            ))
            .expect("release");
        true
    }

    fn over_allocated(&self, client: &mut Client) -> i64 {
        let schema = &self.schema;
        client
            .query_one(
                &format!(
                    "SELECT count(*) FROM {schema}.slot s WHERE s.slots < \
                     (SELECT count(*) FROM {schema}.task_instance t \
                      WHERE t.resource = s.resource AND t.state = 'running')"
                ),
                &[],
            )
            .expect("count")
            .get(0)
    }
}

/// Runs `iters` holds on each of 8 threads; returns the wall time divided by all holds.
fn on_eight_threads(iters: u64, run: impl Fn(u64, u64) + Sync) -> Duration {
    let start = Instant::now();
    thread::scope(|scope| {
        for t in 0..8 {
            let run = &run;
            scope.spawn(move || run(t, iters));
        }
    });
    start.elapsed() / 8
}

fn contention(c: &mut Criterion) {
    let Some(server) = durable() else { return };
    let ledger = ledger(&server, 8);
    for r in 0..16 {
        ledger
            .register_resource(node(&format!("p{r:02}"), 4))
            .expect("register");
    }
    let table = SlotTable::create(&server);
    let mut group = c.benchmark_group("postgres contention 8 connections");
    group.sample_size(10);
    for direct in [false, true] {
        let (holds, refused) = (AtomicU64::new(0), AtomicU64::new(0));
        let name = if direct {
            "rm-postgres, confirmed on grant"
        } else {
            "rm-postgres"
        };
        group.bench_function(BenchmarkId::new(name, "16 resources"), |b| {
            b.iter_custom(|iters| {
                on_eight_threads(iters, |t, iters| {
                    let mut state = t + 1;
                    for _ in 0..iters {
                        let requirements = pick(&mut state)
                            .into_iter()
                            .map(|_| {
                                ResourceRequirement::new(ResourceType::Compute, 1, Unit::CORES)
                            })
                            .collect();
                        let request = ReservationRequest::new(
                            RequesterId::new("bench").expect("valid"),
                            requirements,
                        )
                        .with_strategy(ReservationStrategy::Balanced)
                        .confirm_on_grant(direct);
                        match ledger.reserve(&request) {
                            Ok(hold) => {
                                let fence = Some(hold.fencing_token);
                                if !direct {
                                    ledger.confirm(&hold.id, fence).expect("confirm");
                                }
                                ledger.release(&hold.id, fence).expect("release");
                                holds.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(LedgerError::InsufficientCapacity { .. }) => {
                                refused.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(other) => panic!("{other}"),
                        }
                    }
                })
            });
        });
        let audit = ledger.audit().expect("audit");
        eprintln!(
            "{name}: {} holds, {} refused, audit violations {}",
            holds.load(Ordering::Relaxed),
            refused.load(Ordering::Relaxed),
            audit.violations.len()
        );
    }
    let next_hold = AtomicU64::new(0);
    for prepared in [true, false] {
        let (slot_holds, slot_refused) = (AtomicU64::new(0), AtomicU64::new(0));
        let name = if prepared {
            "slot table"
        } else {
            "slot table, simple queries"
        };
        group.bench_function(BenchmarkId::new(name, "16 resources"), |b| {
            b.iter_custom(|iters| {
                on_eight_threads(iters, |t, iters| {
                    let mut client = Client::connect(&server.url, NoTls).expect("connect");
                    let statements = prepared.then(|| table.prepare(&mut client));
                    let mut state = t + 1;
                    for _ in 0..iters {
                        let pools = pick(&mut state);
                        let hold = next_hold.fetch_add(1, Ordering::Relaxed) as i64;
                        let granted = match &statements {
                            Some(statements) => {
                                SlotTable::cycle(&mut client, statements, &pools, hold)
                            }
                            None => table.cycle_simple(&mut client, &pools, hold),
                        };
                        if granted {
                            slot_holds.fetch_add(1, Ordering::Relaxed);
                        } else {
                            slot_refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            });
        });
        let mut client = Client::connect(&server.url, NoTls).expect("connect");
        eprintln!(
            "{name}: {} holds, {} refused, over-allocated pools {}",
            slot_holds.load(Ordering::Relaxed),
            slot_refused.load(Ordering::Relaxed),
            table.over_allocated(&mut client)
        );
    }
    group.finish();
}

fn placement_request() -> ReservationRequest {
    let requirements = rm_benches::task_requirements(2, 8)
        .expect("valid")
        .into_iter()
        .map(|r| {
            r.with_constraint(Constraint::capability("arch").expect("valid").eq("x86_64"))
                .with_constraint(
                    Constraint::label("zone")
                        .expect("valid")
                        .is_in(["zone-1", "zone-2", "zone-3"]),
                )
        })
        .collect();
    ReservationRequest::new(RequesterId::new("t").expect("valid"), requirements)
        .with_strategy(ReservationStrategy::BinPack)
}

fn placement(c: &mut Criterion) {
    let Some(server) = durable() else { return };
    let ledger = ledger(&server, 1);
    for node in rm_benches::cluster(1_500).expect("valid") {
        ledger.register_resource(node).expect("register");
    }
    let request = placement_request();
    let mut times: Vec<Duration> = (0..2_000)
        .map(|_| {
            let start = Instant::now();
            let hold = ledger.reserve(&request).expect("placement");
            let took = start.elapsed();
            ledger.cancel(&hold.id, None).expect("cancel");
            took
        })
        .collect();
    times.sort_unstable();
    eprintln!(
        "placement on 1500 nodes through PostgreSQL, bin-pack: median {:?}, p99 {:?}",
        times[times.len() / 2],
        times[times.len() * 99 / 100]
    );
    let mut group = c.benchmark_group("postgres placement 1500 nodes");
    group.bench_function("rm-postgres: reserve and cancel, bin-pack", |b| {
        b.iter(|| {
            let hold = ledger.reserve(black_box(&request)).expect("placement");
            ledger.cancel(&hold.id, None).expect("cancel");
        });
    });
    group.finish();
}

criterion_group!(benches, cycle, contention, placement);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
