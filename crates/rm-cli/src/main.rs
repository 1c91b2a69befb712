//! `rmctl`: replays workloads through the resource manager in virtual time and reports on
//! them; checks configuration and scenario files.
//!
//! ```text
//! rmctl simulate [SCENARIO] [--json] [--tasks FILE] [--html FILE] [--trace-path DIR] [--metrics-addr ADDR [--keep-serving]] [--quiet]
//! rmctl validate [--strict] FILE
//! rmctl stress [--ledger URL] [--workers N] [--threads N] [--seconds S] [--kill-every S] [--json]
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
  rmctl simulate [SCENARIO] [--json] [--tasks FILE] [--html FILE] [--trace-path DIR] [--metrics-addr ADDR [--keep-serving]] [--quiet]
      replay SCENARIO (a TOML file; the bundled showcase when absent) in virtual time
      --json               print the report as JSON instead of a table
      --tasks FILE         write one CSV record per task to FILE
      --html FILE          write a self-contained HTML report with charts to FILE
      --trace-path DIR     read the scenario's [trace] from DIR instead of its `path`
      --metrics-addr ADDR  serve live Prometheus metrics at http://ADDR/metrics meanwhile
      --keep-serving       after the replay, keep serving its final state until interrupted
      --quiet              no progress line on standard error
  rmctl compare [SCENARIO] [--strategy S1,S2,...] [--policy P1,P2,...] [--json] [--html FILE] [--trace-path DIR] [--quiet]
      replay one workload under each placement strategy (greedy, balanced, bin-pack, aligned)
      and/or ordering policy (fifo, priority, fair, weighted) and put the reports side by side
      --html FILE          also write them as one HTML page, each measure charted with a line
                           per strategy or policy on the same axes
  rmctl validate [--strict] FILE
      check a scenario or configuration file and name every problem; a scenario's warnings
      (a task no node can hold, a group without nodes) are errors with --strict
  rmctl stress [--ledger URL] [--schema NAME] [--workers N] [--threads N] [--seconds S] [--resources N] [--kill-every S] [--json]
      run N worker processes (default 4, with 4 threads each, for 20 s) of random reserve, wait,
      confirm, renew, release and cancel on one PostgreSQL pool of 16 hosts, under an auditor
      reading the sums in SQL every 5 ms; print throughput, latency per operation,
      release-to-grant latency across processes, faults and violations (exit 1 on any)
      --ledger URL         the server, as postgres://user:password@host:5432/db (the password
                           is never printed); without it, a private cluster is started from
                           the machine's PostgreSQL (initdb, pg_ctl) and removed at the end
      --schema NAME        the pool's schema (default rmctl_stress_<pid>, dropped at the end)
      --kill-every S       SIGKILL a random worker every S seconds and start another
      example: rmctl stress --workers 4 --seconds 30 --kill-every 10
";

struct Simulate {
    scenario: Option<PathBuf>,
    json: bool,
    tasks: Option<PathBuf>,
    html: Option<PathBuf>,
    metrics_addr: Option<std::net::SocketAddr>,
    trace_path: Option<PathBuf>,
    quiet: bool,
    keep_serving: bool,
}

