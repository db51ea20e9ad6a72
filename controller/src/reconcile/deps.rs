//! Ordering between apps (`spec.dependsOn`): the dependency view [`decide`](super::decide()) reads, computed at
//! the edge from the records and statuses stores, so the decision stays pure.
//!
//! ```text
//!  record present ─► each dependency: Ready (Healthy at its current generation) | Waiting (phase) | Missing
//!                 ─► a cycle through the app (a → b → a), searched over the records' dependsOn
//!  record gone ────► its dependents still there: records that list it, or deleted ones whose deletion is not done
//! ```
//!
//! Waiting only ever holds back a register (a create or a new version): it never stops anything. A deleted record
//! waits for its dependents, and only its dependents' own deletion (or a record edit) releases it: absence of
//! evidence is never a reason to stop a job.

use std::collections::{BTreeMap, HashSet};

use super::plan::RecordState;
use crate::app::{AppKey, Record};
use crate::status::Phase;
use crate::store::{Records, Statuses};

/// Where one dependency stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DependencyState {
    /// `Healthy` at the generation of its current record.
    Ready,
    /// Its record exists but it is not `Healthy` at that record's generation yet.
    Waiting {
        /// Its status's phase; `None` when it has no status yet. `Healthy` here means healthy at an older
        /// generation of its record.
        phase: Option<Phase>,
    },
    /// No record.
    Missing,
}

/// Why a dependent holds back the deletion of the app it depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DependentState {
    /// Its record exists and still lists the app in `spec.dependsOn`.
    Listed,
    /// Its record is gone (or unreadable) and its own deletion is not done yet (its status still exists).
    Deleting,
}

/// What a decision knows of an app's place among other apps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DependencyView {
    /// Each dependency of the record, in `spec.dependsOn` order (empty without a valid record).
    pub dependencies: Vec<(AppKey, DependencyState)>,
    /// A cycle through this app, as the path from it back to itself (`[a, b, a]`).
    pub cycle: Option<Vec<AppKey>>,
    /// For a record proven gone: the apps still depending on it, which must go first (sorted).
    pub dependents: Vec<(AppKey, DependentState)>,
}

impl DependencyView {
    /// No dependency, no dependent.
    pub fn none() -> DependencyView {
        DependencyView::default()
    }

    /// What the app waits for before it may register, as a status message; `None` when every dependency is ready
    /// and there is no cycle.
    pub fn waiting_for(&self) -> Option<String> {
        let mut parts: Vec<String> = self
            .dependencies
            .iter()
            .filter_map(|(key, state)| match state {
                DependencyState::Ready => None,
                DependencyState::Waiting { phase: None } => Some(format!("{key} (no status yet)")),
                DependencyState::Waiting { phase: Some(Phase::Healthy) } => {
                    Some(format!("{key} (Healthy at an older generation)"))
                }
                DependencyState::Waiting { phase: Some(p) } => Some(format!("{key} ({})", p.as_str())),
                DependencyState::Missing => Some(format!("{key} (no such app)")),
            })
            .collect();
        if let Some(cycle) = &self.cycle {
            parts.push(format!("the dependency cycle {}", path(cycle)));
        }
        (!parts.is_empty()).then(|| format!("waiting for {}", parts.join(", ")))
    }

    /// The dependencies that have no record.
    pub fn missing(&self) -> Vec<&AppKey> {
        self.dependencies.iter().filter(|(_, s)| *s == DependencyState::Missing).map(|(k, _)| k).collect()
    }
}

/// The dependents holding a deletion back, for its status message: `default/web (its record depends on it), …`.
pub fn describe_dependents(dependents: &[(AppKey, DependentState)]) -> String {
    let names: Vec<String> = dependents
        .iter()
        .map(|(k, why)| match why {
            DependentState::Listed => format!("{k} (its record depends on it)"),
            DependentState::Deleting => format!("{k} (being deleted)"),
        })
        .collect();
    names.join(", ")
}

/// `a → b → a`.
pub fn path(keys: &[AppKey]) -> String {
    keys.iter().map(ToString::to_string).collect::<Vec<_>>().join(" → ")
}

/// The dependency view of the app at `key`, whose record is `record`, from the stores. Reads only memory: for a
/// present record, its dependencies' records and statuses and a cycle search over the records' `dependsOn`; for
/// a record proven gone, its dependents.
pub fn view(key: &AppKey, record: &RecordState, records: &Records, statuses: &Statuses) -> DependencyView {
    match record {
        RecordState::Present(r) => match r.as_ref() {
            Record::Valid(v) if !v.depends_on.is_empty() => DependencyView {
                dependencies: v.depends_on.iter().map(|dep| (dep.clone(), state_of(dep, records, statuses))).collect(),
                cycle: find_cycle(key, &v.depends_on, records),
                dependents: Vec::new(),
            },
            _ => DependencyView::none(),
        },
        RecordState::Gone => {
            DependencyView { dependents: dependents(key, records, statuses), ..DependencyView::none() }
        }
        // Nothing is done for an unreadable record anyway.
        RecordState::Unreadable { .. } => DependencyView::none(),
    }
}

fn state_of(dep: &AppKey, records: &Records, statuses: &Statuses) -> DependencyState {
    let Some(record) = records.get(dep) else { return DependencyState::Missing };
    let status = statuses.get(dep).and_then(|e| e.status);
    match status {
        None => DependencyState::Waiting { phase: None },
        Some(s) if s.phase == Phase::Healthy && s.observed_generation == record.generation() => DependencyState::Ready,
        Some(s) => DependencyState::Waiting { phase: Some(s.phase) },
    }
}

/// A path `key → … → key` over the records' `dependsOn`, if there is one (depth-first, each app visited once, so
/// bounded by the number of records).
fn find_cycle(key: &AppKey, direct: &[AppKey], records: &Records) -> Option<Vec<AppKey>> {
    let mut visited: HashSet<AppKey> = HashSet::new();
    // Each frame: an app on the current path and the dependencies of it not yet tried.
    let mut stack: Vec<(AppKey, Vec<AppKey>)> = vec![(key.clone(), direct.iter().rev().cloned().collect())];
    while let Some((_, todo)) = stack.last_mut() {
        let Some(next) = todo.pop() else {
            stack.pop();
            continue;
        };
        if next == *key {
            let mut cycle: Vec<AppKey> = stack.iter().map(|(k, _)| k.clone()).collect();
            cycle.push(key.clone());
            return Some(cycle);
        }
        if !visited.insert(next.clone()) {
            continue;
        }
        let deps: Vec<AppKey> =
            records.get(&next).map(|r| r.depends_on().iter().rev().cloned().collect()).unwrap_or_default();
        stack.push((next, deps));
    }
    None
}

/// The apps that still depend on `key`: valid records that list it, and apps with a status listing it whose record
/// is not a valid one any more (deleted, unreadable or invalid): their last known `dependsOn` still counts, since
/// nothing proves their jobs stopped.
fn dependents(key: &AppKey, records: &Records, statuses: &Statuses) -> Vec<(AppKey, DependentState)> {
    let mut out: BTreeMap<AppKey, DependentState> = BTreeMap::new();
    for k in records.dependents_of(key) {
        out.insert(k, DependentState::Listed);
    }
    for k in statuses.depending_on(key) {
        match records.get(&k).as_deref() {
            // A valid record is the truth about what it depends on now.
            Some(Record::Valid(_)) => {}
            // An invalid record: its last valid dependsOn still holds (what runs was applied under it).
            Some(Record::Invalid { .. }) => {
                out.insert(k, DependentState::Listed);
            }
            None => {
                out.insert(k, DependentState::Deleting);
            }
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests;
