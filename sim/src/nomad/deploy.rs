//! The scheduler model: one reconcile per evaluation, placing, updating and stopping allocations
//! and creating, cancelling and completing deployments (B13 "Lifecycle", B14).
//!
//! Simplifications (see sim/README.md): placements go through [`super::placement`] (finite node capacity; a group
//! that does not fit is reported in [`Changes::failed`] and queued); in-place updates are applied at once;
//! destructive updates are limited by `MaxParallel` minus the deployment's allocations whose health is not yet
//! known.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use super::events::Payload;
use super::jobs::{create_eval, mark_stable, refresh_job};
use super::model::{Alloc, Deployment, GroupDeploy, GroupModel, JobRecord, desc};
use super::nodes::{AllocMetric, NodeState};
use super::placement::place;
use super::state::{Key, Table, Timer, Txn};

/// Changed objects of one write, emitted as events at its end.
#[derive(Default)]
pub struct Changes {
    /// Allocation IDs.
    pub allocs: BTreeSet<String>,
    /// Deployment IDs.
    pub deployments: BTreeSet<String>,
    /// Jobs whose status/summary must be refreshed.
    pub jobs: BTreeSet<Key>,
    /// Groups whose placements failed in this evaluation, with why (`FailedTGAllocs`).
    pub failed: BTreeMap<String, AllocMetric>,
}

impl Changes {
    /// Emits events for everything changed (deployments, then allocations) and refreshes jobs.
    pub fn flush(self, txn: &mut Txn<'_>) {
        for id in &self.deployments {
            emit_deployment(txn, id);
        }
        for id in &self.allocs {
            if let Some(a) = txn.t.allocs.get(id) {
                let snap = a.clone();
                let payload = Payload::Render(Arc::new(move |c| serde_json::json!({"Allocation": snap.full(c)})));
                // `[JobID, DeploymentID]`, the second empty when there is none (state/events.go).
                let keys = vec![a.job_id.clone(), a.deployment_id.clone().unwrap_or_default()];
                let ns = a.namespace.clone();
                txn.emit_payload("Allocation", id, &ns, keys, payload);
            }
        }
        for key in &self.jobs {
            refresh_job(txn, key);
        }
    }

    /// Marks an allocation changed at this write. An allocation that stopped being live gives its capacity back
    /// here, the one place every allocation change passes through.
    pub fn alloc(&mut self, txn: &mut Txn<'_>, id: &str) {
        let (idx, now) = (txn.index, txn.unix());
        let mut release = None;
        if let Some(a) = txn.t.allocs.get_mut(id) {
            a.modify_index = idx;
            a.modify_time = now;
            self.jobs.insert((a.namespace.clone(), a.job_id.clone()));
            if a.charged && !a.live() {
                a.charged = false;
                release = Some((a.node_id.clone(), a.need));
            }
        }
        if let Some((node, need)) = release {
            txn.t.nodes.release(&node, need);
            txn.t.capacity_changed = true;
        }
        txn.touch(Table::Allocs);
        self.allocs.insert(id.to_string());
    }

    /// Marks a deployment changed at this write.
    pub fn deployment(&mut self, txn: &mut Txn<'_>, id: &str) {
        touch_deployment(txn, id);
        self.deployments.insert(id.to_string());
    }
}

/// Stamps a deployment with this write's index and time.
pub fn touch_deployment(txn: &mut Txn<'_>, id: &str) {
    let (idx, now) = (txn.index, txn.unix());
    if let Some(d) = txn.t.deployments.get_mut(id) {
        d.modify_index = idx;
        d.modify_time = now;
    }
    txn.touch(Table::Deployment);
}

/// Emits a deployment's event now, in this write's frame.
pub fn emit_deployment(txn: &mut Txn<'_>, id: &str) {
    if let Some(d) = txn.t.deployments.get(id) {
        let snap = d.clone();
        let payload = Payload::Render(Arc::new(move |c| serde_json::json!({"Deployment": snap.render(c)})));
        let (ns, job) = (d.namespace.clone(), d.job_id.clone());
        txn.emit_payload("Deployment", id, &ns, vec![job], payload);
    }
}

