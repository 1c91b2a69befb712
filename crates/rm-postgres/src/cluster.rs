//! A private, throw-away PostgreSQL cluster started from the machine's server binaries: for
//! test harnesses, benches and `rmctl stress` when no server is given.
//!
//! [`PrivateCluster::start`] runs PostgreSQL's own tools (Debian's `postgresql` package:
//! `initdb` and `pg_ctl`, found on `PATH` or under `/usr/lib/postgresql/<version>/bin`) in a
//! new temporary directory, on a free loopback port, accepting connections from loopback only
//! (trust authentication, so nothing outside this host can reach it). When this process runs
//! as root the tools run as the `postgres` user, as the server refuses to run as root.
//!
//! The cluster is stopped and its directory removed when the value is dropped, and, should the
//! drop never run (the process is killed, or keeps the cluster in a `static`), by a watcher
//! started with it that waits for this process (by its id) to exit.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// Whether a private cluster makes its commits durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// `fsync`, `synchronous_commit` and full-page writes off: fast, and lost on a crash of
    /// the machine. For tests.
    Throwaway,
    /// PostgreSQL's defaults: every commit reaches the disk. For benches and for crash tests,
    /// which recover from the log as production does.
    Durable,
}

/// Why a private cluster could not be started or restarted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// No PostgreSQL server binaries were found.
    #[error(
        "no initdb and pg_ctl were found on PATH or under /usr/lib/postgresql (install Debian's postgresql)"
    )]
    NotInstalled,
    /// A tool ran and failed; its output says why.
    #[error("{tool} failed ({status}): {output}")]
    Tool {
        /// The tool (`initdb`, `pg_ctl`, `chown`).
        tool: &'static str,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed.
        output: String,
    },
    /// A tool could not be run, or the directory or a port could not be had.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// A PostgreSQL cluster this process started, stopped and removed when dropped.
#[derive(Debug)]
pub struct PrivateCluster {
    url: String,
    dir: PathBuf,
    data: PathBuf,
    tools: Tools,
}

impl PrivateCluster {
    /// Initialises and starts a cluster in a new directory under the system's temporary
    /// directory, waiting until it accepts connections (up to 60 s).
    ///
    /// # Errors
    /// [`ClusterError::NotInstalled`] without the server binaries; otherwise the step that
    /// failed (nothing is left behind).
    pub fn start(durability: Durability) -> Result<PrivateCluster, ClusterError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let tools = Tools::find()?;
        let pid = std::process::id();
        let kind = match durability {
            Durability::Throwaway => "throwaway",
            Durability::Durable => "durable",
        };
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("rm-postgres-{pid}-{kind}-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|source| ClusterError::Io {
            what: format!("create {}", dir.display()),
            source,
        })?;
        let data = dir.join("data");
        // On failure the value's drop stops what started and removes the directory.
        let mut cluster = PrivateCluster {
            url: String::new(),
            dir,
            data,
            tools,
        };
        cluster.url = cluster.init_and_start(durability, pid)?;
        Ok(cluster)
    }

    fn init_and_start(&self, durability: Durability, pid: u32) -> Result<String, ClusterError> {
        if self.tools.as_postgres {
            let output = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&self.dir)
                .stdin(Stdio::null())
                .output()
                .map_err(|source| ClusterError::Io {
                    what: "run chown".to_owned(),
                    source,
                })?;
            if !output.status.success() {
                return Err(ClusterError::Tool {
                    tool: "chown",
                    status: output.status,
                    output: String::from_utf8_lossy(&output.stderr).into_owned(),
                });
            }
        }
        self.tools.run(
            "initdb",
            &[
                "-D",
                &display(&self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ],
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|source| ClusterError::Io {
                what: "find a free loopback port".to_owned(),
                source,
            })?
            .port();
        let mut options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c max_connections=200",
            display(&self.dir)
        );
        if durability == Durability::Throwaway {
            options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        self.tools.run(
            "pg_ctl",
            &[
                "-D",
                &display(&self.data),
                "-l",
                &display(&self.dir.join("server.log")),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )?;
        self.watch(pid)?;
        Ok(format!("postgres://postgres@127.0.0.1:{port}/postgres"))
    }

    /// Starts the watcher that stops the server and removes the directory once process
    /// `pid` has exited.
    fn watch(&self, pid: u32) -> Result<(), ClusterError> {
        let pg_ctl = self.tools.bin.join("pg_ctl");
        let stop = format!(
            "{}'{}' -D '{}' stop -m immediate",
            if self.tools.as_postgres {
                "runuser -u postgres -- "
            } else {
                ""
            },
            display(&pg_ctl),
            display(&self.data)
        );
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf '{}'",
            display(&self.dir)
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(drop)
            .map_err(|source| ClusterError::Io {
                what: "start the cluster's watcher".to_owned(),
                source,
            })
    }

    /// The connection URL (`postgres://postgres@127.0.0.1:<port>/postgres`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The directory of the server binaries it was started with (`psql` is there too).
    pub fn bin_dir(&self) -> &Path {
        &self.tools.bin
    }

    /// Restarts the server as a crash would (`pg_ctl restart -m immediate`: no shutdown
    /// checkpoint, recovery from the log at start), waiting until it accepts connections.
    ///
    /// # Errors
    /// When `pg_ctl` fails.
    pub fn restart_immediate(&self) -> Result<(), ClusterError> {
        self.tools.run(
            "pg_ctl",
            &[
                "-D",
                &display(&self.data),
                // The server's output goes to its log, never to our pipes (which would keep
                // this call waiting for the server to exit).
                "-l",
                &display(&self.dir.join("server.log")),
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

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if self.data.is_dir() {
            let _ = self.tools.run(
                "pg_ctl",
                &["-D", &display(&self.data), "stop", "-m", "immediate"],
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The directory holding PostgreSQL's server tools (`initdb`, `pg_ctl`): the first on `PATH`,
/// else Debian's newest `/usr/lib/postgresql/<version>/bin`.
pub fn server_binaries() -> Option<PathBuf> {
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

/// Runs PostgreSQL's tools, as `postgres` when this process is root.
#[derive(Debug)]
struct Tools {
    bin: PathBuf,
    as_postgres: bool,
}

impl Tools {
    fn find() -> Result<Tools, ClusterError> {
        Ok(Tools {
            bin: server_binaries().ok_or(ClusterError::NotInstalled)?,
            as_postgres: is_root(),
        })
    }

    /// Runs a tool to completion; its output goes into the error when it fails.
    fn run(&self, tool: &'static str, args: &[&str]) -> Result<(), ClusterError> {
        let path = self.bin.join(tool);
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        };
        let output = command
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| ClusterError::Io {
                what: format!("run {tool}"),
                source,
            })?;
        if output.status.success() {
            return Ok(());
        }
        Err(ClusterError::Tool {
            tool,
            status: output.status,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        })
    }
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

fn display(path: &Path) -> String {
    path.display().to_string()
}
