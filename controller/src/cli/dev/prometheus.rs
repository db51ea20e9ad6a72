//! `drover dev`'s own Prometheus (feature `dev`): when `prometheus` is on `PATH`, dev starts it on
//! `--prometheus-addr` scraping the in-process simulator's `/_sim/metrics` every second, so the canary example's
//! analysis has real numbers to judge. The process and its data directory go away with `drover dev`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

/// How long Prometheus may take to answer `/-/ready` before dev gives up on it.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// A running `prometheus`, killed and its data removed when dropped.
#[derive(Debug)]
pub(super) struct DevPrometheus {
    /// `http://ADDR`, what the canary example's `prometheus.address` is set to.
    pub url: String,
    child: Child,
    dir: PathBuf,
}

impl Drop for DevPrometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The first `name` in the directories of `path` (the value of `PATH`).
pub fn find_on_path(name: &str, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path?).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// The scrape configuration: the simulator's Nomad listener every second (also what the e2e tests' Prometheus uses). `honor_labels`: the simulator's own `job`
/// label (the Nomad job) wins over the scrape job's name, as the example's query expects.
pub fn config(nomad_url: &str) -> String {
    let target = nomad_url.trim_start_matches("http://").trim_end_matches('/');
    format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
         scrape_configs:\n\
         \x20 - job_name: sim\n\
         \x20   honor_labels: true\n\
         \x20   metrics_path: /_sim/metrics\n\
         \x20   static_configs: [{{targets: ['{target}']}}]\n"
    )
}

/// The command that runs `binary` on `addr` scraping the simulator at `nomad_url`, with its configuration (written
/// here) and data in `dir`, logging warnings only (dev's and the e2e tests' Prometheus).
///
/// # Errors
/// `prometheus.yml` cannot be written in `dir`.
pub fn command(binary: &Path, dir: &Path, addr: &str, nomad_url: &str) -> std::io::Result<Command> {
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, config(nomad_url))?;
    let mut command = Command::new(binary);
    command
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--log.level=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    Ok(command)
}

/// Starts `binary` listening on `addr`, scraping the simulator at `nomad_url`, and waits until it is ready.
///
/// # Errors
/// The data directory cannot be written, the process cannot start, exits early (e.g. the port is taken; the
/// error quotes its log) or is not ready within 20 s.
pub(super) async fn start(binary: &Path, addr: &str, nomad_url: &str) -> anyhow::Result<DevPrometheus> {
    let dir = std::env::temp_dir().join(format!("drover-dev-prometheus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let log_path = dir.join("prometheus.log");
    let log = std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let child = command(binary, &dir, addr, nomad_url)
        .with_context(|| format!("cannot write prometheus.yml in {}", dir.display()))?
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let mut prometheus = DevPrometheus { url: format!("http://{addr}"), child, dir };
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().context("HTTP client")?;
    let deadline = tokio::time::Instant::now() + READY_WITHIN;
    loop {
        if let Ok(Some(exit)) = prometheus.child.try_wait() {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(3).collect();
            bail!(
                "prometheus exited ({exit}) before it was ready: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            );
        }
        let ready = http.get(format!("{}/-/ready", prometheus.url)).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            return Ok(prometheus);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("prometheus on {addr} was not ready within {READY_WITHIN:?} (log: {})", log_path.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_should_scrape_the_simulator_every_second_keeping_its_job_label() {
        let text = config("http://127.0.0.1:4646");
        assert!(text.contains("targets: ['127.0.0.1:4646']"), "{text}");
        assert!(text.contains("metrics_path: /_sim/metrics"));
        assert!(text.contains("honor_labels: true"));
        assert!(text.contains("scrape_interval: 1s"));
    }

    #[test]
    fn find_on_path_should_take_the_first_directory_holding_the_file() {
        let base = std::env::temp_dir().join(format!("drover-find-on-path-{}", std::process::id()));
        let (a, b) = (base.join("a"), base.join("b"));
        std::fs::create_dir_all(&a).expect("create a");
        std::fs::create_dir_all(&b).expect("create b");
        std::fs::write(b.join("prometheus"), "").expect("write b/prometheus");
        let path = std::env::join_paths([&a, &b]).expect("join");
        assert_eq!(find_on_path("prometheus", Some(&path)), Some(b.join("prometheus")));
        assert_eq!(find_on_path("promtool", Some(&path)), None);
        assert_eq!(find_on_path("prometheus", None), None);
        let _ = std::fs::remove_dir_all(&base);
    }
}
