//! The facade on the PostgreSQL ledger (`[ledger] backend = "postgres"`): two managers, as
//! two processes on two hosts would run, configured from TOML against the test server, share
//! one pool.

use rm_facade::{Config, ResourceManager};
use rm_model::{
    RequesterId, ReservationRequest, ResourceName, ResourceRequirement, ResourceType, Unit,
};
use rm_testkit::postgres::{Durability, server};

fn manager(
    url: &str,
    schema: &str,
    password_env: Option<&str>,
) -> Result<ResourceManager, rm_facade::Error> {
    let password = password_env
        .map(|v| format!("password_env = \"{v}\"\n"))
        .unwrap_or_default();
    let config = Config::from_toml(&format!(
        r#"
[ledger]
backend = "postgres"
url = "{url}"
schema = "{schema}"
{password}
[[resources]]
name = "runner-1"
type = "compute"
capacity = {{ maximum = 8, unit = "cores" }}
"#
    ))
    .expect("parses");
    ResourceManager::builder().config(config).build()
}

#[test]
fn two_managers_on_one_schema_share_the_pool() {
    let Some(test_server) = server(
        "two_managers_on_one_schema_share_the_pool",
        Durability::Throwaway,
    ) else {
        return;
    };
    let schema = server("schema", Durability::Throwaway)
        .expect("the same server")
        .name;
    let first = manager(&test_server.url, &schema, None).expect("first manager");
    // The second finds the configured resource registered already, and the same.
    let second = manager(&test_server.url, &schema, None).expect("second manager");
    assert_eq!(second.ledger().resources().expect("resources").len(), 1);
    let request = ReservationRequest::new(
        RequesterId::new("build-1").expect("valid"),
        vec![ResourceRequirement::new(
            ResourceType::Compute,
            6,
            Unit::CORES,
        )],
    );
    let held = first.try_reserve(&request).expect("granted by the first");
    let other = ReservationRequest::new(
        RequesterId::new("build-2").expect("valid"),
        vec![ResourceRequirement::new(
            ResourceType::Compute,
            4,
            Unit::CORES,
        )],
    );
    assert!(
        second.ledger().try_reserve(&other).expect("asks").is_none(),
        "only 2 cores left"
    );
    first
        .confirm(&held.id, Some(held.fencing_token))
        .expect("confirm");
    first
        .release(&held.id, Some(held.fencing_token))
        .expect("release");
    second
        .ledger()
        .reserve(&other)
        .expect("granted by the second once released");
    let usage = first.snapshot().expect("snapshot");
    let runner = usage
        .usage_of("runner-1", &ResourceType::Compute)
        .expect("runner-1 is there");
    assert_eq!(runner.pending, 4.into(), "the first sees the second's hold");
    assert!(
        first
            .ledger()
            .resources()
            .expect("resources")
            .iter()
            .any(|r| r.name() == &ResourceName::new("runner-1").expect("valid"))
    );
    // A password variable that is not set is a configuration problem, named.
    let err = manager(
        &test_server.url,
        &schema,
        Some("RM_TEST_UNSET_PASSWORD_VARIABLE"),
    )
    .expect_err("refused");
    assert!(err.to_string().contains("ledger.password_env"), "{err}");
}
