//! Tests of [`super::events`]: one per rule of the table, each with the transition that must not fire it.

use super::*;
use crate::rollout::RolloutStatus;
use crate::status::AutoscalingStatus;

fn key() -> AppKey {
    AppKey::new("default", "web")
}

/// A status at `generation` in `phase`, written at `t`.
fn status(generation: u64, phase: Phase, t: &str) -> AppStatus {
    AppStatus { observed_generation: generation, phase, updated_at: t.into(), ..AppStatus::default() }
}

fn with_ready(mut s: AppStatus, reason: Reason, message: &str) -> AppStatus {
    let status = if s.phase == Phase::Healthy { ConditionStatus::True } else { ConditionStatus::False };
    s.set_condition(ConditionType::Ready, status, reason, message.into(), &s.updated_at.clone());
    s
}

fn with_history(mut s: AppStatus, result: HistoryResult, hash: &str, at: &str) -> AppStatus {
    s.push_history(HistoryEntry {
        generation: s.observed_generation,
        hash: hash.into(),
        job_version: None,
        result,
        at: at.into(),
    });
    s
}

fn with_verdict(mut s: AppStatus, rollout_generation: u64, result: Option<RolloutResult>) -> AppStatus {
    s.rollout = Some(RolloutStatus { generation: rollout_generation, result, ..RolloutStatus::default() });
    s
}

fn with_drift(mut s: AppStatus, status: ConditionStatus, reason: Reason, at: &str) -> AppStatus {
    s.set_condition(ConditionType::Drifted, status, reason, "job changed by hand".into(), at);
    s
}

fn kinds(old: Option<&AppStatus>, new: &AppStatus) -> Vec<EventKind> {
    events(old, new, &key()).into_iter().map(|e| e.kind).collect()
}

/// The statuses of a rollout's life, used by the rules below and by the "nothing changed" invariant.
fn progressing(generation: u64, result: HistoryResult, hash: &str, t: &str) -> AppStatus {
    let s = with_history(status(generation, Phase::Progressing, t), result, hash, t);
    with_ready(s, Reason::DeploymentRunning, "deployment 1234: 0/2 healthy")
}

#[test]
fn events_should_report_nothing_for_a_new_app_that_is_only_pending() {
    assert_eq!(kinds(None, &status(5, Phase::Pending, "t1")), vec![]);
}

#[test]
fn events_should_report_rollout_started_when_a_new_spec_is_registered() {
    let pending = status(5, Phase::Pending, "t1");
    let started = progressing(5, HistoryResult::Created, "h1", "t2");
    let events = events(Some(&pending), &started, &key());
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!((e.kind, e.generation, e.phase), (EventKind::RolloutStarted, 5, Phase::Progressing));
    assert_eq!(e.reason, Some(Reason::DeploymentRunning));
    assert_eq!(e.message, "deployment 1234: 0/2 healthy");
    assert_eq!(e.at, "t2");
    assert_eq!(e.dedup, DedupKey { app: key(), generation: 5, kind: EventKind::RolloutStarted, occurrence: "".into() });
    // A brand-new app whose first written status already registered.
    assert_eq!(kinds(None, &started), vec![EventKind::RolloutStarted]);
    // An update of a healthy app to a new generation, and an adoption.
    let healthy = with_ready(status(5, Phase::Healthy, "t3"), Reason::DeploymentSucceeded, "ok");
    let healthy = with_history(healthy, HistoryResult::Healthy, "h1", "t2");
    assert_eq!(
        kinds(Some(&healthy), &progressing(9, HistoryResult::Updated, "h2", "t4")),
        vec![EventKind::RolloutStarted]
    );
    assert_eq!(
        kinds(Some(&pending), &progressing(5, HistoryResult::Adopted, "h1", "t2")),
        vec![EventKind::RolloutStarted]
    );
}

#[test]
fn events_should_not_report_rollout_started_for_a_repair_a_scale_or_a_revert() {
    let mut healthy = with_history(status(5, Phase::Healthy, "t1"), HistoryResult::Healthy, "h1", "t0");
    healthy.applied_hash = Some("h1".into());
    assert_eq!(kinds(Some(&healthy), &progressing(5, HistoryResult::Refreshed, "h1", "t2")), vec![]);
    let scaled = progressing(5, HistoryResult::Scaled, "h2", "t2");
    assert_eq!(kinds(Some(&healthy), &scaled), vec![EventKind::Scaled]);
    let reverted =
        with_drift(progressing(5, HistoryResult::Reverted, "h1", "t2"), ConditionStatus::True, Reason::Reverted, "t2");
    assert_eq!(kinds(Some(&healthy), &reverted), vec![EventKind::Drifted]);
}

