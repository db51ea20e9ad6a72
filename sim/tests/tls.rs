//! HTTPS (`--tls-dir`): both APIs over TLS with the generated set, a client certificate required with
//! `verify_incoming`, and each flawed set refused by a rustls client for the reason it was made with.

use drover_sim::SimConfig;
use drover_sim::testing::{TestSim, spawn};
use drover_sim::tls::{CertOptions, CertSet, Shape};

async fn tls_sim(set: &CertSet, verify_incoming: bool) -> TestSim {
    let tls = set.server_config(verify_incoming).expect("a server configuration");
    spawn(SimConfig { tls: Some(tls), ..SimConfig::fast() }).await
}

/// A client trusting only `ca`, presenting `identity` (certificate then key, PEM) when given.
fn client(ca: &str, identity: Option<(&str, &str)>) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .tls_backend_rustls()
        .tls_certs_only(vec![reqwest::Certificate::from_pem(ca.as_bytes()).expect("CA PEM")]);
    if let Some((cert, key)) = identity {
        let pem = format!("{cert}\n{key}");
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity PEM"));
    }
    builder.build().expect("a client")
}

/// The error chain of a failed request, one line.
fn chain(err: &reqwest::Error) -> String {
    let mut out = err.to_string();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(err);
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}

#[tokio::test]
async fn tls_should_serve_both_apis_over_https_with_the_generated_set() {
    let set = CertSet::generate(CertOptions::default()).unwrap();
    let sim = tls_sim(&set, false).await;
    assert!(sim.consul_url.starts_with("https://127.0.0.1:") && sim.nomad_url.starts_with("https://"));
    let c = client(&set.ca_pem, None);
    for url in [format!("{}/v1/status/leader", sim.consul_url), format!("{}/v1/status/leader", sim.nomad_url)] {
        let resp = c.get(&url).send().await.unwrap_or_else(|e| panic!("GET {url}: {}", chain(&e)));
        assert_eq!(resp.status(), 200, "{url}");
    }
    // `localhost` is in the certificate too.
    let url = sim.consul_url.replace("127.0.0.1", "localhost");
    assert_eq!(c.get(format!("{url}/v1/status/leader")).send().await.map(|r| r.status().as_u16()).ok(), Some(200));
    // Plain HTTP to a TLS port gets no HTTP answer.
    let plain = reqwest::Client::new();
    let url = sim.consul_url.replace("https://", "http://");
    assert!(plain.get(format!("{url}/v1/status/leader")).send().await.is_err());
}

#[tokio::test]
async fn tls_should_require_a_client_certificate_from_its_ca_with_verify_incoming() {
    let set = CertSet::generate(CertOptions::default()).unwrap();
    let sim = tls_sim(&set, true).await;
    let url = format!("{}/v1/kv/x", sim.consul_url);
    let with_cert = client(&set.ca_pem, Some((&set.client_pem, &set.client_key_pem)));
    assert_eq!(with_cert.get(&url).send().await.map(|r| r.status().as_u16()).ok(), Some(404));
    let without = client(&set.ca_pem, None);
    let err = without.get(&url).send().await.expect_err("no client certificate must be refused");
    assert!(chain(&err).to_lowercase().contains("certificaterequired"), "{}", chain(&err));
    let other = CertSet::generate(CertOptions::default()).unwrap();
    let foreign = client(&set.ca_pem, Some((&other.client_pem, &other.client_key_pem)));
    let err = foreign.get(&url).send().await.expect_err("another CA's client certificate must be refused");
    assert!(chain(&err).to_lowercase().contains("alert"), "{}", chain(&err));
}

#[tokio::test]
async fn tls_should_give_clients_the_flaw_each_bad_set_was_made_with() {
    for (shape, expect) in [(Shape::Expired, "expired"), (Shape::V1, "unsupportedcertversion")] {
        let set = CertSet::generate(CertOptions { server: shape, ..CertOptions::default() }).unwrap();
        let sim = tls_sim(&set, false).await;
        let err = client(&set.ca_pem, None)
            .get(format!("{}/v1/status/leader", sim.nomad_url))
            .send()
            .await
            .expect_err("a flawed server certificate must be refused");
        assert!(chain(&err).to_lowercase().contains(expect), "{shape:?}: {}", chain(&err));
    }
    let set = CertSet::generate(CertOptions::default()).unwrap();
    let sim = tls_sim(&set, false).await;
    let other = CertSet::generate(CertOptions::default()).unwrap();
    let err = client(&other.ca_pem, None).get(format!("{}/v1/status/leader", sim.consul_url)).send().await;
    let err = err.expect_err("a server certificate from another CA must be refused");
    assert!(chain(&err).contains("UnknownIssuer"), "{}", chain(&err));
}
