//! The wait queue as a ledger (the one way the facade's operations go) keeps the ledger
//! contract: the rm-testkit suite runs on a `WaitQueue` over the reference ledger.

use std::sync::Arc;

use rm_contention::WaitQueue;
use rm_testkit::ReferenceLedger;
use rm_testkit::conformance::ledger::LedgerFixture;

rm_testkit::ledger_conformance_tests!(|f: &LedgerFixture| {
    WaitQueue::new(
        Arc::new(ReferenceLedger::new(
            f.clock.clone(),
            f.events.clone(),
            f.default_ttl,
        )),
        f.clock.clone(),
    )
});
