//! Stateful in-memory models of Nomad and Consul KV for testing the reconcile stage in-process: real indexes,
//! EnforceIndex and CAS semantics, and faults injected as data. They model behaviour, not call sequences.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;

use super::ports::{KvPort, NomadPort};
use crate::consul::client::RequestError;
use crate::consul::{self, kv::KvPair};
use crate::live::{DeploymentStatus, JobKey, JobStatus, LiveDeployment, LiveJob, OWNER_META_KEY};
use crate::nomad::{
    self,
    types::{DeploymentUpdateResponse, RegisterResponse},
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A fault to answer the next matching call with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NomadFault {
    /// HTTP 500 with a server error (retryable).
    Unavailable,
    /// HTTP 500 with a validation error.
    Invalid(String),
    /// HTTP 403.
    Forbidden,
    /// HTTP 500 `job "<id>" is in nonexistent namespace "<ns>"`.
    NamespaceMissing,
}

#[derive(Debug, Default)]
struct NomadModel {
    index: u64,
    jobs: BTreeMap<JobKey, (Value, LiveJob)>,
    /// Every version of every job, oldest first: what a revert or an auto-revert goes back to.
    versions: BTreeMap<JobKey, Vec<Value>>,
    /// Deployments by ID, with their job (made by the test, as Nomad's scheduler would).
    deployments: BTreeMap<String, (JobKey, LiveDeployment)>,
    faults: VecDeque<NomadFault>,
    /// Every write, as `register ns/id`, `stop ns/id`, `purge ns/id`.
    writes: Vec<String>,
    /// How many job reads were answered.
    reads: usize,
}

/// An in-memory Nomad: jobs with versions and indexes, EnforceIndex, identical-register detection.
#[derive(Clone, Debug, Default)]
pub struct FakeNomad {
    model: Arc<Mutex<NomadModel>>,
}

impl FakeNomad {
    /// Makes the next calls fail, in order.
    pub fn fail_next(&self, fault: NomadFault) {
        lock(&self.model).faults.push_back(fault);
    }

    /// A register from someone else (a hand edit): a new version at a new index.
    pub fn hand_edit(&self, namespace: &str, job: Value) -> LiveJob {
        let mut m = lock(&self.model);
        let key = JobKey::new(namespace, job["ID"].as_str().unwrap_or_default());
        store(&mut m, key, job)
    }

    /// The job as stored.
    pub fn get(&self, namespace: &str, id: &str) -> Option<LiveJob> {
        lock(&self.model).jobs.get(&JobKey::new(namespace, id)).map(|(_, j)| j.clone())
    }

    /// Every write so far.
    pub fn writes(&self) -> Vec<String> {
        lock(&self.model).writes.clone()
    }

    /// How many job reads were answered so far.
    pub fn reads(&self) -> usize {
        lock(&self.model).reads
    }

    /// Nomad's scheduler made (or updated) a deployment of the job `namespace/job_id`.
    pub fn put_deployment(&self, namespace: &str, job_id: &str, d: LiveDeployment) {
        let mut m = lock(&self.model);
        m.index += 1;
        let d = LiveDeployment { modify_index: m.index, ..d };
        m.deployments.insert(d.id.clone(), (JobKey::new(namespace, job_id), d));
    }

    /// The deployment as stored.
    pub fn deployment(&self, id: &str) -> Option<LiveDeployment> {
        lock(&self.model).deployments.get(id).map(|(_, d)| d.clone())
    }

    /// Every deployment of the job `namespace/job_id`.
    pub fn deployments_of(&self, namespace: &str, job_id: &str) -> Vec<LiveDeployment> {
        let key = JobKey::new(namespace, job_id);
        lock(&self.model).deployments.values().filter(|(k, _)| *k == key).map(|(_, d)| d.clone()).collect()
    }

    /// A refusal of a deployment write, as Nomad words it (500, B13).
    fn refuse(endpoint: &'static str, target: &str, message: String) -> nomad::Error {
        nomad::Error::Rejected { endpoint, target: target.to_string(), code: 500, message }
    }

    /// The active deployment `id`, or Nomad's refusal (`deployment not found`, `can't <verb> terminal deployment`).
    fn active_deployment(
        m: &NomadModel,
        endpoint: &'static str,
        verb: &str,
        id: &str,
    ) -> Result<(JobKey, LiveDeployment), nomad::Error> {
        match m.deployments.get(id) {
            None => Err(Self::refuse(endpoint, id, "deployment not found".into())),
            Some((_, d)) if d.status.is_terminal() => {
                Err(Self::refuse(endpoint, id, format!("can't {verb} terminal deployment")))
            }
            Some((k, d)) => Ok((k.clone(), d.clone())),
        }
    }

    fn fault(&self, endpoint: &'static str, target: &str) -> Result<(), nomad::Error> {
        let Some(fault) = lock(&self.model).faults.pop_front() else { return Ok(()) };
        Err(match fault {
            NomadFault::Unavailable => nomad::Error::ServerError {
                endpoint,
                target: target.to_string(),
                code: 500,
                message: "No cluster leader".into(),
            },
            NomadFault::Invalid(message) => nomad::Error::JobInvalid { job_id: target.to_string(), message },
            NomadFault::NamespaceMissing => {
                nomad::Error::NamespaceNotFound { job_id: target.to_string(), namespace: "default".into() }
            }
            NomadFault::Forbidden => nomad::Error::PermissionDenied {
                endpoint,
                target: target.to_string(),
                message: "Permission denied".into(),
            },
        })
    }
}

fn store(m: &mut NomadModel, key: JobKey, job: Value) -> LiveJob {
    m.index += 1;
    m.versions.entry(key.clone()).or_default().push(job.clone());
    let version = m.jobs.get(&key).and_then(|(_, j)| j.version).map_or(0, |v| v + 1);
    let live = LiveJob {
        key: key.clone(),
        owner: job["Meta"][OWNER_META_KEY].as_str().map(str::to_string),
        version: Some(version),
        job_modify_index: m.index,
        modify_index: m.index,
        stop: job["Stop"].as_bool().unwrap_or(false),
        status: JobStatus::Running,
        counts: Some(
            job["TaskGroups"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|g| Some((g["Name"].as_str()?.to_string(), g["Count"].as_u64().unwrap_or(1))))
                .collect(),
        ),
    };
    m.jobs.insert(key, (job, live.clone()));
    live
}

impl NomadPort for FakeNomad {
    async fn job(&self, namespace: &str, id: &str) -> Result<Option<LiveJob>, nomad::Error> {
        self.fault("job_read", id)?;
        lock(&self.model).reads += 1;
        Ok(self.get(namespace, id))
    }

    async fn register(
        &self,
        namespace: &str,
        job: &Value,
        enforce_index: u64,
        preserve_counts: bool,
    ) -> Result<RegisterResponse, nomad::Error> {
        let id = job["ID"].as_str().unwrap_or_default().to_string();
        self.fault("job_register", &id)?;
        let mut m = lock(&self.model);
        let key = JobKey::new(namespace, &id);
        let current = m.jobs.get(&key).map(|(spec, j)| (spec.clone(), j.clone()));
        let conflict = |message: String| nomad::Error::EnforceIndexConflict { job_id: id.clone(), message };
        match &current {
            None if enforce_index != 0 => {
                return Err(conflict(format!("Enforcing job modify index {enforce_index}: job does not exist")));
            }
            Some(_) if enforce_index == 0 => {
                return Err(conflict("Enforcing job modify index 0: job already exists".into()));
            }
            Some((_, j)) if j.job_modify_index != enforce_index => {
                return Err(conflict(format!(
                    "Enforcing job modify index {enforce_index}: job exists with conflicting job modify index: {}",
                    j.job_modify_index
                )));
            }
            _ => {}
        }
        m.writes.push(format!("register {key}"));
        let mut job = job.clone();
        if let (true, Some((old, _))) = (preserve_counts, &current) {
            // PreserveCounts: every group that exists in the old job keeps its count (B4).
            for g in job["TaskGroups"].as_array_mut().into_iter().flatten() {
                let old_group = old["TaskGroups"].as_array().into_iter().flatten().find(|o| o["Name"] == g["Name"]);
                if let Some(count) = old_group.map(|o| o["Count"].clone()) {
                    g["Count"] = count;
                }
            }
        }
        if let Some((spec, j)) = current.filter(|(spec, _)| *spec == job) {
            // Identical: an evaluation only, and the reply's JobModifyIndex is the job's ModifyIndex (B4).
            m.index += 1;
            let _ = spec;
            return Ok(RegisterResponse { job_modify_index: j.modify_index, index: m.index, ..Default::default() });
        }
        let live = store(&mut m, key, job);
        Ok(RegisterResponse {
            job_modify_index: live.job_modify_index,
            index: live.job_modify_index,
            ..Default::default()
        })
    }

    async fn scale(
        &self,
        namespace: &str,
        job_id: &str,
        group: &str,
        count: u64,
        message: &str,
        enforce_index: u64,
    ) -> Result<RegisterResponse, nomad::Error> {
        self.fault("job_scale", job_id)?;
        let mut m = lock(&self.model);
        let key = JobKey::new(namespace, job_id);
        let Some((mut spec, live)) = m.jobs.get(&key).cloned() else {
            return Err(nomad::Error::NotFound {
                endpoint: "job_scale",
                target: job_id.to_string(),
                message: format!("job {job_id:?} not found"),
            });
        };
        if live.job_modify_index != enforce_index {
            return Err(nomad::Error::EnforceIndexConflict {
                job_id: job_id.to_string(),
                message: format!(
                    "Enforcing job modify index {enforce_index}: job exists with conflicting job modify index: {}",
                    live.job_modify_index
                ),
            });
        }
        m.writes.push(format!("scale {key} {group}={count} ({message})"));
        for g in spec["TaskGroups"].as_array_mut().into_iter().flatten() {
            if g["Name"] == group {
                g["Count"] = Value::from(count);
            }
        }
        // A scale makes a new version even for the same count; the scaling event comes last (B10).
        let live = store(&mut m, key, spec);
        m.index += 1;
        Ok(RegisterResponse { job_modify_index: live.job_modify_index, index: m.index, ..Default::default() })
    }

    async fn deregister(&self, namespace: &str, id: &str, purge: bool) -> Result<(), nomad::Error> {
        self.fault("job_deregister", id)?;
        let mut m = lock(&self.model);
        let key = JobKey::new(namespace, id);
        m.writes.push(format!("{} {key}", if purge { "purge" } else { "stop" }));
        if purge {
            m.jobs.remove(&key);
            m.versions.remove(&key);
        } else if let Some((mut spec, _)) = m.jobs.get(&key).cloned() {
            spec["Stop"] = Value::Bool(true);
            store(&mut m, key, spec);
        }
        Ok(())
    }

    async fn promote(&self, _namespace: &str, id: &str) -> Result<DeploymentUpdateResponse, nomad::Error> {
        self.fault("deployment_promote", id)?;
        let mut m = lock(&self.model);
        let (_, d) = Self::active_deployment(&m, "deployment_promote", "promote", id)?;
        let short: Vec<String> = d
            .groups
            .iter()
            .filter(|(_, g)| g.requires_promotion() && !g.canaries_healthy())
            .map(|(name, g)| {
                format!("Task group {name:?} has {}/{} healthy allocations", g.healthy_allocs, g.desired_canaries)
            })
            .collect();
        if !short.is_empty() {
            let message = format!("{} error occurred:\n\t* {}\n\n", short.len(), short.join("\n\t* "));
            return Err(Self::refuse("deployment_promote", id, message));
        }
        m.writes.push(format!("promote {id}"));
        m.index += 1;
        let index = m.index;
        if let Some((_, d)) = m.deployments.get_mut(id) {
            d.groups.values_mut().for_each(|g| g.promoted = true);
            d.description = "Deployment is running".into();
            d.modify_index = index;
        }
        Ok(DeploymentUpdateResponse { deployment_modify_index: index, index, ..Default::default() })
    }

    async fn fail_deployment(&self, _namespace: &str, id: &str) -> Result<DeploymentUpdateResponse, nomad::Error> {
        self.fault("deployment_fail", id)?;
        let mut m = lock(&self.model);
        let (key, d) = Self::active_deployment(&m, "deployment_fail", "fail", id)?;
        m.writes.push(format!("fail {id}"));
        // Auto-revert (rendered canary rollouts carry AutoRevert): the newest version older than the failed one
        // whose deployment succeeded, registered again as a new version.
        let stable = m
            .deployments
            .values()
            .filter(|(k, s)| *k == key && s.status == DeploymentStatus::Successful && s.job_version < d.job_version)
            .map(|(_, s)| s.job_version)
            .max();
        let spec = stable.and_then(|v| m.versions.get(&key).and_then(|vs| vs.get(v as usize)).cloned());
        let mut description = "Deployment marked as failed".to_string();
        if let (Some(v), Some(_)) = (stable, &spec) {
            description.push_str(&format!("{}{v}", crate::live::ROLLBACK_DESCRIPTION));
        }
        m.index += 1;
        let index = m.index;
        if let Some((_, d)) = m.deployments.get_mut(id) {
            d.status = DeploymentStatus::Failed;
            d.description = description;
            d.modify_index = index;
        }
        if let Some(spec) = spec {
            store(&mut m, key, spec);
        }
        Ok(DeploymentUpdateResponse {
            deployment_modify_index: index,
            index,
            reverted_job_version: stable,
            ..Default::default()
        })
    }

    async fn pause_deployment(
        &self,
        _namespace: &str,
        id: &str,
        pause: bool,
    ) -> Result<DeploymentUpdateResponse, nomad::Error> {
        self.fault("deployment_pause", id)?;
        let mut m = lock(&self.model);
        Self::active_deployment(&m, "deployment_pause", if pause { "pause" } else { "resume" }, id)?;
        m.writes.push(format!("{} {id}", if pause { "pause" } else { "resume" }));
        m.index += 1;
        let index = m.index;
        if let Some((_, d)) = m.deployments.get_mut(id) {
            d.status = if pause { DeploymentStatus::Paused } else { DeploymentStatus::Running };
            d.modify_index = index;
        }
        Ok(DeploymentUpdateResponse { deployment_modify_index: index, index, ..Default::default() })
    }

    async fn revert(
        &self,
        namespace: &str,
        job_id: &str,
        version: u64,
        enforce_prior_version: u64,
    ) -> Result<RegisterResponse, nomad::Error> {
        self.fault("job_revert", job_id)?;
        let mut m = lock(&self.model);
        let key = JobKey::new(namespace, job_id);
        let refuse = |message: String| Self::refuse("job_revert", job_id, message);
        let Some((_, live)) = m.jobs.get(&key).cloned() else {
            return Err(refuse(format!("job {job_id:?} not found")));
        };
        let current = live.version.unwrap_or(0);
        if current != enforce_prior_version {
            return Err(refuse(format!(
                "Current job has version {current}; enforcing version {enforce_prior_version}"
            )));
        }
        if current == version {
            return Err(refuse("can't revert to current version".into()));
        }
        let Some(spec) = m.versions.get(&key).and_then(|vs| vs.get(version as usize)).cloned() else {
            return Err(refuse(format!("job {job_id:?} in namespace {namespace:?} at version {version} not found")));
        };
        m.writes.push(format!("revert {key} to {version}"));
        let live = store(&mut m, key, spec);
        Ok(RegisterResponse {
            job_modify_index: live.job_modify_index,
            index: live.job_modify_index,
            ..Default::default()
        })
    }
}

/// A fault for the fake KV's next call on a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvFault {
    /// HTTP 500.
    Unavailable,
    /// HTTP 403.
    Forbidden,
}

