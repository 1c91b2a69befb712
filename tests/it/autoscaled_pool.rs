//! A dynamic pool driven by the autoscaler: the wiring the facade does, across `rm-pool` and
//! `rm-scale`, which never name each other.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rm_model::{ManualClock, Quantity, Timestamp};
use rm_pool::{Pool, PoolLimits, Provider, ProviderError};
use rm_scale::{Autoscaler, Outcome, ScaleRefused, ScaleTarget, ThresholdScaling};

#[derive(Default)]
struct Workers {
    created: AtomicUsize,
}

impl Provider<usize> for Workers {
    fn create(&self) -> Result<usize, ProviderError> {
        Ok(self.created.fetch_add(1, Ordering::SeqCst))
    }
}

/// A dynamic pool as a scale target: its size is its minimum (members kept warm), its
/// metric the share of members in use or asked for, in percent.
struct Scaled {
    pool: Pool<usize>,
}

impl ScaleTarget for Scaled {
    fn size(&self) -> u64 {
        u64::try_from(self.pool.status().size).unwrap_or(u64::MAX)
    }

    fn metric(&self) -> Quantity {
        let status = self.pool.status();
        let busy = (status.in_use + status.waiting) as i64;
        Quantity::from_milli(busy * 100_000 / status.size.max(1) as i64)
    }

    fn scale_to(&self, size: u64) -> Result<(), ScaleRefused> {
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        let refused = |error: rm_pool::Error| ScaleRefused {
            message: error.to_string(),
        };
        self.pool
            .set_limits(PoolLimits {
                min: size,
                max: size,
                idle_timeout: None,
            })
            .map_err(refused)?;
        self.pool.maintain().map(|_| ()).map_err(refused)
    }
}

#[test]
fn the_autoscaler_grows_a_busy_pool_and_drains_an_idle_one() {
    let pool = Pool::dynamic(
        Arc::new(Workers::default()),
        PoolLimits {
            min: 2,
            max: 2,
            idle_timeout: None,
        },
        Arc::new(ManualClock::new()),
    )
    .unwrap();
    pool.maintain().unwrap();
    let down_fast = rm_scale::Behavior {
        stabilization: Duration::ZERO,
        ..rm_scale::Behavior::scale_down_default()
    };
    let rule = ThresholdScaling::new(Quantity::from_units(50), 1, 10)
        .unwrap()
        .with_scale_down(down_fast);
    let mut autoscaler = Autoscaler::new(16);
    autoscaler.add(Arc::new(Scaled { pool: pool.clone() }), rule);

    // Both members busy: 100% against 50% doubles the pool.
    let held: Vec<_> = (0..2).map(|_| pool.try_checkout().unwrap()).collect();
    autoscaler.tick(Timestamp::ZERO);
    assert_eq!(pool.status().size, 4);
    assert_eq!(pool.status().available, 2);

    // Most work finishes: 1 of 4 busy (25%) halves the pool; idle members go first.
    let one = pool.try_checkout().unwrap();
    drop(held);
    autoscaler.tick(Timestamp::ZERO + Duration::from_secs(30));
    let status = pool.status();
    assert_eq!((status.size, status.in_use, status.draining), (2, 1, 0));

    // Shrinking below what is in use drains rather than revokes.
    let two = pool.try_checkout().unwrap();
    pool.set_limits(PoolLimits {
        min: 1,
        max: 1,
        idle_timeout: None,
    })
    .unwrap();
    assert_eq!((pool.status().size, pool.status().draining), (2, 1));
    drop((one, two));
    assert_eq!(pool.status().size, 1);
    let outcomes: Vec<_> = autoscaler
        .decisions()
        .map(|record| record.outcome.clone())
        .collect();
    assert_eq!(outcomes, [Outcome::Applied, Outcome::Applied]);
}
