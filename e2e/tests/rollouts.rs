//! Progressive delivery against real processes (issue #8): canary rollouts driven through Nomad's deployments by
//! `drover run` against `drover-sim`, asserting on what Nomad runs and on status. Drover's steps run on the wall
//! clock (the simulator's time scale only speeds Nomad up), so pauses here are a few real seconds.

use drover::rollout::{RolloutResult, StepRef};
use drover::status::{AppStatus, ConditionType, Phase, Reason};
use drover_e2e::{DEADLINE, DroverProcess, SimProcess, TIME_SCALE, job_image, template_record, wait_until};
use serde_json::Value;

/// `strategy:` lines for a canary of one replica with `steps` (YAML list items, indented for `steps:`).
fn canary(steps: &str) -> String {
    format!(
        "strategy:\n  type: Canary\n  minHealthyTime: 1s\n  healthyDeadline: 1m\n  canary:\n    replicas: 1\n    steps:\n{steps}"
    )
}

/// A canary record of `web` running `image`, with `steps`.
fn canary_record(image: &str, steps: &str) -> String {
    // `template_record` adds its own `strategy:` block: replace it with the canary's.
    let plain = template_record("web", image, "");
    let head = plain.split("  strategy:\n").next().unwrap_or(&plain).to_string();
    let mut yaml = head;
    for line in canary(steps).lines() {
        yaml.push_str("  ");
        yaml.push_str(line);
        yaml.push('\n');
    }
    yaml
}

/// The images the job's live allocations run, from `GET /v1/job/:id/allocations`.
async fn running_images(sim: &SimProcess) -> Vec<u64> {
    let url = format!("{}/v1/job/web/allocations?namespace=default", sim.nomad_url);
    let allocs: Vec<Value> = drover_e2e::http_client()
        .get(&url)
        .send()
        .await
        .expect("GET allocations")
        .json()
        .await
        .expect("allocations JSON");
    let mut versions: Vec<u64> = allocs
        .iter()
        .filter(|a| a["DesiredStatus"] == "run" && a["ClientStatus"] == "running")
        .filter_map(|a| a["JobVersion"].as_u64())
        .collect();
    versions.sort_unstable();
    versions
}

fn ready_reason(s: &AppStatus) -> Option<Reason> {
    s.condition(ConditionType::Ready).map(|c| c.reason)
}

/// Scenario 1 (the pause part; the analysis part needs the analysis stage): the canary passes its pause, Drover
/// promotes it, and the job runs the new version everywhere.
#[tokio::test]
async fn a_canary_should_pass_its_pause_be_promoted_and_run_everywhere() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let mut drover = DroverProcess::start(&sim, &[]).await;
    let first = sim.put_record("default", "web", canary_record("nginx:1", "      - pause: {duration: 2s}\n")).await;
    sim.wait_for_status("default", "web", "the first version Healthy (no canaries in Nomad for it)", |s| {
        s.phase == Phase::Healthy && s.observed_generation == first
    })
    .await;

    let second = sim.put_record("default", "web", canary_record("nginx:2", "      - pause: {duration: 2s}\n")).await;
    let at_pause = sim
        .wait_for_status("default", "web", "the canary at its pause", |s| {
            s.observed_generation == second && s.rollout.as_ref().is_some_and(|r| r.step == StepRef::Step(0))
        })
        .await;
    assert_eq!(at_pause.phase, Phase::Progressing);
    assert_eq!(ready_reason(&at_pause), Some(Reason::RolloutStep));
    let rollout = at_pause.rollout.clone().expect("rollout");
    assert_eq!(rollout.step_count, 1);
    assert!(rollout.deadline.is_some(), "every step has a deadline: {rollout:?}");
    let done = sim
        .wait_for_status("default", "web", "Healthy after promotion", |s| {
            s.phase == Phase::Healthy && s.observed_generation == second
        })
        .await;
    let rollout = done.rollout.clone().expect("rollout");
    assert_eq!((rollout.step, rollout.result), (StepRef::Done, Some(RolloutResult::Succeeded)));
    let job = sim.job("default", "web").await.expect("job");
    assert_eq!(job_image(&job), Some("nginx:2"));
    let version = rollout.canary_version.expect("the canary's version");
    let images = running_images(&sim).await;
    assert!(images.len() == 2 && images.iter().all(|v| *v == version), "every allocation runs {version}: {images:?}");
    let log = sim.log(Some("nomad"), 0).await.requests;
    let promotes: Vec<_> =
        log.iter().filter(|r| r.method == "POST" && r.path.starts_with("/v1/deployment/promote/")).collect();
    assert_eq!(promotes.len(), 1, "promoted once: {promotes:#?}");
    drover.assert_running();
}

