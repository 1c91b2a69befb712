//! Reading the whole ledger: snapshots in one repeatable-read transaction, the audit in
//! SQL, the earliest deadline.

use std::time::Duration;

use postgres::Row;
use rm_model::{
    AuditReport, AuditViolation, CapacityUsage, FencingToken, LedgerError, LedgerSnapshot,
    Quantity, Reservation, ReservationLedger, ReservationState, Resource, ResourceName,
    ResourceType, Unit,
};

use crate::ledger::{PgLedger, corrupt, held_from, timestamp};

impl PgLedger {
    /// `snapshot`: due holds expired, then every row read in one transaction.
    pub(crate) fn take_snapshot(&self) -> Result<LedgerSnapshot, LedgerError> {
        loop {
            self.expire_due()?;
            let now = self.now();
            let (taken_at, resources, capacities, active, last) =
                self.pool.run("snapshot", |c| {
                    let mut tx = c
                        .client
                        .build_transaction()
                        .isolation_level(postgres::IsolationLevel::RepeatableRead)
                        .read_only(true)
                        .start()?;
                    let taken_at: i64 = tx
                        .query_one("SELECT coalesce($1::bigint, now_ns())", &[&now])?
                        .get(0);
                    let resources =
                        tx.query("SELECT name, spec FROM resource ORDER BY position", &[])?;
                    let capacities = tx.query(&format!("{USAGE} ORDER BY c.position"), &[])?;
                    let active = tx.query(
                        "SELECT * FROM reservation WHERE state IN ('pending', 'confirmed') \
                         ORDER BY fencing",
                        &[],
                    )?;
                    let last: i64 = tx
                        .query_one(
                            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM fencing",
                            &[],
                        )?
                        .get(0);
                    tx.commit()?;
                    Ok((taken_at, resources, capacities, active, last))
                })?;
            let active: Vec<Reservation> = active
                .iter()
                .map(|row| held_from("snapshot", row).map(|h| h.reservation))
                .collect::<Result<_, _>>()?;
            let taken = timestamp(taken_at);
            if active.iter().any(|r| {
                r.state == ReservationState::Pending && r.expires_at.is_some_and(|at| at <= taken)
            }) {
                continue;
            }
            let mut by_resource: std::collections::HashMap<&str, Vec<&Row>> =
                std::collections::HashMap::new();
            for row in &capacities {
                by_resource
                    .entry(row.get::<_, &str>("resource"))
                    .or_default()
                    .push(row);
            }
            let mut described = Vec::with_capacity(resources.len());
            let mut usage = Vec::with_capacity(capacities.len());
            for row in &resources {
                let resource: Resource = serde_json::from_str(row.get::<_, &str>("spec"))
                    .map_err(|e| corrupt("snapshot", "a resource", e))?;
                let mut rows: Vec<CapacityUsage> = by_resource
                    .get(row.get::<_, &str>("name"))
                    .map(|rows| {
                        rows.iter()
                            .map(|r| usage_of(resource.name(), r))
                            .collect::<Result<_, _>>()
                    })
                    .transpose()?
                    .unwrap_or_default();
                rows.sort_by(|a, b| a.resource_type.cmp(&b.resource_type));
                usage.extend(rows);
                described.push(resource);
            }
            return Ok(LedgerSnapshot {
                taken_at: taken,
                resources: described,
                usage,
                active,
                last_fencing_token: FencingToken(u64::try_from(last).unwrap_or(0)),
            });
        }
    }

    /// `audit`: conservation checked in SQL, in one transaction.
    pub(crate) fn audit_in_sql(&self) -> Result<AuditReport, LedgerError> {
        let (capacities, reservations, rows) = self.pool.run("audit", |c| {
            let mut tx = c
                .client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let capacities: i64 = tx.query_one("SELECT count(*) FROM capacity", &[])?.get(0);
            let reservations: i64 = tx
                .query_one(
                    "SELECT count(*) FROM reservation WHERE state IN ('pending', 'confirmed')",
                    &[],
                )?
                .get(0);
            let rows = tx.query(AUDIT, &[])?;
            tx.commit()?;
            Ok((capacities, reservations, rows))
        })?;
        let violations = rows
            .iter()
            .filter_map(|row| {
                Some(AuditViolation {
                    resource: ResourceName::new(row.get::<_, &str>(0)).ok()?,
                    resource_type: row.get::<_, &str>(1).parse().ok()?,
                    message: row.get(2),
                })
            })
            .collect();
        Ok(AuditReport {
            checked_capacities: usize::try_from(capacities).unwrap_or(0),
            checked_reservations: usize::try_from(reservations).unwrap_or(0),
            violations,
        })
    }

