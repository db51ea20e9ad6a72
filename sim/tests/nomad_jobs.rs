//! Contract tests for api-contract.md B1–B4, B6, B8, B11 (jobs).

mod nomad_support;

use nomad_support::{fast, job, with_meta};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn b3_list_should_be_empty_array_not_null() {
    let s = fast().await;
    let r = s.get("/v1/jobs").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "[]");
    assert!(r.header("x-nomad-index").parse::<u64>().is_ok());
    assert_eq!(r.header("x-nomad-knownleader"), "true");
    assert_eq!(r.header("x-nomad-lastcontact"), "0");
}

#[tokio::test]
async fn b3_list_should_return_stubs_without_version_and_meta_only_on_request() {
    let s = fast().await;
    let mut j = job("web", 1);
    j["Meta"] = json!({"drover.io/app": "default/web"});
    s.register(&j).await;
    s.register(&job("api", 1)).await;
    let list = s.get("/v1/jobs?prefix=we").await.json();
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    let stub = &list[0];
    assert_eq!(stub["ID"], "web");
    assert!(stub.get("Version").is_none(), "stubs carry no Version");
    assert!(stub.get("Meta").is_none(), "Meta only with meta=true");
    assert_eq!(stub["Datacenters"], json!(["*"]));
    assert_eq!(stub["NodePool"], "default");
    assert_eq!(stub["JobSummary"]["JobID"], "web");
    let list = s.get("/v1/jobs?meta=true").await.json();
    assert_eq!(list[1]["Meta"]["drover.io/app"], "default/web");
    let r = s.get("/v1/jobs?meta=maybe").await;
    assert_eq!(r.status, 500);
    assert!(r.body.starts_with("Failed to parse value of \"meta\" (maybe) as a bool"), "{}", r.body);
}

#[tokio::test]
async fn b4_register_should_set_server_fields_and_version_zero() {
    let s = fast().await;
    let reply = s.register(&job("web", 2)).await;
    let j = s.job("web").await;
    assert_eq!(j["Version"], 0);
    assert_eq!(j["JobModifyIndex"], reply["JobModifyIndex"]);
    assert_eq!(j["CreateIndex"], reply["JobModifyIndex"]);
    assert_eq!(reply["Index"], reply["EvalCreateIndex"]);
    assert!(reply["EvalID"].as_str().is_some_and(|e| e.len() == 36));
    assert_eq!(reply["Warnings"], "");
    assert!(j["SubmitTime"].as_i64().unwrap_or(0) > 0);
    assert_eq!(j["Region"], "global");
    assert_eq!(j["Namespace"], "default");
}

#[tokio::test]
async fn b4_identical_register_creates_no_version() {
    let s = fast().await;
    s.register(&job("web", 1)).await;
    let before = s.job("web").await;
    s.until("job is running", || async { (s.job("web").await["Status"] == "running").then_some(()) }).await;
    let running = s.job("web").await;
    let reply = s.register(&job("web", 1)).await;
    let after = s.job("web").await;
    assert_eq!(after["Version"], before["Version"]);
    assert_eq!(after["JobModifyIndex"], before["JobModifyIndex"]);
    // Reply quirk (C15): JobModifyIndex is the job's ModifyIndex, and an eval is still created.
    assert_eq!(reply["JobModifyIndex"], running["ModifyIndex"]);
    assert_ne!(reply["JobModifyIndex"], running["JobModifyIndex"]);
    assert!(reply["EvalID"].as_str().is_some_and(|e| !e.is_empty()));
    assert!(reply["Index"].as_u64() > running["ModifyIndex"].as_u64());
}

#[tokio::test]
async fn b4_changed_register_bumps_version_and_keeps_create_index() {
    let s = fast().await;
    s.register(&job("web", 1)).await;
    let v0 = s.job("web").await;
    let reply = s.register(&with_meta(job("web", 1), "k", "v")).await;
    let v1 = s.job("web").await;
    assert_eq!(v1["Version"], 1);
    assert_eq!(v1["CreateIndex"], v0["CreateIndex"]);
    assert_eq!(v1["JobModifyIndex"], reply["JobModifyIndex"]);
    assert_eq!(v1["Stable"], false);
}

