//! High availability (issue #9): two `drover run` replicas against one simulator. Only the leader writes; SIGTERM
//! hands the lock over in about a second; after `kill -9` the standby takes over within 2×TTL + lock-delay and
//! finishes the rollout in progress; a leader cut off from Consul stops writing before its session can expire; the
//! request log shows no write of the old leader after the new leader's first.
//!
//! The simulator runs at time scale 1 here: it keeps session TTLs on its own clock, and Drover renews on real time
//! (at the usual 0.02, a 10 s TTL would last 200 ms).

use std::time::Duration;

use drover::status::Phase;
use drover_e2e::{
    DEADLINE, DroverProcess, LoggedRequest, Ready, SimProcess, job_image, metric_sum, template_record, wait_until,
};
use serde_json::json;
use tokio::time::Instant;

/// Consul's minimum TTL (the simulator refuses less, as Consul does).
const TTL: Duration = Duration::from_secs(10);
/// A short lock-delay, to keep the `kill -9` test near 2×TTL.
const LOCK_DELAY: Duration = Duration::from_secs(1);

fn replica_args() -> Vec<&'static str> {
    vec!["--leader-elect", "true", "--lock-ttl", "10s", "--lock-delay", "1s"]
}

/// A write that changes what Drover manages — a Nomad job, a status, a record — as opposed to the lock's own
/// session and key writes, which a standby makes too.
fn app_write(r: &LoggedRequest) -> bool {
    r.is_write() && !r.path.starts_with("/v1/session/") && r.path != "/v1/kv/drover/leader"
}

/// Starts two replicas and returns them leader first.
async fn leader_and_standby(sim: &SimProcess) -> (DroverProcess, DroverProcess) {
    let first = DroverProcess::start_replica(sim, &replica_args()).await;
    wait_until(DEADLINE, "the first replica leads", || async {
        match first.readyz().await {
            Some(Ready::Leader) => Ok(()),
            other => Err(other),
        }
    })
    .await;
    let second = DroverProcess::start_replica(sim, &replica_args()).await;
    assert_eq!(second.readyz().await, Some(Ready::Standby), "a second replica is a standby");
    (first, second)
}

async fn leader_gauge(d: &DroverProcess) -> u64 {
    let text = reqwest::get(format!("{}/metrics", d.url)).await.expect("GET /metrics");
    metric_sum(&text.text().await.expect("metrics text"), "drover_leader")
}

/// Asserts that `old` made no app write after `new`'s first one, and that `new` made some; returns the number of
/// app writes of each.
async fn assert_no_write_after_handover(sim: &SimProcess, old: &str, new: &str) -> (usize, usize) {
    let log = sim.log(None, 0).await.requests;
    let first_new = log.iter().find(|r| r.user_agent == new && app_write(r)).map(|r| r.seq);
    let first_new = first_new.unwrap_or_else(|| panic!("the new leader ({new}) made no write"));
    let late: Vec<&LoggedRequest> =
        log.iter().filter(|r| r.user_agent == old && app_write(r) && r.seq > first_new).collect();
    assert!(late.is_empty(), "the old leader wrote after the new leader's first write (seq {first_new}): {late:#?}");
    let count = |ua: &str| log.iter().filter(|r| r.user_agent == ua && app_write(r)).count();
    (count(old), count(new))
}

#[tokio::test]
async fn sigterm_should_hand_over_within_two_seconds_and_the_new_leader_should_converge() {
    let sim = SimProcess::start(1.0).await;
    let (mut a, b) = leader_and_standby(&sim).await;
    assert_eq!((leader_gauge(&a).await, leader_gauge(&b).await), (1, 0), "drover_leader is 1 on the leader only");

    sim.put_record("default", "web", template_record("web", "nginx:1.27", "")).await;
    let first = sim.wait_for_status("default", "web", "Healthy", |s| s.phase == Phase::Healthy).await;
    let log = sim.log(None, 0).await.requests;
    let writes_of = |ua: &str| log.iter().filter(|r| r.user_agent == ua && app_write(r)).count();
    assert!(writes_of(&a.user_agent()) > 0, "the leader registered and wrote the status");
    assert_eq!(writes_of(&b.user_agent()), 0, "the standby wrote nothing");

    let stopped = Instant::now();
    a.sigterm();
    wait_until(DEADLINE, "the standby leads after the leader's SIGTERM", || async {
        match b.readyz().await {
            Some(Ready::Leader) => Ok(()),
            other => Err(other),
        }
    })
    .await;
    let handover = stopped.elapsed();
    eprintln!("hand-over after SIGTERM: {handover:?}");
    assert!(handover < Duration::from_secs(3), "SIGTERM hand-over took {handover:?} (target about 1 s)");
    assert!(a.wait_exit().await.success(), "the old leader exits cleanly");
    assert_eq!(leader_gauge(&b).await, 1);

    sim.put_record("default", "web", template_record("web", "nginx:1.28", "")).await;
    sim.wait_for_status("default", "web", "Healthy on the new spec", |s| {
        s.phase == Phase::Healthy && s.applied_hash.is_some() && s.applied_hash != first.applied_hash
    })
    .await;
    wait_until(DEADLINE, "the new leader registered nginx:1.28", || async {
        match sim.job("default", "web").await {
            Some(j) if job_image(&j) == Some("nginx:1.28") => Ok(()),
            other => Err(other.map(|j| j["TaskGroups"][0]["Tasks"][0]["Config"].clone())),
        }
    })
    .await;
    let (old, new) = assert_no_write_after_handover(&sim, &a.user_agent(), &b.user_agent()).await;
    assert!(old > 0 && new > 0, "both leaders wrote in turn: {old} then {new}");
}

