//! Routes for evaluations (`/v1/evaluation/:id`, `/v1/job/:id/evaluations`) and the cluster controls
//! (`/_sim/nomad/nodes…`, `/_sim/nomad/event-stream/cut`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Nomad;
use super::cluster;
use super::error::ApiError;
use super::http::{Query, block, caller, read_response};
use super::state::Key;

/// `GET /v1/job/:id/evaluations`: the job's evaluations, oldest first. Like Nomad's `Job.Evaluations`, a job
/// that does not exist answers `[]`; the index is the `evals` table's.
pub async fn job_evaluations(n: &Nomad, q: &Query, headers: &HeaderMap, key: &Key) -> Result<Response, ApiError> {
    let who = caller(n, headers)?;
    if !who.allows(&key.0, "read-job") {
        return Err(ApiError::permission_denied());
    }
    let clock = n.shared.clock.clone();
    let (body, index) = block(n, q, |st| {
        let v: Vec<Value> =
            st.t.evals_by_job
                .get(key)
                .into_iter()
                .flatten()
                .filter_map(|id| st.t.evals.get(id))
                .map(|e| e.render(&clock))
                .collect();
        (Value::Array(v), st.t.table_index.evals)
    })
    .await?;
    Ok(read_response(n, q, &body, index))
}

/// `GET /v1/evaluation/:id` (404 `eval not found` with the `evals` index, as `Eval.GetEval` answers).
pub async fn evaluation_path(
    State(n): State<Arc<Nomad>>,
    method: Method,
    uri: Uri,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let q = Query::parse(raw.as_deref());
    let id = uri.path().strip_prefix("/v1/evaluation/").unwrap_or("").to_string();
    let r = async {
        if method != Method::GET {
            return Err(ApiError::invalid_method());
        }
        let who = caller(&n, &headers)?;
        let clock = n.shared.clock.clone();
        let ((body, ns), index) = block(&n, &q, |st| match st.t.evals.get(&id) {
            Some(e) => ((Some(e.render(&clock)), e.namespace.clone()), e.modify_index),
            None => ((None, String::new()), st.t.table_index.evals),
        })
        .await?;
        match body {
            Some(_) if !who.allows(&ns, "read-job") => Err(ApiError::permission_denied()),
            Some(b) => Ok(read_response(&n, &q, &b, index)),
            None => Err(ApiError::not_found("eval not found").with_index(index)),
        }
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /_sim/nomad/nodes`.
pub async fn list_nodes(State(n): State<Arc<Nomad>>) -> Response {
    axum::Json(cluster::list(&n.lock())).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeReq {
    #[serde(default)]
    name: Option<String>,
    cpu: u64,
    memory_mb: u64,
}

/// `POST /_sim/nomad/nodes` `{"cpu": MHz, "memory_mb": MB, "name": optional}`: registers a node.
pub async fn add_node(State(n): State<Arc<Nomad>>, body: Bytes) -> Response {
    let req = match serde_json::from_slice::<NodeReq>(&body) {
        Ok(r) => r,
        Err(e) => return ApiError::bad_request(format!("bad node request: {e}")).into_response(),
    };
    let node = cluster::add(&mut n.lock(), &n.shared, req.name, req.cpu, req.memory_mb);
    axum::Json(node.render()).into_response()
}

/// `POST /_sim/nomad/nodes/{id}/drain`.
pub async fn drain_node(State(n): State<Arc<Nomad>>, Path(id): Path<String>) -> Response {
    if cluster::drain(&mut n.lock(), &n.shared, &id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        ApiError::not_found("node not found").into_response()
    }
}

/// `DELETE /_sim/nomad/nodes/{id}`.
pub async fn remove_node(State(n): State<Arc<Nomad>>, Path(id): Path<String>) -> Response {
    if cluster::remove(&mut n.lock(), &n.shared, &id) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        ApiError::not_found("node not found").into_response()
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CutReq {
    #[serde(default)]
    duration_ms: Option<u64>,
}

/// `POST /_sim/nomad/event-stream/cut` (body optional: `{"duration_ms": N}` sim ms during which newly opened
/// streams are cut too): answers `{"cut": <streams that were open>}`.
pub async fn cut_streams(State(n): State<Arc<Nomad>>, body: Bytes) -> Response {
    let req = if body.is_empty() {
        CutReq::default()
    } else {
        match serde_json::from_slice::<CutReq>(&body) {
            Ok(r) => r,
            Err(e) => return ApiError::bad_request(format!("bad cut request: {e}")).into_response(),
        }
    };
    let open = n.cut_event_streams(req.duration_ms.map(Duration::from_millis));
    axum::Json(json!({"cut": open})).into_response()
}
