//! A local webhook receiver for the notification tests (axum on 127.0.0.1:0), and the helpers that wait on it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap as AxumHeaders, StatusCode};
use axum::routing::post;
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::task::AbortOnDropHandle;

use crate::metrics::Metrics;

/// What the receiver answers, in order (then 200), and what it received.
#[derive(Default)]
pub struct Receiver {
    /// Status codes to answer, in order; then 200.
    pub answers: Mutex<VecDeque<StatusCode>>,
    /// Each body received, with its `Authorization` header.
    pub bodies: Mutex<Vec<(Value, Option<String>)>>,
    /// When set, each request waits for a permit before answering.
    pub gate: Option<Arc<tokio::sync::Semaphore>>,
    /// Woken on each request.
    pub arrived: Notify,
}

async fn receive(State(r): State<Arc<Receiver>>, headers: AxumHeaders, body: String) -> StatusCode {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let value: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    r.bodies.lock().unwrap_or_else(|p| p.into_inner()).push((value, auth));
    r.arrived.notify_waiters();
    if let Some(gate) = &r.gate {
        let _ = gate.acquire().await.map(|p| p.forget());
    }
    r.answers.lock().unwrap_or_else(|p| p.into_inner()).pop_front().unwrap_or(StatusCode::OK)
}

/// Serves `receiver` at `http://127.0.0.1:PORT/hook` until the handle drops.
pub async fn start_receiver(receiver: Arc<Receiver>) -> (reqwest::Url, AbortOnDropHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the receiver");
    let addr = listener.local_addr().expect("receiver address");
    let app = Router::new().route("/hook", post(receive)).with_state(receiver);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let url = reqwest::Url::parse(&format!("http://{addr}/hook")).expect("receiver URL");
    (url, AbortOnDropHandle::new(task))
}

/// `drover_notifications_total{target, result}` as `metrics` encodes it (0 when absent).
pub fn count(metrics: &Metrics, target: &str, result: &str) -> u64 {
    let text = metrics.encode();
    let line = format!("drover_notifications_total{{target=\"{target}\",result=\"{result}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&line)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// Waits (at most 10 s) until `check` holds; the panic says what never happened.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for {what}");
}

/// The bodies received so far.
pub fn bodies(receiver: &Receiver) -> Vec<Value> {
    receiver.bodies.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(b, _)| b.clone()).collect()
}
