//! Pool checkout and return (DESIGN §8): a 16-object pool, one member checked out and
//! returned per iteration on one thread, `rm_pool::Pool` against `deadpool::unmanaged::Pool`
//! in the same binary; then the same with two threads sharing each pool.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use criterion::{Criterion, criterion_group};

const MEMBERS: usize = 16;

fn single(c: &mut Criterion) {
    let mut group = c.benchmark_group("pool-checkout");
    let ours = rm_pool::Pool::fixed(0..MEMBERS);
    group.bench_function("rm-pool", |b| {
        b.iter(|| drop(black_box(ours.try_checkout().expect("an idle member"))));
    });
    let theirs = deadpool::unmanaged::Pool::from((0..MEMBERS).collect::<Vec<_>>());
    group.bench_function("deadpool", |b| {
        b.iter(|| drop(black_box(theirs.try_get().expect("an idle member"))));
    });
    group.finish();
}

/// Runs `work` on a second thread until the measurement ends, so that every measured
/// checkout contends with another.
fn with_neighbour(work: impl Fn() + Send + 'static, measure: impl FnOnce()) {
    let stop = Arc::new(AtomicBool::new(false));
    let neighbour = {
        let stop = stop.clone();
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                work();
            }
        })
    };
    measure();
    stop.store(true, Ordering::Relaxed);
    neighbour.join().expect("the neighbour thread");
}

fn contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("pool-checkout-2-threads");
    let ours = rm_pool::Pool::fixed(0..MEMBERS);
    let other = ours.clone();
    with_neighbour(
        move || drop(black_box(other.try_checkout().expect("an idle member"))),
        || {
            group.bench_function("rm-pool", |b| {
                b.iter(|| drop(black_box(ours.try_checkout().expect("an idle member"))));
            });
        },
    );
    let theirs = deadpool::unmanaged::Pool::from((0..MEMBERS).collect::<Vec<_>>());
    let other = theirs.clone();
    with_neighbour(
        move || drop(black_box(other.try_get().expect("an idle member"))),
        || {
            group.bench_function("deadpool", |b| {
                b.iter(|| drop(black_box(theirs.try_get().expect("an idle member"))));
            });
        },
    );
    group.finish();
}

criterion_group!(benches, single, contended);

fn main() {
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
