//! [`Pool`]: a pool of objects (resources, connections, licences) checked out one at a time
//! and returned when the [`Pooled`] guard drops.
//!
//! A static pool has the members it is given (more can be added; [`Pool::resize`] drains
//! members away). A dynamic pool creates members through a [`Provider`] on demand, up to its
//! maximum, and [`Pool::maintain`] destroys members idle longer than the idle timeout (never
//! below the minimum) and creates members up to the minimum.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rm_model::{Clock, Constraint, Resource, SystemClock, Timestamp};

use crate::error::{Error, ProviderError};

/// Creates, checks and destroys the members of a dynamic pool: the "add or remove capacity"
/// side (a cloud API, a process spawner, a connection factory).
pub trait Provider<T>: Send + Sync {
    /// Creates a member. Called without any pool lock held.
    fn create(&self) -> Result<T, ProviderError>;

    /// Whether a returned member may be used again (a health check); `false` destroys it.
    fn recycle(&self, _member: &mut T) -> bool {
        true
    }

    /// Destroys a member the pool no longer keeps. Called without any pool lock held.
    fn destroy(&self, _member: T) {}
}

/// A dynamic pool's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolLimits {
    /// Members kept even when idle.
    pub min: usize,
    /// Members never exceeded.
    pub max: usize,
    /// How long a member beyond the minimum may stay idle before [`Pool::maintain`]
    /// destroys it; `None` keeps idle members.
    pub idle_timeout: Option<Duration>,
}

impl PoolLimits {
    fn check(&self) -> Result<(), Error> {
        if self.max == 0 {
            return Err(Error::InvalidSetting {
                setting: "max",
                reason: "must be at least 1",
            });
        }
        if self.min > self.max {
            return Err(Error::InvalidSetting {
                setting: "min",
                reason: "exceeds max",
            });
        }
        Ok(())
    }
}

/// A pool's state at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStatus {
    /// Members alive: idle, checked out, or being created.
    pub size: usize,
    /// Members checked out.
    pub in_use: usize,
    /// Members idle, ready to check out.
    pub available: usize,
    /// Callers blocked in [`Pool::checkout_timeout`].
    pub waiting: usize,
    /// Checked-out members that will be destroyed (or handed back) on return, because the
    /// pool was shrunk below its size.
    pub draining: usize,
    /// The most members the pool may have.
    pub max: usize,
}

struct State<T> {
    idle: Vec<(T, Timestamp)>,
    size: usize,
    in_use: usize,
    draining: usize,
    waiting: usize,
    limits: PoolLimits,
    /// Members drained from a static pool, handed back to the owner by [`Pool::take_drained`].
    drained: Vec<T>,
    /// Tasks sharing the pool by weight, in the order they appeared (indices are stable).
    shares: Vec<Share>,
}

struct Share {
    task: String,
    weight: u64,
    in_use: usize,
    waiting: usize,
}

/// One task's share of a pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareStatus {
    /// The task.
    pub task: String,
    /// Its weight.
    pub weight: u64,
    /// Members it holds.
    pub in_use: usize,
    /// Its callers waiting.
    pub waiting: usize,
    /// Members its weight entitles it to among the tasks holding or waiting now.
    pub fair_share: usize,
}

impl<T> State<T> {
    /// `size × weight / Σ weights` of the tasks holding or waiting (and `task` itself).
    fn fair_share(&self, task: usize) -> usize {
        let active: u64 = self
            .shares
            .iter()
            .enumerate()
            .filter(|(index, share)| *index == task || share.in_use > 0 || share.waiting > 0)
            .map(|(_, share)| share.weight)
            .sum();
        let size = u64::try_from(self.size).unwrap_or(u64::MAX);
        let share =
            u128::from(size) * u128::from(self.shares[task].weight) / u128::from(active.max(1));
        usize::try_from(share).unwrap_or(usize::MAX)
    }

    /// Whether `task` may take a member now: below its fair share, or no other task that is
    /// below its share is waiting (so the pool never idles while someone waits).
    fn may_take(&self, task: usize) -> bool {
        if self.shares[task].in_use < self.fair_share(task) {
            return true;
        }
        !(0..self.shares.len()).any(|other| {
            other != task
                && self.shares[other].waiting > 0
                && self.shares[other].in_use < self.fair_share(other)
        })
    }
}

