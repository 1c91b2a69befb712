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
