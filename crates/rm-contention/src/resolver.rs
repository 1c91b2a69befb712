//! [`Resolver`]: picks a contention strategy per request (by requester, else by request
//! label `contention`, else the default) and applies it: wait, wait in priority order,
//! preempt, or scale out and wait, falling back to another strategy when one cannot help.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rm_model::{
    ContentionAction, ContentionResolver, ContentionStrategy, LedgerError, PreemptionPolicy,
    Refusal, RefusalReason, RequesterId, ReservationId, ReservationLedger, ReservationRequest,
    Resolution, ResolutionOutcome, ScaleTarget,
};

use crate::error::ResolverError;
use crate::error::WaitError;
use crate::preempt::{DisruptionBudget, GracefulPreemption, VictimNotifier, plan_preemption_with};
use crate::wait::WaitQueue;

/// Told when one of its elastic holds is shrunk to make room.
pub trait ShrinkNotifier: Send + Sync {
    /// The item of `requirement` of `reservation` now holds `to` (in the resource's unit).
    fn notify_shrink(
        &self,
        reservation: &rm_model::Reservation,
        requirement: usize,
        to: rm_model::Quantity,
    );
}

/// One planned shrink: a reservation, the requirement whose item shrinks, and the new amount.
type Shrink = (rm_model::Reservation, usize, rm_model::Quantity);

/// Which preemption policy a requester has (from its priority class).
pub type PreemptionPolicyOf = Arc<dyn Fn(&RequesterId) -> PreemptionPolicy + Send + Sync>;

/// Resolves contention with a wait queue, optional preemption and an optional scale target.
pub struct Resolver {
    queue: Arc<WaitQueue>,
    default: ContentionStrategy,
    by_requester: HashMap<RequesterId, ContentionStrategy>,
    by_class: HashMap<String, ContentionStrategy>,
    fallback: ContentionStrategy,
    wait_timeout: Duration,
    preemption: GracefulPreemption,
    grace: Duration,
    preemption_policy: PreemptionPolicyOf,
    notifier: Arc<dyn VictimNotifier>,
    scale: Option<(Arc<dyn ScaleTarget>, Duration)>,
    shrink_notifier: Arc<dyn ShrinkNotifier>,
    budgets: Vec<DisruptionBudget>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("default", &self.default)
            .field("fallback", &self.fallback)
            .field("wait_timeout", &self.wait_timeout)
            .finish_non_exhaustive()
    }
}

struct Silent;

impl VictimNotifier for Silent {
    fn notify(&self, _: &rm_model::Reservation, _: &ReservationId, _: rm_model::Timestamp) {}
}

impl ShrinkNotifier for Silent {
    fn notify_shrink(&self, _: &rm_model::Reservation, _: usize, _: rm_model::Quantity) {}
}

fn refused(reason: RefusalReason, message: String) -> ResolutionOutcome {
    ResolutionOutcome::Refused(Refusal::new(reason, message))
}

impl Resolver {
    /// Waits in `queue` by default, up to `wait_timeout`; preemption is immediate and every
    /// requester may preempt until configured otherwise; no scale target.
    pub fn new(queue: Arc<WaitQueue>, wait_timeout: Duration) -> Resolver {
        Resolver {
            queue,
            default: ContentionStrategy::Wait,
            by_requester: HashMap::new(),
            by_class: HashMap::new(),
            fallback: ContentionStrategy::Wait,
            wait_timeout,
            preemption: GracefulPreemption::new(Duration::ZERO),
            grace: Duration::ZERO,
            preemption_policy: Arc::new(|_| PreemptionPolicy::PreemptLowerPriority),
            notifier: Arc::new(Silent),
            scale: None,
            shrink_notifier: Arc::new(Silent),
            budgets: Vec::new(),
        }
    }

    fn check(&self, strategy: ContentionStrategy) -> Result<(), ResolverError> {
        match strategy {
            ContentionStrategy::Scale if self.scale.is_none() => Err(ResolverError::Unsupported {
                strategy,
                reason: "no scale target is configured",
            }),
            _ => Ok(()),
        }
    }

    /// The strategy for requests without a more specific one.
    pub fn with_default(mut self, strategy: ContentionStrategy) -> Result<Resolver, ResolverError> {
        self.check(strategy)?;
        self.default = strategy;
        Ok(self)
    }

    /// The strategy used when the chosen one cannot help (no victims, scaling timed out). It
    /// must wait (`wait` or `priority`).
    pub fn with_fallback(
        mut self,
        strategy: ContentionStrategy,
    ) -> Result<Resolver, ResolverError> {
        if !matches!(
            strategy,
            ContentionStrategy::Wait | ContentionStrategy::Priority
        ) {
            return Err(ResolverError::Unsupported {
                strategy,
                reason: "a fallback must wait",
            });
        }
        self.fallback = strategy;
        Ok(self)
    }

