//! Consuming controls (`drover promote|abort|retry|pause|resume|restart`, contract 3 of issue #8): each control is
//! consumed once, by its Consul `ModifyIndex` (kept in `status.lastControl`), applied or ignored with the reason. A
//! control names the generation it is for, so a stale one never acts on a newer spec; it never edits the record, so
//! a GitOps rewrite of the record never undoes it.
//!
//! `retry` acts here, before the situation is derived (it lifts "no flapping"); the others become an [`Intent`]
//! that the rollout driver applies if the rollout is where the action makes sense. An intent nobody applied is
//! consumed as ignored at the end of the decision ([`Ctx::unconsumed`]), so no control waits forever.

use super::Ctx;
use crate::reconcile::plan::Plan;
use crate::rollout::{ConsumedControl, ControlAction, ControlEntry, StoredControl};
use crate::status::{AppStatus, ConditionStatus, ConditionType, HistoryEntry, HistoryResult, Reason};

/// A control of the current generation, waiting for the rollout driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Intent {
    /// What was asked.
    pub action: ControlAction,
    /// The control key's `ModifyIndex`.
    pub modify_index: u64,
    /// The generation it named (the record's).
    pub generation: u64,
}

impl Ctx<'_> {
    /// Reads the app's control: reports an unreadable one, consumes a stale one as ignored, carries out `retry`,
    /// and leaves any other action of the current generation as the pending intent.
    pub(super) fn take_control(&self, s: &mut AppStatus, entry: Option<&ControlEntry>) {
        let control = match entry {
            None => {
                s.clear_condition(ConditionType::Control);
                return;
            }
            Some(Err(why)) => {
                s.set_condition(
                    ConditionType::Control,
                    ConditionStatus::True,
                    Reason::ControlUnreadable,
                    format!("the app's control is not a valid control and is ignored: {why}"),
                    &self.ts,
                );
                return;
            }
            Some(Ok(c)) => c,
        };
        s.clear_condition(ConditionType::Control);
        if s.last_control.as_ref().is_some_and(|l| l.modify_index >= control.modify_index) {
            return;
        }
        let generation = self.record.generation;
        let action = control.control.action;
        if control.control.generation != generation {
            let message = format!(
                "{} for generation {} ignored: the record is at generation {generation} (a control never acts on a newer spec than the one it was written for)",
                action.as_str(),
                control.control.generation
            );
            self.consume(s, control, false, message);
            return;
        }
        if action == ControlAction::Retry {
            let failed = s.failed_hash.as_deref() == Some(self.record.hash.as_str());
            if failed && !s.rollout.as_ref().is_some_and(|r| r.is_ending()) {
                // Lift "no flapping": forget the failure and what was applied, so the spec is registered again
                // (a Refresh against the live job, whatever Nomad reverted to).
                s.failed_hash = None;
                s.applied_job_modify_index = None;
                s.rollout = None;
                self.consume(s, control, true, "retry: the failed spec is registered again".to_string());
            } else {
                let why = if failed { "its abort is still being carried out" } else { "its rollout did not fail" };
                self.consume(s, control, false, format!("retry ignored: the spec has nothing to retry ({why})"));
            }
            return;
        }
        self.intent.set(Some(Intent { action, modify_index: control.modify_index, generation }));
    }

    /// The pending intent, taken by whoever applies (or refuses) it.
    pub(super) fn take_intent(&self) -> Option<Intent> {
        self.intent.take()
    }

    /// Records that the control was consumed: `lastControl`, and a history entry when it was applied.
    pub(super) fn consume(&self, s: &mut AppStatus, control: &StoredControl, applied: bool, message: String) {
        self.record_consumed(
            s,
            control.control.action,
            control.modify_index,
            control.control.generation,
            applied,
            message,
        );
    }

    /// Records the consumption of an intent.
    pub(super) fn consume_intent(&self, s: &mut AppStatus, intent: Intent, applied: bool, message: String) {
        self.record_consumed(s, intent.action, intent.modify_index, intent.generation, applied, message);
    }

    fn record_consumed(
        &self,
        s: &mut AppStatus,
        action: ControlAction,
        modify_index: u64,
        generation: u64,
        applied: bool,
        message: String,
    ) {
        s.last_control =
            Some(ConsumedControl { modify_index, action, generation, applied, message, at: self.ts.clone() });
        if applied {
            s.push_history(HistoryEntry {
                generation,
                hash: self.record.hash.clone(),
                job_version: None,
                result: HistoryResult::Controlled,
                at: self.ts.clone(),
            });
        }
    }

    /// A control the decision had no use for (no rollout where it could act) is consumed as ignored, saying where
    /// the app stood.
    pub(super) fn unconsumed(&self, mut plan: Plan) -> Plan {
        let Some(intent) = self.take_intent() else { return plan };
        let Some(s) = plan.status.as_mut() else { return plan };
        let message = format!(
            "{} ignored: no rollout step it applies to (the app is {})",
            intent.action.as_str(),
            s.phase.as_str()
        );
        self.consume_intent(s, intent, false, message);
        plan
    }
}
