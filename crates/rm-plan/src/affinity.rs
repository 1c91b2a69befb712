//! Where the holds a request's affinity terms select are, as placement judges candidates by
//! them: per term, the topology domains (resource names or label values) that hold one, so
//! that judging a candidate is one lookup however many holds there are. The ledger gathers
//! the holds (from an index, a scan or a query); this module only scores.

use std::collections::HashSet;

use rm_model::{ReservationRequest, Resource, Topology};

use crate::catalog::{Catalog, Slot};

/// The domains of one term's selected holds.
#[derive(Debug, Default)]
struct Occupied<'c> {
    /// Whether any selected hold is on a registered resource.
    any: bool,
    domains: HashSet<&'c str, foldhash::fast::RandomState>,
}

impl Occupied<'_> {
    /// Marks in `same` (by catalog position) the resources in a domain of `topology` that
    /// holds a selected hold, from the catalog's cached label domains: one lookup per domain,
    /// not one per resource.
    fn mark<S: Slot>(&self, catalog: &Catalog<S>, topology: &Topology, same: &mut [bool]) {
        match topology {
            Topology::Resource => {
                for name in &self.domains {
                    if let Some(p) = catalog.position_of(name) {
                        same[p] = true;
                    }
                }
            }
            Topology::Label(key) => {
                for (value, positions) in catalog.domains(key.as_str()).iter() {
                    if self.domains.contains(value.as_str()) {
                        for &p in positions {
                            same[p] = true;
                        }
                    }
                }
            }
        }
    }
}

/// What the affinity terms of one placement group say of every resource, by catalog
/// position, built once per group (see [`Affinity::for_group`]): a candidate is then judged
/// by two reads instead of a label lookup and a set lookup per term.
#[derive(Debug, Default)]
pub(crate) struct GroupAffinity {
    /// Whether every required term admits the resource; empty when the group has none.
    admitted: Vec<bool>,
    /// The weight of the preferred terms that the resource satisfies.
    matched: Vec<i64>,
    /// The weight of all the group's preferred terms.
    total: i64,
}

impl GroupAffinity {
    /// Whether every required term admits the resource at `position`.
    #[inline]
    pub(crate) fn admits(&self, position: usize) -> bool {
        self.admitted.get(position).copied().unwrap_or(true)
    }

    /// Preferences and preferred affinity of the resource at `position`, each up to
    /// 1,000,000, averaged over the group.
    #[inline]
    pub(crate) fn soft_score(
        &self,
        request: &ReservationRequest,
        group: &[usize],
        resource: &Resource,
        position: usize,
    ) -> i64 {
        let preferences: i64 = group
            .iter()
            .map(|&i| i64::from(request.requirements[i].preference_score(resource)))
            .sum();
        let affinity = if self.total == 0 {
            0
        } else {
            self.matched.get(position).copied().unwrap_or(0) * 1_000_000 / self.total
        };
        (preferences + affinity) / group.len().max(1) as i64
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

    /// What the terms of `group` say of every resource of `catalog`, by position: the
    /// verdicts of the required terms and the weights of the preferred terms each
    /// satisfies, computed per domain.
    pub(crate) fn for_group<S: Slot>(
        &self,
        catalog: &Catalog<S>,
        request: &ReservationRequest,
        group: &[usize],
    ) -> GroupAffinity {
        let mut table = GroupAffinity::default();
        if self.selected.is_empty() {
            return table;
        }
        let n = catalog.resources.len();
        let mut same = vec![false; n];
        for &i in group {
            let terms = request.requirements[i].affinity();
            for (term, occupied) in terms.iter().zip(&self.selected[i]) {
                same.fill(false);
                occupied.mark(catalog, &term.topology, &mut same);
                match term.weight {
                    None => {
                        if table.admitted.is_empty() {
                            table.admitted = vec![true; n];
                        }
                        for (admitted, &same) in table.admitted.iter_mut().zip(&same) {
                            *admitted &= term.verdict(occupied.any, same);
                        }
                    }
                    Some(weight) => {
                        let weight = i64::from(weight);
                        table.total += weight;
                        if table.matched.is_empty() {
                            table.matched = vec![0; n];
                        }
                        for (matched, &same) in table.matched.iter_mut().zip(&same) {
                            if term.verdict(occupied.any, same) {
                                *matched += weight;
                            }
                        }
                    }
                }
            }
        }
        table
    }

    /// Whether the request has no affinity terms at all.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.selected.is_empty()
    }
}
