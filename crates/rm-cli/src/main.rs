//! `rmctl`: replays workloads through the resource manager in virtual time and reports on
//! them; checks configuration and scenario files.
//!
//! ```text
//! rmctl simulate [SCENARIO] [--json] [--tasks FILE] [--html FILE] [--trace-path DIR] [--metrics-addr ADDR [--keep-serving]] [--quiet]
//! rmctl compare [SCENARIO] [--strategy S1,S2,...] [--policy P1,P2,...] [--json] [--html FILE] [--trace-path DIR] [--quiet]
//! rmctl validate [--strict] FILE
//! rmctl stress [--ledger URL] [--schema NAME] [--workers N] [--threads N] [--seconds S] [--resources N] [--kill-every S] [--json]
//! ```
//!
//! `rmctl --help` and `rmctl <command> --help` say more, with examples (the command line is
//! clap's). Without a scenario, `simulate` replays the bundled one (`scenarios/showcase.toml`).
//! See `docs/scenario.md` for the format.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use rm_cli::{SHOWCASE, scenario, sim};
use rm_facade::{Config, ConfigError};

/// Replays workloads through the resource manager in virtual time, compares placement
/// strategies and ordering policies, checks files, and stresses a PostgreSQL pool.
#[derive(Parser, Debug)]
#[command(
    name = "rmctl",
    version,
    arg_required_else_help = true,
    after_help = "Examples:\n  rmctl simulate\n  rmctl simulate my-scenario.toml --html report.html\n  rmctl compare crates/rm-cli/scenarios/alibaba-gpu-2023.toml --strategy greedy,bin-pack\n  rmctl validate --strict my-scenario.toml\n  rmctl stress --workers 4 --seconds 20 --kill-every 5\n\nThe scenario format: docs/scenario.md."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Replay a scenario (a TOML file; the bundled showcase when absent) in virtual time.
    #[command(
        after_help = "Examples:\n  rmctl simulate\n  rmctl simulate crates/rm-cli/scenarios/alibaba-2018.toml --trace-path ../shared/data/alibaba-2018-batch\n  rmctl simulate my.toml --json --tasks tasks.csv --html report.html\n  rmctl simulate my.toml --metrics-addr 127.0.0.1:9464 --keep-serving"
    )]
    Simulate(Simulate),
    /// Replay one workload under several strategies or policies, side by side.
    ///
    /// Replays one workload under each placement strategy and/or ordering policy and puts
    /// the reports side by side (and, with --html, on the same axes).
    #[command(
        after_help = "Examples:\n  rmctl compare --strategy greedy,balanced,bin-pack\n  rmctl compare my.toml --policy fifo,priority,fair,weighted --html compare.html\n\nWithout --strategy and --policy: greedy, balanced and bin-pack."
    )]
    Compare(Compare),
    /// Check a scenario or configuration file and name every problem.
    #[command(
        after_help = "Examples:\n  rmctl validate my-scenario.toml\n  rmctl validate --strict my-scenario.toml\n  rmctl validate manager.toml"
    )]
    Validate(Validate),
    /// Stress a PostgreSQL pool with worker processes under an independent auditor.
    ///
    /// Runs worker processes of random reserve, wait, confirm, renew, release and cancel on
    /// one PostgreSQL pool under an auditor reading the sums in SQL every 5 ms; prints
    /// throughput, latency per operation, release-to-grant latency across processes, faults
    /// and violations (exit status 1 on any).
    #[command(
        after_help = "Examples:\n  rmctl stress\n  rmctl stress --workers 4 --seconds 30 --kill-every 10 --json\n  rmctl stress --ledger postgres://rm:PASSWORD@db.internal:5432/orchestrator --schema stress_test\n\nWithout --ledger a durable private cluster is started from the machine's PostgreSQL\n(initdb, pg_ctl) and removed at the end. See docs/postgres.md."
    )]
    Stress(StressArgs),
    /// The body of one worker process of `rmctl stress` (the pool from the environment).
    #[command(hide = true)]
    StressWorker(StressWorker),
}

#[derive(Args, Debug)]
struct Simulate {
    /// The scenario file (TOML); the bundled showcase when absent.
    scenario: Option<PathBuf>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Write one CSV record per task to FILE.
    #[arg(long, value_name = "FILE")]
    tasks: Option<PathBuf>,
    /// Write a self-contained HTML report with charts to FILE.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Serve live Prometheus metrics at http://ADDR/metrics during the replay.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Read the scenario's trace section from DIR instead of its `path`.
    #[arg(long, value_name = "DIR")]
    trace_path: Option<PathBuf>,
    /// No progress line on standard error.
    #[arg(long)]
    quiet: bool,
    /// After the replay, keep serving its final state until interrupted.
    #[arg(long, requires = "metrics_addr")]
    keep_serving: bool,
}

