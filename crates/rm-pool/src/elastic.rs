//! [`ElasticGroup`]: sibling pools of counted capacity (cores, licences, slots), each with a
//! guaranteed share, that lend idle capacity to each other within limits and take it back
//! when their own demand returns.
//!
//! Rules, all checked under one lock so that they hold at every instant:
//! - a pool's guaranteed units are either used by itself, lent, or free;
//! - a pool lends at most its lending limit, and only units that are free;
//! - a pool borrows at most its borrowing limit in total;
//! - a grant takes the pool's own free units first and borrows only the rest, all or nothing.
//!
//! Reclaim never revokes: when a pool cannot be served because its capacity is lent out,
//! the shortfall is recorded as a reclaim on the borrowers. While a reclaim is open, units
//! the borrowers release go back to the owner (they are not lent again), and
//! [`ElasticGroup::reclaims`] lists what each borrower owes so that it can finish or
//! checkpoint work early (as Kubernetes' scheduler does with borrowed quota in Kueue).

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::Error;

/// One pool of an [`ElasticGroup`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElasticPoolSpec {
    /// The pool's name (unique in the group).
    pub name: String,
    /// Units the pool owns.
    pub guaranteed: u64,
    /// The most units it may borrow from siblings at once.
    pub borrowing_limit: u64,
    /// The most of its own units it may lend at once.
    pub lending_limit: u64,
}

/// One pool's figures at an instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ElasticStatus {
    /// The pool's name.
    pub name: String,
    /// Units it owns.
    pub guaranteed: u64,
    /// Own units in use by itself.
    pub used_own: u64,
    /// Own units lent to siblings.
    pub lent: u64,
    /// Units borrowed from siblings and in use.
    pub borrowed: u64,
    /// Own units free.
    pub free: u64,
    /// Lent units it is waiting to get back.
    pub reclaiming: u64,
}

/// A borrower's debt to an owner that is reclaiming.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reclaim {
    /// The pool that lent.
    pub owner: String,
    /// The pool that borrowed.
    pub borrower: String,
    /// Units to give back.
    pub units: u64,
}

#[derive(Debug)]
struct PoolState {
    spec: ElasticPoolSpec,
    used_own: u64,
    lent: u64,
    borrowed: u64,
    reclaiming: u64,
}

impl PoolState {
    fn free(&self) -> u64 {
        self.spec.guaranteed - self.used_own - self.lent
    }

    /// Units it may lend now: free, within its lending limit, and none while reclaiming.
    fn lendable(&self) -> u64 {
        if self.reclaiming > 0 {
            return 0;
        }
        self.free()
            .min(self.spec.lending_limit - self.lent.min(self.spec.lending_limit))
    }
}

#[derive(Debug)]
struct GroupState {
    pools: Vec<PoolState>,
    /// `loans[borrower * n + lender]`: units lent by `lender` to `borrower`.
    loans: Vec<u64>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<GroupState>,
}

/// Sibling pools that lend and borrow; cloning it shares the group.
///
/// A pool's guaranteed units are used by itself, lent, or free; it lends at most its
/// lending limit of free units, borrows at most its borrowing limit, and a grant takes its
/// own free units before borrowing, all or nothing. Reclaim never revokes: a pool refused
/// because its units are lent out starts reclaiming them; until they come back it lends
/// nothing more, released loans go home, and [`ElasticGroup::reclaims`] lists what each
/// borrower owes.
#[derive(Clone, Debug)]
pub struct ElasticGroup {
    shared: Arc<Shared>,
}

/// Units held from an [`ElasticGroup`]: the pool's own and any borrowed. Released when
/// dropped.
pub struct ElasticLease {
    shared: Arc<Shared>,
    pool: usize,
    own: u64,
    /// `(lender, units)` for each sibling lent from.
    borrowed: Vec<(usize, u64)>,
}

