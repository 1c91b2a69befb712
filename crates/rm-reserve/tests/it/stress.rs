//! Many threads of random operations on 16 resources, with a concurrent auditor and a
//! watchdog. `RM_STRESS_ROUNDS` raises the rounds per thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use rm_model::{
    ColocationGroup, LedgerError, ManualClock, Quantity, RequesterId, ReservationId,
    ReservationLedger, ReservationRequest, ReservationState, ReservationStrategy, ResourceName,
    ResourceRequirement, ResourceType, Unit,
};

use rm_testkit::Rng;

use crate::{host, manager};

/// Waits for `workers` workers to report on `finished` (the watchdog: a deadlock shows as a
/// worker that never finishes), then stops the auditor and joins it (a violation it found
/// fails the test).
fn await_workers(
    finished: &mpsc::Receiver<u64>,
    workers: usize,
    stop: &AtomicBool,
    auditor: thread::JoinHandle<()>,
) {
    for _ in 0..workers {
        finished
            .recv_timeout(Duration::from_secs(120))
            .expect("a worker did not finish within 120 s: deadlock or livelock");
    }
    stop.store(true, Ordering::Release);
    auditor.join().expect("the auditor found a violation");
}

/// Runs `work(t)` on eight threads, `t` from 0 to 7, then waits for all of them with
/// [`await_workers`] (the watchdog), stops the auditor and joins it.
fn run_eight(
    work: impl Fn(u64) + Send + Sync + 'static,
    stop: &AtomicBool,
    auditor: thread::JoinHandle<()>,
) {
    let work = Arc::new(work);
    let (done, finished) = mpsc::channel();
    for t in 0..8u64 {
        let (work, done) = (work.clone(), done.clone());
        thread::spawn(move || {
            work(t);
            done.send(t).expect("the test waits");
        });
    }
    drop(done);
    await_workers(&finished, 8, stop, auditor);
}

/// A manager on `clock` with a 40 ms retention and four resources of 16 cores, and an
/// auditor checking it every 200 µs until the flag is set.
fn short_retention(
    clock: &Arc<ManualClock>,
    ttl: Duration,
) -> (
    Arc<rm_reserve::ReservationManager>,
    Arc<AtomicBool>,
    thread::JoinHandle<()>,
) {
    let manager = Arc::new(
        rm_reserve::ReservationManager::builder()
            .clock(clock.clone())
            .default_ttl(ttl)
            .retention(Duration::from_millis(40))
            .build()
            .expect("valid settings"),
    );
    for i in 0..4 {
        manager
            .register_resource(host(&format!("n{i}"), 16, 16))
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let auditor = {
        let (manager, stop) = (manager.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                let report = manager.audit().expect("audit");
                assert!(report.is_clean(), "audit: {:#?}", report.violations);
                thread::sleep(Duration::from_micros(200));
            }
        })
    };
    (manager, stop, auditor)
}

/// After a run on [`short_retention`]'s manager: pending holds expire and ended ones are
/// forgotten, so nothing is held or remembered (those that expire last are remembered for
/// the retention, then forgotten).
fn all_forgotten(clock: &ManualClock, manager: &rm_reserve::ReservationManager) {
    clock.advance(Duration::from_secs(60));
    manager.expire_due().unwrap();
    let snapshot = manager.snapshot().unwrap();
    assert!(snapshot.audit().is_clean());
    assert!(snapshot.active.is_empty());
    clock.advance(Duration::from_millis(40));
    assert_eq!(manager.remembered(), 0);
}

