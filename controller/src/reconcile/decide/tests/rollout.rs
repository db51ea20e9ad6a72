//! The rollout engine's decisions, as sentences: each scenario threads the status of one decision into the next,
//! as the stage does, so restart survival (everything from status) is what every test exercises.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{OWNER, applied, job, key, now, record, valid};
use crate::app::{
    AnalysisStep, AnalysisTemplate, BlueGreenStrategy, CanaryStep, CanaryStrategy, HumanDuration, OnTimeout, PauseStep,
    PostPromotion, Strategy, StrategyType, ValidRecord, WebhookStep,
};
use crate::live::{DeploymentStatus, GroupProgress, Live, LiveDeployment, LiveJob};
use crate::reconcile::decide::decide;
use crate::reconcile::plan::{Action, Observed, Plan, RecordState, RegisterReason, Requeue};
use crate::rollout::{
    AnalysisPhase, AnalysisRunStatus, Control, ControlAction, ControlEntry, PausedReason, RolloutResult, RunId,
    StepRef, StoredControl,
};
use crate::status::{AppStatus, ConditionType, HistoryEntry, HistoryResult, Phase, Reason, timestamp};

const JMI: u64 = 40;
const DEP: &str = "d0123456789";

fn secs(n: u64) -> HumanDuration {
    HumanDuration::from_secs(n)
}

fn canary(steps: Vec<CanaryStep>) -> ValidRecord {
    let strategy = Strategy {
        strategy_type: StrategyType::Canary,
        canary: Some(CanaryStrategy { replicas: 1, steps }),
        ..Strategy::default()
    };
    with_templates(ValidRecord { strategy: Arc::new(strategy), ..record() })
}

fn with_templates(r: ValidRecord) -> ValidRecord {
    let t = AnalysisTemplate { interval: Some(secs(10)), count: Some(3), ..AnalysisTemplate::default() };
    let dry = AnalysisTemplate { dry_run: true, ..t.clone() };
    let analysis = BTreeMap::from([("errors".to_string(), t), ("trial".to_string(), dry)]);
    ValidRecord { analysis: Arc::new(analysis), ..r }
}

fn pause(d: u64) -> CanaryStep {
    CanaryStep::Pause(PauseStep { duration: Some(secs(d)), ..PauseStep::default() })
}

fn gate(timeout: Option<u64>, on_timeout: OnTimeout) -> CanaryStep {
    CanaryStep::Pause(PauseStep { duration: None, timeout: timeout.map(secs), on_timeout: Some(on_timeout) })
}

fn analysis(names: &[&str]) -> CanaryStep {
    CanaryStep::Analysis(AnalysisStep {
        templates: names.iter().map(|n| n.to_string()).collect(),
        ..Default::default()
    })
}

/// Deployment of version 4 with one canary group `web`: `healthy` canaries, `promoted` or not.
fn canary_deployment(status: DeploymentStatus, healthy: u64, promoted: bool) -> LiveDeployment {
    let group = GroupProgress {
        desired_total: 3,
        desired_canaries: 1,
        placed_canaries: 1,
        healthy_allocs: healthy,
        promoted,
        ..GroupProgress::default()
    };
    LiveDeployment {
        id: DEP.into(),
        job_version: 4,
        job_spec_modify_index: JMI,
        create_index: JMI + 1,
        modify_index: JMI + 1,
        status,
        description: "Deployment is running but requires manual promotion".into(),
        desired: 3,
        placed: 1,
        healthy,
        canaries: 1,
        groups: BTreeMap::from([("web".to_string(), group)]),
    }
}

fn canary_job() -> LiveJob {
    LiveJob { version: Some(4), ..job(JMI) }
}

fn live_with(job: LiveJob, deployments: Vec<LiveDeployment>) -> Live {
    let index = job.modify_index.max(deployments.iter().map(|d| d.modify_index).max().unwrap_or(0));
    Live { job: Some(job), deployments, retiring: Vec::new(), index }
}

