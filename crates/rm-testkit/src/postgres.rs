//! A real PostgreSQL server for tests and benches that need one: the server named by
//! `RM_POSTGRES_URL`, or else a private, throw-away cluster started from the machine's
//! PostgreSQL binaries (Debian's `postgresql` package: `initdb` and `pg_ctl`, found on `PATH`
//! or under `/usr/lib/postgresql/<version>/bin`) in a temporary directory, on a free loopback
//! port, run as the `postgres` user when the tests run as root.
//!
//! One cluster serves every test of a process; a watcher started with it stops the server and
//! removes its directory once that process (named by its id) has exited, however it exits.
//! Without a URL and without the binaries, [`server`] says why and returns `None` so the
//! caller can skip; with `RM_REQUIRE_POSTGRES=1` (as CI sets it) it panics instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rm_postgres::cluster::{PrivateCluster, server_binaries};

/// Where a test finds its server, and a name of its own for what it creates there.
#[derive(Clone, Debug)]
pub struct TestServer {
    /// The connection URL (`postgres://user@host:port/database`).
    pub url: String,
    /// A name no other test of this run uses (for a schema or a database), lowercase ASCII.
    pub name: String,
    /// The cluster's data directory when this process started it (`None` for
    /// `RM_POSTGRES_URL`).
    pub data_dir: Option<PathBuf>,
}

impl TestServer {
    /// Runs `sql` through `psql` (beside `initdb`, or on `PATH`) and returns its unaligned,
    /// tuples-only output: for harness checks and for auditors that read sums in SQL without
    /// the client under test.
    pub fn query(&self, sql: &str) -> Result<String, String> {
        let psql = server_binaries()
            .map(|bin| bin.join("psql"))
            .filter(|psql| psql.is_file())
            .unwrap_or_else(|| PathBuf::from("psql"));
        let output = Command::new(psql)
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.url,
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|err| format!("psql could not be run: {err}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
        }
    }
}

/// An auditor independent of the ledger's code: a connection of its own that reads, in one
/// read-only repeatable-read transaction, the capacities that are over-allocated and those
/// whose held amount differs from the sum of the active holds on them.
pub struct Auditor {
    client: postgres::Client,
    schema: String,
}

/// What one audit found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Findings {
    /// Capacities with `external + held > maximum`.
    pub over_allocated: i64,
    /// Capacities whose `held` differs from the sum of their active holds.
    pub mismatched: i64,
}

impl Findings {
    /// Both counts together.
    pub fn total(&self) -> i64 {
        self.over_allocated + self.mismatched
    }
}

impl Auditor {
    /// Connects to `server` to audit the ledger in `schema`.
    pub fn connect(server: &TestServer, schema: &str) -> Result<Auditor, String> {
        let client = postgres::Client::connect(&server.url, postgres::NoTls)
            .map_err(|err| format!("the auditor could not connect: {err}"))?;
        Ok(Auditor {
            client,
            schema: schema.to_owned(),
        })
    }

    /// Reads the sums once.
    pub fn audit(&mut self) -> Result<Findings, String> {
        let schema = &self.schema;
        let mut tx = self
            .client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(|err| err.to_string())?;
        let row = tx
            .query_one(
                &format!(
                    "SELECT count(*) FILTER (WHERE c.external + c.held > c.maximum),
                            count(*) FILTER (WHERE c.held <> coalesce(s.amount, 0))
                     FROM \"{schema}\".capacity c LEFT JOIN (
                         SELECT h.res, h.typ, sum(h.amount) AS amount
                         FROM \"{schema}\".reservation r,
                             unnest(r.hold_resource, r.hold_type, r.hold_amount)
                                 AS h(res, typ, amount)
                         WHERE r.state IN ('pending', 'confirmed')
                         GROUP BY h.res, h.typ) s
                     ON s.res = c.resource AND s.typ = c.resource_type"
                ),
                &[],
            )
            .map_err(|err| err.to_string())?;
        let findings = Findings {
            over_allocated: row.get(0),
            mismatched: row.get(1),
        };
        tx.commit().map_err(|err| err.to_string())?;
        Ok(findings)
    }
}

