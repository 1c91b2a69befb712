//! The ledger contract of `rm-model`, as every ledger runs it.

use rm_reserve::ReservationManager;
use rm_testkit::conformance::ledger::LedgerFixture;

rm_testkit::ledger_conformance_tests!(|f: &LedgerFixture| {
    ReservationManager::builder()
        .clock(f.clock.clone())
        .event_sink(f.events.clone())
        .default_ttl(f.default_ttl)
        .build()
        .expect("the fixture's settings are valid")
});