/// Spec `h2` applied at `JMI` (version 4) ten minutes ago; version 3 was the last healthy one.
fn applied_canary() -> AppStatus {
    let mut s = applied("h2", JMI);
    s.applied_job_version = Some(4);
    s.history = vec![
        HistoryEntry {
            generation: 10,
            hash: "h2".into(),
            job_version: Some(4),
            result: HistoryResult::Updated,
            at: timestamp(now() - Duration::from_secs(600)),
        },
        HistoryEntry {
            generation: 9,
            hash: "h1".into(),
            job_version: Some(3),
            result: HistoryResult::Healthy,
            at: timestamp(now() - Duration::from_secs(3600)),
        },
    ];
    s
}

/// A sequence of decisions of one app, each fed the status the previous one recorded.
struct Rollout {
    record: RecordState,
    status: AppStatus,
    runs: BTreeMap<RunId, AnalysisRunStatus>,
    control: Option<ControlEntry>,
    at: SystemTime,
}

impl Rollout {
    fn new(r: ValidRecord) -> Rollout {
        Rollout { record: valid(r), status: applied_canary(), runs: BTreeMap::new(), control: None, at: now() }
    }

    fn decide(&mut self, live: &Live) -> Plan {
        let plan = decide(&Observed {
            key: &key(),
            owner: OWNER,
            record: &self.record,
            live,
            status: Some(&self.status),
            measurements: &BTreeMap::new(),
            analysis: &self.runs,
            control: self.control.as_ref(),
            dependencies: &crate::reconcile::deps::DependencyView::none(),
            now: self.at,
        });
        if let Some(s) = &plan.status {
            self.status = s.clone();
        }
        plan
    }

    fn later(&mut self, by: u64) {
        self.at += Duration::from_secs(by);
    }

    fn rollout(&self) -> crate::rollout::RolloutStatus {
        self.status.rollout.clone().expect("a rollout in status")
    }

    fn reason(&self) -> Option<Reason> {
        self.status.condition(ConditionType::Ready).map(|c| c.reason)
    }

    fn message(&self) -> String {
        self.status.condition(ConditionType::Ready).map(|c| c.message.clone()).unwrap_or_default()
    }

    /// The analysis stage folded the run of `template` at `step` to `phase` after `n` measurements.
    fn measured(&mut self, step: StepRef, template: &str, phase: AnalysisPhase, n: u32, message: &str) {
        let run = self
            .rollout()
            .analysis_runs
            .into_iter()
            .find(|r| r.id.step == step && r.id.template == template)
            .expect("the engine created the run");
        let fresh = AnalysisRunStatus { phase, successful: n, message: message.into(), ..run };
        self.runs.insert(fresh.id.clone(), fresh);
    }

    fn control(&mut self, action: ControlAction, generation: u64, modify_index: u64) {
        let control = Control { action, generation, requested_at: timestamp(self.at), by: "test".into() };
        self.control = Some(Ok(StoredControl { control, modify_index }));
    }
}

fn promoted(plan: &Plan) -> bool {
    plan.actions.contains(&Action::PromoteDeployment { id: DEP.into() })
}

fn failed(plan: &Plan) -> bool {
    plan.actions.contains(&Action::FailDeployment { id: DEP.into() })
}

#[test]
fn rollout_should_wait_for_healthy_canaries_before_the_first_step() {
    let mut r = Rollout::new(canary(vec![pause(30)]));
    let plan = r.decide(&live_with(canary_job(), vec![canary_deployment(DeploymentStatus::Running, 0, false)]));
    assert!(plan.actions.is_empty());
    assert_eq!(r.status.phase, Phase::Progressing);
    let ro = r.rollout();
    assert_eq!(ro.step, StepRef::Placing);
    assert_eq!((ro.canary_version, ro.stable_version), (Some(4), Some(3)), "versions from Nomad and history");
    assert!(r.message().contains("0/1 healthy"), "{}", r.message());
}

