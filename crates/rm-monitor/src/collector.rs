//! [`MetricsCollector`]: counts what the ledger, the queues and the autoscaler report, as an
//! [`EventSink`], and keeps a bounded recent history for the dashboard.

use std::collections::{BTreeMap, VecDeque};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use dashmap::DashMap;
use metrics::{Counter, Gauge, Histogram};
use rm_model::{
    CapacityUsage, Event, EventKind, EventSink, Quantity, ReservationState, ResourceName,
    ResourceType, Timestamp, Unit,
};
use serde::{Deserialize, Serialize};

use crate::names;

/// How much recent history to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Recent wait times kept for percentiles.
    pub waits: usize,
    /// Recent scaling requests kept.
    pub scaling: usize,
    /// How far back expiries count towards an expiry spike.
    pub expiry_window: Duration,
    /// Expiries kept within that window (older ones and any beyond this drop).
    pub expiries: usize,
    /// Utilisation samples kept per resource capacity.
    pub utilization: usize,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            waits: 4_096,
            scaling: 256,
            expiry_window: Duration::from_secs(300),
            expiries: 4_096,
            utilization: 120,
        }
    }
}

/// A scaling request, as reported by an autoscaler or a contention resolver.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScalingRecord {
    /// When.
    pub at: Timestamp,
    /// The scale target.
    pub target: String,
    /// Its size before.
    pub from: u64,
    /// The size asked for.
    pub to: u64,
    /// Why.
    pub reason: String,
}

/// Reservations ended, by how.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndedCounts {
    /// Given back after use.
    pub released: u64,
    /// Not confirmed in time.
    pub expired: u64,
    /// Taken for a higher-priority request.
    pub preempted: u64,
    /// Withdrawn before confirmation.
    pub cancelled: u64,
}

const OUTCOMES: [&str; 4] = ["released", "expired", "preempted", "cancelled"];

/// A labelled counter: our own count (for the dashboard) and the recorder's handle.
struct Counted {
    count: AtomicU64,
    handle: Counter,
}

/// Counts one more under `key`, registering its handle the first time. The common case is a
/// shard read lock and two increments: no key clone, no macro lookup.
fn bump<K: Hash + Eq + Clone>(
    map: &DashMap<K, Counted>,
    key: &K,
    register: impl FnOnce() -> Counter,
) {
    let count = |counted: &Counted| {
        counted.count.fetch_add(1, Ordering::Relaxed);
        counted.handle.increment(1);
    };
    if let Some(counted) = map.get(key) {
        count(&counted);
        return;
    }
    let counted = map.entry(key.clone()).or_insert_with(|| Counted {
        count: AtomicU64::new(0),
        handle: register(),
    });
    count(&counted);
}

fn snapshot<K: Hash + Eq + Ord + Clone>(map: &DashMap<K, Counted>) -> BTreeMap<K, u64> {
    map.iter()
        .map(|entry| {
            (
                entry.key().clone(),
                entry.value().count.load(Ordering::Relaxed),
            )
        })
        .collect()
}

pub(crate) use rm_model::ppm;

/// One capacity's recent use as kept: per sample only its instant and amounts (24 bytes, not
/// a whole [`UtilizationSample`]: a cluster of 100,000 nodes keeps 120 samples of each of
/// their capacities), the rest from the key and the unit.
struct Kept {
    unit: Unit,
    samples: VecDeque<(Timestamp, Quantity, Quantity)>,
    gauge: Gauge,
}

impl Kept {
    /// The kept samples, oldest first, as the collector gave them.
    fn samples<'a>(
        &'a self,
        (resource, resource_type): &'a (ResourceName, ResourceType),
    ) -> impl Iterator<Item = UtilizationSample> + 'a {
        self.samples.iter().map(move |&(at, used, capacity)| {
            UtilizationSample::new(at, resource, resource_type, &self.unit, used, capacity)
        })
    }
}

