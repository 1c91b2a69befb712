//! `rmctl stress`: what an operator runs before trusting a PostgreSQL pool. Worker processes
//! (this binary again, as `rmctl stress-worker`) run a mixed load on one pool while an auditor
//! on a connection of its own reads, every few milliseconds in its own transaction, whether any
//! capacity is over-allocated or differs from the sum of its holds; optionally a worker is
//! killed (`SIGKILL`) now and then and another started in its place.
//!
//! Each worker opens a [`WorkerSession`] and runs
//! threads of random reserve and wait (every grant bound to the session, as an orchestrator's
//! worker should bind its holds), confirm, renew, release and cancel on `--resources` hosts of 4 cores and 8 GiB, plus one thread that passes a baton
//! (a one-unit resource, asked for at a priority above the load's) between the processes
//! through the shared wait queue: the time from
//! one process's release to another's grant is the release-to-grant latency across processes,
//! measured on the clock the processes share (they run on one host).
//!
//! At the end every worker has ended its session; the holds of killed workers return with
//! their session's TTL and the sweep. The run passes when the auditor saw no violation, no
//! operation failed outside the contract, and all capacity is back.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rm_facade::model::{
    LedgerError, ModelError, Priority, RequesterId, ReservationLedger, ReservationRequest,
    ReservationStrategy, Resource, ResourceCapacity, ResourceRequirement, ResourceType, Unit,
    nearest_rank,
};
use rm_facade::postgres::cluster::{Durability, PrivateCluster};
use rm_facade::postgres::{OnSessionEnd, PgLedger, WorkerSession};
use serde::{Deserialize, Serialize};

mod worker;

pub use worker::worker;
use worker::{Rng, Summary, Tally, baton_type};

/// The environment variable a worker reads the pool's URL from (never a command-line
/// argument, where other users of the host could read a password).
pub const URL_VAR: &str = "RMCTL_STRESS_URL";
/// The environment variable a worker reads the pool's schema from.
pub const SCHEMA_VAR: &str = "RMCTL_STRESS_SCHEMA";

/// How long a worker's session lives without a heartbeat: a killed worker's holds return
/// within this and one sweep.
const SESSION_TTL: Duration = Duration::from_secs(4);
/// The baton's TTL: a killed holder's baton comes back within it.
const BATON_TTL: Duration = Duration::from_secs(2);

/// What `rmctl stress` runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// The server (`postgres://user@host:port/db`); `None` starts a private cluster.
    pub ledger: Option<String>,
    /// The schema of the pool; `None` makes `rmctl_stress_<pid>` and drops it at the end.
    pub schema: Option<String>,
    /// Worker processes.
    pub workers: usize,
    /// Load threads per worker (each worker has one baton thread besides).
    pub threads: usize,
    /// How long the load runs.
    pub seconds: u64,
    /// Hosts in the pool.
    pub resources: usize,
    /// Kill a random worker every so often and start another in its place.
    pub kill_every: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ledger: None,
            schema: None,
            workers: 4,
            threads: 4,
            seconds: 20,
            resources: 16,
            kill_every: None,
        }
    }
}

