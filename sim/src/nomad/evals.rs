//! Evaluations as stored records (`structs.Evaluation`): created pending by writes, completed by the scheduler,
//! blocked when placements failed, unblocked when capacity appears.
//!
//! ```text
//!   pending ──scheduler──▶ complete                      (everything placed)
//!      │                   complete + FailedTGAllocs ──▶ a new eval: blocked  (something did not fit)
//!      │
//!   blocked ──capacity appears──▶ scheduler ──▶ complete (placed) │ blocked again (ReblockEval)
//!      └──another eval of the job places everything──▶ cancelled "evaluation \"<id>\" successful"
//!      └──a newer blocked eval for the job──▶ cancelled "existing blocked evaluation exists for job \"<id>\""
//! ```
//!
//! Sources: `scheduler/generic_sched.go` (`createBlockedEval`, `blockedEvalFailedPlacements`, the reblock of a
//! blocked eval that still fails), `nomad/state/state_store.go` `nestedUpsertEval` (cancelling a job's blocked evals
//! when an eval completes with no `FailedTGAllocs`; note that the description quotes the blocked eval's own ID),
//! `nomad/leader.go` `reapDupBlockedEvaluations` (one blocked eval per job).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::deploy::{Changes, reconcile};
use super::jobs::refresh_job;
use super::nodes::AllocMetric;
use super::state::{Key, NomadState, Table, Txn};
use crate::{Clock, Shared};

/// `StatusDescription` of a blocked eval created because placements failed (`blockedEvalFailedPlacements`).
pub const BLOCKED_DESC: &str = "created to place remaining allocations";

/// `TriggeredBy` of a blocked eval (`EvalTriggerQueuedAllocs`).
pub const TRIGGER_QUEUED_ALLOCS: &str = "queued-allocs";

/// Evaluation states (`EvalStatus*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalStatus {
    /// Waiting for the scheduler.
    Pending,
    /// Waiting for capacity (non-terminal: the job stays `pending` while nothing runs).
    Blocked,
    /// Processed.
    Complete,
    /// Superseded.
    Cancelled,
}

impl EvalStatus {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            EvalStatus::Pending => "pending",
            EvalStatus::Blocked => "blocked",
            EvalStatus::Complete => "complete",
            EvalStatus::Cancelled => "cancelled",
        }
    }

    /// `TerminalStatus()`.
    pub fn terminal(self) -> bool {
        matches!(self, EvalStatus::Complete | EvalStatus::Cancelled)
    }
}

/// One evaluation.
#[derive(Debug, Clone)]
pub struct Eval {
    /// `ID`.
    pub id: String,
    /// `Namespace`.
    pub namespace: String,
    /// `JobID`.
    pub job_id: String,
    /// `Priority`.
    pub priority: i64,
    /// `Type` (the job type).
    pub typ: String,
    /// `TriggeredBy`.
    pub triggered_by: String,
    /// `JobModifyIndex`.
    pub job_modify_index: u64,
    /// `Status`.
    pub status: EvalStatus,
    /// `StatusDescription`.
    pub status_description: String,
    /// `PreviousEval`: for a blocked eval, the eval whose placements failed.
    pub previous_eval: String,
    /// `BlockedEval`: the blocked eval this one created.
    pub blocked_eval: String,
    /// `FailedTGAllocs`, per group.
    pub failed_tg_allocs: BTreeMap<String, AllocMetric>,
    /// `QueuedAllocations`, per group, once processed.
    pub queued: Option<BTreeMap<String, u64>>,
    /// `CreateIndex`.
    pub create_index: u64,
    /// `ModifyIndex`.
    pub modify_index: u64,
    /// `CreateTime` (Unix ns).
    pub create_time: i64,
    /// `ModifyTime` (Unix ns).
    pub modify_time: i64,
}