#[tokio::test]
async fn kill_9_during_a_rollout_should_let_the_standby_finish_it() {
    let sim = SimProcess::start(1.0).await;
    let (mut a, b) = leader_and_standby(&sim).await;
    sim.put_record("default", "web", template_record("web", "nginx:1.27", "")).await;
    sim.wait_for_status("default", "web", "Healthy", |s| s.phase == Phase::Healthy).await;

    // Version 1's allocations turn healthy 15 s after placement: the rollout outlives the old leader.
    sim.set_health_delay("default", "web", 1, 15_000).await;
    sim.put_record("default", "web", template_record("web", "nginx:1.28", "")).await;
    let rolling = sim
        .wait_for_status("default", "web", "Progressing on the new spec", |s| {
            s.phase == Phase::Progressing && s.history.len() == 2
        })
        .await;
    let killed = Instant::now();
    a.kill9();

    wait_until(DEADLINE, "the standby leads after the leader's kill -9", || async {
        match b.readyz().await {
            Some(Ready::Leader) => Ok(()),
            other => Err(other),
        }
    })
    .await;
    let failover = killed.elapsed();
    eprintln!("fail-over after kill -9: {failover:?}");
    // The session dies 2×TTL after its last renew at the latest; then lock-delay, then one acquire retry.
    let bound = TTL * 2 + LOCK_DELAY * 2 + Duration::from_secs(1);
    assert!(failover <= bound, "kill -9 fail-over took {failover:?} (bound {bound:?})");
    assert!(failover >= TTL, "a fail-over faster than the TTL means the session did not hold the lock");

    let done = sim
        .wait_for_status("default", "web", "Healthy after the new leader took over", |s| {
            s.phase == Phase::Healthy && s.applied_hash == rolling.applied_hash
        })
        .await;
    assert_eq!(done.history.len(), 2, "the new leader did not register the spec again: {:#?}", done.history);
    let versions = sim.job_versions("default", "web").await;
    assert_eq!(versions.len(), 2, "exactly two job versions: the rollout was finished, not repeated");
    let (old, new) = assert_no_write_after_handover(&sim, &a.user_agent(), &b.user_agent()).await;
    assert!(old > 0 && new > 0, "both leaders wrote in turn: {old} then {new}");
}

#[tokio::test]
async fn a_leader_cut_off_from_consul_should_stop_writing_before_the_standby_leads() {
    let sim = SimProcess::start(1.0).await;
    let (a, b) = leader_and_standby(&sim).await;
    sim.put_record("default", "web", template_record("web", "nginx:1.27", "")).await;
    let first = sim.wait_for_status("default", "web", "Healthy", |s| s.phase == Phase::Healthy).await;

    // A partition between the leader and Consul only: it still reaches Nomad, which has no lock of its own.
    let cut = Instant::now();
    let pid = format!("(pid {})", a.pid());
    sim.add_fault(json!({"server": "consul", "path": "/v1/", "user_agent": pid, "action": {"type": "drop"}})).await;
    wait_until(DEADLINE, "the cut-off leader steps down", || async {
        match a.readyz().await {
            Some(Ready::Standby) => Ok(()),
            other => Err(other),
        }
    })
    .await;
    let stepped_down = cut.elapsed();
    // ¾ TTL after its last renew (at most TTL/2 before the cut), plus one poll.
    assert!(stepped_down <= TTL, "stepped down {stepped_down:?} after the cut (renew deadline 7.5 s)");
    assert_eq!(leader_gauge(&a).await, 0);
    wait_until(DEADLINE, "the standby leads once the old session expired", || async {
        match b.readyz().await {
            Some(Ready::Leader) => Ok(()),
            other => Err(other),
        }
    })
    .await;
    let led = cut.elapsed();
    eprintln!("cut-off leader stepped down after {stepped_down:?}; the standby led after {led:?}");
    assert!(led > stepped_down + Duration::from_secs(5), "the session outlived the step-down by TTL or more");

    sim.put_record("default", "web", template_record("web", "nginx:1.28", "")).await;
    sim.wait_for_status("default", "web", "Healthy on the new spec", |s| {
        s.phase == Phase::Healthy && s.applied_hash.is_some() && s.applied_hash != first.applied_hash
    })
    .await;
    let (old, new) = assert_no_write_after_handover(&sim, &a.user_agent(), &b.user_agent()).await;
    assert!(old > 0 && new > 0, "both leaders wrote in turn: {old} then {new}");

    // Healed, the old leader stays a standby: the lock is held.
    sim.clear_faults().await;
    let since = b.reconcile_total().await;
    b.wait_reconciles(since, 3).await;
    assert_eq!(a.readyz().await, Some(Ready::Standby), "the healed replica does not lead while b holds the lock");
    assert_eq!(b.readyz().await, Some(Ready::Leader));
}
