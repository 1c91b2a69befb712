//! End-to-end flows, one module per area.

mod autoscaled_pool;
mod config;
mod seed;
mod validation;
