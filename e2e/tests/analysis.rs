//! The analysis stage against a real Prometheus (Debian's `prometheus`) scraping the simulator's workload metrics
//! (issue #8): runs put in status as the rollout engine puts them are measured on schedule through the real
//! providers — a bad version's run fails naming the query and value, a good one succeeds, a web metric and webhooks
//! are judged, and with Prometheus stopped the measurements are errors (not failures) until
//! `consecutiveErrorLimit`, when the run fails saying so. The stage is driven in-process here (statuses written
//! straight into its store, records from a map); the engine's e2e scenarios cover the whole loop.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use drover::analysis::{AnalysisRuns, AnalysisStage, HttpProvider, PollerConfig, RunSpec, Specs, analysis_runs};
use drover::app::{
    AnalysisStep, AnalysisTemplate, AppKey, CanaryStep, CanaryStrategy, HumanDuration, PrometheusQuery, Strategy,
    StrategyType, WebMetric, WebhookStep,
};
use drover::metrics::Metrics;
use drover::rollout::{AnalysisPhase, AnalysisRunStatus, RolloutStatus, RunId, StepRef};
use drover::status::{AppStatus, Phase};
use drover_e2e::{DEADLINE, DroverProcess, PrometheusProcess, SimProcess, TIME_SCALE, template_record, wait_until};

/// Records as the analysis stage reads them, from a map (the record validation of `spec.analysis` is another
/// engineer's part of issue #8).
#[derive(Clone, Default)]
struct MapSpecs(Arc<Mutex<BTreeMap<AppKey, RunSpec>>>);

impl Specs for MapSpecs {
    fn spec(&self, app: &AppKey) -> Option<RunSpec> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(app).cloned()
    }
    fn revision(&self) -> u64 {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len() as u64
    }
}

const ERROR_RATE: &str = r#"sum(rate(http_requests_total{job="{{ .JobID }}",namespace="{{ .Namespace }}",version="{{ .Version }}",code="500"}[5s])) / sum(rate(http_requests_total{job="{{ .JobID }}",namespace="{{ .Namespace }}",version="{{ .Version }}"}[5s]))"#;

fn error_rate(address: &str) -> AnalysisTemplate {
    AnalysisTemplate {
        prometheus: Some(PrometheusQuery {
            address: address.to_string(),
            query: ERROR_RATE.into(),
            timeout: Some(HumanDuration(Duration::from_secs(2))),
            headers: BTreeMap::new(),
        }),
        success_condition: Some("result <= 0.05".into()),
        failure_condition: Some("result > 0.05".into()),
        interval: Some(HumanDuration(Duration::from_secs(1))),
        count: Some(3),
        consecutive_error_limit: Some(3),
        ..AnalysisTemplate::default()
    }
}

/// `up` read through Prometheus's own HTTP API as a web metric (a string number at a JSON path).
fn web_up(address: &str) -> AnalysisTemplate {
    AnalysisTemplate {
        web: Some(WebMetric {
            url: format!("{address}/api/v1/query?query=up"),
            json_path: "$.data.result[0].value[1]".into(),
            headers: BTreeMap::new(),
            timeout: Some(HumanDuration(Duration::from_secs(2))),
        }),
        success_condition: Some("result == 1".into()),
        interval: Some(HumanDuration(Duration::from_secs(1))),
        count: Some(2),
        ..AnalysisTemplate::default()
    }
}

fn webhook(url: String) -> CanaryStep {
    CanaryStep::Webhook(WebhookStep {
        url,
        method: None,
        headers: BTreeMap::new(),
        timeout: None,
        expect_status: vec![],
    })
}

fn spec(job: &str, generation: u64, steps: Vec<CanaryStep>, analysis: BTreeMap<String, AnalysisTemplate>) -> RunSpec {
    RunSpec {
        generation,
        job_id: job.into(),
        group: job.into(),
        strategy: Arc::new(Strategy {
            strategy_type: StrategyType::Canary,
            canary: Some(CanaryStrategy { replicas: 1, steps }),
            ..Strategy::default()
        }),
        analysis: Arc::new(analysis),
    }
}

