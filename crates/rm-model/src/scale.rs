//! The scale-target contract: anything whose size an autoscaler or the contention resolver can
//! change (a pool, a node group, a connection pool).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The size of a scale target, in its own units (members, nodes, replicas).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ScaleStatus {
    /// How many units it has now.
    pub current: u64,
    /// How many it is moving toward (equal to `current` when settled).
    pub desired: u64,
    /// The fewest it may have.
    pub minimum: u64,
    /// The most it may have.
    pub maximum: u64,
}

/// A failed scaling request.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScaleError {
    /// The size asked for is outside the target's bounds; nothing changed.
    #[error("scale {target} to {requested}: outside its bounds {minimum}..={maximum}")]
    OutOfBounds {
        /// The target.
        target: String,
        /// The size asked for.
        requested: u64,
        /// The lower bound.
        minimum: u64,
        /// The upper bound.
        maximum: u64,
    },
    /// The target refused (for example during a cooldown); nothing changed.
    #[error("scale {target}: {reason}")]
    Rejected {
        /// The target.
        target: String,
        /// Why.
        reason: String,
    },
    /// The provider behind the target failed; the change may be partly applied, and
    /// `status()` tells.
    #[error("scale {target}: the provider failed")]
    Unavailable {
        /// The target.
        target: String,
        /// The underlying failure.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
}

/// Something whose size can be changed.
///
/// Contract: `scale_to` is idempotent (asking for the current desired size changes nothing);
/// it returns once the request is accepted, not when capacity has arrived, so callers poll
/// `status()` (or watch ledger events) to see `current` reach `desired`. Sizes outside
/// `minimum..=maximum` fail with [`ScaleError::OutOfBounds`] and change nothing.
pub trait ScaleTarget: Send + Sync {
    /// The target's name, for decisions and metrics labels.
    fn name(&self) -> &str;

    /// The current size and bounds.
    fn status(&self) -> Result<ScaleStatus, ScaleError>;

    /// Asks for `desired` units.
    fn scale_to(&self, desired: u64) -> Result<ScaleStatus, ScaleError>;
}

macro_rules! forward_scale_target {
    ($($ptr:ty),*) => {$(
        impl<T: ScaleTarget + ?Sized> ScaleTarget for $ptr {
            fn name(&self) -> &str {
                (**self).name()
            }
            fn status(&self) -> Result<ScaleStatus, ScaleError> {
                (**self).status()
            }
            fn scale_to(&self, desired: u64) -> Result<ScaleStatus, ScaleError> {
                (**self).scale_to(desired)
            }
        }
    )*};
}
forward_scale_target!(&T, Box<T>, Arc<T>);
