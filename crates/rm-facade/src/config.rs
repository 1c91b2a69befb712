//! [`Config`]: the whole manager as a TOML file (resources, limits, policies, priorities,
//! quotas, fair shares, contention, pools, metrics), checked with every problem named.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use rm_contention::DisruptionBudget;
use rm_model::{ContentionStrategy, PriorityClass, Quantity, RequesterId, Resource, ResourceType};
use rm_policy::{QuotaGroup, QuotaPreemption, ResourceQuota};
use rm_scale::Behavior;
use rm_validate::LimitRange;
use serde::{Deserialize, Serialize};

/// Everything a [`ResourceManager`](crate::ResourceManager) can be configured with from a
/// file. Every table is optional; unknown fields are errors.
///
/// ```
/// let config = rm_facade::Config::from_toml(r#"
/// [manager]
/// default_ttl_ms = 60000
///
/// [[resources]]
/// name = "node-1"
/// type = "compute"
/// capacity = { maximum = 64, unit = "cores" }
///
/// [policy]
/// order = ["quota", "priority"]
///
/// [quotas.requesters."team-a"]
/// compute = { amount = 16, unit = "cores" }
/// "#)?;
/// assert_eq!(config.resources.len(), 1);
/// # Ok::<(), rm_facade::ConfigError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Timings of the ledger and the queues.
    #[serde(default)]
    pub manager: ManagerSettings,
    /// Where the ledger keeps its accounting: in this process (the default) or in
    /// PostgreSQL, shared by every process that uses the same database and schema.
    #[serde(default)]
    pub ledger: LedgerSettings,
    /// Resources registered at start, in order.
    #[serde(default)]
    pub resources: Vec<Resource>,
    /// Per-type bounds and defaults for one requirement's amount.
    #[serde(default)]
    pub limits: BTreeMap<ResourceType, LimitRange>,
    /// Which allocation policies apply, in order.
    #[serde(default)]
    pub policy: PolicySettings,
    /// Priority classes and who belongs to them.
    #[serde(default)]
    pub priorities: PrioritySettings,
    /// Quota groups and per-requester quotas.
    #[serde(default)]
    pub quotas: QuotaSettings,
    /// Weights for weighted fair sharing.
    #[serde(default)]
    pub fair_share: FairShareSettings,
    /// What happens when a request does not fit.
    #[serde(default)]
    pub contention: ContentionSettings,
    /// Elastic pools of counted units lending to each other (one group).
    #[serde(default)]
    pub pools: Vec<PoolSettings>,
    /// Autoscaling rules for targets the embedding code names
    /// ([`ResourceManagerBuilder::scalable`](crate::ResourceManagerBuilder::scalable)).
    #[serde(default)]
    pub scaling: Vec<ScalingSettings>,
    /// Monitoring and the Prometheus endpoint.
    #[serde(default)]
    pub metrics: MetricsSettings,
}

/// Timings of the ledger and the queues.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ManagerSettings {
    /// How long a pending reservation lives unconfirmed, in milliseconds.
    pub default_ttl_ms: u64,
    /// How long a contended request may wait for capacity, in milliseconds.
    pub wait_timeout_ms: u64,
    /// How long ended reservations are remembered (for idempotent retries), in milliseconds.
    pub retention_ms: u64,
}

impl Default for ManagerSettings {
    fn default() -> ManagerSettings {
        ManagerSettings {
            default_ttl_ms: 30_000,
            wait_timeout_ms: 30_000,
            retention_ms: 300_000,
        }
    }
}

/// Which ledger keeps the accounting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LedgerBackend {
    /// The embedded ledger (`rm-reserve`): one process.
    #[default]
    Memory,
    /// The PostgreSQL ledger (`rm-postgres`): one pool shared by processes on many hosts.
    /// Needs rm-facade built with its `postgres` feature.
    Postgres,
}

/// The `[ledger]` table: which ledger, and for PostgreSQL where it is.
///
/// ```toml
/// [ledger]
/// backend = "postgres"
/// url = "postgres://rm@db.internal:5432/orchestrator"
/// password_env = "RM_POSTGRES_PASSWORD"
/// schema = "ci_pool"
/// ```
///
/// The password never appears in the file: it is read from the environment variable named
/// by `password_env` when the manager is built, and never logged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerSettings {
    /// `memory` (default) or `postgres`.
    pub backend: LedgerBackend,
    /// The PostgreSQL connection URL (`postgres://user@host:port/database`), without a
    /// password. Required for `postgres`.
    pub url: Option<String>,
    /// The environment variable that holds the password, if the server asks for one.
    pub password_env: Option<String>,
    /// The schema of the pool's tables (default `rm`); pools sharing a database use one each.
    pub schema: Option<String>,
    /// How many connections the ledger opens at most (default 8).
    pub pool_size: Option<usize>,
    /// Seeds the `random-fit` placement strategy's draws and the `fragmentation` strategy's
    /// order of nodes within a band (default 0): the same seed and the same requests give
    /// the same placements.
    pub placement_seed: Option<u64>,
}

