//! End-to-end tests of the resource manager: whole flows across crates, as an embedding
//! orchestrator drives them.
//!
//! # Where it sits
//! A top-level crate: it may depend on any workspace crate and nothing depends on it. The
//! flows run through `rm-facade`'s `ResourceManager` and the layers below it (the ledger on
//! PostgreSQL too, against the test harness's server); the tests live in `it/` (one binary, a
//! module per area).
//!
//! # Main types
//! [`Scenario`]: a cluster and a list of requests as people write them in TOML or JSON, so
//! end-to-end tests read like the configuration files users keep.
//!
//! # Concurrency, errors, metrics
//! [`Scenario`] is plain data. Reading one fails with the deserialiser's error, which names the
//! offending field (unknown fields are errors). No metrics.
//!
//! # Example
//! ```
//! let scenario: rm_tests::Scenario = serde_json::from_str(r#"{
//!     "resources": [{"name": "n1", "type": "compute", "capacity": {"maximum": 8, "unit": "cores"}}],
//!     "requests": [{"requester": "t1", "requirements": [{"type": "compute", "amount": "500m"}]}]
//! }"#)?;
//! assert_eq!(scenario.requests[0].requirements[0].amount(), rm_model::Quantity::from_milli(500));
//! # Ok::<(), serde_json::Error>(())
//! ```

use rm_model::{ReservationRequest, Resource};
use serde::{Deserialize, Serialize};

/// A cluster and the requests made of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The resources to register, in order.
    pub resources: Vec<Resource>,
    /// The requests to make, in order.
    #[serde(default)]
    pub requests: Vec<ReservationRequest>,
}

/// The code in `README.md`, compiled and run as doctests so the usage shown there stays true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
