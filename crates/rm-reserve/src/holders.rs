//! Active holds by requester and by label, with the resources they hold: what placing a
//! request with affinity terms asks ("where are the holds this selector picks?") answered
//! without a pass over every hold.
//!
//! Nothing is kept until the first request with affinity terms: a ledger whose requests
//! never use affinity pays one atomic load per grant. The first such request turns the
//! index on and fills it from the active holds; until it is ready, requests pass over the
//! holds as before.
//!
//! A hold is added and removed under its record's state lock, and `RecordState::indexed`
//! says whether it is in, so a hold is counted at most once whoever adds it (its grant, or the
//! fill). Every hold granted is in once the index is ready: a grant puts its record in the id
//! map before it looks at the switch, and the fill turns the switch on before it walks the id
//! map, so either the grant sees the switch on or the fill sees the record.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};

use dashmap::DashMap;
use rm_model::{LabelKey, RequesterId, ResourceName, Selector};

use crate::record::{Record, RecordState};

/// The hasher of the id maps (the manager's records, the holder index): foldhash, several
/// times faster than the standard library's SipHash on these short keys, and seeded per map.
pub(crate) type IdHasher = foldhash::fast::RandomState;

/// Holds per resource.
type Counts = HashMap<ResourceName, u32, IdHasher>;

const OFF: u8 = 0;
const FILLING: u8 = 1;
const READY: u8 = 2;

/// See the module documentation.
pub(crate) struct HolderIndex {
    /// [`OFF`], [`FILLING`] (grants add themselves; requests do not read it yet) or [`READY`].
    phase: AtomicU8,
    by_requester: DashMap<RequesterId, Counts, IdHasher>,
    /// Label key, then value.
    by_label: DashMap<LabelKey, HashMap<String, Counts, IdHasher>, IdHasher>,
}

impl Default for HolderIndex {
    fn default() -> HolderIndex {
        HolderIndex {
            phase: AtomicU8::new(OFF),
            by_requester: DashMap::with_hasher(IdHasher::default()),
            by_label: DashMap::with_hasher(IdHasher::default()),
        }
    }
}

impl HolderIndex {
    /// Whether grants must add their holds.
    pub(crate) fn is_kept(&self) -> bool {
        self.phase.load(Ordering::SeqCst) != OFF
    }

    /// Whether requests can read it.
    pub(crate) fn is_ready(&self) -> bool {
        self.phase.load(Ordering::SeqCst) == READY
    }

    /// Turns it on; `true` for the one caller that must then fill it and call
    /// [`ready`](Self::ready).
    pub(crate) fn switch_on(&self) -> bool {
        self.phase
            .compare_exchange(OFF, FILLING, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Marks the fill done.
    pub(crate) fn ready(&self) {
        self.phase.store(READY, Ordering::SeqCst);
    }

    /// Adds an active hold, unless it is in already; the caller holds its state lock.
    pub(crate) fn add(&self, record: &Record, state: &mut RecordState) {
        if state.indexed {
            return;
        }
        state.indexed = true;
        count(
            &mut self
                .by_requester
                .entry(record.requester.clone())
                .or_default(),
            record,
            state,
        );
        for (key, value) in record.labels.iter() {
            let mut values = self.by_label.entry(key.clone()).or_default();
            // Looked up by the borrowed value first: the value is copied only when new.
            if !values.contains_key(value) {
                values.insert(value.to_owned(), Counts::default());
            }
            if let Some(counts) = values.get_mut(value) {
                count(counts, record, state);
            }
        }
    }

    /// Removes a hold that ended, if it is in; the caller holds its state lock.
    pub(crate) fn remove(&self, record: &Record, state: &mut RecordState) {
        if !state.indexed {
            return;
        }
        state.indexed = false;
        let emptied = self
            .by_requester
            .get_mut(&record.requester)
            .is_some_and(|mut counts| {
                uncount(&mut counts, record, state);
                counts.is_empty()
            });
        if emptied {
            self.by_requester
                .remove_if(&record.requester, |_, counts| counts.is_empty());
        }
        for (key, value) in record.labels.iter() {
            let emptied = self.by_label.get_mut(key).is_some_and(|mut values| {
                let now_empty = values.get_mut(value).is_some_and(|counts| {
                    uncount(counts, record, state);
                    counts.is_empty()
                });
                if now_empty {
                    values.remove(value);
                }
                values.is_empty()
            });
            if emptied {
                self.by_label.remove_if(key, |_, values| values.is_empty());
            }
        }
    }

    /// Calls `found` with each resource that holds a hold `selector` picks (a resource may
    /// come more than once) and returns `true`, when the index can tell from the selector
    /// alone: any of some requesters, or one label. `false` (and no call) for other
    /// selectors, which the caller answers by passing over the holds.
    pub(crate) fn selected(
        &self,
        selector: &Selector,
        mut found: impl FnMut(&ResourceName),
    ) -> bool {
        let mut labels = selector.labels.iter();
        match (labels.next(), labels.next(), selector.requesters.is_empty()) {
            (None, _, false) => {
                for requester in &selector.requesters {
                    if let Some(counts) = self.by_requester.get(requester) {
                        counts.keys().for_each(&mut found);
                    }
                }
                true
            }
            (Some((key, value)), None, true) => {
                if let Some(values) = self.by_label.get(key.as_str())
                    && let Some(counts) = values.get(value)
                {
                    counts.keys().for_each(&mut found);
                }
                true
            }
            _ => false,
        }
    }
}

/// Adds one count per hold of `state` to `counts`.
fn count(counts: &mut Counts, record: &Record, state: &RecordState) {
    for hold in &state.holds {
        *counts.entry(record.resource_of(hold).clone()).or_default() += 1;
    }
}

/// Takes one count per hold of `state` off `counts`, dropping resources that reach zero.
fn uncount(counts: &mut Counts, record: &Record, state: &RecordState) {
    for hold in &state.holds {
        let resource = record.resource_of(hold);
        if let Some(count) = counts.get_mut(resource) {
            *count -= 1;
            if *count == 0 {
                counts.remove(resource);
            }
        }
    }
}

#[cfg(test)]
impl HolderIndex {
    /// Everything it counts, as (requester or `key=value`, resource, count), sorted.
    pub(crate) fn contents(&self) -> Vec<(String, String, u32)> {
        let mut out = Vec::new();
        for entry in &self.by_requester {
            for (resource, count) in entry.value() {
                out.push((entry.key().to_string(), resource.to_string(), *count));
            }
        }
        for entry in &self.by_label {
            for (value, counts) in entry.value() {
                for (resource, count) in counts {
                    out.push((
                        format!("{}={value}", entry.key()),
                        resource.to_string(),
                        *count,
                    ));
                }
            }
        }
        out.sort();
        out
    }
}