#[test]
fn rollout_should_end_a_timed_pause_on_time_then_promote() {
    let mut r = Rollout::new(canary(vec![pause(30)]));
    let l = live_with(canary_job(), vec![canary_deployment(DeploymentStatus::Running, 1, false)]);
    let plan = r.decide(&l);
    assert!(plan.actions.is_empty());
    assert_eq!(r.rollout().step, StepRef::Step(0));
    assert_eq!(r.rollout().deadline, Some(timestamp(now() + Duration::from_secs(30))));
    assert_eq!(plan.requeue, Requeue::After(Duration::from_secs(30)), "woken when the pause ends, without events");
    r.later(29);
    assert!(r.decide(&l).actions.is_empty(), "not before its time");
    r.later(1);
    let plan = r.decide(&l);
    assert!(promoted(&plan), "{:?}", plan.actions);
    assert_eq!(r.rollout().step, StepRef::Promoting);
    assert_eq!(r.reason(), Some(Reason::Promoting));
    // Nomad shows the promotion, then the success: the rollout is done and the app healthy.
    let plan = r.decide(&live_with(canary_job(), vec![canary_deployment(DeploymentStatus::Running, 1, true)]));
    assert!(plan.actions.is_empty(), "promoted once: {:?}", plan.actions);
    let plan = r.decide(&live_with(canary_job(), vec![canary_deployment(DeploymentStatus::Successful, 3, true)]));
    assert!(plan.actions.is_empty());
    assert_eq!(r.status.phase, Phase::Healthy);
    assert_eq!((r.rollout().step, r.rollout().result), (StepRef::Done, Some(RolloutResult::Succeeded)));
}

/// Step times are kept to the millisecond: a pause that starts 900 ms into a second must not end 29.1 s later (with
/// whole-second stamps its start read back as the second before).
#[test]
fn rollout_should_not_end_a_pause_early_when_it_starts_within_a_second() {
    let mut r = Rollout::new(canary(vec![pause(30)]));
    r.at += Duration::from_millis(900);
    let l = live_with(canary_job(), vec![canary_deployment(DeploymentStatus::Running, 1, false)]);
    r.decide(&l);
    assert_eq!(r.rollout().step, StepRef::Step(0));
    r.later(29);
    r.at += Duration::from_millis(950);
    assert!(r.decide(&l).actions.is_empty(), "29.95 s into a 30 s pause: not yet");
    r.at += Duration::from_millis(50);
    assert!(promoted(&r.decide(&l)), "30 s into a 30 s pause: promoted");
}

#[test]
fn rollout_should_wait_at_a_manual_gate_until_promoted_and_ignore_a_stale_control() {
    let mut r = Rollout::new(canary(vec![gate(None, OnTimeout::Abort)]));
    let l = live_with(canary_job(), vec![canary_deployment(DeploymentStatus::Running, 1, false)]);
    let plan = r.decide(&l);
    assert_eq!((r.status.phase, r.reason()), (Phase::Paused, Some(Reason::ManualGate)));
    assert_eq!(r.rollout().paused_reason, Some(PausedReason::ManualGate));
    assert_eq!(plan.requeue, Requeue::AwaitChange, "a gate without timeout waits, visibly Paused");
    // A promote for an older generation (9) is consumed as ignored: it never promotes generation 10.
    r.control(ControlAction::Promote, 9, 100);
    let plan = r.decide(&l);
    assert!(!promoted(&plan));
    let last = r.status.last_control.clone().expect("consumed");
    assert!(!last.applied && last.message.contains("generation 9"), "{last:?}");
    assert_eq!(r.status.phase, Phase::Paused);
    // The same control again is not consumed twice.
    let before = r.status.clone();
    r.decide(&l);
    assert_eq!(r.status.last_control, before.last_control);
    // A promote of the current generation ends the gate: the deployment is promoted.
    r.control(ControlAction::Promote, 10, 101);
    let plan = r.decide(&l);
    assert!(promoted(&plan), "{:?}", plan.actions);
    assert!(r.status.last_control.as_ref().is_some_and(|c| c.applied && c.modify_index == 101));
    assert_eq!(r.status.history.first().map(|h| h.result), Some(HistoryResult::Controlled));
}

#[test]
fn rollout_should_apply_a_gate_timeout_as_its_on_timeout_says() {
    let mut abort = Rollout::new(canary(vec![gate(Some(60), OnTimeout::Abort)]));
    let l = live_with(canary_job(), vec![canary_deployment(DeploymentStatus::Running, 1, false)]);
    let plan = abort.decide(&l);
    assert_eq!(plan.requeue, Requeue::After(Duration::from_secs(60)));
    abort.later(60);
    let plan = abort.decide(&l);
    assert!(failed(&plan), "{:?}", plan.actions);
    assert_eq!(abort.reason(), Some(Reason::DeadlineExceeded));
    let mut promote = Rollout::new(canary(vec![gate(Some(60), OnTimeout::Promote)]));
    promote.decide(&l);
    promote.later(60);
    assert!(promoted(&promote.decide(&l)));
}

