use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rm_model::{Quantity, Timestamp};
use rm_scale::{
    Autoscaler, Outcome, Reason, ScaleRefused, ScaleTarget, TargetId, ThresholdScaling,
};

/// A fleet whose utilisation is its load spread over its size.
struct Fleet {
    size: AtomicU64,
    load: AtomicU64,
    refuse: AtomicBool,
}

impl Fleet {
    fn new(size: u64, load: u64) -> Arc<Fleet> {
        Arc::new(Fleet {
            size: AtomicU64::new(size),
            load: AtomicU64::new(load),
            refuse: AtomicBool::new(false),
        })
    }
}

impl ScaleTarget for Fleet {
    fn size(&self) -> u64 {
        self.size.load(Ordering::SeqCst)
    }

    fn metric(&self) -> Quantity {
        // Percent utilisation, in thousandths.
        let size = self.size().max(1);
        Quantity::from_milli(
            i64::try_from(self.load.load(Ordering::SeqCst) * 100_000 / size).unwrap(),
        )
    }

    fn scale_to(&self, size: u64) -> Result<(), ScaleRefused> {
        if self.refuse.load(Ordering::SeqCst) {
            return Err(ScaleRefused {
                message: "provider out of quota".into(),
            });
        }
        self.size.store(size, Ordering::SeqCst);
        Ok(())
    }
}

fn at(seconds: u64) -> Timestamp {
    Timestamp::ZERO + Duration::from_secs(seconds)
}

fn rule() -> ThresholdScaling {
    ThresholdScaling::new(Quantity::from_units(50), 1, 20).unwrap()
}

#[test]
fn resizes_targets_and_logs_each_change_with_its_inputs() {
    let busy = Fleet::new(2, 2); // 100% against 50%
    let quiet = Fleet::new(4, 2); // 50%: right already
    let mut autoscaler = Autoscaler::new(16);
    let busy_id = autoscaler.add(busy.clone(), rule());
    let quiet_id = autoscaler.add(quiet.clone(), rule());
    let summary = autoscaler.tick(at(0));
    assert_eq!(
        (summary.evaluated, summary.changed, summary.failed),
        (2, 1, 0)
    );
    assert_eq!((busy.size(), quiet.size()), (4, 4));
    let log: Vec<_> = autoscaler.decisions().collect();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].target, busy_id);
    assert_eq!(log[0].outcome, Outcome::Applied);
    assert_eq!((log[0].decision.current, log[0].decision.desired), (2, 4));
    assert_eq!(log[0].decision.metric, Quantity::from_units(100));
    // The unchanged target's decision is kept too, with its reason.
    let quiet_decision = autoscaler.last_decision(quiet_id).unwrap();
    assert_eq!(quiet_decision.reason, Reason::WithinTolerance);
    assert_eq!(autoscaler.last_decision(TargetId(7)), None);
}

#[test]
fn a_dry_run_decides_and_logs_but_resizes_nothing() {
    let busy = Fleet::new(2, 2);
    let mut autoscaler = Autoscaler::new(16);
    autoscaler.set_dry_run(true);
    autoscaler.add(busy.clone(), rule());
    let summary = autoscaler.tick(at(0));
    assert_eq!(summary.changed, 1);
    assert_eq!(busy.size(), 2);
    assert_eq!(
        autoscaler.decisions().next().unwrap().outcome,
        Outcome::DryRun
    );
}

#[test]
fn a_refused_resize_is_logged_and_counted_and_the_tick_goes_on() {
    let refusing = Fleet::new(2, 2);
    refusing.refuse.store(true, Ordering::SeqCst);
    let busy = Fleet::new(2, 2);
    let mut autoscaler = Autoscaler::new(16);
    autoscaler.add(refusing.clone(), rule());
    autoscaler.add(busy.clone(), rule());
    let summary = autoscaler.tick(at(0));
    assert_eq!((summary.changed, summary.failed), (1, 1));
    assert_eq!((refusing.size(), busy.size()), (2, 4));
    let outcomes: Vec<_> = autoscaler
        .decisions()
        .map(|record| record.outcome.clone())
        .collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Failed {
                message: "provider out of quota".into()
            },
            Outcome::Applied
        ]
    );
}

#[test]
fn the_log_keeps_only_the_most_recent_decisions() {
    let fleets: Vec<_> = (0..5).map(|_| Fleet::new(2, 2)).collect();
    let mut autoscaler = Autoscaler::new(3);
    for fleet in &fleets {
        autoscaler.add(fleet.clone(), rule());
    }
    autoscaler.tick(at(0));
    let logged: Vec<_> = autoscaler.decisions().map(|record| record.target).collect();
    assert_eq!(logged, [TargetId(2), TargetId(3), TargetId(4)]);
}
