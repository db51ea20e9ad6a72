//! Contract tests for the ACL rules of api-contract.md A1 (token order, 403 texts, silent filtering) and A9 (txn
//! denials are 409s), with ACLs on and default policy deny.

mod consul_support;

use consul_support::{Sim, spawn};
use drover_sim::SimConfig;
use reqwest::Method;
use serde_json::json;

const ROOT: &str = "root-secret";

async fn sim() -> Sim {
    spawn(SimConfig { time_scale: 0.001, acl_bootstrap_token: Some(ROOT.into()), ..SimConfig::default() }).await
}

/// Creates a policy and a token with it; returns (secret, accessor).
async fn token(s: &Sim, name: &str, rules: serde_json::Value) -> (String, String) {
    let p = s
        .req(
            Method::POST,
            "/_sim/consul/acl/policy",
            &[],
            Some(json!({"Name": name, "Rules": rules}).to_string().into()),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    let t =
        s.req(Method::POST, "/_sim/consul/acl/token", &[], Some(json!({"Policies": [name]}).to_string().into())).await;
    assert_eq!(t.status, 200, "{}", t.body);
    let v = t.json();
    (v["SecretID"].as_str().unwrap_or("").to_owned(), v["AccessorID"].as_str().unwrap_or("").to_owned())
}

async fn put_as(s: &Sim, path: &str, secret: &str, body: &str) -> consul_support::Resp {
    s.req(Method::PUT, path, &[("X-Consul-Token", secret)], Some(body.as_bytes().to_vec())).await
}

async fn get_as(s: &Sim, path: &str, secret: &str) -> consul_support::Resp {
    s.req(Method::GET, path, &[("X-Consul-Token", secret)], None).await
}

#[tokio::test]
async fn a1_anonymous_requests_should_get_the_anonymous_denial() {
    let s = sim().await;
    let r = s.get("/v1/kv/drover/apps/x").await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.body,
        "Permission denied: anonymous token lacks permission 'key:read' on \"drover/apps/x\". The anonymous token is \
         used implicitly when a request does not specify a token."
    );
    assert_eq!(r.header("x-consul-default-acl-policy"), "deny");
    assert_eq!(r.header("content-type"), "text/plain; charset=utf-8");
}

#[tokio::test]
async fn a1_unknown_tokens_should_be_acl_not_found() {
    let s = sim().await;
    let r = get_as(&s, "/v1/kv/x", "no-such-secret").await;
    assert_eq!((r.status, r.body.as_str()), (403, "ACL not found"));
}

#[tokio::test]
async fn a1_tokens_should_be_read_in_consul_order() {
    let s = sim().await;
    assert_eq!(put_as(&s, "/v1/kv/k", ROOT, "v").await.body, "true", "the bootstrap token is management");
    let bearer = s.req(Method::GET, "/v1/kv/k", &[("Authorization", &format!("Bearer {ROOT}"))], None).await;
    assert_eq!(bearer.status, 200);
    let q = s.req(Method::GET, &format!("/v1/kv/k?token={ROOT}"), &[("X-Consul-Token", "bad")], None).await;
    assert_eq!(q.status, 200, "?token= wins over the header");
    let h = s.req(Method::GET, "/v1/kv/k", &[("X-Consul-Token", ROOT), ("Authorization", "Bearer bad")], None).await;
    assert_eq!(h.status, 200, "X-Consul-Token wins over Authorization");
}

#[tokio::test]
async fn a1_key_rules_should_use_longest_prefix() {
    let s = sim().await;
    let (secret, accessor) =
        token(&s, "app", json!({"key_prefix": {"drover/": "write", "drover/ro/": "read"}, "key": {"x": "read"}})).await;
    assert_eq!(put_as(&s, "/v1/kv/drover/a", &secret, "1").await.body, "true");
    let r = put_as(&s, "/v1/kv/drover/ro/a", &secret, "1").await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.body,
        format!(
            "Permission denied: token with AccessorID '{accessor}' lacks permission 'key:write' on \"drover/ro/a\""
        )
    );
    assert_eq!(get_as(&s, "/v1/kv/drover/ro/a", &secret).await.status, 404, "read allowed, key missing");
    assert_eq!(get_as(&s, "/v1/kv/other", &secret).await.status, 403, "single-key reads are 403, not 404");
    let r = s.req(Method::DELETE, "/v1/kv/drover/?recurse", &[("X-Consul-Token", &secret)], None).await;
    assert_eq!(r.status, 403, "a read-only rule under the prefix forbids a tree delete");
}

