//! Fairness is measured among tenants with demand: a tenant active for a short burst is
//! judged on that burst, against its entitlement among the tenants then active.

use rm_cli::{scenario, sim};

/// `steady` keeps 4 cores busy the whole hour with a queue behind; `burst`, of the same
/// weight, asks for 4 cores for a few minutes in the middle. Under weighted fair sharing it
/// gets half the cores while it has demand.
const TEXT: &str = r#"
[policy]
order = ["weighted"]

[simulation]
sample_every_s = 10

[[cluster]]
prefix = "n"
count = 1
cpu = 4

[[tenants]]
name = "steady"

[[tenants]]
name = "burst"

[[generate]]
prefix = "s"
tenant = "steady"
tasks = 900
every_s = 4
duration_s = 20
cpu = 1

[[generate]]
prefix = "b"
tenant = "burst"
tasks = 4
start_s = 1800
every_s = 1
duration_s = 240
cpu = 1
"#;

#[test]
fn a_short_burst_is_judged_while_it_has_demand() {
    let scenario = scenario::parse(TEXT, std::path::Path::new(".")).unwrap();
    let report = sim::run(&scenario, None, &mut |_, _, _| {}).unwrap();
    let fairness = &report.fairness;
    let burst = fairness
        .tenants
        .iter()
        .find(|t| t.tenant == "burst")
        .unwrap();
    let steady = fairness
        .tenants
        .iter()
        .find(|t| t.tenant == "steady")
        .unwrap();
    assert!(
        fairness.contended_samples > 250,
        "{}",
        fairness.contended_samples
    );
    // Active in a small part of the contended samples, entitled to half of them then.
    assert!(
        burst.active_samples * 5 < fairness.contended_samples,
        "{burst:?}"
    );
    assert_eq!(burst.entitled_ppm, 500_000, "{burst:?}");
    assert!(
        burst.average_share_ppm >= 400_000,
        "the burst got its share while active: {burst:?}"
    );
    // Alone most of the time, the steady tenant is entitled to nearly everything then.
    assert!(steady.entitled_ppm > 900_000, "{steady:?}");
    assert!(fairness.jain_index > 0.9, "{}", fairness.jain_index);
}

/// Without any waiting there is no fairness to measure, and the report says so instead of
/// showing every tenant at a share of 0 against its entitlement.
#[test]
fn without_contention_fairness_is_not_measured() {
    let text = "[[cluster]]\nprefix = \"n\"\ncount = 1\ncpu = 8\n[[tenants]]\nname = \"a\"\n[[tasks]]\nid = \"t\"\ntenant = \"a\"\nduration_s = 5\ncpu = 1\n";
    let scenario = scenario::parse(text, std::path::Path::new(".")).unwrap();
    let report = sim::run(&scenario, None, &mut |_, _, _| {}).unwrap();
    assert_eq!(report.fairness.contended_samples, 0);
    let table = report.table();
    assert!(
        table.contains("fairness      not measured: no task ever waited"),
        "{table}"
    );
    assert!(!table.contains("-100.0%"), "{table}");
    assert!(report.html().contains("not measured: no task ever waited"));
}
