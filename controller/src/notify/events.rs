//! Events: what changed in an app's status, derived purely from the status before and after one write.
//!
//! [`events`] compares two statuses and names each transition a person may want to hear about. It reads phases,
//! the newest history entry, conditions and the rollout's verdict — never the event that woke the reconcile — so
//! the same pair of statuses always gives the same events. Each rule, with why:
//!
//! | event              | when                                                                                   |
//! |--------------------|----------------------------------------------------------------------------------------|
//! | `RolloutStarted`   | a new history entry registers a new spec (`Created`, `Updated`, `Adopted`, or `Refreshed` of a spec the old status did not show as applied): a rollout of the generation began (the phase is then `Progressing`); a re-register that only repairs, a scale or a drift revert is not a rollout |
//! | `RolloutPaused`    | the phase turns `Paused`, or a paused rollout is paused at another step                |
//! | `RolloutCompleted` | the phase turns `Healthy`                                                              |
//! | `AnalysisFailed`   | the rollout's verdict turns `AnalysisFailed`                                           |
//! | `RolloutAborted`   | the rollout's verdict turns to another failure, or the phase turns `Degraded` because the deployment failed, was rolled back, cancelled or never made |
//! | `Scaled`           | a new history entry `Scaled` (autoscaling changed the count)                           |
//! | `Drifted`          | the `Drifted` condition turns `True`, or a new history entry `Reverted` (a later drift of an app already drifted and reverted) |
//! | `Invalid`          | the phase turns `Invalid`, or an invalid record's generation changes (a new invalid edit) |
//! | `Failed`           | the phase turns `Failed` (Nomad rejected the job, a job owned by someone else, ...)    |
//! | `SyncFailed`       | not from a status: a `drover sync --watch` sync ended `Invalid`, `Conflicted` or `Failed` ([`super::sync_event`]) |
//!
//! "Turns" means: the old status is absent or differs in that respect. Every event carries a [`DedupKey`]: the
//! app, the generation, the kind, and for kinds that can happen several times in one generation (`Scaled`,
//! `Drifted`) the time of the occurrence, or for `RolloutPaused` the rollout step, so delivery sends each occurrence
//! once.

use serde::Serialize;

use crate::app::AppKey;
use crate::rollout::status::RolloutResult;
use crate::status::{AppStatus, ConditionStatus, ConditionType, HistoryEntry, HistoryResult, Phase, Reason};

/// What happened to an app. Serialized by name, as in a notifications file's `events:` list and in payloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub enum EventKind {
    /// A rollout of a new spec began.
    RolloutStarted,
    /// A rollout waits (paused in Nomad, or at a rollout step that waits for a person).
    RolloutPaused,
    /// The app became `Healthy`: the rollout ended well.
    RolloutCompleted,
    /// A rollout ended badly: aborted, failed, rolled back or cancelled.
    RolloutAborted,
    /// A rollout's analysis failed and the rollout was aborted.
    AnalysisFailed,
    /// Autoscaling changed the count.
    Scaled,
    /// The job was changed behind Drover's back.
    Drifted,
    /// The record is invalid.
    Invalid,
    /// Drover cannot apply the record.
    Failed,
    /// A `drover sync --watch` sync failed: invalid records, a conflict, or a source or Consul it could not read
    /// (see [`super::sync_event`]; not an app's event).
    SyncFailed,
}

impl EventKind {
    /// Every kind, in the order the table in the module doc gives them.
    pub const ALL: [EventKind; 10] = [
        EventKind::RolloutStarted,
        EventKind::RolloutPaused,
        EventKind::RolloutCompleted,
        EventKind::RolloutAborted,
        EventKind::AnalysisFailed,
        EventKind::Scaled,
        EventKind::Drifted,
        EventKind::Invalid,
        EventKind::Failed,
        EventKind::SyncFailed,
    ];

