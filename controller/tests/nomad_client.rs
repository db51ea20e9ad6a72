//! Wire-format tests of the Nomad client against a scripted in-test HTTP server (STYLE 9: scripted mocks only for
//! the wire format), the event stream over a raw `Connection: close` body, and the client and live watcher against
//! the simulator. The live watcher's state-machine tests on paused time are in `nomad_watch.rs`.

use std::sync::Arc;
use std::time::Duration;

use drover::metrics::Metrics;
use drover::nomad::events::DropReason;
use drover::nomad::types::{DeploymentStatus, DiffType};
use drover::nomad::{BlockingQuery, Client, Error, LiveEvent, LiveWatchConfig};
use drover::tls::{TlsFiles, build_http_client};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

mod scripted;
use scripted::{Scripted, Seen};

struct Harness {
    server: Scripted,
    client: Client,
}

fn client_for(addr: &str, token: Option<&str>, region: Option<&str>) -> Client {
    let http = build_http_client(TlsFiles::default()).unwrap();
    Client::with_http(http, addr, token.map(str::to_owned), region.map(str::to_owned), Arc::new(Metrics::new()))
}

impl Harness {
    async fn start(token: Option<&str>, region: Option<&str>) -> Harness {
        let server = Scripted::start().await;
        let client = client_for(&server.url, token, region);
        Harness { server, client }
    }

