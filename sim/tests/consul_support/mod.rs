//! Shared helpers for the Consul contract tests: a running Consul model on a real socket and a tiny HTTP client.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use drover_sim::consul::Consul;
use drover_sim::testing::TestSim;
use drover_sim::{Shared, SimConfig};
use reqwest::Method;
use reqwest::header::HeaderMap;

/// A running Consul model.
pub struct Sim {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The model, for direct assertions.
    pub consul: Arc<Consul>,
    /// Shared state (clock, leader).
    pub shared: Arc<Shared>,
    http: reqwest::Client,
    _sim: TestSim,
}

/// An answer, fully read.
#[derive(Debug)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body as text.
    pub body: String,
}

impl Resp {
    /// A header as a string ("" when absent).
    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
    }

    /// `X-Consul-Index` as a number.
    pub fn index(&self) -> u64 {
        self.header("x-consul-index").parse().expect("X-Consul-Index should be a number")
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body {:?} is not JSON: {e}", self.body))
    }
}

/// Starts a simulator (both servers, the lead's middleware) with the given config.
pub async fn spawn(config: SimConfig) -> Sim {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = drover_sim::testing::spawn(config).await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    Sim {
        url: sim.consul_url.clone(),
        consul: Arc::clone(&sim.consul),
        shared: Arc::clone(&sim.shared),
        http,
        _sim: sim,
    }
}

/// A fast simulator: one modelled second lasts `scale` real seconds.
pub async fn spawn_scaled(scale: f64) -> Sim {
    spawn(SimConfig { time_scale: scale, ..SimConfig::default() }).await
}

impl Sim {
    /// Sends a request with optional headers and body.
    pub async fn req(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Option<Vec<u8>>) -> Resp {
        let mut rb = self.http.request(method, format!("{}{}", self.url, path));
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.body(b);
        }
        let r = rb.send().await.unwrap_or_else(|e| panic!("request {path} failed: {e}"));
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.text().await.expect("body");
        Resp { status, headers, body }
    }

    /// GET.
    pub async fn get(&self, path: &str) -> Resp {
        self.req(Method::GET, path, &[], None).await
    }

    /// PUT with a body.
    pub async fn put(&self, path: &str, body: &str) -> Resp {
        self.req(Method::PUT, path, &[], Some(body.as_bytes().to_vec())).await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> Resp {
        self.req(Method::DELETE, path, &[], None).await
    }

    /// PUT that must answer 200 `true`.
    pub async fn put_ok(&self, path: &str, body: &str) {
        let r = self.put(path, body).await;
        assert_eq!((r.status, r.body.as_str()), (200, "true"), "PUT {path}");
    }

    /// Creates a session from a JSON body and returns its ID.
    pub async fn session(&self, body: &str) -> String {
        let r = self.put("/v1/session/create", body).await;
        assert_eq!(r.status, 200, "session create: {}", r.body);
        r.json()["ID"].as_str().expect("ID").to_owned()
    }

    /// The ModifyIndex of a key (panics if missing).
    pub async fn modify_index(&self, key: &str) -> u64 {
        let r = self.get(&format!("/v1/kv/{key}")).await;
        assert_eq!(r.status, 200, "GET {key}");
        r.json()[0]["ModifyIndex"].as_u64().expect("ModifyIndex")
    }

    /// Simulated time elapsed since the simulator started.
    pub fn sim_now(&self) -> Duration {
        self.shared.clock.now().since_start()
    }
}

/// Awaits `cond` (polled on every change of the model, with a short real-time tick) until `deadline` real time;
/// panics with `what` if it never holds.
pub async fn eventually<F, Fut>(deadline: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let result = tokio::time::timeout(deadline, async {
        loop {
            if cond().await {
                return;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    assert!(result.is_ok(), "timed out after {deadline:?} waiting for: {what}");
}