fn analysis_step(templates: &[&str]) -> CanaryStep {
    CanaryStep::Analysis(AnalysisStep {
        templates: templates.iter().map(|t| t.to_string()).collect(),
        ..AnalysisStep::default()
    })
}

fn run(generation: u64, step: u32, template: &str) -> AnalysisRunStatus {
    AnalysisRunStatus {
        id: RunId { generation, step: StepRef::Step(step), template: template.into() },
        phase: AnalysisPhase::Running,
        started_at: drover::status::timestamp(SystemTime::now()),
        successful: 0,
        failed: 0,
        inconclusive: 0,
        errors: 0,
        consecutive_errors: 0,
        measurements: Vec::new(),
        message: String::new(),
        dry_run: false,
    }
}

fn rollout_status(generation: u64, runs: Vec<AnalysisRunStatus>) -> AppStatus {
    let rollout =
        RolloutStatus { generation, canary_version: Some(0), analysis_runs: runs, ..RolloutStatus::default() };
    AppStatus { observed_generation: generation, rollout: Some(rollout), ..AppStatus::default() }
}

/// Waits until run `template` of step `step` of `app` has ended, and returns it.
async fn ended(runs: &AnalysisRuns, app: &AppKey, generation: u64, step: u32, template: &str) -> AnalysisRunStatus {
    let id = RunId { generation, step: StepRef::Step(step), template: template.into() };
    wait_until(DEADLINE, &format!("run {template} of {app} to end"), || async {
        match runs.run(app, &id) {
            Some(r) if r.phase.is_terminal() => Ok(r),
            other => Err(other),
        }
    })
    .await
}

