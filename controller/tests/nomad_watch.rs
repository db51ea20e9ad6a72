//! State-machine tests of the live watcher on paused time, against an in-memory Nomad that keeps its lists,
//! their indexes and the streams it hands out (STYLE 9: a stateful fake, not a scripted call sequence).

use std::collections::{BTreeSet, VecDeque};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use drover::metrics::Metrics;
use drover::nomad::events::DropReason;
use drover::nomad::namespaces::Namespace;
use drover::nomad::types::{Deployment, JobStub};
use drover::nomad::watch::{LiveSource, LiveWatcher, State};
use drover::nomad::{BlockingQuery, Error, EventStream, LiveEvent, LiveWatchConfig};
use serde_json::json;
use tokio::sync::{mpsc, watch};

type Feed = mpsc::UnboundedSender<Result<Bytes, io::Error>>;

/// An in-memory Nomad: current lists with their indexes, and streams handed out in order.
#[derive(Default)]
struct FakeNomad {
    jobs: Mutex<(Vec<JobStub>, u64)>,
    deployments: Mutex<(Vec<Deployment>, u64)>,
    streams: Mutex<VecDeque<EventStream>>,
    subscribed: Mutex<Vec<u64>>,
    job_queries: Mutex<Vec<BlockingQuery>>,
    /// The namespace list and its index; a blocking list waits on it.
    namespaces: NamespaceTable,
    /// Namespace lists that fail, before they answer again.
    namespace_failures: Mutex<u32>,
    /// Jobs (and their index) that Nomad writes while the next subscription is being opened.
    written_while_subscribing: Mutex<Option<JobsAt>>,
}

