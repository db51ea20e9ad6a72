//! Contract tests for finite capacity (nodes, placement failures, blocked evaluations, `JobSummary.Queued`), node
//! drain and removal, and cutting open event streams. Each test is one rule; see sim/README.md "Capacity".

mod nomad_support;

use std::time::Duration;

use drover_sim::{ClusterConfig, SimConfig};
use futures::StreamExt;
use nomad_support::{Sim, job, secs, with_update};
use reqwest::Method;
use serde_json::{Value, json};

/// One node of 1000 MHz / 1000 MB: three allocations of Nomad's default task size (100 MHz / 300 MB) fit.
async fn small_cluster() -> Sim {
    small_cluster_at(SimConfig::fast().time_scale).await
}

/// [`small_cluster`] at `time_scale` real seconds per sim second: deadline tests use a slower clock, so that a
/// loaded machine delaying the background loop by a few real milliseconds does not reorder sim deadlines.
async fn small_cluster_at(time_scale: f64) -> Sim {
    let cluster = ClusterConfig { nodes: 1, node_cpu_mhz: 1000, node_memory_mb: 1000 };
    nomad_support::spawn(SimConfig { cluster, time_scale, ..SimConfig::default() }).await
}

/// A job whose one task needs `cpu` MHz and `memory_mb` MB.
fn sized(id: &str, count: u64, cpu: u64, memory_mb: u64) -> Value {
    let mut j = job(id, count);
    j["TaskGroups"][0]["Tasks"][0]["Resources"] = json!({"CPU": cpu, "MemoryMB": memory_mb});
    j
}

