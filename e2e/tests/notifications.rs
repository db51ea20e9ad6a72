//! Notifications (`drover run --notifications FILE`) end to end: a real `drover run` against the simulator, and a
//! local webhook receiver (axum on a free port, `drover_e2e::webhook`) that fails its first two deliveries. Events arrive
//! once each after the retries, a selector keeps other apps out, the Slack payload has its shape, and an invalid
//! file stops `drover run` naming the field.

use std::path::PathBuf;
use std::sync::Arc;

use drover::status::Phase;
use drover_e2e::webhook::{Receiver, serve};
use drover_e2e::{DEADLINE, DroverProcess, SimProcess, TIME_SCALE, binary, metric_sum, template_record, wait_until};

/// `(event, app, generation)` of each body `/{path}` took (answered 200).
fn delivered(receiver: &Receiver, path: &str) -> Vec<(String, String, u64)> {
    receiver
        .delivered(path)
        .iter()
        .map(|b| {
            let app = format!("{}/{}", b["namespace"].as_str().unwrap_or("?"), b["app"].as_str().unwrap_or("?"));
            (b["event"].as_str().unwrap_or("?").to_string(), app, b["generation"].as_u64().unwrap_or(0))
        })
        .collect()
}

/// A file in a directory of this test's own.
fn temp_file(test: &str, name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("drover-e2e-notify-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write temp file");
    path
}

/// `promtool check metrics` accepts `text` (the notification series included).
fn promtool_check(text: &str) {
    drover_e2e::promtool_check_metrics(text);
    assert!(text.contains("# TYPE drover_notifications_total counter"), "{text}");
}

#[tokio::test]
async fn notifications_should_arrive_once_per_event_through_a_receiver_that_fails_twice() {
    let receiver = Arc::new(Receiver::failing_first("drover", 2));
    let base = serve(receiver.clone()).await;
    let token = temp_file("once", "token", "Bearer s3cret\n");
    let file = temp_file(
        "once",
        "notifications.yaml",
        &format!(
            "targets:
  - name: all
    url: {base}/drover
    selector: {{apps: [web]}}
    headers:
      Authorization: {{file: {}}}
  - name: slack
    url: {base}/slack
    format: slack
    events: [RolloutCompleted]
    selector: {{namespaces: [def*], apps: [\"default/web\"]}}
",
            token.display()
        ),
    );
    let sim = SimProcess::start(TIME_SCALE).await;
    let file = file.to_str().expect("utf-8 path");
    let mut drover = DroverProcess::start(&sim, &["--notifications", file]).await;

    let g1 = sim.put_record("default", "web", template_record("web", "nginx:1.27", "")).await;
    sim.put_record("default", "other", template_record("other", "nginx:1.27", "")).await;
    for app in ["web", "other"] {
        sim.wait_for_status("default", app, "Healthy", |s| s.phase == Phase::Healthy).await;
    }
    let web = "default/web".to_string();
    let first =
        vec![("RolloutStarted".to_string(), web.clone(), g1), ("RolloutCompleted".to_string(), web.clone(), g1)];
    wait_until(DEADLINE, "RolloutStarted and RolloutCompleted of web delivered after two failures", || async {
        let got = delivered(&receiver, "drover");
        if got == first { Ok(()) } else { Err(receiver.got("drover")) }
    })
    .await;
    let attempts = receiver.got("drover");
    assert_eq!(attempts.iter().filter(|r| r.answered == 503).count(), 2, "{attempts:#?}");
    assert!(attempts.iter().all(|r| r.auth.as_deref() == Some("Bearer s3cret")), "the secret header (newline dropped)");
    let body = &attempts.last().expect("a delivery").body;
    let fields: Vec<&str> = body.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
    assert_eq!(fields, ["event", "app", "namespace", "generation", "phase", "reason", "message", "at"], "{body}");
    assert_eq!(
        (body["phase"].as_str(), body["reason"].as_str()),
        (Some("Healthy"), Some("DeploymentSucceeded")),
        "{body}"
    );

    // A new generation is news again; the old one's events are not repeated.
    let g2 = sim.put_record("default", "web", template_record("web", "nginx:1.28", "")).await;
    sim.wait_for_status("default", "web", "Healthy at the new generation", |s| {
        s.phase == Phase::Healthy && s.observed_generation == g2
    })
    .await;
    let mut want = first.clone();
    want.extend([("RolloutStarted".to_string(), web.clone(), g2), ("RolloutCompleted".to_string(), web.clone(), g2)]);
    wait_until(DEADLINE, "the second rollout's events delivered", || async {
        let got = delivered(&receiver, "drover");
        if got == want { Ok(()) } else { Err(got) }
    })
    .await;

    // Resyncs re-reconcile both apps without writing: nothing more is sent (counted after 3 resyncs of 2 apps).
    let seen = drover.reconcile_total().await;
    drover.wait_reconciles(seen, 3 * 2).await;
    assert_eq!(delivered(&receiver, "drover"), want, "each event once; `other` is not selected");
    let text = drover.get_text("/metrics").await;
    assert_eq!(metric_sum(&text, "drover_notifications_total{target=\"all\",result=\"delivered\"}"), 4, "{text}");
    assert_eq!(metric_sum(&text, "drover_notifications_total{target=\"all\",result=\"retried\"}"), 2, "{text}");
    assert_eq!(metric_sum(&text, "drover_notifications_total{target=\"all\",result=\"failed\"}"), 0, "{text}");
    promtool_check(&text);

    // Slack: only RolloutCompleted of web, in Slack's shape.
    let slack = receiver.got("slack");
    assert_eq!(slack.len(), 2, "{slack:#?}");
    for r in &slack {
        let text = r.body["text"].as_str().unwrap_or_default();
        assert!(text.contains("default/web: RolloutCompleted"), "{}", r.body);
        let blocks = r.body["blocks"].as_array().cloned().unwrap_or_default();
        assert_eq!(blocks.len(), 1, "{}", r.body);
        assert_eq!((blocks[0]["type"].as_str(), blocks[0]["text"]["type"].as_str()), (Some("section"), Some("mrkdwn")));
        assert!(blocks[0]["text"]["text"].as_str().is_some_and(|t| t.contains("*RolloutCompleted*")), "{}", r.body);
        assert_eq!(r.auth, None, "headers are per target");
    }
    drover.assert_running();
}

#[test]
fn drover_run_should_refuse_an_invalid_notifications_file_naming_each_field() {
    let file = temp_file(
        "invalid",
        "notifications.yaml",
        "targets:
  - name: a
    url: http://127.0.0.1:9/hook
    events: [RolloutStarted, Exploded]
  - name: b
    url: ftp://example.com/x
    selectr: {apps: [web]}
",
    );
    // Nothing listens at these addresses: the file is refused before Drover talks to anyone.
    let out = std::process::Command::new(binary("drover"))
        .args(["run", "--consul-addr", "http://127.0.0.1:9", "--nomad-addr", "http://127.0.0.1:9", "--listen"])
        .arg("127.0.0.1:0")
        .arg("--notifications")
        .arg(&file)
        .output()
        .expect("run drover");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "drover run must exit non-zero: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.iter().any(|l| l.trim_start().starts_with("targets[0].events[1]: unknown variant `Exploded`")),
        "{stderr}"
    );
    assert!(
        lines.iter().any(|l| l.trim_start().starts_with("targets[1].selectr: unknown field `selectr`")),
        "{stderr}"
    );
}
