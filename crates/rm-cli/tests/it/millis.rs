//! Times to the millisecond: decimal seconds in the file, exact in virtual time and in the
//! records, refused when finer than a millisecond.

use rm_cli::scenario::{self, Seconds};
use rm_cli::sim;

const TEXT: &str = r#"
[[cluster]]
prefix = "n"
count = 1
cpu = 1

[[tenants]]
name = "ci"

[[tasks]]
id = "lint"
tenant = "ci"
arrival_s = 0.1
duration_s = 0.25
cpu = 1

[[tasks]]
id = "build"
tenant = "ci"
arrival_s = 0.2
duration_s = 1.5
cpu = 1

[[generate]]
prefix = "step"
tenant = "ci"
tasks = 3
start_s = 2
every_s = 0.005
duration_s = 0.001
cpu = 1
"#;

#[test]
fn decimal_seconds_are_exact_to_the_millisecond() {
    let scenario = scenario::parse(TEXT, std::path::Path::new(".")).unwrap();
    assert_eq!(scenario.tasks[0].duration_s, Seconds::from_millis(250));
    assert_eq!(scenario.tasks[4].arrival_s, Seconds::from_millis(2_010));
    assert_eq!(Seconds::from_millis(2_010).to_string(), "2.01");
    let report = sim::run(&scenario, None, &mut |_, _, _| {}).unwrap();
    let times: Vec<(f64, f64)> = report
        .records
        .iter()
        .map(|r| (r.start_s.unwrap(), r.end_s.unwrap()))
        .collect();
    // lint runs 0.1-0.35; build waits for the core and runs 0.35-1.85; the steps follow.
    assert_eq!(times[0], (0.1, 0.35));
    assert_eq!(times[1], (0.35, 1.85));
    assert_eq!(times[2], (2.0, 2.001));
    assert_eq!(times[3], (2.005, 2.006));
    assert_eq!(times[4], (2.01, 2.011));
    // Sub-second waits read in milliseconds.
    let text = report.table();
    assert!(text.contains(" ms"), "{text}");
}

#[test]
fn finer_than_a_millisecond_is_refused_with_its_field() {
    let text = TEXT.replace("duration_s = 0.25", "duration_s = 0.0001");
    let err = scenario::parse(&text, std::path::Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(err.contains("finer than a millisecond"), "{err}");
    assert!(err.contains("duration_s"), "{err}");
    let text = TEXT.replace("arrival_s = 0.1", "arrival_s = -1");
    let err = scenario::parse(&text, std::path::Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(err.contains("negative"), "{err}");
}
