//! Shared helpers for the Nomad contract tests: a Nomad model on a real socket, a small client,
//! job builders, and waiting for a condition with a deadline.
#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use drover_sim::nomad::Nomad;
use drover_sim::{Shared, SimConfig};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

/// A running Nomad model.
pub struct Sim {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The model.
    pub nomad: Arc<Nomad>,
    /// Shared state.
    pub shared: Arc<Shared>,
    /// Token sent as `X-Nomad-Token`, if any.
    pub token: Option<String>,
    http: reqwest::Client,
    _guard: Arc<drover_sim::testing::TestSim>,
}

impl Clone for Sim {
    fn clone(&self) -> Self {
        Sim {
            url: self.url.clone(),
            nomad: self.nomad.clone(),
            shared: self.shared.clone(),
            token: self.token.clone(),
            http: self.http.clone(),
            _guard: self._guard.clone(),
        }
    }
}

/// A fully read answer.
#[derive(Debug)]
pub struct Resp {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body text.
    pub body: String,
}

impl Resp {
    /// A header ("" when absent).
    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
    }
    /// `X-Nomad-Index`.
    pub fn index(&self) -> u64 {
        self.header("x-nomad-index").parse().expect("X-Nomad-Index should be a number")
    }
    /// Body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body {:?} is not JSON: {e}", self.body))
    }
}

/// Starts a simulator with `config` (`drover_sim::testing::spawn`: the lead's listener loop,
/// middleware and `/_sim` controls) and talks to its Nomad listener.
pub async fn spawn(config: SimConfig) -> Sim {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = drover_sim::testing::spawn(config).await;
    Sim {
        url: sim.nomad_url.clone(),
        nomad: sim.nomad.clone(),
        shared: sim.shared.clone(),
        token: None,
        http: reqwest::Client::new(),
        _guard: Arc::new(sim),
    }
}

/// A fast simulator (1 sim second = 1 real ms).
pub async fn fast() -> Sim {
    spawn(SimConfig::fast()).await
}

impl Sim {
    /// The same simulator, sending `token`.
    pub fn with_token(&self, token: &str) -> Sim {
        let mut s = self.clone();
        s.token = Some(token.to_string());
        s
    }

    /// Any request; `body` is sent as given.
    pub async fn raw(&self, method: Method, path: &str, body: Option<String>) -> Resp {
        let mut rb = self.http.request(method, format!("{}{}", self.url, path));
        if let Some(t) = &self.token {
            rb = rb.header("X-Nomad-Token", t);
        }
        if let Some(b) = body {
            rb = rb.body(b);
        }
        let r = rb.send().await.expect("request to the simulator");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.text().await.expect("read body");
        Resp { status, headers, body }
    }

    /// GET.
    pub async fn get(&self, path: &str) -> Resp {
        self.raw(Method::GET, path, None).await
    }

    /// POST JSON.
    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.raw(Method::POST, path, Some(body.to_string())).await
    }

    /// Registers `job` (an api.Job) and expects 200.
    pub async fn register(&self, job: &Value) -> Value {
        let r = self.post("/v1/jobs", &json!({"Job": job})).await;
        assert_eq!(r.status, 200, "register failed: {}", r.body);
        r.json()
    }

    /// `GET /v1/job/:id` body.
    pub async fn job(&self, id: &str) -> Value {
        let r = self.get(&format!("/v1/job/{id}")).await;
        assert_eq!(r.status, 200, "GET job {id}: {}", r.body);
        r.json()
    }

    /// Deployments of a job, sorted by CreateIndex.
    pub async fn deployments(&self, id: &str) -> Vec<Value> {
        let mut v = self.get(&format!("/v1/job/{id}/deployments")).await.json().as_array().cloned().unwrap_or_default();
        v.sort_by_key(|d| d["CreateIndex"].as_u64());
        v
    }

    /// Polls `f` (every real 2 ms) until it returns `Some`, or panics with `what` after 10 s real time.
    pub async fn until<T, F, Fut>(&self, what: &str, mut f: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = f().await {
                return v;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Waits until the job's latest deployment for `version` has `status`; returns it.
    pub async fn deployment_status(&self, id: &str, version: u64, status: &str) -> Value {
        let what = format!("deployment of {id} v{version} is {status}");
        self.until(&what, || async {
            self.deployments(id).await.into_iter().find(|d| d["JobVersion"] == version && d["Status"] == status)
        })
        .await
    }
}

/// A minimal service job: one group `web` with `count`, one task `app`.
pub fn job(id: &str, count: u64) -> Value {
    json!({"ID": id, "Type": "service", "TaskGroups": [{"Name": "web", "Count": count,
        "Tasks": [{"Name": "app", "Driver": "docker", "Config": {"image": "nginx:1"}}]}]})
}

/// Sets a task-level Meta key (a destructive change).
pub fn with_meta(mut job: Value, k: &str, v: &str) -> Value {
    job["TaskGroups"][0]["Tasks"][0]["Meta"] = json!({k: v});
    job
}

/// Sets the group update block.
pub fn with_update(mut job: Value, update: Value) -> Value {
    job["TaskGroups"][0]["Update"] = update;
    job
}

/// Seconds as integer nanoseconds.
pub fn secs(s: u64) -> u64 {
    s * 1_000_000_000
}
