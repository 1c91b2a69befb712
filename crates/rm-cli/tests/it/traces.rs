//! The real traces in `../shared/data/` (skipped with a message when absent).

use std::collections::HashMap;

use rm_cli::{scenario, sim};

use crate::data_dir;

#[test]
fn a_slice_of_the_2018_batch_trace_respects_dependencies() {
    let Some(data) = data_dir("a_slice_of_the_2018_batch_trace_respects_dependencies") else {
        return;
    };
    let text = format!(
        r#"
        [simulation]
        strategy = "greedy"
        [policy]
        order = []
        [[cluster]]
        prefix = "m"
        count = 20
        cpu = 96
        memory = "100Gi"
        [trace]
        kind = "alibaba-batch-2018"
        path = "{}"
        until_s = 60
        "#,
        data.join("alibaba-2018-batch").display()
    );
    let scenario = scenario::parse(&text, std::path::Path::new(".")).unwrap();
    let report = sim::run(&scenario, None, &mut |_, _, _| {}).unwrap();
    assert!(report.audit_clean);
    assert!(report.tasks > 500, "{} tasks", report.tasks);
    assert_eq!(report.completed, report.tasks);
    // The importer's dependencies are the task names' own.
    let imported = rm_cli::trace::alibaba_batch_2018(
        &data.join("alibaba-2018-batch"),
        rm_facade::model::Quantity::from_units(100),
        Some(60),
        1,
    )
    .unwrap();
    let records: HashMap<&str, &rm_cli::report::TaskRecord> =
        report.records.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut edges = 0;
    for task in &imported {
        let start = records[task.id.as_str()].start_s.unwrap();
        for parent in &task.after {
            let end = records[parent.as_str()].end_s.unwrap();
            assert!(
                start >= end,
                "{} started at {start} before {parent} ended at {end}",
                task.id
            );
            edges += 1;
        }
    }
    assert!(edges > 100, "{edges} dependency edges checked");
}

fn gpu_scenario(
    data: &std::path::Path,
    pods: &str,
    strategy: &str,
    limit: usize,
) -> scenario::Scenario {
    let folder = data.join("alibaba-gpu-2023");
    let text = format!(
        r#"
        [simulation]
        strategy = "{strategy}"
        [policy]
        order = []
        [trace]
        kind = "alibaba-gpu-2023"
        nodes = "{}"
        pods = "{}"
        mode = "fill"
        limit = {limit}
        "#,
        folder.join("openb_node_list_gpu_node.csv").display(),
        folder.join(pods).display(),
    );
    scenario::parse(&text, std::path::Path::new(".")).unwrap()
}

#[test]
fn gpu_pods_are_placed_whole_on_one_node_and_fractions_on_one_device() {
    let Some(data) = data_dir("gpu_pods_are_placed_whole_on_one_node_and_fractions_on_one_device")
    else {
        return;
    };
    // The list with GPU-model constraints, so the audit checks models too.
    let scenario = gpu_scenario(&data, "openb_pod_list_gpuspec33.csv", "greedy", 2500);
    let report = sim::run(&scenario, None, &mut |_, _, _| {}).unwrap();
    let gpu = report.gpu.as_ref().unwrap();
    assert_eq!(gpu.capacity_gpus, 6212.0);
    assert!(gpu.gpu_tasks_placed > 1500, "{gpu:?}");
    assert_eq!(gpu.placements_audited, gpu.gpu_tasks_placed as u64);
    assert_eq!(gpu.placement_violations, 0);
    assert!(report.audit_clean);
}

