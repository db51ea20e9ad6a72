//! Tests of delivery against a local HTTP receiver (axum on 127.0.0.1:0): retries, refusals, dedup, full queues and
//! the payload shapes.

use axum::http::StatusCode;

use super::*;
use crate::app::AppKey;
use crate::notify::test_receiver::{Receiver, count, eventually, start_receiver};
use crate::notify::{EventKind, Notifications, Notifier, Pattern, Selector};
use crate::status::{Phase, Reason};

fn target(url: reqwest::Url, format: Format) -> Target {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("authorization", reqwest::header::HeaderValue::from_static("Bearer t"));
    Target { name: "t1".into(), url, headers, events: None, selector: Selector::default(), format }
}

fn fast() -> DeliveryConfig {
    DeliveryConfig {
        queue: 8,
        retries: 3,
        min_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        timeout: Duration::from_secs(5),
        dedup_capacity: 16,
    }
}

fn event(kind: EventKind, generation: u64, occurrence: &str) -> Event {
    let app = AppKey::new("default", "web");
    Event {
        kind,
        app: app.clone(),
        generation,
        phase: Phase::Degraded,
        reason: Some(Reason::RolledBack),
        message: "deployment 1234 failed: <canary> & co".into(),
        at: "2026-12-07T06:00:00Z".into(),
        dedup: DedupKey { app, generation, kind, occurrence: occurrence.into() },
    }
}

fn start(targets: Vec<Target>, config: DeliveryConfig, metrics: &Arc<Metrics>) -> Notifier {
    let setup = Notifications::new(targets, config).expect("webhook client");
    Notifier::start(setup, metrics.clone())
}

#[tokio::test]
async fn delivery_should_retry_transient_failures_and_deliver_once() {
    let receiver = Arc::new(Receiver::default());
    receiver
        .answers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend([StatusCode::SERVICE_UNAVAILABLE, StatusCode::TOO_MANY_REQUESTS]);
    let (url, _server) = start_receiver(receiver.clone()).await;
    let metrics = Arc::new(Metrics::new());
    let notifier = start(vec![target(url, Format::Drover)], fast(), &metrics);
    notifier.send(&event(EventKind::RolloutAborted, 7, ""));
    eventually("one delivery after two retries", || count(&metrics, "t1", "delivered") == 1).await;
    assert_eq!(count(&metrics, "t1", "retried"), 2);
    assert_eq!(count(&metrics, "t1", "failed"), 0);
    let bodies = receiver.bodies.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(bodies.len(), 3, "two failed attempts and the delivery");
    assert!(bodies.iter().all(|(b, auth)| b == &bodies[0].0 && auth.as_deref() == Some("Bearer t")));
}

#[tokio::test]
async fn delivery_should_not_retry_a_refusal_and_should_give_up_after_its_retries() {
    let receiver = Arc::new(Receiver::default());
    let mut answers = vec![StatusCode::UNAUTHORIZED];
    answers.extend([StatusCode::INTERNAL_SERVER_ERROR; 4]);
    receiver.answers.lock().unwrap_or_else(|p| p.into_inner()).extend(answers);
    let (url, _server) = start_receiver(receiver.clone()).await;
    let metrics = Arc::new(Metrics::new());
    let notifier = start(vec![target(url, Format::Drover)], fast(), &metrics);
    notifier.send(&event(EventKind::RolloutAborted, 7, ""));
    eventually("the refusal counted as failed", || count(&metrics, "t1", "failed") == 1).await;
    assert_eq!(count(&metrics, "t1", "retried"), 0, "a 401 is not retried");
    notifier.send(&event(EventKind::RolloutAborted, 8, ""));
    eventually("four 500s exhaust 3 retries", || count(&metrics, "t1", "failed") == 2).await;
    assert_eq!(count(&metrics, "t1", "retried"), 3);
    assert_eq!(receiver.bodies.lock().unwrap_or_else(|p| p.into_inner()).len(), 1 + 4);
}

#[tokio::test]
async fn delivery_should_send_each_occurrence_once() {
    let receiver = Arc::new(Receiver::default());
    let (url, _server) = start_receiver(receiver.clone()).await;
    let metrics = Arc::new(Metrics::new());
    let notifier = start(vec![target(url, Format::Drover)], fast(), &metrics);
    for e in [
        event(EventKind::RolloutCompleted, 7, ""),
        event(EventKind::RolloutCompleted, 7, ""),
        event(EventKind::RolloutCompleted, 8, ""),
        event(EventKind::Scaled, 8, "t1"),
        event(EventKind::Scaled, 8, "t2"),
        event(EventKind::Scaled, 8, "t1"),
    ] {
        notifier.send(&e);
    }
    eventually("4 deliveries and 2 repeats dropped", || {
        count(&metrics, "t1", "delivered") == 4 && count(&metrics, "t1", "deduplicated") == 2
    })
    .await;
    assert_eq!(receiver.bodies.lock().unwrap_or_else(|p| p.into_inner()).len(), 4);
}

