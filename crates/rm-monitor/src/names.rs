//! Every metric's name, in one place, with its help text ([`describe`]).
//!
//! Names follow Prometheus conventions: the `rm_` prefix, base units (seconds, ratios),
//! `_total` for counters. Labels are bounded: `type` (resource type), `resource`, `reason`
//! (a refusal code), `outcome`, `state`, `pool`, `class` (a configured requester class, never a
//! requester id), `target` (a scale target's name).

use metrics::Unit;

/// Counter: reservations granted, by `type` of each item held.
pub const GRANTS_TOTAL: &str = "rm_grants_total";
/// Counter: requests refused, by `reason` (a `RefusalReason` code).
pub const REFUSALS_TOTAL: &str = "rm_refusals_total";
/// Counter: reservations ended, by `outcome` (released, expired, preempted, cancelled).
pub const ENDED_TOTAL: &str = "rm_reservations_ended_total";
/// Counter: reservations confirmed.
pub const CONFIRMED_TOTAL: &str = "rm_reservations_confirmed_total";
/// Histogram: time spent in a wait queue, by `outcome` (granted, abandoned).
pub const WAIT_SECONDS: &str = "rm_wait_seconds";
/// Gauge: requests waiting in queues, as of the last queue event.
pub const QUEUE_DEPTH: &str = "rm_queue_depth";
/// Counter: scaling requests, by `target`.
pub const SCALING_TOTAL: &str = "rm_scaling_decisions_total";
/// Gauge: used over capacity, by `resource` and `type`, as of the last collection.
pub const UTILIZATION_RATIO: &str = "rm_utilization_ratio";
/// Gauge: active reservations, by `state` (pending, confirmed), as of the last collection.
pub const RESERVATIONS: &str = "rm_reservations";
/// Gauge: members (or units) of a pool in use over its size, by `pool`.
pub const POOL_UTILIZATION_RATIO: &str = "rm_pool_utilization_ratio";
/// Gauge: callers waiting on a pool, by `pool`.
pub const POOL_WAITING: &str = "rm_pool_waiting";

/// Gauge: how long the oldest waiting request has waited, as of the last collection.
pub const STARVATION_SECONDS: &str = "rm_starvation_seconds";
/// Gauge: the dominant share of capacity a requester class holds, by `class`.
pub const SHARE_RATIO: &str = "rm_share_ratio";
/// Gauge: the share a requester class's weight entitles it to, by `class`.
pub const ENTITLED_SHARE_RATIO: &str = "rm_entitled_share_ratio";

/// Every metric's name, for documentation checks and dashboards.
pub const ALL: &[&str] = &[
    GRANTS_TOTAL,
    REFUSALS_TOTAL,
    ENDED_TOTAL,
    CONFIRMED_TOTAL,
    WAIT_SECONDS,
    QUEUE_DEPTH,
    SCALING_TOTAL,
    UTILIZATION_RATIO,
    RESERVATIONS,
    POOL_UTILIZATION_RATIO,
    POOL_WAITING,
    STARVATION_SECONDS,
    SHARE_RATIO,
    ENTITLED_SHARE_RATIO,
];

/// Registers every metric's help text and unit with the installed recorder (call it once
/// after installing one; without a recorder it does nothing).
pub fn describe() {
    metrics::describe_counter!(
        GRANTS_TOTAL,
        Unit::Count,
        "Reservations granted, by type of each item held."
    );
    metrics::describe_counter!(
        REFUSALS_TOTAL,
        Unit::Count,
        "Requests refused, by refusal reason code."
    );
    metrics::describe_counter!(
        ENDED_TOTAL,
        Unit::Count,
        "Reservations ended, by outcome (released, expired, preempted, cancelled)."
    );
    metrics::describe_counter!(
        CONFIRMED_TOTAL,
        Unit::Count,
        "Reservations confirmed by their holders."
    );
    metrics::describe_histogram!(
        WAIT_SECONDS,
        Unit::Seconds,
        "Time requests spent in wait queues, by outcome (granted, abandoned)."
    );
    metrics::describe_gauge!(QUEUE_DEPTH, Unit::Count, "Requests waiting in queues.");
    metrics::describe_counter!(
        SCALING_TOTAL,
        Unit::Count,
        "Scaling requests, by scale target."
    );
    metrics::describe_gauge!(
        RESERVATIONS,
        Unit::Count,
        "Active reservations, by state, as of the last collection."
    );
    metrics::describe_gauge!(
        POOL_UTILIZATION_RATIO,
        "Pool members in use over pool size, by pool."
    );
    metrics::describe_gauge!(
        POOL_WAITING,
        Unit::Count,
        "Callers waiting on a pool, by pool."
    );
    metrics::describe_gauge!(
        STARVATION_SECONDS,
        Unit::Seconds,
        "How long the oldest waiting request has waited, as of the last collection."
    );
    metrics::describe_gauge!(
        SHARE_RATIO,
        "Dominant share of capacity held by a requester class, by class."
    );
    metrics::describe_gauge!(
        ENTITLED_SHARE_RATIO,
        "Share of capacity a requester class's weight entitles it to, by class."
    );
    metrics::describe_gauge!(
        UTILIZATION_RATIO,
        "Capacity in use over capacity, by resource and type, as of the last collection."
    );
}
