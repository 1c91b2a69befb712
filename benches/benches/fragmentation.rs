//! Placement of the Alibaba 2023 GPU trace's pods on its full cluster (1,523 nodes: 1,213 GPU
//! nodes with 6,212 GPUs as devices, 310 CPU-only nodes), by the embedded ledger, per
//! strategy: the fragmentation strategy (FGD) and its baselines, on a cluster half full.
//!
//! For each strategy the ledger is filled with pods sampled from the default pod list until
//! half of the GPU is asked, then 5,000 more sampled pods are each placed and cancelled
//! (single placements timed: median and p99 printed), then criterion times the same
//! reserve + cancel. The fragmentation strategy learns its workload from the pods it places,
//! as it does by default.
//!
//! The trace is read from `../shared/data/alibaba-gpu-2023` (or `RM_GPU_TRACE_DIR`); without
//! it the bench says so and measures nothing.
//!
//! `cargo bench -p rm-benches --bench fragmentation` (`RM_GPU_STRATEGIES=fragmentation` for one)

#![expect(
    clippy::print_stderr,
    reason = "the bench reports single placements' medians and p99s"
)]

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use rm_cli::inflate;
use rm_model::{ManualClock, ReservationLedger, ReservationRequest, ReservationStrategy};
use rm_reserve::ReservationManager;

fn trace_dir() -> PathBuf {
    std::env::var_os("RM_GPU_TRACE_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/alibaba-gpu-2023"),
        PathBuf::from,
    )
}

/// A half-full ledger and the pods to time on it.
fn prepared(
    strategy: ReservationStrategy,
) -> Option<(ReservationManager, Vec<ReservationRequest>)> {
    let dir = trace_dir();
    let nodes = rm_cli::trace::alibaba_gpu_nodes(&dir.join("openb_node_list_all_node.csv")).ok()?;
    let pods = rm_cli::trace::alibaba_gpu_pods(
        &dir.join("openb_pod_list_default.csv"),
        "pods",
        true,
        None,
    )
    .ok()?;
    let gpu_milli: i64 = nodes.iter().map(|n| i64::from(n.gpus) * 1000).sum();
    let requests = inflate::requests(&pods, strategy).expect("requests");
    let ledger = ReservationManager::builder()
        .clock(Arc::new(ManualClock::new()))
        .default_ttl(Duration::from_secs(365 * 24 * 3600))
        .build()
        .expect("ledger");
    for resource in inflate::resources(&nodes).expect("resources") {
        ledger.register_resource(resource).expect("register");
    }
    for i in inflate::sample(&pods, 1, 50, gpu_milli) {
        // A pod that fits nowhere is dropped, as in the experiment.
        let _ = ledger.reserve(&requests[i]);
    }
    let timed = inflate::sample(&pods, 2, 130, gpu_milli)
        .into_iter()
        .take(5_000)
        .map(|i| requests[i].clone())
        .collect();
    Some((ledger, timed))
}

fn placement(c: &mut Criterion) {
    let strategies = [
        ReservationStrategy::Fragmentation,
        ReservationStrategy::BestFit,
        ReservationStrategy::GpuPacking,
        ReservationStrategy::DotProduct,
        ReservationStrategy::GpuClustering,
        ReservationStrategy::RandomFit,
        ReservationStrategy::Greedy,
        ReservationStrategy::BinPack,
    ];
    // `RM_GPU_STRATEGIES=fragmentation,best-fit` measures only those.
    let only: Option<Vec<ReservationStrategy>> = std::env::var("RM_GPU_STRATEGIES")
        .ok()
        .map(|list| list.split(',').filter_map(|s| s.parse().ok()).collect());
    let mut group = c.benchmark_group("gpu placement 1523 nodes");
    group.sample_size(20);
    for strategy in strategies {
        if only.as_ref().is_some_and(|only| !only.contains(&strategy)) {
            continue;
        }
        let Some((ledger, pods)) = prepared(strategy) else {
            eprintln!(
                "fragmentation bench: no trace at {} (set RM_GPU_TRACE_DIR); skipped",
                trace_dir().display()
            );
            return;
        };
        let mut times: Vec<Duration> = pods
            .iter()
            .filter_map(|request| {
                let start = Instant::now();
                let hold = ledger.reserve(request).ok()?;
                let took = start.elapsed();
                ledger.cancel(&hold.id, None).expect("cancel");
                Some(took)
            })
            .collect();
        times.sort_unstable();
        let n = times.len();
        let (median, p99) = (times[n / 2], times[n * 99 / 100]);
        eprintln!(
            "gpu placement on 1523 nodes, {strategy}: median {median:?}, p99 {p99:?}, {:.0} placements/s at the median ({n} placed of {})",
            1.0 / median.as_secs_f64(),
            pods.len()
        );
        let mut next = 0;
        group.bench_function(strategy.as_str(), |b| {
            b.iter(|| {
                let request = &pods[next % pods.len()];
                next += 1;
                if let Ok(hold) = ledger.reserve(black_box(request)) {
                    ledger.cancel(&hold.id, None).expect("cancel");
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, placement);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
