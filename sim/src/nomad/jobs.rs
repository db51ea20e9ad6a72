//! Job writes: register (B4), stop/purge (B8), revert and stability (B9), and the table helpers
//! shared with the scheduler (job upsert, evaluations, status and summary upkeep).

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::error::{ApiError, multierror};
use super::evals::{self, Eval, EvalStatus};
use super::events::Payload;
use super::model::{JobModel, JobRecord, spec_text};
use super::state::{Counts, JobRow, Key, NomadState, Summary, Table, Txn};
use super::validate::validate;
use crate::Shared;

/// A register request after the HTTP layer (B4): the job is canonical and carries its namespace and region.
#[derive(Debug, Clone)]
pub struct RegisterArgs {
    /// The canonical job.
    pub job: Map<String, Value>,
    /// `EnforceIndex`.
    pub enforce_index: bool,
    /// `JobModifyIndex` (checked when `enforce_index`).
    pub job_modify_index: u64,
    /// `PreserveCounts`.
    pub preserve_counts: bool,
    /// `PreserveResources`.
    pub preserve_resources: bool,
    /// AccessorID of the caller's token, stored as `NomadTokenID` (empty with ACLs off).
    pub token_accessor: String,
    /// `EvalPriority` (0 = the job's priority).
    pub eval_priority: i64,
}

/// The register/deregister/scale reply fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteReply {
    /// `EvalID` (empty when no eval was created).
    pub eval_id: String,
    /// `EvalCreateIndex`.
    pub eval_create_index: u64,
    /// `JobModifyIndex`.
    pub job_modify_index: u64,
    /// `Warnings`.
    pub warnings: String,
    /// `Index` (and `X-Nomad-Index`).
    pub index: u64,
}

impl WriteReply {
    /// The register response body.
    pub fn register_json(&self) -> Value {
        json!({"EvalID": self.eval_id, "EvalCreateIndex": self.eval_create_index,
            "JobModifyIndex": self.job_modify_index, "Warnings": self.warnings, "Index": self.index,
            "LastContact": 0, "KnownLeader": false, "NextToken": ""})
    }

    /// The deregister response body.
    pub fn deregister_json(&self) -> Value {
        json!({"EvalID": self.eval_id, "EvalCreateIndex": self.eval_create_index,
            "JobModifyIndex": self.job_modify_index, "VolumeEvalID": "", "VolumeEvalIndex": 0,
            "Index": self.index, "LastContact": 0, "KnownLeader": false, "NextToken": ""})
    }
}

fn key_of(job: &Map<String, Value>) -> Key {
    let s = |k: &str| job.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    (s("Namespace"), s("ID"))
}

fn enforce(enforce_index: bool, want: u64, existing: Option<&JobRow>) -> Result<(), ApiError> {
    if !enforce_index {
        return Ok(());
    }
    let msg = match (existing, want) {
        (Some(_), 0) => "job already exists".to_string(),
        (Some(e), n) if n != e.cur.job_modify_index => {
            format!("job exists with conflicting job modify index: {}", e.cur.job_modify_index)
        }
        (None, n) if n != 0 => "job does not exist".to_string(),
        _ => return Ok(()),
    };
    Err(ApiError::internal(format!("Enforcing job modify index {want}: {msg}")))
}

/// Validation as the register and plan endpoints answer it: 500 with a multierror text.
pub fn check_valid(job: &Map<String, Value>) -> Result<(), ApiError> {
    validate(job).map_err(|errs| ApiError::internal(multierror(&errs)))
}