#[test]
fn events_should_report_rollout_started_for_a_refresh_of_a_spec_the_old_status_never_showed_applied() {
    // The status write after the first register failed; the retry refreshes the register and writes the status.
    assert_eq!(kinds(None, &progressing(5, HistoryResult::Refreshed, "h1", "t2")), vec![EventKind::RolloutStarted]);
    let pending = status(5, Phase::Pending, "t1");
    assert_eq!(
        kinds(Some(&pending), &progressing(5, HistoryResult::Refreshed, "h1", "t2")),
        vec![EventKind::RolloutStarted]
    );
}

#[test]
fn events_should_not_repeat_rollout_started_while_the_same_rollout_progresses() {
    let started = progressing(5, HistoryResult::Created, "h1", "t2");
    let mut later = started.clone();
    later.updated_at = "t3".into();
    later.replicas.healthy = 1;
    assert_eq!(kinds(Some(&started), &later), vec![]);
}

#[test]
fn events_should_report_rollout_completed_when_the_phase_turns_healthy() {
    let started = progressing(5, HistoryResult::Created, "h1", "t2");
    let mut done = with_ready(started.clone(), Reason::DeploymentSucceeded, "deployment 1234 completed: 2/2 healthy");
    done.phase = Phase::Healthy;
    done.updated_at = "t3".into();
    done.history[0].result = HistoryResult::Healthy;
    let events = events(Some(&started), &done, &key());
    assert_eq!(events.iter().map(|e| e.kind).collect::<Vec<_>>(), vec![EventKind::RolloutCompleted]);
    assert_eq!(events[0].reason, Some(Reason::DeploymentSucceeded));
    assert_eq!(events[0].message, "deployment 1234 completed: 2/2 healthy");
    // Healthy again (a resync that only aged it, or a new generation that changed nothing to run) is not news.
    let mut again = done.clone();
    again.observed_generation = 6;
    assert_eq!(kinds(Some(&done), &again), vec![]);
}

#[test]
fn events_should_report_rollout_paused_once() {
    let started = progressing(5, HistoryResult::Created, "h1", "t2");
    let mut paused = with_ready(started.clone(), Reason::DeploymentPaused, "paused in Nomad");
    paused.phase = Phase::Paused;
    assert_eq!(kinds(Some(&started), &paused), vec![EventKind::RolloutPaused]);
    assert_eq!(kinds(Some(&paused), &paused), vec![]);
}

#[test]
fn events_should_report_each_paused_step_of_a_progressive_rollout() {
    use crate::rollout::StepRef;
    let at_step = |n: u32| {
        let mut s = with_verdict(status(5, Phase::Paused, "t"), 5, None);
        if let Some(r) = s.rollout.as_mut() {
            r.step = StepRef::Step(n);
        }
        s
    };
    let running = with_verdict(progressing(5, HistoryResult::Created, "h1", "t2"), 5, None);
    let first = events(Some(&running), &at_step(0), &key());
    assert_eq!(first.iter().map(|e| e.kind).collect::<Vec<_>>(), vec![EventKind::RolloutPaused]);
    assert_eq!(first[0].dedup.occurrence, "Step 1");
    // Promoted from step 1 straight into the pause of step 2: a new pause, with its own occurrence.
    let second = events(Some(&at_step(0)), &at_step(1), &key());
    assert_eq!(
        second.iter().map(|e| (e.kind, e.dedup.occurrence.as_str())).collect::<Vec<_>>(),
        vec![(EventKind::RolloutPaused, "Step 2")]
    );
    assert_eq!(kinds(Some(&at_step(1)), &at_step(1)), vec![]);
}

#[test]
fn events_should_report_rollout_aborted_when_a_deployment_fails_rolls_back_is_cancelled_or_missing() {
    let started = progressing(5, HistoryResult::Created, "h1", "t2");
    for reason in [Reason::RolledBack, Reason::DeploymentFailed, Reason::DeploymentCancelled, Reason::DeploymentMissing]
    {
        let mut failed = with_ready(started.clone(), reason, "deployment failed");
        failed.phase = Phase::Degraded;
        let events = events(Some(&started), &failed, &key());
        assert_eq!(events.iter().map(|e| e.kind).collect::<Vec<_>>(), vec![EventKind::RolloutAborted], "{reason}");
        assert_eq!(events[0].reason, Some(reason));
        assert_eq!(kinds(Some(&failed), &failed), vec![], "{reason}: not again while it stays so");
    }
}

