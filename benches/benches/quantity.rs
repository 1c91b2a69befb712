//! Parsing, printing and arithmetic of `Quantity`, the type every accounting step touches.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rm_model::Quantity;

const INPUTS: [&str; 8] = ["500m", "0.5", "2", "2Gi", "512Mi", "10G", "1e3", "100.035k"];

fn parse(c: &mut Criterion) {
    c.bench_function("quantity/parse 8 forms", |b| {
        b.iter(|| {
            for input in INPUTS {
                black_box(Quantity::parse(black_box(input)).ok());
            }
        });
    });
}

fn print(c: &mut Criterion) {
    let quantities: Vec<Quantity> = INPUTS.iter().filter_map(|s| s.parse().ok()).collect();
    c.bench_function("quantity/print 8 forms", |b| {
        b.iter(|| {
            for q in &quantities {
                black_box(q.to_string());
            }
        });
    });
}

fn arithmetic(c: &mut Criterion) {
    let a = Quantity::from_milli(1_500);
    let b = Quantity::from_milli(250);
    c.bench_function("quantity/checked add+sub", |bench| {
        bench.iter(|| {
            let sum = black_box(a).checked_add(black_box(b)).ok();
            black_box(sum.and_then(|s| s.checked_sub(black_box(b)).ok()))
        });
    });
}

criterion_group!(benches, parse, print, arithmetic);
criterion_main!(benches);