/// Seconds since the epoch of a status timestamp (`YYYY-MM-DDTHH:MM:SSZ`, as Drover writes them).
fn epoch_secs(ts: &str) -> i64 {
    let num = |range: std::ops::Range<usize>| -> i64 {
        ts.get(range).and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("not an RFC 3339 timestamp: {ts}"))
    };
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + num(11..13) * 3600 + num(14..16) * 60 + num(17..19)
}

fn now_secs() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after the epoch");
    i64::try_from(now.as_secs()).expect("fits")
}

/// Scenario 7: a Drover restart mid-rollout resumes at the same step, with the clock it had, without re-running the
/// finished step.
#[tokio::test]
async fn a_restart_mid_rollout_should_resume_at_the_same_step() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let steps = "      - pause: {duration: 1s}\n      - pause: {duration: 8s}\n";
    let first = DroverProcess::start(&sim, &[]).await;
    let generation = sim.put_record("default", "web", canary_record("nginx:1", steps)).await;
    sim.wait_for_status("default", "web", "Healthy", |s| {
        s.phase == Phase::Healthy && s.observed_generation == generation
    })
    .await;
    let second = sim.put_record("default", "web", canary_record("nginx:2", steps)).await;
    let before = sim
        .wait_for_status("default", "web", "the second pause", |s| {
            s.observed_generation == second && s.rollout.as_ref().is_some_and(|r| r.step == StepRef::Step(1))
        })
        .await;
    let started = before.rollout.as_ref().and_then(|r| r.step_started_at.clone()).expect("the step's start");
    let started = epoch_secs(&started);
    // Restart 4 s into the 8 s pause: a pause that started over would end 4 s late.
    wait_until(DEADLINE, "4 s into the second pause", || async {
        if now_secs() >= started + 4 { Ok(()) } else { Err(now_secs() - started) }
    })
    .await;
    drop(first);
    let mut again = DroverProcess::start(&sim, &[]).await;
    let seen = std::cell::RefCell::new(Vec::new());
    let done = sim
        .wait_for_status("default", "web", "Healthy after promotion", |s| {
            if let Some(r) = &s.rollout {
                seen.borrow_mut().push(r.step);
            }
            s.phase == Phase::Healthy && s.observed_generation == second
        })
        .await;
    assert!(!seen.borrow().contains(&StepRef::Step(0)), "the finished pause is not run again: {:?}", seen.borrow());
    let r = done.rollout.clone().expect("rollout");
    assert_eq!(r.result, Some(RolloutResult::Succeeded));
    let ended = epoch_secs(r.step_started_at.as_deref().expect("when it ended"));
    assert!(
        (started + 8..started + 11).contains(&ended),
        "the pause kept its clock across the restart: started {started}, ended {ended} (a restarted pause ends at {} or later)",
        started + 12
    );
    again.assert_running();
}

