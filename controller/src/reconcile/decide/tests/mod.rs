//! Every arm of `decide`, as sentences.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::app::{AppKey, DriftPolicy, FieldError, Record, ValidRecord};
use crate::live::{DeploymentStatus, JobKey, JobStatus, Live, LiveDeployment, LiveJob, OWNER_META_KEY};
use crate::reconcile::plan::{Action, Observed, Plan, RecordState, RegisterReason, Requeue};
use crate::status::{AppStatus, ConditionType, HistoryEntry, HistoryResult, ObservedDeletionPolicy, Phase, Reason};

const OWNER: &str = "drover/apps/default/web";
const OTHER: &str = "drover/apps/default/other";

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
        job: crate::app::JobJson::new(&serde_json::json!({"ID": "web", "Meta": {OWNER_META_KEY: OWNER}})),
        owner: OWNER.into(),
        legacy_owner: Some("default/web".into()),
        expects_deployment: true,
        progress_deadline: Duration::from_secs(600),
        autoscaling: None,
        externally_scaled: Vec::new(),
        suspend: false,
        adopt: false,
        deletion_policy: ObservedDeletionPolicy::Stop,
        drift_policy: DriftPolicy::Revert,
        strategy: Arc::default(),
        analysis: Arc::default(),
        depends_on: Vec::new(),
    }
}

fn valid(r: ValidRecord) -> RecordState {
    RecordState::Present(Arc::new(Record::Valid(Arc::new(r))))
}

/// Runs the decision at `at`, with no dependency.
fn decide_at(record: &RecordState, live: &Live, status: Option<&AppStatus>, at: SystemTime) -> Plan {
    decide_with_deps(record, live, status, &crate::reconcile::deps::DependencyView::none(), at)
}

/// Runs the decision at `at` with the dependency view `deps`.
fn decide_with_deps(
    record: &RecordState,
    live: &Live,
    status: Option<&AppStatus>,
    deps: &crate::reconcile::deps::DependencyView,
    at: SystemTime,
) -> Plan {
    decide(&Observed {
        key: &key(),
        owner: OWNER,
        record,
        live,
        status,
        measurements: &BTreeMap::new(),
        analysis: &BTreeMap::new(),
        control: None,
        dependencies: deps,
        now: at,
    })
}

fn run(record: &RecordState, live: &Live, status: Option<&AppStatus>) -> Plan {
    decide_at(record, live, status, now())
}

fn job(jmi: u64) -> LiveJob {
    LiveJob {
        key: JobKey::new("default", "web"),
        owner: Some(OWNER.into()),
        version: Some(3),
        job_modify_index: jmi,
        modify_index: jmi,
        stop: false,
        status: JobStatus::Running,
        counts: None,
    }
}

fn deployment(jmi: u64, status: DeploymentStatus, description: &str) -> LiveDeployment {
    LiveDeployment {
        id: "0123456789abcdef".into(),
        job_version: 3,
        job_spec_modify_index: jmi,
        create_index: jmi + 1,
        modify_index: jmi + 1,
        healthy: if status == DeploymentStatus::Successful { 3 } else { 1 },
        status,
        description: description.into(),
        desired: 3,
        placed: 3,
        canaries: 0,
        groups: Default::default(),
    }
}

fn live(job: Option<LiveJob>, deployments: Vec<LiveDeployment>) -> Live {
    let index =
        job.as_ref().map_or(0, |j| j.modify_index).max(deployments.iter().map(|d| d.modify_index).max().unwrap_or(0));
    Live { job, deployments, retiring: Vec::new(), index }
}

/// A status saying spec `hash` was applied at `jmi`, ten minutes ago.
fn applied(hash: &str, jmi: u64) -> AppStatus {
    AppStatus {
        observed_generation: 10,
        phase: Phase::Healthy,
        job_id: Some("web".into()),
        applied_hash: Some(hash.into()),
        applied_job_version: Some(3),
        applied_job_modify_index: Some(jmi),
        history: vec![HistoryEntry {
            generation: 10,
            hash: hash.into(),
            job_version: Some(3),
            result: HistoryResult::Updated,
            at: crate::status::timestamp(now() - Duration::from_secs(600)),
        }],
        ..AppStatus::default()
    }
}

