//! Job routes: `/v1/jobs` (B3, B4) and everything under `/v1/job/` (B4, B6–B10).

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::Nomad;
use super::acl::Caller;
use super::canonical::{AGENT_REGION, Target, canonicalize};
use super::decode::Obj;
use super::error::ApiError;
use super::http::{Query, block, block_list, caller, decode_body, read_response, write_response};
use super::jobs::{self, RegisterArgs};
use super::scale::{self, ScaleArgs};
use super::state::{Key, NomadState, summary_json};

fn bad(e: super::decode::DecodeError) -> ApiError {
    ApiError::bad_request(e.0)
}

/// `/v1/jobs`: GET lists, PUT/POST registers.
pub async fn jobs_root(
    State(n): State<Arc<Nomad>>,
    method: Method,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let q = Query::parse(raw.as_deref());
    let r = match method {
        Method::GET => list_jobs(&n, &q, &headers).await,
        Method::PUT | Method::POST => register(&n, &q, &headers, &body, None),
        _ => Err(ApiError::invalid_method()),
    };
    r.unwrap_or_else(IntoResponse::into_response)
}

/// Namespaces a list request covers: `*` = every namespace the caller sees.
pub fn list_namespaces(st: &NomadState, q: &Query, who: &Caller, cap: &str) -> Vec<String> {
    let ns = q.namespace();
    if ns == "*" {
        st.t.namespaces.keys().filter(|n| who.allows(n, cap)).cloned().collect()
    } else if who.allows(&ns, cap) {
        vec![ns]
    } else {
        Vec::new()
    }
}

async fn list_jobs(n: &Nomad, q: &Query, headers: &HeaderMap) -> Result<Response, ApiError> {
    let who = caller(n, headers)?;
    // `Job.List` checks `list-jobs` in the requested namespace before listing, and for `*` at least one namespace
    // must grant it: `if !aclObj.AllowNsOp(namespace, acl.NamespaceCapabilityListJobs) { return
    // structs.ErrPermissionDenied }`, and `allowedNSes` returns ErrPermissionDenied when no namespace is allowed
    // [N:nomad/job_endpoint.go `List`, `allowedNSes`]. A denial is a 403, never a silently empty list.
    let allowed = {
        let st = n.lock();
        who.is_management() || !list_namespaces(&st, q, &who, "list-jobs").is_empty()
    };
    if !allowed {
        return Err(ApiError::permission_denied());
    }
    let with_meta = q.bool("meta")?;
    let prefix = q.get("prefix").unwrap_or("").to_string();
    let per_page = match q.get("per_page") {
        None | Some("") => 0usize,
        Some(v) => v.parse::<usize>().map_err(|_| ApiError::bad_request("Invalid per_page"))?,
    };
    let (rows, index) = block_list(
        n,
        q,
        |st| st.t.table_index.jobs.max(st.t.table_index.job_summary),
        |st| {
            let mut out = Vec::new();
            for ns in list_namespaces(st, q, &who, "list-jobs") {
                let start = (ns.clone(), prefix.clone());
                for (key, row) in st.t.jobs.range(start..) {
                    if key.0 != ns || !key.1.starts_with(&prefix) {
                        break;
                    }
                    out.push((key.clone(), row.cur.clone(), row.summary.clone()));
                }
            }
            out
        },
    )
    .await?;
    // Paging (`per_page`, `next_token`): tokens are `<namespace>.<id>` like Nomad's
    // `StructsTokenizer{WithNamespace, WithID}`; the page starts at the first token ≥ next_token.
    let token = |k: &Key| format!("{}.{}", k.0, k.1);
    let next = q.get("next_token").unwrap_or("").to_string();
    let mut rows: Vec<_> = rows.into_iter().filter(|(k, _, _)| next.is_empty() || token(k) >= next).collect();
    let mut next_token = None;
    if per_page > 0 && rows.len() > per_page {
        next_token = Some(token(&rows[per_page].0));
        rows.truncate(per_page);
    }
    let body = Value::Array(
        rows.into_iter().map(|(key, rec, summary)| rec.stub(summary_json(&key, &summary), with_meta)).collect(),
    );
    let mut resp = read_response(n, q, &body, index);
    if let Some(t) = next_token.and_then(|t| axum::http::HeaderValue::from_str(&t).ok()) {
        resp.headers_mut().insert("X-Nomad-NextToken", t);
    }
    Ok(resp)
}