impl fmt::Debug for ElasticLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElasticLease")
            .field("pool", &self.pool)
            .field("own", &self.own)
            .field("borrowed", &self.borrowed)
            .finish()
    }
}

impl ElasticLease {
    /// Units held in total.
    pub fn units(&self) -> u64 {
        self.own + self.borrowed.iter().map(|(_, units)| units).sum::<u64>()
    }

    /// Units of those borrowed from siblings.
    pub fn borrowed(&self) -> u64 {
        self.borrowed.iter().map(|(_, units)| units).sum()
    }
}

impl Drop for ElasticLease {
    fn drop(&mut self) {
        let mut state = lock(&self.shared);
        let n = state.pools.len();
        state.pools[self.pool].used_own -= self.own;
        for &(lender, units) in &self.borrowed {
            state.loans[self.pool * n + lender] -= units;
            state.pools[self.pool].borrowed -= units;
            let owner = &mut state.pools[lender];
            owner.lent -= units;
            owner.reclaiming -= units.min(owner.reclaiming);
        }
    }
}

fn inconsistent(pool: &str, detail: String) -> Error {
    Error::Inconsistent {
        pool: pool.to_owned(),
        detail,
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, GroupState> {
    // Every update under the lock is integer arithmetic with no call out: a poisoned lock
    // still holds consistent figures.
    shared.state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ElasticGroup {
    /// A group of `pools`. Fails on a duplicate name or a lending limit above what the pool
    /// owns.
    pub fn new(pools: Vec<ElasticPoolSpec>) -> Result<ElasticGroup, Error> {
        for (index, spec) in pools.iter().enumerate() {
            if pools[..index].iter().any(|other| other.name == spec.name) {
                return Err(Error::InvalidSetting {
                    setting: "name",
                    reason: "appears twice in the group",
                });
            }
            if spec.lending_limit > spec.guaranteed {
                return Err(Error::InvalidSetting {
                    setting: "lending_limit",
                    reason: "exceeds the guaranteed units",
                });
            }
        }
        let n = pools.len();
        let pools = pools
            .into_iter()
            .map(|spec| PoolState {
                spec,
                used_own: 0,
                lent: 0,
                borrowed: 0,
                reclaiming: 0,
            })
            .collect();
        Ok(ElasticGroup {
            shared: Arc::new(Shared {
                state: Mutex::new(GroupState {
                    pools,
                    loans: vec![0; n * n],
                }),
            }),
        })
    }

    fn index(state: &GroupState, pool: &str) -> Result<usize, Error> {
        state
            .pools
            .iter()
            .position(|candidate| candidate.spec.name == pool)
            .ok_or_else(|| Error::UnknownPool {
                pool: pool.to_owned(),
            })
    }

    /// Takes `units` for `pool`: its own free units first, then borrowed from siblings (the
    /// ones with the most to lend first), all or nothing. When the pool cannot be served
    /// because its own units are lent out, it starts reclaiming them and the error says so;
    /// nothing else changes on failure.
    pub fn acquire(&self, pool: &str, units: u64) -> Result<ElasticLease, Error> {
        let mut state = lock(&self.shared);
        let index = ElasticGroup::index(&state, pool)?;
        let n = state.pools.len();
        let own = state.pools[index].free().min(units);
        let mut need = units - own;
        let headroom = {
            let me = &state.pools[index];
            me.spec.borrowing_limit - me.borrowed.min(me.spec.borrowing_limit)
        };
        let lendable: u64 = (0..n)
            .filter(|&lender| lender != index)
            .map(|lender| state.pools[lender].lendable())
            .sum();
        if need > headroom.min(lendable) {
            // Capacity the pool owns but has lent out comes back as borrowers release it.
            let me = &mut state.pools[index];
            let outstanding = me.lent - me.reclaiming;
            let reclaim = need.min(outstanding);
            me.reclaiming += reclaim;
            return Err(Error::Insufficient {
                pool: pool.to_owned(),
                wanted: units,
                available: own + headroom.min(lendable),
                reclaiming: reclaim,
            });
        }
        let mut order: Vec<usize> = (0..n).filter(|&lender| lender != index).collect();
        order.sort_by_key(|&lender| std::cmp::Reverse(state.pools[lender].lendable()));
        let mut borrowed = Vec::new();
        for lender in order {
            if need == 0 {
                break;
            }
            let take = state.pools[lender].lendable().min(need);
            if take == 0 {
                continue;
            }
            state.pools[lender].lent += take;
            state.loans[index * n + lender] += take;
            borrowed.push((lender, take));
            need -= take;
        }
        let me = &mut state.pools[index];
        me.used_own += own;
        me.borrowed += units - own;
        Ok(ElasticLease {
            shared: self.shared.clone(),
            pool: index,
            own,
            borrowed,
        })
    }

    /// Every pool's figures now.
    pub fn status(&self) -> Vec<ElasticStatus> {
        let state = lock(&self.shared);
        state
            .pools
            .iter()
            .map(|pool| ElasticStatus {
                name: pool.spec.name.clone(),
                guaranteed: pool.spec.guaranteed,
                used_own: pool.used_own,
                lent: pool.lent,
                borrowed: pool.borrowed,
                free: pool.free(),
                reclaiming: pool.reclaiming,
            })
            .collect()
    }

    /// What borrowers owe to owners that are reclaiming: for each owner, its open reclaim
    /// spread over its borrowers in pool order.
    pub fn reclaims(&self) -> Vec<Reclaim> {
        let state = lock(&self.shared);
        let n = state.pools.len();
        let mut owed = Vec::new();
        for (owner, pool) in state.pools.iter().enumerate() {
            let mut remaining = pool.reclaiming;
            for borrower in 0..n {
                if remaining == 0 {
                    break;
                }
                let units = state.loans[borrower * n + owner].min(remaining);
                if units > 0 {
                    owed.push(Reclaim {
                        owner: pool.spec.name.clone(),
                        borrower: state.pools[borrower].spec.name.clone(),
                        units,
                    });
                    remaining -= units;
                }
            }
        }
        owed
    }

    /// Checks the group's invariants (own units add up, limits hold, loans match); a test
    /// and debugging aid. Returns the first violation as [`Error::Inconsistent`].
    pub fn audit(&self) -> Result<(), Error> {
        let state = lock(&self.shared);
        let n = state.pools.len();
        for (index, pool) in state.pools.iter().enumerate() {
            let name = &pool.spec.name;
            if pool.used_own + pool.lent > pool.spec.guaranteed {
                return Err(inconsistent(
                    name,
                    format!(
                        "used {} + lent {} exceed guaranteed {}",
                        pool.used_own, pool.lent, pool.spec.guaranteed
                    ),
                ));
            }
            if pool.lent > pool.spec.lending_limit {
                return Err(inconsistent(
                    name,
                    format!(
                        "lent {} exceeds the lending limit {}",
                        pool.lent, pool.spec.lending_limit
                    ),
                ));
            }
            if pool.borrowed > pool.spec.borrowing_limit {
                return Err(inconsistent(
                    name,
                    format!(
                        "borrowed {} exceeds the borrowing limit {}",
                        pool.borrowed, pool.spec.borrowing_limit
                    ),
                ));
            }
            let lent: u64 = (0..n)
                .map(|borrower| state.loans[borrower * n + index])
                .sum();
            let borrowed: u64 = (0..n).map(|lender| state.loans[index * n + lender]).sum();
            if lent != pool.lent || borrowed != pool.borrowed {
                return Err(inconsistent(
                    name,
                    format!(
                        "loans do not match lent {} / borrowed {}",
                        pool.lent, pool.borrowed
                    ),
                ));
            }
            if pool.reclaiming > pool.lent {
                return Err(inconsistent(
                    name,
                    format!("reclaiming {} exceeds lent {}", pool.reclaiming, pool.lent),
                ));
            }
        }
        Ok(())
    }
}
