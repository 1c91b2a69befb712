//! End-to-end flows, one module per area.

mod autoscaled_pool;
mod config;
mod monitoring;
mod planner_equivalence;
mod seed;
mod validation;
