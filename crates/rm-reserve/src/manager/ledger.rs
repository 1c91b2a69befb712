//! The [`ReservationLedger`] contract on the manager: resource operations, the hold
//! operations (through the record lifecycle), snapshots and the audit.

use super::*;

impl ReservationLedger for ReservationManager {
    fn register_resource(&self, resource: Resource) -> Result<(), LedgerError> {
        self.register(resource)
    }

    fn update_resource(&self, resource: Resource) -> Result<(), LedgerError> {
        self.update(resource)
    }

    fn unregister_resource(&self, name: &ResourceName) -> Result<Resource, LedgerError> {
        self.unregister(name)
    }

    fn set_capacity(
        &self,
        name: &ResourceName,
        resource_type: &ResourceType,
        maximum: Quantity,
    ) -> Result<CapacityUsage, LedgerError> {
        self.change_capacity(name, resource_type, maximum)
    }
    fn resources(&self) -> Result<Vec<Resource>, LedgerError> {
        Ok(self.read_catalog().resources.clone())
    }

    fn reserve(&self, request: &ReservationRequest) -> Result<Reservation, LedgerError> {
        self.reserve_with(request, true)
    }

    fn try_reserve(
        &self,
        request: &ReservationRequest,
    ) -> Result<Option<Reservation>, LedgerError> {
        match self.reserve_with(request, false) {
            Err(LedgerError::InsufficientCapacity { .. }) => Ok(None),
            other => other.map(Some),
        }
    }

    fn confirm(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
    ) -> Result<Reservation, LedgerError> {
        self.confirm_inner(id, fence)
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
        self.with_record("renew", id, fence, |record, _, state, now, outbox| {
            match state.state {
                ReservationState::Confirmed => return Ok(record.reservation(state)),
                ReservationState::Pending => {}
                other => return Err(LedgerError::wrong_state("renew", &record.id, other)),
            }
            let expires_at = now + ttl;
            state.expires_at = Some(expires_at);
            state.updated_at = now;
            self.arm(record, state, expires_at);
            outbox.push(Note::Renewed { expires_at });
            Ok(record.reservation(state))
        })
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
        self.with_record("shrink", id, fence, |record, guards, state, now, outbox| {
            if !state.state.holds_capacity() {
                return Err(LedgerError::wrong_state("shrink", &record.id, state.state));
            }
            let mut items = state.items.to_vec();
            let Some((index, from)) = shrink_item(&mut items, requirement, to)? else {
                return Ok(record.reservation(state));
            };
            let given_back = from.as_milli() - to.as_milli();
            let resource = items[index].resource.clone();
            let resource_type = items[index].resource_type.clone();
            // The hold of that type on that resource gives the difference back.
            let Some(h) = state.holds.iter().position(|h| {
                h.resource_type == resource_type && *record.resource_of(h) == resource
            }) else {
                return Err(invalid("requirement", "its hold is not found"));
            };
            let hold = &mut state.holds[h];
            hold.amount -= given_back;
            let dim = &mut guards[hold.slot].dims[hold.dim];
            if state.state == ReservationState::Pending {
                dim.pending -= given_back;
            } else {
                dim.confirmed -= given_back;
            }
            record.lock_set[hold.slot].give(hold.dim, given_back);
            state.items = items.into();
            state.updated_at = now;
            outbox.push(Note::Shrunk {
                requirement,
                resource,
                from,
                to,
            });
            Ok(record.reservation(state))
        })
    }

    fn reserve_preempting(
        &self,
        request: &ReservationRequest,
        victims: &[ReservationId],
    ) -> Result<Reservation, LedgerError> {
        // Grants read the catalog: holding it for writing keeps every other grant out while
        // the victims end and the request is placed, so the freed capacity goes to it.
        // (Permits take capacity without the catalog; they can still race for it.)
        let catalog = self.write_catalog();
        let now = self.clock.now();
        self.run_timers(now);
        if let Some(id) = &request.id
            && let Some(existing) = self.find(id, now)
        {
            return Self::retry_of(&existing, request);
        }
        if let Some(first) = request.violations().into_iter().next() {
            return Err(invalid(first.path, first.message));
        }
        let mut extra: Vec<(usize, usize, i64)> = Vec::new();
        for id in victims {
            let record = self
                .find(id, now)
                .ok_or_else(|| LedgerError::UnknownReservation { id: id.clone() })?;
            let state = lock(&record.state);
            if !state.state.holds_capacity() {
                return Err(LedgerError::wrong_state("preempt", &record.id, state.state));
            }
            for hold in &state.holds {
                if let Some(position) = catalog.position(record.resource_of(hold)) {
                    extra.push((position, hold.dim, hold.amount));
                }
            }
        }
        // Nothing changes unless the request fits with the victims' capacity.
        self.plan(&catalog, request, true, &extra)?;
        let preemptor = request.id.clone().unwrap_or_else(ReservationId::generate);
        for id in victims {
            self.finish(Ending::Preempt, id, None, Some(&preemptor))?;
        }
        self.reserve_in(&catalog, &request.clone().with_id(preemptor), true)
    }

    fn next_expiry(&self) -> Result<Option<Duration>, LedgerError> {
        // The earliest expiry only: forgetting ended reservations frees no capacity, so a
        // waiter has no reason to wake for it (and a short timed park is dear: it makes the
        // kernel reprogram its timer).
        let next = lock(&self.timers).next();
        Ok(next.map(|at| at.saturating_duration_since(self.clock.now())))
    }

    fn get(&self, id: &ReservationId) -> Result<Reservation, LedgerError> {
        self.with_record("get", id, None, |record, _, state, _, _| {
            Ok(record.reservation(state))
        })
    }

    fn expire_due(&self) -> Result<Vec<Reservation>, LedgerError> {
        Ok(self.run_timers(self.clock.now()))
    }

    fn snapshot(&self) -> Result<LedgerSnapshot, LedgerError> {
        let catalog = self.read_catalog();
        let now = self.clock.now();
        loop {
            self.run_timers(now);
            // Every state change holds the locks of the slots it touches, and the slots are in
            // registration order, which is the global lock order: holding all of them gives one
            // consistent moment.
            let guards: Vec<MutexGuard<'_, SlotState>> =
                catalog.slots.iter().map(|slot| lock(&slot.state)).collect();
            let mut active: Vec<Reservation> = Vec::new();
            self.records.for_each(|record| {
                let state = lock(&record.state);
                if state.state.holds_capacity() {
                    active.push(record.reservation(&state));
                }
            });
            // A grant that read the clock before `now` may have committed since the timers
            // ran, with a deadline already past: run its timer and look again, so that no
            // hold past its deadline is shown pending.
            let overdue = active.iter().any(|r| {
                r.state == ReservationState::Pending && r.expires_at.is_some_and(|at| at <= now)
            });
            if overdue {
                continue;
            }
            let usage = guards
                .iter()
                .zip(&catalog.resources)
                .zip(&catalog.slots)
                .flat_map(|((state, resource), slot)| slot.usage(state, resource.name()))
                .collect();
            drop(guards);
            active.sort_by_key(|r| r.fencing_token);
            return Ok(LedgerSnapshot {
                taken_at: now,
                resources: catalog.resources.clone(),
                usage,
                active,
                last_fencing_token: FencingToken(self.last_token.load(Ordering::Acquire)),
            });
        }
    }

    fn audit(&self) -> Result<AuditReport, LedgerError> {
        self.snapshot().map(|snapshot| snapshot.audit())
    }
}