fn parse_simulate(args: &[String]) -> Result<Simulate, String> {
    let mut options = Simulate {
        scenario: None,
        json: false,
        tasks: None,
        html: None,
        metrics_addr: None,
        trace_path: None,
        quiet: false,
        keep_serving: false,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => options.json = true,
            "--quiet" => options.quiet = true,
            "--keep-serving" => options.keep_serving = true,
            "--tasks" => {
                let file = args.next().ok_or("--tasks needs a file")?;
                options.tasks = Some(PathBuf::from(file));
            }
            "--html" => {
                let file = args.next().ok_or("--html needs a file")?;
                options.html = Some(PathBuf::from(file));
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
    if options.keep_serving && options.metrics_addr.is_none() {
        return Err("--keep-serving needs --metrics-addr".into());
    }
    Ok(options)
}

/// `label [#######.............]  35% 1234/3525 tasks, virtual time 600 s`.
fn progress_line(label: &str, virtual_s: u64, done: usize, total: usize) -> String {
    const WIDTH: usize = 30;
    let filled = (done * WIDTH)
        .checked_div(total)
        .unwrap_or(WIDTH)
        .min(WIDTH);
    let percent = (done * 100).checked_div(total).unwrap_or(100);
    format!(
        "{label} [{}{}] {percent:>3}% {done}/{total} tasks, virtual time {virtual_s} s   ",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled)
    )
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
    let scenario = load(options.scenario.as_deref(), options.trace_path.as_deref())?;
    print_warnings(&scenario.warnings());
    let quiet = options.quiet;
    // Said once the endpoint listens, with the port it got (for port 0).
    let mut serving = |addr: std::net::SocketAddr| {
        let _ = writeln!(
            std::io::stderr(),
            "serving live metrics at http://{addr}/metrics during the replay"
        );
    };
    let mut progress = |virtual_s: u64, done: usize, total: usize| {
        if !quiet {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(
                stderr,
                "\r  {}",
                progress_line("replaying", virtual_s, done, total)
            );
        }
    };
    let report = sim::replay(&scenario, options.metrics_addr, &mut serving, &mut progress);
    if !quiet {
        let _ = writeln!(std::io::stderr());
    }
    let (report, endpoint) = report.map_err(|err| {
        match &err {
            rm_facade::Error::Config(config) => print_config_error(config),
            other => {
                let _ = writeln!(std::io::stderr(), "error: {other}");
            }
        }
        ExitCode::from(2)
    })?;
    let outputs = [
        (
            &options.tasks,
            rm_cli::report::Report::tasks_csv as fn(&rm_cli::report::Report) -> String,
        ),
        (&options.html, rm_cli::report::Report::html),
    ];
    for (path, render) in outputs {
        if let Some(path) = path {
            std::fs::write(path, render(&report)).map_err(|err| {
                let _ = writeln!(std::io::stderr(), "error: write {}: {err}", path.display());
                ExitCode::FAILURE
            })?;
        }
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
    drop(stdout);
    if options.keep_serving
        && let Some(endpoint) = endpoint
    {
        let _ = writeln!(
            std::io::stderr(),
            "serving the final state at http://{}/metrics until interrupted (Ctrl-C)",
            endpoint.server.local_addr()
        );
        loop {
            std::thread::park();
        }
    }
    Ok(())
}

fn load(path: Option<&Path>, trace_path: Option<&Path>) -> Result<scenario::Scenario, ExitCode> {
    let mut scenario = match path {
        Some(path) => scenario::read(path),
        None => scenario::parse(SHOWCASE, Path::new(".")),
    }
    .map_err(|err| {
        print_config_error(&err);
        ExitCode::from(2)
    })?;
    // The facade's sections as the manager would check them, as `validate` does, even where
    // the replay overrides a setting (the TTL): a file is valid for both or for neither.
    scenario.config.check().map_err(|err| {
        print_config_error(&err);
        ExitCode::from(2)
    })?;
    if let Some(dir) = trace_path {
        scenario.set_trace_path(dir);
    }
    Ok(scenario)
}

fn usage_error(message: &str) -> ExitCode {
    let _ = write!(std::io::stderr(), "error: {message}\n{USAGE}");
    ExitCode::from(2)
}

fn compare(args: &[String]) -> Result<(), ExitCode> {
    let mut path = None;
    let mut strategies = Vec::new();
    let mut orders = Vec::new();
    let mut json = false;
    let mut quiet = false;
    let mut trace_path = None;
    let mut html = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--strategy" => {
                let list = args
                    .next()
                    .ok_or_else(|| usage_error("--strategy needs a list"))?;
                for name in list.split(',') {
                    let strategy = name
                        .parse::<rm_facade::model::ReservationStrategy>()
                        .map_err(|err| usage_error(&format!("--strategy: {err}")))?;
                    strategies.push(strategy);
                }
            }
            "--policy" => {
                let list = args
                    .next()
                    .ok_or_else(|| usage_error("--policy needs a list"))?;
                for name in list.split(',') {
                    orders.push(
                        sim::Order::parse(name)
                            .ok_or_else(|| usage_error(&format!("unknown policy {name}")))?,
                    );
                }
            }
            "--trace-path" => {
                let dir = args
                    .next()
                    .ok_or_else(|| usage_error("--trace-path needs a folder"))?;
                trace_path = Some(PathBuf::from(dir));
            }
            "--html" => {
                let file = args
                    .next()
                    .ok_or_else(|| usage_error("--html needs a file"))?;
                html = Some(PathBuf::from(file));
            }
            "--json" => json = true,
            "--quiet" => quiet = true,
            flag if flag.starts_with("--") => {
                return Err(usage_error(&format!("unknown option {flag}")));
            }
            file if path.is_none() => path = Some(PathBuf::from(file)),
            extra => return Err(usage_error(&format!("unexpected argument {extra}"))),
        }
    }
    let base = load(path.as_deref(), trace_path.as_deref())?;
    if strategies.is_empty() && orders.is_empty() {
        use rm_facade::model::ReservationStrategy;
        strategies = vec![
            ReservationStrategy::Greedy,
            ReservationStrategy::Balanced,
            ReservationStrategy::BinPack,
        ];
    }
    let mut variants: Vec<(String, scenario::Scenario)> = Vec::new();
    for strategy in &strategies {
        let mut scenario = base.clone();
        scenario.simulation.strategy = *strategy;
        variants.push((strategy.as_str().to_owned(), scenario));
    }
    for order in &orders {
        let mut scenario = base.clone();
        scenario.order = Some(*order);
        variants.push((order.as_str().to_owned(), scenario));
    }
    let mut reports = Vec::new();
    for (name, scenario) in variants {
        let mut progress = |virtual_s: u64, done: usize, total: usize| {
            if !quiet {
                let _ = write!(
                    std::io::stderr(),
                    "\r  {}",
                    progress_line(&name, virtual_s, done, total)
                );
            }
        };
        let report = sim::run(&scenario, None, &mut progress).map_err(|err| {
            let _ = writeln!(std::io::stderr(), "\nerror: {name}: {err}");
            ExitCode::from(2)
        })?;
        if !quiet {
            let _ = writeln!(std::io::stderr());
        }
        reports.push((name, report));
    }
    let text = if json {
        reports
            .iter()
            .map(|(name, report)| Ok((name.clone(), serde_json::to_value(report)?)))
            .collect::<Result<serde_json::Map<String, serde_json::Value>, serde_json::Error>>()
            .and_then(|map| serde_json::to_string_pretty(&map))
            .map_err(|err| {
                let _ = writeln!(std::io::stderr(), "error: write the reports as JSON: {err}");
                ExitCode::from(2)
            })?
    } else {
        rm_cli::report::Report::side_by_side(&reports)
    };
    if let Some(file) = &html {
        std::fs::write(file, rm_cli::html::comparison(&reports)).map_err(|err| {
            let _ = writeln!(std::io::stderr(), "error: write {}: {err}", file.display());
            ExitCode::from(2)
        })?;
    }
    let _ = writeln!(std::io::stdout(), "{text}");
    Ok(())
}

