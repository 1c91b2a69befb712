//! Deadlock detection over a wait-for graph: requesters that hold capacity and wait for
//! capacity held by each other.

use std::collections::{BTreeMap, BTreeSet};

use rm_model::{RequesterId, Reservation, ReservationRequest, Resource};

/// Who waits for whom: an edge `a → b` means `a` waits for capacity that `b` holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WaitForGraph {
    edges: BTreeMap<RequesterId, BTreeSet<RequesterId>>,
}

impl WaitForGraph {
    /// An empty graph.
    pub fn new() -> WaitForGraph {
        WaitForGraph::default()
    }

    /// Adds `waiter → holder`.
    pub fn add_wait(&mut self, waiter: RequesterId, holder: RequesterId) {
        self.edges.entry(waiter).or_default().insert(holder);
    }

    /// The graph of `waiting` requests against the `active` holds on `resources`: a waiter
    /// waits for every other requester holding capacity of a type it needs on a resource that
    /// could hold its requirement.
    pub fn build(
        resources: &[Resource],
        active: &[Reservation],
        waiting: &[ReservationRequest],
    ) -> WaitForGraph {
        let mut graph = WaitForGraph::new();
        for request in waiting {
            for requirement in &request.requirements {
                for resource in resources.iter().filter(|r| requirement.admits(r)) {
                    for hold in active {
                        let holds_it = hold.items.iter().any(|item| {
                            &item.resource == resource.name()
                                && &item.resource_type == requirement.resource_type()
                        });
                        if holds_it && hold.requester != request.requester {
                            graph.add_wait(request.requester.clone(), hold.requester.clone());
                        }
                    }
                }
            }
        }
        graph
    }

    /// Every deadlock: each cycle of waiting (a strongly connected group of two or more
    /// requesters, or one waiting for itself), with its members in name order.
    pub fn deadlocks(&self) -> Vec<Vec<RequesterId>> {
        // Tarjan's strongly connected components, iteratively over the sorted graph.
        let nodes: Vec<&RequesterId> = self
            .edges
            .keys()
            .chain(self.edges.values().flatten())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let index_of: BTreeMap<&RequesterId, usize> =
            nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let successors: Vec<Vec<usize>> = nodes
            .iter()
            .map(|n| {
                self.edges
                    .get(*n)
                    .map(|s| s.iter().map(|m| index_of[m]).collect())
                    .unwrap_or_default()
            })
            .collect();
        let n = nodes.len();
        let (mut index, mut low, mut on_stack) = (vec![usize::MAX; n], vec![0; n], vec![false; n]);
        let (mut stack, mut next, mut found) = (Vec::new(), 0usize, Vec::new());
        for root in 0..n {
            if index[root] != usize::MAX {
                continue;
            }
            let mut work: Vec<(usize, usize)> = vec![(root, 0)];
            while let Some(&mut (v, ref mut child)) = work.last_mut() {
                if *child == 0 && index[v] == usize::MAX {
                    index[v] = next;
                    low[v] = next;
                    next += 1;
                    stack.push(v);
                    on_stack[v] = true;
                }
                if let Some(&w) = successors[v].get(*child) {
                    *child += 1;
                    if index[w] == usize::MAX {
                        work.push((w, 0));
                    } else if on_stack[w] {
                        low[v] = low[v].min(index[w]);
                    }
                    continue;
                }
                work.pop();
                if let Some(&(parent, _)) = work.last() {
                    low[parent] = low[parent].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut component = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        component.push(nodes[w].clone());
                        if w == v {
                            break;
                        }
                    }
                    let self_loop = successors[v].contains(&v);
                    if component.len() > 1 || self_loop {
                        component.sort();
                        found.push(component);
                    }
                }
            }
        }
        found.sort();
        found
    }
}
