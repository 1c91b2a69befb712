//! Registration, grants (all or nothing, exactly what was asked), refusals that explain, and retries by id.

use super::*;

/// Registered resources show in `resources()` and the snapshot with all capacity free.
pub fn registers_resources(make: MakeLedger<'_>) {
    let (_, ledger) = setup(make, vec![node("a", 8), host("b", 16, 64)]);
    let names: Vec<_> = ledger
        .resources()
        .unwrap()
        .iter()
        .map(|r| r.name().to_string())
        .collect();
    assert_eq!(names, ["a", "b"], "registration order");
    assert_eq!(free_cores(&*ledger, "a"), 8.into());
    assert_eq!(free(&*ledger, "b", &ResourceType::Memory), 64.into());
    let snapshot = ledger.snapshot().unwrap();
    assert_eq!(snapshot.usage.len(), 3);
    assert!(snapshot.active.is_empty());
    assert_clean(&*ledger);
}

/// A duplicate name is refused and changes nothing.
pub fn duplicate_registration_changes_nothing(make: MakeLedger<'_>) {
    let (_, ledger) = setup(make, vec![node("a", 8)]);
    let before = ledger.snapshot().unwrap();
    let err = ledger.register_resource(node("a", 99)).unwrap_err();
    assert_eq!(err.code(), "duplicate-resource", "{err}");
    let after = ledger.snapshot().unwrap();
    assert_eq!(before.usage, after.usage);
    assert_eq!(before.resources, after.resources);
}

/// A grant debits exactly what was asked, starts pending and keeps the audit clean.
pub fn reserve_debits_exactly(make: MakeLedger<'_>) {
    let (fixture, ledger) = setup(make, vec![node("a", 8)]);
    let reservation = ledger.reserve(&ask("t1", vec![cores(3)])).unwrap();
    assert_eq!(reservation.state, ReservationState::Pending);
    assert_eq!(reservation.requester, requester("t1"));
    assert_eq!(placed_on(&reservation), ["a"]);
    assert_eq!(reservation.items[0].amount, 3.into());
    assert_eq!(reservation.items[0].requirement, 0);
    assert_eq!(
        reservation.expires_at,
        Some(fixture.clock.now_plus(fixture.default_ttl))
    );
    assert_eq!(free_cores(&*ledger, "a"), 5.into());
    let usage = ledger.snapshot().unwrap();
    let usage = usage.usage_of("a", &ResourceType::Compute).unwrap();
    assert_eq!((usage.pending, usage.confirmed), (3.into(), Quantity::ZERO));
    assert_clean(&*ledger);
}

/// A request whose second requirement does not fit grants nothing at all.
pub fn reserve_is_all_or_nothing(make: MakeLedger<'_>) {
    let (_, ledger) = setup(make, vec![node("a", 8), node("b", 4)]);
    let before = ledger.snapshot().unwrap().usage;
    expect_err(
        ledger.reserve(&ask("t1", vec![cores(6), cores(6)])),
        "insufficient-capacity",
    );
    assert_eq!(
        ledger.snapshot().unwrap().usage,
        before,
        "nothing may stay held"
    );
    assert!(ledger.snapshot().unwrap().active.is_empty());
    // Both fit when asked for what there is.
    let both = ledger
        .reserve(&ask("t1", vec![cores(6), cores(4)]))
        .unwrap();
    assert_eq!(both.items.len(), 2);
    assert_clean(&*ledger);
}

