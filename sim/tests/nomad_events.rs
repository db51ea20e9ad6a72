//! Contract tests for api-contract.md B15 (event stream).

mod nomad_support;

use std::time::Duration;

use futures::StreamExt;
use nomad_support::{Sim, fast, job, with_meta};
use serde_json::{Value, json};

/// An open event stream, read line by line.
struct Events {
    headers: reqwest::header::HeaderMap,
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: Vec<u8>,
}

impl Events {
    async fn open(s: &Sim, query: &str) -> Events {
        let r = reqwest::get(format!("{}/v1/event/stream?{query}", s.url)).await.expect("open event stream");
        assert_eq!(r.status(), 200);
        Events { headers: r.headers().clone(), body: Box::pin(r.bytes_stream()), buf: Vec::new() }
    }

    /// The next line as JSON; panics after 5 s real time.
    async fn next(&mut self) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(p) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=p).collect();
                return serde_json::from_slice(&line).expect("each line is JSON");
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .expect("an event-stream line within 5 s")
                .expect("stream still open")
                .expect("read stream");
            self.buf.extend_from_slice(&chunk);
        }
    }

    /// The next frame with events (skipping heartbeats).
    async fn frame(&mut self) -> Value {
        loop {
            let v = self.next().await;
            if v.get("Index").is_some() {
                return v;
            }
        }
    }

    /// Frames until one satisfies `f`.
    async fn until(&mut self, f: impl Fn(&Value) -> bool) -> Value {
        loop {
            let v = self.frame().await;
            if f(&v) {
                return v;
            }
        }
    }
}