struct Inner<T> {
    state: Mutex<State<T>>,
    returned: Condvar,
    provider: Option<Arc<dyn Provider<T>>>,
    clock: Arc<dyn Clock>,
}

/// A pool of `T`s; cloning it shares the pool.
///
/// A static pool has the members it is given (more can be added; [`Pool::resize`] drains
/// members away). A dynamic pool creates members through a [`Provider`] on demand, up to its
/// maximum, and [`Pool::maintain`] destroys members idle longer than the idle timeout (never
/// below the minimum) and creates members up to the minimum.
pub struct Pool<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Pool<T> {
    fn clone(&self) -> Pool<T> {
        Pool {
            inner: self.inner.clone(),
        }
    }
}

impl<T> fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("status", &self.status())
            .finish()
    }
}

/// A checked-out member; returns to its pool when dropped.
pub struct Pooled<T> {
    member: Option<T>,
    pool: Arc<Inner<T>>,
    task: Option<usize>,
}

impl<T> Deref for Pooled<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // The member is only taken out by `detach` and `drop`, which consume the guard.
        self.member
            .as_ref()
            .unwrap_or_else(|| unreachable!("a live guard holds its member"))
    }
}

impl<T> DerefMut for Pooled<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.member
            .as_mut()
            .unwrap_or_else(|| unreachable!("a live guard holds its member"))
    }
}

impl<T: fmt::Debug> fmt::Debug for Pooled<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pooled").field(&self.member).finish()
    }
}

impl<T> Pooled<T> {
    /// Takes the member out of the pool for good: the pool's size drops by one (a dynamic
    /// pool may create a replacement).
    pub fn detach(mut self) -> T {
        let member = self
            .member
            .take()
            .unwrap_or_else(|| unreachable!("a live guard holds its member"));
        let mut state = self.pool.lock();
        state.in_use -= 1;
        state.size -= 1;
        state.draining = state.draining.saturating_sub(1);
        if let Some(task) = self.task {
            state.shares[task].in_use -= 1;
        }
        self.pool.unlock_and_wake(state);
        member
    }
}

impl<T> Drop for Pooled<T> {
    fn drop(&mut self) {
        if let Some(member) = self.member.take() {
            self.pool.give_back(member, self.task);
        }
    }
}

impl<T> Inner<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic elsewhere never leaves the counters half-updated: every update is a few
        // integer assignments with no call out in between.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stamp(&self, limits: &PoolLimits) -> Timestamp {
        // Only dynamic pools with an idle timeout need to know when a member went idle.
        if limits.idle_timeout.is_some() {
            self.clock.now()
        } else {
            Timestamp::ZERO
        }
    }

    /// Releases the lock and wakes a waiter, if any, to look again: one, or all when tasks
    /// share the pool by weight (only some of them may be entitled to the member).
    fn unlock_and_wake(&self, state: MutexGuard<'_, State<T>>) {
        let (wake, all) = (state.waiting > 0, !state.shares.is_empty());
        drop(state);
        match (wake, all) {
            (false, _) => {}
            (true, false) => self.returned.notify_one(),
            (true, true) => self.returned.notify_all(),
        }
    }

    /// Puts `member` among the idle ones, releases the lock, and wakes one waiter if any.
    fn park(&self, mut state: MutexGuard<'_, State<T>>, member: T) {
        let at = self.stamp(&state.limits);
        state.idle.push((member, at));
        self.unlock_and_wake(state);
    }

    fn give_back(&self, mut member: T, task: Option<usize>) {
        let healthy = self
            .provider
            .as_ref()
            .is_none_or(|provider| provider.recycle(&mut member));
        let mut state = self.lock();
        state.in_use -= 1;
        if let Some(task) = task {
            state.shares[task].in_use -= 1;
        }
        if state.draining == 0 && healthy {
            self.park(state, member);
            return;
        }
        // The member leaves: a drain it satisfies, or a failed health check.
        state.draining = state.draining.saturating_sub(1);
        state.size -= 1;
        match &self.provider {
            Some(provider) => {
                self.unlock_and_wake(state);
                provider.destroy(member);
            }
            None => {
                state.drained.push(member);
                self.unlock_and_wake(state);
            }
        }
    }
}

