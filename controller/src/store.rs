//! The controller's three in-memory stores. Each has exactly one writer and any number of cheap-clone readers
//! (the reflector's `Writer`/`Store` split, STYLE item 2):
//! - [`Records`]: app records from Consul KV, parsed and validated once per generation. Written only by the records
//!   watch task ([`RecordsWriter`]), which applies whole-prefix snapshots.
//! - [`Statuses`]: the status records. Written only by the reconcile stage's status writer ([`StatusesWriter`]),
//!   which loads them at start and then records each status it writes.
//! - [`LiveCache`]: Nomad jobs and their latest deployments, fed only by the Nomad watch task ([`LiveWriter`]):
//!   one list plus the event stream. Writes are monotonic by index, so a relist taken before an event never moves
//!   an entry backwards.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::app::{AppKey, Record};
use crate::consul::kv::KvPair;
use crate::live::{JobKey, Live, LiveDeployment, LiveJob};
use crate::status::{AppStatus, ConditionType, Phase, Reason};

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// A change to one key found in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The app.
    pub key: AppKey,
    /// The new generation; `None` when the record is no longer listed.
    pub generation: Option<u64>,
}

#[derive(Default, Debug)]
struct RecordsInner {
    by_key: HashMap<AppKey, Arc<Record>>,
    /// The job each record renders to → the record, to route Nomad events to apps.
    by_job: HashMap<JobKey, AppKey>,
    /// Reverse `spec.dependsOn`: an app → the valid records that depend on it, to wake them when its status
    /// changes and to hold back its deletion while they are there.
    dependents: HashMap<AppKey, std::collections::BTreeSet<AppKey>>,
    /// Bumped by every snapshot that changed something, so a reader can skip a rescan when nothing changed.
    revision: u64,
}

/// App records by key: the read side.
#[derive(Clone, Default, Debug)]
pub struct Records {
    inner: Arc<RwLock<RecordsInner>>,
}

/// App records by key: the write side, owned by the records watch.
#[derive(Debug)]
pub struct RecordsWriter {
    prefix: String,
    inner: Arc<RwLock<RecordsInner>>,
}

/// A records store for the installation using KV prefix `prefix`: its one writer and a reader.
pub fn records(prefix: &str) -> (RecordsWriter, Records) {
    let inner = Arc::new(RwLock::new(RecordsInner::default()));
    (RecordsWriter { prefix: prefix.to_string(), inner: inner.clone() }, Records { inner })
}

impl Records {
    /// The record at `key`.
    pub fn get(&self, key: &AppKey) -> Option<Arc<Record>> {
        read(&self.inner).by_key.get(key).cloned()
    }

    /// Every key with a record.
    pub fn keys(&self) -> Vec<AppKey> {
        read(&self.inner).by_key.keys().cloned().collect()
    }

    /// Every key with a record in `namespace`.
    pub fn keys_in(&self, namespace: &str) -> Vec<AppKey> {
        read(&self.inner).by_key.keys().filter(|k| k.namespace == namespace).cloned().collect()
    }

    /// How many records are held.
    pub fn len(&self) -> usize {
        read(&self.inner).by_key.len()
    }

    /// True when no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A number that changes whenever a record is added, changed or dropped.
    pub fn revision(&self) -> u64 {
        read(&self.inner).revision
    }

    /// The app whose record renders to this job.
    pub fn key_for_job(&self, job: &JobKey) -> Option<AppKey> {
        read(&self.inner).by_job.get(job).cloned()
    }

    /// The apps whose valid record lists `key` in `spec.dependsOn`, sorted (whether or not `key` has a record).
    pub fn dependents_of(&self, key: &AppKey) -> Vec<AppKey> {
        read(&self.inner).dependents.get(key).map(|d| d.iter().cloned().collect()).unwrap_or_default()
    }
}

