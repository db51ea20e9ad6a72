//! Every arm of `decide`, as sentences.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::app::{AppKey, DriftPolicy, FieldError};
use crate::live::{Live, LiveDeployment, LiveJob, OWNER_META_KEY};
use crate::reconcile::{Action, Record, RegisterReason, Requeue, ValidRecord};
use crate::status::{AppStatus, HistoryEntry, ObservedDeletionPolicy, Phase};

fn key() -> AppKey {
    AppKey::new("default", "web")
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn record() -> ValidRecord {
    ValidRecord {
        generation: 10,
        job_id: "web".into(),
        hash: "h2".into(),
        job: Arc::new(serde_json::json!({"ID": "web", "Meta": {OWNER_META_KEY: "default/web"}})),
        suspend: false,
        adopt: false,
        deletion_policy: ObservedDeletionPolicy::Stop,
        drift_policy: DriftPolicy::Revert,
    }
}

fn valid(r: ValidRecord) -> Record {
    Record::Valid(Arc::new(r))
}

fn job(jmi: u64) -> LiveJob {
    LiveJob {
        namespace: "default".into(),
        id: "web".into(),
        owner: Some("default/web".into()),
        version: Some(3),
        job_modify_index: jmi,
        modify_index: jmi,
        stop: false,
        status: "running".into(),
    }
}

fn deployment(jmi: u64, status: &str, description: &str) -> LiveDeployment {
    LiveDeployment {
        id: "0123456789abcdef".into(),
        job_version: 3,
        job_spec_modify_index: jmi,
        create_index: jmi + 1,
        status: status.into(),
        description: description.into(),
        desired: 3,
        placed: 3,
        healthy: if status == "successful" { 3 } else { 1 },
        canaries: 0,
    }
}

fn live(job: Option<LiveJob>, deployments: Vec<LiveDeployment>) -> Live {
    Live { job, deployments, previous: None }
}

/// A status saying spec `hash` was applied at `jmi`.
fn applied(hash: &str, jmi: u64) -> AppStatus {
    AppStatus {
        observed_generation: 10,
        phase: Phase::Healthy,
        applied_hash: Some(hash.into()),
        applied_job_version: Some(3),
        applied_job_modify_index: Some(jmi),
        history: vec![HistoryEntry {
            generation: 10,
            hash: hash.into(),
            job_version: Some(3),
            result: "Updated".into(),
            at: crate::status::timestamp(now() - Duration::from_secs(600)),
        }],
        ..AppStatus::default()
    }
}

fn registers(plan: &crate::reconcile::Plan) -> Vec<(u64, RegisterReason)> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            Action::Register { enforce_index, reason, .. } => Some((*enforce_index, *reason)),
            _ => None,
        })
        .collect()
}

fn phase(plan: &crate::reconcile::Plan) -> Phase {
    plan.status.as_ref().map(|s| s.phase).expect("a status")
}

fn reason(plan: &crate::reconcile::Plan, type_: &str) -> String {
    plan.status.as_ref().and_then(|s| s.condition(type_)).map(|c| c.reason.clone()).unwrap_or_default()
}

#[test]
fn decide_should_create_a_missing_job_with_enforce_index_zero() {
    let plan = decide(&key(), &valid(record()), &Live::default(), None, now());
    assert_eq!(registers(&plan), vec![(0, RegisterReason::Create)]);
    assert_eq!(phase(&plan), Phase::Progressing);
    assert_eq!(plan.status.as_ref().map(|s| s.observed_generation), Some(10));
}

#[test]
fn decide_should_update_when_the_hash_changed_enforcing_the_live_index() {
    let plan = decide(&key(), &valid(record()), &live(Some(job(40)), vec![]), Some(&applied("h1", 40)), now());
    assert_eq!(registers(&plan), vec![(40, RegisterReason::Update)]);
    assert_eq!(phase(&plan), Phase::Progressing);
}