#[test]
fn events_should_not_report_rollout_aborted_for_a_degraded_app_whose_rollout_did_not_fail() {
    let started = progressing(5, HistoryResult::Created, "h1", "t2");
    for reason in [Reason::PlacementStalled, Reason::JobNotRunning] {
        let mut degraded = with_ready(started.clone(), reason, "waiting");
        degraded.phase = Phase::Degraded;
        assert_eq!(kinds(Some(&started), &degraded), vec![], "{reason}");
    }
}

#[test]
fn events_should_report_analysis_failed_from_the_rollout_verdict_once_per_rollout() {
    let running = with_verdict(progressing(5, HistoryResult::Created, "h1", "t2"), 5, None);
    let mut failed = with_verdict(running.clone(), 5, Some(RolloutResult::AnalysisFailed));
    failed.phase = Phase::Degraded;
    let failed = with_ready(failed, Reason::RolledBack, "analysis error-rate failed");
    // One event, the precise one: not also RolloutAborted for the Degraded phase.
    assert_eq!(kinds(Some(&running), &failed), vec![EventKind::AnalysisFailed]);
    assert_eq!(kinds(Some(&failed), &failed), vec![]);
    // The next generation's rollout failing the same way is a new verdict.
    let mut next = with_verdict(failed.clone(), 6, Some(RolloutResult::AnalysisFailed));
    next.observed_generation = 6;
    assert_eq!(kinds(Some(&failed), &next), vec![EventKind::AnalysisFailed]);
}

#[test]
fn events_should_report_rollout_aborted_for_every_failed_verdict_but_not_success_or_supersession() {
    let running = with_verdict(progressing(5, HistoryResult::Created, "h1", "t2"), 5, None);
    for verdict in [
        RolloutResult::Aborted,
        RolloutResult::WebhookFailed,
        RolloutResult::DeadlineExceeded,
        RolloutResult::DeploymentFailed,
        RolloutResult::RolledBack,
    ] {
        let ended = with_verdict(running.clone(), 5, Some(verdict));
        assert_eq!(kinds(Some(&running), &ended), vec![EventKind::RolloutAborted], "{verdict:?}");
    }
    for verdict in [RolloutResult::Succeeded, RolloutResult::Superseded] {
        let ended = with_verdict(running.clone(), 5, Some(verdict));
        assert_eq!(kinds(Some(&running), &ended), vec![], "{verdict:?}");
    }
}

#[test]
fn events_should_report_each_scale_with_its_own_occurrence() {
    let healthy = with_history(status(5, Phase::Healthy, "t1"), HistoryResult::Healthy, "h1", "t0");
    let mut first = with_history(healthy.clone(), HistoryResult::Scaled, "h2", "t2");
    first.autoscaling =
        Some(AutoscalingStatus { last_reason: Some("cpu 83 > target 70 (+2)".into()), ..Default::default() });
    let events1 = events(Some(&healthy), &first, &key());
    assert_eq!(events1.iter().map(|e| e.kind).collect::<Vec<_>>(), vec![EventKind::Scaled]);
    assert_eq!(events1[0].message, "cpu 83 > target 70 (+2)");
    assert_eq!(events1[0].dedup.occurrence, "t2");
    let second = with_history(first.clone(), HistoryResult::Scaled, "h1", "t3");
    let events2 = events(Some(&first), &second, &key());
    assert_eq!(events2.len(), 1);
    assert_ne!(events1[0].dedup, events2[0].dedup, "two scales in one generation are two notifications");
    // The scale's deployment ending rewrites the entry's result: not a new scale.
    let mut settled = second.clone();
    settled.history[0].result = HistoryResult::Healthy;
    assert_eq!(kinds(Some(&second), &settled), vec![]);
}

