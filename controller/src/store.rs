//! The controller's three in-memory stores, shared by cheap clones:
//! - [`DesiredStore`]: app records from Consul KV, parsed and validated once per generation. Written only by the
//!   Consul watch task, which applies whole-prefix snapshots.
//! - [`StatusCache`]: the status records. Loaded once at start, then kept by the workers that write them (a key is
//!   never reconciled twice at once, so each entry has one writer at a time).
//! - [`LiveCache`]: Nomad jobs and their latest deployments, fed by one list plus the event stream. Writes are
//!   monotonic by index, so the reconciler's own refreshes after a write can never move an entry backwards.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::app::{self, AppKey};
use crate::consul::kv::KvPair;
use crate::live::{Live, LiveDeployment, LiveJob};
use crate::reconcile::{Record, ValidRecord};
use crate::status::{AppStatus, ObservedDeletionPolicy};

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// A record as last seen in Consul.
#[derive(Debug)]
pub struct DesiredEntry {
    /// Consul `ModifyIndex` of the record: its generation.
    pub generation: u64,
    /// The parsed record, or every reason it is invalid.
    pub record: Record,
}

/// A change to one key found in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The app.
    pub key: AppKey,
    /// The new generation; `None` when the record was deleted.
    pub generation: Option<u64>,
}

/// App records by key.
#[derive(Clone, Default, Debug)]
pub struct DesiredStore {
    inner: Arc<RwLock<DesiredInner>>,
}

#[derive(Default, Debug)]
struct DesiredInner {
    by_key: HashMap<AppKey, Arc<DesiredEntry>>,
    /// (namespace, job ID) → the record rendering to it, to route Nomad events to apps.
    by_job: HashMap<(String, String), AppKey>,
}

impl DesiredStore {
    /// The record at `key`.
    pub fn get(&self, key: &AppKey) -> Option<Arc<DesiredEntry>> {
        read(&self.inner).by_key.get(key).cloned()
    }

    /// Every key with a record.
    pub fn keys(&self) -> Vec<AppKey> {
        read(&self.inner).by_key.keys().cloned().collect()
    }

    /// How many records are held.
    pub fn len(&self) -> usize {
        read(&self.inner).by_key.len()
    }

    /// True when no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The app whose record renders to this job.
    pub fn key_for_job(&self, namespace: &str, job_id: &str) -> Option<AppKey> {
        read(&self.inner).by_job.get(&(namespace.to_string(), job_id.to_string())).cloned()
    }

    /// Applies a snapshot of the apps prefix: parses the records whose `ModifyIndex` changed (outside the lock),
    /// and returns what changed. Keys that are not `<prefix>/apps/<ns>/<name>` are ignored. Only a `complete`
    /// snapshot drops the records it lacks: one that ACLs filtered may lack records that still exist, and taking
    /// those for deletions would stop their jobs.
    pub fn apply_snapshot(&self, prefix: &str, entries: &[KvPair], complete: bool) -> Vec<Change> {
        let mut seen = HashSet::with_capacity(entries.len());
        let mut to_load = Vec::new();
        {
            let inner = read(&self.inner);
            for e in entries {
                let Some(key) = AppKey::from_kv_key(prefix, &e.key) else { continue };
                if inner.by_key.get(&key).is_none_or(|d| d.generation != e.modify_index) {
                    to_load.push((key.clone(), e));
                }
                seen.insert(key);
            }
        }
        let loaded: Vec<(AppKey, DesiredEntry)> =
            to_load.into_iter().map(|(key, e)| (key.clone(), load_entry(&key, e))).collect();
        let mut inner = write(&self.inner);
        let gone: Vec<AppKey> =
            if complete { inner.by_key.keys().filter(|k| !seen.contains(*k)).cloned().collect() } else { Vec::new() };
        let mut changes = Vec::with_capacity(loaded.len() + gone.len());
        for key in gone {
            if let Some(old) = inner.by_key.remove(&key) {
                remove_job_index(&mut inner.by_job, &key, &old);
            }
            changes.push(Change { key, generation: None });
        }
        for (key, entry) in loaded {
            let generation = entry.generation;
            if let Some(old) = inner.by_key.get(&key).cloned() {
                remove_job_index(&mut inner.by_job, &key, &old);
            }
            let job = match &entry.record {
                Record::Valid(r) => Some((key.namespace.clone(), r.job_id.clone())),
                _ => None,
            };
            let job = job.unwrap_or_else(|| (key.namespace.clone(), key.name.clone()));
            inner.by_job.insert(job, key.clone());
            inner.by_key.insert(key.clone(), Arc::new(entry));
            changes.push(Change { key, generation: Some(generation) });
        }
        changes
    }
}