struct History {
    waits: VecDeque<Duration>,
    scaling: VecDeque<ScalingRecord>,
    expiries: VecDeque<Timestamp>,
    utilization: BTreeMap<(ResourceName, ResourceType), Kept>,
    pools: BTreeMap<String, (PoolSample, Gauge, Gauge)>,
    reservations: Option<(ReservationCounts, [Gauge; 2])>,
    shares: BTreeMap<String, (ShareSample, Gauge, Gauge)>,
    starvation: Option<(Duration, Gauge)>,
}

/// A requester class's standing at one collection: the dominant share of capacity its
/// members hold against the share its weight entitles it to (reported by the facade, which
/// knows the classes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareSample {
    /// The class (a configured name, or `other`).
    pub class: String,
    /// Its members' dominant share of capacity (the largest, over resource types, of what they
    /// hold over the type's total), in parts per million.
    pub share_ppm: u64,
    /// Its weight over the sum of the weights of all classes, in parts per million.
    pub entitled_ppm: u64,
}

/// A pool's state at one collection (reported by whoever owns the pool: the facade).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSample {
    /// When.
    pub at: Timestamp,
    /// The pool.
    pub pool: String,
    /// Members (or units) it has.
    pub size: u64,
    /// Of those, in use.
    pub in_use: u64,
    /// Callers waiting.
    pub waiting: u64,
    /// `in_use / size` in parts per million (0 for an empty pool).
    pub ratio_ppm: u64,
}

/// Active reservations by state, from the last snapshot collected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationCounts {
    /// Granted, not yet confirmed.
    pub pending: u64,
    /// Confirmed.
    pub confirmed: u64,
}

/// One capacity's use at one collection, exact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UtilizationSample {
    /// When the snapshot was taken.
    pub at: Timestamp,
    /// The resource.
    pub resource: ResourceName,
    /// Which capacity.
    pub resource_type: ResourceType,
    /// In use (external, pending, confirmed and leased), in the capacity's unit.
    pub used: Quantity,
    /// The capacity.
    pub capacity: Quantity,
    /// `used / capacity` in parts per million, rounded down (0 for a zero capacity).
    pub ratio_ppm: u64,
    /// The same amounts in thousandths of the dimension's base unit, for sums across
    /// resources with different units.
    #[serde(skip)]
    pub(crate) base: (i128, i128),
}

impl UtilizationSample {
    /// The sample of `used` of `capacity` (both in `unit`) at `at`.
    fn new(
        at: Timestamp,
        resource: &ResourceName,
        resource_type: &ResourceType,
        unit: &Unit,
        used: Quantity,
        capacity: Quantity,
    ) -> UtilizationSample {
        UtilizationSample {
            at,
            resource: resource.clone(),
            resource_type: resource_type.clone(),
            used,
            capacity,
            ratio_ppm: ppm(i128::from(used.as_milli()), i128::from(capacity.as_milli())),
            base: (unit.to_base_milli(used), unit.to_base_milli(capacity)),
        }
    }
}

/// A recorder the collector registers its metrics with instead of the global one.
pub type SharedRecorder = Arc<dyn metrics::Recorder + Send + Sync>;

struct Shared {
    recorder: Option<SharedRecorder>,
    retention: Retention,
    grants: AtomicU64,
    confirmed: (AtomicU64, Counter),
    ended: [(AtomicU64, Counter); 4],
    waits: [Histogram; 2],
    queue_depth: (AtomicU64, Gauge),
    grants_by_type: DashMap<ResourceType, Counted>,
    refusals: DashMap<String, Counted>,
    history: Mutex<History>,
}

/// Counts grants (by type), refusals (by reason), confirmations, endings (by outcome), wait
/// times, queue depth and scaling requests from events, emitting each through the `metrics`
/// macros (see [`names`]) and keeping a bounded recent history. Cloning shares it.
///
/// Metrics go to the recorder given to [`MetricsCollector::with_recorder`] (so several
/// managers in one process keep separate metrics and nothing global is installed), or else
/// to the global recorder as it is when each handle is taken: build a collector that uses
/// the global recorder after installing one, or its emissions go nowhere. Publishing takes a few atomic
/// increments (per-type and per-reason counters sit in a sharded map, so a grant takes no
/// global lock), plus one short lock for events that carry history (waits, expiries,
/// scaling); it never calls back into the emitter.
#[derive(Clone)]
pub struct MetricsCollector {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MetricsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsCollector")
            .field("grants", &self.grants())
            .field("ended", &self.ended())
            .finish()
    }
}

