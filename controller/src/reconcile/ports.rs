//! What the reconcile stage needs of Nomad and of Consul KV, as two narrow traits: the real clients implement them,
//! and [`super::fake`] has stateful in-memory models for tests (STYLE item 9).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use crate::consul::{self, kv::KvPair};
use crate::live::LiveJob;
use crate::nomad::{
    self,
    types::{DeploymentUpdateResponse, RegisterResponse},
};
use crate::rollout::{AnalysisRunStatus, ControlEntry, RunId};

/// The Nomad calls a reconcile makes: a fresh read of one job (before a stop, which has no EnforceIndex), a
/// register with EnforceIndex, a stop or purge, and the rollout writes (promote, fail or pause a deployment, revert
/// a job).
pub trait NomadPort: Send + Sync + 'static {
    /// The job `namespace/id`, or `None` when it does not exist.
    fn job(&self, namespace: &str, id: &str) -> impl Future<Output = Result<Option<LiveJob>, nomad::Error>> + Send;

    /// Registers `job` only if the stored `JobModifyIndex` is `enforce_index` (0: only if the job does not exist);
    /// `preserve_counts` keeps the live group counts (autoscaling owns them, B4).
    fn register(
        &self,
        namespace: &str,
        job: &serde_json::Value,
        enforce_index: u64,
        preserve_counts: bool,
    ) -> impl Future<Output = Result<RegisterResponse, nomad::Error>> + Send;

    /// Sets one group's count with a message saying why, only if the job's `JobModifyIndex` is `enforce_index`
    /// (B10: a new job version).
    fn scale(
        &self,
        namespace: &str,
        job_id: &str,
        group: &str,
        count: u64,
        message: &str,
        enforce_index: u64,
    ) -> impl Future<Output = Result<RegisterResponse, nomad::Error>> + Send;

    /// Stops the job, or purges it.
    fn deregister(
        &self,
        namespace: &str,
        id: &str,
        purge: bool,
    ) -> impl Future<Output = Result<(), nomad::Error>> + Send;

    /// Promotes every group of deployment `id` (`All: true`, B13).
    fn promote(
        &self,
        namespace: &str,
        id: &str,
    ) -> impl Future<Output = Result<DeploymentUpdateResponse, nomad::Error>> + Send;

    /// Fails deployment `id`; Nomad auto-reverts groups with `AutoRevert` (B13).
    fn fail_deployment(
        &self,
        namespace: &str,
        id: &str,
    ) -> impl Future<Output = Result<DeploymentUpdateResponse, nomad::Error>> + Send;

    /// Pauses (`pause`) or resumes deployment `id` (B13).
    fn pause_deployment(
        &self,
        namespace: &str,
        id: &str,
        pause: bool,
    ) -> impl Future<Output = Result<DeploymentUpdateResponse, nomad::Error>> + Send;

    /// Reverts job `job_id` to `version`, only while it is at `enforce_prior_version` (B9).
    fn revert(
        &self,
        namespace: &str,
        job_id: &str,
        version: u64,
        enforce_prior_version: u64,
    ) -> impl Future<Output = Result<RegisterResponse, nomad::Error>> + Send;
}

/// The Consul KV calls a reconcile makes: a single-key read (to prove a record gone), a CAS write and a CAS delete
/// of the status.
pub trait KvPort: Send + Sync + 'static {
    /// The key, or `None` on 404.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<KvPair>, consul::Error>> + Send;

    /// Writes `value` only if the key's `ModifyIndex` is `index` (0: only if absent); the new index, or `None`
    /// when the CAS lost.
    fn cas(
        &self,
        key: &str,
        value: &[u8],
        index: u64,
    ) -> impl Future<Output = Result<Option<u64>, consul::Error>> + Send;

    /// Deletes the key only if its `ModifyIndex` is `index`; false when the CAS lost.
    fn delete_cas(&self, key: &str, index: u64) -> impl Future<Output = Result<bool, consul::Error>> + Send;
}

