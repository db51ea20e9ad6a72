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

/// What a condition observes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionType {
    /// The job runs the record's spec, healthy.
    Ready,
    /// The record validates.
    Valid,
    /// A job with the app's ID belongs to someone else.
    Conflict,
    /// The job was changed behind Drover's back.
    Drifted,
    /// `spec.suspend` is true.
    Suspended,
    /// Groups whose count an external autoscaler owns (the job's own Nomad `Scaling` policy): a warning.
    ExternalScaling,
    /// The app's control value is unreadable (reported, never acted on).
    Control,
    /// `spec.dependsOn` cannot be met as the records stand: a dependency that does not exist, or a cycle across
    /// records. Absent when every dependency exists and there is no cycle.
    Dependencies,
}

/// A stable, machine-readable cause of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Reason {
    /// `Valid`: the record validates.
    Validated,
    /// `Valid`: the record has field errors (listed in the message).
    FieldErrors,
    /// `Ready`: the record is invalid, so nothing was sent to Nomad.
    Invalid,
    /// `Ready`: see the `Conflict` condition.
    Conflict,
    /// `Conflict`: the job belongs to another app (or installation).
    OwnedByAnotherApp,
    /// `Conflict`: the job carries no Drover owner mark.
    UnownedJob,
    /// `Ready`: a register is being sent.
    Registering,
    /// `Ready`: Nomad has not shown the outcome of Drover's register yet (scheduling, or its watch lags).
    AwaitingDeployment,
    /// `Ready`: the applied spec's deployment succeeded.
    DeploymentSucceeded,
    /// `Ready`: the deployment is under way.
    DeploymentRunning,
    /// `Ready`: the deployment is paused in Nomad.
    DeploymentPaused,
    /// `Ready`: the deployment failed and Nomad reverted to the last stable version.
    RolledBack,
    /// `Ready`: the deployment failed without a revert.
    DeploymentFailed,
    /// `Ready`: the deployment was cancelled (a newer version or a stop).
    DeploymentCancelled,
    /// `Ready`: Nomad made no deployment where one was expected, within the deadline.
    DeploymentMissing,
    /// `Ready`: the deployment has placed no allocation within the job's progress deadline (no node has room);
    /// it goes on as soon as capacity appears.
    PlacementStalled,
    /// `Ready`: the job runs; Nomad makes no deployment for this spec.
    JobRunning,
    /// `Ready`: the job waits for capacity (allocations queued).
    JobPending,
    /// `Ready`: the job is not running and has no deployment.
    JobNotRunning,
    /// `Ready`: Nomad rejected the rendered job; the record must change.
    NomadRejected,
    /// `Ready`: the job's namespace does not exist in Nomad.
    NamespaceMissing,
    /// `Ready`: see the `Drifted` condition.
    Drifted,
    /// `Drifted`: driftPolicy Revert registered the desired spec again.
    Reverted,
    /// `Drifted`: driftPolicy Report leaves the change in place.
    ChangedOutsideDrover,
    /// `Suspended`: `spec.suspend` is true.
    SpecSuspend,
    /// `Ready`: the record is not in the store, and Drover's token may not read its key, so Drover cannot prove it
    /// is gone and does nothing to the job.
    RecordUnreadable,
    /// `Ready`: writes keep losing races with another writer.
    WriteConflicts,
    /// `Ready`: the token may not make a write the app needs.
    PermissionDenied,
    /// `Ready`: autoscaling changed the count; Nomad rolls it out.
    Scaling,
    /// `ExternalScaling`: the job carries Nomad's own `Scaling` policy; Drover keeps the live count.
    ExternalScalingPolicy,
    /// `Ready`: a canary or blue-green rollout runs a step (a timed pause, an analysis, a webhook).
    RolloutStep,
    /// `Ready`: the canaries were promoted; Nomad replaces the remaining instances.
    Promoting,
    /// `Ready`: the deployment succeeded; the post-promotion bake keeps measuring before the rollout is declared
    /// healthy.
    Baking,
    /// `Ready` (phase `Paused`): a manual gate waits for `drover promote` (or `abort`).
    ManualGate,
    /// `Ready` (phase `Paused`): an analysis run was inconclusive; `drover promote` treats it as passed, `abort`
    /// aborts.
    AnalysisInconclusive,
    /// `Ready` (phase `Paused`): `drover pause`; `drover resume` goes on.
    PausedByUser,
    /// `Ready`: an analysis run failed, so the rollout was aborted (the message names the query and values).
    AnalysisFailed,
    /// `Ready`: a webhook step failed, so the rollout was aborted.
    WebhookFailed,
    /// `Ready`: a person aborted the rollout (`drover abort`, or a manual gate's `onTimeout: Abort`).
    Aborted,
    /// `Ready`: a rollout step passed its deadline, so the rollout was aborted.
    DeadlineExceeded,
    /// `Control`: the control at `drover/control/<ns>/<name>` could not be read as a control; it is ignored.
    ControlUnreadable,
    /// `Ready` (phase `Pending`): an app of `spec.dependsOn` is not `Healthy` at its current generation, so this
    /// one is not created or rolled out yet (the message names what it waits for); what runs keeps running.
    WaitingForDependencies,
    /// `Dependencies`: an app of `spec.dependsOn` has no record (the message names it).
    DependencyMissing,
    /// `Dependencies`: the apps' `spec.dependsOn` form a cycle through this app (the message names it); none of
    /// them can go first until a record changes.
    DependencyCycle,
    /// `Ready` (phase `Deleting`): the record is gone, but apps that depend on it are still there (their records
    /// still list it, or their own deletion is not done): its `deletionPolicy` waits for them.
    WaitingForDependents,
}

