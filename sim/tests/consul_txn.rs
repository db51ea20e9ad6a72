//! Contract tests for api-contract.md A9 (`PUT /v1/txn`).

mod consul_support;

use consul_support::{Sim, spawn_scaled};
use serde_json::{Value, json};

async fn txn(s: &Sim, ops: Value) -> consul_support::Resp {
    s.put("/v1/txn", &ops.to_string()).await
}

#[tokio::test]
async fn a9_txn_should_apply_every_op_and_return_results() {
    let s = spawn_scaled(0.001).await;
    let r = txn(
        &s,
        json!([
            {"KV": {"Verb": "set", "Key": "a", "Value": "aGk=", "Flags": 3}},
            {"KV": {"Verb": "cas", "Key": "b", "Value": "Yg==", "Index": 0}},
            {"KV": {"Verb": "get", "Key": "a"}},
            {"KV": {"Verb": "delete", "Key": "zzz"}},
        ]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.header("x-consul-index"), "", "write txns set no index");
    let v = r.json();
    assert_eq!(v["Errors"], Value::Null);
    let results = v["Results"].as_array().cloned().unwrap_or_default();
    assert_eq!(results.len(), 3, "deletes produce no result");
    assert_eq!(results[0]["KV"]["Key"], "a");
    assert_eq!(results[0]["KV"]["Value"], Value::Null, "write results carry no value");
    assert_eq!(results[0]["KV"]["Flags"], 3);
    assert_eq!(results[2]["KV"]["Value"], "aGk=", "get carries the value");
    assert_eq!(s.get("/v1/kv/b?raw").await.body, "b", "Value is base64 in the request");
    let keys: Vec<&str> = v.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
    assert_eq!(keys, ["Results", "Errors"]);
}

#[tokio::test]
async fn a9_txn_rolls_back_and_reports_every_error() {
    let s = spawn_scaled(0.001).await;
    s.put_ok("/v1/kv/x", "1").await;
    let x = s.modify_index("x").await;
    let r = txn(
        &s,
        json!([
            {"KV": {"Verb": "set", "Key": "new", "Value": "MQ=="}},
            {"KV": {"Verb": "cas", "Key": "x", "Value": "Mg==", "Index": 0}},
            {"KV": {"Verb": "get", "Key": "missing"}},
            {"KV": {"Verb": "check-not-exists", "Key": "x"}},
            {"KV": {"Verb": "check-index", "Key": "x", "Index": x + 7}},
            {"KV": {"Verb": "unlock", "Key": "x", "Session": "s"}},
            {"KV": {"Verb": "delete-cas", "Key": "x", "Index": 1}},
            {"KV": {"Verb": "check-session", "Key": "x", "Session": "s"}},
        ]),
    )
    .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.header("content-type"), "application/json; charset=utf-8");
    let want = json!({"Results": null, "Errors": [
        {"OpIndex": 1, "What": "failed to set key \"x\", index is stale"},
        {"OpIndex": 2, "What": "key \"missing\" doesn't exist"},
        {"OpIndex": 3, "What": "key \"x\" exists"},
        {"OpIndex": 4, "What": format!("failed index check for key \"x\", current modify index {x} != {}", x + 7)},
        {"OpIndex": 5, "What": "failed to unlock key \"x\", lock isn't held, or is held by another session"},
        {"OpIndex": 6, "What": "failed to delete key \"x\", index is stale"},
        {"OpIndex": 7, "What": "failed session check for key \"x\", current session \"\" != \"s\""},
    ]});
    assert_eq!(r.json(), want);
    assert_eq!(s.get("/v1/kv/new").await.status, 404, "nothing applied");
    assert_eq!(s.modify_index("x").await, x);
}

#[tokio::test]
async fn a9_pre_check_failures_should_be_collected() {
    let s = spawn_scaled(0.001).await;
    let r = txn(
        &s,
        json!([
            {"KV": {"Verb": "set", "Key": ""}},
            {"KV": {"Verb": "frobnicate", "Key": "k"}},
            {"KV": {"Verb": "lock", "Key": "k", "Session": "00000000-0000-0000-0000-00000000dead"}},
        ]),
    )
    .await;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json()["Errors"],
        json!([
            {"OpIndex": 0, "What": "Must provide key"},
            {"OpIndex": 1, "What": "unknown KV operation: frobnicate"},
        ]),
        "pre-check errors stop the txn before Raft"
    );
    let r =
        txn(&s, json!([{"KV": {"Verb": "lock", "Key": "k", "Session": "00000000-0000-0000-0000-00000000dead"}}])).await;
    assert_eq!(r.json()["Errors"][0]["What"], "invalid session \"00000000-0000-0000-0000-00000000dead\"");
    let r = txn(&s, json!([{"KV": {"Verb": "lock", "Key": "k"}}])).await;
    assert_eq!(r.json()["Errors"][0]["What"], "missing session");
}

