//! KV handlers (api-contract.md A3–A5): the mux redirect, key cleaning and validation, GET (single, `recurse`,
//! `keys`, `raw`), PUT (set, `cas`, `acquire`, `release`) and DELETE (plain, `cas`, `recurse`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;

use super::{MAX_VALUE_SIZE, meta, method_gate, path_suffix, read_body, read_response, to_json};
use crate::consul::Consul;
use crate::consul::blocking::Pass;
use crate::consul::error::ApiError;
use crate::consul::http::{
    Query, ReadOptions, go_quote, json_bool, parse_read_options, parse_token, reject_enterprise, set_meta,
};
use crate::consul::state::{KvWrite, Op, OpResult, entry};

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
        ApiError::internal(format!("strconv.ParseUint: parsing {}: {why}", go_quote(s)))
    })
}

/// A 400 `Conflicting flags` when more than one of `flags` is present.
fn conflicting(q: &Query, flags: &[&str]) -> Result<(), ApiError> {
    if flags.iter().filter(|f| q.has(f)).count() > 1 {
        return Err(ApiError::bad_request(format!("Conflicting flags: {}\n", q.encode())));
    }
    Ok(())
}

/// Go's `ServeMux` answers a path that is not clean (`//`, `/./`, `/../` in the escaped path, or `/v1/kv` without
/// its slash) with a 301 to the cleaned path before any Consul code runs.
fn mux_redirect(method: &Method, uri: &Uri) -> Option<Response> {
    let raw = uri.path();
    let unclean = raw == "/v1/kv"
        || raw.contains("//")
        || raw.contains("/./")
        || raw.contains("/../")
        || raw.ends_with("/.")
        || raw.ends_with("/..");
    if !unclean {
        return None;
    }
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

pub(super) async fn kv(
    State(c): State<Arc<Consul>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
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
        // Each pass of a blocking query only computes the prefix index (every KV write anywhere re-runs it);
        // the entries are copied once, when the query answers.
        let list = |s: &super::super::state::ConsulState| {
            let (index, entries) = s.kv.list(&key);
            let total = entries.len();
            let visible: Vec<_> = entries.into_iter().filter(|e| who.can_read_key(&e.key)).cloned().collect();
            let filtered = visible.len() != total;
            (index.max(1), visible, filtered)
        };
        let (index, entries, filtered) = if opts.index == 0 {
            list(&c.lock())
        } else {
            c.blocking(opts, |s| Ok(Pass { index: s.kv.list(&key).0.max(1), value: (), not_found: false })).await?;
            // The body and its index are read together, so they always agree.
            list(&c.lock())
        };
        let body = (!entries.is_empty()).then(|| to_json(&entries));
        return Ok(read_response(body, meta(index, filtered, &who)));
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
    // Copied: the body is a slice of the connection's read buffer, which a stored value would pin (KBs per key).
    let value = bytes::Bytes::copy_from_slice(&read_body(headers, body, MAX_VALUE_SIZE, false).await?);
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
