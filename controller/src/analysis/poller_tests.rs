//! The analysis poller in-process, on paused time: schedule, error retries and limits, resume after a restart,
//! forgetting, baselines, deduplication and bounded concurrency, against in-memory models of the provider and the
//! records.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::*;
use crate::analysis::provider::ProviderError;
use crate::analysis::resolve::{RunSpec, WEBHOOK_RUN};
use crate::analysis::store::analysis_runs;
use crate::app::{
    AnalysisStep, AnalysisTemplate, CanaryStep, CanaryStrategy, HumanDuration, PrometheusQuery, Strategy, StrategyType,
    WebhookStep,
};
use crate::leader::{LeaderGate, Leadership};
use crate::prometheus::QueryError;
use crate::rollout::{RolloutStatus, StepRef};
use crate::status::AppStatus;
use crate::store::{StatusesWriter, statuses};

/// A Prometheus (and webhook target) model: answers each query from a table; a query missing from it is refused; a
/// server that is `down` does not answer. Every call takes 10 ms and is counted, with the most in flight at once.
#[derive(Default)]
struct FakeProvider {
    values: Mutex<HashMap<String, f64>>,
    down: Mutex<bool>,
    calls: Mutex<Vec<(String, Instant)>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Calls that ran to their end (a cancelled call never does).
    finished: AtomicUsize,
}

impl FakeProvider {
    fn set(&self, query: &str, v: f64) {
        self.values.lock().unwrap_or_else(|p| p.into_inner()).insert(query.to_string(), v);
    }
    fn calls(&self) -> Vec<(String, Instant)> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    fn set_down(&self, down: bool) {
        *self.down.lock().unwrap_or_else(|p| p.into_inner()) = down;
    }
}

impl Provider for FakeProvider {
    async fn call(&self, request: &Request) -> Result<Reply, ProviderError> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).push((request.describe(), Instant::now()));
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(10)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.finished.fetch_add(1, Ordering::SeqCst);
        if *self.down.lock().unwrap_or_else(|p| p.into_inner()) {
            return Err(ProviderError::Prometheus(QueryError::Timeout {
                address: "http://prom:9090".into(),
                timeout: Duration::from_secs(1),
            }));
        }
        let value = self.values.lock().unwrap_or_else(|p| p.into_inner()).get(&request.describe()).copied();
        match (request, value) {
            (Request::Webhook { .. }, Some(code)) => Ok(Reply::Status(code as u16)),
            (_, Some(v)) => Ok(Reply::Sample(crate::expr::Sample::Scalar(v))),
            (_, None) => Err(ProviderError::Prometheus(QueryError::Rejected {
                address: "http://prom:9090".into(),
                code: 400,
                error_type: "bad_data".into(),
                message: "unknown query".into(),
            })),
        }
    }
}

#[derive(Default)]
struct MapSpecs {
    specs: Mutex<HashMap<AppKey, RunSpec>>,
    revision: AtomicU64,
}

impl Specs for Arc<MapSpecs> {
    fn spec(&self, app: &AppKey) -> Option<RunSpec> {
        self.specs.lock().unwrap_or_else(|p| p.into_inner()).get(app).cloned()
    }
    fn revision(&self) -> u64 {
        self.revision.load(Ordering::SeqCst)
    }
}

fn base() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn rfc(at: SystemTime) -> String {
    crate::status::timestamp(at)
}

/// A template over query `q{v="<version>"}`, failing above 0.05.
fn template(interval: u64, count: i64, initial_delay: u64) -> AnalysisTemplate {
    AnalysisTemplate {
        prometheus: Some(PrometheusQuery {
            address: "http://prom:9090".into(),
            query: r#"q{app="{{ .JobID }}",v="{{ .Version }}"}"#.into(),
            timeout: None,
            headers: BTreeMap::new(),
        }),
        failure_condition: Some("result > 0.05".into()),
        interval: Some(HumanDuration(Duration::from_secs(interval))),
        count: Some(count),
        initial_delay: Some(HumanDuration(Duration::from_secs(initial_delay))),
        consecutive_error_limit: Some(3),
        ..AnalysisTemplate::default()
    }
}

