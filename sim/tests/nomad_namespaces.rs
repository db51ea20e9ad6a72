//! Contract tests for namespaces (B16, C25): `GET /v1/namespaces` is a blocking query on the `namespaces` table
//! (nomad/namespace_endpoint.go `ListNamespaces`), namespace writes move the index, and an event stream opened with
//! `namespace=*` does not cover a namespace created after it.

mod nomad_support;

use std::time::Duration;

use drover_sim::SimConfig;
use futures::StreamExt;
use nomad_support::{fast, job, spawn};
use reqwest::Method;
use serde_json::{Value, json};

fn names(list: &Value) -> Vec<&str> {
    list.as_array().map(|a| a.iter().filter_map(|n| n["Name"].as_str()).collect()).unwrap_or_default()
}

#[tokio::test]
async fn b16_namespace_list_should_block_until_a_namespace_is_created() {
    let s = fast().await;
    let r = s.get("/v1/namespaces").await;
    assert_eq!(r.status, 200);
    assert_eq!(names(&r.json()), ["default"]);
    let before = r.index();
    assert!(before >= 1, "the index is floored at 1");
    // A write to another table does not move the namespace list's index.
    s.register(&job("web", 1)).await;
    assert_eq!(s.get("/v1/namespaces").await.index(), before);
    // Timeout: same body, same index (B2). 1 s of sim time is 1 ms here.
    let r = s.get(&format!("/v1/namespaces?index={before}&wait=1s")).await;
    assert_eq!((r.index(), names(&r.json())), (before, vec!["default"]));

    let s2 = s.clone();
    let blocked = tokio::spawn(async move { s2.get(&format!("/v1/namespaces?index={before}&wait=5m")).await });
    let created = s.post("/v1/namespace/apps", &json!({"Name": "apps", "Description": "late"})).await;
    assert_eq!((created.status, created.body.as_str()), (200, ""), "a namespace write answers with no body");
    let write_index = created.index();
    let r = tokio::time::timeout(Duration::from_secs(5), blocked)
        .await
        .expect("the blocking list returns once the namespace exists")
        .expect("blocking list task");
    assert_eq!(names(&r.json()), ["apps", "default"]);
    assert_eq!(r.index(), write_index);
    assert!(write_index > before);
    let apps = &r.json()[0];
    assert_eq!((apps["CreateIndex"].as_u64(), apps["ModifyIndex"].as_u64()), (Some(write_index), Some(write_index)));
    assert_eq!(apps["Description"], "late");

    // An update keeps CreateIndex; the /_sim/ shortcut is the same indexed write.
    let updated = s.post("/v1/namespace", &json!({"Name": "apps", "Description": "again"})).await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    let one = s.get("/v1/namespace/apps").await;
    assert_eq!(one.json()["CreateIndex"].as_u64(), Some(write_index));
    assert_eq!(one.json()["ModifyIndex"].as_u64(), Some(updated.index()));
    assert_eq!(one.index(), updated.index());
    let r = s.post("/_sim/nomad/namespaces", &json!({"name": "more"})).await;
    assert_eq!(r.status, 200);
    assert!(s.get("/v1/namespaces").await.index() > updated.index(), "the /_sim/ shortcut moves the index too");
    assert_eq!(names(&s.get("/v1/namespaces?prefix=mo").await.json()), ["more"]);
}

#[tokio::test]
async fn b16_namespace_writes_should_be_validated_as_nomad_does() {
    let s = fast().await;
    let r = s.post("/v1/namespace/apps", &json!({"Name": "other"})).await;
    assert_eq!((r.status, r.body.as_str()), (400, "Namespace name does not match request path"));
    let r = s.post("/v1/namespace", &json!({"Name": "a_b"})).await;
    assert_eq!(r.status, 500);
    assert!(r.body.starts_with("Invalid namespace \"a_b\": 1 error occurred:\n\t* invalid name \"a_b\""), "{}", r.body);
    let r = s.get("/v1/namespace/nope").await;
    assert_eq!((r.status, r.body.as_str()), (404, "Namespace not found"));
    let r = s.raw(Method::DELETE, "/v1/namespaces", None).await;
    assert_eq!((r.status, r.body.as_str()), (405, "Invalid method"));
}

#[tokio::test]
async fn b16_namespace_list_should_show_only_namespaces_the_token_sees() {
    let s = spawn(SimConfig { acl_bootstrap_token: Some("root-secret".into()), ..SimConfig::fast() }).await;
    let root = s.with_token("root-secret");
    let r = s.post("/v1/namespace/apps", &json!({"Name": "apps"})).await;
    assert_eq!((r.status, r.body.as_str()), (403, "Permission denied"), "creating a namespace needs management");
    assert_eq!(root.post("/v1/namespace/apps", &json!({"Name": "apps"})).await.status, 200);
    let r = s.post("/_sim/nomad/acl/tokens", &json!({"name": "apps-reader", "namespaces": {"apps": ["read"]}})).await;
    let secret = r.json()["SecretID"].as_str().unwrap_or_default().to_owned();
    assert_eq!(names(&s.with_token(&secret).get("/v1/namespaces").await.json()), ["apps"]);
    assert_eq!(s.get("/v1/namespaces").await.body, "[]", "anonymous sees none, as [] not null");
    assert_eq!(names(&root.get("/v1/namespaces").await.json()), ["apps", "default"]);
}

/// Reads NDJSON lines from a stream; panics after 5 s real time.
async fn next_line(
    body: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buf: &mut Vec<u8>,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(p) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=p).collect();
            return serde_json::from_slice(&line).expect("each line is JSON");
        }
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("an event-stream line within 5 s")
            .expect("stream still open")
            .expect("read stream");
        buf.extend_from_slice(&chunk);
    }
}

#[tokio::test]
async fn c25_star_stream_should_not_cover_a_namespace_created_after_it_opened() {
    let s = fast().await;
    let r = reqwest::get(format!("{}/v1/event/stream?topic=Job&namespace=*", s.url)).await.expect("open stream");
    let mut body = Box::pin(r.bytes_stream());
    let mut buf = Vec::new();
    assert_eq!(next_line(&mut body, &mut buf).await, json!({}), "the first line is {{}}");
    assert_eq!(s.post("/v1/namespace/late", &json!({"Name": "late"})).await.status, 200);
    let mut late = job("hidden", 1);
    late["Namespace"] = json!("late");
    assert_eq!(s.post("/v1/jobs?namespace=late", &json!({"Job": late})).await.status, 200);
    s.register(&job("seen", 1)).await;
    let frame = next_line(&mut body, &mut buf).await;
    let keys: Vec<&str> = frame["Events"].as_array().into_iter().flatten().filter_map(|e| e["Key"].as_str()).collect();
    assert_eq!(keys, ["seen"], "the job in the namespace created after subscribing is not in the stream: {frame}");
}