impl Default for MetricsCollector {
    fn default() -> MetricsCollector {
        MetricsCollector::new(Retention::default())
    }
}

fn lock(history: &Mutex<History>) -> MutexGuard<'_, History> {
    // Updates under the lock are pushes and increments: a poisoned lock holds usable data.
    history.lock().unwrap_or_else(PoisonError::into_inner)
}

fn in_recorder<R>(recorder: Option<&SharedRecorder>, register: impl FnOnce() -> R) -> R {
    match recorder {
        Some(recorder) => metrics::with_local_recorder(&**recorder, register),
        None => register(),
    }
}

fn push_bounded<T>(queue: &mut VecDeque<T>, limit: usize, value: T) {
    if limit == 0 {
        return;
    }
    if queue.len() == limit {
        queue.pop_front();
    }
    queue.push_back(value);
}

impl MetricsCollector {
    /// A collector keeping `retention` worth of history, emitting to the global recorder.
    pub fn new(retention: Retention) -> MetricsCollector {
        MetricsCollector::build(retention, None)
    }

    /// A collector keeping `retention` worth of history, emitting to `recorder` only (with
    /// help text registered there).
    pub fn with_recorder(retention: Retention, recorder: SharedRecorder) -> MetricsCollector {
        metrics::with_local_recorder(&*recorder, names::describe);
        MetricsCollector::build(retention, Some(recorder))
    }

    /// Runs `register` (metric macros) against this collector's recorder.
    fn registered<R>(&self, register: impl FnOnce() -> R) -> R {
        in_recorder(self.shared.recorder.as_ref(), register)
    }

    fn build(retention: Retention, recorder: Option<SharedRecorder>) -> MetricsCollector {
        let (ended, confirmed, waits, depth) = in_recorder(recorder.as_ref(), || {
            let ended = OUTCOMES.map(|outcome| {
                (
                    AtomicU64::new(0),
                    metrics::counter!(names::ENDED_TOTAL, "outcome" => outcome),
                )
            });
            let waits = [
                metrics::histogram!(names::WAIT_SECONDS, "outcome" => "granted"),
                metrics::histogram!(names::WAIT_SECONDS, "outcome" => "abandoned"),
            ];
            (
                ended,
                metrics::counter!(names::CONFIRMED_TOTAL),
                waits,
                metrics::gauge!(names::QUEUE_DEPTH),
            )
        });
        // Every refusal reason's series exists from the start, at zero, as Prometheus'
        // guidance asks for known label values, so dashboards and rate() work at once.
        let refusals: DashMap<String, Counted> = DashMap::new();
        in_recorder(recorder.as_ref(), || {
            for reason in rm_model::RefusalReason::ALL {
                refusals.insert(
                    reason.as_str().to_owned(),
                    Counted {
                        count: AtomicU64::new(0),
                        handle: metrics::counter!(names::REFUSALS_TOTAL, "reason" => reason.as_str()),
                    },
                );
            }
        });
        MetricsCollector {
            shared: Arc::new(Shared {
                recorder,
                retention,
                grants: AtomicU64::new(0),
                confirmed: (AtomicU64::new(0), confirmed),
                ended,
                waits,
                queue_depth: (AtomicU64::new(0), depth),
                grants_by_type: DashMap::new(),
                refusals,
                // Grown as samples come, up to the retention (which may be far larger than
                // what a run ever records: nothing is reserved for it up front).
                history: Mutex::new(History {
                    waits: VecDeque::new(),
                    scaling: VecDeque::new(),
                    expiries: VecDeque::new(),
                    utilization: BTreeMap::new(),
                    pools: BTreeMap::new(),
                    reservations: None,
                    shares: BTreeMap::new(),
                    starvation: None,
                }),
            }),
        }
    }

