//! The ledger and the validator meet only through `rm-model`'s trait: wired here as the
//! facade will wire them.

use std::sync::Arc;

use rm_model::{
    Constraint, LedgerError, RequesterId, ReservationLedger, ReservationRequest, Resource,
    ResourceCapacity, ResourceRequirement, ResourceType, Unit, ValidationContext, Validator,
};
use rm_reserve::ReservationManager;
use rm_validate::{ConstraintValidator, LimitRange};

fn validator() -> ConstraintValidator {
    ConstraintValidator::new()
        .with_limit_range(ResourceType::Compute, LimitRange::new(Unit::CORES).max(8))
        .expect("a valid limit range")
}

fn node(name: &str, cores: i32, zone: &str) -> Resource {
    Resource::new(
        name,
        ResourceType::Compute,
        ResourceCapacity::of(cores, Unit::CORES).expect("valid"),
    )
    .expect("valid")
    .with_label("zone", zone)
    .expect("valid")
}

fn ask(requirements: Vec<ResourceRequirement>) -> ReservationRequest {
    ReservationRequest::new(RequesterId::new("t").expect("valid"), requirements)
}

#[test]
fn the_manager_admits_through_the_constraint_validator() -> Result<(), Box<dyn std::error::Error>> {
    let manager = ReservationManager::builder()
        .validator(Arc::new(validator()))
        .build()?;
    manager.register_resource(node("a", 16, "x"))?;
    manager.register_resource(node("b", 4, "y"))?;

    // Above the limit range, and a requirement nothing could ever hold: every problem named.
    let err = manager
        .reserve(&ask(vec![
            ResourceRequirement::new(ResourceType::Compute, 12, Unit::CORES),
            ResourceRequirement::new(ResourceType::Compute, 2, Unit::CORES)
                .with_constraint(Constraint::label("zone")?.eq("z")),
        ]))
        .unwrap_err();
    let LedgerError::InvalidInput { field, reason } = &err else {
        panic!("expected invalid input, got {err}");
    };
    assert_eq!(field, "requirements[0].amount");
    assert!(reason.contains("above the maximum of 8 cores"), "{reason}");
    assert!(
        reason.contains("requirements[1]: none of the 2 resources"),
        "{reason}"
    );

    // A well-formed request is granted, and the grant passes the grant check.
    let request = ask(vec![
        ResourceRequirement::new(ResourceType::Compute, 4, Unit::CORES)
            .with_constraint(Constraint::label("zone")?.eq("y")),
    ]);
    let grant = manager.reserve(&request)?;
    let snapshot = manager.snapshot()?;
    let context = ValidationContext {
        resources: &snapshot.resources,
        active: &snapshot.active,
        name_checked: false,
    };
    validator().validate_reservation(&grant, &request, &context)?;
    assert_eq!(grant.items[0].resource.as_str(), "b");

    // Registration is validated too.
    let wrong_unit = Resource::new(
        "c",
        ResourceType::Compute,
        ResourceCapacity::of(1, Unit::GIB)?,
    )?;
    let err = manager.register_resource(wrong_unit).unwrap_err();
    assert!(
        matches!(&err, LedgerError::InvalidInput { field, .. } if field == "capacity.unit"),
        "{err}"
    );
    // The ledger checks names itself: an update keeps its own, a second `a` is a duplicate.
    manager.update_resource(node("b", 8, "y"))?;
    let err = manager.register_resource(node("a", 1, "x")).unwrap_err();
    assert!(
        matches!(&err, LedgerError::DuplicateResource { .. }),
        "{err}"
    );
    Ok(())
}