#[tokio::test]
async fn analysis_should_fail_a_bad_version_pass_a_good_one_and_count_errors_while_prometheus_is_down() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let prometheus = PrometheusProcess::start(&sim).await;
    let drover = DroverProcess::start(&sim, &[]).await;
    for name in ["good", "bad"] {
        sim.put_record("default", name, template_record(name, "nginx:1.27", "")).await;
    }
    for name in ["good", "bad"] {
        sim.wait_for_status("default", name, "Healthy", |s| s.phase == Phase::Healthy).await;
    }
    sim.set_workload("default", "good", Some(0), 200.0, 0.0).await;
    sim.set_workload("default", "bad", Some(0), 200.0, 0.3).await;
    // Wait until both rates exist in Prometheus (two scrapes in the window), so the runs measure values, not
    // empty results.
    let http = drover_e2e::http_client();
    for job in ["good", "bad"] {
        let q = ERROR_RATE
            .replace("{{ .JobID }}", job)
            .replace("{{ .Namespace }}", "default")
            .replace("{{ .Version }}", "0");
        wait_until(DEADLINE, &format!("Prometheus to have {job}'s error rate"), || async {
            let resp =
                http.get(format!("{}/api/v1/query", prometheus.url)).query(&[("query", q.as_str())]).send().await;
            let body: serde_json::Value = resp.map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())?;
            body["data"]["result"][0]["value"][1].as_str().map(str::to_string).ok_or(body.to_string())
        })
        .await;
    }

    let (status_writer, statuses) = drover::store::statuses("drover");
    let (writer, runs) = analysis_runs();
    let specs = MapSpecs::default();
    let woken = Arc::new(Mutex::new(Vec::<AppKey>::new()));
    let metrics = Arc::new(Metrics::new());
    let _stage = AnalysisStage {
        provider: Arc::new(HttpProvider::new(drover_e2e::http_client())),
        specs: specs.clone(),
        statuses,
        store: (writer, runs.clone()),
        wake: {
            let woken = woken.clone();
            move |k: &AppKey| woken.lock().unwrap_or_else(|p| p.into_inner()).push(k.clone())
        },
        clock: SystemTime::now,
        metrics: metrics.clone(),
        config: PollerConfig::default(),
        leadership: drover::leader::LeaderGate::always(),
    }
    .spawn();

    let templates = |address: &str| {
        BTreeMap::from([("error-rate".to_string(), error_rate(address)), ("web-up".to_string(), web_up(address))])
    };
    let (good, bad) = (AppKey::new("default", "good"), AppKey::new("default", "bad"));
    let good_steps = vec![
        analysis_step(&["error-rate", "web-up"]),
        webhook(format!("{}/-/healthy", prometheus.url)),
        webhook(format!("{}/no/such/page/{{{{ .JobID }}}}", prometheus.url)),
    ];
    specs
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(good.clone(), spec("good", 11, good_steps, templates(&prometheus.url)));
    specs
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(bad.clone(), spec("bad", 12, vec![analysis_step(&["error-rate"])], templates(&prometheus.url)));
    status_writer.set(
        good.clone(),
        rollout_status(
            11,
            vec![run(11, 0, "error-rate"), run(11, 0, "web-up"), run(11, 1, "webhook"), run(11, 2, "webhook")],
        ),
        1,
    );
    status_writer.set(bad.clone(), rollout_status(12, vec![run(12, 0, "error-rate")]), 1);

    // The bad version fails at its first measurement, naming the query and the value.
    let r = ended(&runs, &bad, 12, 0, "error-rate").await;
    assert_eq!(r.phase, AnalysisPhase::Failed, "{r:#?}");
    let m = &r.measurements[0];
    assert!(m.query.contains(r#"job="bad""#) && m.query.contains(r#"version="0""#), "the resolved query: {}", m.query);
    let value = m.value.as_ref().and_then(serde_json::Value::as_f64).expect("a value");
    assert!((0.15..=0.45).contains(&value), "about 30 % errors: {value}");
    assert!(m.error.as_deref().is_some_and(|e| e.contains("result > 0.05")), "{m:?}");

    // The good version passes its three measurements, and the web metric its two.
    let r = ended(&runs, &good, 11, 0, "error-rate").await;
    assert_eq!((r.phase, r.successful), (AnalysisPhase::Successful, 3), "{r:#?}");
    let r = ended(&runs, &good, 11, 0, "web-up").await;
    assert_eq!((r.phase, r.successful), (AnalysisPhase::Successful, 2), "{r:#?}");
    // Webhooks: 200 passes, 404 fails at once with the method and URL.
    let r = ended(&runs, &good, 11, 1, "webhook").await;
    assert_eq!(r.phase, AnalysisPhase::Successful, "{r:#?}");
    let r = ended(&runs, &good, 11, 2, "webhook").await;
    assert_eq!((r.phase, r.failed), (AnalysisPhase::Failed, 1), "{r:#?}");
    assert_eq!(r.measurements[0].query, format!("GET {}/no/such/page/good", prometheus.url));
    assert!(woken.lock().unwrap_or_else(|p| p.into_inner()).contains(&good), "the app is woken");

    // Prometheus stopped: errors, retried, and only the third in a row fails the run, saying why.
    let address = prometheus.url.clone();
    drop(prometheus);
    let steps = vec![analysis_step(&["error-rate"])];
    specs.0.lock().unwrap_or_else(|p| p.into_inner()).insert(bad.clone(), spec("bad", 13, steps, templates(&address)));
    status_writer.set(bad.clone(), rollout_status(13, vec![run(13, 0, "error-rate")]), 2);
    let r = ended(&runs, &bad, 13, 0, "error-rate").await;
    assert_eq!((r.phase, r.errors, r.failed), (AnalysisPhase::Failed, 3, 0), "errors, not failures: {r:#?}");
    assert!(r.message.contains("consecutiveErrorLimit"), "the verdict says so: {}", r.message);
    assert!(r.measurements.iter().all(|m| m.error.as_deref().is_some_and(|e| e.contains("did not answer"))), "{r:#?}");

    let text = metrics.encode();
    assert!(text.contains(r#"drover_analysis_runs_total{result="failed"} 3"#), "{text}");
    assert!(text.contains(r#"drover_analysis_measurements_total{provider="prometheus",result="error"} 3"#), "{text}");
    assert!(text.contains(r#"drover_analysis_measurements_total{provider="web",result="successful"} 2"#), "{text}");
    assert!(text.contains("drover_analysis_query_duration_seconds_count"), "{text}");
    promtool_check(&text);
    let _ = drover;
}

/// `promtool check metrics` passes on `text` (here with the analysis families populated).
fn promtool_check(text: &str) {
    let said = drover_e2e::promtool_check_metrics(text);
    assert!(!said.contains("analysis"), "promtool check metrics: {said}");
}