fn share_index<T>(state: &mut State<T>, task: &str) -> usize {
    state
        .shares
        .iter()
        .position(|share| share.task == task)
        .unwrap_or_else(|| {
            state.shares.push(Share {
                task: task.to_owned(),
                weight: 1,
                in_use: 0,
                waiting: 0,
            });
            state.shares.len() - 1
        })
}

/// How a checkout attempt ended when it found nothing idle.
enum Attempt<T> {
    Got(Pooled<T>),
    Create,
    Exhausted,
}

impl<T> Pool<T> {
    fn with(
        provider: Option<Arc<dyn Provider<T>>>,
        limits: PoolLimits,
        clock: Arc<dyn Clock>,
        members: Vec<T>,
    ) -> Pool<T> {
        let idle = members
            .into_iter()
            .map(|member| (member, Timestamp::ZERO))
            .collect::<Vec<_>>();
        Pool {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    size: idle.len(),
                    idle,
                    in_use: 0,
                    draining: 0,
                    waiting: 0,
                    limits,
                    drained: Vec::new(),
                    shares: Vec::new(),
                }),
                returned: Condvar::new(),
                provider,
                clock,
            }),
        }
    }

    /// A static pool of `members`.
    pub fn fixed(members: impl IntoIterator<Item = T>) -> Pool<T> {
        let members: Vec<T> = members.into_iter().collect();
        let limits = PoolLimits {
            min: 0,
            max: members.len(),
            idle_timeout: None,
        };
        Pool::with(None, limits, Arc::new(SystemClock::new()), members)
    }

    /// A dynamic pool whose members `provider` creates on demand within `limits`. Members up
    /// to the minimum are created by the first [`Pool::maintain`].
    pub fn dynamic(
        provider: Arc<dyn Provider<T>>,
        limits: PoolLimits,
        clock: Arc<dyn Clock>,
    ) -> Result<Pool<T>, Error> {
        limits.check()?;
        Ok(Pool::with(Some(provider), limits, clock, Vec::new()))
    }

    /// The pool's state now.
    pub fn status(&self) -> PoolStatus {
        let state = self.inner.lock();
        PoolStatus {
            size: state.size,
            in_use: state.in_use,
            available: state.idle.len(),
            waiting: state.waiting,
            draining: state.draining,
            max: state.limits.max,
        }
    }

    fn attempt(&self, state: &mut State<T>, task: Option<usize>) -> Attempt<T> {
        if task.is_some_and(|task| state.waiting > 0 && !state.may_take(task)) {
            return Attempt::Exhausted;
        }
        if let Some((member, _)) = state.idle.pop() {
            state.in_use += 1;
            if let Some(task) = task {
                state.shares[task].in_use += 1;
            }
            return Attempt::Got(Pooled {
                member: Some(member),
                pool: self.inner.clone(),
                task,
            });
        }
        if self.inner.provider.is_some() && state.size < state.limits.max {
            // Reserve the slot now; the member is created outside the lock.
            state.size += 1;
            state.in_use += 1;
            if let Some(task) = task {
                state.shares[task].in_use += 1;
            }
            return Attempt::Create;
        }
        Attempt::Exhausted
    }

    fn create(&self, task: Option<usize>) -> Result<Pooled<T>, Error> {
        let Some(provider) = &self.inner.provider else {
            return Err(Error::Exhausted);
        };
        match provider.create() {
            Ok(member) => Ok(Pooled {
                member: Some(member),
                pool: self.inner.clone(),
                task,
            }),
            Err(error) => {
                let mut state = self.inner.lock();
                state.size -= 1;
                state.in_use -= 1;
                if let Some(task) = task {
                    state.shares[task].in_use -= 1;
                }
                self.inner.unlock_and_wake(state);
                Err(Error::Provider(error))
            }
        }
    }

    /// Checks out an idle member, or creates one in a dynamic pool below its maximum, without
    /// waiting. Fails with [`Error::Exhausted`] when neither is possible.
    pub fn try_checkout(&self) -> Result<Pooled<T>, Error> {
        let attempt = self.attempt(&mut self.inner.lock(), None);
        match attempt {
            Attempt::Got(pooled) => Ok(pooled),
            Attempt::Create => self.create(None),
            Attempt::Exhausted => Err(Error::Exhausted),
        }
    }

    /// Like [`Pool::try_checkout`], waiting up to `timeout` for a member to be returned.
    /// Waiters are woken one per returned member.
    pub fn checkout_timeout(&self, timeout: Duration) -> Result<Pooled<T>, Error> {
        self.wait_for(None, timeout)
    }

    /// Checks out a member for `task`, waiting up to `timeout`, sharing the pool among tasks
    /// by weight ([`Pool::set_weight`]; a task not yet seen has weight 1): while others
    /// wait, a task at or above its fair share (`size × weight / Σ weights` of the tasks
    /// holding or waiting) lets a task below its share go first. Nothing held is revoked,
    /// and a member never stays idle while anyone waits. Checkouts without a task are not
    /// counted against any share.
    pub fn checkout_as(&self, task: &str, timeout: Duration) -> Result<Pooled<T>, Error> {
        let index = {
            let mut state = self.inner.lock();
            share_index(&mut state, task)
        };
        self.wait_for(Some(index), timeout)
    }

    /// Sets `task`'s weight (at least 1) for [`Pool::checkout_as`].
    pub fn set_weight(&self, task: &str, weight: u64) -> Result<(), Error> {
        if weight == 0 {
            return Err(Error::InvalidSetting {
                setting: "weight",
                reason: "must be at least 1",
            });
        }
        let mut state = self.inner.lock();
        let index = share_index(&mut state, task);
        state.shares[index].weight = weight;
        self.inner.unlock_and_wake(state);
        Ok(())
    }

    /// Every task's share now, in the order the tasks appeared.
    pub fn shares(&self) -> Vec<ShareStatus> {
        let state = self.inner.lock();
        (0..state.shares.len())
            .map(|index| {
                let share = &state.shares[index];
                ShareStatus {
                    task: share.task.clone(),
                    weight: share.weight,
                    in_use: share.in_use,
                    waiting: share.waiting,
                    fair_share: state.fair_share(index),
                }
            })
            .collect()
    }

    fn wait_for(&self, task: Option<usize>, timeout: Duration) -> Result<Pooled<T>, Error> {
        let deadline = Instant::now() + timeout;
        let mut state = self.inner.lock();
        loop {
            match self.attempt(&mut state, task) {
                Attempt::Got(pooled) => return Ok(pooled),
                Attempt::Create => {
                    drop(state);
                    return self.create(task);
                }
                Attempt::Exhausted => {}
            }
            let now = Instant::now();
            if now >= deadline {
                // Others may have deferred to this caller: let them look again.
                self.inner.unlock_and_wake(state);
                return Err(Error::Timeout { waited: timeout });
            }
            state.waiting += 1;
            if let Some(task) = task {
                state.shares[task].waiting += 1;
            }
            let (guard, _) = self
                .inner
                .returned
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner);
            state = guard;
            state.waiting -= 1;
            if let Some(task) = task {
                state.shares[task].waiting -= 1;
            }
        }
    }

    /// Adds a member (a static pool grows by one; a dynamic pool takes it if below its
    /// maximum, and otherwise hands it back in the error).
    pub fn add(&self, member: T) -> Result<(), (T, Error)> {
        let mut state = self.inner.lock();
        if self.inner.provider.is_some() && state.size >= state.limits.max {
            return Err((member, Error::Exhausted));
        }
        state.size += 1;
        if self.inner.provider.is_none() {
            state.limits.max = state.limits.max.max(state.size);
        }
        self.inner.park(state, member);
        Ok(())
    }

    /// Shrinks a static pool to `size` members: idle members leave at once (returned here),
    /// checked-out ones leave when they come back (collect them with
    /// [`Pool::take_drained`]); nothing in use is revoked. Growing needs members: use
    /// [`Pool::add`]. A dynamic pool's members belong to its provider: resize it with
    /// [`Pool::set_limits`] (this returns [`Error::InvalidSetting`] for one).
    pub fn resize(&self, size: usize) -> Result<Vec<T>, Error> {
        if self.inner.provider.is_some() {
            return Err(Error::InvalidSetting {
                setting: "size",
                reason: "a dynamic pool is resized through set_limits",
            });
        }
        let mut state = self.inner.lock();
        let removed = self.shrink(&mut state, size);
        state.limits.max = size.max(state.size - state.draining);
        Ok(removed.into_iter().map(|(member, _)| member).collect())
    }

    fn shrink(&self, state: &mut State<T>, size: usize) -> Vec<(T, Timestamp)> {
        let keep = state.size - state.draining;
        if size >= keep {
            // Growing back cancels draining first.
            let cancel = (size - keep).min(state.draining);
            state.draining -= cancel;
            return Vec::new();
        }
        let excess = keep - size;
        let from_idle = excess.min(state.idle.len());
        let removed = state.idle.split_off(state.idle.len() - from_idle);
        state.size -= from_idle;
        state.draining += excess - from_idle;
        removed
    }

    /// Members drained from a static pool since the last call.
    pub fn take_drained(&self) -> Vec<T> {
        std::mem::take(&mut self.inner.lock().drained)
    }

    /// Changes a dynamic pool's limits live. Lowering the maximum below the size destroys
    /// idle members and drains checked-out ones as they return.
    pub fn set_limits(&self, limits: PoolLimits) -> Result<(), Error> {
        limits.check()?;
        let mut state = self.inner.lock();
        state.limits = limits;
        let size = limits.max.min(state.size);
        let removed = self.shrink(&mut state, size);
        drop(state);
        self.destroy(removed);
        Ok(())
    }

    fn destroy(&self, members: Vec<(T, Timestamp)>) {
        if let Some(provider) = &self.inner.provider {
            for (member, _) in members {
                provider.destroy(member);
            }
        }
    }

    /// Housekeeping for a dynamic pool, to call periodically: destroys members idle longer
    /// than the idle timeout while the pool is above its minimum, then creates members up to
    /// the minimum. Returns how many were destroyed and created; the first creation error
    /// stops it.
    pub fn maintain(&self) -> Result<(usize, usize), Error> {
        let Some(provider) = &self.inner.provider else {
            return Ok((0, 0));
        };
        let now = self.inner.clock.now();
        let mut state = self.inner.lock();
        let mut expired = Vec::new();
        if let Some(timeout) = state.limits.idle_timeout {
            // The oldest idle members are at the front (checkout takes the most recent).
            let spare = (state.size - state.draining).saturating_sub(state.limits.min);
            let stale = state
                .idle
                .iter()
                .take(spare)
                .take_while(|(_, since)| now.saturating_duration_since(*since) >= timeout)
                .count();
            expired = state.idle.drain(..stale).collect();
            state.size -= stale;
        }
        let missing = state.limits.min.saturating_sub(state.size);
        state.size += missing;
        drop(state);
        let destroyed = expired.len();
        self.destroy(expired);
        let mut created = 0;
        for _ in 0..missing {
            match provider.create() {
                Ok(member) => {
                    created += 1;
                    self.inner.park(self.inner.lock(), member);
                }
                Err(error) => {
                    self.inner.lock().size -= missing - created;
                    return Err(Error::Provider(error));
                }
            }
        }
        Ok((destroyed, created))
    }
}

impl Pool<Resource> {
    /// A static pool of the `resources` that pass every constraint of `selector` (a label
    /// selector: `zone in (a, b)`, `tier = batch`).
    pub fn select(
        resources: impl IntoIterator<Item = Resource>,
        selector: &[Constraint],
    ) -> Pool<Resource> {
        Pool::fixed(resources.into_iter().filter(|resource| {
            selector
                .iter()
                .all(|constraint| constraint.matches(resource))
        }))
    }
}