    /// `next_expiry`, by the ledger's clock.
    pub(crate) fn earliest_expiry(&self) -> Result<Option<Duration>, LedgerError> {
        let now = self.now();
        let row = self.pool.run("next expiry", |c| {
            c.client.query_one(
                "SELECT min(expires_at) - coalesce($1::bigint, now_ns()) FROM reservation \
                 WHERE state = 'pending'",
                &[&now],
            )
        })?;
        Ok(row
            .get::<_, Option<i64>>(0)
            .map(|left| Duration::from_nanos(u64::try_from(left).unwrap_or(0))))
    }
}

/// The usage of one capacity row.
pub(crate) fn usage_of(resource: &ResourceName, row: &Row) -> Result<CapacityUsage, LedgerError> {
    let resource_type: ResourceType = row
        .get::<_, &str>("resource_type")
        .parse()
        .map_err(|e| corrupt("snapshot", "a capacity type", e))?;
    let unit: Unit = row
        .get::<_, &str>("unit")
        .parse()
        .map_err(|e| corrupt("snapshot", "a unit", e))?;
    let (maximum, external, held, pending, confirmed): (i64, i64, i64, i64, i64) = (
        row.get("maximum"),
        row.get("external"),
        row.get("held"),
        row.get("pending"),
        row.get("confirmed"),
    );
    let free = maximum.saturating_sub(external).saturating_sub(held);
    Ok(CapacityUsage {
        resource: resource.clone(),
        resource_type,
        unit,
        capacity: Quantity::from_milli(maximum),
        external: Quantity::from_milli(external),
        pending: Quantity::from_milli(pending),
        confirmed: Quantity::from_milli(confirmed),
        leased: Quantity::ZERO,
        free: Quantity::from_milli(free.max(0)),
        draining: free < 0,
    })
}

/// Every capacity with what its active holds sum to, pending and confirmed: the row says
/// what is held, the reservations say in which state.
pub(crate) const USAGE: &str = "
SELECT c.resource, c.resource_type, c.unit, c.maximum, c.external, c.held,
    coalesce(s.pending, 0)::bigint AS pending, coalesce(s.confirmed, 0)::bigint AS confirmed
FROM capacity c LEFT JOIN (
    SELECT h.res, h.typ,
        sum(h.amount) FILTER (WHERE r.state = 'pending') AS pending,
        sum(h.amount) FILTER (WHERE r.state = 'confirmed') AS confirmed
    FROM reservation r,
        unnest(r.hold_resource, r.hold_type, r.hold_amount) AS h(res, typ, amount)
    WHERE r.state IN ('pending', 'confirmed')
    GROUP BY h.res, h.typ
) s ON c.resource = s.res AND c.resource_type = s.typ";

/// Conservation in SQL: what every capacity row holds equals the sum of the active
/// reservations' holds on it, nothing is negative, and every hold names a registered
/// capacity. (Holding more than the maximum is allowed only as draining after a shrink, which
/// grants never cause: the guard refuses them.)
const AUDIT: &str = "
WITH held AS (
    SELECT h.res, h.typ, sum(h.amount) AS amount
    FROM reservation r,
        unnest(r.hold_resource, r.hold_type, r.hold_amount) AS h(res, typ, amount)
    WHERE r.state IN ('pending', 'confirmed')
    GROUP BY h.res, h.typ
)
SELECT coalesce(c.resource, held.res), coalesce(c.resource_type, held.typ),
    CASE
        WHEN c.resource IS NULL THEN
            'active reservations hold capacity that is not registered'
        WHEN c.held < 0 THEN format('a negative amount held: %sm', c.held)
        ELSE format('accounted %sm held, but active reservations hold %sm', c.held,
            coalesce(held.amount, 0))
    END
FROM capacity c FULL JOIN held ON c.resource = held.res AND c.resource_type = held.typ
WHERE c.resource IS NULL OR c.held < 0 OR c.held <> coalesce(held.amount, 0)
";