#[derive(Args, Debug)]
struct Compare {
    /// The scenario file (TOML); the bundled showcase when absent.
    scenario: Option<PathBuf>,
    /// Placement strategies to compare: greedy, balanced, bin-pack, aligned, fragmentation,
    /// random-fit, best-fit, dot-product, gpu-packing, gpu-clustering.
    #[arg(long, value_name = "S1,S2,...", value_delimiter = ',')]
    strategy: Vec<rm_facade::model::ReservationStrategy>,
    /// The FGD paper's experiment instead of a replay (a GPU-trace scenario only): the pod
    /// list in a seeded order, topped up with pods drawn with replacement until the GPU
    /// they ask reaches PCT% of the cluster's; placed in that order, never leaving;
    /// allocation measured at 90-130%.
    #[arg(long, value_name = "PCT", value_parser = clap::value_parser!(u32).range(1..=1000))]
    inflation: Option<u32>,
    /// With --inflation: seeds per strategy and pod list (default 10).
    #[arg(long, value_name = "N", requires = "inflation", value_parser = clap::value_parser!(u32).range(1..=1000))]
    seeds: Option<u32>,
    /// With --inflation: pod lists beside the scenario's, by the part after
    /// `openb_pod_list_` (default: the scenario's own list).
    #[arg(
        long,
        value_name = "L1,L2,...",
        value_delimiter = ',',
        requires = "inflation"
    )]
    pods: Vec<String>,
    /// With --inflation: threads running runs (default: the machine's cores).
    #[arg(long, value_name = "N", requires = "inflation", value_parser = clap::value_parser!(u32).range(1..=256))]
    threads: Option<u32>,
    /// Ordering policies to compare: fifo, priority, fair, weighted.
    #[arg(long, value_name = "P1,P2,...", value_delimiter = ',', value_parser = parse_order)]
    policy: Vec<sim::Order>,
    /// Print the reports as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write them as one HTML page, each measure charted with a line per variant.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Read the scenario's trace section from DIR instead of its `path`.
    #[arg(long, value_name = "DIR")]
    trace_path: Option<PathBuf>,
    /// No progress line on standard error.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct Validate {
    /// A scenario's warnings (a task no node can hold, a group without nodes) are errors.
    #[arg(long)]
    strict: bool,
    /// The scenario or configuration file.
    file: PathBuf,
}