#[test]
fn decide_should_do_nothing_when_converged_and_healthy() {
    let l = live(Some(job(40)), vec![deployment(40, "successful", "Deployment completed successfully")]);
    let stored = applied("h2", 40);
    let plan = decide(&key(), &valid(record()), &l, Some(&stored), now());
    assert!(plan.actions.is_empty());
    assert_eq!(phase(&plan), Phase::Healthy);
    assert_eq!(plan.requeue, Requeue::AwaitChange);
    // Deciding again from the recorded status changes nothing: a converged app writes nothing.
    let again = decide(&key(), &valid(record()), &l, plan.status.as_ref(), now() + Duration::from_secs(300));
    assert!(again.actions.is_empty());
    assert!(again.status.as_ref().zip(plan.status.as_ref()).is_some_and(|(a, b)| a.eq_ignoring_time(b)));
}

#[test]
fn decide_should_report_progress_while_the_deployment_runs() {
    let l = live(Some(job(40)), vec![deployment(40, "running", "Deployment is running")]);
    let plan = decide(&key(), &valid(record()), &l, Some(&applied("h2", 40)), now());
    assert!(plan.actions.is_empty());
    assert_eq!(phase(&plan), Phase::Progressing);
    assert_eq!(reason(&plan, "Ready"), "DeploymentRunning");
    assert!(matches!(plan.requeue, Requeue::After(_)));
    assert_eq!(plan.status.as_ref().map(|s| s.replicas.healthy), Some(1));
}

#[test]
fn decide_should_mark_a_failed_deployment_degraded_and_remember_the_spec() {
    let l = live(Some(job(40)), vec![deployment(40, "failed", "Failed due to progress deadline")]);
    let plan = decide(&key(), &valid(record()), &l, Some(&applied("h2", 40)), now());
    assert!(plan.actions.is_empty());
    assert_eq!(phase(&plan), Phase::Degraded);
    assert_eq!(reason(&plan, "Ready"), "DeploymentFailed");
    assert_eq!(plan.status.as_ref().and_then(|s| s.failed_hash.clone()), Some("h2".into()));
}

#[test]
fn decide_should_treat_an_auto_revert_as_a_rollback_not_drift() {
    // Nomad failed our version (jmi 40) and re-registered the stable one as jmi 45.
    let l = live(
        Some(job(45)),
        vec![
            deployment(45, "running", "Deployment is running"),
            deployment(40, "failed", "Failed due to unhealthy allocations - rolling back to job version 2"),
        ],
    );
    let plan = decide(&key(), &valid(record()), &l, Some(&applied("h2", 40)), now());
    assert!(plan.actions.is_empty(), "the failed spec must not be registered again: {:?}", plan.actions);
    assert!(!plan.drift_detected);
    assert_eq!(reason(&plan, "Ready"), "RolledBack");
    // And afterwards, the failed spec stays unapplied while the record is unchanged.
    let later = decide(&key(), &valid(record()), &l, plan.status.as_ref(), now());
    assert!(later.actions.is_empty());
    assert_eq!(phase(&later), Phase::Degraded);
}

#[test]
fn decide_should_register_again_once_a_failed_record_changes() {
    let mut stored = applied("h1", 40);
    stored.failed_hash = Some("h1".into());
    let plan = decide(&key(), &valid(record()), &live(Some(job(45)), vec![]), Some(&stored), now());
    assert_eq!(registers(&plan), vec![(45, RegisterReason::Update)]);
}

#[test]
fn decide_should_revert_drift_when_policy_is_revert() {
    let plan = decide(&key(), &valid(record()), &live(Some(job(50)), vec![]), Some(&applied("h2", 40)), now());
    assert_eq!(registers(&plan), vec![(50, RegisterReason::RevertDrift)]);
    assert!(plan.drift_detected);
    assert_eq!(reason(&plan, "Drifted"), "Reverted");
}

#[test]
fn decide_should_only_report_drift_when_policy_is_report() {
    let r = ValidRecord { drift_policy: DriftPolicy::Report, ..record() };
    let plan = decide(&key(), &valid(r.clone()), &live(Some(job(50)), vec![]), Some(&applied("h2", 40)), now());
    assert!(plan.actions.is_empty());
    assert_eq!(phase(&plan), Phase::Degraded);
    assert_eq!(reason(&plan, "Drifted"), "ChangedOutsideDrover");
    assert!(plan.drift_detected);
    // The same drift is counted once.
    let again = decide(&key(), &valid(r), &live(Some(job(50)), vec![]), plan.status.as_ref(), now());
    assert!(!again.drift_detected);
}

