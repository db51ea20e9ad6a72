//! The end-to-end harness: real `drover-sim` and `drover run` processes on free loopback ports, typed helpers over
//! their HTTP APIs, and [`wait_until`], the only way a test waits for something.
//!
//! Rules the tests follow (DESIGN §9, issue #4):
//! - every test starts its own processes on ports the kernel picks, so tests run in parallel without sharing anything;
//! - assertions are on what Nomad runs (the Nomad API), on status (Consul KV) and on the simulator's request log,
//!   never on log text;
//! - nothing sleeps to wait for a condition: [`wait_until`] polls with a deadline and its panic says what was awaited
//!   and what was last seen. To show that something does *not* happen, a test waits for a positive event that proves
//!   time passed (resyncs counted by `drover_reconcile_total`) and then reads the request log.
//!
//! Binaries are not built here: run `cargo build --workspace --bins` first (the README's test command does). The
//! processes' stderr goes to `<target>/debug/e2e-logs/`, one file per process, named in the test's output.

use std::fmt::Debug;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use drover::status::AppStatus;
use serde::Deserialize;
use serde_json::{Value, json};
use std::io::BufRead;
use std::process::{Child, Command};
use tokio::time::Instant;

/// How long a test waits for a condition that normally holds within a second or two (generous for a loaded 2-core
/// machine running tests in parallel, and for the controller's Consul watch, which takes one request per 5 s under
/// churn).
pub const DEADLINE: Duration = Duration::from_secs(30);

/// How often [`wait_until`] looks again.
const POLL: Duration = Duration::from_millis(50);

/// Time scale for the simulator: a modelled 10 s lasts 200 ms, so deployments end well under a second.
pub const TIME_SCALE: f64 = 0.02;

/// Polls `check` every 50 ms until it returns `Ok`, and returns that value. Panics after `deadline` with `what` and
/// the last `Err` value `check` returned (what was observed instead).
pub async fn wait_until<T, O, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, O>>,
    O: Debug,
{
    let until = Instant::now() + deadline;
    loop {
        let last = match check().await {
            Ok(v) => return v,
            Err(observed) => observed,
        };
        if Instant::now() >= until {
            panic!("timed out after {deadline:?} waiting for {what}; last observed: {last:#?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The directory holding the workspace's debug binaries: next to the running test executable
/// (`<target>/debug/deps/..`), else `$CARGO_TARGET_DIR/debug`, else `<workspace>/target/debug`.
fn bin_dir() -> PathBuf {
    let beside_test = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()));
    if let Some(dir) = beside_test.filter(|d| d.join("drover-sim").is_file()) {
        return dir;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(".")).to_path_buf();
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir.join("debug"),
        Some(dir) => workspace.join(dir).join("debug"),
        None => workspace.join("target").join("debug"),
    }
}

/// The path of one of the workspace's binaries (`drover`, `drover-sim`); panics when it was not built.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} not found: run `cargo build --workspace --bins` first (the README's test command does)",
        path.display()
    );
    path
}

/// A fresh file for one process's stderr, under `<target>/debug/e2e-logs/`.
fn log_file(name: &str) -> (PathBuf, Stdio) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = bin_dir().join("e2e-logs");
    let _ = std::fs::create_dir_all(&dir);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("{name}-{}-{n}.log", std::process::id()));
    match std::fs::File::create(&path) {
        Ok(f) => (path, Stdio::from(f)),
        Err(_) => (path, Stdio::null()),
    }
}

/// A child process that is killed (and reaped) when dropped, also when a test panics. Its stderr file is removed
/// when the test passed, and kept (its path is in the test's output) when the test panics.
#[derive(Debug)]
struct Owned(Child, PathBuf);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.1);
        }
    }
}

/// An HTTP client for the tests (plain HTTP; rustls still needs its provider installed once).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("build the test HTTP client")
}

/// One request the simulator answered, as `GET /_sim/log` lists it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct LoggedRequest {
    /// Increasing sequence number.
    pub seq: u64,
    /// `consul` or `nomad`.
    pub server: String,
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// Status sent; 0 when a fault dropped the connection.
    pub status: u16,
    /// Simulated milliseconds since the simulator started.
    pub at_ms: u64,
}

