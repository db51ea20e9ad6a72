//! Contract tests for api-contract.md A1 (common HTTP behaviour), A3 (KV read), A4 (KV write), A5 (KV delete).

mod consul_support;

use consul_support::{Sim, spawn_scaled};
use reqwest::Method;

async fn sim() -> Sim {
    spawn_scaled(0.001).await
}

#[tokio::test]
async fn a1_wrong_method_should_be_405_with_allow_header() {
    let s = sim().await;
    let r = s.req(Method::POST, "/v1/kv/x", &[], Some(b"v".to_vec())).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), "OPTIONS,GET,PUT,DELETE");
    assert_eq!(r.body, "method POST not allowed");
    let r = s.req(Method::POST, "/v1/txn", &[], Some(b"[]".to_vec())).await;
    assert_eq!((r.status, r.header("allow").as_str()), (405, "OPTIONS,PUT"));
    let r = s.req(Method::GET, "/v1/session/create", &[], None).await;
    assert_eq!((r.status, r.header("allow").as_str()), (405, "OPTIONS,PUT"));
    let r = s.req(Method::PUT, "/v1/session/list", &[], None).await;
    assert_eq!((r.status, r.header("allow").as_str()), (405, "OPTIONS,GET"));
}

#[tokio::test]
async fn a1_options_should_answer_200_with_allow() {
    let s = sim().await;
    let r = s.req(Method::OPTIONS, "/v1/kv/x", &[], None).await;
    assert_eq!((r.status, r.header("allow").as_str()), (200, "OPTIONS,GET,PUT,DELETE"));
}

#[tokio::test]
async fn a1_reads_should_carry_index_leader_and_policy_headers() {
    let s = sim().await;
    s.put_ok("/v1/kv/a", "1").await;
    let r = s.get("/v1/kv/a").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.header("x-consul-knownleader"), "true");
    assert_eq!(r.header("x-consul-lastcontact"), "0");
    assert_eq!(r.header("x-consul-default-acl-policy"), "allow");
    assert!(r.index() >= 1);
    let w = s.put("/v1/kv/a", "2").await;
    assert_eq!(w.header("x-consul-index"), "", "writes set no X-Consul-Index");
    assert_eq!(w.header("content-type"), "application/json");
}

#[tokio::test]
async fn a1_index_should_never_be_zero() {
    let s = sim().await;
    let r = s.get("/v1/kv/missing").await;
    assert_eq!((r.status, r.header("x-consul-index").as_str()), (404, "1"));
    let r = s.get("/v1/kv/?keys").await;
    assert_eq!((r.status, r.body.as_str(), r.index()), (200, "[]", 1));
}

#[tokio::test]
async fn a1_flags_should_be_presence_based() {
    let s = sim().await;
    s.put_ok("/v1/kv/p/a", "1").await;
    s.put_ok("/v1/kv/p/b", "2").await;
    let r = s.get("/v1/kv/p/?recurse=false").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json().as_array().map(Vec::len), Some(2), "recurse=false still recurses");
}

#[tokio::test]
async fn a1_conflicting_flags_should_be_400() {
    let s = sim().await;
    let r = s.put("/v1/kv/k?cas=1&acquire=abc", "").await;
    assert_eq!((r.status, r.body.as_str()), (400, "Conflicting flags: acquire=abc&cas=1\n"));
    let r = s.delete("/v1/kv/k?recurse&cas=0").await;
    assert_eq!((r.status, r.body.as_str()), (400, "Conflicting flags: cas=0&recurse=\n"));
    let r = s.get("/v1/kv/k?stale&consistent").await;
    assert_eq!((r.status, r.body.as_str()), (400, "Cannot specify ?stale with ?consistent, conflicting semantics."));
    assert_eq!(r.header("content-type"), "text/plain; charset=utf-8");
}