fn registers(plan: &Plan) -> Vec<(u64, RegisterReason)> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            Action::Register { enforce_index, reason, .. } => Some((*enforce_index, *reason)),
            _ => None,
        })
        .collect()
}

fn phase(plan: &Plan) -> Phase {
    plan.status.as_ref().map(|s| s.phase).expect("a status")
}

fn reason(plan: &Plan, type_: ConditionType) -> Option<Reason> {
    plan.status.as_ref().and_then(|s| s.condition(type_)).map(|c| c.reason)
}

fn stop(id: &str, purge: bool) -> Action {
    Action::Deregister { job_id: id.into(), owner: OWNER.into(), purge }
}

#[test]
fn decide_should_create_a_missing_job_with_enforce_index_zero() {
    let plan = run(&valid(record()), &Live::default(), None);
    assert_eq!(registers(&plan), vec![(0, RegisterReason::Create)]);
    assert_eq!(phase(&plan), Phase::Progressing);
    assert_eq!(plan.status.as_ref().map(|s| s.observed_generation), Some(10));
}

#[test]
fn decide_should_update_when_the_hash_changed_enforcing_the_live_index() {
    let plan = run(&valid(record()), &live(Some(job(40)), vec![]), Some(&applied("h1", 40)));
    assert_eq!(registers(&plan), vec![(40, RegisterReason::Update)]);
    assert_eq!(phase(&plan), Phase::Progressing);
}

#[test]
fn decide_should_do_nothing_when_converged_and_healthy() {
    let l =
        live(Some(job(40)), vec![deployment(40, DeploymentStatus::Successful, "Deployment completed successfully")]);
    let stored = applied("h2", 40);
    let plan = run(&valid(record()), &l, Some(&stored));
    assert!(plan.actions.is_empty());
    assert_eq!(phase(&plan), Phase::Healthy);
    assert_eq!(plan.requeue, Requeue::AwaitChange);
    // Deciding again from the recorded status changes nothing: a converged app writes nothing.
    let again = run(&valid(record()), &l, plan.status.as_ref());
    assert!(again.actions.is_empty());
    assert!(again.status.as_ref().zip(plan.status.as_ref()).is_some_and(|(a, b)| a.eq_ignoring_time(b)));
}

#[test]
fn decide_should_report_progress_while_the_deployment_runs() {
    let l = live(Some(job(40)), vec![deployment(40, DeploymentStatus::Running, "Deployment is running")]);
    let plan = run(&valid(record()), &l, Some(&applied("h2", 40)));
    assert!(plan.actions.is_empty());
    assert_eq!(phase(&plan), Phase::Progressing);
    assert_eq!(reason(&plan, ConditionType::Ready), Some(Reason::DeploymentRunning));
    assert!(matches!(plan.requeue, Requeue::After(_)));
    assert_eq!(plan.status.as_ref().map(|s| s.replicas.healthy), Some(1));
}

#[test]
fn decide_should_mark_a_failed_deployment_degraded_and_remember_the_spec() {
    let l = live(Some(job(40)), vec![deployment(40, DeploymentStatus::Failed, "Failed due to progress deadline")]);
    let plan = run(&valid(record()), &l, Some(&applied("h2", 40)));
    assert!(plan.actions.is_empty());
    assert_eq!(phase(&plan), Phase::Degraded);
    assert_eq!(reason(&plan, ConditionType::Ready), Some(Reason::DeploymentFailed));
    assert_eq!(plan.status.as_ref().and_then(|s| s.failed_hash.clone()), Some("h2".into()));
}

