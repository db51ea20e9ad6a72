//! Changes Drover did not make: a job edited by hand (drift, reverted or reported; ignored while suspended) and a
//! rollout that Nomad fails and auto-reverts (reported, and not fought).

use drover::status::{ConditionStatus, ConditionType, HistoryResult, Phase, Reason};
use drover_e2e::{
    DEADLINE, DroverProcess, SimProcess, TIME_SCALE, job_image, job_modify_index, job_owner, template_record,
    wait_until,
};

/// Registers a copy of the live job `id` with another image, keeping Drover's Meta: a hand edit of an owned job.
/// Returns the `JobModifyIndex` of the hand edit (from the register reply: Drover may revert it at once).
async fn edit_by_hand(sim: &SimProcess, id: &str, image: &str) -> u64 {
    let mut job = sim.job("default", id).await.expect("the job to edit");
    job["TaskGroups"][0]["Tasks"][0]["Config"]["image"] = image.into();
    let reply = sim.register_job(&job).await.unwrap_or_else(|e| panic!("hand edit of {id}: {e:?}"));
    reply["JobModifyIndex"].as_u64().unwrap_or_else(|| panic!("a JobModifyIndex in the register reply: {reply}"))
}

#[tokio::test]
async fn drift_should_be_reverted_or_reported_as_the_policy_says() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let mut drover = DroverProcess::start(&sim, &[]).await;
    sim.put_record("default", "reverted", template_record("reverted", "nginx:1.27", "driftPolicy: Revert")).await;
    sim.put_record("default", "reported", template_record("reported", "nginx:1.27", "driftPolicy: Report")).await;
    for name in ["reverted", "reported"] {
        sim.wait_for_status("default", name, "Healthy", |s| s.phase == Phase::Healthy).await;
    }

    let reverted_hand = edit_by_hand(&sim, "reverted", "hand:edit").await;
    let reported_hand = edit_by_hand(&sim, "reported", "hand:edit").await;

    // Revert: Drover registers the desired spec again over the hand edit.
    let job = wait_until(DEADLINE, "job reverted runs the desired image again", || async {
        let job = sim.job("default", "reverted").await.expect("job reverted");
        if job_image(&job) == Some("nginx:1.27") && job_modify_index(&job) > reverted_hand {
            Ok(job)
        } else {
            Err((job_image(&job).map(str::to_owned), job_modify_index(&job)))
        }
    })
    .await;
    assert_eq!(job_owner(&job), Some("drover/apps/default/reverted"));
    let images: Vec<_> =
        sim.job_versions("default", "reverted").await.iter().map(|v| job_image(v).map(str::to_owned)).collect();
    assert!(images.contains(&Some("hand:edit".into())), "the hand edit was a version of its own: {images:?}");
    let status = sim
        .wait_for_status("default", "reverted", "Healthy with the revert applied", |s| {
            s.phase == Phase::Healthy && s.applied_job_modify_index == Some(job_modify_index(&job))
        })
        .await;
    assert!(
        status.history.iter().any(|h| h.result == HistoryResult::Reverted || h.job_version == job["Version"].as_u64()),
        "the revert is in the history: {:?}",
        status.history
    );

    // Report: Degraded with a Drifted condition, and the job is left as the person left it.
    let status = sim
        .wait_for_status("default", "reported", "Degraded and Drifted", |s| {
            s.phase == Phase::Degraded && s.condition(ConditionType::Drifted).is_some()
        })
        .await;
    let drifted = status.condition(ConditionType::Drifted).expect("Drifted");
    assert_eq!(drifted.status, ConditionStatus::True, "{drifted:?}");
    let seen = drover.reconcile_total().await;
    drover.wait_reconciles(seen, 2 * 2).await;
    let job = sim.job("default", "reported").await.expect("job reported");
    assert_eq!(job_modify_index(&job), reported_hand, "Report never writes the job");
    assert_eq!(job_image(&job), Some("hand:edit"));
    drover.assert_running();
}

