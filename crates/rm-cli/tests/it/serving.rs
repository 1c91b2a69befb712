//! `rmctl simulate --metrics-addr`: the address is announced once bound (with the port it
//! got), and `--keep-serving` serves the replay's final state until the process is stopped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

/// Stops the serving process however the test ends (it serves until stopped).
struct Stop(std::process::Child);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_finished_replay_keeps_serving_its_final_state() {
    let child = Command::new(env!("CARGO_BIN_EXE_rmctl"))
        .args([
            "simulate",
            "--quiet",
            "--metrics-addr",
            "127.0.0.1:0",
            "--keep-serving",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Stop(child);
    let mut lines = BufReader::new(child.0.stderr.take().unwrap()).lines();
    let mut announced = Vec::new();
    let url = loop {
        let line = lines.next().expect("rmctl says where it serves").unwrap();
        announced.push(line.clone());
        if let Some(rest) = line.strip_prefix("serving the final state at http://") {
            break rest.split('/').next().unwrap().to_owned();
        }
    };
    // The first announcement names the bound port, not port 0.
    let first = announced
        .iter()
        .find(|l| l.starts_with("serving live metrics at http://"))
        .expect("announced before the replay");
    assert!(!first.contains("127.0.0.1:0/"), "{first}");
    let mut stream = TcpStream::connect(&url).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    drop(child);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("rm_grants_total"), "{answer}");
}

#[test]
fn keep_serving_needs_an_address() {
    let output = Command::new(env!("CARGO_BIN_EXE_rmctl"))
        .args(["simulate", "--quiet", "--keep-serving"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("required arguments were not provided")
            && stderr.contains("--metrics-addr"),
        "{stderr}"
    );
}

/// The live metrics show the replay's waiting as the report does: one wait per started
/// instance with the report's mean, and an empty queue at the end.
#[test]
fn the_live_metrics_agree_with_the_report() {
    let scenario = rm_cli::scenario::parse(rm_cli::SHOWCASE, std::path::Path::new(".")).unwrap();
    let (report, serving) = rm_cli::sim::replay(
        &scenario,
        Some("127.0.0.1:0".parse().unwrap()),
        &mut |_| {},
        &mut |_, _, _| {},
    )
    .unwrap();
    let text = serving.expect("served").manager.render().unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(name).map(|v| v.trim().parse().unwrap()))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    let count = value(r#"rm_wait_seconds_count{outcome="granted"}"#);
    let sum = value(r#"rm_wait_seconds_sum{outcome="granted"}"#);
    // Every start of an instance waited (a preempted one starts again); the manager also
    // counts its own immediate grants (after a preemption), which add no wait.
    let starts: u64 = report
        .records
        .iter()
        .filter(|r| r.start_s.is_some())
        .map(|r| u64::from(r.instances) + u64::from(r.preempted))
        .sum();
    assert!(count as u64 >= starts, "{count} waits for {starts} starts");
    assert!(report.wait.max_s > 0.0, "the showcase has waits");
    let expected = report.wait.mean_s * starts as f64;
    assert!(
        (sum - expected).abs() <= expected * 0.01 + 1.0,
        "waited {sum} s in all by the metrics, {expected} s by the report"
    );
    assert_eq!(value("rm_queue_depth"), 0.0, "nothing waits at the end");
}
