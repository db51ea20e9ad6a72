//! The decision: a pure, total function of what was observed ([`Observed`]) to a [`Plan`]. No I/O; time is passed
//! in. It derives a [`Situation`] and matches on it exhaustively, one arm per case, each arm in the module of its
//! concern:
//! - [`ownership`]: whose job runs under the app's ID (a conflict, or a job to adopt);
//! - [`apply`]: registering the record's spec, and drift (a change Drover did not make);
//! - [`deployment`]: following what Nomad does with the applied spec until it is healthy or has failed;
//! - [`deletion`]: carrying out `deletionPolicy`, for a deleted record and for jobs left under earlier job IDs;
//! - [`scaling`]: autoscaling, once the applied spec runs: each measurement round evaluated once;
//! - [`rollout`] (with [`rollout_steps`]): canary and blue-green rollouts, their steps, promotion, abort and bake;
//! - [`controls`]: consuming `drover promote|abort|retry|pause|resume|restart`, once each.
//!
//! ```text
//!  record ─► Gone ─► dependents left ─► phase Deleting, WaitingForDependents; Nomad untouched (dependsOn)
//!                 ─► none left ──────► stop/purge per deletionPolicy (this job and retiring ones) ─► delete status
//!         ─► Unreadable ───────► report; Nomad untouched
//!         ─► Invalid ──────────► phase Invalid, every field error; Nomad untouched
//!         ─► Valid ─► Suspended ─────────► phase Suspended; Nomad untouched
//!                  ─► Conflict ──────────► phase Failed; Nomad untouched (unless adopt)
//!                  ─► Rejected / Failed spec ► Failed / Degraded until the record changes
//!                  ─► Create / Apply / Adopt ► a dependency not Healthy ─► Pending, WaitingForDependencies
//!                                            ► Register (EnforceIndex) ─► Progressing
//!                  ─► Applied ─► not yet seen ─► wait for the watch
//!                             ─► drifted ──────► Revert (register) | Report (Degraded)
//!                             ─► current ──────► follow the deployment ─► Progressing | Paused | Healthy | Degraded
//! ```

mod apply;
mod controls;
mod deletion;
mod deployment;
mod ownership;
mod rollout;
mod rollout_steps;
mod scaling;

pub use rollout::{MAX_RUNS, REVERT_DEPLOYMENT_WAIT};

use std::time::{Duration, SystemTime};

use super::plan::{Observed, Plan, RecordState, RegisterReason, Requeue};
use crate::app::{AppKey, FieldError, Record, ValidRecord};
use crate::live::{Live, LiveDeployment, LiveJob};
use crate::status::{AppStatus, ConditionStatus, ConditionType, Phase, Reason, timestamp};

/// How often a rollout in progress is looked at even without events (events normally wake it first).
pub const PROGRESS_RECHECK: Duration = Duration::from_secs(60);

/// How often Drover looks again while its own write is not yet visible in the live cache, or Nomad has not yet
/// made the deployment of a new version (the watch normally wakes the app first).
pub const AWAIT_NOMAD_RECHECK: Duration = Duration::from_secs(5);

/// How long after registering a new version Drover waits for Nomad to make its deployment before reporting
/// `DeploymentMissing`. Nomad makes it when the scheduler processes the register's evaluation, even when nothing
/// can be placed, so this bound is only reached when something is wrong; it matches Nomad's default progress
/// deadline (10 m, api-contract B12), the longest Nomad itself lets a deployment go without progress.
pub const DEPLOYMENT_MISSING_AFTER: Duration = Duration::from_secs(600);

/// How many field errors a status message lists before summarising the rest (a status must stay well below
/// Consul's 512 KiB value limit, whatever the record holds).
pub const MAX_LISTED_ERRORS: usize = 50;

/// Decides what to do for one app.
pub fn decide(o: &Observed<'_>) -> Plan {
    let ts = timestamp(o.now);
    match o.record {
        RecordState::Gone => deletion::deleted(o.owner, o.live, o.status, &o.dependencies.dependents, &ts),
        RecordState::Unreadable { reason } => unreadable(o.key, o.status, reason, &ts),
        RecordState::Present(record) => match record.as_ref() {
            Record::Invalid { generation, errors } => invalid(*generation, errors, o.status, &ts),
            Record::Valid(record) => {
                let ctx = Ctx {
                    record,
                    live: o.live,
                    measurements: o.measurements,
                    analysis: o.analysis,
                    deps: o.dependencies,
                    intent: std::cell::Cell::new(None),
                    now: o.now,
                    ts,
                };
                let mut status = ctx.prepare(o.status);
                ctx.take_control(&mut status, o.control);
                let situation = ctx.situation(&status);
                let plan = ctx.decide(situation, &mut status);
                ctx.unconsumed(ctx.retire(plan))
            }
        },
    }
}

