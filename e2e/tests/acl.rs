//! Least privilege (issue #9): ACLs on in both servers, with exactly the shipped policies of `manifests/acl/`
//! (translated by `drover_e2e::acl`, so these tests follow the files). With them the core scenario works (create,
//! update, drift revert, delete); with any one rule removed, Drover reports what it was denied
//! (`drover_permission_denied_total`, and the app's status when it can still write it), keeps running, and never
//! takes a denial for a deletion: the job it runs stays.

use std::path::PathBuf;

use drover::status::Phase;
use drover_e2e::acl::{Rule, consul_rules, consul_sim_rules, nomad_rules, nomad_sim_namespaces, read_policy};
use drover_e2e::{
    DEADLINE, DroverProcess, Ready, SimProcess, SimTls, TIME_SCALE, job_image, job_modify_index, metric_sum,
    template_record, wait_until,
};

const ROOT: &str = "root-management-token";

/// A simulator with ACLs on, and Drover with the shipped policies' tokens: Consul's through `CONSUL_HTTP_TOKEN`
/// (its policy is replaced in place to remove a rule), Nomad's through `--nomad-token-file` (a token without a
/// capability is a new token, rotated in).
struct Cluster {
    sim: SimProcess,
    drover: DroverProcess,
    nomad_file: PathBuf,
    nomad_accessor: String,
    dir: PathBuf,
}

impl Cluster {
    async fn start() -> Cluster {
        let sim = SimProcess::start_with_acls(TIME_SCALE, ROOT).await;
        let consul = consul_rules(&read_policy("consul-drover.hcl"));
        let nomad = nomad_rules(&read_policy("nomad-drover.hcl"));
        sim.consul_acl_policy("drover", consul_sim_rules(&consul)).await;
        let (_, consul_secret) = sim.consul_acl_token(&["drover"]).await;
        let (nomad_accessor, nomad_secret) = sim.nomad_acl_token("drover", nomad_sim_namespaces(&nomad)).await;
        let dir = SimTls::fresh_dir("acl");
        let nomad_file = dir.join("nomad.token");
        std::fs::write(&nomad_file, &nomad_secret).expect("write the Nomad token file");
        let nomad_path = nomad_file.to_string_lossy().into_owned();
        let drover = DroverProcess::start_with(
            &sim,
            &["--nomad-token-file", &nomad_path],
            &[("CONSUL_HTTP_TOKEN", &consul_secret)],
            None,
        )
        .await;
        Cluster { sim, drover, nomad_file, nomad_accessor, dir }
    }

    /// Takes `rule` away from Drover's token.
    async fn remove(&mut self, rule: &Rule) {
        match rule {
            Rule::Consul { .. } => {
                let rules: Vec<Rule> =
                    consul_rules(&read_policy("consul-drover.hcl")).into_iter().filter(|r| r != rule).collect();
                self.sim.consul_acl_policy("drover", consul_sim_rules(&rules)).await;
            }
            Rule::Nomad { .. } => {
                let rules: Vec<Rule> =
                    nomad_rules(&read_policy("nomad-drover.hcl")).into_iter().filter(|r| r != rule).collect();
                let (accessor, secret) = self.sim.nomad_acl_token("drover-less", nomad_sim_namespaces(&rules)).await;
                let next = self.nomad_file.with_extension("next");
                std::fs::write(&next, &secret).expect("write the new Nomad token");
                std::fs::rename(&next, &self.nomad_file).expect("rotate the Nomad token file");
                self.sim.nomad_revoke_token(&self.nomad_accessor).await;
                self.nomad_accessor = accessor;
            }
        }
    }

