//! What the planner hands a ledger: one requirement placed on one resource, kept inline for
//! the few placements of a typical request.

use rm_model::{Quantity, ReservationItem, ReservationRequest, ResourceName, ResourceType, Unit};
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

impl Placement {
    /// What it grants of `request` on `resource` (the resource at its position), as the
    /// reservation shows it: an elastic requirement's minimum is converted to the resource's
    /// unit.
    pub fn item(&self, request: &ReservationRequest, resource: &ResourceName) -> ReservationItem {
        ReservationItem {
            requirement: self.requirement,
            resource: resource.clone(),
            resource_type: self.resource_type.clone(),
            amount: Quantity::from_milli(self.amount),
            minimum: self.minimum(request),
            unit: self.unit.clone(),
        }
    }

    /// [`Self::item`] written over `item`, reusing what it holds: a name or unit it already
    /// shares with the placement is left alone (no reference count moves).
    pub fn write_item(
        &self,
        item: &mut ReservationItem,
        request: &ReservationRequest,
        resource: &ResourceName,
    ) {
        item.requirement = self.requirement;
        item.resource.clone_from(resource);
        item.resource_type.clone_from(&self.resource_type);
        item.amount = Quantity::from_milli(self.amount);
        item.minimum = self.minimum(request);
        item.unit.clone_from(&self.unit);
    }

    /// An elastic requirement's minimum in the resource's unit.
    fn minimum(&self, request: &ReservationRequest) -> Option<Quantity> {
        let requirement = &request.requirements[self.requirement];
        requirement
            .minimum()
            .and_then(|m| requirement.unit().convert(m, &self.unit).ok())
    }
}

#[cfg(test)]
mod tests {
    use rm_model::{RequesterId, ResourceRequirement};

    use super::*;

    #[test]
    fn an_item_shows_the_amount_and_minimum_in_the_resources_unit() {
        // 1 GiB asked, elastic down to 512 MiB, on a resource that counts in MiB.
        let request = ReservationRequest::new(
            RequesterId::new("t").unwrap(),
            vec![
                ResourceRequirement::new(ResourceType::Compute, 1, Unit::CORES),
                ResourceRequirement::new(ResourceType::Memory, 1, Unit::GIB)
                    .elastic(Quantity::from_milli(500)),
            ],
        );
        let placement = Placement {
            requirement: 1,
            position: 3,
            resource_type: ResourceType::Memory,
            amount: 1024 * 1000,
            unit: Unit::MIB,
        };
        let node = ResourceName::new("n3").unwrap();
        let item = placement.item(&request, &node);
        assert_eq!(item.requirement, 1);
        assert_eq!(item.resource, node);
        assert_eq!(item.resource_type, ResourceType::Memory);
        assert_eq!(item.amount, Quantity::from(1024));
        assert_eq!(item.unit, Unit::MIB);
        assert_eq!(item.minimum, Some(Quantity::from(512)));
        // A requirement that is not elastic has no minimum.
        let first = Placement {
            requirement: 0,
            resource_type: ResourceType::Compute,
            amount: 1000,
            unit: Unit::CORES,
            ..placement
        };
        assert_eq!(first.item(&request, &node).minimum, None);
        // Written over another item, it is the same item.
        let mut over = first.item(&request, &ResourceName::new("other").unwrap());
        placement.write_item(&mut over, &request, &node);
        assert_eq!(over, item);
    }
}
