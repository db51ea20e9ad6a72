//! Node writes (the `/_sim/nomad/nodes` controls): registering a node, draining one, removing one. Each is one Raft
//! write with a `Node` event, as Nomad's `Node.Register`, `Node.UpdateDrain` and `Node.Deregister` are, and each
//! wakes what waits for capacity.
//!
//! - Register: the node is ready and eligible; blocked evaluations are unblocked (`BlockedEvals.Unblock`).
//! - Drain (no deadline): the node becomes ineligible; each job with allocations on it gets an evaluation
//!   (`TriggeredBy:"node-drain"`) that moves them to other nodes when they fit (stop + place, `alloc is being
//!   migrated`); what fits nowhere keeps running on the draining node.
//! - Remove (deregister, as a node that went down for good): its allocations become `lost` (desired `stop`,
//!   `alloc is lost since its node is down`) in the same write, and each job gets an evaluation
//!   (`TriggeredBy:"node-update"`) that replaces them elsewhere or queues them.

use std::collections::BTreeSet;

use serde_json::json;

use super::deploy::{Changes, eval_for};
use super::events::Payload;
use super::nodes::{Node, NodeState};
use super::state::{Key, NomadState, Table, Txn};
use crate::Shared;

/// `DesiredDescription` of an allocation whose node went away (`allocLost`).
const LOST: &str = "alloc is lost since its node is down";

fn emit_node(txn: &mut Txn<'_>, id: &str) {
    if let Some(n) = txn.t.nodes.get(id) {
        let node = n.render();
        txn.emit_payload("Node", id, "", Vec::new(), Payload::Json(json!({"Node": node})));
    }
}

/// Registers a node with `cpu_mhz` and `memory_mb`; returns it.
pub fn add(st: &mut NomadState, shared: &Shared, name: Option<String>, cpu_mhz: u64, memory_mb: u64) -> Node {
    let id = shared.uuid();
    st.write(shared, "NodeRegistration", |txn| {
        let node = Node {
            id: id.clone(),
            name: name.unwrap_or_else(|| format!("sim-node-{}", txn.t.nodes.list.len() + 1)),
            cpu_mhz,
            memory_mb,
            used_cpu: 0,
            used_memory_mb: 0,
            allocs: 0,
            state: NodeState::Ready,
            create_index: txn.index,
            modify_index: txn.index,
        };
        txn.t.nodes.list.push(node.clone());
        txn.touch(Table::Nodes);
        txn.t.capacity_changed = true;
        emit_node(txn, &id);
        node
    })
}

fn jobs_on(txn: &Txn<'_>, node: &str) -> BTreeSet<Key> {
    txn.t
        .allocs
        .values()
        .filter(|a| a.live() && a.node_id == node)
        .map(|a| (a.namespace.clone(), a.job_id.clone()))
        .collect()
}

/// Drains a node; `false` when there is no such node.
pub fn drain(st: &mut NomadState, shared: &Shared, id: &str) -> bool {
    if st.t.nodes.get(id).is_none() {
        return false;
    }
    st.write(shared, "NodeDrain", |txn| {
        let idx = txn.index;
        if let Some(n) = txn.t.nodes.get_mut(id) {
            n.state = NodeState::Draining;
            n.modify_index = idx;
        }
        txn.touch(Table::Nodes);
        emit_node(txn, id);
        txn.next_frame();
        for key in jobs_on(txn, id) {
            if txn.t.jobs.contains_key(&key) {
                eval_for(txn, &key, "node-drain");
            }
        }
    });
    true
}

/// Removes a node; its allocations are lost. `false` when there is no such node.
pub fn remove(st: &mut NomadState, shared: &Shared, id: &str) -> bool {
    if st.t.nodes.get(id).is_none() {
        return false;
    }
    st.write(shared, "NodeDeregistration", |txn| {
        emit_node(txn, id);
        let jobs = jobs_on(txn, id);
        let lost: Vec<String> =
            txn.t.allocs.values().filter(|a| a.live() && a.node_id == id).map(|a| a.id.clone()).collect();
        let mut ch = Changes::default();
        for a in &lost {
            if let Some(x) = txn.t.allocs.get_mut(a) {
                x.desired_status = "stop";
                x.desired_description = LOST.into();
                x.client_status = "lost";
            }
            ch.alloc(txn, a);
        }
        txn.t.nodes.list.retain(|n| n.id != id);
        txn.touch(Table::Nodes);
        ch.flush(txn);
        txn.next_frame();
        for key in jobs {
            if txn.t.jobs.contains_key(&key) {
                eval_for(txn, &key, "node-update");
            }
        }
    });
    true
}

/// The nodes as `GET /_sim/nomad/nodes` lists them.
pub fn list(st: &NomadState) -> serde_json::Value {
    serde_json::Value::Array(st.t.nodes.list.iter().map(Node::render).collect())
}
