use super::*;
use crate::app::{AnalysisStep, HumanDuration, PauseStep};
use crate::rollout::status::RolloutResult;

const GEN: u64 = 40;

fn steps() -> Vec<CanaryStep> {
    vec![
        CanaryStep::Pause(PauseStep {
            duration: Some(HumanDuration(std::time::Duration::from_secs(60))),
            ..PauseStep::default()
        }),
        CanaryStep::Analysis(AnalysisStep { template: Some("error-rate".into()), ..AnalysisStep::default() }),
        CanaryStep::Pause(PauseStep::default()),
    ]
}

fn status(phase: Phase) -> AppStatus {
    AppStatus { observed_generation: GEN, phase, ..AppStatus::default() }
}

fn rolling_out(step: StepRef, paused: Option<PausedReason>) -> AppStatus {
    let rollout = RolloutStatus {
        strategy: StrategyType::Canary,
        generation: GEN,
        step,
        step_count: 3,
        paused_reason: paused,
        canary_version: Some(5),
        stable_version: Some(4),
        ..RolloutStatus::default()
    };
    let phase = if paused.is_some() { Phase::Paused } else { Phase::Progressing };
    AppStatus { rollout: Some(rollout), ..status(phase) }
}

fn acts(p: Preview) -> String {
    match p {
        Preview::Acts(text) => text,
        other => panic!("expected the control to act, got {other:?}"),
    }
}

fn nothing(p: Preview) -> String {
    match p {
        Preview::Nothing(text) => text,
        other => panic!("expected nothing to do, got {other:?}"),
    }
}

#[test]
fn preview_should_say_which_step_a_promote_ends_and_what_comes_next() {
    let s = rolling_out(StepRef::Step(0), None);
    assert_eq!(
        acts(preview(ControlAction::Promote, GEN, Some(&s), &steps())),
        "Step 1/3 (pause 1m) ends; next: Step 2/3 (analysis error-rate)"
    );
    let s = rolling_out(StepRef::Step(2), Some(PausedReason::ManualGate));
    assert_eq!(
        acts(preview(ControlAction::Promote, GEN, Some(&s), &steps())),
        "Step 3/3 (manual gate) ends; next: promotion"
    );
    let mut s = rolling_out(StepRef::Step(1), Some(PausedReason::AnalysisInconclusive));
    if let Some(r) = s.rollout.as_mut() {
        r.step_name = "analysis error-rate, latency".into();
    }
    let text = acts(preview(ControlAction::Promote, GEN, Some(&s), &steps()));
    assert!(text.starts_with("Step 2/3 (analysis error-rate, latency) ends (the inconclusive analysis"), "{text}");
    assert!(text.ends_with("next: Step 3/3 (manual gate)"), "{text}");
    let text = acts(preview(ControlAction::PromoteFull, GEN, Some(&rolling_out(StepRef::Step(0), None)), &steps()));
    assert!(text.contains("every later step are skipped"), "{text}");
    let text = acts(preview(ControlAction::Promote, GEN, Some(&rolling_out(StepRef::Bake, None)), &steps()));
    assert_eq!(text, "the bake is accepted as passed; the rollout succeeds");
}

#[test]
fn preview_should_refuse_a_promote_with_nothing_to_promote() {
    let text = nothing(preview(ControlAction::Promote, GEN, Some(&status(Phase::Healthy)), &steps()));
    assert_eq!(text, "no rollout in progress: generation 40 is already Healthy");
    let text = nothing(preview(ControlAction::Promote, GEN, Some(&rolling_out(StepRef::Promoting, None)), &steps()));
    assert!(text.starts_with("already promoted"), "{text}");
    let text = nothing(preview(ControlAction::Promote, GEN, Some(&rolling_out(StepRef::Placing, None)), &steps()));
    assert!(text.starts_with("placing the canaries: no step to end yet"), "{text}");
    let mut ended = rolling_out(StepRef::Done, None);
    if let Some(r) = ended.rollout.as_mut() {
        r.result = Some(RolloutResult::AnalysisFailed);
    }
    ended.phase = Phase::Degraded;
    let text = nothing(preview(ControlAction::Abort, GEN, Some(&ended), &steps()));
    assert!(text.starts_with("no rollout in progress: generation 40 is Degraded"), "{text}");
    let mut older = rolling_out(StepRef::Step(0), None);
    if let Some(r) = older.rollout.as_mut() {
        r.generation = GEN - 1;
    }
    nothing(preview(ControlAction::Promote, GEN, Some(&older), &steps()));
}

