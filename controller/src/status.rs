//! The status record Drover writes at `drover/status/<namespace>/<name>`: what it observed, what it applied, and what
//! a person should know. Written only by Drover, with CAS, and only when it changed (timestamps aside).

use std::time::SystemTime;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where an app stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, Default)]
pub enum Phase {
    /// Seen, nothing applied yet.
    #[default]
    Pending,
    /// A change was registered and its Nomad deployment is under way.
    Progressing,
    /// A rollout waits for a person (reserved for rollout steps).
    Paused,
    /// The job runs the desired spec and its deployment succeeded.
    Healthy,
    /// The desired spec failed to roll out (Nomad failed or reverted it), or the job drifted and is only reported.
    Degraded,
    /// Drover cannot apply the record (e.g. a job with the same ID belongs to someone else, or Nomad rejects the job).
    Failed,
    /// The record is not valid; nothing was sent to Nomad.
    Invalid,
    /// `spec.suspend` is true: Drover leaves the job alone.
    Suspended,
    /// The record was deleted and Drover is carrying out its `deletionPolicy`.
    Deleting,
}

impl Phase {
    /// Every phase, for metrics that must show zeros.
    pub const ALL: [&'static str; 9] =
        ["Pending", "Progressing", "Paused", "Healthy", "Degraded", "Failed", "Invalid", "Suspended", "Deleting"];

    /// The phase's name, as a bounded metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Progressing => "Progressing",
            Phase::Paused => "Paused",
            Phase::Healthy => "Healthy",
            Phase::Degraded => "Degraded",
            Phase::Failed => "Failed",
            Phase::Invalid => "Invalid",
            Phase::Suspended => "Suspended",
            Phase::Deleting => "Deleting",
        }
    }
}

/// `True`, `False` or `Unknown`, as in Kubernetes conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Drover cannot tell yet.
    Unknown,
}

/// One observation about the app, with a reason (a stable CamelCase word) and a message a person can act on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// What is observed: `Ready`, `Valid`, `Conflict`, `Drifted`, `Suspended`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Whether it holds.
    pub status: ConditionStatus,
    /// A stable, machine-readable cause (`DeploymentSucceeded`, `FieldErrors`, `UnownedJob`, …).
    pub reason: String,
    /// What happened and what to do about it.
    pub message: String,
    /// RFC 3339 time when `status` last changed.
    pub last_transition_time: String,
}

/// The Nomad deployment Drover follows for the spec it applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentRef {
    /// Nomad deployment ID.
    pub id: String,
    /// Nomad's status word (`running`, `successful`, `failed`, `cancelled`, `paused`).
    pub status: String,
    /// Nomad's description, e.g. `Failed due to progress deadline - rolling back to job version 3`.
    pub description: String,
    /// The job version the deployment rolls out.
    pub job_version: u64,
}

/// Allocation counts of the current rollout.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Replicas {
    /// Allocations the job asks for (sum over groups).
    pub desired: u64,
    /// Allocations placed by the current deployment.
    pub placed: u64,
    /// Placed allocations that are healthy.
    pub healthy: u64,
    /// Canaries the deployment asks for.
    pub canaries: u64,
}

/// One past apply, newest first in [`AppStatus::history`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HistoryEntry {
    /// The record generation (Consul ModifyIndex) applied.
    pub generation: u64,
    /// The spec hash applied.
    pub hash: String,
    /// The Nomad job version that resulted, when known.
    pub job_version: Option<u64>,
    /// How it ended: `Registered`, `Healthy`, `Failed`, `RolledBack`, `Reverted` (drift undone).
    pub result: String,
    /// RFC 3339 time of the entry.
    pub at: String,
}

/// What is deleted or kept when the record goes away (copied from the record so that a deletion can be carried out
/// after the record is gone).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ObservedDeletionPolicy {
    /// Stop the job (it stays visible as dead).
    #[default]
    Stop,
    /// Stop and purge the job.
    Purge,
    /// Leave the job running, unmanaged.
    Orphan,
}