#[derive(Debug, Default)]
struct KvModel {
    index: u64,
    keys: BTreeMap<String, KvPair>,
    /// Keys the token may not read or write.
    denied: Vec<String>,
    faults: VecDeque<KvFault>,
    /// Every write, as `cas key` or `delete key`.
    writes: Vec<String>,
}

/// An in-memory Consul KV with ModifyIndex, CAS and ACL denials per key.
#[derive(Clone, Debug, Default)]
pub struct FakeKv {
    model: Arc<Mutex<KvModel>>,
}

impl FakeKv {
    /// Writes a key (as another client would).
    pub fn put(&self, key: &str, value: &[u8]) -> u64 {
        let mut m = lock(&self.model);
        m.index += 1;
        let index = m.index;
        let create_index = m.keys.get(key).map_or(index, |p| p.create_index);
        m.keys.insert(
            key.to_string(),
            KvPair {
                key: key.to_string(),
                value: value.to_vec(),
                flags: 0,
                session: None,
                lock_index: 0,
                create_index,
                modify_index: index,
            },
        );
        index
    }

    /// Deletes a key (as another client would).
    pub fn remove(&self, key: &str) {
        lock(&self.model).keys.remove(key);
    }

    /// The key as stored.
    pub fn read(&self, key: &str) -> Option<KvPair> {
        lock(&self.model).keys.get(key).cloned()
    }

