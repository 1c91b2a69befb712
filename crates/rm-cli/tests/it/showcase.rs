//! The bundled scenario: the README's main command.

use std::collections::HashMap;

use rm_cli::{SHOWCASE, report::Report, scenario, sim};

use crate::rmctl;

fn replay() -> (scenario::Scenario, Report) {
    let scenario = scenario::parse(SHOWCASE, std::path::Path::new(".")).unwrap();
    let report = sim::run(&scenario, None, &mut |_, _, _| {}).unwrap();
    (scenario, report)
}

#[test]
fn the_showcase_exercises_quotas_preemption_and_autoscaling() {
    let (_, report) = replay();
    assert!(report.audit_clean);
    assert_eq!(report.completed + report.rejected, report.tasks);
    assert_eq!(report.rejected, 1, "the task that fits nowhere");
    assert!(report.preemptions > 0, "web preempts batch work");
    assert!(
        report.refusals.contains_key("quota-exceeded"),
        "{:?}",
        report.refusals
    );
    assert!(!report.scaling.is_empty(), "the burst group scales");
    assert!(report.fairness.contended_samples > 0);
    assert!(
        report
            .utilization
            .iter()
            .any(|u| u.resource_type == "cpu" && u.average_ppm > 0)
    );
}

#[test]
fn dependencies_are_respected() {
    let (scenario, report) = replay();
    let ends: HashMap<&str, f64> = report
        .records
        .iter()
        .filter_map(|r| r.end_s.map(|end| (r.id.as_str(), end)))
        .collect();
    let mut checked = 0;
    for (task, record) in scenario.tasks.iter().zip(&report.records) {
        assert_eq!(task.id, record.id);
        for parent in &task.after {
            let start = record.start_s.unwrap();
            assert!(
                start >= ends[parent.as_str()],
                "{} started before {parent} ended",
                task.id
            );
            checked += 1;
        }
    }
    assert!(checked > 50);
}

#[test]
fn the_command_prints_a_table_json_and_task_records() {
    let table = rmctl(&["simulate", "--quiet"]);
    assert!(table.status.success());
    let text = String::from_utf8(table.stdout).unwrap();
    for heading in [
        "utilisation",
        "wait",
        "fairness",
        "preemptions",
        "scaling",
        "audit         clean",
    ] {
        assert!(text.contains(heading), "{heading} missing in\n{text}");
    }
    let tasks = std::env::temp_dir().join(format!("rmctl-tasks-{}.csv", std::process::id()));
    let json = rmctl(&[
        "simulate",
        "--json",
        "--quiet",
        "--tasks",
        tasks.to_str().unwrap(),
    ]);
    assert!(json.status.success());
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["tasks"], 155);
    assert!(value["samples"].as_array().unwrap().len() > 10);
    let csv = std::fs::read_to_string(&tasks).unwrap();
    std::fs::remove_file(&tasks).unwrap();
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("id,tenant,priority,arrival_s,start_s")
    );
    assert_eq!(lines.count(), 155);
    assert!(
        csv.contains(",web-"),
        "preempting tasks are named in preempted_by"
    );
}

#[test]
fn the_examples_of_the_scenario_documentation_parse() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/scenario.md"),
    )
    .unwrap();
    assert!(
        doc.contains(SHOWCASE),
        "docs/scenario.md must show the bundled scenario verbatim"
    );
    let blocks: Vec<&str> = doc
        .split("```toml\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .collect();
    assert_eq!(blocks.len(), 3);
    // The task example needs a cluster and a tenant around it to be a whole scenario.
    let tasks = format!(
        "[[cluster]]\nprefix = \"n\"\ncount = 1\ncpu = 16\nmemory = \"64Gi\"\ngpus = 1\n[[tenants]]\nname = \"ml\"\n{}",
        blocks[0]
    );
    let parsed = scenario::parse(&tasks, std::path::Path::new(".")).unwrap();
    let report = sim::run(&parsed, None, &mut |_, _, _| {}).unwrap();
    assert_eq!(report.completed, 2);
    scenario::parse(blocks[1], std::path::Path::new(".")).unwrap();
    scenario::parse(blocks[2], std::path::Path::new(".")).unwrap();
}

