//! Release-to-grant hand-off (DESIGN §8): two threads take turns on one unit of capacity,
//! each holding it for 5 µs (a busy wait), so the other thread is always waiting and every
//! grant after the first is a hand-off from a release on the other thread. (Without the hold,
//! a semaphore's threads rarely wait at all and the bench would not measure a hand-off.) The peer is
//! `tokio::sync::Semaphore` with one permit (FIFO hand-off), awaited with a minimal
//! thread-parking executor; ours is a `WaitQueue` over `ReservationManager`, woken by the
//! ledger's events and honouring priority order (awaited the same way, or a blocking wait),
//! and once more ordered by weighted fair shares (`WeightedAllocationPolicy`, which sees
//! every grant and end), blocking.
//!
//! A hand-off costs the kernel's wake-up of the other thread (tens of microseconds on a
//! virtual machine), which drifts from second to second; criterion measures the variants one
//! after another, so their ratio moves with the drift. Before the criterion run the binary
//! therefore prints medians of interleaved rounds (each round runs every variant in turn),
//! and the median of the round-by-round ratios to each variant's peer, which are what
//! `docs/performance.md` quotes. A blocking wait with a timeout parks with a timer; its
//! like-for-like peer is the same semaphore awaited with timed parks.
//!
//! Time per turn counts the hold and every turn, including the few in which no hand-off
//! happens (the waiting thread found the unit free). The binary therefore also prints the
//! release-to-grant latency itself: from the start of a release to the return of the grant on
//! the thread it woke, per hand-off ([`Latencies`]), as the median over rounds of each run's
//! median, with the median of round-by-round ratios to the peer. Medians, because a wake-up's
//! time on a virtual machine has a long tail (the 99th percentile near twice the median) that
//! has nothing to do with what either side does.
//!
//! Two reference rows show how much of the gap to the semaphore any queue of our kind pays:
//! [`Floor`], the least a FIFO hand-off in safe Rust does (a mutex-guarded list of waiters,
//! each with its own slot that the releasing thread fills before it wakes the waiter),
//! handing over a plain number (`floor, a number`) or a `Reservation` (`floor, a
//! reservation`), with no ledger, no ordering and no timeouts behind it.
//!
//! The `release with 10000 waiting` group measures what a release costs when the queue is
//! deep: the release, finding the head among all waiters, granting and delivering to it, in
//! priority order and in the order of a policy and of a composition of policies.
#![expect(clippy::print_stderr, reason = "the bench reports interleaved medians")]

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use rm_contention::{WaitQueue, Wakeup};
use rm_model::{
    AllocationPolicy, Event, EventSink, RequesterId, Reservation, ReservationLedger,
    ReservationRequest, ReservationStrategy, Resource, ResourceCapacity, ResourceRequirement,
    ResourceType, SystemClock, Unit,
};
use rm_policy::{Aging, ComposedPolicy, PriorityAllocationPolicy, WeightedAllocationPolicy};
use rm_reserve::ReservationManager;

/// Runs a future to completion on this thread, parking while it is pending.
fn block_on<F: Future>(future: F) -> F::Output {
    run_parking(future, None)
}

/// Runs a future to completion on this thread, parking while it is pending; with a timeout,
/// each park is a timed park (what a blocking wait with a deadline does), though the
/// timeout itself is never reached here.
fn run_parking<F: Future>(future: F, timeout: Option<Duration>) -> F::Output {
    rm_testkit::block_on(future, timeout).expect("the hand-off comes long before the timeout")
}

/// A waiter's slot in the [`Floor`]: what it is handed, and the thread to wake.
type FloorSlot<T> = Mutex<(Option<T>, Option<thread::Thread>)>;

/// The least a FIFO hand-off of one unit does in safe Rust: a list of waiting slots behind one
/// mutex; a release hands a copy of `grant` to the first slot and wakes its waiter, or frees
/// the unit when nobody waits. What it hands over is all that differs between its two rows.
struct Floor<T> {
    /// Free units and the waiting slots, in arrival order.
    state: Mutex<(u32, VecDeque<Arc<FloorSlot<T>>>)>,
    grant: T,
}

impl<T: Clone> Floor<T> {
    fn new(grant: T) -> Floor<T> {
        Floor {
            state: Mutex::new((1, VecDeque::new())),
            grant,
        }
    }

