//! The reservation ledger against its peers, each in the same binary (DESIGN §8):
//!
//! - `cycle`: one resource, reserve → confirm → release on one thread (a request without and
//!   with labels), and a permit taken and dropped, against
//!   `tokio::sync::Semaphore::try_acquire_many` + drop and against the reference ledger; and `floor`, the least any reservation cycle with this ledger's
//!   contract does (see [`Floor`]), to show what the semaphore target leaves room for.
//! - `multi`: 16 resources at 80% load, holds of 1 to 4 resources, on 1 and 2 threads, against
//!   the same manager behind one global mutex and against the reference ledger.
//! - `placement`: a co-located task on 1,500 three-dimensional nodes with label constraints,
//!   per strategy, against the reference ledger; the p99 of single placements is printed
//!   before the criterion run.
//! - `catalog`: 10,000 nodes registered into an empty manager, with rm-validate's
//!   `ConstraintValidator` and without a validator (the ledger checks each name with its
//!   own index, so validating adds a constant per resource, not a scan of those before it).
//!
//! The binary counts heap allocations (a counting global allocator) and prints allocations
//! per reserve cycle.
#![expect(
    clippy::print_stderr,
    reason = "the bench reports allocation counts and p99s"
)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group};
use rm_benches::{CountingAllocator, allocations, one_core};
use rm_model::{
    Constraint, DiscardEvents, FencingToken, LedgerError, Quantity, RequesterId, Reservation,
    ReservationLedger, ReservationRequest, ReservationStrategy, Resource, ResourceCapacity,
    ResourceRequirement, ResourceType, SystemClock, Unit,
};
use rm_reserve::ReservationManager;
use rm_testkit::ReferenceLedger;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn new_manager() -> ReservationManager {
    ReservationManager::builder()
        .retention(Duration::from_millis(1))
        .build()
        .expect("valid settings")
}

fn reference() -> ReferenceLedger {
    ReferenceLedger::new(
        Arc::new(SystemClock::new()),
        Arc::new(DiscardEvents),
        Duration::from_secs(30),
    )
}

/// The same manager, with every operation serialised on one mutex: the global-lock peer.
struct GlobalMutex(Mutex<()>, ReservationManager);

impl GlobalMutex {
    fn run<T>(&self, f: impl FnOnce(&ReservationManager) -> T) -> T {
        let _guard = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&self.1)
    }
}

/// A reserve → confirm → release cycle on any ledger.
trait Cycle: Sync {
    fn cycle(&self, request: &ReservationRequest) -> Result<(), LedgerError>;
}

fn cycle_on(
    ledger: &dyn ReservationLedger,
    request: &ReservationRequest,
) -> Result<(), LedgerError> {
    let hold: Reservation = ledger.reserve(request)?;
    let token: FencingToken = hold.fencing_token;
    ledger.confirm(&hold.id, Some(token))?;
    ledger.release(&hold.id, Some(token))?;
    Ok(())
}

impl Cycle for ReservationManager {
    fn cycle(&self, request: &ReservationRequest) -> Result<(), LedgerError> {
        cycle_on(self, request)
    }
}

impl Cycle for ReferenceLedger {
    fn cycle(&self, request: &ReservationRequest) -> Result<(), LedgerError> {
        cycle_on(self, request)
    }
}

impl Cycle for GlobalMutex {
    fn cycle(&self, request: &ReservationRequest) -> Result<(), LedgerError> {
        let hold = self.run(|m| m.reserve(request))?;
        self.run(|m| m.confirm(&hold.id, Some(hold.fencing_token)))?;
        self.run(|m| m.release(&hold.id, Some(hold.fencing_token)))?;
        Ok(())
    }
}

/// The least a reservation cycle does, without any of a ledger's logic: the three clock
/// readings (the grant's creation time and TTL, the confirm's expiry check, the release's end
/// time), a fencing token and an id from counters, the capacity taken and given back, and
/// the record inserted, found and removed in a concurrent map keyed by id (confirm and
/// release are called with the id), its state changed twice. No retention for retries, no
/// timers, no events, no validation, no placement: every real ledger does more.
struct Floor {
    clock: SystemClock,
    free: AtomicU64,
    tokens: AtomicU64,
    ids: AtomicU64,
    records: dashmap::DashMap<u64, FloorRecord>,
}

struct FloorRecord {
    token: u64,
    state: AtomicU8,
    expires_at: rm_model::Timestamp,
}

impl Floor {
    const PENDING: u8 = 0;
    const CONFIRMED: u8 = 1;

