//! The Consul connection: base URL, ACL token, per-request timeouts, request metrics, and the error types.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};

use crate::config::{ConsulConfig, Secret};
use crate::metrics::Metrics;
use crate::tls::{self, TlsError, TlsFiles};
use crate::token::Token;

/// Why one HTTP exchange with Consul failed; the `#[source]` of every [`Error`].
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// No usable response: connect failure, timeout, or the body could not be read. Retryable.
    #[error("no response from Consul")]
    Transport(#[source] reqwest::Error),
    /// Consul answered with a redirect to another origin (or a redirect loop), which Drover does not follow so that
    /// its token never reaches another host ([`crate::tls::redirect_policy`]). Not retryable: fix the address.
    #[error("Consul answered with a redirect Drover does not follow")]
    RedirectRefused(#[source] reqwest::Error),
    /// Consul answered with an unexpected status; retryable for 429 and 5xx.
    #[error("Consul answered {code}: {message}")]
    Status {
        /// HTTP status code.
        code: u16,
        /// The plain-text error body, trimmed.
        message: String,
    },
    /// The body was not the JSON this endpoint returns. Not retryable.
    #[error("unexpected response body")]
    Decode(#[source] serde_json::Error),
    /// A required header (`X-Consul-Index`) was missing or not a number. Not retryable.
    #[error("missing or invalid {0} header")]
    BadHeader(&'static str),
}

impl RequestError {
    /// Whether trying again later can succeed: no response, 429, or 5xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Status { code, .. } => *code == 429 || *code >= 500,
            Self::RedirectRefused(_) | Self::Decode(_) | Self::BadHeader(_) => false,
        }
    }

    /// The HTTP status, when Consul answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A failed Consul operation, named for what was attempted and carrying the key it was about.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading one key failed. Retryable when the cause is ([`Error::is_retryable`]).
    #[error("reading Consul key {key:?} failed")]
    GetFailed {
        /// The key.
        key: String,
        /// What went wrong.
        #[source]
        source: RequestError,
    },
    /// Listing a prefix (entries or keys) failed. Retryable when the cause is.
    #[error("listing Consul prefix {prefix:?} failed")]
    ListFailed {
        /// The prefix.
        prefix: String,
        /// What went wrong.
        #[source]
        source: RequestError,
    },
    /// Writing a key (plain, CAS, acquire or release) failed. Retryable when the cause is; a CAS mismatch is not
    /// an error (it is `Ok(false)`).
    #[error("writing Consul key {key:?} failed")]
    PutFailed {
        /// The key.
        key: String,
        /// What went wrong.
        #[source]
        source: RequestError,
    },
    /// Deleting a key failed. Retryable when the cause is.
    #[error("deleting Consul key {key:?} failed")]
    DeleteFailed {
        /// The key.
        key: String,
        /// What went wrong.
        #[source]
        source: RequestError,
    },
    /// A transaction request failed before Consul judged its operations (a rolled-back transaction is not an
    /// error but [`super::TxnOutcome::RolledBack`]). Retryable when the cause is.
    #[error("Consul transaction of {ops} operations (first key {first_key:?}) failed")]
    TxnFailed {
        /// Number of operations sent.
        ops: usize,
        /// The first operation's key, to identify the batch.
        first_key: String,
        /// What went wrong.
        #[source]
        source: RequestError,
    },
    /// A session create, renew or destroy failed (a renew of a missing session is not an error but
    /// [`super::session::Renewed::Gone`]). Retryable when the cause is.
    #[error("Consul session operation on {id:?} failed")]
    SessionFailed {
        /// The session ID (or, for a create, its name).
        id: String,
        /// What went wrong.
        #[source]
        source: RequestError,
    },
    /// A transaction had more operations than Drover sends (contract C8: ≤ 64). Not retryable: split the batch.
    #[error("Consul transaction has {ops} operations, more than the limit of {limit}")]
    TxnTooLarge {
        /// Operations in the rejected batch.
        ops: usize,
        /// The limit.
        limit: usize,
    },
    /// A status write through a transaction was rolled back for a reason other than a stale index (for example an
    /// ACL denial, which Consul reports as a 409 rollback, contract A9). Not retryable.
    #[error("Consul transaction on {key:?} was rejected: {what}")]
    TxnRejected {
        /// The key written.
        key: String,
        /// Consul's reasons, joined.
        what: String,
    },
}

impl Error {
    /// Whether trying again later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::GetFailed { source, .. }
            | Self::ListFailed { source, .. }
            | Self::PutFailed { source, .. }
            | Self::DeleteFailed { source, .. }
            | Self::TxnFailed { source, .. }
            | Self::SessionFailed { source, .. } => source.is_retryable(),
            Self::TxnTooLarge { .. } | Self::TxnRejected { .. } => false,
        }
    }

    /// A bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::GetFailed { .. } => "get_failed",
            Self::ListFailed { .. } => "list_failed",
            Self::PutFailed { .. } => "put_failed",
            Self::DeleteFailed { .. } => "delete_failed",
            Self::TxnFailed { .. } => "txn_failed",
            Self::SessionFailed { .. } => "session_failed",
            Self::TxnTooLarge { .. } => "txn_too_large",
            Self::TxnRejected { .. } => "txn_rejected",
        }
    }

    /// The request-level cause, when there is one.
    pub fn request_error(&self) -> Option<&RequestError> {
        match self {
            Self::GetFailed { source, .. }
            | Self::ListFailed { source, .. }
            | Self::PutFailed { source, .. }
            | Self::DeleteFailed { source, .. }
            | Self::TxnFailed { source, .. }
            | Self::SessionFailed { source, .. } => Some(source),
            Self::TxnTooLarge { .. } | Self::TxnRejected { .. } => None,
        }
    }

    /// True when Consul refused the token (403).
    pub fn is_permission_denied(&self) -> bool {
        self.request_error().and_then(RequestError::status) == Some(403)
    }
}