impl RecordsWriter {
    /// Applies a snapshot of the apps prefix: parses the records whose `ModifyIndex` changed (outside the lock),
    /// and returns what changed. Keys that are not `<prefix>/apps/<ns>/<name>` are ignored. A record the snapshot
    /// lacks is dropped, even from a listing ACLs filtered: absence here is only a hint that wakes the app, and
    /// the reconcile stage proves a record gone (or unreadable) with a single-key read before any destructive act.
    pub fn apply_snapshot(&mut self, entries: &[KvPair]) -> Vec<Change> {
        let prefix = self.prefix.as_str();
        let mut seen = HashSet::with_capacity(entries.len());
        let mut to_load = Vec::new();
        {
            let inner = read(&self.inner);
            for e in entries {
                let Some(key) = AppKey::from_kv_key(prefix, &e.key) else { continue };
                if inner.by_key.get(&key).is_none_or(|r| r.generation() != e.modify_index) {
                    to_load.push((key.clone(), e));
                }
                seen.insert(key);
            }
        }
        let loaded: Vec<(AppKey, Record)> = to_load
            .into_iter()
            .map(|(key, e)| {
                let record = Record::load(prefix, &key, &e.value, e.modify_index);
                (key, record)
            })
            .collect();
        let mut inner = write(&self.inner);
        let gone: Vec<AppKey> = inner.by_key.keys().filter(|k| !seen.contains(*k)).cloned().collect();
        let mut changes = Vec::with_capacity(loaded.len() + gone.len());
        for key in gone {
            if let Some(old) = inner.by_key.remove(&key) {
                remove_job_index(&mut inner.by_job, &key, &old);
                remove_dependents_index(&mut inner.dependents, &key, &old);
            }
            changes.push(Change { key, generation: None });
        }
        for (key, record) in loaded {
            let generation = record.generation();
            if let Some(old) = inner.by_key.get(&key).cloned() {
                remove_job_index(&mut inner.by_job, &key, &old);
                remove_dependents_index(&mut inner.dependents, &key, &old);
            }
            inner.by_job.insert(JobKey::new(&key.namespace, record.job_id(&key)), key.clone());
            for dep in record.depends_on() {
                inner.dependents.entry(dep.clone()).or_default().insert(key.clone());
            }
            inner.by_key.insert(key.clone(), Arc::new(record));
            changes.push(Change { key, generation: Some(generation) });
        }
        if !changes.is_empty() {
            inner.revision += 1;
        }
        changes
    }
}

fn remove_dependents_index(
    dependents: &mut HashMap<AppKey, std::collections::BTreeSet<AppKey>>,
    key: &AppKey,
    old: &Record,
) {
    for dep in old.depends_on() {
        if let Some(set) = dependents.get_mut(dep) {
            set.remove(key);
            if set.is_empty() {
                dependents.remove(dep);
            }
        }
    }
}

fn remove_job_index(by_job: &mut HashMap<JobKey, AppKey>, key: &AppKey, old: &Record) {
    let id = JobKey::new(&key.namespace, old.job_id(key));
    if by_job.get(&id) == Some(key) {
        by_job.remove(&id);
    }
}

/// A status record as last read or written.
#[derive(Clone, Debug)]
pub struct StatusEntry {
    /// The parsed status; `None` when the stored bytes are not a status (they are then overwritten).
    pub status: Option<Arc<AppStatus>>,
    /// Consul `ModifyIndex`, the CAS guard for the next write.
    pub modify_index: u64,
}

impl StatusEntry {
    fn from_pair(p: &KvPair) -> StatusEntry {
        StatusEntry {
            status: serde_json::from_slice::<AppStatus>(&p.value).ok().map(Arc::new),
            modify_index: p.modify_index,
        }
    }
}

/// The statuses counted for the gauges ([`Statuses::census`]).
#[derive(Clone, Default, Debug, PartialEq, Eq)]
pub struct Census {
    /// Apps by phase name.
    pub by_phase: HashMap<&'static str, usize>,
    /// Apps waiting for their dependencies.
    pub on_dependencies: usize,
    /// Deleted apps waiting for their dependents.
    pub on_dependents: usize,
}

/// Status records by key: the read side.
#[derive(Clone, Default, Debug)]
pub struct Statuses {
    inner: Arc<RwLock<StatusTable>>,
    /// A revision bumped on every change, so a stage that follows statuses (the analysis poller) rescans them only
    /// when they moved, and wakes as soon as they do.
    revision: Arc<tokio::sync::watch::Sender<u64>>,
}

/// Status records by key: the write side, owned by the reconcile stage's status writer.
#[derive(Debug)]
pub struct StatusesWriter {
    prefix: String,
    inner: Arc<RwLock<StatusTable>>,
    revision: Arc<tokio::sync::watch::Sender<u64>>,
}

/// The statuses and, for a follower that wants only what changed, when each changed.
#[derive(Default, Debug)]
struct StatusTable {
    /// Each status, and the revision that last wrote it.
    entries: HashMap<AppKey, (StatusEntry, u64)>,
    /// Bumped on every change (the same number as the revision watch's).
    revision: u64,
    /// The revision of the last removal or whole load: a follower that saw an earlier one must look at everything.
    reset: u64,
}

impl StatusTable {
    fn bump(&mut self) -> u64 {
        self.revision += 1;
        self.revision
    }