/// Why a stress run could not run (a run that ran and found violations is a [`Report`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StressError {
    /// A setting is out of range.
    #[error("{field}: {reason}")]
    Invalid {
        /// The flag.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// No URL was given and no private cluster could be started.
    #[error("no --ledger URL was given and no private PostgreSQL cluster could be started")]
    Cluster(#[source] rm_facade::postgres::cluster::ClusterError),
    /// The pool could not be opened.
    #[error("open the pool")]
    Connect(#[source] rm_facade::postgres::Error),
    /// The pool refused a step of setting up or checking.
    #[error("{step}")]
    Ledger {
        /// What was being done.
        step: &'static str,
        /// The ledger's error.
        #[source]
        source: LedgerError,
    },
    /// The pool's resources could not be described (a bug: they are fixed).
    #[error("describe the pool's resources")]
    Model(#[from] rm_facade::model::ModelError),
    /// A worker process could not be started or read.
    #[error("worker process")]
    Worker(#[source] std::io::Error),
}

/// Latency figures of one operation, in microseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    /// Calls measured.
    pub count: usize,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Slowest.
    pub max_us: u64,
}

impl Latency {
    fn of(mut samples: Vec<u64>) -> Latency {
        samples.sort_unstable();
        Latency {
            count: samples.len(),
            p50_us: nearest_rank(&samples, 50).unwrap_or(0),
            p99_us: nearest_rank(&samples, 99).unwrap_or(0),
            max_us: samples.last().copied().unwrap_or(0),
        }
    }
}

/// What a stress run did and found.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// The server, without its password.
    pub server: String,
    /// The pool's schema.
    pub schema: String,
    /// Worker processes at once.
    pub workers: usize,
    /// Load threads per worker.
    pub threads: usize,
    /// Wall time of the load, in seconds.
    pub elapsed_s: f64,
    /// Operations completed by workers that ran to the end (a killed worker's are lost).
    pub operations: usize,
    /// Operations per second.
    pub throughput_per_s: f64,
    /// Latency per operation (`reserve`, `wait`, `confirm`, `renew`, `release`, `cancel`).
    pub latency: BTreeMap<String, Latency>,
    /// Release-to-grant latency of the baton between processes.
    pub handoff: Latency,
    /// Workers killed with `SIGKILL` (each replaced by a new one).
    pub workers_killed: usize,
    /// Sessions that ended under a living worker (its heartbeat starved past the TTL on an
    /// overloaded host): their holds ended with them and the worker opened a new one.
    pub sessions_lost: usize,
    /// Audits run while the load ran.
    pub audits: usize,
    /// Audits that could not be run (the server unavailable); not violations.
    pub audit_errors: usize,
    /// Violations the auditor saw: over-allocated capacities and capacities whose held
    /// amount differs from their holds.
    pub violations: usize,
    /// The first violations, described.
    pub violation_examples: Vec<String>,
    /// Operations that failed outside the contract (anything but a refusal, an expired or
    /// ended hold, or an indeterminate error).
    pub unexpected_errors: usize,
    /// The first of them.
    pub error_examples: Vec<String>,
    /// Whether every hold had ended and all capacity was free once the workers were gone.
    pub capacity_back: bool,
}

impl Report {
    /// Whether the run found nothing wrong.
    pub fn passed(&self) -> bool {
        self.violations == 0 && self.unexpected_errors == 0 && self.capacity_back
    }

    /// The report as a table.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "rmctl stress: {} workers x {} threads for {:.1} s on {} (schema {})\n\n",
            self.workers, self.threads, self.elapsed_s, self.server, self.schema
        );
        out.push_str(&format!(
            "{:<10} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
            "operation", "count", "per s", "p50 ms", "p99 ms", "max ms"
        ));
        let rows = self
            .latency
            .iter()
            .map(|(name, l)| (name.as_str(), l))
            .chain([("hand-off", &self.handoff)]);
        for (name, l) in rows {
            out.push_str(&format!(
                "{name:<10} {:>9} {:>9.0} {:>9.2} {:>9.2} {:>9.2}\n",
                l.count,
                l.count as f64 / self.elapsed_s.max(1e-9),
                l.p50_us as f64 / 1e3,
                l.p99_us as f64 / 1e3,
                l.max_us as f64 / 1e3,
            ));
        }
        out.push_str(&format!(
            "\n{} operations, {:.0} per second; hand-off = release in one process to grant in \
             another\nfaults injected: {} workers killed (SIGKILL) and replaced; sessions lost to a \
             starved heartbeat: {}\naudits: {} \
             ({} could not run), violations: {}\nunexpected errors: {}\nall capacity back: \
             {}\n",
            self.operations,
            self.throughput_per_s,
            self.workers_killed,
            self.sessions_lost,
            self.audits,
            self.audit_errors,
            self.violations,
            self.unexpected_errors,
            if self.capacity_back { "yes" } else { "NO" },
        ));
        for example in self.violation_examples.iter().chain(&self.error_examples) {
            out.push_str(&format!("  {example}\n"));
        }
        out.push_str(if self.passed() {
            "PASSED\n"
        } else {
            "FAILED\n"
        });
        out
    }
}