/// A Consul answer, read in full.
#[derive(Debug)]
pub struct RawResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl RawResponse {
    /// `X-Consul-Index`, which Consul sets on every read (never 0, contract A1), 404s included (C4).
    pub fn index(&self) -> Result<u64, RequestError> {
        header_u64(&self.headers, "x-consul-index").ok_or(RequestError::BadHeader("X-Consul-Index"))
    }

    /// The body as JSON of type `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, RequestError> {
        serde_json::from_slice(&self.body).map_err(RequestError::Decode)
    }

    /// A `Status` error carrying this response's code and text.
    pub fn status_error(&self) -> RequestError {
        RequestError::Status {
            code: self.status.as_u16(),
            message: String::from_utf8_lossy(&self.body).trim().to_owned(),
        }
    }
}

/// Reads a numeric header.
pub(crate) fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// One request to send: `op` is the bounded metric label.
#[derive(Debug)]
pub struct Request<'a> {
    /// Metric label, e.g. `kv_get`.
    pub op: &'static str,
    /// HTTP method.
    pub method: Method,
    /// Already-escaped path starting with `/v1/`.
    pub path: String,
    /// Query parameters; `None` values are presence-only flags.
    pub query: Vec<(&'static str, Option<String>)>,
    /// Request body.
    pub body: Option<&'a [u8]>,
    /// Total time allowed, body included.
    pub timeout: Duration,
}

/// A cheap-to-clone Consul client. `Debug` never shows the token.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Arc<str>,
    token: Option<Token>,
    metrics: Arc<Metrics>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("consul::Client").field("base", &self.base).field("token", &self.token).finish()
    }
}

impl Client {
    /// Builds a client (and its TLS settings) from resolved configuration.
    pub fn new(config: &ConsulConfig, metrics: Arc<Metrics>) -> Result<Self, TlsError> {
        let http = tls::build_http_client(TlsFiles {
            ca_cert: config.ca_cert.as_deref(),
            client_cert: config.client_cert.as_deref(),
            client_key: config.client_key.as_deref(),
        })?;
        Ok(Self { token: config.token.clone(), ..Self::with_http(http, &config.addr, None, metrics) })
    }

    /// Wraps an existing HTTP client; `addr` is a base URL such as `http://127.0.0.1:8500`.
    pub fn with_http(http: reqwest::Client, addr: &str, token: Option<String>, metrics: Arc<Metrics>) -> Self {
        Self {
            http,
            base: Arc::from(addr.trim_end_matches('/')),
            token: token.map(|t| Token::Fixed(Secret::from(t))),
            metrics,
        }
    }

    /// The base URL.
    pub fn addr(&self) -> &str {
        &self.base
    }

    /// Counts a call Consul refused by ACL without a 403 (a transaction's `Errors`).
    pub(crate) fn denied(&self, call: &'static str) {
        self.metrics.permission_denied("consul", call);
    }

    /// The HTTP client (with this server's TLS settings), for the start-up probe ([`crate::probe`]).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends one request, records `consul_request(op, code)` (0 = no response), and reads the whole body.
    ///
    /// Any status comes back as `Ok`: each caller decides what its endpoint's statuses mean (a KV 404 is an empty
    /// answer, a txn 409 a rollback).
    pub async fn send(&self, req: Request<'_>) -> Result<RawResponse, RequestError> {
        let url = format!("{}{}{}", self.base, req.path, tls::encode_query(&req.query));
        let mut builder = self.http.request(req.method, url).timeout(req.timeout);
        if let Some(token) = &self.token {
            builder = builder.header("X-Consul-Token", token.current().expose());
        }
        if let Some(body) = req.body {
            builder = builder.body(body.to_vec());
        }
        let response = match builder.send().await {
            Ok(response) => response,
            Err(err) if err.is_redirect() => {
                self.metrics.consul_request(req.op, 0);
                return Err(RequestError::RedirectRefused(err));
            }
            Err(err) => {
                self.metrics.consul_request(req.op, 0);
                return Err(RequestError::Transport(err));
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        match response.bytes().await {
            Ok(body) => {
                self.metrics.consul_request(req.op, status.as_u16());
                Ok(RawResponse { status, headers, body })
            }
            Err(err) => {
                self.metrics.consul_request(req.op, 0);
                Err(RequestError::Transport(err))
            }
        }
    }
}