#[test]
fn rollout_should_create_runs_and_promote_when_they_pass() {
    let mut r = Rollout::new(canary(vec![analysis(&["errors", "trial"])]));
    let l = live_with(canary_job(), vec![canary_deployment(DeploymentStatus::Running, 1, false)]);
    let plan = r.decide(&l);
    let ro = r.rollout();
    let ids: Vec<(StepRef, String, AnalysisPhase)> =
        ro.analysis_runs.iter().map(|run| (run.id.step, run.id.template.clone(), run.phase)).collect();
    assert_eq!(
        ids,
        vec![
            (StepRef::Step(0), "errors".to_string(), AnalysisPhase::Running),
            (StepRef::Step(0), "trial".to_string(), AnalysisPhase::Running),
        ]
    );
    assert!(ro.analysis_runs.iter().all(|run| run.id.generation == 10 && run.started_at == timestamp(now())));
    // Deadline: (count 3 + 0 + 0 + 4 errors + 1) × (10 s + 10 s timeout) = 160 s.
    assert_eq!(ro.deadline, Some(timestamp(now() + Duration::from_secs(160))));
    assert_eq!(plan.requeue, Requeue::After(Duration::from_secs(160)));
    r.later(30);
    r.measured(StepRef::Step(0), "errors", AnalysisPhase::Successful, 3, "");
    assert!(r.decide(&l).actions.is_empty(), "the other run still measures");
    assert_eq!(r.rollout().analysis_runs[0].successful, 3, "the store's newer run is copied into status");
    // A dry run that failed is reported but never decisive.
    r.measured(StepRef::Step(0), "trial", AnalysisPhase::Failed, 3, "failureCondition held");
    assert!(promoted(&r.decide(&l)));
}

#[test]
fn rollout_should_abort_a_failed_analysis_and_not_register_the_spec_again() {
    let mut r = Rollout::new(canary(vec![analysis(&["errors"]), pause(30)]));
    let l = live_with(canary_job(), vec![canary_deployment(DeploymentStatus::Running, 1, false)]);
    r.decide(&l);
    r.measured(
        StepRef::Step(0),
        "errors",
        AnalysisPhase::Failed,
        1,
        "failureCondition \"result > 0.05\" held: result = 0.31",
    );
    let plan = r.decide(&l);
    assert!(failed(&plan), "{:?}", plan.actions);
    assert_eq!(r.status.failed_hash.as_deref(), Some("h2"), "no flapping from the verdict on");
    assert_eq!(r.status.phase, Phase::Progressing, "Degraded only once Nomad shows the abort");
    assert_eq!(r.reason(), Some(Reason::AnalysisFailed));
    assert!(r.message().contains("result = 0.31"), "{}", r.message());
    // Drover restarts before the watch shows the failure: it fails the deployment again (idempotent).
    assert!(failed(&r.decide(&l)));
    // Nomad failed it and reverted to version 3 (a new version 5 at a new index).
    let reverted = LiveJob { version: Some(5), ..job(JMI + 5) };
    let gone = LiveDeployment {
        status: DeploymentStatus::Failed,
        description: "Deployment marked as failed - rolling back to job version 3".into(),
        ..canary_deployment(DeploymentStatus::Failed, 1, false)
    };
    let after = live_with(reverted, vec![gone]);
    let plan = r.decide(&after);
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert_eq!((r.status.phase, r.reason()), (Phase::Degraded, Some(Reason::AnalysisFailed)));
    assert_eq!((r.rollout().step, r.rollout().result), (StepRef::Done, Some(RolloutResult::AnalysisFailed)));
    assert!(r.message().contains("result = 0.31"), "the verdict names the values: {}", r.message());
    assert_eq!(r.status.history.first().map(|h| h.result), Some(HistoryResult::RolledBack));
    // Resyncs register nothing: the revert is not drift, and the failed spec stays failed.
    r.later(3600);
    let plan = r.decide(&after);
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert_eq!(plan.requeue, Requeue::AwaitChange);
}

