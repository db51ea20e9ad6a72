//! Time-driven parts of the model: the client (allocations start and report health), the
//! deployment watcher (failing, auto-promotion, auto-revert), and the deployment write endpoints.
//!
//! ```text
//!   placed ──1s──▶ running ──MinHealthyTime──▶ healthy ──▶ (scheduler places the next batch)
//!                     │
//!                     ├──"unhealthy" mode──▶ failed ──▶ reschedule or fail deployment
//!                     └──HealthyDeadline, health unknown──▶ unhealthy ──▶ same
//! ```

use std::collections::BTreeSet;
use std::ops::Bound;
use std::time::Duration;

use super::deploy::{Changes, can_reschedule, emit_deployment, eval_for, touch_deployment};
use super::error::{ApiError, multierror};
use super::evals::process_eval;
use super::jobs::upsert_job;
use super::model::{GroupModel, desc};
use super::state::{HealthMode, Key, NomadState, Timer, Txn};
use crate::{Shared, SimInstant};

/// Delay before a task in `unhealthy` mode fails.
const FAIL_DELAY: Duration = Duration::from_secs(1);

/// Timers one tick fires at least before it stops at the next instant; the rest wait for the next tick. Timers due
/// at one instant always fire in one tick (client updates before the progress check, as before the bound).
const TIMER_BATCH: usize = 128;
/// Evaluations one tick processes at most; the rest wait for the next tick.
const EVAL_BATCH: usize = 4;

/// What the background loop does after a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// More is due already: yield to the HTTP handlers, then tick again.
    Now,
    /// Sleep until this deadline or a wake-up.
    At(SimInstant),
    /// Nothing is scheduled: sleep until a wake-up.
    Idle,
}