/// Nomad fails an unhealthy canary (its own verdict); Drover reports it and does not register the spec again
/// across resyncs.
#[tokio::test]
async fn an_unhealthy_canary_failed_by_nomad_should_not_be_registered_again() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let mut drover = DroverProcess::start(&sim, &[]).await;
    let steps = "      - pause: {duration: 1s}\n";
    let first = sim.put_record("default", "web", canary_record("nginx:1", steps)).await;
    let healthy = sim
        .wait_for_status("default", "web", "Healthy", |s| s.phase == Phase::Healthy && s.observed_generation == first)
        .await;
    let stable = healthy.applied_job_version.expect("a version");
    sim.set_health("default", "web", Some(stable + 1), "unhealthy").await;
    let second = sim.put_record("default", "web", canary_record("nginx:bad", steps)).await;
    let degraded = sim
        .wait_for_status("default", "web", "Degraded after Nomad failed the canary", |s| {
            s.phase == Phase::Degraded && s.observed_generation == second
        })
        .await;
    assert_eq!(ready_reason(&degraded), Some(Reason::RolledBack), "{:?}", degraded.conditions);
    let rollout = degraded.rollout.clone().expect("rollout");
    assert_eq!((rollout.step, rollout.result), (StepRef::Done, Some(RolloutResult::DeploymentFailed)));
    wait_until(DEADLINE, "Nomad back on the stable image", || async {
        let job = sim.job("default", "web").await;
        match job.as_ref().and_then(job_image) {
            Some("nginx:1") => Ok(()),
            other => Err(other.map(str::to_owned)),
        }
    })
    .await;
    let since = sim.log(None, 0).await.last_seq;
    let seen = drover.reconcile_total().await;
    drover.wait_reconciles(seen, 3).await;
    let registers = sim.nomad_requests(since, "POST", "/v1/job/web").await.len();
    assert_eq!(registers, 0, "the failed spec is not registered again across resyncs");
    drover.assert_running();
}

/// Scenario 3: a manual gate holds the rollout `Paused` until `drover promote`; a control written for an older
/// generation is ignored and reported, and never promotes the newer spec.
#[tokio::test]
async fn a_manual_gate_should_wait_for_drover_promote_and_ignore_a_stale_control() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let mut drover = DroverProcess::start(&sim, &[]).await;
    let gate = "      - pause: {}\n";
    let first = sim.put_record("default", "web", canary_record("nginx:1", gate)).await;
    sim.wait_for_status("default", "web", "Healthy", |s| s.phase == Phase::Healthy && s.observed_generation == first)
        .await;
    let second = sim.put_record("default", "web", canary_record("nginx:2", gate)).await;
    let paused = sim
        .wait_for_status("default", "web", "Paused at the manual gate", |s| {
            s.phase == Phase::Paused && s.observed_generation == second
        })
        .await;
    assert_eq!(ready_reason(&paused), Some(Reason::ManualGate));

    // A promote someone wrote for the first generation: consumed as ignored, the gate holds.
    let stale = drover::rollout::Control {
        action: drover::rollout::ControlAction::Promote,
        generation: first,
        requested_at: "2026-12-07T00:00:00Z".into(),
        by: "someone".into(),
    };
    let index = sim.kv_put("drover/control/default/web", serde_json::to_vec(&stale).expect("encode")).await;
    let ignored = sim
        .wait_for_status("default", "web", "the stale control consumed", |s| {
            s.last_control.as_ref().is_some_and(|c| c.modify_index == index)
        })
        .await;
    let consumed = ignored.last_control.clone().expect("consumed");
    assert!(!consumed.applied, "a stale promote never promotes a newer spec: {consumed:?}");
    assert!(consumed.message.contains(&format!("generation {first}")), "{consumed:?}");
    assert_eq!(ignored.phase, Phase::Paused);
    let promotes = |log: &[drover_e2e::LoggedRequest]| {
        log.iter().filter(|r| r.path.starts_with("/v1/deployment/promote/")).count()
    };
    assert_eq!(promotes(&sim.log(Some("nomad"), 0).await.requests), 0);

    let out = sim.cli(&["promote", "web"], &[]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let done = sim
        .wait_for_status("default", "web", "Healthy after drover promote", |s| {
            s.phase == Phase::Healthy && s.observed_generation == second
        })
        .await;
    assert!(done.last_control.as_ref().is_some_and(|c| c.applied), "{:?}", done.last_control);
    assert_eq!(promotes(&sim.log(Some("nomad"), 0).await.requests), 1);
    let job = sim.job("default", "web").await.expect("job");
    assert_eq!(job_image(&job), Some("nginx:2"));
    drover.assert_running();
}