async fn evals(s: &Sim, id: &str) -> Vec<Value> {
    let r = s.get(&format!("/v1/job/{id}/evaluations")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json().as_array().cloned().unwrap_or_default()
}

async fn blocked_eval(s: &Sim, id: &str) -> Value {
    s.until(&format!("job {id} has a blocked evaluation"), || async {
        evals(s, id).await.into_iter().find(|e| e["Status"] == "blocked")
    })
    .await
}

async fn live_allocs(s: &Sim, id: &str) -> Vec<Value> {
    let a = s.get(&format!("/v1/job/{id}/allocations")).await.json();
    a.as_array().into_iter().flatten().filter(|a| a["DesiredStatus"] == "run").cloned().collect()
}

async fn add_node(s: &Sim, cpu: u64, memory_mb: u64) -> String {
    let r = s.post("/_sim/nomad/nodes", &json!({"cpu": cpu, "memory_mb": memory_mb})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["ID"].as_str().expect("a node ID").to_string()
}

async fn node_ids(s: &Sim) -> Vec<String> {
    let nodes = s.get("/_sim/nomad/nodes").await.json();
    nodes.as_array().into_iter().flatten().filter_map(|n| n["ID"].as_str().map(str::to_string)).collect()
}

async fn running(s: &Sim, id: &str, n: usize) -> Vec<Value> {
    s.until(&format!("{n} allocations of {id} run"), || async {
        let live = live_allocs(s, id).await;
        (live.len() == n && live.iter().all(|a| a["ClientStatus"] == "running")).then_some(live)
    })
    .await
}

#[tokio::test]
async fn job_that_does_not_fit_should_stay_pending_with_queued_and_failed_tg_allocs() {
    let s = small_cluster().await;
    let mut events = s.raw_stream("topic=Evaluation").await;
    s.register(&sized("big", 2, 2000, 100)).await;
    let blocked = blocked_eval(&s, "big").await;
    assert_eq!(blocked["TriggeredBy"], "queued-allocs");
    assert_eq!(blocked["StatusDescription"], "created to place remaining allocations");
    let all = evals(&s, "big").await;
    let placed = all.iter().find(|e| e["ID"] == blocked["PreviousEval"]).expect("the blocked eval's previous eval");
    assert_eq!(placed["Status"], "complete");
    assert_eq!(placed["BlockedEval"], blocked["ID"]);
    assert_eq!(placed["QueuedAllocations"], json!({"web": 2}));
    let metric = &placed["FailedTGAllocs"]["web"];
    assert_eq!(metric["NodesEvaluated"], 1);
    assert_eq!(metric["NodesExhausted"], 1);
    assert_eq!(metric["DimensionExhausted"], json!({"cpu": 1}));
    assert_eq!(metric["CoalescedFailures"], 1, "the second placement is coalesced into the first failure");
    let j = s.job("big").await;
    assert_eq!(j["Status"], "pending", "a blocked eval is outstanding and nothing runs");
    let summary = s.get("/v1/job/big/summary").await.json();
    assert_eq!(summary["Summary"]["web"]["Queued"], 2);
    assert_eq!(summary["Summary"]["web"]["Starting"], 0);
    assert!(live_allocs(&s, "big").await.is_empty());
    let by_id = s.get(&format!("/v1/evaluation/{}", blocked["ID"].as_str().unwrap_or(""))).await;
    assert_eq!((by_id.status, by_id.json()["Status"].clone()), (200, json!("blocked")));
    // The blocked eval is announced on the event stream as an EvaluationUpdated event.
    let frame = events
        .until_frame(|f| {
            f["Events"].as_array().into_iter().flatten().any(|e| e["Payload"]["Evaluation"]["Status"] == "blocked")
        })
        .await;
    let ev =
        frame["Events"].as_array().into_iter().flatten().find(|e| e["Payload"]["Evaluation"]["Status"] == "blocked");
    assert_eq!(ev.map(|e| e["Type"].clone()), Some(json!("EvaluationUpdated")));
}

#[tokio::test]
async fn unknown_evaluation_should_be_404() {
    let s = small_cluster().await;
    let r = s.get("/v1/evaluation/3f1c0f6e-0000-0000-0000-000000000000").await;
    assert_eq!((r.status, r.body.as_str()), (404, "eval not found"));
    assert_eq!(evals(&s, "nope").await, Vec::<Value>::new(), "a job that does not exist has no evaluations");
}

#[tokio::test]
async fn partial_fit_should_place_what_fits_and_queue_the_rest() {
    let s = small_cluster().await;
    s.register(&job("web", 5)).await;
    blocked_eval(&s, "web").await;
    running(&s, "web", 3).await;
    let summary = s.get("/v1/job/web/summary").await.json();
    assert_eq!(
        (summary["Summary"]["web"]["Running"].clone(), summary["Summary"]["web"]["Queued"].clone()),
        (json!(3), json!(2))
    );
    assert_eq!(s.job("web").await["Status"], "running", "some allocations run");
    let metric = &evals(&s, "web").await.into_iter().find(|e| e["BlockedEval"] != "").expect("the placing eval")["FailedTGAllocs"]
        ["web"];
    assert_eq!(metric["DimensionExhausted"], json!({"memory": 1}));
}

#[tokio::test]
async fn adding_a_node_should_place_the_queued_allocations_and_run_the_job() {
    let s = small_cluster().await;
    s.register(&sized("big", 2, 2000, 100)).await;
    let blocked = blocked_eval(&s, "big").await;
    let node = add_node(&s, 5000, 1000).await;
    let live = running(&s, "big", 2).await;
    assert!(live.iter().all(|a| a["NodeID"] == node), "both allocations are on the new node: {live:?}");
    s.until("the job is running", || async { (s.job("big").await["Status"] == "running").then_some(()) }).await;
    let summary = s.get("/v1/job/big/summary").await.json();
    assert_eq!(summary["Summary"]["web"]["Queued"], 0);
    let unblocked = s.get(&format!("/v1/evaluation/{}", blocked["ID"].as_str().unwrap_or(""))).await.json();
    assert_eq!(unblocked["Status"], "complete", "the blocked eval ran and placed everything");
    assert_eq!(s.deployment_status("big", 0, "successful").await["TaskGroups"]["web"]["HealthyAllocs"], 2);
    let nodes = s.get("/_sim/nomad/nodes").await.json();
    let n = nodes.as_array().into_iter().flatten().find(|n| n["ID"] == node.as_str()).expect("the added node");
    assert_eq!(n["Used"], json!({"CPU": 4000, "MemoryMB": 200}));
}

#[tokio::test]
async fn stopping_another_job_should_unblock_a_queued_one() {
    let s = small_cluster().await;
    s.register(&sized("first", 1, 800, 100)).await;
    running(&s, "first", 1).await;
    s.register(&sized("second", 1, 800, 100)).await;
    blocked_eval(&s, "second").await;
    let r = s.raw(Method::DELETE, "/v1/job/first", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    running(&s, "second", 1).await;
}

#[tokio::test]
async fn a_later_eval_that_places_everything_should_cancel_the_blocked_eval() {
    let s = small_cluster().await;
    s.register(&sized("web", 1, 2000, 100)).await;
    let blocked = blocked_eval(&s, "web").await;
    s.register(&sized("web", 1, 500, 100)).await;
    running(&s, "web", 1).await;
    let id = blocked["ID"].as_str().unwrap_or("");
    let e = s.get(&format!("/v1/evaluation/{id}")).await.json();
    assert_eq!(e["Status"], "cancelled");
    assert_eq!(
        e["StatusDescription"],
        format!("evaluation \"{id}\" successful"),
        "Nomad quotes the blocked eval's own ID"
    );
    assert_eq!(s.get("/v1/job/web/summary").await.json()["Summary"]["web"]["Queued"], 0);
}

#[tokio::test]
async fn a_newer_blocked_eval_should_cancel_the_older_one() {
    let s = small_cluster().await;
    s.register(&sized("web", 1, 2000, 100)).await;
    let first = blocked_eval(&s, "web").await;
    s.register(&sized("web", 1, 3000, 100)).await;
    let second = s
        .until("a second blocked eval", || async {
            evals(&s, "web").await.into_iter().find(|e| e["Status"] == "blocked" && e["ID"] != first["ID"])
        })
        .await;
    let old = s.get(&format!("/v1/evaluation/{}", first["ID"].as_str().unwrap_or(""))).await.json();
    assert_eq!(old["Status"], "cancelled");
    assert_eq!(old["StatusDescription"], "existing blocked evaluation exists for job \"web\"");
    assert_eq!(
        evals(&s, "web").await.iter().filter(|e| e["Status"] == "blocked").count(),
        1,
        "one blocked eval per job"
    );
    assert_eq!(second["FailedTGAllocs"]["web"]["DimensionExhausted"], json!({"cpu": 1}));
}

#[tokio::test]
async fn stopping_a_queued_job_should_cancel_its_blocked_eval_and_clear_queued() {
    let s = small_cluster().await;
    s.register(&sized("web", 2, 2000, 100)).await;
    let blocked = blocked_eval(&s, "web").await;
    s.raw(Method::DELETE, "/v1/job/web", None).await;
    s.until("the stopped job is dead with nothing queued", || async {
        let summary = s.get("/v1/job/web/summary").await.json();
        (s.job("web").await["Status"] == "dead" && summary["Summary"]["web"]["Queued"] == 0).then_some(())
    })
    .await;
    let e = s.get(&format!("/v1/evaluation/{}", blocked["ID"].as_str().unwrap_or(""))).await.json();
    assert_eq!(e["Status"], "cancelled");
}

#[tokio::test]
async fn draining_a_node_should_move_its_allocations_to_another_node() {
    let s = small_cluster().await;
    s.register(&job("web", 2)).await;
    running(&s, "web", 2).await;
    let old = node_ids(&s).await.remove(0);
    let new = add_node(&s, 1000, 1000).await;
    let r = s.raw(Method::POST, &format!("/_sim/nomad/nodes/{old}/drain"), None).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let live = s
        .until("both allocations run on the new node", || async {
            let live = live_allocs(&s, "web").await;
            (live.len() == 2 && live.iter().all(|a| a["NodeID"] == new.as_str() && a["ClientStatus"] == "running"))
                .then_some(live)
        })
        .await;
    assert_eq!(live.len(), 2);
    let all = s.get("/v1/job/web/allocations").await.json();
    let migrated: Vec<&Value> =
        all.as_array().into_iter().flatten().filter(|a| a["DesiredDescription"] == "alloc is being migrated").collect();
    assert_eq!(migrated.len(), 2, "{all}");
    assert!(migrated.iter().all(|a| a["NodeID"] == old.as_str()));
}

#[tokio::test]
async fn draining_the_only_node_should_keep_allocations_running_until_room_appears() {
    let s = small_cluster().await;
    s.register(&job("web", 1)).await;
    let first = running(&s, "web", 1).await;
    let old = node_ids(&s).await.remove(0);
    s.raw(Method::POST, &format!("/_sim/nomad/nodes/{old}/drain"), None).await;
    blocked_eval(&s, "web").await;
    assert_eq!(live_allocs(&s, "web").await[0]["ID"], first[0]["ID"], "nothing else fits: it keeps running");
    let new = add_node(&s, 1000, 1000).await;
    s.until("the allocation moved to the new node", || async {
        let live = live_allocs(&s, "web").await;
        (live.len() == 1 && live[0]["NodeID"] == new.as_str()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn removing_a_node_should_lose_its_allocations_and_queue_their_replacements() {
    let s = small_cluster().await;
    s.register(&job("web", 2)).await;
    running(&s, "web", 2).await;
    let old = node_ids(&s).await.remove(0);
    let r = s.raw(Method::DELETE, &format!("/_sim/nomad/nodes/{old}"), None).await;
    assert_eq!(r.status, 204, "{}", r.body);
    blocked_eval(&s, "web").await;
    let all = s.get("/v1/job/web/allocations").await.json();
    let lost = all.as_array().into_iter().flatten().filter(|a| a["ClientStatus"] == "lost").count();
    assert_eq!(lost, 2);
    s.until("the job is pending with 2 queued", || async {
        let summary = s.get("/v1/job/web/summary").await.json();
        (s.job("web").await["Status"] == "pending" && summary["Summary"]["web"]["Queued"] == 2).then_some(())
    })
    .await;
    add_node(&s, 1000, 1000).await;
    running(&s, "web", 2).await;
}

/// A failed deployment places nothing new, except one replacement for each lost allocation, in its slot
/// (`computeReplacements`): a replacement that fails in turn is not replaced again.
#[tokio::test]
async fn a_failed_deployment_should_replace_each_lost_allocation_once() {
    let s = small_cluster().await;
    let health = |mode: &'static str| json!({"namespace": "default", "job": "web", "mode": mode});
    let r = s.post("/_sim/nomad/health", &health("never")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Deadlines of days (minutes of real time here): the test must end long before either passes, also on a loaded
    // machine.
    let update = json!({"MaxParallel": 2, "MinHealthyTime": secs(1), "HealthyDeadline": secs(400_000),
        "ProgressDeadline": secs(800_000)});
    s.register(&with_update(job("web", 2), update)).await;
    running(&s, "web", 2).await;
    let id = s.deployment_status("web", 0, "running").await["ID"].as_str().expect("a deployment ID").to_string();
    let r = s.post(&format!("/v1/deployment/fail/{id}"), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The replacements will fail 1 s after they start.
    let r = s.post("/_sim/nomad/health", &health("unhealthy")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let old = node_ids(&s).await.remove(0);
    let new = add_node(&s, 1000, 1000).await;
    let r = s.raw(Method::DELETE, &format!("/_sim/nomad/nodes/{old}"), None).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let all = |s: &Sim| {
        let s = s.clone();
        async move { s.get("/v1/job/web/allocations").await.json().as_array().cloned().unwrap_or_default() }
    };
    let replaced = s
        .until("both lost allocations replaced, and the replacements failed", || async {
            let all = all(&s).await;
            let failed = all.iter().filter(|a| a["ClientStatus"] == "failed" && a["NodeID"] == new.as_str()).count();
            (failed == 2).then_some(all)
        })
        .await;
    // Five simulated minutes: a lost allocation counted again would be replaced every evaluation.
    s.shared.clock.sleep(std::time::Duration::from_secs(300)).await;
    let after = all(&s).await;
    assert_eq!(after.len(), 4, "two lost, two replacements, nothing else: {after:#?}");
    assert_eq!(replaced.len(), 4);
    let names = |v: &[Value], status: &str| {
        let mut n: Vec<String> = v
            .iter()
            .filter(|a| a["ClientStatus"] == status)
            .filter_map(|a| a["Name"].as_str().map(String::from))
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(&after, "lost"), names(&after, "failed"), "each replacement keeps its lost allocation's name");
}

#[tokio::test]
async fn deployment_with_unplaceable_allocations_should_fail_at_its_progress_deadline() {
    let s = small_cluster_at(0.01).await;
    let update = json!({"MaxParallel": 5, "MinHealthyTime": secs(1), "HealthyDeadline": secs(5),
        "ProgressDeadline": secs(10)});
    s.register(&with_update(job("web", 5), update)).await;
    let d = s.deployment_status("web", 0, "failed").await;
    assert_eq!(d["StatusDescription"], "Failed due to progress deadline");
    assert_eq!(
        (d["TaskGroups"]["web"]["PlacedAllocs"].clone(), d["TaskGroups"]["web"]["HealthyAllocs"].clone()),
        (json!(3), json!(3))
    );
}

#[tokio::test]
async fn deployment_that_places_nothing_should_never_reach_its_progress_deadline() {
    let s = small_cluster().await;
    let update = json!({"MaxParallel": 1, "MinHealthyTime": secs(1), "HealthyDeadline": secs(5),
        "ProgressDeadline": secs(10)});
    s.register(&with_update(sized("big", 1, 2000, 100), update)).await;
    blocked_eval(&s, "big").await;
    let start = s.shared.clock.now();
    s.until("60 s of sim time pass", || async {
        (s.shared.clock.now().since_start() > start.since_start() + Duration::from_secs(60)).then_some(())
    })
    .await;
    let d = s.deployments("big").await;
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["Status"], "running", "RequireProgressBy starts at the first placement: {}", d[0]);
    assert_eq!(d[0]["TaskGroups"]["web"]["RequireProgressBy"], "0001-01-01T00:00:00Z");
    assert_eq!(d[0]["TaskGroups"]["web"]["PlacedAllocs"], 0);
}

#[tokio::test]
async fn cut_should_end_an_open_stream_abruptly_and_a_resume_at_index_plus_one_should_work() {
    let s = small_cluster().await;
    let mut events = s.raw_stream("topic=Job").await;
    s.register(&job("a", 1)).await;
    let first = events.until_frame(|f| f["Events"][0]["Key"] == "a").await;
    let index = first["Index"].as_u64().expect("frame index");
    let r = s.post("/_sim/nomad/event-stream/cut", &json!({})).await;
    assert_eq!((r.status, r.json()["cut"].clone()), (200, json!(1)));
    assert!(events.ends_with_error().await, "a cut stream ends with a body error, not a clean end");
    s.register(&job("b", 1)).await;
    let mut resumed = s.raw_stream(&format!("topic=Job&index={}", index + 1)).await;
    let next = resumed.until_frame(|f| f.get("Index").is_some()).await;
    assert!(next["Index"].as_u64().is_some_and(|i| i > index), "resume starts after the seen frame: {next}");
    assert!(
        next["Events"].as_array().into_iter().flatten().all(|e| e["Key"] != "a" || e["Index"].as_u64() > Some(index)),
        "the frame already seen is not sent again: {next}"
    );
}

#[tokio::test]
async fn cut_window_should_also_cut_streams_opened_during_it() {
    let s = small_cluster().await;
    let r = s.post("/_sim/nomad/event-stream/cut", &json!({"duration_ms": 3_600_000})).await;
    assert_eq!((r.status, r.json()["cut"].clone()), (200, json!(0)));
    let mut events = s.raw_stream("topic=Job").await;
    assert_eq!(events.next_line().await, Some(json!({})), "the stream opens");
    assert!(events.ends_with_error().await, "then dies inside the window");
}

/// A raw event-stream reader that can tell a clean end from a cut.
struct RawStream {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: Vec<u8>,
}

trait OpenStream {
    async fn raw_stream(&self, query: &str) -> RawStream;
}

impl OpenStream for Sim {
    async fn raw_stream(&self, query: &str) -> RawStream {
        let r = reqwest::get(format!("{}/v1/event/stream?{query}", self.url)).await.expect("open event stream");
        assert_eq!(r.status(), 200);
        RawStream { body: Box::pin(r.bytes_stream()), buf: Vec::new() }
    }
}

impl RawStream {
    /// The next line as JSON, `None` at a clean end; panics on a body error or after 5 s real time.
    async fn next_line(&mut self) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(p) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=p).collect();
                return Some(serde_json::from_slice(&line).expect("each line is JSON"));
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .expect("an event-stream line within 5 s")?
                .expect("the stream reads without error");
            self.buf.extend_from_slice(&chunk);
        }
    }

    /// Frames until one satisfies `f`.
    async fn until_frame(&mut self, f: impl Fn(&Value) -> bool) -> Value {
        loop {
            let v = self.next_line().await.expect("the stream is still open");
            if v.get("Index").is_some() && f(&v) {
                return v;
            }
        }
    }

    /// Reads until the body ends: true when it ended with an error (cut), false on a clean end.
    async fn ends_with_error(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, self.body.next()).await.expect("the stream ends within 5 s") {
                Some(Ok(_)) => {}
                Some(Err(_)) => return true,
                None => return false,
            }
        }
    }
}
