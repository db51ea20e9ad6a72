//! Wire-format tests of the Consul client against a scripted in-test HTTP server (the one place scripted mocks are
//! right, STYLE 9), and state-machine tests of the prefix watcher on paused time.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover::consul::client::RequestError;
use drover::consul::watch::{State, Watcher};
use drover::consul::{
    Behavior, BlockingQuery, Client, Error, KvPair, Listing, PrefixSource, PutParams, Renewed, SessionRequest, TxnOp,
    TxnOutcome, WatchConfig, WatchEvent,
};
use drover::metrics::Metrics;
use drover::tls::{TlsFiles, build_http_client};
use tokio::time::Instant;

mod scripted;
use scripted::{Scripted, Seen};

/// A scripted server and a client pointed at it.
struct Harness {
    server: Scripted,
    client: Client,
    metrics: Arc<Metrics>,
}

impl Harness {
    async fn start(token: Option<&str>) -> Harness {
        let server = Scripted::start().await;
        let metrics = Arc::new(Metrics::new());
        let http = build_http_client(TlsFiles::default()).unwrap();
        let client = Client::with_http(http, &server.url, token.map(str::to_owned), metrics.clone());
        Harness { server, client, metrics }
    }

    fn reply(&self, code: u16, headers: &[(&'static str, &str)], body: &str) {
        self.server.reply(code, headers, body);
    }

    fn seen(&self) -> Vec<Seen> {
        self.server.seen()
    }
}

const ENTRY: &str = r#"[{"LockIndex":0,"Key":"drover/apps/default/web","Flags":0,"Value":"eyJraW5kIjoiQXBwIn0=","CreateIndex":100,"ModifyIndex":200}]"#;

#[tokio::test]
async fn get_should_send_token_and_decode_base64_value() {
    let h = Harness::start(Some("s3cret")).await;
    h.reply(200, &[("X-Consul-Index", "200")], ENTRY);
    let entry = h.client.get("drover/apps/default/web").await.unwrap().unwrap();
    assert_eq!(entry.value, br#"{"kind":"App"}"#);
    assert_eq!(entry.modify_index, 200);
    assert_eq!(entry.session, None);
    let seen = h.seen();
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].uri, "/v1/kv/drover/apps/default/web");
    assert_eq!(seen[0].headers["x-consul-token"], "s3cret");
}

#[tokio::test]
async fn get_should_return_none_on_404_and_keep_its_index() {
    let h = Harness::start(None).await;
    h.reply(404, &[("X-Consul-Index", "77")], "");
    assert_eq!(h.client.get("missing").await.unwrap(), None);
    h.reply(404, &[("X-Consul-Index", "78")], "");
    let read = h.client.get_blocking("missing", BlockingQuery::after(77, Duration::from_secs(15)), true).await.unwrap();
    assert_eq!((read.entry, read.index), (None, 78));
    let seen = h.seen();
    assert!(!seen[0].headers.contains_key("x-consul-token"));
    assert_eq!(seen[1].query(), "index=77&wait=15000ms&consistent");
}

#[tokio::test]
async fn list_should_send_recurse_by_presence_and_block_on_index() {
    let h = Harness::start(None).await;
    h.reply(200, &[("X-Consul-Index", "200")], ENTRY);
    let listing = h.client.list("drover/apps/", BlockingQuery::after(150, Duration::from_secs(300))).await.unwrap();
    assert_eq!(listing.index, 200);
    assert_eq!(listing.entries.len(), 1);
    assert_eq!(listing.bytes, ENTRY.len());
    h.reply(200, &[("X-Consul-Index", "200")], ENTRY);
    h.client.list("drover/apps/", BlockingQuery::now()).await.unwrap();
    let seen = h.seen();
    assert_eq!(seen[0].uri, "/v1/kv/drover/apps/?recurse&index=150&wait=300000ms");
    // A non-blocking list sends neither index nor wait, and never `recurse=false`-style values.
    assert_eq!(seen[1].uri, "/v1/kv/drover/apps/?recurse");
}

#[tokio::test]
async fn list_should_turn_404_into_empty_listing_with_the_returned_index() {
    let h = Harness::start(None).await;
    h.reply(404, &[("X-Consul-Index", "321")], "");
    let listing = h.client.list("drover/apps/", BlockingQuery::after(300, Duration::from_secs(5))).await.unwrap();
    assert_eq!(listing.entries, Vec::<KvPair>::new());
    assert_eq!(listing.index, 321);
}

#[tokio::test]
async fn list_should_fail_without_an_index_header() {
    let h = Harness::start(None).await;
    h.reply(200, &[], ENTRY);
    let err = h.client.list("drover/apps/", BlockingQuery::now()).await.unwrap_err();
    assert_eq!(err.kind(), "list_failed");
    assert!(matches!(err.request_error(), Some(RequestError::BadHeader("X-Consul-Index"))));
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn keys_should_send_keys_flag_and_treat_404_as_empty() {
    let h = Harness::start(None).await;
    h.reply(200, &[("X-Consul-Index", "5")], r#"["drover/apps/a","drover/apps/b"]"#);
    h.reply(404, &[("X-Consul-Index", "5")], "");
    assert_eq!(h.client.keys("drover/apps/").await.unwrap(), vec!["drover/apps/a", "drover/apps/b"]);
    assert!(h.client.keys("drover/none/").await.unwrap().is_empty());
    assert_eq!(h.seen()[0].uri, "/v1/kv/drover/apps/?keys");
}

#[tokio::test]
async fn put_and_cas_should_send_raw_body_and_read_true_false() {
    let h = Harness::start(None).await;
    h.reply(200, &[], "true");
    h.reply(200, &[], "false");
    h.client.put("drover/apps/default/web", b"kind: App\n").await.unwrap();
    let written = h.client.cas("drover/apps/default/web", b"v2", 200).await.unwrap();
    assert!(!written, "a failed CAS is 200 false, not an error");
    let seen = h.seen();
    assert_eq!(seen[0].method, "PUT");
    assert_eq!(seen[0].body, b"kind: App\n");
    assert_eq!(seen[0].uri, "/v1/kv/drover/apps/default/web");
    assert_eq!(seen[1].uri, "/v1/kv/drover/apps/default/web?cas=200");
    assert_eq!(seen[1].body, b"v2");
}

#[tokio::test]
async fn delete_should_send_cas_only_when_asked() {
    let h = Harness::start(None).await;
    h.reply(200, &[], "true");
    h.reply(200, &[], "false");
    h.client.delete("drover/apps/x").await.unwrap();
    assert!(!h.client.delete_cas("drover/apps/x", 9).await.unwrap());
    let seen = h.seen();
    assert_eq!(seen[0].method, "DELETE");
    assert_eq!(seen[0].uri, "/v1/kv/drover/apps/x");
    assert_eq!(seen[1].uri, "/v1/kv/drover/apps/x?cas=9");
}

#[tokio::test]
async fn errors_should_be_classified_by_status() {
    let h = Harness::start(None).await;
    h.reply(500, &[], "rpc error: No cluster leader");
    h.reply(403, &[], "Permission denied: anonymous token lacks permission");
    h.reply(400, &[], "Missing key name");
    let err = h.client.get("k").await.unwrap_err();
    assert!(err.is_retryable(), "{err:#?}");
    assert_eq!(err.kind(), "get_failed");
    let err = h.client.put("k", b"v").await.unwrap_err();
    assert!(err.is_permission_denied() && !err.is_retryable(), "{err:#?}");
    let err = h.client.delete("k").await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(h.metrics.encode().contains("code=\"500\""));
}

#[tokio::test]
async fn txn_should_send_base64_values_and_parse_a_commit() {
    let h = Harness::start(None).await;
    h.reply(
        200,
        &[],
        r#"{"Results":[{"KV":{"LockIndex":0,"Key":"a","Flags":0,"Value":null,"CreateIndex":5,"ModifyIndex":9}}],"Errors":null}"#,
    );
    let outcome = h
        .client
        .txn(&[TxnOp::Set { key: "a".into(), value: b"hello".to_vec(), flags: 0 }, TxnOp::Delete { key: "b".into() }])
        .await
        .unwrap();
    let TxnOutcome::Committed(entries) = outcome else {
        panic!("expected a commit, got {outcome:?}");
    };
    assert_eq!(entries[0].modify_index, 9);
    assert!(entries[0].value.is_empty());
    let seen = h.seen();
    assert_eq!((seen[0].method.as_str(), seen[0].uri.as_str()), ("PUT", "/v1/txn"));
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!([
            {"KV": {"Verb": "set", "Key": "a", "Value": "aGVsbG8=", "Flags": 0}},
            {"KV": {"Verb": "delete", "Key": "b"}}
        ])
    );
}

#[tokio::test]
async fn txn_should_parse_a_409_rollback() {
    let h = Harness::start(None).await;
    h.reply(
        409,
        &[("Content-Type", "application/json; charset=utf-8")],
        r#"{"Results":null,"Errors":[{"OpIndex":1,"What":"failed to set key \"b\", index is stale"}]}"#,
    );
    let outcome = h
        .client
        .txn(&[
            TxnOp::CheckNotExists { key: "a".into() },
            TxnOp::Cas { key: "b".into(), value: Vec::new(), flags: 0, index: 4 },
        ])
        .await
        .unwrap();
    let TxnOutcome::RolledBack(errors) = outcome else {
        panic!("expected a rollback, got {outcome:?}");
    };
    assert_eq!(errors[0].op_index, 1);
    assert!(errors[0].what.contains("index is stale"));
}

#[tokio::test]
async fn txn_should_refuse_more_than_64_ops_without_sending() {
    let h = Harness::start(None).await;
    let ops: Vec<TxnOp> = (0..65).map(|i| TxnOp::Delete { key: format!("k{i}") }).collect();
    let err = h.client.txn(&ops).await.unwrap_err();
    assert!(matches!(err, Error::TxnTooLarge { ops: 65, limit: 64 }));
    assert!(h.seen().is_empty());
}

#[tokio::test]
async fn cas_via_txn_should_return_the_new_modify_index_or_none_when_stale() {
    let h = Harness::start(None).await;
    h.reply(
        200,
        &[],
        r#"{"Results":[{"KV":{"LockIndex":0,"Key":"s","Flags":0,"Value":null,"CreateIndex":3,"ModifyIndex":42}}],"Errors":null}"#,
    );
    h.reply(409, &[], r#"{"Results":null,"Errors":[{"OpIndex":0,"What":"failed to set key \"s\", index is stale"}]}"#);
    h.reply(
        409,
        &[],
        r#"{"Results":null,"Errors":[{"OpIndex":0,"What":"Permission denied: token lacks permission 'key:write' on \"s\""}]}"#,
    );
    assert_eq!(h.client.cas_via_txn("s", b"{}", 40).await.unwrap(), Some(42));
    assert_eq!(h.client.cas_via_txn("s", b"{}", 40).await.unwrap(), None);
    let err = h.client.cas_via_txn("s", b"{}", 42).await.unwrap_err();
    assert_eq!(err.kind(), "txn_rejected");
    let body: serde_json::Value = serde_json::from_slice(&h.seen()[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!([{"KV": {"Verb": "cas", "Key": "s", "Value": "e30=", "Flags": 0, "Index": 40}}])
    );
}

#[tokio::test]
async fn sessions_should_use_put_and_treat_a_404_renew_as_gone() {
    let h = Harness::start(Some("t")).await;
    h.reply(200, &[], r#"{"ID":"adf4238a-882b-9ddc-4a9d-5b6758e4159e"}"#);
    h.reply(200, &[], r#"[{"ID":"adf4238a-882b-9ddc-4a9d-5b6758e4159e","TTL":"30s","LockDelay":15000000000}]"#);
    h.reply(404, &[], "Session id 'adf4238a-882b-9ddc-4a9d-5b6758e4159e' not found");
    h.reply(200, &[], "true");
    let request = SessionRequest {
        name: "drover-leader".into(),
        ttl: Duration::from_secs(15),
        behavior: Behavior::Release,
        lock_delay: Duration::from_secs(15),
        node_checks: Some(Vec::new()),
    };
    let id = h.client.create_session(&request).await.unwrap();
    assert_eq!(h.client.renew_session(&id).await.unwrap(), Renewed::Alive { ttl: Some(Duration::from_secs(30)) });
    assert_eq!(h.client.renew_session(&id).await.unwrap(), Renewed::Gone);
    h.client.destroy_session(&id).await.unwrap();
    let seen = h.seen();
    assert_eq!((seen[0].method.as_str(), seen[0].uri.as_str()), ("PUT", "/v1/session/create"));
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"Name": "drover-leader", "TTL": "15s", "Behavior": "release", "LockDelay": "15s", "NodeChecks": []})
    );
    assert_eq!(seen[1].uri, format!("/v1/session/renew/{id}"));
    assert_eq!(seen[3].uri, format!("/v1/session/destroy/{id}"));
    assert!(seen.iter().all(|s| s.method == "PUT"));
}

// ---- prefix watcher state machine (paused time, scripted source) ----

/// A source that answers from a script and records the queries it got.
#[derive(Debug, Default)]
struct ScriptedSource {
    /// Each answer, with how long the (blocking) request is held before it comes back.
    answers: Mutex<VecDeque<(Duration, Result<Listing, Error>)>>,
    queries: Mutex<Vec<BlockingQuery>>,
}

impl ScriptedSource {
    fn push_ok(&self, index: u64, entries: Vec<KvPair>) {
        self.push_sized(index, entries, 10);
    }

    fn push_sized(&self, index: u64, entries: Vec<KvPair>, bytes: usize) {
        self.push_held(Duration::ZERO, index, entries, bytes);
    }

    fn push_held(&self, hold: Duration, index: u64, entries: Vec<KvPair>, bytes: usize) {
        let listing = Listing { entries, index, bytes, filtered_by_acls: false };
        self.answers.lock().unwrap().push_back((hold, Ok(listing)));
    }

    fn push_filtered(&self, index: u64, entries: Vec<KvPair>) {
        let listing = Listing { entries, index, bytes: 2, filtered_by_acls: true };
        self.answers.lock().unwrap().push_back((Duration::ZERO, Ok(listing)));
    }

    fn push_err(&self) {
        self.answers.lock().unwrap().push_back((
            Duration::ZERO,
            Err(Error::ListFailed {
                prefix: "drover/apps/".into(),
                source: RequestError::Status { code: 500, message: "No cluster leader".into() },
            }),
        ));
    }

    fn queries(&self) -> Vec<BlockingQuery> {
        self.queries.lock().unwrap().clone()
    }
}

impl PrefixSource for ScriptedSource {
    async fn list(&self, _prefix: &str, query: BlockingQuery) -> Result<Listing, Error> {
        self.queries.lock().unwrap().push(query);
        let (hold, answer) =
            self.answers.lock().unwrap().pop_front().expect("the watcher made more requests than the test scripted");
        tokio::time::sleep(hold).await;
        answer
    }
}

fn pair(key: &str, modify_index: u64) -> KvPair {
    KvPair {
        key: key.into(),
        value: b"v".to_vec(),
        flags: 0,
        session: None,
        lock_index: 0,
        create_index: 1,
        modify_index,
    }
}

fn watcher(source: &Arc<ScriptedSource>) -> (Watcher<Arc<ScriptedSource>>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let mut config = WatchConfig::new("drover/apps/");
    config.wait = Duration::from_secs(60);
    config.budget = "1MiB/s".parse().unwrap();
    config.burst = Duration::from_secs(1);
    (Watcher::new(source.clone(), config, metrics.clone()), metrics)
}

fn snapshot(event: Option<Result<WatchEvent, Error>>) -> (Vec<KvPair>, u64, bool) {
    match event {
        Some(Ok(WatchEvent::Snapshot { entries, index, relisted, .. })) => ((*entries).clone(), index, relisted),
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn watcher_should_list_then_block_and_stay_silent_on_same_index() {
    let source = Arc::new(ScriptedSource::default());
    let (mut w, _) = watcher(&source);
    source.push_ok(10, vec![pair("drover/apps/a", 10)]);
    source.push_ok(10, vec![pair("drover/apps/a", 10)]);
    let (event, state) = w.step(State::initial()).await;
    let (entries, index, relisted) = snapshot(event);
    assert_eq!((entries.len(), index, relisted), (1, 10, true));
    let (event, state) = w.step(state).await;
    assert!(event.is_none(), "a timeout with the same index is no change");
    assert!(matches!(state, State::Watching { index: 10, .. }));
    let queries = source.queries();
    assert_eq!(queries[0], BlockingQuery::now());
    assert_eq!(queries[1], BlockingQuery::after(10, Duration::from_secs(60)));
}

#[tokio::test(start_paused = true)]
async fn watcher_should_report_changed_content_and_skip_an_unchanged_wake() {
    let source = Arc::new(ScriptedSource::default());
    let (mut w, _) = watcher(&source);
    source.push_ok(10, vec![pair("drover/apps/a", 10)]);
    source.push_ok(12, vec![pair("drover/apps/a", 10)]);
    source.push_ok(15, vec![pair("drover/apps/a", 10), pair("drover/apps/b", 15)]);
    let (_, state) = w.step(State::initial()).await;
    let (event, state) = w.step(state).await;
    assert!(event.is_none(), "a new index with the same content is no change");
    assert!(matches!(state, State::Watching { index: 12, .. }));
    let (event, state) = w.step(state).await;
    let (entries, index, relisted) = snapshot(event);
    assert_eq!((entries.len(), index, relisted), (2, 15, false));
    assert!(matches!(state, State::Watching { index: 15, .. }));
    assert_eq!(source.queries()[2].index, 12);
}

#[tokio::test(start_paused = true)]
async fn watcher_should_count_every_filtered_answer_even_when_what_it_sees_is_unchanged() {
    // A key the token may not read, written under an empty prefix: the listing stays empty for Drover, but each
    // answer Consul filtered is a denied call (the controls watch of a token without the control/ read).
    let source = Arc::new(ScriptedSource::default());
    let (mut w, metrics) = watcher(&source);
    source.push_ok(10, vec![]);
    source.push_filtered(11, vec![]);
    source.push_filtered(12, vec![]);
    let (_, state) = w.step(State::initial()).await;
    let (event, state) = w.step(state).await;
    assert!(event.is_none(), "nothing Drover can see changed");
    let (event, _) = w.step(state).await;
    assert!(event.is_none());
    let denied = "drover_permission_denied_total{server=\"consul\",call=\"kv_list_filtered\"} 2";
    assert!(metrics.encode().contains(denied), "{}", metrics.encode());
}

#[tokio::test(start_paused = true)]
async fn watcher_should_relist_when_the_index_goes_backwards() {
    let source = Arc::new(ScriptedSource::default());
    let (mut w, metrics) = watcher(&source);
    source.push_ok(50, vec![pair("drover/apps/a", 50)]);
    source.push_ok(30, vec![]);
    source.push_ok(31, vec![]);
    let (_, state) = w.step(State::initial()).await;
    let (event, state) = w.step(state).await;
    assert!(event.is_none());
    assert!(matches!(state, State::Listing { .. }), "{state:?}");
    let (event, state) = w.step(state).await;
    let (entries, index, relisted) = snapshot(event);
    assert_eq!((entries.len(), index, relisted), (0, 31, true));
    assert!(matches!(state, State::Watching { index: 31, .. }));
    assert_eq!(source.queries()[2], BlockingQuery::now(), "the index is reset to 0");
    assert!(metrics.encode().contains("drover_watch_restarts_total{source=\"consul\"} 1"));
}

#[tokio::test(start_paused = true)]
async fn watcher_should_back_off_after_an_error_then_relist() {
    let source = Arc::new(ScriptedSource::default());
    let (mut w, metrics) = watcher(&source);
    source.push_ok(10, vec![pair("drover/apps/a", 10)]);
    source.push_err();
    source.push_ok(11, vec![pair("drover/apps/a", 11)]);
    let (_, state) = w.step(State::initial()).await;
    let (event, state) = w.step(state).await;
    assert!(matches!(event, Some(Err(Error::ListFailed { .. }))));
    let State::Backoff { until, failures: 1 } = state else {
        panic!("expected backoff, got {state:?}");
    };
    let started = Instant::now();
    assert!(until > started);
    let (event, state) = w.step(state).await;
    assert!(event.is_none());
    assert!(Instant::now() >= until, "the backoff was not waited out");
    let (event, _) = w.step(state).await;
    let (_, index, relisted) = snapshot(event);
    assert_eq!((index, relisted), (11, true));
    assert_eq!(source.queries()[2], BlockingQuery::now());
    assert!(metrics.encode().contains("drover_watch_restarts_total{source=\"consul\"} 1"));
}

#[tokio::test(start_paused = true)]
async fn watcher_should_spend_a_byte_budget_so_small_answers_go_at_once_and_large_ones_wait() {
    const KIB: usize = 1024;
    let source = Arc::new(ScriptedSource::default());
    let (mut w, metrics) = watcher(&source);
    // 1 MiB/s with one second saved: three 512 KiB answers go out at once (the third overdraws, pay-after).
    for i in 0..5 {
        source.push_sized(10 + i, vec![pair("drover/apps/a", 10 + i)], 512 * KIB);
    }
    let start = Instant::now();
    let (_, mut state) = w.step(State::initial()).await;
    for _ in 0..2 {
        state = w.step(state).await.1;
    }
    assert_eq!(Instant::now(), start, "answers within the saved budget are not delayed");
    state = w.step(state).await.1;
    let waited = Instant::now() - start;
    assert!(
        (Duration::from_millis(500)..Duration::from_millis(501)).contains(&waited),
        "the fourth request waits for the 512 KiB overdraft to be earned back at 1 MiB/s, waited {waited:?}"
    );
    let _ = w.step(state).await;
    let waited = Instant::now() - start;
    assert!(
        (Duration::from_millis(1000)..Duration::from_millis(1001)).contains(&waited),
        "then one 512 KiB answer every half second, waited {waited:?}"
    );
    assert!(metrics.encode().contains(&format!("drover_consul_read_bytes_total {}", 5 * 512 * KIB)));
}

#[tokio::test(start_paused = true)]
async fn watcher_should_cap_savings_from_a_long_hold_so_a_large_prefix_stays_batched() {
    // 1 MiB/s with one second of savings. A 3 MiB first list leaves a 2 MiB debt: the blocking query goes out 2 s
    // later. The server holds it 60 s (nothing changed), then answers 3 MiB: the hold earned only the 1 MiB cap, so
    // the next request again waits 2 s. A small answer after it costs the floor and the one after that goes at once.
    const MIB: usize = 1 << 20;
    let source = Arc::new(ScriptedSource::default());
    let (mut w, _) = watcher(&source);
    source.push_sized(10, vec![pair("drover/apps/a", 10)], 3 * MIB);
    source.push_held(Duration::from_secs(60), 11, vec![pair("drover/apps/a", 11)], 3 * MIB);
    source.push_held(Duration::from_secs(60), 12, vec![pair("drover/apps/a", 12)], 10);
    source.push_sized(13, vec![pair("drover/apps/a", 13)], 10);
    let start = Instant::now();
    let (_, state) = w.step(State::initial()).await;
    let (event, state) = w.step(state).await;
    assert!(event.is_some(), "the blocking query reported the change");
    assert_eq!(Instant::now() - start, Duration::from_secs(62), "2 s of debt, then the 60 s hold");
    let (_, state) = w.step(state).await;
    assert_eq!(Instant::now() - start, Duration::from_secs(124), "2 s of debt again: savings are capped at 1 s");
    let at = Instant::now();
    let (event, _) = w.step(state).await;
    assert_eq!(Instant::now(), at, "a small answer after a hold leaves the budget in credit: no wait");
    assert!(event.is_some());
}

// ---- against the simulator over real HTTP ----

async fn sim_client() -> (drover_sim::testing::TestSim, Client) {
    let sim = drover_sim::testing::spawn(drover_sim::SimConfig::fast()).await;
    let http = build_http_client(TlsFiles::default()).unwrap();
    let client = Client::with_http(http, &sim.consul_url, None, Arc::new(Metrics::new()));
    (sim, client)
}

#[tokio::test]
async fn sim_kv_should_round_trip_with_cas_guards() {
    let (_sim, client) = sim_client().await;
    let key = "drover/apps/default/web";
    assert_eq!(client.get(key).await.unwrap(), None);
    assert!(client.cas(key, b"v1", 0).await.unwrap(), "cas 0 creates an absent key");
    assert!(!client.cas(key, b"again", 0).await.unwrap(), "cas 0 on an existing key is false");
    let entry = client.get(key).await.unwrap().unwrap();
    assert_eq!(entry.value, b"v1");
    assert!(!client.cas(key, b"v2", entry.modify_index + 100).await.unwrap());
    assert!(client.cas(key, b"v2", entry.modify_index).await.unwrap());
    let listing = client.list("drover/apps/", BlockingQuery::now()).await.unwrap();
    assert_eq!(listing.entries.len(), 1);
    assert_eq!(listing.entries[0].value, b"v2");
    assert!(listing.index >= listing.entries[0].modify_index);
    let new_index = client.cas_via_txn("drover/status/default/web", b"{}", 0).await.unwrap().unwrap();
    let status = client.get("drover/status/default/web").await.unwrap().unwrap();
    assert_eq!(status.modify_index, new_index, "the txn reports the written entry's ModifyIndex");
    assert_eq!(client.cas_via_txn("drover/status/default/web", b"{}", 0).await.unwrap(), None);
    assert!(client.delete_cas(key, listing.entries[0].modify_index).await.unwrap());
    let empty = client.list("drover/apps/", BlockingQuery::now()).await.unwrap();
    assert!(empty.entries.is_empty() && empty.index > 0, "an empty prefix still has an index: {empty:?}");
    assert_eq!(client.keys("drover/").await.unwrap(), vec!["drover/status/default/web"]);
}

#[tokio::test]
async fn sim_prefix_watch_should_wake_on_a_write() {
    use futures::StreamExt as _;
    let (_sim, client) = sim_client().await;
    client.put("drover/apps/default/a", b"a").await.unwrap();
    let mut config = WatchConfig::new("drover/apps/");
    config.wait = Duration::from_secs(30);
    let mut events = Box::pin(drover::consul::watch::watch(client.clone(), config, Arc::new(Metrics::new())));
    let deadline = Duration::from_secs(10);
    let first = tokio::time::timeout(deadline, events.next()).await.expect("no initial snapshot within 10 s").unwrap();
    let WatchEvent::Snapshot { entries, relisted, .. } = first;
    assert!(relisted);
    assert_eq!(entries.len(), 1);
    client.put("drover/apps/default/b", b"b").await.unwrap();
    let second =
        tokio::time::timeout(deadline, events.next()).await.expect("the watch did not wake within 10 s").unwrap();
    let WatchEvent::Snapshot { entries, relisted, index, .. } = second;
    assert!(!relisted);
    assert_eq!(
        entries.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
        ["drover/apps/default/a", "drover/apps/default/b"]
    );
    assert_eq!(index, entries[1].modify_index);
}

#[tokio::test]
async fn sim_session_should_hold_a_lock_until_released() {
    let (_sim, client) = sim_client().await;
    let request = SessionRequest {
        name: "drover-leader".into(),
        ttl: Duration::from_secs(15),
        behavior: Behavior::Release,
        lock_delay: Duration::from_secs(15),
        node_checks: Some(Vec::new()),
    };
    let id = client.create_session(&request).await.unwrap();
    let other = client.create_session(&request).await.unwrap();
    let acquire = |session: &str| PutParams { acquire: Some(session.to_owned()), ..PutParams::default() };
    assert!(client.put_with("drover/leader", b"me", &acquire(&id)).await.unwrap());
    assert!(!client.put_with("drover/leader", b"them", &acquire(&other)).await.unwrap(), "held by another session");
    let held = client.get("drover/leader").await.unwrap().unwrap();
    assert_eq!(held.session.as_deref(), Some(id.as_str()));
    assert!(matches!(client.renew_session(&id).await.unwrap(), Renewed::Alive { ttl: Some(_) }));
    let release = PutParams { release: Some(id.clone()), ..PutParams::default() };
    assert!(client.put_with("drover/leader", b"me", &release).await.unwrap());
    client.destroy_session(&id).await.unwrap();
    assert_eq!(client.renew_session(&id).await.unwrap(), Renewed::Gone);
    assert!(
        client.put_with("drover/leader", b"them", &acquire(&other)).await.unwrap(),
        "a released key has no lock-delay"
    );
}
