//! The crate's errors: [`Error`], and a provider's failure to create a member.

use std::time::Duration;

/// What went wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting has a value no pool can work with.
    #[error("invalid {setting}: {reason}")]
    InvalidSetting {
        /// The setting, as the builder names it.
        setting: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No member is idle and the pool may not grow.
    #[error("the pool is exhausted")]
    Exhausted,
    /// No member came back in time.
    #[error("no member became available within {waited:?}")]
    Timeout {
        /// How long the caller waited.
        waited: Duration,
    },
    /// The provider could not create a member.
    #[error("the provider failed: {0}")]
    Provider(#[from] ProviderError),
    /// The group has no pool of that name.
    #[error("no pool named {pool:?}")]
    UnknownPool {
        /// The name asked for.
        pool: String,
    },
    /// An audit found the books of a pool broken (a bug, never the caller's input).
    #[error("pool {pool:?} is inconsistent: {detail}")]
    Inconsistent {
        /// The pool.
        pool: String,
        /// What does not add up.
        detail: String,
    },
    /// The group cannot grant the units now.
    #[error(
        "pool {pool:?} wants {wanted} units, {available} can be had now ({reclaiming} being reclaimed)"
    )]
    Insufficient {
        /// The pool asking.
        pool: String,
        /// Units asked for.
        wanted: u64,
        /// Units it could have had (own free plus borrowable).
        available: u64,
        /// Lent units this refusal started reclaiming.
        reclaiming: u64,
    },
}

/// A provider's failure to create a member.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    /// The provider's explanation.
    pub message: String,
}
