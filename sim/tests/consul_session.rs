//! Contract tests for api-contract.md A6 (sessions), A7 (invalidation, TTL doubling, lock-delay) and A8 (locks as
//! `api/lock.go` uses them). Time-driven rules run on the sim clock at a small time scale.

mod consul_support;

use std::time::Duration;

use consul_support::{Sim, eventually, spawn_scaled};
use drover_sim::Server;

const LOCK_FLAG: &str = "3304740253564472344";

/// Waits (through a blocking query on the session) until the session is gone.
async fn until_session_gone(s: &Sim, id: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = s.get(&format!("/v1/session/info/{id}")).await;
        if r.body == "[]" {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "session {id} was never invalidated");
        s.get(&format!("/v1/session/info/{id}?index={}&wait=5m", r.index())).await;
    }
}

#[tokio::test]
async fn a6_create_should_apply_server_defaults() {
    let s = spawn_scaled(0.001).await;
    let id = s.session("").await;
    let r = s.get(&format!("/v1/session/info/{id}")).await;
    assert_eq!(r.status, 200);
    let v = &r.json()[0];
    assert_eq!(v["ID"], id.as_str());
    assert_eq!(v["Node"], "drover-sim");
    assert_eq!(v["LockDelay"], 15_000_000_000u64);
    assert_eq!(v["Behavior"], "release");
    assert_eq!(v["TTL"], "");
    assert_eq!(v["NodeChecks"], serde_json::json!(["serfHealth"]));
    assert_eq!(v["ServiceChecks"], serde_json::Value::Null);
    assert_eq!(v["CreateIndex"], v["ModifyIndex"]);
    assert_eq!(r.index(), v["CreateIndex"].as_u64().unwrap_or(0));
    let keys: Vec<&str> = v.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
    assert_eq!(
        keys,
        [
            "ID",
            "Name",
            "Node",
            "LockDelay",
            "Behavior",
            "TTL",
            "NodeChecks",
            "ServiceChecks",
            "CreateIndex",
            "ModifyIndex"
        ]
    );
    let id = s.session(r#"{"NodeChecks":[],"LockDelay":15,"ttl":"0s"}"#).await;
    let v = &s.get(&format!("/v1/session/info/{id}")).await.json()[0];
    assert_eq!(v["NodeChecks"], serde_json::json!([]));
    assert_eq!(v["LockDelay"], 15_000_000_000u64, "a LockDelay below 1000 is seconds");
}

#[tokio::test]
async fn a6_info_of_an_unknown_session_should_be_an_empty_array() {
    let s = spawn_scaled(0.001).await;
    let r = s.get("/v1/session/info/00000000-0000-0000-0000-00000000abcd").await;
    assert_eq!((r.status, r.body.as_str()), (200, "[]"));
    assert!(r.index() >= 1);
}

#[tokio::test]
async fn a6_create_validation_should_use_consul_texts() {
    let s = spawn_scaled(0.001).await;
    let cases = [
        (r#"{"TTL":"abc"}"#, 500, "Session TTL 'abc' invalid: time: invalid duration \"abc\""),
        (r#"{"TTL":"5s"}"#, 500, "Invalid Session TTL '5000000000', must be between [10s=24h0m0s]"),
        (r#"{"TTL":"25h"}"#, 500, "Invalid Session TTL '90000000000000', must be between [10s=24h0m0s]"),
        (r#"{"Behavior":"keep"}"#, 500, "Invalid Behavior setting 'keep'"),
        (r#"{"Node":"elsewhere"}"#, 500, "apply failed: Missing node registration"),
        (r#"{"NodeChecks":["web"]}"#, 500, "apply failed: Missing check 'web' registration"),
        (r#"{"ServiceChecks":[{"ID":"svc"}]}"#, 500, "apply failed: Missing check 'svc' registration"),
        (r#"{"Node":""}"#, 500, "Must provide Node"),
        ("x", 400, "Request decode failed: invalid character 'x' looking for beginning of value"),
        (r#"{"LockDelay":"15"}"#, 400, "Request decode failed: time: missing unit in duration \"15\""),
    ];
    for (body, status, text) in cases {
        let r = s.put("/v1/session/create", body).await;
        assert_eq!((r.status, r.body.as_str()), (status, text), "body {body}");
    }
}

#[tokio::test]
async fn a6_renew_should_return_the_session_array() {
    let s = spawn_scaled(0.001).await;
    let id = s.session(r#"{"TTL":"15s","LockDelay":"2s"}"#).await;
    let r = s.put(&format!("/v1/session/renew/{id}"), "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-consul-index"), "", "renew sets no index");
    let v = &r.json()[0];
    assert_eq!((v["ID"].as_str(), v["TTL"].as_str()), (Some(id.as_str()), Some("15s")));
    assert_eq!(v["LockDelay"], 2_000_000_000u64, "LockDelay in nanoseconds");
    let r = s.put("/v1/session/renew/00000000-0000-0000-0000-00000000abcd", "").await;
    assert_eq!((r.status, r.body.as_str()), (404, "Session id '00000000-0000-0000-0000-00000000abcd' not found"));
    let r = s.put("/v1/session/renew/", "").await;
    assert_eq!((r.status, r.body.as_str()), (400, "Missing session"));
}

#[tokio::test]
async fn a6_destroy_should_be_idempotent() {
    let s = spawn_scaled(0.001).await;
    let id = s.session("{}").await;
    for _ in 0..2 {
        let r = s.put(&format!("/v1/session/destroy/{id}"), "").await;
        assert_eq!((r.status, r.body.as_str()), (200, "true"));
    }
    assert_eq!(s.get(&format!("/v1/session/info/{id}")).await.body, "[]");
}

#[tokio::test]
async fn a6_list_and_node_should_return_arrays() {
    let s = spawn_scaled(0.001).await;
    assert_eq!(s.get("/v1/session/list").await.body, "[]");
    let a = s.session(r#"{"Name":"a"}"#).await;
    let b = s.session(r#"{"Name":"b"}"#).await;
    let list = s.get("/v1/session/list").await.json();
    let mut ids: Vec<&str> = list.as_array().into_iter().flatten().filter_map(|v| v["ID"].as_str()).collect();
    ids.sort_unstable();
    let mut want = vec![a.as_str(), b.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want);
    assert_eq!(s.get("/v1/session/node/drover-sim").await.json().as_array().map(Vec::len), Some(2));
    assert_eq!(s.get("/v1/session/node/other").await.body, "[]");
}

#[tokio::test]
async fn a7_ttl_session_should_be_invalidated_after_twice_the_ttl() {
    let s = spawn_scaled(0.01).await;
    let before = s.sim_now();
    let id = s.session(r#"{"TTL":"10s","NodeChecks":[]}"#).await;
    until_session_gone(&s, &id).await;
    assert!(s.sim_now() - before >= Duration::from_secs(20), "not before TTL x 2");
    let r = s.put(&format!("/v1/session/renew/{id}"), "").await;
    assert_eq!(r.status, 404, "a lost session is final");
}

#[tokio::test]
async fn a7_renew_should_push_the_deadline_back() {
    let s = spawn_scaled(0.01).await;
    let id = s.session(r#"{"TTL":"10s"}"#).await;
    // Renew at TTL/2 a few times (the waits run on the sim clock).
    let idx = s.get("/v1/kv/tick").await.index();
    for _ in 0..4 {
        s.get(&format!("/v1/kv/tick?index={idx}&wait=5s")).await;
        assert_eq!(s.put(&format!("/v1/session/renew/{id}"), "").await.status, 200, "renewed in time");
    }
    let renewed_at = s.sim_now();
    until_session_gone(&s, &id).await;
    assert!(s.sim_now() - renewed_at >= Duration::from_secs(19), "the last renew re-armed TTL x 2");
}

#[tokio::test]
async fn a7_release_behavior_should_clear_the_holder_and_bump_modify_index() {
    let s = spawn_scaled(0.001).await;
    let id = s.session(r#"{"LockDelay":"1ms"}"#).await;
    s.put_ok(&format!("/v1/kv/lock?acquire={id}&flags={LOCK_FLAG}"), "me").await;
    let before = s.modify_index("lock").await;
    s.put_ok(&format!("/v1/session/destroy/{id}"), "").await;
    let e = &s.get("/v1/kv/lock").await.json()[0];
    assert!(e.get("Session").is_none(), "session cleared");
    assert_eq!(e["LockIndex"], 1, "LockIndex unchanged");
    assert!(e["ModifyIndex"].as_u64().unwrap_or(0) > before, "ModifyIndex increases");
    assert_eq!(e["Flags"].as_u64().map(|f| f.to_string()), Some(LOCK_FLAG.to_owned()));
}

#[tokio::test]
async fn a7_delete_behavior_should_delete_held_keys() {
    let s = spawn_scaled(0.001).await;
    let id = s.session(r#"{"Behavior":"delete"}"#).await;
    s.put_ok(&format!("/v1/kv/eph?acquire={id}"), "x").await;
    s.put_ok(&format!("/v1/session/destroy/{id}"), "").await;
    assert_eq!(s.get("/v1/kv/eph").await.status, 404);
    assert_eq!(s.consul.stats().tombstones, 1, "the delete left a tombstone");
}

#[tokio::test]
async fn a7_lock_delay_should_refuse_acquire_until_it_expires() {
    let s = spawn_scaled(0.001).await;
    let s1 = s.session(r#"{"LockDelay":"15s"}"#).await;
    let s2 = s.session("{}").await;
    s.put_ok(&format!("/v1/kv/l?acquire={s1}"), "a").await;
    s.put_ok(&format!("/v1/session/destroy/{s1}"), "").await;
    let destroyed = s.sim_now();
    let r = s.put(&format!("/v1/kv/l?acquire={s2}"), "b").await;
    assert_eq!((r.status, r.body.as_str()), (200, "false"), "lock-delay answers false, not an error");
    s.put_ok("/v1/kv/l", "plain writes pass").await;
    let url = format!("/v1/kv/l?acquire={s2}");
    eventually(Duration::from_secs(10), "the lock-delay to expire", || async { s.put(&url, "b").await.body == "true" })
        .await;
    assert!(s.sim_now() - destroyed >= Duration::from_secs(15));
}

#[tokio::test]
async fn a7_lock_delay_should_be_capped_at_60s() {
    let s = spawn_scaled(0.001).await;
    let s1 = s.session(r#"{"LockDelay":"10m"}"#).await;
    let s2 = s.session("{}").await;
    s.put_ok(&format!("/v1/kv/l?acquire={s1}"), "a").await;
    s.put_ok(&format!("/v1/session/destroy/{s1}"), "").await;
    let destroyed = s.sim_now();
    let url = format!("/v1/kv/l?acquire={s2}");
    eventually(Duration::from_secs(10), "the capped lock-delay to expire", || async {
        s.put(&url, "b").await.body == "true"
    })
    .await;
    let waited = s.sim_now() - destroyed;
    assert!(waited >= Duration::from_secs(60) && waited < Duration::from_secs(500), "capped to 60s: {waited:?}");
}

#[tokio::test]
async fn a7_explicit_release_should_not_start_lock_delay() {
    let s = spawn_scaled(0.001).await;
    let s1 = s.session(r#"{"LockDelay":"60s"}"#).await;
    let s2 = s.session("{}").await;
    s.put_ok(&format!("/v1/kv/l?acquire={s1}"), "a").await;
    s.put_ok(&format!("/v1/kv/l?release={s1}"), "a").await;
    s.put_ok(&format!("/v1/session/destroy/{s1}"), "").await;
    s.put_ok(&format!("/v1/kv/l?acquire={s2}"), "b").await;
}

#[tokio::test]
async fn a7_leader_change_should_rearm_ttl_timers_from_now() {
    let s = spawn_scaled(0.01).await;
    let id = s.session(r#"{"TTL":"10s"}"#).await;
    s.shared.set_leader(Server::Consul, false);
    assert_eq!(s.get("/v1/kv/x").await.body, "No cluster leader");
    // 40s of modelled time pass without a leader (longer than TTL x 2): no timer may fire.
    s.shared.clock.sleep(Duration::from_secs(40)).await;
    s.shared.set_leader(Server::Consul, true);
    let back = s.sim_now();
    assert_ne!(s.get(&format!("/v1/session/info/{id}")).await.body, "[]", "no leader, no invalidation");
    until_session_gone(&s, &id).await;
    assert!(s.sim_now() - back >= Duration::from_secs(20), "re-armed with TTL x 2 from the new leader's start");
}

#[tokio::test]
async fn a8_acquire_and_release_should_follow_lock_go() {
    let s = spawn_scaled(0.001).await;
    let s1 = s.session("{}").await;
    let s2 = s.session("{}").await;
    let lock = |sess: &str, op: &str| format!("/v1/kv/svc/leader?{op}={sess}&flags={LOCK_FLAG}");
    s.put_ok(&lock(&s1, "acquire"), "a").await;
    let e = s.get("/v1/kv/svc/leader?consistent").await.json()[0].clone();
    assert_eq!((e["LockIndex"].as_u64(), e["Session"].as_str()), (Some(1), Some(s1.as_str())));
    assert_eq!(e["Flags"].as_u64().map(|f| f.to_string()), Some(LOCK_FLAG.to_owned()), "LockFlagValue is just flags");
    let idx = e["ModifyIndex"].as_u64().unwrap_or(0);
    s.put_ok(&lock(&s1, "acquire"), "a").await;
    let e = s.get("/v1/kv/svc/leader").await.json()[0].clone();
    assert_eq!(e["LockIndex"], 1, "re-acquire by the holder keeps LockIndex");
    assert_eq!(e["ModifyIndex"].as_u64(), Some(idx), "an identical re-acquire is a no-op");
    assert_eq!(s.put(&lock(&s2, "acquire"), "b").await.body, "false", "held by another session");
    assert_eq!(s.put(&lock(&s2, "release"), "b").await.body, "false", "not the holder");
    s.put_ok(&lock(&s1, "release"), "a").await;
    let e = s.get("/v1/kv/svc/leader").await.json()[0].clone();
    assert!(e.get("Session").is_none());
    assert_eq!(e["LockIndex"], 1, "release keeps LockIndex");
    assert_eq!(s.put(&lock(&s1, "release"), "a").await.body, "false", "held by nobody");
    s.put_ok(&lock(&s2, "acquire"), "b").await;
    assert_eq!(s.get("/v1/kv/svc/leader").await.json()[0]["LockIndex"], 2);
    assert_eq!(s.put("/v1/kv/nokey?release=x", "").await.body, "false", "release on a missing key");
}

#[tokio::test]
async fn a8_bad_sessions_should_be_500() {
    let s = spawn_scaled(0.001).await;
    let r = s.put("/v1/kv/l?acquire=00000000-0000-0000-0000-00000000dead", "").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (500, "raft apply failed: invalid session \"00000000-0000-0000-0000-00000000dead\"")
    );
    let r = s.put("/v1/kv/l?acquire=", "").await;
    assert_eq!((r.status, r.body.as_str()), (500, "raft apply failed: missing session"));
    let r = s.put("/v1/kv/l?release=", "").await;
    assert_eq!((r.status, r.body.as_str()), (500, "raft apply failed: missing session"));
    let r = s.put("/v1/kv/l?release=00000000-0000-0000-0000-00000000dead", "").await;
    assert_eq!((r.status, r.body.as_str()), (200, "false"), "release does not check the session exists");
}

#[tokio::test]
async fn a6_info_of_a_missing_session_should_keep_blocking_while_the_index_moves() {
    let s = spawn_scaled(0.001).await;
    let idx = s.get("/v1/session/info/00000000-0000-0000-0000-00000000abcd").await.index();
    let before = s.sim_now();
    let url = format!("/v1/session/info/00000000-0000-0000-0000-00000000abcd?index={idx}&wait=10m");
    let c = s.consul.clone();
    let (r, other) = tokio::join!(s.get(&url), async {
        eventually(Duration::from_secs(10), "the info query to park", || {
            let c = c.clone();
            async move { c.blocking_queries() >= 1 }
        })
        .await;
        s.session("{}").await
    });
    assert_eq!(r.body, "[]", "Session.Get treats a missing session as ErrNotFound");
    assert!(s.sim_now() - before >= Duration::from_secs(600), "another session's create did not end the wait");
    let created = s.get(&format!("/v1/session/info/{other}")).await.index();
    assert_eq!(r.index(), created, "the answer carries the current sessions index");
}