/// Job IDs with their `ModifyIndex`, and the list's index.
type JobsAt = (Vec<(&'static str, u64)>, u64);

/// The namespace table of the fake: names and index, with change notification for blocking queries.
struct NamespaceTable(watch::Sender<(Vec<&'static str>, u64)>);

impl Default for NamespaceTable {
    fn default() -> Self {
        Self(watch::Sender::new((vec!["default"], 1)))
    }
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

    /// Replaces the namespace list (a create or delete in Nomad), at `index`.
    fn set_namespaces(&self, names: &[&'static str], index: u64) {
        self.namespaces.0.send_replace((names.to_vec(), index));
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

    /// Blocks as Nomad does (B2): until the index passes `query.index`, or `query.wait` passes.
    async fn list_namespaces(&self, query: BlockingQuery) -> Result<(Vec<Namespace>, u64), Error> {
        {
            let mut failures = self.namespace_failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err(Error::ServerError {
                    endpoint: "namespaces_list",
                    target: "*".into(),
                    code: 500,
                    message: "No cluster leader".into(),
                });
            }
        }
        let mut rx = self.namespaces.0.subscribe();
        if query.index > 0 {
            let _ = tokio::time::timeout(query.wait, rx.wait_for(|(_, index)| *index > query.index)).await;
        }
        let (names, index) = rx.borrow().clone();
        let list = names.into_iter().map(|n| Namespace { name: n.into(), modify_index: index }).collect();
        Ok((list, index))
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

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|n| (*n).to_owned()).collect()
}

impl FakeNomad {
    /// Adds a job stub in `namespace` and moves the jobs list's index.
    fn add_job(&self, namespace: &str, id: &str, index: u64) {
        let mut jobs = self.jobs.lock().unwrap();
        jobs.0.push(JobStub { id: id.into(), namespace: namespace.into(), modify_index: index, ..JobStub::default() });
        jobs.1 = index;
    }
}

/// Steps an open stream until the watcher leaves `Streaming`, failing if it reports anything meanwhile.
async fn until_not_streaming(w: &mut LiveWatcher<Arc<FakeNomad>>, mut state: State) -> State {
    for _ in 0..10 {
        if !matches!(state, State::Streaming { .. }) {
            return state;
        }
        let (result, next) = w.step(state).await;
        assert_eq!(result.unwrap(), vec![], "nothing to report while the namespace query runs");
        state = next;
    }
    panic!("the watcher kept streaming after 10 steps: {state:?}");
}

#[tokio::test(start_paused = true)]
async fn live_watcher_should_reopen_the_stream_and_relist_when_a_namespace_appears() {
    let nomad = Arc::new(FakeNomad::default());
    nomad.set_jobs(&[("web", 12)], 12);
    nomad.set_deployments_index(12);
    let first = nomad.next_stream();
    let (mut w, metrics) = live_watcher(&nomad);
    let (events, state) = next_events(&mut w, State::initial()).await;
    assert!(
        matches!(&events.unwrap()[0], LiveEvent::Resynced { namespaces, .. } if *namespaces == names(&["default"])),
        "the relist says which namespaces it covered"
    );
    send(&first, "{}");
    send(&first, &job_frame(13, "web", 13, false));
    let (events, state) = next_events(&mut w, state).await;
    assert!(matches!(&events.unwrap()[..], [LiveEvent::JobUpserted(_)]));

    // A namespace is created and a job registered there: the open `namespace=*` stream never carries it (C25).
    nomad.set_namespaces(&["default", "late"], 14);
    nomad.add_job("late", "api", 15);
    let second = nomad.next_stream();
    let state = until_not_streaming(&mut w, state).await;
    assert!(matches!(state, State::Listing { failures: 0, resume: Some(13), .. }), "reopen, no backoff: {state:?}");
    let (events, state) = next_events(&mut w, state).await;
    match &events.unwrap()[..] {
        [LiveEvent::Resynced { jobs, namespaces, .. }] => {
            assert!(jobs.iter().any(|j| j.namespace == "late" && j.id == "api"), "{jobs:?}");
            assert_eq!(*namespaces, names(&["default", "late"]));
        }
        other => panic!("expected a relist, got {other:?}"),
    }
    assert!(matches!(state, State::Streaming { .. }), "{state:?}");
    assert_eq!(nomad.subscribed.lock().unwrap().clone(), vec![1, 14], "resubscribed from the last frame + 1");
    drop(first);
    // The new stream is read, and the namespace query goes on from the new list's index.
    send(&second, "{}");
    let late = json!({"Index": 16, "Events": [{"Topic": "Job", "Type": "JobRegistered", "Key": "api",
        "Namespace": "late", "Index": 16, "Payload": {"Job": {"ID": "api", "Namespace": "late", "ModifyIndex": 16}}}]});
    send(&second, &late.to_string());
    let (events, _) = next_events(&mut w, state).await;
    assert!(matches!(&events.unwrap()[..], [LiveEvent::JobUpserted(job)] if job.namespace == "late"));
    assert!(!metrics.encode().contains("drover_watch_restarts_total{source=\"nomad\"} 1"), "a reopen is no failure");
}

#[tokio::test(start_paused = true)]
async fn live_watcher_should_keep_the_stream_and_report_no_job_gone_when_a_namespace_disappears() {
    let nomad = Arc::new(FakeNomad::default());
    nomad.set_namespaces(&["default", "apps"], 5);
    nomad.set_jobs(&[("web", 12)], 12);
    nomad.set_deployments_index(12);
    let feed = nomad.next_stream();
    let (mut w, _) = live_watcher(&nomad);
    let (_, state) = next_events(&mut w, State::initial()).await;
    send(&feed, "{}");
    let (result, state) = w.step(state).await;
    assert_eq!(result.unwrap(), vec![], "the heartbeat");
    // `apps` is deleted, or hidden from the token: nothing is reported, the same stream goes on.
    nomad.set_namespaces(&["default"], 20);
    let (result, state) = w.step(state).await;
    assert_eq!(result.unwrap(), vec![], "no JobDeleted, no relist");
    match &state {
        State::Streaming { namespaces, .. } => assert_eq!(namespaces.covered.names, names(&["default"])),
        other => panic!("still streaming expected, got {other:?}"),
    }
    send(&feed, &job_frame(21, "web", 21, false));
    let (events, _) = next_events(&mut w, state).await;
    assert!(matches!(&events.unwrap()[..], [LiveEvent::JobUpserted(_)]));
    assert_eq!(nomad.subscribed.lock().unwrap().len(), 1, "no resubscription");
}

#[tokio::test(start_paused = true)]
async fn live_watcher_should_retry_a_failed_namespace_list_without_dropping_the_stream() {
    let nomad = Arc::new(FakeNomad::default());
    nomad.set_jobs(&[("web", 12)], 12);
    nomad.set_deployments_index(12);
    let feed = nomad.next_stream();
    let (mut w, _) = live_watcher(&nomad);
    let (_, state) = next_events(&mut w, State::initial()).await;
    send(&feed, "{}");
    *nomad.namespace_failures.lock().unwrap() = 1;
    let (result, state) = w.step(state).await;
    assert_eq!(result.unwrap(), vec![], "the heartbeat");
    let (result, state) = w.step(state).await;
    assert_eq!(result.unwrap(), vec![], "a failed namespace list is logged, not a stream failure");
    assert!(matches!(&state, State::Streaming { namespaces, .. } if namespaces.failures == 1), "{state:?}");
    // The retry (after its backoff) sees the new namespace.
    nomad.set_namespaces(&["default", "late"], 30);
    let _second = nomad.next_stream();
    let state = until_not_streaming(&mut w, state).await;
    assert!(matches!(state, State::Listing { .. }), "{state:?}");
    assert_eq!(nomad.subscribed.lock().unwrap().len(), 1);
    drop(feed);
}
