//! The crate's own error: any failure of building model values, so that code constructing
//! several of them can use one `?`.

use crate::name::NameError;
use crate::quantity::QuantityError;
use crate::requirement::ConstraintError;
use crate::reservation::TransitionError;
use crate::resource::{CapacityError, ResourceError};
use crate::unit::UnitError;

/// Any failure of building or converting model values.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A quantity could not be parsed or computed.
    #[error(transparent)]
    Quantity(#[from] QuantityError),
    /// A unit could not be read or converted.
    #[error(transparent)]
    Unit(#[from] UnitError),
    /// A name is not well-formed.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A capacity breaks `maximum >= current >= 0`.
    #[error(transparent)]
    Capacity(#[from] CapacityError),
    /// A constraint description cannot be read.
    #[error(transparent)]
    Constraint(#[from] ConstraintError),
    /// A resource description cannot be read.
    #[error(transparent)]
    Resource(#[from] ResourceError),
    /// A reservation state change is not allowed.
    #[error(transparent)]
    Transition(#[from] TransitionError),
}