/// Stops an allocation (desired `stop`; the model's client stops it at once).
pub fn stop_alloc(txn: &mut Txn<'_>, ch: &mut Changes, id: &str, why: &str) {
    if let Some(a) = txn.t.allocs.get_mut(id) {
        a.desired_status = "stop";
        a.desired_description = why.to_string();
        if !a.client_terminal() {
            a.client_status = "complete";
        }
    }
    ch.alloc(txn, id);
}

fn cancel(txn: &mut Txn<'_>, ch: &mut Changes, id: &str, why: &str) {
    if let Some(d) = txn.t.deployments.get_mut(id) {
        d.status = "cancelled";
        d.status_description = why.to_string();
    }
    ch.deployment(txn, id);
}

const NOT_NEEDED: &str = "alloc not needed due to job update";

/// `DesiredDescription` of an allocation replaced because its node drains (`allocMigrating`).
const MIGRATING: &str = "alloc is being migrated";

/// The reconciler for one job (`reconcile_cluster.go`, simplified).
pub fn reconcile(txn: &mut Txn<'_>, key: &Key, ch: &mut Changes) {
    let job = txn.t.jobs.get(key).map(|r| r.cur.clone());
    let stopped = job.as_ref().is_none_or(|j| j.model.stop);
    let latest = txn.t.latest_deployment(key).map(|d| (d.id.clone(), d.active(), d.job_version, d.job_create_index));
    if let Some((id, active, dv, dci)) = &latest
        && *active
    {
        if stopped {
            cancel(txn, ch, id, desc::STOPPED);
        } else if let Some(j) = &job
            && (*dv != j.version || *dci != j.create_index)
        {
            cancel(txn, ch, id, desc::NEWER_JOB);
        }
    }
    let live: Vec<String> = txn.t.job_allocs(key).filter(|a| a.live()).map(|a| a.id.clone()).collect();
    let Some(job) = job.filter(|_| !stopped) else {
        for id in live {
            stop_alloc(txn, ch, &id, NOT_NEEDED);
        }
        ch.jobs.insert(key.clone());
        return;
    };
    // Allocations of groups that no longer exist.
    for id in &live {
        let gone = txn.t.allocs.get(id).is_some_and(|a| job.model.group(&a.group).is_none());
        if gone {
            stop_alloc(txn, ch, id, NOT_NEEDED);
        }
    }
    // The deployment of this job version, if any (terminal ones included: never recreated).
    let mut dep: Option<String> = txn
        .t
        .latest_deployment(key)
        .filter(|d| d.job_version == job.version && d.job_create_index == job.create_index)
        .map(|d| d.id.clone());
    // Allocations of this job instance (a purge followed by a register is a new instance).
    let had_version = txn.t.job_allocs(key).any(|a| a.job_version == job.version && a.create_index >= job.create_index);
    for g in job.model.groups.clone() {
        reconcile_group(txn, ch, key, &job, &g, &mut dep, had_version);
    }
    if let Some(id) = dep {
        complete_if_done(txn, ch, key, &job, &id);
    }
    ch.jobs.insert(key.clone());
    gc(txn, key);
}

/// Terminal allocations and deployments kept per job; older ones are garbage-collected so that
/// memory stays bounded under endless updates (Nomad's GC, simplified: no index bump).
const KEEP_TERMINAL: usize = 3;

