//! The invariants of issue #7, at scale and under faults, against real processes: every rollout ends (each app
//! reaches a verdict: Healthy, Degraded or Failed), the last write wins, and no job Drover does not own is touched.
//! 150 apps (good, failing and slow rollouts, and conflicts with unowned jobs) while Nomad answers with bursts of
//! 500s, dropped connections, cut event streams and Consul errors.

use std::collections::BTreeMap;

use drover::status::{AppStatus, Phase};
use drover_e2e::{
    DEADLINE, DroverProcess, SimProcess, TIME_SCALE, job_image, job_modify_index, job_owner, template_record,
    wait_until,
};
use drover_sim::Server;
use serde_json::json;

const APPS: usize = 150;

/// What each app should end as.
fn expected(i: usize) -> Phase {
    match i % 5 {
        0..=2 => Phase::Healthy,
        3 => Phase::Degraded,
        _ => Phase::Failed,
    }
}

fn name(i: usize) -> String {
    format!("app-{i:03}")
}

/// A job no record owns (no Drover mark), as a person registers it.
fn unowned(id: &str) -> serde_json::Value {
    json!({"ID": id, "Name": id, "Type": "service", "Datacenters": ["dc1"], "TaskGroups": [{"Name": "g", "Count": 1,
        "Tasks": [{"Name": "t", "Driver": "docker", "Config": {"image": "someone:else"}}]}]})
}

#[tokio::test]
async fn every_rollout_should_end_the_last_write_should_win_and_no_unowned_job_be_touched() {
    let sim = SimProcess::start(TIME_SCALE).await;
    // Jobs Drover must never touch: some collide with records (i % 5 == 4), some are unrelated.
    let mut foreign: BTreeMap<String, u64> = BTreeMap::new();
    let colliding = (0..APPS).filter(|i| expected(*i) == Phase::Failed).map(name);
    for id in colliding.chain((0..5).map(|i| format!("someone-{i}"))) {
        let reply = sim.register_job(&unowned(&id)).await.unwrap_or_else(|e| panic!("register {id}: {e:?}"));
        foreign.insert(id, reply["JobModifyIndex"].as_u64().expect("JobModifyIndex"));
    }
    let mut drover = DroverProcess::start(&sim, &["--workers", "8"]).await;
    // Continues the template's `strategy:` block (healthyDeadline 1m): Nomad fails the rollout after 2 simulated
    // minutes instead of its default 10.
    let fast_fail = "  progressDeadline: 2m";
    for i in (0..APPS).filter(|i| expected(*i) == Phase::Degraded) {
        sim.set_health("default", &name(i), None, "unhealthy").await;
    }

    // Faults while the records arrive: 500 bursts on registers, dropped connections, a cut event stream, Consul
    // write errors.
    sim.add_fault(json!({"server": "nomad", "method": "POST", "path": "/v1/job/*",
        "action": {"type": "error", "status": 500, "body": "No cluster leader"}, "count": 40}))
        .await;
    sim.add_fault(json!({"server": "nomad", "path": "/v1/job/*", "action": {"type": "drop"}, "count": 20})).await;
    sim.add_fault(json!({"server": "consul", "path": "/v1/txn",
        "action": {"type": "error", "status": 500, "body": "rpc error: No cluster leader"}, "count": 30}))
        .await;
    let mut generations = BTreeMap::new();
    for i in 0..APPS {
        let extra = if expected(i) == Phase::Degraded { fast_fail } else { "" };
        let generation = sim.put_record("default", &name(i), template_record(&name(i), "nginx:1.27", extra)).await;
        generations.insert(name(i), generation);
        if i == APPS / 2 {
            sim.cut_event_streams(None).await;
        }
    }
    // The last write wins: a third of the healthy apps are rewritten twice in a row, racing their first rollout.
    let rewritten: Vec<usize> = (0..APPS).filter(|i| expected(*i) == Phase::Healthy && i % 3 == 0).collect();
    for i in &rewritten {
        sim.put_record("default", &name(*i), template_record(&name(*i), "nginx:1.28", "")).await;
        let last = sim.put_record("default", &name(*i), template_record(&name(*i), "nginx:1.29", "")).await;
        generations.insert(name(*i), last);
    }

    // Every app reaches its verdict at its last generation.
    let _: BTreeMap<String, AppStatus> = wait_until(DEADLINE * 4, "every app at its verdict", || async {
        let mut done = BTreeMap::new();
        let mut pending = Vec::new();
        for i in 0..APPS {
            let status = sim.status("default", &name(i)).await;
            match status {
                Some(s) if s.observed_generation == generations[&name(i)] && s.phase == expected(i) => {
                    done.insert(name(i), s);
                }
                other => pending.push((name(i), other.map(|s| (s.observed_generation, s.phase, s.last_error)))),
            }
        }
        if pending.is_empty() { Ok(done) } else { Err(pending.into_iter().take(5).collect::<Vec<_>>()) }
    })
    .await;
    drover.assert_running();

    for i in &rewritten {
        let job = sim.job("default", &name(*i)).await.expect("the job");
        assert_eq!(job_image(&job), Some("nginx:1.29"), "{}: the last write wins", name(*i));
    }
    for (id, index) in &foreign {
        let job = sim.job("default", id).await.unwrap_or_else(|| panic!("unowned job {id} still exists"));
        assert_eq!(job_modify_index(&job), *index, "unowned job {id} was never written");
        assert_eq!(job_owner(&job), None);
        assert_eq!(job["Stop"], json!(false));
    }
    // The faults really happened (the run could not have passed without meeting them).
    let all = sim.log(None, 0).await;
    let count =
        |server: Server, status: u16| all.requests.iter().filter(|r| r.server == server && r.status == status).count();
    assert!(count(Server::Nomad, 500) >= 40, "Nomad 500s answered: {}", count(Server::Nomad, 500));
    assert!(count(Server::Nomad, 0) >= 20, "Nomad connections dropped: {}", count(Server::Nomad, 0));
    assert!(count(Server::Consul, 500) >= 30, "Consul 500s answered: {}", count(Server::Consul, 500));
    let writes = sim.log(Some("nomad"), 0).await;
    let touched: Vec<_> = writes
        .requests
        .iter()
        .filter(|r| r.method != "GET" && foreign.keys().any(|id| r.path == format!("/v1/job/{id}")))
        .filter(|r| r.status != 0)
        .collect();
    assert!(touched.is_empty(), "writes to unowned jobs: {touched:?}");
}
