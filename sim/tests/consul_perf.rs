//! A throughput check of the KV read path: 10 000 keys, concurrent single-key GETs. Ignored by default; run with
//! `cargo test -p drover-sim --release --test consul_perf -- --ignored --nocapture`.

mod consul_support;

use std::sync::Arc;
use std::time::Duration;

use consul_support::spawn_scaled;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "throughput measurement, run on demand"]
async fn perf_kv_get_should_serve_many_reads_per_second_with_10k_keys() {
    let s = Arc::new(spawn_scaled(1.0).await);
    for chunk in 0..(10_000 / 100) {
        let ops: Vec<_> = (0..100)
            .map(|i| json!({"KV": {"Verb": "set", "Key": format!("drover/apps/default/app-{}", chunk * 100 + i), "Value": "eyJraW5kIjoiQXBwIn0="}}))
            .collect();
        let r = s.put("/v1/txn", &serde_json::Value::Array(ops).to_string()).await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(s.consul.stats().keys, 10_000);
    let started = tokio::time::Instant::now();
    let per_task = 2_000;
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                for i in 0..per_task {
                    let url = format!("{}/v1/kv/drover/apps/default/app-{}", s.url, (t * 613 + i * 7) % 10_000);
                    let r = http.get(url).send().await.expect("GET");
                    assert_eq!(r.status().as_u16(), 200);
                    let _ = r.bytes().await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("reader task");
    }
    let elapsed = started.elapsed();
    let rate = (16 * per_task) as f64 / elapsed.as_secs_f64();
    println!("{} GETs in {elapsed:?}: {rate:.0}/s (client and server share the cores)", 16 * per_task);
    assert!(elapsed < Duration::from_secs(120));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "throughput measurement, run on demand"]
async fn perf_kv_get_handler_should_cost_a_few_microseconds() {
    use tower::ServiceExt;
    let s = spawn_scaled(1.0).await;
    for chunk in 0..(10_000 / 100) {
        let ops: Vec<_> = (0..100)
            .map(|i| json!({"KV": {"Verb": "set", "Key": format!("k/{}", chunk * 100 + i), "Value": "eA=="}}))
            .collect();
        assert_eq!(s.put("/v1/txn", &serde_json::Value::Array(ops).to_string()).await.status, 200);
    }
    let router = drover_sim::consul::router(Arc::clone(&s.consul));
    let n = 100_000;
    let started = tokio::time::Instant::now();
    for i in 0..n {
        let req = axum::http::Request::get(format!("/v1/kv/k/{}", (i * 7) % 10_000))
            .body(axum::body::Body::empty())
            .expect("request");
        let resp = router.clone().oneshot(req).await.expect("infallible");
        assert_eq!(resp.status().as_u16(), 200);
    }
    let elapsed = started.elapsed();
    println!("{n} in-process GETs in {elapsed:?}: {:.0}/s on one task", n as f64 / elapsed.as_secs_f64());
}
