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