#[test]
fn rollout_should_pause_an_inconclusive_analysis_for_a_person() {
    let mut r = Rollout::new(canary(vec![analysis(&["errors"])]));
    let l = live_with(canary_job(), vec![canary_deployment(DeploymentStatus::Running, 1, false)]);
    r.decide(&l);
    r.measured(StepRef::Step(0), "errors", AnalysisPhase::Inconclusive, 1, "inconclusiveLimit 0 exceeded");
    let plan = r.decide(&l);
    assert!(plan.actions.is_empty());
    assert_eq!((r.status.phase, r.reason()), (Phase::Paused, Some(Reason::AnalysisInconclusive)));
    assert_eq!(plan.requeue, Requeue::AwaitChange);
    r.later(10_000);
    assert!(r.decide(&l).actions.is_empty(), "an inconclusive run has no deadline: a person decides");
    r.control(ControlAction::Abort, 10, 7);
    let plan = r.decide(&l);
    assert!(failed(&plan));
    assert_eq!(r.reason(), Some(Reason::Aborted));
}

#[test]
fn rollout_should_abort_an_analysis_past_its_deadline() {
    let mut r = Rollout::new(canary(vec![analysis(&["errors"])]));
    let l = live_with(canary_job(), vec![canary_deployment(DeploymentStatus::Running, 1, false)]);
    r.decide(&l);
    r.later(159);
    assert!(r.decide(&l).actions.is_empty());
    r.later(1);
    let plan = r.decide(&l);
    assert!(failed(&plan), "no analysis stage answered: the step ends at its deadline");
    assert_eq!(r.reason(), Some(Reason::DeadlineExceeded));
}

#[test]
fn rollout_should_fail_a_webhook_step_as_webhook_failed() {
    let hook = CanaryStep::Webhook(WebhookStep {
        url: "http://smoke/test".into(),
        method: None,
        headers: BTreeMap::new(),
        timeout: Some(secs(5)),
        expect_status: Vec::new(),
    });
    let mut r = Rollout::new(canary(vec![hook]));
    let l = live_with(canary_job(), vec![canary_deployment(DeploymentStatus::Running, 1, false)]);
    r.decide(&l);
    // (3 + 1) × (5 s + 5 s).
    assert_eq!(r.rollout().deadline, Some(timestamp(now() + Duration::from_secs(40))));
    r.measured(StepRef::Step(0), "webhook", AnalysisPhase::Failed, 0, "GET http://smoke/test answered 503");
    assert!(failed(&r.decide(&l)));
    assert_eq!(r.reason(), Some(Reason::WebhookFailed));
}

#[test]
fn rollout_should_resume_at_the_same_step_after_a_restart_without_rerunning_finished_ones() {
    let mut r = Rollout::new(canary(vec![analysis(&["errors"]), pause(60)]));
    let l = live_with(canary_job(), vec![canary_deployment(DeploymentStatus::Running, 1, false)]);
    r.decide(&l);
    r.measured(StepRef::Step(0), "errors", AnalysisPhase::Successful, 3, "");
    r.decide(&l);
    assert_eq!(r.rollout().step, StepRef::Step(1));
    // A new Drover: the analysis store is empty, only status remains.
    r.runs.clear();
    r.later(30);
    let plan = r.decide(&l);
    assert_eq!(r.rollout().step, StepRef::Step(1), "the pause resumes where it was");
    assert_eq!(plan.requeue, Requeue::After(Duration::from_secs(30)), "with the time it had left");
    let run = &r.rollout().analysis_runs[0];
    assert_eq!((run.phase, run.successful), (AnalysisPhase::Successful, 3), "the finished run is kept, not re-run");
}

#[test]
fn rollout_should_follow_a_first_version_without_canaries_and_skip_the_bake() {
    let strategy = Strategy {
        strategy_type: StrategyType::Canary,
        canary: Some(CanaryStrategy { replicas: 1, steps: vec![pause(30)] }),
        post_promotion: Some(PostPromotion { bake: secs(300), analysis: None }),
        ..Strategy::default()
    };
    let mut r = Rollout::new(ValidRecord { strategy: Arc::new(strategy), ..record() });
    r.status.history.truncate(1);
    let mut first = canary_deployment(DeploymentStatus::Running, 0, false);
    first.groups.values_mut().for_each(|g| g.desired_canaries = 0);
    let plan = r.decide(&live_with(canary_job(), vec![first.clone()]));
    assert!(plan.actions.is_empty());
    assert_eq!((r.status.phase, r.reason()), (Phase::Progressing, Some(Reason::DeploymentRunning)));
    let done = LiveDeployment { status: DeploymentStatus::Successful, ..first };
    r.decide(&live_with(canary_job(), vec![done]));
    assert_eq!(r.status.phase, Phase::Healthy, "no stable version to revert to, so no bake");
    assert_eq!(r.rollout().result, Some(RolloutResult::Succeeded));
}

