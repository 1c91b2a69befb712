use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use rm_model::{Constraint, ManualClock, Resource, ResourceCapacity, ResourceType, Unit};
use rm_pool::{Error, Pool, PoolLimits, PoolStatus, Provider, ProviderError};

#[test]
fn a_static_pool_hands_out_its_members_and_takes_them_back() {
    let pool = Pool::fixed([1, 2, 3]);
    let a = pool.try_checkout().unwrap();
    let b = pool.try_checkout().unwrap();
    let c = pool.try_checkout().unwrap();
    assert_eq!(pool.try_checkout().unwrap_err(), Error::Exhausted);
    let mut seen = [*a, *b, *c];
    seen.sort_unstable();
    assert_eq!(seen, [1, 2, 3]);
    assert_eq!(
        pool.status(),
        PoolStatus {
            size: 3,
            in_use: 3,
            available: 0,
            waiting: 0,
            draining: 0,
            max: 3
        }
    );
    drop((a, b));
    assert_eq!((pool.status().in_use, pool.status().available), (1, 2));
    // The most recently returned member comes out first.
    let again = pool.try_checkout().unwrap();
    assert!([1, 2, 3].contains(&*again));
    drop((again, c));
    assert_eq!(pool.status().available, 3);
}

#[test]
fn a_blocked_checkout_gets_the_next_returned_member_or_times_out() {
    let pool = Pool::fixed(["only"]);
    let held = pool.try_checkout().unwrap();
    assert_eq!(
        pool.checkout_timeout(Duration::from_millis(20))
            .unwrap_err(),
        Error::Timeout {
            waited: Duration::from_millis(20)
        }
    );
    let waiter = {
        let pool = pool.clone();
        thread::spawn(move || {
            pool.checkout_timeout(Duration::from_secs(10))
                .map(|member| *member)
        })
    };
    while pool.status().waiting == 0 {
        thread::yield_now();
    }
    drop(held);
    assert_eq!(waiter.join().unwrap(), Ok("only"));
    assert_eq!(pool.status().waiting, 0);
}

#[test]
fn shrinking_drains_members_in_use_instead_of_revoking_them() {
    let pool = Pool::fixed(['a', 'b', 'c', 'd']);
    let held: Vec<_> = (0..3).map(|_| pool.try_checkout().unwrap()).collect();
    let removed = pool.resize(1).unwrap();
    assert_eq!(removed.len(), 1, "the idle member leaves at once");
    let status = pool.status();
    assert_eq!((status.size, status.in_use, status.draining), (3, 3, 2));
    let mut held = held.into_iter();
    drop(held.next());
    drop(held.next());
    assert_eq!(pool.take_drained().len(), 2);
    drop(held.next());
    let status = pool.status();
    assert_eq!(
        (status.size, status.available, status.draining, status.max),
        (1, 1, 0, 1)
    );
    pool.add('e').unwrap();
    assert_eq!((pool.status().size, pool.status().max), (2, 2));
}

#[test]
fn a_pool_selected_by_labels_holds_the_matching_resources() {
    let node = |name: &str, zone: &str| {
        Resource::new(
            name,
            ResourceType::Compute,
            ResourceCapacity::of(8, Unit::CORES).unwrap(),
        )
        .unwrap()
        .with_label("zone", zone)
        .unwrap()
    };
    let nodes = vec![node("n1", "a"), node("n2", "b"), node("n3", "a")];
    let selector = [Constraint::label("zone").unwrap().eq("a")];
    let pool = Pool::select(nodes, &selector);
    assert_eq!(pool.status().size, 2);
    let one = pool.try_checkout().unwrap();
    assert_eq!(one.label("zone"), Some("a"));
}

#[derive(Default)]
struct Counting {
    created: AtomicUsize,
    destroyed: AtomicUsize,
    fail: AtomicBool,
    unhealthy: AtomicBool,
}

impl Provider<usize> for Counting {
    fn create(&self) -> Result<usize, ProviderError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(ProviderError {
                message: "no capacity in the region".into(),
            });
        }
        Ok(self.created.fetch_add(1, Ordering::SeqCst))
    }

    fn recycle(&self, _member: &mut usize) -> bool {
        !self.unhealthy.load(Ordering::SeqCst)
    }

    fn destroy(&self, _member: usize) {
        self.destroyed.fetch_add(1, Ordering::SeqCst);
    }
}

fn limits(min: usize, max: usize) -> PoolLimits {
    PoolLimits {
        min,
        max,
        idle_timeout: Some(Duration::from_secs(60)),
    }
}

