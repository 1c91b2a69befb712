//! End-to-end flows, one module per area.

mod autoscaled_pool;
mod config;
mod monitoring;
mod planner_equivalence;
mod postgres_facade;
mod seed;
mod validation;
