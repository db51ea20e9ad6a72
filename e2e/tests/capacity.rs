//! Drover against a Nomad with finite capacity: a job that does not fit is queued by Nomad (job `pending`,
//! `JobSummary.Queued`, a blocked evaluation, a deployment that places nothing), and the app must not look
//! `Healthy` until its allocations are placed and healthy. Also the simulator's other new fault: an event stream cut
//! mid-stream (a Nomad restart).

use std::time::Duration;

use drover::status::Phase;
use drover_e2e::{DEADLINE, DroverProcess, SimProcess, TIME_SCALE, template_record, wait_until};

/// How long (real time) the app must stay un-`Healthy` while nothing is placed: 250 s of sim time at
/// [`TIME_SCALE`], well past the template's `healthyDeadline` (1 m) and Drover's 30 s deployment grace at the sim's
/// pace, and several of Drover's progress rechecks.
const NOT_HEALTHY_FOR: Duration = Duration::from_secs(5);

#[tokio::test]
async fn app_whose_job_does_not_fit_should_stay_progressing_until_a_node_is_added() {
    let sim = SimProcess::start(TIME_SCALE).await;
    sim.remove_all_nomad_nodes().await;
    let mut drover = DroverProcess::start(&sim, &[]).await;

    let generation = sim.put_record("default", "web", template_record("web", "nginx:1.27", "")).await;
    // The positive event: Nomad has the job and queues both allocations (nothing can be placed).
    wait_until(DEADLINE, "job web registered and queued by Nomad", || async {
        let job = sim.job("default", "web").await;
        let summary = sim.job_summary("default", "web").await;
        let queued = summary.as_ref().map(|s| s["Summary"]["web"]["Queued"].clone());
        let blocked = sim.job_evaluations("default", "web").await.iter().any(|e| e["Status"] == "blocked");
        match (&job, queued) {
            (Some(j), Some(q)) if j["Status"] == "pending" && q == 2 && blocked => Ok(()),
            _ => Err((job.map(|j| j["Status"].clone()), summary, blocked)),
        }
    })
    .await;

    // Must NOT happen: the app turning Healthy while nothing runs.
    let since = drover.reconcile_total().await;
    let healthy = tokio::time::timeout(NOT_HEALTHY_FOR, async {
        loop {
            if let Some(s) = sim.status("default", "web").await.filter(|s| s.phase == Phase::Healthy) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(healthy.is_err(), "the app became Healthy with nothing placed: {:#?}", healthy.ok());
    drover.wait_reconciles(since, 1).await;
    let status = sim.status("default", "web").await.expect("a status for default/web");
    assert_eq!(status.phase, Phase::Progressing, "{status:#?}");
    assert_eq!(status.observed_generation, generation, "{status:#?}");
    assert_eq!(status.replicas.healthy, 0, "{:?}", status.replicas);

    // Capacity appears: Nomad places the queued allocations and the rollout ends.
    sim.add_nomad_node(4000, 4000).await;
    let status = sim
        .wait_for_status("default", "web", "Healthy once a node is added", |s| {
            s.phase == Phase::Healthy && s.observed_generation == generation
        })
        .await;
    assert_eq!(status.replicas.healthy, 2, "{:?}", status.replicas);
    let summary = sim.job_summary("default", "web").await.expect("job web's summary");
    assert_eq!(summary["Summary"]["web"]["Queued"], 0, "{summary}");
    drover.assert_running();
}

#[tokio::test]
async fn app_whose_job_only_partly_fits_should_end_degraded_at_the_progress_deadline_never_healthy() {
    let sim = SimProcess::start(TIME_SCALE).await;
    sim.remove_all_nomad_nodes().await;
    // Room for exactly one allocation of Nomad's default task size (100 MHz / 300 MB): one of the two is queued.
    sim.add_nomad_node(150, 400).await;
    let mut drover = DroverProcess::start(&sim, &[]).await;

    // progressDeadline 90s (under `strategy:`, the template's last block): ~1.8 s real at TIME_SCALE.
    let record = template_record("web", "nginx:1.27", "  progressDeadline: 90s");
    let generation = sim.put_record("default", "web", record).await;
    // Phases seen at this generation, in order (a Mutex only because `wait_until` takes an `FnMut`).
    let seen = std::sync::Mutex::new(Vec::new());
    let status = wait_until(DEADLINE, "the app to leave Progressing once Nomad fails the deployment", || async {
        match sim.status("default", "web").await {
            Some(s) if s.observed_generation == generation => {
                let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                if seen.last() != Some(&s.phase) {
                    seen.push(s.phase);
                }
                if matches!(s.phase, Phase::Progressing | Phase::Pending) { Err(Some(s)) } else { Ok(s) }
            }
            other => Err(other),
        }
    })
    .await;
    let seen = seen.into_inner().unwrap_or_else(|p| p.into_inner());
    assert!(!seen.contains(&Phase::Healthy), "never Healthy with one of two allocations queued: {seen:?}");
    assert_eq!(status.phase, Phase::Degraded, "{status:#?}");
    // One allocation runs. The failed deployment's own evaluation places nothing (Nomad's `deploymentPlaceReady`), so
    // the scheduler sets the group's queued count to 0: nothing waits for capacity any more.
    wait_until(DEADLINE, "one allocation running and none queued after the deployment failed", || async {
        let summary = sim.job_summary("default", "web").await;
        let counts =
            summary.as_ref().map(|s| (s["Summary"]["web"]["Running"].clone(), s["Summary"]["web"]["Queued"].clone()));
        if counts == Some((serde_json::json!(1), serde_json::json!(0))) { Ok(()) } else { Err(summary) }
    })
    .await;
    drover.assert_running();
}

/// Not capacity, but the other fault of issue #7 §3: a Nomad server restart cuts Drover's open event stream
/// mid-stream. Drover must reconnect (and relist), so a hand edit made after the cut is still seen and reverted
/// long before a resync would find it.
#[tokio::test]
async fn cut_event_stream_should_not_hide_a_later_hand_edit() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let mut drover = DroverProcess::start(&sim, &[]).await;
    sim.put_record("default", "web", template_record("web", "nginx:1.27", "driftPolicy: Revert")).await;
    sim.wait_for_status("default", "web", "Healthy", |s| s.phase == Phase::Healthy).await;
    wait_until(DEADLINE, "Drover to have opened the Nomad event stream", || async {
        let opened = sim.nomad_requests(0, "GET", "/v1/event/stream").await.len();
        if opened > 0 { Ok(()) } else { Err(opened) }
    })
    .await;
    let seq = sim.log(Some("nomad"), 0).await.last_seq;
    let cut = sim.cut_event_streams(None).await;
    assert!(cut >= 1, "Drover's stream was open when it was cut ({cut} cut)");

    // Reconnected: a new subscription after the cut.
    wait_until(DEADLINE, "Drover to open the event stream again after the cut", || async {
        let reopened = sim.nomad_requests(seq, "GET", "/v1/event/stream").await.len();
        if reopened > 0 { Ok(()) } else { Err(reopened) }
    })
    .await;
    let mut job = sim.job("default", "web").await.expect("job web");
    job["TaskGroups"][0]["Tasks"][0]["Config"]["image"] = "hand:edit".into();
    let reply = sim.register_job(&job).await.unwrap_or_else(|e| panic!("hand edit of web: {e:?}"));
    let hand = reply["JobModifyIndex"].as_u64().expect("a JobModifyIndex in the register reply");
    wait_until(DEADLINE, "the hand edit made after the cut to be reverted", || async {
        let job = sim.job("default", "web").await.expect("job web");
        let image = job["TaskGroups"][0]["Tasks"][0]["Config"]["image"].as_str().map(str::to_owned);
        let jmi = job["JobModifyIndex"].as_u64().unwrap_or(0);
        if image.as_deref() == Some("nginx:1.27") && jmi > hand { Ok(()) } else { Err((image, jmi)) }
    })
    .await;
    drover.assert_running();
}
