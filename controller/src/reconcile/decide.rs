//! The decision: a pure, total function of (record, live job, stored status, now) to a [`Plan`].
//!
//! ```text
//!  record ──► Absent ─────────────► carry out the deletion policy, then delete the status
//!         ──► Invalid ────────────► phase Invalid, every field error in a condition; Nomad untouched
//!         ──► Valid ─► suspend ───► phase Suspended; Nomad untouched
//!                   ─► unowned job ► phase Failed, Conflict condition (unless adopt); Nomad untouched
//!                   ─► failed spec ► phase Degraded; not registered again until the record changes
//!                   ─► no job / new hash / drift ─► Register (EnforceIndex) ─► phase Progressing
//!                   ─► converged ─► follow the deployment ─► Progressing | Healthy | Degraded | Paused
//! ```

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{Action, Plan, Record, RegisterReason, Requeue, ValidRecord};
use crate::app::{AppKey, DriftPolicy, FieldError};
use crate::live::{Live, LiveDeployment, LiveJob};
use crate::status::{AppStatus, ConditionStatus, DeploymentRef, ObservedDeletionPolicy, Phase, Replicas, timestamp};

/// How long after a register Drover waits for Nomad's scheduler to create the deployment before concluding that
/// none will come (an identical register or an empty update block makes none).
pub const DEPLOYMENT_GRACE: Duration = Duration::from_secs(30);

/// How often a rollout in progress is looked at even without events (events normally wake it first).
pub const PROGRESS_RECHECK: Duration = Duration::from_secs(60);

/// How many field errors a status message lists before summarising the rest (a status must stay well below
/// Consul's 512 KiB value limit, whatever the record holds).
pub const MAX_LISTED_ERRORS: usize = 50;

/// Decides what to do for one app. Pure: no I/O, time passed in.
pub fn decide(key: &AppKey, record: &Record, live: &Live, stored: Option<&AppStatus>, now: SystemTime) -> Plan {
    let ts = timestamp(now);
    match record {
        Record::Absent => deleted(key, live, stored),
        Record::Invalid { generation, errors } => invalid(*generation, errors, stored, &ts),
        Record::Valid(record) => {
            let plan = Valid { key, record, live, now, ts }.decide(stored);
            retire_previous(key, record, live, plan)
        }
    }
}

/// The record's job ID changed: once the app is healthy under its new ID, the job it ran before is stopped (or
/// purged) as its `deletionPolicy` says, and then forgotten. Creating the new job first keeps the app serving.
fn retire_previous(key: &AppKey, record: &ValidRecord, live: &Live, mut plan: Plan) -> Plan {
    let Some(s) = plan.status.as_mut() else { return plan };
    let Some(old) = s.retiring_job_id.clone() else { return plan };
    if s.phase != Phase::Healthy || !plan.actions.is_empty() {
        return plan;
    }
    let owner = key.to_string();
    let previous = live.previous.as_ref().filter(|j| j.id == old && j.owned_by(&owner));
    match (record.deletion_policy, previous) {
        // Gone, someone else's now, or to be left running: nothing more to do for it.
        (_, None) | (ObservedDeletionPolicy::Orphan, Some(_)) => s.retiring_job_id = None,
        (ObservedDeletionPolicy::Stop, Some(j)) if j.stop => s.retiring_job_id = None,
        (ObservedDeletionPolicy::Stop, Some(_)) => plan.actions.push(Action::Deregister { job_id: old, purge: false }),
        (ObservedDeletionPolicy::Purge, Some(_)) => plan.actions.push(Action::Deregister { job_id: old, purge: true }),
    }
    plan
}

