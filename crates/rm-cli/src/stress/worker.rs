//! The body of one `rmctl stress-worker` process: load threads and a baton thread on the
//! pool, in a worker session (renewed when it ends under a starved worker), reporting the
//! baton's grants and releases as they happen and a summary of every operation at the end.

use super::*;

/// A small seeded generator (xorshift), so a worker's load is reproducible from its seed.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

pub(super) fn baton_type() -> Result<ResourceType, ModelError> {
    Ok(ResourceType::custom("baton")?)
}

/// What one worker reports when it ends.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Summary {
    pub(super) latencies: BTreeMap<String, Vec<u64>>,
    pub(super) unexpected: usize,
    pub(super) examples: Vec<String>,
    pub(super) sessions_lost: usize,
}

/// Whether `err` says the session a hold was to be bound to has ended.
fn session_ended(err: &LedgerError) -> bool {
    matches!(err, LedgerError::InvalidInput { field, .. } if field == "session")
}

/// A worker's session, replaced by a new one when it has ended under the worker (its
/// heartbeat was starved past the TTL, as a hung worker's is): the holds bound to it ended
/// with it, as they must, and the worker carries on in a new session, as a real one would.
struct Sessions {
    ledger: Arc<PgLedger>,
    current: Mutex<Arc<WorkerSession>>,
    lost: AtomicUsize,
}

impl Sessions {
    fn open(ledger: &Arc<PgLedger>) -> Result<Sessions, StressError> {
        let session = ledger
            .open_session("rmctl-stress", SESSION_TTL)
            .map_err(|source| StressError::Ledger {
                step: "open a session",
                source,
            })?;
        Ok(Sessions {
            ledger: ledger.clone(),
            current: Mutex::new(Arc::new(session)),
            lost: AtomicUsize::new(0),
        })
    }

    fn current(&self) -> Arc<WorkerSession> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// After an operation in `used`: when it failed because `used` had ended, opens the next
    /// session (once, whichever thread sees it first).
    fn renew_if_ended<T>(&self, used: &Arc<WorkerSession>, outcome: &Result<T, LedgerError>) {
        if !outcome.as_ref().err().is_some_and(session_ended) {
            return;
        }
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if Arc::ptr_eq(&current, used)
            && let Ok(next) = self.ledger.open_session("rmctl-stress", SESSION_TTL)
        {
            *current = Arc::new(next);
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Ends the current session.
    fn end(self) -> Result<(), LedgerError> {
        let current = self
            .current
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        match Arc::try_unwrap(current) {
            Ok(session) => session.end().map(drop),
            // Still shared (cannot be: the threads have ended): dropping ends it.
            Err(shared) => {
                drop(shared);
                Ok(())
            }
        }
    }
}

/// Counts and remembers the answers of one thread's operations.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) summary: Summary,
}

impl Tally {
    fn record<T>(
        &mut self,
        operation: &str,
        started: Instant,
        outcome: Result<T, LedgerError>,
    ) -> Option<T> {
        self.summary
            .latencies
            .entry(operation.to_owned())
            .or_default()
            .push(micros(started));
        match outcome {
            Ok(value) => Some(value),
            // The contract's answers under this load: no room, a hold that expired or ended
            // meanwhile, a session that ended under a starved worker, a server that could not
            // answer (indeterminate: retry is safe).
            Err(
                LedgerError::InsufficientCapacity { .. }
                | LedgerError::Expired { .. }
                | LedgerError::InvalidState { .. },
            ) => None,
            Err(err) if session_ended(&err) => None,
            Err(err) if err.is_indeterminate() => None,
            Err(other) => {
                self.summary.unexpected += 1;
                if self.summary.examples.len() < 3 {
                    self.summary.examples.push(format!("{operation}: {other}"));
                }
                None
            }
        }
    }