/// The status of one app.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppStatus {
    /// The record generation (Consul ModifyIndex of the record) this status describes.
    pub observed_generation: u64,
    /// Where the app stands.
    pub phase: Phase,
    /// The Nomad job ID the record renders to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// Hash of the last rendered job Drover registered (DESIGN §3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_hash: Option<String>,
    /// Nomad job version that register produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_job_version: Option<u64>,
    /// Nomad `JobModifyIndex` that register produced; a different live value means someone else changed the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_job_modify_index: Option<u64>,
    /// Hash of a spec whose rollout failed: it is not registered again until the record changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_hash: Option<String>,
    /// The `JobModifyIndex` of a change Drover saw but did not make, already counted as drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_job_modify_index: Option<u64>,
    /// A job this app ran under an earlier job ID (the record's job ID changed). It is stopped (or purged) per
    /// `deletionPolicy` once the app is healthy under its new ID, then forgotten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retiring_job_id: Option<String>,
    /// The deployment that rolls out the applied spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<DeploymentRef>,
    /// Allocation counts of the current rollout.
    #[serde(default)]
    pub replicas: Replicas,
    /// Observations with reasons and messages.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The last error met while reconciling, cleared by the next success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The record's `deletionPolicy`, kept so a deletion can be carried out once the record is gone.
    #[serde(default)]
    pub deletion_policy: ObservedDeletionPolicy,
    /// Recent applies, newest first, at most [`HISTORY_LEN`].
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
    /// RFC 3339 time of the last change of this status.
    #[serde(default)]
    pub updated_at: String,
}

/// How many history entries are kept.
pub const HISTORY_LEN: usize = 10;

impl AppStatus {
    /// Equality that ignores timestamps, so a status that only aged is not written again.
    pub fn eq_ignoring_time(&self, other: &AppStatus) -> bool {
        let strip = |s: &AppStatus| {
            let mut s = s.clone();
            s.updated_at.clear();
            for c in &mut s.conditions {
                c.last_transition_time.clear();
            }
            s
        };
        strip(self) == strip(other)
    }

    /// Sets a condition, keeping its transition time when its status did not change.
    pub fn set_condition(&mut self, type_: &str, status: ConditionStatus, reason: &str, message: String, now: &str) {
        match self.conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = now.to_string();
                }
                c.status = status;
                c.reason = reason.to_string();
                c.message = message;
            }
            None => self.conditions.push(Condition {
                type_: type_.to_string(),
                status,
                reason: reason.to_string(),
                message,
                last_transition_time: now.to_string(),
            }),
        }
    }

    /// Removes a condition.
    pub fn clear_condition(&mut self, type_: &str) {
        self.conditions.retain(|c| c.type_ != type_);
    }

    /// A condition by type.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Adds a history entry, newest first, capped.
    pub fn push_history(&mut self, entry: HistoryEntry) {
        self.history.insert(0, entry);
        self.history.truncate(HISTORY_LEN);
    }
}

/// RFC 3339 (seconds precision, UTC) for status timestamps.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eq_ignoring_time_should_ignore_only_timestamps() {
        let mut a = AppStatus { phase: Phase::Healthy, ..AppStatus::default() };
        a.set_condition("Ready", ConditionStatus::True, "DeploymentSucceeded", "ok".into(), "t1");
        let mut b = a.clone();
        b.updated_at = "later".into();
        b.conditions[0].last_transition_time = "t2".into();
        assert!(a.eq_ignoring_time(&b));
        b.phase = Phase::Degraded;
        assert!(!a.eq_ignoring_time(&b));
    }

    #[test]
    fn set_condition_should_keep_transition_time_when_status_is_unchanged() {
        let mut s = AppStatus::default();
        s.set_condition("Ready", ConditionStatus::False, "Progressing", "a".into(), "t1");
        s.set_condition("Ready", ConditionStatus::False, "Progressing", "b".into(), "t2");
        assert_eq!(s.conditions[0].last_transition_time, "t1");
        s.set_condition("Ready", ConditionStatus::True, "DeploymentSucceeded", "c".into(), "t3");
        assert_eq!(s.conditions[0].last_transition_time, "t3");
    }

    #[test]
    fn status_should_round_trip_through_json() {
        let mut s = AppStatus { observed_generation: 7, phase: Phase::Progressing, ..AppStatus::default() };
        s.push_history(HistoryEntry {
            generation: 7,
            hash: "h".into(),
            job_version: Some(1),
            result: "Registered".into(),
            at: "t".into(),
        });
        let text = serde_json::to_string(&s).expect("serialises");
        assert!(text.contains("\"observedGeneration\":7"), "{text}");
        let back: AppStatus = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, s);
    }
}
