//! Events: every state change of the system, for observers (monitoring, contention wake-ups,
//! quota accounting, audit logs) that must never sit on the hot path.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::name::{RequesterId, ResourceName};
use crate::quantity::Quantity;
use crate::reservation::{FencingToken, Priority, ReservationId, ReservationItem};
use crate::resource::ResourceType;

/// A state change, stamped with the emitter's clock and a sequence number that grows by one
/// per event of one emitter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the emitter's stream, from 0, without gaps.
    pub sequence: u64,
    /// When it happened.
    pub at: Timestamp,
    /// What happened.
    pub kind: EventKind,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum EventKind {
    /// A resource was registered.
    ResourceRegistered {
        /// Its name.
        resource: ResourceName,
    },
    /// A resource's description (capabilities, labels, capacities) was replaced.
    ResourceUpdated {
        /// Its name.
        resource: ResourceName,
    },
    /// A resource was unregistered.
    ResourceUnregistered {
        /// Its name.
        resource: ResourceName,
    },
    /// A capacity changed at run time.
    CapacityChanged {
        /// The resource.
        resource: ResourceName,
        /// Which capacity.
        resource_type: ResourceType,
        /// The maximum before.
        old_maximum: Quantity,
        /// The maximum now.
        new_maximum: Quantity,
        /// Whether more is held than the new maximum (no new grants until holds drain).
        draining: bool,
    },
    /// A reservation was granted (pending).
    Reserved {
        /// Its id.
        reservation: ReservationId,
        /// Who holds it.
        requester: RequesterId,
        /// Its priority.
        priority: Priority,
        /// What it holds.
        items: Arc<[ReservationItem]>,
        /// The grant's fencing token.
        fencing_token: FencingToken,
    },
    /// A pending reservation was confirmed.
    Confirmed {
        /// Its id.
        reservation: ReservationId,
        /// Who holds it.
        requester: RequesterId,
    },
    /// A pending reservation's TTL was extended.
    Renewed {
        /// Its id.
        reservation: ReservationId,
        /// The new expiry.
        expires_at: Timestamp,
    },
    /// A reservation ended and its capacity went back. `reason` says how: released,
    /// expired, preempted or cancelled.
    Ended {
        /// Its id.
        reservation: ReservationId,
        /// Who held it.
        requester: RequesterId,
        /// How it ended.
        reason: crate::ReservationState,
        /// What it held, now free.
        items: Arc<[ReservationItem]>,
        /// For preemption: the reservation it made room for, when known.
        preempted_by: Option<ReservationId>,
    },
    /// An elastic hold was shrunk, giving capacity back.
    Shrunk {
        /// The reservation.
        reservation: ReservationId,
        /// Who holds it.
        requester: RequesterId,
        /// The requirement whose item shrank.
        requirement: usize,
        /// The item's resource.
        resource: ResourceName,
        /// The amount before, in the resource's unit.
        from: Quantity,
        /// The amount now.
        to: Quantity,
    },
    /// A request could not be granted.
    Refused {
        /// Who asked.
        requester: RequesterId,
        /// Why, as a machine-readable code (see `RefusalReason::as_str`).
        reason: String,
    },
    /// A request joined a wait queue.
    Queued {
        /// Who waits.
        requester: RequesterId,
        /// The queue's depth after it joined.
        depth: usize,
    },
    /// A request left a wait queue, granted or not.
    Dequeued {
        /// Who waited.
        requester: RequesterId,
        /// How long it waited.
        waited: std::time::Duration,
        /// Whether it left with a grant.
        granted: bool,
    },
    /// A scale target was asked to change size.
    Scaled {
        /// The target's name.
        target: String,
        /// The size before.
        from: u64,
        /// The size asked for.
        to: u64,
        /// Why.
        reason: String,
    },
}

/// Receives events.
///
/// Contract: `publish` is called on the emitter's thread, possibly while the emitter holds
/// internal locks, so it must be quick and must not block or call back into the emitter; a
/// sink that needs to do work hands the event to a channel. Sequence numbers are unique and
/// without gaps; events about one reservation or one resource arrive in the order they
/// happened, while events emitted by different threads at once may arrive out of sequence
/// order (sort by `sequence` where a total order matters).
pub trait EventSink: Send + Sync {
    /// Takes one event.
    fn publish(&self, event: &Event);
}

/// A sink that drops every event.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiscardEvents;

impl EventSink for DiscardEvents {
    fn publish(&self, _event: &Event) {}
}

impl<T: EventSink + ?Sized> EventSink for &T {
    fn publish(&self, event: &Event) {
        (**self).publish(event);
    }
}

impl<T: EventSink + ?Sized> EventSink for Box<T> {
    fn publish(&self, event: &Event) {
        (**self).publish(event);
    }
}

impl<T: EventSink + ?Sized> EventSink for Arc<T> {
    fn publish(&self, event: &Event) {
        (**self).publish(event);
    }
}

impl<T: EventSink> EventSink for [T] {
    fn publish(&self, event: &Event) {
        for sink in self {
            sink.publish(event);
        }
    }
}

impl<T: EventSink> EventSink for Vec<T> {
    fn publish(&self, event: &Event) {
        self.as_slice().publish(event);
    }
}
