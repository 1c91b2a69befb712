//! `rmctl stress` against the test server: 4 worker processes of 4 threads (random reserve,
//! wait, confirm, renew, release, cancel, and a baton handed between processes), one of them
//! killed with SIGKILL every few seconds, while this test's own auditor (independent of the
//! ledger's code) reads the sums in SQL every 5 ms. `RM_PG_STRESS_SECONDS` sets the length
//! (12 s by default).

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use rm_testkit::postgres::{Auditor, Durability, server};

#[test]
#[expect(
    clippy::print_stderr,
    reason = "the stress reports its figures, where the test runner shows it"
)]
fn rmctl_stress_finds_no_violation_with_workers_killed() {
    let Some(server) = server("rmctl_stress", Durability::Throwaway) else {
        return;
    };
    let seconds: u64 = std::env::var("RM_PG_STRESS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let kill_every = (seconds / 3).max(2);
    let child = Command::new(env!("CARGO_BIN_EXE_rmctl"))
        .args([
            "stress",
            "--ledger",
            &server.url,
            "--schema",
            &server.name,
            "--workers",
            "4",
            "--threads",
            "4",
            "--seconds",
            &seconds.to_string(),
            "--kill-every",
            &kill_every.to_string(),
            "--json",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rmctl runs");
    let done = AtomicBool::new(false);
    let (audits, seen) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let output = thread::scope(|scope| {
        scope.spawn(|| {
            let mut auditor = Auditor::connect(&server, &server.name).expect("auditor");
            while !done.load(Ordering::Acquire) {
                // Errors until rmctl has made the schema's tables.
                if let Ok(findings) = auditor.audit() {
                    seen.fetch_add(findings.total() as usize, Ordering::Relaxed);
                    audits.fetch_add(1, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(5));
            }
        });
        let output = child.wait_with_output().expect("rmctl ends");
        done.store(true, Ordering::Release);
        output
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "rmctl stress failed ({}): {stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("a JSON report");
    eprintln!(
        "rmctl stress: {} operations in {:.1} s, {} workers killed, {} sessions lost, hand-off p50 {} us p99 {} \
         us ({} samples), its auditor {} audits and {} violations, this test's auditor {} \
         audits and {} violations",
        report["operations"],
        report["elapsed_s"].as_f64().unwrap_or(0.0),
        report["workers_killed"],
        report["sessions_lost"],
        report["handoff"]["p50_us"],
        report["handoff"]["p99_us"],
        report["handoff"]["count"],
        report["audits"],
        report["violations"],
        audits.load(Ordering::Relaxed),
        seen.load(Ordering::Relaxed),
    );
    assert_eq!(report["violations"], 0);
    assert_eq!(report["unexpected_errors"], 0);
    assert_eq!(report["capacity_back"], true);
    assert!(report["workers_killed"].as_u64().unwrap_or(0) >= 1);
    assert!(report["handoff"]["count"].as_u64().unwrap_or(0) > 0);
    for operation in ["reserve", "wait", "confirm", "renew", "release", "cancel"] {
        assert!(
            report["latency"][operation]["count"].as_u64().unwrap_or(0) > 0,
            "{operation} ran"
        );
    }
    assert!(audits.load(Ordering::Relaxed) > 0, "the test's auditor ran");
    assert_eq!(
        seen.load(Ordering::Relaxed),
        0,
        "the test's auditor saw a violation"
    );
}

/// Bad settings name their flag; an unreachable server is a clear error, not a panic.
#[test]
fn rmctl_stress_names_bad_flags() {
    let out = crate::rmctl(&["stress", "--workers", "many"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("'many' for '--workers"));
    let out = crate::rmctl(&[
        "stress",
        "--workers",
        "1",
        "--ledger",
        "postgres://x@127.0.0.1:1/x",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--workers: at least 2"));
    let out = crate::rmctl(&[
        "stress",
        "--ledger",
        "postgres://rm:secret@127.0.0.1:1/x",
        "--seconds",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("open the pool"), "{stderr}");
    assert!(
        !stderr.contains("secret"),
        "the password is never printed: {stderr}"
    );
}