/// Scenario 8: `drover wait` for a rollout exits 2 while a manual gate holds it past the timeout, 0 once promoted
/// and healthy, 1 once aborted (Degraded).
#[tokio::test]
async fn drover_wait_should_exit_by_the_rollouts_outcome() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let mut drover = DroverProcess::start(&sim, &[]).await;
    let gate = "      - pause: {}\n";
    sim.put_record("default", "web", canary_record("nginx:1", gate)).await;
    let out = sim.cli(&["wait", "web", "--timeout", "30s"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "the first version rolls out: {}", String::from_utf8_lossy(&out.stdout));

    let second = sim.put_record("default", "web", canary_record("nginx:2", gate)).await;
    sim.wait_for_status("default", "web", "Paused at the gate", |s| {
        s.phase == Phase::Paused && s.observed_generation == second
    })
    .await;
    let out = sim.cli(&["wait", "web", "--timeout", "2s"], &[]).await;
    assert_eq!(out.status.code(), Some(2), "a gate nobody promotes: timeout; {}", String::from_utf8_lossy(&out.stdout));
    let promote = sim.cli(&["promote", "web"], &[]).await;
    assert!(promote.status.success(), "{}", String::from_utf8_lossy(&promote.stderr));
    let out = sim.cli(&["wait", "web", "--timeout", "30s"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "promoted and healthy: {}", String::from_utf8_lossy(&out.stdout));

    let third = sim.put_record("default", "web", canary_record("nginx:3", gate)).await;
    sim.wait_for_status("default", "web", "Paused at the gate again", |s| {
        s.phase == Phase::Paused && s.observed_generation == third
    })
    .await;
    let abort = sim.cli(&["abort", "web"], &[]).await;
    assert!(abort.status.success(), "{}", String::from_utf8_lossy(&abort.stderr));
    let out = sim.cli(&["wait", "web", "--timeout", "30s"], &[]).await;
    assert_eq!(out.status.code(), Some(1), "aborted: {}", String::from_utf8_lossy(&out.stdout));
    let status = sim.status("default", "web").await.expect("status");
    assert_eq!((status.phase, ready_reason(&status)), (Phase::Degraded, Some(Reason::Aborted)));
    let job = sim.job("default", "web").await.expect("job");
    assert_eq!(job_image(&job), Some("nginx:2"), "Nomad reverted to the stable version");
    drover.assert_running();
}

/// The error-rate template every analysis scenario uses, measuring the version under test through `address`: the
/// share of 5xx answers over 5 s (Prometheus scrapes the simulator every second), failing above 5 %.
fn error_rate(address: &str, extra: &str) -> String {
    let query = "sum(rate(http_requests_total{job=\"{{ .JobID }}\",version=\"{{ .Version }}\",code=\"500\"}[5s])) / \
                 sum(rate(http_requests_total{job=\"{{ .JobID }}\",version=\"{{ .Version }}\"}[5s]))";
    format!(
        "analysis:\n  errors:\n    prometheus:\n      address: {address}\n      query: '{query}'\n      timeout: 2s\n    \
         failureCondition: 'result > 0.05'\n    interval: 2s\n    count: 3\n    initialDelay: 3s\n    \
         inconclusiveLimit: 5\n{extra}"
    )
}

/// `canary_record` with `extra` YAML (at `spec:` level) appended.
fn canary_record_with(image: &str, steps: &str, extra: &str) -> String {
    let mut yaml = canary_record(image, steps);
    for line in extra.lines() {
        yaml.push_str("  ");
        yaml.push_str(line);
        yaml.push('\n');
    }
    yaml
}

const ANALYSIS_STEPS: &str = "      - pause: {duration: 1s}\n      - analysis: {template: errors}\n";

/// Scenario 1: a good canary passes its pause and its analysis against a real Prometheus and is promoted; the job
/// runs the new version everywhere, and status keeps the run with its measurements.
#[tokio::test]
async fn a_good_canary_should_pass_its_analysis_and_be_promoted() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let prometheus = drover_e2e::PrometheusProcess::start(&sim).await;
    let mut drover = DroverProcess::start(&sim, &[]).await;
    sim.set_workload("default", "web", None, 100.0, 0.0).await;
    let analysis = error_rate(&prometheus.url, "");
    let first = sim.put_record("default", "web", canary_record_with("nginx:1", ANALYSIS_STEPS, &analysis)).await;
    sim.wait_for_status("default", "web", "Healthy", |s| s.phase == Phase::Healthy && s.observed_generation == first)
        .await;
    let second = sim.put_record("default", "web", canary_record_with("nginx:2", ANALYSIS_STEPS, &analysis)).await;
    let done = wait_until(2 * DEADLINE, "Healthy after the analysis passed", || async {
        match sim.status("default", "web").await {
            Some(s) if s.phase == Phase::Healthy && s.observed_generation == second => Ok(s),
            other => Err(other.map(|s| (s.phase, s.rollout, s.conditions))),
        }
    })
    .await;
    let rollout = done.rollout.clone().expect("rollout");
    assert_eq!(rollout.result, Some(RolloutResult::Succeeded));
    let run = rollout.analysis_runs.iter().find(|r| r.id.template == "errors").expect("the run in status");
    assert_eq!(run.phase, drover::rollout::AnalysisPhase::Successful, "{run:?}");
    assert!(run.successful >= 3 && !run.measurements.is_empty(), "{run:?}");
    assert!(run.measurements.iter().all(|m| m.query.contains("version=\"")), "the resolved query is kept: {run:?}");
    let job = sim.job("default", "web").await.expect("job");
    assert_eq!(job_image(&job), Some("nginx:2"));
    drover.assert_running();
}

