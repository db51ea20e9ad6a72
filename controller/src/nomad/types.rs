//! The Nomad JSON Drover reads: only the fields it needs, PascalCase as Go writes them, unknown fields ignored.
//!
//! Go writes nil maps and slices as `null` (contract §0), so every collection here reads `null` as empty.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

pub use super::plan::{
    DesiredUpdates, DiffType, FieldDiff, JobDiff, ObjectDiff, PlanAnnotations, PlanResponse, TaskDiff, TaskGroupDiff,
};

/// Reads `null` (or a missing field, with `#[serde(default)]`) as the type's default.
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Per-group allocation counts of a job summary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskGroupSummary {
    /// Allocations waiting for placement.
    pub queued: u64,
    /// Allocations finished successfully.
    pub complete: u64,
    /// Allocations failed.
    pub failed: u64,
    /// Allocations running.
    pub running: u64,
    /// Allocations starting.
    pub starting: u64,
    /// Allocations lost with their node.
    pub lost: u64,
    /// Allocations whose node is disconnected.
    pub unknown: u64,
}

/// `JobSummary` of a job stub.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobSummary {
    /// The job's ID.
    #[serde(rename = "JobID")]
    pub job_id: String,
    /// The job's namespace.
    pub namespace: String,
    /// Counts per task group.
    #[serde(deserialize_with = "null_default")]
    pub summary: BTreeMap<String, TaskGroupSummary>,
    /// Raft index of the summary's creation.
    pub create_index: u64,
    /// Raft index of the summary's last change.
    pub modify_index: u64,
}

/// One element of `GET /v1/jobs` (contract B3). Stubs carry no `Version`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobStub {
    /// Job ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Namespace.
    pub namespace: String,
    /// Name (usually the ID).
    pub name: String,
    /// `service`, `batch`, `system`, `sysbatch`.
    #[serde(rename = "Type")]
    pub job_type: String,
    /// `pending`, `running`, `dead`.
    pub status: String,
    /// True after a stop (deregister without purge).
    pub stop: bool,
    /// Raft index of the job's last new version.
    pub job_modify_index: u64,
    /// Raft index of the job row's last write (status changes included).
    pub modify_index: u64,
    /// Raft index of the job's creation.
    pub create_index: u64,
    /// Job `Meta`; present only with `meta=true`.
    #[serde(deserialize_with = "null_default")]
    pub meta: BTreeMap<String, String>,
    /// Allocation counts per group.
    pub job_summary: Option<JobSummary>,
}

/// A task group as Drover reads it from a job.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskGroup {
    /// Group name.
    pub name: String,
    /// Desired count.
    pub count: u64,
}

/// The typed fields of a full job (`GET /v1/job/:id`, event payloads).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct JobFields {
    #[serde(rename = "ID")]
    id: String,
    namespace: String,
    version: u64,
    job_modify_index: u64,
    modify_index: u64,
    create_index: u64,
    stop: bool,
    status: String,
    stable: bool,
    #[serde(deserialize_with = "null_default")]
    meta: BTreeMap<String, String>,
    #[serde(deserialize_with = "null_default")]
    task_groups: Vec<TaskGroup>,
    submit_time: i64,
}

/// A full Nomad job: the fields Drover uses, plus the raw JSON for anything else (plan diffs, `drover describe`).
///
/// Never diff `raw` against a submitted job (contract C14): it is full of server defaults.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Job {
    /// Job ID.
    pub id: String,
    /// Namespace.
    pub namespace: String,
    /// Version; +1 on every stored spec change.
    pub version: u64,
    /// Raft index of the current version: the value to send as `EnforceIndex`.
    pub job_modify_index: u64,
    /// Raft index of the row's last write (status and stability changes included).
    pub modify_index: u64,
    /// Raft index of the job's creation.
    pub create_index: u64,
    /// True after a stop.
    pub stop: bool,
    /// `pending`, `running`, `dead`.
    pub status: String,
    /// True once this version's deployment succeeded.
    pub stable: bool,
    /// Job-level `Meta`.
    pub meta: BTreeMap<String, String>,
    /// Groups with their counts.
    pub task_groups: Vec<TaskGroup>,
    /// Unix nanoseconds of the last stored register, stop or scale.
    pub submit_time: i64,
    /// The whole job as Nomad returned it.
    pub raw: serde_json::Value,
}