#[tokio::test]
async fn b4_enforce_index_conflict_is_500() {
    let s = fast().await;
    let r = s.post("/v1/jobs", &json!({"Job": job("web", 1), "EnforceIndex": true, "JobModifyIndex": 38})).await;
    assert_eq!((r.status, r.body.as_str()), (500, "Enforcing job modify index 38: job does not exist"));
    assert_eq!(r.header("content-type"), "text/plain; charset=utf-8");
    let r = s.post("/v1/jobs", &json!({"Job": job("web", 1), "EnforceIndex": true, "JobModifyIndex": 0})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let jmi = s.job("web").await["JobModifyIndex"].as_u64().unwrap_or(0);
    let r = s.post("/v1/jobs", &json!({"Job": job("web", 2), "EnforceIndex": true, "JobModifyIndex": 0})).await;
    assert_eq!((r.status, r.body.as_str()), (500, "Enforcing job modify index 0: job already exists"));
    let r = s.post("/v1/jobs", &json!({"Job": job("web", 2), "EnforceIndex": true, "JobModifyIndex": jmi + 100})).await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.body,
        format!("Enforcing job modify index {}: job exists with conflicting job modify index: {jmi}", jmi + 100)
    );
    let r = s.post("/v1/jobs", &json!({"Job": job("web", 2), "EnforceIndex": true, "JobModifyIndex": jmi})).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn b4_http_layer_errors_are_400() {
    let s = fast().await;
    let r = s.post("/v1/jobs", &json!({})).await;
    assert_eq!((r.status, r.body.as_str()), (400, "Job must be specified"));
    let r = s.post("/v1/jobs", &json!({"Job": {"Name": "x"}})).await;
    assert_eq!((r.status, r.body.as_str()), (400, "Job ID hasn't been provided"));
    let r = s.post("/v1/job/other", &json!({"Job": job("web", 1)})).await;
    assert_eq!((r.status, r.body.as_str()), (400, "Job ID does not match name"));
    let r = s.post("/v1/jobs", &json!({"Job": job("web", 1), "EvalPriority": 101})).await;
    assert_eq!((r.status, r.body.as_str()), (400, "Eval priority must be between 1 and 100 inclusively"));
    let r = s.raw(Method::POST, "/v1/jobs", None).await;
    assert_eq!((r.status, r.body.as_str()), (400, "Request body is empty"));
    let r = s.raw(Method::POST, "/v1/jobs", Some("{not json".into())).await;
    assert_eq!((r.status, r.body.as_str()), (400, "invalid character 'n' looking for beginning of object key string"));
    let mut sys = job("sys", 1);
    sys["Type"] = json!("system");
    sys["TaskGroups"][0]["Scaling"] = json!({"Min": 0, "Max": 1});
    let r = s.post("/v1/jobs", &json!({"Job": sys})).await;
    assert_eq!((r.status, r.body.as_str()), (400, "Task groups with job type system do not support scaling blocks"));
}

#[tokio::test]
async fn b4_duration_as_string_is_400_decode_error() {
    let s = fast().await;
    let mut j = job("web", 1);
    j["Update"] = json!({"MinHealthyTime": "10s"});
    let r = s.post("/v1/jobs", &json!({"Job": j})).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        "json: cannot unmarshal string into Go struct field UpdateStrategy.Job.Update.MinHealthyTime of type time.Duration"
    );
}

#[tokio::test]
async fn b4_validation_failure_is_500_multierror() {
    let s = fast().await;
    let j = json!({"ID": "web", "TaskGroups": [{"Name": "web", "Tasks": []}]});
    let r = s.post("/v1/jobs", &json!({"Job": j})).await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.body,
        "1 error occurred:\n\t* Task group web validation failed: 1 error occurred:\n\t* Missing tasks for task group\n\n\n\n"
    );
    let mut j = job("web", 1);
    j["TaskGroups"][0]["Update"] = json!({"MinHealthyTime": 600_000_000_000u64, "HealthyDeadline": 300_000_000_000u64});
    let r = s.post("/v1/jobs", &json!({"Job": j})).await;
    assert_eq!(r.status, 500);
    assert!(r.body.contains("Minimum healthy time must be less than healthy deadline: 10m0s > 5m0s"), "{}", r.body);
    let mut j = job("b", 1);
    j["Type"] = json!("batch");
    j["Update"] = json!({"MaxParallel": 1});
    let r = s.post("/v1/jobs", &json!({"Job": j})).await;
    assert_eq!(r.status, 500);
    assert!(r.body.contains("Job type \"batch\" does not allow update block"), "{}", r.body);
}

