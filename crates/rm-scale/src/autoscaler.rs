//! [`Autoscaler`]: drives scale targets with a [`ScalingRule`], records every decision with its
//! inputs and reason, and can run dry.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use rm_model::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{Decision, ScaleTarget, ScalingRule};

/// Identifies a target inside one [`Autoscaler`] (the order it was added in).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TargetId(pub usize);

impl fmt::Display for TargetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "target-{}", self.0)
    }
}

/// What became of a decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// The size was right already: nothing to do.
    Unchanged,
    /// The target was resized.
    Applied,
    /// Dry run: the resize was decided but not made.
    DryRun,
    /// The target refused the resize.
    Failed {
        /// The target's explanation.
        message: String,
    },
}

/// One entry of the decision log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// Whose decision.
    pub target: TargetId,
    /// The decision with its inputs and reason.
    pub decision: Decision,
    /// What became of it.
    pub outcome: Outcome,
}

/// Counts from one [`Autoscaler::tick`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickSummary {
    /// Targets evaluated.
    pub evaluated: usize,
    /// Targets resized (or, in a dry run, that would have been).
    pub changed: usize,
    /// Targets that refused their resize.
    pub failed: usize,
}

struct Entry<R: ScalingRule> {
    target: Arc<dyn ScaleTarget>,
    rule: R,
    state: R::State,
    last: Option<Decision>,
}

/// Evaluates every target each tick and resizes those whose rule says so.
///
/// Every target's latest decision is kept ([`Autoscaler::last_decision`]); the decision log
/// keeps the last `log_capacity` decisions that changed something or failed (steady "no
/// change" decisions are not logged, so a quiet fleet does not flush the interesting ones). Its space is reserved up front: a tick allocates only when a target's
/// resize fails (to hold the message).
///
/// One thread drives an autoscaler (`tick` takes `&mut self`); targets are shared with
/// whoever else uses them and must be `Send + Sync`.
pub struct Autoscaler<R: ScalingRule> {
    entries: Vec<Entry<R>>,
    log: VecDeque<DecisionRecord>,
    log_capacity: usize,
    dry_run: bool,
}

impl<R: ScalingRule> fmt::Debug for Autoscaler<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Autoscaler")
            .field("targets", &self.entries.len())
            .field("logged", &self.log.len())
            .field("dry_run", &self.dry_run)
            .finish()
    }
}

impl<R: ScalingRule> Autoscaler<R> {
    /// An autoscaler keeping the last `log_capacity` decisions.
    pub fn new(log_capacity: usize) -> Autoscaler<R> {
        Autoscaler {
            entries: Vec::new(),
            log: VecDeque::with_capacity(log_capacity),
            log_capacity,
            dry_run: false,
        }
    }

    /// In a dry run decisions are made and logged (as [`Outcome::DryRun`]) but no target is
    /// resized. The rule's memory still advances, as if the resize had happened.
    pub fn set_dry_run(&mut self, dry_run: bool) {
        self.dry_run = dry_run;
    }

    /// Whether this is a dry run.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// Adds a target scaled by `rule`.
    pub fn add(&mut self, target: Arc<dyn ScaleTarget>, rule: R) -> TargetId {
        let state = rule.new_state();
        self.entries.push(Entry {
            target,
            rule,
            state,
            last: None,
        });
        TargetId(self.entries.len() - 1)
    }

    /// How many targets it drives.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it drives none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Evaluates every target at `now`: reads its size and metric, asks the rule, resizes it
    /// when the decision differs (unless dry), and logs decisions that changed or failed.
    pub fn tick(&mut self, now: Timestamp) -> TickSummary {
        let mut summary = TickSummary::default();
        for (index, entry) in self.entries.iter_mut().enumerate() {
            summary.evaluated += 1;
            let current = entry.target.size();
            let metric = entry.target.metric();
            let decision = entry.rule.recommend(&mut entry.state, now, current, metric);
            entry.last = Some(decision);
            if decision.desired == current {
                continue;
            }
            let outcome = if self.dry_run {
                summary.changed += 1;
                Outcome::DryRun
            } else {
                match entry.target.scale_to(decision.desired) {
                    Ok(()) => {
                        summary.changed += 1;
                        Outcome::Applied
                    }
                    Err(error) => {
                        summary.failed += 1;
                        Outcome::Failed {
                            message: error.to_string(),
                        }
                    }
                }
            };
            if self.log_capacity == 0 {
                continue;
            }
            if self.log.len() == self.log_capacity {
                self.log.pop_front();
            }
            self.log.push_back(DecisionRecord {
                target: TargetId(index),
                decision,
                outcome,
            });
        }
        summary
    }

    /// The latest decision for `target`, whatever it was (`None` before its first tick or for
    /// an unknown id).
    pub fn last_decision(&self, target: TargetId) -> Option<&Decision> {
        self.entries
            .get(target.0)
            .and_then(|entry| entry.last.as_ref())
    }

    /// The logged decisions, oldest first.
    pub fn decisions(&self) -> impl Iterator<Item = &DecisionRecord> + '_ {
        self.log.iter()
    }
}