    fn insert(&mut self, key: AppKey, entry: StatusEntry) {
        let revision = self.bump();
        self.entries.insert(key, (entry, revision));
    }

    fn remove(&mut self, key: &AppKey) {
        let revision = self.bump();
        // Only a removal that removed something sends followers back to a full look.
        if self.entries.remove(key).is_some() {
            self.reset = revision;
        }
    }
}

/// What changed in the statuses since a revision ([`Statuses::changed_since`]).
#[derive(Debug)]
pub enum StatusDelta {
    /// A status was removed or all were loaded since: look at every status.
    Everything {
        /// The revision this answer is as of.
        revision: u64,
    },
    /// Only these statuses were written since (`None`: stored bytes that are not a status).
    Changed {
        /// The revision this answer is as of.
        revision: u64,
        /// The statuses written since, in no order.
        statuses: Vec<(AppKey, Option<Arc<AppStatus>>)>,
    },
}

/// A status store for the installation using KV prefix `prefix`: its one writer and a reader.
pub fn statuses(prefix: &str) -> (StatusesWriter, Statuses) {
    let inner = Arc::new(RwLock::new(StatusTable::default()));
    let revision = Arc::new(tokio::sync::watch::Sender::new(0));
    (
        StatusesWriter { prefix: prefix.to_string(), inner: inner.clone(), revision: revision.clone() },
        Statuses { inner, revision },
    )
}

impl Statuses {
    /// The status at `key`.
    pub fn get(&self, key: &AppKey) -> Option<StatusEntry> {
        read(&self.inner).entries.get(key).map(|(e, _)| e.clone())
    }

    /// Every key with a status.
    pub fn keys(&self) -> Vec<AppKey> {
        read(&self.inner).entries.keys().cloned().collect()
    }

    /// The figures of the `apps{phase}` and `apps_waiting{on}` gauges, in one pass under the lock: apps by phase (an
    /// unreadable status counts as `Pending`), and how many wait for their dependencies
    /// (`WaitingForDependencies`) or, deleted, for their dependents (`WaitingForDependents`), by the `Ready`
    /// condition's reason.
    pub fn census(&self) -> Census {
        let mut census = Census::default();
        for (entry, _) in read(&self.inner).entries.values() {
            let phase = entry.status.as_ref().map_or(Phase::Pending, |s| s.phase);
            *census.by_phase.entry(phase.as_str()).or_default() += 1;
            match entry.status.as_ref().and_then(|s| s.condition(ConditionType::Ready)).map(|c| c.reason) {
                Some(Reason::WaitingForDependencies) => census.on_dependencies += 1,
                Some(Reason::WaitingForDependents) => census.on_dependents += 1,
                _ => {}
            }
        }
        census
    }

    /// Every status with a rollout (`status.rollout`), in one pass under the lock, and the revision it is as of:
    /// statuses without one cost a pointer check, not a copy of their key.
    pub fn rollouts(&self) -> (u64, Vec<(AppKey, Arc<AppStatus>)>) {
        let table = read(&self.inner);
        let rollouts = table
            .entries
            .iter()
            .filter_map(|(k, (e, _))| e.status.as_ref().filter(|s| s.rollout.is_some()).map(|s| (k.clone(), s.clone())))
            .collect();
        (table.revision, rollouts)
    }

    /// What changed since revision `since`: the statuses written since (with or without a rollout: one that lost
    /// its rollout changed too), or [`StatusDelta::Everything`] when a status was removed or all were loaded since.
    /// One pass comparing a number per status, copying only those that changed: the analysis stage follows every
    /// status write with this, and a rollout writes status on every step and measurement.
    pub fn changed_since(&self, since: u64) -> StatusDelta {
        let table = read(&self.inner);
        if table.reset > since {
            return StatusDelta::Everything { revision: table.revision };
        }
        let statuses = table
            .entries
            .iter()
            .filter(|(_, (_, at))| *at > since)
            .map(|(k, (e, _))| (k.clone(), e.status.clone()))
            .collect();
        StatusDelta::Changed { revision: table.revision, statuses }
    }

    /// The apps whose status lists `key` in `dependsOn` (the record's list when that status was written), in no
    /// order. A pass over every status: only asked for a deleted record, to hold its deletion back.
    pub fn depending_on(&self, key: &AppKey) -> Vec<AppKey> {
        let wanted = key.to_string();
        read(&self.inner)
            .entries
            .iter()
            .filter(|(_, (e, _))| e.status.as_ref().is_some_and(|s| s.depends_on.contains(&wanted)))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// A number that changes whenever a status is loaded, written, re-read or removed.
    pub fn revision(&self) -> u64 {
        *self.revision.borrow()
    }

    /// A receiver that sees [`Statuses::revision`] change (`changed().await`), for a stage that follows statuses.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revision.subscribe()
    }
}

