//! The model-based property test of rm-testkit on PostgreSQL (fewer sequences than the
//! embedded ledger runs: each step is a few round trips).

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use rm_model::ManualClock;
use rm_testkit::model::{op, run, with_resources};

use crate::support::{builder, test_server};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(rm_testkit::proptest_cases(24)))]

    #[test]
    fn the_postgres_ledger_behaves_like_the_reference(ops in prop::collection::vec(op(), 1..40)) {
        let Some(server) = test_server("the_postgres_ledger_behaves_like_the_reference") else {
            return Ok(());
        };
        let clock = Arc::new(ManualClock::new());
        let subject = builder(&server)
            .clock(clock.clone())
            .default_ttl(Duration::from_secs(10))
            .retention(Duration::from_secs(86_400))
            .connect()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        run(&subject, &clock, with_resources(ops))?;
    }
}
