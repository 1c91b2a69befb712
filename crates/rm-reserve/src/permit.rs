//! Permits: lightweight leases on one capacity, for semaphore-like uses (connection slots,
//! licence seats, rate-limited tokens) where a full reservation is more than needed.
//!
//! A permit is a confirmed hold without a reservation record: no id, no TTL, no events. It is
//! taken with one compare-and-swap on the capacity's free counter and given back when the
//! [`Permit`] is dropped. Permits share the capacity with reservations (each sees what the
//! other holds), carry a fencing token from the same sequence as reservations, and show in
//! snapshots as `leased`, where the conservation audit counts them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rm_model::{FencingToken, Quantity, ResourceName, ResourceType, Unit};

use crate::catalog::{CLOSED, Slot};

/// Why a permit could not be taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PermitError {
    /// Not enough is free right now.
    #[error("take a permit of {requested} from {resource}: only {available} is free")]
    NoPermits {
        /// The capacity's resource.
        resource: ResourceName,
        /// What was asked, in the capacity's unit.
        requested: Quantity,
        /// What was free when asked.
        available: Quantity,
    },
    /// The amount is not positive.
    #[error("take a permit of {requested} from {resource}: the amount must be positive")]
    InvalidAmount {
        /// The capacity's resource.
        resource: ResourceName,
        /// What was asked.
        requested: Quantity,
    },
    /// The capacity was removed or its resource unregistered.
    #[error("take a permit from {resource}: the capacity no longer exists")]
    Closed {
        /// The capacity's resource.
        resource: ResourceName,
    },
}

/// The permits of one capacity of one resource; get one from
/// [`ReservationManager::permits`](crate::ReservationManager::permits).
///
/// ```
/// use rm_model::{Quantity, Resource, ResourceCapacity, ResourceType, Unit};
/// use rm_reserve::{ReservationLedger, ReservationManager};
///
/// let manager = ReservationManager::new();
/// let licences = ResourceType::custom("licences")?;
/// let seats = ResourceCapacity::of(2, Unit::custom("seats")?)?;
/// manager.register_resource(Resource::new("matlab", licences.clone(), seats)?)?;
///
/// let pool = manager.permits(&"matlab".parse()?, &licences)?;
/// let first = pool.try_acquire(Quantity::from(1))?;
/// let second = pool.try_acquire(Quantity::from(1))?;
/// assert!(pool.try_acquire(Quantity::from(1)).is_err(), "both seats are taken");
/// assert!(second.fencing_token() > first.fencing_token());
/// drop(first);
/// assert_eq!(pool.available(), Quantity::from(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct PermitPool {
    pub(crate) slot: Arc<Slot>,
    pub(crate) dim: usize,
    pub(crate) resource: ResourceName,
    pub(crate) resource_type: ResourceType,
    pub(crate) unit: Unit,
    pub(crate) tokens: Arc<AtomicU64>,
}

impl PermitPool {
    /// Takes `amount` (in the capacity's unit) if that much is free now; never waits.
    pub fn try_acquire(&self, amount: Quantity) -> Result<Permit<'_>, PermitError> {
        let milli = amount.as_milli();
        if milli <= 0 {
            return Err(PermitError::InvalidAmount {
                resource: self.resource.clone(),
                requested: amount,
            });
        }
        if !self.slot.take(self.dim, milli) {
            let free = self.slot.raw_free(self.dim);
            if free <= CLOSED / 2 {
                return Err(PermitError::Closed {
                    resource: self.resource.clone(),
                });
            }
            return Err(PermitError::NoPermits {
                resource: self.resource.clone(),
                requested: amount,
                available: Quantity::from_milli(free.max(0)),
            });
        }
        let token = FencingToken(self.tokens.fetch_add(1, Ordering::AcqRel) + 1);
        Ok(Permit {
            pool: self,
            amount: milli,
            token,
        })
    }

    /// What is free now (for reservations and permits alike).
    pub fn available(&self) -> Quantity {
        Quantity::from_milli(self.slot.free(self.dim))
    }

    /// The resource the permits are of.
    pub fn resource(&self) -> &ResourceName {
        &self.resource
    }

    /// The capacity type the permits are of.
    pub fn resource_type(&self) -> &ResourceType {
        &self.resource_type
    }

    /// The unit of permit amounts.
    pub fn unit(&self) -> &Unit {
        &self.unit
    }
}

/// A lease on part of a capacity, given back when dropped.
#[derive(Debug)]
#[must_use = "a permit is given back as soon as it is dropped"]
pub struct Permit<'a> {
    pool: &'a PermitPool,
    amount: i64,
    token: FencingToken,
}

impl Permit<'_> {
    /// How much it holds, in the capacity's unit.
    pub fn amount(&self) -> Quantity {
        Quantity::from_milli(self.amount)
    }

    /// Its fencing token: greater than every grant's and permit's before it.
    pub fn fencing_token(&self) -> FencingToken {
        self.token
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.pool.slot.give(self.pool.dim, self.amount);
    }
}