    /// The token may no longer read or write `key`.
    pub fn deny(&self, key: &str) {
        lock(&self.model).denied.push(key.to_string());
    }

    /// Makes the next calls fail, in order.
    pub fn fail_next(&self, fault: KvFault) {
        lock(&self.model).faults.push_back(fault);
    }

    /// Every write so far.
    pub fn writes(&self) -> Vec<String> {
        lock(&self.model).writes.clone()
    }

    fn check(&self, key: &str) -> Result<(), RequestError> {
        let mut m = lock(&self.model);
        let denied = |m: &KvModel| m.denied.iter().any(|d| d == key);
        let status = |code: u16, message: &str| RequestError::Status { code, message: message.to_string() };
        match m.faults.pop_front() {
            Some(KvFault::Unavailable) => Err(status(500, "No cluster leader")),
            Some(KvFault::Forbidden) => Err(status(403, "Permission denied")),
            None if denied(&m) => Err(status(403, "Permission denied")),
            None => Ok(()),
        }
    }
}

impl KvPort for FakeKv {
    async fn get(&self, key: &str) -> Result<Option<KvPair>, consul::Error> {
        self.check(key).map_err(|source| consul::Error::GetFailed { key: key.to_string(), source })?;
        Ok(self.read(key))
    }

    async fn cas(&self, key: &str, value: &[u8], index: u64) -> Result<Option<u64>, consul::Error> {
        self.check(key).map_err(|source| consul::Error::PutFailed { key: key.to_string(), source })?;
        let current = self.read(key).map_or(0, |p| p.modify_index);
        if current != index {
            return Ok(None);
        }
        lock(&self.model).writes.push(format!("cas {key}"));
        Ok(Some(self.put(key, value)))
    }

