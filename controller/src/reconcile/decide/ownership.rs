//! Whose job runs under the app's ID. Drover never modifies or deletes a job whose owner mark is not the record's
//! (DESIGN §3); `adopt: true` takes over a job that carries no owner mark, never one another app (or another
//! installation) owns, since two records would then fight over it.

use super::{Ctx, Plan};
use crate::app::ValidRecord;
use crate::live::LiveJob;
use crate::reconcile::plan::Requeue;
use crate::status::{AppStatus, ConditionStatus, ConditionType, Phase, Reason};

/// True when `job` is neither the record's nor adoptable by it.
pub(super) fn is_foreign(record: &ValidRecord, job: &LiveJob) -> bool {
    let adoptable = record.adopt && job.owner.is_none();
    !record.marks_own(job) && !adoptable
}

impl Ctx<'_> {
    /// Someone else's job under the app's ID: phase Failed, with a condition naming the holder; Nomad untouched.
    pub(super) fn conflict(&self, s: &mut AppStatus, job: &LiveJob) -> Plan {
        s.phase = Phase::Failed;
        let (reason, holder) = match job.owner.as_deref() {
            Some(owner) => (Reason::OwnedByAnotherApp, format!("owned by {owner}")),
            None => (Reason::UnownedJob, "no Drover owner".to_string()),
        };
        s.set_condition(
            ConditionType::Conflict,
            ConditionStatus::True,
            reason,
            format!(
                "job {:?} in namespace {:?} already exists ({holder}); Drover will not touch it. Set spec.adopt: true to take over a job without an owner, or give the app another job ID",
                job.key.id, job.key.namespace
            ),
            &self.ts,
        );
        self.ready(s, ConditionStatus::False, Reason::Conflict, "see the Conflict condition".to_string());
        Plan::status(s.clone(), Requeue::AwaitChange)
    }
}
