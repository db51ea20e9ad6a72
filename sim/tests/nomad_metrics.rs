//! Tests for the simulated workload metrics (`/_sim/metrics`, `/_sim/nomad/workload`).

mod nomad_support;

use nomad_support::{fast, job};
use serde_json::json;

fn sample(text: &str, metric: &str, version: &str, extra: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(&format!("{metric}{{")) && l.contains(&format!("version=\"{version}\"")) && l.contains(extra)
        })
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

#[tokio::test]
async fn workload_metrics_should_grow_with_load_and_errors_per_version() {
    let s = fast().await;
    s.register(&job("web", 2)).await;
    s.deployment_status("web", 0, "successful").await;
    let r = s
        .post("/_sim/nomad/workload", &json!({"namespace": "default", "job": "web", "error_rate": 0.1, "load": 100.0}))
        .await;
    assert_eq!(r.status, 200);
    let first = s.get("/_sim/metrics").await.body;
    let later = s
        .until("requests advance with sim time", || async {
            let t = s.get("/_sim/metrics").await.body;
            (sample(&t, "http_requests_total", "0", "") > sample(&first, "http_requests_total", "0", "") + 100.0)
                .then_some(t)
        })
        .await;
    let req = sample(&later, "http_requests_total", "0", "");
    let err = sample(&later, "http_requests_total", "0", "code=\"500\"");
    assert!(err > 0.0 && err < req, "errors {err} of {req}");
    assert!(later.contains("# TYPE http_request_duration_seconds histogram"));
    assert_eq!(later.lines().filter(|l| l.starts_with("cpu_percent{")).count(), 2, "one per running allocation");
}
