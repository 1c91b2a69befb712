//! Integration tests of the reservation manager, one module per area.

mod conformance;
