//! Flows through the manager: waiting hand-off, bad input, replaced parts, pools,
//! autoscaling, expiry, separate metrics per manager.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use rm_facade::{Error, ResourceManager};
use rm_model::{
    Admission, AllocationPolicy, LedgerError, ManualClock, Quantity, Refusal, RefusalReason,
    ReservationRequest, Timestamp,
};
use rm_scale::ScaleTarget as _;
use rm_testkit::ReferenceLedger;
use rm_testkit::fakes::RecordingSink;

use crate::one_node;
use rm_testkit::cores;

/// One way through: the ledger the manager hands out is the wait queue over its ledger, so a
/// release made on it (not through `ResourceManager::release`) also grants the head on the
/// releasing thread: when it returns, the waiter's hold is already in the ledger.
#[test]
fn a_release_on_the_managers_ledger_hands_the_capacity_to_the_waiter() {
    let manager =
        ResourceManager::from_config(one_node(4, "[manager]\nwait_timeout_ms = 10000")).unwrap();
    let held = manager.reserve(&cores("a", 4)).unwrap();
    manager.confirm(&held.id, None).unwrap();
    let waiter = {
        let manager = manager.clone();
        std::thread::spawn(move || manager.reserve(&cores("b", 2)))
    };
    while manager.waiting() == 0 {
        std::thread::yield_now();
    }
    // Let the waiter finish its first try and park (a waiter in the middle of a try is left
    // to try again itself).
    std::thread::sleep(Duration::from_millis(500));
    manager.ledger().release(&held.id, None).unwrap();
    let active = manager.snapshot().unwrap().active;
    assert!(
        active.iter().any(|r| r.requester.as_str() == "b"),
        "granted on the releasing thread: {active:?}"
    );
    let granted = waiter.join().unwrap().unwrap();
    assert_eq!(granted.requester.as_str(), "b");
}

