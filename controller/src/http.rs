//! Drover's HTTP endpoints: `/metrics` (Prometheus text), `/healthz`, `/readyz` and `/api/v1/apps` (JSON status of
//! every app). Served on an already-bound listener.

use std::future::Future;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;

use crate::app::AppKey;
use crate::app::Record;
use crate::runtime::Handle;
use crate::status::AppStatus;

/// One app as `/api/v1/apps` shows it.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct AppView {
    /// Nomad namespace.
    pub namespace: String,
    /// App name.
    pub name: String,
    /// Record generation (Consul ModifyIndex), absent when only a status is left.
    pub generation: Option<u64>,
    /// Whether the record validates.
    pub valid: Option<bool>,
    /// The status Drover recorded.
    pub status: Option<AppStatus>,
}

/// The routes.
pub fn router(handle: Handle) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/apps", get(apps))
        .route("/api/v1/apps/{namespace}/{name}", get(app))
        .with_state(handle)
}

/// Serves `router` on `listener` until `shutdown` completes.
///
/// # Errors
/// When the listener fails.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}

async fn metrics(State(h): State<Handle>) -> Response {
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], h.metrics.encode()).into_response()
}

/// 200 on the leader once its stores are loaded; 503 `standby` on a replica that does not lead (a load balancer or
/// a rolling restart waits for the leader, not for any replica); 503 while loading.
async fn readyz(State(h): State<Handle>) -> Response {
    if !*h.ready.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: loading records, statuses and Nomad state\n")
            .into_response();
    }
    match h.leadership.current() {
        crate::leader::Leadership::Leading(_) => (StatusCode::OK, "ready\n").into_response(),
        crate::leader::Leadership::Standby => (StatusCode::SERVICE_UNAVAILABLE, "standby\n").into_response(),
    }
}

fn view(h: &Handle, key: &AppKey) -> AppView {
    let entry = h.records.get(key);
    AppView {
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        generation: entry.as_ref().map(|e| e.generation()),
        valid: entry.as_ref().map(|e| !matches!(e.as_ref(), Record::Invalid { .. })),
        status: h.statuses.get(key).and_then(|s| s.status).map(|s| (*s).clone()),
    }
}

async fn apps(State(h): State<Handle>) -> Json<Vec<AppView>> {
    let mut keys: Vec<AppKey> = h.records.keys();
    keys.extend(h.statuses.keys());
    keys.sort();
    keys.dedup();
    Json(keys.iter().map(|k| view(&h, k)).collect())
}

async fn app(State(h): State<Handle>, Path((namespace, name)): Path<(String, String)>) -> Response {
    let key = AppKey::new(namespace, name);
    let v = view(&h, &key);
    if v.generation.is_none() && v.status.is_none() {
        return (StatusCode::NOT_FOUND, format!("app {key} not found\n")).into_response();
    }
    Json(v).into_response()
}
