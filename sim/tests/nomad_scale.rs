//! Contract tests for api-contract.md B6 (scale status), B7 (plan), B9 (revert, stable), B10 (scale).

mod nomad_support;

use nomad_support::{fast, job, with_meta, with_update};
use serde_json::json;

#[tokio::test]
async fn b10_scale_errors_in_order() {
    let s = fast().await;
    let p = "/v1/job/web/scale";
    let r = s.post(p, &json!({"Count": 2, "Target": {"Job": "other", "Group": "web"}})).await;
    assert_eq!((r.status, r.body.as_str()), (400, "job ID in payload did not match URL"));
    let r = s.post(p, &json!({"Count": 2, "Target": {"Namespace": "apps", "Group": "web"}})).await;
    assert_eq!((r.status, r.body.as_str()), (400, "namespace in payload did not match header"));
    let r = s.post(p, &json!({"Count": 2, "Target": {}})).await;
    assert_eq!((r.status, r.body.as_str()), (400, "missing task group name for scaling action"));
    let r = s.post(p, &json!({"Count": -1, "Target": {"Group": "web"}})).await;
    assert_eq!((r.status, r.body.as_str()), (400, "scaling action count can't be negative"));
    let r = s.post(p, &json!({"Count": 1, "Error": true, "Target": {"Group": "web"}})).await;
    assert_eq!((r.status, r.body.as_str()), (400, "scaling action should not contain count if error is true"));
    let r = s.post(p, &json!({"Count": 1, "Target": {"Group": "web"}})).await;
    assert_eq!((r.status, r.body.as_str()), (404, "job \"web\" not found"));
    let mut j = job("web", 2);
    j["TaskGroups"][0]["Scaling"] = json!({"Min": 1, "Max": 5});
    s.post("/_sim/nomad/health", &json!({"job": "web", "version": 0, "mode": "delay", "delay_ms": 60_000})).await;
    s.register(&j).await;
    s.deployment_status("web", 0, "running").await;
    let r = s.post(p, &json!({"Count": 1, "Target": {"Group": "nope"}})).await;
    assert_eq!((r.status, r.body.as_str()), (400, "task group \"nope\" specified for scaling does not exist in job"));
    let r = s.post(p, &json!({"Count": 9, "Target": {"Group": "web"}})).await;
    assert_eq!((r.status, r.body.as_str()), (400, "group count was greater than scaling policy maximum: 9 > 5"));
    let r = s.post(p, &json!({"Count": 0, "Target": {"Group": "web"}})).await;
    assert_eq!((r.status, r.body.as_str()), (400, "group count was less than scaling policy minimum: 0 < 1"));
    // The first deployment is still running (health delayed by 60 s sim).
    let r = s.post(p, &json!({"Count": 3, "Target": {"Group": "web"}})).await;
    assert_eq!((r.status, r.body.as_str()), (400, "job scaling blocked due to active deployment"));
    s.deployment_status("web", 0, "successful").await;
    let r = s.post(p, &json!({"Count": 3, "Target": {"Group": "web"}, "JobModifyIndex": 1})).await;
    assert_eq!(r.status, 500);
    assert!(
        r.body.starts_with("Enforcing job modify index 1: job exists with conflicting job modify index:"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn b10_scale_bumps_version_even_for_same_count() {
    let s = fast().await;
    s.register(&job("web", 2)).await;
    s.deployment_status("web", 0, "successful").await;
    let jmi = s.job("web").await["JobModifyIndex"].as_u64().unwrap_or(0);
    let r = s
        .post(
            "/v1/job/web/scale",
            &json!({"Count": 2, "Target": {"Group": "web"}, "JobModifyIndex": jmi, "Message": "same"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let reply = r.json();
    let j = s.job("web").await;
    assert_eq!(j["Version"], 1);
    assert_eq!(reply["JobModifyIndex"], j["JobModifyIndex"]);
    assert!(reply["Index"].as_u64() > reply["EvalCreateIndex"].as_u64());
    assert!(reply["EvalCreateIndex"].as_u64() > reply["JobModifyIndex"].as_u64());
    // In-place update with an update block: a new deployment, same allocations, still running.
    s.deployment_status("web", 1, "successful").await;
    let allocs = s.get("/v1/job/web/allocations").await.json();
    let live: Vec<&serde_json::Value> =
        allocs.as_array().into_iter().flatten().filter(|a| a["DesiredStatus"] == "run").collect();
    assert_eq!(live.len(), 2);
    assert!(live.iter().all(|a| a["JobVersion"] == 1 && a["ClientStatus"] == "running"));
    assert_eq!(allocs.as_array().map(Vec::len), Some(2), "in-place updates keep the allocations");
    let st = s.get("/v1/job/web/scale").await;
    assert_eq!(st.status, 200);
    let st = st.json();
    assert_eq!(st["TaskGroups"]["web"]["Desired"], 2);
    assert_eq!(st["TaskGroups"]["web"]["Events"][0]["Message"], "same");
    assert_eq!(st["TaskGroups"]["web"]["Events"][0]["PreviousCount"], 2);
    assert_eq!(st["JobModifyIndex"], s.job("web").await["ModifyIndex"]);
    // Without Count only an event is recorded.
    let r = s.post("/v1/job/web/scale", &json!({"Target": {"Group": "web"}, "Message": "note"})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["EvalID"], "");
    assert_eq!(s.job("web").await["Version"], 1);
}

#[tokio::test]
async fn b10_scale_up_places_allocations() {
    let s = fast().await;
    s.register(&with_update(job("web", 1), json!({"MaxParallel": 0}))).await;
    let r = s.post("/v1/job/web/scale", &json!({"Count": 3, "Target": {"Group": "web"}})).await;
    assert_eq!(r.status, 200);
    s.until("3 running", || async {
        let st = s.get("/v1/job/web/scale").await.json();
        (st["TaskGroups"]["web"]["Running"] == 3).then_some(())
    })
    .await;
}

#[tokio::test]
async fn b7_plan_reports_diff_and_annotations() {
    let s = fast().await;
    let r = s.post("/v1/job/web/plan", &json!({"Job": job("web", 2), "Diff": true})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let p = r.json();
    assert_eq!(p["Diff"]["Type"], "Added");
    assert_eq!(p["JobModifyIndex"], 0);
    assert_eq!(p["Annotations"]["DesiredTGUpdates"]["web"]["Place"], 2);
    assert!(s.get("/v1/job/web").await.status == 404, "plan writes nothing");
    s.register(&job("web", 2)).await;
    s.deployment_status("web", 0, "successful").await;
    let jmi = s.job("web").await["JobModifyIndex"].clone();
    let p = s.post("/v1/job/web/plan", &json!({"Job": job("web", 2), "Diff": true})).await.json();
    assert_eq!(p["Diff"]["Type"], "None");
    assert_eq!(p["JobModifyIndex"], jmi);
    assert_eq!(p["Annotations"]["DesiredTGUpdates"]["web"]["Ignore"], 2);
    let p = s
        .post("/v1/job/web/plan", &json!({"Job": with_meta(job("web", 2), "version", "2"), "Diff": true}))
        .await
        .json();
    assert_eq!(p["Diff"]["Type"], "Edited");
    let tg = &p["Diff"]["TaskGroups"][0];
    assert_eq!(tg["Type"], "Edited");
    assert_eq!(
        tg["Tasks"][0]["Fields"][0],
        json!({"Type": "Added", "Name": "Meta[version]", "Old": "", "New": "2", "Annotations": null})
    );
    assert_eq!(tg["Tasks"][0]["Annotations"], json!(["forces create/destroy update"]));
    assert_eq!(tg["Updates"]["create/destroy update"], 2);
    assert_eq!(p["Annotations"]["DesiredTGUpdates"]["web"]["DestructiveUpdate"], 2);
    let p = s.post("/v1/job/web/plan", &json!({"Job": job("web", 2)})).await.json();
    assert!(p["Diff"].is_null());
}

#[tokio::test]
async fn b7_plan_errors() {
    let s = fast().await;
    let r = s.post("/v1/job/web/plan", &json!({})).await;
    assert_eq!((r.status, r.body.as_str()), (400, "Job must be specified"));
    let r = s.post("/v1/job/web/plan", &json!({"Job": {"Name": "x"}})).await;
    assert_eq!((r.status, r.body.as_str()), (400, "Job must have a valid ID"));
    let r = s.post("/v1/job/web/plan", &json!({"Job": job("api", 1)})).await;
    assert_eq!((r.status, r.body.as_str()), (400, "Job ID does not match"));
    let r = s.post("/v1/job/web/plan", &json!({"Job": {"ID": "web"}})).await;
    assert_eq!(r.status, 500);
    assert!(r.body.contains("Missing job task groups"), "{}", r.body);
}

#[tokio::test]
async fn b9_revert_creates_new_unstable_version_and_errors() {
    let s = fast().await;
    let p = "/v1/job/web/revert";
    let r = s.post(p, &json!({"JobVersion": 0})).await;
    assert_eq!((r.status, r.body.as_str()), (400, "JobID must be specified"));
    let r = s.post(p, &json!({"JobID": "x", "JobVersion": 0})).await;
    assert_eq!((r.status, r.body.as_str()), (400, "Job ID does not match"));
    let r = s.post(p, &json!({"JobID": "web", "JobVersion": 0})).await;
    assert_eq!((r.status, r.body.as_str()), (500, "job \"web\" not found"));
    s.register(&job("web", 1)).await;
    s.register(&with_meta(job("web", 1), "v", "1")).await;
    let r = s.post(p, &json!({"JobID": "web", "JobVersion": 1})).await;
    assert_eq!((r.status, r.body.as_str()), (500, "can't revert to current version"));
    let r = s.post(p, &json!({"JobID": "web", "JobVersion": 9})).await;
    assert_eq!((r.status, r.body.as_str()), (500, "job \"web\" in namespace \"default\" at version 9 not found"));
    let r = s.post(p, &json!({"JobID": "web", "JobVersion": 0, "EnforcePriorVersion": 5})).await;
    assert_eq!((r.status, r.body.as_str()), (500, "Current job has version 1; enforcing version 5"));
    let r = s.post(p, &json!({"JobID": "web", "JobVersion": 0, "EnforcePriorVersion": 1})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-nomad-knownleader"), "true");
    let j = s.job("web").await;
    assert_eq!((j["Version"].clone(), j["Stable"].clone()), (json!(2), json!(false)));
    assert!(j["TaskGroups"][0]["Tasks"][0]["Meta"].is_null());
}

#[tokio::test]
async fn b9_stable_sets_flag_without_new_version() {
    let s = fast().await;
    s.register(&with_update(job("web", 1), json!({"MaxParallel": 0}))).await;
    let before = s.job("web").await;
    let r = s.post("/v1/job/web/stable", &json!({"JobID": "web", "JobVersion": 0, "Stable": true})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let after = s.job("web").await;
    assert_eq!(after["Stable"], true);
    assert_eq!(after["Version"], before["Version"]);
    assert_eq!(after["JobModifyIndex"], before["JobModifyIndex"]);
    assert_ne!(after["ModifyIndex"], before["ModifyIndex"]);
}