    fn new(capacity: u64) -> Floor {
        Floor {
            clock: SystemClock::new(),
            free: AtomicU64::new(capacity),
            tokens: AtomicU64::new(0),
            ids: AtomicU64::new(0),
            records: dashmap::DashMap::new(),
        }
    }

    fn cycle(&self, amount: u64) -> Option<()> {
        use rm_model::Clock;
        let now = self.clock.now();
        self.free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |free| {
                free.checked_sub(amount)
            })
            .ok()?;
        let token = self.tokens.fetch_add(1, Ordering::Relaxed);
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        self.records.insert(
            id,
            FloorRecord {
                token,
                state: AtomicU8::new(Floor::PENDING),
                expires_at: now + Duration::from_secs(30),
            },
        );
        // Confirm.
        let now = self.clock.now();
        {
            let record = self.records.get(&id)?;
            if record.token != token || now >= record.expires_at {
                return None;
            }
            record
                .state
                .compare_exchange(
                    Floor::PENDING,
                    Floor::CONFIRMED,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .ok()?;
        }
        // Release.
        let ended_at = self.clock.now();
        let (_, record) = self.records.remove(&id)?;
        if record.token != token || record.state.load(Ordering::Acquire) != Floor::CONFIRMED {
            return None;
        }
        self.free.fetch_add(amount, Ordering::AcqRel);
        black_box(ended_at);
        Some(())
    }
}

fn single_node(ledger: &dyn ReservationLedger) {
    let node = Resource::new(
        "n",
        ResourceType::Compute,
        ResourceCapacity::of(1_000_000, Unit::CORES).expect("valid"),
    )
    .expect("valid")
    .with_label("zone", "a")
    .expect("valid");
    ledger.register_resource(node).expect("register");
}

/// Allocations per cycle once warm: the first cycles fill the pool of records that the
/// retention (1 ms here) keeps in circulation, and the pool grows whenever the cycle runs
/// faster than it has so far (more ended reservations fit in one retention), so 200,000
/// run first (about a tenth of a second), past the slow start of a fresh process.
fn allocations_per_cycle(ledger: &dyn Cycle, request: &ReservationRequest) -> f64 {
    for _ in 0..200_000 {
        ledger.cycle(request).expect("cycle");
    }
    let before = allocations();
    const N: u64 = 10_000;
    for _ in 0..N {
        ledger.cycle(request).expect("cycle");
    }
    (allocations() - before) as f64 / N as f64
}

fn cycle(c: &mut Criterion) {
    let request = one_core();
    let mut group = c.benchmark_group("cycle");
    let semaphore = tokio::sync::Semaphore::new(1_000_000);
    group.bench_function("tokio-semaphore", |b| {
        b.iter(|| drop(black_box(semaphore.try_acquire_many(1).expect("permits"))));
    });
    let manager = new_manager();
    single_node(&manager);
    // A request as orchestrators send them, with labels (a team, a pipeline): each of the
    // cycle's three answers carries them.
    let labelled = one_core().with_labels(
        rm_model::Labels::try_from(&[("team", "ml"), ("pipeline", "nightly-train")][..])
            .expect("valid labels"),
    );
    // Two requirements (planned as two placement groups).
    let two = ReservationRequest::new(
        RequesterId::new("t").expect("valid"),
        vec![
            ResourceRequirement::new(ResourceType::Compute, 1, Unit::CORES),
            ResourceRequirement::new(ResourceType::Compute, 2, Unit::CORES),
        ],
    )
    .with_strategy(ReservationStrategy::Greedy);
    // A soft preference, scored on every candidate (here the node's label `zone`, which is
    // text, not a number).
    let preferring = ReservationRequest::new(
        RequesterId::new("t").expect("valid"),
        vec![
            ResourceRequirement::new(ResourceType::Compute, 1, Unit::CORES)
                .with_preference(5, Constraint::label("zone").expect("valid").eq("b")),
        ],
    );
    let colocated = two
        .clone()
        .with_colocation_label(rm_model::LabelKey::new("zone").expect("valid"));
    eprintln!(
        "allocations per reserve-confirm-release cycle: manager {:.1}, with labels {:.1}, \
         with two requirements {:.1}, with a preference {:.1}, co-located by a label {:.1}, \
         reference {:.1}",
        allocations_per_cycle(&manager, &request),
        allocations_per_cycle(&manager, &labelled),
        allocations_per_cycle(&manager, &two),
        allocations_per_cycle(&manager, &preferring),
        allocations_per_cycle(&manager, &colocated),
        {
            let reference = reference();
            single_node(&reference);
            allocations_per_cycle(&reference, &request)
        }
    );
    group.bench_function("manager", |b| {
        b.iter(|| manager.cycle(black_box(&request)).expect("cycle"))
    });
    group.bench_function("manager-labelled", |b| {
        b.iter(|| manager.cycle(black_box(&labelled)).expect("cycle"))
    });
    let pool = manager
        .permits(&"n".parse().expect("valid"), &ResourceType::Compute)
        .expect("the node exists");
    let before = allocations();
    for _ in 0..10_000 {
        drop(pool.try_acquire(Quantity::from(1)).expect("permits"));
    }
    eprintln!(
        "allocations per permit acquire + drop: {:.1}",
        (allocations() - before) as f64 / 10_000.0
    );
    group.bench_function("manager-permit", |b| {
        b.iter(|| {
            drop(black_box(
                pool.try_acquire(black_box(Quantity::from(1)))
                    .expect("permits"),
            ))
        });
    });
    let reference = reference();
    single_node(&reference);
    group.bench_function("reference", |b| {
        b.iter(|| reference.cycle(black_box(&request)).expect("cycle"))
    });
    let floor = Floor::new(1_000_000);
    group.bench_function("floor", |b| {
        b.iter(|| floor.cycle(black_box(1)).expect("cycle"))
    });
    group.finish();
}

