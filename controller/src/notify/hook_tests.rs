//! The hook in the reconcile stage: a notifier is told of each status the stage writes — exactly the (old, new)
//! pair written — and of nothing when the write fails or is skipped.

use std::sync::Arc;
use std::time::Duration;

use super::test_receiver::{Receiver, bodies, count, eventually, start_receiver};
use super::*;
use crate::reconcile::fake::KvFault;
use crate::status::Phase;

const WEB: &str = "apiVersion: drover.io/v1alpha1\nkind: App\nmetadata: {name: web, namespace: default}\nspec:\n  template: {image: 'nginx:1', count: 1}\n";
const STATUS: &str = "drover/status/default/web";

#[tokio::test]
async fn stage_should_notify_each_status_it_writes_and_nothing_else() {
    let receiver = Arc::new(Receiver::default());
    let (url, _server) = start_receiver(receiver.clone()).await;
    let metrics = Arc::new(Metrics::new());
    let target = Target {
        name: "t1".into(),
        url,
        headers: reqwest::header::HeaderMap::new(),
        events: None,
        selector: Selector::default(),
        format: Format::Drover,
    };
    let delivery = DeliveryConfig { min_delay: Duration::from_millis(5), ..DeliveryConfig::default() };
    let notifier = Notifier::start(Notifications::new(vec![target], delivery).expect("client"), metrics.clone());

    let t = crate::reconcile::fake::TestStage::new(metrics.clone());
    let (nomad, kv, mut records_writer, mut live_writer) = (t.nomad, t.kv, t.records, t.live);
    let stage = t.stage.with_notifier(Some(notifier));
    let key = AppKey::new("default", "web");
    kv.put("drover/apps/default/web", WEB.as_bytes());
    records_writer.apply_snapshot(&kv.read("drover/apps/default/web").into_iter().collect::<Vec<_>>());

    // The register goes to Nomad, but the status write fails: no status, so no event.
    kv.fail_next(KvFault::Unavailable);
    let _ = stage.reconcile(key.clone()).await;
    assert!(kv.read(STATUS).is_none(), "the status write failed");
    // The next run writes the status: its events are those of (no status → the status written).
    if let Some(job) = nomad.get("default", "web") {
        live_writer.upsert_job(job);
    }
    let _ = stage.reconcile(key.clone()).await;
    let first: AppStatus = serde_json::from_slice(&kv.read(STATUS).expect("a status").value).expect("a status");
    let expected: Vec<_> = events(None, &first, &key).into_iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(expected, vec!["RolloutStarted"], "the first status is a rollout start: {first:?}");
    eventually("the first status's events delivered", || count(&metrics, "t1", "delivered") == expected.len() as u64)
        .await;

    // A run that changes nothing writes nothing and sends nothing; then the deployment succeeds: Healthy is news.
    let _ = stage.reconcile(key.clone()).await;
    let job = nomad.get("default", "web").expect("registered");
    live_writer.upsert_deployment(
        &job.key,
        crate::live::LiveDeployment {
            id: "d1".into(),
            job_version: job.version.unwrap_or(0),
            job_spec_modify_index: job.job_modify_index,
            create_index: job.job_modify_index,
            modify_index: job.job_modify_index,
            status: crate::live::DeploymentStatus::Successful,
            description: "Deployment completed successfully".into(),
            desired: 1,
            placed: 1,
            healthy: 1,
            canaries: 0,
            groups: Default::default(),
        },
    );
    let _ = stage.reconcile(key.clone()).await;
    let healthy: AppStatus = serde_json::from_slice(&kv.read(STATUS).expect("a status").value).expect("a status");
    assert_eq!(healthy.phase, Phase::Healthy);
    let want = expected.len() as u64 + 1;
    eventually("RolloutCompleted delivered", || count(&metrics, "t1", "delivered") == want).await;
    // The queue is FIFO: had the failed write or the unchanged run sent anything, it would be here, before it.
    let got: Vec<String> = bodies(&receiver).iter().map(|b| b["event"].as_str().unwrap_or("?").to_string()).collect();
    let mut want_kinds: Vec<String> = expected.iter().map(|k| k.to_string()).collect();
    want_kinds.push("RolloutCompleted".into());
    assert_eq!(got, want_kinds);
    assert_eq!(count(&metrics, "t1", "deduplicated"), 0);
    assert_eq!(bodies(&receiver)[0]["generation"], first.observed_generation);
}