    /// Reservations granted.
    pub fn grants(&self) -> u64 {
        self.shared.grants.load(Ordering::Relaxed)
    }

    /// Reservations confirmed.
    pub fn confirmed(&self) -> u64 {
        self.shared.confirmed.0.load(Ordering::Relaxed)
    }

    /// Reservations ended, by how.
    pub fn ended(&self) -> EndedCounts {
        let count = |index: usize| self.shared.ended[index].0.load(Ordering::Relaxed);
        EndedCounts {
            released: count(0),
            expired: count(1),
            preempted: count(2),
            cancelled: count(3),
        }
    }

    /// Grants by resource type (a grant holding two types counts once for each).
    pub fn grants_by_type(&self) -> BTreeMap<ResourceType, u64> {
        snapshot(&self.shared.grants_by_type)
    }

    /// Refusals by reason code.
    pub fn refusals(&self) -> BTreeMap<String, u64> {
        let mut refusals = snapshot(&self.shared.refusals);
        // Every reason's series exists from the start; the counts say what happened.
        refusals.retain(|_, count| *count > 0);
        refusals
    }

    /// Registers the scaling-decision counter of `target` at zero, so that its series is
    /// there (and `rate()` works) from the first scrape, before its first decision.
    pub fn expect_scaling_target(&self, target: &str) {
        let target = target.to_owned();
        let _ = self.registered(|| metrics::counter!(names::SCALING_TOTAL, "target" => target));
    }

    /// Requests waiting, as of the last queue event.
    pub fn queue_depth(&self) -> u64 {
        self.shared.queue_depth.0.load(Ordering::Relaxed)
    }

    /// The `percentile` (0 to 100) of recent wait times, nearest rank; `None` before any.
    pub fn wait_percentile(&self, percentile: u8) -> Option<Duration> {
        let mut waits: Vec<Duration> = lock(&self.shared.history).waits.iter().copied().collect();
        if waits.is_empty() {
            return None;
        }
        waits.sort_unstable();
        rm_model::nearest_rank(&waits, percentile)
    }

    /// Recent scaling requests, oldest first.
    pub fn recent_scaling(&self) -> Vec<ScalingRecord> {
        lock(&self.shared.history).scaling.iter().cloned().collect()
    }

    /// Expiries within the retention's expiry window before `now`.
    pub fn recent_expiries(&self, now: Timestamp) -> usize {
        let window = self.shared.retention.expiry_window;
        lock(&self.shared.history)
            .expiries
            .iter()
            .filter(|at| now.saturating_duration_since(**at) < window)
            .count()
    }

    /// Records one capacity's use (what [`ResourceMetricsCollector`](crate::ResourceMetricsCollector)
    /// does for each registered resource) and returns the sample.
    pub fn record_usage(&self, at: Timestamp, usage: &CapacityUsage) -> UtilizationSample {
        let used = usage.used();
        let sample = UtilizationSample::new(
            at,
            &usage.resource,
            &usage.resource_type,
            &usage.unit,
            used,
            usage.capacity,
        );
        let limit = self.shared.retention.utilization;
        let mut history = lock(&self.shared.history);
        let kept = history
            .utilization
            .entry((usage.resource.clone(), usage.resource_type.clone()))
            .or_insert_with(|| Kept {
                unit: usage.unit.clone(),
                samples: VecDeque::new(),
                gauge: self.registered(|| {
                    metrics::gauge!(
                        names::UTILIZATION_RATIO,
                        "resource" => usage.resource.as_str().to_owned(),
                        "type" => usage.resource_type.as_str().to_owned()
                    )
                }),
            });
        if kept.unit != usage.unit {
            // The capacity is measured anew (its resource was updated while free): its
            // history starts again rather than mixing units.
            kept.unit = usage.unit.clone();
            kept.samples.clear();
        }
        kept.gauge.set(sample.ratio_ppm as f64 / 1_000_000.0);
        push_bounded(&mut kept.samples, limit, (at, used, usage.capacity));
        sample
    }