fn gc(txn: &mut Txn<'_>, key: &Key) {
    let t = &mut *txn.t;
    if let Some(ids) = t.allocs_by_job.get_mut(key) {
        let terminal: Vec<String> = ids
            .iter()
            .filter(|id| {
                t.allocs
                    .get(*id)
                    .is_some_and(|a| !a.live() && (a.reschedule_at.is_none() || !a.next_allocation.is_empty()))
            })
            .cloned()
            .collect();
        if terminal.len() > KEEP_TERMINAL {
            let drop: BTreeSet<String> = terminal[..terminal.len() - KEEP_TERMINAL].iter().cloned().collect();
            ids.retain(|id| !drop.contains(id));
            for id in &drop {
                t.allocs.remove(id);
            }
        }
    }
    if let Some(ids) = t.deps_by_job.get_mut(key) {
        let terminal: Vec<String> =
            ids.iter().filter(|id| t.deployments.get(*id).is_some_and(|d| !d.active())).cloned().collect();
        if terminal.len() > KEEP_TERMINAL {
            let drop: BTreeSet<String> = terminal[..terminal.len() - KEEP_TERMINAL].iter().cloned().collect();
            ids.retain(|id| !drop.contains(id));
            for id in &drop {
                t.deployments.remove(id);
            }
        }
    }
}

fn old_is_destructive(txn: &Txn<'_>, key: &Key, a: &Alloc, g: &GroupModel) -> bool {
    let Some(row) = txn.t.jobs.get(key) else { return true };
    let old = row.versions.iter().find(|v| v.version == a.job_version);
    old.and_then(|v| v.model.group(&g.name)).is_none_or(|og| og.destructive_hash != g.destructive_hash)
}

fn ensure_deployment(
    txn: &mut Txn<'_>,
    ch: &mut Changes,
    key: &Key,
    job: &JobRecord,
    dep: &mut Option<String>,
) -> String {
    if let Some(id) = dep {
        return id.clone();
    }
    let id = txn.uuid();
    let now = txn.unix();
    let d = Deployment {
        id: id.clone(),
        namespace: key.0.clone(),
        job_id: key.1.clone(),
        job_version: job.version,
        job_modify_index: job.modify_index,
        job_spec_modify_index: job.job_modify_index,
        job_create_index: job.create_index,
        groups: Default::default(),
        status: "running",
        status_description: desc::RUNNING.into(),
        eval_priority: job.model.priority,
        create_index: txn.index,
        modify_index: txn.index,
        create_time: now,
        modify_time: now,
    };
    txn.t.deployments.insert(id.clone(), d);
    txn.t.deps_by_job.entry(key.clone()).or_default().push(id.clone());
    ch.deployment(txn, &id);
    *dep = Some(id.clone());
    id
}

/// Reschedule delay for the n-th attempt.
fn reschedule_delay(g: &GroupModel, attempt: u64) -> Option<Duration> {
    let r = g.reschedule.as_ref()?;
    if !r.unlimited && attempt >= r.attempts {
        return None;
    }
    let d = match r.delay_function.as_str() {
        "exponential" => r.delay.saturating_mul(1u32 << attempt.min(20)),
        "fibonacci" => r.delay.saturating_mul(attempt.min(30) as u32 + 1),
        _ => r.delay,
    };
    Some(if r.max_delay.is_zero() { d } else { d.min(r.max_delay) })
}

/// Whether an unhealthy allocation of `g` can still be rescheduled.
pub fn can_reschedule(g: &GroupModel, a: &Alloc) -> Option<Duration> {
    reschedule_delay(g, a.reschedule_attempts)
}

