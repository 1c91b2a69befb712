//! Where grants land: hard constraints, strategies, co-location, unit conversion, affinity, elastic holds, preemption in one step.

use super::*;

/// Hard constraints decide where a requirement may land.
pub fn constraints_filter_resources(make: MakeLedger<'_>) {
    let arm = node("arm", 8).with_label("arch", "arm64").expect("label");
    let x86 = node("x86", 8).with_label("arch", "x86_64").expect("label");
    let (_, ledger) = setup(make, vec![arm, x86]);
    let wants_x86 = cores(2).with_constraint(Constraint::label("arch").expect("key").eq("x86_64"));
    let hold = ledger
        .reserve(&ask("t1", vec![wants_x86.clone()]).with_strategy(ReservationStrategy::Greedy))
        .unwrap();
    assert_eq!(placed_on(&hold), ["x86"]);
    let too_big = cores(7).with_constraint(Constraint::label("arch").expect("key").eq("x86_64"));
    expect_err(
        ledger.reserve(&ask("t2", vec![too_big])),
        "insufficient-capacity",
    );
    assert_clean(&*ledger);
}

/// Greedy takes the first that fits, balanced the least allocated, bin-pack the most
/// allocated that still fits; with one dimension, aligned takes the first that fits.
pub fn strategies_choose_as_documented(make: MakeLedger<'_>) {
    for (strategy, expected) in [
        (ReservationStrategy::Greedy, "a"),
        (ReservationStrategy::Balanced, "c"),
        (ReservationStrategy::BinPack, "b"),
        (ReservationStrategy::Aligned, "a"),
    ] {
        let (_, ledger) = setup(make, vec![node("a", 10), node("b", 10), node("c", 10)]);
        // Load: a has 6 free, b has 3 free, c has 10 free.
        for (who, amount) in [("load-a", 4), ("load-b", 7)] {
            ledger
                .reserve(&ask(who, vec![cores(amount)]).with_strategy(ReservationStrategy::Greedy))
                .unwrap();
        }
        assert_eq!(free_cores(&*ledger, "a"), 6.into());
        assert_eq!(free_cores(&*ledger, "b"), 3.into());
        let hold = ledger
            .reserve(&ask("t", vec![cores(3)]).with_strategy(strategy))
            .unwrap();
        assert_eq!(placed_on(&hold), [expected], "{strategy:?}");
        assert_clean(&*ledger);
    }
}

/// Requirements of one co-location group land on one resource.
pub fn colocated_requirements_share_a_resource(make: MakeLedger<'_>) {
    let (_, ledger) = setup(
        make,
        vec![
            host("small", 8, 8),
            host("wide", 4, 64),
            host("big", 16, 64),
        ],
    );
    let group = rm_model::ColocationGroup::new("task").expect("group name");
    let request = ask(
        "t",
        vec![
            cores(6).colocated(group.clone()),
            gib(32).colocated(group.clone()),
        ],
    )
    .with_strategy(ReservationStrategy::Greedy);
    let hold = ledger.reserve(&request).unwrap();
    assert_eq!(placed_on(&hold), ["big", "big"]);
    // The same sizes without co-location may split.
    let split = ask("t2", vec![cores(6), gib(24)]).with_strategy(ReservationStrategy::Greedy);
    let hold = ledger.reserve(&split).unwrap();
    assert_eq!(placed_on(&hold), ["small", "wide"]);
    // Now big has 10 cores and 32 GiB free, wide 4 cores and 40 GiB: each part fits
    // somewhere, but no resource holds both at once.
    let again = ask(
        "t3",
        vec![cores(5).colocated(group.clone()), gib(36).colocated(group)],
    );
    let err = expect_err(ledger.reserve(&again), "insufficient-capacity");
    assert!(err.to_string().contains("co-located"), "{err}");
    assert_clean(&*ledger);
}

/// Amounts in a convertible unit are converted exactly; inexact ones are not granted.
pub fn units_convert_exactly(make: MakeLedger<'_>) {
    let (_, ledger) = setup(make, vec![host("h", 4, 8)]);
    let milli = ResourceRequirement::new(ResourceType::Compute, 1500, Unit::MILLICORES);
    let mib = ResourceRequirement::new(ResourceType::Memory, 512, Unit::MIB);
    let hold = ledger.reserve(&ask("t", vec![milli, mib])).unwrap();
    assert_eq!(hold.items[0].amount, Quantity::from_milli(1500));
    assert_eq!(hold.items[0].unit, Unit::CORES);
    assert_eq!(hold.items[1].amount, Quantity::from_milli(500));
    assert_eq!(hold.items[1].unit, Unit::GIB);
    assert_eq!(
        free(&*ledger, "h", &ResourceType::Memory),
        Quantity::from_milli(7500)
    );
    let one_byte = ResourceRequirement::new(ResourceType::Memory, 1, Unit::BYTES);
    expect_err(
        ledger.reserve(&ask("t", vec![one_byte])),
        "insufficient-capacity",
    );
    assert_clean(&*ledger);
}