/// `Job.Register` → `doRegister` after validation and ACL checks: EnforceIndex, type transitions, the spec-change
/// check, then one Raft write (job + eval) or, for an unchanged spec, an eval-only write.
pub fn register(st: &mut NomadState, shared: &Shared, mut a: RegisterArgs) -> Result<WriteReply, ApiError> {
    let key = key_of(&a.job);
    let existing = st.t.jobs.get(&key);
    enforce(a.enforce_index, a.job_modify_index, existing)?;
    let model = JobModel::from_job(&a.job);
    if let Some(e) = existing {
        let old = &e.cur.model;
        if old.typ != model.typ {
            return Err(ApiError::internal(format!(
                "cannot update job from type \"{}\" to \"{}\"",
                old.typ, model.typ
            )));
        }
        if !old.periodic && model.periodic {
            return Err(ApiError::internal("cannot update non-periodic job to being periodic"));
        }
        if old.periodic && !model.periodic {
            return Err(ApiError::internal("cannot update periodic job to being non-periodic"));
        }
        if !old.parameterized && model.parameterized {
            return Err(ApiError::internal("cannot update non-parameterized job to being parameterized"));
        }
        if old.parameterized && !model.parameterized {
            return Err(ApiError::internal("cannot update parameterized job to being non-parameterized"));
        }
    }
    a.job.insert("NomadTokenID".into(), json!(a.token_accessor));
    let submitted_version = a.job.get("Version").and_then(Value::as_u64).unwrap_or(0);
    let mut spec = spec_text(&mut a.job);
    let creates_eval = !(model.periodic || model.parameterized);
    let priority = if a.eval_priority > 0 { a.eval_priority } else { model.priority };
    if let Some(e) = existing.filter(|e| e.cur.spec == spec) {
        // Unchanged spec: no new version, an eval only; the reply's JobModifyIndex is ModifyIndex (C15).
        let job_modify = e.cur.modify_index;
        return Ok(if creates_eval {
            st.write(shared, "EvaluationUpdated", |txn| {
                let eval_id = create_eval(txn, &key, "job-register", priority, &model.typ, e_jmi(txn, &key));
                WriteReply {
                    eval_id,
                    eval_create_index: txn.index,
                    job_modify_index: job_modify,
                    warnings: String::new(),
                    index: txn.index,
                }
            })
        } else {
            WriteReply { job_modify_index: job_modify, index: st.index, ..WriteReply::default() }
        });
    }
    if !st.t.namespaces.contains_key(&key.0) {
        return Err(ApiError::internal(format!("job \"{}\" is in nonexistent namespace \"{}\"", key.1, key.0)));
    }
    if let Some(e) = existing.filter(|_| a.preserve_counts || a.preserve_resources) {
        let old = e.cur.spec_map();
        preserve(&mut a.job, &old, a.preserve_counts, a.preserve_resources);
        spec = spec_text(&mut a.job);
    }
    let model =
        if a.preserve_counts || a.preserve_resources { Arc::new(JobModel::from_job(&a.job)) } else { Arc::new(model) };
    let version = match existing {
        Some(e) if submitted_version <= e.cur.version => e.cur.version + 1,
        _ => submitted_version,
    };
    Ok(st.write(shared, "JobRegistered", |txn| {
        upsert_job(txn, &key, spec, model.clone(), version);
        let eval_id = if creates_eval {
            txn.next_frame();
            create_eval(txn, &key, "job-register", priority, &model.typ, txn.index)
        } else {
            String::new()
        };
        let eval_create_index = if creates_eval { txn.index } else { 0 };
        WriteReply {
            eval_id,
            eval_create_index,
            job_modify_index: txn.index,
            warnings: String::new(),
            index: txn.index,
        }
    }))
}

fn e_jmi(txn: &Txn<'_>, key: &Key) -> u64 {
    txn.t.jobs.get(key).map(|r| r.cur.job_modify_index).unwrap_or(0)
}

/// Copies the old counts (and task resources) into groups that exist in both jobs.
fn preserve(job: &mut Map<String, Value>, old: &Map<String, Value>, counts: bool, resources: bool) {
    let old_groups = old.get("TaskGroups").and_then(Value::as_array).cloned().unwrap_or_default();
    let Some(Value::Array(groups)) = job.get_mut("TaskGroups") else { return };
    for g in groups.iter_mut() {
        let name = g.get("Name").cloned();
        let Some(og) = old_groups.iter().find(|o| o.get("Name") == name.as_ref()) else { continue };
        if counts && let (Some(c), Value::Object(gm)) = (og.get("Count").cloned(), &mut *g) {
            gm.insert("Count".into(), c);
        }
        if resources {
            let old_tasks = og.get("Tasks").and_then(Value::as_array).cloned().unwrap_or_default();
            if let Some(Value::Array(tasks)) = g.get_mut("Tasks") {
                for t in tasks.iter_mut() {
                    let tname = t.get("Name").cloned();
                    let res = old_tasks
                        .iter()
                        .find(|o| o.get("Name") == tname.as_ref())
                        .and_then(|o| o.get("Resources"))
                        .cloned();
                    if let (Some(r), Value::Object(tm)) = (res, &mut *t) {
                        tm.insert("Resources".into(), r);
                    }
                }
            }
        }
    }
}