/// The record is gone: carry out the deletion policy recorded in status, then forget the app.
fn deleted(key: &AppKey, live: &Live, stored: Option<&AppStatus>) -> Plan {
    // No status either: Drover never managed this key (or already finished deleting it).
    let Some(status) = stored else {
        return Plan { actions: Vec::new(), status: None, requeue: Requeue::AwaitChange, drift_detected: false };
    };
    let owner = key.to_string();
    let owned = live.job.as_ref().filter(|j| j.owned_by(&owner));
    let mut actions = Vec::new();
    match (status.deletion_policy, owned) {
        // Nothing of ours runs under that ID (gone, or someone else's job): nothing to stop.
        (_, None) => {}
        // Orphan: the job keeps running, unmanaged.
        (ObservedDeletionPolicy::Orphan, Some(_)) => {}
        // Stop: only if it still runs; a stopped job is already where the policy wants it.
        (ObservedDeletionPolicy::Stop, Some(job)) if !job.stop => {
            actions.push(Action::Deregister { job_id: job.id.clone(), purge: false })
        }
        (ObservedDeletionPolicy::Stop, Some(_)) => {}
        // Purge: also removes a job that is already stopped.
        (ObservedDeletionPolicy::Purge, Some(job)) => {
            actions.push(Action::Deregister { job_id: job.id.clone(), purge: true })
        }
    }
    actions.push(Action::DeleteStatus);
    let mut status = status.clone();
    status.phase = Phase::Deleting;
    Plan { actions, status: Some(status), requeue: Requeue::AwaitChange, drift_detected: false }
}

/// The record does not validate: report every error, touch nothing.
fn invalid(generation: u64, errors: &[FieldError], stored: Option<&AppStatus>, ts: &str) -> Plan {
    let mut status = stored.cloned().unwrap_or_default();
    status.observed_generation = generation;
    status.phase = Phase::Invalid;
    status.set_condition("Valid", ConditionStatus::False, "FieldErrors", describe_errors(errors), ts);
    status.set_condition(
        "Ready",
        ConditionStatus::False,
        "Invalid",
        "the record is invalid, so nothing was sent to Nomad; the job, if any, keeps its last valid spec".to_string(),
        ts,
    );
    Plan { actions: Vec::new(), status: Some(status), requeue: Requeue::AwaitChange, drift_detected: false }
}

/// `3 errors: a: x; b: y; c: z`, capped at [`MAX_LISTED_ERRORS`].
pub fn describe_errors(errors: &[FieldError]) -> String {
    let n = errors.len();
    let mut out = format!("{n} error{}: ", if n == 1 { "" } else { "s" });
    let listed: Vec<String> =
        errors.iter().take(MAX_LISTED_ERRORS).map(|e| format!("{}: {}", e.path, e.reason)).collect();
    out.push_str(&listed.join("; "));
    if n > MAX_LISTED_ERRORS {
        out.push_str(&format!("; and {} more", n - MAX_LISTED_ERRORS));
    }
    out
}

/// The inputs of a decision about a valid record.
struct Valid<'a> {
    key: &'a AppKey,
    record: &'a Arc<ValidRecord>,
    live: &'a Live,
    now: SystemTime,
    ts: String,
}