    /// The strategy for one requester.
    pub fn for_requester(
        mut self,
        requester: RequesterId,
        strategy: ContentionStrategy,
    ) -> Result<Resolver, ResolverError> {
        self.check(strategy)?;
        self.by_requester.insert(requester, strategy);
        Ok(self)
    }

    /// The strategy for requests labelled `contention=<class>`.
    pub fn for_class(
        mut self,
        class: &str,
        strategy: ContentionStrategy,
    ) -> Result<Resolver, ResolverError> {
        self.check(strategy)?;
        self.by_class.insert(class.to_owned(), strategy);
        Ok(self)
    }

    /// Gives victims `grace` and a notice before they are ended.
    pub fn with_preemption(
        mut self,
        grace: Duration,
        notifier: Arc<dyn VictimNotifier>,
        policy_of: PreemptionPolicyOf,
    ) -> Resolver {
        self.preemption = GracefulPreemption::new(grace);
        self.grace = grace;
        self.notifier = notifier;
        self.preemption_policy = policy_of;
        self
    }

    /// Scales `target` out by one unit when the strategy is `scale`, waiting up to `timeout`
    /// for the capacity to arrive.
    pub fn with_scale_target(
        mut self,
        target: Arc<dyn ScaleTarget>,
        timeout: Duration,
    ) -> Resolver {
        self.scale = Some((target, timeout));
        self
    }

    /// Disruption budgets preemption honours as kube-scheduler does (see
    /// [`plan_preemption_with`]).
    pub fn with_disruption_budgets(mut self, budgets: Vec<DisruptionBudget>) -> Resolver {
        self.budgets = budgets;
        self
    }

    /// Tells holders of elastic holds when `redistribute` shrinks them.
    pub fn with_shrink_notifier(mut self, notifier: Arc<dyn ShrinkNotifier>) -> Resolver {
        self.shrink_notifier = notifier;
        self
    }

    /// The strategy `request` gets.
    pub fn strategy_for(&self, request: &ReservationRequest) -> ContentionStrategy {
        if let Some(strategy) = self.by_requester.get(&request.requester) {
            return *strategy;
        }
        request
            .labels
            .get("contention")
            .and_then(|class| self.by_class.get(class))
            .copied()
            .unwrap_or(self.default)
    }

    /// The grace period of graceful preemption (for callers that drive its deadlines).
    pub fn preemption(&self) -> &GracefulPreemption {
        &self.preemption
    }

    fn wait(
        &self,
        request: &ReservationRequest,
        timeout: Duration,
    ) -> Result<rm_model::Reservation, WaitError> {
        self.queue.enqueue(request.clone()).wait_timeout(timeout)
    }

    fn waited(
        &self,
        strategy: ContentionStrategy,
        request: &ReservationRequest,
        timeout: Duration,
        actions: Vec<ContentionAction>,
        before: String,
    ) -> Resolution {
        let ticket = self.queue.enqueue(request.clone());
        self.waited_on(strategy, ticket, timeout, actions, before)
    }

    fn waited_on(
        &self,
        strategy: ContentionStrategy,
        ticket: crate::wait::Ticket,
        timeout: Duration,
        mut actions: Vec<ContentionAction>,
        before: String,
    ) -> Resolution {
        let (outcome, explanation) = match ticket.wait_timeout(timeout) {
            Ok(reservation) => {
                let how = format!("{before}granted after waiting in order");
                (ResolutionOutcome::Granted(reservation), how)
            }
            Err(WaitError::Refused(err)) => (
                ResolutionOutcome::Refused(Refusal::from_ledger(err)),
                format!("{before}the ledger refused the request"),
            ),
            Err(err) => (
                refused(RefusalReason::InsufficientCapacity, format!("{err}")),
                format!("{before}no capacity freed within {timeout:?}"),
            ),
        };
        actions.shrink_to_fit();
        Resolution {
            strategy,
            outcome,
            actions,
            explanation,
        }
    }

