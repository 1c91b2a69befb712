//! The reservation ledger on PostgreSQL: one pool of resources shared by orchestrator
//! workers on many hosts, with the same contract as the embedded ledger.
//!
//! # Where it sits
//! A middle-layer crate: it depends on `rm-model` (the contract it implements) and `rm-plan`
//! (the one planner every ledger calls, so that it places requests exactly as `rm-reserve`
//! does on the same state), and on the `postgres` driver; never on another middle crate. The
//! facade uses it for `[ledger] backend = "postgres"` (behind its `postgres` feature); the
//! wait queue, the policies and the monitor work on it unchanged through
//! [`ReservationLedger`](rm_model::ReservationLedger).
//!
//! # Main types
//! - [`PgLedger`]: implements [`ReservationLedger`](rm_model::ReservationLedger) on tables in
//!   one schema; built with [`PgLedger::builder`], which connects and migrates.
//! - [`WorkerSession`]: a worker's lease on the pool, renewed by a heartbeat; holds bound to
//!   it end when the worker dies or hangs past the TTL ([`OnSessionEnd`] says whether a
//!   confirmed hold is released or kept).
//! - [`PgLedger::wait`]: waiting for capacity in one queue all processes share (priority,
//!   then arrival), woken by other processes' releases; [`PgLedger::wait_async`] is the same
//!   wait as a runtime-agnostic future, [`PgWait`]; [`PgLedger::waiting`] configures one
//!   ([`Waiting`]: an expected run time for backfill, a session, blocking or a future).
//! - [`Listener`]: the events of every process using that schema, received with `LISTEN`.
//! - [`cluster::PrivateCluster`]: a throw-away server started from the machine's PostgreSQL
//!   binaries, for test harnesses, benches and `rmctl stress`.
//! - [`Error`]: why setting up failed; operations fail with
//!   [`LedgerError`](rm_model::LedgerError).
//! - [`SCHEMA_VERSION`]: the schema version this build migrates to.
//!
//! # How a grant works, and why it cannot overbook
//! Each process plans against its view of what is free (read from the database, and kept
//! current by its own operations; a grant of one of its threads counts as taken from the
//! moment it is sent, so the others plan around it rather than queue on its rows). The
//! plan goes to the server as one call of the
//! `reserve` function, one round trip, which inserts the reservation, **locks the capacity
//! rows it names in one global order** (registration position, then type) when there are
//! several, and adds each amount with an update **whose own `WHERE` is the guard** (the
//! resource's description has not changed since it was planned on, and
//! `maximum - external - held >= amount`), evaluated by PostgreSQL on the row's latest
//! version under its lock. When any guard fails the call raises and the whole transaction
//! rolls back, so no interleaving of any number of connections can take the same capacity
//! twice, and nothing is granted in part; the process reads again and plans again. Refusals
//! are only given after planning against a fresh read.
//!
//! Every transaction takes reservation rows (in id order) before capacity rows (in the
//! global order), and catalog changes take the `meta` row first, so no two transactions
//! wait for each other in a circle: there is no deadlock to detect. Should the server still
//! report a serialization failure, a deadlock or a lock timeout, the operation runs again
//! inside the crate; callers never see one.
//!
//! # Time, leases and fencing
//! TTLs are measured by the **database server's clock** (`clock_timestamp()`): hosts'
//! clocks differ, the server's is one. Fencing tokens come from a database sequence, so
//! they grow across every host. Expiry is applied by whoever meets a due hold first (an
//! operation on it, a sweep before a refusal or a snapshot, or the periodic sweep each
//! process runs at most every [`max_staleness`](PgLedgerBuilder::max_staleness)). Ended
//! reservations are remembered for the retention (default 5 minutes) and then deleted by the
//! sweep, so the table does not grow without bound.
//!
//! # Concurrency
//! `PgLedger` is `Send + Sync`; every method takes `&self`. Up to
//! [`pool_size`](PgLedgerBuilder::pool_size) threads run operations at once, each on a
//! connection of its own; more wait for one. A [`WorkerSession`] owns one thread, its
//! heartbeat, stopped and joined when the session ends or is dropped; the first
//! [`wait`](PgLedger::wait) starts one listening thread, which ends within 200 ms of the
//! ledger's drop; each pending [`PgWait`] has a thread that waits for it. The crate starts no
//! other thread.
//!
//! # Errors
//! Definite errors are those of the contract (`InsufficientCapacity`, `IdConflict`,
//! `Expired`, …). A lost connection gives `Unavailable` and a statement timeout `Timeout`:
//! both are indeterminate, and retrying with the same reservation id is safe (operations
//! are idempotent by id). A malformed URL, a refused connection or a schema newer than this
//! build fail at [`connect`](PgLedgerBuilder::connect) with an [`Error`].
//!
//! # Metrics
//! None of its own: the facade's monitor counts the ledger's events.
//!
//! # Example
//! ```no_run
//! use rm_model::{RequesterId, ReservationLedger, ReservationRequest, Resource,
//!     ResourceCapacity, ResourceRequirement, ResourceType, Unit};
//! use rm_postgres::PgLedger;
//!
//! let ledger = PgLedger::builder("postgres://rm@db.internal:5432/orchestrator")
//!     .password(std::env::var("RM_POSTGRES_PASSWORD")?)
//!     .schema("ci_pool")
//!     .connect()?;
//! ledger.register_resource(Resource::new(
//!     "runner-1",
//!     ResourceType::Compute,
//!     ResourceCapacity::of(16, Unit::CORES)?,
//! )?)?;
//! let hold = ledger.reserve(&ReservationRequest::new(
//!     RequesterId::new("build-42")?,
//!     vec![ResourceRequirement::new(ResourceType::Compute, 4, Unit::CORES)],
//! ))?;
//! ledger.confirm(&hold.id, Some(hold.fencing_token))?;
//! ledger.release(&hold.id, Some(hold.fencing_token))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//! The tests of this crate run the example's steps against a real server.

mod builder;
mod change;
pub mod cluster;
mod contract;
mod error;
mod events;
mod holds;
mod inspect;
mod ledger;
mod pool;
mod resources;
mod schema;
mod session;
mod view;
mod wait;
mod wakeups;

pub use builder::PgLedgerBuilder;
pub use error::Error;
pub use events::Listener;
pub use ledger::PgLedger;
pub use schema::SCHEMA_VERSION;
pub use session::{OnSessionEnd, WorkerSession};
pub use wait::{PgWait, Waiting};
