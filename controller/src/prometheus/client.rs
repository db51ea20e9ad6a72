//! The instant-query client: `GET /api/v1/query` (Prometheus HTTP API, "Instant queries",
//! <https://prometheus.io/docs/prometheus/latest/querying/api/#instant-queries>).
//!
//! Wire facts it relies on (same page, "Format overview" and "Expression query result formats"): the body is
//! `{"status":"success"|"error","data":{"resultType":…,"result":…},"errorType":…,"error":…,"warnings":[…]}`; a bad
//! query is 400 `bad_data`, an execution failure 422 `execution`, a timeout or cancellation 503; sample values are
//! strings (`"1.5"`, `"NaN"`, `"+Inf"`), vectors are `[{"metric":{…},"value":[<unix>,"<v>"]}]`, scalars `[<unix>,"<v>"]`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// One instant query.
#[derive(Clone, Copy, Debug)]
pub struct InstantQuery<'a> {
    /// The server's base URL, e.g. `http://prometheus.service.consul:9090`.
    pub address: &'a str,
    /// The PromQL expression (already rendered from its template).
    pub query: &'a str,
    /// How long to wait for the answer; also sent as the query's own `timeout`.
    pub timeout: Duration,
    /// Extra request headers (e.g. an `Authorization` for a hosted Prometheus).
    pub headers: &'a [(String, String)],
}

/// One series of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value at the query time (may be NaN or infinite).
    pub value: f64,
}

/// What a query answered.
#[derive(Clone, Debug, PartialEq)]
pub enum QueryResult {
    /// A scalar.
    Scalar(f64),
    /// An instant vector.
    Vector(Vec<Series>),
}

/// Why a result is not exactly one number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// No series.
    Empty,
    /// Several series; the count.
    Several(usize),
    /// One value, NaN: never a number to compare (argo-rollouts#1466).
    NaN,
}

impl QueryResult {
    /// The one number this result is: a scalar, or the value of a vector's only series.
    pub fn single(&self) -> Result<f64, Shape> {
        let value = match self {
            QueryResult::Scalar(v) => *v,
            QueryResult::Vector(series) => match series.as_slice() {
                [] => return Err(Shape::Empty),
                [one] => one.value,
                many => return Err(Shape::Several(many.len())),
            },
        };
        if value.is_nan() { Err(Shape::NaN) } else { Ok(value) }
    }
}

/// A query that could not be answered: an error, not a measurement. Each variant says whether a retry can help.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// No answer (connection refused, reset, DNS). Retryable.
    #[error("Prometheus at {address} did not answer")]
    Unreachable {
        /// The server.
        address: String,
        /// The transport failure.
        #[source]
        source: reqwest::Error,
    },
    /// No answer within the timeout (ours, or the server's own 503). Retryable.
    #[error("Prometheus at {address} did not answer within {timeout:?}")]
    Timeout {
        /// The server.
        address: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The server refused the query (`bad_data`, `execution`, …) or failed. Retryable only for 5xx: a query that is
    /// wrong stays wrong.
    #[error("Prometheus at {address} answered {code} {error_type}: {message}")]
    Rejected {
        /// The server.
        address: String,
        /// HTTP status.
        code: u16,
        /// Prometheus's `errorType`.
        error_type: String,
        /// Prometheus's `error`.
        message: String,
    },
    /// The body was not a query answer, or the result type is not scalar or vector (a range query's matrix, a
    /// string). Not retryable.
    #[error("Prometheus at {address} answered something that is not an instant scalar or vector: {what}")]
    Unexpected {
        /// The server.
        address: String,
        /// What was wrong.
        what: String,
    },
}

impl QueryError {
    /// A bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            QueryError::Unreachable { .. } => "unreachable",
            QueryError::Timeout { .. } => "timeout",
            QueryError::Rejected { .. } => "rejected",
            QueryError::Unexpected { .. } => "unexpected",
        }
    }

    /// True when asking again may answer.
    pub fn is_retryable(&self) -> bool {
        match self {
            QueryError::Unreachable { .. } | QueryError::Timeout { .. } => true,
            QueryError::Rejected { code, .. } => *code >= 500,
            QueryError::Unexpected { .. } => false,
        }
    }
}