#[test]
fn eight_threads_sixteen_resources_with_an_auditor() {
    let rounds = rm_testkit::stress_rounds(4_000) as u64;
    let clock = Arc::new(ManualClock::new());
    let manager = Arc::new(manager(&clock));
    for i in 0..16 {
        manager
            .register_resource(host(&format!("n{i}"), 8, 16))
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let audits = Arc::new(AtomicUsize::new(0));
    let auditor = {
        let (manager, stop, audits) = (manager.clone(), stop.clone(), audits.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                let snapshot = manager.snapshot().expect("snapshot");
                let report = snapshot.audit();
                assert!(
                    report.is_clean(),
                    "audit during the run: {:#?}",
                    report.violations
                );
                for usage in &snapshot.usage {
                    assert!(
                        usage.used() <= usage.capacity || usage.draining,
                        "over-allocated: {usage:?}"
                    );
                }
                audits.fetch_add(1, Ordering::Relaxed);
                thread::sleep(Duration::from_micros(200));
            }
        })
    };
    let work = {
        let (manager, clock) = (manager.clone(), clock.clone());
        move |t: u64| {
            let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15 ^ (t + 1));
            let mut mine: Vec<(ReservationId, rm_model::FencingToken)> = Vec::new();
            let group = ColocationGroup::new("g").expect("valid");
            let requester = RequesterId::new(&format!("w{t}")).expect("valid");
            for round in 0..rounds {
                match rng.below(10) {
                    0..=3 => {
                        let parts = 1 + rng.below(4) as usize;
                        let colocate = rng.below(2) == 0;
                        let requirements = (0..parts)
                            .map(|_| {
                                let r = if rng.below(2) == 0 {
                                    ResourceRequirement::new(
                                        ResourceType::Compute,
                                        Quantity::from_milli(500 * (1 + rng.below(6) as i64)),
                                        Unit::CORES,
                                    )
                                } else {
                                    ResourceRequirement::new(
                                        ResourceType::Memory,
                                        1 + rng.below(4) as i32,
                                        Unit::GIB,
                                    )
                                };
                                if colocate {
                                    r.colocated(group.clone())
                                } else {
                                    r
                                }
                            })
                            .collect();
                        let strategy = [
                            ReservationStrategy::BinPack,
                            ReservationStrategy::Balanced,
                            ReservationStrategy::Greedy,
                        ][rng.below(3) as usize];
                        let mut request = ReservationRequest::new(requester.clone(), requirements)
                            .with_strategy(strategy)
                            .confirm_on_grant(rng.below(5) == 0);
                        if rng.below(4) == 0 {
                            request = request.with_id(
                                ReservationId::new(&format!("w{t}-{round}")).expect("valid"),
                            );
                        }
                        match manager.reserve(&request) {
                            Ok(hold) => mine.push((hold.id, hold.fencing_token)),
                            Err(LedgerError::InsufficientCapacity { .. }) => {}
                            Err(other) => panic!("unexpected: {other}"),
                        }
                    }
                    4..=5 if !mine.is_empty() => {
                        let (id, token) = mine[rng.below(mine.len() as u64) as usize].clone();
                        match manager.confirm(&id, Some(token)) {
                            Ok(_)
                            | Err(LedgerError::Expired { .. } | LedgerError::InvalidState { .. }) =>
                                {}
                            Err(other) => panic!("unexpected: {other}"),
                        }
                    }
                    6..=7 if !mine.is_empty() => {
                        let (id, token) = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                        let _ = manager.confirm(&id, Some(token));
                        for _ in 0..2 {
                            match manager.release(&id, Some(token)) {
                                Ok(r) => assert_eq!(r.state, ReservationState::Released),
                                Err(
                                    LedgerError::Expired { .. } | LedgerError::InvalidState { .. },
                                ) => {}
                                Err(other) => panic!("unexpected: {other}"),
                            }
                        }
                    }
                    8 if !mine.is_empty() => {
                        let (id, token) = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                        // A confirmed hold cannot be cancelled; it is released instead.
                        if let Err(LedgerError::InvalidState { .. }) =
                            manager.cancel(&id, Some(token))
                        {
                            manager
                                .release(&id, Some(token))
                                .expect("release a confirmed hold");
                        }
                    }
                    9 => {
                        if t == 0 {
                            clock.advance(Duration::from_millis(rng.below(200)));
                        }
                        let node =
                            ResourceName::new(&format!("n{}", rng.below(16))).expect("valid");
                        let cores = Quantity::from(4 + rng.below(8) as i32);
                        manager
                            .set_capacity(&node, &ResourceType::Compute, cores)
                            .expect("set capacity");
                    }
                    _ => {}
                }
            }
            for (id, token) in mine {
                let _ = manager.cancel(&id, Some(token));
                let _ = manager.release(&id, Some(token));
            }
        }
    };
    run_eight(work, &stop, auditor);
    assert!(audits.load(Ordering::Relaxed) > 0, "the auditor ran");

    // Everything is back: no holds, all capacity free, nothing remembered after retention.
    clock.advance(Duration::from_secs(3_600));
    manager.expire_due().unwrap();
    let snapshot = manager.snapshot().unwrap();
    assert!(snapshot.audit().is_clean());
    assert!(
        snapshot.active.is_empty(),
        "{} holds left",
        snapshot.active.len()
    );
    for usage in &snapshot.usage {
        assert_eq!(
            (usage.pending, usage.confirmed),
            (Quantity::ZERO, Quantity::ZERO),
            "{usage:?}"
        );
    }
    manager.expire_due().unwrap();
    assert_eq!(
        manager.remembered(),
        0,
        "ended reservations must be forgotten after retention"
    );
}

