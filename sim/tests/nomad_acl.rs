//! Contract tests for api-contract.md B1 (tokens, 403), B4 (`NomadTokenID`), B16 (namespaces) with ACLs on.

mod nomad_support;

use drover_sim::SimConfig;
use nomad_support::{Sim, job, spawn};
use reqwest::Method;
use serde_json::json;

async fn acl_sim() -> Sim {
    spawn(SimConfig { acl_bootstrap_token: Some("root-secret".into()), ..SimConfig::fast() }).await
}

async fn token(s: &Sim, caps: &[&str]) -> (String, String) {
    let r = s.post("/_sim/nomad/acl/tokens", &json!({"name": "drover", "namespaces": {"default": caps}})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    (v["AccessorID"].as_str().unwrap_or("").into(), v["SecretID"].as_str().unwrap_or("").into())
}

#[tokio::test]
async fn b1_without_token_writes_are_403_and_lists_empty() {
    let s = acl_sim().await;
    let r = s.post("/v1/jobs", &json!({"Job": job("web", 1)})).await;
    assert_eq!((r.status, r.body.as_str()), (403, "Permission denied"));
    let root = s.with_token("root-secret");
    root.register(&job("web", 1)).await;
    // No list-jobs anywhere: a 403, not an empty list (Job.List checks the capability first; sim README finding).
    let r = s.get("/v1/jobs").await;
    assert_eq!((r.status, r.body.as_str()), (403, "Permission denied"));
    let r = s.get("/v1/jobs?namespace=*").await;
    assert_eq!((r.status, r.body.as_str()), (403, "Permission denied"));
    let r = s.get("/v1/job/web").await;
    assert_eq!((r.status, r.body.as_str()), (403, "Permission denied"));
    let r = s.with_token("unknown").get("/v1/job/web").await;
    assert_eq!((r.status, r.body.as_str()), (403, "Permission denied"));
    assert_eq!(root.get("/v1/jobs").await.json().as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn b4_nomad_token_id_is_the_registering_accessor_and_part_of_the_spec() {
    let s = acl_sim().await;
    let (acc1, sec1) = token(&s, &["submit-job", "read-job", "list-jobs"]).await;
    let (acc2, sec2) = token(&s, &["write"]).await;
    let t1 = s.with_token(&sec1);
    t1.register(&job("web", 1)).await;
    let j = t1.job("web").await;
    assert_eq!(j["NomadTokenID"], acc1.as_str());
    t1.register(&job("web", 1)).await;
    assert_eq!(t1.job("web").await["Version"], 0, "same token, same spec: no new version");
    let t2 = s.with_token(&sec2);
    t2.register(&job("web", 1)).await;
    let j = t2.job("web").await;
    assert_eq!((j["Version"].clone(), j["NomadTokenID"].clone()), (json!(1), json!(acc2)));
    let (_, sec3) = token(&s, &["read-job"]).await;
    let r = s.with_token(&sec3).post("/v1/job/web/scale", &json!({"Count": 2, "Target": {"Group": "web"}})).await;
    assert_eq!(r.status, 403, "no scale-job or submit-job → {}", r.body);
}

#[tokio::test]
async fn b1_bearer_token_is_accepted() {
    let s = acl_sim().await;
    let r = reqwest::Client::new()
        .request(Method::GET, format!("{}/v1/jobs", s.url))
        .header("Authorization", "Bearer root-secret")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn b15_stream_without_rights_is_200_then_closed_without_heartbeat() {
    let s = acl_sim().await;
    let r = s.get("/v1/event/stream?topic=Job").await;
    assert_eq!((r.status, r.body.as_str()), (200, ""));
}

#[tokio::test]
async fn b1_a_revoked_token_should_be_refused() {
    let s = acl_sim().await;
    let (accessor, secret) = token(&s, &["read-job", "list-jobs"]).await;
    assert_eq!(s.with_token(&secret).get("/v1/jobs").await.status, 200);
    let root = s.with_token("root-secret");
    let r = root.raw(Method::DELETE, &format!("/_sim/nomad/acl/tokens/{accessor}"), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // An unknown secret gets the same answer as any other unknown token (test b1 above; api-contract B1).
    let r = s.with_token(&secret).get("/v1/jobs").await;
    assert_eq!((r.status, r.body.as_str()), (403, "Permission denied"));
    let r = root.raw(Method::DELETE, &format!("/_sim/nomad/acl/tokens/{accessor}"), None).await;
    assert_eq!(r.status, 404);
}
