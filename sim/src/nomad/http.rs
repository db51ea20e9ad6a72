//! HTTP plumbing shared by the Nomad routes: query parsing (B1/B2), tokens, blocking queries,
//! response headers, and body decoding with Nomad's error texts.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;

use super::Nomad;
use super::acl::{Caller, anonymous};
use super::error::ApiError;
use super::state::NomadState;
use crate::Server;

/// Maximum blocking time (`MaxBlockingRPCQueryTime`), also the default.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// Parsed query string.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// All pairs, decoded, in order.
    pub pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Query {
        let dec = |s: &str| {
            let s = s.replace('+', " ");
            percent_encoding::percent_decode_str(&s).decode_utf8_lossy().into_owned()
        };
        let pairs = raw
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (dec(k), dec(v)),
                None => (dec(p), String::new()),
            })
            .collect();
        Query { pairs }
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
    }

    /// `namespace`, default `default`.
    pub fn namespace(&self) -> String {
        match self.get("namespace") {
            Some(ns) if !ns.is_empty() => ns.to_string(),
            _ => "default".into(),
        }
    }

    /// A boolean parameter parsed by value with `strconv.ParseBool` (B1); absent or empty = false.
    pub fn bool(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None | Some("") => Ok(false),
            Some(v) => parse_go_bool(v).ok_or_else(|| {
                ApiError::internal(format!(
                    "Failed to parse value of \"{name}\" ({v}) as a bool: strconv.ParseBool: parsing \"{v}\": invalid syntax"
                ))
            }),
        }
    }

    /// `stale`, `index` and `wait` (B1/B2).
    pub fn blocking(&self) -> Result<(u64, Duration), ApiError> {
        if let Some(v) = self.get("stale")
            && !v.is_empty()
            && parse_go_bool(v).is_none()
        {
            return Err(ApiError::bad_request("Expect `true` or `false` for `stale` query string parameter"));
        }
        let index = match self.get("index") {
            None => 0,
            Some(v) => v.parse::<u64>().map_err(|_| ApiError::bad_request("Invalid index"))?,
        };
        let wait = match self.get("wait") {
            None => Duration::ZERO,
            Some(v) => parse_go_duration(v).ok_or_else(|| ApiError::bad_request("Invalid wait time"))?,
        };
        Ok((index, wait))
    }
}

/// `strconv.ParseBool`.
pub fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// `time.ParseDuration` for the common forms (`10s`, `1m30s`, `250ms`, `0`).
pub fn parse_go_duration(v: &str) -> Option<Duration> {
    if v == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = v;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    // Go's `time.Duration` is int64 nanoseconds: ParseDuration refuses anything longer ("invalid duration"), and
    // `Duration::from_secs_f64` would panic on a value too large for it (`wait=99999999999999999999h`).
    if total > MAX_GO_DURATION_SECS {
        return None;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// The longest duration Go can hold: `math.MaxInt64` nanoseconds, about 292 years.
const MAX_GO_DURATION_SECS: f64 = i64::MAX as f64 / 1e9;

/// Resolves the caller's token (`X-Nomad-Token` wins over `Authorization: Bearer`).
pub fn caller(nomad: &Nomad, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let Some(boot) = nomad.shared.acl_bootstrap_token.as_deref() else {
        return Ok(Caller::Open);
    };
    let secret = headers
        .get("X-Nomad-Token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(|s| s.trim().to_string())
        })
        .filter(|s| !s.is_empty());
    let Some(secret) = secret else {
        return Ok(Caller::Token(anonymous()));
    };
    if secret == boot {
        return Ok(Caller::Token(super::acl::Token {
            accessor: super::acl::BOOTSTRAP_ACCESSOR.into(),
            name: "Bootstrap Token".into(),
            management: true,
            namespaces: Default::default(),
        }));
    }
    match nomad.lock().t.acl.tokens.get(&secret) {
        Some(t) => Ok(Caller::Token(t.clone())),
        None => Err(ApiError::permission_denied()),
    }
}

/// Answers a blocking query: re-runs `f` until its index passes `min_index` or the wait (clamped
/// to 5 min, default 5 min, plus jitter in [0, wait/16)) times out, then returns the last result.
pub async fn block<T>(nomad: &Nomad, q: &Query, f: impl Fn(&NomadState) -> (T, u64)) -> Result<(T, u64), ApiError> {
    let (min_index, wait) = q.blocking()?;
    if min_index == 0 {
        return Ok(f(&nomad.lock()));
    }
    let wait = if wait.is_zero() || wait > MAX_WAIT { MAX_WAIT } else { wait };
    let wait = wait + nomad.shared.random_below(wait / 16);
    let clock = nomad.shared.clock.clone();
    let deadline = clock.now() + wait;
    let mut rx = nomad.index_rx.clone();
    loop {
        rx.borrow_and_update();
        let (v, idx) = f(&nomad.lock());
        if idx > min_index || clock.now() >= deadline {
            return Ok((v, idx));
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return Ok((v, idx)); },
            _ = clock.sleep_until(deadline) => {}
        }
    }
}

