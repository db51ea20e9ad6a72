//! The rollout control commands (`drover promote [--full]`, `abort`, `pause`, ...) run as processes against a
//! simulator: they write the right control, for the record's current generation, and write nothing (exit 3) when the
//! control would do nothing. The status they judge is written here directly, so the test isolates the CLI; what the
//! controller does with a control is covered by the rollout scenarios. Assertions on exit codes and JSON.

use std::process::Output;

use drover::rollout::status::PausedReason;
use drover::rollout::{Control, ControlAction, RolloutStatus, StepRef};
use drover::status::{AppStatus, Phase};
use drover_e2e::{SimProcess, TIME_SCALE};

fn text(out: &Output) -> String {
    format!("stdout: {}\nstderr: {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

const RECORD: &str = r#"
apiVersion: drover.io/v1alpha1
kind: App
metadata: {name: web, namespace: default}
spec:
  template: {image: "nginx:1.27", count: 3}
  strategy:
    type: Canary
    canary:
      replicas: 1
      steps:
        - pause: {duration: 1m}
        - pause: {}
"#;

/// A status for `generation`, its canary rollout at `step` (None: no rollout, Healthy).
fn status(generation: u64, step: Option<StepRef>) -> Vec<u8> {
    let rollout = step.map(|step| RolloutStatus {
        strategy: drover::app::StrategyType::Canary,
        generation,
        step,
        step_count: 2,
        paused_reason: (step == StepRef::Step(1)).then_some(PausedReason::ManualGate),
        canary_version: Some(1),
        stable_version: Some(0),
        ..RolloutStatus::default()
    });
    let phase = match step {
        None => Phase::Healthy,
        Some(StepRef::Step(1)) => Phase::Paused,
        Some(_) => Phase::Progressing,
    };
    let status = AppStatus { observed_generation: generation, phase, rollout, ..AppStatus::default() };
    serde_json::to_vec(&status).expect("encode a status")
}

/// The control at `drover/control/default/web` and its `ModifyIndex`.
async fn control(sim: &SimProcess) -> Option<(Control, u64)> {
    let (bytes, index) = sim.kv_get("drover/control/default/web").await?;
    let control = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("the control is a Control ({e})"));
    Some((control, index))
}

#[tokio::test]
async fn control_commands_should_write_the_control_for_the_current_generation() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let generation = sim.put_record("default", "web", RECORD).await;
    sim.kv_put("drover/status/default/web", status(generation, Some(StepRef::Step(1)))).await;

    let out = sim.cli(&["promote", "web", "--by", "ci-bot"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "promote at a manual gate writes a control: {}", text(&out));
    let (written, first_index) = control(&sim).await.expect("a control was written");
    assert_eq!(
        (written.action, written.generation, written.by.as_str()),
        (ControlAction::Promote, generation, "ci-bot")
    );
    let at = &written.requested_at;
    let rfc3339 = drover::status::parse_timestamp(at).is_some() && at.get(10..11) == Some("T") && at.ends_with('Z');
    assert!(rfc3339, "requestedAt is RFC 3339 in UTC: {at:?}");

    let out = sim.cli(&["promote", "default/web", "--full"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (written, index) = control(&sim).await.expect("a control");
    assert_eq!((written.action, written.by.as_str()), (ControlAction::PromoteFull, "tester"), "by defaults to $USER");
    assert!(index > first_index, "a new command is a new write ({index} > {first_index})");

    // The record changes; the controller has not observed it yet: the control names the new generation.
    let newer = sim.put_record("default", "web", RECORD.replace("1.27", "1.28")).await;
    assert!(newer > generation);
    let out = sim.cli(&["abort", "-n", "default", "web"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (written, _) = control(&sim).await.expect("a control");
    assert_eq!((written.action, written.generation), (ControlAction::Abort, newer), "never the stale generation");

    // Observed and Healthy, with no rollout: nothing to promote, pause or resume, and nothing is written.
    sim.kv_put("drover/status/default/web", status(newer, None)).await;
    let (_, before) = control(&sim).await.expect("a control");
    for args in [&["promote", "web"][..], &["pause", "web"], &["resume", "web"], &["retry", "web"]] {
        let out = sim.cli(args, &[]).await;
        assert_eq!(out.status.code(), Some(3), "{args:?} has nothing to act on: {}", text(&out));
    }
    assert_eq!(control(&sim).await.map(|(_, i)| i), Some(before), "no control was written");
    sim.kv_put("drover/status/default/web", status(newer, Some(StepRef::Step(0)))).await;
    let out = sim.cli(&["restart", "web"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "the steps of a rollout can start again: {}", text(&out));
    assert_eq!(control(&sim).await.map(|(c, _)| (c.action, c.generation)), Some((ControlAction::Restart, newer)));

    let out = sim.cli(&["promote", "default/nothing"], &[]).await;
    assert_eq!(out.status.code(), Some(1), "an unknown app is an error: {}", text(&out));
    let out = sim.cli(&["promote", "prod/web", "-n", "default"], &[]).await;
    assert_eq!(out.status.code(), Some(1), "a -n that disagrees with APP is an error: {}", text(&out));
    assert!(sim.kv_get("drover/control/default/nothing").await.is_none());
}
