//! Request parsing shared by every Consul endpoint: the query string (presence-based flags), the token, the
//! consistency and blocking parameters, Enterprise-only parameters, and the headers set on reads (api-contract.md A1/A2).

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;

use super::error::ApiError;

/// A parsed query string that keeps Go's `url.Values` semantics: every key with all its values, and flags that are
/// on by mere presence (`?recurse=false` still recurses).
#[derive(Debug, Default, Clone)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses a raw query string like Go's `url.ParseQuery` (`+` is a space, `%XX` is decoded).
    pub fn parse(raw: Option<&str>) -> Query {
        let mut pairs = Vec::new();
        for part in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            pairs.push((unescape(k), unescape(v)));
        }
        Query { pairs }
    }

    /// Whether the key is present at all (the value does not matter).
    pub fn has(&self, key: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == key)
    }

    /// The first value of a key, `""` when absent (Go's `Values.Get`).
    pub fn get(&self, key: &str) -> &str {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or("")
    }

    /// Go's `Values.Encode()`: keys sorted, each value query-escaped, as used in `Conflicting flags: ...`.
    pub fn encode(&self) -> String {
        let mut keys: Vec<&str> = self.pairs.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        let mut out = Vec::new();
        for k in keys {
            for (_, v) in self.pairs.iter().filter(|(pk, _)| pk == k) {
                out.push(format!("{}={}", query_escape(k), query_escape(v)));
            }
        }
        out.join("&")
    }
}

fn unescape(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

/// Go's `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Go's `%q` / `strconv.Quote` for the strings Consul puts in error texts.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Parses a Go `time.ParseDuration` string into signed nanoseconds, with Go's error texts
/// (`time: invalid duration "x"`, `time: missing unit in duration "x"`, `time: unknown unit "u" in duration "x"`).
pub fn parse_go_duration(input: &str) -> Result<i128, String> {
    let invalid = || format!("time: invalid duration {}", go_quote(input));
    let mut s = input;
    let mut neg = false;
    if let Some(rest) = s.strip_prefix('-') {
        neg = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let number = &s[start..i];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = number.parse().map_err(|_| invalid())?;
        let ustart = i;
        while i < bytes.len() && !(bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let unit = &s[ustart..i];
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {}", go_quote(input)));
        }
        let scale: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(format!("time: unknown unit {} in duration {}", go_quote(unit), go_quote(input))),
        };
        total += value * scale;
    }
    if total > i64::MAX as f64 {
        return Err(invalid());
    }
    let nanos = total.round() as i128;
    Ok(if neg { -nanos } else { nanos })
}

/// Decodes the first JSON value of a body as Go's `json.Decoder.Decode` does: trailing data is ignored, an empty
/// body is `EOF`, and syntax errors get Go's texts (`unexpected EOF`, `invalid character 'x' looking for beginning
/// of value`; the context words after the character are Go's most common ones, not always its exact ones).
pub fn decode_first_json(body: &[u8]) -> Result<serde_json::Value, String> {
    let mut values = serde_json::Deserializer::from_slice(body).into_iter::<serde_json::Value>();
    match values.next() {
        None => Err("EOF".to_owned()),
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) if e.classify() == serde_json::error::Category::Eof => Err("unexpected EOF".to_owned()),
        Some(Err(e)) => {
            let line_start: usize =
                body.split(|b| *b == b'\n').take(e.line().saturating_sub(1)).map(|l| l.len() + 1).sum();
            let at = line_start + e.column().saturating_sub(1);
            match body.get(at) {
                Some(b'\'') => Err("invalid character '\\'' looking for beginning of value".to_owned()),
                Some(c) if c.is_ascii_graphic() || *c == b' ' => {
                    Err(format!("invalid character '{}' looking for beginning of value", *c as char))
                }
                _ => Err(e.to_string()),
            }
        }
    }
}

/// The consistency mode a read asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Neither flag: the leader answers.
    #[default]
    Default,
    /// `?stale`: any server answers.
    Stale,
    /// `?consistent`: the leader verifies its leadership first.
    Consistent,
}

/// What Consul's `s.parse` extracts for a read: token, consistency, and the blocking parameters.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// The consistency mode.
    pub consistency: Consistency,
    /// `?index=`; 0 means not blocking.
    pub index: u64,
    /// `?wait=` in nanoseconds, if given (may be zero or negative, which means the default wait).
    pub wait: Option<i128>,
}

/// Consul's `parseConsistency` then `parseWait`, with their exact 400 texts.
pub fn parse_read_options(q: &Query) -> Result<ReadOptions, ApiError> {
    let stale = q.has("stale");
    let consistent = q.has("consistent");
    if stale && consistent {
        return Err(ApiError::bad_request("Cannot specify ?stale with ?consistent, conflicting semantics."));
    }
    let consistency = match (stale, consistent) {
        (true, _) => Consistency::Stale,
        (_, true) => Consistency::Consistent,
        _ => Consistency::Default,
    };
    let mut opts = ReadOptions { consistency, ..ReadOptions::default() };
    let wait = q.get("wait");
    if !wait.is_empty() {
        opts.wait = Some(parse_go_duration(wait).map_err(|_| ApiError::bad_request("Invalid wait time"))?);
    }
    let index = q.get("index");
    if !index.is_empty() {
        opts.index = index.parse::<u64>().map_err(|_| ApiError::bad_request("Invalid index"))?;
    }
    Ok(opts)
}

