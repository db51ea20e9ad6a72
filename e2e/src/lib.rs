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
//! processes' stderr goes to `<target>/debug/e2e-logs/`, one file per process, named in the test's output and kept
//! only when the test fails (`RUST_LOG=drover=debug` makes it detailed).
//!
//! Modules: `process` (binaries, child processes, ports), `sim_api` (Consul KV, Nomad and `/_sim/` helpers),
//! `records` (records to write, job and metric fields to read), [`acl`] (the shipped ACL policies as simulator
//! tokens), [`chaos`] (the chaos soak shared by `tests/chaos.rs` and `benches/chaos.rs`).

pub mod acl;
pub mod chaos;
mod process;
mod prometheus;
mod records;
mod sim_api;
pub mod webhook;

pub use process::{DroverProcess, Ready, SimProcess, SimTls, binary, free_port};
pub use prometheus::{PrometheusProcess, promtool_check_metrics, require_tool};
pub use records::{job_image, job_modify_index, job_owner, job_version, metric_sum, statuses, template_record};
pub use sim_api::{LoggedRequest, RequestLog};

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How long a test waits for a condition that normally holds within a second or two (generous for a loaded 2-core
/// machine running tests in parallel, and for the controller's Consul watch, which takes one request per 5 s under
/// churn).
pub const DEADLINE: Duration = Duration::from_secs(30);

/// How often [`wait_until`] looks again.
pub(crate) const POLL: Duration = Duration::from_millis(50);

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

/// A test HTTP client that sends `token` to both servers (`X-Consul-Token`, `X-Nomad-Token`).
pub fn http_client_with_token(token: &str) -> reqwest::Client {
    test_client(Some(token), None)
}

/// The client a [`SimProcess`]'s helpers use: sends `token` to both servers when given, and with `tls_dir` trusts
/// only its `ca.pem` and presents its `client.pem`/`client-key.pem` (a person holding the simulator's files).
pub fn test_client(token: Option<&str>, tls_dir: Option<&std::path::Path>) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut headers = reqwest::header::HeaderMap::new();
    for name in ["x-consul-token", "x-nomad-token"] {
        if let Some(token) = token {
            let value = reqwest::header::HeaderValue::from_str(token).expect("a token is a header value");
            headers.insert(name, value);
        }
    }
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10)).default_headers(headers);
    if let Some(dir) = tls_dir {
        let read = |name: &str| std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"));
        let ca = reqwest::Certificate::from_pem(&read("ca.pem")).expect("ca.pem is a PEM certificate");
        let mut identity = read("client.pem");
        identity.push(b'\n');
        identity.extend(read("client-key.pem"));
        let identity = reqwest::Identity::from_pem(&identity).expect("client.pem and client-key.pem form an identity");
        builder = builder.tls_backend_rustls().tls_certs_only(vec![ca]).identity(identity);
    }
    builder.build().expect("build the test HTTP client")
}

/// An HTTP client for the tests (plain HTTP; rustls still needs its provider installed once).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("build the test HTTP client")
}