/// `url` without its password.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{scheme}://{name}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// One baton hold, as a worker reported it.
#[derive(Clone, Copy, Debug)]
struct BatonHold {
    worker: usize,
    waited_since: u128,
    granted: u128,
    released: Option<u128>,
}

/// Release-to-grant samples (µs): each grant that followed another process's release of the
/// baton it had been waiting for.
fn handoffs(mut holds: Vec<BatonHold>) -> Vec<u64> {
    holds.sort_by_key(|h| h.granted);
    holds
        .windows(2)
        .filter_map(|pair| {
            let (before, after) = (pair[0], pair[1]);
            let released = before.released?;
            (before.worker != after.worker
                && after.waited_since < released
                && after.granted >= released)
                .then(|| u64::try_from((after.granted - released) / 1_000).unwrap_or(u64::MAX))
        })
        .collect()
}

/// What the parent collects from one worker's output.
#[derive(Default)]
struct Collected {
    holds: Vec<BatonHold>,
    summary: Option<Summary>,
}

fn read_worker(index: usize, child: &mut Child) -> thread::JoinHandle<Collected> {
    let stdout = child.stdout.take();
    thread::spawn(move || {
        let mut collected = Collected::default();
        let Some(stdout) = stdout else {
            return collected;
        };
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(json) = line.strip_prefix("summary ") {
                collected.summary = serde_json::from_str(json).ok();
                continue;
            }
            let mut words = line.splitn(3, ' ');
            match (words.next(), words.next(), words.next()) {
                (Some("grant"), Some(since), Some(at)) => {
                    if let (Ok(waited_since), Ok(granted)) = (since.parse(), at.parse()) {
                        collected.holds.push(BatonHold {
                            worker: index,
                            waited_since,
                            granted,
                            released: None,
                        });
                    }
                }
                (Some("release"), Some(at), None) => {
                    if let (Some(last), Ok(at)) = (collected.holds.last_mut(), at.parse()) {
                        last.released = Some(at);
                    }
                }
                _ => {}
            }
        }
        collected
    })
}

/// Runs the stress: sets the pool up, starts the workers, audits until they end, checks that
/// all capacity came back. `progress` receives a line now and then.
///
/// # Errors
/// When the run could not be set up; what it found is in the [`Report`].
pub fn run(options: &Options, progress: &mut dyn FnMut(&str)) -> Result<Report, StressError> {
    if options.workers < 2 {
        return Err(StressError::Invalid {
            field: "--workers",
            reason: "at least 2 (hand-off is measured between processes)".into(),
        });
    }
    for (field, value) in [
        ("--threads", options.threads),
        ("--resources", options.resources),
    ] {
        if value == 0 {
            return Err(StressError::Invalid {
                field,
                reason: "at least 1".into(),
            });
        }
    }
    if options.seconds == 0 {
        return Err(StressError::Invalid {
            field: "--seconds",
            reason: "at least 1".into(),
        });
    }
    let mut cluster = None;
    let url = match &options.ledger {
        Some(url) => url.clone(),
        None => {
            let started =
                PrivateCluster::start(Durability::Durable).map_err(StressError::Cluster)?;
            let url = started.url().to_owned();
            progress(&format!(
                "started a private PostgreSQL cluster at {url} (removed at the end)"
            ));
            cluster = Some(started);
            url
        }
    };
    let owned_schema = options.schema.is_none();
    let schema = options
        .schema
        .clone()
        .unwrap_or_else(|| format!("rmctl_stress_{}", std::process::id()));
    let ledger = PgLedger::builder(url.clone())
        .schema(schema.clone())
        .pool_size(2)
        .connect()
        .map_err(StressError::Connect)?;
    let setup = |source| StressError::Ledger {
        step: "register the pool's resources",
        source,
    };
    for n in 0..options.resources {
        let host = Resource::new(
            &format!("stress-{n}"),
            ResourceType::Compute,
            ResourceCapacity::of(4, Unit::CORES).map_err(ModelError::from)?,
        )
        .map_err(ModelError::from)?
        .with_capacity(
            ResourceType::Memory,
            ResourceCapacity::of(8, Unit::GIB).map_err(ModelError::from)?,
        );
        ledger.register_resource(host).map_err(setup)?;
    }
    let baton = Resource::new(
        "stress-baton",
        baton_type()?,
        ResourceCapacity::of(1, Unit::DEVICES).map_err(ModelError::from)?,
    )
    .map_err(ModelError::from)?;
    ledger.register_resource(baton).map_err(setup)?;

    let outcome = drive(options, &url, &schema, &ledger, progress);
    let report = outcome.and_then(|mut report| {
        report.capacity_back = settle(&ledger)?;
        report.server = redact(&url);
        report.schema = schema.clone();
        Ok(report)
    });
    if owned_schema {
        let _ = ledger.drop_schema();
    }
    drop(cluster);
    report
}

