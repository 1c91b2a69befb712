//! Priority order, classes, and aging that bounds how long a low-priority request waits.

use std::sync::Arc;
use std::time::Duration;

use rm_model::{
    AllocationPolicy, PreemptionPolicy, Priority, PriorityClass, ReservationRequest, Timestamp,
};
use rm_policy::{Aging, Error, PriorityAllocationPolicy};

use crate::{cores, pending, requester};

fn ask(who: &str) -> ReservationRequest {
    ReservationRequest::new(requester(who), vec![cores(1)])
}

#[test]
fn higher_priority_goes_first_then_arrival() {
    let policy = PriorityAllocationPolicy::new("p");
    policy.set_requester_priority(requester("high"), 10);
    policy.set_requester_priority(requester("mid"), 5);
    let waiting = [
        pending(ask("mid"), 0, Timestamp::ZERO),
        pending(ask("low"), 1, Timestamp::ZERO),
        pending(ask("high"), 2, Timestamp::ZERO),
        pending(ask("mid"), 3, Timestamp::ZERO),
    ];
    assert_eq!(policy.order(&waiting, Timestamp::ZERO), [2, 0, 3, 1]);
}

#[test]
fn classes_give_priority_and_preemption_policy() {
    let policy = PriorityAllocationPolicy::new("p");
    policy.add_class(PriorityClass {
        name: "interactive".into(),
        priority: Priority(100),
        preemption: PreemptionPolicy::Never,
    });
    assert_eq!(
        policy.set_requester_class(requester("x"), "batch"),
        Err(Error::UnknownClass {
            class: "batch".into()
        })
    );
    policy
        .set_requester_class(requester("ui"), "interactive")
        .unwrap();
    assert_eq!(
        policy.base_priority(&requester("ui"), Priority(0)),
        Priority(100)
    );
    assert_eq!(
        policy.preemption_policy(&requester("ui")),
        PreemptionPolicy::Never
    );
    assert_eq!(
        policy.preemption_policy(&requester("other")),
        PreemptionPolicy::PreemptLowerPriority
    );
    // An explicit priority wins over the class; the request's own is the fallback.
    policy.set_requester_priority(requester("ui"), 7);
    assert_eq!(
        policy.base_priority(&requester("ui"), Priority(0)),
        Priority(7)
    );
    assert_eq!(
        policy.base_priority(&requester("new"), Priority(3)),
        Priority(3)
    );
}

#[test]
fn aging_admits_a_low_priority_request_within_its_bound() {
    let aging = Aging {
        step: 1,
        every: Duration::from_secs(10),
        cap: 1_000,
    };
    let policy = Arc::new(
        PriorityAllocationPolicy::new("aging")
            .with_aging(aging)
            .unwrap(),
    );
    policy.set_requester_priority(requester("batch"), 0);
    policy.set_requester_priority(requester("urgent"), 5);
    let bound = aging.bound(0, 5).unwrap();
    assert_eq!(bound, Duration::from_secs(60));

    // One admission per second; a fresh high-priority request arrives every second and the
    // high-priority load never stops.
    let mut waiting = vec![pending(ask("batch"), 0, Timestamp::ZERO)];
    let mut admitted_low = None;
    let mut admitted_high = 0;
    for second in 0..120u64 {
        let now = Timestamp::ZERO + Duration::from_secs(second);
        waiting.push(pending(ask("urgent"), second + 1, now));
        let first = policy.order(&waiting, now)[0];
        let chosen = waiting.remove(first);
        if chosen.request.requester == requester("batch") {
            admitted_low = Some(now.since_origin());
            break;
        }
        admitted_high += 1;
    }
    let admitted_low = admitted_low.expect("the low-priority request is admitted");
    assert!(
        admitted_low <= bound,
        "admitted after {admitted_low:?}, bound {bound:?}"
    );
    assert!(
        admitted_low >= Duration::from_secs(50),
        "not before aging lifts it: {admitted_low:?}"
    );
    assert_eq!(admitted_high as u64, admitted_low.as_secs());
    // Without aging it would wait forever behind the stream.
    let plain = PriorityAllocationPolicy::new("plain");
    plain.set_requester_priority(requester("batch"), 0);
    plain.set_requester_priority(requester("urgent"), 5);
    let late = Timestamp::ZERO + Duration::from_secs(3600);
    let waiting = [
        pending(ask("batch"), 0, Timestamp::ZERO),
        pending(ask("urgent"), 1, late),
    ];
    assert_eq!(plain.order(&waiting, late)[0], 1);
    assert!(
        PriorityAllocationPolicy::new("bad")
            .with_aging(Aging { step: 0, ..aging })
            .is_err()
    );
    assert_eq!(
        Aging { cap: 5, ..aging }.bound(0, 5),
        None,
        "a cap at the high priority never lifts it above"
    );
}

/// Unknown names of any length are echoed as a bounded prefix with their length.
#[test]
fn errors_about_huge_names_stay_short() {
    let huge = "c".repeat(10 << 20);
    let class = PriorityAllocationPolicy::new("p")
        .set_requester_class(requester("x"), &huge)
        .unwrap_err();
    let group = rm_policy::QuotaAllocationPolicy::new("q")
        .assign(requester("x"), &huge)
        .unwrap_err();
    for err in [class, group] {
        let message = err.to_string();
        assert!(message.len() < 200, "{} bytes", message.len());
        assert!(message.contains("(10485760 bytes)"), "{message}");
    }
}
