//! `rmctl`: replays workloads through the resource manager in virtual time and reports on
//! them; checks configuration and scenario files.
//!
//! ```text
//! rmctl simulate [SCENARIO] [--json] [--tasks FILE] [--trace-path DIR] [--metrics-addr ADDR] [--quiet]
//! rmctl validate FILE
//! ```
//!
//! Without a scenario, `simulate` replays the bundled one (`scenarios/showcase.toml`).
//! See `docs/scenario.md` for the format.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rm_cli::{SHOWCASE, scenario, sim};
use rm_facade::{Config, ConfigError};

const USAGE: &str = "usage:
  rmctl simulate [SCENARIO] [--json] [--tasks FILE] [--trace-path DIR] [--metrics-addr ADDR] [--quiet]
      replay SCENARIO (a TOML file; the bundled showcase when absent) in virtual time
      --json               print the report as JSON instead of a table
      --tasks FILE         write one CSV record per task to FILE
      --trace-path DIR     read the scenario's [trace] from DIR instead of its `path`
      --metrics-addr ADDR  serve live Prometheus metrics at http://ADDR/metrics meanwhile
      --quiet              no progress line on standard error
  rmctl validate FILE
      check a scenario or configuration file and name every problem
";

struct Simulate {
    scenario: Option<PathBuf>,
    json: bool,
    tasks: Option<PathBuf>,
    metrics_addr: Option<std::net::SocketAddr>,
    trace_path: Option<PathBuf>,
    quiet: bool,
}

fn parse_simulate(args: &[String]) -> Result<Simulate, String> {
    let mut options = Simulate {
        scenario: None,
        json: false,
        tasks: None,
        metrics_addr: None,
        trace_path: None,
        quiet: false,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => options.json = true,
            "--quiet" => options.quiet = true,
            "--tasks" => {
                let file = args.next().ok_or("--tasks needs a file")?;
                options.tasks = Some(PathBuf::from(file));
            }
            "--trace-path" => {
                let dir = args.next().ok_or("--trace-path needs a folder")?;
                options.trace_path = Some(PathBuf::from(dir));
            }
            "--metrics-addr" => {
                let addr = args.next().ok_or("--metrics-addr needs an address")?;
                options.metrics_addr = Some(
                    addr.parse()
                        .map_err(|err| format!("--metrics-addr {addr}: {err}"))?,
                );
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            path if options.scenario.is_none() => options.scenario = Some(PathBuf::from(path)),
            extra => return Err(format!("unexpected argument {extra}")),
        }
    }
    Ok(options)
}

fn print_config_error(err: &ConfigError) {
    let mut stderr = std::io::stderr().lock();
    match err {
        ConfigError::Invalid(problems) => {
            for problem in problems {
                let _ = writeln!(stderr, "error: {problem}");
            }
            let _ = writeln!(stderr, "{} problem(s)", problems.len());
        }
        other => {
            let _ = writeln!(stderr, "error: {other}");
        }
    }
}

fn simulate(options: &Simulate) -> Result<(), ExitCode> {
    let mut scenario = match &options.scenario {
        Some(path) => scenario::read(path),
        None => scenario::parse(SHOWCASE, Path::new(".")),
    }
    .map_err(|err| {
        print_config_error(&err);
        ExitCode::from(2)
    })?;
    if let Some(dir) = &options.trace_path {
        scenario.set_trace_path(dir);
    }
    let quiet = options.quiet;
    let mut progress = |virtual_s: u64, done: usize, total: usize| {
        if !quiet {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(
                stderr,
                "\r  replaying: {done}/{total} tasks done, virtual time {virtual_s} s   "
            );
        }
    };
    let report = sim::run(&scenario, options.metrics_addr, &mut progress);
    if !quiet {
        let _ = writeln!(std::io::stderr());
    }
    let report = report.map_err(|err| {
        match &err {
            rm_facade::Error::Config(config) => print_config_error(config),
            other => {
                let _ = writeln!(std::io::stderr(), "error: {other}");
            }
        }
        ExitCode::from(2)
    })?;
    if let Some(path) = &options.tasks {
        std::fs::write(path, report.tasks_csv()).map_err(|err| {
            let _ = writeln!(std::io::stderr(), "error: write {}: {err}", path.display());
            ExitCode::FAILURE
        })?;
    }
    let mut stdout = std::io::stdout().lock();
    let text = if options.json {
        serde_json::to_string_pretty(&report).map_err(|err| {
            let _ = writeln!(std::io::stderr(), "error: {err}");
            ExitCode::FAILURE
        })?
    } else {
        report.table()
    };
    let _ = writeln!(stdout, "{text}");
    Ok(())
}

/// Checks `path` as a scenario when it has scenario sections, else as a configuration.
fn validate(path: &Path) -> Result<(), ExitCode> {
    let fail = |err: ConfigError| {
        print_config_error(&err);
        ExitCode::from(2)
    };
    let text = std::fs::read_to_string(path).map_err(|err| {
        let _ = writeln!(std::io::stderr(), "error: read {}: {err}", path.display());
        ExitCode::from(2)
    })?;
    let is_scenario = toml::from_str::<toml::Table>(&text).is_ok_and(|table| {
        scenario::SCENARIO_KEYS
            .iter()
            .any(|key| table.contains_key(*key))
    });
    if is_scenario {
        let scenario = scenario::read(path).map_err(fail)?;
        scenario.config.check().map_err(fail)?;
    } else {
        Config::from_file(path)
            .and_then(|config| config.check())
            .map_err(fail)?;
    }
    let _ = writeln!(std::io::stdout(), "{}: ok", path.display());
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("simulate") => match parse_simulate(&args[1..]) {
            Ok(options) => simulate(&options),
            Err(message) => {
                let _ = write!(std::io::stderr(), "error: {message}\n{USAGE}");
                Err(ExitCode::from(2))
            }
        },
        Some("validate") => match &args[1..] {
            [file] => validate(Path::new(file)),
            _ => {
                let _ = write!(std::io::stderr(), "{USAGE}");
                Err(ExitCode::from(2))
            }
        },
        Some("help" | "--help" | "-h") => {
            let _ = write!(std::io::stdout(), "{USAGE}");
            Ok(())
        }
        _ => {
            let _ = write!(std::io::stderr(), "{USAGE}");
            Err(ExitCode::from(2))
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}