fn remove_job_index(by_job: &mut HashMap<(String, String), AppKey>, key: &AppKey, old: &DesiredEntry) {
    let job_id = match &old.record {
        Record::Valid(r) => r.job_id.clone(),
        _ => key.name.clone(),
    };
    let id = (key.namespace.clone(), job_id);
    if by_job.get(&id) == Some(key) {
        by_job.remove(&id);
    }
}

/// Parses one record; an invalid one keeps every field error.
fn load_entry(key: &AppKey, e: &KvPair) -> DesiredEntry {
    let record = match app::load(key, &e.value) {
        Ok(d) => Record::Valid(Arc::new(ValidRecord {
            generation: e.modify_index,
            job_id: d.job_id,
            hash: d.hash,
            job: Arc::new(d.job),
            suspend: d.app.spec.suspend,
            adopt: d.app.spec.adopt,
            deletion_policy: match d.app.spec.deletion_policy {
                app::DeletionPolicy::Stop => ObservedDeletionPolicy::Stop,
                app::DeletionPolicy::Purge => ObservedDeletionPolicy::Purge,
                app::DeletionPolicy::Orphan => ObservedDeletionPolicy::Orphan,
            },
            drift_policy: d.app.spec.drift_policy,
        })),
        Err(errors) => Record::Invalid { generation: e.modify_index, errors: Arc::new(errors) },
    };
    DesiredEntry { generation: e.modify_index, record }
}

/// A status record as last read or written.
#[derive(Clone, Debug)]
pub struct StatusEntry {
    /// The parsed status; `None` when the stored bytes are not a status (they are then overwritten).
    pub status: Option<Arc<AppStatus>>,
    /// Consul `ModifyIndex`, the CAS guard for the next write.
    pub modify_index: u64,
}

/// Status records by key.
#[derive(Clone, Default, Debug)]
pub struct StatusCache {
    inner: Arc<RwLock<HashMap<AppKey, StatusEntry>>>,
}

impl StatusCache {
    /// Replaces the content with a listing of the status prefix.
    pub fn load(&self, prefix: &str, entries: &[KvPair]) {
        let mut map = HashMap::with_capacity(entries.len());
        for e in entries {
            let Some(key) = key_from_status_kv_key(prefix, &e.key) else { continue };
            map.insert(key, StatusEntry::from_pair(e));
        }
        *write(&self.inner) = map;
    }

    /// The status at `key`.
    pub fn get(&self, key: &AppKey) -> Option<StatusEntry> {
        read(&self.inner).get(key).cloned()
    }

    /// Records a status written (or read) at `modify_index`.
    pub fn set(&self, key: AppKey, status: AppStatus, modify_index: u64) {
        write(&self.inner).insert(key, StatusEntry { status: Some(Arc::new(status)), modify_index });
    }

    /// Records what a fresh read of one status key found.
    pub fn set_read(&self, key: AppKey, pair: Option<&KvPair>) {
        let mut inner = write(&self.inner);
        match pair {
            Some(p) => inner.insert(key, StatusEntry::from_pair(p)),
            None => inner.remove(&key),
        };
    }

    /// Forgets a status (after deleting it).
    pub fn remove(&self, key: &AppKey) {
        write(&self.inner).remove(key);
    }

    /// Every key with a status.
    pub fn keys(&self) -> Vec<AppKey> {
        read(&self.inner).keys().cloned().collect()
    }

    /// How many apps are in each phase (an unreadable status counts as `Pending`), without copying any status.
    pub fn count_by_phase(&self) -> HashMap<&'static str, usize> {
        let mut counts = HashMap::new();
        for entry in read(&self.inner).values() {
            let phase = entry.status.as_ref().map_or(crate::status::Phase::Pending, |s| s.phase);
            *counts.entry(phase.as_str()).or_default() += 1;
        }
        counts
    }
}

