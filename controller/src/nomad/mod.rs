//! Nomad: the HTTP client for jobs and deployments, the event-stream reader, and the live watcher that feeds the
//! live cache.
//!
//! # Layout
//! - [`types`]: the JSON Drover reads (job stubs, jobs, deployments, allocations, event frames).
//! - [`plan`]: the plan answer with its typed diff tree.
//! - [`client`]: the endpoints, with errors classified per contract B17 and C17/C18.
//! - [`events`]: the `/v1/event/stream` NDJSON reader with heartbeat and drop detection (B15, C23).
//! - [`namespaces`]: which namespaces the open event stream covers, and when a new one means reopening it (C25).
//! - `seen`: the watcher's bounded duplicate filter (B15 resume rules).
//! - [`watch`]: the list + stream (or blocking-query fallback) state machine producing [`watch::LiveEvent`]s.

pub mod client;
pub mod events;
pub mod namespaces;
pub mod plan;
pub(crate) mod seen;
pub mod types;
pub mod watch;

use std::time::Duration;

pub use crate::consul::BlockingQuery;
pub use client::Client;
pub use events::EventStream;
pub use types::{AllocStub, Deployment, DeploymentStatus, Job, JobStub, PlanResponse, RegisterResponse};
pub use watch::{LiveEvent, LiveWatchConfig};

/// Nomad's longest blocking wait: 5 min in code, although the docs say 10 (contract B2, C3).
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// Nomad's wait when none (or zero) is given.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);

/// The body prefix of an EnforceIndex conflict (`api.RegisterEnforceIndexErrPrefix`, contract C17).
pub const ENFORCE_INDEX_PREFIX: &str = "Enforcing job modify index";

