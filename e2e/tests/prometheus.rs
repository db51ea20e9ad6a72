//! Drover's Prometheus client and query templates against a real Prometheus (Debian's `prometheus`) scraping the
//! simulator's workload metrics: the shared measurement layer of rollout analysis and autoscaling. Also checks that
//! Drover's own `/metrics` passes `promtool check metrics`.

use std::time::Duration;

use drover::prometheus::{Client, InstantQuery, QueryError, QueryTemplate, Scope, Shape, Vars};
use drover::status::Phase;
use drover_e2e::{
    DEADLINE, DroverProcess, PrometheusProcess, SimProcess, TIME_SCALE, http_client, template_record, wait_until,
};

fn query<'a>(address: &'a str, q: &'a str) -> InstantQuery<'a> {
    InstantQuery { address, query: q, timeout: Duration::from_secs(5), headers: &[] }
}

#[tokio::test]
async fn measurements_should_come_from_a_real_prometheus_and_say_why_they_are_not_a_number() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let prometheus = PrometheusProcess::start(&sim).await;
    let drover = DroverProcess::start(&sim, &[]).await;
    sim.put_record("default", "web", template_record("web", "nginx:1.27", "")).await;
    sim.wait_for_status("default", "web", "Healthy", |s| s.phase == Phase::Healthy).await;
    sim.set_workload("default", "web", Some(0), 200.0, 0.1).await;

    let client = Client::new(http_client());
    let template = QueryTemplate::parse(
        r#"sum(rate(http_requests_total{job="{{ .JobID }}",namespace="{{ .Namespace }}",code="500"}[10s])) / sum(rate(http_requests_total{job="{{ .JobID }}",namespace="{{ .Namespace }}"}[10s]))"#,
        &Scope::all([]),
    )
    .expect("the template parses");
    let vars = Vars { job_id: "web".into(), namespace: "default".into(), ..Vars::default() };
    let rendered = template.render(&vars);
    let error_rate = wait_until(DEADLINE, "an error rate near 10 % measured through Prometheus", || async {
        match client.query(&query(&prometheus.url, &rendered)).await.map(|r| r.single()) {
            Ok(Ok(v)) if (0.05..=0.15).contains(&v) => Ok(v),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    println!("error rate measured through Prometheus: {error_rate:.3}");

    // Not exactly one number: said, never a crash, never a number.
    let empty = client.query(&query(&prometheus.url, r#"http_requests_total{job="nothing"}"#)).await;
    assert_eq!(empty.map(|r| r.single()).ok(), Some(Err(Shape::Empty)));
    let several = client.query(&query(&prometheus.url, r#"http_requests_total{job="web"}"#)).await;
    assert!(matches!(several.map(|r| r.single()), Ok(Err(Shape::Several(n))) if n >= 2));
    let nan = client.query(&query(&prometheus.url, "0/0")).await;
    assert_eq!(nan.map(|r| r.single()).ok(), Some(Err(Shape::NaN)));

    // Errors, not measurements: a query Prometheus refuses, and a Prometheus that is not there.
    match client.query(&query(&prometheus.url, "sum(")).await {
        Err(e @ QueryError::Rejected { code: 400, .. }) => assert!(!e.is_retryable(), "{e}"),
        other => panic!("a broken query must be refused with 400 bad_data: {other:?}"),
    }
    let gone = format!("http://127.0.0.1:{}", drover_e2e::free_port());
    match client.query(&query(&gone, "up")).await {
        Err(e @ QueryError::Unreachable { .. }) => assert!(e.is_retryable()),
        other => panic!("nothing listens there: {other:?}"),
    }
    let _ = drover;
}

#[tokio::test]
async fn drovers_metrics_should_pass_promtool() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let drover = DroverProcess::start(&sim, &[]).await;
    sim.put_record("default", "web", template_record("web", "nginx:1.27", "")).await;
    sim.wait_for_status("default", "web", "Healthy", |s| s.phase == Phase::Healthy).await;
    let text = drover.get_text("/metrics").await;
    assert!(text.contains("drover_reconcile_total"), "{text}");
    drover_e2e::promtool_check_metrics(&text);
}
