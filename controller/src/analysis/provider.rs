//! Where measurements come from: a resolved [`Request`] (Prometheus instant query, a JSON value over HTTP, or a
//! webhook call) and the [`Provider`] that answers it. Every call has a timeout; a call that could not be made or
//! read is a [`ProviderError`] (a measurement error, never a failure).

use std::future::Future;
use std::time::Duration;

use crate::expr::Sample;
use crate::prometheus::{self, InstantQuery, QueryError, QueryResult};

/// One call, with its templates already rendered. Identical requests due in one tick are sent once.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Request {
    /// A Prometheus instant query.
    Prometheus {
        /// The server's base URL.
        address: String,
        /// The rendered PromQL.
        query: String,
        /// How long to wait.
        timeout: Duration,
        /// Request headers (from the template).
        headers: Vec<(String, String)>,
    },
    /// A JSON document over HTTP GET, and where the value is in it.
    Web {
        /// The rendered URL.
        url: String,
        /// The value's path (see [`JsonPath`]).
        json_path: String,
        /// How long to wait.
        timeout: Duration,
        /// Request headers.
        headers: Vec<(String, String)>,
    },
    /// A webhook step's call: only its status code matters.
    Webhook {
        /// The rendered URL.
        url: String,
        /// The HTTP method (validated: `GET`, `POST`, `PUT` or `HEAD`).
        method: String,
        /// How long to wait.
        timeout: Duration,
        /// Request headers.
        headers: Vec<(String, String)>,
    },
}

impl Request {
    /// The bounded `provider` label of `drover_analysis_measurements_total`.
    pub fn provider(&self) -> &'static str {
        match self {
            Request::Prometheus { .. } => "prometheus",
            Request::Web { .. } => "web",
            Request::Webhook { .. } => "webhook",
        }
    }

    /// What a measurement record keeps as its `query`: the PromQL, or the method and URL.
    pub fn describe(&self) -> String {
        match self {
            Request::Prometheus { query, .. } => query.clone(),
            Request::Web { url, json_path, .. } => format!("GET {url} {json_path}"),
            Request::Webhook { url, method, .. } => format!("{method} {url}"),
        }
    }

    /// How long the call may take.
    pub fn timeout(&self) -> Duration {
        match self {
            Request::Prometheus { timeout, .. } | Request::Web { timeout, .. } | Request::Webhook { timeout, .. } => {
                *timeout
            }
        }
    }
}

/// What a call answered.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// A value (Prometheus, web).
    Sample(Sample),
    /// A status code (webhook).
    Status(u16),
}

/// A call that could not be made or read: a measurement error. All are retried on the error interval (a run fails
/// only after `consecutiveErrorLimit` of them in a row).
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The Prometheus query failed (unreachable, timeout, refused, an answer that is not a scalar or vector).
    #[error("query failed")]
    Prometheus(#[source] QueryError),
    /// No HTTP answer (connection refused, reset, DNS).
    #[error("{url} did not answer")]
    Unreachable {
        /// The URL.
        url: String,
        /// The transport failure.
        #[source]
        source: reqwest::Error,
    },
    /// No HTTP answer within the timeout.
    #[error("{url} did not answer within {timeout:?}")]
    Timeout {
        /// The URL.
        url: String,
        /// The timeout.
        timeout: Duration,
    },
    /// A web metric's endpoint answered a status other than 2xx.
    #[error("{url} answered HTTP {code}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        code: u16,
    },
    /// The body is not JSON, or holds no number at the path.
    #[error("{url}: {what}")]
    Body {
        /// The URL.
        url: String,
        /// What was wrong.
        what: String,
    },
    /// The request could not be built (a header or method the HTTP library refuses).
    #[error("cannot build the request to {url}: {what}")]
    Request {
        /// The URL.
        url: String,
        /// What was wrong.
        what: String,
    },
}

impl ProviderError {
    /// A bounded label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderError::Prometheus(e) => e.kind(),
            ProviderError::Unreachable { .. } => "unreachable",
            ProviderError::Timeout { .. } => "timeout",
            ProviderError::Status { .. } => "status",
            ProviderError::Body { .. } => "body",
            ProviderError::Request { .. } => "request",
        }
    }
}

/// What the analysis stage needs of the outside world: one call. The real one is [`HttpProvider`]; tests use
/// in-memory models.
pub trait Provider: Send + Sync + 'static {
    /// Makes the call, within its timeout.
    fn call(&self, request: &Request) -> impl Future<Output = Result<Reply, ProviderError>> + Send;
}

/// Prometheus through [`crate::prometheus::Client`], web metrics and webhooks through `reqwest`.
#[derive(Clone, Debug)]
pub struct HttpProvider {
    prometheus: prometheus::Client,
    http: reqwest::Client,
}

