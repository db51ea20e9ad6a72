//! The child processes: locating the built binaries, starting `drover-sim` and `drover run` on free loopback ports,
//! and killing them when a test ends (passed or panicking).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

use crate::{DEADLINE, POLL, http_client, metric_sum, wait_until};

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
pub(crate) fn log_file(name: &str) -> (PathBuf, Stdio) {
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
/// when the test passed (unless `DROVER_E2E_KEEP_LOGS` is set), and kept (its path is in the test's output) when the
/// test panics.
#[derive(Debug)]
pub(crate) struct Owned(pub(crate) Child, pub(crate) PathBuf);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if !std::thread::panicking() && std::env::var_os("DROVER_E2E_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_file(&self.1);
        }
    }
}

/// A `drover-sim` process with both servers on free loopback ports; killed when dropped.
#[derive(Debug)]
pub struct SimProcess {
    /// `http://127.0.0.1:PORT` of the simulated Consul.
    pub consul_url: String,
    /// `http://127.0.0.1:PORT` of the simulated Nomad.
    pub nomad_url: String,
    pub(crate) http: reqwest::Client,
    // Dropped after `_child` is killed, so the simulator never writes to a closed pipe.
    _child: Owned,
    _stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl SimProcess {
    /// Runs the `drover` CLI with `args` against this simulator (`CONSUL_HTTP_ADDR`, `NOMAD_ADDR`, `USER=tester`,
    /// then `env`) on a blocking thread, and returns its output.
    pub async fn cli(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let mut cmd = std::process::Command::new(binary("drover"));
        cmd.args(args)
            .env("CONSUL_HTTP_ADDR", &self.consul_url)
            .env("NOMAD_ADDR", &self.nomad_url)
            .env("USER", "tester");
        for (k, v) in env {
            cmd.env(k, v);
        }
        tokio::task::spawn_blocking(move || cmd.output().expect("run drover")).await.expect("the CLI thread")
    }

    /// Starts `drover-sim` at this time scale and waits for both of its `… listening on http://…` lines.
    pub async fn start(time_scale: f64) -> SimProcess {
        SimProcess::start_with(time_scale, None, None).await
    }

    /// As [`SimProcess::start`], with ACLs on in both servers and `token` as the management token; every helper
    /// of this type then sends `token` (a person with the management token).
    pub async fn start_with_acls(time_scale: f64, token: &str) -> SimProcess {
        SimProcess::start_with(time_scale, Some(token), None).await
    }

    /// As [`SimProcess::start`] (with ACLs when `token` is given), serving both APIs over HTTPS as `tls` says; every
    /// helper of this type then trusts `tls.dir`'s `ca.pem` and presents its client certificate.
    pub async fn start_tls(time_scale: f64, token: Option<&str>, tls: &SimTls) -> SimProcess {
        SimProcess::start_with(time_scale, token, Some(tls)).await
    }

    async fn start_with(time_scale: f64, token: Option<&str>, tls: Option<&SimTls>) -> SimProcess {
        let (log, stderr) = log_file("drover-sim");
        eprintln!("drover-sim stderr: {}", log.display());
        let mut child = Command::new(binary("drover-sim"))
            .args(["--consul-addr", "127.0.0.1:0", "--nomad-addr", "127.0.0.1:0", "--time-scale"])
            .arg(time_scale.to_string())
            .args(token.map(|t| ["--acl-bootstrap-token", t]).into_iter().flatten())
            .args(tls.map(SimTls::args).into_iter().flatten())
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
        let http = crate::test_client(token, tls.map(|t| t.dir.as_path()));
        SimProcess { consul_url, nomad_url, http, _child: child, _stdout: stdout }
    }
}

/// How a [`SimProcess`] serves HTTPS: `drover-sim --tls-dir DIR [--tls-verify-incoming] [--tls-keep-existing]`.
/// Dropping it removes `dir` (the simulator has loaded the files by then).
#[derive(Debug)]
pub struct SimTls {
    /// Where the five PEM files are (written by the simulator unless `keep_existing`).
    pub dir: PathBuf,
    /// Require a client certificate signed by `ca.pem`.
    pub verify_incoming: bool,
    /// Serve the set already in `dir` (a test's flawed one, see `drover_sim::tls::CertSet`).
    pub keep_existing: bool,
}

impl SimTls {
    /// A fresh, empty directory for one test's certificates, under the system's temporary directory.
    pub fn fresh_dir(name: &str) -> PathBuf {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("drover-e2e-tls-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temporary directory for certificates");
        dir
    }

