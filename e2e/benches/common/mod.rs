//! Helpers shared by the benchmarks: release binaries, child processes on free loopback ports, `/proc` memory
//! figures, percentiles and the PASS/MISS report lines.
//!
//! Benchmarks print figures; they never assert on time. Each child process is killed when its handle drops, so a
//! benchmark that fails half-way leaves nothing running.

// Each bench target compiles this module on its own and uses a different part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};

/// The workspace root (the parent of `e2e/`).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Path of a release binary of this workspace, or an error telling how to build it.
///
/// `BENCH_BIN_DIR` names another directory holding the binaries (a copy that concurrent builds in a shared target
/// directory cannot replace mid-run, which also keeps `perf` symbols resolvable); otherwise `CARGO_TARGET_DIR` or
/// `<workspace>/target`, then `release/`.
pub fn release_bin(name: &str, package: &str) -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("BENCH_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| workspace_root().join("target"), PathBuf::from)
            .join("release"),
    };
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: build it first with `cargo build --release -p {package} --bins` (the benchmark runs the \
             release binary as a separate process)",
            path.display()
        );
    }
    Ok(path)
}

/// One line naming the machine: logical CPUs (`nproc`) and the CPU model from `/proc/cpuinfo`.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("nproc={cpus}, CPU: {model}")
}

/// A `VmRSS`/`VmHWM`-style field of `/proc/<pid>/status`, in bytes.
pub fn proc_status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    let kb: u64 = line[field.len() + 1..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

/// A child process, killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    /// Lines the child printed on stdout after the ones the starter consumed.
    pub stdout: mpsc::Receiver<String>,
}

impl ChildGuard {
    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (and with what).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `cmd` with stdout piped into a channel of lines (read on a helper thread) and stderr discarded unless
/// `BENCH_VERBOSE` is set.
pub fn spawn_piped(cmd: Command) -> anyhow::Result<ChildGuard> {
    spawn_piped_to(cmd, None)
}

/// [`spawn_piped`], with stderr to `stderr` when given.
pub fn spawn_piped_to(mut cmd: Command, stderr: Option<Stdio>) -> anyhow::Result<ChildGuard> {
    let verbose = std::env::var_os("BENCH_VERBOSE").is_some();
    let stderr = stderr.unwrap_or_else(|| if verbose { Stdio::inherit() } else { Stdio::null() });
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr);
    let mut child = cmd.spawn().with_context(|| format!("spawn {cmd:?}"))?;
    let out = child.stdout.take().context("child stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok(ChildGuard { child, stdout: rx })
}

/// A `drover-sim` process on two free loopback ports.
#[derive(Debug)]
pub struct Sim {
    /// The process.
    pub proc: ChildGuard,
    /// `http://127.0.0.1:port` of the Consul API.
    pub consul: String,
    /// `http://127.0.0.1:port` of the Nomad API.
    pub nomad: String,
}

impl Sim {
    /// Starts the release `drover-sim` with `time_scale` and waits (at most 10 s) for both URLs on stdout.
    pub fn start(time_scale: f64) -> anyhow::Result<Sim> {
        let bin = release_bin("drover-sim", "drover-sim")?;
        let mut cmd = Command::new(bin);
        cmd.args(["--consul-addr", "127.0.0.1:0", "--nomad-addr", "127.0.0.1:0", "--time-scale"])
            .arg(time_scale.to_string())
            .args(["--seed", "1"]);
        let mut proc = spawn_piped(cmd)?;
        let (mut consul, mut nomad) = (None, None);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while consul.is_none() || nomad.is_none() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let line = match proc.stdout.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => bail!("drover-sim did not print both listening URLs within 10 s (exit: {:?})", proc.exited()),
            };
            if let Some(url) = line.strip_prefix("consul listening on ") {
                consul = Some(url.trim().to_string());
            } else if let Some(url) = line.strip_prefix("nomad listening on ") {
                nomad = Some(url.trim().to_string());
            }
        }
        let (Some(consul), Some(nomad)) = (consul, nomad) else { bail!("unreachable: both URLs were read") };
        Ok(Sim { proc, consul, nomad })
    }
}

/// A free loopback port (bound then released; a small race is acceptable for a benchmark).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// An HTTP client with keep-alive connections and a generous pool, for load generation on loopback.
pub fn client() -> anyhow::Result<reqwest::Client> {
    // reqwest is built without a default rustls provider; plain HTTP needs none, but install ring once anyway so
    // building the client never panics.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(600))
        .build()
        .context("build HTTP client")
}

/// The `p`-th percentile (0..=100, nearest rank) of an ascending slice.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of a slice (sorted in place): the middle value, or the mean of the two middle ones. A run that has no
/// value for the figure (NaN) is left out, rather than counted as the largest; NaN when no run has one.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.is_nan().cmp(&b.is_nan()).then(a.total_cmp(b)));
    let known = &values[..values.iter().filter(|v| !v.is_nan()).count()];
    match known.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => known[n / 2],
        n => (known[n / 2 - 1] + known[n / 2]) / 2.0,
    }
}

