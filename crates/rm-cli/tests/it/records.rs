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