#[test]
fn decide_should_treat_an_auto_revert_as_a_rollback_not_drift() {
    // Nomad failed our version (jmi 40) and re-registered the stable one as jmi 45.
    let l = live(
        Some(job(45)),
        vec![
            deployment(45, DeploymentStatus::Running, "Deployment is running"),
            deployment(
                40,
                DeploymentStatus::Failed,
                "Failed due to unhealthy allocations - rolling back to job version 2",
            ),
        ],
    );
    let plan = run(&valid(record()), &l, Some(&applied("h2", 40)));
    assert!(plan.actions.is_empty(), "the failed spec must not be registered again: {:?}", plan.actions);
    assert!(!plan.drift_detected);
    assert_eq!(reason(&plan, ConditionType::Ready), Some(Reason::RolledBack));
    // And afterwards, the failed spec stays unapplied while the record is unchanged.
    let later = run(&valid(record()), &l, plan.status.as_ref());
    assert!(later.actions.is_empty());
    assert_eq!(phase(&later), Phase::Degraded);
}

#[test]
fn decide_should_register_again_once_a_failed_record_changes() {
    let mut stored = applied("h1", 40);
    stored.failed_hash = Some("h1".into());
    let plan = run(&valid(record()), &live(Some(job(45)), vec![]), Some(&stored));
    assert_eq!(registers(&plan), vec![(45, RegisterReason::Update)]);
}

#[test]
fn decide_should_revert_drift_when_policy_is_revert() {
    let plan = run(&valid(record()), &live(Some(job(50)), vec![]), Some(&applied("h2", 40)));
    assert_eq!(registers(&plan), vec![(50, RegisterReason::RevertDrift)]);
    assert!(plan.drift_detected);
    assert_eq!(reason(&plan, ConditionType::Drifted), Some(Reason::Reverted));
}

#[test]
fn decide_should_only_report_drift_when_policy_is_report() {
    let r = ValidRecord { drift_policy: DriftPolicy::Report, ..record() };
    let plan = run(&valid(r.clone()), &live(Some(job(50)), vec![]), Some(&applied("h2", 40)));
    assert!(plan.actions.is_empty());
    assert_eq!(phase(&plan), Phase::Degraded);
    assert_eq!(reason(&plan, ConditionType::Drifted), Some(Reason::ChangedOutsideDrover));
    assert!(plan.drift_detected);
    // The same drift is counted once.
    let again = run(&valid(r), &live(Some(job(50)), vec![]), plan.status.as_ref());
    assert!(!again.drift_detected);
}

#[test]
fn decide_should_recreate_a_job_deleted_behind_its_back() {
    // The cache saw the write (index 50 ≥ 40), then the job went.
    let gone = Live { index: 50, ..Live::default() };
    let plan = run(&valid(record()), &gone, Some(&applied("h2", 40)));
    assert_eq!(registers(&plan), vec![(0, RegisterReason::Create)]);
    assert!(plan.drift_detected);
}

#[test]
fn decide_should_never_touch_an_unowned_job() {
    let mut j = job(40);
    j.owner = None;
    let plan = run(&valid(record()), &live(Some(j.clone()), vec![]), None);
    assert!(plan.actions.is_empty());
    assert_eq!(phase(&plan), Phase::Failed);
    assert_eq!(reason(&plan, ConditionType::Conflict), Some(Reason::UnownedJob));
    // Owned by another record is just as untouchable.
    j.owner = Some(OTHER.into());
    let plan = run(&valid(record()), &live(Some(j), vec![]), None);
    assert!(plan.actions.is_empty());
    assert_eq!(reason(&plan, ConditionType::Conflict), Some(Reason::OwnedByAnotherApp));
}

#[test]
fn decide_should_adopt_an_unowned_job_when_asked() {
    let mut j = job(40);
    j.owner = None;
    let r = ValidRecord { adopt: true, ..record() };
    let plan = run(&valid(r.clone()), &live(Some(j.clone()), vec![]), None);
    assert_eq!(registers(&plan), vec![(40, RegisterReason::Adopt)]);
    // A job another record owns is never adopted.
    j.owner = Some(OTHER.into());
    let plan = run(&valid(r), &live(Some(j), vec![]), None);
    assert!(plan.actions.is_empty());
    assert_eq!(reason(&plan, ConditionType::Conflict), Some(Reason::OwnedByAnotherApp));
}

#[test]
fn decide_should_leave_a_suspended_app_alone() {
    let r = ValidRecord { suspend: true, ..record() };
    let plan = run(&valid(r), &live(Some(job(50)), vec![]), Some(&applied("h1", 40)));
    assert!(plan.actions.is_empty());
    assert_eq!(phase(&plan), Phase::Suspended);
}

