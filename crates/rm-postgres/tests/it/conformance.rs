//! The ledger conformance suite of rm-testkit, unchanged, on PostgreSQL: each case on a
//! ledger in a schema of its own, on the fixture's clock and sink.

use rm_testkit::conformance::ledger::{LedgerFixture, run_all};

use crate::support::{builder, test_server};

#[test]
fn the_postgres_ledger_keeps_the_ledger_contract() {
    let Some(server) = test_server("the_postgres_ledger_keeps_the_ledger_contract") else {
        return;
    };
    run_all(&|fixture: &LedgerFixture| {
        Box::new(
            builder(&server)
                .clock(fixture.clock.clone())
                .event_sink(fixture.events.clone())
                .default_ttl(fixture.default_ttl)
                .connect()
                .expect("connect to the test server"),
        )
    });
}
