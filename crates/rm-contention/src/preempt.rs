//! Preemption: choosing which lower-priority holds to end so that a request fits, in
//! Kubernetes' order, and ending them gracefully (a notice, a deadline, then a forced end).

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::error::PreemptionError;
use rm_model::{
    LedgerError, LedgerSnapshot, PreemptionPolicy, Priority, Reservation, ReservationId,
    ReservationLedger, ReservationRequest, ReservationState, Resource, ResourceName, ResourceType,
    Selector, Timestamp,
};

/// The holds to end on one resource so that a request fits there.
#[derive(Clone, Debug, PartialEq)]
pub struct PreemptionPlan {
    /// The resource the request will fit on.
    pub resource: ResourceName,
    /// The holds to end, highest priority first.
    pub victims: Vec<Reservation>,
}

impl PreemptionPlan {
    /// The highest priority among the victims ([`Priority`]'s lowest value when there are
    /// none, so that a plan without victims ranks before any plan with some).
    pub fn highest_priority(&self) -> Priority {
        self.victims
            .iter()
            .map(|v| v.priority)
            .max()
            .unwrap_or(Priority(i32::MIN))
    }
}

/// At most `max_disruptions` of the holds `selector` selects may be ended by one preemption:
/// Kubernetes' PodDisruptionBudget, as the scheduler's preemption honours it (a plan that
/// breaks a budget is chosen only when every other plan breaks more).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisruptionBudget {
    /// The holds it covers (by requester and the request's labels).
    pub selector: Selector,
    /// How many of them one preemption may end.
    pub max_disruptions: u32,
}

/// How plans compare, lowest first, as kube-scheduler's `pickOneNodeForPreemption`: the
/// fewest budget violations, the lowest highest victim priority, the smallest sum of victim
/// priorities (each offset by 2³¹, as Kubernetes does, so that negative priorities count),
/// the fewest victims, then the latest earliest start among the highest-priority victims.
type Rank = (usize, Priority, i64, usize, std::cmp::Reverse<Timestamp>);

/// What `request` needs of each type on `resource`, in thousandths of the resource's units,
/// or `None` when the resource cannot hold every requirement.
fn needs(request: &ReservationRequest, resource: &Resource) -> Option<BTreeMap<ResourceType, i64>> {
    let mut needed = BTreeMap::new();
    for requirement in &request.requirements {
        if !requirement.admits(resource) {
            return None;
        }
        let capacity = resource.capacity_of(requirement.resource_type())?;
        let amount = requirement.amount_in(capacity.unit()).ok()?.as_milli();
        let total: &mut i64 = needed
            .entry(requirement.resource_type().clone())
            .or_default();
        *total = total.checked_add(amount)?;
    }
    Some(needed)
}

/// [`plan_preemption_with`] without disruption budgets.
pub fn plan_preemption(
    request: &ReservationRequest,
    policy: PreemptionPolicy,
    snapshot: &LedgerSnapshot,
) -> Result<PreemptionPlan, PreemptionError> {
    plan_preemption_with(request, policy, snapshot, &[])
}

/// The cheapest set of victims on each resource, then the best resource, as kube-scheduler
/// chooses. On each resource, every lower-priority preemptible hold is a candidate; the
/// candidates are spared from the most important down (highest priority, then earliest
/// start), those whose end would break a `budgets` entry first, and what cannot be spared are
/// the victims. A resource that needs no victims wins at once; otherwise, in order:
/// fewest budget violations, lowest highest victim priority, smallest sum of victim
/// priorities, fewest victims, latest earliest start among the highest-priority victims, and
/// the first registered. Only preemptible holds of strictly lower priority are victims; a
/// request whose `policy` is `Never` never preempts. The request's requirements must all land
/// on one resource (co-located), which is the resource returned.
pub fn plan_preemption_with(
    request: &ReservationRequest,
    policy: PreemptionPolicy,
    snapshot: &LedgerSnapshot,
    budgets: &[DisruptionBudget],
) -> Result<PreemptionPlan, PreemptionError> {
    if policy == PreemptionPolicy::Never {
        return Err(PreemptionError::NeverPreempts {
            requester: request.requester.clone(),
        });
    }
    let mut best: Option<(PreemptionPlan, Rank)> = None;
    for resource in &snapshot.resources {
        let Some(needed) = needs(request, resource) else {
            continue;
        };
        let free = |resource_type: &ResourceType| {
            snapshot
                .usage_of(resource.name().as_str(), resource_type)
                .map_or(0, |u| u.free.as_milli())
        };
        // What each candidate frees here, per needed type.
        let mut candidates: Vec<(&Reservation, BTreeMap<&ResourceType, i64>)> = snapshot
            .active
            .iter()
            .filter(|r| r.preemptible && r.priority < request.priority && r.state.holds_capacity())
            .filter_map(|r| {
                let mut frees: BTreeMap<&ResourceType, i64> = BTreeMap::new();
                for item in r.items.iter().filter(|i| &i.resource == resource.name()) {
                    if needed.contains_key(&item.resource_type) {
                        *frees.entry(&item.resource_type).or_default() += item.amount.as_milli();
                    }
                }
                (!frees.is_empty()).then_some((r, frees))
            })
            .collect();
        // Most important first: the order in which candidates are spared.
        candidates.sort_by_key(|(r, _)| (std::cmp::Reverse(r.priority), r.created_at));
        let fits = |ended: &[bool]| {
            needed.iter().all(|(resource_type, amount)| {
                let freed: i64 = candidates
                    .iter()
                    .zip(ended)
                    .filter(|(_, e)| **e)
                    .map(|((_, f), _)| f.get(resource_type).copied().unwrap_or(0))
                    .sum();
                free(resource_type).saturating_add(freed) >= *amount
            })
        };
        if fits(&vec![false; candidates.len()]) {
            // Kubernetes takes a node that needs no victims at once.
            return Ok(PreemptionPlan {
                resource: resource.name().clone(),
                victims: Vec::new(),
            });
        }
        if !fits(&vec![true; candidates.len()]) {
            continue;
        }
        // Those whose end would break a budget are spared first.
        let mut allowed: Vec<i64> = budgets
            .iter()
            .map(|b| i64::from(b.max_disruptions))
            .collect();
        let violating: Vec<bool> = candidates
            .iter()
            .map(|(r, _)| {
                let mut breaks = false;
                for (budget, left) in budgets.iter().zip(allowed.iter_mut()) {
                    if budget.selector.selects(&r.requester, &r.labels) {
                        *left -= 1;
                        breaks |= *left < 0;
                    }
                }
                breaks
            })
            .collect();
        let mut ended: Vec<bool> = vec![true; candidates.len()];
        let order = (0..candidates.len())
            .filter(|&i| violating[i])
            .chain((0..candidates.len()).filter(|&i| !violating[i]));
        for i in order {
            ended[i] = false;
            if !fits(&ended) {
                ended[i] = true;
            }
        }
        let violations = (0..candidates.len())
            .filter(|&i| ended[i] && violating[i])
            .count();
        let victims: Vec<Reservation> = candidates
            .iter()
            .zip(&ended)
            .filter(|(_, e)| **e)
            .map(|((r, _), _)| (*r).clone())
            .collect();
        let plan = PreemptionPlan {
            resource: resource.name().clone(),
            victims,
        };
        let highest = plan.highest_priority();
        let sum: i64 = plan
            .victims
            .iter()
            .map(|v| i64::from(v.priority.0) + (1 << 31))
            .sum();
        let earliest_of_highest = plan
            .victims
            .iter()
            .filter(|v| v.priority == highest)
            .map(|v| v.created_at)
            .min()
            .unwrap_or_default();
        let rank = (
            violations,
            highest,
            sum,
            plan.victims.len(),
            std::cmp::Reverse(earliest_of_highest),
        );
        if best.as_ref().is_none_or(|(_, top)| rank < *top) {
            best = Some((plan, rank));
        }
    }
    best.map(|(plan, _)| plan)
        .ok_or_else(|| PreemptionError::NoVictims {
            requester: request.requester.clone(),
        })
}