/// 16 resources of 100 cores, 80 held by long-lived confirmed holds, and 64 requests that
/// each take one core on 1 to 4 given resources.
fn multi_setup(ledger: &dyn ReservationLedger) -> Vec<ReservationRequest> {
    for i in 0..16 {
        let node = Resource::new(
            &format!("m{i}"),
            ResourceType::Compute,
            ResourceCapacity::of(100, Unit::CORES).expect("valid"),
        )
        .expect("valid")
        .with_label("slot", &i.to_string())
        .expect("valid");
        ledger.register_resource(node).expect("register");
    }
    let on = |slot: usize, amount: i32| {
        ResourceRequirement::new(ResourceType::Compute, amount, Unit::CORES).with_constraint(
            Constraint::label("slot")
                .expect("valid")
                .eq(slot.to_string().as_str()),
        )
    };
    for i in 0..16 {
        let fill =
            ReservationRequest::new(RequesterId::new("load").expect("valid"), vec![on(i, 80)])
                .with_ttl(Duration::from_secs(86_400));
        let hold = ledger.reserve(&fill).expect("prefill");
        ledger.confirm(&hold.id, None).expect("prefill");
    }
    (0..64)
        .map(|j| {
            let start = (j * 7) % 16;
            let requirements = (0..1 + j % 4).map(|r| on((start + r) % 16, 1)).collect();
            ReservationRequest::new(
                RequesterId::new(&format!("t{}", j % 8)).expect("valid"),
                requirements,
            )
            .with_strategy(ReservationStrategy::Greedy)
        })
        .collect()
}

fn run_threads(
    ledger: &dyn Cycle,
    requests: &[ReservationRequest],
    threads: usize,
    iters: u64,
) -> Duration {
    let start = Instant::now();
    thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || {
                for i in 0..iters / threads as u64 {
                    let request = &requests[(i as usize * threads + t) % requests.len()];
                    ledger
                        .cycle(request)
                        .expect("capacity suffices at 80% load");
                }
            });
        }
    });
    start.elapsed()
}

fn multi(c: &mut Criterion) {
    let mut group = c.benchmark_group("multi 16 resources");
    for threads in [1, 2] {
        let manager = new_manager();
        let requests = multi_setup(&manager);
        group.bench_function(BenchmarkId::new("manager", threads), |b| {
            b.iter_custom(|iters| run_threads(&manager, &requests, threads, iters));
        });
        let global = GlobalMutex(Mutex::new(()), new_manager());
        let requests = multi_setup(&global.1);
        group.bench_function(BenchmarkId::new("global-mutex", threads), |b| {
            b.iter_custom(|iters| run_threads(&global, &requests, threads, iters));
        });
        let reference = reference();
        let requests = multi_setup(&reference);
        group.bench_function(BenchmarkId::new("reference", threads), |b| {
            b.iter_custom(|iters| run_threads(&reference, &requests, threads, iters));
        });
    }
    group.finish();
}

fn placement_request(strategy: ReservationStrategy) -> ReservationRequest {
    let requirements = rm_benches::task_requirements(2, 8)
        .expect("valid")
        .into_iter()
        .map(|r| {
            r.with_constraint(Constraint::capability("arch").expect("valid").eq("x86_64"))
                .with_constraint(
                    Constraint::label("zone")
                        .expect("valid")
                        .is_in(["zone-1", "zone-2", "zone-3"]),
                )
        })
        .collect();
    ReservationRequest::new(RequesterId::new("t").expect("valid"), requirements)
        .with_strategy(strategy)
}