/// The app a status key belongs to: `<prefix>/status/<ns>/<name>`, with the same rules as record keys.
pub fn key_from_status_kv_key(prefix: &str, key: &str) -> Option<AppKey> {
    let rest = key.strip_prefix(prefix)?.strip_prefix("/status/")?;
    AppKey::from_kv_key(prefix, &format!("{prefix}/apps/{rest}"))
}

impl StatusEntry {
    fn from_pair(p: &KvPair) -> StatusEntry {
        StatusEntry {
            status: serde_json::from_slice::<AppStatus>(&p.value).ok().map(Arc::new),
            modify_index: p.modify_index,
        }
    }
}

/// How many deployments per job the live cache keeps (newest first).
pub const DEPLOYMENTS_PER_JOB: usize = 4;

/// Nomad jobs and deployments by (namespace, job ID).
#[derive(Clone, Default, Debug)]
pub struct LiveCache {
    inner: Arc<RwLock<LiveInner>>,
}

#[derive(Default, Debug)]
struct LiveInner {
    jobs: HashMap<(String, String), LiveJob>,
    deployments: HashMap<(String, String), Vec<LiveDeployment>>,
}

impl LiveCache {
    /// The live side of the job `namespace/job_id`.
    pub fn live_for(&self, namespace: &str, job_id: &str) -> Live {
        let inner = read(&self.inner);
        let id = (namespace.to_string(), job_id.to_string());
        Live {
            job: inner.jobs.get(&id).cloned(),
            deployments: inner.deployments.get(&id).cloned().unwrap_or_default(),
            previous: None,
        }
    }

    /// Replaces everything with a fresh listing; returns the jobs whose entry changed, appeared or vanished.
    pub fn replace_all(
        &self,
        jobs: Vec<LiveJob>,
        deployments: Vec<(String, String, LiveDeployment)>,
    ) -> Vec<(String, String)> {
        let mut new_deps: HashMap<(String, String), Vec<LiveDeployment>> = HashMap::new();
        for (ns, job_id, d) in deployments {
            new_deps.entry((ns, job_id)).or_default().push(d);
        }
        for list in new_deps.values_mut() {
            list.sort_by_key(|d| std::cmp::Reverse(d.create_index));
            list.truncate(DEPLOYMENTS_PER_JOB);
        }
        // One write lock for the whole swap: no event applied in between can be lost or reordered.
        let mut inner = write(&self.inner);
        let mut new_jobs: HashMap<(String, String), LiveJob> = HashMap::with_capacity(jobs.len());
        for mut j in jobs {
            let id = (j.namespace.clone(), j.id.clone());
            // List stubs carry no version: keep the one already known for the same spec.
            if j.version.is_none()
                && let Some(old) = inner.jobs.get(&id).filter(|o| o.job_modify_index == j.job_modify_index)
            {
                j.version = old.version;
            }
            new_jobs.insert(id, j);
        }
        let mut changed = Vec::new();
        for (id, j) in &new_jobs {
            if inner.jobs.get(id) != Some(j) || inner.deployments.get(id) != new_deps.get(id) {
                changed.push(id.clone());
            }
        }
        for id in inner.jobs.keys() {
            if !new_jobs.contains_key(id) {
                changed.push(id.clone());
            }
        }
        for id in new_deps.keys() {
            if !new_jobs.contains_key(id) && inner.deployments.get(id) != new_deps.get(id) {
                changed.push(id.clone());
            }
        }
        inner.jobs = new_jobs;
        inner.deployments = new_deps;
        changed
    }

    /// Adds or updates a job unless the cache already holds a newer write of it; true when it changed.
    pub fn upsert_job(&self, mut job: LiveJob) -> bool {
        let id = (job.namespace.clone(), job.id.clone());
        let mut inner = write(&self.inner);
        if let Some(old) = inner.jobs.get(&id) {
            if old.modify_index > job.modify_index {
                return false;
            }
            if job.version.is_none() && old.job_modify_index == job.job_modify_index {
                job.version = old.version;
            }
            if *old == job {
                return false;
            }
        }
        inner.jobs.insert(id, job);
        true
    }

