//! Notifications (`drover run --notifications FILE`): webhooks told about rollouts, scales, drift and invalid
//! records, without ever slowing a reconcile.
//!
//! ```text
//!  Stage::write_status ──(old, new)──► Notifier::observe ── events() (pure) ──► per target: wants? ──try_send──┐
//!       (after a successful CAS)          never blocks                                       full: dropped    │
//!                                                                                                              ▼
//!                     receiver ◄── POST (retries, backoff) ◄── payload ◄── dedup (bounded) ◄── target task (one each)
//! ```
//!
//! - [`config`]: the file, checked at start with field paths; secrets read once.
//! - [`events`]: which transitions of a status are events — a pure function with the rules in a table.
//! - [`deliver`]: the per-target task: dedup per (app, generation, event), payloads (Drover JSON, Slack), retries.
//!
//! Counted in `drover_notifications_total{target,result}`, result one of `delivered`, `retried` (one per retry),
//! `failed` (gave up, or refused), `dropped` (queue full), `deduplicated`.
//!
//! Events are observed only where the status write succeeded, so each transition is seen once per leader; a
//! restarted or new leader starts from the stored status, so it does not repeat transitions the last one saw. What
//! is queued when the process stops is lost (at most [`DeliveryConfig::queue`] per target): notifications are
//! at-most-once across restarts, exactly-once per occurrence within a process (retries included).

pub mod config;
pub mod deliver;
pub mod events;
#[cfg(test)]
mod hook_tests;
#[cfg(test)]
mod test_receiver;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

pub use config::{Format, LoadError, Pattern, Selector, Target, load};
pub use deliver::DeliveryConfig;
pub use events::{DedupKey, Event, EventKind, events};

use crate::app::AppKey;
use crate::metrics::{Metrics, NotificationResult};
use crate::status::AppStatus;

/// Why notifications cannot start. Not retryable.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The HTTP client for webhooks cannot be built (TLS initialisation).
    #[error("cannot build the HTTP client for notifications")]
    BuildClientFailed(#[source] reqwest::Error),
}

/// What notifications need to start: the checked targets, the HTTP client they share, and delivery settings. Built
/// (fallibly) before the controller, which starts a [`Notifier`] from it.
#[derive(Clone, Debug)]
pub struct Notifications {
    /// The targets, from [`load`].
    pub targets: Vec<Target>,
    /// The webhook client (no redirects, rustls).
    pub client: reqwest::Client,
    /// Queue sizes, retries and timeouts.
    pub delivery: DeliveryConfig,
}

impl Notifications {
    /// Targets with a webhook client built for `delivery`.
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(targets: Vec<Target>, delivery: DeliveryConfig) -> Result<Notifications, NotifyError> {
        crate::tls::install_crypto_provider();
        // No redirects: a target's headers often carry a token, which must not follow a redirect elsewhere.
        let client = reqwest::Client::builder()
            .connect_timeout(delivery.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("drover/", env!("CARGO_PKG_VERSION")))
            .tls_backend_rustls()
            .build()
            .map_err(NotifyError::BuildClientFailed)?;
        Ok(Notifications { targets, client, delivery })
    }
}

/// One target's queue and the filter applied before queueing.
struct Queue {
    target: Arc<Target>,
    tx: mpsc::Sender<Event>,
}

/// The reconcile stage's handle on notifications: [`Notifier::observe`] computes the events of a status write and
/// queues them for each target that wants them, without waiting. Dropping it stops the delivery tasks.
pub struct Notifier {
    queues: Vec<Queue>,
    metrics: Arc<Metrics>,
    _tasks: Vec<AbortOnDropHandle<()>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("targets", &self.queues.iter().map(|q| &q.target.name).collect::<Vec<_>>())
            .finish()
    }
}

impl Notifier {
    /// Starts one delivery task per target of `setup` (on the current tokio runtime).
    pub fn start(setup: Notifications, metrics: Arc<Metrics>) -> Notifier {
        let Notifications { targets, client, delivery } = setup;
        let mut queues = Vec::with_capacity(targets.len());
        let mut tasks = Vec::with_capacity(targets.len());
        for target in targets {
            metrics.notification_target(&target.name);
            let target = Arc::new(target);
            let (tx, rx) = mpsc::channel(delivery.queue.max(1));
            let task = deliver::run_target(target.clone(), rx, client.clone(), delivery.clone(), metrics.clone());
            tasks.push(AbortOnDropHandle::new(tokio::spawn(task)));
            queues.push(Queue { target, tx });
        }
        Notifier { queues, metrics, _tasks: tasks }
    }

    /// The status of `key` went from `old` to `new` (just written): queues its events. Never waits.
    pub fn observe(&self, key: &AppKey, old: Option<&AppStatus>, new: &AppStatus) {
        for event in events(old, new, key) {
            self.send(&event);
        }
    }

    /// Queues `event` for every target that wants it; a full queue drops it (counted).
    pub fn send(&self, event: &Event) {
        for q in self.queues.iter().filter(|q| q.target.wants(event.kind, &event.app)) {
            if q.tx.try_send(event.clone()).is_err() {
                self.metrics.notification(&q.target.name, NotificationResult::Dropped);
                tracing::warn!(target = %q.target.name, event = %event.kind, app = %event.app, "notification queue full: dropped");
            }
        }
    }
}
