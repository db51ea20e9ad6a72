//! The commands for people, run as processes against a simulator and a running controller: `apply -f`,
//! `get -o json`, `describe -o json`, `delete`, and `validate`. Assertions on exit codes and JSON, never on text.

use std::path::{Path, PathBuf};
use std::process::Output;

use drover::status::{AppStatus, Phase};
use drover_e2e::{DEADLINE, DroverProcess, SimProcess, TIME_SCALE, binary, template_record, wait_until};
use serde_json::Value;

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("stdout is JSON ({e}): {}\nstderr: {}", String::from_utf8_lossy(&out.stdout), stderr(out))
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A file in a directory of this test run's own (tests run in parallel).
fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("drover-e2e-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write temp file");
    path
}

fn workspace_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

#[tokio::test]
async fn cli_should_apply_get_describe_and_delete_against_a_running_controller() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let mut drover = DroverProcess::start(&sim, &[]).await;
    let file = temp_file("web.yaml", &template_record("web", "nginx:1.27", "deletionPolicy: Purge"));
    let file = file.to_str().expect("utf-8 path");

    let out = sim.cli(&["apply", "-f", file], &[]).await;
    assert!(out.status.success(), "apply exits 0: {}", stderr(&out));
    sim.wait_for_status("default", "web", "Healthy", |s| s.phase == Phase::Healthy).await;

    let out = sim.cli(&["get", "-o", "json"], &[]).await;
    assert!(out.status.success(), "get exits 0: {}", stderr(&out));
    let rows = stdout_json(&out);
    let rows = rows.as_array().expect("get -o json prints an array");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0]["namespace"].as_str(), rows[0]["name"].as_str()), (Some("default"), Some("web")));
    let status: AppStatus = serde_json::from_value(rows[0]["status"].clone()).expect("an AppStatus");
    assert_eq!(status.phase, Phase::Healthy);
    assert_eq!(rows[0]["generation"].as_u64(), Some(status.observed_generation));

    let out = sim.cli(&["describe", "default/web", "-o", "json"], &[]).await;
    assert!(out.status.success(), "describe exits 0: {}", stderr(&out));
    let row = stdout_json(&out);
    let status: AppStatus = serde_json::from_value(row["status"].clone()).expect("an AppStatus");
    assert_eq!(status.job_id.as_deref(), Some("web"));
    assert!(!status.history.is_empty(), "describe shows the history: {status:?}");

    let out = sim.cli(&["describe", "default/nothing", "-o", "json"], &[]).await;
    assert!(!out.status.success(), "describe of an unknown app exits non-zero");

    let out = sim.cli(&["delete", "default/web"], &[]).await;
    assert!(out.status.success(), "delete exits 0: {}", stderr(&out));
    wait_until(DEADLINE, "job web purged and its status deleted", || async {
        let job = sim.job("default", "web").await;
        let status = sim.status("default", "web").await;
        if job.is_none() && status.is_none() { Ok(()) } else { Err((job.is_some(), status.map(|s| s.phase))) }
    })
    .await;
    let out = sim.cli(&["get", "-o", "json"], &[]).await;
    assert!(out.status.success(), "get exits 0: {}", stderr(&out));
    assert_eq!(stdout_json(&out), serde_json::json!([]), "no app left");
    drover.assert_running();
}

/// Runs `drover validate -f <workspace file>`; returns the exit success and stdout + stderr.
async fn validate(relative: &str) -> (bool, String) {
    let file = workspace_file(relative);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(binary("drover")).args(["validate", "-f"]).arg(&file).output().expect("run")
    })
    .await
    .expect("the CLI thread");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out)))
}

#[tokio::test]
async fn validate_should_exit_non_zero_for_a_broken_record_and_zero_for_a_valid_one() {
    let (ok, text) = validate("manifests/examples/broken.yaml").await;
    assert!(!ok, "validate of broken.yaml exits non-zero: {text}");
    assert!(text.contains("spec.template.imagee"), "validate names the broken field: {text}");
    let (ok, text) = validate("manifests/examples/web.yaml").await;
    assert!(ok, "validate of web.yaml exits 0: {text}");
}

#[tokio::test]
async fn validate_should_name_every_broken_field_as_the_status_does() {
    let (ok, text) = validate("manifests/examples/broken.yaml").await;
    assert!(!ok, "validate of broken.yaml exits non-zero: {text}");
    for field in ["metadata.name", "spec.template.imagee", "spec.template.count", "spec.template.service.port"] {
        assert!(text.contains(field), "validate names {field}: {text}");
    }
}

/// `drover wait`: exit 0 when the generation is Healthy, 1 when its rollout fails, 2 on timeout; it prints the phase
/// changes it saw.
#[tokio::test]
async fn wait_should_exit_with_the_rollouts_outcome() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let drover = DroverProcess::start(&sim, &[]).await;

    sim.put_record("default", "good", template_record("good", "nginx:1.27", "")).await;
    let out = sim.cli(&["wait", "default/good", "--timeout", "30s"], &[]).await;
    assert_eq!(out.status.code(), Some(0), "Healthy: {}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Healthy"));

    // Allocations that never turn healthy: Nomad fails the deployment at its progress deadline.
    sim.set_health("default", "bad", None, "unhealthy").await;
    // Continues the template's `strategy:` block (healthyDeadline 1m): Nomad fails the rollout after 2 simulated
    // minutes instead of its default 10.
    let fast_fail = "  progressDeadline: 2m";
    sim.put_record("default", "bad", template_record("bad", "nginx:1.27", fast_fail)).await;
    let out = sim.cli(&["wait", "bad", "--timeout", "30s"], &[]).await;
    assert_eq!(out.status.code(), Some(1), "Degraded: {}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Degraded"), "{}", String::from_utf8_lossy(&out.stdout));

    // Allocations whose health never comes: still Progressing when the timeout passes.
    sim.set_health("default", "slow", None, "never").await;
    sim.put_record("default", "slow", template_record("slow", "nginx:1.27", "")).await;
    let out = sim.cli(&["wait", "slow", "--timeout", "1s"], &[]).await;
    assert_eq!(out.status.code(), Some(2), "timeout: {}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));

    let out = sim.cli(&["wait", "nothing", "--timeout", "1s"], &[]).await;
    assert_eq!(out.status.code(), Some(1), "an app that does not exist is an error");
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
    let _ = drover;
}