impl StatusesWriter {
    /// Replaces the content with a listing of the status prefix.
    pub fn load(&self, entries: &[KvPair]) {
        let mut table = write(&self.inner);
        let revision = table.bump();
        table.reset = revision;
        table.entries = entries
            .iter()
            .filter_map(|e| {
                Some((key_from_status_kv_key(&self.prefix, &e.key)?, (StatusEntry::from_pair(e), revision)))
            })
            .collect();
        drop(table);
        self.announce(revision);
    }

    /// Tells followers (after the lock is released) that the table is at `revision`.
    fn announce(&self, revision: u64) {
        // Workers write concurrently: a later revision may have been announced already.
        self.revision.send_if_modified(|seen| {
            let newer = revision > *seen;
            if newer {
                *seen = revision;
            }
            newer
        });
    }

    /// Records a status written at `modify_index`.
    pub fn set(&self, key: AppKey, status: AppStatus, modify_index: u64) {
        let mut table = write(&self.inner);
        table.insert(key, StatusEntry { status: Some(Arc::new(status)), modify_index });
        let revision = table.revision;
        drop(table);
        self.announce(revision);
    }

    /// Records what a fresh read of one status key found.
    pub fn set_read(&self, key: AppKey, pair: Option<&KvPair>) {
        let mut table = write(&self.inner);
        match pair {
            Some(p) => table.insert(key, StatusEntry::from_pair(p)),
            None => table.remove(&key),
        };
        let revision = table.revision;
        drop(table);
        self.announce(revision);
    }

    /// Forgets a status (after deleting it).
    pub fn remove(&self, key: &AppKey) {
        let mut table = write(&self.inner);
        table.remove(key);
        let revision = table.revision;
        drop(table);
        self.announce(revision);
    }
}

/// The app a status key belongs to: `<prefix>/status/<ns>/<name>`, with the same rules as record keys.
pub fn key_from_status_kv_key(prefix: &str, key: &str) -> Option<AppKey> {
    let rest = key.strip_prefix(prefix)?.strip_prefix("/status/")?;
    AppKey::from_kv_key(prefix, &format!("{prefix}/apps/{rest}"))
}

/// How many deployments per job the live cache keeps (newest first).
pub const DEPLOYMENTS_PER_JOB: usize = 4;

#[derive(Default, Debug)]
struct LiveInner {
    jobs: HashMap<JobKey, LiveJob>,
    deployments: HashMap<JobKey, Vec<LiveDeployment>>,
    /// The highest Nomad index applied.
    index: u64,
}

/// Nomad jobs and deployments by job: the read side.
#[derive(Clone, Default, Debug)]
pub struct LiveCache {
    inner: Arc<RwLock<LiveInner>>,
}

/// Nomad jobs and deployments by job: the write side, owned by the Nomad watch.
#[derive(Debug)]
pub struct LiveWriter {
    inner: Arc<RwLock<LiveInner>>,
}

/// A live cache: its one writer and a reader.
pub fn live_cache() -> (LiveWriter, LiveCache) {
    let inner = Arc::new(RwLock::new(LiveInner::default()));
    (LiveWriter { inner: inner.clone() }, LiveCache { inner })
}

impl LiveCache {
    /// The live side of `job`, and of the jobs in `retiring` that still exist.
    pub fn live_for(&self, job: &JobKey, retiring: &[JobKey]) -> Live {
        let inner = read(&self.inner);
        Live {
            job: inner.jobs.get(job).cloned(),
            deployments: inner.deployments.get(job).cloned().unwrap_or_default(),
            retiring: retiring.iter().filter_map(|k| inner.jobs.get(k).cloned()).collect(),
            index: inner.index,
        }
    }

    /// How many jobs are cached.
    pub fn job_count(&self) -> usize {
        read(&self.inner).jobs.len()
    }
}

