//! A Nomad namespace created after Drover started (issue #7, 2.1). An event stream opened with `namespace=*` covers
//! only the namespaces that existed when it subscribed (contract B15, C25), so Drover must notice the new namespace
//! and reopen its stream: without that, the app's deployment events are never seen (stuck `Progressing`) and a hand
//! edit of its job is never noticed.

use drover::status::{ConditionType, Phase, Reason};
use drover_e2e::{
    DEADLINE, DroverProcess, SimProcess, TIME_SCALE, http_client, job_image, job_modify_index, job_owner,
    template_record, wait_until,
};
use serde_json::json;

/// A template record for `<ns>/<name>` that reverts drift (the e2e template is written for `default`).
fn record_in(ns: &str, name: &str, image: &str) -> String {
    template_record(name, image, "driftPolicy: Revert")
        .replace("  namespace: default\n", &format!("  namespace: {ns}\n"))
}

/// Creates a Nomad namespace through Nomad's own API (`POST /v1/namespace/:name`, management rights; ACLs are off).
async fn create_namespace(sim: &SimProcess, name: &str) {
    let url = format!("{}/v1/namespace/{name}", sim.nomad_url);
    let resp = http_client().post(&url).json(&json!({"Name": name})).send().await.expect("POST /v1/namespace");
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    assert!(status.is_success(), "POST {url}: {status} {body}");
}

#[tokio::test]
async fn app_in_a_namespace_created_after_start_should_converge_and_have_its_drift_reverted() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let mut drover = DroverProcess::start(&sim, &[]).await;
    // An app in `default` converging proves Drover's event stream is open before the namespace exists (the stream
    // is opened right after the first list, and a rollout's end arrives on it).
    sim.put_record("default", "first", template_record("first", "nginx:1.27", "")).await;
    sim.wait_for_status("default", "first", "Healthy", |s| s.phase == Phase::Healthy).await;

    create_namespace(&sim, "late").await;
    let record = record_in("late", "web", "nginx:1.27");
    assert!(record.contains("  namespace: late\n"), "{record}");
    let generation = sim.put_record("late", "web", record).await;
    let status = sim
        .wait_for_status("late", "web", "Healthy in the namespace created after start", |s| {
            s.phase == Phase::Healthy && s.observed_generation == generation
        })
        .await;
    let job = sim.job("late", "web").await.expect("job late/web");
    assert_eq!(job_owner(&job), Some("drover/apps/late/web"));
    assert_eq!(status.applied_job_modify_index, Some(job_modify_index(&job)));

    // A hand edit of the job there (through Nomad's API) is drift, and driftPolicy Revert puts the spec back.
    let mut edited = job.clone();
    edited["TaskGroups"][0]["Tasks"][0]["Config"]["image"] = "hand:edit".into();
    let reply = sim.register_job(&edited).await.unwrap_or_else(|e| panic!("hand edit of late/web: {e:?}"));
    let hand = reply["JobModifyIndex"].as_u64().unwrap_or_else(|| panic!("a JobModifyIndex in {reply}"));
    let job = wait_until(DEADLINE, "job late/web runs the desired image again after the hand edit", || async {
        let job = sim.job("late", "web").await.expect("job late/web");
        if job_image(&job) == Some("nginx:1.27") && job_modify_index(&job) > hand {
            Ok(job)
        } else {
            Err((job_image(&job).map(str::to_owned), job_modify_index(&job)))
        }
    })
    .await;
    sim.wait_for_status("late", "web", "Healthy with the revert applied", |s| {
        s.phase == Phase::Healthy && s.applied_job_modify_index == Some(job_modify_index(&job))
    })
    .await;
    drover.assert_running();
}

/// An app written before its namespace exists waits, reported (`NamespaceMissing`, not retried on a timer), and is
/// registered as soon as the namespace appears.
#[tokio::test]
async fn app_written_before_its_namespace_exists_should_wait_then_converge() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let drover = DroverProcess::start(&sim, &["--resync", "5m"]).await;
    sim.put_record("soon", "web", record_in("soon", "web", "nginx:1.27")).await;
    sim.wait_for_status("soon", "web", "Failed, NamespaceMissing", |s| {
        s.phase == Phase::Failed
            && s.condition(ConditionType::Ready).is_some_and(|c| c.reason == Reason::NamespaceMissing)
    })
    .await;
    // Not retried on a timer: while another app rolls out (time passes, driven by events), `soon/web` is not
    // registered again (a backoff retry starts below a second).
    sim.put_record("default", "other", template_record("other", "nginx:1.27", "")).await;
    sim.wait_for_status("default", "other", "Healthy", |s| s.phase == Phase::Healthy).await;
    let tries = sim.nomad_requests(0, "POST", "/v1/job/web").await;
    assert_eq!(tries.len(), 1, "one register, then waiting for the namespace: {tries:?}");
    create_namespace(&sim, "soon").await;
    sim.wait_for_status("soon", "web", "Healthy once the namespace exists (no resync in between)", |s| {
        s.phase == Phase::Healthy
    })
    .await;
    let _ = drover;
}
