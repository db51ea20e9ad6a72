//! Drover against the HTTPS simulator (issue #9): with `CONSUL_CACERT`, `CONSUL_CLIENT_CERT`/`_KEY`, `NOMAD_CACERT`,
//! `NOMAD_CLIENT_CERT`/`_KEY` it converges an app; with a wrong CA, an expired or X.509 v1 certificate, or without
//! the client certificate a server requires, `drover run` exits non-zero at once with one line naming the file and
//! the reason (the start-up probe, `drover::probe`).

use drover::status::Phase;
use drover_e2e::{DroverProcess, SimProcess, SimTls, TIME_SCALE, template_record};
use drover_sim::tls::{CertOptions, CertSet, Shape};
use serde_json::json;

/// The six variables for a certificate directory: both servers trust its `ca.pem` and get its client certificate.
fn tls_env(dir: &SimTls) -> Vec<(&'static str, String)> {
    let (ca, cert, key) = (dir.file("ca.pem"), dir.file("client.pem"), dir.file("client-key.pem"));
    vec![
        ("CONSUL_CACERT", ca.clone()),
        ("CONSUL_CLIENT_CERT", cert.clone()),
        ("CONSUL_CLIENT_KEY", key.clone()),
        ("NOMAD_CACERT", ca),
        ("NOMAD_CLIENT_CERT", cert),
        ("NOMAD_CLIENT_KEY", key),
    ]
}

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// A simulator serving the set `options` describes (written by the test, served with `--tls-keep-existing`).
async fn sim_with(name: &str, options: CertOptions, verify_incoming: bool) -> (SimProcess, SimTls) {
    let tls = SimTls { dir: SimTls::fresh_dir(name), verify_incoming, keep_existing: true };
    CertSet::generate(options).expect("generate certificates").write(&tls.dir).expect("write certificates");
    let sim = SimProcess::start_tls(TIME_SCALE, None, &tls).await;
    (sim, tls)
}

