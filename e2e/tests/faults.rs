//! Faults injected through the simulator's `/_sim/` API while Drover reconciles: an outage of each server, and a
//! register that races a hand edit of the job (`EnforceIndex`). After each fault the app converges and the
//! controller process is still running.

use drover::status::Phase;
use drover_e2e::{
    DEADLINE, DroverProcess, SimProcess, TIME_SCALE, job_image, job_modify_index, template_record, wait_until,
};
use serde_json::json;

/// Waits until `app` is Healthy at `generation` and Nomad runs `image`.
async fn converged(sim: &SimProcess, app: &str, generation: u64, image: &str) {
    sim.wait_for_status("default", app, &format!("Healthy at generation {generation}"), |s| {
        s.phase == Phase::Healthy && s.observed_generation == generation
    })
    .await;
    let job = sim.job("default", app).await.expect("the job");
    assert_eq!(job_image(&job), Some(image), "Nomad runs the desired image");
}

#[tokio::test]
async fn nomad_outage_mid_reconcile_should_converge_once_nomad_recovers() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let mut drover = DroverProcess::start(&sim, &[]).await;
    let first = sim.put_record("default", "web", template_record("web", "nginx:1.27", "")).await;
    converged(&sim, "web", first, "nginx:1.27").await;

    // Three registers answered `500 No cluster leader`, as a Nomad server without a leader answers.
    let since = sim.log(None, 0).await.last_seq;
    sim.add_fault(json!({"server": "nomad", "method": "POST", "path": "/v1/job/web",
        "action": {"type": "error", "status": 500, "body": "No cluster leader"}, "count": 3}))
        .await;
    let second = sim.put_record("default", "web", template_record("web", "nginx:1.28", "")).await;
    converged(&sim, "web", second, "nginx:1.28").await;
    let registers = sim.nomad_requests(since, "POST", "/v1/job/web").await;
    let codes: Vec<u16> = registers.iter().map(|r| r.status).collect();
    assert_eq!(codes, [500, 500, 500, 200], "three refused registers, then one that succeeds: {registers:?}");
    drover.assert_running();

    // The leader is lost while the next change is being applied: every Nomad API call fails (the event stream
    // too), until it comes back.
    let since = sim.log(None, 0).await.last_seq;
    sim.set_leader("nomad", false).await;
    let third = sim.put_record("default", "web", template_record("web", "nginx:1.29", "")).await;
    wait_until(DEADLINE, "two registers refused during the leader loss", || async {
        let refused: Vec<_> =
            sim.nomad_requests(since, "POST", "/v1/job/web").await.into_iter().filter(|r| r.status == 500).collect();
        if refused.len() >= 2 { Ok(()) } else { Err(refused) }
    })
    .await;
    drover.assert_running();
    sim.set_leader("nomad", true).await;
    converged(&sim, "web", third, "nginx:1.29").await;

    // The live watch is back too: a hand edit is seen (only the event stream or a relist tells the cache) and
    // reverted.
    let mut job = sim.job("default", "web").await.expect("job web");
    job["TaskGroups"][0]["Tasks"][0]["Config"]["image"] = "hand:edit".into();
    let hand = sim.register_job(&job).await.expect("hand edit");
    let hand_index = hand["JobModifyIndex"].as_u64().expect("JobModifyIndex");
    wait_until(DEADLINE, "the hand edit reverted after the outage", || async {
        let job = sim.job("default", "web").await.expect("job web");
        if job_image(&job) == Some("nginx:1.29") && job_modify_index(&job) > hand_index {
            Ok(())
        } else {
            Err((job_image(&job).map(str::to_owned), job_modify_index(&job)))
        }
    })
    .await;
    drover.assert_running();
}

