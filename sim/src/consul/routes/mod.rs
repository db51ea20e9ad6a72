//! The `/v1/...` handlers: KV (A3–A5) in [`kv`], sessions (A6) in [`session`], txn (A9) in [`txn`], plus
//! `/v1/status/leader`. Each handler parses the request like Consul's HTTP layer does (in the same order, so the
//! same error wins), then reads the state or calls `Consul::apply`.

mod kv;
mod session;
mod txn;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bytes::Bytes;
use percent_encoding::percent_decode_str;

use super::Consul;
use super::acl::Identity;
use super::error::ApiError;
use super::http::{QueryMeta, json_ok, set_meta};
use kv::kv;
use session::{session_create, session_destroy, session_info, session_list, session_node, session_renew};
use txn::txn_handler;

/// `kv_max_value_size` (= `raft.SuggestedMaxDataSize`, 512 KiB); also the txn request limit.
pub const MAX_VALUE_SIZE: usize = 512 * 1024;

pub(super) const KV_LIMIT_DOC: &str =
    "https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size";
pub(super) const TXN_LIMIT_DOC: &str = "https://developer.hashicorp.com/docs/agent/config/config-files#txn_max_req_len";

/// The `/v1/...` routes of the Consul model, with state applied.
pub fn router(c: Arc<Consul>) -> Router {
    let policy = if c.shared.acl_bootstrap_token.is_some() { "deny" } else { "allow" };
    Router::new()
        .route("/v1/kv", any(kv))
        .route("/v1/kv/", any(kv))
        .route("/v1/kv/{*key}", any(kv))
        .route("/v1/txn", any(txn_handler))
        .route("/v1/session/create", any(session_create))
        .route("/v1/session/destroy/", any(session_destroy))
        .route("/v1/session/destroy/{*id}", any(session_destroy))
        .route("/v1/session/renew/", any(session_renew))
        .route("/v1/session/renew/{*id}", any(session_renew))
        .route("/v1/session/info/", any(session_info))
        .route("/v1/session/info/{*id}", any(session_info))
        .route("/v1/session/node/", any(session_node))
        .route("/v1/session/node/{*node}", any(session_node))
        .route("/v1/session/list", any(session_list))
        .route("/v1/status/leader", any(status_leader))
        .layer(axum::middleware::map_response(move |mut resp: Response| async move {
            // `wrap` sets the agent's default policy on every response, ACLs on or off.
            resp.headers_mut().insert("x-consul-default-acl-policy", HeaderValue::from_static(policy));
            resp
        }))
        .with_state(c)
}

/// The method gate of Consul's `wrap`: OPTIONS answers the `Allow` list, anything else not listed is 405.
pub(super) fn method_gate(method: &Method, allowed: &[Method], allow: &'static str) -> Option<Response> {
    if method == Method::OPTIONS {
        return Some((StatusCode::OK, [(header::ALLOW, HeaderValue::from_static(allow))]).into_response());
    }
    if allowed.contains(method) {
        return None;
    }
    Some(ApiError::MethodNotAllowed { method: method.to_string(), allow }.into_response())
}

/// The suffix of the path after `prefix`, percent-decoded like Go's `URL.Path`.
pub(super) fn path_suffix(uri: &Uri, prefix: &str) -> String {
    let decoded = percent_decode_str(uri.path()).decode_utf8_lossy();
    decoded.strip_prefix(prefix).unwrap_or("").to_owned()
}

/// Reads a request body up to `max`, with the two 413 texts of the KV/txn endpoints.
pub(super) async fn read_body(headers: &HeaderMap, body: Body, max: usize, txn: bool) -> Result<Bytes, ApiError> {
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = length.filter(|l| *l > max as u64) {
        return Err(ApiError::too_large(if txn {
            format!("Request body({len} bytes) too large, max size: {max} bytes. See {TXN_LIMIT_DOC}.")
        } else {
            format!("Request body({len} bytes) too large, max size: {max} bytes. See {KV_LIMIT_DOC}.")
        }));
    }
    to_bytes(body, max).await.map_err(|_| {
        ApiError::too_large(if txn {
            format!("Request body too large, max size: {max} bytes. See {TXN_LIMIT_DOC}.")
        } else {
            format!("Request body too large. Max allowed is {max} bytes.")
        })
    })
}

impl Consul {
    pub(super) fn resolve(&self, token: &str) -> Result<Identity, ApiError> {
        if self.shared.acl_bootstrap_token.is_none() {
            // ACLs off: no need to take the lock on the hot read path.
            return Ok(Identity::Disabled);
        }
        self.lock().acl.resolve(self.shared.acl_bootstrap_token.as_deref(), token)
    }
}

pub(super) fn meta(index: u64, filtered: bool, who: &Identity) -> QueryMeta {
    QueryMeta { index, filtered: filtered && !who.is_anonymous() }
}

/// A read answer: JSON body (or 404 with no body) plus the `setMeta` headers.
pub(super) fn read_response(body: Option<Vec<u8>>, m: QueryMeta) -> Response {
    let mut resp = match body {
        Some(b) => json_ok(b),
        None => StatusCode::NOT_FOUND.into_response(),
    };
    set_meta(resp.headers_mut(), m);
    resp
}

pub(super) fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

async fn status_leader(method: Method) -> Response {
    if let Some(r) = method_gate(&method, &[Method::GET], "OPTIONS,GET") {
        return r;
    }
    json_ok(b"\"127.0.0.1:8300\"".to_vec())
}
