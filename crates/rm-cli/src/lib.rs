//! `rmctl`'s library: the scenario format, trace importers, the virtual-time replay through
//! `rm-facade`'s `ResourceManager`, and the report.
//!
//! # Where it sits
//! The top of the stack, beside the tests and benches: it depends on `rm-facade` only (the
//! facade re-exports the layers below), as the tidy check enforces.
//!
//! # Main items
//! - [`scenario`]: [`Scenario`](scenario::Scenario), parsed from TOML (a facade
//!   configuration plus `[simulation]`, `[[cluster]]`, `[[tenants]]`, `[[tasks]]`,
//!   `[[generate]]`, `[trace]`), with every problem named.
//! - [`trace`]: importers of the Alibaba 2018 batch trace.
//! - [`sim`]: [`run`](sim::run) replays a scenario in virtual time.
//! - [`inflate`]: [`run`](inflate::run), the FGD paper's placement experiment on the Alibaba
//!   2023 GPU trace (seeded inflation, strategies side by side), and its
//!   [`Report`](inflate::Report).
//! - [`stress`]: [`run`](stress::run), worker processes on one PostgreSQL pool under an
//!   independent auditor, and its [`Report`](stress::Report).
//! - [`report`]: [`Report`](report::Report) as a table, JSON or per-task CSV, and
//!   [`html`]: as a self-contained HTML page of charts.
//!
//! # Concurrency, errors, metrics
//! A replay runs on the calling thread. Bad scenarios give
//! [`ConfigError`](rm_facade::ConfigError)s listing every problem; the replay's own failures
//! are facade [`Error`](rm_facade::Error)s. With a metrics address the facade serves live
//! Prometheus metrics during the replay.
//!
//! # Example
//! ```
//! let scenario = rm_cli::scenario::parse(r#"
//!     [[cluster]]
//!     prefix = "node"
//!     count = 2
//!     cpu = 8
//!
//!     [[tenants]]
//!     name = "team"
//!
//!     [[tasks]]
//!     id = "a"
//!     tenant = "team"
//!     duration_s = 60
//!     cpu = 4
//!
//!     [[tasks]]
//!     id = "b"
//!     tenant = "team"
//!     duration_s = 30
//!     cpu = 8
//!     after = ["a"]
//! "#, std::path::Path::new("."))?;
//! let report = rm_cli::sim::run(&scenario, None, &mut |_, _, _| {})?;
//! assert_eq!(report.completed, 2);
//! assert_eq!(report.makespan_s, 90.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod html;
pub mod inflate;
pub mod report;
pub mod scenario;
pub mod sim;
pub mod stress;
pub mod trace;

/// The bundled scenario, replayed by `rmctl simulate` without an argument.
pub const SHOWCASE: &str = include_str!("../scenarios/showcase.toml");