    /// Takes the unit, waiting (parked, with a timeout as a blocking wait has) until a
    /// release hands it over.
    fn acquire(&self) -> T {
        let slot: Arc<FloorSlot<T>> = {
            let mut state = lock(&self.state);
            if state.0 > 0 {
                state.0 -= 1;
                return self.grant.clone();
            }
            let slot = Arc::new(Mutex::new((None, None)));
            state.1.push_back(slot.clone());
            slot
        };
        loop {
            {
                let mut slot = lock(&slot);
                if let Some(granted) = slot.0.take() {
                    return granted;
                }
                slot.1 = Some(thread::current());
            }
            thread::park_timeout(Duration::from_secs(10));
        }
    }

    /// Gives the unit back: to the first waiter, or to the free count. What was held is
    /// dropped after the wake, as the queue's turn drops its reservation after the release.
    fn release(&self, held: T) {
        let first = {
            let mut state = lock(&self.state);
            let Some(first) = state.1.pop_front() else {
                state.0 += 1;
                return;
            };
            first
        };
        let granted = self.grant.clone();
        let waiter = {
            let mut slot = lock(&first);
            slot.0 = Some(granted);
            slot.1.take()
        };
        if let Some(waiter) = waiter {
            waiter.unpark();
        }
        drop(held);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How long each turn holds the unit.
const HOLD: Duration = Duration::from_micros(5);

fn hold() {
    let start = Instant::now();
    while start.elapsed() < HOLD {
        std::hint::spin_loop();
    }
}

/// Release-to-grant latencies: each turn notes when it starts its release, and the thread that
/// release grants notes how long after that it got its grant (the release call, the wake-up,
/// and whatever the woken side does before it can use the grant). Turns whose thread did not
/// wait (the unit was free when it asked) are not hand-offs and are not counted.
struct Latencies {
    epoch: Instant,
    /// When the last release started, in nanoseconds since `epoch`.
    released_at: AtomicU64,
    recording: AtomicBool,
    samples: Mutex<Vec<u64>>,
}

impl Latencies {
    fn new() -> Latencies {
        Latencies {
            epoch: Instant::now(),
            released_at: AtomicU64::new(0),
            recording: AtomicBool::new(false),
            samples: Mutex::new(Vec::new()),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// One turn: takes the unit, holds it, gives it back, and records the hand-off it got.
    fn turn<G>(&self, acquire: impl FnOnce() -> G, release: impl FnOnce(G)) {
        let asked = self.now();
        let granted = acquire();
        let got = self.now();
        // The release that granted this turn started before the grant was made, and the
        // other thread cannot start another before this one releases.
        let released = self.released_at.load(Ordering::Acquire);
        hold();
        self.released_at.store(self.now(), Ordering::Release);
        release(granted);
        if released > asked && self.recording.load(Ordering::Relaxed) {
            lock(&self.samples).push(got - released);
        }
    }

    /// Starts recording a run of turns.
    fn start(&self) {
        lock(&self.samples).clear();
        self.released_at.store(0, Ordering::Release);
        self.recording.store(true, Ordering::Relaxed);
    }

    /// Stops recording; the median latency of the run, in nanoseconds.
    fn median(&self) -> f64 {
        self.recording.store(false, Ordering::Relaxed);
        let mut samples = std::mem::take(&mut *lock(&self.samples));
        samples.sort_unstable();
        samples.get(samples.len() / 2).copied().unwrap_or(0) as f64
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

/// One variant of the interleaved comparison: its name, its turn, and the index of the peer
/// it is compared with (itself for a peer).
type Variant<'a> = (&'a str, &'a (dyn Fn() + Sync), usize);

/// Medians over `rounds` interleaved rounds of `turns` turns per variant, per turn; each round
/// starts with the next variant, so that none always runs first. Each variant is also compared
/// with its peer round by round (the ratio of the two in one round, whose median is steadier
/// than the ratio of the medians while the machine drifts). The same for the median
/// release-to-grant latency of each run, from `latencies`.
fn interleaved(rounds: usize, turns: u64, variants: &[Variant<'_>], latencies: &Latencies) {
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(rounds); variants.len()];
    let mut handoffs: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); variants.len()];
    for round in 0..rounds {
        for k in 0..variants.len() {
            let i = (round + k) % variants.len();
            let turn = variants[i].1;
            latencies.start();
            times[i].push(two_threads(turns, turn) / u32::try_from(turns).unwrap_or(u32::MAX));
            handoffs[i].push(latencies.median());
        }
    }
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    for (i, (name, _, peer)) in variants.iter().enumerate() {
        let per_turn = median(times[i].iter().map(Duration::as_secs_f64).collect());
        let ratios = times[i]
            .iter()
            .zip(&times[*peer])
            .map(|(ours, theirs)| ours.as_secs_f64() / theirs.as_secs_f64())
            .collect();
        eprintln!(
            "interleaved, {rounds} rounds x {turns} turns: {name}: median {:.2} µs per turn, \
             median ratio to {} {:.3}",
            per_turn * 1e6,
            variants[*peer].0,
            median(ratios)
        );
    }
    for (i, (name, _, peer)) in variants.iter().enumerate() {
        let latency = median(handoffs[i].clone());
        let ratios = handoffs[i]
            .iter()
            .zip(&handoffs[*peer])
            .map(|(ours, theirs)| ours / theirs)
            .collect();
        eprintln!(
            "release to grant, {rounds} rounds: {name}: median {:.2} µs, median ratio to {} {:.3}",
            latency / 1e3,
            variants[*peer].0,
            median(ratios)
        );
    }
}

/// How a turn on a queue waits for its grant.
#[derive(Clone, Copy)]
enum Wait {
    /// The ticket awaited as a future (on the thread-parking executor).
    Awaited,
    /// `Ticket::wait_timeout`.
    Blocking,
}

/// One turn on `queue`: waits for `request`'s grant, holds it, and gives it back through the
/// queue (which hands it to the next waiter).
fn queue_turn(
    latencies: &Latencies,
    queue: &Arc<WaitQueue>,
    request: &ReservationRequest,
    wait: Wait,
) {
    latencies.turn(
        || {
            let ticket = queue.enqueue(request.clone());
            match wait {
                Wait::Awaited => block_on(ticket),
                Wait::Blocking => ticket.wait_timeout(Duration::from_secs(10)),
            }
            .expect("granted")
        },
        |granted: Reservation| {
            queue
                .cancel(&granted.id, Some(granted.fencing_token))
                .expect("cancel");
        },
    );
}

/// The ledger's events go to the policy that orders the queue (so that a fair or weighted
/// order sees usage change), then to the queue.
struct Observed {
    order: Option<Arc<dyn AllocationPolicy>>,
    wakeup: Wakeup,
}

impl EventSink for Observed {
    fn publish(&self, event: &Event) {
        if let Some(order) = &self.order {
            order.observe(event);
        }
        self.wakeup.publish(event);
    }
}

/// A ledger with one node of one core, its wait queue (ordered by `order`, or by priority)
/// woken by the ledger's events, and a request for the core.
fn one_core_queue(
    order: Option<Arc<dyn AllocationPolicy>>,
) -> (Arc<ReservationManager>, Arc<WaitQueue>, ReservationRequest) {
    let wakeup = Wakeup::new();
    let manager = Arc::new(
        ReservationManager::builder()
            .event_sink(Arc::new(Observed {
                order: order.clone(),
                wakeup: wakeup.clone(),
            }))
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
    let mut queue = WaitQueue::new(manager.clone(), Arc::new(SystemClock::new()));
    if let Some(order) = order {
        queue = queue.with_order(order);
    }
    let queue = Arc::new(queue);
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
    (manager, queue, request)
}

fn handoff(c: &mut Criterion) {
    let mut group = c.benchmark_group("hand-off 1 unit, 2 threads");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));

    let latencies = Latencies::new();
    let semaphore = tokio::sync::Semaphore::new(1);
    let tokio_turn = || {
        latencies.turn(|| block_on(semaphore.acquire()).expect("open"), drop);
    };
    // The like-for-like peer of a blocking wait with a timeout: the same hand-off, each park
    // a timed one.
    let tokio_timed_turn = || {
        latencies.turn(
            || run_parking(semaphore.acquire(), Some(Duration::from_secs(10))).expect("open"),
            drop,
        );
    };
    group.bench_function("tokio-semaphore", |b| {
        b.iter_custom(|iters| two_threads(iters, tokio_turn));
    });

    let (manager, queue, request) = one_core_queue(None);
    let future_turn = || queue_turn(&latencies, &queue, &request, Wait::Awaited);
    let blocking_turn = || queue_turn(&latencies, &queue, &request, Wait::Blocking);
    // The same, the queue ordered by weighted fair shares (which see every grant and end).
    let weighted = WeightedAllocationPolicy::new("weighted");
    weighted
        .set_weight(request.requester.clone(), 2)
        .expect("a valid weight");
    let (_, weighted_queue, _) = one_core_queue(Some(Arc::new(weighted)));
    let weighted_turn = || queue_turn(&latencies, &weighted_queue, &request, Wait::Blocking);
    // The floors, handing over a number and a reservation such as the queue grants.
    let floor_number = Floor::new(1_u64);
    let number_turn = || latencies.turn(|| floor_number.acquire(), |h| floor_number.release(h));
    let reservation = {
        let held = manager.reserve(&request).expect("the core is free");
        manager
            .cancel(&held.id, Some(held.fencing_token))
            .expect("cancel");
        held
    };
    let floor_reservation = Floor::new(reservation);
    let reservation_turn = || {
        latencies.turn(
            || floor_reservation.acquire(),
            |h| floor_reservation.release(h),
        );
    };
    // More rounds (a steadier median) with RM_HANDOFF_ROUNDS.
    let rounds = std::env::var("RM_HANDOFF_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(15);
    interleaved(
        rounds,
        2_000,
        &[
            ("tokio-semaphore", &tokio_turn, 0),
            ("wait-queue (future)", &future_turn, 0),
            ("tokio-semaphore (timed park)", &tokio_timed_turn, 2),
            ("wait-queue (blocking)", &blocking_turn, 2),
            ("wait-queue (blocking, weighted order)", &weighted_turn, 2),
            ("floor, a number", &number_turn, 2),
            ("floor, a reservation", &reservation_turn, 2),
        ],
        &latencies,
    );
    group.bench_function("tokio-semaphore (timed park)", |b| {
        b.iter_custom(|iters| two_threads(iters, tokio_timed_turn));
    });
    group.bench_function("wait-queue (future)", |b| {
        b.iter_custom(|iters| two_threads(iters, future_turn));
    });
    group.bench_function("wait-queue (blocking)", |b| {
        b.iter_custom(|iters| two_threads(iters, blocking_turn));
    });
    group.finish();
}

/// How many requests wait in the deep-queue bench.
const DEPTH: usize = 10_000;

/// A release with `DEPTH` requests waiting: the release, the grant to the head (found among
/// all of them) and its delivery, the head taking it, and a new request joining the back, so
/// the depth stays put. Once in priority order without a policy, once ordered by a policy
/// (priority with aging), once by a composition of two policies.
fn deep_queue(c: &mut Criterion) {
    let mut group = c.benchmark_group(format!("release with {DEPTH} waiting"));
    let aging = || {
        PriorityAllocationPolicy::new("aging")
            .with_aging(Aging {
                step: 1,
                every: Duration::from_secs(60),
                cap: 100,
            })
            .expect("valid aging")
    };
    let orders: [(&str, Option<Arc<dyn AllocationPolicy>>); 3] = [
        ("priority order", None),
        ("policy order", Some(Arc::new(aging()))),
        (
            "composed policy order",
            Some(Arc::new(
                ComposedPolicy::new("composed")
                    .then(Arc::new(aging()))
                    .then(Arc::new(PriorityAllocationPolicy::new("plain"))),
            )),
        ),
    ];
    for (name, order) in orders {
        let (manager, queue, request) = one_core_queue(order);
        let mut hold = manager.reserve(&request).expect("the first hold");
        let mut tickets: std::collections::VecDeque<_> =
            (0..DEPTH).map(|_| queue.enqueue(request.clone())).collect();
        group.bench_function(name, |b| {
            b.iter(|| {
                queue
                    .cancel(&hold.id, Some(hold.fencing_token))
                    .expect("cancel");
                let head = tickets.pop_front().expect("a waiter");
                hold = head
                    .try_take()
                    .expect("the head was granted")
                    .expect("granted");
                tickets.push_back(queue.enqueue(request.clone()));
            });
        });
    }
    group.finish();
}

criterion_group!(benches, handoff, deep_queue);
criterion_main!(benches);