    /// Removes a purged job; true when it was there.
    pub fn remove_job(&self, namespace: &str, job_id: &str) -> bool {
        let id = (namespace.to_string(), job_id.to_string());
        let mut inner = write(&self.inner);
        inner.deployments.remove(&id);
        inner.jobs.remove(&id).is_some()
    }

    /// Adds or updates a deployment of `namespace/job_id`; true when it changed.
    pub fn upsert_deployment(&self, namespace: &str, job_id: &str, d: LiveDeployment) -> bool {
        let id = (namespace.to_string(), job_id.to_string());
        let mut inner = write(&self.inner);
        let list = inner.deployments.entry(id).or_default();
        if let Some(old) = list.iter_mut().find(|o| o.id == d.id) {
            if *old == d {
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

    /// How many jobs are cached.
    pub fn job_count(&self) -> usize {
        read(&self.inner).jobs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(key: &str, index: u64, value: &str) -> KvPair {
        KvPair {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            flags: 0,
            session: None,
            lock_index: 0,
            create_index: index,
            modify_index: index,
        }
    }

    const WEB: &str = "apiVersion: drover.io/v1alpha1\nkind: App\nmetadata: {name: web, namespace: default}\nspec:\n  template: {image: 'nginx:1', count: 1}\n";

    #[test]
    fn apply_snapshot_should_report_new_changed_and_deleted_records() {
        let store = DesiredStore::default();
        let changes = store.apply_snapshot("drover", &[pair("drover/apps/default/web", 5, WEB)], true);
        assert_eq!(changes, vec![Change { key: AppKey::new("default", "web"), generation: Some(5) }]);
        assert!(matches!(store.get(&AppKey::new("default", "web")).map(|e| e.record.clone()), Some(Record::Valid(_))));
        assert_eq!(store.key_for_job("default", "web"), Some(AppKey::new("default", "web")));
        // Same index: nothing changed.
        assert!(store.apply_snapshot("drover", &[pair("drover/apps/default/web", 5, WEB)], true).is_empty());
        // A non-app key is ignored; a bad record is Invalid, not an error.
        let changes = store.apply_snapshot(
            "drover",
            &[pair("drover/apps/default/web", 6, "{not yaml"), pair("drover/other", 7, "x")],
            true,
        );
        assert_eq!(changes.len(), 1);
        assert!(matches!(
            store.get(&AppKey::new("default", "web")).map(|e| e.record.clone()),
            Some(Record::Invalid { .. })
        ));
        // A snapshot filtered by ACLs deletes nothing.
        assert!(store.apply_snapshot("drover", &[], false).is_empty());
        assert!(!store.is_empty());
        // Gone from a complete snapshot: deleted.
        let changes = store.apply_snapshot("drover", &[], true);
        assert_eq!(changes, vec![Change { key: AppKey::new("default", "web"), generation: None }]);
        assert!(store.is_empty());
    }

    fn live_job(jmi: u64, modify: u64) -> LiveJob {
        LiveJob {
            namespace: "default".into(),
            id: "web".into(),
            owner: None,
            version: None,
            job_modify_index: jmi,
            modify_index: modify,
            stop: false,
            status: "running".into(),
        }
    }

    #[test]
    fn upsert_job_should_never_go_backwards() {
        let cache = LiveCache::default();
        assert!(cache.upsert_job(LiveJob { version: Some(2), ..live_job(10, 12) }));
        assert!(!cache.upsert_job(live_job(9, 9)), "an older write must not replace a newer one");
        // A stub without version keeps the known version of the same spec.
        assert!(cache.upsert_job(live_job(10, 13)));
        assert_eq!(cache.live_for("default", "web").job.and_then(|j| j.version), Some(2));
    }

    #[test]
    fn replace_all_should_report_changed_and_vanished_jobs() {
        let cache = LiveCache::default();
        cache.upsert_job(live_job(10, 10));
        let changed = cache.replace_all(vec![], vec![]);
        assert_eq!(changed, vec![("default".to_string(), "web".to_string())]);
        assert!(cache.live_for("default", "web").job.is_none());
    }
}