/// One observation about the app, with a reason and a message a person can act on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// What is observed.
    #[serde(rename = "type")]
    pub type_: ConditionType,
    /// Whether it holds.
    pub status: ConditionStatus,
    /// A stable, machine-readable cause.
    pub reason: Reason,
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
    /// Why it was applied, then how it ended.
    pub result: HistoryResult,
    /// RFC 3339 time of the entry.
    pub at: String,
}

/// Where autoscaling stands for the app's scaled group.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoscalingStatus {
    /// The group's count in Nomad at the last evaluation.
    pub current: i64,
    /// The count the last evaluation wanted.
    pub desired: i64,
    /// RFC 3339 time of the measurements the last evaluation used (each round is evaluated once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_evaluated: Option<String>,
    /// RFC 3339 time of Drover's last scale of this group: the cooldown starts there, also after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<String>,
    /// Which way the last scale went (`up`, `down`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_direction: Option<String>,
    /// Why the last scale was made, e.g. `cpu 83 > target 70 (+2)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reason: Option<String>,
    /// RFC 3339 time when the current cooldown ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_until: Option<String>,
    /// Why the wanted count is not applied now (a deployment, the cooldown, the stabilization window, dryRun).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferred_reason: Option<String>,
    /// Each check of the last evaluation.
    #[serde(default)]
    pub checks: Vec<AutoscalingCheckStatus>,
    /// Recent recommendations (RFC 3339 time, count) for the scale-down stabilization window, kept across restarts.
    #[serde(default)]
    pub recommendations: Vec<(String, i64)>,
}