#[test]
fn decide_should_report_every_field_error_and_touch_nothing() {
    let errors = Arc::new(vec![FieldError::new("metadata.name", "bad"), FieldError::new("spec.template.count", "neg")]);
    let plan = run(
        &RecordState::Present(Arc::new(Record::Invalid { generation: 11, errors })),
        &live(Some(job(40)), vec![]),
        None,
    );
    assert!(plan.actions.is_empty());
    assert_eq!(phase(&plan), Phase::Invalid);
    let msg = plan
        .status
        .as_ref()
        .and_then(|s| s.condition(ConditionType::Valid))
        .map(|c| c.message.clone())
        .unwrap_or_default();
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
    let plan = run(&valid(record()), &live(Some(job(40)), vec![]), None);
    assert_eq!(registers(&plan), vec![(40, RegisterReason::Refresh)]);
}

#[test]
fn decide_should_wait_for_the_deployment_of_a_new_version_however_slow_nomad_is() {
    // Regression (issue #7, 2.6): a fixed grace window called a job Healthy when Nomad was slow to make the
    // deployment. A new version with an update strategy always gets one, so Drover waits for it.
    let mut stored = applied("h2", 40);
    stored.phase = Phase::Progressing;
    stored.deployment_expected = true;
    stored.history[0].at = crate::status::timestamp(now());
    let minutes_later = now() + Duration::from_secs(120);
    let plan = decide_at(&valid(record()), &live(Some(job(40)), vec![]), Some(&stored), minutes_later);
    assert!(plan.actions.is_empty());
    assert_eq!(phase(&plan), Phase::Progressing);
    assert_eq!(reason(&plan, ConditionType::Ready), Some(Reason::AwaitingDeployment));
    assert!(matches!(plan.requeue, Requeue::After(_)), "looked at again even if no event comes");
    // Once it appears, it is followed, and the expectation is met.
    let l =
        live(Some(job(40)), vec![deployment(40, DeploymentStatus::Successful, "Deployment completed successfully")]);
    let plan = run(&valid(record()), &l, Some(&stored));
    assert_eq!(phase(&plan), Phase::Healthy);
    assert_eq!(plan.status.as_ref().map(|s| s.deployment_expected), Some(false));
}

#[test]
fn decide_should_report_a_deployment_that_never_comes_after_nomads_own_deadline() {
    let mut stored = applied("h2", 40);
    stored.phase = Phase::Progressing;
    stored.deployment_expected = true;
    let late = now() + DEPLOYMENT_MISSING_AFTER;
    let plan = decide_at(&valid(record()), &live(Some(job(40)), vec![]), Some(&stored), late);
    assert_eq!(phase(&plan), Phase::Degraded, "every rollout ends");
    assert_eq!(reason(&plan, ConditionType::Ready), Some(Reason::DeploymentMissing));
}

#[test]
fn decide_should_call_a_running_job_healthy_when_nomad_makes_no_deployment_for_it() {
    let mut stored = applied("h2", 40);
    stored.phase = Phase::Progressing;
    let plan = run(&valid(record()), &live(Some(job(40)), vec![]), Some(&stored));
    assert_eq!(phase(&plan), Phase::Healthy);
    assert_eq!(reason(&plan, ConditionType::Ready), Some(Reason::JobRunning));
    // A pending job is not healthy: its allocations are not placed.
    let mut pending = job(40);
    pending.status = JobStatus::Pending;
    let plan = run(&valid(record()), &live(Some(pending), vec![]), Some(&stored));
    assert_eq!(phase(&plan), Phase::Progressing);
    assert_eq!(reason(&plan, ConditionType::Ready), Some(Reason::JobPending));
}