#[test]
fn preview_should_leave_the_judgement_to_drover_until_it_observed_the_generation() {
    assert!(matches!(preview(ControlAction::Promote, GEN, None, &[]), Preview::Unjudged(_)));
    let behind = AppStatus { observed_generation: GEN - 3, ..status(Phase::Healthy) };
    match preview(ControlAction::Abort, GEN, Some(&behind), &[]) {
        Preview::Unjudged(text) => assert!(text.contains("status at 37"), "{text}"),
        other => panic!("{other:?}"),
    }
    let ahead = AppStatus { observed_generation: GEN + 1, ..status(Phase::Healthy) };
    nothing(preview(ControlAction::Promote, GEN, Some(&ahead), &[]));
    nothing(preview(ControlAction::Promote, GEN, Some(&status(Phase::Invalid)), &[]));
}

#[test]
fn preview_should_abort_to_the_stable_version() {
    let text = acts(preview(ControlAction::Abort, GEN, Some(&rolling_out(StepRef::Step(1), None)), &steps()));
    assert_eq!(
        text,
        "the rollout stops at Step 2/3 (analysis error-rate): the deployment is failed and Nomad reverts to version 4; \
         the app ends Degraded (Aborted)"
    );
    let text = acts(preview(ControlAction::Abort, GEN, Some(&rolling_out(StepRef::Bake, None)), &steps()));
    assert!(text.contains("Drover reverts the job to version 4"), "{text}");
}

#[test]
fn preview_should_pause_and_resume_only_what_a_user_paused() {
    let running = rolling_out(StepRef::Step(1), None);
    acts(preview(ControlAction::Pause, GEN, Some(&running), &steps()));
    nothing(preview(ControlAction::Resume, GEN, Some(&running), &steps()));
    let paused = rolling_out(StepRef::Step(1), Some(PausedReason::PausedByUser));
    nothing(preview(ControlAction::Pause, GEN, Some(&paused), &steps()));
    assert_eq!(
        acts(preview(ControlAction::Resume, GEN, Some(&paused), &steps())),
        "the rollout goes on from Step 2/3 (analysis error-rate)"
    );
    let text = nothing(preview(ControlAction::Promote, GEN, Some(&paused), &steps()));
    assert!(text.ends_with("drover resume first"), "a person's pause blocks promotion: {text}");
    let gate = rolling_out(StepRef::Step(2), Some(PausedReason::ManualGate));
    assert!(nothing(preview(ControlAction::Resume, GEN, Some(&gate), &steps())).contains("drover promote opens it"));
    acts(preview(ControlAction::Pause, GEN, Some(&gate), &steps()));
}

#[test]
fn preview_should_retry_only_a_failed_rollout_and_restart_only_the_steps_of_one_in_progress() {
    let failed = AppStatus { failed_hash: Some("abc".into()), ..status(Phase::Degraded) };
    acts(preview(ControlAction::Retry, GEN, Some(&failed), &steps()));
    nothing(preview(ControlAction::Retry, GEN, Some(&status(Phase::Healthy)), &steps()));
    assert_eq!(
        acts(preview(ControlAction::Restart, GEN, Some(&rolling_out(StepRef::Step(2), None)), &steps())),
        "the steps start again from the first: Step 3/3 (manual gate) → Step 1/3 (pause 1m)"
    );
    nothing(preview(ControlAction::Restart, GEN, Some(&status(Phase::Healthy)), &steps()));
    nothing(preview(ControlAction::Restart, GEN, Some(&rolling_out(StepRef::Placing, None)), &steps()));
}

#[test]
fn app_key_should_take_the_namespace_from_the_app_or_the_flag() {
    assert_eq!(app_key("web", None).ok(), Some(AppKey::new("default", "web")));
    assert_eq!(app_key("web", Some("prod")).ok(), Some(AppKey::new("prod", "web")));
    assert_eq!(app_key("prod/web", None).ok(), Some(AppKey::new("prod", "web")));
    assert_eq!(app_key("prod/web", Some("prod")).ok(), Some(AppKey::new("prod", "web")));
    assert!(app_key("prod/web", Some("staging")).is_err(), "a -n that disagrees with the app");
    assert!(app_key("a/b/c", None).is_err());
}

#[test]
fn canary_steps_should_read_the_records_steps_and_tolerate_anything_else() {
    let record = br#"{"apiVersion":"drover.io/v1","kind":"App","metadata":{"name":"web"},"spec":{
        "template":{"image":"nginx:1.27","count":3},
        "strategy":{"type":"Canary","canary":{"replicas":1,"steps":[{"pause":{"duration":"5m"}},{"pause":{}}]}}}}"#;
    let labels: Vec<String> = canary_steps(record).iter().map(step_label).collect();
    assert_eq!(labels, ["pause 5m", "manual gate"]);
    assert!(canary_steps(b"not a record").is_empty());
}
