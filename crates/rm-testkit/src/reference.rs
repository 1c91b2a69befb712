//! A reference ledger: the ledger contract implemented as plainly as possible, behind one
//! global mutex.
//!
//! It is the oracle for model-based tests of faster ledgers, the global-lock baseline of the
//! multi-resource benchmark, and the proof that the conformance suite can be passed. It scans
//! every resource per placement and keeps every reservation it ever granted (so retries by id
//! stay idempotent forever): right, not fast.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rm_model::placement::best_candidate;
use rm_model::{
    AuditReport, CapacityUsage, Clock, DimensionFit, Ending, Event, EventKind, EventSink,
    FencingToken, LedgerError, LedgerSnapshot, PlacementCandidate, Quantity, Reservation,
    ReservationId, ReservationItem, ReservationLedger, ReservationRequest, ReservationState,
    Resource, ResourceCapacity, ResourceName, ResourceRequirement, ResourceType, Shortfall,
    Timestamp,
};

mod place;

/// What one capacity of one resource holds.
#[derive(Clone, Copy, Default)]
struct Held {
    pending: Quantity,
    confirmed: Quantity,
}

struct Entry {
    resource: Resource,
    held: BTreeMap<ResourceType, Held>,
}

struct Record {
    reservation: Reservation,
    request: ReservationRequest,
}

#[derive(Default)]
struct State {
    entries: Vec<Entry>,
    records: HashMap<ReservationId, Record>,
    /// Pending holds by expiry, so that expiring is not a scan.
    expiries: BTreeMap<(Timestamp, FencingToken), ReservationId>,
    last_token: u64,
    next_sequence: u64,
}

/// The ledger contract behind one mutex: a scan per placement, every reservation kept forever
/// (so retries by id stay idempotent), every operation serialised. Right, not fast: the oracle
/// for model-based tests of faster ledgers and the global-lock baseline of benchmarks.
pub struct ReferenceLedger {
    clock: Arc<dyn Clock>,
    sink: Arc<dyn EventSink>,
    default_ttl: Duration,
    state: Mutex<State>,
}