impl<'de> Deserialize<'de> for Job {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = serde_json::Value::deserialize(d)?;
        let f = JobFields::deserialize(&raw).map_err(serde::de::Error::custom)?;
        Ok(Job {
            id: f.id,
            namespace: f.namespace,
            version: f.version,
            job_modify_index: f.job_modify_index,
            modify_index: f.modify_index,
            create_index: f.create_index,
            stop: f.stop,
            status: f.status,
            stable: f.stable,
            meta: f.meta,
            task_groups: f.task_groups,
            submit_time: f.submit_time,
            raw,
        })
    }
}

/// A deployment's status (contract B13); values Drover does not know are kept, not rejected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DeploymentStatus {
    /// Rolling out.
    #[default]
    Running,
    /// Paused by an operator.
    Paused,
    /// Failed (progress deadline, unhealthy allocations, or by hand).
    Failed,
    /// Every group healthy and promoted.
    Successful,
    /// Superseded by a newer version, or the job was stopped.
    Cancelled,
    /// Multiregion/Enterprise statuses and anything newer.
    Unknown(String),
}

impl DeploymentStatus {
    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Failed => "failed",
            Self::Successful => "successful",
            Self::Cancelled => "cancelled",
            Self::Unknown(s) => s,
        }
    }

    /// Terminal statuses never change again: `successful`, `failed`, `cancelled`.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Successful | Self::Failed | Self::Cancelled)
    }

    /// Active statuses (B13): everything not terminal, the Enterprise ones included.
    pub fn is_active(&self) -> bool {
        !self.is_terminal()
    }
}

impl<'de> Deserialize<'de> for DeploymentStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ok(match text.as_str() {
            "running" => Self::Running,
            "paused" => Self::Paused,
            "failed" => Self::Failed,
            "successful" => Self::Successful,
            "cancelled" => Self::Cancelled,
            _ => Self::Unknown(text),
        })
    }
}

/// One group's progress in a deployment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeploymentGroupState {
    /// Allocations the group should end with.
    pub desired_total: u64,
    /// Canaries wanted.
    pub desired_canaries: u64,
    /// Allocations placed so far.
    pub placed_allocs: u64,
    /// Allocations healthy so far.
    pub healthy_allocs: u64,
    /// Allocations unhealthy so far.
    pub unhealthy_allocs: u64,
    /// Canaries were promoted.
    pub promoted: bool,
    /// A failure reverts to the last stable version.
    pub auto_revert: bool,
    /// Promotion happens without an operator once canaries are healthy.
    pub auto_promote: bool,
    /// IDs of the canary allocations placed.
    #[serde(deserialize_with = "null_default")]
    pub placed_canaries: Vec<String>,
}

/// A deployment (contract B13).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Deployment {
    /// Deployment ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Namespace.
    pub namespace: String,
    /// The job it rolls out.
    #[serde(rename = "JobID")]
    pub job_id: String,
    /// The job version it rolls out: how Drover matches a deployment to what it registered (C20).
    pub job_version: u64,
    /// The job's `JobModifyIndex` for that version.
    pub job_spec_modify_index: u64,
    /// The job's `CreateIndex` (distinguishes a re-created job).
    pub job_create_index: u64,
    /// Status.
    pub status: DeploymentStatus,
    /// Human-readable status, e.g. `Deployment is running but requires manual promotion`.
    pub status_description: String,
    /// Progress per group.
    #[serde(deserialize_with = "null_default")]
    pub task_groups: BTreeMap<String, DeploymentGroupState>,
    /// Raft index of creation.
    pub create_index: u64,
    /// Raft index of the last change.
    pub modify_index: u64,
}

/// An allocation's part in a deployment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocDeploymentStatus {
    /// `None` while health is not yet known.
    pub healthy: Option<bool>,
    /// The allocation is a canary.
    pub canary: bool,
}

