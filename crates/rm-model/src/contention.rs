//! The contention-resolution contract: what to do when a request does not fit.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::ledger::{LedgerError, ReservationLedger};
use crate::policy::Refusal;
use crate::reservation::{Reservation, ReservationId, ReservationRequest};

/// How contention is resolved (the seed's wait, priority, preempt, scale, redistribute).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ContentionStrategy {
    /// Wait in an ordered queue until capacity frees.
    Wait,
    /// Wait, admitted in the policy's priority order.
    Priority,
    /// Preempt lower-priority preemptible holds.
    Preempt,
    /// Ask a scale target for more capacity, then wait for it.
    Scale,
    /// Shrink elastic holds toward their minimum.
    Redistribute,
}

impl ContentionStrategy {
    /// The strategy's name in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            ContentionStrategy::Wait => "wait",
            ContentionStrategy::Priority => "priority",
            ContentionStrategy::Preempt => "preempt",
            ContentionStrategy::Scale => "scale",
            ContentionStrategy::Redistribute => "redistribute",
        }
    }
}

impl fmt::Display for ContentionStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Something a resolver did to make room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ContentionAction {
    /// A hold was preempted.
    Preempted {
        /// The victim.
        victim: ReservationId,
    },
    /// An elastic hold was shrunk.
    Shrunk {
        /// The reservation shrunk.
        reservation: ReservationId,
    },
    /// A scale target was asked to grow.
    ScaleRequested {
        /// The target.
        target: String,
        /// The size asked for.
        desired: u64,
    },
}

/// Where a contended request stands after resolution.
#[derive(Clone, Debug)]
pub enum ResolutionOutcome {
    /// Granted (after making room).
    Granted(Reservation),
    /// Waiting in a queue at this position (0 is next).
    Queued {
        /// The position.
        position: usize,
    },
    /// Given up.
    Refused(Refusal),
}

/// What a resolver did and why.
#[derive(Clone, Debug)]
pub struct Resolution {
    /// The strategy that was applied.
    pub strategy: ContentionStrategy,
    /// Where the request stands.
    pub outcome: ResolutionOutcome,
    /// What was done to make room, in order.
    pub actions: Vec<ContentionAction>,
    /// Why, for people (`preempted 2 holds of priority <= 5 on node-3`).
    pub explanation: String,
}

/// Resolves a request that did not fit.
///
/// Contract: `resolve` is called after `ledger.reserve(request)` failed with `cause` (usually
/// [`LedgerError::InsufficientCapacity`]). It may change the ledger only through its trait
/// (preempt, reserve), never revokes holds of equal or higher priority, and reports every
/// change in [`Resolution::actions`]. A granted outcome's reservation holds exactly what the
/// request asked. Implementations are `Send + Sync` with `&self`.
pub trait ContentionResolver: Send + Sync {
    /// Resolves contention for `request`.
    fn resolve(
        &self,
        ledger: &dyn ReservationLedger,
        request: &ReservationRequest,
        cause: &LedgerError,
    ) -> Resolution;
}

macro_rules! forward_resolver {
    ($($ptr:ty),*) => {$(
        impl<T: ContentionResolver + ?Sized> ContentionResolver for $ptr {
            fn resolve(
                &self,
                ledger: &dyn ReservationLedger,
                request: &ReservationRequest,
                cause: &LedgerError,
            ) -> Resolution {
                (**self).resolve(ledger, request, cause)
            }
        }
    )*};
}
forward_resolver!(&T, Box<T>, Arc<T>);