/// Prints what validates but would not run as meant.
fn print_warnings(warnings: &[rm_facade::Problem]) {
    let mut stderr = std::io::stderr().lock();
    for warning in warnings {
        let _ = writeln!(stderr, "warning: {warning}");
    }
}

/// Checks `path` as a scenario when it has scenario sections, else as a configuration; with
/// `strict`, a scenario's warnings are errors.
fn validate(path: &Path, strict: bool) -> Result<(), ExitCode> {
    let fail = |err: ConfigError| {
        print_config_error(&err);
        ExitCode::from(2)
    };
    let text = std::fs::read_to_string(path).map_err(|err| {
        let _ = writeln!(std::io::stderr(), "error: read {}: {err}", path.display());
        ExitCode::from(2)
    })?;
    let is_scenario = scenario::looks_like_scenario(&text);
    if is_scenario {
        let scenario = scenario::read(path).map_err(fail)?;
        scenario.config.check().map_err(fail)?;
        let warnings = scenario.warnings();
        if strict && !warnings.is_empty() {
            return Err(fail(ConfigError::Invalid(warnings)));
        }
        print_warnings(&warnings);
    } else {
        Config::from_file(path)
            .and_then(|config| config.check())
            .map_err(fail)?;
    }
    let _ = writeln!(std::io::stdout(), "{}: ok", path.display());
    Ok(())
}

