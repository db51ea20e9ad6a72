//! An app's life against real processes: create, update, invalid records, conflicts with jobs Drover does not own,
//! and the three deletion policies. Each test asserts on what Nomad runs and on the status in Consul.

use drover::status::{ConditionStatus, ConditionType, Phase, Reason};
use drover_e2e::{
    DEADLINE, DroverProcess, SimProcess, TIME_SCALE, job_image, job_modify_index, job_owner, job_version,
    template_record, wait_until,
};
use serde_json::json;

#[tokio::test]
async fn create_should_register_an_owned_job_and_report_healthy() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let mut drover = DroverProcess::start(&sim, &[]).await;

    let generation = sim.put_record("default", "web", template_record("web", "nginx:1.27", "")).await;
    let status = sim
        .wait_for_status("default", "web", "Healthy at the record's generation", |s| {
            s.phase == Phase::Healthy && s.observed_generation == generation
        })
        .await;

    let job = sim.job("default", "web").await.expect("Nomad runs job web");
    assert_eq!(
        job["Meta"],
        json!({"drover.io/app": "drover/apps/default/web"}),
        "the only Meta key is Drover's owner mark"
    );
    assert_eq!(job_image(&job), Some("nginx:1.27"));
    assert_eq!(job["TaskGroups"][0]["Count"], json!(2));
    assert_eq!(status.job_id.as_deref(), Some("web"));
    assert_eq!(status.applied_job_version, Some(job_version(&job)));
    assert_eq!(status.applied_job_modify_index, Some(job_modify_index(&job)));
    let ready = status.condition(ConditionType::Ready).expect("a Ready condition");
    assert_eq!(ready.status, ConditionStatus::True, "{ready:?}");
    assert_eq!(status.replicas.healthy, 2, "{:?}", status.replicas);
    drover.assert_running();
}

#[tokio::test]
async fn update_should_register_a_new_version_and_keep_both_in_history() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let mut drover = DroverProcess::start(&sim, &[]).await;
    let first = sim.put_record("default", "web", template_record("web", "nginx:1.27", "")).await;
    let before = sim
        .wait_for_status("default", "web", "Healthy", |s| s.phase == Phase::Healthy && s.observed_generation == first)
        .await;
    let first_version = before.applied_job_version.expect("an applied version");

    let second = sim.put_record("default", "web", template_record("web", "nginx:1.28", "")).await;
    let after = sim
        .wait_for_status("default", "web", "Healthy at the new generation", |s| {
            s.phase == Phase::Healthy && s.observed_generation == second
        })
        .await;

    let job = sim.job("default", "web").await.expect("job web");
    assert_eq!(job_image(&job), Some("nginx:1.28"));
    assert_eq!(after.applied_job_version, Some(job_version(&job)));
    assert!(job_version(&job) > first_version, "a new job version: {} after {first_version}", job_version(&job));
    let images: Vec<_> =
        sim.job_versions("default", "web").await.iter().map(|v| job_image(v).map(str::to_owned)).collect();
    assert!(
        images.contains(&Some("nginx:1.27".into())) && images.contains(&Some("nginx:1.28".into())),
        "Nomad's history has both images: {images:?}"
    );
    let generations: Vec<u64> = after.history.iter().map(|h| h.generation).collect();
    assert!(generations.contains(&first) && generations.contains(&second), "status history: {:?}", after.history);
    assert_eq!(after.history[0].generation, second, "newest first: {:?}", after.history);
    drover.assert_running();
}

/// A record with several validation errors (no parse error, so all are collected).
const SEVERAL_ERRORS: &str = "\
apiVersion: drover.io/v1alpha1
kind: App
metadata:
  name: Bad_Name
  namespace: default
spec:
  template:
    image: nginx:1.27
    count: -2
    ports: {http: 8080}
    service:
      port: grpc
  strategy:
    minHealthyTime: 10m
    healthyDeadline: 5m
";

/// A billion-laughs YAML: nine levels of nine aliases each.
fn alias_bomb() -> String {
    let mut yaml = String::from("a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for i in 1..10 {
        let p = i - 1;
        yaml.push_str(&format!("a{i}: &a{i} [*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p}]\n"));
    }
    yaml
}

