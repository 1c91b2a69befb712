//! A fresh ledger in a schema of its own on the test server.

use std::time::Duration;

use rm_model::{
    RequesterId, ReservationRequest, Resource, ResourceCapacity, ResourceRequirement, ResourceType,
    Unit,
};
use rm_postgres::{PgLedger, PgLedgerBuilder};
use rm_testkit::postgres::{Durability, TestServer, server};

/// The test server, or `None` after the harness printed why the test skips.
pub(crate) fn test_server(who: &str) -> Option<TestServer> {
    server(who, Durability::Throwaway)
}

/// A builder for a ledger in a fresh schema of `server`.
pub(crate) fn builder(server: &TestServer) -> PgLedgerBuilder {
    let schema = rm_testkit::postgres::server("schema", Durability::Throwaway)
        .map_or_else(|| server.name.clone(), |s| s.name);
    PgLedger::builder(server.url.clone())
        .schema(schema)
        .pool_size(8)
}

/// A resource with `cores` cores and `memory_gib` GiB of memory.
pub(crate) fn host(name: &str, cores: i32, memory_gib: i32) -> Resource {
    Resource::new(
        name,
        ResourceType::Compute,
        ResourceCapacity::of(cores, Unit::CORES).expect("valid"),
    )
    .expect("valid name")
    .with_capacity(
        ResourceType::Memory,
        ResourceCapacity::of(memory_gib, Unit::GIB).expect("valid"),
    )
}

/// A plain connection to the test server, for auditors and fault injection that must not go
/// through the ledger.
pub(crate) fn connect(server: &TestServer) -> postgres::Client {
    postgres::Client::connect(&server.url, postgres::NoTls).expect("connect to the test server")
}

/// A request by `who` for `amount` cores, pending for 600 s unless confirmed.
pub(crate) fn cores(who: &str, amount: i32) -> ReservationRequest {
    ReservationRequest::new(
        RequesterId::new(who).expect("valid"),
        vec![ResourceRequirement::new(
            ResourceType::Compute,
            amount,
            Unit::CORES,
        )],
    )
    .with_ttl(Duration::from_secs(600))
}

/// A second ledger on `first`'s schema, as another process (or host) would open it: its own
/// connections, view and listener.
pub(crate) fn another(server: &TestServer, first: &PgLedger) -> PgLedger {
    PgLedger::builder(server.url.clone())
        .schema(first.schema())
        .connect()
        .expect("connect")
}

/// `read` again while it fails indeterminately (a timeout or a lost connection on a loaded
/// machine: the contract says a retry is safe), at most five times; any other error, or the
/// fifth indeterminate one, is returned.
pub(crate) fn retrying<T>(
    mut read: impl FnMut() -> Result<T, rm_model::LedgerError>,
) -> Result<T, rm_model::LedgerError> {
    let mut attempt = 1;
    loop {
        match read() {
            Err(err) if err.is_indeterminate() && attempt < 5 => attempt += 1,
            answer => return answer,
        }
    }
}