impl HttpProvider {
    /// A provider over `http` (built with the process's TLS settings; redirects are not followed, so a webhook's
    /// status code is the one its URL answered).
    pub fn new(http: reqwest::Client) -> HttpProvider {
        HttpProvider { prometheus: prometheus::Client::new(http.clone()), http }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: &[(String, String)],
        timeout: Duration,
    ) -> Result<reqwest::Response, ProviderError> {
        let mut req = self.http.request(method, url).timeout(timeout);
        for (name, value) in headers {
            req = req.header(name, value);
        }
        req.send().await.map_err(|source| transport(url, timeout, source))
    }
}

fn transport(url: &str, timeout: Duration, source: reqwest::Error) -> ProviderError {
    if source.is_timeout() {
        ProviderError::Timeout { url: url.to_string(), timeout }
    } else if source.is_builder() {
        ProviderError::Request { url: url.to_string(), what: crate::error_chain(&source) }
    } else {
        ProviderError::Unreachable { url: url.to_string(), source }
    }
}

/// A Prometheus answer as a sample: a scalar or a one-series vector is one number; any other vector is a list (an
/// empty one is an empty result, judged by `onEmpty`).
pub fn sample_of(result: QueryResult) -> Sample {
    match result {
        QueryResult::Scalar(v) => Sample::Scalar(v),
        QueryResult::Vector(series) => match series.as_slice() {
            [one] => Sample::Scalar(one.value),
            many => Sample::Vector(many.iter().map(|s| s.value).collect()),
        },
    }
}

impl Provider for HttpProvider {
    async fn call(&self, request: &Request) -> Result<Reply, ProviderError> {
        match request {
            Request::Prometheus { address, query, timeout, headers } => {
                let q = InstantQuery { address, query, timeout: *timeout, headers };
                let result = self.prometheus.query(&q).await.map_err(ProviderError::Prometheus)?;
                Ok(Reply::Sample(sample_of(result)))
            }
            Request::Web { url, json_path, timeout, headers } => {
                let path =
                    JsonPath::parse(json_path).map_err(|what| ProviderError::Request { url: url.clone(), what })?;
                let resp = self.send(reqwest::Method::GET, url, headers, *timeout).await?;
                let code = resp.status().as_u16();
                if !resp.status().is_success() {
                    return Err(ProviderError::Status { url: url.clone(), code });
                }
                let bytes = resp.bytes().await.map_err(|e| transport(url, *timeout, e))?;
                let doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| ProviderError::Body {
                    url: url.clone(),
                    what: format!("the body is not JSON ({e})"),
                })?;
                let sample = path.sample(&doc).map_err(|what| ProviderError::Body { url: url.clone(), what })?;
                Ok(Reply::Sample(sample))
            }
            Request::Webhook { url, method, timeout, headers } => {
                let method = reqwest::Method::from_bytes(method.as_bytes())
                    .map_err(|e| ProviderError::Request { url: url.clone(), what: e.to_string() })?;
                let resp = self.send(method, url, headers, *timeout).await?;
                Ok(Reply::Status(resp.status().as_u16()))
            }
        }
    }
}

/// A small JSON path: `$` then `.name` and `[N]` segments (`$.data.errorRate`, `$.items[0].value`, `$[2]`); the
/// leading `$` (and the dot after it) may be left out. No wildcards, filters or quoted names: a web metric points
/// at one value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonPath(Vec<Segment>);

/// One step of a [`JsonPath`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