fn parse_stress(args: &[String]) -> Result<(rm_cli::stress::Options, bool), String> {
    let mut options = rm_cli::stress::Options::default();
    let mut json = false;
    let mut args = args.iter();
    let number = |flag: &str, value: Option<&String>| -> Result<u64, String> {
        let value = value.ok_or(format!("{flag} needs a number"))?;
        value
            .parse()
            .map_err(|err| format!("{flag} {value}: {err}"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => json = true,
            "--ledger" => options.ledger = Some(args.next().ok_or("--ledger needs a URL")?.clone()),
            "--schema" => {
                options.schema = Some(args.next().ok_or("--schema needs a name")?.clone())
            }
            "--workers" => options.workers = number(arg, args.next())? as usize,
            "--threads" => options.threads = number(arg, args.next())? as usize,
            "--seconds" => options.seconds = number(arg, args.next())?,
            "--resources" => options.resources = number(arg, args.next())? as usize,
            "--kill-every" => {
                options.kill_every =
                    Some(std::time::Duration::from_secs(number(arg, args.next())?));
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok((options, json))
}

fn stress(args: &[String]) -> Result<(), ExitCode> {
    let (options, json) = parse_stress(args).map_err(|message| usage_error(&message))?;
    let mut progress = |line: &str| {
        let _ = writeln!(std::io::stderr(), "{line}");
    };
    let report = rm_cli::stress::run(&options, &mut progress).map_err(|err| {
        let mut line = format!("error: {err}");
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            line.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        let _ = writeln!(std::io::stderr(), "{line}");
        ExitCode::from(2)
    })?;
    let text = if json {
        serde_json::to_string_pretty(&report).map_err(|err| {
            let _ = writeln!(std::io::stderr(), "error: write the report: {err}");
            ExitCode::from(2)
        })?
    } else {
        report.to_text()
    };
    let _ = writeln!(std::io::stdout(), "{text}");
    if report.passed() {
        Ok(())
    } else {
        Err(ExitCode::from(1))
    }
}

/// The hidden `stress-worker` subcommand `rmctl stress` starts: `--threads N --seconds S
/// --seed X`, the pool from the environment.
fn stress_worker(args: &[String]) -> Result<(), ExitCode> {
    let mut settings = [4_u64, 20, 1];
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let slot = match flag.as_str() {
            "--threads" => 0,
            "--seconds" => 1,
            "--seed" => 2,
            other => return Err(usage_error(&format!("unknown option {other}"))),
        };
        settings[slot] = args
            .next()
            .and_then(|value| value.parse().ok())
            .ok_or_else(|| usage_error(&format!("{flag} needs a number")))?;
    }
    let [threads, seconds, seed] = settings;
    rm_cli::stress::worker(threads as usize, seconds, seed, &mut std::io::stdout()).map_err(|err| {
        let _ = writeln!(std::io::stderr(), "error: stress worker: {err}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("simulate") => match parse_simulate(&args[1..]) {
            Ok(options) => simulate(&options),
            Err(message) => Err(usage_error(&message)),
        },
        Some("compare") => compare(&args[1..]),
        Some("stress") => stress(&args[1..]),
        Some("stress-worker") => stress_worker(&args[1..]),
        Some("validate") => match &args[1..] {
            [file] => validate(Path::new(file), false),
            [flag, file] | [file, flag] if flag == "--strict" => validate(Path::new(file), true),
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