/// An allocation policy, by its name in configuration files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    /// Hard quotas and hierarchical quota groups (`[quotas]`).
    Quota,
    /// Dominant Resource Fairness, all requesters equal.
    Fair,
    /// Weighted DRF (`[fair_share]` weights).
    Weighted,
    /// Priorities and priority classes, with aging (`[priorities]`).
    Priority,
}

impl PolicyKind {
    /// The name in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Quota => "quota",
            PolicyKind::Fair => "fair",
            PolicyKind::Weighted => "weighted",
            PolicyKind::Priority => "priority",
        }
    }
}

/// Which allocation policies apply, in order: a request is admitted when every one admits it,
/// and waiting requests are ordered by the first policy, ties by the next.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySettings {
    /// The policies, in order. Default: `["priority"]`.
    pub order: Vec<PolicyKind>,
}

impl Default for PolicySettings {
    fn default() -> PolicySettings {
        PolicySettings {
            order: vec![PolicyKind::Priority],
        }
    }
}

/// Priority classes and who belongs to them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrioritySettings {
    /// The classes (`name`, `priority`, `preemption`).
    pub classes: Vec<PriorityClass>,
    /// Requester to class name.
    pub requesters: BTreeMap<RequesterId, String>,
    /// How waiting raises priority, so that nobody starves.
    pub aging: Option<AgingSettings>,
}

/// How waiting raises priority: `step` every `every_ms`, up to `cap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgingSettings {
    /// Priority gained per period.
    pub step: i32,
    /// The period, in milliseconds.
    pub every_ms: u64,
    /// The highest effective priority aging reaches.
    pub cap: i32,
}

/// Quota groups and per-requester quotas.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaSettings {
    /// The group hierarchy (parents first).
    pub groups: Vec<QuotaGroup>,
    /// Requester to group name.
    pub assign: BTreeMap<RequesterId, String>,
    /// Hard limits of single requesters.
    pub requesters: BTreeMap<RequesterId, ResourceQuota>,
    /// What a request refused for quota may end to be admitted, as Kueue's cluster-queue
    /// `preemption` (`reclaim_within_cohort`: `never`, `lower-priority` or `any`;
    /// `within_group`: `never` or `lower-priority`). Kueue's defaults: nothing. Applies to
    /// requesters whose priority class may preempt.
    pub preemption: QuotaPreemption,
}

/// Weights for weighted fair sharing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FairShareSettings {
    /// Requester to weight (1 when absent).
    pub weights: BTreeMap<RequesterId, u32>,
    /// Usage decays by half over this many milliseconds (none when absent).
    pub half_life_ms: Option<u64>,
}

/// Strict order, or backfill past a blocked head.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeadOfLineSetting {
    /// Nothing passes the head.
    #[default]
    StrictFifo,
    /// A later request with an expected duration passes if it cannot delay the head.
    Backfill,
}

/// What happens when a request does not fit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContentionSettings {
    /// The strategy for requests without a more specific one.
    pub default: ContentionStrategy,
    /// The strategy when the chosen one cannot help; it must wait (`wait` or `priority`).
    pub fallback: ContentionStrategy,
    /// Notice given to preemption victims before they are ended, in milliseconds.
    pub grace_ms: u64,
    /// Strict order or backfill.
    pub head_of_line: HeadOfLineSetting,
    /// Strategy per request class (requests labelled `contention=<class>`).
    pub classes: BTreeMap<String, ContentionStrategy>,
    /// Strategy per requester.
    pub requesters: BTreeMap<RequesterId, ContentionStrategy>,
    /// How long the `scale` strategy waits for new capacity, in milliseconds.
    pub scale_timeout_ms: u64,
    /// Disruption budgets preemption honours (Kubernetes' PodDisruptionBudgets): at most
    /// `max_disruptions` of the holds `selector` selects are ended by one preemption, and
    /// resources whose victims break no budget are preferred.
    pub budgets: Vec<DisruptionBudget>,
}

impl Default for ContentionSettings {
    fn default() -> ContentionSettings {
        ContentionSettings {
            default: ContentionStrategy::Wait,
            fallback: ContentionStrategy::Wait,
            grace_ms: 0,
            head_of_line: HeadOfLineSetting::StrictFifo,
            classes: BTreeMap::new(),
            requesters: BTreeMap::new(),
            scale_timeout_ms: 10_000,
            budgets: Vec::new(),
        }
    }
}

/// One elastic pool of counted units (licences, connection slots) in the manager's group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSettings {
    /// Its name, unique.
    pub name: String,
    /// Units it owns and can always get back.
    pub guaranteed: u64,
    /// Units it may borrow from siblings beyond its own.
    #[serde(default)]
    pub borrowing_limit: u64,
    /// Units of its own siblings may borrow while idle.
    #[serde(default)]
    pub lending_limit: u64,
}