fn cluster(ledger: &dyn ReservationLedger) {
    for node in rm_benches::cluster(1_500).expect("valid") {
        ledger.register_resource(node).expect("register");
    }
}

/// Places and cancels `n` times, timing each placement; returns (median, p99).
fn placement_percentiles(
    ledger: &dyn ReservationLedger,
    request: &ReservationRequest,
    n: usize,
) -> (Duration, Duration) {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let start = Instant::now();
            let hold = ledger.reserve(request).expect("placement");
            let took = start.elapsed();
            ledger.cancel(&hold.id, None).expect("cancel");
            took
        })
        .collect();
    times.sort_unstable();
    (times[n / 2], times[n * 99 / 100])
}

/// Placement with preferred anti-affinity (spread from the own team's holds by zone) while
/// 0, 1,000 and 10,000 small holds of three teams are active: what finding the selected holds
/// costs as they grow. Prints medians and p99s.
fn affinity_placement(manager: &ReservationManager) {
    use rm_model::{AffinityKind, AffinityTerm, LabelKey, Labels, Selector, Topology};
    let team = |name: &str| Labels::try_from(&[("team", name)][..]).expect("valid label");
    let mut spread = placement_request(ReservationStrategy::BinPack).with_labels(team("a"));
    spread.requirements[0] = spread.requirements[0]
        .clone()
        .with_affinity(AffinityTerm::preferred(
            AffinityKind::AntiAffinity,
            Selector::labels(team("a")),
            Topology::Label(LabelKey::new("zone").expect("valid")),
            5,
        ));
    let small = |name: &str| {
        ReservationRequest::new(
            RequesterId::new("background").expect("valid"),
            rm_benches::task_requirements(1, 1).expect("valid"),
        )
        .with_labels(team(name))
        .with_strategy(ReservationStrategy::Greedy)
    };
    let mut held = Vec::new();
    for count in [0, 1_000, 10_000] {
        while held.len() < count {
            let name = ["a", "b", "c"][held.len() % 3];
            held.push(manager.reserve(&small(name)).expect("a background hold"));
        }
        let (median, p99) = placement_percentiles(manager, &spread, 2_000);
        eprintln!(
            "placement with anti-affinity, {count} holds active: median {median:?}, p99 {p99:?}"
        );
    }
    for hold in held {
        manager.cancel(&hold.id, None).expect("cancel");
    }
}

fn placement(c: &mut Criterion) {
    let strategies = [
        ReservationStrategy::BinPack,
        ReservationStrategy::Balanced,
        ReservationStrategy::Greedy,
    ];
    let manager = new_manager();
    cluster(&manager);
    for strategy in strategies {
        let (median, p99) = placement_percentiles(&manager, &placement_request(strategy), 20_000);
        eprintln!(
            "placement on 1500 nodes, {}: median {median:?}, p99 {p99:?}",
            strategy.as_str()
        );
    }
    affinity_placement(&manager);
    let mut group = c.benchmark_group("placement 1500 nodes");
    for strategy in strategies {
        let request = placement_request(strategy);
        group.bench_function(BenchmarkId::new("manager", strategy.as_str()), |b| {
            b.iter(|| {
                let hold = manager.reserve(black_box(&request)).expect("placement");
                manager.cancel(&hold.id, None).expect("cancel");
            });
        });
    }
    let reference = reference();
    cluster(&reference);
    group.sample_size(20);
    let request = placement_request(ReservationStrategy::BinPack);
    group.bench_function(BenchmarkId::new("reference", "bin-pack"), |b| {
        b.iter(|| {
            let hold = reference.reserve(black_box(&request)).expect("placement");
            reference.cancel(&hold.id, None).expect("cancel");
        });
    });
    group.finish();
}

fn catalog(c: &mut Criterion) {
    let nodes = rm_benches::cluster(10_000).expect("valid");
    let mut group = c.benchmark_group("catalog");
    group.sample_size(10);
    for validated in [false, true] {
        let name = if validated {
            "register 10,000, validated"
        } else {
            "register 10,000"
        };
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let builder = ReservationManager::builder();
                    let builder = if validated {
                        builder.validator(Arc::new(rm_validate::ConstraintValidator::new()))
                    } else {
                        builder
                    };
                    (builder.build().expect("valid settings"), nodes.clone())
                },
                |(manager, nodes)| {
                    for node in nodes {
                        manager.register_resource(node).expect("register");
                    }
                    manager
                },
                criterion::BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, cycle, multi, placement, catalog);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
