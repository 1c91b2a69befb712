//! The replay's future events in time order: the arrivals, all known before the loop starts,
//! in one sorted list read front to back, and the finishes, scheduled as instances start, in
//! a heap that holds only those still due. (One heap of both held every arrival of the trace
//! from the start: tens of thousands of entries that each pop had to sift through.)

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::Ev;

/// Future events, taken in (time, event) order: at one time, arrivals before finishes, each
/// kind by its index.
pub(super) struct Events {
    /// Every arrival, sorted; those before `next` are taken.
    arrivals: Vec<(u64, Ev)>,
    next: usize,
    /// The events scheduled while the loop runs.
    scheduled: BinaryHeap<Reverse<(u64, Ev)>>,
}

impl Events {
    /// The events known before the loop starts, in any order.
    pub(super) fn new(mut known: Vec<(u64, Ev)>) -> Events {
        known.sort_unstable();
        Events {
            arrivals: known,
            next: 0,
            scheduled: BinaryHeap::new(),
        }
    }

    /// The next event, without taking it.
    pub(super) fn peek(&self) -> Option<(u64, Ev)> {
        let known = self.arrivals.get(self.next).copied();
        let scheduled = self.scheduled.peek().map(|&Reverse(event)| event);
        match (known, scheduled) {
            (Some(known), Some(scheduled)) => Some(known.min(scheduled)),
            (known, scheduled) => known.or(scheduled),
        }
    }

    /// Takes the next event.
    pub(super) fn pop(&mut self) -> Option<(u64, Ev)> {
        let next = self.peek()?;
        if self.arrivals.get(self.next) == Some(&next) {
            self.next += 1;
        } else {
            self.scheduled.pop();
        }
        Some(next)
    }

    /// Schedules `event` at `at`.
    pub(super) fn push(&mut self, at: u64, event: Ev) {
        self.scheduled.push(Reverse((at, event)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The events come out as one heap of all of them gives them, scheduled ones interleaved
    /// with the known ones, ties at one time included.
    #[test]
    fn events_come_out_in_the_order_of_one_heap() {
        let mut rng = rm_testkit::Rng::new(0x9e37_79b9_7f4a_7c15);
        let mut next = |n: u64| rng.below(n);
        let known: Vec<(u64, Ev)> = (0..500).map(|i| (next(50), Ev::Arrive(i))).collect();
        let mut events = Events::new(known.clone());
        let mut heap: BinaryHeap<Reverse<(u64, Ev)>> = known.into_iter().map(Reverse).collect();
        let mut finishes = 0;
        loop {
            assert_eq!(events.peek(), heap.peek().map(|r| r.0));
            let (Some(got), Some(Reverse(want))) = (events.pop(), heap.pop()) else {
                break;
            };
            assert_eq!(got, want);
            // Each event may schedule a finish at its time or later.
            if finishes < 800 && next(3) > 0 {
                let event = (got.0 + next(4), Ev::Finish(finishes, next(2) as u32));
                events.push(event.0, event.1);
                heap.push(Reverse(event));
                finishes += 1;
            }
        }
        assert_eq!(events.pop(), None);
        assert!(finishes > 500);
    }
}
