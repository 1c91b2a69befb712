//! Conformance suites and fakes for the `rm-model` contracts, so that every implementation of a
//! trait is held to the same tests.
//!
//! # Where it sits
//! `rm-testkit` depends on `rm-model` only and is used only as a dev-dependency of the crates
//! above it (never by `rm-model` itself: two copies of a crate in one test binary make traits
//! "not implemented"). It knows nothing of any concrete ledger, policy or pool.
//!
//! # Main items
//! - [`conformance::ledger`]: the ledger contract of [`ReservationLedger`] as plain functions
//!   taking a factory, and [`ledger_conformance_tests!`] to write one `#[test]` per case.
//! - [`ReferenceLedger`]: the contract implemented plainly behind one mutex; the oracle for
//!   model-based tests and the global-lock baseline of benchmarks.
//! - [`fakes`]: [`fakes::RecordingSink`], [`fakes::FakeScaleTarget`], [`fakes::StaticPolicy`],
//!   and [`fakes::FakeClock`] (the model's manual clock).
//! - [`hooked::HookedLedger`]: any ledger with hooks before and after each operation, to count
//!   calls or hold one caller at a chosen point and force an interleaving of threads.
//! - `postgres::server` (feature `postgres`): a real PostgreSQL for tests that need one (`RM_POSTGRES_URL`, or a
//!   private throw-away cluster this process starts and a watcher stops when it exits; a
//!   printed skip without either, a failure with `RM_REQUIRE_POSTGRES=1`).
//! - [`Rng`]: a seeded generator for randomised tests, [`cores`], the request most tests
//!   make, [`block_on`], a thread-parking executor for runtime-agnostic futures, and
//!   [`stress_rounds`] / [`proptest_cases`], the sizes CI runs (larger on request).
//!
//! # Design decisions
//! - Cases are plain functions over a factory, not a trait to implement: a backend that needs
//!   set-up (a database schema, a server) wraps it in the factory closure.
//! - Cases use only the trait, never an implementation's inherent API, so a remote ledger
//!   runs the same suite as the embedded one.
//! - Every case is shown to fail against a ledger that breaks its rule (`tests/broken.rs`).
//!
//! # Concurrency
//! Every fake and the reference ledger are `Send + Sync` and take `&self`; the reference ledger
//! serialises all operations on one mutex, so it is deadlock-free by construction.
//!
//! # Errors and panics
//! The ledger and fakes return the contract errors of `rm-model`. Conformance cases panic, as
//! tests do, when an implementation breaks the contract.
//!
//! # Metrics
//! None.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use rm_model::{ReservationLedger, ReservationRequest, RequesterId, Resource, ResourceCapacity,
//!     ResourceRequirement, ResourceType, SystemClock, Unit};
//! use rm_testkit::ReferenceLedger;
//! use rm_testkit::fakes::RecordingSink;
//!
//! let events = Arc::new(RecordingSink::new());
//! let ledger = ReferenceLedger::new(Arc::new(SystemClock::new()), events.clone(), Duration::from_secs(30));
//! ledger.register_resource(Resource::new("n1", ResourceType::Compute, ResourceCapacity::of(8, Unit::CORES)?)?)?;
//! let request = ReservationRequest::new(
//!     RequesterId::new("task-1")?,
//!     vec![ResourceRequirement::new(ResourceType::Compute, 2, Unit::CORES)],
//! );
//! let hold = ledger.reserve(&request)?;
//! ledger.confirm(&hold.id, Some(hold.fencing_token))?;
//! ledger.release(&hold.id, None)?;
//! assert!(ledger.audit()?.is_clean());
//! assert_eq!(events.names(), ["resource-registered", "reserved", "confirmed", "ended:released"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod conformance;
pub mod fakes;
pub mod hooked;
pub mod model;
#[cfg(feature = "postgres")]
pub mod postgres;
mod reference;

pub use reference::ReferenceLedger;
pub use rm_model::ReservationLedger;

/// A request by `requester` for `amount` cores of compute: the request most tests make.
pub fn cores(requester: &str, amount: i32) -> rm_model::ReservationRequest {
    rm_model::ReservationRequest::new(
        rm_model::RequesterId::new(requester).expect("a valid requester id"),
        vec![rm_model::ResourceRequirement::new(
            rm_model::ResourceType::Compute,
            amount,
            rm_model::Unit::CORES,
        )],
    )
}

/// The rounds of a stress test: `RM_STRESS_ROUNDS` when it is set to a number, else
/// `default` (modest, so that CI stays fast; larger runs are asked for).
pub fn stress_rounds(default: usize) -> usize {
    env_number("RM_STRESS_ROUNDS").unwrap_or(default)
}

/// The cases of a property test: `RM_PROPTEST_CASES` when it is set to a number, else
/// `default`.
pub fn proptest_cases(default: u32) -> u32 {
    env_number("RM_PROPTEST_CASES").unwrap_or(default)
}

fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok()?.parse().ok()
}

/// Wakes a thread parked in [`block_on`].
struct Unpark(std::thread::Thread);

impl std::task::Wake for Unpark {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to completion on this thread, parking between polls: the smallest executor
/// for tests and benches of runtime-agnostic futures. With `limit`, every park is a timed one
/// and `None` comes back if the limit passes first (a lost wake-up shows that way instead of
/// hanging); without, parks are untimed.
pub fn block_on<F: std::future::Future>(
    future: F,
    limit: Option<std::time::Duration>,
) -> Option<F::Output> {
    let deadline = limit.map(|limit| std::time::Instant::now() + limit);
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut context = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return Some(output);
        }
        match deadline {
            None => std::thread::park(),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return None;
                }
                std::thread::park_timeout(left);
            }
        }
    }
}

/// A small deterministic generator (xorshift) for randomised tests, so that a failure is
/// replayed from its seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (zero is replaced, since xorshift would stay at zero).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next number below `bound` (which must be positive).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

#[cfg(test)]
mod tests {
    use super::conformance::ledger::LedgerFixture;
    use super::*;

    // The reference ledger passes its own suite: the suite is passable, and each case can fail
    // (a ledger that breaks the contract fails it; see the `broken` tests below).
    ledger_conformance_tests!(|f: &LedgerFixture| ReferenceLedger::new(
        f.clock.clone(),
        f.events.clone(),
        f.default_ttl
    ));

    mod broken;
    #[cfg(feature = "postgres")]
    mod postgres;
}