#[test]
fn decide_should_recreate_a_job_deleted_behind_its_back() {
    let plan = decide(&key(), &valid(record()), &Live::default(), Some(&applied("h2", 40)), now());
    assert_eq!(registers(&plan), vec![(0, RegisterReason::Create)]);
    assert!(plan.drift_detected);
}

#[test]
fn decide_should_never_touch_an_unowned_job() {
    let mut j = job(40);
    j.owner = None;
    let plan = decide(&key(), &valid(record()), &live(Some(j.clone()), vec![]), None, now());
    assert!(plan.actions.is_empty());
    assert_eq!(phase(&plan), Phase::Failed);
    assert_eq!(reason(&plan, "Conflict"), "UnownedJob");
    // Owned by another record is just as untouchable.
    j.owner = Some("default/other".into());
    let plan = decide(&key(), &valid(record()), &live(Some(j), vec![]), None, now());
    assert!(plan.actions.is_empty());
    assert_eq!(reason(&plan, "Conflict"), "OwnedByAnotherApp");
}

#[test]
fn decide_should_adopt_an_unowned_job_when_asked() {
    let mut j = job(40);
    j.owner = None;
    let r = ValidRecord { adopt: true, ..record() };
    let plan = decide(&key(), &valid(r.clone()), &live(Some(j.clone()), vec![]), None, now());
    assert_eq!(registers(&plan), vec![(40, RegisterReason::Adopt)]);
    // A job another record owns is never adopted.
    j.owner = Some("default/other".into());
    let plan = decide(&key(), &valid(r), &live(Some(j), vec![]), None, now());
    assert!(plan.actions.is_empty());
    assert_eq!(reason(&plan, "Conflict"), "OwnedByAnotherApp");
}

#[test]
fn decide_should_leave_a_suspended_app_alone() {
    let r = ValidRecord { suspend: true, ..record() };
    let plan = decide(&key(), &valid(r), &live(Some(job(50)), vec![]), Some(&applied("h1", 40)), now());
    assert!(plan.actions.is_empty());
    assert_eq!(phase(&plan), Phase::Suspended);
}

#[test]
fn decide_should_report_every_field_error_and_touch_nothing() {
    let errors = Arc::new(vec![FieldError::new("metadata.name", "bad"), FieldError::new("spec.template.count", "neg")]);
    let plan = decide(&key(), &Record::Invalid { generation: 11, errors }, &live(Some(job(40)), vec![]), None, now());
    assert!(plan.actions.is_empty());
    assert_eq!(phase(&plan), Phase::Invalid);
    let msg = plan.status.as_ref().and_then(|s| s.condition("Valid")).map(|c| c.message.clone()).unwrap_or_default();
    assert!(msg.contains("metadata.name: bad") && msg.contains("spec.template.count: neg"), "{msg}");
}

#[test]
fn describe_errors_should_cap_the_list() {
    let errors: Vec<FieldError> = (0..500).map(|i| FieldError::new(format!("f{i}"), "x")).collect();
    let msg = describe_errors(&errors);
    assert!(msg.starts_with("500 errors"));
    assert!(msg.ends_with("and 450 more"), "{msg}");
}

#[test]
fn decide_should_refresh_when_status_was_lost() {
    let plan = decide(&key(), &valid(record()), &live(Some(job(40)), vec![]), None, now());
    assert_eq!(registers(&plan), vec![(40, RegisterReason::Refresh)]);
}

#[test]
fn decide_should_wait_for_the_deployment_right_after_a_register() {
    let mut stored = applied("h2", 40);
    stored.phase = Phase::Progressing;
    stored.history[0].at = crate::status::timestamp(now() - Duration::from_secs(2));
    let plan = decide(&key(), &valid(record()), &live(Some(job(40)), vec![]), Some(&stored), now());
    assert!(plan.actions.is_empty());
    assert_eq!(phase(&plan), Phase::Progressing);
    assert_eq!(reason(&plan, "Ready"), "AwaitingDeployment");
}