/// Like [`block`], for large lists: `index` is checked first and `body` (which should only clone
/// what it needs, to keep the lock short) runs once, when the query returns.
pub async fn block_list<T>(
    nomad: &Nomad,
    q: &Query,
    index: impl Fn(&NomadState) -> u64,
    body: impl Fn(&NomadState) -> T,
) -> Result<(T, u64), ApiError> {
    let (min_index, wait) = q.blocking()?;
    let wait = if wait.is_zero() || wait > MAX_WAIT { MAX_WAIT } else { wait };
    let wait = wait + nomad.shared.random_below(wait / 16);
    let clock = nomad.shared.clock.clone();
    let deadline = clock.now() + wait;
    let mut rx = nomad.index_rx.clone();
    loop {
        rx.borrow_and_update();
        {
            let st = nomad.lock();
            let idx = index(&st);
            if min_index == 0 || idx > min_index || clock.now() >= deadline {
                return Ok((body(&st), idx));
            }
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { let st = nomad.lock(); return Ok((body(&st), index(&st))); },
            _ = clock.sleep_until(deadline) => {}
        }
    }
}

fn json_bytes(body: &Value, q: &Query) -> Vec<u8> {
    let pretty = q.get("pretty").is_some_and(|v| v.is_empty() || parse_go_bool(v) == Some(true));
    let mut out = if pretty { serde_json::to_vec_pretty(body) } else { serde_json::to_vec(body) }.unwrap_or_default();
    if pretty {
        out.push(b'\n');
    }
    out
}

/// A read response: JSON with `X-Nomad-Index`, `X-Nomad-KnownLeader`, `X-Nomad-LastContact`.
pub fn read_response(nomad: &Nomad, q: &Query, body: &Value, index: u64) -> Response {
    let mut resp = (StatusCode::OK, json_bytes(body, q)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert("X-Nomad-Index", HeaderValue::from(index.max(1)));
    let leader = if nomad.shared.has_leader(Server::Nomad) { "true" } else { "false" };
    h.insert("X-Nomad-KnownLeader", HeaderValue::from_static(leader));
    h.insert("X-Nomad-LastContact", HeaderValue::from_static("0"));
    resp
}

/// A write response: JSON with only `X-Nomad-Index`.
pub fn write_response(q: &Query, body: &Value, index: u64) -> Response {
    let mut resp = (StatusCode::OK, json_bytes(body, q)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert("X-Nomad-Index", HeaderValue::from(index.max(1)));
    resp
}

/// Decodes a request body into a JSON object as `decodeBody` would accept it.
pub fn decode_body(body: &Bytes, go_type: &str) -> Result<serde_json::Map<String, Value>, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("Request body is empty"));
    }
    let v: Value = super::gojson::decode_first(body).map_err(ApiError::bad_request)?;
    match v {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(serde_json::Map::new()),
        other => {
            let kind = match other {
                Value::Array(_) => "array",
                Value::String(_) => "string",
                Value::Bool(_) => "bool",
                _ => "number",
            };
            Err(ApiError::bad_request(format!("json: cannot unmarshal {kind} into Go value of type {go_type}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_go_duration_should_refuse_what_go_cannot_hold_instead_of_panicking() {
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("2562047h"), Some(Duration::from_secs(2_562_047 * 3600)));
        assert_eq!(parse_go_duration("2562048h"), None, "past int64 nanoseconds Go says `invalid duration`");
        assert_eq!(parse_go_duration("99999999999999999999h"), None);
    }
}
