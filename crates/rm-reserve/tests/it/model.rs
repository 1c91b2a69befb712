//! Model-based test: random operation sequences run on the manager and on the reference
//! ledger of `rm-testkit` (see `rm_testkit::model`). `RM_PROPTEST_CASES` raises the number of
//! sequences.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use rm_model::ManualClock;
use rm_testkit::model::{op, run, with_resources};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        rm_testkit::proptest_cases(256)
    ))]

    #[test]
    fn the_manager_behaves_like_the_reference(ops in prop::collection::vec(op(), 1..60)) {
        let clock = Arc::new(ManualClock::new());
        let subject = rm_reserve::ReservationManager::builder()
            .clock(clock.clone())
            .default_ttl(Duration::from_secs(10))
            .retention(Duration::from_secs(86_400))
            .build()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        run(&subject, &clock, with_resources(ops))?;
    }
}