/// One element of `GET /v1/job/:id/allocations` (contract B14).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocStub {
    /// Allocation ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// The job.
    #[serde(rename = "JobID")]
    pub job_id: String,
    /// The job version this allocation runs.
    pub job_version: u64,
    /// Its group.
    pub task_group: String,
    /// `pending`, `running`, `complete`, `failed`, `lost`, `unknown`.
    pub client_status: String,
    /// `run`, `stop`, `evict`.
    pub desired_status: String,
    /// `None` until the allocation takes part in a deployment.
    pub deployment_status: Option<AllocDeploymentStatus>,
}

/// The answer to a register, scale or deregister (B4, B8, B10).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RegisterResponse {
    /// The evaluation created; empty for periodic/parameterized jobs and for a deregister of a missing job.
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    /// Raft index of that evaluation.
    pub eval_create_index: u64,
    /// **Not** a safe next `EnforceIndex**: after an identical register this is the job's `ModifyIndex` (C15).
    pub job_modify_index: u64,
    /// Newline-joined warnings.
    pub warnings: String,
    /// Raft index of the write.
    pub index: u64,
}

/// The answer to a deployment promote or fail (B13).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeploymentUpdateResponse {
    /// The evaluation created.
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    /// Raft index of that evaluation.
    pub eval_create_index: u64,
    /// Raft index of the deployment's change.
    pub deployment_modify_index: u64,
    /// The version an auto-revert registered, if any.
    pub reverted_job_version: Option<u64>,
    /// Raft index of the write.
    pub index: u64,
}

/// One event of the event stream (B15).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Event {
    /// `Job`, `Deployment`, `Allocation`, `Evaluation`, …
    pub topic: String,
    /// The Raft message that caused it, e.g. `JobRegistered`, `PlanResult` (filter on `Topic`, not `Type`).
    #[serde(rename = "Type")]
    pub event_type: String,
    /// The object's ID.
    pub key: String,
    /// Namespace.
    pub namespace: String,
    /// Raft index.
    pub index: u64,
    /// Extra keys the event matches (a deployment's job ID, …).
    #[serde(deserialize_with = "null_default")]
    pub filter_keys: Vec<String>,
    /// `{"Job": …}` (with `"Deleted": true` on purge), `{"Deployment": …}`, …
    pub payload: serde_json::Value,
}

/// One NDJSON line of the event stream; `{}` (no index, no events) is a heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Frame {
    /// Raft index of the transaction; two frames in a row can share one (B15).
    pub index: u64,
    /// The events that passed the subscription's filter.
    #[serde(deserialize_with = "null_default")]
    pub events: Vec<Event>,
}

impl Frame {
    /// A `{}` keep-alive line.
    pub fn is_heartbeat(&self) -> bool {
        self.index == 0 && self.events.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_should_keep_typed_fields_and_raw_json() {
        let job: Job = serde_json::from_str(
            r#"{"ID":"web","Namespace":"apps","Version":3,"JobModifyIndex":38,"ModifyIndex":40,"CreateIndex":10,
                "Stop":false,"Status":"running","Stable":true,"Meta":null,"SubmitTime":1700000000000000000,
                "TaskGroups":[{"Name":"web","Count":3,"Tasks":[]}],"Datacenters":["*"]}"#,
        )
        .unwrap();
        assert_eq!((job.id.as_str(), job.version, job.job_modify_index), ("web", 3, 38));
        assert!(job.meta.is_empty());
        assert_eq!(job.task_groups[0].count, 3);
        assert_eq!(job.raw["Datacenters"][0], "*");
    }

    #[test]
    fn deployment_status_should_keep_unknown_values() {
        let d: Deployment =
            serde_json::from_str(r#"{"ID":"d","Status":"blocked","TaskGroups":null,"JobVersion":2}"#).unwrap();
        assert_eq!(d.status, DeploymentStatus::Unknown("blocked".into()));
        assert!(d.status.is_active());
        assert!(d.task_groups.is_empty());
    }
}