    async fn denials(&self) -> u64 {
        metric_sum(&self.drover.get_text("/metrics").await, "drover_permission_denied_total")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether `rule` guards the leader lock (its key or its session): exercised only with leader election on, which
/// needs a simulator on real time (see [`DroverProcess::start`]), so these rules have a test of their own.
fn leader_rule(rule: &Rule) -> bool {
    matches!(rule, Rule::Consul { kind, name, .. } if kind.starts_with("session") || name.ends_with("/leader"))
}

/// Whether `rule` is read by the controls watch, a blocking query that only answers when a control is written.
fn control_rule(rule: &Rule) -> bool {
    matches!(rule, Rule::Consul { name, .. } if name.ends_with("/control/"))
}

/// Whether `rule` is needed by a call a reconcile makes for one app (so its denial lands in that app's status).
fn per_app_call(rule: &Rule) -> bool {
    match rule {
        Rule::Consul { name, .. } => name.ends_with("/apps/"),
        Rule::Nomad { capability, .. } => capability == "submit-job",
    }
}

#[test]
fn shipped_policies_should_translate_into_rules() {
    let consul = consul_rules(&read_policy("consul-drover.hcl"));
    let nomad = nomad_rules(&read_policy("nomad-drover.hcl"));
    assert!(!consul.is_empty() && !nomad.is_empty(), "{consul:?} {nomad:?}");
    // Every rule is commented with the call that needs it: a comment right above each block or capability.
    assert!(!consul_rules(&read_policy("consul-operator.hcl")).is_empty());
    for file in ["consul-drover.hcl", "nomad-drover.hcl", "consul-operator.hcl"] {
        let text = read_policy(file);
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for (i, line) in lines.iter().enumerate() {
            let is_rule = line.ends_with('{') && !line.starts_with("namespace") || line.starts_with('"');
            if is_rule {
                let above = i.checked_sub(1).map(|j| lines[j]).unwrap_or("");
                assert!(above.starts_with('#'), "{file}: {line:?} has no comment naming its call");
            }
        }
    }
}

#[tokio::test]
async fn shipped_policies_should_run_the_core_scenario() {
    let c = Cluster::start().await;
    let sim = &c.sim;
    // Create.
    let first = sim.put_record("default", "web", template_record("web", "nginx:1.27", "driftPolicy: Revert")).await;
    sim.wait_for_status("default", "web", "Healthy (create)", |s| {
        s.phase == Phase::Healthy && s.observed_generation == first
    })
    .await;
    // Update.
    let second = sim.put_record("default", "web", template_record("web", "nginx:1.28", "driftPolicy: Revert")).await;
    sim.wait_for_status("default", "web", "Healthy (update)", |s| {
        s.phase == Phase::Healthy && s.observed_generation == second
    })
    .await;
    // Drift, reverted: a person (management token) edits the job; Drover registers the record's spec again.
    let mut job = sim.job("default", "web").await.expect("job web");
    job["TaskGroups"][0]["Tasks"][0]["Config"]["image"] = "hand:edit".into();
    let reply = sim.register_job(&job).await.expect("the hand edit");
    let hand = reply["JobModifyIndex"].as_u64().expect("a JobModifyIndex");
    wait_until(DEADLINE, "the hand edit reverted", || async {
        let job = sim.job("default", "web").await.expect("job web");
        if job_image(&job) == Some("nginx:1.28") && job_modify_index(&job) > hand {
            Ok(())
        } else {
            Err(job_image(&job).map(str::to_owned))
        }
    })
    .await;
    // Delete: deletionPolicy Stop stops the job and removes the status.
    sim.delete_record("default", "web").await;
    wait_until(DEADLINE, "job web stopped and its status deleted", || async {
        let stopped = sim.job("default", "web").await.is_some_and(|j| j["Stop"] == true);
        let status = sim.status("default", "web").await;
        if stopped && status.is_none() { Ok(()) } else { Err((stopped, status.map(|s| s.phase))) }
    })
    .await;
    assert_eq!(c.denials().await, 0, "the shipped policies are enough for everything Drover did");
}

/// A canary of one replica held at a manual gate, as `template_record` writes `web` otherwise.
fn gated_canary(image: &str) -> String {
    let plain = template_record("web", image, "");
    let mut yaml = plain.split("  strategy:\n").next().unwrap_or(&plain).to_string();
    yaml.push_str(
        "  strategy:\n    type: Canary\n    minHealthyTime: 1s\n    healthyDeadline: 1m\n    canary:\n      \
         replicas: 1\n      steps:\n        - pause: {}\n",
    );
    yaml
}

#[tokio::test]
async fn shipped_policies_should_run_a_canary_rollout_promoted_by_an_operator() {
    let c = Cluster::start().await;
    let sim = &c.sim;
    // The person's token: exactly consul-operator.hcl.
    sim.consul_acl_policy("operator", consul_sim_rules(&consul_rules(&read_policy("consul-operator.hcl")))).await;
    let (_, operator) = sim.consul_acl_token(&["operator"]).await;
    let first = sim.put_record("default", "web", gated_canary("nginx:1")).await;
    sim.wait_for_status("default", "web", "Healthy (first version)", |s| {
        s.phase == Phase::Healthy && s.observed_generation == first
    })
    .await;
    let second = sim.put_record("default", "web", gated_canary("nginx:2")).await;
    sim.wait_for_status("default", "web", "Paused at the manual gate", |s| {
        s.phase == Phase::Paused && s.observed_generation == second
    })
    .await;
    let out = sim.cli(&["promote", "web"], &[("CONSUL_HTTP_TOKEN", &operator)]).await;
    assert!(out.status.success(), "drover promote with the operator policy: {}", String::from_utf8_lossy(&out.stderr));
    sim.wait_for_status("default", "web", "Healthy after the promotion", |s| {
        s.phase == Phase::Healthy && s.observed_generation == second
    })
    .await;
    let job = sim.job("default", "web").await.expect("job web");
    assert_eq!(job_image(&job), Some("nginx:2"), "the promoted version runs");
    assert_eq!(c.denials().await, 0, "the shipped policies are enough for a canary rollout and its promotion");
}

#[tokio::test]
async fn each_removed_rule_should_be_reported_and_never_taken_for_a_deletion() {
    let rules: Vec<Rule> = consul_rules(&read_policy("consul-drover.hcl"))
        .into_iter()
        .chain(nomad_rules(&read_policy("nomad-drover.hcl")))
        .filter(|r| !leader_rule(r))
        .collect();
    for rule in rules {
        let mut c = Cluster::start().await;
        let first = c.sim.put_record("default", "web", template_record("web", "nginx:1.27", "")).await;
        c.sim
            .wait_for_status("default", "web", "Healthy with every rule", |s| {
                s.phase == Phase::Healthy && s.observed_generation == first
            })
            .await;
        let before = c.denials().await;
        c.remove(&rule).await;
        // Updates Drover needs every rule for (a read, a plan or register, a status write). Two of them: a Consul
        // blocking query resolves its token's rights when it starts (as Consul's RPCs do), so the record watch
        // parked before the policy changed answers the first write with the old rights.
        c.sim.put_record("default", "web", template_record("web", "nginx:1.28", "")).await;
        let seen = c.drover.reconcile_total().await;
        c.drover.wait_reconciles(seen, 2).await;
        c.sim.put_record("default", "web", template_record("web", "nginx:1.29", "")).await;
        if control_rule(&rule) {
            // The controls watch only asks again when a control changes: a person's `drover pause` (with a stale
            // generation, so it would change nothing), twice for the same reason as the records above. Consul then
            // filters it out of the listing, and that filtering is what Drover can see and count. Only the first
            // write, answered with the old rights, wakes a reconcile (the proof the watch asked again); the second is
            // hidden, and the denial count below is its proof.
            for (i, at) in ["2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z"].into_iter().enumerate() {
                let control =
                    serde_json::json!({"action": "pause", "generation": 1, "requestedAt": at, "by": "acl-test"});
                let seen = c.drover.reconcile_total().await;
                c.sim.kv_put("drover/control/default/web", control.to_string()).await;
                if i == 0 {
                    c.drover.wait_reconciles(seen, 1).await;
                }
            }
        }
        let what = format!("a denial counted after removing {rule}");
        let denied = wait_until(DEADLINE, &what, || async {
            let now = c.denials().await;
            if now > before { Ok(now) } else { Err(now) }
        })
        .await;
        // A denial in the app's own calls (reading its record, writing its job) is in its status too; one in the
        // shared watches (listing jobs, the event stream) or in the status write itself can only be counted and
        // logged.
        if per_app_call(&rule) {
            let what = format!("the status to report the denial after removing {rule}");
            wait_until(DEADLINE, &what, || async {
                let status = c.sim.status("default", "web").await;
                let shown = serde_json::to_string(&status).unwrap_or_default().to_lowercase();
                if shown.contains("permission denied") { Ok(()) } else { Err(shown) }
            })
            .await;
        }
        // Some more reconciles with the rule missing: still running, and the job was never stopped or deleted.
        let seen = c.drover.reconcile_total().await;
        c.drover.wait_reconciles(seen, 3).await;
        c.drover.assert_running();
        let job = c.sim.job("default", "web").await.unwrap_or_else(|| panic!("{rule}: job web was deleted"));
        assert_ne!(job["Stop"], true, "{rule}: a denial was taken for a deletion");
        let deregisters = c.sim.nomad_requests(0, "DELETE", "/v1/job/web").await;
        assert!(deregisters.is_empty(), "{rule}: Drover tried to deregister: {deregisters:?}");
        eprintln!("{rule}: {denied} denials counted, job kept");
    }
}

#[tokio::test]
async fn a_missing_leader_rule_should_leave_a_standby_that_reports_it_and_writes_nothing() {
    let rules: Vec<Rule> = consul_rules(&read_policy("consul-drover.hcl")).into_iter().filter(leader_rule).collect();
    assert_eq!(rules.len(), 2, "the lock key and the session rules: {rules:?}");
    for rule in rules {
        // Real time: the session's TTL must hold against Drover's renewals (see `DroverProcess::start`).
        let sim = SimProcess::start_with_acls(1.0, ROOT).await;
        let consul: Vec<Rule> =
            consul_rules(&read_policy("consul-drover.hcl")).into_iter().filter(|r| r != &rule).collect();
        sim.consul_acl_policy("drover", consul_sim_rules(&consul)).await;
        let (_, consul_secret) = sim.consul_acl_token(&["drover"]).await;
        let nomad = nomad_rules(&read_policy("nomad-drover.hcl"));
        let (_, nomad_secret) = sim.nomad_acl_token("drover", nomad_sim_namespaces(&nomad)).await;
        let dir = SimTls::fresh_dir("acl-leader");
        let nomad_file = dir.join("nomad.token");
        std::fs::write(&nomad_file, &nomad_secret).expect("write the Nomad token file");
        let nomad_path = nomad_file.to_string_lossy().into_owned();
        let args =
            ["--nomad-token-file", &nomad_path, "--leader-elect", "true", "--lock-ttl", "10s", "--lock-delay", "1s"];
        let mut drover = DroverProcess::start_replica_with(&sim, &args, &[("CONSUL_HTTP_TOKEN", &consul_secret)]).await;
        sim.put_record("default", "web", template_record("web", "nginx:1.27", "")).await;
        let what = format!("a denial counted with {rule} missing");
        let denied = wait_until(DEADLINE, &what, || async {
            let now = metric_sum(&drover.get_text("/metrics").await, "drover_permission_denied_total");
            if now > 0 { Ok(now) } else { Err(now) }
        })
        .await;
        // It keeps trying (more denials), stays a standby and never writes what a leader writes.
        wait_until(DEADLINE, &format!("a retried denial with {rule} missing"), || async {
            let now = metric_sum(&drover.get_text("/metrics").await, "drover_permission_denied_total");
            if now > denied { Ok(()) } else { Err(now) }
        })
        .await;
        drover.assert_running();
        assert_eq!(drover.readyz().await, Some(Ready::Standby), "{rule}: a replica without the lock is a standby");
        let writes: Vec<_> = sim
            .log(None, 0)
            .await
            .requests
            .into_iter()
            .filter(|r| r.is_write() && !r.path.starts_with("/v1/session/") && r.path != "/v1/kv/drover/leader")
            .filter(|r| r.user_agent == drover.user_agent())
            .collect();
        assert!(writes.is_empty(), "{rule}: a replica that never held the lock wrote: {writes:#?}");
        assert!(sim.job("default", "web").await.is_none(), "{rule}: job web registered without the lock");
        let _ = std::fs::remove_dir_all(&dir);
        eprintln!("{rule}: {denied}+ denials counted, standby, no write");
    }
}
