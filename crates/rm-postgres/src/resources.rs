//! Catalog changes: registering, updating, unregistering resources and changing a
//! capacity, each one transaction that takes the `meta` row first.

use std::sync::Arc;

use rm_model::{
    CapacityUsage, EventKind, LedgerError, Quantity, Resource, ResourceCapacity, ResourceName,
    ResourceType, ValidationContext,
};
use rm_plan::MAX_DIMS;

use crate::inspect::{USAGE, usage_of};
use crate::ledger::{PgLedger, corrupt, invalid, rejected};
use crate::pool::{Attempt, Conn};
use crate::view::PgSlot;

impl PgLedger {
    /// Bumps the catalog version in `tx` (serializing catalog changes) and returns it with
    /// the instant of the change.
    pub(crate) fn catalog_change(&self, tx: &mut postgres::Transaction<'_>) -> Attempt<(i64, i64)> {
        let version: i64 = tx
            .query_one(
                "UPDATE meta SET value = value + 1 WHERE key = 'catalog' RETURNING value",
                &[],
            )?
            .get(0);
        let now = self.now();
        let at: i64 = tx
            .query_one("SELECT coalesce($1::bigint, now_ns())", &[&now])?
            .get(0);
        Ok((version, at))
    }

    /// Publishes `kind` to other processes from within `tx`.
    pub(crate) fn notify(
        tx: &mut postgres::Transaction<'_>,
        kind: &EventKind,
        at: i64,
    ) -> Attempt<()> {
        let json = serde_json::to_string(kind).unwrap_or_else(|_| "{}".into());
        tx.execute("SELECT notify($1, $1, $2)", &[&json, &at])?;
        Ok(())
    }

    /// How many active reservations hold capacity on `name`.
    pub(crate) fn holders(tx: &mut postgres::Transaction<'_>, name: &str) -> Attempt<usize> {
        let count: i64 = tx
            .query_one(
                "SELECT count(*) FROM reservation WHERE state IN ('pending', 'confirmed') \
                 AND $1 = ANY (hold_resource)",
                &[&name],
            )?
            .get(0);
        Ok(usize::try_from(count).unwrap_or(usize::MAX))
    }