/// Drops the schemas that test processes which have exited left on a shared server (each
/// test names its schema `t<pid>_<n>` after the process that created it). Best effort: a
/// server psql cannot reach is left as it is.
pub(crate) fn drop_schemas_of_exited_processes(server: &TestServer) {
    let Ok(names) =
        server.query("SELECT nspname FROM pg_namespace WHERE nspname ~ '^t[0-9]+_[0-9]+$'")
    else {
        return;
    };
    for name in names.lines() {
        let Some(pid) = name
            .strip_prefix('t')
            .and_then(|rest| rest.split('_').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            let _ = server.query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"));
        }
    }
}

pub use rm_postgres::cluster::Durability;

/// A server for the test (or bench) `who`, or `None` after printing why there is none.
///
/// # Panics
/// When no server can be had and `RM_REQUIRE_POSTGRES=1` is set.
pub fn server(who: &str, durability: Durability) -> Option<TestServer> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "t{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    if let Ok(url) = std::env::var("RM_POSTGRES_URL")
        && !url.is_empty()
    {
        let server = TestServer {
            url,
            name,
            data_dir: None,
        };
        // A given server outlives this process: what earlier test processes created there
        // (schemas named `t<pid>_…`) goes once they have exited.
        static SWEPT: OnceLock<()> = OnceLock::new();
        SWEPT.get_or_init(|| drop_schemas_of_exited_processes(&server));
        return Some(server);
    }
    // Kept for the process's life: the cluster's watcher stops it once the process exits.
    let cluster = match durability {
        Durability::Throwaway => {
            static CLUSTER: OnceLock<Result<PrivateCluster, String>> = OnceLock::new();
            CLUSTER.get_or_init(|| {
                PrivateCluster::start(Durability::Throwaway).map_err(|err| err.to_string())
            })
        }
        Durability::Durable => {
            static CLUSTER: OnceLock<Result<PrivateCluster, String>> = OnceLock::new();
            CLUSTER.get_or_init(|| {
                PrivateCluster::start(Durability::Durable).map_err(|err| err.to_string())
            })
        }
    };
    match cluster {
        Ok(cluster) => Some(TestServer {
            url: cluster.url().to_owned(),
            name,
            data_dir: Some(cluster.data_dir().to_path_buf()),
        }),
        Err(reason) => {
            assert!(
                std::env::var("RM_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "{who}: PostgreSQL is required (RM_REQUIRE_POSTGRES=1) but {reason}"
            );
            skip(who, reason);
            None
        }
    }
}

#[expect(
    clippy::print_stderr,
    reason = "a test that skips says why, where the test runner shows it"
)]
fn skip(who: &str, reason: &str) {
    eprintln!(
        "skipping {who}: {reason}; set RM_POSTGRES_URL or install PostgreSQL (Debian's postgresql)"
    );
}

/// A cluster of one test's own, for tests that crash or restart the server: durable (so a
/// crash is recovered from the log, as in production), stopped and removed when dropped (and
/// by a watcher once the process exits, should the drop not run).
#[derive(Debug)]
pub struct OwnServer {
    /// Where to reach it, and a name for what the test creates there.
    pub server: TestServer,
    cluster: PrivateCluster,
}

/// Starts a cluster of its own for the test `who`, or says why not and returns `None` (it
/// needs PostgreSQL's binaries even when `RM_POSTGRES_URL` is set: a given server cannot be
/// restarted by a test).
///
/// # Panics
/// When none can be started and `RM_REQUIRE_POSTGRES=1` is set.
pub fn own_server(who: &str) -> Option<OwnServer> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    match PrivateCluster::start(Durability::Durable) {
        Ok(cluster) => Some(OwnServer {
            server: TestServer {
                url: cluster.url().to_owned(),
                name: format!("t{}_own{n}", std::process::id()),
                data_dir: Some(cluster.data_dir().to_path_buf()),
            },
            cluster,
        }),
        Err(reason) => {
            assert!(
                std::env::var("RM_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "{who}: PostgreSQL is required (RM_REQUIRE_POSTGRES=1) but {reason}"
            );
            skip(who, &reason.to_string());
            None
        }
    }
}

impl OwnServer {
    /// Restarts the server as a crash would (`pg_ctl restart -m immediate`: no shutdown
    /// checkpoint, recovery from the log at start), waiting until it accepts connections.
    pub fn restart_immediate(&self) -> Result<(), String> {
        self.cluster
            .restart_immediate()
            .map_err(|err| err.to_string())
    }
}
