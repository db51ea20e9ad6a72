//! Registering the record's spec, and drift: a job change Drover did not make (DESIGN §3). Drover's own writes
//! are recognised by the `JobModifyIndex` its register produced, Nomad's auto-revert by the failed deployment
//! (see [`super::deployment`]); anything else is drift, reverted or reported per `driftPolicy`.

use super::{AWAIT_NOMAD_RECHECK, Ctx, PROGRESS_RECHECK, short};
use crate::app::DriftPolicy;
use crate::live::{LiveDeployment, LiveJob};
use crate::reconcile::plan::{Action, Plan, RegisterReason, Requeue};
use crate::status::{AppStatus, ConditionStatus, ConditionType, Phase, Reason};

impl Ctx<'_> {
    /// Register the record's job, conditioned on `enforce_index` (0: only if it does not exist).
    pub(super) fn register(&self, s: &mut AppStatus, enforce_index: u64, reason: RegisterReason) -> Plan {
        let r = self.record;
        s.phase = Phase::Progressing;
        s.deployment = None;
        // A rollout still being ended (its spec's failure being carried out) is replaced by the new register: Nomad
        // cancels its deployment.
        if let Some(ro) = s.rollout.as_mut().filter(|ro| ro.is_ending()) {
            ro.step = crate::rollout::StepRef::Done;
            ro.result = Some(crate::rollout::RolloutResult::Superseded);
        }
        self.ready(
            s,
            ConditionStatus::False,
            Reason::Registering,
            format!("registering job {:?} for generation {} ({})", r.job_id, r.generation, reason.as_str()),
        );
        // While an autoscaler owns a count (Drover's, or Nomad's own `Scaling` policy for an external one), an
        // existing job keeps its live count for those groups: a deploy never resets it, and Drover never fights
        // the autoscaler. The live counts are copied into the job (api-contract B4's advice): `PreserveCounts`
        // would keep every group's count and make a new version even when nothing else changed. Only when the
        // cache does not know the counts (a relist's stubs) is `PreserveCounts` the fallback.
        let mut owned: Vec<&str> = r.externally_scaled.iter().map(String::as_str).collect();
        if let Some(policy) = &r.autoscaling {
            owned.push(&policy.group);
        }
        let live_counts = self.live.job.as_ref().and_then(|j| j.counts.as_ref());
        let mut job = r.job.value();
        let preserve_counts = match (owned.is_empty() || enforce_index == 0, live_counts) {
            (true, _) => false,
            (false, Some(counts)) => {
                set_counts(&mut job, &owned, counts);
                false
            }
            (false, None) => true,
        };
        let job = std::sync::Arc::new(job);
        let action = Action::Register { job, enforce_index, hash: r.hash.clone(), reason, preserve_counts };
        Plan {
            actions: vec![action],
            status: Some(s.clone()),
            requeue: Requeue::After(PROGRESS_RECHECK),
            drift_detected: false,
            evaluated: None,
        }
    }

    /// Drover's last write is not in the live cache yet.
    pub(super) fn awaiting_own_write(&self, s: &mut AppStatus) -> Plan {
        s.phase = Phase::Progressing;
        self.ready(
            s,
            ConditionStatus::False,
            Reason::AwaitingDeployment,
            format!("waiting for Nomad to show the register of job {:?}", self.record.job_id),
        );
        Plan::status(s.clone(), Requeue::After(AWAIT_NOMAD_RECHECK))
    }

    /// The job changed while the applied spec's deployment is active: wait for Nomad to settle the deployment.
    pub(super) fn changed_while_deploying(&self, s: &mut AppStatus, job: &LiveJob, d: &LiveDeployment) -> Plan {
        s.phase = Phase::Progressing;
        self.ready(
            s,
            ConditionStatus::False,
            Reason::AwaitingDeployment,
            format!(
                "job {:?} changed while deployment {} was running; waiting for Nomad to settle it",
                job.key.id,
                short(&d.id)
            ),
        );
        Plan::status(s.clone(), Requeue::After(AWAIT_NOMAD_RECHECK))
    }

    /// The job changed (or vanished) for a reason that is not Drover's own.
    pub(super) fn drift(&self, s: &mut AppStatus, job: Option<&LiveJob>) -> Plan {
        let live_index = job.map_or(0, |j| j.job_modify_index);
        let first_seen = s.drift_job_modify_index != Some(live_index);
        s.drift_job_modify_index = Some(live_index);
        let what = match job {
            Some(j) => format!(
                "job {:?} changed outside Drover (JobModifyIndex {} instead of the applied {})",
                j.key.id,
                j.job_modify_index,
                s.applied_job_modify_index.unwrap_or(0)
            ),
            None => format!("job {:?} no longer exists in Nomad", self.record.job_id),
        };
        let mut plan = match self.record.drift_policy {
            DriftPolicy::Revert => {
                s.set_condition(
                    ConditionType::Drifted,
                    ConditionStatus::True,
                    Reason::Reverted,
                    format!("{what}; driftPolicy Revert registers the desired spec again"),
                    &self.ts,
                );
                let reason = if job.is_some() { RegisterReason::RevertDrift } else { RegisterReason::Create };
                self.register(s, live_index, reason)
            }
            DriftPolicy::Report => {
                s.phase = Phase::Degraded;
                s.set_condition(
                    ConditionType::Drifted,
                    ConditionStatus::True,
                    Reason::ChangedOutsideDrover,
                    format!("{what}; driftPolicy Report leaves it as it is: run `drover diff` to see the change"),
                    &self.ts,
                );
                self.ready(s, ConditionStatus::False, Reason::Drifted, "see the Drifted condition".to_string());
                Plan::status(s.clone(), Requeue::AwaitChange)
            }
        };
        plan.drift_detected = first_seen;
        plan
    }
}

/// Sets the live count of each group in `groups` in `job`.
fn set_counts(job: &mut serde_json::Value, groups: &[&str], counts: &std::collections::BTreeMap<String, u64>) {
    for g in job.get_mut("TaskGroups").and_then(serde_json::Value::as_array_mut).into_iter().flatten() {
        let name = g.get("Name").and_then(serde_json::Value::as_str).unwrap_or_default().to_string();
        if let Some(count) = counts.get(&name).filter(|_| groups.contains(&name.as_str())) {
            g["Count"] = serde_json::Value::from(*count);
        }
    }
}