impl NomadPort for nomad::Client {
    async fn job(&self, namespace: &str, id: &str) -> Result<Option<LiveJob>, nomad::Error> {
        Ok(nomad::Client::job(self, namespace, id).await?.as_ref().map(LiveJob::from))
    }

    async fn register(
        &self,
        namespace: &str,
        job: &serde_json::Value,
        enforce_index: u64,
        preserve_counts: bool,
    ) -> Result<RegisterResponse, nomad::Error> {
        nomad::Client::register(self, namespace, job, Some(enforce_index), preserve_counts).await
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
        nomad::Client::scale_guarded(self, namespace, job_id, group, count, message, Some(enforce_index)).await
    }

    async fn deregister(&self, namespace: &str, id: &str, purge: bool) -> Result<(), nomad::Error> {
        nomad::Client::deregister(self, namespace, id, purge).await.map(|_| ())
    }

    async fn promote(&self, namespace: &str, id: &str) -> Result<DeploymentUpdateResponse, nomad::Error> {
        nomad::Client::promote(self, namespace, id, None).await
    }

    async fn fail_deployment(&self, namespace: &str, id: &str) -> Result<DeploymentUpdateResponse, nomad::Error> {
        nomad::Client::fail(self, namespace, id).await
    }

    async fn pause_deployment(
        &self,
        namespace: &str,
        id: &str,
        pause: bool,
    ) -> Result<DeploymentUpdateResponse, nomad::Error> {
        nomad::Client::pause(self, namespace, id, pause).await
    }

    async fn revert(
        &self,
        namespace: &str,
        job_id: &str,
        version: u64,
        enforce_prior_version: u64,
    ) -> Result<RegisterResponse, nomad::Error> {
        nomad::Client::revert(self, namespace, job_id, version, Some(enforce_prior_version)).await
    }
}

impl KvPort for consul::Client {
    async fn get(&self, key: &str) -> Result<Option<KvPair>, consul::Error> {
        consul::Client::get(self, key).await
    }

    async fn cas(&self, key: &str, value: &[u8], index: u64) -> Result<Option<u64>, consul::Error> {
        // Through a transaction: its answer carries the new ModifyIndex, so the next CAS needs no read.
        self.cas_via_txn(key, value, index).await
    }

    async fn delete_cas(&self, key: &str, index: u64) -> Result<bool, consul::Error> {
        consul::Client::delete_cas(self, key, index).await
    }
}

/// Where the reconcile stage reads an app's analysis runs: the analysis stage's store (contract 2 of issue #8).
/// Reading is cheap and never blocks on I/O.
pub trait AnalysisSource: Send + Sync + 'static {
    /// The runs the analysis stage holds for `key` (empty when it holds none).
    fn runs(&self, key: &crate::app::AppKey) -> BTreeMap<RunId, AnalysisRunStatus>;
}

/// Where the reconcile stage reads an app's control: the controls store fed by the watch of
/// `<prefix>/control/` (contract 3 of issue #8).
pub trait ControlSource: Send + Sync + 'static {
    /// The control written for `key`, if any.
    fn control(&self, key: &crate::app::AppKey) -> Option<Arc<ControlEntry>>;
}

/// No analysis stage (tests, or an installation without rollouts): no runs are ever measured, so analysis steps
/// end at their deadline.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoAnalysis;

impl AnalysisSource for NoAnalysis {
    fn runs(&self, _key: &crate::app::AppKey) -> BTreeMap<RunId, AnalysisRunStatus> {
        BTreeMap::new()
    }
}

/// No controls watch: no control is ever seen.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoControls;

impl ControlSource for NoControls {
    fn control(&self, _key: &crate::app::AppKey) -> Option<Arc<ControlEntry>> {
        None
    }
}

impl AnalysisSource for crate::analysis::AnalysisRuns {
    fn runs(&self, key: &crate::app::AppKey) -> BTreeMap<RunId, AnalysisRunStatus> {
        self.get(key)
    }
}

impl ControlSource for crate::rollout::Controls {
    fn control(&self, key: &crate::app::AppKey) -> Option<Arc<ControlEntry>> {
        self.get(key)
    }
}
