//! `rmctl` end to end: the bundled scenario, bad files, and the real traces when
//! `../shared/data/` is present.

mod bad_files;
mod fairness;
mod millis;
mod ordering;
mod records;
mod serving;
mod showcase;
mod stress;
mod traces;

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs the `rmctl` binary with `args`.
pub(crate) fn rmctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rmctl"))
        .args(args)
        .output()
        .expect("rmctl runs")
}

/// The shared data folder (`RM_DATA_DIR`, or `../shared/data` beside the repository), when
/// it exists; otherwise a message saying the test is skipped.
#[expect(clippy::print_stderr, reason = "a skipped test says why")]
pub(crate) fn data_dir(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("RM_DATA_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
        PathBuf::from,
    );
    if dir.is_dir() {
        Some(dir)
    } else {
        // Visible with --nocapture and in CI logs: a skipped test must say so.
        eprintln!(
            "{test}: skipped, {} is absent (set RM_DATA_DIR)",
            dir.display()
        );
        None
    }
}
