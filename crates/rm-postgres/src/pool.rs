//! Connections: a small pool of clients, each with the ledger's statements prepared, and the
//! mapping of the driver's errors onto the ledger contract.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, NoTls, Statement};
use rm_model::LedgerError;

use crate::Error;

/// How many times an operation runs again after a serialization failure, a deadlock or a
/// lock conflict before the caller is told it timed out.
const CONFLICT_RETRIES: u32 = 16;

/// The ledger's statements, prepared once per connection.
pub(crate) struct Statements {
    pub(crate) reserve: Statement,
    pub(crate) act: Statement,
    pub(crate) sweep: Statement,
}

/// One connection and its prepared statements.
pub(crate) struct Conn {
    pub(crate) client: Client,
    pub(crate) statements: Statements,
}

/// What a connection is opened with.
pub(crate) struct Settings {
    pub(crate) config: postgres::Config,
    pub(crate) schema: String,
    pub(crate) statement_timeout: Duration,
    pub(crate) lock_timeout: Duration,
}

/// A bounded pool of connections, opened on demand.
pub(crate) struct Pool {
    settings: Settings,
    size: usize,
    state: Mutex<PoolState>,
    returned: Condvar,
}

struct PoolState {
    idle: Vec<Conn>,
    open: usize,
}

/// Why an attempt failed: the driver's error, kept so the caller can map it.
pub(crate) type Attempt<T> = Result<T, postgres::Error>;

/// A failure of one call that decides how the pool reacts.
enum Failure {
    /// Serialization failure, deadlock or lock conflict: run the operation again.
    Conflict(postgres::Error),
    /// The statement timed out: the caller gets `Timeout`.
    Timeout,
    /// The connection is gone or broken: the caller gets `Unavailable`, the connection is
    /// dropped.
    Lost(postgres::Error),
    /// Any other error from the server: definite, the connection stays.
    Other(postgres::Error),
}

fn classify(err: postgres::Error) -> Failure {
    match err.code() {
        Some(code)
            if *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::LOCK_NOT_AVAILABLE =>
        {
            Failure::Conflict(err)
        }
        Some(code) if *code == SqlState::QUERY_CANCELED => Failure::Timeout,
        Some(code)
            if code.code().starts_with("08")
                || code.code().starts_with("57P")
                || *code == SqlState::ADMIN_SHUTDOWN =>
        {
            Failure::Lost(err)
        }
        Some(_) => Failure::Other(err),
        None => Failure::Lost(err),
    }
}

/// Whether the server refused a grant because the rows it was planned on changed (the
/// `reserve` function's SQLSTATE `RM001`): nothing changed, plan again.
pub(crate) fn is_stale(err: &postgres::Error) -> bool {
    err.code().is_some_and(|code| code.code() == "RM001")
}

/// Whether the server refused a grant because the session it was bound to has ended (the
/// `reserve` function's SQLSTATE `RM003`).
pub(crate) fn is_session_ended(err: &postgres::Error) -> bool {
    err.code().is_some_and(|code| code.code() == "RM003")
}

/// Maps a driver error that reached the caller onto the contract.
pub(crate) fn unavailable(operation: &'static str, err: postgres::Error) -> LedgerError {
    LedgerError::Unavailable {
        operation,
        source: Arc::new(err),
    }
}

impl Pool {
    pub(crate) fn new(settings: Settings, size: usize) -> Pool {
        Pool {
            settings,
            size,
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            returned: Condvar::new(),
        }
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Opens a connection with the session settings and prepared statements.
    pub(crate) fn connect(&self) -> Result<Conn, Error> {
        let mut client = self
            .settings
            .config
            .connect(NoTls)
            .map_err(|source| Error::Connect { source })?;
        client
            .batch_execute(&format!(
                "SET search_path TO \"{}\"; SET statement_timeout = {}; SET lock_timeout = {}",
                self.settings.schema,
                self.settings.statement_timeout.as_millis(),
                self.settings.lock_timeout.as_millis()
            ))
            .map_err(|source| Error::Connect { source })?;
        let statements = prepare(&mut client).map_err(|source| Error::Connect { source })?;
        Ok(Conn { client, statements })
    }

    fn take(&self, operation: &'static str) -> Result<Conn, LedgerError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(conn) = state.idle.pop() {
                return Ok(conn);
            }
            if state.open < self.size {
                state.open += 1;
                drop(state);
                return self.connect().map_err(|err| {
                    self.forget();
                    match err {
                        Error::Connect { source } => unavailable(operation, source),
                        other => LedgerError::Unavailable {
                            operation,
                            source: Arc::new(other),
                        },
                    }
                });
            }
            state = self
                .returned
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Adds a connection opened with [`Pool::connect`] to the pool.
    pub(crate) fn put(&self, conn: Conn) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.open += 1;
        state.idle.push(conn);
        drop(state);
        self.returned.notify_one();
    }

    fn give_back(&self, conn: Conn) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.idle.push(conn);
        drop(state);
        self.returned.notify_one();
    }

    fn forget(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.open -= 1;
        drop(state);
        self.returned.notify_one();
    }

    /// Runs `attempt` on a pooled connection, again after conflicts, and maps what fails.
    /// `attempt` must be one transaction (or one statement) that either commits or leaves
    /// nothing behind.
    pub(crate) fn run<T>(
        &self,
        operation: &'static str,
        mut attempt: impl FnMut(&mut Conn) -> Attempt<T>,
    ) -> Result<T, LedgerError> {
        let mut conn = self.take(operation)?;
        let mut tries = 0;
        loop {
            let outcome = attempt(&mut conn);
            let err = match outcome {
                Ok(value) => {
                    self.give_back(conn);
                    return Ok(value);
                }
                Err(err) => err,
            };
            // A connection whose transaction failed is usable again once the driver has
            // rolled it back (it does when a `Transaction` is dropped); a closed one is not.
            let broken = conn.client.is_closed();
            match classify(err) {
                Failure::Conflict(err) => {
                    tries += 1;
                    if broken {
                        self.forget();
                        return Err(unavailable(operation, err));
                    }
                    if tries > CONFLICT_RETRIES {
                        self.give_back(conn);
                        return Err(LedgerError::Timeout {
                            operation,
                            after: self.settings.lock_timeout,
                        });
                    }
                    std::thread::sleep(Duration::from_micros(50 << tries.min(10)));
                }
                Failure::Timeout => {
                    if broken {
                        self.forget();
                    } else {
                        self.give_back(conn);
                    }
                    return Err(LedgerError::Timeout {
                        operation,
                        after: self.settings.statement_timeout,
                    });
                }
                Failure::Lost(err) => {
                    self.forget();
                    return Err(unavailable(operation, err));
                }
                Failure::Other(err) => {
                    if broken {
                        self.forget();
                    } else {
                        self.give_back(conn);
                    }
                    return Err(unavailable(operation, err));
                }
            }
        }
    }
}

fn prepare(client: &mut Client) -> Result<Statements, postgres::Error> {
    Ok(Statements {
        reserve: client.prepare(
            "SELECT outcome, at, fencing, expires_at FROM reserve($1, $2, $3, $4, $5, $6, $7, \
             $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )?,
        act: client.prepare("SELECT * FROM act($1, $2, $3, $4, $5, $6)")?,
        sweep: client.prepare("SELECT * FROM sweep($1, $2, $3, $4)")?,
    })
}
