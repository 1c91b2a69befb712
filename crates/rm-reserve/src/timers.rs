//! The expiry timers of pending holds: a binary min-heap addressed by handle, so that a
//! confirm, a release or a renewal removes or moves its hold's timer at once instead of
//! leaving a dead entry to be skipped (and pruned) later. The heap holds exactly one entry per
//! pending hold, and its storage is reused, so steady traffic does not allocate.

use rm_model::{FencingToken, ReservationId, Timestamp};

/// Marks a handle that addresses no entry.
const FREE: usize = usize::MAX;

#[derive(Debug)]
struct Entry {
    at: Timestamp,
    token: FencingToken,
    id: ReservationId,
    handle: usize,
}

impl Entry {
    fn key(&self) -> (Timestamp, FencingToken) {
        (self.at, self.token)
    }
}

/// A due timer: the hold to look at.
#[derive(Debug)]
pub(crate) struct Due {
    pub(crate) token: FencingToken,
    pub(crate) id: ReservationId,
}

/// Expiry timers ordered by deadline (then token), each addressed by the handle
/// [`TimerHeap::insert`] returned. A handle is only honoured together with its hold's token,
/// so a handle freed by [`TimerHeap::pop_due`] and given to another hold is never mistaken
/// for the first.
#[derive(Debug, Default)]
pub(crate) struct TimerHeap {
    heap: Vec<Entry>,
    /// Handle → position in `heap`, or [`FREE`].
    positions: Vec<usize>,
    /// Handles to give out again.
    spare: Vec<usize>,
}

impl TimerHeap {
    /// The number of scheduled timers.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Timestamp> {
        self.heap.first().map(|e| e.at)
    }

    /// Schedules the expiry of hold `id` (fenced by `token`) at `at`; returns its handle.
    pub(crate) fn insert(
        &mut self,
        at: Timestamp,
        token: FencingToken,
        id: ReservationId,
    ) -> usize {
        let handle = self.spare.pop().unwrap_or_else(|| {
            self.positions.push(FREE);
            self.positions.len() - 1
        });
        let position = self.heap.len();
        self.heap.push(Entry {
            at,
            token,
            id,
            handle,
        });
        self.positions[handle] = position;
        self.sift_up(position);
        handle
    }

    /// The position of `handle`'s entry, if it is still the timer of `token`.
    fn find(&self, handle: usize, token: FencingToken) -> Option<usize> {
        let position = *self.positions.get(handle)?;
        (position != FREE && self.heap[position].token == token).then_some(position)
    }

    /// Cancels the timer `handle` of `token`; returns whether it was still scheduled.
    pub(crate) fn remove(&mut self, handle: usize, token: FencingToken) -> bool {
        let Some(position) = self.find(handle, token) else {
            return false;
        };
        self.take(position);
        true
    }

    /// Moves the timer `handle` of `token` to `at`; returns false (and changes nothing) when
    /// it is no longer scheduled.
    pub(crate) fn reschedule(&mut self, handle: usize, token: FencingToken, at: Timestamp) -> bool {
        let Some(position) = self.find(handle, token) else {
            return false;
        };
        let earlier = at < self.heap[position].at;
        self.heap[position].at = at;
        if earlier {
            self.sift_up(position);
        } else {
            self.sift_down(position);
        }
        true
    }

    /// Removes and returns the earliest timer if it is due by `now`.
    pub(crate) fn pop_due(&mut self, now: Timestamp) -> Option<Due> {
        if self.heap.first()?.at > now {
            return None;
        }
        let entry = self.take(0);
        Some(Due {
            token: entry.token,
            id: entry.id,
        })
    }

    /// Removes the entry at `position`, freeing its handle.
    fn take(&mut self, position: usize) -> Entry {
        let last = self.heap.len() - 1;
        self.swap(position, last);
        let entry = self
            .heap
            .pop()
            .unwrap_or_else(|| unreachable!("the heap is not empty"));
        self.positions[entry.handle] = FREE;
        self.spare.push(entry.handle);
        if position < self.heap.len() {
            // The entry moved into the hole may belong above or below it.
            self.sift_up(position);
            self.sift_down(position);
        }
        entry
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.positions[self.heap[a].handle] = a;
        self.positions[self.heap[b].handle] = b;
    }

    fn sift_up(&mut self, mut position: usize) {
        while position > 0 {
            let parent = (position - 1) / 2;
            if self.heap[parent].key() <= self.heap[position].key() {
                break;
            }
            self.swap(parent, position);
            position = parent;
        }
    }

    fn sift_down(&mut self, mut position: usize) {
        loop {
            let left = 2 * position + 1;
            let right = left + 1;
            let mut least = position;
            if left < self.heap.len() && self.heap[left].key() < self.heap[least].key() {
                least = left;
            }
            if right < self.heap.len() && self.heap[right].key() < self.heap[least].key() {
                least = right;
            }
            if least == position {
                break;
            }
            self.swap(least, position);
            position = least;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn at(ms: u64) -> Timestamp {
        Timestamp::ZERO + Duration::from_millis(ms)
    }

    fn id(n: u64) -> ReservationId {
        ReservationId::new(&format!("r{n}")).expect("valid id")
    }

    /// Random inserts, removals, reschedules and pops against a sorted map: the heap pops in
    /// the map's order and stale handles change nothing.
    #[test]
    fn matches_a_sorted_map() {
        let mut heap = TimerHeap::default();
        let mut model: BTreeMap<(Timestamp, FencingToken), usize> = BTreeMap::new();
        let mut handles: Vec<(usize, FencingToken)> = Vec::new();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut random = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for step in 0..20_000u64 {
            match random(5) {
                0 | 1 => {
                    let token = FencingToken(step + 1);
                    let deadline = at(random(1_000));
                    let handle = heap.insert(deadline, token, id(step));
                    model.insert((deadline, token), handle);
                    handles.push((handle, token));
                }
                2 if !handles.is_empty() => {
                    let (handle, token) =
                        handles.swap_remove(random(handles.len() as u64) as usize);
                    let live = model.iter().find(|(k, _)| k.1 == token).map(|(k, _)| *k);
                    assert_eq!(heap.remove(handle, token), live.is_some());
                    if let Some(key) = live {
                        model.remove(&key);
                    }
                }
                3 if !handles.is_empty() => {
                    let (handle, token) = handles[random(handles.len() as u64) as usize];
                    let deadline = at(random(1_000));
                    let live = model.iter().find(|(k, _)| k.1 == token).map(|(k, _)| *k);
                    assert_eq!(heap.reschedule(handle, token, deadline), live.is_some());
                    if let Some(key) = live {
                        model.remove(&key);
                        model.insert((deadline, token), handle);
                    }
                }
                _ => {
                    let now = at(random(1_000));
                    while let Some(due) = heap.pop_due(now) {
                        let (&key, _) = model.iter().next().expect("the model has it too");
                        assert!(key.0 <= now);
                        assert_eq!(key.1, due.token);
                        model.remove(&key);
                    }
                    assert!(model.keys().next().is_none_or(|k| k.0 > now));
                }
            }
            assert_eq!(heap.len(), model.len());
            assert_eq!(heap.next(), model.keys().next().map(|k| k.0));
        }
    }
}
