//! ACL tokens from files (issue #9): `CONSUL_HTTP_TOKEN_FILE` and `--nomad-token-file` are re-read when they change,
//! so both tokens can be rotated, and the old ones revoked, without restarting Drover; no token ever shows in its
//! logs, metrics or `/api/v1/apps`.

use std::path::Path;

use drover::status::Phase;
use drover_e2e::{DroverProcess, SimProcess, SimTls, TIME_SCALE, job_image, template_record};
use serde_json::json;

const ROOT: &str = "root-management-token";

/// Replaces a token file the way secret managers do: write a new file, rename it over the old one.
fn rotate(path: &Path, token: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, format!("{token}\n")).expect("write the new token file");
    std::fs::rename(&next, path).expect("rename the new token file into place");
}

#[tokio::test]
async fn token_files_should_be_rotated_and_old_tokens_revoked_without_a_restart() {
    let sim = SimProcess::start_with_acls(TIME_SCALE, ROOT).await;
    sim.consul_acl_policy("drover", json!({"key_prefix": {"drover/": "write"}, "session_prefix": {"": "write"}})).await;
    let nomad_caps = json!({"*": ["list-jobs", "read-job", "submit-job", "scale-job"]});
    let (consul_old_id, consul_old) = sim.consul_acl_token(&["drover"]).await;
    let (nomad_old_id, nomad_old) = sim.nomad_acl_token("drover-old", nomad_caps.clone()).await;

    let dir = SimTls::fresh_dir("tokens");
    let (consul_file, nomad_file) = (dir.join("consul.token"), dir.join("nomad.token"));
    rotate(&consul_file, &consul_old);
    rotate(&nomad_file, &nomad_old);
    let consul_path = consul_file.to_string_lossy().into_owned();
    let nomad_path = nomad_file.to_string_lossy().into_owned();
    let mut drover = DroverProcess::start_with(
        &sim,
        &["--nomad-token-file", &nomad_path],
        &[("CONSUL_HTTP_TOKEN_FILE", &consul_path)],
        None,
    )
    .await;

    let first = sim.put_record("default", "web", template_record("web", "nginx:1.27", "")).await;
    sim.wait_for_status("default", "web", "Healthy with the first tokens", |s| {
        s.phase == Phase::Healthy && s.observed_generation == first
    })
    .await;

    // Rotate both files, then revoke the old tokens: from now on only the new ones work.
    let (_, consul_new) = sim.consul_acl_token(&["drover"]).await;
    let (_, nomad_new) = sim.nomad_acl_token("drover-new", nomad_caps).await;
    rotate(&consul_file, &consul_new);
    rotate(&nomad_file, &nomad_new);
    sim.consul_revoke_token(&consul_old_id).await;
    sim.nomad_revoke_token(&nomad_old_id).await;
    let revoked_at = sim.log(None, 0).await.last_seq;

    let second = sim.put_record("default", "web", template_record("web", "nginx:1.28", "")).await;
    sim.wait_for_status("default", "web", "Healthy at the new generation with the rotated tokens", |s| {
        s.phase == Phase::Healthy && s.observed_generation == second
    })
    .await;
    let job = sim.job("default", "web").await.expect("job web");
    assert_eq!(job_image(&job), Some("nginx:1.28"), "the update was registered with the new Nomad token");
    // Drover switched before its next request: nothing it sent after the revocation was refused. Only a blocking
    // query parked with the old token before the revocation may be answered 403 (a server may re-check the token
    // when the query wakes); Drover then asks again with the new one.
    let log = sim.log(None, revoked_at).await;
    let refused: Vec<_> =
        log.requests.iter().filter(|r| r.status == 403 && !(r.method == "GET" && r.query.contains("index="))).collect();
    assert!(refused.is_empty(), "requests refused after the rotation: {refused:#?}");
    drover.assert_running();

    // No token in what Drover shows or logs.
    let shown = format!(
        "{}{}{}",
        drover.get_text("/metrics").await,
        drover.get_text("/api/v1/apps").await,
        std::fs::read_to_string(&drover.log).unwrap_or_default()
    );
    for secret in [&consul_old, &nomad_old, &consul_new, &nomad_new] {
        assert!(!shown.contains(secret.as_str()), "a token leaked into metrics, /api/v1/apps or the log");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