#[test]
fn gpu_strategies_compare_side_by_side() {
    let Some(data) = data_dir("gpu_strategies_compare_side_by_side") else {
        return;
    };
    // The first 40 GPU nodes of the trace, so that 1,500 pods saturate them.
    let nodes = std::fs::read_to_string(data.join("alibaba-gpu-2023/openb_node_list_gpu_node.csv"))
        .unwrap();
    let dir = std::env::temp_dir().join(format!("rmctl-gpu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let small = dir.join("nodes.csv");
    std::fs::write(
        &small,
        nodes.lines().take(41).collect::<Vec<_>>().join("\n") + "\n",
    )
    .unwrap();
    let reports: Vec<(String, rm_cli::report::Report)> = ["greedy", "bin-pack"]
        .iter()
        .map(|strategy| {
            let mut scenario = gpu_scenario(&data, "openb_pod_list_multigpu50.csv", strategy, 1500);
            if let Some(rm_cli::scenario::TraceSettings::AlibabaGpu2023 { nodes, .. }) =
                &mut scenario.trace
            {
                *nodes = small.clone();
            }
            (
                (*strategy).to_owned(),
                sim::run(&scenario, None, &mut |_, _, _| {}).unwrap(),
            )
        })
        .collect();
    std::fs::remove_dir_all(&dir).unwrap();
    let table = rm_cli::report::Report::side_by_side(&reports);
    for row in [
        "GPU allocated",
        "GPUs unallocated at saturation",
        "GPU placement violations",
    ] {
        assert!(table.contains(row), "{row} missing in\n{table}");
    }
    for (_, report) in &reports {
        let gpu = report.gpu.as_ref().unwrap();
        assert_eq!(gpu.placement_violations, 0);
        let saturation = gpu.saturation.as_ref().expect("40 nodes saturate");
        assert!(
            saturation.unallocated_gpus >= 0.0 && saturation.unallocated_gpus < gpu.capacity_gpus
        );
    }
}

/// `compare --inflation`: the FGD paper's protocol on the first 60 GPU nodes, two pod lists,
/// three strategies, two seeds; the JSON report, the chart and the audit.
#[test]
fn the_fgd_experiment_runs_every_strategy_on_every_list() {
    let Some(data) = data_dir("the_fgd_experiment_runs_every_strategy_on_every_list") else {
        return;
    };
    let folder = data.join("alibaba-gpu-2023");
    let dir = std::env::temp_dir().join(format!("rmctl-fgd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let nodes = std::fs::read_to_string(folder.join("openb_node_list_gpu_node.csv")).unwrap();
    std::fs::write(
        dir.join("nodes.csv"),
        nodes.lines().take(61).collect::<Vec<_>>().join("\n") + "\n",
    )
    .unwrap();
    for list in ["default", "gpuspec33"] {
        let name = format!("openb_pod_list_{list}.csv");
        std::fs::copy(folder.join(&name), dir.join(&name)).unwrap();
    }
    let scenario = dir.join("fgd.toml");
    std::fs::write(
        &scenario,
        "[trace]\nkind = \"alibaba-gpu-2023\"\nnodes = \"nodes.csv\"\npods = \"openb_pod_list_default.csv\"\n",
    )
    .unwrap();
    let html = dir.join("fgd.html");
    let out = crate::rmctl(&[
        "compare",
        scenario.to_str().unwrap(),
        "--inflation",
        "130",
        "--seeds",
        "2",
        "--pods",
        "default,gpuspec33",
        "--strategy",
        "fragmentation,best-fit,random-fit",
        "--threads",
        "2",
        "--json",
        "--quiet",
        "--html",
        html.to_str().unwrap(),
    ]);
    let page = std::fs::read_to_string(&html).unwrap_or_default();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["nodes"], 60);
    assert_eq!(report["lists"].as_array().unwrap().len(), 2);
    assert_eq!(report["runs"].as_array().unwrap().len(), 2 * 3 * 2);
    for list in report["lists"].as_array().unwrap() {
        for strategy in list["strategies"].as_array().unwrap() {
            assert_eq!(strategy["violations"], 0);
            assert!(strategy["audited"].as_u64().unwrap() > 100);
            let points = strategy["allocation_pct"].as_array().unwrap();
            assert_eq!(points.len(), 5, "checkpoints at 90, 100, 110, 120, 130%");
            for point in points {
                let mean = point["mean"].as_f64().unwrap();
                assert!((50.0..=100.0).contains(&mean), "{strategy}");
            }
        }
    }
    // The same seed samples the same pods: random fit differs between seeds, the pods
    // arrived do not depend on the strategy.
    let runs = report["runs"].as_array().unwrap();
    for run in runs {
        let twin = runs
            .iter()
            .find(|r| r["list"] == run["list"] && r["seed"] == run["seed"])
            .unwrap();
        assert_eq!(run["arrived"], twin["arrived"]);
    }
    assert!(
        page.contains("<svg") && page.contains("fragmentation"),
        "{page}"
    );
}

#[test]
fn the_fgd_experiment_needs_a_gpu_trace_and_its_flags_need_it() {
    let out = crate::rmctl(&["compare", "--seeds", "3"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--inflation"));
    let out = crate::rmctl(&["compare", "--inflation", "130", "--quiet"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("alibaba-gpu-2023"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