#[tokio::test]
async fn a9_lock_ops_should_honour_holders_and_lock_delay() {
    let s = spawn_scaled(0.001).await;
    let s1 = s.session(r#"{"LockDelay":"60s"}"#).await;
    let s2 = s.session("{}").await;
    let r = txn(&s, json!([{"KV": {"Verb": "lock", "Key": "l", "Session": s1, "Value": "eA=="}}])).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["Results"][0]["KV"]["LockIndex"], 1);
    let r = txn(&s, json!([{"KV": {"Verb": "lock", "Key": "l", "Session": s2}}])).await;
    assert_eq!(r.json()["Errors"][0]["What"], "failed to lock key \"l\", lock is already held");
    s.put_ok(&format!("/v1/session/destroy/{s1}"), "").await;
    let r = txn(&s, json!([{"KV": {"Verb": "lock", "Key": "l", "Session": s2}}])).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["Errors"][0]["What"], "failed to lock key \"l\" due to lock delay");
}

#[tokio::test]
async fn a9_delete_cas_should_succeed_on_a_missing_key() {
    let s = spawn_scaled(0.001).await;
    let r = txn(&s, json!([{"KV": {"Verb": "delete-cas", "Key": "nope", "Index": 5}}])).await;
    assert_eq!((r.status, r.json()["Results"].clone()), (200, json!([])));
}

#[tokio::test]
async fn a9_txn_over_128_ops_should_be_413() {
    let s = spawn_scaled(0.001).await;
    let ops: Vec<Value> = (0..129).map(|i| json!({"KV": {"Verb": "get", "Key": format!("k{i}")}})).collect();
    let r = txn(&s, Value::Array(ops)).await;
    assert_eq!((r.status, r.body.as_str()), (413, "Transaction contains too many operations (129 > 128)"));
    let ops: Vec<Value> = (0..128).map(|i| json!({"KV": {"Verb": "set", "Key": format!("k{i}")}})).collect();
    assert_eq!(txn(&s, Value::Array(ops)).await.status, 200, "128 is allowed");
}

#[tokio::test]
async fn a9_bodies_should_be_decoded_strictly() {
    let s = spawn_scaled(0.001).await;
    let r = txn(&s, json!([{"KV": {"Verb": "get", "Key": "a", "Bogus": 1}}])).await;
    assert_eq!((r.status, r.body.as_str()), (400, "Failed to parse body: json: unknown field \"Bogus\""));
    let r = txn(&s, json!([{"Kv": {"Verb": "get", "Key": "a"}, "Extra": {}}])).await;
    assert_eq!((r.status, r.body.as_str()), (400, "Failed to parse body: json: unknown field \"Extra\""));
    let r = s.put("/v1/txn", "").await;
    assert_eq!((r.status, r.body.as_str()), (400, "Failed to parse body: EOF"));
    let r = txn(&s, json!([{"KV": {"Verb": "set", "Key": "a", "Value": "!!"}}])).await;
    assert_eq!((r.status, r.body.as_str()), (400, "Failed to parse body: illegal base64 data at input byte 0"));
    let big = "A".repeat(600 * 1024);
    let r = s.put("/v1/txn", &format!("[{{\"KV\":{{\"Verb\":\"set\",\"Key\":\"a\",\"Value\":\"{big}\"}}}}]")).await;
    assert_eq!(r.status, 413);
    assert!(r.body.starts_with("Request body(") && r.body.ends_with("#txn_max_req_len."), "{}", r.body);
}

#[tokio::test]
async fn a9_read_only_txn_should_carry_query_meta() {
    let s = spawn_scaled(0.001).await;
    s.put_ok("/v1/kv/t/a", "1").await;
    s.put_ok("/v1/kv/t/b", "2").await;
    let r = txn(
        &s,
        json!([
            {"KV": {"Verb": "get-tree", "Key": "t/"}},
            {"KV": {"Verb": "get-or-empty", "Key": "t/none", "Flags": 9}},
        ]),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-consul-knownleader"), "true");
    assert_eq!(r.header("x-consul-lastcontact"), "0");
    assert_eq!(r.header("x-consul-index"), "");
    let v = r.json();
    let keys: Vec<&str> = v.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
    assert_eq!(
        keys,
        [
            "Results",
            "Errors",
            "Index",
            "LastContact",
            "KnownLeader",
            "ConsistencyLevel",
            "NotModified",
            "Backend",
            "ResultsFilteredByACLs"
        ]
    );
    let results = v["Results"].as_array().cloned().unwrap_or_default();
    assert_eq!(results.len(), 3);
    assert_eq!(results[1]["KV"]["Value"], "Mg==");
    assert_eq!(results[2]["KV"]["Key"], "t/none");
    assert_eq!(results[2]["KV"]["Value"], Value::Null);
    assert_eq!(results[2]["KV"]["CreateIndex"], 0);
    let r = txn(&s, json!([{"KV": {"Verb": "get", "Key": "gone"}}])).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["KnownLeader"], true, "the read 409 embeds QueryMeta too");
    let r = s.put("/v1/txn?stale&consistent", &json!([{"KV": {"Verb": "get", "Key": "t/a"}}]).to_string()).await;
    assert_eq!(r.status, 400, "read txns parse consistency flags");
}