/// One check of the last autoscaling evaluation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutoscalingCheckStatus {
    /// The check's name.
    pub name: String,
    /// The measured value, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The count the check asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_count: Option<i64>,
    /// What it asked for (`up`, `down`, `unchanged`, `hold`, `ignored`).
    pub action: String,
    /// Why there was no value (query error, no series, NaN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why a spec was applied, and then how its rollout ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum HistoryResult {
    /// Registered: no job with that ID existed.
    Created,
    /// Registered: the record changed.
    Updated,
    /// Registered: the record adopted an existing job.
    Adopted,
    /// Registered: the job drifted and driftPolicy Revert undid it.
    Reverted,
    /// Registered: status did not say what was applied (an identical register is harmless).
    Refreshed,
    /// The rollout succeeded.
    Healthy,
    /// The rollout failed and Nomad went back to the last stable version.
    RolledBack,
    /// The rollout failed.
    DeploymentFailed,
    /// Autoscaling changed the count (a new job version).
    Scaled,
    /// A control (`drover promote`, `abort`, ...) was applied to the rollout; `status.lastControl` says which.
    Controlled,
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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
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
    /// True when the last register made a new job version for which Nomad creates a deployment: until it is seen,
    /// the job's status says nothing about the applied spec.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deployment_expected: bool,
    /// Hash of a spec whose rollout failed: it is not registered again until the record changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_hash: Option<String>,
    /// Hash of a spec Nomad rejected (invalid job, type change, missing namespace): the app stays `Failed` and the
    /// spec is not sent again until the record changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_hash: Option<String>,
    /// The `JobModifyIndex` of a change Drover saw but did not make, already counted as drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_job_modify_index: Option<u64>,
    /// Jobs this app ran under earlier job IDs (the record's job ID changed, maybe more than once). Each is stopped
    /// (or purged) per `deletionPolicy` once the app is healthy under its new ID, or when the record is deleted,
    /// then forgotten.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retiring_job_ids: Vec<String>,
    /// The deployment that rolls out the applied spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<DeploymentRef>,
    /// Autoscaling (`spec.autoscaling`): the last evaluation and the last scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingStatus>,
    /// The current (or last) progressive rollout: its step, analysis runs and verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<crate::rollout::RolloutStatus>,
    /// The last control (`drover promote`, ...) Drover consumed, so each is applied once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_control: Option<crate::rollout::ConsumedControl>,
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
    /// The record's `spec.dependsOn` (`<namespace>/<name>` each), kept so that once this record is deleted, the
    /// apps it depended on wait until its own deletion is done (deletion goes in reverse order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
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
    pub fn set_condition(
        &mut self,
        type_: ConditionType,
        status: ConditionStatus,
        reason: Reason,
        message: String,
        now: &str,
    ) {
        match self.conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = now.to_string();
                }
                c.status = status;
                c.reason = reason;
                c.message = message;
            }
            None => self.conditions.push(Condition {
                type_,
                status,
                reason,
                message,
                last_transition_time: now.to_string(),
            }),
        }
    }

    /// Removes a condition.
    pub fn clear_condition(&mut self, type_: ConditionType) {
        self.conditions.retain(|c| c.type_ != type_);
    }

    /// A condition by type.
    pub fn condition(&self, type_: ConditionType) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Adds a history entry, newest first, capped.
    pub fn push_history(&mut self, entry: HistoryEntry) {
        self.history.insert(0, entry);
        self.history.truncate(HISTORY_LEN);
    }
}

/// These enums display as their JSON spelling (the variant name), padded like a string, for tables.
macro_rules! display_as_name {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(&format!("{self:?}"))
            }
        }
    )*};
}
display_as_name!(ConditionType, Reason, HistoryResult);

/// RFC 3339 (UTC, millisecond precision) for status timestamps. Milliseconds, because step and analysis timing is
/// measured from these stamps: whole seconds let a pause or an `initialDelay` end up to a second early.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// A status timestamp read back: RFC 3339, with or without fractional seconds (statuses written before stamps had
/// milliseconds have none).
pub fn parse_timestamp(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eq_ignoring_time_should_ignore_only_timestamps() {
        let mut a = AppStatus { phase: Phase::Healthy, ..AppStatus::default() };
        a.set_condition(ConditionType::Ready, ConditionStatus::True, Reason::DeploymentSucceeded, "ok".into(), "t1");
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
        s.set_condition(ConditionType::Ready, ConditionStatus::False, Reason::DeploymentRunning, "a".into(), "t1");
        s.set_condition(ConditionType::Ready, ConditionStatus::False, Reason::DeploymentRunning, "b".into(), "t2");
        assert_eq!(s.conditions[0].last_transition_time, "t1");
        s.set_condition(ConditionType::Ready, ConditionStatus::True, Reason::DeploymentSucceeded, "c".into(), "t3");
        assert_eq!(s.conditions[0].last_transition_time, "t3");
    }

    #[test]
    fn status_should_round_trip_through_json() {
        let mut s = AppStatus { observed_generation: 7, phase: Phase::Progressing, ..AppStatus::default() };
        s.push_history(HistoryEntry {
            generation: 7,
            hash: "h".into(),
            job_version: Some(1),
            result: HistoryResult::Created,
            at: "t".into(),
        });
        let text = serde_json::to_string(&s).expect("serialises");
        assert!(text.contains("\"observedGeneration\":7"), "{text}");
        let back: AppStatus = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, s);
    }
}
