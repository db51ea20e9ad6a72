//! Carrying out `deletionPolicy`: for a record proven gone (its job and any job left under an earlier job ID), and
//! for the jobs an app ran under earlier job IDs once it is healthy under its new one. Only jobs that carry the
//! app's owner value are ever stopped or purged, and the executor re-checks that on a fresh read just before.

use super::Ctx;
use crate::app::AppKey;
use crate::live::{Live, LiveJob};
use crate::reconcile::deps::DependentState;
use crate::reconcile::plan::{Action, Plan, Requeue};
use crate::status::{AppStatus, ConditionStatus, ConditionType, ObservedDeletionPolicy, Phase, Reason};

/// What `policy` asks for `job`, if anything is left to do.
fn retire(policy: ObservedDeletionPolicy, job: &LiveJob, owner: &str) -> Option<Action> {
    let purge = match policy {
        // Orphan: the job keeps running, unmanaged.
        ObservedDeletionPolicy::Orphan => return None,
        // Stop: only if it still runs; a stopped job is already where the policy wants it.
        ObservedDeletionPolicy::Stop if job.stop => return None,
        ObservedDeletionPolicy::Stop => false,
        // Purge: also removes a job that is already stopped.
        ObservedDeletionPolicy::Purge => true,
    };
    Some(Action::Deregister { job_id: job.key.id.clone(), owner: owner.to_string(), purge })
}

/// The record is proven gone: carry out the deletion policy recorded in status on the app's job and on every job
/// it is still retiring, then forget the app.
pub(super) fn deleted(
    owner: &str,
    live: &Live,
    stored: Option<&AppStatus>,
    dependents: &[(AppKey, DependentState)],
    ts: &str,
) -> Plan {
    // No status either: Drover never managed this key (or already finished deleting it).
    let Some(stored) = stored else { return Plan::nothing() };
    let mut status = stored.clone();
    status.phase = Phase::Deleting;
    // Drover's last write is not in the cache yet (a create followed at once by a delete): its absence proves
    // nothing, so wait for the watch rather than forget a job that runs.
    if live.job.is_none() && status.applied_job_modify_index.is_some_and(|a| a > live.index) {
        return Plan::status(status, Requeue::After(super::AWAIT_NOMAD_RECHECK));
    }
    let mut actions: Vec<Action> = live
        .job
        .iter()
        .chain(live.retiring.iter())
        .filter(|j| j.owned_by(owner))
        .filter_map(|j| retire(status.deletion_policy, j, owner))
        .collect();
    // Deletion goes in reverse order: apps that depend on this one go first. Each dependent's status change (its
    // record edited, its own deletion done) wakes this app again. A deletion that stops nothing (orphan, or no job
    // left running) takes nothing from a dependent, so it does not wait.
    if !actions.is_empty() && !dependents.is_empty() {
        status.set_condition(
            ConditionType::Ready,
            ConditionStatus::False,
            Reason::WaitingForDependents,
            format!(
                "the record is deleted; its deletionPolicy waits until the apps depending on it are gone: {}",
                crate::reconcile::deps::describe_dependents(dependents)
            ),
            ts,
        );
        return Plan::status(status, Requeue::AwaitChange);
    }
    actions.push(Action::DeleteStatus);
    Plan { actions, status: Some(status), requeue: Requeue::AwaitChange, drift_detected: false, evaluated: None }
}

impl Ctx<'_> {
    /// The record's job ID changed: once the app is healthy under its new ID (and nothing else is being written),
    /// each job it ran before is stopped (or purged) as its `deletionPolicy` says, and forgotten once that is done
    /// or the job is gone or no longer ours. Creating the new job first keeps the app serving.
    pub(super) fn retire(&self, mut plan: Plan) -> Plan {
        let Some(s) = plan.status.as_mut() else { return plan };
        if s.retiring_job_ids.is_empty() || s.phase != Phase::Healthy || !plan.actions.is_empty() {
            return plan;
        }
        let owner = &self.record.owner;
        let policy = self.record.deletion_policy;
        let mut keep = Vec::new();
        for id in std::mem::take(&mut s.retiring_job_ids) {
            let job = self.live.retiring.iter().find(|j| j.key.id == id && j.owned_by(owner));
            if let Some(action) = job.and_then(|j| retire(policy, j, owner)) {
                plan.actions.push(action);
                keep.push(id);
            }
        }
        s.retiring_job_ids = keep;
        plan
    }
}