impl JsonPath {
    /// Parses `text`; the error says what is wrong (validation reports it at `web.jsonPath`).
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let rest = text.trim();
        let rest = rest.strip_prefix('$').unwrap_or(rest);
        let mut segments = Vec::new();
        let mut chars = rest;
        let bad = |why: &str| format!("jsonPath {text:?}: {why} (write e.g. `$.data.items[0].value`)");
        if chars.is_empty() && text.trim() != "$" {
            return Err(bad("empty"));
        }
        let mut first = true;
        while !chars.is_empty() {
            if let Some(after) = chars.strip_prefix('[') {
                let end = after.find(']').ok_or_else(|| bad("`[` without `]`"))?;
                let n = after[..end].trim().parse::<usize>().map_err(|_| bad("an index must be a number"))?;
                segments.push(Segment::Index(n));
                chars = &after[end + 1..];
            } else {
                let after = match chars.strip_prefix('.') {
                    Some(a) => a,
                    None if first && !text.trim().starts_with('$') => chars,
                    None => return Err(bad("expected `.name` or `[N]`")),
                };
                let end = after.find(['.', '[']).unwrap_or(after.len());
                let name = &after[..end];
                if name.is_empty() || name.contains([']', ' ', '*']) {
                    return Err(bad("a name is empty or holds `]`, `*` or a space"));
                }
                segments.push(Segment::Key(name.to_string()));
                chars = &after[end..];
            }
            first = false;
        }
        Ok(JsonPath(segments))
    }

    /// The sample at this path: a number (or a string holding one, as Prometheus writes them) is a scalar, an array
    /// of numbers a vector, `null` an empty result; anything else, or nothing there, is an error.
    pub fn sample(&self, doc: &serde_json::Value) -> Result<Sample, String> {
        let mut at = doc;
        for (i, seg) in self.0.iter().enumerate() {
            let next = match seg {
                Segment::Key(k) => at.get(k),
                Segment::Index(n) => at.get(*n),
            };
            at = next.ok_or_else(|| format!("nothing at {}", self.show(i + 1)))?;
        }
        let number = |v: &serde_json::Value| match v {
            serde_json::Value::Number(n) => n.as_f64(),
            serde_json::Value::String(s) => match s.as_str() {
                "NaN" => Some(f64::NAN),
                "+Inf" | "Inf" => Some(f64::INFINITY),
                "-Inf" => Some(f64::NEG_INFINITY),
                s => s.trim().parse().ok(),
            },
            _ => None,
        };
        match at {
            serde_json::Value::Null => Ok(Sample::Vector(Vec::new())),
            serde_json::Value::Array(items) => items
                .iter()
                .map(|v| number(v).ok_or_else(|| format!("{} holds {v}, not a number", self.show(self.0.len()))))
                .collect::<Result<Vec<f64>, String>>()
                .map(Sample::Vector),
            other => number(other)
                .map(Sample::Scalar)
                .ok_or_else(|| format!("{} holds {other}, not a number", self.show(self.0.len()))),
        }
    }

    fn show(&self, upto: usize) -> String {
        let mut out = "$".to_string();
        for seg in &self.0[..upto] {
            match seg {
                Segment::Key(k) => {
                    out.push('.');
                    out.push_str(k);
                }
                Segment::Index(n) => out.push_str(&format!("[{n}]")),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::prometheus::Series;

    #[test]
    fn json_path_should_read_names_and_indexes() {
        let doc = json!({"data": {"rate": 0.25, "items": [{"v": "1.5"}, {"v": [1, 2]}], "none": null, "s": "x"}});
        let read = |p: &str| JsonPath::parse(p).and_then(|path| path.sample(&doc));
        assert_eq!(read("$.data.rate"), Ok(Sample::Scalar(0.25)));
        assert_eq!(read("data.rate"), Ok(Sample::Scalar(0.25)), "the leading `$.` may be left out");
        assert_eq!(read("$.data.items[0].v"), Ok(Sample::Scalar(1.5)), "a number in a string, as Prometheus writes");
        assert_eq!(read("$.data.items[1].v"), Ok(Sample::Vector(vec![1.0, 2.0])));
        assert_eq!(read("$.data.none"), Ok(Sample::Vector(vec![])), "null is an empty result");
        assert_eq!(read("$.data.items[5].v"), Err("nothing at $.data.items[5]".to_string()));
        assert!(read("$.data.s").is_err_and(|e| e.contains("not a number")), "a string that is no number");
        assert!(read("$.data").is_err(), "an object is not a value");
        for bad in ["", "$.", "$.a[", "$.a[x]", "$..a", "$a", "$.a b", "$.*"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad:?} should not parse");
        }
        assert_eq!(JsonPath::parse("$").and_then(|p| p.sample(&json!(3))), Ok(Sample::Scalar(3.0)));
    }

    #[test]
    fn sample_of_should_make_one_series_a_scalar() {
        let s = |v: f64| Series { labels: BTreeMap::new(), value: v };
        assert_eq!(sample_of(QueryResult::Scalar(2.0)), Sample::Scalar(2.0));
        assert_eq!(sample_of(QueryResult::Vector(vec![s(1.0)])), Sample::Scalar(1.0));
        assert_eq!(sample_of(QueryResult::Vector(vec![s(1.0), s(3.0)])), Sample::Vector(vec![1.0, 3.0]));
        assert_eq!(sample_of(QueryResult::Vector(vec![])), Sample::Vector(vec![]));
    }

    #[test]
    fn describe_should_keep_the_resolved_query_or_method_and_url() {
        let hook = Request::Webhook {
            url: "http://smoke/v7".into(),
            method: "POST".into(),
            timeout: Duration::from_secs(1),
            headers: vec![],
        };
        assert_eq!(hook.describe(), "POST http://smoke/v7");
        assert_eq!(hook.provider(), "webhook");
    }
}