    fn preempt(&self, ledger: &dyn ReservationLedger, request: &ReservationRequest) -> Resolution {
        let policy = (self.preemption_policy)(&request.requester);
        let snapshot = match ledger.snapshot() {
            Ok(snapshot) => snapshot,
            Err(err) => {
                return Resolution {
                    strategy: ContentionStrategy::Preempt,
                    outcome: ResolutionOutcome::Refused(Refusal::from_ledger(err)),
                    actions: Vec::new(),
                    explanation: "the ledger could not be read".into(),
                };
            }
        };
        let plan = match plan_preemption_with(request, policy, &snapshot, &self.budgets) {
            Ok(plan) => plan,
            Err(err) => {
                let before = format!("{err}; falling back to {}: ", self.fallback);
                return self.waited(
                    self.fallback,
                    request,
                    self.wait_timeout,
                    Vec::new(),
                    before,
                );
            }
        };
        let preemptor = request.id.clone().unwrap_or_else(ReservationId::generate);
        let request = request.clone().with_id(preemptor.clone());
        let before = format!(
            "preempted {} hold(s) of priority <= {} on {}; ",
            plan.victims.len(),
            plan.highest_priority(),
            plan.resource
        );
        let actions: Vec<ContentionAction> = plan
            .victims
            .iter()
            .map(|v| ContentionAction::Preempted {
                victim: v.id.clone(),
            })
            .collect();
        if self.grace.is_zero() {
            // No grace: the ledger ends the victims and grants the request in one step.
            for victim in &plan.victims {
                self.notifier.notify(victim, &preemptor, snapshot.taken_at);
            }
            let ids: Vec<ReservationId> = plan.victims.iter().map(|v| v.id.clone()).collect();
            return match ledger.reserve_preempting(&request, &ids) {
                Ok(reservation) => Resolution {
                    strategy: ContentionStrategy::Preempt,
                    outcome: ResolutionOutcome::Granted(reservation),
                    actions,
                    explanation: format!("{before}granted in the same step"),
                },
                Err(err) => {
                    let before = format!(
                        "preemption failed ({err}); falling back to {}: ",
                        self.fallback
                    );
                    self.waited(
                        self.fallback,
                        &request,
                        self.wait_timeout,
                        Vec::new(),
                        before,
                    )
                }
            };
        }
        // Queue first, then end the victims: the freed capacity is handed to the head of the
        // queue, which the preemptor's priority makes it, so no other waiter can take it.
        let ticket = self.queue.enqueue(request);
        let now = snapshot.taken_at;
        if let Err(err) = self
            .preemption
            .begin(ledger, &plan, &preemptor, &*self.notifier, now)
        {
            return Resolution {
                strategy: ContentionStrategy::Preempt,
                outcome: ResolutionOutcome::Refused(Refusal::from_ledger(err)),
                actions: Vec::new(),
                explanation: "ending the victims failed".into(),
            };
        }
        let timeout = self.wait_timeout + self.grace;
        self.waited_on(
            ContentionStrategy::Preempt,
            ticket,
            timeout,
            actions,
            before,
        )
    }

    fn scale(&self, request: &ReservationRequest) -> Resolution {
        let Some((target, timeout)) = &self.scale else {
            return self.waited(
                self.fallback,
                request,
                self.wait_timeout,
                Vec::new(),
                "no scale target; ".into(),
            );
        };
        let asked = target.status().and_then(|status| {
            let desired = status.desired.saturating_add(1).min(status.maximum);
            target.scale_to(desired).map(|_| desired)
        });
        let (actions, before) = match asked {
            Ok(desired) => (
                vec![ContentionAction::ScaleRequested {
                    target: target.name().to_owned(),
                    desired,
                }],
                format!("asked {} for {desired} units; ", target.name()),
            ),
            Err(err) => (Vec::new(), format!("scaling failed ({err}); ")),
        };
        match self.wait(request, *timeout) {
            Ok(reservation) => Resolution {
                strategy: ContentionStrategy::Scale,
                outcome: ResolutionOutcome::Granted(reservation),
                actions,
                explanation: format!("{before}granted when the capacity arrived"),
            },
            Err(WaitError::Refused(err)) => Resolution {
                strategy: ContentionStrategy::Scale,
                outcome: ResolutionOutcome::Refused(Refusal::from_ledger(err)),
                actions,
                explanation: format!("{before}the ledger refused the request"),
            },
            Err(_) => {
                let before = format!(
                    "{before}no capacity within {timeout:?}; falling back to {}: ",
                    self.fallback
                );
                self.waited(self.fallback, request, self.wait_timeout, actions, before)
            }
        }
    }
}