/// Eight threads reuse a few named ids each while the clock runs past a short retention:
/// each id is in turn granted, ended, remembered (a retry answers the ended reservation, a
/// different request a conflict) and forgotten, and a later grant under it is new, whichever
/// thread's sweep forgets the earlier one (or whether one has yet). Every new grant under an
/// id has a higher fencing token than the one before, no retry answers a forgotten life, and
/// an auditor checks conservation meanwhile.
#[test]
fn named_ids_reused_across_retention_by_eight_threads() {
    let rounds = rm_testkit::stress_rounds(3_000) as u64;
    let clock = Arc::new(ManualClock::new());
    let (manager, stop, auditor) = short_retention(&clock, Duration::from_secs(10));
    let work = {
        let (manager, clock) = (manager.clone(), clock.clone());
        move |t: u64| {
            let mut rng = Rng::new(0x2545_f491_4f6c_dd1d ^ (t + 1));
            let requester = RequesterId::new(&format!("w{t}")).expect("valid");
            // Per id: the last life granted (its token, and the cores it asked for).
            let mut last: Vec<Option<(rm_model::FencingToken, i32)>> = vec![None; 4];
            for _ in 0..rounds {
                let k = rng.below(4) as usize;
                let id = ReservationId::new(&format!("w{t}-{k}")).expect("valid");
                let cores = 1 + rng.below(2) as i32;
                let request = ReservationRequest::new(
                    requester.clone(),
                    vec![ResourceRequirement::new(
                        ResourceType::Compute,
                        cores,
                        Unit::CORES,
                    )],
                )
                .with_id(id.clone());
                let before = rm_model::Clock::now(&*clock);
                match manager.reserve(&request) {
                    Ok(hold) => {
                        let new_life = last[k].is_none_or(|(token, _)| token != hold.fencing_token);
                        if new_life {
                            if let Some((token, _)) = last[k] {
                                assert!(hold.fencing_token > token, "{id}: a token went back");
                            }
                            assert_eq!(hold.state, ReservationState::Pending, "{id}");
                            last[k] = Some((hold.fencing_token, cores));
                        } else {
                            // A retry of the life it remembers: the same request, and, if
                            // that life has ended, within its retention.
                            assert_eq!(last[k].map(|(_, c)| c), Some(cores), "{id}");
                            assert!(
                                hold.state.holds_capacity()
                                    || hold.updated_at + Duration::from_millis(40) > before,
                                "{id}: a retry answered a forgotten reservation"
                            );
                        }
                        // End it one way or another (or leave it pending, to expire).
                        match rng.below(3) {
                            0 => {
                                manager.confirm(&id, Some(hold.fencing_token)).ok();
                                manager.release(&id, Some(hold.fencing_token)).ok();
                            }
                            1 => {
                                manager.cancel(&id, Some(hold.fencing_token)).ok();
                            }
                            _ => {}
                        }
                    }
                    Err(LedgerError::IdConflict { .. }) => {
                        // Remembered under a different request.
                        assert_ne!(last[k].map(|(_, c)| c), Some(cores), "{id}");
                    }
                    Err(LedgerError::InsufficientCapacity { .. }) => {}
                    Err(other) => panic!("unexpected: {other}"),
                }
                if rng.below(4) == 0 {
                    clock.advance(Duration::from_millis(rng.below(20)));
                }
            }
        }
    };
    run_eight(work, &stop, auditor);
    all_forgotten(&clock, &manager);
}