#[test]
fn decide_should_report_a_paused_or_cancelled_deployment() {
    let paused = live(Some(job(40)), vec![deployment(40, DeploymentStatus::Paused, "Deployment is paused")]);
    assert_eq!(phase(&run(&valid(record()), &paused, Some(&applied("h2", 40)))), Phase::Paused);
    let cancelled =
        live(Some(job(40)), vec![deployment(40, DeploymentStatus::Cancelled, "Cancelled because job is stopped")]);
    let plan = run(&valid(record()), &cancelled, Some(&applied("h2", 40)));
    assert_eq!(phase(&plan), Phase::Degraded);
    assert_eq!(reason(&plan, ConditionType::Ready), Some(Reason::DeploymentCancelled));
}

#[test]
fn decide_should_stop_an_owned_job_when_the_record_is_deleted() {
    let plan = run(&RecordState::Gone, &live(Some(job(40)), vec![]), Some(&applied("h2", 40)));
    assert_eq!(plan.actions, vec![stop("web", false), Action::DeleteStatus]);
}

#[test]
fn decide_should_follow_each_deletion_policy() {
    let mut stored = applied("h2", 40);
    stored.deletion_policy = ObservedDeletionPolicy::Purge;
    let plan = run(&RecordState::Gone, &live(Some(job(40)), vec![]), Some(&stored));
    assert_eq!(plan.actions, vec![stop("web", true), Action::DeleteStatus]);
    stored.deletion_policy = ObservedDeletionPolicy::Orphan;
    let plan = run(&RecordState::Gone, &live(Some(job(40)), vec![]), Some(&stored));
    assert_eq!(plan.actions, vec![Action::DeleteStatus]);
    // A job that is already stopped is not stopped again.
    stored.deletion_policy = ObservedDeletionPolicy::Stop;
    let mut stopped = job(41);
    stopped.stop = true;
    let plan = run(&RecordState::Gone, &live(Some(stopped), vec![]), Some(&stored));
    assert_eq!(plan.actions, vec![Action::DeleteStatus]);
}

#[test]
fn decide_should_not_stop_someone_elses_job_on_deletion() {
    let mut j = job(40);
    j.owner = Some(OTHER.into());
    let plan = run(&RecordState::Gone, &live(Some(j), vec![]), Some(&applied("h2", 40)));
    assert_eq!(plan.actions, vec![Action::DeleteStatus]);
}

#[test]
fn decide_should_forget_a_key_with_neither_record_nor_status() {
    let plan = run(&RecordState::Gone, &live(Some(job(40)), vec![]), None);
    assert!(plan.actions.is_empty());
    assert!(plan.status.is_none());
}

#[test]
fn decide_should_wait_for_its_deployment_to_settle_before_calling_a_change_drift() {
    // Nomad auto-reverted (jmi 45) but the failure of our deployment (jmi 40) is not in the cache yet.
    let l = live(Some(job(45)), vec![deployment(40, DeploymentStatus::Running, "Deployment is running")]);
    let plan = run(&valid(record()), &l, Some(&applied("h2", 40)));
    assert!(plan.actions.is_empty(), "must not fight what may be Nomad's auto-revert: {:?}", plan.actions);
    assert!(!plan.drift_detected);
    assert_eq!(reason(&plan, ConditionType::Ready), Some(Reason::AwaitingDeployment));
    // Once Nomad settles it as cancelled (someone else registered), it is drift.
    let l =
        live(Some(job(45)), vec![deployment(40, DeploymentStatus::Cancelled, "Cancelled due to newer version of job")]);
    let plan = run(&valid(record()), &l, Some(&applied("h2", 40)));
    assert_eq!(registers(&plan), vec![(45, RegisterReason::RevertDrift)]);
}

#[test]
fn decide_should_call_a_dead_job_without_deployment_degraded() {
    let mut dead = job(40);
    dead.status = JobStatus::Dead;
    let plan = run(&valid(record()), &live(Some(dead), vec![]), Some(&applied("h2", 40)));
    assert!(plan.actions.is_empty());
    assert_eq!(phase(&plan), Phase::Degraded);
    assert_eq!(reason(&plan, ConditionType::Ready), Some(Reason::JobNotRunning));
}

/// A status for an app that ran as job `old` and is being moved to `web`.
fn renamed(jmi: u64) -> AppStatus {
    let mut s = applied("h2", jmi);
    s.job_id = Some("web".into());
    s.retiring_job_ids = vec!["old".into()];
    s
}

