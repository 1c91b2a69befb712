//! The facade end to end, as an orchestrator embeds it and Prometheus scrapes it: reserve,
//! confirm, release, a refusal by quota, one for lack of capacity, a preemption; the series
//! with their values in the rendered text and over HTTP; `promtool` on the scrape and on the
//! shipped alert rules; bounded series; one copy of `metrics`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use rm_facade::{Config, ResourceManager};
use rm_model::{Quantity, RefusalReason};
use rm_testkit::cores;

const CONFIG: &str = r#"
[manager]
wait_timeout_ms = 50

[[resources]]
name = "node-a"
type = "compute"
capacity = { maximum = 8, unit = "cores" }

[policy]
order = ["quota", "priority"]

[[priorities.classes]]
name = "batch"
priority = 0

[[priorities.classes]]
name = "urgent"
priority = 100

[priorities.requesters]
etl = "batch"
oncall = "urgent"

[quotas.requesters.etl]
compute = { amount = 6, unit = "cores" }

[contention.requesters]
oncall = "preempt"

[metrics.requester_classes]
etl = "batch"
oncall = "urgent"
"#;

/// Drives the flow and returns the manager.
fn drive() -> ResourceManager {
    let manager = ResourceManager::from_config(Config::from_toml(CONFIG).unwrap()).unwrap();
    // Reserve, confirm, release.
    let first = manager.reserve(&cores("etl", 4)).unwrap();
    manager.confirm(&first.id, None).unwrap();
    manager.release(&first.id, None).unwrap();
    // A confirmed hold, then a second one over etl's quota of 6 cores.
    let held = manager.reserve(&cores("etl", 4)).unwrap();
    manager.confirm(&held.id, None).unwrap();
    let over = manager.reserve(&cores("etl", 4)).unwrap_err();
    assert_eq!(
        over.refusal().map(|r| r.reason),
        Some(RefusalReason::QuotaExceeded)
    );
    // The urgent class preempts the batch hold to take the whole node.
    let urgent = manager.reserve(&cores("oncall", 8)).unwrap();
    assert_eq!(urgent.items[0].amount, Quantity::from_units(8));
    let victim = manager.get(&held.id).unwrap();
    assert_eq!(victim.state, rm_model::ReservationState::Preempted);
    // Nothing is left for anyone, and try_reserve does not wait.
    let none = manager.try_reserve(&cores("someone", 1)).unwrap_err();
    assert_eq!(
        none.refusal().map(|r| r.reason),
        Some(RefusalReason::InsufficientCapacity)
    );
    manager
}

const EXPECTED: &[&str] = &[
    r#"rm_grants_total{type="compute"} 3"#,
    "rm_reservations_confirmed_total 2",
    r#"rm_reservations_ended_total{outcome="released"} 1"#,
    r#"rm_reservations_ended_total{outcome="preempted"} 1"#,
    r#"rm_reservations_ended_total{outcome="expired"} 0"#,
    r#"rm_refusals_total{reason="quota-exceeded"} 1"#,
    r#"rm_refusals_total{reason="insufficient-capacity"} 1"#,
    r#"rm_utilization_ratio{resource="node-a",type="compute"} 1"#,
    r#"rm_reservations{state="pending"} 1"#,
    r#"rm_reservations{state="confirmed"} 0"#,
    r#"rm_share_ratio{class="urgent"} 1"#,
    r#"rm_share_ratio{class="batch"} 0"#,
    // Nobody outside the configured classes holds anything: `other` is entitled to nothing
    // and does not dilute the classes' entitlements.
    r#"rm_entitled_share_ratio{class="other"} 0"#,
    r#"rm_entitled_share_ratio{class="urgent"} 0.5"#,
    r#"rm_entitled_share_ratio{class="batch"} 0.5"#,
    "rm_queue_depth 0",
    "# HELP rm_grants_total Reservations granted",
    "# TYPE rm_wait_seconds histogram",
];

fn assert_series(text: &str) {
    for expected in EXPECTED {
        assert!(
            text.lines().any(|line| line.starts_with(expected)),
            "missing {expected:?} in\n{text}"
        );
    }
}

/// Lints exposition text with `promtool check metrics`. Skipped when promtool is missing,
/// unless `RM_REQUIRE_PROMTOOL` is set (as `.ci/run` does after installing it).
fn promtool(args: &[&str], stdin: Option<&str>) -> Option<String> {
    let child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(err) => {
            assert!(
                std::env::var_os("RM_REQUIRE_PROMTOOL").is_none(),
                "promtool is required (RM_REQUIRE_PROMTOOL) but cannot run: {err}"
            );
            return None;
        }
    };
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let output = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool {args:?} failed:\n{report}"
    );
    Some(report)
}

fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

#[test]
fn the_rendered_text_has_every_series_with_its_value() {
    let manager = drive();
    let text = manager.render().unwrap();
    assert_series(&text);
    // Exactly 0, not a longer number that starts with it.
    assert!(
        text.lines()
            .any(|line| line == r#"rm_entitled_share_ratio{class="other"} 0"#),
        "{text}"
    );
    // Every metric has help text.
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no HELP"
        );
    }
    if let Some(report) = promtool(&["check", "metrics"], Some(&text)) {
        assert!(report.trim().is_empty(), "promtool complains:\n{report}");
    }
}