/// Resets the peak RSS (`VmHWM`) of `pid` to its current RSS (`/proc/PID/clear_refs`, value 5), so a later
/// `VmHWM` reading is the peak since now; false when the kernel refused.
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// `defaults` followed by the flags of `BENCH_DROVER_ARGS`; a default whose flag `BENCH_DROVER_ARGS` also gives is
/// left out (clap refuses a flag given twice).
pub fn drover_args(defaults: &[(&str, &str)]) -> Vec<String> {
    let extra = std::env::var("BENCH_DROVER_ARGS").unwrap_or_default();
    let given: Vec<&str> = extra.split_whitespace().collect();
    let mut args = Vec::new();
    for (flag, value) in defaults {
        if !given.iter().any(|g| g == flag || g.starts_with(&format!("{flag}="))) {
            args.extend([flag.to_string(), value.to_string()]);
        }
    }
    args.extend(given.iter().map(|g| g.to_string()));
    args
}

/// Prints one figure with its target and PASS/MISS.
pub fn report(name: &str, value: &str, target: &str, pass: bool) {
    let verdict = if pass { "PASS" } else { "MISS" };
    println!("  {verdict:<4}  {name}: {value}   (target {target})");
}

/// Prints one figure that has no target (a report, not a verdict).
pub fn info(name: &str, value: &str) {
    println!("  INFO  {name}: {value}");
}

/// Megabytes, for printing.
pub fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A `drover run` process against a simulator, with its HTTP endpoints on a free loopback port.
#[derive(Debug)]
pub struct Drover {
    /// The process.
    pub proc: ChildGuard,
    /// `http://127.0.0.1:port` of `/metrics`, `/healthz`, `/api/v1/apps`.
    pub url: String,
}

impl Drover {
    /// Starts the release `drover run` against `sim` with extra flags (e.g. `--resync 10s`); returns once the process
    /// is spawned (not once it is ready: a cold-start measurement times that itself).
    pub fn start(sim: &Sim, extra: &[&str]) -> anyhow::Result<Drover> {
        let bin = release_bin("drover", "drover")?;
        let port = free_port()?;
        let mut cmd = Command::new(bin);
        // The simulator runs without ACLs: no token from the environment may leak in.
        for var in ["CONSUL_HTTP_TOKEN", "CONSUL_HTTP_TOKEN_FILE", "NOMAD_TOKEN", "NOMAD_REGION", "RUST_LOG"] {
            cmd.env_remove(var);
        }
        cmd.arg("run")
            .args(["--consul-addr", &sim.consul, "--nomad-addr", &sim.nomad])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra);
        // The simulator's session TTLs run on its scaled clock, Drover's renewals on real time: a lock holds only
        // against a simulator at time scale 1, so leader election is on only when a benchmark asks for it.
        if !extra.contains(&"--leader-elect") {
            cmd.args(["--leader-elect", "false"]);
        }
        // `BENCH_DROVER_LOG=<filter>`: Drover's log at that level, to a file named on stdout.
        let stderr = match std::env::var("BENCH_DROVER_LOG") {
            Ok(filter) => {
                let path = std::env::temp_dir().join(format!("drover-bench-{port}.log"));
                println!("  drover log ({filter}): {}", path.display());
                cmd.env("RUST_LOG", filter);
                Some(Stdio::from(std::fs::File::create(&path).with_context(|| format!("create {}", path.display()))?))
            }
            Err(_) => None,
        };
        let proc = spawn_piped_to(cmd, stderr)?;
        Ok(Drover { proc, url: format!("http://127.0.0.1:{port}") })
    }

    /// Waits (at most `within`) until `/healthz` answers.
    pub async fn wait_healthz(&mut self, http: &reqwest::Client, within: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Ok(r) = http.get(format!("{}/healthz", self.url)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if let Some(status) = self.proc.exited() {
                bail!("drover exited before answering /healthz: {status}");
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("drover did not answer /healthz within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self, http: &reqwest::Client) -> anyhow::Result<String> {
        let r = http.get(format!("{}/metrics", self.url)).send().await.context("GET /metrics")?;
        Ok(r.error_for_status().context("GET /metrics")?.text().await?)
    }
}

/// Sum of every sample of `name` (with any labels matching `labels`, a substring such as `phase="Healthy"`) in a
/// Prometheus text exposition.
pub fn metric_sum(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?;
            let matches =
                if rest.is_empty() { labels.is_empty() } else { rest.starts_with('{') && rest.contains(labels) };
            if !matches {
                return None;
            }
            value.trim().parse::<f64>().ok()
        })
        .sum()
}

/// The 1-, 5- and 15-minute load averages from `/proc/loadavg` (other work on the machine skews the figures).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat` (clock ticks of 1/100 s).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Instant queries a Prometheus has answered so far (its own `prometheus_http_requests_total`).
pub async fn prometheus_queries(http: &reqwest::Client, url: &str) -> anyhow::Result<f64> {
    let text = http.get(format!("{url}/metrics")).send().await?.text().await?;
    Ok(metric_sum(&text, "prometheus_http_requests_total", "handler=\"/api/v1/query\""))
}