fn old_job(stop: bool) -> LiveJob {
    LiveJob { key: JobKey::new("default", "old"), stop, ..job(20) }
}

#[test]
fn decide_should_create_the_new_job_and_remember_the_old_one_when_the_job_id_changes() {
    let mut stored = applied("h1", 20);
    stored.job_id = Some("old".into());
    let plan = run(&valid(record()), &Live::default(), Some(&stored));
    assert_eq!(registers(&plan), vec![(0, RegisterReason::Create)], "the new job first, so the app keeps serving");
    assert_eq!(plan.status.as_ref().map(|s| s.retiring_job_ids.clone()), Some(vec!["old".to_string()]));
}

#[test]
fn decide_should_stop_the_old_job_once_the_renamed_app_is_healthy() {
    let mut l = live(Some(job(40)), vec![deployment(40, DeploymentStatus::Running, "Deployment is running")]);
    l.retiring = vec![old_job(false)];
    let plan = run(&valid(record()), &l, Some(&renamed(40)));
    assert!(plan.actions.is_empty(), "nothing is stopped while the new job is not healthy yet");
    l.deployments = vec![deployment(40, DeploymentStatus::Successful, "Deployment completed successfully")];
    let plan = run(&valid(record()), &l, Some(&renamed(40)));
    assert_eq!(plan.actions, vec![stop("old", false)]);
    // Once it is stopped, it is forgotten.
    l.retiring = vec![old_job(true)];
    let plan = run(&valid(record()), &l, plan.status.as_ref());
    assert!(plan.actions.is_empty());
    assert_eq!(plan.status.as_ref().map(|s| s.retiring_job_ids.is_empty()), Some(true));
}

#[test]
fn decide_should_follow_the_deletion_policy_for_the_old_job() {
    let mut l =
        live(Some(job(40)), vec![deployment(40, DeploymentStatus::Successful, "Deployment completed successfully")]);
    l.retiring = vec![old_job(false)];
    let orphan = ValidRecord { deletion_policy: ObservedDeletionPolicy::Orphan, ..record() };
    let plan = run(&valid(orphan), &l, Some(&renamed(40)));
    assert!(plan.actions.is_empty());
    assert_eq!(plan.status.as_ref().map(|s| s.retiring_job_ids.is_empty()), Some(true));
    let purge = ValidRecord { deletion_policy: ObservedDeletionPolicy::Purge, ..record() };
    let plan = run(&valid(purge), &l, Some(&renamed(40)));
    assert_eq!(plan.actions, vec![stop("old", true)]);
    // A job under the old ID that is not ours is never touched.
    l.retiring = vec![LiveJob { owner: Some(OTHER.into()), ..old_job(false) }];
    let plan = run(&valid(record()), &l, Some(&renamed(40)));
    assert!(plan.actions.is_empty());
    assert_eq!(plan.status.as_ref().map(|s| s.retiring_job_ids.is_empty()), Some(true));
}

#[test]
fn decide_should_conclude_nothing_before_the_cache_shows_its_own_write() {
    // Just created at 40; the cache has not seen index 40 yet. Registering again would fail (or worse).
    let plan = run(&valid(record()), &Live { index: 39, ..Live::default() }, Some(&applied("h2", 40)));
    assert!(plan.actions.is_empty());
    assert!(!plan.drift_detected, "not drift: Drover's own write is on its way");
    assert_eq!(phase(&plan), Phase::Progressing);
    // Same for an update: the cache still holds the version before Drover's.
    let plan = run(&valid(record()), &live(Some(job(30)), vec![]), Some(&applied("h2", 40)));
    assert!(plan.actions.is_empty());
    assert!(!plan.drift_detected);
}