#[test]
fn the_endpoint_serves_the_same_series_over_http() {
    let manager = drive();
    let server = manager
        .serve_metrics_on("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let addr = server.local_addr();
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    let (head, body) = http_get(addr, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    // Header names are case-insensitive (hyper writes them in lower case).
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert_series(&body);
    if let Some(report) = promtool(&["check", "metrics"], Some(&body)) {
        assert!(report.trim().is_empty(), "promtool complains:\n{report}");
    }
    let (head, _) = http_get(addr, "/nothing");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    // Stopping closes the port.
    server.shutdown();
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn the_shipped_alert_rules_pass_promtool() {
    let rules = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/prometheus/alerts.yml");
    assert!(rules.exists(), "{} is missing", rules.display());
    if let Some(report) = promtool(&["check", "rules", rules.to_str().unwrap()], None) {
        assert!(report.contains("SUCCESS"), "{report}");
    }
}

#[test]
fn the_grafana_dashboard_queries_only_exported_metrics() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/grafana/resource-manager.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(!panels.is_empty());
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let metric = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .find(|word| word.starts_with("rm_"))
                .unwrap_or_else(|| panic!("{expr} queries no rm_ metric"));
            let base = metric
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                rm_monitor::names::ALL.contains(&base),
                "panel {} queries {metric}, which is not exported",
                panel["title"]
            );
        }
    }
}

#[test]
fn docs_metrics_lists_every_metric() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md");
    let doc = std::fs::read_to_string(path).unwrap();
    for name in rm_monitor::names::ALL {
        assert!(
            doc.contains(&format!("`{name}`")),
            "docs/metrics.md does not list {name}"
        );
    }
}

fn series(text: &str) -> usize {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .count()
}

#[test]
fn ten_thousand_requesters_add_no_series() {
    let manager = drive();
    let before = series(&manager.render().unwrap());
    let mut held = Vec::new();
    manager.cancel(&held_by(&manager, "oncall"), None).unwrap();
    for i in 0..10_000 {
        let request = cores(&format!("tenant-{i}"), 1);
        match manager.try_reserve(&request) {
            Ok(reservation) => {
                manager.confirm(&reservation.id, None).unwrap();
                held.push(reservation.id);
            }
            Err(_) => {
                let id = held.remove(0);
                manager.release(&id, None).unwrap();
            }
        }
    }
    let after = manager.render().unwrap();
    assert_eq!(series(&after), before, "{after}");
    assert!(!after.contains("tenant-"));
}

fn held_by(manager: &ResourceManager, requester: &str) -> rm_model::ReservationId {
    let snapshot = manager.snapshot().unwrap();
    snapshot
        .active
        .iter()
        .find(|r| r.requester.as_str() == requester)
        .map(|r| r.id.clone())
        .unwrap()
}

/// Were a second copy of `metrics` linked (two incompatible versions in the graph), the
/// middle crate's macros would record into a recorder the facade's exporter never sees: the
/// counter below is emitted by `rm-monitor`, and must reach the facade's rendering.
#[test]
fn a_metric_emitted_by_a_middle_crate_reaches_the_facades_exporter() {
    let manager = ResourceManager::from_config(Config::from_toml(CONFIG).unwrap()).unwrap();
    manager.reserve(&cores("etl", 1)).unwrap();
    let text = manager.exporter().unwrap().render();
    assert!(
        text.contains(r#"rm_grants_total{type="compute"} 1"#),
        "{text}"
    );
}

/// What a dashboard expression plots, read from the metric it names and the functions
/// around it, and the panel units that fit it.
fn units_for(expr: &str) -> &'static [&'static str] {
    if expr.contains("_ratio") {
        &["percentunit"]
    } else if expr.contains("histogram_quantile")
        || expr.contains("_seconds{")
        || expr.ends_with("_seconds")
    {
        &["s"]
    } else if expr.contains("rate(") {
        &["reqps", "ops"]
    } else {
        // Gauges that count (queue depth, waiters, reservations) and increases of counters.
        &["short", "none"]
    }
}

/// Every panel's unit fits what each of its expressions plots (ratios on a percent axis,
/// counts on a plain one: 3 waiters never show as 300%), and every expression is PromQL that
/// promtool accepts (as recording rules, the dashboard's variables matching everything).
#[test]
fn the_grafana_dashboard_plots_each_kind_on_its_unit_and_parses() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/grafana/resource-manager.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for panel in dashboard["panels"].as_array().unwrap() {
        let unit = panel["fieldConfig"]["defaults"]["unit"]
            .as_str()
            .unwrap_or("none");
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            assert!(
                units_for(expr).contains(&unit),
                "panel {} plots {expr} on unit {unit}",
                panel["title"]
            );
            let concrete = expr
                .replace("$type", ".*")
                .replace("$resource", ".*")
                .replace("$pool", ".*");
            rules.push_str(&format!(
                "      - record: dashboard:panel_{}_{}\n        expr: '{}'\n",
                panel["id"],
                target["refId"].as_str().unwrap(),
                concrete
            ));
        }
    }
    // A fleet reads at a glance: the per-resource panel is bounded and the variables exist.
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    for name in ["type", "resource", "pool"] {
        assert!(
            variables.contains(&name),
            "no ${name} variable: {variables:?}"
        );
    }
    let file = std::env::temp_dir().join(format!("rm-dashboard-{}.yml", std::process::id()));
    std::fs::write(&file, &rules).unwrap();
    let report = promtool(&["check", "rules", file.to_str().unwrap()], None);
    std::fs::remove_file(&file).unwrap();
    if let Some(report) = report {
        assert!(report.contains("SUCCESS"), "{report}\n{rules}");
    }
}