impl Resolver {
    /// Shrinks elastic holds of equal or lower priority on one resource toward their minimum
    /// until the request fits there (the resource needing the fewest shrinks wins; on it, the
    /// largest slack shrinks first), then waits for the freed capacity.
    fn redistribute(
        &self,
        ledger: &dyn ReservationLedger,
        request: &ReservationRequest,
    ) -> Resolution {
        let strategy = ContentionStrategy::Redistribute;
        let snapshot = match ledger.snapshot() {
            Ok(snapshot) => snapshot,
            Err(err) => {
                return Resolution {
                    strategy,
                    outcome: ResolutionOutcome::Refused(Refusal::from_ledger(err)),
                    actions: Vec::new(),
                    explanation: "the ledger could not be read".into(),
                };
            }
        };
        // Per resource: the shrinks (reservation, requirement, to) that make the request fit.
        let mut best: Option<(rm_model::ResourceName, Vec<Shrink>)> = None;
        for resource in &snapshot.resources {
            let mut short: Vec<(rm_model::ResourceType, i64)> = Vec::new();
            let mut holdable = true;
            for requirement in &request.requirements {
                let Some(capacity) = resource.capacity_of(requirement.resource_type()) else {
                    holdable = false;
                    break;
                };
                let Ok(amount) = requirement.amount_in(capacity.unit()) else {
                    holdable = false;
                    break;
                };
                if !requirement.admits(resource) {
                    holdable = false;
                    break;
                }
                match short
                    .iter_mut()
                    .find(|(t, _)| t == requirement.resource_type())
                {
                    Some((_, need)) => *need += amount.as_milli(),
                    None => short.push((requirement.resource_type().clone(), amount.as_milli())),
                }
            }
            if !holdable {
                continue;
            }
            for (resource_type, need) in &mut short {
                let free = snapshot
                    .usage_of(resource.name().as_str(), resource_type)
                    .map_or(0, |u| u.free.as_milli());
                *need -= free;
            }
            let mut shrinks = Vec::new();
            for (resource_type, need) in short.iter_mut().filter(|(_, need)| *need > 0) {
                let mut elastic: Vec<(&rm_model::Reservation, &rm_model::ReservationItem)> =
                    snapshot
                        .active
                        .iter()
                        .filter(|r| r.priority <= request.priority)
                        .flat_map(|r| r.items.iter().map(move |item| (r, item)))
                        .filter(|(_, item)| {
                            &item.resource == resource.name()
                                && &item.resource_type == resource_type
                                && item.minimum.is_some_and(|m| m < item.amount)
                        })
                        .collect();
                elastic.sort_by_key(|(_, item)| {
                    std::cmp::Reverse(
                        item.amount.as_milli() - item.minimum.map_or(0, |m| m.as_milli()),
                    )
                });
                for (reservation, item) in elastic {
                    if *need <= 0 {
                        break;
                    }
                    let slack = item.amount.as_milli() - item.minimum.map_or(0, |m| m.as_milli());
                    let take = slack.min(*need);
                    *need -= take;
                    let to = rm_model::Quantity::from_milli(item.amount.as_milli() - take);
                    shrinks.push((reservation.clone(), item.requirement, to));
                }
            }
            if short.iter().any(|(_, need)| *need > 0) {
                continue;
            }
            if best.as_ref().is_none_or(|(_, b)| shrinks.len() < b.len()) {
                best = Some((resource.name().clone(), shrinks));
            }
        }
        let Some((resource, shrinks)) = best else {
            let before = format!(
                "shrinking elastic holds cannot make room; falling back to {}: ",
                self.fallback
            );
            return self.waited(
                self.fallback,
                request,
                self.wait_timeout,
                Vec::new(),
                before,
            );
        };
        let mut actions = Vec::new();
        for (reservation, requirement, to) in &shrinks {
            self.shrink_notifier
                .notify_shrink(reservation, *requirement, *to);
            match ledger.shrink(
                &reservation.id,
                Some(reservation.fencing_token),
                *requirement,
                *to,
            ) {
                Ok(_) => actions.push(ContentionAction::Shrunk {
                    reservation: reservation.id.clone(),
                }),
                Err(err) => {
                    return Resolution {
                        strategy,
                        outcome: ResolutionOutcome::Refused(Refusal::from_ledger(err)),
                        actions,
                        explanation: "an elastic hold changed while it was being shrunk".into(),
                    };
                }
            }
        }
        let before = format!("shrank {} elastic hold(s) on {resource}; ", shrinks.len());
        self.waited(strategy, request, self.wait_timeout, actions, before)
    }
}

impl ContentionResolver for Resolver {
    /// Blocks up to the configured timeouts. For waiting without blocking, use the
    /// [`WaitQueue`] directly.
    fn resolve(
        &self,
        ledger: &dyn ReservationLedger,
        request: &ReservationRequest,
        cause: &LedgerError,
    ) -> Resolution {
        if !matches!(cause, LedgerError::InsufficientCapacity { .. }) {
            return Resolution {
                strategy: self.strategy_for(request),
                outcome: ResolutionOutcome::Refused(Refusal::from_ledger(cause.clone())),
                actions: Vec::new(),
                explanation: "only a lack of capacity is contention; this refusal stands".into(),
            };
        }
        match self.strategy_for(request) {
            ContentionStrategy::Preempt => self.preempt(ledger, request),
            ContentionStrategy::Scale => self.scale(request),
            ContentionStrategy::Redistribute => self.redistribute(ledger, request),
            strategy => self.waited(
                strategy,
                request,
                self.wait_timeout,
                Vec::new(),
                String::new(),
            ),
        }
    }
}