/// Starts the workers, audits while they run, kills some when asked, and gathers their
/// figures.
fn drive(
    options: &Options,
    url: &str,
    schema: &str,
    ledger: &PgLedger,
    progress: &mut dyn FnMut(&str),
) -> Result<Report, StressError> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(options.seconds);
    let spawn = |index: usize, seconds: u64| -> Result<Child, StressError> {
        let exe = std::env::current_exe().map_err(StressError::Worker)?;
        Command::new(exe)
            .args([
                "stress-worker",
                "--threads",
                &options.threads.to_string(),
                "--seconds",
                &seconds.to_string(),
                "--seed",
                &(index as u64 + 1).to_string(),
            ])
            .env(URL_VAR, url)
            .env(SCHEMA_VAR, schema)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(StressError::Worker)
    };
    let mut running: Vec<(usize, Child, thread::JoinHandle<Collected>)> = Vec::new();
    let mut finished: Vec<Collected> = Vec::new();
    let mut next = 0;
    for _ in 0..options.workers {
        let mut child = spawn(next, options.seconds)?;
        let reader = read_worker(next, &mut child);
        running.push((next, child, reader));
        next += 1;
    }
    progress(&format!(
        "{} workers x {} threads running for {} s",
        options.workers, options.threads, options.seconds
    ));

    let stop = AtomicBool::new(false);
    let (audits, audit_errors, violations) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let examples = Mutex::new(Vec::new());
    let mut killed = 0;
    let mut rng = Rng(u64::from(std::process::id()) | 1);
    thread::scope(|scope| -> Result<(), StressError> {
        scope.spawn(|| {
            while !stop.load(Ordering::Acquire) {
                match ledger.audit() {
                    Ok(audit) => {
                        violations.fetch_add(audit.violations.len(), Ordering::Relaxed);
                        let mut kept = examples.lock().unwrap_or_else(PoisonError::into_inner);
                        for violation in audit.violations.into_iter().take(3 - kept.len().min(3)) {
                            kept.push(format!(
                                "violation: {} {}: {}",
                                violation.resource, violation.resource_type, violation.message
                            ));
                        }
                    }
                    Err(_) => {
                        audit_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                audits.fetch_add(1, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(5));
            }
        });
        let result = (|| {
            let mut next_kill = options.kill_every.map(|every| start + every);
            loop {
                let now = Instant::now();
                if let Some(at) = next_kill
                    && now >= at
                    && deadline.saturating_duration_since(now) > Duration::from_secs(2)
                    && !running.is_empty()
                {
                    let victim = rng.below(running.len() as u64) as usize;
                    let (_, mut child, reader) = running.swap_remove(victim);
                    let _ = child.kill();
                    let _ = child.wait();
                    // What it reported before it died still counts for the hand-off.
                    let mut collected = reader.join().unwrap_or_default();
                    collected.summary = None;
                    finished.push(collected);
                    killed += 1;
                    let left = deadline.saturating_duration_since(Instant::now()).as_secs();
                    let mut child = spawn(next, left.max(1))?;
                    let reader = read_worker(next, &mut child);
                    running.push((next, child, reader));
                    next += 1;
                    next_kill = options.kill_every.map(|every| Instant::now() + every);
                }
                let mut i = 0;
                while i < running.len() {
                    if matches!(running[i].1.try_wait(), Ok(Some(_))) {
                        let (_, _, reader) = running.swap_remove(i);
                        finished.push(reader.join().unwrap_or_default());
                    } else {
                        i += 1;
                    }
                }
                if running.is_empty() {
                    return Ok(());
                }
                thread::sleep(Duration::from_millis(50));
            }
        })();
        stop.store(true, Ordering::Release);
        result
    })?;
    let elapsed = start.elapsed().as_secs_f64();

    let mut total = Tally::default();
    let mut holds = Vec::new();
    let mut missing = 0_usize;
    for collected in finished {
        holds.extend(collected.holds);
        match collected.summary {
            Some(summary) => total.merge(summary),
            None => missing += 1,
        }
    }
    let mut error_examples = total.summary.examples.clone();
    let unexpected = total.summary.unexpected + missing.saturating_sub(killed);
    if missing > killed {
        error_examples.push(format!(
            "{} worker(s) ended without a summary",
            missing - killed
        ));
    }
    let latency: BTreeMap<String, Latency> = total
        .summary
        .latencies
        .into_iter()
        .map(|(name, samples)| (name, Latency::of(samples)))
        .collect();
    let operations = latency.values().map(|l| l.count).sum();
    Ok(Report {
        server: String::new(),
        schema: String::new(),
        workers: options.workers,
        threads: options.threads,
        elapsed_s: elapsed,
        operations,
        throughput_per_s: operations as f64 / elapsed.max(1e-9),
        latency,
        handoff: Latency::of(handoffs(holds)),
        workers_killed: killed,
        sessions_lost: total.summary.sessions_lost,
        audits: audits.into_inner(),
        audit_errors: audit_errors.into_inner(),
        violations: violations.into_inner(),
        violation_examples: examples
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner),
        unexpected_errors: unexpected,
        error_examples,
        capacity_back: false,
    })
}