#[tokio::test]
async fn consul_outage_should_delay_status_writes_not_lose_them() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let mut drover = DroverProcess::start(&sim, &[]).await;
    let first = sim.put_record("default", "web", template_record("web", "nginx:1.27", "")).await;
    converged(&sim, "web", first, "nginx:1.27").await;

    // Status writes (CAS through /v1/txn) lose their connection three times.
    let since = sim.log(None, 0).await.last_seq;
    sim.add_fault(json!({"server": "consul", "method": "PUT", "path": "/v1/txn", "action": {"type": "drop"},
        "count": 3}))
        .await;
    let second = sim.put_record("default", "web", template_record("web", "nginx:1.28", "")).await;
    converged(&sim, "web", second, "nginx:1.28").await;
    let dropped = sim.log(Some("consul"), since).await.requests;
    let dropped: Vec<_> = dropped.iter().filter(|r| r.path == "/v1/txn" && r.status == 0).collect();
    assert_eq!(dropped.len(), 3, "three status writes were dropped: {dropped:?}");
    drover.assert_running();

    // Consul loses its leader while Drover has a status to write: a hand edit that Drover reverts in Nomad.
    let since = sim.log(None, 0).await.last_seq;
    sim.set_leader("consul", false).await;
    let mut job = sim.job("default", "web").await.expect("job web");
    job["TaskGroups"][0]["Tasks"][0]["Config"]["image"] = "hand:edit".into();
    let hand = sim.register_job(&job).await.expect("hand edit");
    let hand_index = hand["JobModifyIndex"].as_u64().expect("JobModifyIndex");
    let reverted = wait_until(DEADLINE, "the revert in Nomad and a refused status write", || async {
        let job = sim.job("default", "web").await.expect("job web");
        let refused = sim
            .log(Some("consul"), since)
            .await
            .requests
            .into_iter()
            .filter(|r| r.path == "/v1/txn" && r.status == 500)
            .count();
        let reverted = job_image(&job) == Some("nginx:1.28") && job_modify_index(&job) > hand_index;
        if reverted && refused >= 1 { Ok(job) } else { Err((job_image(&job).map(str::to_owned), refused)) }
    })
    .await;
    drover.assert_running();
    sim.set_leader("consul", true).await;
    let status = sim
        .wait_for_status("default", "web", "the revert recorded once Consul is back", |s| {
            s.phase == Phase::Healthy && s.applied_job_modify_index >= Some(job_modify_index(&reverted))
        })
        .await;
    assert_eq!(status.last_error, None, "{status:?}");
    let job = sim.job("default", "web").await.expect("job web");
    assert_eq!(job_image(&job), Some("nginx:1.28"));

    // The records watch survived the outage: the next change is picked up.
    let third = sim.put_record("default", "web", template_record("web", "nginx:1.29", "")).await;
    converged(&sim, "web", third, "nginx:1.29").await;
    drover.assert_running();
}

#[tokio::test]
async fn enforce_index_race_should_lose_to_the_hand_edit_then_converge() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let mut drover = DroverProcess::start(&sim, &[]).await;
    let first = sim.put_record("default", "web", template_record("web", "nginx:1.27", "")).await;
    converged(&sim, "web", first, "nginx:1.27").await;

    // Hold Drover's next register (its path only: the hand edit below goes to /v1/jobs) for 1 s of real time.
    let since = sim.log(None, 0).await.last_seq;
    let fault = sim
        .add_fault(json!({"server": "nomad", "method": "POST", "path": "/v1/job/web",
            "action": {"type": "latency", "ms": (1.0 / TIME_SCALE * 1000.0) as u64}, "count": 1}))
        .await;
    let second = sim.put_record("default", "web", template_record("web", "nginx:1.28", "")).await;
    wait_until(DEADLINE, "Drover's register held by the latency fault", || async {
        let faults = sim.faults().await;
        let held = faults.iter().find(|f| f["id"] == json!(fault)).is_none_or(|f| f["remaining"] == json!(0));
        if held { Ok(()) } else { Err(faults) }
    })
    .await;

    // Meanwhile someone registers another spec of the same job.
    let mut job = sim.job("default", "web").await.expect("job web");
    assert_eq!(job_image(&job), Some("nginx:1.27"), "Drover's register has not reached Nomad yet");
    job["TaskGroups"][0]["Tasks"][0]["Config"]["image"] = "hand:race".into();
    sim.register_job(&job).await.expect("the hand edit wins the race");

    converged(&sim, "web", second, "nginx:1.28").await;
    let registers = sim.nomad_requests(since, "POST", "/v1/job/web").await;
    let codes: Vec<u16> = registers.iter().map(|r| r.status).collect();
    assert_eq!(codes.first(), Some(&500), "the held register loses on EnforceIndex: {registers:?}");
    assert_eq!(codes.last(), Some(&200), "and a register on the fresh index succeeds: {registers:?}");
    let images: Vec<_> =
        sim.job_versions("default", "web").await.iter().map(|v| job_image(v).map(str::to_owned)).collect();
    assert!(images.contains(&Some("hand:race".into())), "the hand edit was a version of its own: {images:?}");
    drover.assert_running();
}