/// Eight threads take holds under generated ids while the clock runs past a short
/// retention, so forgotten reservations' places are reused by later grants all the time
/// (whichever thread's sweep forgets them). Every thread keeps asking about its own old
/// ids: an answer is that very reservation (same id, same fencing token) or unknown, never
/// another one, and no old id meets a stale token. An auditor checks conservation meanwhile.
#[test]
fn generated_ids_of_reused_places_by_eight_threads() {
    let rounds = rm_testkit::stress_rounds(3_000) as u64;
    let clock = Arc::new(ManualClock::new());
    let (manager, stop, auditor) = short_retention(&clock, Duration::from_millis(30));
    let work = {
        let (manager, clock) = (manager.clone(), clock.clone());
        move |t: u64| {
            let mut rng = Rng::new(0x5851_f42d_4c95_7f2d ^ (t + 1));
            let request = ReservationRequest::new(
                RequesterId::new(&format!("w{t}")).expect("valid"),
                vec![ResourceRequirement::new(
                    ResourceType::Compute,
                    1,
                    Unit::CORES,
                )],
            );
            // The thread's last ids, with their tokens.
            let mut old: std::collections::VecDeque<(ReservationId, rm_model::FencingToken)> =
                std::collections::VecDeque::new();
            for _ in 0..rounds {
                match manager.reserve(&request) {
                    Ok(hold) => {
                        match rng.below(3) {
                            0 => {
                                manager.confirm(&hold.id, Some(hold.fencing_token)).ok();
                                manager.release(&hold.id, Some(hold.fencing_token)).ok();
                            }
                            1 => {
                                manager.cancel(&hold.id, Some(hold.fencing_token)).ok();
                            }
                            // Left pending, to expire.
                            _ => {}
                        }
                        old.push_back((hold.id, hold.fencing_token));
                        if old.len() > 64 {
                            old.pop_front();
                        }
                    }
                    Err(LedgerError::InsufficientCapacity { .. }) => {}
                    Err(other) => panic!("unexpected: {other}"),
                }
                let (id, token) = old[rng.below(old.len() as u64) as usize].clone();
                match manager.get(&id) {
                    Ok(found) => {
                        assert_eq!(found.id, id, "another reservation answered");
                        assert_eq!(found.fencing_token, token, "{id}: another life answered");
                    }
                    Err(LedgerError::UnknownReservation { .. }) => {}
                    Err(other) => panic!("unexpected: {other}"),
                }
                match manager.cancel(&id, Some(token)) {
                    Ok(found) => assert_eq!((found.id, found.fencing_token), (id, token)),
                    Err(
                        LedgerError::UnknownReservation { .. }
                        | LedgerError::InvalidState { .. }
                        | LedgerError::Expired { .. },
                    ) => {}
                    Err(other) => panic!("{id}: unexpected: {other}"),
                }
                if rng.below(4) == 0 {
                    clock.advance(Duration::from_millis(rng.below(20)));
                }
            }
        }
    };
    run_eight(work, &stop, auditor);
    all_forgotten(&clock, &manager);
}
