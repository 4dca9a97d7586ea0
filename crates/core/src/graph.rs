//! The resource graph: dependency order and dependants.

use mlctl_spec::{ResourceId, Spec};
use std::collections::{BTreeMap, BTreeSet};

/// Resources in dependency order (inputs first; ties in address order, so the order is stable).
///
/// # Errors
/// A cycle, as the list of addresses on it (the spec validator already rejects cycles, so this
/// only guards against a validator bug).
pub fn topo_order(spec: &Spec) -> Result<Vec<ResourceId>, Vec<ResourceId>> {
    let known: BTreeSet<&ResourceId> = spec.resources.iter().map(|r| &r.id).collect();
    let mut indegree: BTreeMap<&ResourceId, usize> = BTreeMap::new();
    let mut dependants: BTreeMap<&ResourceId, Vec<&ResourceId>> = BTreeMap::new();
    for r in &spec.resources {
        let deps: Vec<&ResourceId> = r.depends_on.iter().filter(|d| known.contains(d)).collect();
        indegree.insert(&r.id, deps.len());
        for d in deps {
            dependants.entry(d).or_default().push(&r.id);
        }
    }
    let mut ready: BTreeSet<&ResourceId> = indegree
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(id, _)| *id)
        .collect();
    let mut out = Vec::new();
    while let Some(id) = ready.pop_first() {
        out.push(id.clone());
        for d in dependants.get(id).into_iter().flatten() {
            let n = indegree.get_mut(d).expect("known");
            *n -= 1;
            if *n == 0 {
                ready.insert(d);
            }
        }
    }
    if out.len() == spec.resources.len() {
        Ok(out)
    } else {
        Err(indegree
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(id, _)| id.clone())
            .collect())
    }
}

/// Every resource that depends on `id`, directly or not.
pub fn dependants_of(spec: &Spec, id: &ResourceId) -> BTreeSet<ResourceId> {
    let mut out = BTreeSet::new();
    let mut stack = vec![id.clone()];
    while let Some(cur) = stack.pop() {
        for r in &spec.resources {
            if r.depends_on.contains(&cur) && out.insert(r.id.clone()) {
                stack.push(r.id.clone());
            }
        }
    }
    out
}
