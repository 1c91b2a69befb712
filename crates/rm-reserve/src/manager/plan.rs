//! Planning: the shared planner (`rm-plan`) on the catalog, and the view of where the holds
//! a request's affinity terms select are.

use super::*;

impl ReservationManager {
    /// Plans `request` with the shared planner, gathering the holds its affinity terms
    /// select first.
    pub(super) fn plan(
        &self,
        catalog: &Catalog,
        request: &ReservationRequest,
        explain: bool,
        extra: &[(usize, usize, i64)],
    ) -> Result<Small<Placement>, LedgerError> {
        let affinity = self.affinity(catalog, request);
        rm_plan::plan(catalog, request, &affinity, explain, extra)
    }
}

impl ReservationManager {
    /// Where the holds that `request`'s affinity terms select are, gathered once per request
    /// (and not at all for requests without affinity): from the holder index for terms it
    /// answers, by one pass over the holds for the others.
    pub(super) fn affinity<'c>(
        &self,
        catalog: &'c Catalog,
        request: &ReservationRequest,
    ) -> Affinity<'c> {
        let mut affinity = Affinity::for_request(request);
        if affinity.is_empty() {
            return affinity;
        }
        let index = &self.holders;
        if index.switch_on() {
            self.fill_holder_index();
        }
        let ready = index.is_ready();
        // Terms whose selector the index answers; the others pass over the holds.
        let mut unanswered: Small<(usize, usize)> = Small::new();
        for (i, requirement) in request.requirements.iter().enumerate() {
            for (j, term) in requirement.affinity().iter().enumerate() {
                let answered = ready
                    && index.selected(&term.selector, |name| {
                        if let Some(position) = catalog.position(name) {
                            affinity.note(request, (i, j), &catalog.resources[position]);
                        }
                    });
                if !answered {
                    unanswered.push((i, j));
                }
            }
        }
        if unanswered.is_empty() {
            return affinity;
        }
        let term_at = |(i, j): (usize, usize)| &request.requirements[i].affinity()[j];
        let mut selecting: Small<(usize, usize)> = Small::new();
        self.records.for_each(|record| {
            // Who a hold is and what it carries do not change while it is remembered: ask the
            // selectors before looking at its state.
            selecting.clear();
            selecting.extend(unanswered.iter().copied().filter(|&at| {
                term_at(at)
                    .selector
                    .selects(&record.requester, &record.labels)
            }));
            if selecting.is_empty() {
                return;
            }
            let items = {
                let state = lock(&record.state);
                if !state.state.holds_capacity() {
                    return;
                }
                state.items.clone()
            };
            for item in items.iter() {
                let Some(position) = catalog.position(&item.resource) else {
                    continue;
                };
                for &at in &selecting {
                    affinity.note(request, at, &catalog.resources[position]);
                }
            }
        });
        affinity
    }
}