    fn reply(&self, code: u16, headers: &[(&'static str, &str)], body: &str) {
        self.server.reply(code, headers, body);
    }

    fn seen(&self) -> Vec<Seen> {
        self.server.seen()
    }
}

const STUB: &str = r#"[{"ID":"web","ParentID":"","Name":"web","Namespace":"apps","Type":"service","Priority":50,"Stop":false,"Status":"running","JobSummary":{"JobID":"web","Namespace":"apps","Summary":{"web":{"Queued":0,"Complete":0,"Failed":0,"Running":3,"Starting":0,"Lost":0,"Unknown":0}},"Children":{"Pending":0,"Running":0,"Dead":0},"CreateIndex":10,"ModifyIndex":42},"CreateIndex":10,"ModifyIndex":40,"JobModifyIndex":38,"SubmitTime":1700000000000000000,"Meta":{"drover.io/app":"default/web"}}]"#;

#[tokio::test]
async fn list_jobs_should_ask_all_namespaces_with_meta_and_block_on_index() {
    let h = Harness::start(Some("n0mad"), Some("eu")).await;
    h.reply(200, &[("X-Nomad-Index", "42")], STUB);
    let (jobs, index) = h.client.list_jobs(BlockingQuery::after(41, Duration::from_secs(60))).await.unwrap();
    assert_eq!(index, 42);
    assert_eq!(jobs[0].meta["drover.io/app"], "default/web");
    assert_eq!(jobs[0].job_modify_index, 38);
    assert_eq!(jobs[0].job_summary.as_ref().unwrap().summary["web"].running, 3);
    let seen = &h.seen()[0];
    assert_eq!(seen.uri, "/v1/jobs?namespace=*&meta=true&index=41&wait=60000ms&region=eu");
    assert_eq!(seen.headers["x-nomad-token"], "n0mad");
}

#[tokio::test]
async fn job_should_be_none_on_404_and_escape_slashes_in_ids() {
    let h = Harness::start(None, None).await;
    h.reply(404, &[("X-Nomad-Index", "7")], "job not found");
    h.reply(200, &[("X-Nomad-Index", "40")], r#"{"ID":"batch/periodic-1","Namespace":"apps","Version":2,"JobModifyIndex":38,"ModifyIndex":40,"TaskGroups":null,"Meta":null}"#);
    assert!(h.client.job("apps", "web").await.unwrap().is_none());
    let job = h.client.job("apps", "batch/periodic-1").await.unwrap().unwrap();
    assert_eq!((job.version, job.job_modify_index), (2, 38));
    let seen = h.seen();
    assert_eq!(seen[0].uri, "/v1/job/web?namespace=apps");
    assert!(!seen[0].headers.contains_key("x-nomad-token"));
    assert_eq!(seen[1].uri, "/v1/job/batch%2Fperiodic-1?namespace=apps");
}

#[tokio::test]
async fn register_should_send_enforce_index_and_classify_conflicts() {
    let h = Harness::start(None, None).await;
    let job = json!({"ID": "web", "Name": "web", "TaskGroups": []});
    h.reply(200, &[("X-Nomad-Index", "45")], r#"{"EvalID":"e1","EvalCreateIndex":45,"JobModifyIndex":44,"Warnings":"","Index":45,"LastContact":0,"KnownLeader":false,"NextToken":""}"#);
    h.reply(500, &[], "Enforcing job modify index 38: job exists with conflicting job modify index: 41");
    h.reply(500, &[], "1 error occurred:\n\t* Task group web validation failed: Missing tasks for task group\n\n");
    h.reply(500, &[], "No cluster leader");
    let reply = h.client.register("apps", &job, Some(38), false).await.unwrap();
    assert_eq!((reply.eval_id.as_str(), reply.job_modify_index), ("e1", 44));
    let err = h.client.register("apps", &job, Some(38), false).await.unwrap_err();
    assert!(matches!(&err, Error::EnforceIndexConflict { job_id, .. } if job_id == "web"), "{err:?}");
    let err = h.client.register("apps", &job, None, true).await.unwrap_err();
    assert!(matches!(&err, Error::JobInvalid { .. }) && !err.is_retryable(), "{err:?}");
    let err = h.client.register("apps", &job, None, false).await.unwrap_err();
    assert!(matches!(&err, Error::ServerError { code: 500, .. }) && err.is_retryable(), "{err:?}");
    let seen = h.seen();
    assert_eq!((seen[0].method.as_str(), seen[0].uri.as_str()), ("POST", "/v1/job/web?namespace=apps"));
    assert_eq!(
        seen[0].json(),
        json!({"Job": job, "PreserveCounts": false, "EnforceIndex": true, "JobModifyIndex": 38})
    );
    assert_eq!(seen[2].json(), json!({"Job": job, "PreserveCounts": true}));
}

#[tokio::test]
async fn register_and_plan_should_classify_permanent_500s_apart_from_outages() {
    // Contract B4: kind changes and a missing namespace are 500s that no retry fixes (issue #7 2.6).
    let h = Harness::start(None, None).await;
    let job = json!({"ID": "web", "TaskGroups": []});
    let cases = [
        ("cannot update job from type \"service\" to \"batch\"", "job_type_change"),
        ("cannot update non-periodic job to being periodic", "job_type_change"),
        ("cannot update parameterized job to being non-parameterized", "job_type_change"),
        ("job \"web\" is in nonexistent namespace \"apps\"", "namespace_not_found"),
    ];
    for (message, _) in cases {
        h.reply(500, &[], message);
    }
    for (message, kind) in cases {
        let err = h.client.register("apps", &job, None, false).await.unwrap_err();
        assert_eq!((err.kind(), err.is_retryable()), (kind, false), "{message}");
    }
    h.reply(500, &[], "cannot update non-parameterized job to being parameterized");
    h.reply(500, &[], "job \"web\" is in nonexistent namespace \"apps\"");
    let err = h.client.plan("apps", &job, true).await.unwrap_err();
    assert!(
        matches!(&err, Error::JobTypeChange { job_id, message } if job_id == "web" && message.ends_with("being parameterized")),
        "{err:?}"
    );
    let err = h.client.plan("apps", &job, true).await.unwrap_err();
    assert!(
        matches!(&err, Error::NamespaceNotFound { job_id, namespace } if job_id == "web" && namespace == "apps"),
        "{err:?}"
    );
}

#[tokio::test]
async fn register_should_refuse_a_job_without_id_without_sending() {
    let h = Harness::start(None, None).await;
    let err = h.client.register("default", &json!({"Name": "x"}), None, false).await.unwrap_err();
    assert_eq!(err.kind(), "job_without_id");
    assert!(h.seen().is_empty());
}

#[tokio::test]
async fn plan_should_ask_for_the_diff_and_parse_it() {
    let h = Harness::start(None, None).await;
    h.reply(200, &[("X-Nomad-Index", "38")], r#"{"Annotations":null,"FailedTGAllocs":null,"JobModifyIndex":38,"Diff":{"Type":"None","ID":"web","Fields":null,"Objects":null,"TaskGroups":null},"Warnings":"","Index":38}"#);
    let job = json!({"ID": "web"});
    let plan = h.client.plan("default", &job, true).await.unwrap();
    assert_eq!(plan.diff.unwrap().diff_type, DiffType::None);
    assert_eq!(plan.job_modify_index, 38);
    let seen = &h.seen()[0];
    assert_eq!(seen.uri, "/v1/job/web/plan?namespace=default");
    assert_eq!(seen.json(), json!({"Job": {"ID": "web"}, "Diff": true}));
}

#[tokio::test]
async fn deployment_reads_should_map_null_and_404_to_none() {
    let h = Harness::start(None, None).await;
    h.reply(200, &[("X-Nomad-Index", "9")], "null");
    h.reply(404, &[("X-Nomad-Index", "9")], "deployment not found");
    h.reply(200, &[("X-Nomad-Index", "70")], r#"[{"ID":"d1","Namespace":"default","JobID":"web","JobVersion":7,"JobSpecModifyIndex":58,"JobCreateIndex":10,"Status":"running","StatusDescription":"Deployment is running but requires manual promotion","TaskGroups":{"web":{"AutoRevert":true,"Promoted":false,"PlacedCanaries":["a1"],"DesiredCanaries":1,"DesiredTotal":3,"PlacedAllocs":1,"HealthyAllocs":1,"UnhealthyAllocs":0}},"CreateIndex":61,"ModifyIndex":70}]"#);
    assert!(h.client.latest_deployment("default", "web").await.unwrap().is_none());
    assert!(h.client.deployment("default", "d0").await.unwrap().is_none());
    let (deployments, index) = h.client.list_deployments("*", BlockingQuery::now()).await.unwrap();
    assert_eq!(index, 70);
    assert_eq!(deployments[0].status, DeploymentStatus::Running);
    assert_eq!(deployments[0].task_groups["web"].placed_canaries, vec!["a1"]);
    let seen = h.seen();
    assert_eq!(seen[0].uri, "/v1/job/web/deployment?namespace=default");
    assert_eq!(seen[1].uri, "/v1/deployment/d0?namespace=default");
    assert_eq!(seen[2].uri, "/v1/deployments?namespace=*");
}

#[tokio::test]
async fn writes_should_send_documented_bodies() {
    let h = Harness::start(None, None).await;
    let reply = r#"{"EvalID":"e","EvalCreateIndex":5,"JobModifyIndex":5,"Index":5}"#;
    h.reply(200, &[], reply);
    h.reply(200, &[], reply);
    h.reply(
        200,
        &[],
        r#"{"EvalID":"e","EvalCreateIndex":6,"DeploymentModifyIndex":6,"RevertedJobVersion":null,"Index":6}"#,
    );
    h.reply(
        200,
        &[],
        r#"{"EvalID":"e","EvalCreateIndex":7,"DeploymentModifyIndex":7,"RevertedJobVersion":3,"Index":7}"#,
    );
    h.reply(500, &[], "can't promote terminal deployment");
    h.reply(200, &[], r#"[{"ID":"a","JobID":"web","JobVersion":2,"TaskGroup":"web","ClientStatus":"running","DesiredStatus":"run","DeploymentStatus":{"Healthy":null,"Canary":true}}]"#);
    h.client.deregister("default", "web", true).await.unwrap();
    h.client.scale("default", "web", "web", 5, "cpu 83 > 70").await.unwrap();
    h.client.promote("default", "d1", None).await.unwrap();
    let failed = h.client.fail("default", "d1").await.unwrap();
    assert_eq!(failed.reverted_job_version, Some(3));
    let err = h.client.promote("default", "d1", Some(&["web".to_owned()])).await.unwrap_err();
    assert!(matches!(err, Error::Rejected { code: 500, .. }) && !err.is_retryable());
    let allocs = h.client.allocations("default", "web").await.unwrap();
    assert_eq!(allocs[0].deployment_status.as_ref().unwrap().healthy, None);
    let seen = h.seen();
    assert_eq!((seen[0].method.as_str(), seen[0].uri.as_str()), ("DELETE", "/v1/job/web?namespace=default&purge=true"));
    assert_eq!(seen[1].uri, "/v1/job/web/scale?namespace=default");
    assert_eq!(seen[1].json(), json!({"Count": 5, "Target": {"Group": "web"}, "Message": "cpu 83 > 70"}));
    assert_eq!(seen[2].uri, "/v1/deployment/promote/d1?namespace=default");
    assert_eq!(seen[2].json(), json!({"DeploymentID": "d1", "All": true}));
    assert_eq!(seen[3].uri, "/v1/deployment/fail/d1?namespace=default");
    assert_eq!(seen[4].json(), json!({"DeploymentID": "d1", "Groups": ["web"]}));
    assert_eq!(seen[5].uri, "/v1/job/web/allocations?namespace=default");
}

#[tokio::test]
async fn errors_should_classify_permission_and_bad_requests() {
    let h = Harness::start(None, None).await;
    h.reply(403, &[], "Permission denied");
    h.reply(400, &[], "job scaling blocked due to active deployment");
    assert_eq!(h.client.list_jobs(BlockingQuery::now()).await.unwrap_err().kind(), "permission_denied");
    let err = h.client.scale("default", "web", "web", 2, "m").await.unwrap_err();
    assert!(matches!(err, Error::Rejected { code: 400, .. }), "{err:?}");
}

// ---- event stream over a raw HTTP/1.1 body ended by Connection: close (B15) ----

/// Serves one request the way Nomad v2.0.x does: status line and headers at once, no Content-Length, no chunking,
/// `Connection: close`, then the given lines with pauses, then a close. Returns the request head it read.
async fn raw_stream_server(lines: Vec<(Duration, &'static str)>) -> (String, tokio::task::JoinHandle<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.unwrap();
            head.extend_from_slice(&buf[..n]);
        }
        socket
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        for (pause, line) in lines {
            tokio::time::sleep(pause).await;
            socket.write_all(line.as_bytes()).await.unwrap();
        }
        socket.shutdown().await.unwrap();
        String::from_utf8(head).unwrap()
    });
    (format!("http://{addr}"), task)
}

#[tokio::test]
async fn subscribe_should_read_ndjson_until_the_server_closes() {
    let frame = "{\"Index\":812,\"Events\":[{\"Topic\":\"Deployment\",\"Type\":\"DeploymentStatusUpdate\",\"Key\":\"d1\",\"Namespace\":\"default\",\"FilterKeys\":[\"web\"],\"Index\":812,\"Payload\":{\"Deployment\":{\"ID\":\"d1\",\"Status\":\"failed\"}}}]}\n";
    let (addr, server) =
        raw_stream_server(vec![(Duration::ZERO, "{}\n"), (Duration::from_millis(20), frame), (Duration::ZERO, "{}\n")])
            .await;
    let client = client_for(&addr, Some("n0mad"), None);
    let mut stream = client.subscribe(800).await.unwrap();
    assert!(stream.next_frame().await.unwrap().is_heartbeat());
    let got = stream.next_frame().await.unwrap();
    assert_eq!(got.index, 812);
    assert_eq!(got.events[0].filter_keys, vec!["web"]);
    assert!(stream.next_frame().await.unwrap().is_heartbeat());
    let err = stream.next_frame().await.unwrap_err();
    assert!(matches!(err, Error::StreamDropped { reason: DropReason::Ended }), "{err:?}");
    let head = server.await.unwrap();
    assert!(
        head.starts_with("GET /v1/event/stream?topic=Job&topic=Deployment&namespace=*&index=800 HTTP/1.1"),
        "{head}"
    );
    assert!(head.to_ascii_lowercase().contains("x-nomad-token: n0mad"), "{head}");
}

#[tokio::test]
async fn subscribe_should_report_a_close_before_the_first_heartbeat() {
    let (addr, _server) = raw_stream_server(vec![]).await;
    let client = client_for(&addr, None, None);
    let mut stream = client.subscribe(1).await.unwrap();
    let err = stream.next_frame().await.unwrap_err();
    assert!(matches!(err, Error::StreamDropped { reason: DropReason::EndedBeforeHeartbeat }), "{err:?}");
    assert!(!stream.saw_heartbeat());
}

// ---- against the simulator over real HTTP ----

async fn sim_nomad() -> (drover_sim::testing::TestSim, Client) {
    let sim = drover_sim::testing::spawn(drover_sim::SimConfig::fast()).await;
    let client = client_for(&sim.nomad_url, None, None);
    (sim, client)
}

fn sim_job(id: &str, count: u64) -> serde_json::Value {
    json!({"ID": id, "Type": "service", "Meta": {"drover.io/app": format!("default/{id}")},
        "TaskGroups": [{"Name": "web", "Count": count,
        "Tasks": [{"Name": "app", "Driver": "docker", "Config": {"image": "nginx:1"}}]}]})
}

#[tokio::test]
async fn sim_register_should_enforce_the_job_modify_index() {
    let (_sim, client) = sim_nomad().await;
    client.register("default", &sim_job("web", 1), Some(0), false).await.unwrap();
    let err = client.register("default", &sim_job("web", 2), Some(0), false).await.unwrap_err();
    assert!(matches!(err, Error::EnforceIndexConflict { .. }), "{err:?}");
    let job = client.job("default", "web").await.unwrap().unwrap();
    assert_eq!(job.meta["drover.io/app"], "default/web");
    client.register("default", &sim_job("web", 2), Some(job.job_modify_index), false).await.unwrap();
    let job2 = client.job("default", "web").await.unwrap().unwrap();
    assert_eq!(job2.version, job.version + 1);
    assert_eq!(job2.task_groups[0].count, 2);
    let err = client.register("default", &sim_job("web", 3), Some(job.job_modify_index), false).await.unwrap_err();
    assert!(matches!(err, Error::EnforceIndexConflict { .. }), "a stale index loses: {err:?}");
    // A batch job has no deployments, so the scale's own guard is what decides (B10 checks an active deployment
    // first).
    let mut batch = sim_job("etl", 1);
    batch["Type"] = json!("batch");
    client.register("default", &batch, None, false).await.unwrap();
    let etl = client.job("default", "etl").await.unwrap().unwrap();
    let err =
        client.scale_guarded("default", "etl", "web", 4, "test", Some(etl.job_modify_index + 1)).await.unwrap_err();
    assert!(matches!(err, Error::EnforceIndexConflict { .. }), "a stale scale guard loses: {err:?}");
    client.scale_guarded("default", "etl", "web", 4, "test", Some(etl.job_modify_index)).await.unwrap();
    let etl2 = client.job("default", "etl").await.unwrap().unwrap();
    assert_eq!((etl2.version, etl2.task_groups[0].count), (etl.version + 1, 4));
    let (jobs, index) = client.list_jobs(BlockingQuery::now()).await.unwrap();
    assert_eq!(jobs.len(), 2);
    assert!(index >= etl2.modify_index);
    let err = client.register("default", &json!({"ID": "bad", "TaskGroups": []}), None, false).await.unwrap_err();
    assert!(matches!(err, Error::JobInvalid { .. }), "{err:?}");
}

#[tokio::test]
async fn sim_register_should_answer_the_permanent_500s_the_client_classifies() {
    let (_sim, client) = sim_nomad().await;
    client.register("default", &sim_job("web", 1), None, false).await.unwrap();
    let mut batch = sim_job("web", 1);
    batch["Type"] = json!("batch");
    let err = client.register("default", &batch, None, false).await.unwrap_err();
    assert!(
        matches!(&err, Error::JobTypeChange { job_id, message } if job_id == "web" && message.ends_with("\"service\" to \"batch\"")),
        "{err:?}"
    );
    let err = client.register("nowhere", &sim_job("api", 1), None, false).await.unwrap_err();
    assert!(
        matches!(&err, Error::NamespaceNotFound { job_id, namespace } if job_id == "api" && namespace == "nowhere"),
        "{err:?}"
    );
}

#[tokio::test]
async fn sim_event_stream_should_deliver_a_job_event() {
    let (_sim, client) = sim_nomad().await;
    let (_, index) = client.list_jobs(BlockingQuery::now()).await.unwrap();
    let mut stream = client.subscribe(index + 1).await.unwrap();
    client.register("default", &sim_job("api", 1), None, false).await.unwrap();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let frame = stream.next_frame().await.unwrap();
            if let Some(event) = frame.events.iter().find(|e| e.topic == "Job") {
                return event.clone();
            }
        }
    })
    .await
    .expect("no Job event within 10 s");
    assert_eq!(found.key, "api");
    assert!(stream.saw_heartbeat());
}

#[tokio::test]
async fn sim_live_watcher_should_resync_then_report_a_registered_job() {
    use futures::StreamExt as _;
    let (_sim, client) = sim_nomad().await;
    client.register("default", &sim_job("web", 1), None, false).await.unwrap();
    let config = LiveWatchConfig { refill: Duration::from_millis(10), ..LiveWatchConfig::default() };
    let mut events = Box::pin(
        drover::nomad::watch::watch(client.clone(), config, Arc::new(Metrics::new())).flat_map(futures::stream::iter),
    );
    let deadline = Duration::from_secs(10);
    let first = tokio::time::timeout(deadline, events.next()).await.expect("no resync within 10 s").unwrap();
    assert!(matches!(&first, LiveEvent::Resynced { jobs, .. } if jobs.len() == 1 && jobs[0].id == "web"), "{first:?}");
    client.register("default", &sim_job("api", 1), None, false).await.unwrap();
    let upserted = tokio::time::timeout(deadline, async {
        loop {
            if let Some(LiveEvent::JobUpserted(job)) = events.next().await
                && job.id == "api"
            {
                return job;
            }
        }
    })
    .await
    .expect("no JobUpserted for api within 10 s");
    assert_eq!(upserted.meta["drover.io/app"], "default/api");
}

#[tokio::test]
async fn sim_live_watcher_should_recover_after_leader_loss_ends_the_stream() {
    use futures::StreamExt as _;
    let (sim, client) = sim_nomad().await;
    let metrics = Arc::new(Metrics::new());
    let config = LiveWatchConfig { refill: Duration::from_millis(10), ..LiveWatchConfig::default() };
    let mut events =
        Box::pin(drover::nomad::watch::watch(client.clone(), config, metrics.clone()).flat_map(futures::stream::iter));
    let deadline = Duration::from_secs(20);
    let first = tokio::time::timeout(deadline, events.next()).await.expect("no resync within 20 s").unwrap();
    assert!(matches!(first, LiveEvent::Resynced { .. }), "{first:?}");
    // A first job seen through the stream proves the subscription is open before the leader goes away.
    client.register("default", &sim_job("web", 1), None, false).await.unwrap();
    tokio::time::timeout(deadline, async {
        while !matches!(events.next().await, Some(LiveEvent::JobUpserted(ref job)) if job.id == "web") {}
    })
    .await
    .expect("no JobUpserted for web within 20 s");
    // Leader loss ends every subscription; lists fail with `No cluster leader` until it is back.
    sim.shared.set_leader(drover_sim::Server::Nomad, false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    sim.shared.set_leader(drover_sim::Server::Nomad, true);
    client.register("default", &sim_job("api", 1), None, false).await.unwrap();
    tokio::time::timeout(deadline, async {
        loop {
            match events.next().await {
                Some(LiveEvent::JobUpserted(job)) if job.id == "api" => return,
                Some(LiveEvent::Resynced { jobs, .. }) if jobs.iter().any(|j| j.id == "api") => return,
                Some(_) => {}
                None => panic!("the watch stream ended"),
            }
        }
    })
    .await
    .expect("the watcher did not see the job registered after the leader came back within 20 s");
    assert!(metrics.encode().contains("drover_watch_restarts_total{source=\"nomad\"}"));
}