#[test]
fn events_should_report_drift_when_the_condition_turns_true_or_a_revert_is_recorded() {
    let healthy = with_history(status(5, Phase::Healthy, "t1"), HistoryResult::Healthy, "h1", "t0");
    let mut reported = with_drift(healthy.clone(), ConditionStatus::True, Reason::ChangedOutsideDrover, "t2");
    reported.phase = Phase::Degraded;
    let reported = with_ready(reported, Reason::Drifted, "see Drifted");
    let events1 = events(Some(&healthy), &reported, &key());
    assert_eq!(events1.iter().map(|e| e.kind).collect::<Vec<_>>(), vec![EventKind::Drifted]);
    assert_eq!(events1[0].reason, Some(Reason::ChangedOutsideDrover));
    assert_eq!(events1[0].message, "job changed by hand");
    assert_eq!(kinds(Some(&reported), &reported), vec![]);
    // Revert: the condition stays True across drifts; each revert's history entry is a new drift.
    let reverted1 = with_drift(
        with_history(healthy.clone(), HistoryResult::Reverted, "h1", "t2"),
        ConditionStatus::True,
        Reason::Reverted,
        "t2",
    );
    let mut healthy_again = reverted1.clone();
    healthy_again.history[0].result = HistoryResult::Healthy;
    let reverted2 = with_history(healthy_again.clone(), HistoryResult::Reverted, "h1", "t5");
    let a = events(Some(&healthy), &reverted1, &key());
    let b = events(Some(&healthy_again), &reverted2, &key());
    assert_eq!((a.len(), b.len()), (1, 1), "{a:?} {b:?}");
    assert_eq!((a[0].kind, b[0].kind), (EventKind::Drifted, EventKind::Drifted));
    assert_ne!(a[0].dedup, b[0].dedup);
    // The condition going False is not a drift.
    let cleared = with_drift(reported.clone(), ConditionStatus::False, Reason::Reverted, "t9");
    assert_eq!(kinds(Some(&reported), &cleared), vec![]);
}

#[test]
fn events_should_report_invalid_once_per_invalid_generation() {
    let mut invalid = status(5, Phase::Invalid, "t1");
    invalid.set_condition(
        ConditionType::Valid,
        ConditionStatus::False,
        Reason::FieldErrors,
        "spec.template.count: must be >= 0".into(),
        "t1",
    );
    let invalid = with_ready(invalid, Reason::Invalid, "invalid");
    let e = events(None, &invalid, &key());
    assert_eq!(e.iter().map(|e| e.kind).collect::<Vec<_>>(), vec![EventKind::Invalid]);
    assert_eq!(e[0].reason, Some(Reason::FieldErrors));
    assert_eq!(e[0].message, "spec.template.count: must be >= 0");
    assert_eq!(kinds(Some(&invalid), &invalid), vec![]);
    let mut edited = invalid.clone();
    edited.observed_generation = 6;
    assert_eq!(kinds(Some(&invalid), &edited), vec![EventKind::Invalid]);
}

#[test]
fn events_should_report_failed_when_the_phase_turns_failed() {
    let started = progressing(5, HistoryResult::Created, "h1", "t2");
    let mut failed = with_ready(started.clone(), Reason::NomadRejected, "Nomad rejected the rendered job");
    failed.phase = Phase::Failed;
    assert_eq!(kinds(Some(&started), &failed), vec![EventKind::Failed]);
    assert_eq!(kinds(Some(&failed), &failed), vec![]);
}

#[test]
fn events_should_report_nothing_when_a_status_is_compared_with_itself() {
    // Every status the tests above build: a write that changed nothing the rules read is never news.
    let mut samples = vec![
        status(1, Phase::Pending, "t"),
        progressing(1, HistoryResult::Created, "h", "t"),
        with_verdict(status(1, Phase::Degraded, "t"), 1, Some(RolloutResult::AnalysisFailed)),
        with_drift(status(1, Phase::Degraded, "t"), ConditionStatus::True, Reason::ChangedOutsideDrover, "t"),
        with_history(status(1, Phase::Healthy, "t"), HistoryResult::Scaled, "h", "t"),
    ];
    for phase in [Phase::Paused, Phase::Healthy, Phase::Invalid, Phase::Failed, Phase::Suspended, Phase::Deleting] {
        samples.push(with_ready(status(1, phase, "t"), Reason::DeploymentFailed, "m"));
    }
    for s in &samples {
        assert_eq!(kinds(Some(s), s), vec![], "{s:?}");
    }
}

#[test]
fn events_should_give_at_most_one_event_per_kind() {
    // Everything at once: a new app whose first status is invalid, failed-verdict, drifted... still one per kind.
    let mut s = with_verdict(progressing(1, HistoryResult::Scaled, "h", "t"), 1, Some(RolloutResult::Aborted));
    s = with_drift(s, ConditionStatus::True, Reason::ChangedOutsideDrover, "t");
    s.phase = Phase::Degraded;
    s = with_ready(s, Reason::RolledBack, "m");
    let got = kinds(None, &s);
    let mut unique = got.clone();
    unique.dedup();
    assert_eq!(got, unique);
    assert_eq!(got, vec![EventKind::RolloutAborted, EventKind::Scaled, EventKind::Drifted]);
}

#[test]
fn event_kind_names_should_match_their_serde_names() {
    for kind in EventKind::ALL {
        assert_eq!(serde_json::to_value(kind).ok(), Some(serde_json::Value::String(kind.as_str().into())));
    }
}
