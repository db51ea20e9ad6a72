//! Contract tests for B10/B13/B14: health of allocations updated in place (a scale, or an update-block-only
//! change) under each `/_sim/nomad/health` mode, on the sim clock.
//!
//! What real Nomad does (hashicorp/nomad, read for this file):
//! - `scheduler/util.go` `tasksUpdated` compares tasks, drivers, config, env, meta, resources, networks,
//!   services…, never `Count` nor the `Update` block: both are in-place updates.
//! - `scheduler/generic_sched.go` `computeJobAllocs`: an in-place update moved into a new deployment gets
//!   `DeploymentID = <new>` and `DeploymentStatus = nil` (health unknown, rendered `null`).
//! - `client/allocrunner/health_hook.go` `Update`: the running health watcher is cancelled, health is
//!   cleared when the deployment changed, and `init` starts a new `allochealth.Tracker` with
//!   `deadline = now + HealthyDeadline` and the group's `MinHealthyTime`; the tracker
//!   (`client/allochealth/tracker.go` `watchTaskEvents`) restarts its `MinHealthyTime` timer from that
//!   moment, as the tasks keep running. So the allocation reports health again for the new deployment,
//!   and the old tracker's deadline no longer applies.

mod nomad_support;

use std::time::Duration;

use drover_sim::{SimConfig, SimInstant};
use nomad_support::{Sim, job, secs, spawn, with_update};
use serde_json::{Value, json};

/// `HealthyDeadline` of the jobs here, in sim seconds.
const HEALTHY_DEADLINE: u64 = 20;

/// A job of 2 with an update block (1 s `MinHealthyTime`, 20 s `HealthyDeadline`, 60 s `ProgressDeadline`,
/// auto-revert) and no reschedules, so an unhealthy allocation fails its deployment at once.
fn app() -> Value {
    let mut j = with_update(
        job("web", 2),
        json!({"MaxParallel": 1, "MinHealthyTime": secs(1), "HealthyDeadline": secs(HEALTHY_DEADLINE),
            "ProgressDeadline": secs(60), "AutoRevert": true}),
    );
    j["TaskGroups"][0]["ReschedulePolicy"] = json!({"Attempts": 0, "Unlimited": false});
    j
}

/// 1 sim second = 10 real ms: health that is still unknown 15 sim seconds after an update stays visible for long
/// enough to be read.
async fn sim() -> Sim {
    spawn(SimConfig { time_scale: 0.01, ..SimConfig::default() }).await
}

async fn allocs(s: &Sim) -> Vec<Value> {
    s.get("/v1/job/web/allocations").await.json().as_array().cloned().unwrap_or_default()
}