#[tokio::test]
async fn a1_enterprise_parameters_should_be_rejected() {
    let s = sim().await;
    let r = s.get("/v1/kv/k?ns=default").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "Invalid query parameter: \"ns\" - Namespaces are a Consul Enterprise feature")
    );
    let r = s.put("/v1/kv/k?partition=default", "").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "Invalid query parameter: \"partition\" - Partitions are a Consul Enterprise feature")
    );
    let r = s.req(Method::GET, "/v1/kv/k", &[("X-Consul-Namespace", "default")], None).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "Invalid header: \"X-Consul-Namespace\" - Namespaces are a Consul Enterprise feature")
    );
}

#[tokio::test]
async fn a3_get_should_return_base64_array_and_null_for_empty() {
    let s = sim().await;
    s.put_ok("/v1/kv/drover/apps/web?flags=42", "{\"kind\":\"App\"}").await;
    s.put_ok("/v1/kv/empty", "").await;
    let r = s.get("/v1/kv/drover/apps/web").await;
    let e = &r.json()[0];
    assert_eq!(e["Key"], "drover/apps/web");
    assert_eq!(e["Value"], "eyJraW5kIjoiQXBwIn0=");
    assert_eq!(e["Flags"], 42);
    assert_eq!(e["LockIndex"], 0);
    assert!(e.get("Session").is_none(), "Session is omitted when unlocked");
    assert_eq!(e["CreateIndex"], e["ModifyIndex"]);
    assert_eq!(r.index(), e["ModifyIndex"].as_u64().unwrap_or(0), "single key index is its ModifyIndex");
    let keys: Vec<&str> = e.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
    assert_eq!(keys, ["LockIndex", "Key", "Flags", "Value", "CreateIndex", "ModifyIndex"]);
    let r = s.get("/v1/kv/empty").await;
    assert_eq!(r.json()[0]["Value"], serde_json::Value::Null);
}

#[tokio::test]
async fn a3_missing_key_should_be_404_with_empty_body_and_index() {
    let s = sim().await;
    s.put_ok("/v1/kv/a", "1").await;
    let idx = s.modify_index("a").await;
    let r = s.get("/v1/kv/b").await;
    assert_eq!((r.status, r.body.as_str()), (404, ""));
    assert_eq!(r.header("content-type"), "");
    assert_eq!(r.index(), idx, "missing key reports the KV table index");
    assert_eq!(r.header("x-consul-knownleader"), "true");
    let r = s.get("/v1/kv/nothing/?recurse").await;
    assert_eq!((r.status, r.body.as_str()), (404, ""));
}

#[tokio::test]
async fn a3_raw_should_return_the_bytes_with_security_headers() {
    let s = sim().await;
    s.put_ok("/v1/kv/r", "<b>raw</b>").await;
    let r = s.get("/v1/kv/r?raw").await;
    assert_eq!((r.status, r.body.as_str()), (200, "<b>raw</b>"));
    assert_eq!(r.header("content-type"), "text/plain; charset=utf-8");
    assert_eq!(r.header("x-content-type-options"), "nosniff");
    assert_eq!(r.header("content-security-policy"), "sandbox");
}

#[tokio::test]
async fn a3_keys_should_cut_at_separator_and_dedupe() {
    let s = sim().await;
    for k in ["d/a/1", "d/a/2", "d/b", "d/c/x/y", "e/z"] {
        s.put_ok(&format!("/v1/kv/{k}"), "v").await;
    }
    let r = s.get("/v1/kv/d/?keys&separator=/").await;
    assert_eq!(r.json(), serde_json::json!(["d/a/", "d/b", "d/c/"]));
    let r = s.get("/v1/kv/d/?keys&seperator=/").await;
    assert_eq!(r.json(), serde_json::json!(["d/a/", "d/b", "d/c/"]), "legacy spelling works");
    let r = s.get("/v1/kv/d/?keys").await;
    assert_eq!(r.json(), serde_json::json!(["d/a/1", "d/a/2", "d/b", "d/c/x/y"]));
    let r = s.get("/v1/kv/nope/?keys").await;
    assert_eq!((r.status, r.body.as_str()), (404, ""));
}