    /// Records a pool's size, use and waiters (the latest sample per pool is kept).
    pub fn record_pool(
        &self,
        at: Timestamp,
        pool: &str,
        size: u64,
        in_use: u64,
        waiting: u64,
    ) -> PoolSample {
        let ratio_ppm = ppm(i128::from(in_use), i128::from(size));
        let sample = PoolSample {
            at,
            pool: pool.to_owned(),
            size,
            in_use,
            waiting,
            ratio_ppm,
        };
        let mut history = lock(&self.shared.history);
        let entry = history.pools.entry(pool.to_owned()).or_insert_with(|| {
            self.registered(|| {
                (
                    PoolSample::default(),
                    metrics::gauge!(names::POOL_UTILIZATION_RATIO, "pool" => pool.to_owned()),
                    metrics::gauge!(names::POOL_WAITING, "pool" => pool.to_owned()),
                )
            })
        });
        entry.1.set(ratio_ppm as f64 / 1_000_000.0);
        entry.2.set(waiting as f64);
        entry.0 = sample.clone();
        sample
    }

    /// Every pool's latest sample, by name.
    pub fn pools(&self) -> Vec<PoolSample> {
        lock(&self.shared.history)
            .pools
            .values()
            .map(|(sample, _, _)| sample.clone())
            .collect()
    }

    /// Records the active reservations by state (what a collection does from a snapshot).
    pub fn record_reservations(&self, counts: ReservationCounts) {
        let mut history = lock(&self.shared.history);
        let entry = history.reservations.get_or_insert_with(|| {
            let gauges = self.registered(|| {
                [
                    metrics::gauge!(names::RESERVATIONS, "state" => "pending"),
                    metrics::gauge!(names::RESERVATIONS, "state" => "confirmed"),
                ]
            });
            (ReservationCounts::default(), gauges)
        });
        entry.1[0].set(counts.pending as f64);
        entry.1[1].set(counts.confirmed as f64);
        entry.0 = counts;
    }

    /// Active reservations by state, as of the last collection.
    pub fn reservations(&self) -> ReservationCounts {
        lock(&self.shared.history)
            .reservations
            .as_ref()
            .map(|(counts, _)| *counts)
            .unwrap_or_default()
    }

    /// Records every class's fair-share standing (the latest per class is kept; a class not
    /// in `samples` keeps its previous standing).
    pub fn record_shares(&self, samples: &[ShareSample]) {
        let mut history = lock(&self.shared.history);
        for sample in samples {
            let entry = history.shares.entry(sample.class.clone()).or_insert_with(|| {
                self.registered(|| {
                    (
                        ShareSample::default(),
                        metrics::gauge!(names::SHARE_RATIO, "class" => sample.class.clone()),
                        metrics::gauge!(names::ENTITLED_SHARE_RATIO, "class" => sample.class.clone()),
                    )
                })
            });
            entry.1.set(sample.share_ppm as f64 / 1_000_000.0);
            entry.2.set(sample.entitled_ppm as f64 / 1_000_000.0);
            entry.0 = sample.clone();
        }
    }

    /// Every class's latest standing, by class.
    pub fn shares(&self) -> Vec<ShareSample> {
        lock(&self.shared.history)
            .shares
            .values()
            .map(|(sample, _, _)| sample.clone())
            .collect()
    }

    /// Records how long the oldest waiting request has waited so far (zero when none waits).
    pub fn record_starvation(&self, age: Duration) {
        let mut history = lock(&self.shared.history);
        let entry = history.starvation.get_or_insert_with(|| {
            (
                Duration::ZERO,
                self.registered(|| metrics::gauge!(names::STARVATION_SECONDS)),
            )
        });
        entry.1.set(age.as_secs_f64());
        entry.0 = age;
    }

    /// The oldest waiter's age as of the last collection.
    pub fn starvation_age(&self) -> Duration {
        lock(&self.shared.history)
            .starvation
            .as_ref()
            .map_or(Duration::ZERO, |(age, _)| *age)
    }

    /// Recent utilisation samples of one capacity, oldest first.
    pub fn utilization_history(
        &self,
        resource: &ResourceName,
        resource_type: &ResourceType,
    ) -> Vec<UtilizationSample> {
        let key = (resource.clone(), resource_type.clone());
        lock(&self.shared.history)
            .utilization
            .get(&key)
            .map(|kept| kept.samples(&key).collect())
            .unwrap_or_default()
    }

