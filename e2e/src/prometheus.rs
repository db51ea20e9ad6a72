//! A real Prometheus server (Debian's `prometheus` package; `scripts/test.sh` installs it when missing) scraping the
//! simulator's `/_sim/metrics` every second, on a free loopback port, with its data in a fresh directory.

use std::path::PathBuf;

use serde_json::Value;

use crate::process::{Owned, free_port, log_file};
use crate::{DEADLINE, SimProcess, http_client, wait_until};

/// The path of a tool on `PATH`; panics with what to do when it is missing (tests that need it must not pass
/// without it).
pub fn require_tool(name: &str) -> PathBuf {
    let path = drover::cli::dev::prometheus::find_on_path(name, std::env::var_os("PATH").as_deref());
    path.unwrap_or_else(|| {
        panic!("`{name}` is not on PATH: install Debian's `prometheus` package (scripts/test.sh does when run as root)")
    })
}

/// Runs `promtool check metrics` on a `/metrics` text; panics with promtool's words unless it passes. Returns what
/// promtool said (callers may look for their own series in it).
pub fn promtool_check_metrics(text: &str) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new(require_tool("promtool"))
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    child.stdin.take().expect("promtool stdin").write_all(text.as_bytes()).expect("write metrics to promtool");
    let out = child.wait_with_output().expect("promtool ran");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool check metrics: {said}");
    said
}

/// A `prometheus` process; killed, and its data removed, when dropped.
#[derive(Debug)]
pub struct PrometheusProcess {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    dir: PathBuf,
    _child: Owned,
}

impl Drop for PrometheusProcess {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl PrometheusProcess {
    /// Starts Prometheus scraping `sim` and waits until it is ready and has scraped the simulator once.
    pub async fn start(sim: &SimProcess) -> PrometheusProcess {
        PrometheusProcess::start_on(sim, free_port()).await
    }

    /// As [`PrometheusProcess::start`], listening on `port` (e.g. one a record already points at).
    pub async fn start_on(sim: &SimProcess, port: u16) -> PrometheusProcess {
        PrometheusProcess::start_for(&sim.nomad_url, port).await
    }

    /// Prometheus on `port` scraping the simulator whose Nomad API is at `nomad_url` (`http://127.0.0.1:PORT`).
    pub async fn start_for(nomad_url: &str, port: u16) -> PrometheusProcess {
        let binary = require_tool("prometheus");
        let dir = std::env::temp_dir().join(format!("drover-e2e-prometheus-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("create the Prometheus data directory");
        let (log, stderr) = log_file("prometheus");
        eprintln!("prometheus stderr: {}", log.display());
        let child = drover::cli::dev::prometheus::command(&binary, &dir, &format!("127.0.0.1:{port}"), nomad_url)
            .expect("write prometheus.yml")
            .stderr(stderr)
            .spawn()
            .expect("spawn prometheus");
        let prometheus = PrometheusProcess { url: format!("http://127.0.0.1:{port}"), dir, _child: Owned(child, log) };
        prometheus.wait_first_scrape().await;
        prometheus
    }

    /// Waits until `up{job="sim"}` is 1: Prometheus runs and has scraped the simulator.
    async fn wait_first_scrape(&self) {
        let http = http_client();
        wait_until(DEADLINE, "Prometheus to scrape the simulator once (up{job=\"sim\"} == 1)", || async {
            let url = format!("{}/api/v1/query", self.url);
            let resp = http.get(&url).query(&[("query", "up{job=\"sim\"}")]).send().await.map_err(|e| e.to_string())?;
            let body: Value = resp.json().await.map_err(|e| e.to_string())?;
            match body["data"]["result"][0]["value"][1].as_str() {
                Some("1") => Ok(()),
                _ => Err(body.to_string()),
            }
        })
        .await;
    }
}
