//! What the planner hands a ledger: one requirement placed on one resource, kept inline for
//! the few placements of a typical request.

use rm_model::{ResourceType, Unit};
use smallvec::SmallVec;

/// Inline storage for the few placements of a typical request, so that planning does not
/// allocate.
pub type Small<T> = SmallVec<[T; 4]>;

/// One requirement placed on one resource, before it is committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The requirement's index in the request.
    pub requirement: usize,
    /// The resource's position in the catalog.
    pub position: usize,
    /// The requirement's type.
    pub resource_type: ResourceType,
    /// Thousandths of the resource's unit.
    pub amount: i64,
    /// The resource's unit of the type.
    pub unit: Unit,
}