/// Scenario 2: a bad canary (half its requests fail) fails its analysis, is aborted, Nomad reverts; status says
/// `Degraded` / `AnalysisFailed` naming the query and values, and the spec is not registered again across resyncs.
#[tokio::test]
async fn a_bad_canary_should_fail_its_analysis_be_aborted_and_not_come_back() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let prometheus = drover_e2e::PrometheusProcess::start(&sim).await;
    let mut drover = DroverProcess::start(&sim, &[]).await;
    sim.set_workload("default", "web", None, 100.0, 0.0).await;
    let analysis = error_rate(&prometheus.url, "");
    let first = sim.put_record("default", "web", canary_record_with("nginx:1", ANALYSIS_STEPS, &analysis)).await;
    let healthy = sim
        .wait_for_status("default", "web", "Healthy", |s| s.phase == Phase::Healthy && s.observed_generation == first)
        .await;
    let bad = healthy.applied_job_version.expect("a version") + 1;
    sim.set_workload("default", "web", Some(bad), 100.0, 0.5).await;
    let second = sim.put_record("default", "web", canary_record_with("nginx:bad", ANALYSIS_STEPS, &analysis)).await;
    let degraded = wait_until(2 * DEADLINE, "Degraded after the analysis failed", || async {
        match sim.status("default", "web").await {
            Some(s) if s.phase == Phase::Degraded && s.observed_generation == second => Ok(s),
            other => Err(other.map(|s| (s.phase, s.rollout, s.conditions))),
        }
    })
    .await;
    assert_eq!(ready_reason(&degraded), Some(Reason::AnalysisFailed), "{:?}", degraded.conditions);
    let message = degraded.condition(ConditionType::Ready).map(|c| c.message.clone()).unwrap_or_default();
    assert!(
        message.contains("result > 0.05") && message.contains("result = 0.5"),
        "names the condition and value: {message}"
    );
    let rollout = degraded.rollout.clone().expect("rollout");
    assert_eq!((rollout.step, rollout.result), (StepRef::Done, Some(RolloutResult::AnalysisFailed)));
    let run = rollout.analysis_runs.iter().find(|r| r.id.template == "errors").expect("run");
    assert!(run.measurements.iter().any(|m| m.query.contains(&format!("version=\"{bad}\""))), "{run:?}");
    wait_until(DEADLINE, "Nomad back on the stable image", || async {
        match sim.job("default", "web").await.as_ref().and_then(job_image) {
            Some("nginx:1") => Ok(()),
            other => Err(other.map(str::to_owned)),
        }
    })
    .await;
    let since = sim.log(None, 0).await.last_seq;
    let seen = drover.reconcile_total().await;
    drover.wait_reconciles(seen, 3).await;
    assert_eq!(sim.nomad_requests(since, "POST", "/v1/job/web").await.len(), 0, "no flapping");
    drover.assert_running();
}