#[test]
fn the_html_report_is_self_contained_with_one_chart_per_section() {
    let (_, report) = replay();
    let html = report.html();
    assert!(html.starts_with("<!DOCTYPE html>"));
    let sections: Vec<&str> = html.split("<section ").skip(1).collect();
    let ids: Vec<&str> = sections
        .iter()
        .map(|s| s.split('"').nth(1).unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "utilization-by-type",
            "utilization-by-pool",
            "queue-depth",
            "wait-distribution",
            "tenant-shares"
        ]
    );
    for section in &sections {
        let section = section.split("</section>").next().unwrap();
        assert_eq!(section.matches("<svg ").count(), 1, "one chart per section");
        // Data present: lines with as many points as samples, or bars with counts.
        let polylines: Vec<&str> = section.split("points=\"").skip(1).collect();
        let bars = section.matches("<rect class=\"bar\"").count();
        assert!(
            !polylines.is_empty() || bars > 0,
            "no data in {section:.80}"
        );
        for points in polylines {
            let points = points.split('"').next().unwrap();
            assert_eq!(points.split(' ').count(), report.samples.len());
        }
    }
    // No external references: no scripts, no links, no URLs.
    for forbidden in [
        "<script", "<link", "http://", "https://", "src=", "@import", "url(",
    ] {
        assert!(!html.contains(forbidden), "{forbidden} found");
    }
    // Every tenant appears in the share chart's legend.
    for tenant in &report.tenant_names {
        assert!(
            texts(sections[4], "legend").contains(tenant),
            "{tenant} missing"
        );
    }
}