fn sum(a: Quantity, b: Quantity) -> Quantity {
    a.checked_add(b).unwrap_or(Quantity::MAX)
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> LedgerError {
    LedgerError::InvalidInput {
        field: field.into(),
        reason: reason.into(),
    }
}

impl Entry {
    fn held(&self, resource_type: &ResourceType) -> Held {
        self.held.get(resource_type).copied().unwrap_or_default()
    }

    fn active_holds(&self) -> bool {
        self.held
            .values()
            .any(|h| !h.pending.is_zero() || !h.confirmed.is_zero())
    }

    fn usage(&self, resource_type: &ResourceType, capacity: &ResourceCapacity) -> CapacityUsage {
        let held = self.held(resource_type);
        let used = sum(sum(capacity.current(), held.pending), held.confirmed);
        let draining = used > capacity.maximum();
        CapacityUsage {
            resource: self.resource.name().clone(),
            resource_type: resource_type.clone(),
            unit: capacity.unit().clone(),
            capacity: capacity.maximum(),
            external: capacity.current(),
            pending: held.pending,
            confirmed: held.confirmed,
            leased: Quantity::ZERO,
            free: capacity.maximum().saturating_sub_to_zero(used),
            draining,
        }
    }

    fn free(&self, resource_type: &ResourceType) -> Quantity {
        self.resource
            .capacity_of(resource_type)
            .map_or(Quantity::ZERO, |capacity| {
                self.usage(resource_type, capacity).free
            })
    }
}

impl ReferenceLedger {
    /// A ledger reading time from `clock`, publishing to `sink`, with pending holds expiring
    /// after `default_ttl` unless a request names its own TTL.
    pub fn new(
        clock: Arc<dyn Clock>,
        sink: Arc<dyn EventSink>,
        default_ttl: Duration,
    ) -> ReferenceLedger {
        ReferenceLedger {
            clock,
            sink,
            default_ttl,
            state: Mutex::new(State::default()),
        }
    }

    /// Locks the state and applies due expiries first, so every operation sees current state.
    fn lock(&self) -> (MutexGuard<'_, State>, Timestamp) {
        // A panic while holding the lock can only come from a bug in this file; the state is
        // still consistent because every mutation is computed before it is applied.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = self.clock.now();
        self.expire_locked(&mut state, now);
        (state, now)
    }

    fn publish(&self, state: &mut State, at: Timestamp, kind: EventKind) {
        let event = Event {
            sequence: state.next_sequence,
            at,
            kind,
        };
        state.next_sequence += 1;
        self.sink.publish(&event);
    }

    fn expire_locked(&self, state: &mut State, now: Timestamp) -> Vec<Reservation> {
        let mut expired = Vec::new();
        while let Some(entry) = state.expiries.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let id = entry.remove();
            if let Some(reservation) =
                self.end_locked(state, &id, ReservationState::Expired, None, now)
            {
                expired.push(reservation);
            }
        }
        expired
    }

    /// Moves an active reservation to a terminal state and credits its items back.
    fn end_locked(
        &self,
        state: &mut State,
        id: &ReservationId,
        to: ReservationState,
        by: Option<ReservationId>,
        now: Timestamp,
    ) -> Option<Reservation> {
        let record = state.records.get_mut(id)?;
        let from = record.reservation.state;
        if !from.can_transition_to(to) {
            return None;
        }
        record.reservation.state = to;
        record.reservation.updated_at = now;
        if let Some(expires_at) = record.reservation.expires_at.take() {
            state
                .expiries
                .remove(&(expires_at, record.reservation.fencing_token));
        }
        let reservation = record.reservation.clone();
        for item in reservation.items.iter() {
            if let Some(entry) = state
                .entries
                .iter_mut()
                .find(|e| e.resource.name() == &item.resource)
            {
                let held = entry.held.entry(item.resource_type.clone()).or_default();
                let slot = if from == ReservationState::Pending {
                    &mut held.pending
                } else {
                    &mut held.confirmed
                };
                *slot = slot.saturating_sub_to_zero(item.amount);
            }
        }
        self.publish(
            state,
            now,
            EventKind::Ended {
                reservation: reservation.id.clone(),
                requester: reservation.requester.clone(),
                reason: to,
                items: reservation.items.clone(),
                preempted_by: by,
            },
        );
        Some(reservation)
    }

    /// The record for `id`, checked against `fence`.
    fn record<'s>(
        state: &'s mut State,
        operation: &'static str,
        id: &ReservationId,
        fence: Option<FencingToken>,
    ) -> Result<&'s mut Record, LedgerError> {
        let record = state
            .records
            .get_mut(id)
            .ok_or_else(|| LedgerError::UnknownReservation { id: id.clone() })?;
        if let Some(presented) = fence
            && presented != record.reservation.fencing_token
        {
            return Err(LedgerError::StaleFencingToken {
                operation,
                id: id.clone(),
                presented,
                current: record.reservation.fencing_token,
            });
        }
        Ok(record)
    }

    /// Ends a reservation through a caller's operation: `from` is the state it must be in,
    /// `to` the state it moves to; already being in `to` is an idempotent success.
    fn finish(
        &self,
        ending: Ending,
        id: &ReservationId,
        fence: Option<FencingToken>,
        by: Option<&ReservationId>,
    ) -> Result<Reservation, LedgerError> {
        let (operation, from, to) = (ending.operation(), ending.from(), ending.to());
        let (mut state, now) = self.lock();
        let reservation = Self::record(&mut state, operation, id, fence)?
            .reservation
            .clone();
        if reservation.state == to {
            return Ok(reservation);
        }
        if !from.contains(&reservation.state) {
            return Err(LedgerError::wrong_state(
                operation,
                &reservation.id,
                reservation.state,
            ));
        }
        self.end_locked(&mut state, id, to, by.cloned(), now)
            .ok_or_else(|| LedgerError::wrong_state(operation, &reservation.id, reservation.state))
    }

    /// What every grant checks first: a request whose id is already known returns that
    /// reservation when it is the same request (an idempotent retry) and conflicts
    /// otherwise; a malformed request is refused with its first violation.
    fn admit(
        state: &State,
        request: &ReservationRequest,
    ) -> Result<Option<Reservation>, LedgerError> {
        if let Some(id) = &request.id
            && let Some(record) = state.records.get(id)
        {
            return if record.request.same_request_as(request) {
                Ok(Some(record.reservation.clone()))
            } else {
                Err(LedgerError::IdConflict { id: id.clone() })
            };
        }
        if let Some(first) = request.violations().into_iter().next() {
            return Err(invalid(first.path, first.message));
        }
        Ok(None)
    }

    /// Places and grants `request` under the lock (validation done by the caller).
    fn grant_locked(
        &self,
        state: &mut State,
        request: &ReservationRequest,
        now: Timestamp,
    ) -> Result<Reservation, LedgerError> {
        let items = Self::place(state, request)?;

        // Everything is computed; apply.
        let confirmed = request.confirm_on_grant;
        for item in &items {
            let index = Self::entry_index(state, &item.resource)?;
            let held = state.entries[index]
                .held
                .entry(item.resource_type.clone())
                .or_default();
            if confirmed {
                held.confirmed = sum(held.confirmed, item.amount);
            } else {
                held.pending = sum(held.pending, item.amount);
            }
        }
        state.last_token += 1;
        let fencing_token = FencingToken(state.last_token);
        // A hold confirmed on grant has no deadline.
        let expires_at = (!confirmed).then(|| now + request.ttl.unwrap_or(self.default_ttl));
        let id = request.id.clone().unwrap_or_else(ReservationId::generate);
        let reservation = Reservation {
            id: id.clone(),
            requester: request.requester.clone(),
            priority: request.priority,
            state: if confirmed {
                ReservationState::Confirmed
            } else {
                ReservationState::Pending
            },
            items: items.into(),
            fencing_token,
            created_at: now,
            updated_at: now,
            expires_at,
            labels: request.labels.clone(),
            preemptible: request.preemptible,
        };
        if let Some(at) = expires_at {
            state.expiries.insert((at, fencing_token), id.clone());
        }
        state.records.insert(
            id.clone(),
            Record {
                reservation: reservation.clone(),
                request: request.clone(),
            },
        );
        self.publish(
            state,
            now,
            EventKind::Reserved {
                reservation: id.clone(),
                requester: reservation.requester.clone(),
                priority: reservation.priority,
                items: reservation.items.clone(),
                fencing_token,
            },
        );
        if confirmed {
            self.publish(
                state,
                now,
                EventKind::Confirmed {
                    reservation: id,
                    requester: reservation.requester.clone(),
                },
            );
        }
        Ok(reservation)
    }

    fn entry_index(state: &State, name: &ResourceName) -> Result<usize, LedgerError> {
        state
            .entries
            .iter()
            .position(|e| e.resource.name() == name)
            .ok_or_else(|| LedgerError::UnknownResource { name: name.clone() })
    }

    fn snapshot_locked(state: &State, now: Timestamp) -> LedgerSnapshot {
        let mut active: Vec<Reservation> = state
            .records
            .values()
            .filter(|r| r.reservation.is_active())
            .map(|r| r.reservation.clone())
            .collect();
        active.sort_by_key(|r| r.fencing_token);
        LedgerSnapshot {
            taken_at: now,
            resources: state.entries.iter().map(|e| e.resource.clone()).collect(),
            usage: state
                .entries
                .iter()
                .flat_map(|e| e.resource.capacities().map(move |(t, c)| e.usage(t, c)))
                .collect(),
            active,
            last_fencing_token: FencingToken(state.last_token),
        }
    }
}