#[tokio::test]
async fn invalid_should_report_every_error_and_never_reach_nomad() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("bad", SEVERAL_ERRORS.as_bytes().to_vec()),
        ("notyaml", b"apiVersion: [unclosed\n  kind: : App\n\t- nonsense: {".to_vec()),
        ("binary", (0u8..=255).rev().cycle().take(4096).collect()),
        ("bomb", alias_bomb().into_bytes()),
        ("deep", format!("{}{}", "[".repeat(20_000), "]".repeat(20_000)).into_bytes()),
    ];
    // Half the records exist before Drover starts (initial list), half arrive while it runs (watch).
    for (name, bytes) in &hostile[..2] {
        sim.put_record("default", name, bytes.clone()).await;
    }
    let mut drover = DroverProcess::start(&sim, &[]).await;
    for (name, bytes) in &hostile[2..] {
        sim.put_record("default", name, bytes.clone()).await;
    }
    let web = sim.put_record("default", "web", template_record("web", "nginx:1.27", "")).await;

    for (name, _) in &hostile {
        let status = sim.wait_for_status("default", name, "Invalid", |s| s.phase == Phase::Invalid).await;
        let valid =
            status.condition(ConditionType::Valid).unwrap_or_else(|| panic!("{name}: a Valid condition: {status:?}"));
        assert_eq!(valid.status, ConditionStatus::False, "{name}: {valid:?}");
        assert!(valid.message.contains("error"), "{name}: the message lists the errors: {}", valid.message);
    }
    let bad = sim.status("default", "bad").await.expect("status of bad");
    let message = &bad.condition(ConditionType::Valid).expect("Valid condition").message;
    for path in ["metadata.name", "spec.template.count", "spec.template.service.port", "spec.strategy"] {
        assert!(message.contains(path), "the errors name {path}: {message}");
    }
    let count: usize = message.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(count >= 4, "several errors collected, not just the first: {message}");

    // The valid app alongside still converges: the controller neither crashed nor stalled.
    sim.wait_for_status("default", "web", "Healthy", |s| s.phase == Phase::Healthy && s.observed_generation == web)
        .await;
    drover.assert_running();

    let log = sim.log(Some("nomad"), 0).await;
    for (name, _) in &hostile {
        let touched: Vec<_> = log.requests.iter().filter(|r| r.is_write() && r.path.contains(name)).collect();
        assert!(touched.is_empty(), "{name} never reaches Nomad, but: {touched:?}");
        assert!(sim.job("default", name).await.is_none(), "no job {name}");
    }
    let registers = log.requests.iter().filter(|r| r.method == "POST" && r.path.starts_with("/v1/job")).count();
    assert_eq!(registers, 1, "only web is registered: {:?}", log.requests);

    // Fixing a record is all it takes.
    let fixed = sim.put_record("default", "bad", template_record("bad", "nginx:1.27", "")).await;
    let status = sim
        .wait_for_status("default", "bad", "Healthy once fixed", |s| {
            s.phase == Phase::Healthy && s.observed_generation == fixed
        })
        .await;
    assert_eq!(status.condition(ConditionType::Valid).map(|c| c.status), Some(ConditionStatus::True), "{status:?}");
    drover.assert_running();
}

#[tokio::test]
async fn conflict_should_leave_an_unowned_job_alone_until_adopted() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let mut drover = DroverProcess::start(&sim, &[]).await;
    // A job someone registered by hand, without Drover's Meta.
    let hand = json!({
        "ID": "legacy", "Name": "legacy", "Type": "service", "Namespace": "default", "Datacenters": ["dc1"],
        "TaskGroups": [{"Name": "legacy", "Count": 1,
            "Tasks": [{"Name": "legacy", "Driver": "docker", "Config": {"image": "legacy:1"}}]}]
    });
    sim.register_job(&hand).await.expect("hand register");
    let hand_index = job_modify_index(&sim.job("default", "legacy").await.expect("hand job"));

    let generation = sim.put_record("default", "legacy", template_record("legacy", "nginx:1.27", "")).await;
    let status = sim
        .wait_for_status("default", "legacy", "Failed with a Conflict", |s| {
            s.phase == Phase::Failed && s.observed_generation == generation
        })
        .await;
    let conflict = status.condition(ConditionType::Conflict).expect("a Conflict condition");
    assert_eq!((conflict.status, conflict.reason), (ConditionStatus::True, Reason::UnownedJob), "{conflict:?}");
    // Two resyncs later the hand job is still untouched.
    let seen = drover.reconcile_total().await;
    drover.wait_reconciles(seen, 2).await;
    let job = sim.job("default", "legacy").await.expect("hand job");
    assert_eq!(job_modify_index(&job), hand_index, "Drover never wrote the unowned job");
    assert_eq!(job_owner(&job), None);
    assert_eq!(job_image(&job), Some("legacy:1"));
    let writes = sim.nomad_requests(0, "POST", "/v1/job/legacy").await;
    assert!(writes.is_empty(), "no register of the unowned job: {writes:?}");

    // `adopt: true` takes it over.
    let adopt = sim.put_record("default", "legacy", template_record("legacy", "nginx:1.27", "adopt: true")).await;
    let status = sim
        .wait_for_status("default", "legacy", "Healthy after adoption", |s| {
            s.phase == Phase::Healthy && s.observed_generation == adopt
        })
        .await;
    assert!(status.condition(ConditionType::Conflict).is_none(), "conflict cleared: {status:?}");
    let job = sim.job("default", "legacy").await.expect("adopted job");
    assert_eq!(job_owner(&job), Some("drover/apps/default/legacy"));
    assert_eq!(job_image(&job), Some("nginx:1.27"));
    drover.assert_running();
}