/// The refusal explains each requirement: matches, best candidate, availability, shortfall.
pub fn refusal_explains_each_requirement(make: MakeLedger<'_>) {
    let labelled = node("b", 4)
        .with_label("zone", "x")
        .expect("label is well-formed");
    let (_, ledger) = setup(make, vec![node("a", 8), labelled]);
    ledger
        .reserve(&ask("hog", vec![cores(5)]).with_strategy(ReservationStrategy::Greedy))
        .unwrap();
    let request = ask(
        "t1",
        vec![
            cores(1),
            cores(6),
            gib(1),
            cores(1).with_constraint(Constraint::label("zone").expect("key").eq("nowhere")),
        ],
    );
    let err = expect_err(ledger.reserve(&request), "insufficient-capacity");
    let LedgerError::InsufficientCapacity {
        shortfalls,
        requester: who,
    } = err
    else {
        unreachable!("checked by expect_err");
    };
    assert_eq!(who, requester("t1"));
    let indices: Vec<_> = shortfalls.iter().map(|s| s.requirement).collect();
    assert_eq!(
        indices,
        [1, 2, 3],
        "only requirements that cannot be placed: {shortfalls:#?}"
    );
    let six = &shortfalls[0];
    assert_eq!(six.matching_resources, 2);
    assert_eq!(six.best_candidate.as_ref().map(|n| n.as_str()), Some("b"));
    assert_eq!(
        (six.requested, six.available, six.short_by),
        (6.into(), 4.into(), 2.into())
    );
    let memory = &shortfalls[1];
    assert_eq!(
        (memory.matching_resources, memory.best_candidate.clone()),
        (0, None)
    );
    assert!(
        memory
            .detail
            .contains("no registered resource offers memory"),
        "{}",
        memory.detail
    );
    let constrained = &shortfalls[2];
    assert_eq!(constrained.matching_resources, 0);
    assert_eq!(constrained.short_by, 1.into());
}

/// Every request that differs from `request` in exactly one field that changes what is granted
/// (requester, priority, strategy, TTL, labels, preemptibility, co-location label, and per
/// requirement its type, unit, amount, constraints, preferences, affinity, co-location group
/// and minimum), each named by that field. A ledger must answer each of them, sent under the
/// id `request` used, with an id conflict.
pub fn single_field_changes(request: &ReservationRequest) -> Vec<(String, ReservationRequest)> {
    let mut changes: Vec<(String, ReservationRequest)> = Vec::new();
    let mut change = |field: &str, edit: &dyn Fn(&mut ReservationRequest)| {
        let mut changed = request.clone();
        edit(&mut changed);
        changes.push((field.to_owned(), changed));
    };
    change("requester", &|r| {
        r.requester = requester(&format!("{}-other", r.requester));
    });
    change("priority", &|r| r.priority.0 = r.priority.0.wrapping_add(1));
    change("strategy", &|r| {
        r.strategy = if r.strategy == ReservationStrategy::Greedy {
            ReservationStrategy::BinPack
        } else {
            ReservationStrategy::Greedy
        };
    });
    change("ttl", &|r| {
        r.ttl = match r.ttl {
            Some(ttl) => Some(ttl + Duration::from_millis(1)),
            None => Some(Duration::from_secs(1)),
        };
    });
    change("labels", &|r| {
        let mut labels = r.labels.clone();
        let value = if labels.get("changed") == Some("yes") {
            "no"
        } else {
            "yes"
        };
        labels.insert("changed", value).expect("a valid label");
        r.labels = labels;
    });
    change("preemptible", &|r| r.preemptible = !r.preemptible);
    change("confirm_on_grant", &|r| {
        r.confirm_on_grant = !r.confirm_on_grant
    });
    change("colocate_by", &|r| {
        r.colocate_by = match &r.colocate_by {
            Some(_) => None,
            None => Some(rm_model::LabelKey::new("zone").expect("a valid label key")),
        };
    });
    for i in 0..request.requirements.len() {
        let field = |name: &str| format!("requirements[{i}].{name}");
        let edit = |r: &mut ReservationRequest,
                    f: &dyn Fn(ResourceRequirement) -> ResourceRequirement| {
            r.requirements[i] = f(r.requirements[i].clone());
        };
        change(&field("type"), &|r| {
            edit(r, &|q| {
                let other = if *q.resource_type() == ResourceType::Gpu {
                    ResourceType::Compute
                } else {
                    ResourceType::Gpu
                };
                ResourceRequirement::new(other, q.amount(), Unit::DEVICES)
            });
        });
        change(&field("unit"), &|r| {
            edit(r, &|q| {
                let unit = if *q.unit() == Unit::MILLICORES {
                    Unit::CORES
                } else {
                    Unit::MILLICORES
                };
                ResourceRequirement::new(q.resource_type().clone(), q.amount(), unit)
            });
        });
        change(&field("amount"), &|r| {
            edit(r, &|q| {
                let more = q
                    .amount()
                    .checked_add(Quantity::from(1))
                    .unwrap_or(Quantity::ZERO);
                q.with_amount(more)
            });
        });
        change(&field("constraints"), &|r| {
            edit(r, &|q| {
                q.with_constraint(Constraint::label("changed").expect("a valid key").exists())
            });
        });
        change(&field("preferences"), &|r| {
            edit(r, &|q| {
                q.with_preference(
                    7,
                    Constraint::label("changed").expect("a valid key").exists(),
                )
            });
        });
        change(&field("affinity"), &|r| {
            edit(r, &|q| {
                q.with_affinity(AffinityTerm::preferred(
                    AffinityKind::AntiAffinity,
                    Selector::requester(requester("changed")),
                    Topology::Resource,
                    3,
                ))
            });
        });
        change(&field("colocate"), &|r| {
            edit(r, &|q| {
                let group = if q.colocation().is_some_and(|g| g.as_str() == "changed") {
                    "other"
                } else {
                    "changed"
                };
                q.colocated(rm_model::ColocationGroup::new(group).expect("a valid group"))
            });
        });
        change(&field("minimum"), &|r| {
            edit(r, &|q| {
                let minimum = match q.minimum() {
                    Some(m) if m.is_positive() => Quantity::ZERO,
                    _ => Quantity::from_milli(1),
                };
                q.elastic(minimum)
            });
        });
    }
    changes
}