fn types(frame: &Value) -> Vec<(String, String)> {
    frame["Events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| (e["Topic"].as_str().unwrap_or("").to_string(), e["Type"].as_str().unwrap_or("").to_string()))
        .collect()
}

#[tokio::test]
async fn b15_stream_starts_with_empty_object_and_has_stream_headers() {
    let s = fast().await;
    let mut ev = Events::open(&s, "topic=Job").await;
    assert_eq!(ev.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
    assert_eq!(ev.headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-cache"));
    assert!(ev.headers.get("x-nomad-index").is_none());
    assert_eq!(ev.next().await, json!({}));
    // 30 s sim heartbeat = 30 ms real.
    assert_eq!(ev.next().await, json!({}));
}

#[tokio::test]
async fn b15_register_emits_job_then_evaluation_frames_at_same_index() {
    let s = fast().await;
    let mut ev = Events::open(&s, "topic=Job&topic=Evaluation").await;
    let reply = s.register(&job("web", 1)).await;
    let f1 = ev.frame().await;
    let f2 = ev.frame().await;
    assert_eq!(types(&f1), vec![("Job".to_string(), "JobRegistered".to_string())]);
    assert_eq!(types(&f2), vec![("Evaluation".to_string(), "JobRegistered".to_string())]);
    assert_eq!(f1["Index"], f2["Index"]);
    assert_eq!(f1["Index"], reply["JobModifyIndex"]);
    assert_eq!(f1["Events"][0]["Payload"]["Job"]["ID"], "web");
    assert_eq!(f1["Events"][0]["Key"], "web");
    assert_eq!(f1["Events"][0]["Namespace"], "default");
}

#[tokio::test]
async fn b15_identical_register_emits_only_an_evaluation() {
    let s = fast().await;
    s.register(&job("web", 1)).await;
    s.deployment_status("web", 0, "successful").await;
    let reply = s.register(&job("web", 1)).await;
    let idx = reply["Index"].as_u64().unwrap_or(0);
    let mut ev = Events::open(&s, &format!("topic=Job&topic=Evaluation&index={idx}")).await;
    let f = ev.frame().await;
    assert_eq!(f["Index"], idx);
    assert_eq!(types(&f), vec![("Evaluation".to_string(), "EvaluationUpdated".to_string())]);
}

#[tokio::test]
async fn b15_deployment_success_arrives_as_plan_result() {
    let s = fast().await;
    let mut ev = Events::open(&s, "topic=Deployment:web").await;
    s.register(&job("web", 1)).await;
    let f = ev.until(|f| f["Events"][0]["Payload"]["Deployment"]["Status"] == "successful").await;
    assert_eq!(f["Events"][0]["Type"], "PlanResult");
    assert_eq!(f["Events"][0]["FilterKeys"], json!(["web"]));
}

#[tokio::test]
async fn b15_topic_key_filters_by_job() {
    let s = fast().await;
    let mut ev = Events::open(&s, "topic=Job:web").await;
    s.register(&job("api", 1)).await;
    s.register(&job("web", 1)).await;
    let f = ev.frame().await;
    assert_eq!(f["Events"][0]["Key"], "web");
}

#[tokio::test]
async fn b15_resume_index_is_inclusive() {
    let s = fast().await;
    let r1 = s.register(&job("web", 1)).await;
    let idx = r1["JobModifyIndex"].as_u64().unwrap_or(0);
    let mut ev = Events::open(&s, &format!("topic=Job:web&index={idx}")).await;
    assert_eq!(ev.frame().await["Index"], idx);
}

#[tokio::test]
async fn b15_index_newer_than_buffer_resends_newest_batch() {
    let s = fast().await;
    s.register(&job("web", 1)).await;
    s.deployment_status("web", 0, "successful").await;
    let newest = s.nomad.lock().index;
    let mut ev = Events::open(&s, &format!("index={}", newest + 1000)).await;
    assert_eq!(ev.next().await, json!({}));
    assert_eq!(ev.frame().await["Index"], newest);
}

#[tokio::test]
async fn b15_index_older_than_buffer_starts_at_oldest_retained() {
    let s = fast().await;
    for i in 0..60 {
        s.register(&with_meta(job("web", 0), "i", &i.to_string())).await;
    }
    let mut ev = Events::open(&s, "index=1").await;
    let first = ev.frame().await["Index"].as_u64().unwrap_or(0);
    assert!(first > 2, "first frame {first} should be past the evicted batches");
}

#[tokio::test]
async fn b15_bad_topic_and_index_are_400() {
    let s = fast().await;
    let r = s.get("/v1/event/stream?index=x").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body, "Unable to parse index: strconv.Atoi: parsing \"x\": invalid syntax");
    let r = s.get("/v1/event/stream?topic=Job:a:b").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body, "Invalid topic query: error parsing topics: Invalid key value pair for topic: Job:a:b");
}

#[tokio::test]
async fn b15_stop_emits_job_deregistered_then_evaluation_at_same_index() {
    let s = fast().await;
    s.register(&job("web", 1)).await;
    let mut ev = Events::open(&s, "topic=Job:web&topic=Evaluation:web").await;
    let r = s.raw(reqwest::Method::DELETE, "/v1/job/web", None).await;
    let idx = r.json()["Index"].clone();
    let f1 = ev.until(|f| f["Index"] == idx).await;
    let f2 = ev.frame().await;
    assert_eq!(types(&f1), vec![("Job".to_string(), "JobDeregistered".to_string())]);
    assert_eq!(f1["Events"][0]["Payload"]["Job"]["Stop"], true);
    assert_eq!(types(&f2), vec![("Evaluation".to_string(), "JobDeregistered".to_string())]);
    assert_eq!(f2["Index"], idx);
}

#[tokio::test]
async fn b15_stream_ends_on_leader_loss_and_says_connection_close() {
    let s = fast().await;
    let mut ev = Events::open(&s, "topic=Job").await;
    assert_eq!(ev.headers.get("connection").and_then(|v| v.to_str().ok()), Some("close"));
    assert_eq!(ev.next().await, json!({}));
    s.shared.set_leader(drover_sim::Server::Nomad, false);
    let end =
        tokio::time::timeout(Duration::from_secs(5), async { while let Some(Ok(_)) = ev.body.next().await {} }).await;
    assert!(end.is_ok(), "the stream should close when the leader is lost");
}

/// Nomad's `UpdateDeploymentStatus` writes the failed deployment and then the auto-reverted job in one transaction,
/// so one frame carries both, the deployment first (N:nomad/state/state_store.go). A client that applies a frame
/// as a whole never sees the revert without the failure that caused it.
#[tokio::test]
async fn b15_auto_revert_frame_carries_the_failed_deployment_before_the_reverted_job() {
    let s = fast().await;
    let j = nomad_support::with_update(job("web", 1), json!({"AutoRevert": true, "ProgressDeadline": 0}));
    s.register(&j).await;
    s.deployment_status("web", 0, "successful").await;
    let mut events = Events::open(&s, "topic=Job&topic=Deployment").await;
    let health = json!({"namespace": "default", "job": "web", "version": 1, "mode": "unhealthy"});
    assert_eq!(s.post("/_sim/nomad/health", &health).await.status, 200);
    s.register(&with_meta(j, "v", "bad")).await;
    let frame = events
        .until(|f| {
            f["Events"].as_array().is_some_and(|evs| {
                evs.iter().any(|e| e["Topic"] == "Deployment" && e["Payload"]["Deployment"]["Status"] == "failed")
            })
        })
        .await;
    let topics: Vec<&str> =
        frame["Events"].as_array().into_iter().flatten().filter_map(|e| e["Topic"].as_str()).collect();
    let failed = topics.iter().position(|t| *t == "Deployment");
    let job = topics.iter().position(|t| *t == "Job");
    assert!(job.is_some(), "the reverted job is in the same frame: {topics:?}");
    assert!(failed < job, "the failed deployment comes before the reverted job: {topics:?}");
}
