//! Placing one allocation: pick a node (best fit, [`super::nodes`]), create the allocation on it, or record the
//! failure for the evaluation's `FailedTGAllocs`.
//!
//! Rules from `scheduler/generic_sched.go` `computePlacements`:
//! - once a group failed to place in an evaluation, its further placements are not tried and count as
//!   `CoalescedFailures`;
//! - a replacement (destructive update, reschedule, migration) stops the previous allocation in the plan *before*
//!   selecting a node, so the previous allocation's resources count as free; when no node fits, the stop is taken
//!   back (`PopUpdate`) and the previous allocation keeps running.

use std::time::Duration;

use super::deploy::Changes;
use super::model::{Alloc, AllocHealth, GroupModel, JobRecord};
use super::state::{Timer, Txn};

/// Sim time between placement and the allocation running.
pub const PLACEMENT_DELAY: Duration = Duration::from_secs(1);

/// Places one allocation of group `g` in name slot `slot`, replacing `replacing` if given. Returns the new
/// allocation's ID, or `None` when it did not fit (recorded in `ch.failed`); the caller stops the replaced
/// allocation only on success.
#[allow(clippy::too_many_arguments)]
pub fn place(
    txn: &mut Txn<'_>,
    ch: &mut Changes,
    job: &JobRecord,
    g: &GroupModel,
    slot: u64,
    dep: Option<&str>,
    canary: bool,
    replacing: Option<&str>,
) -> Option<String> {
    if let Some(m) = ch.failed.get_mut(&g.name) {
        m.coalesced_failures += 1;
        return None;
    }
    let freed = replacing.and_then(|id| uncharge(txn, id));
    let chosen = txn.t.nodes.select(g.need).map(|n| (n.id.clone(), n.name.clone()));
    match chosen {
        Ok((node_id, node_name)) => {
            if freed.is_some() {
                txn.t.capacity_changed = true;
            }
            Some(new_alloc(txn, job, g, slot, dep, canary, node_id, node_name))
        }
        Err(metric) => {
            if let Some((id, node, need)) = freed {
                txn.t.nodes.charge(&node, need);
                if let Some(a) = txn.t.allocs.get_mut(&id) {
                    a.charged = true;
                }
            }
            ch.failed.insert(g.name.clone(), metric);
            None
        }
    }
}

/// Gives back what a live allocation holds, for a replacement to use; `None` when it holds nothing.
fn uncharge(txn: &mut Txn<'_>, id: &str) -> Option<(String, String, super::nodes::Need)> {
    let a = txn.t.allocs.get_mut(id).filter(|a| a.charged)?;
    a.charged = false;
    let (node, need) = (a.node_id.clone(), a.need);
    txn.t.nodes.release(&node, need);
    Some((id.to_string(), node, need))
}

#[allow(clippy::too_many_arguments)]
fn new_alloc(
    txn: &mut Txn<'_>,
    job: &JobRecord,
    g: &GroupModel,
    slot: u64,
    dep: Option<&str>,
    canary: bool,
    node_id: String,
    node_name: String,
) -> String {
    let id = txn.uuid();
    let now = txn.unix();
    txn.t.nodes.charge(&node_id, g.need);
    let a = Alloc {
        id: id.clone(),
        eval_id: txn.uuid(),
        slot,
        namespace: job.namespace.clone(),
        job_id: job.id.clone(),
        job_type: job.model.typ.clone(),
        job_version: job.version,
        group: g.name.clone(),
        desired_status: "run",
        desired_description: String::new(),
        client_status: "pending",
        client_description: String::new(),
        deployment_id: dep.map(str::to_string),
        health: dep.map(|_| AllocHealth { healthy: None, timestamp: None, canary, modify_index: txn.index }),
        next_allocation: String::new(),
        reschedule_attempts: 0,
        reschedule_at: None,
        create_index: txn.index,
        modify_index: txn.index,
        create_time: now,
        modify_time: now,
        running_since: None,
        node_id,
        node_name,
        need: g.need,
        charged: true,
        tracker: 0,
    };
    txn.t.allocs.insert(id.clone(), a);
    txn.t.allocs_by_job.entry((job.namespace.clone(), job.id.clone())).or_default().push(id.clone());
    let at = txn.now + PLACEMENT_DELAY;
    txn.t.add_timer(at, Timer::AllocRunning(id.clone()));
    id
}