impl Valid<'_> {
    fn decide(&self, stored: Option<&AppStatus>) -> Plan {
        let r = self.record;
        let mut s = stored.cloned().unwrap_or_default();
        s.observed_generation = r.generation;
        // A new job ID: the job run under the old one is retired once the new one is healthy.
        if let Some(old) = s.job_id.clone().filter(|old| *old != r.job_id && s.applied_hash.is_some()) {
            s.retiring_job_id = Some(old);
        }
        if s.retiring_job_id.as_deref() == Some(r.job_id.as_str()) {
            s.retiring_job_id = None;
        }
        s.job_id = Some(r.job_id.clone());
        s.deletion_policy = r.deletion_policy;
        s.set_condition("Valid", ConditionStatus::True, "Validated", "the record is valid".to_string(), &self.ts);

        // Suspended: a person asked Drover to keep its hands off.
        if r.suspend {
            s.phase = Phase::Suspended;
            s.set_condition(
                "Suspended",
                ConditionStatus::True,
                "SpecSuspend",
                "spec.suspend is true: Drover leaves the job alone until it is false".to_string(),
                &self.ts,
            );
            return self.plan(s, Vec::new(), Requeue::AwaitChange);
        }
        s.clear_condition("Suspended");

        let owner = self.key.to_string();
        let job = self.live.job.as_ref();
        // Someone else's job under our ID: never touched. `adopt` takes over a job no record owns, never one that
        // another record owns (two records would then fight over it).
        let adoptable = |j: &LiveJob| r.adopt && j.owner.is_none();
        if let Some(j) = job.filter(|j| !j.owned_by(&owner) && !adoptable(j)) {
            s.phase = Phase::Failed;
            let holder = j.owner.as_deref().map_or("no Drover owner".to_string(), |o| format!("owned by {o}"));
            s.set_condition(
                "Conflict",
                ConditionStatus::True,
                if j.owner.is_some() { "OwnedByAnotherApp" } else { "UnownedJob" },
                format!(
                    "job {:?} in namespace {:?} already exists ({holder}); Drover will not touch it. Set spec.adopt: true to take it over, or give the app another job ID",
                    j.id, j.namespace
                ),
                &self.ts,
            );
            s.set_condition(
                "Ready",
                ConditionStatus::False,
                "Conflict",
                "see the Conflict condition".to_string(),
                &self.ts,
            );
            return self.plan(s, Vec::new(), Requeue::AwaitChange);
        }
        s.clear_condition("Conflict");

        // A rollout of this exact spec failed (or Nomad rejected it): do not register it again until the record
        // changes, whatever Nomad did since (an auto-revert makes a new version that is not drift).
        if s.failed_hash.as_deref() == Some(r.hash.as_str()) {
            s.phase = Phase::Degraded;
            return self.plan(s, Vec::new(), Requeue::AwaitChange);
        }

        let applied_here = s.applied_hash.as_deref() == Some(r.hash.as_str());
        match job {
            // No job: create it. If this spec was applied before, the job vanished behind our back.
            None if applied_here && s.applied_job_modify_index.is_some() => self.drift(s, None),
            None => self.register(s, 0, RegisterReason::Create),
            // An unowned job reaching here is adopted (`adopt: true`).
            Some(j) if !j.owned_by(&owner) => self.register(s, j.job_modify_index, RegisterReason::Adopt),
            // The record changed since the last apply (or status does not say what was applied).
            Some(j) if !applied_here => {
                let reason = if s.applied_hash.is_none() { RegisterReason::Refresh } else { RegisterReason::Update };
                self.register(s, j.job_modify_index, reason)
            }
            Some(j) => match s.applied_job_modify_index {
                // The last register's outcome was not recorded: an identical register is harmless and tells us.
                None => self.register(s, j.job_modify_index, RegisterReason::Refresh),
                Some(applied) => {
                    // Our deployment failed: Nomad may already have auto-reverted (a newer version that is not
                    // drift). Record the failure before looking at versions.
                    if let Some(d) = self.live.deployment_for(applied).filter(|d| d.status == "failed") {
                        let d = d.clone();
                        return self.follow(s, Some(&d), j);
                    }
                    if applied != j.job_modify_index {
                        // The job changed while our deployment was still active. Nomad settles that deployment
                        // next: `failed` when the change is its own auto-revert, `cancelled` when someone else
                        // registered. Judge only then, or a revert would be taken for drift and fought.
                        if let Some(d) = self.live.deployment_for(applied).filter(|d| d.is_active()) {
                            s.phase = Phase::Progressing;
                            s.set_condition(
                                "Ready",
                                ConditionStatus::False,
                                "AwaitingDeployment",
                                format!(
                                    "job {:?} changed while deployment {} was running; waiting for Nomad to settle it",
                                    j.id,
                                    short(&d.id)
                                ),
                                &self.ts,
                            );
                            return self.plan(s, Vec::new(), Requeue::After(Duration::from_secs(5)));
                        }
                        return self.drift(s, Some(j));
                    }
                    s.clear_condition("Drifted");
                    s.drift_job_modify_index = None;
                    let d = self.live.deployment_for(applied).cloned();
                    self.follow(s, d.as_ref(), j)
                }
            },
        }
    }

    fn plan(&self, status: AppStatus, actions: Vec<Action>, requeue: Requeue) -> Plan {
        Plan { actions, status: Some(status), requeue, drift_detected: false }
    }

    fn register(&self, mut s: AppStatus, enforce_index: u64, reason: RegisterReason) -> Plan {
        let r = self.record;
        s.phase = Phase::Progressing;
        s.deployment = None;
        s.set_condition(
            "Ready",
            ConditionStatus::False,
            "Registering",
            format!(
                "registering job {:?} for generation {} ({})",
                r.job_id,
                r.generation,
                reason.as_str().to_lowercase()
            ),
            &self.ts,
        );
        let action = Action::Register { job: r.job.clone(), enforce_index, hash: r.hash.clone(), reason };
        self.plan(s, vec![action], Requeue::After(PROGRESS_RECHECK))
    }

    /// The job changed (or vanished) for a reason that is not Drover's own.
    fn drift(&self, mut s: AppStatus, job: Option<&LiveJob>) -> Plan {
        let live_index = job.map_or(0, |j| j.job_modify_index);
        let first_seen = s.drift_job_modify_index != Some(live_index);
        s.drift_job_modify_index = Some(live_index);
        let what = match job {
            Some(j) => format!(
                "job {:?} changed outside Drover (JobModifyIndex {} instead of the applied {})",
                j.id,
                j.job_modify_index,
                s.applied_job_modify_index.unwrap_or(0)
            ),
            None => format!("job {:?} no longer exists in Nomad", self.record.job_id),
        };
        let mut plan = match self.record.drift_policy {
            DriftPolicy::Revert => {
                s.set_condition(
                    "Drifted",
                    ConditionStatus::True,
                    "Reverted",
                    format!("{what}; driftPolicy Revert registers the desired spec again"),
                    &self.ts,
                );
                let reason = if job.is_some() { RegisterReason::RevertDrift } else { RegisterReason::Create };
                self.register(s, live_index, reason)
            }
            DriftPolicy::Report => {
                s.phase = Phase::Degraded;
                s.set_condition(
                    "Drifted",
                    ConditionStatus::True,
                    "ChangedOutsideDrover",
                    format!("{what}; driftPolicy Report leaves it as it is: run `drover diff` to see the change"),
                    &self.ts,
                );
                s.set_condition(
                    "Ready",
                    ConditionStatus::False,
                    "Drifted",
                    "see the Drifted condition".to_string(),
                    &self.ts,
                );
                self.plan(s, Vec::new(), Requeue::AwaitChange)
            }
        };
        plan.drift_detected = first_seen;
        plan
    }

    /// The applied spec is what runs: report its deployment.
    fn follow(&self, mut s: AppStatus, deployment: Option<&LiveDeployment>, job: &LiveJob) -> Plan {
        let Some(d) = deployment else {
            return self.without_deployment(s, job);
        };
        s.deployment = Some(DeploymentRef {
            id: d.id.clone(),
            status: d.status.clone(),
            description: d.description.clone(),
            job_version: d.job_version,
        });
        s.replicas = Replicas { desired: d.desired, placed: d.placed, healthy: d.healthy, canaries: d.canaries };
        let progress = format!("{}/{} healthy", d.healthy, d.desired);
        match d.status.as_str() {
            "successful" => {
                s.phase = Phase::Healthy;
                self.set_history_result(&mut s, "Healthy");
                s.set_condition(
                    "Ready",
                    ConditionStatus::True,
                    "DeploymentSucceeded",
                    format!("deployment {} of job version {} completed: {progress}", short(&d.id), d.job_version),
                    &self.ts,
                );
                self.plan(s, Vec::new(), Requeue::AwaitChange)
            }
            "failed" => {
                s.phase = Phase::Degraded;
                s.failed_hash = Some(self.record.hash.clone());
                let rolled_back = d.description.contains("rolling back to job version");
                let reason = if rolled_back { "RolledBack" } else { "DeploymentFailed" };
                self.set_history_result(&mut s, reason);
                s.set_condition(
                    "Ready",
                    ConditionStatus::False,
                    reason,
                    format!(
                        "deployment {} of job version {} failed: {}. Drover will not register this spec again until the record changes",
                        short(&d.id),
                        d.job_version,
                        d.description
                    ),
                    &self.ts,
                );
                self.plan(s, Vec::new(), Requeue::AwaitChange)
            }
            "cancelled" => {
                s.phase = Phase::Degraded;
                s.set_condition(
                    "Ready",
                    ConditionStatus::False,
                    "DeploymentCancelled",
                    format!("deployment {} was cancelled: {}", short(&d.id), d.description),
                    &self.ts,
                );
                self.plan(s, Vec::new(), Requeue::AwaitChange)
            }
            "paused" => {
                s.phase = Phase::Paused;
                s.set_condition(
                    "Ready",
                    ConditionStatus::False,
                    "DeploymentPaused",
                    format!("deployment {} is paused in Nomad ({progress}); resume it there", short(&d.id)),
                    &self.ts,
                );
                self.plan(s, Vec::new(), Requeue::AwaitChange)
            }
            _ => {
                s.phase = Phase::Progressing;
                s.set_condition(
                    "Ready",
                    ConditionStatus::False,
                    "DeploymentRunning",
                    format!(
                        "deployment {} of job version {}: {progress}; {}",
                        short(&d.id),
                        d.job_version,
                        d.description
                    ),
                    &self.ts,
                );
                self.plan(s, Vec::new(), Requeue::After(PROGRESS_RECHECK))
            }
        }
    }

    /// No deployment matches the applied version: either Nomad has not made it yet (just registered), or it will
    /// make none (identical register, empty update block).
    fn without_deployment(&self, mut s: AppStatus, job: &LiveJob) -> Plan {
        s.deployment = None;
        let since_apply = s
            .history
            .first()
            .filter(|h| Some(&h.hash) == s.applied_hash.as_ref())
            .and_then(|h| humantime::parse_rfc3339_weak(&h.at).ok())
            .and_then(|at| self.now.duration_since(at).ok());
        let waiting = s.phase == Phase::Progressing && since_apply.is_some_and(|d| d < DEPLOYMENT_GRACE);
        if waiting || job.status == "pending" {
            s.phase = Phase::Progressing;
            s.set_condition(
                "Ready",
                ConditionStatus::False,
                "AwaitingDeployment",
                format!("waiting for Nomad to schedule job {:?}", job.id),
                &self.ts,
            );
            return self.plan(s, Vec::new(), Requeue::After(Duration::from_secs(5)));
        }
        if job.status == "running" {
            s.phase = Phase::Healthy;
            self.set_history_result(&mut s, "Healthy");
            s.set_condition(
                "Ready",
                ConditionStatus::True,
                "JobRunning",
                format!("job {:?} is running; Nomad made no deployment for this version", job.id),
                &self.ts,
            );
        } else {
            s.phase = Phase::Degraded;
            s.set_condition(
                "Ready",
                ConditionStatus::False,
                "JobNotRunning",
                format!("job {:?} is {:?} and has no deployment for the applied version", job.id, job.status),
                &self.ts,
            );
        }
        self.plan(s, Vec::new(), Requeue::AwaitChange)
    }

    /// Marks how the latest apply of this spec ended.
    fn set_history_result(&self, s: &mut AppStatus, result: &str) {
        let hash = &self.record.hash;
        if let Some(h) = s.history.first_mut().filter(|h| &h.hash == hash) {
            h.result = result.to_string();
        }
    }
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