/// Runs a bounded share of what is due now: timers, then pending evaluations. The bound keeps the model's lock
/// short: Nomad serves HTTP reads from a snapshot of its state store while its scheduler workers run, so a backlog
/// of evaluations never stalls the API there, and must not stall it here (a tick that ran every due evaluation under
/// the lock held every request behind it for seconds on a loaded machine).
pub fn tick(st: &mut NomadState, shared: &Shared) -> Next {
    let now = shared.clock.now();
    let mut client = Vec::new();
    let mut progress = BTreeSet::new();
    let mut fired = 0;
    let mut last = None;
    while st.t.timers.first().is_some_and(|t| t.0 <= now && (fired < TIMER_BATCH || Some(t.0) == last)) {
        fired += 1;
        let Some((at, _, t)) = st.t.timers.pop_first() else { break };
        last = Some(at);
        match t {
            Timer::Progress(d) => {
                progress.insert(d);
            }
            Timer::Eval(k) => {
                if st.t.jobs.contains_key(&k) {
                    st.t.pending_evals.insert(k);
                }
            }
            other => client.push(other),
        }
    }
    let mut to_fail: Vec<(String, &'static str)> = Vec::new();
    let mut promote_check = BTreeSet::new();
    if !client.is_empty() {
        st.write(shared, "AllocationUpdated", |txn| {
            client_updates(txn, client, &mut to_fail, &mut promote_check);
        });
    }
    for d in progress {
        if progress_missed(st, &d, now) {
            to_fail.push((d, desc::PROGRESS_DEADLINE));
        }
    }
    let mut failed = BTreeSet::new();
    for (d, why) in to_fail {
        if failed.insert(d.clone()) {
            let _ = fail(st, shared, &d, why);
        }
    }
    for d in promote_check {
        auto_promote(st, shared, &d);
    }
    // Capacity appeared (a node, or allocations that stopped): every blocked evaluation runs again
    // (`BlockedEvals.Unblock`; all modelled nodes share one computed class).
    if std::mem::take(&mut st.t.capacity_changed) {
        let blocked: Vec<Key> = st.t.blocked.iter().cloned().collect();
        st.t.pending_evals.extend(blocked);
    }
    for k in next_evals(st) {
        process_eval(st, shared, &k);
    }
    let timer_due = st.t.timers.first().map(|t| t.0);
    if !st.t.pending_evals.is_empty() || timer_due.is_some_and(|t| t <= now) {
        Next::Now
    } else {
        timer_due.map_or(Next::Idle, Next::At)
    }
}

/// The next [`EVAL_BATCH`] jobs with a pending evaluation, round robin from the last one processed, so a job whose
/// evaluations keep coming cannot hold back the others.
fn next_evals(st: &mut NomadState) -> Vec<Key> {
    let pending = &st.t.pending_evals;
    let keys: Vec<Key> = match st.t.eval_cursor.take() {
        Some(c) => pending
            .range((Bound::Excluded(&c), Bound::Unbounded))
            .chain(pending.range(..=&c))
            .take(EVAL_BATCH)
            .cloned()
            .collect(),
        None => pending.iter().take(EVAL_BATCH).cloned().collect(),
    };
    st.t.eval_cursor = keys.last().cloned();
    keys
}

fn group_of(txn: &Txn<'_>, ns: &str, job: &str, version: u64, group: &str) -> Option<GroupModel> {
    let row = txn.t.jobs.get(&(ns.to_string(), job.to_string()))?;
    let rec =
        if row.cur.version == version { Some(&row.cur) } else { row.versions.iter().find(|v| v.version == version) };
    rec.and_then(|r| r.model.group(group)).cloned()
}

fn client_updates(
    txn: &mut Txn<'_>,
    timers: Vec<Timer>,
    to_fail: &mut Vec<(String, &'static str)>,
    promote: &mut BTreeSet<String>,
) {
    let now = txn.now;
    let mut ch = Changes::default();
    let mut evals: BTreeSet<Key> = BTreeSet::new();
    for t in timers {
        match t {
            Timer::AllocRunning(id) => {
                let Some(a) = txn.t.allocs.get_mut(&id) else { continue };
                if !a.live() || a.client_status != "pending" {
                    continue;
                }
                a.client_status = "running";
                a.running_since = Some(now);
                ch.alloc(txn, &id);
                schedule_health(txn, &id);
            }
            Timer::AllocHealth(id, healthy, tracker) => {
                let Some(a) = txn.t.allocs.get(&id) else { continue };
                if !a.live() || a.client_status != "running" || a.has_health() || a.tracker != tracker {
                    continue;
                }
                if healthy {
                    mark_healthy(txn, &mut ch, &id, promote);
                } else {
                    mark_unhealthy(txn, &mut ch, &id, true, to_fail);
                }
                if let Some(a) = txn.t.allocs.get(&id) {
                    evals.insert((a.namespace.clone(), a.job_id.clone()));
                }
            }
            Timer::HealthyDeadline(id, tracker) => {
                let Some(a) = txn.t.allocs.get(&id) else { continue };
                if !a.live() || a.client_status != "running" || a.has_health() || a.tracker != tracker {
                    continue;
                }
                let k = (a.namespace.clone(), a.job_id.clone());
                mark_unhealthy(txn, &mut ch, &id, false, to_fail);
                evals.insert(k);
            }
            Timer::Progress(_) | Timer::Eval(_) => {}
        }
    }
    ch.flush(txn);
    for k in evals {
        if txn.t.jobs.contains_key(&k) {
            eval_for(txn, &k, "deployment-watcher");
        }
    }
}

/// Arms the client's health reporting for a running allocation, per the job version's health
/// mode: healthy after `MinHealthyTime` (plus the mode's delay), failing after 1 s, or never; and
/// the `HealthyDeadline`, all counted from now.
///
/// Also used after in-place updates, which do not restart the task but restart the client's health tracker:
/// [`restart_health`].
pub fn schedule_health(txn: &mut Txn<'_>, id: &str) {
    let now = txn.now;
    let Some(a) = txn.t.allocs.get(id).cloned() else { return };
    let tracker = a.tracker;
    let Some(g) = group_of(txn, &a.namespace, &a.job_id, a.job_version, &a.group) else { return };
    let mode = txn.t.health_mode(&a.namespace, &a.job_id, a.job_version);
    let id = id.to_string();
    match (a.deployment_id.as_ref(), g.strategy()) {
        (Some(_), Some(s)) if s.manual => {}
        (Some(_), Some(s)) => {
            let mht = s.min_healthy_time;
            match mode {
                HealthMode::Healthy => txn.t.add_timer(now + mht, Timer::AllocHealth(id.clone(), true, tracker)),
                HealthMode::Delay(d) => txn.t.add_timer(now + d + mht, Timer::AllocHealth(id.clone(), true, tracker)),
                HealthMode::Unhealthy => txn.t.add_timer(
                    now + FAIL_DELAY.min(s.healthy_deadline),
                    Timer::AllocHealth(id.clone(), false, tracker),
                ),
                HealthMode::Never => {}
            }
            txn.t.add_timer(now + s.healthy_deadline, Timer::HealthyDeadline(id, tracker));
        }
        _ if mode == HealthMode::Unhealthy => txn.t.add_timer(now + FAIL_DELAY, Timer::AllocHealth(id, false, tracker)),
        _ => {}
    }
}

/// An in-place update reached the client: its health tracker restarts (`allocHealthWatcherHook.Update` in
/// hashicorp/nomad `client/allocrunner/health_hook.go`). Timers of the old tracker are dropped (by generation);
/// health is cleared when the allocation moved into another deployment (the scheduler already sent
/// `DeploymentStatus = nil`, `generic_sched.go`); a running allocation then reports health again per the new
/// version's mode, with `MinHealthyTime` and `HealthyDeadline` counted from now. A pending one is armed when it
/// starts running, as for a new placement.
pub fn restart_health(txn: &mut Txn<'_>, id: &str, new_deployment: bool) {
    let Some(a) = txn.t.allocs.get_mut(id) else { return };
    a.tracker += 1;
    if new_deployment {
        a.health = None;
    }
    if a.live() && a.client_status == "running" && !a.has_health() {
        schedule_health(txn, id);
    }
}

/// The allocation's health record, created on the first report in its deployment.
fn reported_health(a: &mut super::model::Alloc, idx: u64) -> &mut super::model::AllocHealth {
    a.health.get_or_insert(super::model::AllocHealth {
        healthy: None,
        timestamp: None,
        canary: false,
        modify_index: idx,
    })
}

fn mark_healthy(txn: &mut Txn<'_>, ch: &mut Changes, id: &str, promote: &mut BTreeSet<String>) {
    let (now, idx) = (txn.now, txn.index);
    let Some(a) = txn.t.allocs.get_mut(id) else { return };
    let canary = a.is_canary();
    let h = reported_health(a, idx);
    h.healthy = Some(true);
    h.timestamp = Some(now);
    h.modify_index = idx;
    let dep = a.deployment_id.clone();
    let group = a.group.clone();
    ch.alloc(txn, id);
    let Some(dep) = dep else { return };
    let mut deadline = None;
    if let Some(d) = txn.t.deployments.get_mut(&dep).filter(|d| d.active()) {
        if let Some(gd) = d.groups.get_mut(&group) {
            gd.healthy_allocs += 1;
            if !gd.progress_deadline.is_zero() {
                let by = now + gd.progress_deadline;
                gd.require_progress_by = Some(by);
                deadline = Some(by);
            }
        }
        if canary {
            promote.insert(dep.clone());
        }
        ch.deployment(txn, &dep);
    }
    if let Some(by) = deadline {
        txn.t.add_timer(by, Timer::Progress(dep));
    }
}

fn mark_unhealthy(
    txn: &mut Txn<'_>,
    ch: &mut Changes,
    id: &str,
    task_failed: bool,
    to_fail: &mut Vec<(String, &'static str)>,
) {
    let (now, idx) = (txn.now, txn.index);
    let Some(a) = txn.t.allocs.get(id).cloned() else { return };
    let g = group_of(txn, &a.namespace, &a.job_id, a.job_version, &a.group);
    if let Some(x) = txn.t.allocs.get_mut(id) {
        let h = reported_health(x, idx);
        h.healthy = Some(false);
        h.timestamp = Some(now);
        h.modify_index = idx;
        if task_failed {
            x.client_status = "failed";
            x.client_description = "Failed tasks".into();
        }
    }
    ch.alloc(txn, id);
    let delay = g.as_ref().and_then(|g| can_reschedule(g, &a));
    let pd_zero = g.as_ref().and_then(|g| g.strategy()).is_none_or(|s| s.progress_deadline.is_zero());
    if let Some(dep) = a.deployment_id.clone()
        && let Some(d) = txn.t.deployments.get_mut(&dep).filter(|d| d.active())
    {
        if let Some(gd) = d.groups.get_mut(&a.group) {
            gd.unhealthy_allocs += 1;
        }
        ch.deployment(txn, &dep);
        if pd_zero || delay.is_none() {
            to_fail.push((dep, desc::FAILED_ALLOCS));
            return;
        }
    }
    if let Some(d) = delay {
        let at = now + d;
        if let Some(x) = txn.t.allocs.get_mut(id) {
            x.reschedule_at = Some(at);
        }
        txn.t.add_timer(at, Timer::Eval((a.namespace.clone(), a.job_id.clone())));
    }
}

fn progress_missed(st: &NomadState, dep: &str, now: SimInstant) -> bool {
    let Some(d) = st.t.deployments.get(dep) else { return false };
    if d.status != "running" {
        return false;
    }
    d.groups.values().any(|gd| {
        let waiting_promotion = gd.desired_canaries > 0 && !gd.promoted && gd.healthy_allocs >= gd.desired_canaries;
        let complete = gd.healthy_allocs >= gd.desired_total && (gd.desired_canaries == 0 || gd.promoted);
        gd.require_progress_by.is_some_and(|by| by <= now) && !complete && !waiting_promotion
    })
}

/// Fails a deployment in its own `DeploymentStatusUpdate` write, with auto-revert. Returns the
/// reverted-to version and the write's eval ID and index.
pub fn fail(st: &mut NomadState, shared: &Shared, dep: &str, base: &str) -> Option<(Option<u64>, String, u64)> {
    if !st.t.deployments.get(dep).is_some_and(|d| d.active()) {
        return None;
    }
    Some(st.write(shared, "DeploymentStatusUpdate", |txn| {
        let mut ch = Changes::default();
        let reverted = fail_in_txn(txn, &mut ch, dep, base);
        ch.flush(txn);
        let key = txn.t.deployments.get(dep).map(|d| (d.namespace.clone(), d.job_id.clone()));
        let eval = key.map(|k| eval_for(txn, &k, "deployment-watcher")).unwrap_or_default();
        (reverted, eval, txn.index)
    }))
}

fn fail_in_txn(txn: &mut Txn<'_>, _ch: &mut Changes, dep: &str, base: &str) -> Option<u64> {
    let d = txn.t.deployments.get(dep)?;
    let key = (d.namespace.clone(), d.job_id.clone());
    let auto_revert = d.groups.values().any(|g| g.auto_revert);
    let mut description = base.to_string();
    let mut revert_to = None;
    if auto_revert && let Some(row) = txn.t.jobs.get(&key) {
        let cur = row.cur.clone();
        let stable = row.version_records().into_iter().find(|v| v.stable && v.version != cur.version);
        match stable {
            None => description.push_str(" - no stable job version to auto revert to"),
            Some(v) if v.spec == cur.spec => description.push_str(&format!(
                " - not rolling back to stable job version {} as current job has same specification",
                v.version
            )),
            Some(v) => {
                description.push_str(&format!(" - rolling back to job version {}", v.version));
                revert_to = Some((v, cur.version + 1));
            }
        }
    }
    if let Some(d) = txn.t.deployments.get_mut(dep) {
        d.status = "failed";
        d.status_description = description;
    }
    // Nomad's UpdateDeploymentStatus writes the deployment first and the reverted job after it, in one
    // transaction: the deployment's event comes first in the frame.
    touch_deployment(txn, dep);
    emit_deployment(txn, dep);
    let reverted = revert_to.as_ref().map(|(v, _)| v.version);
    if let Some((v, version)) = revert_to {
        upsert_job(txn, &key, v.spec.clone(), v.model.clone(), version);
    }
    reverted
}

fn healthy_canaries(st: &NomadState, ids: &[String]) -> u64 {
    ids.iter().filter(|id| st.t.allocs.get(*id).is_some_and(|a| a.is_healthy())).count() as u64
}

fn auto_promote(st: &mut NomadState, shared: &Shared, dep: &str) {
    let Some(d) = st.t.deployments.get(dep) else { return };
    if d.status != "running" || !d.has_auto_promote() {
        return;
    }
    let ready = d
        .groups
        .values()
        .filter(|g| g.desired_canaries > 0 && !g.promoted)
        .all(|g| healthy_canaries(st, &g.placed_canaries) >= g.desired_canaries);
    if ready {
        let _ = promote(st, shared, dep, None);
    }
}

/// The promote reply: eval ID, deployment modify index, write index.
pub type PromoteReply = (String, u64, u64);

/// `POST /v1/deployment/promote/:id` (B13), also used for auto-promotion.
pub fn promote(
    st: &mut NomadState,
    shared: &Shared,
    dep: &str,
    groups: Option<Vec<String>>,
) -> Result<PromoteReply, ApiError> {
    let Some(d) = st.t.deployments.get(dep) else {
        return Err(ApiError::internal("deployment not found"));
    };
    if !d.active() {
        return Err(ApiError::internal("can't promote terminal deployment"));
    }
    let selected = |name: &String| groups.as_ref().is_none_or(|gs| gs.contains(name));
    let mut errs = Vec::new();
    for (name, g) in d.groups.iter().filter(|(n, _)| selected(n)) {
        if g.desired_canaries == 0 || g.promoted {
            continue;
        }
        let healthy = healthy_canaries(st, &g.placed_canaries);
        if healthy < g.desired_canaries {
            errs.push(format!("Task group \"{name}\" has {healthy}/{} healthy allocations", g.desired_canaries));
        }
    }
    if !errs.is_empty() {
        return Err(ApiError::internal(multierror(&errs)));
    }
    let key = (d.namespace.clone(), d.job_id.clone());
    Ok(st.write(shared, "DeploymentPromotion", |txn| {
        let mut ch = Changes::default();
        let now = txn.now;
        let mut canaries = Vec::new();
        let mut deadlines = Vec::new();
        if let Some(d) = txn.t.deployments.get_mut(dep) {
            for (name, g) in d.groups.iter_mut() {
                if !selected(name) {
                    continue;
                }
                g.promoted = true;
                canaries.extend(g.placed_canaries.iter().cloned());
                if !g.progress_deadline.is_zero() {
                    let by = now + g.progress_deadline;
                    g.require_progress_by = Some(by);
                    deadlines.push(by);
                }
            }
            d.status_description = d.running_description().into();
        }
        for by in deadlines {
            txn.t.add_timer(by, Timer::Progress(dep.to_string()));
        }
        for id in canaries {
            let idx = txn.index;
            if let Some(h) = txn.t.allocs.get_mut(&id).and_then(|a| a.health.as_mut()) {
                h.canary = false;
                h.modify_index = idx;
            }
            ch.alloc(txn, &id);
        }
        ch.deployment(txn, dep);
        ch.flush(txn);
        let eval = eval_for(txn, &key, "deployment-watcher");
        (eval, txn.index, txn.index)
    }))
}

/// `POST /v1/deployment/pause/:id` (B13).
pub fn pause(st: &mut NomadState, shared: &Shared, dep: &str, pause: bool) -> Result<PromoteReply, ApiError> {
    let Some(d) = st.t.deployments.get(dep) else {
        return Err(ApiError::internal("deployment not found"));
    };
    if !d.active() {
        return Err(ApiError::internal(if pause {
            "can't pause terminal deployment"
        } else {
            "can't resume terminal deployment"
        }));
    }
    let key = (d.namespace.clone(), d.job_id.clone());
    Ok(st.write(shared, "DeploymentStatusUpdate", |txn| {
        let mut ch = Changes::default();
        if let Some(d) = txn.t.deployments.get_mut(dep) {
            if pause {
                d.status = "paused";
                d.status_description = desc::PAUSED.into();
            } else {
                d.status = "running";
                d.status_description = d.running_description().into();
            }
        }
        ch.deployment(txn, dep);
        ch.flush(txn);
        let eval = eval_for(txn, &key, "deployment-watcher");
        (eval, txn.index, txn.index)
    }))
}

/// `POST /v1/deployment/allocation-health/:id` (B13): sets allocation health by hand; any
/// unhealthy allocation fails the deployment (with auto-revert).
pub fn set_alloc_health(
    st: &mut NomadState,
    shared: &Shared,
    dep: &str,
    healthy: &[String],
    unhealthy: &[String],
) -> Result<(Option<u64>, String, u64), ApiError> {
    if healthy.is_empty() && unhealthy.is_empty() {
        return Err(ApiError::internal("must specify at least one healthy/unhealthy allocation ID"));
    }
    let Some(d) = st.t.deployments.get(dep) else {
        return Err(ApiError::internal("deployment not found"));
    };
    if !d.active() {
        return Err(ApiError::internal("can't set health of allocations for a terminal deployment"));
    }
    for id in healthy.iter().chain(unhealthy) {
        if st.t.allocs.get(id).is_none_or(|a| a.deployment_id.as_deref() != Some(dep)) {
            return Err(ApiError::internal(format!("Allocation {id} is not part of deployment")));
        }
    }
    let key = (d.namespace.clone(), d.job_id.clone());
    Ok(st.write(shared, "DeploymentAllocHealth", |txn| {
        let mut ch = Changes::default();
        let mut promote = BTreeSet::new();
        let mut to_fail = Vec::new();
        for id in healthy {
            if txn.t.allocs.get(id).is_some_and(|a| !a.is_healthy()) {
                mark_healthy(txn, &mut ch, id, &mut promote);
            }
        }
        for id in unhealthy {
            if txn.t.allocs.get(id).is_some_and(|a| !a.is_unhealthy()) {
                mark_unhealthy(txn, &mut ch, id, false, &mut to_fail);
            }
        }
        let reverted = if unhealthy.is_empty() { None } else { fail_in_txn(txn, &mut ch, dep, desc::FAILED_ALLOCS) };
        ch.flush(txn);
        let eval = eval_for(txn, &key, "deployment-watcher");
        (reverted, eval, txn.index)
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::{Notify, watch};

    use super::*;
    use crate::ClusterConfig;

    fn key(i: usize) -> Key {
        ("default".to_string(), format!("job-{i:02}"))
    }

    #[test]
    fn evaluations_should_be_taken_in_bounded_batches_round_robin() {
        let (tx, _rx) = watch::channel(0);
        let mut st = NomadState::new(tx, Arc::new(Notify::new()), &ClusterConfig::default());
        st.t.pending_evals.extend((0..10).map(key));
        let first = next_evals(&mut st);
        assert_eq!(first, (0..EVAL_BATCH).map(key).collect::<Vec<_>>());
        // The processed jobs leave the set (as `process_eval` does) and job-00 is evaluated again at once: the next
        // batch still goes on after the last one taken, and job-00 waits for the wrap.
        for k in &first {
            st.t.pending_evals.remove(k);
        }
        st.t.pending_evals.insert(key(0));
        assert_eq!(next_evals(&mut st), (EVAL_BATCH..2 * EVAL_BATCH).map(key).collect::<Vec<_>>());
        for k in (EVAL_BATCH..2 * EVAL_BATCH).map(key) {
            st.t.pending_evals.remove(&k);
        }
        let wrapped = next_evals(&mut st);
        assert_eq!(wrapped, vec![key(8), key(9), key(0)], "the end of the set, then the wrap to its start");
    }

    #[test]
    fn timers_due_at_one_instant_should_fire_in_one_tick_beyond_the_batch() {
        let shared = crate::Shared::new(&crate::SimConfig::fast());
        let (tx, _rx) = watch::channel(0);
        let mut st = NomadState::new(tx, Arc::new(Notify::new()), &ClusterConfig::default());
        let at = shared.clock.now();
        for i in 0..2 * TIMER_BATCH {
            st.t.add_timer(at, Timer::Eval(key(i)));
        }
        tick(&mut st, &shared);
        assert!(st.t.timers.is_empty(), "{} of {} timers left for a later tick", st.t.timers.len(), 2 * TIMER_BATCH);
    }
}
