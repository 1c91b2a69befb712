//! A fixed-capacity ring of timestamped samples: the windows autoscalers look back over,
//! allocated once so that a tick allocates nothing.

use std::time::Duration;

use rm_model::Timestamp;

/// The last `capacity` samples, oldest first; pushing into a full ring drops the oldest.
#[derive(Clone, Debug)]
pub(crate) struct Ring<T: Copy> {
    samples: Box<[(Timestamp, T)]>,
    start: usize,
    len: usize,
}

impl<T: Copy + Default> Ring<T> {
    /// An empty ring holding up to `capacity` samples (at least one).
    pub(crate) fn with_capacity(capacity: usize) -> Ring<T> {
        Ring {
            samples: vec![(Timestamp::ZERO, T::default()); capacity.max(1)].into_boxed_slice(),
            start: 0,
            len: 0,
        }
    }
}

impl<T: Copy> Ring<T> {
    /// Adds a sample, dropping the oldest when full.
    pub(crate) fn push(&mut self, at: Timestamp, value: T) {
        let capacity = self.samples.len();
        if self.len < capacity {
            self.samples[(self.start + self.len) % capacity] = (at, value);
            self.len += 1;
        } else {
            self.samples[self.start] = (at, value);
            self.start = (self.start + 1) % capacity;
        }
    }

    /// The samples, oldest first: the ring's two contiguous runs, chained.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &(Timestamp, T)> + '_ {
        let end = self.start + self.len;
        let (first, second) = if end <= self.samples.len() {
            (&self.samples[self.start..end], &self.samples[..0])
        } else {
            (
                &self.samples[self.start..],
                &self.samples[..end - self.samples.len()],
            )
        };
        first.iter().chain(second)
    }

    /// The samples taken less than `window` before `now` (a sample exactly `window` old is
    /// out, as Kubernetes' `After(now - window)`), newest first. Samples are pushed in time
    /// order, so the walk stops at the first one outside the window.
    pub(crate) fn within(
        &self,
        now: Timestamp,
        window: Duration,
    ) -> impl Iterator<Item = &(Timestamp, T)> + '_ {
        self.iter()
            .rev()
            .take_while(move |(at, _)| now.saturating_duration_since(*at) < window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_samples_in_order() {
        let mut ring = Ring::with_capacity(3);
        for i in 1..=5u64 {
            ring.push(Timestamp::from_nanos(i), i);
        }
        let values: Vec<u64> = ring.iter().map(|(_, v)| *v).collect();
        assert_eq!(values, [3, 4, 5]);
        let recent: Vec<u64> = ring
            .within(Timestamp::from_nanos(5), Duration::from_nanos(2))
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(recent, [5, 4]);
    }
}
