//! `drover sync --watch`: a long-running sync — every interval, and at once on a signed webhook — that only the
//! holder of a Consul lock carries out, so two replicas never sync at once.
//!
//! ```text
//!            acquire refused / Consul down (retry after LOCK_RETRY)
//!              ┌────────┐
//!              ▼        │
//!  start ──► Acquiring ─┘──acquired──► Leading ──session gone / renew failing for a TTL──► Acquiring
//!                                       │  ▲
//!                        tick, webhook  │  │ sync ran (outcome recorded)
//!                                       ▼  │
//!                                      Syncing
//! ```
//!
//! The lock is the key `<prefix>/sync/<name>/lock`, acquired with a session (TTL [`SESSION_TTL`], behaviour
//! `release`, no node checks), renewed every TTL/2 (contract C9: a session dies no earlier than 2×TTL after the last
//! renew) and released on shutdown. A sync in progress when the lock is lost finishes; its writes are CAS-guarded,
//! so at worst it reports conflicts.
//!
//! Any replica answers the webhook (202); the sync runs on the lock holder's next turn. Deliveries that arrive while a
//! sync runs are coalesced into one more sync.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::metrics::SyncMetrics;
use super::run::{Report, SyncSpec, run_once};
use super::webhook::{self, SIGNATURE_HEADER};
use crate::consul::{Behavior, Client, PutParams, Renewed, SessionRequest};
use crate::metrics::Metrics;

/// The lock session's TTL.
pub const SESSION_TTL: Duration = Duration::from_secs(15);
/// How long a lock lost by an invalidated session stays unavailable (Consul's lock-delay), so a late write of the
/// old holder cannot interleave with the new one's.
pub const LOCK_DELAY: Duration = Duration::from_secs(5);
/// How long to wait before asking for the lock again.
pub const LOCK_RETRY: Duration = Duration::from_secs(2);

/// What `--watch` needs besides the sync itself.
#[derive(Clone, Debug)]
pub struct WatchConfig {
    /// What to sync.
    pub spec: SyncSpec,
    /// How often to sync without a webhook.
    pub interval: Duration,
    /// The webhook's shared secret; the webhook is refused (401) for every delivery without one.
    pub secret: Option<Vec<u8>>,
}

/// The listener's state: the webhook's, and the metrics.
#[derive(Clone)]
struct Hook {
    name: String,
    secret: Option<Arc<Vec<u8>>>,
    trigger: Arc<Notify>,
    metrics: Arc<Metrics>,
}

/// The routes: `POST /api/v1/sync/<name>` (signed), `GET /metrics`, `GET /healthz`.
fn router(hook: Hook) -> Router {
    Router::new()
        .route("/api/v1/sync/{name}", post(deliver))
        .route("/metrics", get(metrics))
        .route("/healthz", get(crate::http::healthz))
        .with_state(hook)
}

async fn metrics(State(hook): State<Hook>) -> Response {
    crate::http::metrics_response(&hook.metrics)
}

async fn deliver(State(hook): State<Hook>, Path(name): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    if name != hook.name {
        return (StatusCode::NOT_FOUND, format!("no sync named {name:?} here\n")).into_response();
    }
    let Some(secret) = hook.secret.as_deref() else {
        return (StatusCode::UNAUTHORIZED, "this sync has no webhook secret\n").into_response();
    };
    let header = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    if let Err(e) = webhook::verify(secret, &body, header) {
        tracing::warn!(sync = %hook.name, error = %e, "webhook refused");
        return (StatusCode::UNAUTHORIZED, format!("{e}\n")).into_response();
    }
    hook.trigger.notify_one();
    (StatusCode::ACCEPTED, "sync queued\n").into_response()
}