/// Decodes, checks and canonicalises a register body (B4 HTTP layer). Returns the canonical job
/// and the register options.
fn register_request(q: &Query, body: &Bytes, path_id: Option<&str>) -> Result<RegisterArgs, ApiError> {
    let m = decode_body(body, "api.JobRegisterRequest")?;
    let req = Obj::new(&m, "JobRegisterRequest", "");
    let job = req.obj("Job", "api.Job").map_err(bad)?;
    let enforce_index = req.bool("EnforceIndex").map_err(bad)?.unwrap_or(false);
    let job_modify_index = req.int_as("JobModifyIndex", "uint64").map_err(bad)?.unwrap_or(0) as u64;
    let preserve_counts = req.bool("PreserveCounts").map_err(bad)?.unwrap_or(false);
    let preserve_resources = req.bool("PreserveResources").map_err(bad)?.unwrap_or(false);
    let eval_priority = req.int("EvalPriority").map_err(bad)?.unwrap_or(0);
    let body_region = req.str("Region").map_err(bad)?;
    let body_ns = req.str("Namespace").map_err(bad)?;
    let Some(job) = job else {
        return Err(ApiError::bad_request("Job must be specified"));
    };
    let jo = Obj::new(job, "Job", "Job");
    let Some(id) = jo.str("ID").map_err(bad)? else {
        return Err(ApiError::bad_request("Job ID hasn't been provided"));
    };
    if let Some(p) = path_id
        && p != id
    {
        return Err(ApiError::bad_request("Job ID does not match name"));
    }
    let namespace = q
        .get("namespace")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or(body_ns.filter(|s| !s.is_empty()))
        .or(jo.str("Namespace").map_err(bad)?.filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "default".into());
    let region = q
        .get("region")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or(body_region.filter(|s| !s.is_empty()))
        .or(jo.str("Region").map_err(bad)?)
        .filter(|r| !r.is_empty() && r != "global")
        .unwrap_or_else(|| AGENT_REGION.into());
    let canonical = canonicalize(job, "Job", &Target { namespace, region }).map_err(bad)?;
    if canonical.get("Type").and_then(Value::as_str) == Some("system") {
        let has_scaling = canonical
            .get("TaskGroups")
            .and_then(Value::as_array)
            .is_some_and(|gs| gs.iter().any(|g| g.get("Scaling").is_some_and(|s| !s.is_null())));
        if has_scaling {
            return Err(ApiError::bad_request("Task groups with job type system do not support scaling blocks"));
        }
    }
    if eval_priority != 0 && !(1..=100).contains(&eval_priority) {
        return Err(ApiError::bad_request("Eval priority must be between 1 and 100 inclusively"));
    }
    Ok(RegisterArgs {
        job: canonical,
        enforce_index,
        job_modify_index,
        preserve_counts,
        preserve_resources,
        token_accessor: String::new(),
        eval_priority,
    })
}

fn register(
    n: &Nomad,
    q: &Query,
    headers: &HeaderMap,
    body: &Bytes,
    path_id: Option<&str>,
) -> Result<Response, ApiError> {
    let mut args = register_request(q, body, path_id)?;
    jobs::check_valid(&args.job)?;
    let who = caller(n, headers)?;
    let ns = args.job.get("Namespace").and_then(Value::as_str).unwrap_or("default").to_string();
    if !who.allows(&ns, "submit-job") {
        return Err(ApiError::permission_denied());
    }
    args.token_accessor = who.accessor();
    let reply = jobs::register(&mut n.lock(), &n.shared, args)?;
    Ok(write_response(q, &reply.register_json(), reply.index))
}

/// Everything under `/v1/job/`: the job ID may contain `/`, so the action is found by suffix, as Nomad does.
pub async fn job_path(
    State(n): State<Arc<Nomad>>,
    method: Method,
    uri: Uri,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let q = Query::parse(raw.as_deref());
    let path = percent_encoding::percent_decode_str(uri.path()).decode_utf8_lossy().into_owned();
    let rest = path.strip_prefix("/v1/job/").unwrap_or("").to_string();
    dispatch(&n, method, &rest, &q, &headers, &body).await.unwrap_or_else(IntoResponse::into_response)
}