#[test]
fn a_waiting_request_gets_the_capacity_released_by_another_thread() {
    let manager =
        ResourceManager::from_config(one_node(4, "[manager]\nwait_timeout_ms = 10000")).unwrap();
    let held = manager.reserve(&cores("a", 4)).unwrap();
    manager.confirm(&held.id, None).unwrap();
    let barrier = Arc::new(Barrier::new(2));
    let waiter = {
        let (manager, barrier) = (manager.clone(), barrier.clone());
        std::thread::spawn(move || {
            barrier.wait();
            manager.reserve(&cores("b", 2))
        })
    };
    barrier.wait();
    // Release once the waiter is in the wait queue (its Queued event raises the depth a
    // moment before).
    while manager.waiting() == 0 {
        std::thread::yield_now();
    }
    assert_eq!(manager.monitor().queue_depth(), 1);
    manager.release(&held.id, None).unwrap();
    let granted = waiter.join().unwrap().unwrap();
    assert_eq!(granted.requester.as_str(), "b");
    assert_eq!(manager.waiting(), 0);
    assert_eq!(manager.monitor().queue_depth(), 0);
    let text = manager.render().unwrap();
    assert!(
        text.contains(r#"rm_wait_seconds_count{outcome="granted"} 1"#),
        "{text}"
    );
}

#[test]
fn bad_input_is_refused_with_the_typed_error_and_changes_nothing() {
    let manager = ResourceManager::from_config(one_node(4, "")).unwrap();
    let before = manager.snapshot().unwrap();
    let zero = cores("a", 0);
    let err = manager.reserve(&zero).unwrap_err();
    let refusal = err.refusal().unwrap();
    assert_eq!(refusal.reason, RefusalReason::InvalidRequest);
    assert!(matches!(
        refusal.ledger_error,
        Some(LedgerError::InvalidInput { .. })
    ));
    let mut after = manager.snapshot().unwrap();
    after.taken_at = before.taken_at;
    assert_eq!(before, after);
    assert_eq!(manager.monitor().refusals()["invalid-request"], 1);
    // Operations on unknown ids are ledger errors.
    let unknown = rm_model::ReservationId::new("nope").unwrap();
    assert!(matches!(
        manager.confirm(&unknown, None),
        Err(Error::Ledger(LedgerError::UnknownReservation { .. }))
    ));
}

#[test]
fn a_replaced_ledger_is_wired_to_the_monitor_and_the_sinks() {
    let clock = Arc::new(ManualClock::new());
    let sink = Arc::new(RecordingSink::new());
    let manager = ResourceManager::builder()
        .config(one_node(4, ""))
        .clock(clock.clone())
        .event_sink(sink.clone())
        .ledger(|parts| {
            Arc::new(ReferenceLedger::new(
                parts.clock,
                parts.sink,
                parts.default_ttl,
            ))
        })
        .build()
        .unwrap();
    let held = manager.reserve(&cores("a", 1)).unwrap();
    assert_eq!(manager.monitor().grants(), 1);
    // The default TTL (30 s) passes: the hold expires at the next tick.
    clock.advance(Duration::from_secs(31));
    let report = manager.tick().unwrap();
    assert_eq!(report.expired, 1);
    assert_eq!(manager.monitor().ended().expired, 1);
    assert!(manager.confirm(&held.id, None).is_err());
    let names = sink.names();
    assert!(names.contains(&"reserved".to_owned()), "{names:?}");
    assert!(names.contains(&"ended:expired".to_owned()), "{names:?}");
}

struct DenyAll;

impl AllocationPolicy for DenyAll {
    fn name(&self) -> &str {
        "deny-all"
    }

    fn admit(&self, _: &ReservationRequest, _: Timestamp) -> Admission {
        Admission::Refuse(Refusal::new(
            RefusalReason::PolicyDenied,
            "maintenance window",
        ))
    }
}

#[test]
fn a_policy_given_in_code_replaces_the_configured_ones() {
    let manager = ResourceManager::builder()
        .config(one_node(4, ""))
        .policy(Arc::new(DenyAll))
        .build()
        .unwrap();
    let err = manager.reserve(&cores("a", 1)).unwrap_err();
    assert_eq!(err.refusal().unwrap().message, "maintenance window");
    assert_eq!(manager.snapshot().unwrap().active.len(), 0);
}

#[test]
fn quota_usage_returns_when_holds_end() {
    let manager = ResourceManager::from_config(one_node(
        16,
        r#"
        [policy]
        order = ["quota"]
        [quotas.requesters.etl]
        compute = { amount = 4, unit = "cores" }
        "#,
    ))
    .unwrap();
    let first = manager.reserve(&cores("etl", 4)).unwrap();
    let over = manager.reserve(&cores("etl", 1)).unwrap_err();
    assert_eq!(over.refusal().unwrap().reason, RefusalReason::QuotaExceeded);
    manager.cancel(&first.id, None).unwrap();
    manager.reserve(&cores("etl", 4)).unwrap();
}

#[test]
fn elastic_pools_from_the_configuration_lend_and_are_sampled() {
    let manager = ResourceManager::from_config(one_node(
        1,
        r#"
        [[pools]]
        name = "etl"
        guaranteed = 4
        borrowing_limit = 2
        lending_limit = 2

        [[pools]]
        name = "ml"
        guaranteed = 4
        borrowing_limit = 2
        lending_limit = 2
        "#,
    ))
    .unwrap();
    let lease = manager.acquire_units("ml", 6).unwrap();
    assert_eq!(lease.borrowed(), 2);
    assert!(manager.acquire_units("nope", 1).is_err());
    let text = manager.render().unwrap();
    assert!(
        text.contains(r#"rm_pool_utilization_ratio{pool="ml"} 1"#),
        "{text}"
    );
    drop(lease);
    let text = manager.render().unwrap();
    assert!(
        text.contains(r#"rm_pool_utilization_ratio{pool="ml"} 0"#),
        "{text}"
    );
}

struct Workers {
    size: AtomicU64,
    busy: AtomicU64,
}

impl rm_scale::ScaleTarget for Workers {
    fn size(&self) -> u64 {
        self.size.load(Ordering::SeqCst)
    }

    fn metric(&self) -> Quantity {
        let size = self.size().max(1);
        Quantity::from_units(i32::try_from(self.busy.load(Ordering::SeqCst) * 100 / size).unwrap())
    }

    fn scale_to(&self, size: u64) -> Result<(), rm_scale::ScaleRefused> {
        self.size.store(size, Ordering::SeqCst);
        Ok(())
    }
}

#[test]
fn autoscaled_targets_resize_at_each_tick_and_are_counted() {
    let workers = Arc::new(Workers {
        size: AtomicU64::new(2),
        busy: AtomicU64::new(2),
    });
    let rule = rm_scale::ThresholdScaling::new(Quantity::from_units(50), 1, 10).unwrap();
    let manager = ResourceManager::builder()
        .config(one_node(1, ""))
        .autoscale("workers", workers.clone(), rule)
        .build()
        .unwrap();
    let report = manager.tick().unwrap();
    assert_eq!(report.scaled, 1);
    assert_eq!(workers.size(), 4);
    let scaling = manager.dashboard().recent_scaling;
    assert_eq!(
        (scaling[0].target.as_str(), scaling[0].from, scaling[0].to),
        ("workers", 2, 4)
    );
    let text = manager.render().unwrap();
    assert!(
        text.contains(r#"rm_scaling_decisions_total{target="workers"} 1"#),
        "{text}"
    );
}

#[test]
fn two_managers_in_one_process_keep_separate_metrics() {
    let one = ResourceManager::from_config(one_node(4, "")).unwrap();
    let two = ResourceManager::from_config(one_node(4, "")).unwrap();
    one.reserve(&cores("a", 1)).unwrap();
    let text = two.render().unwrap();
    assert!(
        !text.contains(r#"rm_grants_total{type="compute"} 1"#),
        "{text}"
    );
    assert!(
        one.render()
            .unwrap()
            .contains(r#"rm_grants_total{type="compute"} 1"#)
    );
}

#[test]
fn the_priority_class_sets_the_priority_and_preemption_follows_it() {
    let manager = ResourceManager::from_config(one_node(
        4,
        r#"
        [manager]
        wait_timeout_ms = 20
        [[priorities.classes]]
        name = "low"
        priority = 1
        [[priorities.classes]]
        name = "high"
        priority = 10
        [[priorities.classes]]
        name = "polite"
        priority = 20
        preemption = "never"
        [priorities.requesters]
        batch = "low"
        urgent = "high"
        gentle = "polite"
        [contention]
        default = "preempt"
        "#,
    ))
    .unwrap();
    let low = manager.reserve(&cores("batch", 4)).unwrap();
    assert_eq!(low.priority.0, 1);
    // A class that never preempts waits instead, and times out.
    let polite = manager.reserve(&cores("gentle", 4)).unwrap_err();
    assert_eq!(
        polite.refusal().unwrap().reason,
        RefusalReason::InsufficientCapacity
    );
    // The high class preempts the low hold.
    let high = manager.reserve(&cores("urgent", 4)).unwrap();
    assert_eq!(high.priority.0, 10);
    assert_eq!(manager.monitor().ended().preempted, 1);
}

#[test]
fn scaling_rules_from_the_configuration_drive_named_targets() {
    let workers = Arc::new(Workers {
        size: AtomicU64::new(2),
        busy: AtomicU64::new(2),
    });
    let config = one_node(
        1,
        r#"
        [[scaling]]
        target = "workers"
        rule = "threshold"
        metric_target = 50
        minimum = 1
        maximum = 3
        "#,
    );
    let manager = ResourceManager::builder()
        .config(config.clone())
        .scalable("workers", workers.clone())
        .build()
        .unwrap();
    // Before any decision or refusal, their series are there at zero (known label values).
    let fresh = manager.render().unwrap();
    let has = |text: &str, line: &str| text.lines().any(|l| l == line);
    assert!(
        has(&fresh, r#"rm_scaling_decisions_total{target="workers"} 0"#),
        "{fresh}"
    );
    for reason in rm_model::RefusalReason::ALL {
        let line = format!(r#"rm_refusals_total{{reason="{}"}} 0"#, reason.as_str());
        assert!(has(&fresh, &line), "{line} in {fresh}");
    }
    assert!(
        manager.monitor().refusals().is_empty(),
        "counts say what happened"
    );
    manager.tick().unwrap();
    assert_eq!(workers.size(), 3, "capped at the maximum");
    assert_eq!(manager.dashboard().recent_scaling[0].reason, "at-maximum");
    // The same file without the target in code names the problem.
    let err = ResourceManager::from_config(config).unwrap_err();
    assert!(err.to_string().contains("scaling[0].target"), "{err}");
}

#[test]
fn a_ticker_expires_holds_without_a_host_loop() {
    let clock = Arc::new(ManualClock::new());
    let manager = ResourceManager::builder()
        .config(one_node(4, ""))
        .clock(clock.clone())
        .build()
        .unwrap();
    let held = manager.reserve(&cores("a", 4)).unwrap();
    let ticker = manager.start_ticker(Duration::from_millis(5)).unwrap();
    clock.advance(Duration::from_secs(31));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while manager.monitor().ended().expired == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the ticker never expired the hold"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(ticker.last_error().is_none());
    drop(ticker);
    assert!(manager.confirm(&held.id, None).is_err());
}

/// Many threads reserve one core (waiting while it is taken) and release through the
/// manager, ordered by a composition of fair share and priority: every request is granted,
/// never two at once, and everything is back at the end.
#[test]
fn eight_threads_wait_and_release_through_the_manager() {
    let rounds = rm_testkit::stress_rounds(100);
    let manager = ResourceManager::from_config(one_node(
        1,
        "[manager]\nwait_timeout_ms = 60000\n[policy]\norder = [\"fair\", \"priority\"]",
    ))
    .unwrap();
    let holding = Arc::new(AtomicU64::new(0));
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (manager, holding) = (manager.clone(), holding.clone());
            scope.spawn(move || {
                for round in 0..rounds {
                    let hold = manager
                        .reserve(&cores(&format!("team-{}", t % 3), 1))
                        .expect("granted after waiting");
                    assert_eq!(holding.fetch_add(1, Ordering::SeqCst), 0, "over-allocated");
                    // Hold a moment, so that others find the core taken and wait.
                    std::thread::sleep(std::time::Duration::from_micros(20));
                    holding.fetch_sub(1, Ordering::SeqCst);
                    manager.confirm(&hold.id, None).unwrap();
                    if round % 2 == 0 {
                        manager.release(&hold.id, None).unwrap();
                    } else {
                        manager.cancel(&hold.id, None).unwrap_err();
                        manager.release(&hold.id, None).unwrap();
                    }
                }
            });
        }
    });
    assert_eq!(manager.waiting(), 0);
    assert_eq!(manager.monitor().grants(), 8 * rounds as u64);
    assert!(
        manager.monitor().wait_percentile(50).is_some(),
        "some requests waited for a core"
    );
    let snapshot = manager.snapshot().unwrap();
    assert!(snapshot.active.is_empty());
    assert!(snapshot.audit().is_clean());
}

/// Kueue's reclaim through the facade: three teams of 10 cores in one cohort on a full
/// 30-core node. `c` holds its own 10 at priority 0, `b` holds 20 (10 borrowed) at priority
/// 5; `a` asks for its own 10 at priority 10. With reclaim allowed, the borrower gives back
/// and `c` keeps its own; with Kueue's defaults, `a` is refused and nobody is preempted.
#[test]
fn quota_lent_out_is_reclaimed_from_the_borrower_not_from_a_lower_priority_owner() {
    let config = |preemption: &str| {
        one_node(
            30,
            &format!(
                r#"
                [policy]
                order = ["quota", "priority"]
                [[quotas.groups]]
                name = "cohort"
                [[quotas.groups]]
                name = "a"
                parent = "cohort"
                guaranteed = {{ compute = {{ amount = 10, unit = "cores" }} }}
                [[quotas.groups]]
                name = "b"
                parent = "cohort"
                guaranteed = {{ compute = {{ amount = 10, unit = "cores" }} }}
                [[quotas.groups]]
                name = "c"
                parent = "cohort"
                guaranteed = {{ compute = {{ amount = 10, unit = "cores" }} }}
                [quotas.assign]
                a = "a"
                b = "b"
                c = "c"
                {preemption}
                [contention]
                default = "preempt"
                [manager]
                wait_timeout_ms = 20
                "#
            ),
        )
    };
    let at = |who: &str, amount: i32, priority: i32| {
        cores(who, amount).with_priority(rm_model::Priority(priority))
    };
    let manager = ResourceManager::from_config(config(
        "[quotas.preemption]\nreclaim_within_cohort = \"any\"\nwithin_group = \"lower-priority\"",
    ))
    .unwrap();
    let c = manager.reserve(&at("c", 10, 0)).unwrap();
    let b1 = manager.reserve(&at("b", 10, 5)).unwrap();
    let b2 = manager.reserve(&at("b", 10, 5)).unwrap();
    let a = manager.reserve(&at("a", 10, 10)).unwrap();
    assert_eq!(a.items[0].amount, Quantity::from(10));
    let state = |id| manager.get(id).unwrap().state;
    assert_eq!(
        state(&c.id),
        rm_model::ReservationState::Pending,
        "the owner keeps its own"
    );
    assert_eq!(state(&b1.id), rm_model::ReservationState::Pending);
    assert_eq!(
        state(&b2.id),
        rm_model::ReservationState::Preempted,
        "the newest borrowing hold"
    );
    assert_eq!(manager.monitor().ended().preempted, 1);
    assert!(manager.snapshot().unwrap().audit().is_clean());

    // Kueue's defaults: no reclaim, and no over-commit either.
    let manager = ResourceManager::from_config(config("")).unwrap();
    manager.reserve(&at("c", 10, 0)).unwrap();
    manager.reserve(&at("b", 20, 5)).unwrap();
    let refused = manager.reserve(&at("a", 10, 10)).unwrap_err();
    assert_eq!(
        refused.refusal().unwrap().reason,
        RefusalReason::BorrowingLimitExceeded
    );
    assert_eq!(manager.monitor().ended().preempted, 0);
}

/// A disruption budget from the configuration: preemption spares the holds it covers.
#[test]
fn preemption_honours_disruption_budgets_from_the_configuration() {
    let config = |budgets: &str| {
        one_node(
            4,
            &format!(
                r#"
                [contention]
                default = "preempt"
                {budgets}
                "#
            ),
        )
    };
    let labelled = |who: &str, amount: i32, priority: i32, app: Option<&str>| {
        let mut labels = rm_model::Labels::new();
        if let Some(app) = app {
            labels.insert("app", app).unwrap();
        }
        cores(who, amount)
            .with_priority(rm_model::Priority(priority))
            .with_labels(labels)
    };
    for (budgets, victim) in [
        ("", "db"),
        (
            "[[contention.budgets]]\nselector = { labels = { app = \"db\" } }\nmax_disruptions = 0",
            "batch",
        ),
    ] {
        let manager = ResourceManager::from_config(config(budgets)).unwrap();
        let db = manager.reserve(&labelled("db", 2, 1, Some("db"))).unwrap();
        let batch = manager.reserve(&labelled("batch", 2, 2, None)).unwrap();
        manager.reserve(&labelled("urgent", 2, 10, None)).unwrap();
        let preempted: Vec<&str> = [("db", &db), ("batch", &batch)]
            .into_iter()
            .filter(|(_, r)| {
                manager.get(&r.id).unwrap().state == rm_model::ReservationState::Preempted
            })
            .map(|(name, _)| name)
            .collect();
        assert_eq!(preempted, [victim], "budgets: {budgets:?}");
    }
}

/// The manager reports contention (demand against capacity, with what waits) and deadlocks
/// (requesters each waiting for capacity only another's holds could free).
#[test]
fn contention_and_deadlocks_are_reported_from_the_wait_queue() {
    let manager = ResourceManager::from_config(
        rm_facade::Config::from_toml(
            r#"
            [manager]
            wait_timeout_ms = 20000
            [[resources]]
            name = "x"
            type = "compute"
            capacity = { maximum = 2, unit = "cores" }
            [[resources]]
            name = "y"
            type = "compute"
            capacity = { maximum = 2, unit = "cores" }
            "#,
        )
        .unwrap(),
    )
    .unwrap();
    let a = manager.reserve(&cores("a", 2)).unwrap();
    let b = manager.reserve(&cores("b", 2)).unwrap();
    assert_eq!(manager.contention().unwrap().queue_depth, 0);
    assert!(manager.deadlocks().unwrap().is_empty());
    // a waits for more while holding x; b waits while holding y: each needs the other's.
    let waiters: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|who| {
            let manager = manager.clone();
            std::thread::spawn(move || manager.reserve(&cores(who, 2)))
        })
        .collect();
    while manager.waiting() < 2 {
        std::thread::yield_now();
    }
    let report = manager.contention().unwrap();
    assert_eq!(report.queue_depth, 2);
    let demand: Quantity = report
        .resources
        .iter()
        .map(|r| r.waiting_demand)
        .fold(Quantity::ZERO, |sum, q| sum.checked_add(q).unwrap());
    assert!(demand > Quantity::ZERO, "{report:?}");
    assert!(!report.hot_spots.is_empty(), "{report:?}");
    let cycles = manager.deadlocks().unwrap();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    let mut members: Vec<&str> = cycles[0].iter().map(|r| r.as_str()).collect();
    members.sort_unstable();
    assert_eq!(members, ["a", "b"]);
    // Breaking the cycle lets both through.
    manager.cancel(&a.id, None).unwrap();
    manager.cancel(&b.id, None).unwrap();
    for waiter in waiters {
        assert!(waiter.join().unwrap().is_ok());
    }
}