/// Waits (up to 15 s: the sessions' TTL, the holds' TTLs and sweeps) until no hold is active
/// and all capacity is free; says whether it came to that, with a clean audit.
fn settle(ledger: &PgLedger) -> Result<bool, StressError> {
    let check = |step| move |source| StressError::Ledger { step, source };
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        ledger.expire_due().map_err(check("sweep"))?;
        let snapshot = ledger.snapshot().map_err(check("snapshot"))?;
        let back = snapshot.active.is_empty()
            && snapshot
                .usage
                .iter()
                .all(|usage| usage.free == usage.capacity);
        if back {
            return Ok(ledger.audit().map_err(check("audit"))?.is_clean());
        }
        if Instant::now() >= until {
            return Ok(false);
        }
        thread::sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("postgres://rm:s3cret@db:5432/pool"),
            "postgres://rm:***@db:5432/pool"
        );
        assert_eq!(redact("postgres://rm@db/pool"), "postgres://rm@db/pool");
        assert_eq!(redact("postgres://db/pool"), "postgres://db/pool");
        assert_eq!(redact("host=db"), "host=db");
    }

    #[test]
    fn a_handoff_is_a_grant_after_another_process_released() {
        let hold = |worker, waited_since, granted, released| BatonHold {
            worker,
            waited_since,
            granted,
            released,
        };
        let samples = handoffs(vec![
            hold(1, 0, 10_000, Some(20_000)),
            // Waited before worker 1 released: 3 µs.
            hold(2, 5_000, 23_000, Some(30_000)),
            // The same process again: not across processes.
            hold(2, 31_000, 40_000, Some(50_000)),
            // Started waiting after the release: no hand-off.
            hold(3, 55_000, 60_000, None),
            // After a holder that never released (killed): no sample.
            hold(1, 50_000, 4_000_000, Some(4_100_000)),
        ]);
        assert_eq!(samples, vec![3]);
    }

    #[test]
    fn latency_figures_are_nearest_rank() {
        let l = Latency::of((1..=100).rev().collect());
        assert_eq!((l.count, l.p50_us, l.p99_us, l.max_us), (100, 50, 99, 100));
        assert_eq!(Latency::of(Vec::new()), Latency::default());
    }
}
