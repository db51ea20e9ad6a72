//! Autoscaling against a real Prometheus scraping the simulator's workload metrics (issue #11): load rises and the
//! app scales up, never above `max`; a deploy keeps the scaled count; a check whose Prometheus is unreachable never
//! scales and says so in status.

use drover::status::{AppStatus, Phase};
use drover_e2e::{
    DEADLINE, DroverProcess, PrometheusProcess, SimProcess, TIME_SCALE, job_image, template_record, wait_until,
};
use serde_json::Value;

/// A template record with an autoscaling policy on `cpu_percent` (the simulator's: 2 % + 0.5 % per request/s per
/// allocation), target 20 %, between 1 and `max`, evaluated every second.
fn scaled(name: &str, image: &str, address: &str, max: u64) -> String {
    scaled_with(
        name,
        image,
        address,
        &format!("min: 1\n  max: {max}\n  cooldown: 1s\n  scaleDown: {{stabilizationWindow: 1s}}"),
    )
}

/// As [`scaled`], with the policy's bounds and limits given (YAML lines under `autoscaling:`, indented by two).
fn scaled_with(name: &str, image: &str, address: &str, limits: &str) -> String {
    let policy = format!(
        "autoscaling:\n  {limits}\n  evaluationInterval: 1s\n  checks:\n    - name: cpu\n      prometheus:\n        \
         address: {address}\n        query: 'avg(cpu_percent{{job=\"{{{{ .JobID }}}}\",namespace=\"{{{{ .Namespace }}}}\"}})'\n        \
         timeout: 2s\n      targetValue: {{target: 20}}"
    );
    template_record(name, image, &policy)
}

fn count(job: &Value) -> u64 {
    job["TaskGroups"][0]["Count"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn load_should_scale_up_to_max_and_a_deploy_should_keep_the_count() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let prometheus = PrometheusProcess::start(&sim).await;
    let mut drover = DroverProcess::start(&sim, &[]).await;
    // The template's count (2) only seeds the first registration.
    sim.put_record("default", "web", scaled("web", "nginx:1.27", &prometheus.url, 4)).await;
    sim.wait_for_status("default", "web", "Healthy", |s| s.phase == Phase::Healthy).await;
    assert_eq!(sim.job("default", "web").await.map(|j| count(&j)), Some(2));

    // 200 requests/s: one allocation would run at 100 % CPU; the target asks for more than `max`.
    sim.set_workload("default", "web", None, 200.0, 0.0).await;
    wait_until(DEADLINE, "web scaled up to max (4)", || async {
        let job = sim.job("default", "web").await.expect("job web");
        assert!(count(&job) <= 4, "never above max: {}", count(&job));
        if count(&job) == 4 { Ok(()) } else { Err(count(&job)) }
    })
    .await;
    let status: AppStatus = sim
        .wait_for_status("default", "web", "Healthy after scaling, with the scale recorded", |s| {
            s.phase == Phase::Healthy && s.autoscaling.as_ref().is_some_and(|a| a.last_scale_time.is_some())
        })
        .await;
    let a = status.autoscaling.expect("autoscaling status");
    assert!(a.last_reason.as_deref().is_some_and(|r| r.contains("cpu")), "the scale says why: {a:?}");
    assert!(status.conditions.iter().all(|c| c.type_ != drover::status::ConditionType::Drifted), "own scale ≠ drift");
    let metrics = drover_e2e::http_client().get(format!("{}/metrics", drover.url)).send().await.expect("GET /metrics");
    let metrics = metrics.text().await.expect("metrics text");
    assert!(metrics.contains("drover_autoscale_events_total{direction=\"up\"}"), "{metrics}");
    assert!(metrics.contains("drover_autoscale_current_count{namespace=\"default\",app=\"web\"}"), "{metrics}");

    // A new image while scaled to 4: the deploy keeps 4 (PreserveCounts), the count is not reset to the record's 2.
    let generation = sim.put_record("default", "web", scaled("web", "nginx:1.28", &prometheus.url, 4)).await;
    let job = wait_until(DEADLINE, "the new image rolled out", || async {
        let j = sim.job("default", "web").await.expect("job web");
        assert!(count(&j) >= 4, "a deploy never resets the count: {}", count(&j));
        if job_image(&j) == Some("nginx:1.28") { Ok(j) } else { Err(job_image(&j).map(str::to_owned)) }
    })
    .await;
    assert_eq!(count(&job), 4);
    sim.wait_for_status("default", "web", "Healthy at the new generation", |s| {
        s.phase == Phase::Healthy && s.observed_generation == generation
    })
    .await;
    drover.assert_running();
}

#[tokio::test]
async fn an_unreachable_prometheus_should_never_scale_say_so_and_scaling_resume_when_it_is_back() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let port = drover_e2e::free_port();
    let nowhere = format!("http://127.0.0.1:{port}");
    let drover = DroverProcess::start(&sim, &[]).await;
    sim.put_record("default", "dark", scaled("dark", "nginx:1.27", &nowhere, 4)).await;
    sim.set_workload("default", "dark", None, 200.0, 0.0).await;
    let status = sim
        .wait_for_status("default", "dark", "a check error in status", |s| {
            s.autoscaling.as_ref().is_some_and(|a| a.checks.iter().any(|c| c.error.is_some()))
        })
        .await;
    let check = &status.autoscaling.expect("autoscaling").checks[0];
    assert!(check.error.as_deref().is_some_and(|e| e.contains("did not answer")), "{check:?}");
    // Several evaluations later, still the seeded count.
    let seen = drover.reconcile_total().await;
    drover.wait_reconciles(seen, 4).await;
    assert_eq!(sim.job("default", "dark").await.map(|j| count(&j)), Some(2), "no measurement, no scale");

    // Prometheus comes up at that address: the checks measure again and the app scales.
    let _prometheus = PrometheusProcess::start_on(&sim, port).await;
    wait_until(DEADLINE, "dark scaled once Prometheus answers", || async {
        let c = sim.job("default", "dark").await.map(|j| count(&j)).unwrap_or(0);
        if c > 2 { Ok(()) } else { Err(c) }
    })
    .await;
}

