//! From a [`Config`] to the parts a manager is made of, collecting every problem on the way.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rm_model::{
    AllocationPolicy, ContentionStrategy, PreemptionPolicy, ReservationLedger, ValidationContext,
    Validator,
};
use rm_policy::{
    Aging, ComposedPolicy, FairAllocationPolicy, PriorityAllocationPolicy, QuotaAllocationPolicy,
    WeightedAllocationPolicy,
};
use rm_pool::{ElasticGroup, ElasticPoolSpec};
use rm_scale::{PredictiveScaling, RateOfChangeScaling, ThresholdScaling};
use rm_validate::ConstraintValidator;

use crate::config::{Config, ConfigError, PolicyKind, Problem, ScalingRuleKind};

/// What the embedding code supplies besides the file, as far as checking the file needs it.
#[derive(Default)]
pub(crate) struct CodeParts {
    /// A policy given in code replaces `[policy]`.
    pub(crate) custom_policy: bool,
    /// Whether a scale target is given (the `scale` strategy needs one).
    pub(crate) scale_target: bool,
    /// The names of the targets `[[scaling]]` may name, when known (not when a file is
    /// checked on its own).
    pub(crate) scalable: Option<BTreeSet<String>>,
}

/// A configured scaling rule, whichever kind.
pub(crate) enum AnyRule {
    Threshold(ThresholdScaling),
    Predictive(PredictiveScaling),
    RateOfChange(RateOfChangeScaling),
}

/// Refreshes a fair policy's view of total capacity from the ledger.
pub(crate) type CapacityRefresh = Arc<dyn Fn(&dyn ReservationLedger) + Send + Sync>;

/// The parts built from a configuration.
pub(crate) struct Parts {
    pub(crate) validator: ConstraintValidator,
    pub(crate) policy: Option<Arc<dyn AllocationPolicy>>,
    pub(crate) priority: Option<Arc<PriorityAllocationPolicy>>,
    pub(crate) refresh: Option<CapacityRefresh>,
    pub(crate) pools: Option<ElasticGroup>,
    /// Target name and rule, per `[[scaling]]` entry.
    pub(crate) scaling: Vec<(String, AnyRule)>,
}

struct Problems(Vec<Problem>);

impl Problems {
    /// Adds a problem; a path or message that repeats long input is [clipped](rm_model::clip).
    fn add(&mut self, path: impl Into<String>, message: impl ToString) {
        self.0.push(Problem {
            path: rm_model::clip_lines(&path.into()),
            message: rm_model::clip_lines(&message.to_string()),
        });
    }
}

