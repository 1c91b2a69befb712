//! Conformance suites: each contract of `rm-model` stated once as tests, run by every
//! implementation.

pub mod ledger;
