//! Destructive acts need proof, and ownership is per installation (issue #7, 2.2 and 2.3): against real `drover-sim`
//! and `drover run` processes.

use drover::status::{ConditionType, Phase, Reason};
use drover_e2e::{
    DEADLINE, DroverProcess, SimProcess, TIME_SCALE, job_modify_index, job_owner, template_record, wait_until,
};
use serde_json::{Value, json};

const ROOT: &str = "root-token";

/// Creates a Consul policy and a token with it (fixed secret), through the simulator's control API.
async fn consul_token(sim: &SimProcess, name: &str, rules: Value) -> String {
    let http = drover_e2e::http_client_with_token(ROOT);
    let policy = json!({"Name": name, "Rules": rules});
    let resp = http.post(format!("{}/_sim/consul/acl/policy", sim.consul_url)).json(&policy).send().await;
    assert!(resp.is_ok_and(|r| r.status().is_success()), "create policy {name}");
    let secret = format!("{name}-secret");
    let token = json!({"Policies": [name], "SecretID": secret});
    let resp = http.post(format!("{}/_sim/consul/acl/token", sim.consul_url)).json(&token).send().await;
    assert!(resp.is_ok_and(|r| r.status().is_success()), "create token {name}");
    secret
}

/// Regression (issue #7, 2.2): after a restart, a status whose record the token cannot read was taken for a deleted
/// record and its job was stopped.
#[tokio::test]
async fn a_record_drover_cannot_read_should_never_stop_its_job() {
    let sim = SimProcess::start_with_acls(TIME_SCALE, ROOT).await;
    let full = consul_token(&sim, "drover", json!({"key_prefix": {"drover/": "write"}})).await;
    let drover = DroverProcess::start(&sim, &["--consul-token", &full, "--nomad-token", ROOT]).await;
    for name in ["open", "secret"] {
        sim.put_record("default", name, template_record(name, "nginx:1.27", "")).await;
    }
    for name in ["open", "secret"] {
        sim.wait_for_status("default", name, "Healthy", |s| s.phase == Phase::Healthy).await;
    }
    let before = sim.job("default", "secret").await.expect("job secret");
    drop(drover);

    // Restart with a token that may not read one record (but may still write statuses).
    let limited = consul_token(
        &sim,
        "limited",
        json!({"key_prefix": {"drover/": "write"}, "key": {"drover/apps/default/secret": "deny"}}),
    )
    .await;
    let mut drover = DroverProcess::start(&sim, &["--consul-token", &limited, "--nomad-token", ROOT]).await;
    let status = sim
        .wait_for_status("default", "secret", "RecordUnreadable", |s| {
            s.condition(ConditionType::Ready).is_some_and(|c| c.reason == Reason::RecordUnreadable)
        })
        .await;
    let message = &status.condition(ConditionType::Ready).expect("Ready").message;
    assert!(message.contains("cannot read the record"), "{message}");
    // Several resyncs later the job still runs, untouched.
    let seen = drover.reconcile_total().await;
    drover.wait_reconciles(seen, 4).await;
    let after = sim.job("default", "secret").await.expect("job secret still exists");
    assert_eq!(after["Stop"], json!(false), "a denial is not a deletion");
    assert_eq!(job_modify_index(&after), job_modify_index(&before), "the job was not written");
    // The readable app is unaffected.
    assert_eq!(sim.status("default", "open").await.map(|s| s.phase), Some(Phase::Healthy));
    drover.assert_running();

    // Positive control: a record really deleted (404 with a token that may read it) stops its job.
    sim.delete_record("default", "open").await;
    wait_until(DEADLINE, "job open stopped after its record was deleted", || async {
        match sim.job("default", "open").await {
            Some(j) if j["Stop"] == json!(true) => Ok(()),
            other => Err(other.map(|j| j["Stop"].clone())),
        }
    })
    .await;
}

/// Regression (issue #7, 2.3): two installations (different `--prefix`) with an app of the same name never fight over
/// its job, and one never stops the other's.
#[tokio::test]
async fn two_installations_should_never_fight_over_a_job() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let mut a = DroverProcess::start(&sim, &["--prefix", "team-a"]).await;
    sim.kv_put("team-a/apps/default/web", template_record("web", "nginx:1.27", "")).await;
    wait_until(DEADLINE, "team-a's job web is registered", || async {
        match sim.job("default", "web").await {
            Some(j) if job_owner(&j) == Some("team-a/apps/default/web") => Ok(()),
            other => Err(other.map(|j| j["Meta"].clone())),
        }
    })
    .await;
    let mut b = DroverProcess::start(&sim, &["--prefix", "team-b"]).await;
    sim.kv_put("team-b/apps/default/web", template_record("web", "nginx:1.26", "")).await;
    let status = wait_until(DEADLINE, "team-b reports the conflict", || async {
        let (bytes, _) = sim.kv_get("team-b/status/default/web").await.ok_or(None)?;
        let s: drover::status::AppStatus = serde_json::from_slice(&bytes).map_err(|_| None)?;
        if s.phase == Phase::Failed { Ok(s) } else { Err(Some(s.phase)) }
    })
    .await;
    assert_eq!(status.condition(ConditionType::Conflict).map(|c| c.reason), Some(Reason::OwnedByAnotherApp));
    let job = sim.job("default", "web").await.expect("job web");
    let index = job_modify_index(&job);
    // Resyncs on both sides: nobody rewrites the job.
    for d in [&a, &b] {
        let seen = d.reconcile_total().await;
        d.wait_reconciles(seen, 3).await;
    }
    let job = sim.job("default", "web").await.expect("job web");
    assert_eq!(job_modify_index(&job), index, "no fight: {:?}", job["Meta"]);
    // Deleting team-b's record never stops team-a's job.
    sim.kv_delete("team-b/apps/default/web").await;
    wait_until(DEADLINE, "team-b forgets its app", || async {
        match sim.kv_get("team-b/status/default/web").await {
            None => Ok(()),
            Some(_) => Err("status still there"),
        }
    })
    .await;
    let job = sim.job("default", "web").await.expect("job web");
    assert_eq!(job["Stop"], json!(false));
    assert_eq!(job_owner(&job), Some("team-a/apps/default/web"));
    a.assert_running();
    b.assert_running();
}
