//! The `/v1/...` handlers: KV (A3–A5), sessions (A6), txn (A9) and `/v1/status/leader`. Each handler parses the
//! request like Consul's HTTP layer does (in the same order, so the same error wins), then reads the state or calls
//! `Consul::apply`.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bytes::Bytes;
use percent_encoding::percent_decode_str;

use super::Consul;
use super::acl::Identity;
use super::blocking::Pass;
use super::error::ApiError;
use super::http::{
    Query, QueryMeta, ReadOptions, json_bool, json_ok, parse_read_options, parse_token, reject_enterprise, set_meta,
};
use super::session::CreateRequest;
use super::state::{KvWrite, Op, OpResult, entry};
use super::txn::{self, MAX_TXN_OPS};

/// `kv_max_value_size` (= `raft.SuggestedMaxDataSize`, 512 KiB); also the txn request limit.
pub const MAX_VALUE_SIZE: usize = 512 * 1024;

const KV_LIMIT_DOC: &str = "https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size";
const TXN_LIMIT_DOC: &str = "https://developer.hashicorp.com/docs/agent/config/config-files#txn_max_req_len";

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
fn method_gate(method: &Method, allowed: &[Method], allow: &'static str) -> Option<Response> {
    if method == Method::OPTIONS {
        return Some((StatusCode::OK, [(header::ALLOW, HeaderValue::from_static(allow))]).into_response());
    }
    if allowed.contains(method) {
        return None;
    }
    Some(ApiError::MethodNotAllowed { method: method.to_string(), allow }.into_response())
}

/// The suffix of the path after `prefix`, percent-decoded like Go's `URL.Path`.
fn path_suffix(uri: &Uri, prefix: &str) -> String {
    let decoded = percent_decode_str(uri.path()).decode_utf8_lossy();
    decoded.strip_prefix(prefix).unwrap_or("").to_owned()
}

/// Go's `path.Clean`.
fn path_clean(p: &str) -> String {
    if p.is_empty() {
        return ".".to_owned();
    }
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|s| *s != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// Go's `url.PathUnescape`: `None` on a malformed escape.
fn strict_unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Some(percent_decode_str(s).decode_utf8_lossy().into_owned())
}

/// The key handling of `KVSEndpoint`: `path.Clean` keeping a trailing slash, then `validateKVKey` (500s).
fn clean_key(raw: &str) -> Result<String, ApiError> {
    if raw.is_empty() {
        return Ok(String::new());
    }
    // Most keys are already clean; only run `path.Clean` when a segment could change.
    let segments: Vec<&str> = raw.split('/').collect();
    let last = segments.len() - 1;
    let needs_clean = raw.starts_with('/')
        || segments.iter().enumerate().any(|(i, seg)| *seg == "." || *seg == ".." || (seg.is_empty() && i != last));
    let mut key = if needs_clean { path_clean(raw) } else { raw.to_owned() };
    if raw.ends_with('/') && !key.ends_with('/') {
        key.push('/');
    }
    if key.starts_with(' ') || key.ends_with(' ') {
        return Err(ApiError::internal("invalid key name, leading/trailing spaces are not allowed"));
    }
    if key.split('/').any(|p| p == "..") {
        return Err(ApiError::internal("invalid key name, path traversal is not allowed"));
    }
    if let Some(decoded) = key.contains('%').then(|| strict_unescape(&key)).flatten().filter(|d| *d != key) {
        if decoded.contains("..") {
            return Err(ApiError::internal("invalid key name, path traversal is not allowed"));
        }
        if decoded.contains(' ') {
            return Err(ApiError::internal("invalid key name, leading/trailing spaces are not allowed"));
        }
    }
    Ok(key)
}

/// `strconv.ParseUint(s, 10, 64)` with Go's error text (an untyped error: 500).
fn parse_uint(s: &str) -> Result<u64, ApiError> {
    s.parse::<u64>().map_err(|_| {
        let why = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            "value out of range"
        } else {
            "invalid syntax"
        };
        ApiError::internal(format!("strconv.ParseUint: parsing {}: {why}", super::http::go_quote(s)))
    })
}