/// Runs the watch until `shutdown` completes: the webhook and `/metrics` on `listener` (if any), the lock, and the
/// syncs. `on_sync` sees every sync's report (the command prints it); `metrics` gains the sync metrics.
///
/// # Errors
/// The webhook's listener failed.
pub async fn watch(
    client: Client,
    config: WatchConfig,
    listener: Option<TcpListener>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_sync: impl Fn(&Report),
) -> std::io::Result<()> {
    let trigger = Arc::new(Notify::new());
    let sync_metrics = SyncMetrics::register(&metrics, config.spec.name.as_str());
    let stop = tokio_util::sync::CancellationToken::new();
    let server = listener.map(|listener| {
        let hook = Hook {
            name: config.spec.name.to_string(),
            secret: config.secret.clone().map(Arc::new),
            trigger: trigger.clone(),
            metrics: metrics.clone(),
        };
        let stop = stop.clone();
        tokio::spawn(async move { crate::http::serve(listener, router(hook), stop.cancelled_owned()).await })
    });
    let lock = config.spec.name.lock_kv_key(&config.spec.prefix);
    let mut run = 0u64;
    tokio::pin!(shutdown);
    'acquiring: loop {
        sync_metrics.set_lock_held(false);
        let session = tokio::select! {
            () = &mut shutdown => break 'acquiring,
            s = acquire(&client, &lock) => s,
        };
        let Some(session) = session else {
            tokio::select! {
                () = &mut shutdown => break 'acquiring,
                () = tokio::time::sleep(LOCK_RETRY) => continue 'acquiring,
            }
        };
        tracing::info!(sync = %config.spec.name, lock = %lock, "holding the sync lock");
        sync_metrics.set_lock_held(true);
        let mut renew = tokio::time::interval(SESSION_TTL / 2);
        renew.reset();
        let mut tick = tokio::time::interval(config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut renewed_at = Instant::now();
        loop {
            tokio::select! {
                () = &mut shutdown => {
                    release(&client, &lock, &session).await;
                    break 'acquiring;
                }
                _ = renew.tick() => match client.renew_session(&session).await {
                    Ok(Renewed::Alive { .. }) => renewed_at = Instant::now(),
                    Ok(Renewed::Gone) => {
                        tracing::warn!(sync = %config.spec.name, "the lock's session is gone; stopping until it is won again");
                        continue 'acquiring;
                    }
                    Err(e) if renewed_at.elapsed() >= SESSION_TTL => {
                        tracing::warn!(error = %crate::error_chain(&e), "cannot renew the lock's session for a TTL; stopping");
                        let _ = client.destroy_session(&session).await;
                        continue 'acquiring;
                    }
                    Err(e) => tracing::warn!(error = %crate::error_chain(&e), "cannot renew the lock's session; retrying"),
                },
                _ = tick.tick() => {
                    run += 1;
                    sync_once(&client, &config.spec, run, &sync_metrics, &on_sync).await;
                }
                () = trigger.notified() => {
                    run += 1;
                    sync_once(&client, &config.spec, run, &sync_metrics, &on_sync).await;
                }
            }
        }
    }
    sync_metrics.set_lock_held(false);
    stop.cancel();
    if let Some(server) = server {
        match server.await {
            Ok(result) => result?,
            Err(e) => tracing::warn!(error = %e, "the webhook server task failed"),
        }
    }
    Ok(())
}

async fn sync_once(client: &Client, spec: &SyncSpec, run: u64, metrics: &SyncMetrics, on_sync: &impl Fn(&Report)) {
    let report = run_once(client, spec, false, run, SystemTime::now).await;
    metrics.sync_finished(report.outcome.result, SystemTime::now());
    if let Some(e) = &report.record_error {
        tracing::warn!(sync = %spec.name, error = %e, "the sync's outcome is not recorded");
    }
    on_sync(&report);
}

/// Creates a session and tries to take `lock` with it; `None` (session destroyed) when the lock is held elsewhere,
/// in lock-delay, or Consul failed.
async fn acquire(client: &Client, lock: &str) -> Option<String> {
    let request = SessionRequest {
        name: format!("drover-sync {lock}"),
        ttl: SESSION_TTL,
        behavior: Behavior::Release,
        lock_delay: LOCK_DELAY,
        node_checks: Some(Vec::new()),
    };
    let session = match client.create_session(&request).await {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!(error = %crate::error_chain(&e), "cannot create the lock's session");
            return None;
        }
    };
    let holder = format!("{{\"holder\":\"{}\"}}", std::process::id());
    let params = PutParams { acquire: Some(session.clone()), ..PutParams::default() };
    match client.put_with(lock, holder.as_bytes(), &params).await {
        Ok(true) => Some(session),
        Ok(false) => {
            let _ = client.destroy_session(&session).await;
            None
        }
        Err(e) => {
            tracing::warn!(error = %crate::error_chain(&e), "cannot take the sync lock");
            let _ = client.destroy_session(&session).await;
            None
        }
    }
}

/// Releases `lock` and destroys the session (release first, for a clean hand-over: contract A7).
async fn release(client: &Client, lock: &str, session: &str) {
    let params = PutParams { release: Some(session.to_owned()), ..PutParams::default() };
    if let Err(e) = client.put_with(lock, b"", &params).await {
        tracing::warn!(error = %crate::error_chain(&e), "cannot release the sync lock");
    }
    let _ = client.destroy_session(session).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(url: &str) -> Client {
        crate::tls::install_crypto_provider();
        let http = crate::tls::build_http_client(crate::tls::TlsFiles::default()).expect("an HTTP client");
        Client::with_http(http, url, None, Arc::new(crate::metrics::Metrics::new()))
    }

    #[tokio::test]
    async fn acquire_should_refuse_a_second_holder_until_the_first_releases() {
        let sim = drover_sim::harness::spawn(drover_sim::SimConfig::default()).await;
        let consul = client(&sim.consul_url);
        let lock = "drover/sync/deploy/lock";
        let first = acquire(&consul, lock).await.expect("the first replica takes the lock");
        assert_eq!(acquire(&consul, lock).await, None, "a second replica is refused while the first holds it");
        let held = consul.get(lock).await.expect("read the lock").expect("the lock key exists");
        assert_eq!(held.session.as_deref(), Some(first.as_str()));
        release(&consul, lock, &first).await;
        let second = acquire(&consul, lock).await.expect("released (not invalidated): no lock-delay, taken at once");
        assert_ne!(second, first);
    }
}
