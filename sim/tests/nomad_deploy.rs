//! Contract tests for api-contract.md B13 (deployments) and B14 (allocations), on the sim clock.

mod nomad_support;

use nomad_support::{Sim, fast, job, secs, with_meta, with_update};
use reqwest::Method;
use serde_json::{Value, json};

async fn allocs(s: &Sim, id: &str) -> Vec<Value> {
    s.get(&format!("/v1/job/{id}/allocations")).await.json().as_array().cloned().unwrap_or_default()
}

async fn health(s: &Sim, job: &str, version: Option<u64>, mode: &str) {
    let r = s
        .post("/_sim/nomad/health", &json!({"namespace": "default", "job": job, "version": version, "mode": mode}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn b13_first_run_deployment_succeeds_and_marks_version_stable() {
    let s = fast().await;
    s.register(&job("web", 2)).await;
    let d = s.deployment_status("web", 0, "successful").await;
    assert_eq!(d["StatusDescription"], "Deployment completed successfully");
    assert_eq!(d["TaskGroups"]["web"]["DesiredTotal"], 2);
    assert_eq!(d["TaskGroups"]["web"]["HealthyAllocs"], 2);
    assert_eq!(d["JobSpecModifyIndex"], s.job("web").await["JobModifyIndex"]);
    let j = s.job("web").await;
    assert_eq!((j["Stable"].clone(), j["Status"].clone()), (json!(true), json!("running")));
    let a = allocs(&s, "web").await;
    assert_eq!(a.len(), 2);
    for x in &a {
        assert_eq!(x["ClientStatus"], "running");
        assert_eq!(x["DesiredStatus"], "run");
        assert_eq!(x["DeploymentStatus"]["Healthy"], true);
        assert_eq!(x["DeploymentStatus"]["Canary"], false);
        assert!(x["Name"].as_str().is_some_and(|n| n.starts_with("web.web[")));
    }
    let latest = s.get("/v1/job/web/deployment").await.json();
    assert_eq!(latest["ID"], d["ID"]);
    let by_id = s.get(&format!("/v1/deployment/{}", d["ID"].as_str().unwrap_or(""))).await;
    assert_eq!(by_id.json()["Status"], "successful");
    let da = s.get(&format!("/v1/deployment/allocations/{}", d["ID"].as_str().unwrap_or(""))).await.json();
    assert_eq!(da.as_array().map(Vec::len), Some(2));
    let summary = s.get("/v1/job/web/summary").await.json();
    assert_eq!(summary["Summary"]["web"]["Running"], 2);
}

#[tokio::test]
async fn b13_rolling_update_replaces_allocs_and_stops_old_version() {
    let s = fast().await;
    let j = with_update(job("web", 3), json!({"MaxParallel": 1, "MinHealthyTime": secs(1)}));
    s.register(&j).await;
    s.deployment_status("web", 0, "successful").await;
    s.register(&with_meta(j.clone(), "v", "1")).await;
    let d = s
        .until("rollout of v1 finishes, never more than MaxParallel new allocations in flight", || async {
            let a = allocs(&s, "web").await;
            let in_flight = a
                .iter()
                .filter(|x| {
                    x["JobVersion"] == 1 && x["DesiredStatus"] == "run" && x["DeploymentStatus"]["Healthy"] != true
                })
                .count();
            assert!(in_flight <= 1, "MaxParallel 1 exceeded: {in_flight} allocations in flight");
            s.deployments("web").await.into_iter().find(|d| d["JobVersion"] == 1 && d["Status"] == "successful")
        })
        .await;
    assert_eq!(d["TaskGroups"]["web"]["PlacedAllocs"], 3);
    let a = allocs(&s, "web").await;
    let current: Vec<&Value> = a.iter().filter(|x| x["JobVersion"] == 1 && x["DesiredStatus"] == "run").collect();
    let old: Vec<&Value> = a.iter().filter(|x| x["JobVersion"] == 0).collect();
    assert_eq!(current.len(), 3);
    assert_eq!(old.len(), 3);
    assert!(old.iter().all(|x| x["DesiredStatus"] == "stop"), "old-version allocations are stopped");
    assert_eq!(s.job("web").await["Stable"], true);
}

#[tokio::test]
async fn b13_newer_version_cancels_active_deployment() {
    let s = fast().await;
    s.register(&job("web", 1)).await;
    s.deployment_status("web", 0, "successful").await;
    health(&s, "web", Some(1), "never").await;
    s.register(&with_meta(job("web", 1), "v", "1")).await;
    s.deployment_status("web", 1, "running").await;
    s.register(&with_meta(job("web", 1), "v", "2")).await;
    let d = s.deployment_status("web", 1, "cancelled").await;
    assert_eq!(d["StatusDescription"], "Cancelled due to newer version of job");
    s.deployment_status("web", 2, "successful").await;
}

#[tokio::test]
async fn b13_stopping_the_job_cancels_its_deployment() {
    let s = fast().await;
    health(&s, "web", None, "never").await;
    s.register(&job("web", 1)).await;
    s.deployment_status("web", 0, "running").await;
    let r = s.raw(Method::DELETE, "/v1/job/web", None).await;
    assert_eq!(r.status, 200);
    let d = s.deployment_status("web", 0, "cancelled").await;
    assert_eq!(d["StatusDescription"], "Cancelled because job is stopped");
}

#[tokio::test]
async fn b13_failed_deployment_auto_reverts_to_stable() {
    let s = fast().await;
    let j = with_update(job("web", 2), json!({"AutoRevert": true, "ProgressDeadline": 0}));
    s.register(&j).await;
    s.deployment_status("web", 0, "successful").await;
    health(&s, "web", Some(1), "unhealthy").await;
    s.register(&with_meta(j.clone(), "v", "bad")).await;
    let d = s.deployment_status("web", 1, "failed").await;
    assert_eq!(d["StatusDescription"], "Failed due to unhealthy allocations - rolling back to job version 0");
    let cur = s
        .until("revert version 2 exists", || async {
            let j = s.job("web").await;
            (j["Version"] == 2).then_some(j)
        })
        .await;
    assert_eq!(cur["Stable"], false);
    assert!(cur["TaskGroups"][0]["Tasks"][0]["Meta"].is_null(), "reverted to version 0's spec");
    s.deployment_status("web", 2, "successful").await;
}

#[tokio::test]
async fn b13_auto_revert_without_stable_version_says_so() {
    let s = fast().await;
    health(&s, "web", None, "unhealthy").await;
    let j = with_update(job("web", 1), json!({"AutoRevert": true, "ProgressDeadline": 0}));
    s.register(&j).await;
    let d = s.deployment_status("web", 0, "failed").await;
    assert_eq!(d["StatusDescription"], "Failed due to unhealthy allocations - no stable job version to auto revert to");
}

#[tokio::test]
async fn b13_progress_deadline_fails_deployment() {
    let s = fast().await;
    health(&s, "web", None, "never").await;
    let j = with_update(
        job("web", 1),
        json!({"HealthyDeadline": secs(20), "ProgressDeadline": secs(60), "MinHealthyTime": secs(1)}),
    );
    s.register(&j).await;
    let d = s.deployment_status("web", 0, "failed").await;
    assert_eq!(d["StatusDescription"], "Failed due to progress deadline");
}

/// Nomad's `computeGroup` places nothing new while the deployment is failed (`deploymentPlaceReady`), and does not
/// reschedule the allocations of the failed deployment: a job whose allocations keep failing stays at what it had.
#[tokio::test]
async fn b13_failed_deployment_places_nothing_new() {
    let s = fast().await;
    health(&s, "web", None, "unhealthy").await;
    let j = with_update(
        job("web", 2),
        json!({"HealthyDeadline": secs(20), "ProgressDeadline": secs(60), "MinHealthyTime": secs(1)}),
    );
    s.register(&j).await;
    s.deployment_status("web", 0, "failed").await;
    let before = allocs(&s, "web").await.len();
    // Five simulated minutes: each of them used to fill the count again with an allocation that failed in turn.
    s.shared.clock.sleep(std::time::Duration::from_secs(300)).await;
    let after = allocs(&s, "web").await;
    assert_eq!(after.len(), before, "allocations placed after the deployment failed: {after:#?}");
}

#[tokio::test]
async fn b13_canary_requires_manual_promotion() {
    let s = fast().await;
    let j = with_update(job("web", 2), json!({"Canary": 1, "MinHealthyTime": secs(1)}));
    s.register(&j).await;
    s.deployment_status("web", 0, "successful").await;
    health(&s, "web", Some(1), "never").await;
    s.register(&with_meta(j.clone(), "v", "1")).await;
    let d = s.deployment_status("web", 1, "running").await;
    let id = d["ID"].as_str().unwrap_or("").to_string();
    s.until("canary placed", || async {
        let d = s.get(&format!("/v1/deployment/{id}")).await.json();
        (d["TaskGroups"]["web"]["PlacedCanaries"].as_array().map(Vec::len) == Some(1)).then_some(())
    })
    .await;
    let d = s.get(&format!("/v1/deployment/{id}")).await.json();
    assert_eq!(d["StatusDescription"], "Deployment is running but requires manual promotion");
    assert_eq!(d["TaskGroups"]["web"]["DesiredCanaries"], 1);
    let path = format!("/v1/deployment/promote/{id}");
    let r = s.post(&path, &json!({"DeploymentID": id, "All": true})).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.body, "1 error occurred:\n\t* Task group \"web\" has 0/1 healthy allocations\n\n");
    health(&s, "web", Some(1), "healthy").await;
    // The canary placed under "never" stays unknown; fail it over by failing the deployment instead.
    let r = s.post(&format!("/v1/deployment/fail/{id}"), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let d = s.get(&format!("/v1/deployment/{id}")).await.json();
    assert_eq!(
        (d["Status"].clone(), d["StatusDescription"].clone()),
        (json!("failed"), json!("Deployment marked as failed"))
    );
    let r = s.post(&format!("/v1/deployment/fail/{id}"), &json!({})).await;
    assert_eq!((r.status, r.body.as_str()), (500, "can't fail terminal deployment"));
}

#[tokio::test]
async fn b13_promotion_after_healthy_canary_completes_rollout() {
    let s = fast().await;
    let j = with_update(job("web", 2), json!({"Canary": 1, "MinHealthyTime": secs(1)}));
    s.register(&j).await;
    s.deployment_status("web", 0, "successful").await;
    s.register(&with_meta(j.clone(), "v", "1")).await;
    let d = s.deployment_status("web", 1, "running").await;
    let id = d["ID"].as_str().unwrap_or("").to_string();
    s.until("canary healthy", || async {
        let d = s.get(&format!("/v1/deployment/{id}")).await.json();
        (d["TaskGroups"]["web"]["HealthyAllocs"] == 1).then_some(())
    })
    .await;
    let canaries: Vec<Value> =
        allocs(&s, "web").await.into_iter().filter(|a| a["DeploymentStatus"]["Canary"] == true).collect();
    assert_eq!(canaries.len(), 1);
    let r = s.post(&format!("/v1/deployment/promote/{id}"), &json!({"DeploymentID": id, "All": true})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["RevertedJobVersion"].is_null());
    let d = s.deployment_status("web", 1, "successful").await;
    assert_eq!(d["TaskGroups"]["web"]["Promoted"], true);
    let a = allocs(&s, "web").await;
    let live: Vec<&Value> = a.iter().filter(|x| x["DesiredStatus"] == "run").collect();
    assert_eq!(live.len(), 2);
    assert!(live.iter().all(|x| x["JobVersion"] == 1 && x["DeploymentStatus"]["Canary"] == false));
}

#[tokio::test]
async fn b13_auto_promote_promotes_healthy_canaries() {
    let s = fast().await;
    let j = with_update(job("web", 2), json!({"Canary": 1, "AutoPromote": true, "MinHealthyTime": secs(1)}));
    s.register(&j).await;
    s.deployment_status("web", 0, "successful").await;
    s.register(&with_meta(j.clone(), "v", "1")).await;
    let d = s.deployment_status("web", 1, "successful").await;
    assert_eq!(d["TaskGroups"]["web"]["Promoted"], true);
}

#[tokio::test]
async fn b13_deployment_write_errors() {
    let s = fast().await;
    let r = s.raw(Method::POST, "/v1/deployment/promote/abc", None).await;
    assert_eq!((r.status, r.body.as_str()), (400, "Request body is empty"));
    let r = s.post("/v1/deployment/promote/abc", &json!({"All": true})).await;
    assert_eq!((r.status, r.body.as_str()), (400, "DeploymentID must be specified"));
    let r = s.post("/v1/deployment/promote/abc", &json!({"DeploymentID": "def"})).await;
    assert_eq!((r.status, r.body.as_str()), (400, "Deployment ID does not match"));
    let r = s.post("/v1/deployment/promote/abc", &json!({"DeploymentID": "abc"})).await;
    assert_eq!((r.status, r.body.as_str()), (500, "deployment not found"));
    let r = s.post("/v1/deployment/fail/abc", &json!({})).await;
    assert_eq!((r.status, r.body.as_str()), (500, "deployment not found"));
    let r = s.get("/v1/deployment/abc").await;
    assert_eq!((r.status, r.body.as_str()), (404, "deployment not found"));
    s.register(&job("web", 1)).await;
    let d = s.deployment_status("web", 0, "successful").await;
    let id = d["ID"].as_str().unwrap_or("");
    let r = s.post(&format!("/v1/deployment/promote/{id}"), &json!({"DeploymentID": id, "All": true})).await;
    assert_eq!((r.status, r.body.as_str()), (500, "can't promote terminal deployment"));
    let r = s.post(&format!("/v1/deployment/pause/{id}"), &json!({"DeploymentID": id, "Pause": true})).await;
    assert_eq!((r.status, r.body.as_str()), (500, "can't pause terminal deployment"));
}

#[tokio::test]
async fn b13_pause_sets_paused_and_resume_runs_again() {
    let s = fast().await;
    health(&s, "web", None, "never").await;
    s.register(&job("web", 1)).await;
    let d = s.deployment_status("web", 0, "running").await;
    let id = d["ID"].as_str().unwrap_or("");
    let r = s.post(&format!("/v1/deployment/pause/{id}"), &json!({"DeploymentID": id, "Pause": true})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let d = s.deployment_status("web", 0, "paused").await;
    assert_eq!(d["StatusDescription"], "Deployment is paused");
    let r = s.post(&format!("/v1/deployment/pause/{id}"), &json!({"DeploymentID": id, "Pause": false})).await;
    assert_eq!(r.status, 200);
    let d = s.deployment_status("web", 0, "running").await;
    assert_eq!(d["StatusDescription"], "Deployment is running");
}

#[tokio::test]
async fn b13_no_update_block_means_no_deployment() {
    let s = fast().await;
    s.register(&with_update(job("web", 2), json!({"MaxParallel": 0}))).await;
    s.until("allocations running", || async {
        let a = allocs(&s, "web").await;
        (a.len() == 2 && a.iter().all(|x| x["ClientStatus"] == "running")).then_some(())
    })
    .await;
    assert!(s.deployments("web").await.is_empty());
    assert!(allocs(&s, "web").await.iter().all(|a| a["DeploymentStatus"].is_null()));
}

#[tokio::test]
async fn b13_allocation_health_api_sets_health_and_unhealthy_fails() {
    let s = fast().await;
    s.register(&with_update(job("web", 1), json!({"HealthCheck": "manual"}))).await;
    let d = s.deployment_status("web", 0, "running").await;
    let id = d["ID"].as_str().unwrap_or("").to_string();
    let path = format!("/v1/deployment/allocation-health/{id}");
    let r = s.post(&path, &json!({"DeploymentID": id})).await;
    assert_eq!((r.status, r.body.as_str()), (500, "must specify at least one healthy/unhealthy allocation ID"));
    let alloc = s
        .until("allocation running", || async {
            allocs(&s, "web")
                .await
                .into_iter()
                .find(|a| a["ClientStatus"] == "running")
                .and_then(|a| a["ID"].as_str().map(str::to_string))
        })
        .await;
    let r = s.post(&path, &json!({"DeploymentID": id, "HealthyAllocationIDs": [alloc]})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    s.deployment_status("web", 0, "successful").await;
    s.register(&with_meta(with_update(job("web", 1), json!({"HealthCheck": "manual"})), "v", "1")).await;
    let d = s.deployment_status("web", 1, "running").await;
    let id = d["ID"].as_str().unwrap_or("").to_string();
    let alloc = s
        .until("v1 allocation running", || async {
            allocs(&s, "web")
                .await
                .into_iter()
                .find(|a| a["JobVersion"] == 1 && a["ClientStatus"] == "running")
                .and_then(|a| a["ID"].as_str().map(str::to_string))
        })
        .await;
    let r = s
        .post(
            &format!("/v1/deployment/allocation-health/{id}"),
            &json!({"DeploymentID": id, "UnhealthyAllocationIDs": [alloc]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let d = s.deployment_status("web", 1, "failed").await;
    assert_eq!(d["StatusDescription"], "Failed due to unhealthy allocations");
}

#[tokio::test]
async fn b13_blue_green_canaries_equal_count_replace_everything_on_promotion() {
    let s = fast().await;
    let j = with_update(job("web", 2), json!({"Canary": 2, "MinHealthyTime": secs(1)}));
    s.register(&j).await;
    s.deployment_status("web", 0, "successful").await;
    s.register(&with_meta(j.clone(), "v", "1")).await;
    let d = s.deployment_status("web", 1, "running").await;
    let id = d["ID"].as_str().unwrap_or("").to_string();
    s.until("both canaries healthy", || async {
        let d = s.get(&format!("/v1/deployment/{id}")).await.json();
        (d["TaskGroups"]["web"]["HealthyAllocs"] == 2).then_some(())
    })
    .await;
    assert_eq!(
        allocs(&s, "web").await.iter().filter(|a| a["DesiredStatus"] == "run").count(),
        4,
        "blue and green both run"
    );
    let r = s.post(&format!("/v1/deployment/promote/{id}"), &json!({"DeploymentID": id, "All": true})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    s.deployment_status("web", 1, "successful").await;
    let live: Vec<Value> = allocs(&s, "web").await.into_iter().filter(|a| a["DesiredStatus"] == "run").collect();
    assert_eq!(live.len(), 2);
    assert!(live.iter().all(|a| a["JobVersion"] == 1));
}

#[tokio::test]
async fn b13_fail_endpoint_reverts_and_reports_version() {
    let s = fast().await;
    let j = with_update(job("web", 1), json!({"AutoRevert": true}));
    s.register(&j).await;
    s.deployment_status("web", 0, "successful").await;
    health(&s, "web", Some(1), "never").await;
    s.register(&with_meta(j.clone(), "v", "1")).await;
    let d = s.deployment_status("web", 1, "running").await;
    let id = d["ID"].as_str().unwrap_or("");
    let r = s.post(&format!("/v1/deployment/fail/{id}"), &json!({"DeploymentID": id})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["RevertedJobVersion"], 0);
    let d = s.deployment_status("web", 1, "failed").await;
    assert_eq!(d["StatusDescription"], "Deployment marked as failed - rolling back to job version 0");
    assert_eq!(s.job("web").await["Version"], 2);
}

#[tokio::test]
async fn b13_register_after_purge_is_a_new_instance_with_its_own_deployment() {
    let s = fast().await;
    s.register(&job("web", 1)).await;
    let first = s.deployment_status("web", 0, "successful").await;
    let r = s.raw(Method::DELETE, "/v1/job/web?purge=true", None).await;
    assert_eq!(r.status, 200);
    s.register(&job("web", 1)).await;
    let j = s.job("web").await;
    assert_eq!(j["Version"], 0);
    let d = s
        .until("a second deployment for the new instance", || async {
            s.deployments("web").await.into_iter().find(|d| {
                d["ID"] != first["ID"] && d["JobCreateIndex"] == j["CreateIndex"] && d["Status"] == "successful"
            })
        })
        .await;
    assert_eq!(d["JobVersion"], 0);
}