#[tokio::test]
async fn a3_empty_key_should_be_missing_key_name() {
    let s = sim().await;
    let r = s.get("/v1/kv/").await;
    assert_eq!((r.status, r.body.as_str()), (400, "Missing key name"));
    let r = s.put("/v1/kv/", "x").await;
    assert_eq!((r.status, r.body.as_str()), (400, "Missing key name"));
    let r = s.delete("/v1/kv/").await;
    assert_eq!((r.status, r.body.as_str()), (400, "Missing key name"));
}

#[tokio::test]
async fn a3_keys_should_be_cleaned_and_validated() {
    let s = sim().await;
    s.put_ok("/v1/kv/a%2F%2Fb", "1").await;
    assert_eq!(s.get("/v1/kv/a/b").await.status, 200, "a//b is stored as a/b");
    let r = s.put("/v1/kv/%2E%2E%2Fx", "1").await;
    assert_eq!((r.status, r.body.as_str()), (500, "invalid key name, path traversal is not allowed"));
    let r = s.put("/v1/kv/%20x", "1").await;
    assert_eq!((r.status, r.body.as_str()), (500, "invalid key name, leading/trailing spaces are not allowed"));
}

#[tokio::test]
async fn a4_put_should_store_the_raw_body_and_flags() {
    let s = sim().await;
    s.put_ok("/v1/kv/k?flags=7", "hello").await;
    let e = &s.get("/v1/kv/k").await.json()[0];
    assert_eq!((e["Value"].as_str(), e["Flags"].as_u64()), (Some("aGVsbG8="), Some(7)));
    let r = s.put("/v1/kv/k?flags=abc", "x").await;
    assert_eq!((r.status, r.body.as_str()), (500, "strconv.ParseUint: parsing \"abc\": invalid syntax"));
}

#[tokio::test]
async fn a4_cas_zero_fails_when_key_exists() {
    let s = sim().await;
    assert_eq!(s.put("/v1/kv/c?cas=0", "1").await.body, "true");
    assert_eq!(s.put("/v1/kv/c?cas=0", "2").await.body, "false");
}

#[tokio::test]
async fn a4_cas_should_write_only_at_the_current_modify_index() {
    let s = sim().await;
    assert_eq!(s.put("/v1/kv/c?cas=5", "1").await.body, "false", "cas=N on a missing key");
    s.put_ok("/v1/kv/c", "1").await;
    let idx = s.modify_index("c").await;
    assert_eq!(s.put(&format!("/v1/kv/c?cas={}", idx + 100), "2").await.body, "false");
    assert_eq!(s.put(&format!("/v1/kv/c?cas={idx}"), "2").await.body, "true");
    assert!(s.modify_index("c").await > idx);
}

#[tokio::test]
async fn a4_noop_write_should_keep_the_modify_index() {
    let s = sim().await;
    s.put_ok("/v1/kv/n?flags=1", "same").await;
    let idx = s.modify_index("n").await;
    s.put_ok("/v1/kv/n?flags=1", "same").await;
    assert_eq!(s.modify_index("n").await, idx, "identical write is a no-op");
    s.put_ok("/v1/kv/n?flags=2", "same").await;
    assert!(s.modify_index("n").await > idx, "different flags is a write");
}