/// Scenario 5: the canary looks fine while it is small, the regression shows once it runs everywhere: the
/// post-promotion bake catches it and reverts the job to the stable version (`Degraded` / `RolledBack`).
#[tokio::test]
async fn a_bake_should_catch_a_regression_after_promotion_and_revert() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let prometheus = drover_e2e::PrometheusProcess::start(&sim).await;
    let mut drover = DroverProcess::start(&sim, &[]).await;
    sim.set_workload("default", "web", None, 100.0, 0.0).await;
    // The post-promotion bake goes into the canary's `strategy:` block.
    let record = |image: &str| {
        let analysis = error_rate(&prometheus.url, "");
        canary_record_with(image, "      - pause: {duration: 1s}\n", &analysis).replace(
            "  canary:\n",
            "  postPromotion:\n      bake: 20s\n      analysis: {template: errors}\n    canary:\n",
        )
    };
    let first = sim.put_record("default", "web", record("nginx:1")).await;
    let healthy = sim
        .wait_for_status("default", "web", "Healthy", |s| s.phase == Phase::Healthy && s.observed_generation == first)
        .await;
    let stable = healthy.applied_job_version.expect("a version");
    // The new version fails half its requests, but the steps hold no analysis: only the bake measures it.
    sim.set_workload("default", "web", Some(stable + 1), 100.0, 0.5).await;
    let second = sim.put_record("default", "web", record("nginx:2")).await;
    sim.wait_for_status("default", "web", "baking", |s| {
        s.observed_generation == second && s.rollout.as_ref().is_some_and(|r| r.step == StepRef::Bake)
    })
    .await;
    let degraded = wait_until(2 * DEADLINE, "Degraded / RolledBack after the bake", || async {
        match sim.status("default", "web").await {
            Some(s) if s.phase == Phase::Degraded && s.observed_generation == second => Ok(s),
            other => Err(other.map(|s| (s.phase, s.rollout, s.conditions))),
        }
    })
    .await;
    assert_eq!(ready_reason(&degraded), Some(Reason::RolledBack), "{:?}", degraded.conditions);
    let reverts = sim.log(Some("nomad"), 0).await.requests;
    assert_eq!(reverts.iter().filter(|r| r.path == "/v1/job/web/revert").count(), 1, "reverted once");
    wait_until(DEADLINE, "the stable image everywhere", || async {
        let job = sim.job("default", "web").await;
        let images = running_images(&sim).await;
        match job.as_ref().and_then(job_image) {
            Some("nginx:1") if images.len() == 2 && images.iter().all(|v| *v > stable + 1) => Ok(()),
            other => Err((other.map(str::to_owned), images)),
        }
    })
    .await;
    drover.assert_running();
}