    pub(super) fn merge(&mut self, other: Summary) {
        for (name, samples) in other.latencies {
            self.summary
                .latencies
                .entry(name)
                .or_default()
                .extend(samples);
        }
        self.summary.unexpected += other.unexpected;
        self.summary.sessions_lost += other.sessions_lost;
        let room = 3_usize.saturating_sub(self.summary.examples.len());
        self.summary
            .examples
            .extend(other.examples.into_iter().take(room));
    }
}

/// The body of `rmctl stress-worker`: `threads` load threads and one baton thread on the pool
/// named by [`URL_VAR`] and [`SCHEMA_VAR`] until `seconds` have passed. Writes `grant
/// <waited-since> <granted-at>` and `release <at>` lines (Unix nanoseconds) for the baton as
/// they happen, then one `summary <json>` line.
///
/// # Errors
/// When the pool cannot be opened or `out` cannot be written.
pub fn worker(
    threads: usize,
    seconds: u64,
    seed: u64,
    out: &mut (dyn Write + Send),
) -> Result<(), StressError> {
    let url = std::env::var(URL_VAR).map_err(|_| StressError::Invalid {
        field: URL_VAR,
        reason: "not set".into(),
    })?;
    let schema = std::env::var(SCHEMA_VAR).map_err(|_| StressError::Invalid {
        field: SCHEMA_VAR,
        reason: "not set".into(),
    })?;
    let ledger = Arc::new(
        PgLedger::builder(url)
            .schema(schema)
            .pool_size(threads + 2)
            .connect()
            .map_err(StressError::Connect)?,
    );
    let sessions = Sessions::open(&ledger)?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let out = Mutex::new(out);
    let requester = RequesterId::new(&format!("worker-{}", std::process::id())).map_err(|e| {
        StressError::Invalid {
            field: "requester",
            reason: e.to_string(),
        }
    })?;
    let baton_request = ReservationRequest::new(
        requester.clone(),
        vec![ResourceRequirement::new(baton_type()?, 1, Unit::DEVICES)],
    )
    // Ahead of the load's waiters, whose heads would block it (the queue is strict): the
    // hand-off measures the release-to-grant path, not the load's queueing.
    .with_priority(Priority(10))
    .with_ttl(BATON_TTL);
    let mut total = Tally::default();
    let tallies: Vec<Summary> = thread::scope(|scope| {
        let baton = scope.spawn(|| {
            let mut tally = Tally::default();
            let request = &baton_request;
            while Instant::now() < deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                let (waited_since, started) = (unix_nanos(), Instant::now());
                let session = sessions.current();
                let outcome = session.wait_bound(
                    request,
                    left.min(Duration::from_secs(1)),
                    OnSessionEnd::Release,
                );
                sessions.renew_if_ended(&session, &outcome);
                let Some(hold) = tally.record("wait", started, outcome) else {
                    continue;
                };
                let granted = unix_nanos();
                let mut w = out.lock().unwrap_or_else(PoisonError::into_inner);
                let _ = writeln!(w, "grant {waited_since} {granted}");
                let _ = w.flush();
                drop(w);
                thread::sleep(Duration::from_millis(2));
                let released = unix_nanos();
                let started = Instant::now();
                let outcome = ledger.cancel(&hold.id, Some(hold.fencing_token));
                if tally.record("cancel", started, outcome).is_some() {
                    let mut w = out.lock().unwrap_or_else(PoisonError::into_inner);
                    let _ = writeln!(w, "release {released}");
                    let _ = w.flush();
                }
            }
            tally.summary
        });
        let loads: Vec<_> = (0..threads as u64)
            .map(|t| {
                let (ledger, sessions, requester) = (&ledger, &sessions, &requester);
                scope.spawn(move || {
                    let mut rng = Rng(seed.wrapping_mul(31).wrapping_add(t) | 1);
                    let mut tally = Tally::default();
                    let mut mine = Vec::new();
                    while Instant::now() < deadline {
                        let requirements = (0..1 + rng.below(3))
                            .map(|_| {
                                if rng.below(3) == 0 {
                                    ResourceRequirement::new(
                                        ResourceType::Memory,
                                        1 + rng.below(4) as i32,
                                        Unit::GIB,
                                    )
                                } else {
                                    ResourceRequirement::new(
                                        ResourceType::Compute,
                                        1 + rng.below(2) as i32,
                                        Unit::CORES,
                                    )
                                }
                            })
                            .collect();
                        let request = ReservationRequest::new(requester.clone(), requirements)
                            .with_strategy(
                                [
                                    ReservationStrategy::Greedy,
                                    ReservationStrategy::Balanced,
                                    ReservationStrategy::BinPack,
                                    ReservationStrategy::Aligned,
                                ][rng.below(4) as usize],
                            )
                            .with_ttl(Duration::from_millis(300 + rng.below(2_000)));
                        let started = Instant::now();
                        // Every hold is bound to the session: a killed worker strands none.
                        let session = sessions.current();
                        let (operation, outcome) = if rng.below(4) == 0 {
                            let outcome = session.wait_bound(
                                &request,
                                Duration::from_millis(200),
                                OnSessionEnd::Release,
                            );
                            ("wait", outcome)
                        } else {
                            (
                                "reserve",
                                session.reserve_bound(&request, OnSessionEnd::Release),
                            )
                        };
                        sessions.renew_if_ended(&session, &outcome);
                        let granted = tally.record(operation, started, outcome);
                        mine.extend(granted);
                        if mine.len() < 1 + rng.below(3) as usize {
                            continue;
                        }
                        let hold = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                        let fence = Some(hold.fencing_token);
                        match rng.below(4) {
                            0 => {
                                let started = Instant::now();
                                let outcome = ledger.cancel(&hold.id, fence);
                                tally.record("cancel", started, outcome);
                            }
                            1 => {
                                let started = Instant::now();
                                let outcome = ledger.renew(&hold.id, fence, Duration::from_secs(1));
                                if tally.record("renew", started, outcome).is_some() {
                                    let started = Instant::now();
                                    let outcome = ledger.cancel(&hold.id, fence);
                                    tally.record("cancel", started, outcome);
                                }
                            }
                            _ => {
                                let started = Instant::now();
                                let outcome = ledger.confirm(&hold.id, fence);
                                if tally.record("confirm", started, outcome).is_some() {
                                    let started = Instant::now();
                                    let outcome = ledger.release(&hold.id, fence);
                                    tally.record("release", started, outcome);
                                }
                            }
                        }
                    }
                    for hold in mine {
                        let started = Instant::now();
                        let outcome = ledger.cancel(&hold.id, Some(hold.fencing_token));
                        tally.record("cancel", started, outcome);
                    }
                    tally.summary
                })
            })
            .collect();
        let mut all: Vec<Summary> = loads
            .into_iter()
            .map(|t| t.join().unwrap_or_default())
            .collect();
        all.push(baton.join().unwrap_or_default());
        all
    });
    for tally in tallies {
        total.merge(tally);
    }
    total.summary.sessions_lost = sessions.lost.load(Ordering::Relaxed);
    // Ending the session releases what is still bound to it.
    if let Err(source) = sessions.end() {
        total.summary.unexpected += 1;
        total
            .summary
            .examples
            .push(format!("end session: {source}"));
    }
    let line = serde_json::to_string(&total.summary).map_err(|e| {
        StressError::Worker(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    })?;
    let out = out.into_inner().unwrap_or_else(PoisonError::into_inner);
    writeln!(out, "summary {line}").map_err(StressError::Worker)?;
    out.flush().map_err(StressError::Worker)
}
