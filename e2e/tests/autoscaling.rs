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
    let policy = format!(
        "autoscaling:\n  min: 1\n  max: {max}\n  evaluationInterval: 1s\n  cooldown: 1s\n  \
         scaleDown: {{stabilizationWindow: 1s}}\n  checks:\n    - name: cpu\n      prometheus:\n        \
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
async fn an_unreachable_prometheus_should_never_scale_and_say_so() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let nowhere = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
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
}