/// A Prometheus HTTP API client. Cheap to clone; one per process (addresses are per query).
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Body {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct VectorSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

impl Client {
    /// A client over `http` (built with the process's TLS settings).
    pub fn new(http: reqwest::Client) -> Client {
        Client { http }
    }

    /// Runs one instant query at the server's current time.
    pub async fn query(&self, q: &InstantQuery<'_>) -> Result<QueryResult, QueryError> {
        let address = q.address.trim_end_matches('/');
        let url = format!("{address}/api/v1/query");
        let timeout = format!("{}ms", q.timeout.as_millis().max(1));
        let mut req =
            self.http.get(&url).query(&[("query", q.query), ("timeout", timeout.as_str())]).timeout(q.timeout);
        for (name, value) in q.headers {
            req = req.header(name, value);
        }
        let address = address.to_string();
        let transport = |source: reqwest::Error| match source.is_timeout() {
            true => QueryError::Timeout { address: address.clone(), timeout: q.timeout },
            false => QueryError::Unreachable { address: address.clone(), source },
        };
        let resp = req.send().await.map_err(transport)?;
        let code = resp.status().as_u16();
        let text = resp.text().await.map_err(transport)?;
        let body: Body = serde_json::from_str(&text).map_err(|e| QueryError::Unexpected {
            address: address.clone(),
            what: format!("HTTP {code}, body is not the API's JSON ({e})"),
        })?;
        if body.status != "success" || code >= 300 {
            return Err(QueryError::Rejected {
                address,
                code,
                error_type: body.error_type.unwrap_or_default(),
                message: body.error.unwrap_or_default(),
            });
        }
        let Some(data) = body.data else {
            return Err(QueryError::Unexpected { address, what: "no data".into() });
        };
        parse_result(&address, &data)
    }
}

fn parse_value(address: &str, text: &str) -> Result<f64, QueryError> {
    // Go's strconv.FormatFloat spellings: NaN, +Inf, -Inf, and plain decimals.
    match text {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => text.parse::<f64>().map_err(|_| QueryError::Unexpected {
            address: address.to_string(),
            what: format!("sample value {text:?} is not a number"),
        }),
    }
}

fn parse_result(address: &str, data: &Data) -> Result<QueryResult, QueryError> {
    let unexpected = |what: String| QueryError::Unexpected { address: address.to_string(), what };
    match data.result_type.as_str() {
        "scalar" => {
            let (_, v): (f64, String) =
                serde_json::from_value(data.result.clone()).map_err(|e| unexpected(format!("scalar: {e}")))?;
            Ok(QueryResult::Scalar(parse_value(address, &v)?))
        }
        "vector" => {
            let samples: Vec<VectorSample> =
                serde_json::from_value(data.result.clone()).map_err(|e| unexpected(format!("vector: {e}")))?;
            let series = samples
                .into_iter()
                .map(|s| Ok(Series { labels: s.metric, value: parse_value(address, &s.value.1)? }))
                .collect::<Result<Vec<_>, QueryError>>()?;
            Ok(QueryResult::Vector(series))
        }
        other => Err(unexpected(format!("result type {other:?} (write the query to return one number)"))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn data(v: serde_json::Value) -> Data {
        serde_json::from_value(v).expect("data")
    }

    #[test]
    fn parse_result_should_read_scalars_and_vectors_with_nan_and_inf() {
        let scalar = data(json!({"resultType": "scalar", "result": [1.7e9, "0.25"]}));
        assert_eq!(parse_result("p", &scalar).ok(), Some(QueryResult::Scalar(0.25)));
        let vector = data(json!({"resultType": "vector", "result": [
            {"metric": {"job": "web"}, "value": [1.7e9, "+Inf"]},
            {"metric": {}, "value": [1.7e9, "NaN"]}]}));
        let Ok(QueryResult::Vector(series)) = parse_result("p", &vector) else { panic!("a vector") };
        assert_eq!(series[0].value, f64::INFINITY);
        assert!(series[1].value.is_nan());
        let matrix = data(json!({"resultType": "matrix", "result": []}));
        assert!(matches!(parse_result("p", &matrix), Err(QueryError::Unexpected { .. })));
        let garbage = data(json!({"resultType": "vector", "result": [{"value": [1, "x"]}]}));
        assert!(matches!(parse_result("p", &garbage), Err(QueryError::Unexpected { .. })));
    }

    #[test]
    fn single_should_be_one_number_or_say_why_not() {
        let one = |v: f64| Series { labels: BTreeMap::new(), value: v };
        assert_eq!(QueryResult::Scalar(3.0).single(), Ok(3.0));
        assert_eq!(QueryResult::Vector(vec![one(2.0)]).single(), Ok(2.0));
        assert_eq!(QueryResult::Vector(vec![]).single(), Err(Shape::Empty));
        assert_eq!(QueryResult::Vector(vec![one(1.0), one(2.0)]).single(), Err(Shape::Several(2)));
        assert_eq!(QueryResult::Scalar(f64::NAN).single(), Err(Shape::NaN));
        assert_eq!(QueryResult::Vector(vec![one(f64::NAN)]).single(), Err(Shape::NaN));
    }

    #[test]
    fn retryable_should_follow_the_status() {
        let rejected = |code| QueryError::Rejected {
            address: "p".into(),
            code,
            error_type: "bad_data".into(),
            message: "parse error".into(),
        };
        assert!(!rejected(400).is_retryable(), "a wrong query stays wrong");
        assert!(rejected(503).is_retryable());
        assert!(QueryError::Timeout { address: "p".into(), timeout: Duration::from_secs(1) }.is_retryable());
    }
}