#[tokio::test]
async fn b4_type_transition_is_500() {
    let s = fast().await;
    s.register(&job("web", 1)).await;
    let mut j = job("web", 1);
    j["Type"] = json!("batch");
    let r = s.post("/v1/jobs", &json!({"Job": j})).await;
    assert_eq!((r.status, r.body.as_str()), (500, "cannot update job from type \"service\" to \"batch\""));
}

#[tokio::test]
async fn b4_periodic_and_parameterized_transitions_are_500_both_ways() {
    // validateJobUpdate (nomad/job_endpoint.go): neither nature may be gained or lost by an existing job.
    let s = fast().await;
    let mut plain = job("etl", 1);
    plain["Type"] = json!("batch");
    let mut periodic = plain.clone();
    periodic["Periodic"] = json!({"Enabled": true, "SpecType": "cron", "Spec": "*/5 * * * *"});
    let mut parameterized = plain.clone();
    parameterized["ParameterizedJob"] = json!({"Payload": "optional"});
    let cases = [
        (&plain, &periodic, "cannot update non-periodic job to being periodic"),
        (&periodic, &plain, "cannot update periodic job to being non-periodic"),
        (&plain, &parameterized, "cannot update non-parameterized job to being parameterized"),
        (&parameterized, &plain, "cannot update parameterized job to being non-parameterized"),
    ];
    for (i, (before, after, message)) in cases.into_iter().enumerate() {
        let (mut before, mut after) = (before.clone(), after.clone());
        before["ID"] = json!(format!("etl-{i}"));
        after["ID"] = json!(format!("etl-{i}"));
        let r = s.post("/v1/jobs", &json!({"Job": before})).await;
        assert_eq!(r.status, 200, "{message}: the first register must succeed: {}", r.body);
        let r = s.post("/v1/jobs", &json!({"Job": after})).await;
        assert_eq!((r.status, r.body.as_str()), (500, message));
    }
}