    async fn delete_cas(&self, key: &str, index: u64) -> Result<bool, consul::Error> {
        self.check(key).map_err(|source| consul::Error::DeleteFailed { key: key.to_string(), source })?;
        match self.read(key) {
            Some(p) if p.modify_index != index => Ok(false),
            _ => {
                let mut m = lock(&self.model);
                m.writes.push(format!("delete {key}"));
                m.keys.remove(key);
                Ok(true)
            }
        }
    }
}

/// An in-memory analysis store: what the analysis stage would have measured, set by the test.
#[derive(Clone, Debug, Default)]
pub struct FakeRuns {
    runs: Arc<Mutex<BTreeMap<crate::app::AppKey, BTreeMap<crate::rollout::RunId, crate::rollout::AnalysisRunStatus>>>>,
}

impl FakeRuns {
    /// The analysis stage folded `run` for `app`.
    pub fn set(&self, app: &crate::app::AppKey, run: crate::rollout::AnalysisRunStatus) {
        lock(&self.runs).entry(app.clone()).or_default().insert(run.id.clone(), run);
    }
}

impl super::ports::AnalysisSource for FakeRuns {
    fn runs(&self, key: &crate::app::AppKey) -> BTreeMap<crate::rollout::RunId, crate::rollout::AnalysisRunStatus> {
        lock(&self.runs).get(key).cloned().unwrap_or_default()
    }
}