#[allow(clippy::too_many_arguments)]
fn reconcile_group(
    txn: &mut Txn<'_>,
    ch: &mut Changes,
    key: &Key,
    job: &JobRecord,
    g: &GroupModel,
    dep: &mut Option<String>,
    had_version: bool,
) {
    let now = txn.now;
    let allocs: Vec<Alloc> = txn.t.job_allocs(key).filter(|a| a.group == g.name).cloned().collect();
    let live: Vec<&Alloc> = allocs.iter().filter(|a| a.live()).collect();
    let (dep_status, dep_group) = match dep.as_ref().and_then(|id| txn.t.deployments.get(id)) {
        Some(d) => (Some(d.status), d.groups.get(&g.name).cloned()),
        None => (None, None),
    };
    let frozen = matches!(dep_status, Some("failed") | Some("paused") | Some("cancelled"));
    // Reschedules due now: unhealthy or failed allocations with a reschedule time that passed.
    let mut rescheduled_slots = Vec::new();
    let mut waiting_slots = BTreeSet::new();
    for a in allocs.iter().filter(|a| a.reschedule_at.is_some() && a.next_allocation.is_empty()) {
        let Some(at) = a.reschedule_at else { continue };
        if frozen || a.job_version != job.version {
            continue;
        }
        if at > now {
            waiting_slots.insert(a.slot);
            continue;
        }
        rescheduled_slots.push(a.clone());
    }
    let mut current: Vec<&Alloc> = live.iter().copied().filter(|a| a.job_version == job.version).collect();
    current.retain(|a| !rescheduled_slots.iter().any(|r| r.id == a.id));
    let old: Vec<&Alloc> = live.iter().copied().filter(|a| a.job_version != job.version).collect();
    let (destructive, inplace): (Vec<&Alloc>, Vec<&Alloc>) =
        old.iter().copied().partition(|a| old_is_destructive(txn, key, a, g));
    let strategy = g.strategy().cloned();
    let needs_dep = strategy.is_some()
        && g.count > 0
        && dep.is_none()
        && (!had_version || !destructive.is_empty() || !inplace.is_empty());
    let dep_id = if needs_dep || (dep_group.is_some() && dep_status == Some("running")) {
        Some(ensure_deployment(txn, ch, key, job, dep))
    } else {
        None
    };
    let active_dep = dep_id.as_ref().filter(|_| strategy.is_some() && !frozen).cloned();
    let mut gd = dep_group.unwrap_or_else(|| {
        let s = strategy.clone().unwrap_or_default();
        GroupDeploy {
            auto_revert: s.auto_revert,
            auto_promote: s.auto_promote,
            progress_deadline: s.progress_deadline,
            // Set at the group's first placement (`updateDeploymentWithAlloc`), so a group that places nothing
            // never reaches its progress deadline.
            require_progress_by: None,
            promoted: false,
            placed_canaries: Vec::new(),
            desired_canaries: 0,
            desired_total: g.count,
            placed_allocs: 0,
            healthy_allocs: 0,
            unhealthy_allocs: 0,
        }
    });
    gd.desired_total = g.count;
    let mut placed_here = 0u64;
    // Reschedule replacements.
    for old_a in &rescheduled_slots {
        let dep_for = old_a.deployment_id.as_deref().filter(|d| active_dep.as_deref() == Some(*d));
        let canary = old_a.is_canary();
        let Some(nid) = place(txn, ch, job, g, old_a.slot, dep_for, canary, Some(&old_a.id)) else { continue };
        if old_a.live() {
            stop_alloc(txn, ch, &old_a.id, "alloc was rescheduled because it failed");
        }
        if let Some(n) = txn.t.allocs.get_mut(&nid) {
            n.reschedule_attempts = old_a.reschedule_attempts + 1;
        }
        if let Some(o) = txn.t.allocs.get_mut(&old_a.id) {
            o.next_allocation = nid.clone();
        }
        ch.alloc(txn, &old_a.id);
        ch.alloc(txn, &nid);
        if canary {
            gd.placed_canaries.push(nid.clone());
        }
        if dep_for.is_some() {
            placed_here += 1;
        }
    }
    // In-place updates, all at once.
    // `computeJobAllocs`: an allocation moved into another deployment gets `DeploymentStatus = nil`; the client then
    // restarts its health tracker ([`super::watcher::restart_health`]).
    for a in &inplace {
        let id = a.id.clone();
        let new_dep = active_dep.is_some() && a.deployment_id != active_dep;
        if let Some(x) = txn.t.allocs.get_mut(&id) {
            x.job_version = job.version;
            if active_dep.is_some() {
                x.deployment_id = active_dep.clone();
            }
        }
        if new_dep {
            placed_here += 1;
        }
        if active_dep.is_some() {
            super::watcher::restart_health(txn, &id, new_dep);
        }
        ch.alloc(txn, &id);
    }
    // Allocations on a draining node move elsewhere; one that fits nowhere keeps running (drain without deadline).
    let draining: Vec<Alloc> = current
        .iter()
        .filter(|a| txn.t.nodes.get(&a.node_id).is_some_and(|n| n.state == NodeState::Draining))
        .map(|a| (*a).clone())
        .collect();
    for a in &draining {
        let dep_for = active_dep.as_deref();
        let Some(nid) = place(txn, ch, job, g, a.slot, dep_for, a.is_canary(), Some(&a.id)) else { continue };
        stop_alloc(txn, ch, &a.id, MIGRATING);
        current.retain(|c| c.id != a.id);
        ch.alloc(txn, &nid);
        if dep_for.is_some() {
            placed_here += 1;
        }
    }
    let canaries: Vec<&Alloc> = current.iter().copied().filter(|a| a.is_canary()).collect();
    let canary_phase = strategy.as_ref().is_some_and(|s| s.canary > 0) && !destructive.is_empty() && !gd.promoted;
    if canary_phase {
        let want = strategy.as_ref().map(|s| s.canary).unwrap_or(0);
        gd.desired_canaries = want;
        if active_dep.is_some() {
            let have = canaries.len() as u64 + waiting_slots.len() as u64;
            for a in destructive.iter().skip(have as usize).take(want.saturating_sub(have) as usize) {
                let Some(nid) = place(txn, ch, job, g, a.slot, active_dep.as_deref(), true, None) else { continue };
                gd.placed_canaries.push(nid.clone());
                placed_here += 1;
                ch.alloc(txn, &nid);
            }
        }
    } else {
        // Promoted canaries replace old allocations: stop the excess, old ones first.
        let mut old_live: Vec<&Alloc> = destructive.clone();
        // Old allocations whose name a current one (a promoted canary) already took go first.
        old_live.sort_by_key(|o| current.iter().any(|c| c.slot == o.slot));
        let mut total = current.len() + old_live.len() + inplace.len();
        while total as u64 > g.count {
            let victim = if let Some(o) = old_live.pop() {
                o.id.clone()
            } else if let Some(c) = current.iter().max_by_key(|a| a.slot) {
                let id = c.id.clone();
                current.retain(|x| x.id != id);
                id
            } else {
                break;
            };
            stop_alloc(txn, ch, &victim, NOT_NEEDED);
            total -= 1;
        }
        // Destructive updates, limited by MaxParallel minus the in-flight ones.
        let limit = match (&strategy, &active_dep) {
            (None, _) => usize::MAX,
            (Some(_), None) if frozen => 0,
            (Some(s), _) => {
                let in_flight = current
                    .iter()
                    .filter(|a| a.deployment_id.is_some() && a.deployment_id == active_dep && !a.is_healthy())
                    .count() as u64;
                s.max_parallel.saturating_sub(in_flight) as usize
            }
        };
        for a in old_live.iter().take(limit) {
            let Some(nid) = place(txn, ch, job, g, a.slot, active_dep.as_deref(), false, Some(&a.id)) else {
                continue;
            };
            stop_alloc(txn, ch, &a.id, NOT_NEEDED);
            if active_dep.is_some() {
                placed_here += 1;
            }
            ch.alloc(txn, &nid);
        }
        // Placements for missing slots.
        let used: BTreeSet<u64> = txn
            .t
            .job_allocs(key)
            .filter(|a| a.group == g.name && a.live())
            .map(|a| a.slot)
            .chain(waiting_slots.iter().copied())
            .collect();
        let live_count =
            txn.t.job_allocs(key).filter(|a| a.group == g.name && a.live()).count() as u64 + waiting_slots.len() as u64;
        let missing = g.count.saturating_sub(live_count);
        if matches!(dep_status, Some("paused") | Some("failed")) {
            // While the deployment is paused or failed (`deploymentPlaceReady` false in Nomad's `computeGroup`) only
            // lost allocations are replaced, each once, in its own slot (`computeReplacements`): a failed deployment
            // places nothing new, so a job whose allocations keep failing does not pile up allocations.
            let lost = allocs.iter().filter(|a| a.client_status == "lost" && a.next_allocation.is_empty());
            let lost: Vec<&Alloc> = lost.filter(|a| !used.contains(&a.slot)).take(missing as usize).collect();
            for old_a in lost {
                let Some(nid) = place(txn, ch, job, g, old_a.slot, None, false, Some(&old_a.id)) else { continue };
                if let Some(o) = txn.t.allocs.get_mut(&old_a.id) {
                    o.next_allocation = nid.clone();
                }
                ch.alloc(txn, &old_a.id);
                ch.alloc(txn, &nid);
            }
        } else {
            let mut slot = 0u64;
            for _ in 0..missing {
                while used.contains(&slot) {
                    slot += 1;
                }
                if let Some(nid) = place(txn, ch, job, g, slot, active_dep.as_deref(), false, None) {
                    if active_dep.is_some() {
                        placed_here += 1;
                    }
                    ch.alloc(txn, &nid);
                }
                slot += 1;
            }
        }
    }
    if let Some(d) = dep_id.filter(|_| strategy.is_some()) {
        if placed_here > 0 && gd.require_progress_by.is_none() && !gd.progress_deadline.is_zero() {
            let by = now + gd.progress_deadline;
            gd.require_progress_by = Some(by);
            txn.t.add_timer(by, Timer::Progress(d.clone()));
        }
        gd.placed_allocs += placed_here;
        let changed = txn.t.deployments.get(&d).and_then(|x| x.groups.get(&g.name)) != Some(&gd);
        if let Some(x) = txn.t.deployments.get_mut(&d) {
            x.groups.insert(g.name.clone(), gd);
            if x.status == "running" {
                x.status_description = x.running_description().into();
            }
        }
        if changed {
            ch.deployment(txn, &d);
        }
    }
}

