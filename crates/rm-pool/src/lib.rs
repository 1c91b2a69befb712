//! Resource pools: members grouped, checked out and returned, grown and shrunk live, and
//! capacity lent between sibling pools.
//!
//! # Where it sits
//! A middle crate: it depends on `rm-model` only (for [`Resource`](rm_model::Resource),
//! label [`Constraint`](rm_model::Constraint)s and the [`Clock`](rm_model::Clock)). The
//! facade connects pools to `rm-scale` (a dynamic pool is a scale target) and to metrics.
//!
//! # Main types
//! - [`Pool`]: an object pool. Static ([`Pool::fixed`], or [`Pool::select`] to group the
//!   resources a label selector picks) or dynamic ([`Pool::dynamic`]: members created through
//!   a [`Provider`] up to a maximum, idle ones destroyed after a timeout down to a minimum).
//!   [`Pooled`] is a checked-out member, returned when dropped; [`PoolStatus`] reports size,
//!   in use, available, waiting and draining. Tasks share a contended pool by weight through
//!   [`Pool::checkout_as`] and [`Pool::set_weight`] ([`ShareStatus`] per task).
//! - [`ElasticGroup`]: sibling pools of counted units with guaranteed shares, lending and
//!   borrowing limits, and reclaim; [`ElasticLease`] is a grant, released when dropped.
//! - The items that go with them: [`Reclaim`], [`ProviderError`], [`PoolLimits`].
//!
//! # Design decisions
//! - A shrink drains, never revokes: idle members leave at once, checked-out ones when they
//!   come back ([`PoolStatus::draining`]).
//! - Checkout takes the most recently returned member, so members beyond the working set go
//!   idle and age out (the same order as deadpool and HikariCP).
//! - Providers are called without any lock held; a creation slot is reserved first, so
//!   concurrent checkouts never exceed the maximum.
//! - Weighted sharing is work-conserving: a task above its fair share only defers to a task
//!   below its share that is waiting; a member is never left idle while anyone waits.
//! - An elastic grant is all or nothing and takes the pool's own units before borrowing.
//!
//! # Concurrency
//! [`Pool`] and [`ElasticGroup`] are `Send + Sync` handles (clone to share). Each holds one
//! mutex for a few integer updates per operation; blocked checkouts wait on a condition
//! variable and are woken one per returned member. Guards may move between threads.
//!
//! # Errors and panics
//! [`Error`] names what failed: an invalid setting, an exhausted pool, a timeout, a
//! provider's failure, an unknown pool, or a grant the group cannot make (with what it
//! could). Failed operations change nothing (except starting a reclaim, which is the point).
//! Nothing panics on input.
//!
//! # Metrics
//! None directly; [`PoolStatus`] and [`ElasticStatus`] are what the facade exports.
//!
//! # Example
//! ```
//! use std::time::Duration;
//! use rm_pool::{ElasticGroup, ElasticPoolSpec, Pool};
//!
//! // A static pool of three licences.
//! let licences = Pool::fixed(["lic-a", "lic-b", "lic-c"]);
//! let held = licences.try_checkout()?;
//! assert_eq!(licences.status().in_use, 1);
//! drop(held);
//! assert_eq!(licences.status().available, 3);
//!
//! // Two teams lend each other idle cores.
//! let spec = |name: &str| ElasticPoolSpec {
//!     name: name.into(),
//!     guaranteed: 8,
//!     borrowing_limit: 4,
//!     lending_limit: 4,
//! };
//! let group = ElasticGroup::new(vec![spec("etl"), spec("ml")])?;
//! let burst = group.acquire("ml", 12)?;
//! assert_eq!(burst.borrowed(), 4);
//! # let _ = Duration::ZERO;
//! # Ok::<(), rm_pool::Error>(())
//! ```

mod elastic;
mod error;
mod pool;

pub use elastic::{ElasticGroup, ElasticLease, ElasticPoolSpec, ElasticStatus, Reclaim};
pub use error::{Error, ProviderError};
pub use pool::{Pool, PoolLimits, PoolStatus, Pooled, Provider, ShareStatus};