/// The counts a job goes through, sampled until `done` says stop (each change once).
async fn counts_until(sim: &SimProcess, what: &str, done: impl Fn(&[u64]) -> bool) -> Vec<u64> {
    let seen = std::sync::Mutex::new(Vec::<u64>::new());
    wait_until(DEADLINE, what, || async {
        let c = sim.job("default", "web").await.map(|j| count(&j)).unwrap_or(0);
        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.last() != Some(&c) {
            seen.push(c);
        }
        if done(&seen) { Ok(seen.clone()) } else { Err(seen.clone()) }
    })
    .await
}

#[tokio::test]
async fn load_falling_should_scale_down_after_the_window_by_max_step_and_never_below_min() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let prometheus = PrometheusProcess::start(&sim).await;
    let drover = DroverProcess::start(&sim, &[]).await;
    let limits = "min: 2\n  max: 6\n  cooldown: 1s\n  scaleUp: {maxStep: 10}\n  scaleDown: {maxStep: 2, stabilizationWindow: 5s}";
    sim.set_workload("default", "web", None, 400.0, 0.0).await;
    sim.put_record("default", "web", scaled_with("web", "nginx:1.27", &prometheus.url, limits)).await;
    counts_until(&sim, "web scaled up to max (6)", |c| c.last() == Some(&6)).await;
    sim.wait_for_status("default", "web", "Healthy at 6", |s| s.phase == Phase::Healthy).await;

    // No load: CPU 2 % against a target of 20 % asks for 1, below min.
    let fell = tokio::time::Instant::now();
    sim.set_workload("default", "web", None, 0.0, 0.0).await;
    counts_until(&sim, "a first scale down", |c| c.last().is_some_and(|l| *l < 6)).await;
    // The window (5 s) is longer than a scrape plus an evaluation (~2 s): without it the scale down would come sooner.
    assert!(fell.elapsed() >= std::time::Duration::from_secs(4), "the stabilization window (5 s) holds the scale down");
    counts_until(&sim, "web down to min (2)", |c| c.last() == Some(&2)).await;
    // Every count the job went through, from its versions (sampling could miss one): down by maxStep at most.
    let mut versions: Vec<(u64, u64)> = sim
        .job_versions("default", "web")
        .await
        .iter()
        .map(|v| (v["Version"].as_u64().unwrap_or(0), count(v)))
        .collect();
    versions.sort();
    let counts: Vec<u64> = versions.iter().map(|(_, c)| *c).collect();
    let from_max: Vec<u64> = counts.iter().copied().skip_while(|c| *c != 6).collect();
    assert_eq!(from_max, [6, 4, 2], "down from max by maxStep (2) at a time, to min: all versions {versions:?}");
    // It stays at min.
    let seen = drover.reconcile_total().await;
    drover.wait_reconciles(seen, 6).await;
    assert_eq!(sim.job("default", "web").await.map(|j| count(&j)), Some(2), "never below min");
}