/// Required anti-affinity keeps a requester's holds apart; required affinity keeps them
/// together.
pub fn affinity_rules_place_relative_to_other_holds(make: MakeLedger<'_>) {
    let (_, ledger) = setup(make, vec![node("a", 8), node("b", 8), node("c", 8)]);
    let web = Selector::requester(requester("web"));
    let apart = AffinityTerm::required(AffinityKind::AntiAffinity, web.clone(), Topology::Resource);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let hold = ledger
            .reserve(
                &ask("web", vec![cores(1).with_affinity(apart.clone())])
                    .with_strategy(ReservationStrategy::Greedy),
            )
            .unwrap();
        seen.extend(placed_on(&hold).into_iter().map(str::to_owned));
    }
    assert_eq!(seen, ["a", "b", "c"]);
    expect_err(
        ledger.reserve(&ask("web", vec![cores(1).with_affinity(apart)])),
        "insufficient-capacity",
    );
    let near = AffinityTerm::required(
        AffinityKind::Affinity,
        Selector::requester(requester("db")),
        Topology::Resource,
    );
    let db = ledger
        .reserve(&ask("db", vec![cores(1)]).with_strategy(ReservationStrategy::BinPack))
        .unwrap();
    let cache = ledger
        .reserve(
            &ask("cache", vec![cores(1).with_affinity(near)])
                .with_strategy(ReservationStrategy::Balanced),
        )
        .unwrap();
    assert_eq!(placed_on(&cache), placed_on(&db));
    assert_clean(&*ledger);
}

/// Elastic holds shrink toward their minimum and give the difference back; never below the
/// minimum, above the current amount, or for a requirement that is not elastic.
pub fn elastic_holds_shrink_to_their_minimum(make: MakeLedger<'_>) {
    let (fixture, ledger) = setup(make, vec![node("a", 8)]);
    let hold = ledger
        .reserve(&ask("t", vec![cores(6).elastic(2), cores(1)]))
        .unwrap();
    assert_eq!(hold.items[0].minimum, Some(2.into()));
    assert_eq!(hold.items[1].minimum, None);
    assert_eq!(free_cores(&*ledger, "a"), 1.into());
    ledger.confirm(&hold.id, None).unwrap();
    let shrunk = ledger
        .shrink(&hold.id, Some(hold.fencing_token), 0, 3.into())
        .unwrap();
    assert_eq!(shrunk.items[0].amount, 3.into());
    assert_eq!(free_cores(&*ledger, "a"), 4.into());
    assert_clean(&*ledger);
    expect_err(ledger.shrink(&hold.id, None, 0, 1.into()), "invalid-input");
    expect_err(ledger.shrink(&hold.id, None, 0, 4.into()), "invalid-input");
    expect_err(
        ledger.shrink(&hold.id, None, 1, Quantity::from_milli(500)),
        "invalid-input",
    );
    expect_err(ledger.shrink(&hold.id, None, 7, 1.into()), "invalid-input");
    assert_eq!(
        ledger.shrink(&hold.id, None, 0, 3.into()).unwrap(),
        ledger.get(&hold.id).unwrap()
    );
    assert!(fixture.events.names().contains(&"shrunk".to_owned()));
    ledger.release(&hold.id, None).unwrap();
    assert_eq!(
        free_cores(&*ledger, "a"),
        8.into(),
        "the release gives back what is left"
    );
    expect_err(ledger.shrink(&hold.id, None, 0, 2.into()), "invalid-state");
    expect_err(
        ledger.reserve(&ask("t", vec![cores(2).elastic(3)])),
        "invalid-input",
    );
    assert_clean(&*ledger);
}

/// Preempting for a request is one step: the victims end and the request is granted, or
/// (when it would not fit even so, or a victim does not hold capacity) nothing changes.
pub fn preemption_grants_in_one_step(make: MakeLedger<'_>) {
    let (fixture, ledger) = setup(make, vec![node("a", 4)]);
    let first = ledger.reserve(&ask("v1", vec![cores(2)])).unwrap();
    let second = ledger.reserve(&ask("v2", vec![cores(2)])).unwrap();
    ledger.confirm(&second.id, None).unwrap();
    let victims = [first.id.clone(), second.id.clone()];
    let before = ledger.snapshot().unwrap();
    // Too big even with both victims: nothing changes.
    expect_err(
        ledger.reserve_preempting(&ask("big", vec![cores(5)]), &victims),
        "insufficient-capacity",
    );
    expect_err(
        ledger.reserve_preempting(&ask("x", vec![cores(1)]), &[rid("ghost")]),
        "unknown-reservation",
    );
    let after = ledger.snapshot().unwrap();
    assert_eq!((after.usage, after.active), (before.usage, before.active));
    // Enough: both end as preempted by the request, which holds what it asked.
    let urgent = ask("urgent", vec![cores(3)]).with_id(rid("urgent-1"));
    let granted = ledger.reserve_preempting(&urgent, &victims).unwrap();
    assert_eq!(granted.id, rid("urgent-1"));
    assert_eq!(granted.items[0].amount, 3.into());
    for victim in &victims {
        assert_eq!(
            ledger.get(victim).unwrap().state,
            ReservationState::Preempted
        );
    }
    assert_eq!(free_cores(&*ledger, "a"), 1.into());
    let preempted_by: Vec<_> = fixture
        .events
        .kinds()
        .into_iter()
        .filter_map(|k| match k {
            EventKind::Ended {
                reason: ReservationState::Preempted,
                preempted_by,
                ..
            } => preempted_by,
            _ => None,
        })
        .collect();
    assert_eq!(preempted_by, [rid("urgent-1"), rid("urgent-1")]);
    // Ended victims cannot be preempted again.
    expect_err(
        ledger.reserve_preempting(&ask("y", vec![cores(1)]), &victims),
        "invalid-state",
    );
    assert_clean(&*ledger);
}
