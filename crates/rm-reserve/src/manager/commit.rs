//! Committing a plan under the slot locks (or saying why not), and the reserve and confirm
//! paths around it.

use super::*;

impl ReservationManager {
    /// Commits a plan under the slot locks, or says why not.
    pub(super) fn commit(
        &self,
        catalog: &Catalog,
        request: &ReservationRequest,
        plan: &[Placement],
        now: Timestamp,
    ) -> Result<Reservation, Abort> {
        if let [placement] = plan {
            return self.commit_one(catalog, request, placement, now);
        }
        // Positions are in registration order, which is the lock order.
        let mut positions: Small<usize> = Small::new();
        for placement in plan {
            if !positions.contains(&placement.position) {
                positions.push(placement.position);
            }
        }
        positions.sort_unstable();
        let mut holds: Small<Hold> = Small::new();
        for placement in plan {
            let slot = positions
                .binary_search(&placement.position)
                .unwrap_or_default();
            match holds
                .iter_mut()
                .find(|h| h.slot == slot && h.resource_type == placement.resource_type)
            {
                Some(hold) => {
                    hold.amount = hold.amount.checked_add(placement.amount).ok_or_else(|| {
                        Abort::Done(Box::new(Err(invalid(
                            format!("requirements[{}].amount", placement.requirement),
                            "the amounts on one resource overflow",
                        ))))
                    })?;
                }
                None => holds.push(Hold {
                    slot,
                    dim: usize::MAX,
                    resource_type: placement.resource_type.clone(),
                    amount: placement.amount,
                }),
            }
        }
        let mut guards: Small<MutexGuard<'_, SlotState>> = Small::new();
        for &p in &positions {
            guards.push(lock(&catalog.slots[p].state));
        }
        // The units planned with must still be the capacities' units.
        for placement in plan {
            let slot = positions
                .binary_search(&placement.position)
                .unwrap_or_default();
            if planned_dim(&guards[slot], placement).is_none() {
                return Err(Abort::Replan);
            }
        }
        for hold in &mut holds {
            match guards[hold.slot].dim(&hold.resource_type) {
                Some(d) => hold.dim = d,
                None => return Err(Abort::Replan),
            }
        }
        let entry = self.chosen_entry(request, now)?;
        // Take from the free counters, all or nothing: leases may have taken capacity since
        // the plan, without the locks.
        for (taken, hold) in holds.iter().enumerate() {
            if !catalog.slots[positions[hold.slot]].take(hold.dim, hold.amount) {
                for undo in &holds[..taken] {
                    catalog.slots[positions[undo.slot]].give(undo.dim, undo.amount);
                }
                return Err(Abort::Replan);
            }
        }
        for hold in &holds {
            add_held(&mut guards[hold.slot], hold, request.confirm_on_grant);
        }
        for guard in guards.iter_mut() {
            guard.holders += 1;
        }
        let items = Items { plan, catalog };
        let slots: Small<&Arc<Slot>> = positions.iter().map(|&p| &catalog.slots[p]).collect();
        let held = Held {
            items,
            holds: holds.drain(..),
            slots: &slots,
        };
        Ok(self.install(request, now, entry, held, guards))
    }

    /// [`Self::commit`] of a plan with one placement (most requests): one slot, one hold
    /// and one item, without the lists that several need.
    fn commit_one(
        &self,
        catalog: &Catalog,
        request: &ReservationRequest,
        placement: &Placement,
        now: Timestamp,
    ) -> Result<Reservation, Abort> {
        let slot = &catalog.slots[placement.position];
        let mut guard = lock(&slot.state);
        // The unit planned with must still be the capacity's unit.
        let Some(dim) = planned_dim(&guard, placement) else {
            return Err(Abort::Replan);
        };
        let entry = self.chosen_entry(request, now)?;
        // Leases may have taken capacity since the plan, without the lock.
        if !slot.take(dim, placement.amount) {
            return Err(Abort::Replan);
        }
        let hold = Hold {
            slot: 0,
            dim,
            resource_type: placement.resource_type.clone(),
            amount: placement.amount,
        };
        add_held(&mut guard, &hold, request.confirm_on_grant);
        guard.holders += 1;
        let held = Held {
            items: Items {
                plan: std::slice::from_ref(placement),
                catalog,
            },
            holds: [hold],
            slots: &[slot],
        };
        Ok(self.install(request, now, entry, held, guard))
    }

