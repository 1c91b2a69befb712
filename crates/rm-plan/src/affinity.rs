//! Where the holds a request's affinity terms select are, as placement judges candidates by
//! them: per term, the topology domains (resource names or label values) that hold one, so
//! that judging a candidate is one lookup however many holds there are. The ledger gathers
//! the holds (from an index, a scan or a query); this module only scores.

use std::collections::HashSet;

use rm_model::{AffinityTerm, ReservationRequest, Resource};

/// The domains of one term's selected holds.
#[derive(Debug, Default)]
struct Occupied<'c> {
    /// Whether any selected hold is on a registered resource.
    any: bool,
    domains: HashSet<&'c str, foldhash::fast::RandomState>,
}

impl Occupied<'_> {
    /// Whether placing on `resource` satisfies `term`, whose selected holds these are.
    #[inline]
    fn admits(&self, term: &AffinityTerm, resource: &Resource) -> bool {
        term.is_satisfied_in(resource, self.any, |domain| self.domains.contains(domain))
    }
}

/// The selected holds of every affinity term of one request, by requirement and term.
#[derive(Debug, Default)]
pub struct Affinity<'c> {
    /// Per requirement, per term; empty when the request has no terms.
    selected: Vec<Vec<Occupied<'c>>>,
}

impl<'c> Affinity<'c> {
    /// Nothing noted yet for `request`'s terms (and nothing to note when it has none).
    pub fn for_request(request: &ReservationRequest) -> Affinity<'c> {
        if request.requirements.iter().all(|r| r.affinity().is_empty()) {
            return Affinity::default();
        }
        Affinity {
            selected: request
                .requirements
                .iter()
                .map(|r| r.affinity().iter().map(|_| Occupied::default()).collect())
                .collect(),
        }
    }

    /// Notes that a hold selected by term `term` of requirement `requirement` is on
    /// `resource`.
    pub fn note(
        &mut self,
        request: &ReservationRequest,
        (requirement, term): (usize, usize),
        resource: &'c Resource,
    ) {
        let Some(occupied) = self
            .selected
            .get_mut(requirement)
            .and_then(|terms| terms.get_mut(term))
        else {
            return;
        };
        occupied.any = true;
        let term = &request.requirements[requirement].affinity()[term];
        if let Some(domain) = term.topology.domain(resource) {
            occupied.domains.insert(domain);
        }
    }

    /// Whether the request has no affinity terms at all.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.selected.is_empty()
    }

    /// Whether placing `group` of `request` on `resource` satisfies every required term.
    #[inline]
    pub fn required_ok(
        &self,
        request: &ReservationRequest,
        group: &[usize],
        resource: &Resource,
    ) -> bool {
        if self.selected.is_empty() {
            return true;
        }
        for &i in group {
            let terms = request.requirements[i].affinity();
            for (term, occupied) in terms.iter().zip(&self.selected[i]) {
                if term.weight.is_none() && !occupied.admits(term, resource) {
                    return false;
                }
            }
        }
        true
    }

    /// Preferences and preferred affinity, each up to 1,000,000, averaged over the group.
    #[inline]
    pub fn soft_score(
        &self,
        request: &ReservationRequest,
        group: &[usize],
        resource: &Resource,
    ) -> i64 {
        let (mut preferences, mut total, mut matched) = (0i64, 0i64, 0i64);
        for &i in group {
            let requirement = &request.requirements[i];
            preferences += i64::from(requirement.preference_score(resource));
            let Some(selected) = self.selected.get(i) else {
                continue;
            };
            for (term, occupied) in requirement.affinity().iter().zip(selected) {
                if let Some(weight) = term.weight {
                    total += i64::from(weight);
                    if occupied.admits(term, resource) {
                        matched += i64::from(weight);
                    }
                }
            }
        }
        let affinity = if total == 0 {
            0
        } else {
            matched * 1_000_000 / total
        };
        (preferences + affinity) / group.len().max(1) as i64
    }
}