impl Eval {
    /// `api.Evaluation` JSON, as `GET /v1/evaluation/:id` and event payloads show it.
    pub fn render(&self, _clock: &Clock) -> Value {
        let failed = if self.failed_tg_allocs.is_empty() {
            Value::Null
        } else {
            Value::Object(self.failed_tg_allocs.iter().map(|(g, m)| (g.clone(), m.render())).collect())
        };
        json!({"ID": self.id, "Namespace": self.namespace, "Priority": self.priority, "Type": self.typ,
            "TriggeredBy": self.triggered_by, "JobID": self.job_id, "JobModifyIndex": self.job_modify_index,
            "NodeID": "", "NodeModifyIndex": 0, "DeploymentID": "", "Status": self.status.as_str(),
            "StatusDescription": self.status_description, "Wait": 0, "WaitUntil": null, "NextEval": "",
            "PreviousEval": self.previous_eval, "BlockedEval": self.blocked_eval, "RelatedEvals": null,
            "FailedTGAllocs": failed, "ClassEligibility": null, "QuotaLimitReached": "",
            "EscapedComputedClass": false, "AnnotatePlan": false, "QueuedAllocations": self.queued,
            "LeaderACL": "", "SnapshotIndex": 0, "CreateIndex": self.create_index, "ModifyIndex": self.modify_index,
            "CreateTime": self.create_time, "ModifyTime": self.modify_time})
    }
}

/// Terminal evaluations kept per job; older ones are garbage-collected without an index bump (memory bound, as for
/// allocations and deployments).
const KEEP_TERMINAL: usize = 3;

/// Stores (inserts or replaces) an eval at this write and emits its `Evaluation` event.
pub fn put(txn: &mut Txn<'_>, mut eval: Eval) {
    eval.modify_index = txn.index;
    eval.modify_time = txn.unix();
    let snap = eval.clone();
    let payload = super::events::Payload::Render(std::sync::Arc::new(move |c| json!({"Evaluation": snap.render(c)})));
    let (ns, job) = (eval.namespace.clone(), eval.job_id.clone());
    txn.emit_payload("Evaluation", &eval.id, &ns, vec![job.clone(), String::new()], payload);
    let key = (ns, job);
    let ids = txn.t.evals_by_job.entry(key).or_default();
    if !ids.contains(&eval.id) {
        ids.push(eval.id.clone());
    }
    txn.t.evals.insert(eval.id.clone(), eval);
    txn.touch(Table::Evals);
}

/// The job's evaluations in `status`, oldest first.
pub fn of_job(txn: &Txn<'_>, key: &Key, status: EvalStatus) -> Vec<Eval> {
    txn.t
        .evals_by_job
        .get(key)
        .into_iter()
        .flatten()
        .filter_map(|id| txn.t.evals.get(id))
        .filter(|e| e.status == status)
        .cloned()
        .collect()
}

/// Drops the oldest terminal evaluations of a job beyond [`KEEP_TERMINAL`].
pub fn gc(txn: &mut Txn<'_>, key: &Key) {
    let t = &mut *txn.t;
    let Some(ids) = t.evals_by_job.get_mut(key) else { return };
    let terminal: Vec<String> =
        ids.iter().filter(|id| t.evals.get(*id).is_none_or(|e| e.status.terminal())).cloned().collect();
    if terminal.len() > KEEP_TERMINAL {
        let drop: std::collections::BTreeSet<&String> = terminal[..terminal.len() - KEEP_TERMINAL].iter().collect();
        ids.retain(|id| !drop.contains(id));
        for id in drop {
            t.evals.remove(id);
        }
    }
}

/// `TriggeredBy` of the follow-up evaluation that retries failed allocations (`EvalTriggerRetryFailedAlloc`).
const TRIGGER_RETRY_FAILED_ALLOC: &str = "alloc-failure";