/// A record whose rollouts Nomad reverts when they fail.
fn auto_revert_record(image: &str) -> String {
    format!(
        "apiVersion: drover.io/v1alpha1
kind: App
metadata: {{name: web, namespace: default}}
spec:
  template: {{image: \"{image}\", count: 2, ports: {{http: 8080}}}}
  strategy: {{type: Rolling, maxParallel: 2, minHealthyTime: 1s, healthyDeadline: 30s, progressDeadline: 1m, autoRevert: true}}
"
    )
}

#[tokio::test]
async fn failed_rollout_should_be_reported_and_not_registered_again() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let mut drover = DroverProcess::start(&sim, &[]).await;
    sim.put_record("default", "web", auto_revert_record("nginx:1.27")).await;
    let healthy = sim.wait_for_status("default", "web", "Healthy", |s| s.phase == Phase::Healthy).await;
    let good_version = healthy.applied_job_version.expect("applied version");

    // The next version's allocations fail.
    sim.set_health("default", "web", Some(good_version + 1), "unhealthy").await;
    let since = sim.log(None, 0).await.last_seq;
    let bad = sim.put_record("default", "web", auto_revert_record("nginx:broken")).await;
    let status = sim
        .wait_for_status("default", "web", "Degraded, rolled back", |s| {
            s.phase == Phase::Degraded && s.observed_generation == bad
        })
        .await;
    let ready = status.condition(ConditionType::Ready).expect("Ready");
    assert_eq!(ready.reason, Reason::RolledBack, "{ready:?}");
    let job = wait_until(DEADLINE, "Nomad's auto-revert to the good image", || async {
        let job = sim.job("default", "web").await.expect("job web");
        if job_image(&job) == Some("nginx:1.27") { Ok(job) } else { Err(job_image(&job).map(str::to_owned)) }
    })
    .await;
    assert!(job["Version"].as_u64() > Some(good_version + 1), "the revert is a new version: {}", job["Version"]);

    // Several resyncs later the failed spec was registered exactly once.
    let seen = drover.reconcile_total().await;
    drover.wait_reconciles(seen, 3).await;
    let registers = sim.nomad_requests(since, "POST", "/v1/job/web").await;
    assert_eq!(registers.len(), 1, "the failed spec is not registered again: {registers:?}");
    let status = sim.status("default", "web").await.expect("status");
    assert_eq!(status.phase, Phase::Degraded, "{status:?}");

    // A new generation is registered again.
    let fixed = sim.put_record("default", "web", auto_revert_record("nginx:1.29")).await;
    sim.wait_for_status("default", "web", "Healthy at the fixed generation", |s| {
        s.phase == Phase::Healthy && s.observed_generation == fixed
    })
    .await;
    let registers = sim.nomad_requests(since, "POST", "/v1/job/web").await;
    assert_eq!(registers.len(), 2, "one register per generation: {registers:?}");
    let job = sim.job("default", "web").await.expect("job web");
    assert_eq!(job_image(&job), Some("nginx:1.29"));
    drover.assert_running();
}

#[tokio::test]
async fn drift_during_a_rollout_should_be_reverted_once_nomad_cancels_it() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let mut drover = DroverProcess::start(&sim, &[]).await;
    // Version 0's checks never pass, so its deployment is still running when the hand edit lands (its healthy
    // deadline is 5 min of simulated time, 6 s of real time).
    sim.set_health("default", "web", Some(0), "never").await;
    let record = "apiVersion: drover.io/v1alpha1
kind: App
metadata: {name: web, namespace: default}
spec:
  template: {image: \"nginx:1.27\", count: 2, ports: {http: 8080}}
  strategy: {minHealthyTime: 1s, healthyDeadline: 5m, progressDeadline: 10m}
  driftPolicy: Revert
";
    sim.put_record("default", "web", record).await;
    sim.wait_for_status("default", "web", "Progressing with a running deployment", |s| {
        s.phase == Phase::Progressing && s.deployment.as_ref().is_some_and(|d| d.status == "running")
    })
    .await;

    let hand = edit_by_hand(&sim, "web", "hand:edit").await;
    let job = wait_until(DEADLINE, "the desired image registered over the hand edit", || async {
        let job = sim.job("default", "web").await.expect("job web");
        if job_image(&job) == Some("nginx:1.27") && job_modify_index(&job) > hand {
            Ok(job)
        } else {
            Err((job_image(&job).map(str::to_owned), job_modify_index(&job)))
        }
    })
    .await;
    let status = sim
        .wait_for_status("default", "web", "Healthy with the revert applied", |s| {
            s.phase == Phase::Healthy && s.applied_job_modify_index == Some(job_modify_index(&job))
        })
        .await;
    assert_eq!(status.failed_hash, None, "the spec is not marked failed: {status:?}");
    drover.assert_running();
}

#[tokio::test]
async fn suspend_should_leave_the_job_alone_until_resumed() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let mut drover = DroverProcess::start(&sim, &[]).await;
    sim.put_record("default", "web", template_record("web", "nginx:1.27", "")).await;
    sim.wait_for_status("default", "web", "Healthy", |s| s.phase == Phase::Healthy).await;

    let suspended = sim.put_record("default", "web", template_record("web", "nginx:1.28", "suspend: true")).await;
    sim.wait_for_status("default", "web", "Suspended", |s| {
        s.phase == Phase::Suspended && s.observed_generation == suspended
    })
    .await;
    let hand = edit_by_hand(&sim, "web", "hand:edit").await;
    let seen = drover.reconcile_total().await;
    drover.wait_reconciles(seen, 2).await;
    let job = sim.job("default", "web").await.expect("job web");
    assert_eq!(
        (job_image(&job), job_modify_index(&job)),
        (Some("hand:edit"), hand),
        "a suspended app's job is not touched"
    );

    let resumed = sim.put_record("default", "web", template_record("web", "nginx:1.28", "")).await;
    sim.wait_for_status("default", "web", "Healthy once resumed", |s| {
        s.phase == Phase::Healthy && s.observed_generation == resumed
    })
    .await;
    let job = sim.job("default", "web").await.expect("job web");
    assert_eq!(job_image(&job), Some("nginx:1.28"));
    drover.assert_running();
}