impl ReservationLedger for ReferenceLedger {
    fn register_resource(&self, resource: Resource) -> Result<(), LedgerError> {
        let (mut state, now) = self.lock();
        if state
            .entries
            .iter()
            .any(|e| e.resource.name() == resource.name())
        {
            return Err(LedgerError::DuplicateResource {
                name: resource.name().clone(),
            });
        }
        let name = resource.name().clone();
        state.entries.push(Entry {
            resource,
            held: BTreeMap::new(),
        });
        self.publish(
            &mut state,
            now,
            EventKind::ResourceRegistered { resource: name },
        );
        Ok(())
    }

    fn update_resource(&self, resource: Resource) -> Result<(), LedgerError> {
        let (mut state, now) = self.lock();
        let index = Self::entry_index(&state, resource.name())?;
        let entry = &state.entries[index];
        for (resource_type, held) in &entry.held {
            if held.pending.is_zero() && held.confirmed.is_zero() {
                continue;
            }
            match (
                resource.capacity_of(resource_type),
                entry.resource.capacity_of(resource_type),
            ) {
                (None, _) => {
                    let active = state
                        .records
                        .values()
                        .filter(|r| {
                            r.reservation.is_active()
                                && r.reservation
                                    .items
                                    .iter()
                                    .any(|i| &i.resource == resource.name())
                        })
                        .count();
                    return Err(LedgerError::ResourceBusy {
                        name: resource.name().clone(),
                        active,
                    });
                }
                (Some(new), Some(old)) if new.unit() != old.unit() => {
                    return Err(invalid(
                        format!("capacities.{resource_type}.unit"),
                        "cannot change the unit of a capacity that is held",
                    ));
                }
                _ => {}
            }
        }
        let name = resource.name().clone();
        state.entries[index].resource = resource;
        self.publish(
            &mut state,
            now,
            EventKind::ResourceUpdated { resource: name },
        );
        Ok(())
    }