/// Stores a new job version (state store `upsertJobImpl`): Version as given, indexes = this write,
/// SubmitTime = now, `Stable:false`; keeps `CreateIndex`; tracks 6 versions; updates the summary.
pub fn upsert_job(txn: &mut Txn<'_>, key: &Key, spec: Arc<str>, model: Arc<JobModel>, version: u64) {
    let idx = txn.index;
    let now = txn.unix();
    let existing = txn.t.jobs.remove(key);
    let create_index = existing.as_ref().map(|e| e.cur.create_index).unwrap_or(idx);
    let mut rec = JobRecord {
        spec,
        model: model.clone(),
        namespace: key.0.clone(),
        id: key.1.clone(),
        version,
        stable: false,
        status: "pending".into(),
        status_description: String::new(),
        submit_time: now,
        create_index,
        modify_index: idx,
        job_modify_index: idx,
        delta: None,
    };
    let mut row = match existing {
        Some(mut e) => {
            rec.status = e.cur.status.clone();
            e.cur = rec.clone();
            e
        }
        None => JobRow {
            cur: rec.clone(),
            versions: VecDeque::new(),
            summary: Summary { create_index: idx, modify_index: idx, ..Summary::default() },
            scaling_events: Default::default(),
            scaling_index: 0,
            eval_pending: false,
            queued: Default::default(),
        },
    };
    row.push_version(rec);
    let mut changed = false;
    for g in &model.groups {
        if !row.summary.groups.contains_key(&g.name) {
            row.summary.groups.insert(g.name.clone(), Counts::default());
            changed = true;
        }
    }
    if changed || row.summary.create_index == idx {
        row.summary.modify_index = idx;
        txn.touch(Table::JobSummary);
    }
    txn.t.jobs.insert(key.clone(), row);
    txn.touch(Table::Jobs);
    let status = compute_status(txn, key, true);
    if let Some(r) = txn.t.jobs.get_mut(key) {
        r.cur.status = status.clone();
        if let Some(v) = r.versions.front_mut() {
            v.status = status;
        }
    }
    emit_job(txn, key);
}

/// Emits a Job event with the current job.
pub fn emit_job(txn: &mut Txn<'_>, key: &Key) {
    if let Some(r) = txn.t.jobs.get(key) {
        let payload = Payload::Job(Box::new(r.cur.clone()), false);
        txn.emit_payload("Job", &key.1, &key.0, Vec::new(), payload);
    }
}

/// Creates a pending evaluation for a job and wakes the scheduler; returns its ID.
pub fn create_eval(
    txn: &mut Txn<'_>,
    key: &Key,
    triggered_by: &str,
    priority: i64,
    typ: &str,
    job_modify_index: u64,
) -> String {
    let id = txn.uuid();
    let now = txn.unix();
    let eval = Eval {
        id: id.clone(),
        namespace: key.0.clone(),
        job_id: key.1.clone(),
        priority,
        typ: typ.to_string(),
        triggered_by: triggered_by.to_string(),
        job_modify_index,
        status: EvalStatus::Pending,
        status_description: String::new(),
        previous_eval: String::new(),
        blocked_eval: String::new(),
        failed_tg_allocs: Default::default(),
        queued: None,
        create_index: txn.index,
        modify_index: txn.index,
        create_time: now,
        modify_time: now,
    };
    evals::put(txn, eval);
    txn.t.pending_evals.insert(key.clone());
    if let Some(r) = txn.t.jobs.get_mut(key) {
        r.eval_pending = true;
    }
    id
}

/// `getJobStatus`: system/periodic/parameterized jobs run until stopped; a live allocation means
/// running; an outstanding (pending or blocked) eval means pending; otherwise dead (every job has had an eval).
pub fn compute_status(txn: &Txn<'_>, key: &Key, eval_outstanding: bool) -> String {
    let Some(row) = txn.t.jobs.get(key) else { return "dead".into() };
    let m = &row.cur.model;
    if (m.typ == "system" || m.periodic || m.parameterized) && !m.stop {
        return "running".into();
    }
    if txn.t.job_allocs(key).any(|a| a.live()) {
        return "running".into();
    }
    if eval_outstanding || row.eval_pending || txn.t.blocked.contains(key) {
        return "pending".into();
    }
    "dead".into()
}

/// Recomputes a job's status and summary after allocations changed; emits Job events on change.
pub fn refresh_job(txn: &mut Txn<'_>, key: &Key) {
    let mut counts: std::collections::BTreeMap<String, Counts> = std::collections::BTreeMap::new();
    for a in txn.t.job_allocs(key) {
        let c = counts.entry(a.group.clone()).or_default();
        match a.client_status {
            "pending" => c.starting += 1,
            "running" => c.running += 1,
            "complete" => c.complete += 1,
            "failed" => c.failed += 1,
            "lost" => c.lost += 1,
            _ => {}
        }
    }
    let status = compute_status(txn, key, false);
    let idx = txn.index;
    let Some(row) = txn.t.jobs.get_mut(key) else { return };
    let mut new_groups = row.summary.groups.clone();
    for (g, c) in new_groups.iter_mut() {
        *c = counts.remove(g).unwrap_or_default();
        c.queued = row.queued.get(g).copied().unwrap_or(0);
    }
    new_groups.extend(counts);
    let mut summary_changed = false;
    if new_groups != row.summary.groups {
        row.summary.groups = new_groups;
        row.summary.modify_index = idx;
        summary_changed = true;
    }
    let status_changed = status != row.cur.status;
    if status_changed {
        row.cur.status = status;
        row.cur.modify_index = idx;
    }
    if summary_changed {
        txn.touch(Table::JobSummary);
    }
    if status_changed {
        txn.touch(Table::Jobs);
        emit_job(txn, key);
    }
}

