//! The Nomad routers: `/v1/…` (deployments, event stream, status) and the `/_sim/nomad/…` controls.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Nomad;
use super::acl::Token;
use super::decode::Obj;
use super::error::ApiError;
use super::events::{Filter, stream};
use super::http::{Query, block, block_list, caller, decode_body, read_response, write_response};
use super::metrics::Workload;
use super::namespaces;
use super::routes_jobs::{job_path, jobs_root, list_namespaces};
use super::state::HealthMode;
use super::{routes_cluster, watcher};

/// Routes under `/v1/`.
pub fn router(n: Arc<Nomad>) -> Router {
    Router::new()
        .route("/v1/status/leader", any(leader))
        .route("/v1/jobs", any(jobs_root))
        .route("/v1/job/{*rest}", any(job_path))
        .route("/v1/deployments", any(list_deployments))
        .route("/v1/deployment/{*rest}", any(deployment_path))
        .route("/v1/event/stream", any(event_stream))
        .route("/v1/namespaces", any(namespaces::list))
        .route("/v1/namespace", any(namespaces::root))
        .route("/v1/namespace/{name}", any(namespaces::named))
        .route("/v1/evaluation/{*rest}", any(routes_cluster::evaluation_path))
        .with_state(n)
}

/// Routes under `/_sim/nomad/` and `/_sim/metrics`.
pub fn control_router(n: Arc<Nomad>) -> Router {
    Router::new()
        .route("/_sim/nomad/namespaces", post(create_namespace).get(namespaces))
        .route("/_sim/nomad/acl/tokens", post(create_token))
        .route("/_sim/nomad/acl/tokens/{accessor}", delete(revoke_token))
        .route("/_sim/nomad/health", post(set_health))
        .route("/_sim/nomad/workload", post(set_workload))
        .route("/_sim/nomad/nodes", post(routes_cluster::add_node).get(routes_cluster::list_nodes))
        .route("/_sim/nomad/nodes/{id}", delete(routes_cluster::remove_node))
        .route("/_sim/nomad/nodes/{id}/drain", post(routes_cluster::drain_node))
        .route("/_sim/nomad/event-stream/cut", post(routes_cluster::cut_streams))
        .route("/_sim/metrics", get(metrics))
        .with_state(n)
}