    fn unregister_resource(&self, name: &ResourceName) -> Result<Resource, LedgerError> {
        let (mut state, now) = self.lock();
        let index = Self::entry_index(&state, name)?;
        if state.entries[index].active_holds() {
            let active = state
                .records
                .values()
                .filter(|r| {
                    r.reservation.is_active()
                        && r.reservation.items.iter().any(|i| &i.resource == name)
                })
                .count();
            return Err(LedgerError::ResourceBusy {
                name: name.clone(),
                active,
            });
        }
        let entry = state.entries.remove(index);
        self.publish(
            &mut state,
            now,
            EventKind::ResourceUnregistered {
                resource: name.clone(),
            },
        );
        Ok(entry.resource)
    }

    fn set_capacity(
        &self,
        name: &ResourceName,
        resource_type: &ResourceType,
        maximum: Quantity,
    ) -> Result<CapacityUsage, LedgerError> {
        let (mut state, now) = self.lock();
        let index = Self::entry_index(&state, name)?;
        let entry = &state.entries[index];
        let old = entry
            .resource
            .capacity_of(resource_type)
            .ok_or_else(|| LedgerError::UnknownResource { name: name.clone() })?;
        let new = ResourceCapacity::new(old.current(), maximum, old.unit().clone())
            .map_err(|err| invalid("maximum", err.to_string()))?;
        let old_maximum = old.maximum();
        let resource = entry
            .resource
            .clone()
            .with_capacity(resource_type.clone(), new.clone());
        state.entries[index].resource = resource;
        let usage = state.entries[index].usage(resource_type, &new);
        self.publish(
            &mut state,
            now,
            EventKind::CapacityChanged {
                resource: name.clone(),
                resource_type: resource_type.clone(),
                old_maximum,
                new_maximum: maximum,
                draining: usage.draining,
            },
        );
        Ok(usage)
    }

