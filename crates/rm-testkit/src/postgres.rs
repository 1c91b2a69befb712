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
        let psql = find_bin()
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

/// Whether the server is durable: benches measure with `fsync` on, tests run without it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// `fsync`, `synchronous_commit` and full-page writes off: fast, lost on a crash.
    Throwaway,
    /// PostgreSQL's defaults: every commit reaches the disk.
    Durable,
}

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
    let cluster = match durability {
        Durability::Throwaway => {
            static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
            CLUSTER.get_or_init(|| Cluster::start(Durability::Throwaway))
        }
        Durability::Durable => {
            static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
            CLUSTER.get_or_init(|| Cluster::start(Durability::Durable))
        }
    };
    match cluster {
        Ok(cluster) => Some(TestServer {
            url: cluster.url.clone(),
            name,
            data_dir: Some(cluster.data.clone()),
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

/// A private cluster this process started.
#[derive(Debug)]
struct Cluster {
    url: String,
    data: PathBuf,
}

/// Runs PostgreSQL's tools as `postgres` when this process is root (the server refuses to
/// run as root).
struct Tools {
    bin: PathBuf,
    as_postgres: bool,
}

impl Tools {
    fn find() -> Result<Tools, String> {
        let bin = find_bin()
            .ok_or("no initdb and pg_ctl were found on PATH or under /usr/lib/postgresql")?;
        Ok(Tools {
            bin,
            as_postgres: is_root(),
        })
    }

    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    /// Runs a tool to completion; its output goes into the error when it fails.
    fn run(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let output = self
            .command(tool)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|err| format!("{tool} could not be run: {err}"))?;
        if output.status.success() {
            return Ok(());
        }
        Err(format!(
            "{tool} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn find_bin() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_tools(&dir) {
                return Some(dir);
            }
        }
    }
    // Debian keeps the server's tools out of PATH, one directory per major version.
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_tools(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// Whether this process runs as root, read from `/proc` (no `unsafe` call to `getuid`).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?;
            line.split_whitespace().nth(1).map(|uid| uid == "0")
        })
        .unwrap_or(false)
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|err| format!("no loopback port could be bound: {err}"))?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|err| err.to_string())
}

impl Cluster {
    fn start(durability: Durability) -> Result<Cluster, String> {
        Self::start_named(
            durability,
            match durability {
                Durability::Throwaway => "throwaway",
                Durability::Durable => "durable",
            },
        )
    }

    fn start_named(durability: Durability, kind: &str) -> Result<Cluster, String> {
        let tools = Tools::find()?;
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("rm-postgres-{pid}-{kind}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|err| format!("{}: {err}", dir.display()))?;
        let result = Self::start_in(&tools, &dir, durability, pid);
        if result.is_err() {
            let _ = tools.run(
                "pg_ctl",
                &["-D", &path(&dir.join("data")), "stop", "-m", "immediate"],
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
        result
    }

    fn start_in(
        tools: &Tools,
        dir: &Path,
        durability: Durability,
        pid: u32,
    ) -> Result<Cluster, String> {
        if tools.as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir)
                .status()
                .map_err(|err| format!("chown could not be run: {err}"))?;
            if !status.success() {
                return Err(format!("chown of {} failed", dir.display()));
            }
        }
        let data = dir.join("data");
        tools.run(
            "initdb",
            &[
                "-D",
                &path(&data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ],
        )?;
        let port = free_port()?;
        let mut options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c max_connections=200",
            path(dir)
        );
        if durability == Durability::Throwaway {
            options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        tools.run(
            "pg_ctl",
            &[
                "-D",
                &path(&data),
                "-l",
                &path(&dir.join("server.log")),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )?;
        Self::watch(tools, dir, &data, pid)?;
        Ok(Cluster {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            data,
        })
    }

    /// Starts the watcher that stops the server and removes `dir` once process `pid` has
    /// exited.
    fn watch(tools: &Tools, dir: &Path, data: &Path, pid: u32) -> Result<(), String> {
        let pg_ctl = tools.bin.join("pg_ctl");
        let stop = if tools.as_postgres {
            format!(
                "runuser -u postgres -- '{}' -D '{}' stop -m immediate",
                path(&pg_ctl),
                path(data)
            )
        } else {
            format!("'{}' -D '{}' stop -m immediate", path(&pg_ctl), path(data))
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf '{}'",
            path(dir)
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(|_| ())
            .map_err(|err| format!("the cluster's watcher could not be started: {err}"))
    }
}

/// A cluster of one test's own, for tests that crash or restart the server: durable (so a
/// crash is recovered from the log, as in production), stopped and removed when dropped (and
/// by a watcher once the process exits, should the drop not run).
#[derive(Debug)]
pub struct OwnServer {
    /// Where to reach it, and a name for what the test creates there.
    pub server: TestServer,
    data: PathBuf,
    dir: PathBuf,
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
    match Cluster::start_named(Durability::Durable, &format!("own-{n}")) {
        Ok(cluster) => {
            let dir = cluster
                .data
                .parent()
                .map_or_else(|| cluster.data.clone(), Path::to_path_buf);
            Some(OwnServer {
                server: TestServer {
                    url: cluster.url,
                    name: format!("t{}_own{n}", std::process::id()),
                    data_dir: Some(cluster.data.clone()),
                },
                data: cluster.data,
                dir,
            })
        }
        Err(reason) => {
            assert!(
                std::env::var("RM_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "{who}: PostgreSQL is required (RM_REQUIRE_POSTGRES=1) but {reason}"
            );
            skip(who, &reason);
            None
        }
    }
}

impl OwnServer {
    /// Restarts the server as a crash would (`pg_ctl restart -m immediate`: no shutdown
    /// checkpoint, recovery from the log at start), waiting until it accepts connections.
    pub fn restart_immediate(&self) -> Result<(), String> {
        let tools = Tools::find()?;
        tools.run(
            "pg_ctl",
            &[
                "-D",
                &path(&self.data),
                // The server's output goes to its log, never to our pipes (which would keep
                // this call waiting for the server to exit).
                "-l",
                &path(&self.dir.join("server.log")),
                "-w",
                "-t",
                "60",
                "restart",
                "-m",
                "immediate",
            ],
        )
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        if let Ok(tools) = Tools::find() {
            let _ = tools.run(
                "pg_ctl",
                &["-D", &path(&self.data), "stop", "-m", "immediate"],
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path(path: &Path) -> String {
    path.display().to_string()
}