/// Runs the scheduler for one job: a `PlanResult` write when anything changes; when placements failed, a blocked
/// eval in its own write (`createBlockedEval`); then the evaluations' completion (`EvaluationUpdated`), which sets
/// `QueuedAllocations`, the summary's `Queued` and, through the blocked eval, the job status.
pub fn process_eval(st: &mut NomadState, shared: &Shared, key: &Key) {
    st.t.pending_evals.remove(key);
    let failed = st.write(shared, "PlanResult", |txn| {
        let mut ch = Changes::default();
        reconcile(txn, key, &mut ch);
        let failed = std::mem::take(&mut ch.failed);
        ch.flush(txn);
        failed
    });
    let groups: Vec<String> =
        st.t.jobs.get(key).map(|r| r.cur.model.groups.iter().map(|g| g.name.clone()).collect()).unwrap_or_default();
    let queued: BTreeMap<String, u64> =
        groups.into_iter().map(|g| (g.clone(), failed.get(&g).map_or(0, |m| 1 + m.coalesced_failures))).collect();
    let (pending, blocked) = {
        let (mut p, mut b) = (Vec::new(), Vec::new());
        for e in st.t.evals_by_job.get(key).into_iter().flatten().filter_map(|id| st.t.evals.get(id)) {
            match e.status {
                EvalStatus::Pending => p.push(e.clone()),
                EvalStatus::Blocked => b.push(e.clone()),
                EvalStatus::Complete | EvalStatus::Cancelled => {}
            }
        }
        (p, b)
    };
    // A timer-driven re-evaluation (reschedule) has no stored eval: Nomad's follow-up eval, made here.
    let followup = (pending.is_empty() && blocked.is_empty()).then(|| shared.uuid());
    let mut new_blocked = String::new();
    if !failed.is_empty() && (!pending.is_empty() || blocked.is_empty()) {
        new_blocked = st.write(shared, "EvaluationUpdated", |txn| {
            let prev = pending.last();
            let id = txn.uuid();
            let now = txn.unix();
            put(
                txn,
                Eval {
                    id: id.clone(),
                    namespace: key.0.clone(),
                    job_id: key.1.clone(),
                    priority: prev.map_or(50, |p| p.priority),
                    typ: prev.map_or_else(|| "service".to_string(), |p| p.typ.clone()),
                    triggered_by: TRIGGER_QUEUED_ALLOCS.into(),
                    job_modify_index: prev.map_or(0, |p| p.job_modify_index),
                    status: EvalStatus::Blocked,
                    status_description: BLOCKED_DESC.into(),
                    previous_eval: prev.map(|p| p.id.clone()).or_else(|| followup.clone()).unwrap_or_default(),
                    blocked_eval: String::new(),
                    failed_tg_allocs: failed.clone(),
                    queued: None,
                    create_index: txn.index,
                    modify_index: txn.index,
                    create_time: now,
                    modify_time: now,
                },
            );
            // One blocked evaluation per job: older ones are duplicates (`reapDupBlockedEvaluations`).
            for mut b in blocked.iter().cloned() {
                b.status = EvalStatus::Cancelled;
                b.status_description = format!("existing blocked evaluation exists for job {:?}", key.1);
                put(txn, b);
            }
            txn.t.blocked.insert(key.clone());
            id
        });
    }
    st.write(shared, "EvaluationUpdated", |txn| {
        if let Some(r) = txn.t.jobs.get_mut(key) {
            r.eval_pending = false;
            r.queued = queued.clone();
        }
        txn.touch(Table::Evals);
        let now = txn.unix();
        let mut done = pending.clone();
        if let Some(id) = followup.clone() {
            let (priority, typ, job_modify_index) = txn.t.jobs.get(key).map_or((50, "service".to_string(), 0), |r| {
                (r.cur.model.priority, r.cur.model.typ.clone(), r.cur.job_modify_index)
            });
            done.push(Eval {
                id,
                namespace: key.0.clone(),
                job_id: key.1.clone(),
                priority,
                typ,
                triggered_by: TRIGGER_RETRY_FAILED_ALLOC.into(),
                job_modify_index,
                status: EvalStatus::Pending,
                status_description: String::new(),
                previous_eval: String::new(),
                blocked_eval: String::new(),
                failed_tg_allocs: BTreeMap::new(),
                queued: None,
                create_index: txn.index,
                modify_index: txn.index,
                create_time: now,
                modify_time: now,
            });
        }
        let last = done.len().saturating_sub(1);
        for (i, mut e) in done.into_iter().enumerate() {
            e.status = EvalStatus::Complete;
            e.queued = Some(queued.clone());
            if i == last {
                e.failed_tg_allocs = failed.clone();
                e.blocked_eval = new_blocked.clone();
            }
            put(txn, e);
        }
        if pending.is_empty() {
            // The blocked evaluation itself ran (unblocked): complete when everything fit, else blocked again
            // (`ReblockEval`).
            for mut b in blocked.iter().filter(|&b| new_blocked.is_empty() || b.id != new_blocked).cloned() {
                if failed.is_empty() {
                    b.status = EvalStatus::Complete;
                } else {
                    b.failed_tg_allocs = failed.clone();
                }
                b.queued = Some(queued.clone());
                put(txn, b);
            }
        } else if failed.is_empty() {
            for mut b in blocked.iter().cloned() {
                b.status = EvalStatus::Cancelled;
                // `nestedUpsertEval` quotes the blocked eval's own ID.
                b.status_description = format!("evaluation {:?} successful", b.id);
                put(txn, b);
            }
        }
        if failed.is_empty() {
            txn.t.blocked.remove(key);
        }
        gc(txn, key);
        refresh_job(txn, key);
    });
}