    fn resources(&self) -> Result<Vec<Resource>, LedgerError> {
        let (state, _) = self.lock();
        Ok(state.entries.iter().map(|e| e.resource.clone()).collect())
    }

    fn reserve(&self, request: &ReservationRequest) -> Result<Reservation, LedgerError> {
        let (mut state, now) = self.lock();
        if let Some(earlier) = Self::admit(&state, request)? {
            return Ok(earlier);
        }
        self.grant_locked(&mut state, request, now)
    }

    fn confirm(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
    ) -> Result<Reservation, LedgerError> {
        let (mut state, now) = self.lock();
        let record = Self::record(&mut state, "confirm", id, fence)?;
        match record.reservation.state {
            ReservationState::Confirmed => return Ok(record.reservation.clone()),
            ReservationState::Pending => {}
            _ => {
                return Err(LedgerError::wrong_state(
                    "confirm",
                    &record.reservation.id,
                    record.reservation.state,
                ));
            }
        }
        record.reservation.state = ReservationState::Confirmed;
        record.reservation.updated_at = now;
        let expires_at = record.reservation.expires_at.take();
        let reservation = record.reservation.clone();
        if let Some(expires_at) = expires_at {
            state
                .expiries
                .remove(&(expires_at, reservation.fencing_token));
        }
        for item in reservation.items.iter() {
            let index = Self::entry_index(&state, &item.resource)?;
            let held = state.entries[index]
                .held
                .entry(item.resource_type.clone())
                .or_default();
            held.pending = held.pending.saturating_sub_to_zero(item.amount);
            held.confirmed = sum(held.confirmed, item.amount);
        }
        self.publish(
            &mut state,
            now,
            EventKind::Confirmed {
                reservation: id.clone(),
                requester: reservation.requester.clone(),
            },
        );
        Ok(reservation)
    }

    fn renew(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
        ttl: Duration,
    ) -> Result<Reservation, LedgerError> {
        if ttl.is_zero() {
            return Err(invalid("ttl", "must be positive"));
        }
        let (mut state, now) = self.lock();
        let record = Self::record(&mut state, "renew", id, fence)?;
        match record.reservation.state {
            ReservationState::Confirmed => return Ok(record.reservation.clone()),
            ReservationState::Pending => {}
            _ => {
                return Err(LedgerError::wrong_state(
                    "renew",
                    &record.reservation.id,
                    record.reservation.state,
                ));
            }
        }
        let token = record.reservation.fencing_token;
        let old = record.reservation.expires_at.replace(now + ttl);
        record.reservation.updated_at = now;
        let reservation = record.reservation.clone();
        if let Some(old) = old {
            state.expiries.remove(&(old, token));
        }
        state.expiries.insert((now + ttl, token), id.clone());
        self.publish(
            &mut state,
            now,
            EventKind::Renewed {
                reservation: id.clone(),
                expires_at: now + ttl,
            },
        );
        Ok(reservation)
    }

    fn release(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
    ) -> Result<Reservation, LedgerError> {
        self.finish(Ending::Release, id, fence, None)
    }

    fn cancel(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
    ) -> Result<Reservation, LedgerError> {
        self.finish(Ending::Cancel, id, fence, None)
    }

    fn preempt(
        &self,
        id: &ReservationId,
        by: Option<&ReservationId>,
    ) -> Result<Reservation, LedgerError> {
        self.finish(Ending::Preempt, id, None, by)
    }