    /// The kind's name, as written in files and payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RolloutStarted => "RolloutStarted",
            EventKind::RolloutPaused => "RolloutPaused",
            EventKind::RolloutCompleted => "RolloutCompleted",
            EventKind::RolloutAborted => "RolloutAborted",
            EventKind::AnalysisFailed => "AnalysisFailed",
            EventKind::Scaled => "Scaled",
            EventKind::Drifted => "Drifted",
            EventKind::Invalid => "Invalid",
            EventKind::Failed => "Failed",
            EventKind::SyncFailed => "SyncFailed",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies one occurrence of an event, so a target sends it once: per (app, generation, kind), plus the time of
/// the occurrence for kinds that can happen more than once in a generation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DedupKey {
    /// The app.
    pub app: AppKey,
    /// The record generation the status describes.
    pub generation: u64,
    /// The kind.
    pub kind: EventKind,
    /// Empty for once-per-generation kinds; the RFC 3339 time of the history entry or condition transition for
    /// `Scaled` and `Drifted`; the rollout step (`Step 2`) for `RolloutPaused` of a progressive rollout.
    pub occurrence: String,
}

/// One event, with what a person needs to read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// To which app.
    pub app: AppKey,
    /// The record generation the new status describes.
    pub generation: u64,
    /// The phase after the change.
    pub phase: Phase,
    /// The reason of the condition that explains the event (`Ready` mostly), when there is one.
    pub reason: Option<Reason>,
    /// The explanation (the condition's message, or the scale's reason).
    pub message: String,
    /// RFC 3339 time of the status write that showed the change.
    pub at: String,
    /// The occurrence, for deduplication.
    pub dedup: DedupKey,
}