#[tokio::test]
async fn a1_listings_should_be_filtered_silently() {
    let s = sim().await;
    for k in ["drover/a", "drover/b", "secret/c"] {
        assert_eq!(put_as(&s, &format!("/v1/kv/{k}"), ROOT, "v").await.body, "true");
    }
    let (secret, _) = token(&s, "drover-read", json!({"key_prefix": {"drover/": "read"}})).await;
    let r = get_as(&s, "/v1/kv/?keys", &secret).await;
    assert_eq!(r.json(), json!(["drover/a", "drover/b"]));
    assert_eq!(r.header("x-consul-results-filtered-by-acls"), "true");
    let r = get_as(&s, "/v1/kv/?recurse", &secret).await;
    assert_eq!(r.json().as_array().map(Vec::len), Some(2));
    let r = get_as(&s, "/v1/kv/secret/?recurse", &secret).await;
    assert_eq!((r.status, r.body.as_str()), (404, ""), "all filtered: recurse is 404");
    let r = get_as(&s, "/v1/kv/secret/?keys", &secret).await;
    assert_eq!(r.status, 404, "all filtered: keys with a prefix is 404");
    let (none, _) = token(&s, "nothing", json!({})).await;
    let r = get_as(&s, "/v1/kv/?keys", &none).await;
    assert_eq!((r.status, r.body.as_str()), (200, "[]"), "keys at the root is []");
    let r = get_as(&s, "/v1/kv/?recurse", &none).await;
    assert_eq!(r.status, 404, "recurse at the root is still 404");
    let r = s.get("/v1/kv/?keys").await;
    assert_eq!((r.status, r.body.as_str()), (200, "[]"));
    assert_eq!(r.header("x-consul-results-filtered-by-acls"), "", "never for the anonymous token");
}

#[tokio::test]
async fn a9_txn_acl_denials_should_be_409() {
    let s = sim().await;
    let (secret, accessor) = token(&s, "app", json!({"key_prefix": {"drover/": "write"}})).await;
    let body = json!([
        {"KV": {"Verb": "set", "Key": "drover/ok"}},
        {"KV": {"Verb": "set", "Key": "other/no"}},
    ]);
    let r = put_as(&s, "/v1/txn", &secret, &body.to_string()).await;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json()["Errors"],
        json!([{"OpIndex": 1, "What": format!(
            "Permission denied: token with AccessorID '{accessor}' lacks permission 'key:write' on \"other/no\""
        )}])
    );
    let r = put_as(&s, "/v1/txn", "bogus", &body.to_string()).await;
    assert_eq!((r.status, r.body.as_str()), (403, "ACL not found"));
}

#[tokio::test]
async fn a6_sessions_should_need_session_write() {
    let s = sim().await;
    let (kv_only, accessor) = token(&s, "kv", json!({"key_prefix": {"": "write"}})).await;
    let r = put_as(&s, "/v1/session/create", &kv_only, "{}").await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.body,
        format!(
            "Permission denied: token with AccessorID '{accessor}' lacks permission 'session:write' on \"drover-sim\""
        )
    );
    let (both, _) = token(&s, "both", json!({"key_prefix": {"": "write"}, "session_prefix": {"": "write"}})).await;
    let r = put_as(&s, "/v1/session/create", &both, "{}").await;
    assert_eq!(r.status, 200);
    let id = r.json()["ID"].as_str().unwrap_or("").to_owned();
    assert_eq!(get_as(&s, "/v1/session/list", &kv_only).await.body, "[]", "sessions are filtered by session:read");
    assert_eq!(put_as(&s, &format!("/v1/kv/lock?acquire={id}"), &both, "").await.body, "true");
}

#[tokio::test]
async fn a1_a_revoked_token_should_be_refused_as_not_found() {
    let s = sim().await;
    let (secret, accessor) = token(&s, "rw", json!({"key_prefix": {"drover/": "write"}})).await;
    assert_eq!(put_as(&s, "/v1/kv/drover/x", &secret, "1").await.status, 200);
    let r = s.delete(&format!("/_sim/consul/acl/token/{accessor}")).await;
    assert_eq!((r.status, r.body.as_str()), (200, "true"));
    let r = get_as(&s, "/v1/kv/drover/x", &secret).await;
    assert_eq!((r.status, r.body.as_str()), (403, "ACL not found"));
    assert_eq!(s.delete(&format!("/_sim/consul/acl/token/{accessor}")).await.status, 404, "revoked once only");
}