    /// The map's entry for a request's chosen id, held from here to the insertion so that a
    /// retry racing this grant finds one or the other; `None` for a generated id (it is new,
    /// and names a free cell of the table, taken once nothing can abort). A retry of a
    /// remembered reservation is answered with `Abort::Done`.
    fn chosen_entry(
        &self,
        request: &ReservationRequest,
        now: Timestamp,
    ) -> Result<Option<Entry<'_, ReservationId, Arc<Record>>>, Abort> {
        let Some(id) = &request.id else {
            return Ok(None);
        };
        let entry = self.records.entry(id.clone());
        if let Entry::Occupied(existing) = &entry {
            let existing = existing.get();
            // An ended reservation past its retention that the sweep has not removed yet is
            // forgotten: the new grant takes its place (the sweep's entry for it names its
            // token, so it leaves the new record alone).
            if !self.lapsed(&lock(&existing.state), now) {
                let existing = existing.clone();
                drop(entry);
                return Err(Abort::Done(Box::new(Self::retry_of(&existing, request))));
            }
        }
        Ok(Some(entry))
    }

    /// The end of a commit, once the capacity is taken under `guards`: the fencing token, the
    /// record (refilled from a forgotten one when there is one), reachable by its id, its
    /// timer armed and its events published.
    fn install<H, G>(
        &self,
        request: &ReservationRequest,
        now: Timestamp,
        entry: Option<Entry<'_, ReservationId, Arc<Record>>>,
        held: Held<'_, H>,
        guards: G,
    ) -> Reservation
    where
        H: IntoIterator<Item = Hold>,
    {
        let confirmed = request.confirm_on_grant;
        let token = FencingToken(self.last_token.fetch_add(1, Ordering::AcqRel) + 1);
        // A hold confirmed on grant has no deadline (and no timer).
        let expires_at = (!confirmed).then(|| now + request.ttl.unwrap_or(self.default_ttl));
        let (place, spare) = self.records.claim(entry.is_none());
        let id = match &request.id {
            Some(id) => id.clone(),
            None => RecordTable::generated_id(&place),
        };
        let grant = Grant {
            id: id.clone(),
            request,
            token,
            now,
            expires_at,
        };
        let record = Record::fill(spare, grant, held.items, held.holds, held.slots);
        // Locked before it is reachable, and held until the event is out: nothing about this
        // reservation can be published before its grant, and its timer is armed before
        // anyone can end it.
        let mut state = lock(&record.state);
        let reservation = record.reservation(&state);
        match entry {
            Some(entry) => drop(entry.insert(record.clone())),
            None => self.records.put(&place, record.clone()),
        }
        // After the insertion: see `crate::holders` for why the order matters.
        if self.holders.is_kept() {
            self.holders.add(&record, &mut state);
        }
        if let Some(at) = expires_at {
            self.arm(&record, &mut state, at);
        }
        // Publish after the slot locks go (an observer woken by the event must not queue on
        // them).
        drop(guards);
        self.observers.publish(now, || EventKind::Reserved {
            reservation: id,
            requester: record.requester.clone(),
            priority: record.priority,
            items: state.items.clone(),
            fencing_token: token,
        });
        if confirmed {
            self.observers.publish(now, || EventKind::Confirmed {
                reservation: record.id.clone(),
                requester: record.requester.clone(),
            });
        }
        drop(state);
        reservation
    }
}

/// What a commit puts in the new record besides what the request says: its items, its
/// holds, and the slots they are on (in lock order).
struct Held<'a, H> {
    items: Items<'a>,
    holds: H,
    slots: &'a [&'a Arc<Slot>],
}

/// The capacity a placement was planned on, if the slot still has it in the unit planned
/// with.
fn planned_dim(state: &SlotState, placement: &Placement) -> Option<usize> {
    state
        .dim(&placement.resource_type)
        .filter(|&d| state.dims[d].unit == placement.unit)
}

/// Counts a new hold in its slot's accounting (the caller took it from the free counter,
/// and counts the reservation among the slot's holders once, however many holds it has
/// there).
fn add_held(state: &mut SlotState, hold: &Hold, confirmed: bool) {
    let dim = &mut state.dims[hold.dim];
    if confirmed {
        dim.confirmed += hold.amount;
    } else {
        dim.pending += hold.amount;
    }
}

impl ReservationManager {
    /// `reserve`, with or without explaining a refusal.
    pub(super) fn reserve_with(
        &self,
        request: &ReservationRequest,
        explain: bool,
    ) -> Result<Reservation, LedgerError> {
        let catalog = self.read_catalog();
        self.reserve_in(&catalog, request, explain)
    }

    /// `reserve` with the catalog already held (for reading, or for writing by a preemptor).
    pub(super) fn reserve_in(
        &self,
        catalog: &Catalog,
        request: &ReservationRequest,
        explain: bool,
    ) -> Result<Reservation, LedgerError> {
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
        if let Some(validator) = &self.validator {
            let context = ValidationContext {
                resources: &catalog.resources,
                active: &[],
                name_checked: false,
            };
            validator
                .validate_request(request, &context)
                .map_err(rejected)?;
        }
        catalog.node_strategies.observe(request);
        for _ in 0..COMMIT_ATTEMPTS {
            let planned = self.plan(catalog, request, explain, &[]);
            // Borrowed, not moved out: the placements stay where the planner wrote them.
            let plan = match planned {
                Ok(ref plan) => plan,
                Err(err) => {
                    // An expired hold must never block a grant: expire what is due, then plan
                    // again.
                    if !self.run_timers(self.clock.now()).is_empty() {
                        continue;
                    }
                    return Err(err);
                }
            };
            match self.commit(catalog, request, plan, now) {
                Ok(reservation) => {
                    if request.strategy == ReservationStrategy::GpuClustering {
                        catalog.record_placement(request, plan);
                    }
                    return Ok(reservation);
                }
                Err(Abort::Done(result)) => return *result,
                Err(Abort::Replan) => {}
            }
        }
        // Capacity kept moving under every plan: a definite refusal that says so.
        Err(LedgerError::InsufficientCapacity {
            requester: request.requester.clone(),
            shortfalls: Vec::new(),
        })
    }

    pub(super) fn confirm_inner(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
    ) -> Result<Reservation, LedgerError> {
        self.with_record(
            "confirm",
            id,
            fence,
            |record, guards, state, now, outbox| {
                match state.state {
                    ReservationState::Confirmed => return Ok(record.reservation(state)),
                    ReservationState::Pending => {}
                    other => return Err(LedgerError::wrong_state("confirm", &record.id, other)),
                }
                for hold in &state.holds {
                    let dim = &mut guards[hold.slot].dims[hold.dim];
                    dim.pending -= hold.amount;
                    dim.confirmed += hold.amount;
                }
                self.disarm(record, state);
                state.state = ReservationState::Confirmed;
                state.updated_at = now;
                state.expires_at = None;
                outbox.push(Note::Confirmed);
                Ok(record.reservation(state))
            },
        )
    }
}