async fn set_mode(s: &Sim, version: u64, mode: &str, delay: Duration) {
    let body = json!({"namespace": "default", "job": "web", "version": version, "mode": mode,
        "delay_ms": delay.as_millis() as u64});
    let r = s.post("/_sim/nomad/health", &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// How version 1 comes about: both are in-place updates of version 0's allocations.
#[derive(Clone, Copy, Debug)]
enum Change {
    /// `POST /v1/job/web/scale` to 3 (B10).
    Scale,
    /// Re-register with only the update block changed (`MaxParallel` 1 → 2).
    UpdateBlock,
}

/// Version 0 runs and is stable (healthy after `v0_delay`); version 1's health mode is set; the change is
/// applied. Returns the IDs of version 0's allocations and the sim instant just before the change.
async fn start(s: &Sim, v0_delay: Duration, mode: &str, delay: Duration, change: Change) -> (Vec<String>, SimInstant) {
    set_mode(s, 0, "delay", v0_delay).await;
    set_mode(s, 1, mode, delay).await;
    s.register(&app()).await;
    s.deployment_status("web", 0, "successful").await;
    let old: Vec<String> = allocs(s).await.iter().filter_map(|a| a["ID"].as_str().map(str::to_string)).collect();
    assert_eq!(old.len(), 2);
    let at = s.shared.clock.now();
    match change {
        Change::Scale => {
            let r = s.post("/v1/job/web/scale", &json!({"Count": 3, "Target": {"Group": "web"}})).await;
            assert_eq!(r.status, 200, "{}", r.body);
        }
        Change::UpdateBlock => {
            let mut j = app();
            j["TaskGroups"][0]["Update"]["MaxParallel"] = json!(2);
            s.register(&j).await;
        }
    }
    (old, at)
}

/// The version-1 deployment as soon as it exists, and checks that version 0's allocations were moved into it in
/// place; with `reset_visible` (health cannot be reported yet), also that their health was reset
/// (`DeploymentStatus: null`).
async fn moved_in_place(s: &Sim, old: &[String], reset_visible: bool) -> Value {
    let d = s
        .until("the version-1 deployment exists", || async {
            s.deployments("web").await.into_iter().find(|d| d["JobVersion"] == 1)
        })
        .await;
    let dep = d["ID"].clone();
    let a = allocs(s).await;
    for id in old {
        let x = a.iter().find(|x| x["ID"] == json!(id));
        let x = x.unwrap_or_else(|| panic!("allocation {id} was replaced, not updated in place: {a:?}"));
        assert_eq!((x["JobVersion"].clone(), x["DesiredStatus"].clone()), (json!(1), json!("run")), "{x}");
        assert_eq!(x["ClientStatus"], "running", "an in-place update does not restart the task: {x}");
        if reset_visible {
            assert!(x["DeploymentStatus"].is_null(), "health is reset (nil) in the new deployment: {x}");
        }
    }
    let in_dep = s.get(&format!("/v1/deployment/allocations/{}", dep.as_str().unwrap_or(""))).await.json();
    for id in old {
        let listed = in_dep.as_array().is_some_and(|l| l.iter().any(|x| x["ID"] == json!(id)));
        assert!(listed, "allocation {id} joins the new deployment: {in_dep}");
    }
    d
}

/// Waits until every one of `ids` reports `healthy` for the version-1 deployment, and checks that each reported it
/// at `not_before` or later (the health `Timestamp`, RFC 3339 with 9 fraction digits, so ordered as text).
async fn reported(s: &Sim, ids: &[String], healthy: bool, not_before: SimInstant) {
    let stamps: Vec<String> = s
        .until(&format!("in-place updated allocations report Healthy:{healthy} again"), || async {
            let a = allocs(s).await;
            ids.iter()
                .map(|id| {
                    a.iter()
                        .find(|x| x["ID"] == json!(id) && x["DeploymentStatus"]["Healthy"] == json!(healthy))
                        .and_then(|x| x["DeploymentStatus"]["Timestamp"].as_str().map(str::to_string))
                })
                .collect::<Option<Vec<String>>>()
        })
        .await;
    let bound = s.shared.clock.rfc3339(not_before);
    for t in stamps {
        assert!(t >= bound, "Healthy:{healthy} reported at {t}, before {bound}");
    }
}

async fn healthy_mode(change: Change) {
    let s = sim().await;
    let (old, at) = start(&s, Duration::ZERO, "healthy", Duration::ZERO, change).await;
    moved_in_place(&s, &old, false).await;
    // Healthy again only MinHealthyTime after the update (the old health, older than `at`, was cleared).
    reported(&s, &old, true, at + Duration::from_secs(1)).await;
    let d = s.deployment_status("web", 1, "successful").await;
    let want = if matches!(change, Change::Scale) { 3 } else { 2 };
    assert_eq!(d["TaskGroups"]["web"]["DesiredTotal"], want);
    assert_eq!(d["TaskGroups"]["web"]["HealthyAllocs"], want);
    let j = s.job("web").await;
    assert_eq!((j["Version"].clone(), j["Stable"].clone()), (json!(1), json!(true)));
    assert_eq!(j["TaskGroups"][0]["Count"], want);
}

#[tokio::test]
async fn inplace_scale_healthy_reports_again_and_succeeds() {
    healthy_mode(Change::Scale).await;
}

#[tokio::test]
async fn inplace_update_block_healthy_reports_again_and_succeeds() {
    healthy_mode(Change::UpdateBlock).await;
}

/// `delay`: checks pass after the delay, so the in-place updated allocations are healthy after delay +
/// `MinHealthyTime` from the update; the delay is past the old tracker's `HealthyDeadline` (armed when version
/// 0's allocations started) but within the new one, which starts at the update.
async fn delay_mode(change: Change) {
    let s = sim().await;
    let delay = Duration::from_secs(HEALTHY_DEADLINE - 5);
    // Version 0 takes 10 s to become healthy, so its tracker's deadline falls 10 s into version 1's delay.
    let (old, at) = start(&s, Duration::from_secs(10), "delay", delay, change).await;
    moved_in_place(&s, &old, true).await;
    reported(&s, &old, true, at + delay + Duration::from_secs(1)).await;
    let d = s.deployment_status("web", 1, "successful").await;
    assert_eq!(d["TaskGroups"]["web"]["UnhealthyAllocs"], 0);
    let j = s.job("web").await;
    assert_eq!((j["Version"].clone(), j["Stable"].clone()), (json!(1), json!(true)), "no auto-revert");
    assert!(s.deployments("web").await.iter().all(|d| d["Status"] != "failed"));
}

#[tokio::test]
async fn inplace_scale_delay_reports_healthy_after_the_delay() {
    delay_mode(Change::Scale).await;
}

#[tokio::test]
async fn inplace_update_block_delay_reports_healthy_after_the_delay() {
    delay_mode(Change::UpdateBlock).await;
}

/// `never`: health stays unknown until the new tracker's `HealthyDeadline` (from the update, not from the task's
/// start), then `Healthy:false`; no reschedule left, so the deployment fails and auto-reverts to version 0.
async fn never_mode(change: Change) {
    let s = sim().await;
    let (old, at) = start(&s, Duration::from_secs(10), "never", Duration::ZERO, change).await;
    moved_in_place(&s, &old, true).await;
    let d = s.deployment_status("web", 1, "failed").await;
    assert_eq!(d["StatusDescription"], "Failed due to unhealthy allocations - rolling back to job version 0");
    assert!(d["TaskGroups"]["web"]["UnhealthyAllocs"].as_u64().is_some_and(|n| n >= 1), "{d}");
    // Unhealthy only at the HealthyDeadline counted from the update, not from the task's start. (The allocations'
    // own `Healthy:false` is short-lived: the revert moves them in place again, into version 2's deployment.)
    let failed_at = d["ModifyTime"].as_i64().unwrap_or(0);
    let bound = s.shared.clock.unix_nanos_at(at + Duration::from_secs(HEALTHY_DEADLINE));
    assert!(failed_at >= bound, "failed at {failed_at}, before the new HealthyDeadline {bound}");
    s.until("auto-revert registers version 0's spec as version 2", || async {
        let j = s.job("web").await;
        (j["Version"] == 2 && j["TaskGroups"][0]["Count"] == 2 && j["TaskGroups"][0]["Update"]["MaxParallel"] == 1)
            .then_some(())
    })
    .await;
    // Version 2 (version 0's spec) is healthy by default: its deployment moves the allocations in place again and
    // succeeds.
    s.deployment_status("web", 2, "successful").await;
    reported(&s, &old, true, at + Duration::from_secs(HEALTHY_DEADLINE)).await;
}

#[tokio::test]
async fn inplace_scale_never_fails_at_the_new_healthy_deadline() {
    never_mode(Change::Scale).await;
}

#[tokio::test]
async fn inplace_update_block_never_fails_at_the_new_healthy_deadline() {
    never_mode(Change::UpdateBlock).await;
}

/// `unhealthy`: the simulated task of version 1 fails shortly after the update; the deployment fails and
/// auto-reverts.
async fn unhealthy_mode(change: Change) {
    let s = sim().await;
    let (old, at) = start(&s, Duration::ZERO, "unhealthy", Duration::ZERO, change).await;
    moved_in_place(&s, &old, false).await;
    reported(&s, &old[..1], false, at).await;
    let d = s.deployment_status("web", 1, "failed").await;
    assert_eq!(d["StatusDescription"], "Failed due to unhealthy allocations - rolling back to job version 0");
    assert!(d["TaskGroups"]["web"]["UnhealthyAllocs"].as_u64().is_some_and(|n| n >= 1), "{d}");
    s.until("auto-revert registers version 0's spec as version 2", || async {
        let j = s.job("web").await;
        (j["Version"] == 2 && j["TaskGroups"][0]["Count"] == 2).then_some(())
    })
    .await;
}

#[tokio::test]
async fn inplace_scale_unhealthy_fails_and_reverts() {
    unhealthy_mode(Change::Scale).await;
}

#[tokio::test]
async fn inplace_update_block_unhealthy_fails_and_reverts() {
    unhealthy_mode(Change::UpdateBlock).await;
}

/// Issue #11's report: `delay` mode for every version, a scale once the allocations have run for longer than
/// `HealthyDeadline` minus the delay: the old code kept the first tracker's deadline, so the allocations turned
/// unhealthy, were rescheduled (default policy), and the deployment failed at its progress deadline and reverted.
/// Now the scale's deployment succeeds with the new count.
#[tokio::test]
async fn inplace_scale_under_delay_mode_for_all_versions_succeeds() {
    let s = sim().await;
    let body = json!({"namespace": "default", "job": "web", "mode": "delay", "delay_ms": 20_000});
    let r = s.post("/_sim/nomad/health", &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let update = json!({"MinHealthyTime": secs(1), "HealthyDeadline": secs(30), "AutoRevert": true});
    s.register(&with_update(job("web", 2), update)).await;
    // Healthy 1 s (start) + 20 s (delay) + 1 s after placement: 9 s of the first tracker's deadline remain.
    s.deployment_status("web", 0, "successful").await;
    let old: Vec<String> = allocs(&s).await.iter().filter_map(|a| a["ID"].as_str().map(str::to_string)).collect();
    let at = s.shared.clock.now();
    let r = s.post("/v1/job/web/scale", &json!({"Count": 3, "Target": {"Group": "web"}})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    moved_in_place(&s, &old, true).await;
    let d = s.deployment_status("web", 1, "successful").await;
    assert_eq!(
        (d["TaskGroups"]["web"]["HealthyAllocs"].clone(), d["TaskGroups"]["web"]["UnhealthyAllocs"].clone()),
        (json!(3), json!(0))
    );
    reported(&s, &old, true, at + Duration::from_secs(21)).await;
    let j = s.job("web").await;
    assert_eq!((j["Version"].clone(), j["TaskGroups"][0]["Count"].clone()), (json!(1), json!(3)));
}