#[tokio::test]
async fn a4_plain_put_should_reset_lock_index_and_keep_session() {
    let s = sim().await;
    let id = s.session(r#"{"Name":"x"}"#).await;
    s.put_ok(&format!("/v1/kv/l?acquire={id}"), "v").await;
    let e = &s.get("/v1/kv/l").await.json()[0];
    assert_eq!((e["LockIndex"].as_u64(), e["Session"].as_str()), (Some(1), Some(id.as_str())));
    let create = e["CreateIndex"].clone();
    s.put_ok("/v1/kv/l", "v").await;
    let e = &s.get("/v1/kv/l").await.json()[0];
    assert_eq!(e["LockIndex"], 0, "a plain set stores LockIndex 0");
    assert_eq!(e["Session"].as_str(), Some(id.as_str()), "the holder stays");
    assert_eq!(e["CreateIndex"], create);
}

#[tokio::test]
async fn a4_values_over_512_kib_should_be_413() {
    let s = sim().await;
    let big = "x".repeat(512 * 1024 + 1);
    let r = s.put("/v1/kv/big", &big).await;
    assert_eq!(r.status, 413);
    assert_eq!(
        r.body,
        "Request body(524289 bytes) too large, max size: 524288 bytes. See \
         https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size."
    );
    let exact = "x".repeat(512 * 1024);
    s.put_ok("/v1/kv/big", &exact).await;
    // A chunked body (no Content-Length) is read up to the limit + 1.
    let chunks = futures::stream::iter(vec![Ok::<_, std::io::Error>(big.into_bytes())]);
    let http = reqwest::Client::new();
    let r = http
        .put(format!("{}/v1/kv/big2", s.url))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("chunked PUT");
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(r.text().await.unwrap_or_default(), "Request body too large. Max allowed is 524288 bytes.");
}

#[tokio::test]
async fn a5_delete_should_answer_like_the_table() {
    let s = sim().await;
    assert_eq!(s.delete("/v1/kv/missing").await.body, "true", "plain delete of a missing key");
    assert_eq!(s.delete("/v1/kv/missing?cas=9").await.body, "true", "cas delete of a missing key");
    s.put_ok("/v1/kv/d", "1").await;
    let idx = s.modify_index("d").await;
    assert_eq!(s.delete("/v1/kv/d?cas=0").await.body, "false");
    assert_eq!(s.delete(&format!("/v1/kv/d?cas={}", idx + 1)).await.body, "false");
    assert_eq!(s.delete(&format!("/v1/kv/d?cas={idx}")).await.body, "true");
    assert_eq!(s.get("/v1/kv/d").await.status, 404);
}

#[tokio::test]
async fn a5_recurse_should_delete_the_prefix_only() {
    let s = sim().await;
    for k in ["t/a", "t/b/c", "u"] {
        s.put_ok(&format!("/v1/kv/{k}"), "v").await;
    }
    assert_eq!(s.delete("/v1/kv/t/?recurse").await.body, "true");
    assert_eq!(s.get("/v1/kv/t/?recurse").await.status, 404);
    assert_eq!(s.get("/v1/kv/u").await.status, 200);
    assert_eq!(s.delete("/v1/kv/?recurse").await.body, "true", "empty key with recurse deletes everything");
    assert_eq!(s.get("/v1/kv/?keys").await.body, "[]");
}

#[tokio::test]
async fn a1_status_leader_should_name_the_leader() {
    let s = sim().await;
    let r = s.get("/v1/status/leader").await;
    assert_eq!((r.status, r.body.as_str()), (200, "\"127.0.0.1:8300\""));
    s.shared.set_leader(drover_sim::Server::Consul, false);
    let r = s.get("/v1/status/leader").await;
    assert_eq!((r.status, r.body.as_str()), (200, "\"\""), "no leader: an empty string");
}

#[tokio::test]
async fn a3_unclean_literal_paths_should_be_redirected_by_the_mux() {
    let s = sim().await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let r = http.get(format!("{}/v1/kv/a//b?raw", s.url)).send().await.expect("GET");
    assert_eq!(r.status().as_u16(), 301);
    assert_eq!(r.headers().get("location").and_then(|v| v.to_str().ok()), Some("/v1/kv/a/b?raw"));
    let r = http.get(format!("{}/v1/kv", s.url)).send().await.expect("GET");
    assert_eq!(r.status().as_u16(), 301);
    assert_eq!(r.headers().get("location").and_then(|v| v.to_str().ok()), Some("/v1/kv/"));
    assert_eq!(r.text().await.unwrap_or_default(), "<a href=\"/v1/kv/\">Moved Permanently</a>.\n\n");
}
