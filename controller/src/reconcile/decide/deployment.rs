//! Following what Nomad does with the applied spec: its deployment (matched by the `JobModifyIndex` Drover's
//! register produced, api-contract B13) until it succeeds or fails, or — for a spec Nomad makes no deployment for —
//! the job's own status. Drover's waits follow Nomad's own deadlines (the deployment's progress deadline); Drover
//! adds no grace window of its own that could end a wait before Nomad does.

use super::{AWAIT_NOMAD_RECHECK, Ctx, DEPLOYMENT_MISSING_AFTER, PROGRESS_RECHECK, short};
use crate::live::{DeploymentOutcome, DeploymentStatus, JobStatus, LiveDeployment, LiveJob};
use crate::reconcile::plan::{Plan, Requeue};
use crate::status::{AppStatus, ConditionStatus, DeploymentRef, HistoryResult, Phase, Reason, Replicas};

impl Ctx<'_> {
    /// The applied spec is what runs (or what Nomad just reverted from): report its deployment.
    pub(super) fn follow(&self, s: &mut AppStatus, deployment: Option<&LiveDeployment>, job: &LiveJob) -> Plan {
        let Some(d) = deployment else {
            return self.without_deployment(s, job);
        };
        s.deployment_expected = false;
        s.deployment = Some(DeploymentRef {
            id: d.id.clone(),
            status: d.status.as_str().to_string(),
            description: d.description.clone(),
            job_version: d.job_version,
        });
        s.replicas = Replicas { desired: d.desired, placed: d.placed, healthy: d.healthy, canaries: d.canaries };
        let progress = format!("{}/{} healthy", d.healthy, d.desired);
        let id = short(&d.id);
        match d.outcome() {
            DeploymentOutcome::Successful => {
                s.phase = Phase::Healthy;
                self.set_history_result(s, HistoryResult::Healthy);
                let message = format!("deployment {id} of job version {} completed: {progress}", d.job_version);
                self.ready(s, ConditionStatus::True, Reason::DeploymentSucceeded, message);
                Plan::status(s.clone(), Requeue::AwaitChange)
            }
            outcome @ (DeploymentOutcome::RolledBack | DeploymentOutcome::Failed) => {
                let (reason, result) = if outcome == DeploymentOutcome::RolledBack {
                    (Reason::RolledBack, HistoryResult::RolledBack)
                } else {
                    (Reason::DeploymentFailed, HistoryResult::DeploymentFailed)
                };
                s.phase = Phase::Degraded;
                s.failed_hash = Some(self.record.hash.clone());
                self.set_history_result(s, result);
                let message = format!(
                    "deployment {id} of job version {} failed: {}. Drover will not register this spec again until the record changes",
                    d.job_version, d.description
                );
                self.ready(s, ConditionStatus::False, reason, message);
                Plan::status(s.clone(), Requeue::AwaitChange)
            }
            DeploymentOutcome::Cancelled => {
                s.phase = Phase::Degraded;
                let message = format!("deployment {id} was cancelled: {}", d.description);
                self.ready(s, ConditionStatus::False, Reason::DeploymentCancelled, message);
                Plan::status(s.clone(), Requeue::AwaitChange)
            }
            DeploymentOutcome::Active if d.status == DeploymentStatus::Paused => {
                s.phase = Phase::Paused;
                let message = format!("deployment {id} is paused in Nomad ({progress}); resume it there");
                self.ready(s, ConditionStatus::False, Reason::DeploymentPaused, message);
                Plan::status(s.clone(), Requeue::AwaitChange)
            }
            // Nothing placed for longer than the job's progress deadline: Nomad never fails such a deployment (its
            // deadline starts at the first placement), so Drover gives the verdict; capacity arriving resumes it.
            DeploymentOutcome::Active
                if d.placed == 0 && self.since_apply(s).is_some_and(|t| t >= self.record.progress_deadline) =>
            {
                s.phase = Phase::Degraded;
                let message = format!(
                    "deployment {id} has placed no allocation in {}: no node has room for them (`nomad job status {}` shows the blocked evaluation); it resumes when capacity appears",
                    humantime::format_duration(self.record.progress_deadline),
                    job.key.id
                );
                self.ready(s, ConditionStatus::False, Reason::PlacementStalled, message);
                Plan::status(s.clone(), Requeue::AwaitChange)
            }
            DeploymentOutcome::Active => {
                s.phase = Phase::Progressing;
                let message =
                    format!("deployment {id} of job version {}: {progress}; {}", d.job_version, d.description);
                self.ready(s, ConditionStatus::False, Reason::DeploymentRunning, message);
                Plan::status(s.clone(), Requeue::After(PROGRESS_RECHECK))
            }
        }
    }

    /// No deployment matches the applied version: Nomad has not made it yet (a new version with an update
    /// strategy always gets one), or makes none for this spec (identical register, no update strategy), in which
    /// case the job's status tells.
    fn without_deployment(&self, s: &mut AppStatus, job: &LiveJob) -> Plan {
        s.deployment = None;
        if s.deployment_expected {
            if self.since_apply(s).is_none_or(|d| d < DEPLOYMENT_MISSING_AFTER) {
                s.phase = Phase::Progressing;
                let message = format!("waiting for Nomad to make the deployment of job {:?}", job.key.id);
                self.ready(s, ConditionStatus::False, Reason::AwaitingDeployment, message);
                return Plan::status(s.clone(), Requeue::After(AWAIT_NOMAD_RECHECK));
            }
            s.phase = Phase::Degraded;
            let message = format!(
                "Nomad made no deployment for the new version of job {:?} within {}; check its evaluations (`nomad job status {}`)",
                job.key.id,
                humantime::format_duration(DEPLOYMENT_MISSING_AFTER),
                job.key.id
            );
            self.ready(s, ConditionStatus::False, Reason::DeploymentMissing, message);
            return Plan::status(s.clone(), Requeue::AwaitChange);
        }
        match &job.status {
            JobStatus::Running => {
                s.phase = Phase::Healthy;
                self.set_history_result(s, HistoryResult::Healthy);
                let message = format!("job {:?} is running; Nomad makes no deployment for this spec", job.key.id);
                self.ready(s, ConditionStatus::True, Reason::JobRunning, message);
            }
            JobStatus::Pending => {
                s.phase = Phase::Progressing;
                let message = format!("job {:?} is pending: Nomad has not placed its allocations yet", job.key.id);
                self.ready(s, ConditionStatus::False, Reason::JobPending, message);
            }
            JobStatus::Dead | JobStatus::Unknown(_) => {
                s.phase = Phase::Degraded;
                let message = format!(
                    "job {:?} is {} and has no deployment for the applied spec",
                    job.key.id,
                    job.status.as_str()
                );
                self.ready(s, ConditionStatus::False, Reason::JobNotRunning, message);
            }
        }
        Plan::status(s.clone(), Requeue::AwaitChange)
    }

    /// How long ago the applied spec was registered (the newest history entry, by Drover's clock).
    fn since_apply(&self, s: &AppStatus) -> Option<std::time::Duration> {
        s.history
            .iter()
            .find(|h| h.result != HistoryResult::Controlled)
            .filter(|h| Some(&h.hash) == s.applied_hash.as_ref())
            .and_then(|h| crate::status::parse_timestamp(&h.at))
            .and_then(|at| self.now.duration_since(at).ok())
    }

    /// Marks how the latest apply of this spec ended (a scale keeps its own entry: history keeps scale events).
    fn set_history_result(&self, s: &mut AppStatus, result: HistoryResult) {
        let hash = &self.record.hash;
        let latest = s.history.iter_mut().find(|h| h.result != HistoryResult::Controlled);
        if let Some(h) = latest.filter(|h| &h.hash == hash && h.result != HistoryResult::Scaled) {
            h.result = result;
        }
    }
}
