use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::rollout::ControlAction;

fn pair(key: &str, value: &str, modify_index: u64) -> KvPair {
    KvPair {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        flags: 0,
        session: None,
        lock_index: 0,
        create_index: 1,
        modify_index,
    }
}

fn promote(generation: u64) -> String {
    format!(r#"{{"action":"promote","generation":{generation},"requestedAt":"2026-12-07T06:00:00Z","by":"alice"}}"#)
}

fn web() -> AppKey {
    AppKey::new("default", "web")
}

#[test]
fn key_from_control_kv_key_should_accept_only_control_keys() {
    assert_eq!(key_from_control_kv_key("drover", "drover/control/default/web"), Some(web()));
    assert_eq!(key_from_control_kv_key("drover/", "drover/control/prod/api"), Some(AppKey::new("prod", "api")));
    assert_eq!(key_from_control_kv_key("", "control/default/web"), Some(web()));
    for bad in [
        "drover/control/default",
        "drover/control/default/",
        "drover/control//web",
        "drover/control/a/b/c",
        "drover/apps/default/web",
        "other/control/default/web",
        "drover/controls/default/web",
    ] {
        assert_eq!(key_from_control_kv_key("drover", bad), None, "{bad}");
    }
}

#[test]
fn apply_snapshot_should_parse_controls_and_wake_only_changed_apps() {
    let (mut writer, controls) = controls("drover");
    let first =
        [pair("drover/control/default/web", &promote(40), 50), pair("drover/control/default/db", &promote(7), 51)];
    let woken = writer.apply_snapshot(&first);
    assert_eq!(woken, BTreeSet::from([web(), AppKey::new("default", "db")]));
    let entry = controls.get(&web()).expect("the control is stored");
    let stored = entry.as_ref().as_ref().expect("a readable control");
    assert_eq!(stored.modify_index, 50);
    assert_eq!(stored.control.action, ControlAction::Promote);
    assert_eq!((stored.control.generation, stored.control.by.as_str()), (40, "alice"));

    assert!(writer.apply_snapshot(&first).is_empty(), "an unchanged listing wakes nobody");

    let rewritten = [pair("drover/control/default/web", &promote(40), 60), first[1].clone()];
    assert_eq!(
        writer.apply_snapshot(&rewritten),
        BTreeSet::from([web()]),
        "the same JSON written again is a new command"
    );
    assert_eq!(controls.get(&web()).and_then(|e| e.as_ref().as_ref().ok().map(|c| c.modify_index)), Some(60));

    assert_eq!(writer.apply_snapshot(&rewritten[..1]), BTreeSet::from([AppKey::new("default", "db")]), "deleted");
    assert!(controls.get(&AppKey::new("default", "db")).is_none());
    assert_eq!(controls.len(), 1);
}

#[test]
fn apply_snapshot_should_keep_an_unreadable_control_saying_why() {
    let (mut writer, controls) = controls("drover");
    let entries = [
        pair("drover/control/default/web", "promote please", 70),
        pair("drover/control/default/api", r#"{"action":"launch","generation":1,"requestedAt":"x"}"#, 71),
        pair("drover/control/default/db", r#"{"action":"abort"}"#, 72),
        pair("drover/control/not-an-app", &promote(1), 73),
    ];
    let woken = writer.apply_snapshot(&entries);
    assert_eq!(woken.len(), 3, "every app with a control is woken, readable or not: {woken:?}");
    for (app, index, needle) in [("web", 70, "expected"), ("api", 71, "launch"), ("db", 72, "generation")] {
        let entry = controls.get(&AppKey::new("default", app)).expect("kept");
        let bad = entry.as_ref().as_ref().expect_err("not a control");
        assert!(bad.contains(needle) && bad.contains(&format!("ModifyIndex {index}")), "{app}: {bad}");
    }
    assert!(writer.apply_snapshot(&entries).is_empty(), "an unchanged bad control is not parsed again nor woken");
    let fixed = [pair("drover/control/default/web", &promote(3), 80)];
    writer.apply_snapshot(&fixed);
    assert!(controls.get(&web()).is_some_and(|e| e.is_ok()), "a good control replaces the bad one");
}

#[tokio::test]
async fn watch_controls_should_follow_the_prefix_on_the_simulator_and_survive_bad_json() {
    let sim = drover_sim::testing::spawn(drover_sim::SimConfig::fast()).await;
    let http = crate::tls::build_http_client(crate::tls::TlsFiles::default()).expect("an HTTP client");
    let metrics = Arc::new(Metrics::new());
    let client = crate::consul::Client::with_http(http, &sim.consul_url, None, metrics.clone());
    client.put("drover/control/default/web", promote(5).as_bytes()).await.expect("write a control");
    client.put("drover/apps/default/web", b"not a control key").await.expect("write a record");

    let (writer, controls) = controls("drover");
    let woken: Arc<Mutex<Vec<AppKey>>> = Arc::default();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<AppKey>();
    let log = woken.clone();
    let wake = move |key: AppKey| {
        log.lock().unwrap_or_else(|p| p.into_inner()).push(key.clone());
        let _ = tx.send(key);
    };
    let shutdown = CancellationToken::new();
    let mut config = WatchConfig::new("drover/control/");
    config.wait = Duration::from_secs(30);
    async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<AppKey>, what: &str) -> Option<AppKey> {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("the controls watch did not wake the app within 10 s: {what}"))
    }
    let task = tokio::spawn(watch_controls(writer, client.clone(), config, metrics, wake, shutdown.clone()));

    assert_eq!(next(&mut rx, "initial list").await, Some(web()));
    assert!(controls.get(&web()).is_some_and(|e| e.as_ref().as_ref().is_ok_and(|c| c.control.generation == 5)));

    client.put("drover/control/default/web", b"{ broken").await.expect("write a bad control");
    assert_eq!(next(&mut rx, "bad JSON").await, Some(web()));
    assert!(controls.get(&web()).is_some_and(|e| e.is_err()), "kept as unreadable");

    client.put("drover/control/prod/api", promote(9).as_bytes()).await.expect("write another control");
    assert_eq!(next(&mut rx, "after bad JSON").await, Some(AppKey::new("prod", "api")), "the watch survived");
    assert_eq!(controls.len(), 2);

    client.delete("drover/control/default/web").await.expect("delete a control");
    assert_eq!(next(&mut rx, "delete").await, Some(web()));
    assert!(controls.get(&web()).is_none());

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the controls watch did not stop within 10 s of shutdown")
        .expect("the controls watch task panicked");
    let woken = woken.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(woken.len(), 4, "one wake per change, none for the record write: {woken:?}");
}