#[tokio::test]
async fn a_hand_scale_should_be_reported_and_corrected_and_a_restart_should_keep_the_cooldown() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let prometheus = PrometheusProcess::start(&sim).await;
    let mut drover = DroverProcess::start(&sim, &[]).await;
    let limits = "min: 1\n  max: 3\n  cooldown: 1s\n  scaleDown: {stabilizationWindow: 1s}";
    sim.set_workload("default", "web", None, 200.0, 0.0).await;
    sim.put_record("default", "web", scaled_with("web", "nginx:1.27", &prometheus.url, limits)).await;
    counts_until(&sim, "web scaled up to max (3)", |c| c.last() == Some(&3)).await;
    sim.wait_for_status("default", "web", "Healthy at 3", |s| s.phase == Phase::Healthy).await;

    // `nomad job scale web 1` by hand: reported as drift of the count, then corrected at the next evaluation.
    let url = format!("{}/v1/job/web/scale", sim.nomad_url);
    let body = serde_json::json!({"Count": 1, "Target": {"Group": "web"}, "Message": "by hand"});
    let resp = drover_e2e::http_client().post(&url).json(&body).send().await.expect("POST scale");
    assert!(resp.status().is_success(), "hand scale: {}", resp.status());
    // Reported (counted as drift once), not fought: Nomad keeps the hand count until the next evaluation.
    let http = drover_e2e::http_client();
    wait_until(DEADLINE, "the hand scale counted as drift", || async {
        let text = http.get(format!("{}/metrics", drover.url)).send().await.map_err(|e| e.to_string())?;
        let text = text.text().await.map_err(|e| e.to_string())?;
        let drift = drover_e2e::metric_sum(&text, "drover_drift_detected_total");
        if drift >= 1 { Ok(()) } else { Err(format!("drift_detected_total {drift}")) }
    })
    .await;
    counts_until(&sim, "the count corrected back to 3", |c| c.last() == Some(&3)).await;
    drover.assert_running();

    // A restart right after a scale keeps the cooldown (from status): with a long cooldown and no load (asking
    // for a scale down), nothing is scaled before it ends.
    drop(drover);
    let long = "min: 1\n  max: 3\n  cooldown: 10m\n  scaleDown: {stabilizationWindow: 1s}";
    sim.put_record("default", "web", scaled_with("web", "nginx:1.27", &prometheus.url, long)).await;
    sim.set_workload("default", "web", None, 0.0, 0.0).await;
    let drover = DroverProcess::start(&sim, &[]).await;
    let status = sim
        .wait_for_status("default", "web", "a scale down deferred by the cooldown", |s| {
            s.autoscaling
                .as_ref()
                .and_then(|a| a.deferred_reason.as_deref())
                .is_some_and(|r| r.contains("cooling down"))
        })
        .await;
    let seen = drover.reconcile_total().await;
    drover.wait_reconciles(seen, 6).await;
    assert_eq!(sim.job("default", "web").await.map(|j| count(&j)), Some(3), "no scale in the cooldown: {status:?}");
}