/// Marks the deployment successful (and its job version stable) once every group is complete.
fn complete_if_done(txn: &mut Txn<'_>, ch: &mut Changes, key: &Key, job: &JobRecord, id: &str) {
    let Some(d) = txn.t.deployments.get(id) else { return };
    if d.status != "running" || d.groups.is_empty() {
        return;
    }
    let done = d.groups.iter().all(|(name, gd)| {
        let live: Vec<&Alloc> = txn.t.job_allocs(key).filter(|a| &a.group == name && a.live()).collect();
        let all_current = live.iter().all(|a| a.job_version == job.version);
        let healthy = live.iter().filter(|a| a.is_healthy() && a.deployment_id.as_deref() == Some(id)).count() as u64;
        all_current
            && live.len() as u64 == gd.desired_total
            && healthy >= gd.desired_total
            && (gd.desired_canaries == 0 || gd.promoted)
    });
    if done {
        if let Some(d) = txn.t.deployments.get_mut(id) {
            d.status = "successful";
            d.status_description = desc::SUCCESSFUL.into();
        }
        ch.deployment(txn, id);
        let version = job.version;
        mark_stable(txn, key, version, true);
    }
}

/// Creates an eval for a job from a watcher or API write (the same write).
pub fn eval_for(txn: &mut Txn<'_>, key: &Key, why: &str) -> String {
    let (prio, typ, jmi) = txn
        .t
        .jobs
        .get(key)
        .map(|r| (r.cur.model.priority, r.cur.model.typ.clone(), r.cur.job_modify_index))
        .unwrap_or((50, "service".into(), 0));
    create_eval(txn, key, why, prio, &typ, jmi)
}