impl LiveWriter {
    /// Replaces everything with a listing taken at `index` that covered the namespaces in `covered`; returns the
    /// jobs whose entry changed, appeared or vanished. An entry the cache holds at a higher index than the listing
    /// (an event applied after the list was taken) is kept: a relist never moves the cache backwards. Entries in a
    /// namespace the listing did not cover (deleted, or hidden from the token) are kept too: absence from a list is
    /// proof only inside the namespaces it covered. The cache is updated in place, so a relist of 10 000 jobs never
    /// holds two copies of them.
    pub fn replace_all(
        &mut self,
        jobs: Vec<LiveJob>,
        deployments: Vec<(JobKey, LiveDeployment)>,
        index: u64,
        covered: &std::collections::BTreeSet<String>,
    ) -> Vec<JobKey> {
        let mut listed_deps: HashMap<JobKey, Vec<LiveDeployment>> = HashMap::new();
        for (job, d) in deployments {
            listed_deps.entry(job).or_default().push(d);
        }
        let unproven = |key: &JobKey, modify_index: u64| modify_index > index || !covered.contains(&key.namespace);
        // One write lock for the whole swap: no event applied in between can be lost or reordered.
        let mut inner = write(&self.inner);
        let mut changed: HashSet<JobKey> = HashSet::new();
        let mut listed: HashSet<JobKey> = HashSet::with_capacity(jobs.len());
        for mut j in jobs {
            listed.insert(j.key.clone());
            match inner.jobs.get_mut(&j.key) {
                // An event newer than the listing was applied first: keep it.
                Some(old) if old.modify_index > j.modify_index => {}
                Some(old) => {
                    // List stubs carry no version or counts: keep those already known for the same spec.
                    if j.version.is_none() && old.job_modify_index == j.job_modify_index {
                        j.version = old.version;
                        j.counts = old.counts.clone();
                    }
                    if *old != j {
                        changed.insert(j.key.clone());
                        *old = j;
                    }
                }
                None => {
                    changed.insert(j.key.clone());
                    inner.jobs.insert(j.key.clone(), j);
                }
            }
        }
        // A job the listing lacks is gone, unless the cache saw it written after the listing's index, or in a
        // namespace the listing did not cover.
        inner.jobs.retain(|key, old| {
            let keep = listed.contains(key) || unproven(key, old.modify_index);
            if !keep {
                changed.insert(key.clone());
            }
            keep
        });
        let mut dep_keys: HashSet<JobKey> = listed_deps.keys().cloned().collect();
        dep_keys.extend(inner.deployments.keys().cloned());
        for key in dep_keys {
            let mut list = listed_deps.remove(&key).unwrap_or_default();
            if let Some(old) = inner.deployments.get(&key) {
                for d in old.iter().filter(|d| unproven(&key, d.modify_index)) {
                    match list.iter_mut().find(|n| n.id == d.id) {
                        Some(n) if n.modify_index < d.modify_index => *n = d.clone(),
                        Some(_) => {}
                        None => list.push(d.clone()),
                    }
                }
            }
            list.sort_by_key(|d| std::cmp::Reverse(d.create_index));
            list.truncate(DEPLOYMENTS_PER_JOB);
            let same = inner.deployments.get(&key).is_some_and(|old| *old == list)
                || (list.is_empty() && !inner.deployments.contains_key(&key));
            if same {
                continue;
            }
            changed.insert(key.clone());
            if list.is_empty() {
                inner.deployments.remove(&key);
            } else {
                inner.deployments.insert(key, list);
            }
        }
        inner.index = inner.index.max(index);
        changed.into_iter().collect()
    }

    /// Adds or updates a job unless the cache already holds a newer write of it; true when it changed.
    pub fn upsert_job(&mut self, mut job: LiveJob) -> bool {
        let mut inner = write(&self.inner);
        inner.index = inner.index.max(job.modify_index);
        if let Some(old) = inner.jobs.get(&job.key) {
            if old.modify_index > job.modify_index {
                return false;
            }
            if job.version.is_none() && old.job_modify_index == job.job_modify_index {
                job.version = old.version;
                job.counts = old.counts.clone();
            }
            if *old == job {
                return false;
            }
        }
        inner.jobs.insert(job.key.clone(), job);
        true
    }

    /// Removes a purged job; true when it was there.
    pub fn remove_job(&mut self, job: &JobKey) -> bool {
        let mut inner = write(&self.inner);
        inner.deployments.remove(job);
        inner.jobs.remove(job).is_some()
    }

    /// Adds or updates a deployment of `job` unless the cache holds a newer write of it; true when it changed.
    pub fn upsert_deployment(&mut self, job: &JobKey, d: LiveDeployment) -> bool {
        let mut inner = write(&self.inner);
        inner.index = inner.index.max(d.modify_index);
        let list = inner.deployments.entry(job.clone()).or_default();
        if let Some(old) = list.iter_mut().find(|o| o.id == d.id) {
            if *old == d || old.modify_index > d.modify_index {
                return false;
            }
            *old = d;
        } else {
            list.push(d);
        }
        list.sort_by_key(|d| std::cmp::Reverse(d.create_index));
        list.truncate(DEPLOYMENTS_PER_JOB);
        true
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