#[tokio::test]
async fn delivery_should_drop_and_count_when_a_target_queue_is_full_without_waiting() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let receiver = Arc::new(Receiver { gate: Some(gate.clone()), ..Receiver::default() });
    let (url, _server) = start_receiver(receiver.clone()).await;
    let metrics = Arc::new(Metrics::new());
    let notifier = start(vec![target(url, Format::Drover)], DeliveryConfig { queue: 1, ..fast() }, &metrics);
    let arrived = receiver.arrived.notified();
    notifier.send(&event(EventKind::Scaled, 1, "a"));
    tokio::time::timeout(Duration::from_secs(10), arrived).await.expect("the first event reaches the receiver");
    // The task is busy with the first; the queue holds one more; the third is dropped at once.
    let sent = tokio::time::Instant::now();
    notifier.send(&event(EventKind::Scaled, 1, "b"));
    notifier.send(&event(EventKind::Scaled, 1, "c"));
    assert!(sent.elapsed() < Duration::from_secs(1), "send never waits for the receiver");
    assert_eq!(count(&metrics, "t1", "dropped"), 1);
    gate.add_permits(10);
    eventually("the queued event delivered", || count(&metrics, "t1", "delivered") == 2).await;
}

#[tokio::test]
async fn notifier_should_send_only_what_each_target_selects() {
    let receiver = Arc::new(Receiver::default());
    let (url, _server) = start_receiver(receiver.clone()).await;
    let metrics = Arc::new(Metrics::new());
    let mut only_prod = target(url.clone(), Format::Drover);
    only_prod.name = "prod".into();
    only_prod.selector = Selector { namespaces: vec![Pattern::new("prod-*")], apps: vec![] };
    let mut only_failures = target(url, Format::Drover);
    only_failures.events = Some([EventKind::RolloutAborted].into_iter().collect());
    let notifier = start(vec![only_prod, only_failures], fast(), &metrics);
    notifier.send(&event(EventKind::RolloutCompleted, 1, ""));
    notifier.send(&event(EventKind::RolloutAborted, 2, ""));
    eventually("the failure delivered to t1", || count(&metrics, "t1", "delivered") == 1).await;
    let prod = event(EventKind::RolloutCompleted, 3, "");
    notifier.send(&Event { app: AppKey::new("prod-eu", "web"), ..prod });
    let text = || metrics.encode();
    eventually("the prod app's event delivered to prod", || {
        text().contains("drover_notifications_total{target=\"prod\",result=\"delivered\"} 1")
    })
    .await;
    let bodies = receiver.bodies.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let kinds: Vec<_> = bodies.iter().map(|(b, _)| (b["event"].clone(), b["namespace"].clone())).collect();
    assert_eq!(kinds, vec![("RolloutAborted".into(), "default".into()), ("RolloutCompleted".into(), "prod-eu".into())]);
}

#[test]
fn drover_payload_should_carry_every_field() {
    let body = payload(&event(EventKind::RolloutAborted, 7, ""), Format::Drover);
    assert_eq!(
        body,
        json!({
            "event": "RolloutAborted", "app": "web", "namespace": "default", "generation": 7, "phase": "Degraded",
            "reason": "RolledBack", "message": "deployment 1234 failed: <canary> & co", "at": "2026-12-07T06:00:00Z",
        })
    );
    let no_reason = Event { reason: None, ..event(EventKind::Invalid, 1, "") };
    assert_eq!(payload(&no_reason, Format::Drover)["reason"], Value::Null);
}

#[test]
fn slack_payload_should_have_text_and_one_mrkdwn_section_with_escaped_text() {
    let body = payload(&event(EventKind::RolloutAborted, 7, ""), Format::Slack);
    let text = body["text"].as_str().expect("text");
    assert!(text.contains("default/web: RolloutAborted (generation 7, phase Degraded, reason RolledBack)"), "{text}");
    assert!(text.contains("&lt;canary&gt; &amp; co") && !text.contains("<canary>"), "{text}");
    let blocks = body["blocks"].as_array().expect("blocks");
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0]["type"], "section");
    assert_eq!(blocks[0]["text"]["type"], "mrkdwn");
    let section = blocks[0]["text"]["text"].as_str().expect("section text");
    assert!(
        section.contains("*RolloutAborted* `default/web`")
            && section.contains("\n>deployment 1234 failed: &lt;canary&gt;"),
        "{section}"
    );
    assert_eq!(body.as_object().map(|o| o.len()), Some(2), "only text and blocks: {body}");
}

#[test]
fn seen_should_forget_the_oldest_beyond_its_capacity() {
    let key =
        |g| DedupKey { app: AppKey::new("a", "b"), generation: g, kind: EventKind::Scaled, occurrence: String::new() };
    let mut seen = Seen::new(2);
    assert!(seen.insert(&key(1)) && seen.insert(&key(2)));
    assert!(!seen.insert(&key(1)), "remembered");
    assert!(seen.insert(&key(3)), "new");
    assert!(seen.insert(&key(1)), "1 was the oldest and is forgotten");
    assert!(!seen.insert(&key(3)));
}