fn quoted(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

impl Parts {
    pub(crate) fn from_config(config: &Config, code: &CodeParts) -> Result<Parts, ConfigError> {
        let mut problems = Problems(Vec::new());
        if config.manager.default_ttl_ms == 0 {
            problems.add("manager.default_ttl_ms", "must be at least 1");
        }
        if config.manager.retention_ms == 0 {
            problems.add(
                "manager.retention_ms",
                "must be at least 1: retries by id need the ended reservation remembered",
            );
        }
        ledger(config, &mut problems);
        let validator = validator(config, &mut problems);
        let (policy, priority, refresh) = if code.custom_policy {
            (None, None, None)
        } else {
            policies(config, &mut problems)
        };
        contention(config, code, &mut problems);
        let pools = pools(config, &mut problems);
        let scaling = scaling(config, code, &mut problems);
        for (requester, class) in &config.metrics.requester_classes {
            if class.is_empty() {
                problems.add(
                    format!("metrics.requester_classes.{}", quoted(requester.as_str())),
                    "a class name must not be empty",
                );
            }
        }
        for (class, weight) in &config.metrics.class_weights {
            if *weight == 0 {
                problems.add(
                    format!("metrics.class_weights.{}", quoted(class)),
                    "a weight must be at least 1",
                );
            }
        }
        if problems.0.is_empty() {
            Ok(Parts {
                validator,
                policy,
                priority,
                refresh,
                pools,
                scaling,
            })
        } else {
            Err(ConfigError::Invalid(problems.0))
        }
    }
}

/// The `[ledger]` table's problems: a backend this build lacks, a missing URL, a password
/// written into the file.
fn ledger(config: &Config, problems: &mut Problems) {
    let settings = &config.ledger;
    match settings.backend {
        crate::config::LedgerBackend::Memory => {
            for (field, set) in [
                ("url", settings.url.is_some()),
                ("password_env", settings.password_env.is_some()),
                ("schema", settings.schema.is_some()),
                ("pool_size", settings.pool_size.is_some()),
            ] {
                if set {
                    problems.add(
                        format!("ledger.{field}"),
                        "only applies to backend = \"postgres\"",
                    );
                }
            }
        }
        crate::config::LedgerBackend::Postgres => {
            if !cfg!(feature = "postgres") {
                problems.add(
                    "ledger.backend",
                    "\"postgres\" needs rm-facade built with its `postgres` feature",
                );
            }
            match &settings.url {
                None => problems.add("ledger.url", "is required for backend = \"postgres\""),
                Some(url) if url_has_password(url) => problems.add(
                    "ledger.url",
                    "must not contain a password: name an environment variable in \
                     ledger.password_env instead",
                ),
                Some(_) => {}
            }
            if settings.pool_size == Some(0) {
                problems.add("ledger.pool_size", "must be at least 1");
            }
            if let Some(variable) = &settings.password_env
                && variable.is_empty()
            {
                problems.add("ledger.password_env", "must name an environment variable");
            }
        }
    }
}

/// Whether a PostgreSQL URL (`postgres://user:password@host`) or key-value string
/// (`password=…`) carries a password.
fn url_has_password(url: &str) -> bool {
    if let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    {
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        let userinfo = authority.rsplit_once('@').map(|(user, _)| user);
        userinfo.is_some_and(|user| user.contains(':')) || rest.contains("password=")
    } else {
        url.split_whitespace()
            .any(|pair| pair.starts_with("password="))
    }
}

fn validator(config: &Config, problems: &mut Problems) -> ConstraintValidator {
    let mut validator = ConstraintValidator::new();
    for (resource_type, range) in &config.limits {
        match validator
            .clone()
            .with_limit_range(resource_type.clone(), range.clone())
        {
            Ok(with) => validator = with,
            Err(err) => problems.add(format!("limits.{}", quoted(resource_type.as_str())), err),
        }
    }
    let mut seen = BTreeSet::new();
    for (i, resource) in config.resources.iter().enumerate() {
        if !seen.insert(resource.name().clone()) {
            problems.add(
                format!("resources[{i}].name"),
                format!("{} is defined twice", resource.name()),
            );
            continue;
        }
        let context = ValidationContext::default();
        if let Err(errors) = validator.validate_resource(resource, &context) {
            for violation in errors.violations {
                problems.add(
                    format!("resources[{i}].{}", violation.path),
                    violation.message,
                );
            }
        }
    }
    validator
}

type PolicyParts = (
    Option<Arc<dyn AllocationPolicy>>,
    Option<Arc<PriorityAllocationPolicy>>,
    Option<CapacityRefresh>,
);

fn policies(config: &Config, problems: &mut Problems) -> PolicyParts {
    let order = &config.policy.order;
    let mut seen = BTreeSet::new();
    for (i, kind) in order.iter().enumerate() {
        if !seen.insert(*kind) {
            problems.add(
                format!("policy.order[{i}]"),
                format!("{} is listed twice", kind.as_str()),
            );
        }
    }
    if seen.contains(&PolicyKind::Fair) && seen.contains(&PolicyKind::Weighted) {
        problems.add(
            "policy.order",
            "fair and weighted are alternatives; list one of them",
        );
    }
    let uses = |kind| seen.contains(&kind);
    let mut composed = ComposedPolicy::new("configured");
    let mut priority_policy = None;
    let mut refresh: Option<CapacityRefresh> = None;
    // Sections configured for a policy that is not in the order would be silently ignored.
    let unused = [
        (
            PolicyKind::Quota,
            "quotas",
            !config.quotas.groups.is_empty()
                || !config.quotas.assign.is_empty()
                || !config.quotas.requesters.is_empty(),
        ),
        (
            PolicyKind::Priority,
            "priorities",
            !config.priorities.classes.is_empty()
                || !config.priorities.requesters.is_empty()
                || config.priorities.aging.is_some(),
        ),
        (
            PolicyKind::Weighted,
            "fair_share.weights",
            !config.fair_share.weights.is_empty(),
        ),
    ];
    for (kind, section, configured) in unused {
        if configured && !uses(kind) {
            problems.add(
                section,
                format!(
                    "is configured but policy.order does not include {}",
                    kind.as_str()
                ),
            );
        }
    }
    for kind in order {
        let policy: Arc<dyn AllocationPolicy> = match kind {
            PolicyKind::Quota => Arc::new(quota(config, problems)),
            PolicyKind::Fair => {
                let fair = Arc::new(fair(config, "fair", problems));
                let handle = fair.clone();
                refresh = Some(Arc::new(move |ledger: &dyn ReservationLedger| {
                    // A ledger that cannot list its resources leaves the previous totals.
                    let _ = handle.refresh_capacity(ledger);
                }));
                fair
            }
            PolicyKind::Weighted => {
                let weighted = Arc::new(weighted(config, problems));
                let handle = weighted.clone();
                refresh = Some(Arc::new(move |ledger: &dyn ReservationLedger| {
                    let _ = handle.fair().refresh_capacity(ledger);
                }));
                weighted
            }
            PolicyKind::Priority => {
                let priority = Arc::new(priority(config, problems));
                priority_policy = Some(priority.clone());
                priority
            }
        };
        composed = composed.then(policy);
    }
    let policy: Option<Arc<dyn AllocationPolicy>> = if order.is_empty() {
        None
    } else {
        Some(Arc::new(composed))
    };
    (policy, priority_policy, refresh)
}

fn quota(config: &Config, problems: &mut Problems) -> QuotaAllocationPolicy {
    let policy = QuotaAllocationPolicy::new("quota");
    for (i, group) in config.quotas.groups.iter().enumerate() {
        if let Err(err) = policy.add_group(group.clone()) {
            problems.add(format!("quotas.groups[{i}]"), err);
        }
    }
    for (requester, group) in &config.quotas.assign {
        if let Err(err) = policy.assign(requester.clone(), group) {
            problems.add(format!("quotas.assign.{}", quoted(requester.as_str())), err);
        }
    }
    for (requester, quota) in &config.quotas.requesters {
        policy.set_requester_quota(requester.clone(), quota.clone());
    }
    policy.set_preemption(config.quotas.preemption);
    policy
}

fn fair(config: &Config, name: &str, problems: &mut Problems) -> FairAllocationPolicy {
    let policy = FairAllocationPolicy::new(name);
    match config.fair_share.half_life_ms {
        None => policy,
        Some(ms) => match FairAllocationPolicy::new(name).with_half_life(Duration::from_millis(ms))
        {
            Ok(policy) => policy,
            Err(err) => {
                problems.add("fair_share.half_life_ms", err);
                policy
            }
        },
    }
}

fn weighted(config: &Config, problems: &mut Problems) -> WeightedAllocationPolicy {
    if config.fair_share.half_life_ms.is_some() {
        problems.add(
            "fair_share.half_life_ms",
            "decay applies to the fair policy only; the weighted policy counts current holds",
        );
    }
    let policy = WeightedAllocationPolicy::new("weighted");
    for (requester, weight) in &config.fair_share.weights {
        if let Err(err) = policy.set_weight(requester.clone(), *weight) {
            problems.add(
                format!("fair_share.weights.{}", quoted(requester.as_str())),
                err,
            );
        }
    }
    policy
}

fn priority(config: &Config, problems: &mut Problems) -> PriorityAllocationPolicy {
    let mut policy = PriorityAllocationPolicy::new("priority");
    if let Some(aging) = config.priorities.aging {
        let aging = Aging {
            step: aging.step,
            every: Duration::from_millis(aging.every_ms),
            cap: aging.cap,
        };
        match PriorityAllocationPolicy::new("priority").with_aging(aging) {
            Ok(aged) => policy = aged,
            Err(err) => problems.add("priorities.aging", err),
        }
    }
    let mut names = BTreeSet::new();
    for (i, class) in config.priorities.classes.iter().enumerate() {
        if !names.insert(class.name.clone()) {
            problems.add(
                format!("priorities.classes[{i}].name"),
                format!("{} is defined twice", class.name),
            );
        }
        policy.add_class(class.clone());
    }
    for (requester, class) in &config.priorities.requesters {
        if let Err(err) = policy.set_requester_class(requester.clone(), class) {
            problems.add(
                format!("priorities.requesters.{}", quoted(requester.as_str())),
                err,
            );
        }
    }
    policy
}

fn contention(config: &Config, code: &CodeParts, problems: &mut Problems) {
    let settings = &config.contention;
    let check = |path: String, strategy: ContentionStrategy, problems: &mut Problems| {
        if strategy == ContentionStrategy::Scale && !code.scale_target {
            problems.add(
                path,
                "the scale strategy needs a scale target (ResourceManagerBuilder::scale_target)",
            );
        }
    };
    check("contention.default".into(), settings.default, problems);
    if !matches!(
        settings.fallback,
        ContentionStrategy::Wait | ContentionStrategy::Priority
    ) {
        problems.add(
            "contention.fallback",
            format!(
                "{} cannot be a fallback; it must wait (wait or priority)",
                settings.fallback
            ),
        );
    }
    for (class, strategy) in &settings.classes {
        check(
            format!("contention.classes.{}", quoted(class)),
            *strategy,
            problems,
        );
    }
    for (requester, strategy) in &settings.requesters {
        check(
            format!("contention.requesters.{}", quoted(requester.as_str())),
            *strategy,
            problems,
        );
    }
}

fn pools(config: &Config, problems: &mut Problems) -> Option<ElasticGroup> {
    if config.pools.is_empty() {
        return None;
    }
    let mut first = BTreeMap::new();
    for (i, pool) in config.pools.iter().enumerate() {
        if let Some(earlier) = first.insert(pool.name.clone(), i) {
            problems.add(
                format!("pools[{i}].name"),
                format!("{} is already the name of pools[{earlier}]", pool.name),
            );
        }
    }
    let specs = config
        .pools
        .iter()
        .map(|pool| ElasticPoolSpec {
            name: pool.name.clone(),
            guaranteed: pool.guaranteed,
            borrowing_limit: pool.borrowing_limit,
            lending_limit: pool.lending_limit,
        })
        .collect();
    match ElasticGroup::new(specs) {
        Ok(group) => Some(group),
        Err(err) => {
            problems.add("pools", err);
            None
        }
    }
}

const DEFAULT_HORIZON: Duration = Duration::from_secs(60);

fn scaling(config: &Config, code: &CodeParts, problems: &mut Problems) -> Vec<(String, AnyRule)> {
    let mut rules = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, settings) in config.scaling.iter().enumerate() {
        let path = |field: &str| format!("scaling[{i}].{field}");
        if !seen.insert(settings.target.as_str()) {
            problems.add(
                path("target"),
                format!("{} is scaled twice", settings.target),
            );
        }
        if let Some(known) = &code.scalable
            && !known.contains(&settings.target)
        {
            problems.add(
                path("target"),
                format!(
                    "no scalable target named {:?} was given to the builder (known: {:?})",
                    settings.target, known
                ),
            );
        }
        let limits =
            match ThresholdScaling::new(settings.metric_target, settings.minimum, settings.maximum)
            {
                Ok(limits) => limits,
                Err(err) => {
                    problems.add(path("metric_target"), err);
                    continue;
                }
            };
        let limits = match &settings.scale_up {
            Some(up) => limits.with_scale_up(up.clone()),
            None => limits,
        };
        let limits = match &settings.scale_down {
            Some(down) => limits.with_scale_down(down.clone()),
            None => limits,
        };
        // Settings of one rule kind are mistakes under another.
        let specific = [
            (
                "lead_ms",
                settings.lead_ms.is_some(),
                ScalingRuleKind::Predictive,
            ),
            (
                "season",
                settings.season.is_some(),
                ScalingRuleKind::Predictive,
            ),
            (
                "window_ms",
                settings.window_ms.is_some(),
                ScalingRuleKind::RateOfChange,
            ),
            (
                "horizon_ms",
                settings.horizon_ms.is_some(),
                ScalingRuleKind::RateOfChange,
            ),
        ];
        for (field, set, kind) in specific {
            if set && kind != settings.rule {
                problems.add(
                    path(field),
                    format!("applies to the {} rule only", kind.as_str()),
                );
            }
        }
        let rule = match settings.rule {
            ScalingRuleKind::Threshold => AnyRule::Threshold(limits),
            ScalingRuleKind::Predictive => {
                let lead = settings
                    .lead_ms
                    .map_or(DEFAULT_HORIZON, Duration::from_millis);
                let rule = PredictiveScaling::new(limits, lead);
                match settings.season {
                    None => AnyRule::Predictive(rule),
                    Some(season) => match rule.with_season(season) {
                        Ok(rule) => AnyRule::Predictive(rule),
                        Err(err) => {
                            problems.add(path("season"), err);
                            continue;
                        }
                    },
                }
            }
            ScalingRuleKind::RateOfChange => {
                let window = settings
                    .window_ms
                    .map_or(DEFAULT_HORIZON, Duration::from_millis);
                let horizon = settings
                    .horizon_ms
                    .map_or(DEFAULT_HORIZON, Duration::from_millis);
                match RateOfChangeScaling::new(limits, window, horizon) {
                    Ok(rule) => AnyRule::RateOfChange(rule),
                    Err(err) => {
                        problems.add(path("window_ms"), err);
                        continue;
                    }
                }
            }
        };
        rules.push((settings.target.clone(), rule));
    }
    rules
}

/// The preemption policy of each requester, from its priority class when there is one.
pub(crate) fn preemption_policy_of(
    priority: Option<Arc<PriorityAllocationPolicy>>,
) -> rm_contention::PreemptionPolicyOf {
    match priority {
        Some(policy) => Arc::new(move |requester| policy.preemption_policy(requester)),
        None => Arc::new(|_| PreemptionPolicy::PreemptLowerPriority),
    }
}

impl Config {
    /// Every problem that would stop a manager being built from this configuration: the
    /// wiring itself, run without building (so `check` and the builder cannot disagree).
    pub fn check(&self) -> Result<(), ConfigError> {
        Parts::from_config(self, &CodeParts::default()).map(|_| ())
    }
}