/// The token of a request, in Consul's order: `?token=`, `X-Consul-Token`, `Authorization: Bearer`. Empty means
/// "none", which runs as the anonymous token.
pub fn parse_token(q: &Query, headers: &HeaderMap) -> String {
    let t = q.get("token");
    if !t.is_empty() {
        return t.to_owned();
    }
    if let Some(t) = headers.get("x-consul-token").and_then(|v| v.to_str().ok()).filter(|t| !t.is_empty()) {
        return t.to_owned();
    }
    if let Some(auth) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let parts: Vec<&str> = auth.split(' ').collect();
        if parts.len() > 1 && parts[0].eq_ignore_ascii_case("bearer") {
            let value = parts[1..].join(" ");
            return value.trim().split(' ').next().unwrap_or("").trim().to_owned();
        }
    }
    String::new()
}

/// CE's `parseEntMeta`: any non-empty namespace or partition, in a header or the query, is a 400.
pub fn reject_enterprise(q: &Query, headers: &HeaderMap) -> Result<(), ApiError> {
    let header_set = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).is_some_and(|v| !v.is_empty());
    if header_set("x-consul-namespace") {
        return Err(ApiError::bad_request(
            "Invalid header: \"X-Consul-Namespace\" - Namespaces are a Consul Enterprise feature",
        ));
    }
    if !q.get("ns").is_empty() {
        return Err(ApiError::bad_request(
            "Invalid query parameter: \"ns\" - Namespaces are a Consul Enterprise feature",
        ));
    }
    if header_set("x-consul-partition") {
        return Err(ApiError::bad_request(
            "Invalid header: \"X-Consul-Partition\" - Partitions are a Consul Enterprise feature",
        ));
    }
    if !q.get("partition").is_empty() {
        return Err(ApiError::bad_request(
            "Invalid query parameter: \"partition\" - Partitions are a Consul Enterprise feature",
        ));
    }
    Ok(())
}

/// The metadata `setMeta` writes on a read.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryMeta {
    /// The index of the result (0 is rewritten to 1 on the wire).
    pub index: u64,
    /// Whether ACLs removed entries, reported only for a non-anonymous token.
    pub filtered: bool,
}

/// Adds `X-Consul-Index` (never 0), `X-Consul-KnownLeader`, `X-Consul-LastContact` and, when set,
/// `X-Consul-Results-Filtered-By-ACLs`.
pub fn set_meta(headers: &mut HeaderMap, meta: QueryMeta) {
    headers.insert("x-consul-index", HeaderValue::from(meta.index.max(1)));
    headers.insert("x-consul-knownleader", HeaderValue::from_static("true"));
    headers.insert("x-consul-lastcontact", HeaderValue::from_static("0"));
    if meta.filtered {
        headers.insert("x-consul-results-filtered-by-acls", HeaderValue::from_static("true"));
    }
}

/// A 200 JSON answer with `Content-Type: application/json`.
pub fn json_ok(body: Vec<u8>) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

/// The KV/txn JSON bodies `true` / `false`.
pub fn json_bool(b: bool) -> Response {
    json_ok(if b { b"true".to_vec() } else { b"false".to_vec() })
}

/// Converts nanoseconds (possibly non-positive) to a wait: `None` when the default applies.
pub fn positive_duration(nanos: i128) -> Option<Duration> {
    (nanos > 0).then(|| Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_go_duration_should_match_go() {
        assert_eq!(parse_go_duration("15s"), Ok(15_000_000_000));
        assert_eq!(parse_go_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_go_duration("15000ms"), Ok(15_000_000_000));
        assert_eq!(parse_go_duration("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert_eq!(parse_go_duration("-2s"), Ok(-2_000_000_000));
        assert_eq!(parse_go_duration("15"), Err("time: missing unit in duration \"15\"".into()));
        assert_eq!(parse_go_duration("abc"), Err("time: invalid duration \"abc\"".into()));
        assert_eq!(parse_go_duration("5x"), Err("time: unknown unit \"x\" in duration \"5x\"".into()));
    }

    #[test]
    fn decode_first_json_should_behave_like_a_go_decoder() {
        assert_eq!(decode_first_json(b"[1] trailing"), Ok(serde_json::json!([1])));
        assert_eq!(decode_first_json(b"  "), Err("EOF".to_owned()));
        assert_eq!(decode_first_json(b"[1,"), Err("unexpected EOF".to_owned()));
        assert_eq!(decode_first_json(b"x"), Err("invalid character 'x' looking for beginning of value".to_owned()));
        assert_eq!(
            decode_first_json(b"[1,\n x]"),
            Err("invalid character 'x' looking for beginning of value".to_owned())
        );
    }

    #[test]
    fn query_encode_should_sort_keys_like_go() {
        let q = Query::parse(Some("release=b&cas=1&acquire=a%20b"));
        assert_eq!(q.encode(), "acquire=a+b&cas=1&release=b");
        assert!(Query::parse(Some("recurse=false")).has("recurse"));
    }
}
