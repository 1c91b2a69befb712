//! Release-to-grant hand-off (DESIGN §8): two threads take turns on one unit of capacity,
//! each holding it for 5 µs (a busy wait), so the other thread is always waiting and every
//! grant after the first is a hand-off from a release on the other thread. (Without the hold,
//! a semaphore's threads rarely wait at all and the bench would not measure a hand-off.) The peer is
//! `tokio::sync::Semaphore` with one permit (FIFO hand-off), awaited with a minimal
//! thread-parking executor; ours is a `WaitQueue` over `ReservationManager`, woken by the
//! ledger's events and honouring priority order.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use rm_contention::{WaitQueue, Wakeup};
use rm_model::{
    RequesterId, ReservationLedger, ReservationRequest, ReservationStrategy, Resource,
    ResourceCapacity, ResourceRequirement, ResourceType, SystemClock, Unit,
};
use rm_reserve::ReservationManager;

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on this thread, parking while it is pending.
fn block_on<F: Future>(future: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        thread::park();
    }
}

/// How long each turn holds the unit.
const HOLD: Duration = Duration::from_micros(5);

fn hold() {
    let start = Instant::now();
    while start.elapsed() < HOLD {
        std::hint::spin_loop();
    }
}

fn two_threads(iters: u64, turn: impl Fn() + Sync) -> Duration {
    let start = Instant::now();
    thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                for _ in 0..iters / 2 {
                    turn();
                }
            });
        }
    });
    start.elapsed()
}

fn handoff(c: &mut Criterion) {
    let mut group = c.benchmark_group("hand-off 1 unit, 2 threads");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));

    let semaphore = tokio::sync::Semaphore::new(1);
    group.bench_function("tokio-semaphore", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, || {
                let permit = block_on(semaphore.acquire()).expect("open");
                hold();
                drop(permit);
            })
        });
    });

    let wakeup = Wakeup::new();
    let manager = Arc::new(
        ReservationManager::builder()
            .event_sink(Arc::new(wakeup.clone()))
            .retention(Duration::from_millis(1))
            .build()
            .expect("valid settings"),
    );
    let node = Resource::new(
        "n",
        ResourceType::Compute,
        ResourceCapacity::of(1, Unit::CORES).expect("valid"),
    )
    .expect("valid");
    manager.register_resource(node).expect("register");
    let queue = Arc::new(WaitQueue::new(
        manager.clone(),
        Arc::new(SystemClock::new()),
    ));
    wakeup.connect(&queue);
    let request = ReservationRequest::new(
        RequesterId::new("t").expect("valid"),
        vec![ResourceRequirement::new(
            ResourceType::Compute,
            1,
            Unit::CORES,
        )],
    )
    .with_strategy(ReservationStrategy::Greedy);
    group.bench_function("wait-queue (future)", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, || {
                let granted = block_on(queue.enqueue(request.clone())).expect("granted");
                hold();
                queue
                    .cancel(&granted.id, Some(granted.fencing_token))
                    .expect("cancel");
            })
        });
    });
    group.bench_function("wait-queue (blocking)", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, || {
                let granted = queue
                    .enqueue(request.clone())
                    .wait_timeout(Duration::from_secs(10))
                    .expect("granted");
                hold();
                queue
                    .cancel(&granted.id, Some(granted.fencing_token))
                    .expect("cancel");
            })
        });
    });
    group.finish();
}

criterion_group!(benches, handoff);
criterion_main!(benches);
