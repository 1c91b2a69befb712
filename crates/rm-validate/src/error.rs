//! The crate's own error: a limit range that cannot be configured.

use rm_model::{ResourceType, UnitError};

/// Why a validator could not be configured.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A limit range's unit does not measure its resource type.
    #[error("set the limit range of {resource_type}: {unit} does not measure {resource_type}")]
    UnitMismatch {
        /// The type.
        resource_type: ResourceType,
        /// The unit given.
        unit: String,
    },
    /// A limit range's bounds are out of order (`min <= default <= max` must hold) or not
    /// positive.
    #[error("set the limit range of {resource_type}: {reason}")]
    Bounds {
        /// The type.
        resource_type: ResourceType,
        /// What is wrong.
        reason: String,
    },
    /// A bound could not be converted.
    #[error("set the limit range of {resource_type}")]
    Unit {
        /// The type.
        resource_type: ResourceType,
        /// The conversion failure.
        #[source]
        source: UnitError,
    },
}