#[tokio::test]
async fn deletion_should_follow_each_apps_policy() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let mut drover = DroverProcess::start(&sim, &[]).await;
    let policies = [("stopped", "Stop"), ("purged", "Purge"), ("orphaned", "Orphan")];
    for (name, policy) in policies {
        let extra = format!("deletionPolicy: {policy}");
        sim.put_record("default", name, template_record(name, "nginx:1.27", &extra)).await;
    }
    for (name, _) in policies {
        sim.wait_for_status("default", name, "Healthy", |s| s.phase == Phase::Healthy).await;
    }
    for (name, _) in policies {
        sim.delete_record("default", name).await;
    }

    let stopped = wait_until(DEADLINE, "job stopped stopped and its status deleted", || async {
        let job = sim.job("default", "stopped").await;
        let status = sim.status("default", "stopped").await;
        match (&job, &status) {
            (Some(j), None) if j["Stop"] == json!(true) => Ok(j.clone()),
            _ => Err((job.map(|j| j["Stop"].clone()), status.map(|s| s.phase))),
        }
    })
    .await;
    assert_eq!(job_owner(&stopped), Some("drover/apps/default/stopped"));
    wait_until(DEADLINE, "job purged gone and its status deleted", || async {
        let job = sim.job("default", "purged").await;
        let status = sim.status("default", "purged").await;
        if job.is_none() && status.is_none() { Ok(()) } else { Err((job.is_some(), status.map(|s| s.phase))) }
    })
    .await;
    let orphan_status = wait_until(DEADLINE, "status of orphaned deleted", || async {
        match sim.status("default", "orphaned").await {
            None => Ok(()),
            Some(s) => Err(s.phase),
        }
    })
    .await;
    let _: () = orphan_status;
    let orphan = sim.job("default", "orphaned").await.expect("the orphaned job keeps running");
    assert_eq!(orphan["Stop"], json!(false), "Orphan leaves the job running");
    assert_eq!(orphan["Status"], json!("running"));
    let orphan_writes = sim.log(Some("nomad"), 0).await;
    let deletes: Vec<_> =
        orphan_writes.requests.iter().filter(|r| r.method == "DELETE" && r.path == "/v1/job/orphaned").collect();
    assert!(deletes.is_empty(), "Orphan never deregisters: {deletes:?}");
    drover.assert_running();
}

/// A `spec.job` record whose job ID is `id`.
fn raw_job_record(id: &str) -> String {
    format!(
        "apiVersion: drover.io/v1alpha1\nkind: App\nmetadata: {{name: api, namespace: default}}\nspec:\n  job:\n    \
         ID: {id}\n    TaskGroups:\n      - Name: api\n        Count: 1\n        Tasks:\n          - Name: api\n            \
         Driver: docker\n            Config: {{image: \"nginx:1.27\"}}\n  strategy: {{minHealthyTime: 1s, healthyDeadline: 1m}}\n"
    )
}

#[tokio::test]
async fn job_id_change_should_create_the_new_job_then_stop_the_old_one() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let mut drover = DroverProcess::start(&sim, &[]).await;

    sim.put_record("default", "api", raw_job_record("api-v1")).await;
    sim.wait_for_status("default", "api", "Healthy as api-v1", |s| {
        s.phase == Phase::Healthy && s.job_id.as_deref() == Some("api-v1")
    })
    .await;

    let generation = sim.put_record("default", "api", raw_job_record("api-v2")).await;
    let status = sim
        .wait_for_status("default", "api", "Healthy as api-v2 with the old job retired", |s| {
            s.phase == Phase::Healthy
                && s.observed_generation == generation
                && s.job_id.as_deref() == Some("api-v2")
                && s.retiring_job_ids.is_empty()
        })
        .await;
    assert_eq!(status.job_id.as_deref(), Some("api-v2"));
    let new = sim.job("default", "api-v2").await.expect("Nomad runs the new job");
    assert_eq!(job_owner(&new), Some("drover/apps/default/api"));
    let old = sim.job("default", "api-v1").await.expect("the old job is stopped, not purged (deletionPolicy Stop)");
    assert_eq!(old["Stop"], json!(true), "the old job is stopped once the new one is healthy");
    drover.assert_running();
}