/// A 400 `Conflicting flags` when more than one of `flags` is present.
fn conflicting(q: &Query, flags: &[&str]) -> Result<(), ApiError> {
    if flags.iter().filter(|f| q.has(f)).count() > 1 {
        return Err(ApiError::bad_request(format!("Conflicting flags: {}\n", q.encode())));
    }
    Ok(())
}

/// Reads a request body up to `max`, with the two 413 texts of the KV/txn endpoints.
async fn read_body(headers: &HeaderMap, body: Body, max: usize, txn: bool) -> Result<Bytes, ApiError> {
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
    fn resolve(&self, token: &str) -> Result<Identity, ApiError> {
        if self.shared.acl_bootstrap_token.is_none() {
            // ACLs off: no need to take the lock on the hot read path.
            return Ok(Identity::Disabled);
        }
        self.lock().acl.resolve(self.shared.acl_bootstrap_token.as_deref(), token)
    }
}

fn meta(index: u64, filtered: bool, who: &Identity) -> QueryMeta {
    QueryMeta { index, filtered: filtered && !who.is_anonymous() }
}

/// A read answer: JSON body (or 404 with no body) plus the `setMeta` headers.
fn read_response(body: Option<Vec<u8>>, m: QueryMeta) -> Response {
    let mut resp = match body {
        Some(b) => json_ok(b),
        None => StatusCode::NOT_FOUND.into_response(),
    };
    set_meta(resp.headers_mut(), m);
    resp
}

fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// Go's `ServeMux` answers a path that is not clean (`//`, `/./`, `/../` in the escaped path, or `/v1/kv` without
/// its slash) with a 301 to the cleaned path before any Consul code runs.
fn mux_redirect(method: &Method, uri: &Uri) -> Option<Response> {
    let raw = uri.path();
    let mut clean = path_clean(raw);
    if raw.ends_with('/') && clean != "/" {
        clean.push('/');
    }
    if raw == "/v1/kv" {
        clean = "/v1/kv/".to_owned();
    }
    if clean == raw {
        return None;
    }
    let location = match uri.query() {
        Some(q) => format!("{clean}?{q}"),
        None => clean,
    };
    let mut resp = StatusCode::MOVED_PERMANENTLY.into_response();
    if *method == Method::GET || *method == Method::HEAD {
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    }
    if *method == Method::GET {
        let escaped = location.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&#34;");
        *resp.body_mut() = Body::from(format!("<a href=\"{escaped}\">Moved Permanently</a>.\n\n"));
    }
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Some(resp)
}

