//! Issue #7 2.7: an ACL token never follows a redirect to another origin. Each test points a client (built the way
//! `drover run` builds it, from resolved configuration) at a server that redirects to a second server on another
//! port; the second server records what it received.

use std::sync::Arc;

use drover::config::{ConsulConfig, ConsulFlags, NomadConfig, NomadFlags};
use drover::consul::client::RequestError;
use drover::metrics::Metrics;
use drover::nomad::Error as NomadError;
use drover::tls::RedirectRefused;

mod scripted;
use scripted::Scripted;

const ENTRY: &str = r#"[{"LockIndex":0,"Key":"k","Flags":0,"Value":"dg==","CreateIndex":1,"ModifyIndex":2}]"#;

fn consul_client(addr: &str, token: &str) -> drover::consul::Client {
    let flags = ConsulFlags { addr: Some(addr.to_owned()), token: Some(token.into()), ..ConsulFlags::default() };
    let config = ConsulConfig::resolve(&flags, &|_: &str| None).expect("a plain address and token resolve");
    drover::consul::Client::new(&config, Arc::new(Metrics::new())).expect("no TLS files, so the client builds")
}

fn nomad_client(addr: &str, token: &str) -> drover::nomad::Client {
    let flags = NomadFlags { addr: Some(addr.to_owned()), token: Some(token.into()), ..NomadFlags::default() };
    let config = NomadConfig::resolve(&flags, &|_: &str| None).expect("a plain address and token resolve");
    drover::nomad::Client::new(&config, Arc::new(Metrics::new())).expect("no TLS files, so the client builds")
}

/// The [`RedirectRefused`] at the bottom of an error chain, if any.
fn refusal<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a RedirectRefused> {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(r) = e.downcast_ref::<RedirectRefused>() {
            return Some(r);
        }
        cause = e.source();
    }
    None
}

#[tokio::test]
async fn consul_client_should_refuse_a_redirect_to_another_port_without_sending_the_token_there() {
    let (front, other) = (Scripted::start().await, Scripted::start().await);
    front.reply(307, &[("Location", &format!("{}/v1/kv/k", other.url))], "");
    let client = consul_client(&front.url, "s3cret");
    let err = client.get("k").await.expect_err("a cross-origin redirect must fail the read");
    assert!(other.seen().is_empty(), "the other server was contacted: {:?}", other.seen());
    let first = &front.seen()[0];
    assert_eq!((first.method.as_str(), first.uri.as_str()), ("GET", "/v1/kv/k"));
    assert_eq!(first.headers["x-consul-token"], "s3cret", "the configured server gets the token");
    assert!(!err.is_retryable(), "a redirect is a configuration problem, not an outage: {err:?}");
    assert!(matches!(err.request_error(), Some(RequestError::RedirectRefused(_))), "{err:?}");
    let refused = refusal(&err).expect("the chain names the refused redirect");
    assert!(
        matches!(refused, RedirectRefused::CrossOrigin { from, to } if *from == front.url && *to == other.url),
        "{refused:?}"
    );
    assert!(format!("{refused}").contains("never sends its token to another host"), "{refused}");
}

#[tokio::test]
async fn default_reqwest_policy_would_forward_the_token_which_is_why_the_clients_set_their_own() {
    // The positive control: the same servers and client code with reqwest's default policy leak the token, so the
    // test above could have failed.
    let (front, other) = (Scripted::start().await, Scripted::start().await);
    front.reply(307, &[("Location", &format!("{}/v1/kv/k", other.url))], "");
    other.reply(200, &[("X-Consul-Index", "2")], ENTRY);
    let client = drover::consul::Client::with_http(
        reqwest::Client::new(),
        &front.url,
        Some("s3cret".to_owned()),
        Arc::new(Metrics::new()),
    );
    client.get("k").await.expect("the default policy follows the redirect");
    assert_eq!(other.seen()[0].headers["x-consul-token"], "s3cret");
}

#[tokio::test]
async fn consul_client_should_follow_a_same_origin_redirect_with_its_token() {
    // Consul answers 301 to a cleaned path (contract: Go's ServeMux); that stays on the server the token is for.
    let front = Scripted::start().await;
    front.reply(301, &[("Location", "/v1/kv/k")], "");
    front.reply(200, &[("X-Consul-Index", "2")], ENTRY);
    let client = consul_client(&front.url, "s3cret");
    let entry = client.get("k").await.expect("a same-origin redirect is followed");
    assert_eq!(entry.map(|e| e.value), Some(b"v".to_vec()));
    let seen = front.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.headers["x-consul-token"] == "s3cret"));
}

#[tokio::test]
async fn consul_client_should_stop_a_same_origin_redirect_loop() {
    let front = Scripted::start().await;
    for _ in 0..=drover::tls::MAX_REDIRECTS {
        front.reply(302, &[("Location", "/v1/kv/k")], "");
    }
    let err = consul_client(&front.url, "s3cret").get("k").await.expect_err("a loop must end in an error");
    assert!(matches!(refusal(&err), Some(RedirectRefused::TooMany)), "{err:?}");
    assert_eq!(front.seen().len(), drover::tls::MAX_REDIRECTS + 1);
}

#[tokio::test]
async fn nomad_client_should_refuse_a_redirect_to_another_port_without_sending_the_token_there() {
    let (front, other) = (Scripted::start().await, Scripted::start().await);
    front.reply(302, &[("Location", &format!("{}/v1/job/web", other.url))], "");
    front.reply(308, &[("Location", &format!("{}/v1/event/stream", other.url))], "");
    let client = nomad_client(&front.url, "n0mad");
    let err = client.job("default", "web").await.expect_err("a cross-origin redirect must fail the read");
    assert!(matches!(&err, NomadError::RedirectRefused { endpoint: "job_read", .. }), "{err:?}");
    assert_eq!((err.kind(), err.is_retryable()), ("redirect_refused", false));
    assert!(matches!(refusal(&err), Some(RedirectRefused::CrossOrigin { .. })), "{err:?}");
    let err = client.subscribe(1).await.map(|_| ()).expect_err("the event stream must not follow it either");
    assert_eq!(err.kind(), "redirect_refused", "{err:?}");
    assert!(other.seen().is_empty(), "the other server was contacted: {:?}", other.seen());
    assert!(front.seen().iter().all(|s| s.headers["x-nomad-token"] == "n0mad"));
}
