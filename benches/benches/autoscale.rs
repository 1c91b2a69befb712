//! The autoscaler's tick (DESIGN §8): 10,000 targets scaled by `ThresholdScaling` with
//! Kubernetes' default behaviours and 60-sample windows, one tick every 15 s of simulated
//! time, loads moving so that a share of the targets scales each tick. Criterion reports a
//! whole tick (divide by 10,000 for the per-target figure; throughput is in targets per
//! second). The binary counts heap allocations (a counting global allocator) and prints
//! allocations per tick before the criterion run.
#![expect(
    clippy::print_stderr,
    reason = "the bench reports allocations per tick"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group};
use rm_benches::{CountingAllocator, allocations};
use rm_model::{Quantity, Timestamp};
use rm_scale::{Autoscaler, ScaleRefused, ScaleTarget, ThresholdScaling};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const TARGETS: usize = 10_000;
const WINDOW: usize = 60;
const TICK: Duration = Duration::from_secs(15);

/// A pool whose busy units follow a slow wave: utilisation = busy / size.
struct Pool {
    size: AtomicU64,
    base: u64,
    seed: u64,
    phase: Arc<AtomicU64>,
}

impl ScaleTarget for Pool {
    fn size(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }

    fn metric(&self) -> Quantity {
        let phase = self.phase.load(Ordering::Relaxed).wrapping_add(self.seed) % 40;
        let wave = if phase < 20 { phase } else { 40 - phase };
        let busy = self.base + wave;
        let size = self.size().max(1);
        Quantity::from_milli(i64::try_from(busy * 100_000 / size).unwrap_or(i64::MAX))
    }

    fn scale_to(&self, size: u64) -> Result<(), ScaleRefused> {
        self.size.store(size, Ordering::Relaxed);
        Ok(())
    }
}

fn fleet() -> (Autoscaler<ThresholdScaling>, Arc<AtomicU64>) {
    let phase = Arc::new(AtomicU64::new(0));
    let rule = ThresholdScaling::new(Quantity::from_units(60), 1, 500)
        .expect("valid settings")
        .with_window(WINDOW);
    let mut autoscaler = Autoscaler::new(1_024);
    for index in 0..TARGETS as u64 {
        let pool = Pool {
            size: AtomicU64::new(10 + index % 50),
            base: 5 + index % 40,
            seed: index.wrapping_mul(7),
            phase: phase.clone(),
        };
        autoscaler.add(Arc::new(pool), rule.clone());
    }
    (autoscaler, phase)
}

fn tick(c: &mut Criterion) {
    let (mut autoscaler, phase) = fleet();
    let mut now = Timestamp::ZERO;
    let mut step = |autoscaler: &mut Autoscaler<ThresholdScaling>| {
        now = now + TICK;
        phase.fetch_add(1, Ordering::Relaxed);
        autoscaler.tick(now)
    };
    // Fill every window before measuring.
    for _ in 0..WINDOW {
        step(&mut autoscaler);
    }
    let before = allocations();
    let mut changed = 0;
    const TICKS: u64 = 20;
    for _ in 0..TICKS {
        changed += step(&mut autoscaler).changed;
    }
    eprintln!(
        "autoscaler tick over {TARGETS} targets: {:.1} allocations per tick, {:.0} targets resized per tick",
        (allocations() - before) as f64 / TICKS as f64,
        changed as f64 / TICKS as f64,
    );
    let mut group = c.benchmark_group("autoscale");
    group.throughput(Throughput::Elements(TARGETS as u64));
    group.bench_function("threshold-tick-10k", |b| {
        b.iter(|| black_box(step(&mut autoscaler)));
    });
    group.finish();
}

criterion_group!(benches, tick);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
