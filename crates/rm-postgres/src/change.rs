//! Changes of holds that take a transaction of several statements: shrinking an elastic
//! hold, and preempting victims for a request in one step.

use postgres::Row;
use rm_model::{
    EventKind, FencingToken, LedgerError, Quantity, Reservation, ReservationId, ReservationItem,
    ReservationRequest, ResourceName, shrink_item,
};

use crate::holds::Holds;
use crate::ledger::{
    Bind, COMMIT_ATTEMPTS, GrantCall, PgLedger, corrupt, held_from, invalid, request_key, timestamp,
};
use crate::pool::is_stale;

impl PgLedger {
    /// `shrink`: the row locked, the item and the hold changed, the difference credited.
    pub(crate) fn shrink_hold(
        &self,
        id: &ReservationId,
        fence: Option<FencingToken>,
        requirement: usize,
        to: Quantity,
    ) -> Result<Reservation, LedgerError> {
        let id_text = id.to_string();
        let fence_value = fence.map(|f| i64::try_from(f.0).unwrap_or(i64::MAX));
        let now = self.now();
        let no_ttl: Option<i64> = None;
        let no_by: Option<String> = None;
        // The locked row (with a due expiry applied), and the change when there is one.
        type Shrunk = (Row, Option<(Reservation, usize, Quantity, i64, i64)>);
        let (row, change): Shrunk = self.pool.run("shrink", |c| {
            let mut tx = c.client.transaction()?;
            let row = tx.query_one(
                &c.statements.act,
                &[&id_text, &fence_value, &now, &"lock", &no_ttl, &no_by],
            )?;
            let outcome: &str = row.get("outcome");
            if outcome == "unknown" {
                tx.commit()?;
                return Ok((row, None));
            }
            let Ok(held) = held_from("shrink", &row) else {
                tx.commit()?;
                return Ok((row, None));
            };
            if outcome != "same" || !held.reservation.state.holds_capacity() {
                tx.commit()?;
                return Ok((row, None));
            }
            let mut items = held.reservation.items.to_vec();
            let Ok(Some((index, from))) = shrink_item(&mut items, requirement, to) else {
                tx.commit()?;
                return Ok((row, None));
            };
            let given_back = from.as_milli() - to.as_milli();
            let resource = items[index].resource.as_str().to_owned();
            let resource_type = items[index].resource_type.as_str().to_owned();
            let Some(h) = held
                .holds
                .iter()
                .position(|(r, t, _)| *r == resource && *t == resource_type)
            else {
                tx.commit()?;
                return Ok((row, None));
            };
            let amounts: Vec<i64> = held
                .holds
                .iter()
                .enumerate()
                .map(|(k, (_, _, a))| if k == h { a - given_back } else { *a })
                .collect();
            tx.execute(
                "UPDATE capacity SET held = held - $3::bigint WHERE resource = $1 AND resource_type = $2",
                &[&resource, &resource_type, &given_back],
            )?;
            let at: i64 = row.get("at");
            let items_json = serde_json::to_string(&items).unwrap_or_default();
            tx.execute(
                "UPDATE reservation SET items = $2, hold_amount = $3, updated_at = $4 \
                 WHERE id = $1",
                &[&id_text, &items_json, &amounts, &at],
            )?;
            let mut reservation = held.reservation.clone();
            reservation.items = items.into();
            reservation.updated_at = timestamp(at);
            let kind = EventKind::Shrunk {
                reservation: reservation.id.clone(),
                requester: reservation.requester.clone(),
                requirement,
                resource: reservation.items[index].resource.clone(),
                from,
                to,
            };
            Self::notify(&mut tx, &kind, at)?;
            tx.commit()?;
            Ok((row, Some((reservation, index, from, given_back, at))))
        })?;
        // Errors, expiry and the idempotent cases as any other operation.
        let current = self.acted("shrink", id, fence_value, None, &row)?;
        let Some((reservation, index, from, given_back, at)) = change else {
            if !current.state.holds_capacity() {
                return Err(LedgerError::wrong_state("shrink", id, current.state));
            }
            let mut items = current.items.to_vec();
            // Nothing changed: either `to` is the current amount, or it is refused.
            shrink_item(&mut items, requirement, to)?;
            return Ok(current);
        };
        let item = &reservation.items[index];
        self.read_view().credit(
            item.resource.as_str(),
            item.resource_type.as_str(),
            given_back,
        );
        self.publish(at, || EventKind::Shrunk {
            reservation: reservation.id.clone(),
            requester: reservation.requester.clone(),
            requirement,
            resource: item.resource.clone(),
            from,
            to,
        });
        Ok(reservation)
    }

