//! Delivery: one task per target takes events from its bounded queue, drops occurrences it already sent, renders the
//! payload and POSTs it, retrying transient failures with jittered exponential backoff (`backon`).
//!
//! A target's retries hold only its own queue: a slow or failing receiver delays that target's later events, never
//! a reconcile and never another target. When its queue is full the new event is dropped and counted
//! (`result="dropped"`, by [`super::Notifier`]).
//!
//! What is retried: no answer (connect error, timeout), `408`, `429` and `5xx`. Any other status is the receiver
//! saying no (a wrong URL or token): retrying cannot help, so it is counted `failed` at once.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::Notice;
use super::config::{Format, Target};
use super::events::{DedupKey, Event};
use crate::metrics::{Metrics, NotificationResult};

/// How targets deliver; [`Default`] is what `drover run` uses.
#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    /// Events waiting per target; more are dropped.
    pub queue: usize,
    /// Retries after the first attempt.
    pub retries: usize,
    /// The first retry's delay (then doubled, with jitter).
    pub min_delay: Duration,
    /// The longest delay between two attempts.
    pub max_delay: Duration,
    /// The longest one attempt may take, connection included.
    pub timeout: Duration,
    /// How many occurrences a target remembers to drop repeats (the oldest are forgotten first).
    pub dedup_capacity: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            queue: 256,
            retries: 5,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            dedup_capacity: 4096,
        }
    }
}

/// The occurrences a target has taken, bounded: insertion order is eviction order (oldest first).
#[derive(Debug)]
pub struct Seen<K = DedupKey> {
    set: HashSet<K>,
    order: VecDeque<K>,
    capacity: usize,
}

impl<K: std::hash::Hash + Eq + Clone> Seen<K> {
    /// An empty set remembering at most `capacity` keys (at least one).
    pub fn new(capacity: usize) -> Seen<K> {
        let capacity = capacity.max(1);
        Seen { set: HashSet::with_capacity(capacity), order: VecDeque::with_capacity(capacity), capacity }
    }

    /// Remembers `key`; false when it was already remembered (a repeat to drop).
    pub fn insert(&mut self, key: &K) -> bool {
        if self.set.contains(key) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.set.remove(&oldest);
        }
        self.set.insert(key.clone());
        self.order.push_back(key.clone());
        true
    }
}

/// The body `format` sends for `event`.
pub fn payload(event: &Event, format: Format) -> Value {
    match format {
        Format::Drover => json!({
            "event": event.kind.as_str(),
            "app": event.app.name,
            "namespace": event.app.namespace,
            "generation": event.generation,
            "phase": event.phase.as_str(),
            "reason": event.reason.map(|r| format!("{r:?}")),
            "message": event.message,
            "at": event.at,
        }),
        Format::Slack => {
            let reason = event.reason.map(|r| format!(", reason {r:?}")).unwrap_or_default();
            let text = format!(
                "{} {}: {} (generation {}, phase {}{reason}){}",
                icon(event.kind),
                event.app,
                event.kind,
                event.generation,
                event.phase.as_str(),
                if event.message.is_empty() { String::new() } else { format!(": {}", event.message) }
            );
            let mut section = format!(
                "{} *{}* `{}`\ngeneration {}, phase *{}*{reason}",
                icon(event.kind),
                event.kind,
                slack_escape(&event.app.to_string()),
                event.generation,
                event.phase.as_str()
            );
            if !event.message.is_empty() {
                section.push_str("\n>");
                section.push_str(&slack_escape(&event.message));
            }
            json!({
                "text": slack_escape(&text),
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": section}}],
            })
        }
    }
}

/// The emoji a Slack message of `kind` starts with.
pub(super) fn icon(kind: super::events::EventKind) -> &'static str {
    use super::events::EventKind as K;
    match kind {
        K::RolloutCompleted => ":white_check_mark:",
        K::RolloutStarted | K::Scaled => ":arrows_counterclockwise:",
        K::RolloutPaused => ":double_vertical_bar:",
        K::RolloutAborted | K::AnalysisFailed | K::Failed | K::Invalid | K::SyncFailed => ":x:",
        K::Drifted => ":warning:",
    }
}

/// Slack's three control characters, escaped as its formatting guide asks
/// (<https://api.slack.com/reference/surfaces/formatting#escaping>).
pub(super) fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Why one attempt failed.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    /// No answer (connect, timeout, reset). Retryable.
    #[error("no answer")]
    Unreachable(#[source] reqwest::Error),
    /// An answer that asks to try later (`408`, `429`, `5xx`). Retryable.
    #[error("answered {0}")]
    Transient(reqwest::StatusCode),
    /// An answer that refuses the request. Not retryable.
    #[error("answered {0}")]
    Refused(reqwest::StatusCode),
}

impl AttemptError {
    fn retryable(&self) -> bool {
        !matches!(self, AttemptError::Refused(_))
    }
}

/// The task of one target: runs until every sender of `rx` is gone.
pub async fn run_target<E: Notice>(
    target: Arc<Target>,
    mut rx: mpsc::Receiver<E>,
    client: reqwest::Client,
    config: DeliveryConfig,
    metrics: Arc<Metrics>,
) {
    let mut seen: Seen<E::Key> = Seen::new(config.dedup_capacity);
    while let Some(event) = rx.recv().await {
        if !seen.insert(&event.dedup_key()) {
            metrics.notification(&target.name, NotificationResult::Deduplicated);
            continue;
        }
        let body = event.payload(target.format);
        let result = deliver(&target, &client, &config, &metrics, &body).await;
        match result {
            Ok(()) => metrics.notification(&target.name, NotificationResult::Delivered),
            Err(err) => {
                metrics.notification(&target.name, NotificationResult::Failed);
                tracing::warn!(
                    target = %target.name,
                    event = %event.kind(),
                    about = %event.subject(),
                    error = %crate::error_chain(&err),
                    "notification not delivered"
                );
            }
        }
    }
}

/// POSTs `body`, retrying as the module doc says.
async fn deliver(
    target: &Target,
    client: &reqwest::Client,
    config: &DeliveryConfig,
    metrics: &Metrics,
    body: &Value,
) -> Result<(), AttemptError> {
    let attempt = || async {
        let resp = client
            .post(target.url.clone())
            .headers(target.headers.clone())
            .timeout(config.timeout)
            .json(body)
            .send()
            .await
            .map_err(AttemptError::Unreachable)?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else if status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
        {
            Err(AttemptError::Transient(status))
        } else {
            Err(AttemptError::Refused(status))
        }
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(config.min_delay)
        .with_max_delay(config.max_delay)
        .with_max_times(config.retries)
        .with_jitter();
    attempt
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(AttemptError::retryable)
        .notify(|err, delay| {
            metrics.notification(&target.name, NotificationResult::Retried);
            tracing::debug!(target = %target.name, error = %crate::error_chain(err), ?delay, "notification retried");
        })
        .await
}

#[cfg(test)]
#[path = "deliver_tests.rs"]
mod tests;
