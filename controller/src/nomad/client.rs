//! The Nomad HTTP client: jobs, plans, deployments, allocations, scaling, and the event-stream subscription.
//!
//! Every call sends `X-Nomad-Token` (when set), `?region=` (when set) and an explicit `?namespace=` (C25). Errors are
//! classified from status and body (B17): an EnforceIndex race and a validation failure are both HTTP 500, told apart
//! by their text (C17, C18).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt as _;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::time::Instant;

use super::events::EventStream;
use super::namespaces::Namespace;
use super::types::{AllocStub, Deployment, DeploymentUpdateResponse, Job, JobStub, PlanResponse, RegisterResponse};
use super::{BlockingQuery, DEFAULT_WAIT, ENFORCE_INDEX_PREFIX, Error, MAX_WAIT};
use crate::config::{NomadConfig, Secret};
use crate::consul::client::header_u64;
use crate::metrics::Metrics;
use crate::tls::{self, REQUEST_TIMEOUT, TlsError, TlsFiles, encode_segment};

/// A Nomad answer, read in full.
#[derive(Debug)]
struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// One request: `endpoint` is the bounded metric label, `target` the ID errors name.
struct Call<'a> {
    endpoint: &'static str,
    target: &'a str,
    method: Method,
    path: String,
    query: Vec<(&'static str, Option<String>)>,
    body: Option<Vec<u8>>,
    timeout: Duration,
}

impl<'a> Call<'a> {
    /// A request in `namespace`, with no body and the usual timeout.
    fn new(endpoint: &'static str, target: &'a str, method: Method, path: String, namespace: &str) -> Self {
        Call {
            endpoint,
            target,
            method,
            path,
            query: vec![("namespace", Some(namespace.to_owned()))],
            body: None,
            timeout: REQUEST_TIMEOUT,
        }
    }

    /// Sends `body` as JSON.
    fn json(mut self, body: &serde_json::Value) -> Self {
        self.body = Some(body.to_string().into_bytes());
        self
    }

    /// Adds a query parameter.
    fn param(mut self, name: &'static str, value: &str) -> Self {
        self.query.push((name, Some(value.to_owned())));
        self
    }

    /// Makes it a blocking query, with a timeout that outlasts the server's wait (C3).
    fn blocking(mut self, query: BlockingQuery) -> Self {
        self.query.extend(query.params());
        self.timeout = blocking_timeout(&query);
        self
    }
}

/// A cheap-to-clone Nomad client. `Debug` never shows the token.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Arc<str>,
    token: Option<Secret>,
    region: Option<Arc<str>>,
    metrics: Arc<Metrics>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("nomad::Client")
            .field("base", &self.base)
            .field("region", &self.region)
            .field("token", &self.token)
            .finish()
    }
}

/// True for Go's multierror text, `1 error occurred:` / `3 errors occurred:`.
fn is_multierror(message: &str) -> bool {
    let digits = message.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && {
        let rest = &message[digits..];
        rest.starts_with(" error occurred:") || rest.starts_with(" errors occurred:")
    }
}

/// The refusals of `validateJobUpdate` (B4 step 6, nomad/job_endpoint.go): an existing job's type, periodic or
/// parameterized nature cannot change. Matched whole, as prefixes, so no other message is taken for one.
const JOB_KIND_CHANGE_PREFIXES: [&str; 5] = [
    "cannot update job from type ",
    "cannot update non-periodic job to being periodic",
    "cannot update periodic job to being non-periodic",
    "cannot update non-parameterized job to being parameterized",
    "cannot update parameterized job to being non-parameterized",
];

/// The namespace in `job "<id>" is in nonexistent namespace "<ns>"` (B4; the state store's text, quoted with Go's
/// `%q`, which leaves namespace names, `[a-zA-Z0-9-]{1,128}`, unescaped).
fn nonexistent_namespace(message: &str) -> Option<&str> {
    let (head, rest) = message.split_once("\" is in nonexistent namespace \"")?;
    head.starts_with("job \"").then_some(())?;
    rest.strip_suffix('"').filter(|ns| !ns.is_empty() && !ns.contains('"'))
}