const SUFFIXES: [&str; 11] = [
    "/allocations",
    "/evaluations",
    "/summary",
    "/versions",
    "/deployments",
    "/deployment",
    "/scale",
    "/plan",
    "/revert",
    "/stable",
    "/evaluate",
];

async fn dispatch(
    n: &Arc<Nomad>,
    method: Method,
    rest: &str,
    q: &Query,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let (id, action) = SUFFIXES.iter().find_map(|s| rest.strip_suffix(s).map(|id| (id, *s))).unwrap_or((rest, ""));
    let key: Key = (q.namespace(), id.to_string());
    let is_get = method == Method::GET;
    let is_write = method == Method::PUT || method == Method::POST;
    match (action, is_get, is_write) {
        ("", true, _) => read_job(n, q, headers, &key).await,
        ("", _, true) => register(n, q, headers, body, Some(id)),
        ("", _, _) if method == Method::DELETE => deregister(n, q, headers, &key),
        ("/allocations", true, _) => job_list(n, q, headers, &key, List::Allocs).await,
        ("/summary", true, _) => summary(n, q, headers, &key).await,
        ("/evaluations", true, _) => super::routes_cluster::job_evaluations(n, q, headers, &key).await,
        ("/versions", true, _) => versions(n, q, headers, &key).await,
        ("/deployments", true, _) => job_list(n, q, headers, &key, List::Deployments).await,
        ("/deployment", true, _) => job_list(n, q, headers, &key, List::Latest).await,
        ("/scale", true, _) => scale_status(n, q, headers, &key).await,
        ("/scale", _, true) => scale_action(n, q, headers, &key, body),
        ("/plan", _, true) => super::diff::plan_route(n, q, headers, &key, body),
        ("/revert", _, true) => revert(n, q, headers, &key, body),
        ("/stable", _, true) => stable(n, q, headers, &key, body),
        _ => Err(ApiError::invalid_method()),
    }
}

fn require(who: &Caller, ns: &str, caps: &[&str]) -> Result<(), ApiError> {
    if who.allows_any(ns, caps) { Ok(()) } else { Err(ApiError::permission_denied()) }
}

async fn read_job(n: &Nomad, q: &Query, headers: &HeaderMap, key: &Key) -> Result<Response, ApiError> {
    let who = caller(n, headers)?;
    require(&who, &key.0, &["read-job"])?;
    let (body, index) = block(n, q, |st| match st.t.jobs.get(key) {
        Some(r) => (Some(r.cur.render()), r.cur.modify_index),
        None => (None, st.t.table_index.jobs),
    })
    .await?;
    match body {
        Some(b) => Ok(read_response(n, q, &b, index)),
        None => Err(ApiError::not_found("job not found").with_index(index)),
    }
}

enum List {
    Allocs,
    Deployments,
    Latest,
}

async fn job_list(n: &Nomad, q: &Query, headers: &HeaderMap, key: &Key, what: List) -> Result<Response, ApiError> {
    let who = caller(n, headers)?;
    require(&who, &key.0, &["read-job"])?;
    let all = q.bool("all")?;
    let clock = n.shared.clock.clone();
    let (body, index) = block(n, q, |st| {
        // Without `all=true`, only this instance of the job (same CreateIndex) counts.
        let instance = if all { None } else { st.t.jobs.get(key).map(|r| r.cur.create_index) };
        match what {
            List::Allocs => {
                let v: Vec<Value> =
                    st.t.job_allocs(key)
                        .filter(|a| instance.is_none_or(|ci| a.create_index >= ci))
                        .map(|a| a.stub(&clock))
                        .collect();
                (Value::Array(v), st.t.table_index.allocs)
            }
            List::Deployments => {
                let v: Vec<Value> =
                    st.t.deps_by_job
                        .get(key)
                        .into_iter()
                        .flatten()
                        .rev()
                        .filter_map(|id| st.t.deployments.get(id))
                        .filter(|d| instance.is_none_or(|ci| d.job_create_index == ci))
                        .map(|d| d.render(&clock))
                        .collect();
                (Value::Array(v), st.t.table_index.deployment)
            }
            List::Latest => (
                st.t.latest_deployment(key).map(|d| d.render(&clock)).unwrap_or(Value::Null),
                st.t.table_index.deployment,
            ),
        }
    })
    .await?;
    Ok(read_response(n, q, &body, index))
}

