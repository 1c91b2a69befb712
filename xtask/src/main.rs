//! Project automation, run as `cargo xtask <command>` (matklad's cargo-xtask).
//!
//! - `cargo xtask ci`: everything CI checks, in order: formatting, clippy with warnings denied,
//!   the tests, the docs with warnings denied, the layer tidy check, and `cargo check -p` for
//!   each member on its own.
//! - `cargo xtask tidy`: only the layer rules of `docs/architecture.md`, read from
//!   `cargo metadata`, that no two files of a crate import each other round a loop, that
//!   every export is named in its crate's docs and that no source file passes 1,000 lines
//!   outside its tests (`cycles.rs`). The same checks run as `#[test]`s of this crate.
#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool reports on its terminal"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

mod cycles;
mod tidy;

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn run(step: &str, mut command: Command) -> Result<(), String> {
    println!("==> {step}");
    let status = command
        .current_dir(workspace_root())
        .status()
        .map_err(|err| format!("{step}: could not start: {err}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{step}: failed ({status})"))
    }
}

fn with_args(mut command: Command, args: &[&str]) -> Command {
    command.args(args);
    command
}

fn tidy_step() -> Result<(), String> {
    println!("==> tidy: layer rules, import loops, exports the docs name, file lengths");
    let mut violations = tidy::check_workspace(&workspace_root())?;
    for src in cycles::crate_sources(&workspace_root())? {
        if let Ok(lib) = std::fs::read_to_string(src.join("lib.rs")) {
            for item in cycles::unnamed_exports(&lib) {
                violations.push(format!(
                    "{}: `{item}` is exported but the crate docs never name it",
                    src.join("lib.rs").display()
                ));
            }
        }
        violations.extend(cycles::long_files(&src)?);
        for component in cycles::loops(&cycles::graph_of(&src)?) {
            violations.push(format!(
                "{}: these files import each other round a loop: {}",
                src.display(),
                component.join(", ")
            ));
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        for violation in &violations {
            eprintln!("  {violation}");
        }
        Err(format!("tidy: {} violations", violations.len()))
    }
}

fn ci() -> Result<(), String> {
    run(
        "cargo fmt --check",
        with_args(cargo(), &["fmt", "--all", "--check"]),
    )?;
    run(
        "cargo clippy",
        with_args(
            cargo(),
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
    )?;
    run("cargo test", with_args(cargo(), &["test", "--workspace"]))?;
    // The workspace build turns rm-facade's `postgres` feature on (rm-tests asks for it);
    // its configuration tests run once more without it, as an embedder without the client
    // builds it.
    run(
        "cargo test -p rm-facade (without the postgres feature)",
        with_args(
            cargo(),
            &["test", "-p", "rm-facade", "--test", "it", "config"],
        ),
    )?;
    // The trace tests pass without the data by skipping; say which happened.
    let data = std::env::var_os("RM_DATA_DIR").map_or_else(
        || workspace_root().join("../shared/data"),
        std::path::PathBuf::from,
    );
    if data.is_dir() {
        println!("==> trace tests ran on {}", data.display());
    } else {
        println!(
            "==> trace tests skipped: {} is absent (set RM_DATA_DIR to the shared data folder)",
            data.display()
        );
    }
    let mut doc = with_args(cargo(), &["doc", "--workspace", "--no-deps"]);
    doc.env("RUSTDOCFLAGS", "-D warnings");
    run("cargo doc", doc)?;
    tidy_step()?;
    for member in tidy::member_names(&workspace_root())? {
        run(
            &format!("cargo check -p {member}"),
            with_args(cargo(), &["check", "-p", &member]),
        )?;
    }
    println!("==> ci: all checks passed");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("tidy") => tidy_step(),
        _ => {
            eprintln!("usage: cargo xtask <ci|tidy>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