/// Maps a non-success answer to an error (B17).
fn classify(endpoint: &'static str, target: &str, code: u16, message: String) -> Error {
    let target = target.to_owned();
    let job_write = matches!(endpoint, "job_register" | "job_plan");
    let deployment_write = matches!(endpoint, "deployment_promote" | "deployment_fail" | "deployment_pause");
    // B4: the state store refuses a job in a namespace that does not exist.
    if code == 500
        && job_write
        && let Some(namespace) = nonexistent_namespace(&message)
    {
        return Error::NamespaceNotFound { job_id: target, namespace: namespace.to_owned() };
    }
    match code {
        403 => Error::PermissionDenied { endpoint, target, message },
        404 => Error::NotFound { endpoint, target, message },
        // C17: a lost EnforceIndex race is a 500, recognised by its prefix (register and scale).
        500 if message.starts_with(ENFORCE_INDEX_PREFIX) => Error::EnforceIndexConflict { job_id: target, message },
        // B4 step 6: a job's type, periodic or parameterized nature never changes, however often it is sent.
        500 if job_write && JOB_KIND_CHANGE_PREFIXES.iter().any(|p| message.starts_with(p)) => {
            Error::JobTypeChange { job_id: target, message }
        }
        // C18: validation failures of register/plan are 500s that will never succeed as sent.
        500 if job_write && (is_multierror(&message) || message.contains("validation failed")) => {
            Error::JobInvalid { job_id: target, message }
        }
        // C21: unknown or terminal deployments and unhealthy canaries are 500s, but permanent.
        500 if deployment_write
            && (message.contains("deployment not found")
                || message.contains("terminal deployment")
                || message.contains("healthy allocations")) =>
        {
            Error::Rejected { endpoint, target, code, message }
        }
        // B9: a revert of a missing job or version, to the current version, or whose EnforcePriorVersion no longer
        // holds: the job moved on, so sending it again as is cannot succeed (re-read first).
        500 if endpoint == "job_revert"
            && (message.contains("not found")
                || message.starts_with("can't revert to current version")
                || (message.starts_with("Current job has version ") && message.contains("; enforcing version "))) =>
        {
            Error::Rejected { endpoint, target, code, message }
        }
        400..=499 if code != 429 => Error::Rejected { endpoint, target, code, message },
        _ => Error::ServerError { endpoint, target, code, message },
    }
}

/// A send failure: [`Error::RedirectRefused`] when the redirect policy stopped it, else what `other` makes of it.
fn refused_redirect_or(
    err: reqwest::Error,
    endpoint: &'static str,
    target: &str,
    other: impl FnOnce(reqwest::Error) -> Error,
) -> Error {
    if err.is_redirect() {
        Error::RedirectRefused { endpoint, target: target.to_owned(), source: err }
    } else {
        other(err)
    }
}

