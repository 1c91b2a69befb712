//! Task records name the GPU devices a pod held and its share of each, so that a reader can
//! check per-device shares.

use rm_cli::{scenario, sim};

const TEXT: &str = r#"
[[cluster]]
prefix = "g"
count = 1
cpu = 8
memory = "32Gi"
gpus = 2
gpu_devices = true

[[tenants]]
name = "ml"

[[tasks]]
id = "half"
tenant = "ml"
duration_s = 10
cpu = 1
gpus = "500m"

[[tasks]]
id = "two"
tenant = "ml"
arrival_s = 20
duration_s = 10
cpu = 1
gpus = 2
"#;

#[test]
fn records_name_each_gpu_device_and_share() {
    let scenario = scenario::parse(TEXT, std::path::Path::new(".")).unwrap();
    let report = sim::run(&scenario, None, &mut |_, _, _| {}).unwrap();
    let devices = |i: usize| -> Vec<(String, String)> {
        report.records[i]
            .gpu_devices
            .iter()
            .map(|d| (d.device.clone(), d.share.clone()))
            .collect()
    };
    assert_eq!(devices(0).len(), 1, "{:?}", devices(0));
    assert_eq!(devices(0)[0].1, "500m");
    assert!(devices(0)[0].0.starts_with("g-0-gpu-"), "{:?}", devices(0));
    let mut two = devices(1);
    two.sort();
    assert_eq!(
        two,
        [
            ("g-0-gpu-0".to_owned(), "1".to_owned()),
            ("g-0-gpu-1".to_owned(), "1".to_owned())
        ]
    );
    let csv = report.tasks_csv();
    assert!(
        csv.lines().next().unwrap().contains(",gpu_devices,"),
        "{csv}"
    );
    assert!(csv.contains(&format!("{}=500m", devices(0)[0].0)), "{csv}");
}

/// Filling a tiny GPU cluster (the 2023 trace's format): pods never leave, so completion
/// times are reported as not measured instead of 0.0 s.
#[test]
fn filling_reports_completion_times_as_not_measured() {
    let dir = std::env::temp_dir().join(format!("rm-fill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("nodes.csv"),
        "sn,cpu_milli,memory_mib,gpu,model\nn-0,64000,262144,2,P100\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("pods.csv"),
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\np-0,1000,1024,1,500,\np-1,1000,1024,1,1000,\np-2,1000,1024,2,1000,\n",
    )
    .unwrap();
    let text = format!(
        "[trace]\nkind = \"alibaba-gpu-2023\"\nnodes = \"{0}/nodes.csv\"\npods = \"{0}/pods.csv\"\nmode = \"fill\"\n",
        dir.display()
    );
    let scenario = scenario::parse(&text, std::path::Path::new(".")).unwrap();
    let report = sim::run(&scenario, None, &mut |_, _, _| {}).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!report.jobs.completion_measured);
    let table = report.table();
    assert!(
        table.contains("completion times not measured (filling: pods never leave)"),
        "{table}"
    );
    assert!(report.html().contains("completion times not measured"));
    // Half a GPU and a whole one fit on the node's two devices; the two-GPU pod does not.
    assert_eq!(
        report.gpu.as_ref().map(|g| g.gpu_tasks_placed),
        Some(2),
        "{table}"
    );
}
