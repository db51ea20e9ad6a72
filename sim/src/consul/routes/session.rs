//! Session handlers (api-contract.md A6): create, destroy, renew, and the blocking-capable info/list/node reads.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};

use super::{meta, method_gate, path_suffix, read_response, to_json};
use crate::consul::Consul;
use crate::consul::blocking::Pass;
use crate::consul::error::ApiError;
use crate::consul::http::{Query, json_bool, json_ok, parse_read_options, parse_token, reject_enterprise};
use crate::consul::session::{CreateRequest, Session};
use crate::consul::state::Op;

pub(super) async fn session_create(
    State(c): State<Arc<Consul>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(r) = method_gate(&method, &[Method::PUT], "OPTIONS,PUT") {
        return r;
    }
    let result = async {
        let q = Query::parse(uri.query());
        let token = parse_token(&q, &headers);
        reject_enterprise(&q, &headers)?;
        let raw = to_bytes(body, 16 * 1024 * 1024)
            .await
            .map_err(|e| ApiError::bad_request(format!("Request decode failed: {e}")))?;
        let mut req = CreateRequest::decode(&raw)?;
        if req.node.is_empty() {
            return Err(ApiError::internal("Must provide Node"));
        }
        let who = c.resolve(&token)?;
        who.session_write(&req.node)?;
        let ttl = req.validate()?;
        let id = c.shared.uuid();
        c.apply(Op::SessionCreate { id: id.clone(), req, ttl })
            .map_err(|e| ApiError::internal(format!("apply failed: {e}")))?;
        Ok(json_ok(to_json(&serde_json::json!({ "ID": id }))))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

pub(super) async fn session_destroy(
    State(c): State<Arc<Consul>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = method_gate(&method, &[Method::PUT], "OPTIONS,PUT") {
        return r;
    }
    let result = (|| {
        let q = Query::parse(uri.query());
        let token = parse_token(&q, &headers);
        reject_enterprise(&q, &headers)?;
        let id = path_suffix(&uri, "/v1/session/destroy/");
        if id.is_empty() {
            return Err(ApiError::bad_request("Missing session"));
        }
        let who = c.resolve(&token)?;
        let node = c.lock().sessions.sessions.get(&id).map(|s| s.node.clone());
        // Destroying a session that does not exist is a success (the RPC returns early).
        if let Some(node) = node {
            who.session_write(&node)?;
            c.apply(Op::SessionDestroy(id)).map_err(|e| ApiError::internal(format!("apply failed: {e}")))?;
        }
        Ok(json_bool(true))
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

pub(super) async fn session_renew(
    State(c): State<Arc<Consul>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = method_gate(&method, &[Method::PUT], "OPTIONS,PUT") {
        return r;
    }
    let result = (|| {
        let q = Query::parse(uri.query());
        let token = parse_token(&q, &headers);
        parse_read_options(&q)?;
        reject_enterprise(&q, &headers)?;
        let id = path_suffix(&uri, "/v1/session/renew/");
        if id.is_empty() {
            return Err(ApiError::bad_request("Missing session"));
        }
        let who = c.resolve(&token)?;
        let now = c.now();
        let mut s = c.lock();
        let Some(session) = s.sessions.sessions.get_mut(&id) else {
            return Err(ApiError::not_found(format!("Session id '{id}' not found")));
        };
        who.session_write(&session.node)?;
        // `resetSessionTimer`: the TTL×2 timer restarts now.
        session.arm(now);
        Ok(json_ok(to_json(&[&*session])))
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Shared body of session info/list/node: a blocking read over the sessions table, filtered by `session:read`.
/// `info` is `Session.Get`, whose missing session is the `ErrNotFound` sentinel (A2 rule 4: it keeps blocking
/// until the session appears); list and node answers are plain results.
async fn session_read(
    c: &Consul,
    uri: &Uri,
    headers: &HeaderMap,
    info: bool,
    select: impl Fn(&Session) -> bool,
) -> Result<Response, ApiError> {
    let q = Query::parse(uri.query());
    let token = parse_token(&q, headers);
    let opts = parse_read_options(&q)?;
    reject_enterprise(&q, headers)?;
    let who = c.resolve(&token)?;
    let pass = c
        .blocking(&opts, |s| {
            let matching: Vec<_> = s.sessions.sessions.values().filter(|x| select(x)).collect();
            let total = matching.len();
            let visible: Vec<_> = matching.into_iter().filter(|x| who.can_read_session(&x.node)).cloned().collect();
            let filtered = visible.len() != total;
            Ok(Pass { index: s.sessions.index, value: (visible, filtered), not_found: info && total == 0 })
        })
        .await?;
    let (sessions, filtered) = pass.value;
    Ok(read_response(Some(to_json(&sessions)), meta(pass.index, filtered, &who)))
}

pub(super) async fn session_info(
    State(c): State<Arc<Consul>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    session_read_one(&c, &method, &uri, &headers, "/v1/session/info/", "Missing session", true, |s, id| s.id == id)
        .await
}

pub(super) async fn session_node(
    State(c): State<Arc<Consul>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    session_read_one(&c, &method, &uri, &headers, "/v1/session/node/", "Missing node name", false, |s, node| {
        s.node == node
    })
    .await
}

/// `GET <prefix><name>`: the sessions matching one path argument, or a 400 naming what is missing. The read-option
/// parsing runs first, so its 400s win over the missing-argument one.
#[allow(clippy::too_many_arguments, reason = "one call site per route, each spelling out its own texts")]
async fn session_read_one(
    c: &Consul,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    prefix: &str,
    missing: &'static str,
    single: bool,
    matches: impl Fn(&Session, &str) -> bool,
) -> Response {
    if let Some(r) = method_gate(method, &[Method::GET], "OPTIONS,GET") {
        return r;
    }
    let arg = path_suffix(uri, prefix);
    let result = async {
        if arg.is_empty() {
            parse_read_options(&Query::parse(uri.query()))?;
            return Err(ApiError::bad_request(missing));
        }
        session_read(c, uri, headers, single, |s| matches(s, &arg)).await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

pub(super) async fn session_list(
    State(c): State<Arc<Consul>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = method_gate(&method, &[Method::GET], "OPTIONS,GET") {
        return r;
    }
    session_read(&c, &uri, &headers, false, |_| true).await.unwrap_or_else(IntoResponse::into_response)
}
