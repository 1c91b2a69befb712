//! Expiry and retention: the timers of pending holds, the sweep that runs what is due, and
//! forgetting ended reservations once their retention has run out.

use super::*;

impl ReservationManager {
    /// Schedules the pending hold's expiry at `at`, or moves its timer there; the caller
    /// holds the record's state lock.
    pub(super) fn arm(&self, record: &Record, state: &mut RecordState, at: Timestamp) {
        let mut timers = lock(&self.timers);
        let moved = state
            .timer
            .is_some_and(|handle| timers.reschedule(handle, record.token, at));
        if !moved {
            state.timer = Some(timers.insert(at, record.token, record.id.clone()));
        }
        // Under the heap's lock, so that a sweep finishing now cannot raise the hint past it
        // (the hint only changes under that lock, so a load and a store are enough).
        if at.as_nanos() < self.next_timer.load(Ordering::Acquire) {
            self.next_timer.store(at.as_nanos(), Ordering::Release);
        }
    }

    /// Cancels the hold's expiry timer, if it has one; the caller holds its state lock.
    pub(super) fn disarm(&self, record: &Record, state: &mut RecordState) {
        if let Some(handle) = state.timer.take() {
            lock(&self.timers).remove(handle, record.token);
        }
    }

    /// Runs every timer due by `now`; returns the holds it expired.
    ///
    /// When it returns, every hold whose deadline is at or before `now` has ended, whatever
    /// other threads are doing: a thread that finds a timer due while another thread sweeps
    /// waits for that sweep (which may be expiring the very hold it needs) and then runs what
    /// is left. The hint is raised only at the end of a sweep, so no thread skips expiry while
    /// a due hold is still pending.
    #[inline]
    pub(super) fn run_timers(&self, now: Timestamp) -> Vec<Reservation> {
        if now.as_nanos() >= self.next_forget.load(Ordering::Acquire) {
            // Forgetting frees no capacity, so nobody waits for it: threads share the work.
            self.forget_due(now);
        }
        if now.as_nanos() < self.next_timer.load(Ordering::Acquire) {
            return Vec::new();
        }
        self.expire_due(now)
    }

    /// The sweep of [`Self::run_timers`], apart so that the check before it stays small
    /// (every operation makes that check).
    #[inline(never)]
    fn expire_due(&self, now: Timestamp) -> Vec<Reservation> {
        let _sweep = lock(&self.sweep);
        let mut expired = Vec::new();
        loop {
            // One at a time, so that no list is built and the heap's lock is never held
            // while a record's locks are taken.
            let due = {
                let mut timers = lock(&self.timers);
                let due = timers.pop_due(now);
                if due.is_none() {
                    // Every timer due by `now` has run: nothing below the heap's earliest
                    // deadline remains, and a timer scheduled meanwhile lowers it again.
                    let next = timers.next().map_or(u64::MAX, Timestamp::as_nanos);
                    self.next_timer.store(next, Ordering::Release);
                }
                due
            };
            let Some(due) = due else {
                break;
            };
            let Some(record) = self.records.get(&due.id) else {
                continue;
            };
            if record.token != due.token {
                continue;
            }
            let mut guards = record.lock_slots();
            let mut state = lock(&record.state);
            let mut outbox = Outbox::default();
            if self.expire_if_due(&record, &mut guards, &mut state, now, &mut outbox) {
                expired.push(record.reservation(&state));
            }
            drop(guards);
            self.flush(&record, &state, &mut outbox, now);
        }
        expired
    }

    /// Puts every active hold in the holder index, which was just switched on, and marks it
    /// ready (see [`crate::holders`]).
    pub(super) fn fill_holder_index(&self) {
        self.records.for_each(|record| {
            let mut state = lock(&record.state);
            if state.state.holds_capacity() {
                self.holders.add(record, &mut state);
            }
        });
        self.holders.ready();
    }

    /// Forgets the ended reservations whose retention ran out by `now`, keeping their records
    /// for reuse.
    #[inline(never)]
    pub(super) fn forget_due(&self, now: Timestamp) {
        /// Entries taken per lock of the retention queue (and cells and records given back
        /// per lock of the free list), on the stack.
        const BATCH: usize = 16;
        loop {
            let mut due: SmallVec<[(Timestamp, FencingToken, ReservationId); BATCH]> =
                SmallVec::new();
            {
                let mut forgets = lock(&self.forgets);
                while due.len() < BATCH && forgets.front().is_some_and(|(at, _, _)| *at <= now) {
                    if let Some(entry) = forgets.pop_front() {
                        due.push(entry);
                    }
                }
                let next = forgets
                    .front()
                    .map_or(u64::MAX, |(at, _, _)| (*at + self.forget_slack).as_nanos());
                self.next_forget.store(next, Ordering::Release);
            }
            let more = due.len() == BATCH;
            let mut cells: SmallVec<[u32; BATCH]> = SmallVec::new();
            let mut reusable: SmallVec<[Arc<Record>; BATCH]> = SmallVec::new();
            // Drained in place: moving the batch into the loop would copy all its slots.
            for (_, token, id) in due.drain(..) {
                // The token names the life that ended and queued this entry (a life ends
                // once, and a reused id or record gets a new token), so a match is that
                // ended reservation: no need to lock its state to ask.
                let Some((cell, mut record)) = self.records.remove(&id, token) else {
                    continue;
                };
                cells.extend(cell);
                if record.empty_for_reuse() {
                    reusable.push(record);
                }
            }
            if !cells.is_empty() || !reusable.is_empty() {
                self.records.give_back(cells.drain(..), reusable.drain(..));
            }
            if !more {
                return;
            }
        }
    }

    /// Expires the reservation if it is pending and its TTL has run out by `now`; the caller
    /// holds its slot locks and state lock. Returns whether it expired it.
    pub(super) fn expire_if_due(
        &self,
        record: &Record,
        guards: &mut [MutexGuard<'_, SlotState>],
        state: &mut RecordState,
        now: Timestamp,
        outbox: &mut Outbox,
    ) -> bool {
        let due = state.state == ReservationState::Pending
            && state.expires_at.is_some_and(|at| at <= now);
        if due {
            self.end(
                record,
                guards,
                state,
                (ReservationState::Expired, None),
                now,
                outbox,
            );
        }
        due
    }
}