/// Where a valid record stands against what runs. Derived first, then matched exhaustively.
#[derive(Debug)]
pub(crate) enum Situation<'a> {
    /// `spec.suspend`: hands off.
    Suspended,
    /// A job under the app's ID that is not the app's and may not be adopted.
    Conflict(&'a LiveJob),
    /// Nomad rejected this exact spec; it is not sent again until the record changes.
    RejectedSpec,
    /// This exact spec's rollout failed; it is not registered again until the record changes.
    FailedSpec,
    /// No job under the app's ID (and none was applied, or the cache shows it gone with no applied spec).
    Create,
    /// A job the record takes over: an unowned one it adopts, or one still carrying Drover 0.1's owner mark.
    Adopt(&'a LiveJob),
    /// The app's job runs another spec than the record's (or status does not say what was applied).
    Apply(&'a LiveJob, RegisterReason),
    /// Drover's last register is not visible in the live cache yet: conclude nothing.
    NotYetSeen,
    /// The applied job is gone, and the cache saw Drover's write before it went.
    Vanished,
    /// The deployment of the applied spec failed (Nomad may have auto-reverted since: not drift).
    DeploymentFailed(&'a LiveJob, &'a LiveDeployment),
    /// The deployment of Drover's own scale failed: the spec is fine, only that count did not roll out.
    ScaleFailed(&'a LiveJob, &'a LiveDeployment),
    /// The job changed while the applied spec's deployment is still active: Nomad settles it next.
    ChangedWhileDeploying(&'a LiveJob, &'a LiveDeployment),
    /// The job changed for a reason that is not Drover's own.
    Drifted(&'a LiveJob),
    /// The job runs the applied spec.
    Current(&'a LiveJob),
}

/// The inputs of a decision about a valid record.
pub(crate) struct Ctx<'a> {
    record: &'a ValidRecord,
    measurements: &'a std::collections::BTreeMap<String, crate::measure::Measurement>,
    /// The analysis stage's runs of this app.
    analysis: &'a std::collections::BTreeMap<crate::rollout::RunId, crate::rollout::AnalysisRunStatus>,
    /// Where the record's dependencies stand (`spec.dependsOn`).
    deps: &'a crate::reconcile::deps::DependencyView,
    /// A control of the current generation not yet applied or refused (see [`controls`]).
    intent: std::cell::Cell<Option<controls::Intent>>,
    live: &'a Live,
    now: SystemTime,
    ts: String,
}

impl<'a> Ctx<'a> {
    /// The stored status, brought up to the record: generation, job ID (a changed one starts retiring the old
    /// job), deletion policy, the Valid condition.
    fn prepare(&self, stored: Option<&AppStatus>) -> AppStatus {
        let r = self.record;
        let mut s = stored.cloned().unwrap_or_default();
        s.observed_generation = r.generation;
        if let Some(old) = s.job_id.clone().filter(|old| *old != r.job_id && s.applied_hash.is_some())
            && !s.retiring_job_ids.contains(&old)
        {
            s.retiring_job_ids.push(old);
        }
        s.retiring_job_ids.retain(|id| *id != r.job_id);
        s.job_id = Some(r.job_id.clone());
        s.deletion_policy = r.deletion_policy;
        s.depends_on = r.depends_on.iter().map(ToString::to_string).collect();
        self.report_dependencies(&mut s);
        if r.autoscaling.is_none() {
            s.autoscaling = None;
        }
        // Another autoscaler owns these counts: said once, as a warning; Drover never resets them (PreserveCounts).
        if r.externally_scaled.is_empty() {
            s.clear_condition(ConditionType::ExternalScaling);
        } else {
            s.set_condition(
                ConditionType::ExternalScaling,
                ConditionStatus::True,
                Reason::ExternalScalingPolicy,
                format!(
                    "group(s) {} carry Nomad's own Scaling policy: an external autoscaler owns their count, and Drover keeps whatever count it set",
                    r.externally_scaled.join(", ")
                ),
                &self.ts,
            );
        }
        s.set_condition(
            ConditionType::Valid,
            ConditionStatus::True,
            Reason::Validated,
            "the record is valid".to_string(),
            &self.ts,
        );
        s
    }

    fn situation(&self, s: &AppStatus) -> Situation<'a> {
        let r = self.record;
        let job = self.live.job.as_ref();
        if r.suspend {
            return Situation::Suspended;
        }
        if let Some(j) = job.filter(|j| ownership::is_foreign(r, j)) {
            return Situation::Conflict(j);
        }
        if s.rejected_hash.as_deref() == Some(r.hash.as_str()) {
            return Situation::RejectedSpec;
        }
        if s.failed_hash.as_deref() == Some(r.hash.as_str()) {
            return Situation::FailedSpec;
        }
        let applied_here = s.applied_hash.as_deref() == Some(r.hash.as_str());
        let applied = s.applied_job_modify_index.filter(|_| applied_here);
        match (job, applied) {
            // Drover's write is newer than anything the cache has applied: its absence proves nothing yet.
            (None, Some(a)) if self.live.index < a => Situation::NotYetSeen,
            (None, Some(_)) => Situation::Vanished,
            (None, None) => Situation::Create,
            (Some(j), _) if !j.owned_by(&r.owner) => Situation::Adopt(j),
            (Some(j), None) if s.applied_hash.is_none() || applied_here => Situation::Apply(j, RegisterReason::Refresh),
            (Some(j), None) => Situation::Apply(j, RegisterReason::Update),
            // JobModifyIndex only grows: an older one means the cache has not seen Drover's write yet.
            (Some(j), Some(a)) if j.job_modify_index < a => Situation::NotYetSeen,
            (Some(j), Some(a)) => match self.live.deployment_for(a) {
                Some(d) if d.status == crate::live::DeploymentStatus::Failed => {
                    let scaled = s
                        .history
                        .iter()
                        .find(|h| h.result != crate::status::HistoryResult::Controlled)
                        .is_some_and(|h| h.result == crate::status::HistoryResult::Scaled && h.hash == r.hash);
                    if scaled { Situation::ScaleFailed(j, d) } else { Situation::DeploymentFailed(j, d) }
                }
                Some(d) if j.job_modify_index != a && d.is_active() => Situation::ChangedWhileDeploying(j, d),
                _ if j.job_modify_index != a => Situation::Drifted(j),
                _ => Situation::Current(j),
            },
        }
    }

    fn decide(&self, situation: Situation<'a>, s: &mut AppStatus) -> Plan {
        if !matches!(situation, Situation::Suspended) {
            s.clear_condition(ConditionType::Suspended);
        }
        if !matches!(situation, Situation::Conflict(_)) {
            s.clear_condition(ConditionType::Conflict);
        }
        // A create or a new version waits for the dependencies; nothing that runs is touched meanwhile.
        let registers = matches!(situation, Situation::Create | Situation::Adopt(_) | Situation::Apply(..));
        if let Some(waiting) = self.deps.waiting_for().filter(|_| registers) {
            return self.wait_for_dependencies(s, waiting);
        }
        match situation {
            // A person asked Drover to keep its hands off.
            Situation::Suspended => self.suspended(s),
            // Someone else's job under our ID is never touched.
            Situation::Conflict(j) => self.conflict(s, j),
            // Nomad said no to this spec: sending it again cannot help.
            Situation::RejectedSpec => {
                s.phase = Phase::Failed;
                Plan::status(s.clone(), Requeue::AwaitChange)
            }
            // A verdict against the rollout is recorded: carry it out until Nomad shows it done.
            Situation::FailedSpec if s.rollout.as_ref().is_some_and(|r| r.is_ending()) => {
                self.finish_ending(s, self.live.job.as_ref())
            }
            // This spec's rollout failed: no flapping until the record changes.
            Situation::FailedSpec => {
                s.phase = Phase::Degraded;
                Plan::status(s.clone(), Requeue::AwaitChange)
            }
            Situation::Create => self.register(s, 0, RegisterReason::Create),
            Situation::Adopt(j) => self.register(s, j.job_modify_index, RegisterReason::Adopt),
            Situation::Apply(j, reason) => self.register(s, j.job_modify_index, reason),
            // Wait for the watch to show Drover's own write; deciding on older data would register again.
            Situation::NotYetSeen => self.awaiting_own_write(s),
            Situation::Vanished => self.drift(s, None),
            // Record the failure before looking at versions: a newer version may be Nomad's auto-revert.
            Situation::DeploymentFailed(j, d) => self.drive(s, d, j),
            // Judge only once Nomad settles the deployment: `failed` when the change is its own auto-revert,
            // `cancelled` when someone else registered. Otherwise a revert would be taken for drift and fought.
            Situation::ChangedWhileDeploying(j, d) => self.changed_while_deploying(s, j, d),
            // The spec is not to blame (no failed hash, no flapping guard): take what Nomad runs now — its revert of
            // the count, or the failed scale — as applied, say so, and let autoscaling go on from there (its
            // cooldown runs from the failed scale; it never scales during a deployment).
            Situation::ScaleFailed(j, d) => {
                s.applied_job_modify_index = Some(j.job_modify_index);
                s.deployment_expected = false;
                s.phase = Phase::Degraded;
                let message = format!(
                    "the deployment of Drover's scale ({}) failed: {}; the count is what Nomad runs now, and autoscaling goes on",
                    short(&d.id),
                    d.description
                );
                self.ready(s, ConditionStatus::False, Reason::DeploymentFailed, message);
                let plan = Plan::status(s.clone(), Requeue::AwaitChange);
                self.autoscale(plan, j, self.measurements)
            }
            Situation::Drifted(j) => self.drift(s, Some(j)),
            Situation::Current(j) => {
                s.clear_condition(ConditionType::Drifted);
                s.drift_job_modify_index = None;
                // The register's reply carries no version: the job as the watch shows it does.
                if s.applied_job_version.is_none() {
                    s.applied_job_version = j.version;
                }
                let hash = &self.record.hash;
                let latest = s.history.iter_mut().find(|h| h.result != crate::status::HistoryResult::Controlled);
                if let Some(h) = latest.filter(|h| &h.hash == hash && h.job_version.is_none()) {
                    h.job_version = j.version;
                }
                let applied = s.applied_job_modify_index.unwrap_or(j.job_modify_index);
                let plan = match self.live.deployment_for(applied) {
                    Some(d) => self.drive(s, d, j),
                    None => self.follow(s, None, j),
                };
                self.autoscale(plan, j, self.measurements)
            }
        }
    }

    fn suspended(&self, s: &mut AppStatus) -> Plan {
        s.phase = Phase::Suspended;
        s.set_condition(
            ConditionType::Suspended,
            ConditionStatus::True,
            Reason::SpecSuspend,
            "spec.suspend is true: Drover leaves the job alone until it is false".to_string(),
            &self.ts,
        );
        Plan::status(s.clone(), Requeue::AwaitChange)
    }

    /// Phase `Pending` until every dependency is `Healthy` at its current generation; the status says which are
    /// not. Woken when a dependency's status changes (the records store's reverse index), so no timer is needed.
    fn wait_for_dependencies(&self, s: &mut AppStatus, waiting: String) -> Plan {
        s.phase = Phase::Pending;
        let running = if self.live.job.is_some() { "; the job keeps running its current version" } else { "" };
        self.ready(s, ConditionStatus::False, Reason::WaitingForDependencies, format!("{waiting}{running}"));
        Plan::status(s.clone(), Requeue::AwaitChange)
    }

    /// The `Dependencies` condition: a cycle across records or a dependency without a record, reported whatever
    /// the app does (they are mistakes in the records); absent when neither holds.
    fn report_dependencies(&self, s: &mut AppStatus) {
        let missing = self.deps.missing();
        let (reason, message) = match (&self.deps.cycle, missing.is_empty()) {
            (Some(cycle), _) => (
                Reason::DependencyCycle,
                format!(
                    "spec.dependsOn forms the cycle {}: none of these apps can go first until one of their records changes",
                    crate::reconcile::deps::path(cycle)
                ),
            ),
            (None, false) => {
                let names: Vec<String> = missing.iter().map(ToString::to_string).collect();
                (Reason::DependencyMissing, format!("spec.dependsOn names apps without a record: {}", names.join(", ")))
            }
            (None, true) => {
                s.clear_condition(ConditionType::Dependencies);
                return;
            }
        };
        s.set_condition(ConditionType::Dependencies, ConditionStatus::False, reason, message, &self.ts);
    }

    fn ready(&self, s: &mut AppStatus, status: ConditionStatus, reason: Reason, message: String) {
        s.set_condition(ConditionType::Ready, status, reason, message, &self.ts);
    }
}

/// The record is not in the store and its key cannot be read: report it, touch nothing. The job keeps running
/// and the status stays, so a token that regains access finds everything as it was.
fn unreadable(key: &AppKey, stored: Option<&AppStatus>, reason: &str, ts: &str) -> Plan {
    let Some(stored) = stored else { return Plan::nothing() };
    let mut status = stored.clone();
    status.set_condition(
        ConditionType::Ready,
        ConditionStatus::Unknown,
        Reason::RecordUnreadable,
        format!(
            "Drover cannot read the record {key} ({reason}), so it cannot tell whether it was deleted; the job is left as it is. Grant the token key_prefix read on the records"
        ),
        ts,
    );
    Plan::status(status, Requeue::AwaitChange)
}

/// The record does not validate: report every error, touch nothing.
fn invalid(generation: u64, errors: &[FieldError], stored: Option<&AppStatus>, ts: &str) -> Plan {
    let mut status = stored.cloned().unwrap_or_default();
    status.observed_generation = generation;
    status.phase = Phase::Invalid;
    status.set_condition(
        ConditionType::Valid,
        ConditionStatus::False,
        Reason::FieldErrors,
        describe_errors(errors),
        ts,
    );
    status.set_condition(
        ConditionType::Ready,
        ConditionStatus::False,
        Reason::Invalid,
        "the record is invalid, so nothing was sent to Nomad; the job, if any, keeps its last valid spec".to_string(),
        ts,
    );
    Plan::status(status, Requeue::AwaitChange)
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

/// The first 8 characters of a deployment ID, as Nomad's CLI shows them.
pub(crate) fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

#[cfg(test)]
mod tests;
