//! Typed helpers over the simulator's APIs: Consul KV (records and statuses), Nomad jobs, and the `/_sim/` control
//! API (faults, leader loss, allocation health, nodes and capacity, event-stream cuts, the request log).

use drover::status::AppStatus;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{DEADLINE, SimProcess, wait_until};

/// One request the simulator answered, and a page of them, as `GET /_sim/log` lists them.
pub use drover_sim::reqlog::{LogPage as RequestLog, LoggedRequest};

impl SimProcess {
    // ---- Consul KV ----

    /// Writes `value` at `key` and returns the key's new `ModifyIndex`.
    pub async fn kv_put(&self, key: &str, value: impl Into<Vec<u8>>) -> u64 {
        let url = format!("{}/v1/kv/{key}", self.consul_url);
        let resp = self.http.put(&url).body(value.into()).send().await.expect("PUT kv");
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        assert!(status.is_success() && body.trim() == "true", "PUT {url}: {status} {body}");
        self.kv_get(key).await.map(|(_, index)| index).expect("the key just written exists")
    }

    /// The value and `ModifyIndex` at `key`, or `None` when absent.
    pub async fn kv_get(&self, key: &str) -> Option<(Vec<u8>, u64)> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Pair {
            value: Option<String>,
            modify_index: u64,
        }
        let url = format!("{}/v1/kv/{key}", self.consul_url);
        let resp = self.http.get(&url).send().await.expect("GET kv");
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
        let pairs: Vec<Pair> = resp.json().await.expect("KV JSON");
        let pair = pairs.into_iter().next()?;
        use base64::Engine as _;
        let value = pair
            .value
            .map(|v| base64::engine::general_purpose::STANDARD.decode(v).expect("KV value is base64"))
            .unwrap_or_default();
        Some((value, pair.modify_index))
    }

    /// Deletes `key`.
    pub async fn kv_delete(&self, key: &str) {
        let url = format!("{}/v1/kv/{key}", self.consul_url);
        let resp = self.http.delete(&url).send().await.expect("DELETE kv");
        assert!(resp.status().is_success(), "DELETE {url}: {}", resp.status());
    }

    /// Writes the record of app `ns/name` (raw bytes, as a person or `drover sync` would) and returns its
    /// generation (the key's `ModifyIndex`).
    pub async fn put_record(&self, ns: &str, name: &str, bytes: impl Into<Vec<u8>>) -> u64 {
        self.kv_put(&format!("drover/apps/{ns}/{name}"), bytes).await
    }

    /// Deletes the record of app `ns/name`.
    pub async fn delete_record(&self, ns: &str, name: &str) {
        self.kv_delete(&format!("drover/apps/{ns}/{name}")).await;
    }

    /// The status Drover wrote for `ns/name`, or `None` when there is none.
    pub async fn status(&self, ns: &str, name: &str) -> Option<AppStatus> {
        let (bytes, _) = self.kv_get(&format!("drover/status/{ns}/{name}")).await?;
        Some(serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!("status of {ns}/{name} is not an AppStatus: {e}: {}", String::from_utf8_lossy(&bytes))
        }))
    }

    /// Waits until the status of `ns/name` satisfies `pred`, and returns it.
    pub async fn wait_for_status(
        &self,
        ns: &str,
        name: &str,
        what: &str,
        pred: impl Fn(&AppStatus) -> bool,
    ) -> AppStatus {
        let what = format!("status of {ns}/{name}: {what}");
        wait_until(DEADLINE, &what, || async {
            match self.status(ns, name).await {
                Some(s) if pred(&s) => Ok(s),
                other => Err(other),
            }
        })
        .await
    }

    // ---- Nomad ----

    /// The job `ns/id` as `GET /v1/job/:id` shows it, or `None` when Nomad has no such job.
    pub async fn job(&self, ns: &str, id: &str) -> Option<Value> {
        let url = format!("{}/v1/job/{id}?namespace={ns}", self.nomad_url);
        let resp = self.http.get(&url).send().await.expect("GET job");
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
        Some(resp.json().await.expect("job JSON"))
    }

    /// Every stored version of the job `ns/id`, newest first.
    pub async fn job_versions(&self, ns: &str, id: &str) -> Vec<Value> {
        let url = format!("{}/v1/job/{id}/versions?namespace={ns}", self.nomad_url);
        let resp = self.http.get(&url).send().await.expect("GET job versions");
        assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
        let body: Value = resp.json().await.expect("versions JSON");
        body["Versions"].as_array().cloned().unwrap_or_default()
    }

    /// Registers `job` by hand through `POST /v1/jobs` (not the `/v1/job/:id` path Drover uses, so a fault aimed
    /// at Drover's writes does not hit it). `Err((status, body))` when Nomad refuses.
    pub async fn register_job(&self, job: &Value) -> Result<Value, (u16, String)> {
        let ns = job["Namespace"].as_str().unwrap_or("default");
        let url = format!("{}/v1/jobs?namespace={ns}", self.nomad_url);
        let resp = self.http.post(&url).json(&json!({ "Job": job })).send().await.expect("POST /v1/jobs");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
        } else {
            Err((status.as_u16(), text))
        }
    }

    // ---- The /_sim/ control API ----

    async fn control(&self, server_url: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{server_url}{path}");
        let mut req = self.http.request(method.clone(), &url);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "{method} {url}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Adds a fault (`FaultSpec` JSON, see sim/src/faults.rs) and returns its id.
    pub async fn add_fault(&self, spec: Value) -> u64 {
        let reply = self.control(&self.nomad_url, reqwest::Method::POST, "/_sim/faults", Some(spec)).await;
        reply["id"].as_u64().expect("fault id")
    }

    /// The faults in force, as `GET /_sim/faults` lists them (`[{id, spec, remaining}]`).
    pub async fn faults(&self) -> Vec<Value> {
        let reply = self.control(&self.nomad_url, reqwest::Method::GET, "/_sim/faults", None).await;
        reply.as_array().cloned().unwrap_or_default()
    }

    /// Removes every fault.
    pub async fn clear_faults(&self) {
        self.control(&self.nomad_url, reqwest::Method::DELETE, "/_sim/faults", None).await;
    }

    /// Loses (`false`) or regains (`true`) the leader of `server` (`consul` or `nomad`).
    pub async fn set_leader(&self, server: &str, present: bool) {
        let body = json!({ "server": server, "present": present });
        self.control(&self.nomad_url, reqwest::Method::POST, "/_sim/leader", Some(body)).await;
    }

    /// Sets the simulated workload of `ns/job` at `version` (every version when `None`): `load` requests/s,
    /// `error_rate` of them answered 500.
    pub async fn set_workload(&self, ns: &str, job: &str, version: Option<u64>, load: f64, error_rate: f64) {
        let body = json!({"namespace": ns, "job": job, "version": version, "load": load, "error_rate": error_rate});
        let resp = self.http.post(format!("{}/_sim/nomad/workload", self.nomad_url)).json(&body).send().await;
        assert!(resp.is_ok_and(|r| r.status().is_success()), "POST /_sim/nomad/workload {body}");
    }

    /// Sets how allocations of job `ns/job` become healthy (`healthy`, `unhealthy`, `never`), for one job version
    /// or, with `None`, for every version without its own setting.
    pub async fn set_health(&self, ns: &str, job: &str, version: Option<u64>, mode: &str) {
        let body = json!({ "namespace": ns, "job": job, "version": version, "mode": mode });
        self.control(&self.nomad_url, reqwest::Method::POST, "/_sim/nomad/health", Some(body)).await;
    }

    /// Makes allocations of job `ns/job` at `version` report healthy `delay_ms` simulated milliseconds after they
    /// are placed (plus the group's `min_healthy_time`), so a rollout lasts as long as a test needs.
    pub async fn set_health_delay(&self, ns: &str, job: &str, version: u64, delay_ms: u64) {
        let body = json!({ "namespace": ns, "job": job, "version": version, "mode": "delay", "delay_ms": delay_ms });
        self.control(&self.nomad_url, reqwest::Method::POST, "/_sim/nomad/health", Some(body)).await;
    }

    // ---- Nomad capacity (nodes) and event-stream cuts ----

    /// The simulated Nomad client nodes (`GET /_sim/nomad/nodes`: `ID`, `Resources`, `Used`, `Free`, `Drain`, …).
    pub async fn nomad_nodes(&self) -> Vec<Value> {
        let reply = self.control(&self.nomad_url, reqwest::Method::GET, "/_sim/nomad/nodes", None).await;
        reply.as_array().cloned().unwrap_or_default()
    }

    /// Registers a node with `cpu` MHz and `memory_mb` MB; returns its ID. Blocked evaluations run again.
    pub async fn add_nomad_node(&self, cpu: u64, memory_mb: u64) -> String {
        let body = json!({ "cpu": cpu, "memory_mb": memory_mb });
        let reply = self.control(&self.nomad_url, reqwest::Method::POST, "/_sim/nomad/nodes", Some(body)).await;
        reply["ID"].as_str().expect("node ID").to_string()
    }

    /// Drains node `id`: its allocations move to other nodes when they fit, else keep running there.
    pub async fn drain_nomad_node(&self, id: &str) {
        let path = format!("/_sim/nomad/nodes/{id}/drain");
        self.control(&self.nomad_url, reqwest::Method::POST, &path, None).await;
    }

    /// Removes node `id`: its allocations are lost and their replacements placed elsewhere or queued.
    pub async fn remove_nomad_node(&self, id: &str) {
        let path = format!("/_sim/nomad/nodes/{id}");
        self.control(&self.nomad_url, reqwest::Method::DELETE, &path, None).await;
    }

    /// Removes every node, so that nothing can be placed until a node is added.
    pub async fn remove_all_nomad_nodes(&self) {
        for node in self.nomad_nodes().await {
            let id = node["ID"].as_str().expect("node ID").to_string();
            self.remove_nomad_node(&id).await;
        }
    }

    /// Cuts every open `/v1/event/stream` mid-stream (and, with `window_ms`, every stream opened during that many
    /// sim milliseconds); returns how many streams were open.
    pub async fn cut_event_streams(&self, window_ms: Option<u64>) -> u64 {
        let body = json!({ "duration_ms": window_ms });
        let path = "/_sim/nomad/event-stream/cut";
        let reply = self.control(&self.nomad_url, reqwest::Method::POST, path, Some(body)).await;
        reply["cut"].as_u64().expect("number of streams cut")
    }

    /// Drops every request in flight on `server` (`consul` or `nomad`: blocking queries waiting) without an
    /// answer, as a server restart does; returns how many there were.
    pub async fn cut_requests(&self, server: &str) -> u64 {
        let body = json!({ "server": server });
        let reply = self.control(&self.nomad_url, reqwest::Method::POST, "/_sim/requests/cut", Some(body)).await;
        reply["cut"].as_u64().expect("number of requests cut")
    }

    /// The job summary of `ns/id` (`GET /v1/job/:id/summary`), or `None` when Nomad has no such job.
    pub async fn job_summary(&self, ns: &str, id: &str) -> Option<Value> {
        let url = format!("{}/v1/job/{id}/summary?namespace={ns}", self.nomad_url);
        let resp = self.http.get(&url).send().await.expect("GET job summary");
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
        Some(resp.json().await.expect("summary JSON"))
    }

    /// The evaluations of job `ns/id`, oldest first (`GET /v1/job/:id/evaluations`).
    pub async fn job_evaluations(&self, ns: &str, id: &str) -> Vec<Value> {
        let url = format!("{}/v1/job/{id}/evaluations?namespace={ns}", self.nomad_url);
        let resp = self.http.get(&url).send().await.expect("GET job evaluations");
        assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
        resp.json::<Value>().await.expect("evaluations JSON").as_array().cloned().unwrap_or_default()
    }

    /// Requests answered after `since` (0 for all kept), for one server or both.
    pub async fn log(&self, server: Option<&str>, since: u64) -> RequestLog {
        let mut path = format!("/_sim/log?since={since}");
        if let Some(s) = server {
            path.push_str(&format!("&server={s}"));
        }
        let reply = self.control(&self.nomad_url, reqwest::Method::GET, &path, None).await;
        serde_json::from_value(reply).expect("request log JSON")
    }

    /// Forgets the request log (sequence numbers keep growing).
    pub async fn clear_log(&self) {
        self.control(&self.nomad_url, reqwest::Method::DELETE, "/_sim/log", None).await;
    }

    /// The Nomad requests after `since` with this method whose path is exactly `path`.
    pub async fn nomad_requests(&self, since: u64, method: &str, path: &str) -> Vec<LoggedRequest> {
        let log = self.log(Some("nomad"), since).await;
        log.requests.into_iter().filter(|r| r.method == method && r.path == path).collect()
    }
}