fn baked(analysis: Option<&str>) -> ValidRecord {
    let strategy = Strategy {
        strategy_type: StrategyType::Canary,
        canary: Some(CanaryStrategy { replicas: 1, steps: vec![pause(10)] }),
        post_promotion: Some(PostPromotion {
            bake: secs(300),
            analysis: analysis.map(|t| AnalysisStep { template: Some(t.into()), ..AnalysisStep::default() }),
        }),
        ..Strategy::default()
    };
    with_templates(ValidRecord { strategy: Arc::new(strategy), ..record() })
}

#[test]
fn rollout_should_bake_after_success_and_declare_healthy_when_it_passes() {
    let mut r = Rollout::new(baked(None));
    let done = live_with(canary_job(), vec![canary_deployment(DeploymentStatus::Successful, 3, true)]);
    let plan = r.decide(&done);
    assert_eq!((r.status.phase, r.reason()), (Phase::Progressing, Some(Reason::Baking)));
    assert_eq!(r.rollout().step, StepRef::Bake);
    assert_eq!(plan.requeue, Requeue::After(Duration::from_secs(300)));
    r.later(300);
    r.decide(&done);
    assert_eq!(r.status.phase, Phase::Healthy);
    assert_eq!(r.rollout().result, Some(RolloutResult::Succeeded));
}

#[test]
fn rollout_should_revert_to_the_stable_version_when_the_bake_fails() {
    let mut r = Rollout::new(baked(Some("errors")));
    let done = live_with(canary_job(), vec![canary_deployment(DeploymentStatus::Successful, 3, true)]);
    r.decide(&done);
    r.measured(StepRef::Bake, "errors", AnalysisPhase::Failed, 2, "failureCondition held: result = 0.4");
    let plan = r.decide(&done);
    let revert = Action::RevertJob { job_id: "web".into(), version: 3, enforce_prior_version: 4 };
    assert_eq!(plan.actions, vec![revert.clone()]);
    assert_eq!(r.status.failed_hash.as_deref(), Some("h2"));
    // Not visible yet: revert again (EnforcePriorVersion makes a second one harmless).
    assert_eq!(r.decide(&done).actions, vec![revert]);
    // The revert runs (version 5) and its deployment completes: Degraded, RolledBack.
    let reverted_job = LiveJob { version: Some(5), ..job(JMI + 10) };
    let reverted = LiveDeployment {
        id: "e-revert".into(),
        job_version: 5,
        job_spec_modify_index: JMI + 10,
        status: DeploymentStatus::Successful,
        ..canary_deployment(DeploymentStatus::Successful, 3, true)
    };
    let plan =
        r.decide(&live_with(reverted_job, vec![reverted, canary_deployment(DeploymentStatus::Successful, 3, true)]));
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert_eq!((r.status.phase, r.reason()), (Phase::Degraded, Some(Reason::RolledBack)));
    assert_eq!(r.rollout().step, StepRef::Done);
}

#[test]
fn rollout_should_promote_the_canaries_of_its_own_revert() {
    let mut r = Rollout::new(baked(Some("errors")));
    let done = live_with(canary_job(), vec![canary_deployment(DeploymentStatus::Successful, 3, true)]);
    r.decide(&done);
    r.measured(StepRef::Bake, "errors", AnalysisPhase::Failed, 2, "bad");
    r.decide(&done);
    let reverting = LiveDeployment {
        id: "e-revert".into(),
        job_version: 5,
        job_spec_modify_index: JMI + 10,
        ..canary_deployment(DeploymentStatus::Running, 1, false)
    };
    let plan = r.decide(&live_with(LiveJob { version: Some(5), ..job(JMI + 10) }, vec![reverting]));
    assert_eq!(plan.actions, vec![Action::PromoteDeployment { id: "e-revert".into() }]);
}