async fn summary(n: &Nomad, q: &Query, headers: &HeaderMap, key: &Key) -> Result<Response, ApiError> {
    let who = caller(n, headers)?;
    require(&who, &key.0, &["read-job"])?;
    let (body, index) = block(n, q, |st| match st.t.jobs.get(key) {
        Some(r) => (Some(summary_json(key, &r.summary)), r.summary.modify_index),
        None => (None, st.t.table_index.job_summary),
    })
    .await?;
    match body {
        Some(b) => Ok(read_response(n, q, &b, index)),
        None => Err(ApiError::not_found("job not found").with_index(index)),
    }
}

async fn versions(n: &Nomad, q: &Query, headers: &HeaderMap, key: &Key) -> Result<Response, ApiError> {
    let who = caller(n, headers)?;
    require(&who, &key.0, &["read-job"])?;
    let diffs = q.bool("diffs")?;
    let (body, index) = block(n, q, |st| match st.t.jobs.get(key) {
        Some(r) => {
            let versions: Vec<Value> = r
                .version_records()
                .iter()
                .map(|v| if v.version == r.cur.version { r.cur.render() } else { v.render() })
                .collect();
            let diff = if diffs {
                let d: Vec<Value> = versions.windows(2).map(|w| super::diff::job_diff(Some(&w[1]), &w[0])).collect();
                Value::Array(d)
            } else {
                Value::Null
            };
            let idx = st.t.table_index.jobs;
            (Some(json!({"Versions": versions, "Diffs": diff, "Index": idx, "LastContact": 0, "KnownLeader": true, "NextToken": ""})), idx)
        }
        None => (None, st.t.table_index.jobs),
    })
    .await?;
    match body {
        Some(b) => Ok(read_response(n, q, &b, index)),
        None => Err(ApiError::not_found("job versions not found").with_index(index)),
    }
}

fn deregister(n: &Nomad, q: &Query, headers: &HeaderMap, key: &Key) -> Result<Response, ApiError> {
    let purge = q.bool("purge")?;
    q.bool("global")?;
    q.bool("no_shutdown_delay")?;
    let eval_priority = match q.get("eval_priority") {
        Some(v) if !v.is_empty() => v.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!("Failed to parse value of \"eval_priority\" ({v}) as an int"))
        })?,
        _ => 0,
    };
    let who = caller(n, headers)?;
    let caps: &[&str] = if purge { &["submit-job", "purge-job"] } else { &["submit-job", "deregister-job"] };
    require(&who, &key.0, caps)?;
    let reply = jobs::deregister(&mut n.lock(), &n.shared, key, purge, eval_priority);
    Ok(write_response(q, &reply.deregister_json(), reply.index))
}

async fn scale_status(n: &Nomad, q: &Query, headers: &HeaderMap, key: &Key) -> Result<Response, ApiError> {
    let who = caller(n, headers)?;
    require(&who, &key.0, &["read-job-scaling", "read-job"])?;
    let (body, index) = block(n, q, |st| match scale::status(st, key) {
        Some((b, i)) => (Some(b), i),
        None => (None, st.t.table_index.jobs),
    })
    .await?;
    match body {
        Some(b) => Ok(read_response(n, q, &b, index)),
        None => Err(ApiError::not_found("job not found").with_index(index)),
    }
}

