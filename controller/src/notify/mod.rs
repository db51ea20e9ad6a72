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
//! - [`sync_event`]: `SyncFailed`, the event of `drover sync --watch --notifications FILE` (same file, same
//!   delivery; deduplicated per (sync, revision, event)).
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
pub mod sync_event;
#[cfg(test)]
mod test_receiver;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

pub use config::{Format, LoadError, Pattern, Selector, Target, load};
pub use deliver::DeliveryConfig;
pub use events::{DedupKey, Event, EventKind, events};
pub use sync_event::{SyncEvent, SyncEvents, SyncKey};

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

/// Something a target can be told: an app's [`Event`], or a failed sync's [`SyncEvent`]. Delivery (queues, dedup,
/// retries, metrics) is the same for both; only the filter, the dedup key and the payload differ.
pub trait Notice: Clone + Send + Sync + 'static {
    /// What identifies one occurrence, so a target sends it once.
    type Key: std::hash::Hash + Eq + Clone + Send + Sync + 'static;
    /// The kind, as a notifications file's `events:` names it.
    fn kind(&self) -> EventKind;
    /// Whether `target` wants it.
    fn wanted_by(&self, target: &Target) -> bool;
    /// The occurrence.
    fn dedup_key(&self) -> Self::Key;
    /// The body sent in `format`.
    fn payload(&self, format: Format) -> serde_json::Value;
    /// What it is about, for logs (`default/web`, `sync prod`).
    fn subject(&self) -> String;
}

impl Notice for Event {
    type Key = DedupKey;

    fn kind(&self) -> EventKind {
        self.kind
    }

    fn wanted_by(&self, target: &Target) -> bool {
        target.wants(self.kind, &self.app)
    }

    fn dedup_key(&self) -> DedupKey {
        self.dedup.clone()
    }

    fn payload(&self, format: Format) -> serde_json::Value {
        deliver::payload(self, format)
    }

    fn subject(&self) -> String {
        self.app.to_string()
    }
}

/// One target's queue and the filter applied before queueing.
struct Queue<E> {
    target: Arc<Target>,
    tx: mpsc::Sender<E>,
}

/// The handle on notifications: [`Notifier::observe`] (the reconcile stage) computes the events of a status write
/// and queues them for each target that wants them, and [`Notifier::send`] queues one notice (`drover sync --watch`
/// sends [`SyncEvent`]s), never waiting. Dropping it stops the delivery tasks.
pub struct Notifier<E: Notice = Event> {
    queues: Vec<Queue<E>>,
    metrics: Arc<Metrics>,
    _tasks: Vec<AbortOnDropHandle<()>>,
}

impl<E: Notice> std::fmt::Debug for Notifier<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("targets", &self.queues.iter().map(|q| &q.target.name).collect::<Vec<_>>())
            .finish()
    }
}

impl<E: Notice> Notifier<E> {
    /// Starts one delivery task per target of `setup` (on the current tokio runtime).
    pub fn start(setup: Notifications, metrics: Arc<Metrics>) -> Notifier<E> {
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

    /// Queues `notice` for every target that wants it; a full queue drops it (counted).
    pub fn send(&self, notice: &E) {
        for q in self.queues.iter().filter(|q| notice.wanted_by(&q.target)) {
            if q.tx.try_send(notice.clone()).is_err() {
                self.metrics.notification(&q.target.name, NotificationResult::Dropped);
                tracing::warn!(target = %q.target.name, event = %notice.kind(), about = %notice.subject(), "notification queue full: dropped");
            }
        }
    }
}

impl Notifier<Event> {
    /// The status of `key` went from `old` to `new` (just written): queues its events. Never waits.
    pub fn observe(&self, key: &AppKey, old: Option<&AppStatus>, new: &AppStatus) {
        for event in events(old, new, key) {
            self.send(&event);
        }
    }
}
