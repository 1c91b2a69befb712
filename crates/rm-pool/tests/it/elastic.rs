use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use rm_pool::{ElasticGroup, ElasticPoolSpec, Error, Reclaim};

fn spec(name: &str, guaranteed: u64, borrowing_limit: u64, lending_limit: u64) -> ElasticPoolSpec {
    ElasticPoolSpec {
        name: name.into(),
        guaranteed,
        borrowing_limit,
        lending_limit,
    }
}

fn group() -> ElasticGroup {
    ElasticGroup::new(vec![
        spec("etl", 8, 4, 6),
        spec("ml", 8, 6, 4),
        spec("web", 4, 0, 2),
    ])
    .unwrap()
}

#[test]
fn a_pool_uses_its_own_units_first_and_borrows_the_rest() {
    let group = group();
    let lease = group.acquire("ml", 12).unwrap();
    assert_eq!((lease.units(), lease.borrowed()), (12, 4));
    let status = group.status();
    assert_eq!((status[1].used_own, status[1].borrowed), (8, 4));
    // The sibling with the most to lend lends first.
    assert_eq!(status[0].lent, 4);
    group.audit().unwrap();
    drop(lease);
    assert!(
        group
            .status()
            .iter()
            .all(|pool| pool.lent == 0 && pool.borrowed == 0 && pool.used_own == 0)
    );
}

#[test]
fn borrowing_and_lending_limits_hold_and_a_refusal_changes_nothing() {
    let group = group();
    let before = group.status();
    // ml may borrow 6, and etl (6) + web (2) could lend 8: 8 + 6 = 14 at most.
    let refused = group.acquire("ml", 15).unwrap_err();
    assert_eq!(
        refused,
        Error::Insufficient {
            pool: "ml".into(),
            wanted: 15,
            available: 14,
            reclaiming: 0
        }
    );
    assert_eq!(group.status(), before);
    // web may not borrow at all.
    assert!(group.acquire("web", 5).is_err());
    let most = group.acquire("ml", 14).unwrap();
    assert_eq!(most.borrowed(), 6);
    group.audit().unwrap();
    assert!(matches!(
        group.acquire("nope", 1),
        Err(Error::UnknownPool { .. })
    ));
}

#[test]
fn an_owner_whose_demand_returns_reclaims_what_it_lent() {
    let group = group();
    let borrowed = group.acquire("ml", 14).unwrap(); // etl lends its limit of 6
    assert_eq!(group.status()[0].lent, 6);
    // etl now wants all 8 of its own units back.
    let refused = group.acquire("etl", 8).unwrap_err();
    let Error::Insufficient { reclaiming, .. } = refused else {
        panic!("expected a refusal, got {refused:?}");
    };
    assert_eq!(reclaiming, 6);
    assert_eq!(
        group.reclaims(),
        [Reclaim {
            owner: "etl".into(),
            borrower: "ml".into(),
            units: reclaiming
        }]
    );
    // The borrower finishes: the units go home and etl is served.
    drop(borrowed);
    assert_eq!(group.status()[0].reclaiming, 0);
    let home = group.acquire("etl", 8).unwrap();
    assert_eq!(home.borrowed(), 0);
    group.audit().unwrap();
}

#[test]
fn bad_groups_are_refused_by_name() {
    assert!(matches!(
        ElasticGroup::new(vec![spec("a", 1, 0, 0), spec("a", 1, 0, 0)]),
        Err(Error::InvalidSetting {
            setting: "name",
            ..
        })
    ));
    assert!(matches!(
        ElasticGroup::new(vec![spec("a", 1, 0, 2)]),
        Err(Error::InvalidSetting {
            setting: "lending_limit",
            ..
        })
    ));
}

fn stress_rounds() -> u64 {
    std::env::var("RM_STRESS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

#[test]
fn under_many_threads_limits_and_conservation_hold_throughout() {
    let group = group();
    let names = ["etl", "ml", "web"];
    let borrowed = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..6u64)
        .map(|worker| {
            let (group, borrowed) = (group.clone(), borrowed.clone());
            thread::spawn(move || {
                let mut seed = worker.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                let mut held = Vec::new();
                for _ in 0..stress_rounds() {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let pool = names[(seed % 3) as usize];
                    if let Ok(lease) = group.acquire(pool, 1 + (seed >> 8) % 6) {
                        borrowed.fetch_add(lease.borrowed(), Ordering::Relaxed);
                        held.push(lease);
                    }
                    if !held.is_empty() && (held.len() > 2 || seed % 4 == 0) {
                        held.remove((seed >> 16) as usize % held.len().max(1))
                            .units();
                    }
                }
            })
        })
        .collect();
    let auditor = {
        let group = group.clone();
        thread::spawn(move || {
            for _ in 0..stress_rounds() {
                group.audit().unwrap();
                for pool in group.status() {
                    assert!(pool.used_own + pool.lent + pool.free == pool.guaranteed);
                }
            }
        })
    };
    for worker in workers {
        worker.join().unwrap();
    }
    auditor.join().unwrap();
    assert!(
        borrowed.load(Ordering::Relaxed) > 0,
        "the stress must exercise borrowing"
    );
    group.audit().unwrap();
    for pool in group.status() {
        assert_eq!(
            (pool.used_own, pool.lent, pool.borrowed, pool.reclaiming),
            (0, 0, 0, 0),
            "{}",
            pool.name
        );
    }
}

#[test]
fn under_many_threads_an_owner_gets_its_lent_units_back() {
    // etl may not borrow: it depends on reclaim alone to get its units back.
    let group = ElasticGroup::new(vec![
        spec("etl", 8, 0, 6),
        spec("ml", 8, 6, 4),
        spec("web", 4, 0, 2),
    ])
    .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let borrowers: Vec<_> = (0..4u64)
        .map(|worker| {
            let (group, stop) = (group.clone(), stop.clone());
            thread::spawn(move || {
                let mut seed = (worker + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                while !stop.load(Ordering::Relaxed) {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    // ml asks for more than it owns whenever it can: it borrows from etl.
                    let lease = group.acquire("ml", 1 + seed % 8);
                    thread::yield_now();
                    drop(lease);
                }
            })
        })
        .collect();
    let (mut reclaimed, rounds) = (0, stress_rounds() / 20);
    for _ in 0..rounds {
        let mut first = true;
        let lease = loop {
            match group.acquire("etl", 8) {
                Ok(lease) => break lease,
                Err(Error::Insufficient { reclaiming, .. }) => {
                    if first && reclaiming > 0 {
                        reclaimed += 1;
                    }
                    first = false;
                    thread::yield_now();
                }
                Err(other) => panic!("unexpected {other}"),
            }
        };
        // All 8 of its own units, none borrowed: the reclaim brought them home.
        assert_eq!((lease.units(), lease.borrowed()), (8, 0));
        group.audit().unwrap();
        drop(lease);
        // Give the borrowers time to borrow again.
        thread::sleep(std::time::Duration::from_micros(200));
    }
    stop.store(true, Ordering::Relaxed);
    for borrower in borrowers {
        borrower.join().unwrap();
    }
    assert!(
        reclaimed > 0,
        "the owner must have had to reclaim at least once"
    );
    group.audit().unwrap();
    assert!(
        group
            .status()
            .iter()
            .all(|pool| pool.lent == 0 && pool.reclaiming == 0)
    );
}