/// `DELETE /v1/job/:id` (B8). `Ok(None)` for a missing job (200 with zero fields).
pub fn deregister(st: &mut NomadState, shared: &Shared, key: &Key, purge: bool, eval_priority: i64) -> WriteReply {
    let Some(row) = st.t.jobs.get(key) else { return WriteReply::default() };
    let model = row.cur.model.clone();
    let priority = if eval_priority > 0 { eval_priority } else { model.priority };
    let creates_eval = !(model.periodic || model.parameterized);
    st.write(shared, "JobDeregistered", |txn| {
        let mut job_modify_index = txn.index;
        if purge {
            if let Some(r) = txn.t.jobs.remove(key) {
                txn.emit_payload("Job", &key.1, &key.0, Vec::new(), Payload::Job(Box::new(r.cur), true));
            }
            txn.touch(Table::Jobs);
            txn.touch(Table::JobSummary);
        } else if let Some(r) = txn.t.jobs.get(key) {
            if r.cur.model.stop {
                job_modify_index = r.cur.job_modify_index;
            } else {
                let mut spec = r.cur.spec_map();
                spec.insert("Stop".into(), json!(true));
                let text = spec_text(&mut spec);
                let version = r.cur.version + 1;
                upsert_job(txn, key, text, Arc::new(JobModel::from_job(&spec)), version);
            }
        }
        let (eval_id, eval_index) = if creates_eval {
            txn.next_frame();
            let id = create_eval(txn, key, "job-deregister", priority, &model.typ, job_modify_index);
            (id, txn.index)
        } else {
            (String::new(), 0)
        };
        WriteReply {
            eval_id,
            eval_create_index: eval_index,
            job_modify_index,
            warnings: String::new(),
            index: txn.index,
        }
    })
}

/// `POST /v1/job/:id/revert` (B9) after the HTTP checks.
pub fn revert(
    st: &mut NomadState,
    shared: &Shared,
    key: &Key,
    version: u64,
    enforce_prior: Option<u64>,
    token_accessor: String,
) -> Result<WriteReply, ApiError> {
    let Some(row) = st.t.jobs.get(key) else {
        return Err(ApiError::internal(format!("job \"{}\" not found", key.1)));
    };
    if let Some(p) = enforce_prior.filter(|p| *p != row.cur.version) {
        return Err(ApiError::internal(format!("Current job has version {}; enforcing version {p}", row.cur.version)));
    }
    if version == row.cur.version {
        return Err(ApiError::internal("can't revert to current version"));
    }
    let Some(old) = row.version(version) else {
        return Err(ApiError::internal(format!(
            "job \"{}\" in namespace \"{}\" at version {version} not found",
            key.1, key.0
        )));
    };
    let mut job = old.spec_map();
    job.insert("Version".into(), json!(old.version));
    let args = RegisterArgs {
        job,
        enforce_index: true,
        job_modify_index: row.cur.job_modify_index,
        preserve_counts: false,
        preserve_resources: false,
        token_accessor,
        eval_priority: 0,
    };
    register(st, shared, args)
}

/// `POST /v1/job/:id/stable` (B9): sets `Stable` on a version without a new version.
pub fn set_stable(
    st: &mut NomadState,
    shared: &Shared,
    key: &Key,
    version: u64,
    stable: bool,
) -> Result<u64, ApiError> {
    let found = st.t.jobs.get(key).is_some_and(|r| r.versions.iter().any(|v| v.version == version));
    if !found {
        return Err(ApiError::internal(format!("job \"{}\" at version {version} not found", key.1)));
    }
    Ok(st.write(shared, "JobStabilityRequest", |txn| {
        mark_stable(txn, key, version, stable);
        txn.index
    }))
}

/// Sets a version's `Stable` flag (and the current job's when it is that version).
pub fn mark_stable(txn: &mut Txn<'_>, key: &Key, version: u64, stable: bool) {
    let idx = txn.index;
    let Some(row) = txn.t.jobs.get_mut(key) else { return };
    for v in row.versions.iter_mut().filter(|v| v.version == version) {
        v.stable = stable;
        v.modify_index = idx;
    }
    if row.cur.version == version {
        row.cur.stable = stable;
        row.cur.modify_index = idx;
        txn.touch(Table::Jobs);
        emit_job(txn, key);
    }
    txn.touch(Table::Jobs);
}
