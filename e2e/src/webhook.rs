//! A local webhook receiver for the notification tests: records what each path was sent, and can refuse the first
//! requests to one path (503) so retries are exercised.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    /// The body, as JSON (`null` when it is not JSON).
    pub body: Value,
    /// The `Authorization` header.
    pub auth: Option<String>,
    /// What the receiver answered.
    pub answered: u16,
}

/// What each path got; the first `fail_first` requests to `fail_path` are answered 503.
#[derive(Debug, Default)]
pub struct Receiver {
    fail_path: String,
    fail_first: usize,
    got: Mutex<BTreeMap<String, Vec<Received>>>,
}

impl Receiver {
    /// A receiver answering the first `n` requests to `/{path}` with 503, every other request with 200.
    pub fn failing_first(path: &str, n: usize) -> Receiver {
        Receiver { fail_path: path.to_owned(), fail_first: n, got: Mutex::default() }
    }

    /// Every request to `/{path}`, in order.
    pub fn got(&self, path: &str) -> Vec<Received> {
        self.got.lock().unwrap_or_else(|p| p.into_inner()).get(path).cloned().unwrap_or_default()
    }

    /// The bodies `/{path}` answered 200 to, in order.
    pub fn delivered(&self, path: &str) -> Vec<Value> {
        self.got(path).into_iter().filter(|r| r.answered == 200).map(|r| r.body).collect()
    }
}

async fn receive(
    State(r): State<Arc<Receiver>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let mut got = r.got.lock().unwrap_or_else(|p| p.into_inner());
    let list = got.entry(path.clone()).or_default();
    let refuse = path == r.fail_path && list.len() < r.fail_first;
    let status = if refuse { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    list.push(Received {
        body: serde_json::from_str(&body).unwrap_or(Value::Null),
        auth: headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned),
        answered: status.as_u16(),
    });
    status
}

/// Serves `receiver` on a free loopback port (`POST /{path}`); returns its base URL.
pub async fn serve(receiver: Arc<Receiver>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the receiver");
    let addr = listener.local_addr().expect("receiver address");
    let app = Router::new().route("/{path}", post(receive)).with_state(receiver);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}