#[test]
fn compare_puts_strategies_and_policies_side_by_side() {
    let output = rmctl(&[
        "compare",
        "--quiet",
        "--strategy",
        "greedy,bin-pack",
        "--policy",
        "fifo,weighted",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let header = text.lines().next().unwrap();
    for column in ["greedy", "bin-pack", "fifo", "weighted"] {
        assert!(header.contains(column), "{header}");
    }
    assert!(
        text.contains("Jain's index") && text.contains("wait p99"),
        "{text}"
    );
    let json = rmctl(&["compare", "--quiet", "--json", "--strategy", "balanced"]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["balanced"]["strategy"], "balanced");
    assert_eq!(
        rmctl(&["compare", "--strategy", "nope"]).status.code(),
        Some(2)
    );
}

#[test]
fn live_metrics_are_served_during_a_replay() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let output = rmctl(&["simulate", "--quiet", "--metrics-addr", &addr]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains(&format!("http://{addr}/metrics")),
        "{stderr}"
    );
    assert_eq!(
        rmctl(&["simulate", "--metrics-addr", "nowhere"])
            .status
            .code(),
        Some(2)
    );
}

/// The texts of the `class` elements of one chart (a wrapped legend's rows joined by spaces).
fn texts(chart: &str, class: &str) -> Vec<String> {
    chart
        .split(&format!("class=\"{class}\""))
        .skip(1)
        .filter_map(|rest| {
            let (_, content) = rest.split_once('>')?;
            let content = content.split("</text>").next()?;
            let mut text = String::new();
            for piece in content.split('<') {
                let piece = piece.split_once('>').map_or(piece, |(_, t)| t);
                if !piece.is_empty() {
                    if !text.is_empty() {
                        text.push(' ');
                    }
                    text.push_str(piece);
                }
            }
            Some(text)
        })
        .collect()
}

/// Charts a person can read: titled axes, round time ticks, distinct count ticks, and legends
/// that name the tenant of each entitlement without one line hiding another.
#[test]
fn the_html_charts_have_titled_axes_round_ticks_and_named_legends() {
    let (_, report) = replay();
    let html = report.html();
    let chart = |id: &str| {
        let start = html.find(&format!("<svg id=\"{id}\"")).unwrap();
        &html[start..start + html[start..].find("</svg>").unwrap()]
    };
    for id in [
        "chart-utilization-by-type",
        "chart-utilization-by-pool",
        "chart-queue-depth",
        "chart-tenant-shares",
    ] {
        let axes = texts(chart(id), "axis");
        assert_eq!(axes.len(), 2, "{id}: {axes:?}");
        assert_eq!(axes[0], "virtual time", "{id}");
        // Time ticks are evenly spaced on round values (every 30 minutes here), not at
        // 24 / 47 / 71 minutes.
        let seconds: Vec<f64> = texts(chart(id), "tick")
            .iter()
            .filter_map(|t| {
                let (value, unit) = t.split_once(' ')?;
                let factor = match unit {
                    "s" => 1.0,
                    "min" => 60.0,
                    "h" => 3600.0,
                    _ => return None,
                };
                Some(value.parse::<f64>().ok()? * factor)
            })
            .collect();
        assert!(seconds.len() >= 4, "{id}: {seconds:?}");
        let step = seconds[1] - seconds[0];
        assert!(
            seconds
                .windows(2)
                .all(|w| (w[1] - w[0] - step).abs() < 1e-6),
            "{id}: {seconds:?}"
        );
        assert!(
            [60.0, 300.0, 600.0, 900.0, 1800.0, 3600.0].contains(&step),
            "{id}: step {step}"
        );
    }
    // Count ticks never repeat (no "0, 0, 1, 1").
    let counts = texts(chart("chart-queue-depth"), "tick");
    let labels: Vec<&String> = counts
        .iter()
        .filter(|t| !t.ends_with("min") && !t.ends_with(" s"))
        .collect();
    let mut unique = labels.clone();
    unique.dedup();
    assert_eq!(labels, unique, "{counts:?}");
    // Each entitlement line names its tenants; none is a bare "entitled".
    let legends = texts(chart("chart-tenant-shares"), "legend");
    assert!(
        legends.iter().all(|l| l.trim() != "entitled"),
        "{legends:?}"
    );
    for tenant in &report.tenant_names {
        assert!(
            legends
                .iter()
                .any(|l| l.contains(tenant.as_str()) && l.contains("entitled")),
            "{tenant} in {legends:?}"
        );
    }
}

/// A cluster with a GPU pool and a CPU-only pool: the report charts GPU utilisation per pool
/// (the GPU pool only) beside the CPU chart, and the text report lists it.
#[test]
fn gpu_pools_get_their_own_utilisation_chart() {
    let text = r#"
[[cluster]]
prefix = "gpu"
count = 2
cpu = 16
memory = "64Gi"
gpus = 2

[[cluster]]
prefix = "cpu"
count = 2
cpu = 16
memory = "64Gi"

[[tenants]]
name = "ml"

[[tasks]]
id = "train"
tenant = "ml"
arrival_s = 0
duration_s = 600
cpu = 4
memory = "8Gi"
gpus = 1
count = 3

[[tasks]]
id = "etl"
tenant = "ml"
arrival_s = 0
duration_s = 300
cpu = 8
count = 2
"#;
    let parsed = scenario::parse(text, std::path::Path::new(".")).unwrap();
    let report = sim::run(&parsed, None, &mut |_, _, _| {}).unwrap();
    assert_eq!(report.gpu_pools, [true, false]);
    let peak = report.samples.iter().map(|s| s.pools_gpu_ppm[0]).max();
    assert_eq!(peak, Some(750_000), "3 of 4 GPUs in use");
    let html = report.html();
    let start = html
        .find("<svg id=\"chart-gpu-utilization-by-pool\"")
        .unwrap();
    let chart = &html[start..start + html[start..].find("</svg>").unwrap()];
    assert_eq!(texts(chart, "legend"), ["gpu"], "only the pool with GPUs");
    assert_eq!(texts(chart, "axis"), ["virtual time", "GPUs in use"]);
    let points = chart
        .split("points=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert_eq!(points.split(' ').count(), report.samples.len());
    assert!(report.table().contains("pool gpu"), "{}", report.table());
    // A cluster without GPUs gets no such chart.
    let (_, showcase) = replay();
    assert!(!showcase.html().contains("gpu-utilization-by-pool"));
}

/// `rmctl compare --html` charts each measure with a line per strategy on the same axes.
#[test]
fn compare_writes_the_variants_side_by_side_as_html() {
    let file = std::env::temp_dir().join(format!("rmctl-compare-{}.html", std::process::id()));
    let output = rmctl(&[
        "compare",
        "--quiet",
        "--strategy",
        "greedy,bin-pack",
        "--policy",
        "weighted",
        "--html",
        file.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let html = std::fs::read_to_string(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    let header = html.split("</tr>").next().unwrap();
    for column in ["greedy", "bin-pack", "weighted"] {
        assert!(header.contains(&format!("<th>{column}</th>")), "{header}");
    }
    let charts: Vec<&str> = html.split("<svg id=\"").skip(1).collect();
    assert!(charts.len() >= 3, "cpu, memory, queue depth at least");
    for chart in charts {
        let chart = chart.split("</svg>").next().unwrap();
        assert_eq!(
            texts(chart, "legend"),
            ["greedy", "bin-pack", "weighted"],
            "one line per variant in {:.40}",
            chart
        );
        assert_eq!(chart.matches("<polyline").count(), 3);
    }
    for forbidden in ["<script", "<link", "http://", "https://", "src="] {
        assert!(!html.contains(forbidden), "{forbidden} found");
    }
}

/// Legends that would run off the chart wrap onto rows of their own; every chart's axes are
/// titled, the wait distribution's too.
#[test]
fn long_legends_wrap_and_every_chart_has_axis_titles() {
    let (_, report) = replay();
    let html = report.html();
    for svg in html.split("<svg id=\"").skip(1) {
        let svg = svg.split("</svg>").next().unwrap();
        assert_eq!(texts(svg, "axis").len(), 2, "{:.40}", svg);
        for legend in svg.split("class=\"legend\">").skip(1) {
            let legend = legend.split("</text>").next().unwrap();
            for row in legend.split("<tspan").skip(1) {
                let row = row.split('>').nth(1).unwrap().split('<').next().unwrap();
                assert!(row.chars().count() <= 22, "{row:?} runs off the chart");
            }
        }
    }
    let shares = html
        .split("<svg id=\"chart-tenant-shares\"")
        .nth(1)
        .unwrap();
    let shares = shares.split("</svg>").next().unwrap();
    assert!(
        texts(shares, "legend")
            .iter()
            .any(|l| l.contains("etl,") && l.contains("web") && l.contains("entitled 25%")),
        "{:?}",
        texts(shares, "legend")
    );
}