#[test]
fn decide_should_keep_a_rejected_spec_failed_until_the_record_changes() {
    // Regression (issue #7, 2.6): a rejected spec turned Degraded on the next run.
    let mut stored = applied("h1", 30);
    stored.phase = Phase::Failed;
    stored.rejected_hash = Some("h2".into());
    let plan = run(&valid(record()), &live(Some(job(30)), vec![]), Some(&stored));
    assert!(plan.actions.is_empty(), "a rejected spec is not sent again");
    assert_eq!(phase(&plan), Phase::Failed);
    let changed = ValidRecord { hash: "h3".into(), ..record() };
    assert_eq!(
        registers(&run(&valid(changed), &live(Some(job(30)), vec![]), Some(&stored))),
        vec![(30, RegisterReason::Update)]
    );
}

#[test]
fn decide_should_never_take_another_installations_job() {
    let mut j = job(40);
    j.owner = Some("team-b/apps/default/web".into());
    let adopting = ValidRecord { adopt: true, ..record() };
    let plan = run(&valid(adopting), &live(Some(j.clone()), vec![]), None);
    assert!(plan.actions.is_empty());
    assert_eq!(reason(&plan, ConditionType::Conflict), Some(Reason::OwnedByAnotherApp));
    // Nor stop it when a record of the same name is deleted here.
    let plan = run(&RecordState::Gone, &live(Some(j), vec![]), Some(&applied("h2", 40)));
    assert_eq!(plan.actions, vec![Action::DeleteStatus]);
}

#[test]
fn decide_should_do_nothing_to_the_job_when_the_record_cannot_be_read() {
    let stored = applied("h2", 40);
    let plan = run(
        &RecordState::Unreadable { reason: "403 Permission denied".into() },
        &live(Some(job(40)), vec![]),
        Some(&stored),
    );
    assert!(plan.actions.is_empty(), "absence is not proof: {:?}", plan.actions);
    assert_eq!(reason(&plan, ConditionType::Ready), Some(Reason::RecordUnreadable));
    assert_eq!(phase(&plan), Phase::Healthy, "the phase is what it was");
}

#[test]
fn decide_should_retire_every_earlier_job_id_not_only_the_last() {
    // Renamed old → mid → web before the first rename was retired.
    let mut stored = applied("h1", 20);
    stored.job_id = Some("mid".into());
    stored.retiring_job_ids = vec!["old".into()];
    let plan = run(&valid(record()), &Live::default(), Some(&stored));
    assert_eq!(
        plan.status.as_ref().map(|s| s.retiring_job_ids.clone()),
        Some(vec!["old".to_string(), "mid".to_string()])
    );
    // Once healthy, both are stopped.
    let mut s = plan.status.clone().expect("status");
    s.applied_hash = Some("h2".into());
    s.applied_job_modify_index = Some(40);
    let mut l =
        live(Some(job(40)), vec![deployment(40, DeploymentStatus::Successful, "Deployment completed successfully")]);
    let mid = LiveJob { key: JobKey::new("default", "mid"), ..job(30) };
    l.retiring = vec![old_job(false), mid];
    let plan = run(&valid(record()), &l, Some(&s));
    assert_eq!(plan.actions, vec![stop("old", false), stop("mid", false)]);
}

#[test]
fn decide_should_retire_earlier_jobs_when_the_record_is_deleted() {
    let mut l = live(Some(job(40)), vec![]);
    l.retiring = vec![old_job(false)];
    let plan = run(&RecordState::Gone, &l, Some(&renamed(40)));
    assert_eq!(plan.actions, vec![stop("web", false), stop("old", false), Action::DeleteStatus]);
}

#[test]
fn decide_should_take_back_a_job_marked_by_drover_0_1_in_the_default_installation() {
    let mut j = job(40);
    j.owner = Some("default/web".into());
    let plan = run(&valid(record()), &live(Some(j.clone()), vec![]), Some(&applied("h1", 40)));
    assert_eq!(registers(&plan), vec![(40, RegisterReason::Adopt)], "re-marked once with the new owner value");
    // Another installation does not.
    let other = ValidRecord { legacy_owner: None, owner: "team-b/apps/default/web".into(), ..record() };
    let plan = run(&valid(other), &live(Some(j), vec![]), None);
    assert!(plan.actions.is_empty());
    assert_eq!(reason(&plan, ConditionType::Conflict), Some(Reason::OwnedByAnotherApp));
}

mod dependencies;
mod rollout;
mod scaling_and_capacity;