    fn shrink(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
        requirement: usize,
        to: Quantity,
    ) -> Result<Reservation, LedgerError> {
        let (mut state, now) = self.lock();
        let record = Self::record(&mut state, "shrink", id, fence)?;
        if !record.reservation.state.holds_capacity() {
            return Err(LedgerError::wrong_state(
                "shrink",
                &record.reservation.id,
                record.reservation.state,
            ));
        }
        let mut items = record.reservation.items.to_vec();
        let Some((index, from)) = rm_model::shrink_item(&mut items, requirement, to)? else {
            return Ok(record.reservation.clone());
        };
        let given_back = from.saturating_sub_to_zero(to);
        let (resource, resource_type) = (
            items[index].resource.clone(),
            items[index].resource_type.clone(),
        );
        let pending = record.reservation.state == ReservationState::Pending;
        record.reservation.items = items.into();
        record.reservation.updated_at = now;
        let reservation = record.reservation.clone();
        let index = Self::entry_index(&state, &resource)?;
        let held = state.entries[index].held.entry(resource_type).or_default();
        let slot = if pending {
            &mut held.pending
        } else {
            &mut held.confirmed
        };
        *slot = slot.saturating_sub_to_zero(given_back);
        self.publish(
            &mut state,
            now,
            EventKind::Shrunk {
                reservation: id.clone(),
                requester: reservation.requester.clone(),
                requirement,
                resource,
                from,
                to,
            },
        );
        Ok(reservation)
    }

    fn reserve_preempting(
        &self,
        request: &ReservationRequest,
        victims: &[ReservationId],
    ) -> Result<Reservation, LedgerError> {
        let (mut state, now) = self.lock();
        if let Some(earlier) = Self::admit(&state, request)? {
            return Ok(earlier);
        }
        // Every victim must hold capacity now.
        let mut freed: Vec<(ResourceName, ResourceType, bool, Quantity)> = Vec::new();
        for id in victims {
            let record = state
                .records
                .get(id)
                .ok_or_else(|| LedgerError::UnknownReservation { id: id.clone() })?;
            if !record.reservation.state.holds_capacity() {
                return Err(LedgerError::wrong_state(
                    "preempt",
                    &record.reservation.id,
                    record.reservation.state,
                ));
            }
            let pending = record.reservation.state == ReservationState::Pending;
            for item in record.reservation.items.iter() {
                freed.push((
                    item.resource.clone(),
                    item.resource_type.clone(),
                    pending,
                    item.amount,
                ));
            }
        }
        // Would the request fit with the victims' capacity? Credit it, place, undo.
        let adjust = |state: &mut State, sign: bool| {
            for (resource, resource_type, pending, amount) in &freed {
                if let Some(entry) = state
                    .entries
                    .iter_mut()
                    .find(|e| e.resource.name() == resource)
                {
                    let held = entry.held.entry(resource_type.clone()).or_default();
                    let slot = if *pending {
                        &mut held.pending
                    } else {
                        &mut held.confirmed
                    };
                    *slot = if sign {
                        slot.saturating_sub_to_zero(*amount)
                    } else {
                        sum(*slot, *amount)
                    };
                }
            }
        };
        adjust(&mut state, true);
        let placed = Self::place(&state, request);
        adjust(&mut state, false);
        placed?;
        // It fits: end the victims and grant, under the one lock.
        let preemptor = request.id.clone().unwrap_or_else(ReservationId::generate);
        for id in victims {
            self.end_locked(
                &mut state,
                id,
                ReservationState::Preempted,
                Some(preemptor.clone()),
                now,
            );
        }
        self.grant_locked(&mut state, &request.clone().with_id(preemptor), now)
    }

    fn get(&self, id: &ReservationId) -> Result<Reservation, LedgerError> {
        let (mut state, _) = self.lock();
        Self::record(&mut state, "get", id, None).map(|r| r.reservation.clone())
    }

    fn expire_due(&self) -> Result<Vec<Reservation>, LedgerError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = self.clock.now();
        Ok(self.expire_locked(&mut state, now))
    }

    fn snapshot(&self) -> Result<LedgerSnapshot, LedgerError> {
        let (state, now) = self.lock();
        Ok(Self::snapshot_locked(&state, now))
    }

    fn audit(&self) -> Result<AuditReport, LedgerError> {
        self.snapshot().map(|snapshot| snapshot.audit())
    }
}