#[test]
fn rollout_should_pause_and_resume_moving_the_step_clock_on() {
    let mut r = Rollout::new(canary(vec![pause(60)]));
    let l = live_with(canary_job(), vec![canary_deployment(DeploymentStatus::Running, 1, false)]);
    r.decide(&l);
    r.later(20);
    r.control(ControlAction::Pause, 10, 1);
    let plan = r.decide(&l);
    assert_eq!(plan.actions, vec![Action::PauseDeployment { id: DEP.into(), pause: true }]);
    assert_eq!((r.status.phase, r.reason()), (Phase::Paused, Some(Reason::PausedByUser)));
    let paused = live_with(canary_job(), vec![canary_deployment(DeploymentStatus::Paused, 1, false)]);
    r.later(600);
    assert!(r.decide(&paused).actions.is_empty(), "a paused rollout does not time out");
    r.control(ControlAction::Resume, 10, 2);
    let plan = r.decide(&paused);
    assert_eq!(plan.actions, vec![Action::PauseDeployment { id: DEP.into(), pause: false }]);
    assert_eq!(r.rollout().deadline, Some(timestamp(now() + Duration::from_secs(660))), "moved on by 600 s");
    r.later(39);
    assert!(r.decide(&l).actions.is_empty(), "40 s of the pause were left");
    r.later(1);
    assert!(promoted(&r.decide(&l)));
}

#[test]
fn rollout_should_skip_every_step_on_promote_full_and_restart_from_the_first_on_restart() {
    let mut r = Rollout::new(canary(vec![pause(60), gate(None, OnTimeout::Abort)]));
    let l = live_with(canary_job(), vec![canary_deployment(DeploymentStatus::Running, 1, false)]);
    r.decide(&l);
    r.later(60);
    r.decide(&l);
    assert_eq!(r.rollout().step, StepRef::Step(1));
    r.control(ControlAction::Restart, 10, 1);
    let plan = r.decide(&l);
    assert!(plan.actions.is_empty());
    assert_eq!(r.rollout().step, StepRef::Step(0));
    assert_eq!(plan.requeue, Requeue::After(Duration::from_secs(60)));
    r.control(ControlAction::PromoteFull, 10, 2);
    assert!(promoted(&r.decide(&l)));
}

#[test]
fn rollout_should_register_a_failed_spec_again_on_retry_only() {
    let mut r = Rollout::new(canary(vec![pause(10)]));
    r.status.failed_hash = Some("h2".into());
    let l = live_with(LiveJob { version: Some(5), ..job(JMI + 5) }, vec![]);
    assert!(r.decide(&l).actions.is_empty(), "no flapping");
    r.control(ControlAction::Retry, 10, 3);
    let plan = r.decide(&l);
    assert!(
        plan.actions.iter().any(|a| matches!(a, Action::Register { reason: RegisterReason::Refresh, .. })),
        "{:?}",
        plan.actions
    );
    assert!(r.status.last_control.as_ref().is_some_and(|c| c.applied));
    // A retry when nothing failed is consumed as ignored.
    let mut healthy = Rollout::new(canary(vec![pause(10)]));
    healthy.control(ControlAction::Retry, 10, 4);
    healthy.decide(&live_with(canary_job(), vec![canary_deployment(DeploymentStatus::Successful, 3, true)]));
    assert!(healthy.status.last_control.as_ref().is_some_and(|c| !c.applied));
}

#[test]
fn rollout_should_gate_a_raw_job_canary_unless_nomad_promotes_it() {
    let mut r = Rollout::new(record());
    let l = live_with(canary_job(), vec![canary_deployment(DeploymentStatus::Running, 1, false)]);
    r.decide(&l);
    assert_eq!((r.status.phase, r.reason()), (Phase::Paused, Some(Reason::ManualGate)));
    let mut auto = canary_deployment(DeploymentStatus::Running, 1, false);
    auto.groups.values_mut().for_each(|g| g.auto_promote = true);
    let mut nomad_promotes = Rollout::new(record());
    nomad_promotes.decide(&live_with(canary_job(), vec![auto]));
    assert_eq!(nomad_promotes.status.phase, Phase::Progressing);
    assert_eq!(nomad_promotes.status.rollout, None, "Nomad's own promotion: nothing for the engine to drive");
}

