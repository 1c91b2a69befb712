//! Time as the system sees it: a [`Clock`] trait so that TTLs, cooldowns, stabilisation
//! windows and aging are tested with a [`ManualClock`] instead of sleeping.
//!
//! Timestamps are monotonic nanoseconds since the clock's own origin, not wall-clock instants:
//! the ledger contract speaks in durations, and a timestamp only compares with readings of the
//! same clock.

use std::fmt;
use std::ops::{Add, Sub};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A reading of a [`Clock`]: nanoseconds since the clock's origin.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The clock's origin.
    pub const ZERO: Timestamp = Timestamp(0);

    /// A reading `nanos` nanoseconds after the origin.
    pub const fn from_nanos(nanos: u64) -> Timestamp {
        Timestamp(nanos)
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// The time since the origin.
    pub const fn since_origin(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// How long after `earlier` this is; zero when it is not after it.
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    /// Saturates at the largest timestamp (about 584 years after the origin).
    fn add(self, duration: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(nanos(duration)))
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;
    /// Saturates at the origin.
    fn sub(self, duration: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(nanos(duration)))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.since_origin())
    }
}

/// A source of monotonic time.
///
/// Contract: readings never go backwards; `now` is cheap and callable from any thread.
pub trait Clock: Send + Sync {
    /// The current reading.
    fn now(&self) -> Timestamp;
}

impl<T: Clock + ?Sized> Clock for &T {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

impl<T: Clock + ?Sized> Clock for Box<T> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

impl<T: Clock + ?Sized> Clock for Arc<T> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }
}

/// The real monotonic clock, with its origin at construction.
#[derive(Clone, Copy, Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock whose origin is now.
    pub fn new() -> SystemClock {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> SystemClock {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp(nanos(self.origin.elapsed()))
    }
}

/// A clock that moves only when told to, for tests and simulations in virtual time.
///
/// ```
/// use std::time::Duration;
/// use rm_model::{Clock, ManualClock, Timestamp};
///
/// let clock = ManualClock::new();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(clock.now(), Timestamp::from_nanos(5_000_000_000));
/// ```
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
}

impl ManualClock {
    /// A clock at its origin.
    pub fn new() -> ManualClock {
        ManualClock::default()
    }

    /// Moves the clock forward by `duration`.
    pub fn advance(&self, duration: Duration) {
        let step = nanos(duration);
        // fetch_update cannot fail with a closure that always returns Some.
        let _ = self
            .nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                Some(now.saturating_add(step))
            });
    }

    /// Moves the clock to `to`; a reading earlier than the current one is ignored, so the
    /// clock never goes backwards.
    pub fn set(&self, to: Timestamp) {
        self.nanos.fetch_max(to.0, Ordering::AcqRel);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.nanos.load(Ordering::Acquire))
    }
}

/// Serde for an optional duration as whole milliseconds (`ttl_ms = 30000` reads poorly as a
/// struct of seconds and nanoseconds).
pub(crate) mod opt_duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => {
                serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
            }
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(deserializer)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_forward() {
        let clock = ManualClock::new();
        assert_eq!(clock.now(), Timestamp::ZERO);
        clock.advance(Duration::from_millis(3));
        clock.set(Timestamp::from_nanos(1));
        assert_eq!(clock.now(), Timestamp::from_nanos(3_000_000));
        clock.set(Timestamp::from_nanos(5_000_000));
        assert_eq!(clock.now().since_origin(), Duration::from_millis(5));
        clock.advance(Duration::MAX);
        assert_eq!(clock.now().as_nanos(), u64::MAX);
    }

    #[test]
    fn system_clock_is_monotonic() {
        let clock = SystemClock::new();
        let a = clock.now();
        let b = clock.now();
        assert!(b >= a);
    }

    #[test]
    fn timestamp_arithmetic_saturates() {
        let t = Timestamp::from_nanos(10);
        assert_eq!(t - Duration::from_nanos(20), Timestamp::ZERO);
        assert_eq!(t + Duration::MAX, Timestamp::from_nanos(u64::MAX));
        assert_eq!(
            t.saturating_duration_since(Timestamp::from_nanos(20)),
            Duration::ZERO
        );
        let shared: Arc<dyn Clock> = Arc::new(ManualClock::new());
        assert_eq!(shared.now(), Timestamp::ZERO);
    }
}