fn job_id_of(job: &serde_json::Value, endpoint: &'static str) -> Result<String, Error> {
    job.get("ID")
        .and_then(serde_json::Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or(Error::JobWithoutId { endpoint })
}

fn blocking_timeout(query: &BlockingQuery) -> Duration {
    if query.is_blocking() { tls::blocking_timeout(query.wait, DEFAULT_WAIT, MAX_WAIT) } else { REQUEST_TIMEOUT }
}

impl Client {
    /// Builds a client (and its TLS settings) from resolved configuration.
    pub fn new(config: &NomadConfig, metrics: Arc<Metrics>) -> Result<Self, TlsError> {
        let http = tls::build_http_client(TlsFiles {
            ca_cert: config.ca_cert.as_deref(),
            client_cert: config.client_cert.as_deref(),
            client_key: config.client_key.as_deref(),
        })?;
        Ok(Self {
            token: config.token.clone(),
            ..Self::with_http(http, &config.addr, None, config.region.clone(), metrics)
        })
    }

    /// Wraps an existing HTTP client; `addr` is a base URL such as `http://127.0.0.1:4646`.
    pub fn with_http(
        http: reqwest::Client,
        addr: &str,
        token: Option<String>,
        region: Option<String>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            http,
            base: Arc::from(addr.trim_end_matches('/')),
            token: token.map(Secret::from),
            region: region.map(Arc::from),
            metrics,
        }
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        mut query: Vec<(&'static str, Option<String>)>,
    ) -> reqwest::RequestBuilder {
        if let Some(region) = &self.region {
            query.push(("region", Some(region.to_string())));
        }
        let url = format!("{}{}{}", self.base, path, tls::encode_query(&query));
        let mut builder = self.http.request(method, url);
        if let Some(token) = &self.token {
            builder = builder.header("X-Nomad-Token", token.expose());
        }
        builder
    }

    /// Sends one request and reads the whole body, recording `nomad_request(endpoint, code, elapsed)`.
    async fn send(&self, call: Call<'_>) -> Result<Response, Error> {
        let started = Instant::now();
        let mut builder = self.request(call.method, &call.path, call.query).timeout(call.timeout);
        if let Some(body) = call.body {
            builder = builder.header("Content-Type", "application/json").body(body);
        }
        let transport = |source| Error::Transport { endpoint: call.endpoint, target: call.target.to_owned(), source };
        let response = match builder.send().await {
            Ok(response) => response,
            Err(err) => {
                self.metrics.nomad_request(call.endpoint, 0, started.elapsed());
                return Err(refused_redirect_or(err, call.endpoint, call.target, transport));
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await;
        self.metrics.nomad_request(call.endpoint, if body.is_ok() { status.as_u16() } else { 0 }, started.elapsed());
        let body = body.map_err(transport)?;
        Ok(Response { status, headers, body })
    }

    /// Sends, then parses a 200 body as `T`; any other status is classified.
    async fn send_json<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<(T, Option<u64>), Error> {
        let (endpoint, target) = (call.endpoint, call.target.to_owned());
        let response = self.send(call).await?;
        if response.status != StatusCode::OK {
            let message = String::from_utf8_lossy(&response.body).trim().to_owned();
            return Err(classify(endpoint, &target, response.status.as_u16(), message));
        }
        let value = serde_json::from_slice(&response.body).map_err(|source| Error::Decode {
            endpoint,
            target: target.clone(),
            source,
        })?;
        Ok((value, header_u64(&response.headers, "x-nomad-index")))
    }

    /// Like [`Self::send_json`] for a read whose index the caller needs.
    async fn read_indexed<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<(T, u64), Error> {
        let (endpoint, target) = (call.endpoint, call.target.to_owned());
        let (value, index) = self.send_json(call).await?;
        let index = index.ok_or(Error::MissingIndex { endpoint, target })?;
        Ok((value, index))
    }

    /// Like [`Self::send_json`], with a 404 meaning "absent".
    async fn read_optional<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<Option<T>, Error> {
        match self.send_json::<Option<T>>(call).await {
            Ok((value, _)) => Ok(value),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Lists every job in every namespace the token may see (`namespace=*`, `meta=true`), blocking per `query`.
    /// Returns the stubs and `X-Nomad-Index`.
    pub async fn list_jobs(&self, query: BlockingQuery) -> Result<(Vec<JobStub>, u64), Error> {
        self.read_indexed(
            Call::new("jobs_list", "*", Method::GET, "/v1/jobs".to_owned(), "*").param("meta", "true").blocking(query),
        )
        .await
    }

    /// Lists the namespaces the token may see (`GET /v1/namespaces`, a blocking query whose index is the
    /// `namespaces` table index, floored at 1; nomad/namespace_endpoint.go `ListNamespaces`). The `namespace`
    /// parameter does not apply to this endpoint and is left at `default`.
    pub async fn list_namespaces(&self, query: BlockingQuery) -> Result<(Vec<Namespace>, u64), Error> {
        self.read_indexed(
            Call::new("namespaces_list", "*", Method::GET, "/v1/namespaces".to_owned(), "default").blocking(query),
        )
        .await
    }

    /// Reads one job; `None` when it does not exist (404 `job not found`).
    pub async fn job(&self, namespace: &str, id: &str) -> Result<Option<Job>, Error> {
        self.read_optional(Call::new("job_read", id, Method::GET, format!("/v1/job/{}", encode_segment(id)), namespace))
            .await
    }

    /// Registers `job` (the API JSON, with a string `ID`) in `namespace`.
    ///
    /// `enforce_index`: `Some(n)` registers only if the stored `JobModifyIndex` is `n` (`Some(0)`: only if the job
    /// does not exist); a lost race is [`Error::EnforceIndexConflict`]. Take `n` from a job read, never from a
    /// register reply (C15). `preserve_counts` keeps the live group counts (B4).
    pub async fn register(
        &self,
        namespace: &str,
        job: &serde_json::Value,
        enforce_index: Option<u64>,
        preserve_counts: bool,
    ) -> Result<RegisterResponse, Error> {
        let id = job_id_of(job, "job_register")?;
        let mut body = json!({ "Job": job, "PreserveCounts": preserve_counts });
        if let Some(index) = enforce_index {
            body["EnforceIndex"] = json!(true);
            body["JobModifyIndex"] = json!(index);
        }
        self.write(
            Call::new("job_register", &id, Method::POST, format!("/v1/job/{}", encode_segment(&id)), namespace)
                .json(&body),
        )
        .await
    }

    /// Dry-runs a register of `job`; with `diff`, the answer carries the typed diff tree (B7).
    pub async fn plan(&self, namespace: &str, job: &serde_json::Value, diff: bool) -> Result<PlanResponse, Error> {
        let id = job_id_of(job, "job_plan")?;
        let body = json!({ "Job": job, "Diff": diff });
        self.write(
            Call::new("job_plan", &id, Method::POST, format!("/v1/job/{}/plan", encode_segment(&id)), namespace)
                .json(&body),
        )
        .await
    }

    /// Stops a job (a new version with `Stop: true`), or removes it entirely with `purge` (B8). A missing job is
    /// not an error: Nomad answers 200 with empty fields.
    pub async fn deregister(&self, namespace: &str, id: &str, purge: bool) -> Result<RegisterResponse, Error> {
        let mut call =
            Call::new("job_deregister", id, Method::DELETE, format!("/v1/job/{}", encode_segment(id)), namespace);
        if purge {
            call = call.param("purge", "true");
        }
        self.write(call).await
    }

    /// Sets one group's count (B10). Makes a new job version even for the same count (C19); blocked (400,
    /// [`Error::Rejected`]) while the job's deployment is active.
    pub async fn scale(
        &self,
        namespace: &str,
        job_id: &str,
        group: &str,
        count: u64,
        message: &str,
    ) -> Result<RegisterResponse, Error> {
        self.scale_guarded(namespace, job_id, group, count, message, None).await
    }

    /// [`Self::scale`], applied only if the job's `JobModifyIndex` is still `job_modify_index` (when `Some`): a lost
    /// race is [`Error::EnforceIndexConflict`] (B10, C17). Take the index from a job read, not from `/scale` (B6).
    pub async fn scale_guarded(
        &self,
        namespace: &str,
        job_id: &str,
        group: &str,
        count: u64,
        message: &str,
        job_modify_index: Option<u64>,
    ) -> Result<RegisterResponse, Error> {
        let mut body = json!({ "Count": count, "Target": { "Group": group }, "Message": message });
        if let Some(index) = job_modify_index {
            body["JobModifyIndex"] = json!(index);
        }
        self.write(
            Call::new(
                "job_scale",
                job_id,
                Method::POST,
                format!("/v1/job/{}/scale", encode_segment(job_id)),
                namespace,
            )
            .json(&body),
        )
        .await
    }

    /// Reads one deployment; `None` when it does not exist.
    pub async fn deployment(&self, namespace: &str, id: &str) -> Result<Option<Deployment>, Error> {
        self.read_optional(Call::new(
            "deployment_read",
            id,
            Method::GET,
            format!("/v1/deployment/{}", encode_segment(id)),
            namespace,
        ))
        .await
    }

    /// The job's latest deployment (highest `CreateIndex`); `None` when it has none (200 `null`, B6).
    pub async fn latest_deployment(&self, namespace: &str, job_id: &str) -> Result<Option<Deployment>, Error> {
        self.read_optional(Call::new(
            "job_latest_deployment",
            job_id,
            Method::GET,
            format!("/v1/job/{}/deployment", encode_segment(job_id)),
            namespace,
        ))
        .await
    }

    /// Lists deployments in `namespace` (`*` for all), blocking per `query`; returns them with `X-Nomad-Index`.
    pub async fn list_deployments(
        &self,
        namespace: &str,
        query: BlockingQuery,
    ) -> Result<(Vec<Deployment>, u64), Error> {
        self.read_indexed(
            Call::new("deployments_list", namespace, Method::GET, "/v1/deployments".to_owned(), namespace)
                .blocking(query),
        )
        .await
    }

    /// The job's allocations (current job instance only); empty when none.
    pub async fn allocations(&self, namespace: &str, job_id: &str) -> Result<Vec<AllocStub>, Error> {
        let (allocs, _) = self
            .send_json::<Option<Vec<AllocStub>>>(Call::new(
                "job_allocations",
                job_id,
                Method::GET,
                format!("/v1/job/{}/allocations", encode_segment(job_id)),
                namespace,
            ))
            .await?;
        Ok(allocs.unwrap_or_default())
    }

    /// Promotes a deployment's canaries: every group when `groups` is `None` (B13).
    pub async fn promote(
        &self,
        namespace: &str,
        id: &str,
        groups: Option<&[String]>,
    ) -> Result<DeploymentUpdateResponse, Error> {
        let body = match groups {
            None => json!({ "DeploymentID": id, "All": true }),
            Some(groups) => json!({ "DeploymentID": id, "Groups": groups }),
        };
        self.write(
            Call::new(
                "deployment_promote",
                id,
                Method::POST,
                format!("/v1/deployment/promote/{}", encode_segment(id)),
                namespace,
            )
            .json(&body),
        )
        .await
    }

    /// Fails a deployment, which makes Nomad auto-revert groups that have `AutoRevert` (B13).
    pub async fn fail(&self, namespace: &str, id: &str) -> Result<DeploymentUpdateResponse, Error> {
        let body = json!({ "DeploymentID": id });
        self.write(
            Call::new(
                "deployment_fail",
                id,
                Method::POST,
                format!("/v1/deployment/fail/{}", encode_segment(id)),
                namespace,
            )
            .json(&body),
        )
        .await
    }

    /// Pauses (`pause: true`) or resumes a deployment (B13).
    pub async fn pause(&self, namespace: &str, id: &str, pause: bool) -> Result<DeploymentUpdateResponse, Error> {
        let body = json!({ "DeploymentID": id, "Pause": pause });
        self.write(
            Call::new(
                "deployment_pause",
                id,
                Method::POST,
                format!("/v1/deployment/pause/{}", encode_segment(id)),
                namespace,
            )
            .json(&body),
        )
        .await
    }

    /// Reverts job `id` to `version`, only if its current version is `enforce_prior_version` (when given): Nomad
    /// registers that version's spec again as a new version (B9).
    pub async fn revert(
        &self,
        namespace: &str,
        id: &str,
        version: u64,
        enforce_prior_version: Option<u64>,
    ) -> Result<RegisterResponse, Error> {
        let mut body = json!({ "JobID": id, "JobVersion": version });
        if let Some(prior) = enforce_prior_version {
            body["EnforcePriorVersion"] = json!(prior);
        }
        self.write(
            Call::new("job_revert", id, Method::POST, format!("/v1/job/{}/revert", encode_segment(id)), namespace)
                .json(&body),
        )
        .await
    }

    async fn write<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, Error> {
        self.send_json(call).await.map(|(value, _)| value)
    }

    /// Subscribes to Job and Deployment events in every namespace from `index` (inclusive, B15).
    ///
    /// Returns once the response headers arrived; liveness (the first `{}`, heartbeats) is checked by the
    /// returned [`EventStream`]. No total timeout applies: the stream is meant to stay open.
    pub async fn subscribe(&self, index: u64) -> Result<EventStream, Error> {
        let started = Instant::now();
        let query = vec![
            ("topic", Some("Job".to_owned())),
            ("topic", Some("Deployment".to_owned())),
            ("namespace", Some("*".to_owned())),
            ("index", Some(index.to_string())),
        ];
        let transport = |source| Error::Transport { endpoint: "event_stream", target: "*".to_owned(), source };
        let sent = tokio::time::timeout(REQUEST_TIMEOUT, self.request(Method::GET, "/v1/event/stream", query).send());
        let response = match sent.await {
            Ok(Ok(response)) => response,
            Ok(Err(err)) => {
                self.metrics.nomad_request("event_stream", 0, started.elapsed());
                return Err(refused_redirect_or(err, "event_stream", "*", transport));
            }
            Err(_) => {
                self.metrics.nomad_request("event_stream", 0, started.elapsed());
                return Err(Error::StreamDropped { reason: super::events::DropReason::NoHeaders });
            }
        };
        let status = response.status();
        self.metrics.nomad_request("event_stream", status.as_u16(), started.elapsed());
        if status != StatusCode::OK {
            let body = response.bytes().await.map_err(transport)?;
            let message = String::from_utf8_lossy(&body).trim().to_owned();
            return Err(classify("event_stream", "*", status.as_u16(), message));
        }
        let body = response.bytes_stream().map_err(std::io::Error::other);
        Ok(EventStream::new(Box::pin(body)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_should_tell_enforce_index_conflicts_from_validation_errors() {
        let e = classify(
            "job_register",
            "web",
            500,
            "Enforcing job modify index 38: job exists with conflicting job modify index: 41".into(),
        );
        assert!(matches!(e, Error::EnforceIndexConflict { ref job_id, .. } if job_id == "web"));
        assert!(e.is_retryable());
        let e = classify("job_register", "web", 500, "1 error occurred:\n\t* Missing job datacenters\n\n".into());
        assert!(matches!(e, Error::JobInvalid { .. }) && !e.is_retryable());
        let e = classify("job_plan", "web", 500, "2 errors occurred:\n\t* a\n\t* b".into());
        assert!(matches!(e, Error::JobInvalid { .. }));
        let e = classify("job_register", "web", 500, "No cluster leader".into());
        assert!(matches!(e, Error::ServerError { .. }) && e.is_retryable());
        let e = classify("job_scale", "web", 500, "Enforcing job modify index 3: job exists with conflicting".into());
        assert_eq!(e.kind(), "enforce_index_conflict");
        let e = classify("deployment_promote", "d", 500, "can't promote terminal deployment".into());
        assert!(matches!(e, Error::Rejected { code: 500, .. }) && !e.is_retryable());
        assert_eq!(classify("job_read", "x", 403, "Permission denied".into()).kind(), "permission_denied");
        assert_eq!(classify("job_read", "x", 429, "slow down".into()).kind(), "server_error");
        assert_eq!(classify("job_scale", "x", 400, "job scaling blocked".into()).kind(), "rejected");
    }

    #[test]
    fn classify_should_take_refused_deployment_writes_and_reverts_as_rejections_not_outages() {
        for (endpoint, message) in [
            ("deployment_promote", "deployment not found"),
            ("deployment_promote", "can't promote terminal deployment"),
            ("deployment_fail", "can't fail terminal deployment"),
            ("deployment_pause", "can't resume terminal deployment"),
            ("job_revert", "can't revert to current version"),
            ("job_revert", "Current job has version 4; enforcing version 3"),
            ("job_revert", r#"job "web" in namespace "default" at version 9 not found"#),
        ] {
            let e = classify(endpoint, "x", 500, message.into());
            assert!(matches!(e, Error::Rejected { .. }), "{endpoint} {message}: {e:?}");
        }
        let outage = classify("job_revert", "web", 500, "No cluster leader".into());
        assert!(matches!(outage, Error::ServerError { .. }), "{outage:?}");
    }

    #[test]
    fn classify_should_read_the_namespace_of_a_nonexistent_namespace_500_and_nothing_else() {
        let e = classify("job_register", "web", 500, r#"job "web" is in nonexistent namespace "team-a""#.into());
        assert!(matches!(e, Error::NamespaceNotFound { ref namespace, .. } if namespace == "team-a"), "{e:?}");
        for other in [r#"job "web" is in nonexistent namespace """#, r#"is in nonexistent namespace "x""#] {
            assert_eq!(classify("job_register", "web", 500, other.into()).kind(), "server_error", "{other}");
        }
        // Only register and plan answer it: elsewhere the text is not Nomad's and is left an outage.
        let e = classify("job_scale", "web", 500, r#"job "web" is in nonexistent namespace "a""#.into());
        assert_eq!(e.kind(), "server_error");
        let e = classify("job_scale", "web", 500, "cannot update job from type \"service\" to \"batch\"".into());
        assert_eq!(e.kind(), "server_error");
    }
}