fn spec(job: &str, t: AnalysisTemplate) -> RunSpec {
    let steps = vec![
        CanaryStep::Analysis(AnalysisStep { template: Some("errors".into()), ..AnalysisStep::default() }),
        CanaryStep::Webhook(WebhookStep {
            url: "http://smoke/{{ .JobID }}".into(),
            method: None,
            headers: BTreeMap::new(),
            timeout: None,
            expect_status: Vec::new(),
        }),
    ];
    RunSpec {
        generation: 5,
        job_id: job.into(),
        group: "g".into(),
        strategy: Arc::new(Strategy {
            strategy_type: StrategyType::Canary,
            canary: Some(CanaryStrategy { replicas: 1, steps }),
            ..Strategy::default()
        }),
        analysis: Arc::new(BTreeMap::from([("errors".to_string(), t)])),
    }
}

fn run(step: u32, template: &str, started_at: SystemTime) -> AnalysisRunStatus {
    AnalysisRunStatus {
        id: RunId { generation: 5, step: StepRef::Step(step), template: template.into() },
        phase: AnalysisPhase::Running,
        started_at: rfc(started_at),
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

fn status(runs: Vec<AnalysisRunStatus>) -> AppStatus {
    let rollout = RolloutStatus {
        generation: 5,
        canary_version: Some(2),
        stable_version: Some(1),
        analysis_runs: runs,
        ..RolloutStatus::default()
    };
    AppStatus { observed_generation: 5, rollout: Some(rollout), ..AppStatus::default() }
}

struct Harness {
    provider: Arc<FakeProvider>,
    specs: Arc<MapSpecs>,
    status_writer: StatusesWriter,
    runs: AnalysisRuns,
    woken: Arc<Mutex<Vec<AppKey>>>,
    metrics: Arc<Metrics>,
    start: Instant,
    shutdown: CancellationToken,
}

impl Harness {
    fn start(config: PollerConfig) -> Harness {
        Harness::start_with(config, LeaderGate::always())
    }

    fn start_with(config: PollerConfig, leadership: LeaderGate) -> Harness {
        let provider = Arc::new(FakeProvider::default());
        let specs = Arc::new(MapSpecs::default());
        let (status_writer, statuses) = statuses("drover");
        let (writer, runs) = analysis_runs();
        let woken = Arc::new(Mutex::new(Vec::new()));
        let metrics = Arc::new(Metrics::new());
        let start = Instant::now();
        let shutdown = CancellationToken::new();
        let stage = AnalysisStage {
            provider: provider.clone(),
            specs: specs.clone(),
            statuses,
            store: (writer, runs.clone()),
            wake: {
                let woken = woken.clone();
                move |k: &AppKey| woken.lock().unwrap_or_else(|p| p.into_inner()).push(k.clone())
            },
            clock: move || base() + start.elapsed(),
            metrics: metrics.clone(),
            config,
            leadership,
        };
        tokio::spawn(stage.run(shutdown.clone()));
        Harness { provider, specs, status_writer, runs, woken, metrics, start, shutdown }
    }

    fn app(&self, name: &str, t: AnalysisTemplate, runs: Vec<AnalysisRunStatus>) -> AppKey {
        let key = AppKey::new("default", name);
        self.specs.specs.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), spec(name, t));
        self.specs.revision.fetch_add(1, Ordering::SeqCst);
        self.status_writer.set(key.clone(), status(runs), 1);
        key
    }

    fn run_of(&self, app: &AppKey, step: u32, template: &str) -> Option<AnalysisRunStatus> {
        self.runs.run(app, &RunId { generation: 5, step: StepRef::Step(step), template: template.into() })
    }

    /// Seconds since the start at which each call of `query` was made.
    fn call_times(&self, query: &str) -> Vec<u64> {
        self.provider.calls().iter().filter(|(q, _)| q == query).map(|(_, at)| (*at - self.start).as_secs()).collect()
    }

    fn woken(&self, app: &AppKey) -> usize {
        self.woken.lock().unwrap_or_else(|p| p.into_inner()).iter().filter(|k| *k == app).count()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Advances paused time by `secs` (the runtime runs every task due on the way).
async fn advance(secs: u64) {
    tokio::time::sleep(Duration::from_secs(secs)).await;
}

const Q: &str = r#"q{app="web",v="2"}"#;

#[tokio::test(start_paused = true)]
async fn poller_should_measure_from_start_plus_initial_delay_then_every_interval_until_count() {
    let h = Harness::start(PollerConfig::default());
    h.provider.set(Q, 0.01);
    let web = h.app("web", template(10, 3, 5), vec![run(0, "errors", base())]);
    advance(60).await;
    assert_eq!(h.call_times(Q), vec![5, 15, 25], "first at startedAt + initialDelay, then every interval, count 3");
    let r = h.run_of(&web, 0, "errors").expect("stored");
    assert_eq!((r.phase, r.successful, r.measurements.len()), (AnalysisPhase::Successful, 3, 3));
    assert_eq!(r.measurements[0].query, Q, "the resolved query is kept");
    assert_eq!(r.measurements[0].value, Some(serde_json::json!(0.01)));
    assert_eq!(h.woken(&web), 3, "the app is woken after every measurement");
    let text = h.metrics.encode();
    assert!(text.contains(r#"drover_analysis_runs_total{result="successful"} 1"#), "{text}");
    assert!(text.contains(r#"drover_analysis_measurements_total{provider="prometheus",result="successful"} 3"#));
}

#[tokio::test(start_paused = true)]
async fn poller_should_retry_errors_sooner_and_fail_at_the_consecutive_error_limit() {
    let h = Harness::start(PollerConfig::default());
    h.provider.set(Q, 0.01);
    h.provider.set_down(true);
    let web = h.app("web", template(30, 5, 0), vec![run(0, "errors", base())]);
    advance(4).await;
    let r = h.run_of(&web, 0, "errors").expect("stored");
    assert_eq!((r.phase, r.errors, r.failed), (AnalysisPhase::Running, 1, 0), "an error is not a failure");
    // Prometheus is back before the limit: the run goes on, and the errors in a row start over.
    advance(5).await;
    h.provider.set_down(false);
    advance(5).await;
    let r = h.run_of(&web, 0, "errors").expect("stored");
    assert_eq!((r.errors, r.consecutive_errors, r.successful), (2, 0, 1), "{r:?}");
    h.provider.set_down(true);
    advance(60).await;
    let r = h.run_of(&web, 0, "errors").expect("stored");
    assert_eq!(r.phase, AnalysisPhase::Failed);
    assert_eq!(r.consecutive_errors, 3, "failed at the limit, not before and not after");
    assert!(r.message.contains("consecutiveErrorLimit"), "the verdict says why: {}", r.message);
    // Retries came min(interval, 5 s) apart, not 30 s.
    let times = h.call_times(Q);
    assert_eq!(times, vec![0, 5, 10, 40, 45, 50], "{times:?}");
}

#[tokio::test(start_paused = true)]
async fn poller_should_fail_a_run_whose_measurement_meets_the_failure_condition() {
    let h = Harness::start(PollerConfig::default());
    h.provider.set(Q, 0.31);
    let web = h.app("web", template(10, 3, 0), vec![run(0, "errors", base())]);
    advance(30).await;
    let r = h.run_of(&web, 0, "errors").expect("stored");
    assert_eq!((r.phase, r.failed), (AnalysisPhase::Failed, 1));
    assert_eq!(h.call_times(Q).len(), 1, "an ended run is no longer measured");
    assert!(r.measurements[0].error.as_deref().is_some_and(|e| e.contains("0.31")), "{r:?}");
}

#[tokio::test(start_paused = true)]
async fn poller_should_resume_a_run_from_status_keeping_its_counters() {
    let h = Harness::start(PollerConfig::default());
    h.provider.set(Q, 0.01);
    // Before the restart: two measurements taken, the last 3 s ago (interval 10 s).
    let mut resumed = run(0, "errors", base() - Duration::from_secs(40));
    resumed.successful = 2;
    for ago in [13, 3] {
        resumed.measurements.push(MeasurementRecord {
            value: Some(serde_json::json!(0.01)),
            baseline: None,
            phase: MeasurementPhase::Successful,
            at: rfc(base() - Duration::from_secs(ago)),
            query: Q.into(),
            error: None,
        });
    }
    let web = h.app("web", template(10, 3, 0), vec![resumed]);
    advance(30).await;
    assert_eq!(h.call_times(Q), vec![7], "next due = last measurement + interval; finished steps are not re-run");
    let r = h.run_of(&web, 0, "errors").expect("stored");
    assert_eq!((r.phase, r.successful, r.measurements.len()), (AnalysisPhase::Successful, 3, 3));
}

#[tokio::test(start_paused = true)]
async fn poller_should_forget_runs_that_left_status_and_only_measure_the_current_rollout() {
    let h = Harness::start(PollerConfig::default());
    h.provider.set(Q, 0.01);
    let mut old = run(0, "errors", base());
    old.id.generation = 4;
    let web = h.app("web", template(10, 100, 0), vec![run(0, "errors", base()), old]);
    advance(15).await;
    assert_eq!(h.call_times(Q), vec![0, 10], "the run of generation 4 is not measured");
    assert!(h.run_of(&web, 0, "errors").is_some());
    h.status_writer.set(web.clone(), status(Vec::new()), 2);
    advance(60).await;
    assert_eq!(h.call_times(Q).len(), 2, "no longer measured");
    assert!(h.runs.get(&web).is_empty(), "forgotten once status no longer lists it");
}

#[tokio::test(start_paused = true)]
async fn poller_should_follow_status_writes_app_by_app_without_disturbing_the_others() {
    let h = Harness::start(PollerConfig::default());
    h.provider.set(Q, 0.01);
    let web = h.app("web", template(10, 100, 0), vec![run(0, "errors", base())]);
    advance(5).await;
    // Writes of other apps' statuses, with and without a rollout, while web's run is measured.
    for i in 0..50 {
        let other = AppKey::new("default", format!("other-{i}"));
        let runs = if i % 2 == 0 { Vec::new() } else { vec![run(0, "errors", base())] };
        h.status_writer.set(other, status(runs), 1);
    }
    advance(30).await;
    assert_eq!(h.call_times(Q), vec![0, 10, 20, 30], "web measured on its schedule through the others' writes");
    // web's own write that drops the run stops it; a write that keeps it does not restart it.
    h.status_writer.set(web.clone(), status(vec![run(0, "errors", base())]), 2);
    advance(10).await;
    assert_eq!(h.call_times(Q), vec![0, 10, 20, 30, 40], "rewritten unchanged: the run goes on, not started over");
    h.status_writer.set(web.clone(), status(Vec::new()), 3);
    advance(30).await;
    assert_eq!(h.call_times(Q).len(), 5, "dropped from web's status: no longer measured");
}

#[tokio::test(start_paused = true)]
async fn poller_should_measure_a_restarted_run_again_from_its_new_start() {
    let h = Harness::start(PollerConfig::default());
    h.provider.set(Q, 0.01);
    let web = h.app("web", template(10, 2, 0), vec![run(0, "errors", base())]);
    advance(30).await;
    assert_eq!(h.call_times(Q), vec![0, 10]);
    assert_eq!(h.run_of(&web, 0, "errors").map(|r| r.phase), Some(AnalysisPhase::Successful));
    // `drover restart`: the engine starts the step's run again, same id, new start.
    let again = run(0, "errors", base() + Duration::from_secs(40));
    h.status_writer.set(web.clone(), status(vec![again]), 2);
    advance(30).await;
    assert_eq!(h.call_times(Q), vec![0, 10, 40, 50], "the new attempt is measured from its own start");
    let r = h.run_of(&web, 0, "errors").expect("stored");
    assert_eq!(
        (r.phase, r.successful, r.started_at.clone()),
        (AnalysisPhase::Successful, 2, rfc(base() + Duration::from_secs(40)))
    );
}

#[tokio::test(start_paused = true)]
async fn poller_should_end_a_run_that_cannot_be_resolved_in_error() {
    let h = Harness::start(PollerConfig::default());
    let web = h.app("web", template(10, 1, 0), vec![run(7, "errors", base())]);
    advance(1).await;
    let r = h.run_of(&web, 7, "errors").expect("stored");
    assert_eq!(r.phase, AnalysisPhase::Error);
    assert!(r.message.contains("no canary step 8"), "{}", r.message);
    assert_eq!(h.woken(&web), 1);
    assert!(h.provider.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn poller_should_compare_with_the_baseline_and_call_webhooks() {
    let h = Harness::start(PollerConfig::default());
    let baseline_query = r#"q{app="web",v="1"}"#;
    h.provider.set(Q, 0.03);
    h.provider.set(baseline_query, 0.01);
    h.provider.set("GET http://smoke/web", 503.0);
    let mut t = template(10, 1, 0);
    t.failure_condition = Some("result > baseline * 2".into());
    let web = h.app("web", t, vec![run(0, "errors", base()), run(1, WEBHOOK_RUN, base())]);
    advance(5).await;
    let r = h.run_of(&web, 0, "errors").expect("stored");
    assert_eq!(r.phase, AnalysisPhase::Failed, "0.03 > 2 × 0.01: {r:?}");
    assert_eq!(r.measurements[0].baseline, Some(serde_json::json!(0.01)));
    let hook = h.run_of(&web, 1, WEBHOOK_RUN).expect("stored");
    assert_eq!(hook.phase, AnalysisPhase::Failed, "an unexpected status fails a webhook at once");
    assert_eq!(hook.measurements[0].query, "GET http://smoke/web");
    assert!(hook.measurements[0].error.as_deref().is_some_and(|e| e.contains("503")));
}

#[tokio::test(start_paused = true)]
async fn poller_should_send_identical_calls_once_and_bound_concurrency() {
    let h = Harness::start(PollerConfig { concurrency: 4, ..PollerConfig::default() });
    // 50 apps on one shared query (`web` for all), 50 on queries of their own.
    for i in 0..100 {
        let key = AppKey::new("default", format!("app{i}"));
        let job = if i < 50 { "web".to_string() } else { format!("app{i}") };
        h.provider.set(&format!(r#"q{{app="{job}",v="2"}}"#), 0.01);
        h.specs.specs.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone(), spec(&job, template(10, 1, 0)));
        h.status_writer.set(key, status(vec![run(0, "errors", base())]), 1);
    }
    advance(5).await;
    assert_eq!(h.call_times(Q).len(), 1, "one call for the 50 runs due together on the same query");
    assert_eq!(h.provider.calls().len(), 51);
    assert_eq!(h.provider.max_in_flight.load(Ordering::SeqCst), 4, "never more than the bound, and it is used");
    let done = (0..100).filter(|i| {
        let r = h.run_of(&AppKey::new("default", format!("app{i}")), 0, "errors");
        r.is_some_and(|r| r.phase == AnalysisPhase::Successful)
    });
    assert_eq!(done.count(), 100, "every run got its answer");
}

#[tokio::test(start_paused = true)]
async fn poller_should_measure_only_while_leading_and_resume_from_status_on_gaining_the_lead() {
    let (sender, gate) = crate::leader::channel();
    let h = Harness::start_with(PollerConfig::default(), gate);
    h.provider.set(Q, 0.01);
    let web = h.app("web", template(10, 5, 0), vec![run(0, "errors", base())]);
    advance(30).await;
    assert!(h.provider.calls().is_empty(), "a standby measures nothing");
    assert!(h.runs.get(&web).is_empty(), "nor stores anything");

    sender.send(Leadership::Leading(crate::leader::Term(1)));
    advance(10).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(h.call_times(Q), vec![30, 40], "the run was due when the lead came, then every interval");
    assert_eq!(h.run_of(&web, 0, "errors").map(|r| r.successful), Some(1), "the call at 40 s is still in flight");

    // The lead goes while the call at 40 s is on the wire: it is cancelled, and its answer never folded.
    sender.send(Leadership::Standby);
    advance(1).await;
    assert_eq!(h.provider.finished.load(Ordering::SeqCst), 1, "the call in flight was cancelled");
    assert!(h.runs.get(&web).is_empty(), "a replica that lost the lead forgets its runs");

    // Meanwhile another replica led and measured twice more (at 50 s and 60 s); its status is the one read back.
    let mut theirs = run(0, "errors", base());
    theirs.successful = 2;
    for at in [50, 60] {
        theirs.measurements.push(MeasurementRecord {
            value: Some(serde_json::json!(0.01)),
            baseline: None,
            phase: MeasurementPhase::Successful,
            at: rfc(base() + Duration::from_secs(at)),
            query: Q.into(),
            error: None,
        });
    }
    h.status_writer.set(web.clone(), status(vec![theirs]), 2);
    advance(30).await;
    assert_eq!(h.call_times(Q).len(), 2, "still a standby: nothing measured");

    sender.send(Leadership::Leading(crate::leader::Term(2)));
    advance(30).await;
    assert_eq!(h.call_times(Q), vec![30, 40, 71, 81, 91], "resumed from status: overdue at once, then every interval");
    let r = h.run_of(&web, 0, "errors").expect("stored");
    assert_eq!(
        (r.phase, r.successful, r.measurements.len()),
        (AnalysisPhase::Successful, 5, 5),
        "the other replica's two measurements count; this replica's own earlier one does not: {r:?}"
    );
}

/// Two replicas contend for the lock in the in-memory Consul model ([`crate::leader::fake`]), each with its own
/// analysis stage behind the gate its elector publishes: only the holder measures; when it stops, the other takes the
/// lock and resumes the run from status where the first left it.
#[tokio::test(start_paused = true)]
async fn poller_should_measure_only_on_the_replica_holding_the_lock() {
    use crate::leader::fake::FakeConsul;
    use crate::leader::{Elector, Holder, LockConfig};

    let consul = FakeConsul::new();
    let elect = |pid: u32| {
        let holder = Holder { hostname: "test".into(), pid, listen: String::new(), version: "0".into() };
        let config = LockConfig::new("drover", Duration::from_secs(10), Duration::from_secs(1), holder);
        let (elector, gate) = Elector::new(consul.port(), config);
        let stop = CancellationToken::new();
        tokio::spawn(elector.run(stop.clone()));
        (gate, stop)
    };
    let (gate_a, stop_a) = elect(1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(gate_a.is_leader(), "the first replica takes the free lock");
    let (gate_b, _stop_b) = elect(2);
    let (a, b) =
        (Harness::start_with(PollerConfig::default(), gate_a), Harness::start_with(PollerConfig::default(), gate_b));
    for h in [&a, &b] {
        h.provider.set(Q, 0.01);
    }
    let web = a.app("web", template(10, 5, 0), vec![run(0, "errors", base())]);
    b.app("web", template(10, 5, 0), vec![run(0, "errors", base())]);
    advance(25).await;
    assert_eq!(a.call_times(Q), vec![0, 10, 20], "the leader measures on schedule");
    assert!(b.provider.calls().is_empty(), "the standby sends no query");

    // The leader stops (releasing the lock); the standby takes it and reads the statuses the leader wrote.
    stop_a.cancel();
    let written = a.run_of(&web, 0, "errors").expect("the leader's run");
    b.status_writer.set(web.clone(), status(vec![written]), 2);
    advance(25).await;
    assert_eq!(a.call_times(Q), vec![0, 10, 20], "the old leader measures no more");
    assert_eq!(b.call_times(Q), vec![30, 40], "the new leader goes on one interval after the last measurement");
    let r = b.run_of(&web, 0, "errors").expect("the new leader's run");
    assert_eq!((r.phase, r.successful, r.measurements.len()), (AnalysisPhase::Successful, 5, 5), "{r:?}");
}