/// Told when one of its holds is being preempted, with the deadline by which it will be
/// ended (so it can checkpoint and release on its own).
pub trait VictimNotifier: Send + Sync {
    /// The hold `victim` ends at `deadline` at the latest, for `preemptor`.
    fn notify(&self, victim: &Reservation, preemptor: &ReservationId, deadline: Timestamp);
}

struct Notice {
    victim: ReservationId,
    preemptor: ReservationId,
    deadline: Timestamp,
}

/// Graceful preemption: each victim gets one notice with a deadline; victims still holding
/// capacity at their deadline are ended by [`GracefulPreemption::tick`].
pub struct GracefulPreemption {
    grace: std::time::Duration,
    notices: Mutex<Vec<Notice>>,
}

impl std::fmt::Debug for GracefulPreemption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GracefulPreemption")
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

impl GracefulPreemption {
    /// Victims get `grace` to leave on their own.
    pub fn new(grace: std::time::Duration) -> GracefulPreemption {
        GracefulPreemption {
            grace,
            notices: Mutex::new(Vec::new()),
        }
    }

    fn notices(&self) -> std::sync::MutexGuard<'_, Vec<Notice>> {
        self.notices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notifies each victim of `plan` once (a victim already noticed is not noticed again)
    /// and returns the deadline. With no grace, the victims are ended at once.
    pub fn begin(
        &self,
        ledger: &dyn ReservationLedger,
        plan: &PreemptionPlan,
        preemptor: &ReservationId,
        notifier: &dyn VictimNotifier,
        now: Timestamp,
    ) -> Result<Timestamp, LedgerError> {
        let deadline = now + self.grace;
        {
            let mut notices = self.notices();
            for victim in &plan.victims {
                if notices.iter().any(|n| n.victim == victim.id) {
                    continue;
                }
                notifier.notify(victim, preemptor, deadline);
                notices.push(Notice {
                    victim: victim.id.clone(),
                    preemptor: preemptor.clone(),
                    deadline,
                });
            }
        }
        if self.grace.is_zero() {
            self.tick(ledger, now)?;
        }
        Ok(deadline)
    }

    /// Ends every noticed victim whose deadline has come and that still holds capacity;
    /// returns those it ended.
    pub fn tick(
        &self,
        ledger: &dyn ReservationLedger,
        now: Timestamp,
    ) -> Result<Vec<Reservation>, LedgerError> {
        let due: Vec<Notice> = {
            let mut notices = self.notices();
            let (due, later): (Vec<Notice>, Vec<Notice>) =
                notices.drain(..).partition(|n| n.deadline <= now);
            *notices = later;
            due
        };
        let mut ended = Vec::new();
        for notice in due {
            match ledger.preempt(&notice.victim, Some(&notice.preemptor)) {
                Ok(reservation) if reservation.state == ReservationState::Preempted => {
                    ended.push(reservation)
                }
                Ok(_)
                | Err(
                    LedgerError::InvalidState { .. }
                    | LedgerError::Expired { .. }
                    | LedgerError::UnknownReservation { .. },
                ) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(ended)
    }

    /// How many victims are noticed and not yet ended.
    pub fn outstanding(&self) -> usize {
        self.notices().len()
    }
}