#[test]
fn rollout_should_run_blue_green_pre_promotion_analysis_then_auto_promote_after_the_wait() {
    let strategy = Strategy {
        strategy_type: StrategyType::BlueGreen,
        blue_green: Some(BlueGreenStrategy {
            pre_promotion_analysis: Some(AnalysisStep { template: Some("errors".into()), ..AnalysisStep::default() }),
            auto_promote: true,
            auto_promote_after: Some(secs(20)),
            post_promotion_analysis: None,
        }),
        ..Strategy::default()
    };
    let mut r = Rollout::new(with_templates(ValidRecord { strategy: Arc::new(strategy), ..record() }));
    let mut d = canary_deployment(DeploymentStatus::Running, 3, false);
    d.groups.values_mut().for_each(|g| g.desired_canaries = 3);
    let l = live_with(canary_job(), vec![d]);
    r.decide(&l);
    assert_eq!(r.rollout().step, StepRef::PrePromotion);
    assert_eq!(r.rollout().analysis_runs[0].id.step, StepRef::PrePromotion, "the run names blueGreen's step");
    r.measured(StepRef::PrePromotion, "errors", AnalysisPhase::Successful, 3, "");
    let plan = r.decide(&l);
    assert!(plan.actions.is_empty());
    assert_eq!(plan.requeue, Requeue::After(Duration::from_secs(20)));
    r.later(20);
    assert!(promoted(&r.decide(&l)));
}

#[test]
fn rollout_should_report_an_unreadable_control_and_leave_the_rollout_alone() {
    let mut r = Rollout::new(canary(vec![pause(30)]));
    r.control = Some(Err("expected value at line 1 column 1".into()));
    let plan = r.decide(&live_with(canary_job(), vec![canary_deployment(DeploymentStatus::Running, 1, false)]));
    assert!(plan.actions.is_empty());
    let c = r.status.condition(ConditionType::Control).expect("reported");
    assert_eq!(c.reason, Reason::ControlUnreadable);
    assert_eq!(r.status.last_control, None);
}

#[test]
fn rollout_should_take_nomads_own_failure_of_the_canaries_as_the_verdict() {
    let mut r = Rollout::new(canary(vec![pause(30)]));
    r.decide(&live_with(canary_job(), vec![canary_deployment(DeploymentStatus::Running, 0, false)]));
    let nomad_failed = LiveDeployment {
        description: "Failed due to progress deadline - rolling back to job version 3".into(),
        ..canary_deployment(DeploymentStatus::Failed, 0, false)
    };
    let plan = r.decide(&live_with(canary_job(), vec![nomad_failed]));
    assert!(plan.actions.is_empty());
    assert_eq!((r.status.phase, r.reason()), (Phase::Degraded, Some(Reason::RolledBack)));
    assert_eq!(r.rollout().result, Some(RolloutResult::DeploymentFailed));
    assert_eq!(r.status.failed_hash.as_deref(), Some("h2"));
}

#[test]
fn rollout_should_not_bake_the_deployment_of_a_scale() {
    let mut r = Rollout::new(baked(None));
    r.status.history.insert(
        0,
        HistoryEntry {
            generation: 10,
            hash: "h2".into(),
            job_version: None,
            result: HistoryResult::Scaled,
            at: timestamp(now()),
        },
    );
    let mut d = canary_deployment(DeploymentStatus::Successful, 3, true);
    d.groups.values_mut().for_each(|g| g.desired_canaries = 0);
    let plan = r.decide(&live_with(canary_job(), vec![d]));
    assert!(plan.actions.is_empty());
    assert_eq!(r.status.phase, Phase::Healthy);
    assert_eq!(r.status.rollout, None, "a scale is not a rollout");
}

#[test]
fn rollout_should_call_canaries_nothing_could_place_stalled_after_the_progress_deadline() {
    let mut r = Rollout::new(canary(vec![pause(30)]));
    let mut unplaced = canary_deployment(DeploymentStatus::Running, 0, false);
    unplaced.placed = 0;
    unplaced.groups.values_mut().for_each(|g| g.placed_canaries = 0);
    r.decide(&live_with(canary_job(), vec![unplaced]));
    assert_eq!((r.status.phase, r.reason()), (Phase::Degraded, Some(Reason::PlacementStalled)), "{}", r.message());
}
