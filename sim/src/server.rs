//! The listener loop shared by both servers: accepts connections on an already-bound listener and, before routing,
//! logs the request, applies faults (latency, error, dropped connection) and simulated leader loss.
//!
//! It is written on hyper directly rather than `axum::serve` because a dropped connection must be a real one: the
//! service returns an error and hyper closes the socket without an answer.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::faults::FaultAction;
use crate::{Server, Shared};

/// Why a connection was closed on purpose.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by an injected fault")]
pub struct Dropped;

/// Serves `router` on `listener` for `server` until `shutdown` is cancelled; in-flight requests then get a short
/// grace period (blocking queries and event streams are cut).
pub async fn serve(
    listener: TcpListener,
    server: Server,
    shared: Arc<Shared>,
    router: Router,
    shutdown: CancellationToken,
) {
    let conns = tokio_util::task::TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, _) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let router = router.clone();
        let shutdown = shutdown.clone();
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                handle(server, shared.clone(), router.clone(), req.map(Body::new))
            });
            let conn =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
    conns.close();
    let _ = tokio::time::timeout(Duration::from_millis(200), conns.wait()).await;
}

async fn handle(
    server: Server,
    shared: Arc<Shared>,
    router: Router,
    req: Request<Body>,
) -> Result<Response<Body>, Dropped> {
    let mut resp = answer(server, shared.clone(), router, req).await?;
    // Consul sets this on every answer, its own errors included (api-contract A1); the listener's fault and
    // no-leader answers must carry it too.
    if server == Server::Consul && !resp.headers().contains_key("x-consul-default-acl-policy") {
        let policy = if shared.acl_bootstrap_token.is_some() { "deny" } else { "allow" };
        resp.headers_mut().insert("x-consul-default-acl-policy", axum::http::HeaderValue::from_static(policy));
    }
    Ok(resp)
}

async fn answer(
    server: Server,
    shared: Arc<Shared>,
    router: Router,
    req: Request<Body>,
) -> Result<Response<Body>, Dropped> {
    let path = req.uri().path().to_string();
    if path.starts_with("/_sim/") || path == "/_sim" {
        return Ok(router.oneshot(req).await.unwrap_or_else(|e: Infallible| match e {}));
    }
    let method = req.method().as_str().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let user_agent =
        req.headers().get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let log = |status: u16| {
        let at_ms = u64::try_from(shared.clock.now().since_start().as_millis()).unwrap_or(u64::MAX);
        shared.log.record(server, &method, &path, &query, status, at_ms, &user_agent);
    };

    match shared.faults.check_from(server, &method, &path, &user_agent, shared.clock.now()) {
        Some(FaultAction::Drop) => {
            log(0);
            return Err(Dropped);
        }
        Some(FaultAction::Error { status, body }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            log(status.as_u16());
            return Ok(text(status, body));
        }
        Some(FaultAction::Latency { ms }) => shared.clock.sleep(Duration::from_millis(ms)).await,
        None => {}
    }

    if !shared.has_leader(server) && path.starts_with("/v1/") {
        let resp = if path == "/v1/status/leader" {
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("\"\""))
                .unwrap_or_default()
        } else {
            text(StatusCode::INTERNAL_SERVER_ERROR, "No cluster leader".to_string())
        };
        log(resp.status().as_u16());
        return Ok(resp);
    }

    let mut cut = shared.cut_watch(server);
    tokio::select! {
        resp = router.oneshot(req) => {
            let resp = resp.unwrap_or_else(|e: Infallible| match e {});
            log(resp.status().as_u16());
            Ok(resp)
        }
        // `POST /_sim/requests/cut`: the connection closes without an answer, as when the server restarts.
        _ = cut.changed() => {
            log(0);
            Err(Dropped)
        }
    }
}

/// A plain-text error answer, as both servers send them.
pub fn text(status: StatusCode, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(body))
        .unwrap_or_default()
}

/// Completes when the process gets SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
