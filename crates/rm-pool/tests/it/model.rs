//! Random sequences of operations against a static pool and an elastic group, checking
//! after every step that no member or unit is lost, duplicated or over-granted, and that a
//! refused elastic grant changes nothing but the reclaim it starts. `RM_PROPTEST_CASES`
//! raises the number of sequences.

use std::collections::BTreeSet;

use proptest::prelude::*;
use rm_pool::{ElasticGroup, ElasticPoolSpec, Error, Pool};

fn cases() -> u32 {
    std::env::var("RM_PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256)
}

#[derive(Clone, Debug)]
enum PoolOp {
    Checkout,
    Return(usize),
    Resize(usize),
    Add,
    TakeDrained,
}

fn pool_op() -> impl Strategy<Value = PoolOp> {
    prop_oneof![
        3 => Just(PoolOp::Checkout),
        3 => (0usize..8).prop_map(PoolOp::Return),
        1 => (0usize..8).prop_map(PoolOp::Resize),
        1 => Just(PoolOp::Add),
        1 => Just(PoolOp::TakeDrained),
    ]
}

#[derive(Clone, Debug)]
enum GroupOp {
    Acquire(usize, u64),
    Release(usize),
}

fn group_op() -> impl Strategy<Value = GroupOp> {
    prop_oneof![
        (0usize..3, 1u64..12).prop_map(|(pool, units)| GroupOp::Acquire(pool, units)),
        (0usize..8).prop_map(GroupOp::Release),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn a_static_pool_never_loses_or_duplicates_a_member(ops in proptest::collection::vec(pool_op(), 1..60)) {
        let pool = Pool::fixed(0u32..4);
        let mut next = 4u32;
        let mut held = Vec::new();
        let mut gone = Vec::new(); // members that left the pool through resize or draining
        for op in ops {
            match op {
                PoolOp::Checkout => match pool.try_checkout() {
                    Ok(member) => held.push(member),
                    Err(error) => prop_assert_eq!(error, Error::Exhausted),
                },
                PoolOp::Return(index) if !held.is_empty() => {
                    let index = index % held.len();
                    drop(held.swap_remove(index));
                }
                PoolOp::Return(_) => {}
                PoolOp::Resize(size) => gone.extend(pool.resize(size).unwrap()),
                PoolOp::Add => {
                    prop_assert!(pool.add(next).is_ok());
                    next += 1;
                }
                PoolOp::TakeDrained => gone.extend(pool.take_drained()),
            }
            let status = pool.status();
            prop_assert_eq!(status.size, status.available + status.in_use);
            prop_assert_eq!(status.in_use, held.len());
            prop_assert!(status.draining <= status.in_use);
            prop_assert!(status.size - status.draining <= status.max);
        }
        // Every member ever added is exactly once: back in the pool, or gone.
        gone.extend(pool.take_drained());
        drop(held);
        let mut all = gone;
        all.extend(pool.take_drained());
        let mut in_pool = Vec::new();
        while let Ok(member) = pool.try_checkout() {
            in_pool.push(member.detach());
        }
        all.extend(in_pool);
        let distinct: BTreeSet<u32> = all.iter().copied().collect();
        prop_assert_eq!(distinct.len(), all.len(), "a member appears twice: {:?}", all);
        prop_assert_eq!(distinct, (0..next).collect::<BTreeSet<u32>>());
    }

    #[test]
    fn an_elastic_group_keeps_its_books_straight(ops in proptest::collection::vec(group_op(), 1..60)) {
        let spec = |name: &str, guaranteed, borrowing_limit, lending_limit| ElasticPoolSpec {
            name: name.into(),
            guaranteed,
            borrowing_limit,
            lending_limit,
        };
        let group = ElasticGroup::new(vec![spec("a", 8, 4, 6), spec("b", 6, 6, 2), spec("c", 4, 2, 4)]).unwrap();
        let names = ["a", "b", "c"];
        let mut held = Vec::new();
        for op in ops {
            match op {
                GroupOp::Acquire(pool, units) => {
                    let before = group.status();
                    match group.acquire(names[pool], units) {
                        Ok(lease) => {
                            prop_assert_eq!(lease.units(), units);
                            held.push(lease);
                        }
                        Err(Error::Insufficient { available, reclaiming, .. }) => {
                            prop_assert!(available < units);
                            // Nothing changed but the reclaim the refusal started.
                            let mut after = group.status();
                            after[pool].reclaiming -= reclaiming;
                            prop_assert_eq!(after, before);
                        }
                        Err(other) => prop_assert!(false, "unexpected {}", other),
                    }
                }
                GroupOp::Release(index) if !held.is_empty() => {
                    let index = index % held.len();
                    drop(held.swap_remove(index));
                }
                GroupOp::Release(_) => {}
            }
            prop_assert_eq!(group.audit(), Ok(()));
            let in_use: u64 = group.status().iter().map(|pool| pool.used_own + pool.borrowed).sum();
            prop_assert_eq!(in_use, held.iter().map(|lease| lease.units()).sum::<u64>());
        }
        drop(held);
        prop_assert!(group.status().iter().all(|pool| pool.used_own == 0 && pool.lent == 0 && pool.reclaiming == 0));
    }
}
