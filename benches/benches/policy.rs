//! Fair-share decisions: DRF among 1,000 tenants over 4 resource types (DESIGN §8: at most
//! 1 µs per decision). A decision picks the tenant with the lowest dominant share and charges
//! it one task, which moves it in the share index. The peer is a linear scan for the minimum,
//! what a policy without the index would do.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rm_model::{Quantity, RequesterId, ResourceType, Timestamp, Unit};
use rm_policy::FairAllocationPolicy;

fn types() -> Vec<ResourceType> {
    vec![
        ResourceType::Compute,
        ResourceType::Memory,
        ResourceType::Gpu,
        ResourceType::custom("licences").expect("valid"),
    ]
}

fn setup() -> (FairAllocationPolicy, Vec<RequesterId>) {
    let policy = FairAllocationPolicy::new("drf");
    for resource_type in types() {
        policy.set_capacity(resource_type, Quantity::from(1_000_000), &Unit::DEVICES);
    }
    let tenants: Vec<_> = (0..1_000)
        .map(|i| RequesterId::new(&format!("tenant-{i}")).expect("valid"))
        .collect();
    for (i, tenant) in tenants.iter().enumerate() {
        for (k, resource_type) in types().iter().enumerate() {
            let amount = Quantity::from(((i * 7 + k * 13) % 97) as i32);
            policy.record(
                tenant,
                resource_type,
                amount,
                &Unit::DEVICES,
                Timestamp::ZERO,
            );
        }
    }
    // Every tenant has tasks waiting, more than the bench launches.
    for tenant in &tenants {
        policy.set_demand(tenant, u64::MAX / 2);
    }
    (policy, tenants)
}

fn decisions(c: &mut Criterion) {
    let (policy, tenants) = setup();
    let task: Vec<_> = types()
        .into_iter()
        .enumerate()
        .map(|(k, t)| (t, Quantity::from(1 + k as i32), Unit::DEVICES))
        .collect();
    let mut group = c.benchmark_group("drf 1000 tenants x 4 resources");
    group.bench_function("indexed decision", |b| {
        b.iter(|| black_box(policy.grant_next(black_box(&task), Timestamp::ZERO)));
    });
    group.bench_function("linear scan decision", |b| {
        b.iter(|| {
            let next = tenants
                .iter()
                .min_by(|a, b| {
                    policy
                        .dominant_share(a, Timestamp::ZERO)
                        .total_cmp(&policy.dominant_share(b, Timestamp::ZERO))
                })
                .cloned();
            black_box(next)
        });
    });
    group.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);
