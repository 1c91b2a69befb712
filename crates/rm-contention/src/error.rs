//! The crate's errors, one per operation that can fail: waiting ([`WaitError`]), preempting
//! ([`PreemptionError`]) and configuring a resolver ([`ResolverError`]).

use std::time::Duration;

use rm_model::{ContentionStrategy, LedgerError};

/// Why waiting ended without a reservation.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// The timeout passed first; the request left the queue.
    #[error("wait for capacity: timed out after {after:?}")]
    TimedOut {
        /// How long it waited.
        after: Duration,
    },
    /// The ticket was cancelled or its queue dropped.
    #[error("wait for capacity: cancelled")]
    Cancelled,
    /// The ledger refused the request for a reason waiting cannot cure (invalid input, an id
    /// used by another request, an unavailable store).
    #[error("wait for capacity: the ledger refused the request")]
    Refused(#[source] LedgerError),
}

/// Why a request cannot preempt.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PreemptionError {
    /// Its priority class never preempts.
    #[error("preempt for {requester}: its priority class never preempts")]
    NeverPreempts {
        /// Who asked.
        requester: rm_model::RequesterId,
    },
    /// No resource can be freed enough by ending lower-priority, preemptible holds.
    #[error(
        "preempt for {requester}: no resource can be freed enough by ending lower-priority holds"
    )]
    NoVictims {
        /// Who asked.
        requester: rm_model::RequesterId,
    },
}

/// Why a resolver could not be configured.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolverError {
    /// The strategy is not available in this resolver.
    #[error("configure contention strategy {strategy}: {reason}")]
    Unsupported {
        /// The strategy.
        strategy: ContentionStrategy,
        /// Why.
        reason: &'static str,
    },
}