    /// The path of one of the set's files (`ca.pem`, `client.pem`, …).
    pub fn file(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    fn args(&self) -> Vec<String> {
        let mut args = vec!["--tls-dir".to_owned(), self.dir.to_string_lossy().into_owned()];
        if self.verify_incoming {
            args.push("--tls-verify-incoming".to_owned());
        }
        if self.keep_existing {
            args.push("--tls-keep-existing".to_owned());
        }
        args
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
    ///
    /// Leader election is off (`--leader-elect false`) unless `extra_args` gives `--leader-elect`: the simulator
    /// runs session TTLs on its scaled clock (a 10 s TTL lasts 200 ms at [`crate::TIME_SCALE`]) while Drover renews
    /// on real time, so a lock only holds against a simulator at time scale 1 (`e2e/tests/ha.rs`).
    pub async fn start(sim: &SimProcess, extra_args: &[&str]) -> DroverProcess {
        DroverProcess::start_until(sim, extra_args, &[], None, Readiness::Leader).await
    }

    /// As [`DroverProcess::start`], but returns as soon as the replica is loaded, leader or standby (`/readyz` 200,
    /// or 503 `standby`).
    pub async fn start_replica(sim: &SimProcess, extra_args: &[&str]) -> DroverProcess {
        DroverProcess::start_until(sim, extra_args, &[], None, Readiness::Replica).await
    }

    /// As [`DroverProcess::start_replica`], with these environment variables set for the process.
    pub async fn start_replica_with(sim: &SimProcess, extra_args: &[&str], env: &[(&str, &str)]) -> DroverProcess {
        DroverProcess::start_until(sim, extra_args, env, None, Readiness::Replica).await
    }

    /// As [`DroverProcess::start`], with these environment variables set for the process, and with `listen_ca`
    /// (the PEM CA of `--listen-tls-cert`) its own endpoints are reached over `https://` trusting that CA.
    pub async fn start_with(
        sim: &SimProcess,
        extra_args: &[&str],
        env: &[(&str, &str)],
        listen_ca: Option<&Path>,
    ) -> DroverProcess {
        DroverProcess::start_until(sim, extra_args, env, listen_ca, Readiness::Leader).await
    }

    async fn start_until(
        sim: &SimProcess,
        extra_args: &[&str],
        env: &[(&str, &str)],
        listen_ca: Option<&Path>,
        until: Readiness,
    ) -> DroverProcess {
        let mut last_stderr = String::new();
        let http = match listen_ca {
            None => http_client(),
            Some(ca) => {
                let pem = std::fs::read(ca).unwrap_or_else(|e| panic!("read {}: {e}", ca.display()));
                let ca = reqwest::Certificate::from_pem(&pem).expect("the listener's CA is a PEM certificate");
                reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(10))
                    .tls_backend_rustls()
                    .tls_certs_only(vec![ca])
                    .build()
                    .expect("build the https test client")
            }
        };
        let scheme = if listen_ca.is_some() { "https" } else { "http" };
        for _ in 0..3 {
            let port = free_port();
            let (log, stderr) = log_file("drover");
            eprintln!("drover stderr: {}", log.display());
            let mut cmd = drover_command(sim, extra_args, env);
            let child = cmd
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("spawn drover run");
            let child = Owned(child, log.clone());
            let url = format!("{scheme}://127.0.0.1:{port}");
            let mut drover = DroverProcess { url, log, http: http.clone(), child };
            if drover.wait_ready(until).await {
                return drover;
            }
            // The file is removed when `drover` drops: keep what it said for the panic below.
            last_stderr = std::fs::read_to_string(&drover.log).unwrap_or_default();
        }
        panic!("drover run did not start; its stderr:\n{last_stderr}");
    }

    /// Runs `drover run` against `sim` expecting it to exit on its own (a configuration or TLS failure), and returns
    /// its exit code and stderr. Panics if it is still running after [`DEADLINE`].
    pub async fn run_to_exit(sim: &SimProcess, extra_args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
        let (log, stderr) = log_file("drover");
        let child = drover_command(sim, extra_args, env)
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn drover run");
        let mut child = Owned(child, log.clone());
        let what = format!("drover run to exit on its own (see {})", log.display());
        let status = wait_until(DEADLINE, &what, || {
            let exited = child.0.try_wait().ok().flatten();
            async move { exited.ok_or("still running") }
        })
        .await;
        (status.code(), std::fs::read_to_string(&log).unwrap_or_default())
    }

    /// Waits for `/readyz` to say `until_ready`; false when the process exited first (e.g. its port was taken).
    async fn wait_ready(&mut self, until_ready: Readiness) -> bool {
        let until = Instant::now() + DEADLINE;
        loop {
            if self.child.0.try_wait().ok().flatten().is_some() {
                return false;
            }
            match (self.readyz().await, until_ready) {
                (Some(Ready::Leader), _) | (Some(Ready::Standby), Readiness::Replica) => return true,
                _ => {}
            }
            assert!(Instant::now() < until, "drover never became ready (see {})", self.log.display());
            tokio::time::sleep(POLL).await;
        }
    }

    /// What `/readyz` says; `None` when it cannot be read or the replica is still loading.
    pub async fn readyz(&self) -> Option<Ready> {
        let resp = self.http.get(format!("{}/readyz", self.url)).send().await.ok()?;
        let ok = resp.status().is_success();
        let body = resp.text().await.ok()?;
        match (ok, body.trim()) {
            (true, _) => Some(Ready::Leader),
            (false, "standby") => Some(Ready::Standby),
            _ => None,
        }
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// The `User-Agent` this process sends to Consul and Nomad (`drover/<version> (pid <pid>)`), which the
    /// simulator's request log records.
    pub fn user_agent(&self) -> String {
        format!("drover/{} (pid {})", env!("CARGO_PKG_VERSION"), self.pid())
    }

    /// Sends SIGTERM (a graceful shutdown: the leader releases its lock).
    pub fn sigterm(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM {} failed: {status}", self.pid());
    }

    /// Sends SIGKILL and reaps the process (`kill -9`: nothing is released).
    pub fn kill9(&mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
    }

    /// Waits until the process exited, and returns its status.
    pub async fn wait_exit(&mut self) -> std::process::ExitStatus {
        let until = Instant::now() + DEADLINE;
        loop {
            match self.child.0.try_wait() {
                Ok(Some(status)) => return status,
                other => assert!(
                    Instant::now() < until,
                    "drover did not exit within {DEADLINE:?}: {other:?} (see {})",
                    self.log.display()
                ),
            }
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

    /// The body of `GET <path>` on drover's own listener (`/metrics`, `/api/v1/apps`, …); panics unless 200.
    pub async fn get_text(&self, path: &str) -> String {
        let url = format!("{}{path}", self.url);
        let resp = self.http.get(&url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
        resp.text().await.unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    /// The sum of `drover_reconcile_total` over all results: reconciles finished so far.
    pub async fn reconcile_total(&self) -> u64 {
        metric_sum(&self.get_text("/metrics").await, "drover_reconcile_total")
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

/// What `/readyz` says of a loaded replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ready {
    /// 200: it leads and reconciles.
    Leader,
    /// 503 `standby`: another replica leads.
    Standby,
}

/// What [`DroverProcess`]'s start waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Readiness {
    /// `/readyz` 200.
    Leader,
    /// 200 or 503 `standby`.
    Replica,
}

impl Drop for SimTls {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `drover run` against `sim` (`--resync 1s` unless given), with `env` set and `NO_COLOR` so that its stderr is
/// plain text; `--listen` is left to the caller.
fn drover_command(sim: &SimProcess, extra_args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(binary("drover"));
    cmd.args(["run", "--consul-addr", &sim.consul_url, "--nomad-addr", &sim.nomad_url]);
    if !extra_args.contains(&"--resync") {
        cmd.args(["--resync", "1s"]);
    }
    if !extra_args.contains(&"--leader-elect") {
        cmd.args(["--leader-elect", "false"]);
    }
    cmd.args(extra_args).envs(env.iter().copied()).env("NO_COLOR", "1");
    cmd
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}