async fn kv(State(c): State<Arc<Consul>>, method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    if let Some(r) = mux_redirect(&method, &uri) {
        return r;
    }
    if let Some(r) = method_gate(&method, &[Method::GET, Method::PUT, Method::DELETE], "OPTIONS,GET,PUT,DELETE") {
        return r;
    }
    match kv_inner(&c, &method, &uri, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn kv_inner(
    c: &Consul,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let q = Query::parse(uri.query());
    let token = parse_token(&q, headers);
    let opts = parse_read_options(&q)?;
    let key = clean_key(&path_suffix(uri, "/v1/kv/"))?;
    if *method == Method::GET {
        if q.has("keys") {
            return kv_keys(c, &q, headers, &token, &opts, key).await;
        }
        return kv_get(c, &q, headers, &token, &opts, key).await;
    }
    if *method == Method::PUT {
        return kv_put(c, &q, headers, &token, key, body).await;
    }
    kv_delete(c, &q, headers, &token, key)
}

async fn kv_get(
    c: &Consul,
    q: &Query,
    headers: &HeaderMap,
    token: &str,
    opts: &ReadOptions,
    key: String,
) -> Result<Response, ApiError> {
    let recurse = q.has("recurse");
    if !recurse && key.is_empty() {
        return Err(ApiError::bad_request("Missing key name"));
    }
    reject_enterprise(q, headers)?;
    let who = c.resolve(token)?;
    if recurse {
        let pass = c
            .blocking(opts, |s| {
                let (index, entries) = s.kv.list(&key);
                let total = entries.len();
                let visible: Vec<_> = entries.into_iter().filter(|e| who.can_read_key(&e.key)).cloned().collect();
                let filtered = visible.len() != total;
                Ok(Pass { index: index.max(1), value: (visible, filtered), not_found: false })
            })
            .await?;
        let (entries, filtered) = pass.value;
        let body = (!entries.is_empty()).then(|| to_json(&entries));
        return Ok(read_response(body, meta(pass.index, filtered, &who)));
    }
    let pass = c
        .blocking(opts, |s| {
            let (index, found) = s.kv.get(&key);
            who.key_read(&key)?;
            Ok(match found {
                Some(e) => Pass { index: e.modify_index, value: Some(e.clone()), not_found: false },
                None => Pass { index, value: None, not_found: true },
            })
        })
        .await?;
    let m = meta(pass.index, false, &who);
    match pass.value {
        Some(e) if q.has("raw") => {
            let mut resp = (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8")),
                    (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
                    (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox")),
                ],
                e.value,
            )
                .into_response();
            set_meta(resp.headers_mut(), m);
            Ok(resp)
        }
        Some(e) => Ok(read_response(Some(to_json(&[e])), m)),
        None => Ok(read_response(None, m)),
    }
}

async fn kv_keys(
    c: &Consul,
    q: &Query,
    headers: &HeaderMap,
    token: &str,
    opts: &ReadOptions,
    prefix: String,
) -> Result<Response, ApiError> {
    reject_enterprise(q, headers)?;
    // The legacy spelling first, so `separator` wins when both are present.
    let mut sep = String::new();
    if q.has("seperator") {
        sep = q.get("seperator").to_owned();
    }
    if q.has("separator") {
        sep = q.get("separator").to_owned();
    }
    let who = c.resolve(token)?;
    let pass = c
        .blocking(opts, |s| {
            let (index, entries) = s.kv.list(&prefix);
            let total = entries.len();
            let visible: Vec<_> = entries.into_iter().filter(|e| who.can_read_key(&e.key)).collect();
            let filtered = visible.len() != total;
            let mut keys: Vec<String> = Vec::new();
            let mut last_cut: Option<String> = None;
            for e in visible {
                let after = &e.key[prefix.len()..];
                match (sep.is_empty(), after.find(sep.as_str())) {
                    (false, Some(at)) => {
                        let cut = &e.key[..prefix.len() + at + sep.len()];
                        // Entries come sorted, so equal cuts are adjacent.
                        if last_cut.as_deref() != Some(cut) {
                            keys.push(cut.to_owned());
                            last_cut = Some(cut.to_owned());
                        }
                    }
                    _ => keys.push(e.key.clone()),
                }
            }
            Ok(Pass { index: index.max(1), value: (keys, filtered), not_found: false })
        })
        .await?;
    let (keys, filtered) = pass.value;
    let body = (!keys.is_empty() || prefix.is_empty()).then(|| to_json(&keys));
    Ok(read_response(body, meta(pass.index, filtered, &who)))
}

async fn kv_put(
    c: &Consul,
    q: &Query,
    headers: &HeaderMap,
    token: &str,
    key: String,
    body: Body,
) -> Result<Response, ApiError> {
    reject_enterprise(q, headers)?;
    if key.is_empty() {
        return Err(ApiError::bad_request("Missing key name"));
    }
    conflicting(q, &["cas", "acquire", "release"])?;
    let flags = if q.has("flags") { parse_uint(q.get("flags"))? } else { 0 };
    let cas = if q.has("cas") { Some(parse_uint(q.get("cas"))?) } else { None };
    let value = read_body(headers, body, MAX_VALUE_SIZE, false).await?;
    let write = if q.has("acquire") {
        KvWrite::Lock(entry(&key, value, flags, q.get("acquire")))
    } else if q.has("release") {
        KvWrite::Unlock(entry(&key, value, flags, q.get("release")))
    } else if let Some(cas) = cas {
        KvWrite::Cas(entry(&key, value, flags, ""), cas)
    } else {
        KvWrite::Set(entry(&key, value, flags, ""))
    };
    let who = c.resolve(token)?;
    who.key_write(&key)?;
    if matches!(write, KvWrite::Lock(_)) && c.lock().in_lock_delay(&key, c.now()) {
        // kvsPreApply: lock-delay answers `false` without reaching Raft.
        return Ok(json_bool(false));
    }
    let is_set = matches!(write, KvWrite::Set(_));
    match c.apply(Op::Kv(write)) {
        Ok(OpResult::Bool(b)) => Ok(json_bool(is_set || b)),
        Ok(_) => Ok(json_bool(true)),
        Err(e) => Err(ApiError::internal(format!("raft apply failed: {e}"))),
    }
}

fn kv_delete(c: &Consul, q: &Query, headers: &HeaderMap, token: &str, key: String) -> Result<Response, ApiError> {
    reject_enterprise(q, headers)?;
    conflicting(q, &["recurse", "cas"])?;
    let write = if q.has("recurse") {
        KvWrite::DeleteTree(key.clone())
    } else if key.is_empty() {
        return Err(ApiError::bad_request("Missing key name"));
    } else if q.has("cas") {
        KvWrite::DeleteCas(key.clone(), parse_uint(q.get("cas"))?)
    } else {
        KvWrite::Delete(key.clone())
    };
    let who = c.resolve(token)?;
    match write {
        KvWrite::DeleteTree(_) => who.key_write_prefix(&key)?,
        _ => who.key_write(&key)?,
    }
    let is_cas = matches!(write, KvWrite::DeleteCas(..));
    match c.apply(Op::Kv(write)) {
        Ok(OpResult::Bool(b)) => Ok(json_bool(!is_cas || b)),
        Ok(_) => Ok(json_bool(true)),
        Err(e) => Err(ApiError::internal(format!("raft apply failed: {e}"))),
    }
}

async fn txn_handler(
    State(c): State<Arc<Consul>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(r) = method_gate(&method, &[Method::PUT], "OPTIONS,PUT") {
        return r;
    }
    match txn_inner(&c, &uri, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn conflict_or_ok(status_ok: bool, body: Vec<u8>) -> Response {
    if status_ok {
        json_ok(body)
    } else {
        (
            StatusCode::CONFLICT,
            [(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"))],
            body,
        )
            .into_response()
    }
}

async fn txn_inner(c: &Consul, uri: &Uri, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    let q = Query::parse(uri.query());
    let token = parse_token(&q, headers);
    let raw = read_body(headers, body, MAX_VALUE_SIZE, true).await?;
    let ops = txn::decode(&raw)?;
    if ops.len() > MAX_TXN_OPS {
        return Err(ApiError::too_large(format!(
            "Transaction contains too many operations ({} > {MAX_TXN_OPS})",
            ops.len()
        )));
    }
    for op in &ops {
        if op.value.len() > MAX_VALUE_SIZE {
            return Err(ApiError::too_large(format!(
                "Value for key {} is too large ({} > {MAX_VALUE_SIZE} bytes)",
                super::http::go_quote(&op.key),
                op.value.len()
            )));
        }
    }
    let writes = ops.iter().filter(|o| o.is_write()).count();
    if writes == 0 {
        // Read-only: `s.parse` runs (consistency and wait/index 400s), then `Txn.Read` without Raft.
        parse_read_options(&q)?;
        let who = c.resolve(&token)?;
        let now = c.now();
        let (outcome, filtered) = {
            let mut s = c.lock();
            let errors = txn::pre_check(&ops, &who, |k| s.in_lock_delay(k, now));
            if !errors.is_empty() {
                (Err(errors), false)
            } else {
                let state = &mut *s;
                match txn::dispatch(&mut state.kv, &state.sessions, 0, &ops, now) {
                    Ok(results) => {
                        let total = results.len();
                        let visible: Vec<_> = results.into_iter().filter(|e| who.can_read_key(&e.key)).collect();
                        let filtered = visible.len() != total;
                        (Ok(visible), filtered)
                    }
                    Err(e) => (Err(e), false),
                }
            }
        };
        let mut resp = conflict_or_ok(outcome.is_ok(), txn::read_body(&outcome, filtered && !who.is_anonymous()));
        resp.headers_mut().insert("x-consul-lastcontact", HeaderValue::from_static("0"));
        resp.headers_mut().insert("x-consul-knownleader", HeaderValue::from_static("true"));
        return Ok(resp);
    }
    let who = c.resolve(&token)?;
    let now = c.now();
    let errors = {
        let s = c.lock();
        txn::pre_check(&ops, &who, |k| s.in_lock_delay(k, now))
    };
    if !errors.is_empty() {
        return Ok(conflict_or_ok(false, txn::write_body(&Err(errors))));
    }
    let outcome = match c.apply(Op::Txn(ops)) {
        Ok(OpResult::Txn(o)) => o,
        Ok(_) => Ok(Vec::new()),
        Err(e) => return Err(ApiError::internal(format!("raft apply failed: {e}"))),
    };
    let outcome = outcome.map(|r| r.into_iter().filter(|e| who.can_read_key(&e.key)).collect());
    Ok(conflict_or_ok(outcome.is_ok(), txn::write_body(&outcome)))
}

async fn session_create(
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

async fn session_destroy(State(c): State<Arc<Consul>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
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

async fn session_renew(State(c): State<Arc<Consul>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
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
    select: impl Fn(&super::session::Session) -> bool,
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

async fn session_info(State(c): State<Arc<Consul>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if let Some(r) = method_gate(&method, &[Method::GET], "OPTIONS,GET") {
        return r;
    }
    let id = path_suffix(&uri, "/v1/session/info/");
    let result = async {
        if id.is_empty() {
            // `s.parse` runs first, so its 400s win over this one.
            parse_read_options(&Query::parse(uri.query()))?;
            return Err(ApiError::bad_request("Missing session"));
        }
        session_read(&c, &uri, &headers, true, |s| s.id == id).await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn session_node(State(c): State<Arc<Consul>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if let Some(r) = method_gate(&method, &[Method::GET], "OPTIONS,GET") {
        return r;
    }
    let node = path_suffix(&uri, "/v1/session/node/");
    let result = async {
        if node.is_empty() {
            parse_read_options(&Query::parse(uri.query()))?;
            return Err(ApiError::bad_request("Missing node name"));
        }
        session_read(&c, &uri, &headers, false, |s| s.node == node).await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn session_list(State(c): State<Arc<Consul>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if let Some(r) = method_gate(&method, &[Method::GET], "OPTIONS,GET") {
        return r;
    }
    session_read(&c, &uri, &headers, false, |_| true).await.unwrap_or_else(IntoResponse::into_response)
}

async fn status_leader(method: Method) -> Response {
    if let Some(r) = method_gate(&method, &[Method::GET], "OPTIONS,GET") {
        return r;
    }
    json_ok(b"\"127.0.0.1:8300\"".to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_key_should_follow_path_clean_and_validation() {
        assert_eq!(clean_key("a//b").unwrap(), "a/b");
        assert_eq!(clean_key("a/./b/").unwrap(), "a/b/");
        assert_eq!(clean_key("a/../b").unwrap(), "b");
        assert_eq!(clean_key("../x").unwrap_err().to_string(), "invalid key name, path traversal is not allowed");
        assert_eq!(
            clean_key(" a").unwrap_err().to_string(),
            "invalid key name, leading/trailing spaces are not allowed"
        );
        assert_eq!(clean_key("a/%2E%2E/b").unwrap_err().to_string(), "invalid key name, path traversal is not allowed");
    }
}