/// The events between `old` (the stored status, absent for a new app) and `new` (the status just written) of `key`.
/// Pure and total: the same statuses always give the same events, at most one per kind, in [`EventKind::ALL`] order.
pub fn events(old: Option<&AppStatus>, new: &AppStatus, key: &AppKey) -> Vec<Event> {
    let mut out: Vec<(EventKind, Option<Reason>, String, String)> = Vec::new();
    let ready = new.condition(ConditionType::Ready);
    let ready_reason = ready.map(|c| c.reason);
    let ready_message = ready.map(|c| c.message.clone()).unwrap_or_default();
    let phase_turned = |phase: Phase| new.phase == phase && old.is_none_or(|o| o.phase != phase);
    let added = new_history_entry(old, new);

    // A register of a new spec is where a rollout begins; repairs, scales and reverts have their own events. A
    // `Refreshed` register starts a rollout the stored status never showed when that status did not record this spec
    // as applied (the status write after the first register failed, and the retry refreshed it).
    let starts = |h: &HistoryEntry| match h.result {
        HistoryResult::Created | HistoryResult::Updated | HistoryResult::Adopted => true,
        HistoryResult::Refreshed => old.is_none_or(|o| o.applied_hash.as_deref() != Some(h.hash.as_str())),
        _ => false,
    };
    if added.is_some_and(starts) {
        out.push((EventKind::RolloutStarted, ready_reason, ready_message.clone(), String::new()));
    }
    // Paused in Nomad, or by a rollout step: either way a person may have to act. Each step of a progressive
    // rollout that waits is a pause of its own (its step is the occurrence).
    let step = |s: &AppStatus| s.rollout.as_ref().map(|r| r.step);
    let paused_at_new_step = old.is_some_and(|o| o.phase == Phase::Paused && step(o) != step(new));
    if new.phase == Phase::Paused && (phase_turned(Phase::Paused) || paused_at_new_step) {
        let occurrence = step(new).map(|s| s.to_string()).unwrap_or_default();
        out.push((EventKind::RolloutPaused, ready_reason, ready_message.clone(), occurrence));
    }
    // Healthy is the end of every successful rollout (and of a recovery, which a person also wants to hear of).
    if phase_turned(Phase::Healthy) {
        out.push((EventKind::RolloutCompleted, ready_reason, ready_message.clone(), String::new()));
    }
    // The progressive rollout's own verdict is the most precise cause; a plain rollout's failure shows only in the
    // phase and the Ready reason.
    let verdict = new.rollout.as_ref().and_then(|r| r.result);
    let old_verdict = old.and_then(|o| o.rollout.as_ref()).and_then(|r| r.result);
    let verdict_turned = verdict.is_some() && (verdict != old_verdict || rollout_generation_changed(old, new));
    match verdict.filter(|_| verdict_turned) {
        Some(RolloutResult::AnalysisFailed) => {
            out.push((EventKind::AnalysisFailed, ready_reason, ready_message.clone(), String::new()));
        }
        Some(
            RolloutResult::Aborted
            | RolloutResult::WebhookFailed
            | RolloutResult::DeadlineExceeded
            | RolloutResult::DeploymentFailed
            | RolloutResult::RolledBack,
        ) => out.push((EventKind::RolloutAborted, ready_reason, ready_message.clone(), String::new())),
        // Success shows as Healthy; a superseded rollout continues as the next generation's.
        Some(RolloutResult::Succeeded | RolloutResult::Superseded) | None => {
            let failed_deployment = matches!(
                ready_reason,
                Some(
                    Reason::RolledBack
                        | Reason::DeploymentFailed
                        | Reason::DeploymentCancelled
                        | Reason::DeploymentMissing
                )
            );
            let was_failed = old.is_some_and(|o| {
                o.phase == Phase::Degraded && o.condition(ConditionType::Ready).map(|c| c.reason) == ready_reason
            });
            if new.phase == Phase::Degraded && failed_deployment && !was_failed {
                out.push((EventKind::RolloutAborted, ready_reason, ready_message.clone(), String::new()));
            }
        }
    }
    if let Some(h) = added.filter(|h| h.result == HistoryResult::Scaled) {
        let message = new.autoscaling.as_ref().and_then(|a| a.last_reason.clone()).unwrap_or_default();
        out.push((EventKind::Scaled, ready_reason, message, h.at.clone()));
    }
    // Drift: the condition turning True catches Report and a first Revert; a new `Reverted` entry catches a later
    // drift of an app whose condition is still True from the last one.
    let drifted = new.condition(ConditionType::Drifted).filter(|c| c.status == ConditionStatus::True);
    let was_drifted =
        old.and_then(|o| o.condition(ConditionType::Drifted)).is_some_and(|c| c.status == ConditionStatus::True);
    let reverted = added.filter(|h| h.result == HistoryResult::Reverted);
    if let Some(c) = drifted.filter(|_| !was_drifted || reverted.is_some()) {
        let occurrence = reverted.map_or_else(|| c.last_transition_time.clone(), |h| h.at.clone());
        out.push((EventKind::Drifted, Some(c.reason), c.message.clone(), occurrence));
    }
    // Each new invalid generation is news: the person's fix did not work.
    if new.phase == Phase::Invalid
        && old.is_none_or(|o| o.phase != Phase::Invalid || o.observed_generation != new.observed_generation)
    {
        let valid = new.condition(ConditionType::Valid);
        let reason = valid.map(|c| c.reason).or(ready_reason);
        let message = valid.map_or_else(|| ready_message.clone(), |c| c.message.clone());
        out.push((EventKind::Invalid, reason, message, String::new()));
    }
    if phase_turned(Phase::Failed) {
        out.push((EventKind::Failed, ready_reason, ready_message, String::new()));
    }
    out.into_iter()
        .map(|(kind, reason, message, occurrence)| Event {
            kind,
            app: key.clone(),
            generation: new.observed_generation,
            phase: new.phase,
            reason,
            message,
            at: new.updated_at.clone(),
            dedup: DedupKey { app: key.clone(), generation: new.observed_generation, kind, occurrence },
        })
        .collect()
}

/// The newest history entry of `new` when `old` did not have it (compared without `result`, which a rollout's end
/// rewrites in place).
fn new_history_entry<'a>(old: Option<&AppStatus>, new: &'a AppStatus) -> Option<&'a HistoryEntry> {
    let newest = new.history.first()?;
    let same = |h: &HistoryEntry| h.generation == newest.generation && h.hash == newest.hash && h.at == newest.at;
    match old.and_then(|o| o.history.first()) {
        Some(h) if same(h) => None,
        _ => Some(newest),
    }
}

/// True when the rollout in `new` is for another generation than the one in `old`: a verdict equal to the last
/// rollout's is still a new verdict.
fn rollout_generation_changed(old: Option<&AppStatus>, new: &AppStatus) -> bool {
    let generation = |s: &AppStatus| s.rollout.as_ref().map(|r| r.generation);
    old.is_none_or(|o| generation(o) != generation(new))
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
