//! `/_sim/consul/...`: controls for tests and demos that have no Consul API equivalent.
//!
//! | Route | Body | Answer |
//! |---|---|---|
//! | `POST /_sim/consul/acl/policy` | `{"Name":"p","Rules":{"key_prefix":{"drover/":"write"},"key":{},"session_prefix":{"":"write"},"session":{}}}` | `{"Name":"p"}` |
//! | `POST /_sim/consul/acl/token` | `{"Policies":["p"]}`, optionally `"SecretID"`/`"AccessorID"` | `{"AccessorID":…,"SecretID":…,"Policies":[…]}` |
//! | `DELETE /_sim/consul/acl/token/{accessor}` | none | `true`; 404 when no token has that `AccessorID` (Consul's `DELETE /v1/acl/token/:AccessorID`) |
//! | `POST /_sim/consul/snapshot` | none | `{"ID":0,"Index":N}` |
//! | `POST /_sim/consul/restore` | none (latest) or `{"ID":0}` | `{"Index":N}`; 404 when there is no such snapshot |
//! | `POST /_sim/consul/reap-tombstones` | none | `{"Reaped":n}` |
//! | `GET /_sim/consul/stats` | none | `{"Keys":…,"Tombstones":…,"Sessions":…,"Index":…,"KVIndex":…}` |
//!
//! Rule levels are `"read"`, `"write"` or `"deny"`. ACL routes answer 400 when ACLs are off (no
//! `--acl-bootstrap-token`).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::Consul;
use super::acl::Rules;
use super::error::ApiError;
use super::http::json_ok;

/// The `/_sim/consul/...` routes, with state applied.
pub fn control_router(c: Arc<Consul>) -> Router {
    Router::new()
        .route("/_sim/consul/acl/policy", post(create_policy))
        .route("/_sim/consul/acl/token", post(create_token))
        .route("/_sim/consul/acl/token/{accessor}", axum::routing::delete(revoke_token))
        .route("/_sim/consul/snapshot", post(snapshot))
        .route("/_sim/consul/restore", post(restore))
        .route("/_sim/consul/reap-tombstones", post(reap))
        .route("/_sim/consul/stats", get(stats))
        .with_state(c)
}

/// Body of `POST /_sim/consul/acl/policy`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRequest {
    /// Unique name; creating a policy with an existing name replaces it.
    #[serde(rename = "Name")]
    pub name: String,
    /// The rules.
    #[serde(rename = "Rules", default)]
    pub rules: Rules,
}

/// Body of `POST /_sim/consul/acl/token`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// Names of existing policies.
    #[serde(rename = "Policies", default)]
    pub policies: Vec<String>,
    /// The secret to use (random when absent).
    #[serde(rename = "SecretID", default)]
    pub secret_id: Option<String>,
    /// The accessor to use (random when absent).
    #[serde(rename = "AccessorID", default)]
    pub accessor_id: Option<String>,
}

fn json<T: serde::Serialize>(v: &T) -> Response {
    json_ok(serde_json::to_vec(v).unwrap_or_default())
}

fn acl_enabled(c: &Consul) -> Result<(), ApiError> {
    if c.shared.acl_bootstrap_token.is_none() {
        return Err(ApiError::bad_request("ACLs are disabled: start the simulator with --acl-bootstrap-token"));
    }
    Ok(())
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))
}

async fn create_policy(State(c): State<Arc<Consul>>, body: Bytes) -> Response {
    let result = (|| {
        acl_enabled(&c)?;
        let req: PolicyRequest = parse(&body)?;
        c.put_policy(&req.name, req.rules);
        Ok::<_, ApiError>(json(&serde_json::json!({ "Name": req.name })))
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn create_token(State(c): State<Arc<Consul>>, body: Bytes) -> Response {
    let result = (|| {
        acl_enabled(&c)?;
        let req: TokenRequest = parse(&body)?;
        let names = req.policies.clone();
        let token = c
            .create_token(req.policies, req.secret_id, req.accessor_id)
            .ok_or_else(|| ApiError::bad_request(format!("unknown policy among {names:?}")))?;
        Ok::<_, ApiError>(json(&token))
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn revoke_token(
    State(c): State<Arc<Consul>>,
    axum::extract::Path(accessor): axum::extract::Path<String>,
) -> Response {
    let result = (|| {
        acl_enabled(&c)?;
        if !c.revoke_token(&accessor) {
            return Err(ApiError::not_found(format!("no token with AccessorID {accessor}")));
        }
        Ok::<_, ApiError>(json(&true))
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn snapshot(State(c): State<Arc<Consul>>) -> Response {
    let id = c.snapshot();
    json(&serde_json::json!({ "ID": id, "Index": c.stats().raft_index }))
}

#[derive(Debug, Deserialize)]
struct RestoreRequest {
    #[serde(rename = "ID")]
    id: Option<usize>,
}

async fn restore(State(c): State<Arc<Consul>>, body: Bytes) -> Response {
    let id = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match parse::<RestoreRequest>(&body) {
            Ok(r) => r.id,
            Err(e) => return e.into_response(),
        }
    };
    if !c.restore(id) {
        return (StatusCode::NOT_FOUND, "no such snapshot").into_response();
    }
    json(&serde_json::json!({ "Index": c.stats().kv_index }))
}

async fn reap(State(c): State<Arc<Consul>>) -> Response {
    json(&serde_json::json!({ "Reaped": c.reap_tombstones() }))
}

async fn stats(State(c): State<Arc<Consul>>) -> Response {
    json(&c.stats())
}
