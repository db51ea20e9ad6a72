//! Wire-format tests of the Nomad client against a scripted in-test HTTP server (STYLE 9: scripted mocks only for
//! the wire format), the event stream over a raw `Connection: close` body, and state-machine tests of the live
//! watcher on paused time.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use drover::metrics::Metrics;
use drover::nomad::events::DropReason;
use drover::nomad::types::{Deployment, DeploymentStatus, DiffType, JobStub};
use drover::nomad::watch::{LiveSource, LiveWatcher, State};
use drover::nomad::{BlockingQuery, Client, Error, EventStream, LiveEvent, LiveWatchConfig};
use drover::tls::{TlsFiles, build_http_client};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

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

// ---- live watcher state machine (paused time, in-memory Nomad) ----

type Feed = mpsc::UnboundedSender<Result<Bytes, io::Error>>;

/// Job IDs with their `ModifyIndex`, and the list's index.
type JobsAt = (Vec<(&'static str, u64)>, u64);

/// An in-memory Nomad: current lists with their indexes, and streams handed out in order.
#[derive(Default)]
struct FakeNomad {
    jobs: Mutex<(Vec<JobStub>, u64)>,
    deployments: Mutex<(Vec<Deployment>, u64)>,
    streams: Mutex<VecDeque<EventStream>>,
    subscribed: Mutex<Vec<u64>>,
    job_queries: Mutex<Vec<BlockingQuery>>,
    /// Jobs (and their index) that Nomad writes while the next subscription is being opened.
    written_while_subscribing: Mutex<Option<JobsAt>>,
}

impl FakeNomad {
    fn set_jobs(&self, ids: &[(&str, u64)], index: u64) {
        let stubs = ids
            .iter()
            .map(|(id, modify_index)| JobStub {
                id: (*id).into(),
                namespace: "default".into(),
                modify_index: *modify_index,
                ..JobStub::default()
            })
            .collect();
        *self.jobs.lock().unwrap() = (stubs, index);
    }

    fn set_deployments_index(&self, index: u64) {
        self.deployments.lock().unwrap().1 = index;
    }

    /// Queues a stream for the next subscription; the returned sender feeds it, dropping it closes it.
    fn next_stream(&self) -> Feed {
        let (tx, rx) = mpsc::unbounded_channel();
        let body = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
        self.streams.lock().unwrap().push_back(EventStream::new(Box::pin(body)));
        tx
    }
}

impl LiveSource for FakeNomad {
    async fn list_jobs(&self, query: BlockingQuery) -> Result<(Vec<JobStub>, u64), Error> {
        self.job_queries.lock().unwrap().push(query);
        Ok(self.jobs.lock().unwrap().clone())
    }

    async fn list_deployments(&self, _query: BlockingQuery) -> Result<(Vec<Deployment>, u64), Error> {
        Ok(self.deployments.lock().unwrap().clone())
    }

    async fn subscribe(&self, index: u64) -> Result<EventStream, Error> {
        self.subscribed.lock().unwrap().push(index);
        if let Some((jobs, at)) = self.written_while_subscribing.lock().unwrap().take() {
            self.set_jobs(&jobs, at);
        }
        Ok(self.streams.lock().unwrap().pop_front().expect("the watcher subscribed more often than the test expected"))
    }
}

fn send(feed: &Feed, line: &str) {
    feed.send(Ok(Bytes::from(format!("{line}\n")))).unwrap();
}

fn job_frame(index: u64, id: &str, modify_index: u64, deleted: bool) -> String {
    let mut payload = json!({"Job": {"ID": id, "Namespace": "default", "Version": 1, "ModifyIndex": modify_index, "JobModifyIndex": modify_index}});
    if deleted {
        payload["Deleted"] = json!(true);
    }
    json!({"Index": index, "Events": [{"Topic": "Job", "Type": "JobRegistered", "Key": id, "Namespace": "default", "Index": index, "Payload": payload}]}).to_string()
}

fn live_watcher(nomad: &Arc<FakeNomad>) -> (LiveWatcher<Arc<FakeNomad>>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let config = LiveWatchConfig { wait: Duration::from_secs(60), ..LiveWatchConfig::default() };
    (LiveWatcher::new(nomad.clone(), config, metrics.clone()), metrics)
}

/// Steps until the watcher reports something (or fails), with a bound so a stuck machine fails the test.
async fn next_events(w: &mut LiveWatcher<Arc<FakeNomad>>, mut state: State) -> (Result<Vec<LiveEvent>, Error>, State) {
    for _ in 0..10 {
        let (result, next) = w.step(state).await;
        state = next;
        match result {
            Ok(events) if events.is_empty() => continue,
            other => return (other, state),
        }
    }
    panic!("the watcher made 10 steps without reporting anything; state {state:?}");
}

#[tokio::test(start_paused = true)]
async fn live_watcher_should_resync_then_stream_events_and_drop_replays() {
    let nomad = Arc::new(FakeNomad::default());
    nomad.set_jobs(&[("web", 12)], 12);
    nomad.set_deployments_index(9);
    let feed = nomad.next_stream();
    let (mut w, _) = live_watcher(&nomad);
    let (events, state) = next_events(&mut w, State::initial()).await;
    let events = events.unwrap();
    assert!(matches!(&events[0], LiveEvent::Resynced { jobs, index: 9, .. } if jobs.len() == 1), "{events:?}");
    send(&feed, "{}");
    send(&feed, &job_frame(12, "web", 12, false));
    send(&feed, &job_frame(15, "web", 15, false));
    send(&feed, &job_frame(15, "web", 15, false));
    send(&feed, &job_frame(20, "web", 20, true));
    send(&feed, &job_frame(14, "web", 14, false));
    let (events, state) = next_events(&mut w, state).await;
    assert_eq!(nomad.subscribed.lock().unwrap().clone(), vec![1], "subscribes before listing, from the oldest batch");
    match &events.unwrap()[..] {
        [LiveEvent::JobUpserted(job)] => assert_eq!(job.modify_index, 15, "index 12 was in the list already"),
        other => panic!("expected one upsert, got {other:?}"),
    }
    let (events, state) = next_events(&mut w, state).await;
    assert_eq!(events.unwrap(), vec![LiveEvent::JobDeleted { namespace: "default".into(), id: "web".into() }]);
    // The duplicate at 15 and the replayed upsert at 14 (older than the purge) were dropped; a purge whose payload
    // carries no job is still understood from the event's key.
    let purge = json!({"Index": 30, "Events": [{"Topic": "Job", "Type": "JobDeregistered", "Key": "api",
        "Namespace": "apps", "Index": 30, "Payload": {"Job": null, "Deleted": true}}]});
    send(&feed, &purge.to_string());
    let (events, _) = next_events(&mut w, state).await;
    assert_eq!(events.unwrap(), vec![LiveEvent::JobDeleted { namespace: "apps".into(), id: "api".into() }]);
}

/// Regression (issue #7, 2.0: one app in 10 000 stuck `Progressing`). A write that lands between a list and the
/// start of the subscription that follows it is in neither when Nomad's 100-batch buffer has moved past it (the
/// subscription silently starts at the oldest retained batch, B15). Listing after subscribing leaves no such gap.
#[tokio::test(start_paused = true)]
async fn live_watcher_should_list_after_subscribing_so_no_write_falls_between() {
    let nomad = Arc::new(FakeNomad::default());
    nomad.set_jobs(&[("web", 12)], 12);
    nomad.set_deployments_index(12);
    // While the subscription opens, `web` is updated at 40; the stream will not carry that write.
    *nomad.written_while_subscribing.lock().unwrap() = Some((vec![("web", 40)], 40));
    nomad.set_deployments_index(40);
    let feed = nomad.next_stream();
    let (mut w, _) = live_watcher(&nomad);
    let (events, state) = next_events(&mut w, State::initial()).await;
    match &events.unwrap()[..] {
        [LiveEvent::Resynced { jobs, index: 40, .. }] => {
            assert_eq!(jobs.iter().map(|j| j.modify_index).collect::<Vec<_>>(), [40], "the list saw the write")
        }
        other => panic!("expected one resync at 40, got {other:?}"),
    }
    assert!(matches!(state, State::Streaming { .. }), "{state:?}");
    // The stream replays older batches: covered by the list, so dropped; a newer write still comes through.
    send(&feed, "{}");
    send(&feed, &job_frame(30, "api", 30, false));
    send(&feed, &job_frame(41, "web", 41, false));
    let (events, _) = next_events(&mut w, state).await;
    match &events.unwrap()[..] {
        [LiveEvent::JobUpserted(job)] => assert_eq!((job.id.as_str(), job.modify_index), ("web", 41)),
        other => panic!("expected only the write after the list, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn live_watcher_should_back_off_relist_and_resume_after_a_drop() {
    let nomad = Arc::new(FakeNomad::default());
    nomad.set_jobs(&[("web", 12)], 12);
    nomad.set_deployments_index(12);
    let feed = nomad.next_stream();
    let (mut w, metrics) = live_watcher(&nomad);
    let (_, state) = next_events(&mut w, State::initial()).await;
    send(&feed, "{}");
    send(&feed, &job_frame(20, "web", 20, false));
    let (_, state) = next_events(&mut w, state).await;
    nomad.set_jobs(&[("web", 30)], 30);
    nomad.set_deployments_index(30);
    let _second = nomad.next_stream();
    drop(feed);
    let (result, state) = next_events(&mut w, state).await;
    assert!(matches!(result, Err(Error::StreamDropped { reason: DropReason::Ended })), "{result:?}");
    assert!(matches!(state, State::Backoff { .. }), "{state:?}");
    let (events, state) = next_events(&mut w, state).await;
    assert!(matches!(&events.unwrap()[0], LiveEvent::Resynced { index: 30, .. }), "a drop is followed by a relist");
    assert!(matches!(state, State::Streaming { .. }), "{state:?}");
    assert_eq!(nomad.subscribed.lock().unwrap().clone(), vec![1, 21], "resumes from the last frame index + 1");
    assert!(metrics.encode().contains("drover_watch_restarts_total{source=\"nomad\"} 1"));
}

#[tokio::test(start_paused = true)]
async fn live_watcher_should_fall_back_to_blocking_queries_when_the_stream_is_refused() {
    let nomad = Arc::new(FakeNomad::default());
    nomad.set_jobs(&[("web", 12)], 12);
    nomad.set_deployments_index(12);
    let (mut w, _) = live_watcher(&nomad);
    let mut state = State::initial();
    for _ in 0..3 {
        // Each subscription closes before its first `{}` (what v2.0.x does on an ACL failure).
        drop(nomad.next_stream());
        let (events, next) = next_events(&mut w, state).await;
        assert!(matches!(&events.unwrap()[0], LiveEvent::Resynced { .. }));
        let (result, next) = next_events(&mut w, next).await;
        assert!(matches!(result, Err(Error::StreamDropped { reason: DropReason::EndedBeforeHeartbeat })));
        state = next;
    }
    let (events, state) = next_events(&mut w, state).await;
    assert!(matches!(&events.unwrap()[0], LiveEvent::Resynced { .. }));
    assert!(matches!(state, State::Polling { jobs_index: 12, .. }), "{state:?}");
    assert_eq!(nomad.subscribed.lock().unwrap().len(), 3, "no fourth subscription");
    // Same indexes: no event. A new job index: a full snapshot.
    let (result, state) = w.step(state).await;
    assert_eq!(result.unwrap(), vec![]);
    nomad.set_jobs(&[("web", 12), ("api", 14)], 14);
    let (events, state) = next_events(&mut w, state).await;
    assert!(matches!(&events.unwrap()[0], LiveEvent::Resynced { jobs, .. } if jobs.len() == 2));
    assert!(matches!(state, State::Polling { jobs_index: 14, .. }));
    let queries = nomad.job_queries.lock().unwrap().clone();
    assert_eq!(queries.last().unwrap().index, 12, "polls block on the last index");
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
            if let Some(LiveEvent::JobUpserted(job)) = events.next().await {
                if job.id == "api" {
                    return job;
                }
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