/// A retry under a used id that differs in any one field that changes what is granted is an
/// id conflict, and leaves the first reservation as it was.
pub fn retries_that_change_any_field_conflict(make: MakeLedger<'_>) {
    let (_, ledger) = setup(make, vec![host("a", 8, 16), host("b", 8, 16)]);
    let request = ask("t1", vec![cores(2), gib(1)])
        .with_id(rid("job-1"))
        .with_ttl(Duration::from_secs(5));
    let first = ledger.reserve(&request).unwrap();
    let before = ledger.snapshot().unwrap().usage;
    for (field, changed) in single_field_changes(&request) {
        assert!(
            !changed.same_request_as(&request),
            "changing {field} makes another request"
        );
        let answer = ledger.reserve(&changed);
        assert!(
            matches!(answer, Err(LedgerError::IdConflict { .. })),
            "changing {field}: expected an id conflict, got {answer:?}"
        );
    }
    assert_eq!(ledger.snapshot().unwrap().usage, before, "nothing changed");
    assert_eq!(ledger.reserve(&request).unwrap(), first);
    assert_clean(&*ledger);
}

/// Retrying with the same id and request returns the same reservation; a different request
/// under a used id is a conflict.
pub fn retries_by_id_are_idempotent(make: MakeLedger<'_>) {
    let (_, ledger) = setup(make, vec![node("a", 8)]);
    let request = ask("t1", vec![cores(2)]).with_id(rid("job-1"));
    let first = ledger.reserve(&request).unwrap();
    let again = ledger.reserve(&request).unwrap();
    assert_eq!(first.id, rid("job-1"));
    assert_eq!(again, first, "a retry returns the same reservation");
    assert_eq!(free_cores(&*ledger, "a"), 6.into(), "debited once");
    expect_err(
        ledger.reserve(&ask("t1", vec![cores(3)]).with_id(rid("job-1"))),
        "id-conflict",
    );
    expect_err(
        ledger.reserve(&ask("t2", vec![cores(2)]).with_id(rid("job-1"))),
        "id-conflict",
    );
    ledger.confirm(&first.id, None).unwrap();
    ledger.release(&first.id, None).unwrap();
    let late = ledger.reserve(&request).unwrap();
    assert_eq!(
        late.state,
        ReservationState::Released,
        "a late retry sees the current state"
    );
    assert_eq!(
        free_cores(&*ledger, "a"),
        8.into(),
        "and grants nothing again"
    );
    assert_clean(&*ledger);
}