impl LoggedRequest {
    /// True for methods that change state.
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "PUT" | "POST" | "DELETE" | "PATCH")
    }
}

/// What `GET /_sim/log` answers.
#[derive(Clone, Debug, Deserialize)]
pub struct RequestLog {
    /// The newest sequence number.
    pub last_seq: u64,
    /// Requests after `since`.
    pub requests: Vec<LoggedRequest>,
}

/// A `drover-sim` process with both servers on free loopback ports; killed when dropped.
#[derive(Debug)]
pub struct SimProcess {
    /// `http://127.0.0.1:PORT` of the simulated Consul.
    pub consul_url: String,
    /// `http://127.0.0.1:PORT` of the simulated Nomad.
    pub nomad_url: String,
    http: reqwest::Client,
    // Dropped after `_child` is killed, so the simulator never writes to a closed pipe.
    _child: Owned,
    _stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl SimProcess {
    /// Starts `drover-sim` at this time scale and waits for both of its `… listening on http://…` lines.
    pub async fn start(time_scale: f64) -> SimProcess {
        let (log, stderr) = log_file("drover-sim");
        eprintln!("drover-sim stderr: {}", log.display());
        let mut child = Command::new(binary("drover-sim"))
            .args(["--consul-addr", "127.0.0.1:0", "--nomad-addr", "127.0.0.1:0", "--time-scale"])
            .arg(time_scale.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn drover-sim");
        let stdout = child.stdout.take().expect("drover-sim stdout is piped");
        let child = Owned(child, log.clone());
        // Blocking reads on a blocking thread; the pipe stays open (and unread) for the process's life.
        let read = tokio::task::spawn_blocking(move || {
            let mut stdout = std::io::BufReader::new(stdout);
            let (mut consul_url, mut nomad_url) = (None, None);
            let mut line = String::new();
            while consul_url.is_none() || nomad_url.is_none() {
                line.clear();
                match stdout.read_line(&mut line) {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
                if let Some(url) = line.trim().strip_prefix("consul listening on ") {
                    consul_url = Some(url.to_string());
                } else if let Some(url) = line.trim().strip_prefix("nomad listening on ") {
                    nomad_url = Some(url.to_string());
                }
            }
            Some((consul_url?, nomad_url?, stdout))
        });
        let read = tokio::time::timeout(DEADLINE, read).await;
        let Ok(Ok(Some((consul_url, nomad_url, stdout)))) = read else {
            panic!("drover-sim did not print its addresses (see {})", log.display());
        };
        SimProcess { consul_url, nomad_url, http: http_client(), _child: child, _stdout: stdout }
    }

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

    /// Sets how allocations of job `ns/job` become healthy (`healthy`, `unhealthy`, `never`), for one job version
    /// or, with `None`, for every version without its own setting.
    pub async fn set_health(&self, ns: &str, job: &str, version: Option<u64>, mode: &str) {
        let body = json!({ "namespace": ns, "job": job, "version": version, "mode": mode });
        self.control(&self.nomad_url, reqwest::Method::POST, "/_sim/nomad/health", Some(body)).await;
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

/// A `drover run` process against a [`SimProcess`], serving its HTTP API on a free loopback port; killed when
/// dropped.
#[derive(Debug)]
pub struct DroverProcess {
    /// `http://127.0.0.1:PORT` of `/metrics`, `/readyz`, `/api/v1/apps`.
    pub url: String,
    /// Where its stderr goes.
    pub log: PathBuf,
    http: reqwest::Client,
    child: Owned,
}

impl DroverProcess {
    /// Runs `drover run` against `sim` with `--resync 1s` unless `extra_args` gives `--resync`, and waits until
    /// `/readyz` answers 200. Retries on another port if the one picked was taken meanwhile.
    pub async fn start(sim: &SimProcess, extra_args: &[&str]) -> DroverProcess {
        let mut last_stderr = String::new();
        for _ in 0..3 {
            let port = free_port();
            let (log, stderr) = log_file("drover");
            eprintln!("drover stderr: {}", log.display());
            let mut cmd = Command::new(binary("drover"));
            cmd.args(["run", "--consul-addr", &sim.consul_url, "--nomad-addr", &sim.nomad_url, "--listen"])
                .arg(format!("127.0.0.1:{port}"));
            if !extra_args.contains(&"--resync") {
                cmd.args(["--resync", "1s"]);
            }
            let child = cmd
                .args(extra_args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("spawn drover run");
            let child = Owned(child, log.clone());
            let mut drover = DroverProcess { url: format!("http://127.0.0.1:{port}"), log, http: http_client(), child };
            if drover.wait_ready().await {
                return drover;
            }
            // The file is removed when `drover` drops: keep what it said for the panic below.
            last_stderr = std::fs::read_to_string(&drover.log).unwrap_or_default();
        }
        panic!("drover run did not start; its stderr:\n{last_stderr}");
    }

    /// Waits for `/readyz` 200; false when the process exited first (e.g. its port was taken).
    async fn wait_ready(&mut self) -> bool {
        let until = Instant::now() + DEADLINE;
        loop {
            if self.child.0.try_wait().ok().flatten().is_some() {
                return false;
            }
            if let Ok(resp) = self.http.get(format!("{}/readyz", self.url)).send().await
                && resp.status().is_success()
            {
                return true;
            }
            assert!(Instant::now() < until, "drover never became ready (see {})", self.log.display());
            tokio::time::sleep(POLL).await;
        }
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.0.try_wait(), Ok(None))
    }

    /// Panics (naming the log file) if the process exited.
    pub fn assert_running(&mut self) {
        let exit = self.child.0.try_wait().ok().flatten();
        assert!(exit.is_none(), "drover exited with {exit:?} (see {})", self.log.display());
    }

    /// The sum of `drover_reconcile_total` over all results: reconciles finished so far.
    pub async fn reconcile_total(&self) -> u64 {
        let text = self.http.get(format!("{}/metrics", self.url)).send().await.expect("GET /metrics");
        let text = text.text().await.expect("metrics text");
        metric_sum(&text, "drover_reconcile_total")
    }

    /// Waits until at least `n` more reconciles finished than `since` (for example `n = resyncs × apps`): the
    /// positive event that proves time passed when a test checks that nothing was written.
    pub async fn wait_reconciles(&self, since: u64, n: u64) -> u64 {
        let what = format!("{n} reconciles after the first {since}");
        wait_until(DEADLINE, &what, || async {
            let now = self.reconcile_total().await;
            if now >= since + n { Ok(now) } else { Err(now) }
        })
        .await
    }
}

/// The sum of every sample of `name` (any labels) in Prometheus/OpenMetrics text.
pub fn metric_sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// A valid template record for `default/<name>` running `image` (2 replicas, 1 s `minHealthyTime` so rollouts end
/// within a few hundred real milliseconds at [`TIME_SCALE`]); `extra_spec` is YAML appended under `spec:` (each line
/// indented by two spaces), e.g. `"deletionPolicy: Purge"`.
pub fn template_record(name: &str, image: &str, extra_spec: &str) -> String {
    let mut yaml = format!(
        "apiVersion: drover.io/v1alpha1\nkind: App\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  \
         template:\n    image: {image}\n    count: 2\n    ports: {{http: 8080}}\n  strategy:\n    minHealthyTime: 1s\n    \
         healthyDeadline: 1m\n"
    );
    for line in extra_spec.lines() {
        yaml.push_str("  ");
        yaml.push_str(line);
        yaml.push('\n');
    }
    yaml
}

/// The image of the first task of the first group of a Nomad job.
pub fn job_image(job: &Value) -> Option<&str> {
    job["TaskGroups"][0]["Tasks"][0]["Config"]["image"].as_str()
}

/// The job's `Meta["drover.io/app"]`.
pub fn job_owner(job: &Value) -> Option<&str> {
    job["Meta"]["drover.io/app"].as_str()
}

/// The job's `JobModifyIndex`.
pub fn job_modify_index(job: &Value) -> u64 {
    job["JobModifyIndex"].as_u64().unwrap_or(0)
}

/// The job's `Version`.
pub fn job_version(job: &Value) -> u64 {
    job["Version"].as_u64().unwrap_or(0)
}