#[test]
fn decide_should_call_a_running_job_without_deployment_healthy_after_the_grace() {
    let mut stored = applied("h2", 40);
    stored.phase = Phase::Progressing;
    let plan = decide(&key(), &valid(record()), &live(Some(job(40)), vec![]), Some(&stored), now());
    assert_eq!(phase(&plan), Phase::Healthy);
    assert_eq!(reason(&plan, "Ready"), "JobRunning");
}

#[test]
fn decide_should_report_a_paused_or_cancelled_deployment() {
    let paused = live(Some(job(40)), vec![deployment(40, "paused", "Deployment is paused")]);
    assert_eq!(phase(&decide(&key(), &valid(record()), &paused, Some(&applied("h2", 40)), now())), Phase::Paused);
    let cancelled = live(Some(job(40)), vec![deployment(40, "cancelled", "Cancelled because job is stopped")]);
    let plan = decide(&key(), &valid(record()), &cancelled, Some(&applied("h2", 40)), now());
    assert_eq!(phase(&plan), Phase::Degraded);
    assert_eq!(reason(&plan, "Ready"), "DeploymentCancelled");
}

#[test]
fn decide_should_stop_an_owned_job_when_the_record_is_deleted() {
    let plan = decide(&key(), &Record::Absent, &live(Some(job(40)), vec![]), Some(&applied("h2", 40)), now());
    assert_eq!(plan.actions, vec![Action::Deregister { job_id: "web".into(), purge: false }, Action::DeleteStatus]);
}

#[test]
fn decide_should_follow_each_deletion_policy() {
    let mut stored = applied("h2", 40);
    stored.deletion_policy = ObservedDeletionPolicy::Purge;
    let plan = decide(&key(), &Record::Absent, &live(Some(job(40)), vec![]), Some(&stored), now());
    assert_eq!(plan.actions, vec![Action::Deregister { job_id: "web".into(), purge: true }, Action::DeleteStatus]);
    stored.deletion_policy = ObservedDeletionPolicy::Orphan;
    let plan = decide(&key(), &Record::Absent, &live(Some(job(40)), vec![]), Some(&stored), now());
    assert_eq!(plan.actions, vec![Action::DeleteStatus]);
    // A job that is already stopped is not stopped again.
    stored.deletion_policy = ObservedDeletionPolicy::Stop;
    let mut stopped = job(41);
    stopped.stop = true;
    let plan = decide(&key(), &Record::Absent, &live(Some(stopped), vec![]), Some(&stored), now());
    assert_eq!(plan.actions, vec![Action::DeleteStatus]);
}

#[test]
fn decide_should_not_stop_someone_elses_job_on_deletion() {
    let mut j = job(40);
    j.owner = Some("default/other".into());
    let plan = decide(&key(), &Record::Absent, &live(Some(j), vec![]), Some(&applied("h2", 40)), now());
    assert_eq!(plan.actions, vec![Action::DeleteStatus]);
}

#[test]
fn decide_should_forget_a_key_with_neither_record_nor_status() {
    let plan = decide(&key(), &Record::Absent, &live(Some(job(40)), vec![]), None, now());
    assert!(plan.actions.is_empty());
    assert!(plan.status.is_none());
}

#[test]
fn decide_should_wait_for_its_deployment_to_settle_before_calling_a_change_drift() {
    // Nomad auto-reverted (jmi 45) but the failure of our deployment (jmi 40) is not in the cache yet.
    let l = live(Some(job(45)), vec![deployment(40, "running", "Deployment is running")]);
    let plan = decide(&key(), &valid(record()), &l, Some(&applied("h2", 40)), now());
    assert!(plan.actions.is_empty(), "must not fight what may be Nomad's auto-revert: {:?}", plan.actions);
    assert!(!plan.drift_detected);
    assert_eq!(reason(&plan, "Ready"), "AwaitingDeployment");
    // Once Nomad settles it as cancelled (someone else registered), it is drift.
    let l = live(Some(job(45)), vec![deployment(40, "cancelled", "Cancelled due to newer version of job")]);
    let plan = decide(&key(), &valid(record()), &l, Some(&applied("h2", 40)), now());
    assert_eq!(registers(&plan), vec![(45, RegisterReason::RevertDrift)]);
}