/// An in-memory controls store: the control a test wrote for each app.
#[derive(Clone, Debug, Default)]
pub struct FakeControls {
    controls: Arc<Mutex<BTreeMap<crate::app::AppKey, Arc<crate::rollout::ControlEntry>>>>,
}

impl FakeControls {
    /// Writes a control for `app` (as `drover promote` would), at `modify_index`.
    pub fn put(&self, app: &crate::app::AppKey, control: crate::rollout::Control, modify_index: u64) {
        let entry = Ok(crate::rollout::StoredControl { control, modify_index });
        lock(&self.controls).insert(app.clone(), Arc::new(entry));
    }
}

impl super::ports::ControlSource for FakeControls {
    fn control(&self, key: &crate::app::AppKey) -> Option<Arc<crate::rollout::ControlEntry>> {
        lock(&self.controls).get(key).cloned()
    }
}

/// A fixed wall clock for stage tests: 2027-01-15T08:00:00Z.
pub fn fixed_clock() -> std::time::SystemTime {
    std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000)
}

/// A reconcile stage over fresh stores and these fakes, at [`fixed_clock`], and the handles a test drives it with.
/// Tests add what they exercise (`with_wake`, `with_notifier`, `with_leadership`, …) to `stage`.
pub struct TestStage {
    /// The stage.
    pub stage: super::Stage<FakeNomad, FakeKv>,
    /// Its Nomad.
    pub nomad: FakeNomad,
    /// Its Consul KV.
    pub kv: FakeKv,
    /// The records store's writer (the records watch's part).
    pub records: crate::store::RecordsWriter,
    /// The live cache's writer (the Nomad watch's part).
    pub live: crate::store::LiveWriter,
    /// A reader of the statuses the stage writes.
    pub statuses: crate::store::Statuses,
}

impl TestStage {
    /// A stage for installation `drover` reporting to `metrics`.
    pub fn new(metrics: Arc<crate::metrics::Metrics>) -> TestStage {
        let (records_writer, records) = crate::store::records("drover");
        let (status_writer, statuses) = crate::store::statuses("drover");
        let (live_writer, live) = crate::store::live_cache();
        let (nomad, kv) = (FakeNomad::default(), FakeKv::default());
        let stage = super::Stage::new(
            "drover",
            nomad.clone(),
            kv.clone(),
            records,
            live,
            (status_writer, statuses.clone()),
            metrics,
            fixed_clock,
        );
        TestStage { stage, nomad, kv, records: records_writer, live: live_writer, statuses }
    }
}