    /// Every capacity's latest `n` samples (fewer where fewer are kept), oldest first within
    /// each.
    pub(crate) fn recent_utilization(&self, n: usize) -> Vec<Vec<UtilizationSample>> {
        lock(&self.shared.history)
            .utilization
            .iter()
            .map(|(key, kept)| {
                let skip = kept.samples.len().saturating_sub(n);
                kept.samples(key).skip(skip).collect()
            })
            .collect()
    }

    /// Forgets a capacity's history (its resource was unregistered).
    pub(crate) fn forget(&self, resource: &ResourceName) {
        lock(&self.shared.history)
            .utilization
            .retain(|(name, _), _| name != resource);
    }

    fn count_ended(&self, reason: ReservationState, at: Timestamp) {
        let index = match reason {
            ReservationState::Released => 0,
            ReservationState::Expired => 1,
            ReservationState::Preempted => 2,
            ReservationState::Cancelled => 3,
            ReservationState::Pending | ReservationState::Confirmed => return,
        };
        let (count, handle) = &self.shared.ended[index];
        count.fetch_add(1, Ordering::Relaxed);
        handle.increment(1);
        if reason == ReservationState::Expired {
            let retention = self.shared.retention;
            let mut history = lock(&self.shared.history);
            while history
                .expiries
                .front()
                .is_some_and(|old| at.saturating_duration_since(*old) >= retention.expiry_window)
            {
                history.expiries.pop_front();
            }
            push_bounded(&mut history.expiries, retention.expiries, at);
        }
    }
}

impl EventSink for MetricsCollector {
    fn publish(&self, event: &Event) {
        let shared = &self.shared;
        match &event.kind {
            EventKind::Reserved { items, .. } => {
                shared.grants.fetch_add(1, Ordering::Relaxed);
                for item in items.iter() {
                    bump(&shared.grants_by_type, &item.resource_type, || {
                        self.registered(|| {
                            metrics::counter!(names::GRANTS_TOTAL, "type" => item.resource_type.as_str().to_owned())
                        })
                    });
                }
            }
            EventKind::Confirmed { .. } => {
                shared.confirmed.0.fetch_add(1, Ordering::Relaxed);
                shared.confirmed.1.increment(1);
            }
            EventKind::Ended { reason, .. } => self.count_ended(*reason, event.at),
            EventKind::Refused { reason, .. } => {
                bump(&shared.refusals, reason, || {
                    self.registered(
                        || metrics::counter!(names::REFUSALS_TOTAL, "reason" => reason.clone()),
                    )
                });
            }
            EventKind::Queued { depth, .. } => {
                let depth = u64::try_from(*depth).unwrap_or(u64::MAX);
                shared.queue_depth.0.store(depth, Ordering::Relaxed);
                shared.queue_depth.1.set(depth as f64);
            }
            EventKind::Dequeued {
                waited, granted, ..
            } => {
                shared.waits[usize::from(!*granted)].record(waited.as_secs_f64());
                let previous = shared
                    .queue_depth
                    .0
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |depth| {
                        Some(depth.saturating_sub(1))
                    })
                    .unwrap_or(0);
                shared.queue_depth.1.set(previous.saturating_sub(1) as f64);
                push_bounded(
                    &mut lock(&shared.history).waits,
                    shared.retention.waits,
                    *waited,
                );
            }
            EventKind::Scaled {
                target,
                from,
                to,
                reason,
            } => {
                self.registered(
                    || metrics::counter!(names::SCALING_TOTAL, "target" => target.clone()),
                )
                .increment(1);
                let record = ScalingRecord {
                    at: event.at,
                    target: target.clone(),
                    from: *from,
                    to: *to,
                    reason: reason.clone(),
                };
                push_bounded(
                    &mut lock(&shared.history).scaling,
                    shared.retention.scaling,
                    record,
                );
            }
            _ => {}
        }
    }
}
