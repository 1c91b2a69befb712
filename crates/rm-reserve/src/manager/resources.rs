//! Resource operations: registration, update (with draining), unregistration and capacity
//! changes, each under the catalog's write lock.

use super::*;

impl ReservationManager {
    pub(super) fn register(&self, resource: Resource) -> Result<(), LedgerError> {
        // Expired holds must not count against the change.
        self.run_timers(self.clock.now());
        let mut catalog = self.write_catalog();
        if catalog.position(resource.name()).is_some() {
            return Err(LedgerError::DuplicateResource {
                name: resource.name().clone(),
            });
        }
        if let Some(validator) = &self.validator {
            // The name was looked up in the catalog's index above.
            let context = ValidationContext {
                resources: &catalog.resources,
                active: &[],
                name_checked: true,
            };
            validator
                .validate_resource(&resource, &context)
                .map_err(rejected)?;
        }
        let name = resource.name().clone();
        let Some(slot) = Slot::new(&resource) else {
            return Err(invalid(
                "capacities",
                format!("a resource has at most {MAX_DIMS} capacity types"),
            ));
        };
        catalog.insert(resource, Arc::new(slot));
        drop(catalog);
        self.observers
            .publish(self.clock.now(), || EventKind::ResourceRegistered {
                resource: name,
            });
        Ok(())
    }

    pub(super) fn update(&self, resource: Resource) -> Result<(), LedgerError> {
        self.run_timers(self.clock.now());
        let mut catalog = self.write_catalog();
        let position =
            catalog
                .position(resource.name())
                .ok_or_else(|| LedgerError::UnknownResource {
                    name: resource.name().clone(),
                })?;
        if let Some(validator) = &self.validator {
            // The name is the replaced resource's own (found at `position` above).
            let context = ValidationContext {
                resources: &catalog.resources,
                active: &[],
                name_checked: true,
            };
            validator
                .validate_resource(&resource, &context)
                .map_err(rejected)?;
        }
        let slot = catalog.slots[position].clone();
        {
            let mut state = lock(&slot.state);
            // Check everything first.
            let busy = || LedgerError::ResourceBusy {
                name: resource.name().clone(),
                active: state.holders,
            };
            let mut added = 0;
            for (resource_type, capacity) in resource.capacities() {
                match state.dim(resource_type) {
                    Some(d) => {
                        let dim = &state.dims[d];
                        let in_use = dim.is_held() || dim.leased(slot.raw_free(d)) != 0;
                        if in_use && &dim.unit != capacity.unit() {
                            return Err(invalid(
                                format!("capacities.{resource_type}.unit"),
                                "cannot change the unit of a capacity that is held",
                            ));
                        }
                    }
                    None => added += 1,
                }
            }
            if state.dims.len() + added > MAX_DIMS {
                return Err(invalid(
                    "capacities",
                    format!(
                        "a resource has at most {MAX_DIMS} capacity types, counting removed ones"
                    ),
                ));
            }
            let removed: Vec<usize> = (0..state.dims.len())
                .filter(|&d| {
                    !state.dims[d].removed
                        && resource.capacity_of(&state.dims[d].resource_type).is_none()
                })
                .collect();
            if removed.iter().any(|&d| state.dims[d].is_held()) {
                return Err(busy());
            }
            // Close the removed capacities; a lease may hold some of one, which makes it busy.
            let closed: Vec<(usize, i64)> = removed.iter().map(|&d| (d, slot.close(d))).collect();
            if closed
                .iter()
                .any(|&(d, free)| state.dims[d].leased(free) != 0)
            {
                for (d, free) in closed {
                    slot.reopen(d, free);
                }
                return Err(busy());
            }
            // Apply.
            for (d, _) in closed {
                state.dims[d].removed = true;
            }
            for (resource_type, capacity) in resource.capacities() {
                let fresh = crate::catalog::DimState::from_capacity(resource_type, capacity);
                match state.dim(resource_type) {
                    Some(d) => {
                        let dim = &mut state.dims[d];
                        slot.give(d, fresh.initial_free() - dim.initial_free());
                        dim.unit = fresh.unit;
                        dim.maximum = fresh.maximum;
                        dim.external = fresh.external;
                    }
                    None => {
                        let d = state.dims.len();
                        slot.reopen(d, fresh.initial_free());
                        state.dims.push(fresh);
                    }
                }
            }
        }
        let name = resource.name().clone();
        catalog.resources[position] = resource;
        catalog.changed();
        drop(catalog);
        self.observers
            .publish(self.clock.now(), || EventKind::ResourceUpdated {
                resource: name,
            });
        Ok(())
    }

    pub(super) fn unregister(&self, name: &ResourceName) -> Result<Resource, LedgerError> {
        self.run_timers(self.clock.now());
        let mut catalog = self.write_catalog();
        let position = catalog
            .position(name)
            .ok_or_else(|| LedgerError::UnknownResource { name: name.clone() })?;
        let slot = catalog.slots[position].clone();
        {
            let state = lock(&slot.state);
            let busy = LedgerError::ResourceBusy {
                name: name.clone(),
                active: state.holders,
            };
            if state.holders > 0 {
                return Err(busy);
            }
            let closed: Vec<(usize, i64)> = (0..state.dims.len())
                .filter(|&d| !state.dims[d].removed)
                .map(|d| (d, slot.close(d)))
                .collect();
            if closed
                .iter()
                .any(|&(d, free)| state.dims[d].leased(free) != 0)
            {
                for (d, free) in closed {
                    slot.reopen(d, free);
                }
                return Err(busy);
            }
        }
        let resource = catalog.remove(position);
        drop(catalog);
        self.observers
            .publish(self.clock.now(), || EventKind::ResourceUnregistered {
                resource: name.clone(),
            });
        Ok(resource)
    }

    pub(super) fn change_capacity(
        &self,
        name: &ResourceName,
        resource_type: &ResourceType,
        maximum: Quantity,
    ) -> Result<CapacityUsage, LedgerError> {
        self.run_timers(self.clock.now());
        let mut catalog = self.write_catalog();
        let position = catalog
            .position(name)
            .ok_or_else(|| LedgerError::UnknownResource { name: name.clone() })?;
        let old = catalog.resources[position]
            .capacity_of(resource_type)
            .ok_or_else(|| LedgerError::UnknownResource { name: name.clone() })?
            .clone();
        let new = ResourceCapacity::new(old.current(), maximum, old.unit().clone())
            .map_err(|err| invalid("maximum", err.to_string()))?;
        let slot = catalog.slots[position].clone();
        let usage = {
            let mut state = lock(&slot.state);
            let d = state
                .dim(resource_type)
                .ok_or_else(|| LedgerError::UnknownResource { name: name.clone() })?;
            let dim = &mut state.dims[d];
            slot.give(d, maximum.as_milli() - dim.maximum);
            dim.maximum = maximum.as_milli();
            dim.usage(name, slot.raw_free(d))
        };
        let resource = catalog.resources[position]
            .clone()
            .with_capacity(resource_type.clone(), new);
        catalog.resources[position] = resource;
        catalog.changed();
        drop(catalog);
        self.observers
            .publish(self.clock.now(), || EventKind::CapacityChanged {
                resource: name.clone(),
                resource_type: resource_type.clone(),
                old_maximum: old.maximum(),
                new_maximum: maximum,
                draining: usage.draining,
            });
        Ok(usage)
    }
}