/// Scenario 6: Prometheus is down during the analysis: the measurements are errors, not failures, retried until
/// `consecutiveErrorLimit`; then the run fails and the verdict says the measurements could not be taken.
#[tokio::test]
async fn a_prometheus_outage_should_be_errors_until_the_limit_and_say_so() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let mut drover = DroverProcess::start(&sim, &[]).await;
    let nowhere = format!("http://127.0.0.1:{}", drover_e2e::free_port());
    let analysis = error_rate(&nowhere, "")
        .replace("inconclusiveLimit: 5\n", "inconclusiveLimit: 5\n    consecutiveErrorLimit: 2\n");
    let first = sim.put_record("default", "web", canary_record_with("nginx:1", ANALYSIS_STEPS, &analysis)).await;
    sim.wait_for_status("default", "web", "Healthy", |s| s.phase == Phase::Healthy && s.observed_generation == first)
        .await;
    let second = sim.put_record("default", "web", canary_record_with("nginx:2", ANALYSIS_STEPS, &analysis)).await;
    let degraded = wait_until(2 * DEADLINE, "Degraded after the errors", || async {
        match sim.status("default", "web").await {
            Some(s) if s.phase == Phase::Degraded && s.observed_generation == second => Ok(s),
            other => Err(other.map(|s| (s.phase, s.rollout, s.conditions))),
        }
    })
    .await;
    assert_eq!(ready_reason(&degraded), Some(Reason::AnalysisFailed), "{:?}", degraded.conditions);
    let rollout = degraded.rollout.clone().expect("rollout");
    let run = rollout.analysis_runs.iter().find(|r| r.id.template == "errors").expect("run");
    assert_eq!((run.failed, run.successful), (0, 0), "no measurement failed: they were errors: {run:?}");
    assert!(run.errors >= 2 && run.consecutive_errors >= 2, "{run:?}");
    assert!(
        run.measurements.iter().all(|m| m.phase == drover::rollout::MeasurementPhase::Error && m.error.is_some()),
        "{run:?}"
    );
    let message = degraded.condition(ConditionType::Ready).map(|c| c.message.clone()).unwrap_or_default();
    assert!(
        message.to_lowercase().contains("error"),
        "the verdict says the measurements failed to be taken: {message}"
    );
    drover.assert_running();
}

/// A blue-green record of `web` running `image`: a full second set, analysed before promotion, promoted without a
/// person.
fn blue_green_record(image: &str, address: &str) -> String {
    let plain = template_record("web", image, "");
    let mut yaml = plain.split("  strategy:\n").next().unwrap_or(&plain).to_string();
    let strategy = "strategy:\n  type: BlueGreen\n  minHealthyTime: 1s\n  healthyDeadline: 1m\n  blueGreen:\n    \
                    prePromotionAnalysis: {template: errors}\n    autoPromote: true\n";
    for line in strategy.lines().chain(error_rate(address, "").lines()) {
        yaml.push_str("  ");
        yaml.push_str(line);
        yaml.push('\n');
    }
    yaml
}

/// Scenario 4: blue-green places a full second set, runs the pre-promotion analysis on it, and promotes it by
/// itself (`autoPromote`); every allocation then runs the new version.
#[tokio::test]
async fn blue_green_should_analyse_the_new_set_then_promote_it_by_itself() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let prometheus = drover_e2e::PrometheusProcess::start(&sim).await;
    let mut drover = DroverProcess::start(&sim, &[]).await;
    sim.set_workload("default", "web", None, 100.0, 0.0).await;
    let first = sim.put_record("default", "web", blue_green_record("nginx:1", &prometheus.url)).await;
    sim.wait_for_status("default", "web", "Healthy", |s| s.phase == Phase::Healthy && s.observed_generation == first)
        .await;
    let second = sim.put_record("default", "web", blue_green_record("nginx:2", &prometheus.url)).await;
    let analysing = sim
        .wait_for_status("default", "web", "the pre-promotion analysis", |s| {
            s.observed_generation == second && s.rollout.as_ref().is_some_and(|r| r.step == StepRef::PrePromotion)
        })
        .await;
    assert_eq!(analysing.replicas.canaries, 2, "the new set is as large as the old: {:?}", analysing.replicas);
    let done = wait_until(2 * DEADLINE, "Healthy after auto-promotion", || async {
        match sim.status("default", "web").await {
            Some(s) if s.phase == Phase::Healthy && s.observed_generation == second => Ok(s),
            other => Err(other.map(|s| (s.phase, s.rollout, s.conditions))),
        }
    })
    .await;
    let rollout = done.rollout.clone().expect("rollout");
    assert_eq!(rollout.result, Some(RolloutResult::Succeeded));
    let run = rollout.analysis_runs.iter().find(|r| r.id.step == StepRef::PrePromotion).expect("the pre-promotion run");
    assert_eq!(run.phase, drover::rollout::AnalysisPhase::Successful, "{run:?}");
    assert!(done.last_control.is_none(), "nobody promoted it by hand");
    let version = rollout.canary_version.expect("version");
    let images = running_images(&sim).await;
    assert!(images.len() == 2 && images.iter().all(|v| *v == version), "{images:?}");
    drover.assert_running();
}