#[test]
fn a_dynamic_pool_grows_to_its_maximum_and_ages_idle_members_out_to_its_minimum() {
    let provider = Arc::new(Counting::default());
    let clock = Arc::new(ManualClock::new());
    let pool = Pool::dynamic(provider.clone(), limits(1, 3), clock.clone()).unwrap();
    assert_eq!(pool.maintain(), Ok((0, 1)), "the minimum is created");
    let held: Vec<_> = (0..3).map(|_| pool.try_checkout().unwrap()).collect();
    assert_eq!(provider.created.load(Ordering::SeqCst), 3);
    assert_eq!(pool.try_checkout().unwrap_err(), Error::Exhausted);
    drop(held);
    assert_eq!(pool.status().available, 3);
    clock.advance(Duration::from_secs(59));
    assert_eq!(pool.maintain(), Ok((0, 0)));
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        pool.maintain(),
        Ok((2, 0)),
        "idle beyond the minimum for 60 s"
    );
    assert_eq!(provider.destroyed.load(Ordering::SeqCst), 2);
    assert_eq!(pool.status().size, 1);
}

#[test]
fn provider_failures_and_unhealthy_members_leave_the_counts_right() {
    let provider = Arc::new(Counting::default());
    let pool = Pool::dynamic(provider.clone(), limits(0, 2), Arc::new(ManualClock::new())).unwrap();
    provider.fail.store(true, Ordering::SeqCst);
    assert!(matches!(pool.try_checkout(), Err(Error::Provider(_))));
    assert_eq!(
        pool.status(),
        PoolStatus {
            max: 2,
            ..PoolStatus::default()
        }
    );
    provider.fail.store(false, Ordering::SeqCst);
    let member = pool.try_checkout().unwrap();
    provider.unhealthy.store(true, Ordering::SeqCst);
    drop(member);
    assert_eq!(
        (
            pool.status().size,
            provider.destroyed.load(Ordering::SeqCst)
        ),
        (0, 1)
    );
}

#[test]
fn lowering_the_maximum_destroys_idle_members_and_drains_the_rest() {
    let provider = Arc::new(Counting::default());
    let pool = Pool::dynamic(provider.clone(), limits(0, 4), Arc::new(ManualClock::new())).unwrap();
    let held: Vec<_> = (0..4).map(|_| pool.try_checkout().unwrap()).collect();
    let mut held = held.into_iter();
    drop(held.next());
    assert!(matches!(
        pool.resize(1),
        Err(Error::InvalidSetting {
            setting: "size",
            ..
        })
    ));
    pool.set_limits(limits(0, 1)).unwrap();
    let status = pool.status();
    assert_eq!((status.size, status.draining, status.max), (3, 2, 1));
    drop(held);
    assert_eq!(
        (
            pool.status().size,
            provider.destroyed.load(Ordering::SeqCst)
        ),
        (1, 3)
    );
    assert!(matches!(
        pool.set_limits(limits(3, 2)),
        Err(Error::InvalidSetting { setting: "min", .. })
    ));
}

fn stress_rounds() -> usize {
    std::env::var("RM_STRESS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

#[test]
fn many_threads_never_hold_more_than_the_maximum() {
    let provider = Arc::new(Counting::default());
    let pool = Pool::dynamic(provider.clone(), limits(0, 4), Arc::new(ManualClock::new())).unwrap();
    let holding = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (pool, holding, peak) = (pool.clone(), holding.clone(), peak.clone());
            thread::spawn(move || {
                for _ in 0..stress_rounds() {
                    let member = pool.checkout_timeout(Duration::from_secs(10)).unwrap();
                    let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    holding.fetch_sub(1, Ordering::SeqCst);
                    drop(member);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert!(peak.load(Ordering::SeqCst) <= 4);
    let status = pool.status();
    assert_eq!((status.in_use, status.waiting), (0, 0));
    assert!(status.size <= 4);
    assert_eq!(
        provider.created.load(Ordering::SeqCst) - provider.destroyed.load(Ordering::SeqCst),
        status.size
    );
}

#[test]
fn tasks_share_a_contended_pool_by_weight_without_leaving_members_idle() {
    let pool = Pool::fixed(0..4);
    pool.set_weight("etl", 3).unwrap();
    assert!(matches!(
        pool.set_weight("etl", 0),
        Err(Error::InvalidSetting {
            setting: "weight",
            ..
        })
    ));
    // Alone, a task may hold everything: nothing waits, so nothing stays idle.
    let mut etl: Vec<_> = (0..4)
        .map(|_| pool.checkout_as("etl", Duration::from_secs(1)).unwrap())
        .collect();
    let ml = {
        let pool = pool.clone();
        thread::spawn(move || pool.checkout_as("ml", Duration::from_secs(10)))
    };
    while pool.status().waiting == 0 {
        thread::yield_now();
    }
    let shares = pool.shares();
    assert_eq!((shares[0].fair_share, shares[1].fair_share), (3, 1));
    // etl gives one back and asks again at once: ml, below its share, goes first.
    etl.pop();
    assert_eq!(
        pool.checkout_as("etl", Duration::from_millis(50))
            .unwrap_err(),
        Error::Timeout {
            waited: Duration::from_millis(50)
        }
    );
    assert!(ml.join().unwrap().is_ok());
    let shares = pool.shares();
    assert_eq!(
        (shares[0].in_use, shares[1].in_use),
        (3, 0),
        "ml's guard has dropped"
    );
    drop(etl);
    assert!(
        pool.shares()
            .iter()
            .all(|share| share.in_use == 0 && share.waiting == 0)
    );
}