fn scale_action(n: &Nomad, q: &Query, headers: &HeaderMap, key: &Key, body: &Bytes) -> Result<Response, ApiError> {
    let m = decode_body(body, "api.ScalingRequest")?;
    let r = Obj::new(&m, "ScalingRequest", "");
    let count = r.int_as("Count", "int64").map_err(bad)?;
    let error = r.bool("Error").map_err(bad)?.unwrap_or(false);
    let message = r.str("Message").map_err(bad)?.unwrap_or_default();
    let meta = r.any("Meta");
    let jmi = r.int_as("JobModifyIndex", "uint64").map_err(bad)?.unwrap_or(0) as u64;
    let target = r.str_map("Target").map_err(bad)?.unwrap_or_default();
    let t = |k: &str| {
        target.iter().find(|(tk, _)| tk.eq_ignore_ascii_case(k)).and_then(|(_, v)| v.as_str()).map(str::to_string)
    };
    if let Some(j) = t("Job")
        && j != key.1
    {
        return Err(ApiError::bad_request("job ID in payload did not match URL"));
    }
    if let Some(ns) = t("Namespace")
        && ns != key.0
    {
        return Err(ApiError::bad_request("namespace in payload did not match header"));
    }
    let group = t("Group").unwrap_or_default();
    if group.is_empty() {
        return Err(ApiError::bad_request("missing task group name for scaling action"));
    }
    if count.is_some_and(|c| c < 0) {
        return Err(ApiError::bad_request("scaling action count can't be negative"));
    }
    if count.is_some() && error {
        return Err(ApiError::bad_request("scaling action should not contain count if error is true"));
    }
    let who = caller(n, headers)?;
    require(&who, &key.0, &["scale-job", "submit-job"])?;
    let args = ScaleArgs { count, group, message, error, meta, job_modify_index: jmi };
    let reply = scale::scale(&mut n.lock(), &n.shared, key, args)?;
    Ok(write_response(q, &reply.register_json(), reply.index))
}

fn revert(n: &Nomad, q: &Query, headers: &HeaderMap, key: &Key, body: &Bytes) -> Result<Response, ApiError> {
    let m = decode_body(body, "api.JobRevertRequest")?;
    let r = Obj::new(&m, "JobRevertRequest", "");
    let job_id = r.str("JobID").map_err(bad)?.unwrap_or_default();
    let version = r.int_as("JobVersion", "uint64").map_err(bad)?.unwrap_or(0) as u64;
    let prior = r.int_as("EnforcePriorVersion", "uint64").map_err(bad)?.map(|v| v as u64);
    if job_id.is_empty() {
        return Err(ApiError::bad_request("JobID must be specified"));
    }
    if job_id != key.1 {
        return Err(ApiError::bad_request("Job ID does not match"));
    }
    let who = caller(n, headers)?;
    require(&who, &key.0, &["submit-job"])?;
    let reply = jobs::revert(&mut n.lock(), &n.shared, key, version, prior, who.accessor())?;
    Ok(read_response(n, q, &reply.register_json(), reply.index))
}

fn stable(n: &Nomad, q: &Query, headers: &HeaderMap, key: &Key, body: &Bytes) -> Result<Response, ApiError> {
    let m = decode_body(body, "api.JobStabilityRequest")?;
    let r = Obj::new(&m, "JobStabilityRequest", "");
    let job_id = r.str("JobID").map_err(bad)?.unwrap_or_default();
    let version = r.int_as("JobVersion", "uint64").map_err(bad)?.unwrap_or(0) as u64;
    let stable = r.bool("Stable").map_err(bad)?.unwrap_or(false);
    if job_id.is_empty() {
        return Err(ApiError::bad_request("JobID must be specified"));
    }
    if job_id != key.1 {
        return Err(ApiError::bad_request("Job ID does not match"));
    }
    let who = caller(n, headers)?;
    require(&who, &key.0, &["submit-job"])?;
    let index = jobs::set_stable(&mut n.lock(), &n.shared, key, version, stable)?;
    Ok(write_response(q, &json!({"JobModifyIndex": index, "Index": index}), index))
}

/// Helper for the plan route: register-request decoding shared with register.
pub fn plan_request(q: &Query, body: &Bytes, path_id: &str) -> Result<(Map<String, Value>, bool), ApiError> {
    let m = decode_body(body, "api.JobPlanRequest")?;
    let req = Obj::new(&m, "JobPlanRequest", "");
    let diff = req.bool("Diff").map_err(bad)?.unwrap_or(false);
    let Some(job) = req.obj("Job", "api.Job").map_err(bad)? else {
        return Err(ApiError::bad_request("Job must be specified"));
    };
    let jo = Obj::new(job, "Job", "Job");
    let id = jo.str("ID").map_err(bad)?.unwrap_or_default();
    if id.is_empty() {
        return Err(ApiError::bad_request("Job must have a valid ID"));
    }
    if id != path_id {
        return Err(ApiError::bad_request("Job ID does not match"));
    }
    let namespace = q
        .get("namespace")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or(jo.str("Namespace").map_err(bad)?.filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "default".into());
    let canonical = canonicalize(job, "Job", &Target { namespace, region: AGENT_REGION.into() }).map_err(bad)?;
    Ok((canonical, diff))
}
