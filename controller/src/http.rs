//! Drover's HTTP endpoints: `/metrics` (Prometheus text), `/healthz`, `/readyz` and `/api/v1/apps` (JSON status of
//! every app). Served on an already-bound listener, over plain HTTP or, with `--listen-tls-cert/-key`, HTTPS
//! ([`serve_tls`]).
//!
//! Every route is a read (`GET`): there is no write endpoint, so none needs a token. Records are changed in Consul
//! (`drover apply`), where Consul's ACLs guard them. `/api/v1/apps` shows statuses, which never hold a token.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;

use crate::app::AppKey;
use crate::app::Record;
use crate::runtime::Handle;
use crate::status::AppStatus;

/// One app as `/api/v1/apps` shows it.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct AppView {
    /// Nomad namespace.
    pub namespace: String,
    /// App name.
    pub name: String,
    /// Record generation (Consul ModifyIndex), absent when only a status is left.
    pub generation: Option<u64>,
    /// Whether the record validates.
    pub valid: Option<bool>,
    /// The status Drover recorded.
    pub status: Option<AppStatus>,
}

/// The routes.
pub fn router(handle: Handle) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/apps", get(apps))
        .route("/api/v1/apps/{namespace}/{name}", get(app))
        .with_state(handle)
}

/// Serves `router` on `listener` until `shutdown` completes.
///
/// # Errors
/// When the listener fails.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}

/// `--listen-tls-cert`/`--listen-tls-key` could not be used. Not retryable: a file has to be fixed.
#[derive(Debug, thiserror::Error)]
pub enum ListenTlsError {
    /// A file could not be read.
    #[error("{flag}: cannot read {path:?}")]
    ReadFailed {
        /// `--listen-tls-cert` or `--listen-tls-key`.
        flag: &'static str,
        /// The file.
        path: String,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no PEM certificate or private key.
    #[error("{flag}: no PEM {what} in {path:?}")]
    NoPem {
        /// `--listen-tls-cert` or `--listen-tls-key`.
        flag: &'static str,
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: String,
    },
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("--listen-tls-cert {cert:?} and --listen-tls-key {key:?} cannot be used together")]
    Refused {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
}

/// The TLS configuration of Drover's own listener: the certificate chain and key in these PEM files, HTTP/1.1.
///
/// # Errors
/// When a file cannot be read or parsed, or rustls refuses the pair; each error names the flag and the file.
pub fn listen_tls_config(cert: &str, key: &str) -> Result<Arc<rustls::ServerConfig>, ListenTlsError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |flag, path: &str| {
        std::fs::read(path).map_err(|source| ListenTlsError::ReadFailed { flag, path: path.to_owned(), source })
    };
    let cert_pem = read("--listen-tls-cert", cert)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&cert_pem).filter_map(Result::ok).collect();
    if certs.is_empty() {
        return Err(ListenTlsError::NoPem { flag: "--listen-tls-cert", what: "certificate", path: cert.to_owned() });
    }
    let key_der = PrivateKeyDer::from_pem_slice(&read("--listen-tls-key", key)?)
        .map_err(|_| ListenTlsError::NoPem { flag: "--listen-tls-key", what: "private key", path: key.to_owned() })?;
    let refused = |source| ListenTlsError::Refused { cert: cert.to_owned(), key: key.to_owned(), source };
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(refused)?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(refused)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// How long a client of Drover's listener may take to complete a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` over HTTPS on `listener` until `shutdown` completes; then open connections get
/// [`SHUTDOWN_GRACE`] to finish. Each connection's handshake and requests run in a task of their own.
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let conns = tokio_util::task::TaskTracker::new();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of file descriptors and the like: wait a moment rather than spin.
                tracing::warn!(error = %err, "accept failed on the listener");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (acceptor, router, stop) = (acceptor.clone(), router.clone(), stop.clone());
        conns.spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => {
                    tracing::debug!(error = %err, "TLS handshake failed on the listener");
                    return;
                }
                Err(_) => return,
            };
            let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                tower::ServiceExt::oneshot(router.clone(), req.map(axum::body::Body::new))
            });
            let conn =
                hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    stop.cancel();
    conns.close();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, conns.wait()).await;
}

/// How long open HTTPS connections may take to finish after shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

async fn metrics(State(h): State<Handle>) -> Response {
    metrics_response(&h.metrics)
}

/// `GET /metrics`: every metric of `metrics`, as Prometheus reads them (also `drover sync --watch`'s).
pub(crate) fn metrics_response(metrics: &crate::metrics::Metrics) -> Response {
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], metrics.encode()).into_response()
}

/// `GET /healthz`: the process answers.
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// 200 on the leader once its stores are loaded; 503 `standby` on a replica that does not lead (a load balancer or
/// a rolling restart waits for the leader, not for any replica); 503 while loading.
async fn readyz(State(h): State<Handle>) -> Response {
    if !*h.ready.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: loading records, statuses and Nomad state\n")
            .into_response();
    }
    match h.leadership.current() {
        crate::leader::Leadership::Leading(_) => (StatusCode::OK, "ready\n").into_response(),
        crate::leader::Leadership::Standby => (StatusCode::SERVICE_UNAVAILABLE, "standby\n").into_response(),
    }
}

fn view(h: &Handle, key: &AppKey) -> AppView {
    let entry = h.records.get(key);
    AppView {
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        generation: entry.as_ref().map(|e| e.generation()),
        valid: entry.as_ref().map(|e| !matches!(e.as_ref(), Record::Invalid { .. })),
        status: h.statuses.get(key).and_then(|s| s.status).map(|s| (*s).clone()),
    }
}

async fn apps(State(h): State<Handle>) -> Json<Vec<AppView>> {
    let mut keys: Vec<AppKey> = h.records.keys();
    keys.extend(h.statuses.keys());
    keys.sort();
    keys.dedup();
    Json(keys.iter().map(|k| view(&h, k)).collect())
}

async fn app(State(h): State<Handle>, Path((namespace, name)): Path<(String, String)>) -> Response {
    let key = AppKey::new(namespace, name);
    let v = view(&h, &key);
    if v.generation.is_none() && v.status.is_none() {
        return (StatusCode::NOT_FOUND, format!("app {key} not found\n")).into_response();
    }
    Json(v).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_sim::tls::{CertOptions, CertSet};

    #[test]
    fn listen_tls_config_should_load_a_pair_and_name_the_flag_and_file_on_errors() {
        let dir = std::env::temp_dir().join(format!("drover-listen-tls-{}", std::process::id()));
        CertSet::generate(CertOptions::default()).unwrap().write(&dir).unwrap();
        let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let (cert, key) = (path("server.pem"), path("server-key.pem"));
        listen_tls_config(&cert, &key).expect("the server pair loads");

        let err = listen_tls_config(&path("missing.pem"), &key).unwrap_err();
        assert!(
            err.to_string().starts_with("--listen-tls-cert: cannot read") && err.to_string().contains("missing.pem")
        );
        let err = listen_tls_config(&cert, &cert).unwrap_err();
        assert_eq!(err.to_string(), format!("--listen-tls-key: no PEM private key in {cert:?}"));
        // Another certificate's key: rustls finds that they do not match.
        let err = listen_tls_config(&cert, &path("client-key.pem")).unwrap_err();
        assert!(matches!(err, ListenTlsError::Refused { .. }), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
