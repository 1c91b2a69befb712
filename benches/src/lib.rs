//! Workloads shared by the criterion benchmarks under `benches/benches/`.
//!
//! # Where it sits
//! A top-level crate: it may depend on any workspace crate, and nothing depends on it. The
//! benchmarks build their inputs here so that every bench and every peer in one binary runs on
//! the same data.
//!
//! # Main items
//! [`cluster`] builds a heterogeneous cluster of multi-dimensional nodes with labels;
//! [`task_requirements`] a task's co-located requirements; [`CountingAllocator`] counts heap
//! allocations for the benches that promise none.
//!
//! # Concurrency, errors, metrics
//! Plain functions over owned values; they return `rm-model` errors and emit no metrics.
//!
//! # Example
//! ```
//! let nodes = rm_benches::cluster(10)?;
//! assert_eq!(nodes.len(), 10);
//! assert_eq!(nodes[0].dimension_count(), 3);
//! # Ok::<(), rm_model::ModelError>(())
//! ```

mod counting;

pub use counting::{CountingAllocator, allocations};

use rm_model::{
    ColocationGroup, ModelError, Resource, ResourceCapacity, ResourceRequirement,
    ResourceSpecification, ResourceType, Unit,
};

/// `count` nodes cycling through three shapes (CPU-heavy, memory-heavy, GPU), spread over four
/// zones, each with an `arch` capability and a `zone` label.
pub fn cluster(count: usize) -> Result<Vec<Resource>, ModelError> {
    (0..count)
        .map(|i| {
            let (cores, memory_gib, gpus) = match i % 3 {
                0 => (64, 256, 0),
                1 => (32, 512, 0),
                _ => (48, 384, 8),
            };
            let arch = if i % 5 == 0 { "arm64" } else { "x86_64" };
            Ok(Resource::new(
                &format!("node-{i}"),
                ResourceType::Compute,
                ResourceCapacity::of(cores, Unit::CORES)?,
            )?
            .with_capacity(
                ResourceType::Memory,
                ResourceCapacity::of(memory_gib, Unit::GIB)?,
            )
            .with_capacity(
                ResourceType::Gpu,
                ResourceCapacity::of(gpus, Unit::DEVICES)?,
            )
            .with_specification(
                ResourceSpecification::new(ResourceType::Compute).with("arch", arch)?,
            )
            .with_label("zone", &format!("zone-{}", i % 4))?)
        })
        .collect()
}

/// A task of `cores` cores and `memory_gib` GiB on one node.
pub fn task_requirements(
    cores: i32,
    memory_gib: i32,
) -> Result<Vec<ResourceRequirement>, ModelError> {
    let group = ColocationGroup::new("task")?;
    Ok(vec![
        ResourceRequirement::new(ResourceType::Compute, cores, Unit::CORES)
            .colocated(group.clone()),
        ResourceRequirement::new(ResourceType::Memory, memory_gib, Unit::GIB).colocated(group),
    ])
}

/// One core of compute, placed greedily: the request of the one-resource cycle benches.
pub fn one_core() -> rm_model::ReservationRequest {
    rm_model::ReservationRequest::new(
        rm_model::RequesterId::new("t").expect("a valid requester id"),
        vec![rm_model::ResourceRequirement::new(
            rm_model::ResourceType::Compute,
            1,
            rm_model::Unit::CORES,
        )],
    )
    .with_strategy(rm_model::ReservationStrategy::Greedy)
}