#[tokio::test]
async fn b4_namespace_precedence_and_nonexistent_namespace() {
    let s = fast().await;
    let mut j = job("web", 1);
    j["Namespace"] = json!("apps");
    let r = s.post("/v1/jobs", &json!({"Job": j})).await;
    assert_eq!((r.status, r.body.as_str()), (500, "job \"web\" is in nonexistent namespace \"apps\""));
    s.post("/_sim/nomad/namespaces", &json!({"name": "apps"})).await;
    let r = s.post("/v1/jobs", &json!({"Job": j, "Namespace": "default"})).await;
    assert_eq!(r.status, 200);
    assert_eq!(s.job("web").await["Namespace"], "default");
    let r = s.post("/v1/jobs?namespace=apps", &json!({"Job": j, "Namespace": "default"})).await;
    assert_eq!(r.status, 200);
    assert_eq!(s.get("/v1/job/web?namespace=apps").await.json()["Namespace"], "apps");
    let all = s.get("/v1/jobs?namespace=*").await.json();
    assert_eq!(all.as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn b4_preserve_counts_still_creates_a_version() {
    let s = fast().await;
    s.register(&job("web", 3)).await;
    let r = s.post("/v1/jobs", &json!({"Job": job("web", 5), "PreserveCounts": true})).await;
    assert_eq!(r.status, 200);
    let j = s.job("web").await;
    assert_eq!(j["Version"], 1);
    assert_eq!(j["TaskGroups"][0]["Count"], 3);
}

#[tokio::test]
async fn b6_missing_job_is_404_with_index() {
    let s = fast().await;
    let r = s.get("/v1/job/nope").await;
    assert_eq!((r.status, r.body.as_str()), (404, "job not found"));
    assert!(!r.header("x-nomad-index").is_empty());
    let r = s.get("/v1/job/nope/versions").await;
    assert_eq!((r.status, r.body.as_str()), (404, "job versions not found"));
    let r = s.get("/v1/job/nope/summary").await;
    assert_eq!((r.status, r.body.as_str()), (404, "job not found"));
    let r = s.get("/v1/job/nope/deployment").await;
    assert_eq!((r.status, r.body.as_str()), (200, "null"));
    let r = s.get("/v1/job/nope/allocations").await;
    assert_eq!((r.status, r.body.as_str()), (200, "[]"));
}

#[tokio::test]
async fn b6_versions_are_newest_first_and_capped_at_six() {
    let s = fast().await;
    for i in 0..8 {
        s.register(&with_meta(job("web", 1), "i", &i.to_string())).await;
    }
    let v = s.get("/v1/job/web/versions").await.json();
    let versions: Vec<u64> =
        v["Versions"].as_array().into_iter().flatten().filter_map(|j| j["Version"].as_u64()).collect();
    assert_eq!(versions, vec![7, 6, 5, 4, 3, 2]);
    // Older versions are stored delta-encoded: each must still read back its own spec.
    for j in v["Versions"].as_array().into_iter().flatten() {
        assert_eq!(j["TaskGroups"][0]["Tasks"][0]["Meta"]["i"], j["Version"].to_string().as_str());
    }
    let r = s.post("/v1/job/web/revert", &json!({"JobID": "web", "JobVersion": 2})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(s.job("web").await["TaskGroups"][0]["Tasks"][0]["Meta"]["i"], "2");
}

#[tokio::test]
async fn b8_stop_bumps_version_and_purge_deletes() {
    let s = fast().await;
    s.register(&job("web", 1)).await;
    let r = s.raw(Method::DELETE, "/v1/job/web", None).await;
    assert_eq!(r.status, 200);
    let reply = r.json();
    assert_eq!(reply["VolumeEvalID"], "");
    let j = s.job("web").await;
    assert_eq!((j["Version"].clone(), j["Stop"].clone()), (json!(1), json!(true)));
    s.until("stopped job is dead", || async { (s.job("web").await["Status"] == "dead").then_some(()) }).await;
    let r = s.raw(Method::DELETE, "/v1/job/web?purge=yes", None).await;
    assert_eq!(r.status, 500);
    assert!(r.body.starts_with("Failed to parse value of \"purge\" (yes) as a bool"), "{}", r.body);
    let r = s.raw(Method::DELETE, "/v1/job/web?purge=true", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(s.get("/v1/job/web").await.status, 404);
    let r = s.raw(Method::DELETE, "/v1/job/never", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["EvalID"], "");
    assert_eq!(r.json()["Index"], 0);
}

#[tokio::test]
async fn b1_wrong_method_is_405() {
    let s = fast().await;
    let r = s.raw(Method::DELETE, "/v1/jobs", None).await;
    assert_eq!((r.status, r.body.as_str()), (405, "Invalid method"));
    let r = s.get("/v1/job/web/plan").await;
    assert_eq!((r.status, r.body.as_str()), (405, "Invalid method"));
}

#[tokio::test]
async fn b2_blocking_query_returns_on_change_and_times_out_with_same_index() {
    let s = fast().await;
    s.register(&job("web", 1)).await;
    let idx = s.get("/v1/jobs").await.index();
    // 2 s sim = 2 ms real; returns the same index on timeout.
    let r = s.get(&format!("/v1/job/nope?index={}&wait=2s", idx + 1000)).await;
    assert_eq!(r.status, 404);
    // The timed-out answer carries the table's index at that moment (the scheduler may still be moving the job
    // through pending to running, so the index is read on both sides rather than once).
    let before = s.get("/v1/jobs").await.index();
    let r = s.get(&format!("/v1/jobs?index={}&wait=1s", idx + 1000)).await;
    let after = s.get("/v1/jobs").await.index();
    assert!((before..=after).contains(&r.index()), "{before} <= {} <= {after}", r.index());
    let s2 = s.clone();
    let blocked =
        tokio::spawn(async move { s2.get(&format!("/v1/job/web?index={}", s2.job("web").await["ModifyIndex"])).await });
    s.register(&with_meta(job("web", 1), "k", "v")).await;
    let r = blocked.await.expect("blocking query task");
    assert_eq!(r.json()["Version"], 1);
    let r = s.get("/v1/jobs?index=abc").await;
    assert_eq!((r.status, r.body.as_str()), (400, "Invalid index"));
    let r = s.get("/v1/jobs?index=1&wait=abc").await;
    assert_eq!((r.status, r.body.as_str()), (400, "Invalid wait time"));
}

#[tokio::test]
async fn b11_canonical_job_has_defaults_and_reduced_update() {
    let s = fast().await;
    let mut j = job("web", 1);
    j["TaskGroups"][0]["Services"] = json!([{"PortLabel": "http"}]);
    j["TaskGroups"][0]["Meta"] = json!({});
    s.register(&j).await;
    let g = s.job("web").await;
    assert_eq!(g["Priority"], 50);
    assert_eq!(g["Datacenters"], json!(["*"]));
    assert_eq!(g["NodePool"], "default");
    assert_eq!(
        g["Update"],
        json!({"Stagger":30000000000u64,"MaxParallel":1,"HealthCheck":"","MinHealthyTime":0,"HealthyDeadline":0,"ProgressDeadline":0,"AutoRevert":false,"AutoPromote":false,"Canary":0})
    );
    let tg = &g["TaskGroups"][0];
    assert_eq!(tg["Update"]["MinHealthyTime"], 10_000_000_000u64);
    assert_eq!(tg["Update"]["ProgressDeadline"], 600_000_000_000u64);
    assert_eq!(tg["Meta"], Value::Null);
    assert_eq!(tg["EphemeralDisk"], json!({"Sticky": false, "SizeMB": 300, "Migrate": false}));
    assert_eq!(tg["Services"][0]["Name"], "web-web");
    assert_eq!(
        tg["Constraints"],
        json!([{"LTarget": "${attr.consul.version}", "RTarget": ">= 1.8.0", "Operand": "semver"}])
    );
    assert_eq!(tg["Tasks"][0]["KillTimeout"], 5_000_000_000u64);
    assert_eq!(tg["Tasks"][0]["Resources"]["CPU"], 100);
    assert_eq!(tg["ReschedulePolicy"]["DelayFunction"], "exponential");
}

#[tokio::test]
async fn b2_jobs_list_index_moves_with_allocation_status() {
    let s = fast().await;
    let reply = s.register(&job("web", 1)).await;
    let after_register = reply["JobModifyIndex"].as_u64().unwrap_or(0);
    let r = s.get(&format!("/v1/jobs?index={after_register}&wait=60s")).await;
    assert!(r.index() > after_register, "the scheduler's allocation and summary writes move the list index");
    s.until("allocation running shows in the stub summary", || async {
        let list = s.get("/v1/jobs").await.json();
        (list[0]["JobSummary"]["Summary"]["web"]["Running"] == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn b16_job_in_other_namespace_is_invisible_without_namespace() {
    let s = fast().await;
    s.post("/_sim/nomad/namespaces", &json!({"name": "apps"})).await;
    let r = s.post("/v1/jobs?namespace=apps", &json!({"Job": job("web", 1)})).await;
    assert_eq!(r.status, 200);
    let r = s.get("/v1/job/web").await;
    assert_eq!((r.status, r.body.as_str()), (404, "job not found"));
    assert_eq!(s.get("/v1/job/web?namespace=apps").await.status, 200);
    assert_eq!(s.get("/v1/jobs").await.body, "[]");
    let all = s.get("/v1/jobs?namespace=*").await.json();
    assert_eq!(all[0]["Namespace"], "apps");
}

#[tokio::test]
async fn b1_jobs_list_pages_with_next_token() {
    let s = fast().await;
    for id in ["a", "b", "c"] {
        s.register(&job(id, 0)).await;
    }
    let r = s.get("/v1/jobs?per_page=2").await;
    assert_eq!(r.json().as_array().map(Vec::len), Some(2));
    assert_eq!(r.header("x-nomad-nexttoken"), "default.c");
    let r = s.get("/v1/jobs?per_page=2&next_token=default.c").await;
    assert_eq!(r.json()[0]["ID"], "c");
    assert_eq!(r.header("x-nomad-nexttoken"), "");
    let r = s.get("/v1/jobs?per_page=x").await;
    assert_eq!((r.status, r.body.as_str()), (400, "Invalid per_page"));
}