/// A failed Nomad request. Each variant's doc says whether a retry can help; [`Error::is_retryable`] encodes it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable response (connect failure, timeout, body read error). Retryable.
    #[error("Nomad {endpoint} for {target:?}: no response")]
    Transport {
        /// The endpoint label, e.g. `job_register`.
        endpoint: &'static str,
        /// What the request was about (job ID, deployment ID, namespace).
        target: String,
        /// The transport failure.
        #[source]
        source: reqwest::Error,
    },
    /// A register or scale lost an `EnforceIndex` race (HTTP 500 `Enforcing job modify index …`, C17). Retryable
    /// at once after re-reading the job's `JobModifyIndex`.
    #[error("Nomad job {job_id:?} changed concurrently: {message}")]
    EnforceIndexConflict {
        /// The job.
        job_id: String,
        /// Nomad's message.
        message: String,
    },
    /// Nomad rejected the job as invalid on register or plan (HTTP 500 multierror, C18). Permanent: the job must
    /// change.
    #[error("Nomad rejected job {job_id:?} as invalid: {message}")]
    JobInvalid {
        /// The job.
        job_id: String,
        /// Nomad's validation message.
        message: String,
    },
    /// Nomad refused to change an existing job's kind (HTTP 500, B4 step 6): its type (`cannot update job from type
    /// "service" to "batch"`), or making it periodic or parameterized or no longer so (`cannot update non-periodic
    /// job to being periodic`, …). Permanent: Nomad never allows it for a job that exists, however often it is
    /// sent; the old job must be stopped and purged first, or the app given another job ID.
    #[error("Nomad refused to change the kind of job {job_id:?}: {message}")]
    JobTypeChange {
        /// The job.
        job_id: String,
        /// Nomad's message, which says which transition was refused.
        message: String,
    },
    /// A register or plan into a namespace that does not exist (HTTP 500 `job "<id>" is in nonexistent namespace
    /// "<ns>"`, B4). Not retryable as such: it fails the same way until an operator creates the namespace, so it is
    /// reported, and tried again when the record changes or at the next resync.
    #[error("Nomad namespace {namespace:?} does not exist (job {job_id:?})")]
    NamespaceNotFound {
        /// The job.
        job_id: String,
        /// The missing namespace, as Nomad named it.
        namespace: String,
    },
    /// A redirect to another origin (or a redirect loop) that the client refused to follow, so that `X-Nomad-Token`
    /// never reaches another host ([`crate::tls::redirect_policy`]). Not retryable: the address must be fixed.
    #[error("Nomad {endpoint} for {target:?}: answered with a redirect Drover does not follow")]
    RedirectRefused {
        /// The endpoint label.
        endpoint: &'static str,
        /// What the request was about.
        target: String,
        /// reqwest's redirect error; its source is a [`crate::tls::RedirectRefused`].
        #[source]
        source: reqwest::Error,
    },
    /// HTTP 403: the token lacks a capability or is unknown. Permanent until the token or policy changes.
    #[error("Nomad {endpoint} for {target:?}: permission denied: {message}")]
    PermissionDenied {
        /// The endpoint label.
        endpoint: &'static str,
        /// What the request was about.
        target: String,
        /// Nomad's message.
        message: String,
    },
    /// HTTP 404 where absence is not a normal answer (e.g. scaling a missing job). Permanent for this request.
    #[error("Nomad {endpoint} for {target:?}: not found: {message}")]
    NotFound {
        /// The endpoint label.
        endpoint: &'static str,
        /// What the request was about.
        target: String,
        /// Nomad's message.
        message: String,
    },
    /// Nomad refused the request as such: a 4xx, or a 500 that Nomad uses for a permanent refusal (a write on an
    /// unknown or terminal deployment, promotion with unhealthy canaries, C21). Not retryable as is; re-read first.
    #[error("Nomad {endpoint} for {target:?} was refused ({code}): {message}")]
    Rejected {
        /// The endpoint label.
        endpoint: &'static str,
        /// What the request was about.
        target: String,
        /// HTTP status.
        code: u16,
        /// Nomad's message.
        message: String,
    },
    /// Any other 5xx (no leader, RPC failure, 429 included). Retryable with backoff.
    #[error("Nomad {endpoint} for {target:?} failed ({code}): {message}")]
    ServerError {
        /// The endpoint label.
        endpoint: &'static str,
        /// What the request was about.
        target: String,
        /// HTTP status.
        code: u16,
        /// Nomad's message.
        message: String,
    },
    /// The body was not the JSON this endpoint returns. Not retryable.
    #[error("Nomad {endpoint} for {target:?}: unexpected response body")]
    Decode {
        /// The endpoint label.
        endpoint: &'static str,
        /// What the request was about.
        target: String,
        /// The parse failure.
        #[source]
        source: serde_json::Error,
    },
    /// A read answered without a numeric `X-Nomad-Index`. Not retryable.
    #[error("Nomad {endpoint} for {target:?}: missing or invalid X-Nomad-Index")]
    MissingIndex {
        /// The endpoint label.
        endpoint: &'static str,
        /// What the request was about.
        target: String,
    },
    /// The job JSON given to register or plan has no string `ID`. Not retryable.
    #[error("the job to {endpoint} has no ID")]
    JobWithoutId {
        /// The endpoint label.
        endpoint: &'static str,
    },
    /// The event stream ended or went silent (B15, C23). Retryable: reconnect, then relist.
    #[error("Nomad event stream dropped: {reason}")]
    StreamDropped {
        /// Why the stream is considered gone.
        reason: events::DropReason,
    },
    /// The event stream carried a line that is not JSON. Retryable: reconnect, then relist.
    #[error("Nomad event stream sent an unreadable line")]
    StreamDecode {
        /// The parse failure.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    /// Whether trying again (after a backoff, or after a re-read for a conflict) can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. }
            | Self::EnforceIndexConflict { .. }
            | Self::ServerError { .. }
            | Self::StreamDropped { .. }
            | Self::StreamDecode { .. } => true,
            Self::JobInvalid { .. }
            | Self::JobTypeChange { .. }
            | Self::NamespaceNotFound { .. }
            | Self::RedirectRefused { .. }
            | Self::PermissionDenied { .. }
            | Self::NotFound { .. }
            | Self::Rejected { .. }
            | Self::Decode { .. }
            | Self::MissingIndex { .. }
            | Self::JobWithoutId { .. } => false,
        }
    }

    /// A bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Transport { .. } => "transport",
            Self::EnforceIndexConflict { .. } => "enforce_index_conflict",
            Self::JobInvalid { .. } => "job_invalid",
            Self::JobTypeChange { .. } => "job_type_change",
            Self::NamespaceNotFound { .. } => "namespace_not_found",
            Self::RedirectRefused { .. } => "redirect_refused",
            Self::PermissionDenied { .. } => "permission_denied",
            Self::NotFound { .. } => "not_found",
            Self::Rejected { .. } => "rejected",
            Self::ServerError { .. } => "server_error",
            Self::Decode { .. } => "decode",
            Self::MissingIndex { .. } => "missing_index",
            Self::JobWithoutId { .. } => "job_without_id",
            Self::StreamDropped { .. } => "stream_dropped",
            Self::StreamDecode { .. } => "stream_decode",
        }
    }
}