    /// Runs a catalog change in one transaction; `change` answers `Err` for a definite
    /// refusal (rolled back).
    pub(crate) fn change_catalog<T>(
        &self,
        operation: &'static str,
        mut change: impl FnMut(&mut postgres::Transaction<'_>, i64) -> Attempt<Result<T, LedgerError>>,
    ) -> Result<(T, i64, i64), LedgerError> {
        self.sweep(false)?;
        self.pool.run(operation, |c: &mut Conn| {
            let mut tx = c.client.transaction()?;
            let (version, at) = self.catalog_change(&mut tx)?;
            match change(&mut tx, at)? {
                Ok(value) => {
                    tx.commit()?;
                    Ok(Ok((value, version, at)))
                }
                Err(refusal) => Ok(Err(refusal)),
            }
        })?
    }

    pub(crate) fn all_resources(&self) -> Result<Vec<Resource>, LedgerError> {
        let rows = self.pool.run("resources", |c| {
            c.client
                .query("SELECT spec FROM resource ORDER BY position", &[])
        })?;
        rows.iter()
            .map(|row| {
                serde_json::from_str(row.get::<_, &str>(0))
                    .map_err(|e| corrupt("resources", "a resource", e))
            })
            .collect()
    }

    /// Checks a resource to register or update: at most `MAX_DIMS` capacity types, and the
    /// validator's rules (its name is checked by the caller, in SQL). Returns its stored form.
    fn admit_resource(&self, resource: &Resource) -> Result<String, LedgerError> {
        if resource.capacities().count() > MAX_DIMS {
            return Err(invalid(
                "capacities",
                format!("a resource has at most {MAX_DIMS} capacity types"),
            ));
        }
        if let Some(validator) = &self.validator {
            // The name is checked in SQL, under the catalog's lock (`register`, `update`):
            // the validator is given this process's view, not a read of every resource.
            let view = self.read_view();
            let context = ValidationContext {
                resources: &view.catalog.resources,
                active: &[],
                name_checked: true,
            };
            validator
                .validate_resource(resource, &context)
                .map_err(rejected)?;
        }
        serde_json::to_string(resource).map_err(|e| invalid("resource", e.to_string()))
    }

    /// `register_resource`.
    pub(crate) fn register(&self, resource: Resource) -> Result<(), LedgerError> {
        let spec = self.admit_resource(&resource)?;
        let name = resource.name().clone();
        let ((), version, at) = self.change_catalog("register", |tx, at| {
            if tx
                .query_opt("SELECT 1 FROM resource WHERE name = $1", &[&name.as_str()])?
                .is_some()
            {
                return Ok(Err(LedgerError::DuplicateResource { name: name.clone() }));
            }
            let row = tx.query_one(
                "INSERT INTO resource (name, spec) VALUES ($1, $2) RETURNING position, generation",
                &[&name.as_str(), &spec],
            )?;
            let (position, generation): (i64, i64) = (row.get(0), row.get(1));
            for (resource_type, capacity) in resource.capacities() {
                tx.execute(
                    "INSERT INTO capacity (resource, resource_type, position, generation, unit, \
                     maximum, external) VALUES ($1, $2, $3, $4, $5, $6::bigint, $7::bigint)",
                    &[
                        &name.as_str(),
                        &resource_type.as_str(),
                        &position,
                        &generation,
                        &capacity.unit().to_string(),
                        &capacity.maximum().as_milli(),
                        &capacity.current().as_milli(),
                    ],
                )?;
            }
            Self::notify(
                tx,
                &EventKind::ResourceRegistered {
                    resource: name.clone(),
                },
                at,
            )?;
            Ok(Ok(()))
        })?;
        {
            // The view follows when it saw every change before this one; else it reads again.
            let mut view = self.write_view();
            if view.version == version - 1 {
                let types: Vec<ResourceType> =
                    resource.capacities().map(|(t, _)| t.clone()).collect();
                let slot = PgSlot::new(types, 1);
                for (d, (_, capacity)) in resource.capacities().enumerate() {
                    slot.set(
                        d,
                        capacity.maximum().as_milli() - capacity.current().as_milli(),
                    );
                }
                view.catalog.insert(resource, Arc::new(slot));
                view.version = version;
            } else {
                view.version = -1;
            }
        }
        self.publish(at, || EventKind::ResourceRegistered { resource: name });
        Ok(())
    }

    /// `update_resource`.
    pub(crate) fn update(&self, resource: Resource) -> Result<(), LedgerError> {
        let spec = self.admit_resource(&resource)?;
        let name = resource.name().clone();
        let (_, _, at) = self.change_catalog("update", |tx, at| {
            let Some(row) = tx.query_opt(
                "SELECT position, generation FROM resource WHERE name = $1 FOR UPDATE",
                &[&name.as_str()],
            )?
            else {
                return Ok(Err(LedgerError::UnknownResource { name: name.clone() }));
            };
            let (position, generation): (i64, i64) = (row.get(0), row.get(1));
            let rows = tx.query(
                "SELECT resource_type, unit, held FROM capacity \
                 WHERE resource = $1 ORDER BY position, resource_type COLLATE \"C\" FOR UPDATE",
                &[&name.as_str()],
            )?;
            let mut removed = Vec::new();
            for row in &rows {
                let type_text: String = row.get(0);
                let unit: String = row.get(1);
                let held = row.get::<_, i64>(2) != 0;
                let new = type_text
                    .parse::<ResourceType>()
                    .ok()
                    .and_then(|t| resource.capacity_of(&t).cloned());
                match new {
                    None if held => {
                        let active = Self::holders(tx, name.as_str())?;
                        return Ok(Err(LedgerError::ResourceBusy {
                            name: name.clone(),
                            active,
                        }));
                    }
                    None => removed.push(type_text),
                    Some(capacity) if held && capacity.unit().to_string() != unit => {
                        return Ok(Err(invalid(
                            format!("capacities.{type_text}.unit"),
                            "cannot change the unit of a capacity that is held",
                        )));
                    }
                    Some(_) => {}
                }
            }
            let generation = generation + 1;
            tx.execute(
                "DELETE FROM capacity WHERE resource = $1 AND resource_type = ANY ($2)",
                &[&name.as_str(), &removed],
            )?;
            for (resource_type, capacity) in resource.capacities() {
                tx.execute(
                    "INSERT INTO capacity (resource, resource_type, position, generation, unit, \
                     maximum, external) VALUES ($1, $2, $3, $4, $5, $6::bigint, $7::bigint) \
                     ON CONFLICT (resource, resource_type) DO UPDATE SET \
                     generation = excluded.generation, unit = excluded.unit, \
                     maximum = excluded.maximum, external = excluded.external",
                    &[
                        &name.as_str(),
                        &resource_type.as_str(),
                        &position,
                        &generation,
                        &capacity.unit().to_string(),
                        &capacity.maximum().as_milli(),
                        &capacity.current().as_milli(),
                    ],
                )?;
            }
            tx.execute(
                "UPDATE resource SET spec = $2, generation = $3 WHERE name = $1",
                &[&name.as_str(), &spec, &generation],
            )?;
            Self::notify(
                tx,
                &EventKind::ResourceUpdated {
                    resource: name.clone(),
                },
                at,
            )?;
            Ok(Ok(()))
        })?;
        self.invalidate();
        self.publish(at, || EventKind::ResourceUpdated { resource: name });
        Ok(())
    }

    /// `unregister_resource`.
    pub(crate) fn unregister(&self, name: &ResourceName) -> Result<Resource, LedgerError> {
        let (spec, _, at) = self.change_catalog("unregister", |tx, at| {
            let Some(row) = tx.query_opt(
                "SELECT spec FROM resource WHERE name = $1 FOR UPDATE",
                &[&name.as_str()],
            )?
            else {
                return Ok(Err(LedgerError::UnknownResource { name: name.clone() }));
            };
            let spec: String = row.get(0);
            // Locking its capacity rows waits for grants in flight on it.
            tx.execute(
                "SELECT 1 FROM capacity WHERE resource = $1 \
                 ORDER BY position, resource_type COLLATE \"C\" FOR UPDATE",
                &[&name.as_str()],
            )?;
            let active = Self::holders(tx, name.as_str())?;
            if active > 0 {
                return Ok(Err(LedgerError::ResourceBusy {
                    name: name.clone(),
                    active,
                }));
            }
            tx.execute("DELETE FROM resource WHERE name = $1", &[&name.as_str()])?;
            Self::notify(
                tx,
                &EventKind::ResourceUnregistered {
                    resource: name.clone(),
                },
                at,
            )?;
            Ok(Ok(spec))
        })?;
        let resource: Resource =
            serde_json::from_str(&spec).map_err(|e| corrupt("unregister", "a resource", e))?;
        self.invalidate();
        self.publish(at, || EventKind::ResourceUnregistered {
            resource: name.clone(),
        });
        Ok(resource)
    }

    /// `set_capacity`.
    pub(crate) fn change_capacity(
        &self,
        name: &ResourceName,
        resource_type: &ResourceType,
        maximum: Quantity,
    ) -> Result<CapacityUsage, LedgerError> {
        let ((usage, old), version, at) = self.change_catalog("set capacity", |tx, at| {
            let unknown = || LedgerError::UnknownResource { name: name.clone() };
            let Some(row) = tx.query_opt(
                "SELECT spec FROM resource WHERE name = $1 FOR UPDATE",
                &[&name.as_str()],
            )?
            else {
                return Ok(Err(unknown()));
            };
            let Ok(resource) = serde_json::from_str::<Resource>(row.get(0)) else {
                return Ok(Err(unknown()));
            };
            let Some(old) = resource.capacity_of(resource_type).cloned() else {
                return Ok(Err(unknown()));
            };
            let new = match ResourceCapacity::new(old.current(), maximum, old.unit().clone()) {
                Ok(new) => new,
                Err(err) => return Ok(Err(invalid("maximum", err.to_string()))),
            };
            let changed = tx.execute(
                "UPDATE capacity SET maximum = $3::bigint WHERE resource = $1 AND resource_type = $2",
                &[&name.as_str(), &resource_type.as_str(), &maximum.as_milli()],
            )?;
            if changed == 0 {
                return Ok(Err(unknown()));
            }
            let row = tx.query_one(
                &format!("{USAGE} WHERE c.resource = $1 AND c.resource_type = $2"),
                &[&name.as_str(), &resource_type.as_str()],
            )?;
            let usage = match usage_of(name, &row) {
                Ok(usage) => usage,
                Err(err) => return Ok(Err(err)),
            };
            let resource = resource.with_capacity(resource_type.clone(), new);
            let spec = serde_json::to_string(&resource).unwrap_or_default();
            tx.execute(
                "UPDATE resource SET spec = $2 WHERE name = $1",
                &[&name.as_str(), &spec],
            )?;
            Self::notify(
                tx,
                &EventKind::CapacityChanged {
                    resource: name.clone(),
                    resource_type: resource_type.clone(),
                    old_maximum: old.maximum(),
                    new_maximum: maximum,
                    draining: usage.draining,
                },
                at,
            )?;
            Ok(Ok((usage, old)))
        })?;
        {
            let mut view = self.write_view();
            let position = view.catalog.position(name);
            match position {
                Some(position) if view.version == version - 1 => {
                    let slot = view.catalog.slots[position].clone();
                    if let Some(d) = slot.types.iter().position(|t| t == resource_type) {
                        slot.add(d, maximum.as_milli() - old.maximum().as_milli());
                    }
                    if let Ok(new) =
                        ResourceCapacity::new(old.current(), maximum, old.unit().clone())
                    {
                        let resource = view.catalog.resources[position]
                            .clone()
                            .with_capacity(resource_type.clone(), new);
                        view.catalog.resources[position] = resource;
                        view.catalog.changed();
                    }
                    view.version = version;
                }
                _ => view.version = -1,
            }
        }
        self.publish(at, || EventKind::CapacityChanged {
            resource: name.clone(),
            resource_type: resource_type.clone(),
            old_maximum: old.maximum(),
            new_maximum: maximum,
            draining: usage.draining,
        });
        Ok(usage)
    }
}