#[test]
fn decide_should_call_a_dead_job_without_deployment_degraded() {
    let mut dead = job(40);
    dead.status = "dead".into();
    let plan = decide(&key(), &valid(record()), &live(Some(dead), vec![]), Some(&applied("h2", 40)), now());
    assert!(plan.actions.is_empty());
    assert_eq!(phase(&plan), Phase::Degraded);
    assert_eq!(reason(&plan, "Ready"), "JobNotRunning");
}

/// A status for an app that ran as job `old` and is being moved to `web`.
fn renamed(jmi: u64) -> AppStatus {
    let mut s = applied("h2", jmi);
    s.job_id = Some("web".into());
    s.retiring_job_id = Some("old".into());
    s
}

fn old_job(stop: bool) -> LiveJob {
    LiveJob { id: "old".into(), stop, ..job(20) }
}

#[test]
fn decide_should_create_the_new_job_and_remember_the_old_one_when_the_job_id_changes() {
    let mut stored = applied("h1", 20);
    stored.job_id = Some("old".into());
    let plan = decide(&key(), &valid(record()), &Live::default(), Some(&stored), now());
    assert_eq!(registers(&plan), vec![(0, RegisterReason::Create)], "the new job first, so the app keeps serving");
    assert_eq!(plan.status.as_ref().and_then(|s| s.retiring_job_id.clone()), Some("old".into()));
}

#[test]
fn decide_should_stop_the_old_job_once_the_renamed_app_is_healthy() {
    let mut l = live(Some(job(40)), vec![deployment(40, "running", "Deployment is running")]);
    l.previous = Some(old_job(false));
    let plan = decide(&key(), &valid(record()), &l, Some(&renamed(40)), now());
    assert!(plan.actions.is_empty(), "nothing is stopped while the new job is not healthy yet");
    l.deployments = vec![deployment(40, "successful", "Deployment completed successfully")];
    let plan = decide(&key(), &valid(record()), &l, Some(&renamed(40)), now());
    assert_eq!(plan.actions, vec![Action::Deregister { job_id: "old".into(), purge: false }]);
    // Once it is stopped, it is forgotten.
    l.previous = Some(old_job(true));
    let plan = decide(&key(), &valid(record()), &l, plan.status.as_ref(), now());
    assert!(plan.actions.is_empty());
    assert_eq!(plan.status.as_ref().and_then(|s| s.retiring_job_id.clone()), None);
}

#[test]
fn decide_should_follow_the_deletion_policy_for_the_old_job() {
    let mut l = live(Some(job(40)), vec![deployment(40, "successful", "Deployment completed successfully")]);
    l.previous = Some(old_job(false));
    let orphan = ValidRecord { deletion_policy: ObservedDeletionPolicy::Orphan, ..record() };
    let plan = decide(&key(), &valid(orphan), &l, Some(&renamed(40)), now());
    assert!(plan.actions.is_empty());
    assert_eq!(plan.status.as_ref().and_then(|s| s.retiring_job_id.clone()), None);
    let purge = ValidRecord { deletion_policy: ObservedDeletionPolicy::Purge, ..record() };
    let plan = decide(&key(), &valid(purge), &l, Some(&renamed(40)), now());
    assert_eq!(plan.actions, vec![Action::Deregister { job_id: "old".into(), purge: true }]);
    // A job under the old ID that is not ours is never touched.
    l.previous = Some(LiveJob { owner: Some("default/other".into()), ..old_job(false) });
    let plan = decide(&key(), &valid(record()), &l, Some(&renamed(40)), now());
    assert!(plan.actions.is_empty());
    assert_eq!(plan.status.as_ref().and_then(|s| s.retiring_job_id.clone()), None);
}
