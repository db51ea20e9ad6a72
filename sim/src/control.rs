//! The shared part of the `/_sim/` control API: faults, the request log, leader loss and time.
//!
//! | Route | Effect |
//! |---|---|
//! | `POST /_sim/faults` | add a fault ([`FaultSpec`] as JSON); answers `{"id": N}` |
//! | `GET /_sim/faults` | faults in force |
//! | `DELETE /_sim/faults` | remove every fault |
//! | `DELETE /_sim/faults/{id}` | remove one fault |
//! | `GET /_sim/log?server=nomad&since=SEQ` | answered API requests after `SEQ` |
//! | `DELETE /_sim/log` | forget the log (sequence numbers keep growing) |
//! | `POST /_sim/leader` | `{"server":"consul","present":false}`: lose or regain a leader |
//! | `GET /_sim/time` | `{"scale", "now_ms", "unix_nanos"}` |
//! | `POST /_sim/requests/cut` | `{"server":"consul"}`: drop every request in flight (blocking queries); answers `{"cut": N}` |

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::faults::FaultSpec;
use crate::{Server, Shared};

/// The shared control routes.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_sim/faults", post(add_fault).get(list_faults).delete(clear_faults))
        .route("/_sim/faults/{id}", delete(remove_fault))
        .route("/_sim/log", get(read_log).delete(clear_log))
        .route("/_sim/leader", post(set_leader))
        .route("/_sim/time", get(time))
        .route("/_sim/requests/cut", post(cut_requests))
        .with_state(shared)
}

async fn add_fault(State(shared): State<Arc<Shared>>, Json(spec): Json<FaultSpec>) -> Json<serde_json::Value> {
    let id = shared.faults.add(spec, shared.clock.now());
    Json(json!({ "id": id }))
}

async fn list_faults(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(json!(shared.faults.list(shared.clock.now())))
}

async fn clear_faults(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.faults.clear();
    StatusCode::NO_CONTENT
}

async fn remove_fault(State(shared): State<Arc<Shared>>, Path(id): Path<u64>) -> StatusCode {
    if shared.faults.remove(id) { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }
}

#[derive(Deserialize)]
struct LogQuery {
    #[serde(default)]
    since: u64,
    server: Option<Server>,
}

async fn read_log(State(shared): State<Arc<Shared>>, Query(q): Query<LogQuery>) -> Json<serde_json::Value> {
    Json(json!(crate::reqlog::LogPage {
        last_seq: shared.log.last_seq(),
        requests: shared.log.since(q.since, q.server)
    }))
}

async fn clear_log(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.log.clear();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaderBody {
    server: Server,
    present: bool,
}

async fn set_leader(State(shared): State<Arc<Shared>>, Json(body): Json<LeaderBody>) -> StatusCode {
    shared.set_leader(body.server, body.present);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CutBody {
    server: Server,
}

/// Reads the body whatever its `Content-Type`, so `curl -d` works.
async fn cut_requests(State(shared): State<Arc<Shared>>, body: bytes::Bytes) -> axum::response::Response {
    use axum::response::IntoResponse;
    match serde_json::from_slice::<CutBody>(&body) {
        Ok(b) => Json(json!({ "cut": shared.cut_in_flight(b.server) })).into_response(),
        Err(e) => {
            (StatusCode::BAD_REQUEST, format!("expected {{\"server\":\"consul\"|\"nomad\"}}: {e}")).into_response()
        }
    }
}

async fn time(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let now = shared.clock.now();
    Json(json!({
        "scale": shared.clock.scale(),
        "now_ms": u64::try_from(now.since_start().as_millis()).unwrap_or(u64::MAX),
        "unix_nanos": shared.clock.unix_nanos_at(now),
    }))
}
