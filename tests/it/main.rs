//! End-to-end flows, one module per area.

mod config;
mod seed;
mod validation;