/// Which scaling rule drives a target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScalingRuleKind {
    /// Kubernetes' horizontal autoscaler rule on the metric now.
    #[default]
    Threshold,
    /// The same limits, acting on a Holt (or Holt–Winters) forecast `lead_ms` ahead.
    Predictive,
    /// The same limits, acting on the metric's rate of change over `window_ms` projected
    /// `horizon_ms` ahead.
    RateOfChange,
}

impl ScalingRuleKind {
    /// The name in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            ScalingRuleKind::Threshold => "threshold",
            ScalingRuleKind::Predictive => "predictive",
            ScalingRuleKind::RateOfChange => "rate-of-change",
        }
    }
}

/// An autoscaling rule for one named target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalingSettings {
    /// The target's name, as given to
    /// [`ResourceManagerBuilder::scalable`](crate::ResourceManagerBuilder::scalable).
    pub target: String,
    /// The rule.
    #[serde(default)]
    pub rule: ScalingRuleKind,
    /// The metric's target value (for utilisation, in percent).
    pub metric_target: Quantity,
    /// The fewest units.
    pub minimum: u64,
    /// The most units.
    pub maximum: u64,
    /// How scaling up behaves (Kubernetes' defaults when absent).
    #[serde(default)]
    pub scale_up: Option<Behavior>,
    /// How scaling down behaves (Kubernetes' defaults when absent).
    #[serde(default)]
    pub scale_down: Option<Behavior>,
    /// Predictive: how far ahead to forecast, in milliseconds (default 60,000).
    #[serde(default)]
    pub lead_ms: Option<u64>,
    /// Predictive: the season's length in ticks, when the load has one.
    #[serde(default)]
    pub season: Option<usize>,
    /// Rate of change: the window the rate is measured over, in milliseconds (default 60,000).
    #[serde(default)]
    pub window_ms: Option<u64>,
    /// Rate of change: how far ahead the rate is projected, in milliseconds (default 60,000).
    #[serde(default)]
    pub horizon_ms: Option<u64>,
}

/// Monitoring and the Prometheus endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// Whether to record into a Prometheus recorder of the manager's own.
    pub prometheus: bool,
    /// The address [`serve_metrics`](crate::ResourceManager::serve_metrics) listens on (for
    /// example `127.0.0.1:9464`); [`DEFAULT_METRICS_ADDR`] when absent. No port is opened
    /// unless the embedding code calls `serve_metrics` (or `serve_metrics_on`).
    pub listen: Option<SocketAddr>,
    /// Requester to class: the only way requesters appear in metrics (others count as
    /// `other`).
    pub requester_classes: BTreeMap<RequesterId, String>,
    /// Class to weight, for the share each class is entitled to (1 when absent).
    pub class_weights: BTreeMap<String, u32>,
    /// Utilisation samples kept per capacity.
    pub utilization_samples: usize,
}

impl Default for MetricsSettings {
    fn default() -> MetricsSettings {
        MetricsSettings {
            prometheus: true,
            listen: None,
            requester_classes: BTreeMap::new(),
            class_weights: BTreeMap::new(),
            utilization_samples: 120,
        }
    }
}

/// The default metrics address: loopback, Prometheus' registered port for exporters.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9464";

/// One thing wrong with a configuration, at a path such as `quotas.assign."team-a"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where: the dotted path of the offending field.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Prints path and message [clipped](rm_model::clip_lines), so that a problem naming a huge
/// input stays a readable line.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}",
            rm_model::clip_lines(&self.path),
            rm_model::clip_lines(&self.message)
        )
    }
}

/// A configuration that cannot be used: unreadable, unparsable, or with problems (all of
/// them, not just the first).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// The operating system's message.
        message: String,
    },
    /// The text is not valid TOML for this schema (the message names the line, column and
    /// field, unknown fields included).
    #[error("{}", rm_model::clip_lines(.0))]
    Parse(String),
    /// The configuration parsed but cannot work.
    #[error("{} problem(s): {}", .0.len(), join(.0))]
    Invalid(Vec<Problem>),
}

fn join(problems: &[Problem]) -> String {
    let parts: Vec<String> = problems.iter().map(Problem::to_string).collect();
    parts.join("; ")
}

impl ConfigError {
    /// The problems of an [`ConfigError::Invalid`] configuration (empty otherwise).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid(problems) => problems,
            _ => &[],
        }
    }
}

impl Config {
    /// Parses TOML text. Only the syntax and schema are checked here; the
    /// [builder](crate::ResourceManagerBuilder) checks the rest, and
    /// [`Config::check`] does both without building.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        // The parser quotes the offending line, which may be as long as the file.
        toml::from_str(text)
            .map_err(|err| ConfigError::Parse(rm_model::clip_lines(&err.to_string())))
    }

    /// Reads and parses a TOML file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
            path: path.display().to_string(),
            message: err.to_string(),
        })?;
        Config::from_toml(&text).map_err(|err| match err {
            ConfigError::Parse(message) => {
                ConfigError::Parse(format!("{}: {message}", path.display()))
            }
            other => other,
        })
    }

    /// The default TTL.
    pub(crate) fn default_ttl(&self) -> Duration {
        Duration::from_millis(self.manager.default_ttl_ms)
    }
}