#[derive(Args, Debug)]
struct StressArgs {
    /// The server, as postgres://user:password@host:5432/db (the password is never printed);
    /// without it, a private cluster is started and removed at the end.
    #[arg(long, value_name = "URL")]
    ledger: Option<String>,
    /// The pool's schema (default rmctl_stress_PID, dropped at the end).
    #[arg(long, value_name = "NAME")]
    schema: Option<String>,
    /// Worker processes (at least 2).
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Load threads per worker.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// How long the load runs, in seconds.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Hosts in the pool (4 cores and 8 GiB each).
    #[arg(long, default_value_t = 16)]
    resources: usize,
    /// Kill a random worker with SIGKILL every S seconds and start another.
    #[arg(long, value_name = "S")]
    kill_every: Option<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct StressWorker {
    #[arg(long, default_value_t = 4)]
    threads: usize,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn parse_order(name: &str) -> Result<sim::Order, String> {
    sim::Order::parse(name).ok_or_else(|| {
        format!("unknown policy {name:?}: expected fifo, priority, fair or weighted")
    })
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

/// An error and its causes, as `outer: cause: root cause`.
fn chain(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        line.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    line
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
                let _ = writeln!(std::io::stderr(), "error: {}", chain(other));
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

/// `compare --inflation`: the FGD paper's experiment on the scenario's GPU trace.
fn experiment(
    options: &Compare,
    base: &scenario::Scenario,
    inflation: u32,
) -> Result<(), ExitCode> {
    let fail = |message: String| {
        let _ = writeln!(std::io::stderr(), "error: {message}");
        ExitCode::from(2)
    };
    let Some(scenario::TraceSettings::AlibabaGpu2023 { nodes, pods, .. }) = &base.trace else {
        return Err(fail(
            "--inflation needs a scenario whose [trace] is kind = \"alibaba-gpu-2023\"".into(),
        ));
    };
    let (nodes, pods) = (base.base.join(nodes), base.base.join(pods));
    let node_list = rm_cli::trace::alibaba_gpu_nodes(&nodes).map_err(|err| {
        print_config_error(&err);
        ExitCode::from(2)
    })?;
    let mut files = Vec::new();
    if options.pods.is_empty() {
        files.push(pods.clone());
    }
    for name in &options.pods {
        files.push(pods.with_file_name(format!("openb_pod_list_{name}.csv")));
    }
    let mut lists = Vec::new();
    for file in files {
        let name = file
            .file_stem()
            .and_then(|s| s.to_str())
            .map(|s| s.trim_start_matches("openb_pod_list_").to_owned())
            .unwrap_or_default();
        let specs = rm_cli::trace::alibaba_gpu_pods(&file, "pods", true, None).map_err(|err| {
            print_config_error(&err);
            ExitCode::from(2)
        })?;
        lists.push((name, specs));
    }
    let strategies = if options.strategy.is_empty() {
        rm_facade::model::ReservationStrategy::ALL.to_vec()
    } else {
        options.strategy.clone()
    };
    let threads = options.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |n| n as usize,
    );
    let setup = rm_cli::inflate::Experiment {
        nodes: node_list,
        lists,
        strategies,
        seeds: options.seeds.unwrap_or(10),
        inflation_pct: inflation,
        threads,
    };
    let quiet = options.quiet;
    let progress = |done: usize, total: usize| {
        if !quiet {
            let _ = write!(std::io::stderr(), "\r  runs {done}/{total}");
        }
    };
    let report = rm_cli::inflate::run(&setup, &progress).map_err(|err| fail(chain(&err)))?;
    if !quiet {
        let _ = writeln!(std::io::stderr());
    }
    let text = if options.json {
        serde_json::to_string_pretty(&report)
            .map_err(|err| fail(format!("write the report as JSON: {err}")))?
    } else {
        report.table()
    };
    if let Some(file) = &options.html {
        std::fs::write(file, rm_cli::html::inflation(&report))
            .map_err(|err| fail(format!("write {}: {err}", file.display())))?;
    }
    let _ = writeln!(std::io::stdout(), "{text}");
    let violations: u64 = report.runs.iter().map(|r| r.violations).sum();
    if violations > 0 {
        return Err(fail(format!(
            "the placement audit found {violations} violations"
        )));
    }
    Ok(())
}

fn compare(options: &Compare) -> Result<(), ExitCode> {
    let (json, quiet, html) = (options.json, options.quiet, &options.html);
    let mut strategies = options.strategy.clone();
    let orders = &options.policy;
    let base = load(options.scenario.as_deref(), options.trace_path.as_deref())?;
    if let Some(inflation) = options.inflation {
        return experiment(options, &base, inflation);
    }
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
    for order in orders {
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
            let _ = writeln!(std::io::stderr(), "\nerror: {name}: {}", chain(&err));
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

fn stress(args: &StressArgs) -> Result<(), ExitCode> {
    let options = rm_cli::stress::Options {
        ledger: args.ledger.clone(),
        schema: args.schema.clone(),
        workers: args.workers,
        threads: args.threads,
        seconds: args.seconds,
        resources: args.resources,
        kill_every: args.kill_every.map(std::time::Duration::from_secs),
    };
    let mut progress = |line: &str| {
        let _ = writeln!(std::io::stderr(), "{line}");
    };
    let report = rm_cli::stress::run(&options, &mut progress).map_err(|err| {
        let _ = writeln!(std::io::stderr(), "error: {}", chain(&err));
        ExitCode::from(2)
    })?;
    let text = if args.json {
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

fn stress_worker(args: &StressWorker) -> Result<(), ExitCode> {
    rm_cli::stress::worker(
        args.threads,
        args.seconds,
        args.seed,
        &mut std::io::stdout(),
    )
    .map_err(|err| {
        let _ = writeln!(std::io::stderr(), "error: stress worker: {err}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // Help and version go to standard output with success; a bad command line names
            // the bad flag or value on standard error, with status 2.
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let outcome = match &cli.command {
        Command::Simulate(options) => simulate(options),
        Command::Compare(options) => compare(options),
        Command::Validate(options) => validate(&options.file, options.strict),
        Command::Stress(args) => stress(args),
        Command::StressWorker(args) => stress_worker(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}