/// Asserts that `drover run` exited non-zero with exactly one `error:` line containing every one of `needles`.
fn assert_one_error_line(code: Option<i32>, stderr: &str, needles: &[&str]) {
    assert!(code.is_some_and(|c| c != 0), "drover must exit non-zero, got {code:?}; stderr:\n{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "exactly one error line; stderr:\n{stderr}");
    for needle in needles {
        assert!(errors[0].contains(needle), "{needle:?} missing from {:?}", errors[0]);
    }
}

#[tokio::test]
async fn drover_should_converge_over_mutual_tls_with_hashicorp_variables() {
    // The simulator writes its own set here (`--tls-dir` without `--tls-keep-existing`).
    let tls = SimTls { dir: SimTls::fresh_dir("ok"), verify_incoming: true, keep_existing: false };
    let sim = SimProcess::start_tls(TIME_SCALE, None, &tls).await;
    assert!(sim.consul_url.starts_with("https://") && sim.nomad_url.starts_with("https://"));
    let env = tls_env(&tls);
    let mut drover = DroverProcess::start_with(&sim, &[], &borrowed(&env), None).await;
    let generation = sim.put_record("default", "web", template_record("web", "nginx:1.27", "")).await;
    sim.wait_for_status("default", "web", "Healthy over mTLS", |s| {
        s.phase == Phase::Healthy && s.observed_generation == generation
    })
    .await;
    assert!(sim.job("default", "web").await.is_some(), "Nomad runs the job Drover registered over TLS");
    drover.assert_running();
}

#[tokio::test]
async fn drover_should_exit_with_one_line_when_the_ca_is_wrong() {
    let (sim, tls) = sim_with("wrong-ca", CertOptions::default(), false).await;
    let other = SimTls { dir: SimTls::fresh_dir("other-ca"), verify_incoming: false, keep_existing: true };
    CertSet::generate(CertOptions::default()).unwrap().write(&other.dir).unwrap();
    let mut env = tls_env(&tls);
    let wrong_ca = other.file("ca.pem");
    env[0].1 = wrong_ca.clone(); // CONSUL_CACERT
    let (code, stderr) = DroverProcess::run_to_exit(&sim, &[], &borrowed(&env)).await;
    assert_one_error_line(code, &stderr, &["Consul", "not signed by", "CONSUL_CACERT", &wrong_ca]);
}

#[tokio::test]
async fn drover_should_exit_with_one_line_when_the_server_certificate_expired() {
    let options = CertOptions { server: Shape::Expired, ..CertOptions::default() };
    let (sim, tls) = sim_with("expired", options, false).await;
    let env = tls_env(&tls);
    let (code, stderr) = DroverProcess::run_to_exit(&sim, &[], &borrowed(&env)).await;
    assert_one_error_line(code, &stderr, &["has expired", "_CACERT", &tls.file("ca.pem")]);
}

#[tokio::test]
async fn drover_should_exit_with_one_line_when_the_server_certificate_is_v1() {
    let options = CertOptions { server: Shape::V1, ..CertOptions::default() };
    let (sim, tls) = sim_with("v1-server", options, false).await;
    let env = tls_env(&tls);
    let (code, stderr) = DroverProcess::run_to_exit(&sim, &[], &borrowed(&env)).await;
    assert_one_error_line(code, &stderr, &["X.509 v1", &tls.file("ca.pem")]);
}

#[tokio::test]
async fn drover_should_exit_with_one_line_when_the_client_certificate_is_v1() {
    // rustls cannot even present a v1 certificate (the test's own client could not either), so the v1 client
    // certificate comes from a set of its own; drover refuses it before connecting, naming the file.
    let (sim, tls) = sim_with("v1-client", CertOptions::default(), true).await;
    let v1 = SimTls { dir: SimTls::fresh_dir("v1-client-cert"), verify_incoming: true, keep_existing: true };
    let options = CertOptions { client: Shape::V1, ..CertOptions::default() };
    CertSet::generate(options).unwrap().write(&v1.dir).unwrap();
    let mut env = tls_env(&tls);
    let v1_cert = v1.file("client.pem");
    env[4].1 = v1_cert.clone(); // NOMAD_CLIENT_CERT
    env[5].1 = v1.file("client-key.pem"); // NOMAD_CLIENT_KEY
    let (code, stderr) = DroverProcess::run_to_exit(&sim, &[], &borrowed(&env)).await;
    assert_one_error_line(code, &stderr, &["X.509 v1", &v1_cert]);
}

#[tokio::test]
async fn drover_should_exit_with_one_line_when_a_required_client_certificate_is_missing() {
    let (sim, tls) = sim_with("no-client", CertOptions::default(), true).await;
    let env: Vec<_> = tls_env(&tls).into_iter().filter(|(k, _)| k.ends_with("_CACERT")).collect();
    let (code, stderr) = DroverProcess::run_to_exit(&sim, &[], &borrowed(&env)).await;
    assert_one_error_line(code, &stderr, &["requires a client certificate", "_CLIENT_CERT"]);
}

#[tokio::test]
async fn drover_should_exit_with_one_line_when_the_client_certificate_expired() {
    let options = CertOptions { client: Shape::Expired, ..CertOptions::default() };
    let (sim, tls) = sim_with("expired-client", options, true).await;
    let env = tls_env(&tls);
    let (code, stderr) = DroverProcess::run_to_exit(&sim, &[], &borrowed(&env)).await;
    assert_one_error_line(code, &stderr, &["refused the client certificate", &tls.file("client.pem"), "Expired"]);
}

#[tokio::test]
async fn drover_should_start_and_retry_when_a_tls_server_only_drops_the_probe() {
    // A dropped connection at start is an outage, not a TLS failure: drover keeps running (the probe is logged and
    // the usual retries take over) and converges.
    let (sim, tls) = sim_with("outage", CertOptions::default(), true).await;
    sim.add_fault(json!({"server": "consul", "path": "/v1/status/leader", "action": {"type": "drop"}, "count": 1}))
        .await;
    let env = tls_env(&tls);
    let mut drover = DroverProcess::start_with(&sim, &[], &borrowed(&env), None).await;
    let dropped = sim.log(Some("consul"), 0).await;
    assert!(
        dropped.requests.iter().any(|r| r.path == "/v1/status/leader" && r.status == 0),
        "the probe met the dropped connection: {dropped:?}"
    );
    let generation = sim.put_record("default", "api", template_record("api", "nginx:1.27", "")).await;
    sim.wait_for_status("default", "api", "Healthy after the dropped probe", |s| {
        s.phase == Phase::Healthy && s.observed_generation == generation
    })
    .await;
    drover.assert_running();
}

#[tokio::test]
async fn drover_should_serve_its_own_endpoints_over_https() {
    let sim = SimProcess::start(TIME_SCALE).await;
    // A certificate for 127.0.0.1 from a CA of its own, as an operator's PKI would issue it.
    let dir = SimTls::fresh_dir("listen");
    CertSet::generate(CertOptions::default()).unwrap().write(&dir).unwrap();
    let (cert, key) = (dir.join("server.pem"), dir.join("server-key.pem"));
    let args = ["--listen-tls-cert", cert.to_str().unwrap(), "--listen-tls-key", key.to_str().unwrap()];
    let drover = DroverProcess::start_with(&sim, &args, &[], Some(&dir.join("ca.pem"))).await;
    assert!(drover.url.starts_with("https://"), "{}", drover.url);
    let metrics = drover.get_text("/metrics").await;
    assert!(metrics.contains("# TYPE drover_reconcile_duration_seconds histogram"), "/metrics over https: {metrics}");
    assert!(drover.get_text("/api/v1/apps").await.starts_with('['));
    // Plain HTTP to the TLS listener gets no HTTP answer.
    let plain = drover.url.replace("https://", "http://");
    let answer = reqwest::Client::new().get(format!("{plain}/metrics")).send().await;
    assert!(answer.is_err() || answer.is_ok_and(|r| !r.status().is_success()), "plain HTTP must not be served");
    let _ = std::fs::remove_dir_all(&dir);
}