    /// `reserve_preempting`: victims locked in id order, every capacity row touched locked in
    /// the global order, the victims ended and the request granted, or nothing.
    pub(crate) fn grant_preempting(
        &self,
        request: &ReservationRequest,
        victims: &[ReservationId],
    ) -> Result<Reservation, LedgerError> {
        let key = request_key(request)?;
        self.admit(request, &key)?;
        let preemptor = request.id.clone().unwrap_or_else(ReservationId::generate);
        let preemptor_text = preemptor.to_string();
        if request.id.is_some()
            && let Some(existing) = self.lookup(&preemptor_text, &key, request)?
        {
            return Ok(existing);
        }
        self.refresh(true)?;
        let mut sorted: Vec<String> = victims.iter().map(ToString::to_string).collect();
        sorted.sort();
        sorted.dedup();
        let ttl = self.grant_ttl(request);
        let labels =
            serde_json::to_string(&request.labels).map_err(|e| invalid("labels", e.to_string()))?;
        let now = self.now();
        let no_ttl: Option<i64> = None;
        let no_by: Option<String> = None;
        let no_fence: Option<i64> = None;
        for _ in 0..COMMIT_ATTEMPTS {
            // Rows of the victims as ended, the grant's outcome, and what it planned.
            type Outcome =
                Result<Option<(Vec<Row>, Row, Vec<ReservationItem>, Holds)>, LedgerError>;
            let outcome: Outcome = self.pool.run("reserve", |c| {
                let mut tx = c.client.transaction()?;
                let mut extra: Vec<(usize, usize, i64)> = Vec::new();
                let mut victim_holds: Vec<(String, String)> = Vec::new();
                for victim in &sorted {
                    let row = tx.query_one(
                        &c.statements.act,
                        &[victim, &no_fence, &now, &"lock", &no_ttl, &no_by],
                    )?;
                    let outcome: &str = row.get("outcome");
                    let Ok(id) = ReservationId::new(victim) else {
                        return Ok(Err(invalid("victims", "not a reservation id")));
                    };
                    if outcome == "unknown" {
                        return Ok(Err(LedgerError::UnknownReservation { id }));
                    }
                    let held = match held_from("preempt", &row) {
                        Ok(held) => held,
                        Err(err) => return Ok(Err(err)),
                    };
                    if !held.reservation.state.holds_capacity() {
                        return Ok(Err(LedgerError::wrong_state(
                            "preempt",
                            &id,
                            held.reservation.state,
                        )));
                    }
                    let view = self.read_view();
                    for (resource, resource_type, amount) in &held.holds {
                        victim_holds.push((resource.clone(), resource_type.clone()));
                        let Ok(name) = ResourceName::new(resource) else {
                            continue;
                        };
                        if let Some(position) = view.catalog.position(&name)
                            && let Some(d) = view.catalog.slots[position]
                                .types
                                .iter()
                                .position(|t| t.as_str() == resource_type)
                        {
                            extra.push((position, d, *amount));
                        }
                    }
                }
                let (holds, items) = {
                    let view = self.read_view();
                    let affinity = match self.affinity(&view.catalog, request) {
                        Ok(affinity) => affinity,
                        Err(err) => return Ok(Err(err)),
                    };
                    match rm_plan::plan(&view.catalog, request, &affinity, true, &extra) {
                        Ok(plan) => match Self::holds(&view.catalog, &plan) {
                            Ok(holds) => (holds, Self::items(&view.catalog, request, &plan)),
                            Err(err) => return Ok(Err(err)),
                        },
                        Err(err) => return Ok(Err(err)),
                    }
                };
                // Every capacity row this touches, locked in the global order first.
                let mut lock_res: Vec<&str> = holds.resources.iter().map(String::as_str).collect();
                let mut lock_type: Vec<&str> = holds.types.iter().map(String::as_str).collect();
                for (r, t) in &victim_holds {
                    lock_res.push(r);
                    lock_type.push(t);
                }
                tx.execute(
                    "SELECT 1 FROM capacity c JOIN unnest($1::text[], $2::text[]) AS h(res, typ) \
                     ON c.resource = h.res AND c.resource_type = h.typ \
                     ORDER BY c.position, c.resource_type COLLATE \"C\" FOR UPDATE OF c",
                    &[&lock_res, &lock_type],
                )?;
                let mut ended = Vec::with_capacity(sorted.len());
                for victim in &sorted {
                    ended.push(tx.query_one(
                        &c.statements.act,
                        &[
                            victim,
                            &no_fence,
                            &now,
                            &"preempt",
                            &no_ttl,
                            &Some(&preemptor_text),
                        ],
                    )?);
                }
                let items_json = serde_json::to_string(&items).unwrap_or_default();
                let call = GrantCall {
                    id: &preemptor_text,
                    key: &key,
                    request,
                    labels: &labels,
                    items: &items_json,
                    holds: &holds,
                    now,
                    ttl,
                    bind: Bind::default(),
                };
                let row = match call.query(&mut tx, &c.statements.reserve) {
                    Ok(row) => row,
                    // The rows moved under the plan: everything rolls back, plan again.
                    Err(err) if is_stale(&err) => return Ok(Ok(None)),
                    Err(err) => return Err(err),
                };
                if row.get::<_, &str>(0) == "granted" {
                    tx.commit()?;
                }
                Ok(Ok(Some((ended, row, items, holds))))
            })?;
            let Some((ended, row, items, holds)) = outcome? else {
                self.refresh(false)?;
                continue;
            };
            match row.get::<_, &str>(0) {
                "granted" => {
                    for victim in &ended {
                        let Ok(held) = held_from("preempt", victim) else {
                            continue;
                        };
                        self.ended(&held, victim.get("at"), Some(preemptor.clone()));
                    }
                    holds.credit(&self.read_view(), -1);
                    return Ok(self.granted(&preemptor, request, items, &row));
                }
                other => {
                    if let Some(existing) = self.answer_existing(other, &preemptor_text)? {
                        return Ok(existing);
                    }
                    return Err(corrupt("reserve", "an outcome", other));
                }
            }
        }
        Err(LedgerError::InsufficientCapacity {
            requester: request.requester.clone(),
            shortfalls: Vec::new(),
        })
    }
}
