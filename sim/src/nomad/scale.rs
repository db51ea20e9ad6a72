//! Scaling: `POST /v1/job/:id/scale` (B10) and `GET /v1/job/:id/scale` (B6).

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::jobs::{WriteReply, create_eval, upsert_job};
use super::model::{JobModel, spec_text};
use super::state::{Key, NomadState, TRACKED_SCALING_EVENTS, Table};
use crate::Shared;

/// A decoded scaling request.
#[derive(Debug, Clone, Default)]
pub struct ScaleArgs {
    /// `Count` (`None` = record an event only).
    pub count: Option<i64>,
    /// `Target.Group`.
    pub group: String,
    /// `Message`.
    pub message: String,
    /// `Error`.
    pub error: bool,
    /// `Meta`.
    pub meta: Value,
    /// `JobModifyIndex` (enforced when > 0 and `Count` is set).
    pub job_modify_index: u64,
}

/// The server side of a scale request, after the HTTP/validation checks. Errors in B10's order.
pub fn scale(st: &mut NomadState, shared: &Shared, key: &Key, a: ScaleArgs) -> Result<WriteReply, ApiError> {
    let Some(row) = st.t.jobs.get(key) else {
        return Err(ApiError::not_found(format!("job \"{}\" not found", key.1)));
    };
    let cur = row.cur.clone();
    if let Some(c) = a.count
        && cur.model.typ == "system"
        && c > 1
    {
        return Err(ApiError::bad_request("jobs of type \"system\" can only be scaled between 0 and 1"));
    }
    let Some(g) = cur.model.group(&a.group).cloned() else {
        return Err(ApiError::bad_request(format!(
            "task group \"{}\" specified for scaling does not exist in job",
            a.group
        )));
    };
    let mut job_reply = None;
    if let Some(count) = a.count {
        if let Some((min, max)) = g.scaling {
            if let Some(min) = min.filter(|m| count < *m) {
                return Err(ApiError::bad_request(format!(
                    "group count was less than scaling policy minimum: {count} < {min}"
                )));
            }
            if let Some(max) = max.filter(|m| count > *m) {
                return Err(ApiError::bad_request(format!(
                    "group count was greater than scaling policy maximum: {count} > {max}"
                )));
            }
        }
        let active = st.t.latest_deployment(key).is_some_and(|d| d.active() && d.job_create_index == cur.create_index);
        if active {
            return Err(ApiError::bad_request("job scaling blocked due to active deployment"));
        }
        if a.job_modify_index > 0 && a.job_modify_index != cur.job_modify_index {
            return Err(ApiError::internal(format!(
                "Enforcing job modify index {}: job exists with conflicting job modify index: {}",
                a.job_modify_index, cur.job_modify_index
            )));
        }
        let mut spec = cur.spec_map();
        if let Some(Value::Array(groups)) = spec.get_mut("TaskGroups") {
            for gv in groups.iter_mut() {
                if gv.get("Name").and_then(Value::as_str) == Some(a.group.as_str())
                    && let Value::Object(gm) = gv
                {
                    gm.insert("Count".into(), json!(count));
                }
            }
        }
        let text = spec_text(&mut spec);
        let model = Arc::new(JobModel::from_job(&spec));
        let job_index = st.write(shared, "JobRegistered", |txn| {
            upsert_job(txn, key, text, model.clone(), cur.version + 1);
            txn.index
        });
        let (eval_id, eval_index) = st.write(shared, "EvaluationUpdated", |txn| {
            let id = create_eval(txn, key, "scaling", model.priority, &model.typ, job_index);
            (id, txn.index)
        });
        job_reply = Some((job_index, eval_id, eval_index));
    }
    let prev = g.count;
    let (eval_id, eval_index, job_modify) = match &job_reply {
        Some((j, e, ei)) => (e.clone(), *ei, *j),
        None => (String::new(), 0, cur.modify_index),
    };
    let index = st.write(shared, "ScalingEventRegister", |txn| {
        let ev = json!({"Time": txn.unix(), "Count": a.count, "PreviousCount": prev, "Message": a.message,
            "Error": a.error, "Meta": a.meta, "EvalID": if eval_id.is_empty() { Value::Null } else { json!(eval_id) },
            "CreateIndex": txn.index});
        let idx = txn.index;
        if let Some(r) = txn.t.jobs.get_mut(key) {
            let list = r.scaling_events.entry(a.group.clone()).or_insert_with(VecDeque::new);
            list.push_front(ev);
            list.truncate(TRACKED_SCALING_EVENTS);
            r.scaling_index = idx;
        }
        txn.touch(Table::Scaling);
        idx
    });
    Ok(WriteReply {
        eval_id,
        eval_create_index: eval_index,
        job_modify_index: job_modify,
        warnings: String::new(),
        index,
    })
}

/// `GET /v1/job/:id/scale` body and index.
pub fn status(st: &NomadState, key: &Key) -> Option<(Value, u64)> {
    let row = st.t.jobs.get(key)?;
    let mut index = row.cur.modify_index.max(row.scaling_index);
    let mut groups = Map::new();
    for g in &row.cur.model.groups {
        let (mut placed, mut running, mut healthy, mut unhealthy) = (0u64, 0u64, 0u64, 0u64);
        for a in st.t.job_allocs(key).filter(|a| a.group == g.name) {
            index = index.max(a.modify_index);
            if a.is_canary() || a.desired_status != "run" || a.client_terminal() {
                continue;
            }
            placed += 1;
            if a.client_status == "running" {
                running += 1;
            }
            if a.is_healthy() {
                healthy += 1;
            } else if a.is_unhealthy() {
                unhealthy += 1;
            }
        }
        let events =
            row.scaling_events.get(&g.name).map(|e| Value::Array(e.iter().cloned().collect())).unwrap_or(Value::Null);
        groups.insert(
            g.name.clone(),
            json!({"Desired": g.count, "Placed": placed, "Running": running,
            "Healthy": healthy, "Unhealthy": unhealthy, "Events": events}),
        );
    }
    Some((
        json!({"JobID": key.1, "Namespace": key.0, "JobCreateIndex": row.cur.create_index,
        "JobModifyIndex": row.cur.modify_index, "JobStopped": row.cur.model.stop, "TaskGroups": groups}),
        index,
    ))
}