async fn leader(method: Method) -> Response {
    if method != Method::GET {
        return ApiError::invalid_method().into_response();
    }
    let mut r = (StatusCode::OK, "\"127.0.0.1:4647\"").into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

async fn list_deployments(
    State(n): State<Arc<Nomad>>,
    method: Method,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let q = Query::parse(raw.as_deref());
    let r = async {
        if method != Method::GET {
            return Err(ApiError::invalid_method());
        }
        let who = caller(&n, &headers)?;
        // As `Job.List`: `read-job` in the requested namespace (for `*`, in at least one) is checked before
        // listing, and its absence is a 403, not an empty list [N:nomad/deployment_endpoint.go `List`].
        let allowed = {
            let st = n.lock();
            who.is_management() || !list_namespaces(&st, &q, &who, "read-job").is_empty()
        };
        if !allowed {
            return Err(ApiError::permission_denied());
        }
        let prefix = q.get("prefix").unwrap_or("").to_string();
        let reverse = q.get("reverse") == Some("true");
        let clock = n.shared.clock.clone();
        let (deps, index) = block_list(
            &n,
            &q,
            |st| st.t.table_index.deployment,
            |st| {
                let nss = list_namespaces(st, &q, &who, "read-job");
                let mut v: Vec<super::model::Deployment> =
                    st.t.deployments
                        .values()
                        .filter(|d| nss.contains(&d.namespace) && d.id.starts_with(&prefix))
                        .cloned()
                        .collect();
                v.sort_by_key(|d| d.create_index);
                if reverse {
                    v.reverse();
                }
                v
            },
        )
        .await?;
        let body = Value::Array(deps.iter().map(|d| d.render(&clock)).collect());
        Ok(read_response(&n, &q, &body, index))
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}

async fn deployment_path(
    State(n): State<Arc<Nomad>>,
    method: Method,
    uri: Uri,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let q = Query::parse(raw.as_deref());
    let rest = uri.path().strip_prefix("/v1/deployment/").unwrap_or("").to_string();
    deployment(&n, method, &rest, &q, &headers, &body).await.unwrap_or_else(IntoResponse::into_response)
}

async fn deployment(
    n: &Arc<Nomad>,
    method: Method,
    rest: &str,
    q: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let is_write = method == Method::PUT || method == Method::POST;
    let (action, id) = match rest.split_once('/') {
        Some((a, id)) => (a, id.to_string()),
        None => ("", rest.to_string()),
    };
    let who = caller(n, headers)?;
    // Deployments are found by ID whatever `?namespace=` says; rights are checked in the
    // deployment's own namespace (`Deployment.GetDeployment` re-checks `out.Namespace`).
    let ns = n.lock().t.deployments.get(&id).map(|d| d.namespace.clone()).unwrap_or_else(|| q.namespace());
    let clock = n.shared.clock.clone();
    match (action, method == Method::GET, is_write) {
        ("", true, _) => {
            if !who.allows(&ns, "read-job") {
                return Err(ApiError::permission_denied());
            }
            let (d, index) = block(n, q, |st| match st.t.deployments.get(&id) {
                Some(d) => (Some(d.render(&clock)), d.modify_index),
                None => (None, st.t.table_index.deployment),
            })
            .await?;
            match d {
                Some(d) => Ok(read_response(n, q, &d, index)),
                None => Err(ApiError::not_found("deployment not found").with_index(index)),
            }
        }
        ("allocations", true, _) => {
            if !who.allows(&ns, "read-job") {
                return Err(ApiError::permission_denied());
            }
            let (v, index) = block(n, q, |st| {
                let key = st.t.deployments.get(&id).map(|d| (d.namespace.clone(), d.job_id.clone()));
                let v: Vec<Value> = key
                    .map(|k| {
                        st.t.job_allocs(&k)
                            .filter(|a| a.deployment_id.as_deref() == Some(id.as_str()))
                            .map(|a| a.stub(&clock))
                            .collect()
                    })
                    .unwrap_or_default();
                (Value::Array(v), st.t.table_index.allocs)
            })
            .await?;
            Ok(read_response(n, q, &v, index))
        }
        ("promote" | "pause", _, true) => {
            let m = decode_body(body, "api.DeploymentPromoteRequest")?;
            let o = Obj::new(&m, "DeploymentPromoteRequest", "");
            let dep_id = o.str("DeploymentID").map_err(|e| ApiError::bad_request(e.0))?.unwrap_or_default();
            if dep_id.is_empty() {
                return Err(ApiError::bad_request("DeploymentID must be specified"));
            }
            if dep_id != id {
                return Err(ApiError::bad_request("Deployment ID does not match"));
            }
            if !who.allows(&ns, "submit-job") {
                return Err(ApiError::permission_denied());
            }
            let mut st = n.lock();
            let (eval, dmi, index) = if action == "promote" {
                let all = o.bool("All").map_err(|e| ApiError::bad_request(e.0))?.unwrap_or(false);
                let groups = o.strs("Groups").map_err(|e| ApiError::bad_request(e.0))?;
                watcher::promote(&mut st, &n.shared, &id, if all { None } else { groups.or(Some(Vec::new())) })?
            } else {
                let pause = o.bool("Pause").map_err(|e| ApiError::bad_request(e.0))?.unwrap_or(false);
                watcher::pause(&mut st, &n.shared, &id, pause)?
            };
            drop(st);
            let body = json!({"EvalID": eval, "EvalCreateIndex": index, "DeploymentModifyIndex": dmi,
                "RevertedJobVersion": null, "Index": index, "LastContact": 0, "KnownLeader": false, "NextToken": ""});
            Ok(write_response(q, &body, index))
        }
        ("allocation-health", _, true) => {
            let m = decode_body(body, "api.DeploymentAllocHealthRequest")?;
            let o = Obj::new(&m, "DeploymentAllocHealthRequest", "");
            let bad = |e: super::decode::DecodeError| ApiError::bad_request(e.0);
            let dep_id = o.str("DeploymentID").map_err(bad)?.unwrap_or_default();
            if dep_id.is_empty() {
                return Err(ApiError::bad_request("DeploymentID must be specified"));
            }
            if dep_id != id {
                return Err(ApiError::bad_request("Deployment ID does not match"));
            }
            let healthy = o.strs("HealthyAllocationIDs").map_err(bad)?.unwrap_or_default();
            let unhealthy = o.strs("UnhealthyAllocationIDs").map_err(bad)?.unwrap_or_default();
            if !who.allows(&ns, "submit-job") {
                return Err(ApiError::permission_denied());
            }
            let (reverted, eval, index) =
                watcher::set_alloc_health(&mut n.lock(), &n.shared, &id, &healthy, &unhealthy)?;
            let body = json!({"EvalID": eval, "EvalCreateIndex": index, "DeploymentModifyIndex": index,
                "RevertedJobVersion": reverted, "Index": index, "LastContact": 0, "KnownLeader": false, "NextToken": ""});
            Ok(write_response(q, &body, index))
        }
        ("fail", _, true) => {
            if !who.allows(&ns, "submit-job") {
                return Err(ApiError::permission_denied());
            }
            let mut st = n.lock();
            let Some(d) = st.t.deployments.get(&id) else {
                return Err(ApiError::internal("deployment not found"));
            };
            if !d.active() {
                return Err(ApiError::internal("can't fail terminal deployment"));
            }
            let out = watcher::fail(&mut st, &n.shared, &id, super::model::desc::MARKED_FAILED);
            drop(st);
            let (reverted, eval, index) = out.unwrap_or((None, String::new(), 0));
            let body = json!({"EvalID": eval, "EvalCreateIndex": index, "DeploymentModifyIndex": index,
                "RevertedJobVersion": reverted, "Index": index, "LastContact": 0, "KnownLeader": false, "NextToken": ""});
            Ok(write_response(q, &body, index))
        }
        _ => Err(ApiError::invalid_method()),
    }
}

async fn event_stream(
    State(n): State<Arc<Nomad>>,
    method: Method,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let q = Query::parse(raw.as_deref());
    if method != Method::GET {
        return ApiError::invalid_method().into_response();
    }
    let topics = match Filter::parse_topics(&q.all("topic")) {
        Ok(t) => t,
        Err(e) => return ApiError::bad_request(e).into_response(),
    };
    let index = match q.get("index") {
        None | Some("") => 0,
        Some(v) => match v.parse::<u64>() {
            Ok(i) => i,
            Err(_) => {
                return ApiError::bad_request(format!(
                    "Unable to parse index: strconv.Atoi: parsing {v:?}: invalid syntax"
                ))
                .into_response();
            }
        },
    };
    let ns = q.namespace();
    // `*` covers the namespaces that exist now: one created later is not added to this subscription (C25).
    let namespaces: Vec<String> = if ns == "*" { n.lock().t.namespaces.keys().cloned().collect() } else { vec![ns] };
    // v2.0.x writes 200 and the headers before the ACL check; a failure closes the stream with no `{}`.
    let allowed = match caller(&n, &headers) {
        Ok(who) => match &topics {
            None => who.is_management(),
            Some(_) if q.namespace() == "*" => {
                who.is_management() || namespaces.iter().all(|ns| who.allows(ns, "read-job"))
            }
            Some(_) => namespaces.iter().all(|ns| who.allows(ns, "read-job")),
        },
        Err(_) => false,
    };
    let body = if allowed {
        Body::from_stream(stream(n.clone(), Filter { topics, namespaces }, index))
    } else {
        Body::empty()
    };
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

#[derive(Deserialize)]
struct NamespaceReq {
    name: String,
}

async fn create_namespace(State(n): State<Arc<Nomad>>, body: Bytes) -> Response {
    let Ok(req) = serde_json::from_slice::<NamespaceReq>(&body) else {
        return ApiError::bad_request("expected {\"name\":\"<namespace>\"}").into_response();
    };
    if !namespaces::valid_name(&req.name) {
        return ApiError::bad_request(format!("invalid namespace name \"{}\"", req.name)).into_response();
    }
    // The same indexed write as `POST /v1/namespace`: the index moves and blocking queries wake.
    match namespaces::create(&n, &req.name, "") {
        Ok(index) => axum::Json(json!({"Name": req.name, "Index": index})).into_response(),
        Err(err) => err.into_response(),
    }
}

async fn namespaces(State(n): State<Arc<Nomad>>) -> Response {
    let v: Vec<String> = n.lock().t.namespaces.keys().cloned().collect();
    axum::Json(json!(v)).into_response()
}

#[derive(Deserialize)]
struct TokenReq {
    name: String,
    #[serde(default)]
    namespaces: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    management: bool,
}

async fn create_token(State(n): State<Arc<Nomad>>, body: Bytes) -> Response {
    let req = match serde_json::from_slice::<TokenReq>(&body) {
        Ok(r) => r,
        Err(e) => return ApiError::bad_request(format!("bad token request: {e}")).into_response(),
    };
    let accessor = n.shared.uuid();
    let secret = n.shared.uuid();
    let token = Token {
        accessor: accessor.clone(),
        name: req.name.clone(),
        management: req.management,
        namespaces: req.namespaces.into_iter().map(|(k, v)| (k, v.into_iter().collect::<BTreeSet<_>>())).collect(),
    };
    n.lock().t.acl.tokens.insert(secret.clone(), token);
    axum::Json(json!({"AccessorID": accessor, "SecretID": secret, "Name": req.name})).into_response()
}

/// `DELETE /_sim/nomad/acl/tokens/{accessor}`: revokes a token by its `AccessorID`, as Nomad's
/// `DELETE /v1/acl/token/:accessor_id` does; requests with its secret then get 403 (the text of contract B1). 404
/// when no token has that accessor.
///
/// Nomad also closes the event-stream subscriptions of a deleted token (`nomad/stream/event_broker.go`
/// `handleACLUpdates`: `TypeACLTokenDeleted` → `closeSubscriptionsForTokens`). The simulator does not track which
/// token opened which stream, so it cuts every open stream: more than Nomad closes, never less.
async fn revoke_token(
    State(n): State<Arc<Nomad>>,
    axum::extract::Path(accessor): axum::extract::Path<String>,
) -> Response {
    let removed = {
        let mut state = n.lock();
        let before = state.t.acl.tokens.len();
        state.t.acl.tokens.retain(|_, t| t.accessor != accessor);
        state.t.acl.tokens.len() != before
    };
    if !removed {
        return (StatusCode::NOT_FOUND, format!("no token with accessor {accessor}")).into_response();
    }
    n.cut_event_streams(None);
    StatusCode::OK.into_response()
}

#[derive(Deserialize)]
struct HealthReq {
    #[serde(default = "default_ns")]
    namespace: String,
    job: String,
    version: Option<u64>,
    mode: String,
    delay_ms: Option<u64>,
}

fn default_ns() -> String {
    "default".into()
}

async fn set_health(State(n): State<Arc<Nomad>>, body: Bytes) -> Response {
    let req = match serde_json::from_slice::<HealthReq>(&body) {
        Ok(r) => r,
        Err(e) => return ApiError::bad_request(format!("bad health request: {e}")).into_response(),
    };
    let mode = match req.mode.as_str() {
        "healthy" => HealthMode::Healthy,
        "unhealthy" => HealthMode::Unhealthy,
        "never" => HealthMode::Never,
        "delay" => HealthMode::Delay(Duration::from_millis(req.delay_ms.unwrap_or(0))),
        other => return ApiError::bad_request(format!("unknown mode \"{other}\"")).into_response(),
    };
    n.lock().t.health.insert((req.namespace, req.job, req.version), mode);
    axum::Json(json!({"ok": true})).into_response()
}

#[derive(Deserialize)]
struct WorkloadReq {
    #[serde(default = "default_ns")]
    namespace: String,
    job: String,
    version: Option<u64>,
    #[serde(default)]
    error_rate: f64,
    #[serde(default)]
    load: f64,
}

async fn set_workload(State(n): State<Arc<Nomad>>, body: Bytes) -> Response {
    let req = match serde_json::from_slice::<WorkloadReq>(&body) {
        Ok(r) => r,
        Err(e) => return ApiError::bad_request(format!("bad workload request: {e}")).into_response(),
    };
    let now = n.shared.clock.now();
    let mut st = n.lock();
    let t = &mut st.t;
    t.workloads.advance(t.allocs.values(), now);
    t.workloads
        .config
        .insert((req.namespace, req.job, req.version), Workload { error_rate: req.error_rate, load: req.load });
    axum::Json(json!({"ok": true})).into_response()
}

async fn metrics(State(n): State<Arc<Nomad>>) -> Response {
    let now = n.shared.clock.now();
    let mut st = n.lock();
    let t = &mut st.t;
    t.workloads.advance(t.allocs.values(), now);
    let text = t.workloads.render(t.allocs.values());
    let mut r = (StatusCode::OK, text).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    r
}
