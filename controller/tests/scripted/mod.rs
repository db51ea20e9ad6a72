//! A scripted HTTP server for the clients' wire-format tests (the one place scripted mocks are right, STYLE 9):
//! it records every request and answers from a queue of replies.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query, exactly as sent.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

#[allow(dead_code, reason = "each test binary uses its own subset")]
impl Seen {
    /// The query string, as sent.
    pub fn query(&self) -> &str {
        self.uri.split_once('?').map_or("", |(_, q)| q)
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A scripted answer: status, headers, body.
type Reply = (u16, Vec<(&'static str, String)>, Vec<u8>);

#[derive(Default)]
struct Script {
    seen: Vec<Seen>,
    replies: VecDeque<Reply>,
}

async fn answer(State(script): State<Arc<Mutex<Script>>>, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap().to_vec();
    let mut script = script.lock().unwrap();
    script.seen.push(Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers,
        body,
    });
    let (code, headers, body) =
        script.replies.pop_front().expect("the test scripted fewer replies than requests were made");
    let mut response = (StatusCode::from_u16(code).unwrap(), body).into_response();
    for (name, value) in headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// The running server.
pub struct Scripted {
    script: Arc<Mutex<Script>>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Scripted {
    /// Starts a server on a free loopback port.
    pub async fn start() -> Scripted {
        let script: Arc<Mutex<Script>> = Arc::default();
        let app = axum::Router::new().fallback(answer).with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Scripted { script, url: format!("http://{addr}") }
    }

    /// Queues the next answer.
    pub fn reply(&self, code: u16, headers: &[(&'static str, &str)], body: &str) {
        self.script.lock().unwrap().replies.push_back((
            code,
            headers.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
            body.as_bytes().to_vec(),
        ));
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.script.lock().unwrap().seen.clone()
    }
}
