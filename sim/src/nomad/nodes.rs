//! Client nodes and their capacity: what a placement needs, best-fit bin-packing, and the placement-failure
//! metrics (`AllocMetric`) that a failed placement reports in an evaluation's `FailedTGAllocs`.
//!
//! Nomad's scheduler ranks feasible nodes with the `binpack` algorithm (the default `SchedulerAlgorithm`): a node
//! that ends up fuller scores higher. The model picks, among ready, eligible nodes whose free CPU and memory cover
//! the allocation, the one with the least free capacity left (best fit), ties going to the older node. Nomad's
//! `AllocsFit` checks CPU before memory (`ComparableResources.Superset`), so an exhausted node counts under
//! `DimensionExhausted["cpu"]` when both are short.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::model::NODE_ID;
use crate::ClusterConfig;

/// What one allocation of a group reserves on its node: the sum of its tasks' `Resources`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Need {
    /// `Resources.CPU`, MHz.
    pub cpu: u64,
    /// `Resources.MemoryMB`.
    pub memory_mb: u64,
}

/// Whether a node takes part in scheduling (Nomad's `Status` plus drain/eligibility, reduced to what placement
/// needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// `Status:"ready"`, eligible: new allocations may be placed on it.
    Ready,
    /// Draining (`SchedulingEligibility:"ineligible"`, `Drain:true`): nothing new is placed; its allocations are
    /// migrated to other nodes when they fit.
    Draining,
}

/// One client node.
#[derive(Debug, Clone)]
pub struct Node {
    /// `ID`.
    pub id: String,
    /// `Name`.
    pub name: String,
    /// Total CPU, MHz.
    pub cpu_mhz: u64,
    /// Total memory, MB.
    pub memory_mb: u64,
    /// CPU reserved by the allocations charged to it.
    pub used_cpu: u64,
    /// Memory reserved by the allocations charged to it.
    pub used_memory_mb: u64,
    /// Allocations charged to it.
    pub allocs: u64,
    /// Scheduling state.
    pub state: NodeState,
    /// `CreateIndex`.
    pub create_index: u64,
    /// `ModifyIndex`.
    pub modify_index: u64,
}

impl Node {
    fn free(&self) -> Need {
        Need {
            cpu: self.cpu_mhz.saturating_sub(self.used_cpu),
            memory_mb: self.memory_mb.saturating_sub(self.used_memory_mb),
        }
    }

    /// The first dimension that does not fit, in `AllocsFit`'s order; `None` when `need` fits.
    fn short_of(&self, need: Need) -> Option<&'static str> {
        let free = self.free();
        if free.cpu < need.cpu {
            Some("cpu")
        } else if free.memory_mb < need.memory_mb {
            Some("memory")
        } else {
            None
        }
    }

    /// The node as `GET /_sim/nomad/nodes` lists it (field names follow Nomad's node stub where one exists).
    pub fn render(&self) -> Value {
        let free = self.free();
        let (drain, eligibility) = match self.state {
            NodeState::Ready => (false, "eligible"),
            NodeState::Draining => (true, "ineligible"),
        };
        json!({"ID": self.id, "Name": self.name, "Datacenter": DATACENTER, "NodePool": "default", "Status": "ready",
            "Drain": drain, "SchedulingEligibility": eligibility,
            "Resources": {"CPU": self.cpu_mhz, "MemoryMB": self.memory_mb},
            "Used": {"CPU": self.used_cpu, "MemoryMB": self.used_memory_mb},
            "Free": {"CPU": free.cpu, "MemoryMB": free.memory_mb},
            "Allocations": self.allocs, "CreateIndex": self.create_index, "ModifyIndex": self.modify_index})
    }
}

/// The datacenter every modelled node is in (Nomad's default `dc1`).
pub const DATACENTER: &str = "dc1";

/// Why one group's placements failed in one evaluation: Nomad's `AllocMetric`, reduced to the fields the model
/// can fill.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllocMetric {
    /// `NodesEvaluated`: ready, eligible nodes tried.
    pub nodes_evaluated: u64,
    /// `NodesInPool`: ready nodes in the pool (draining ones included).
    pub nodes_in_pool: u64,
    /// `NodesAvailable["dc1"]`: ready, eligible nodes.
    pub nodes_available: u64,
    /// `NodesExhausted`: nodes tried that lacked capacity.
    pub nodes_exhausted: u64,
    /// `DimensionExhausted`: per dimension (`cpu`, `memory`), nodes that lacked it.
    pub dimension_exhausted: BTreeMap<&'static str, u64>,
    /// `CoalescedFailures`: further placements of the group not even tried after the first failure.
    pub coalesced_failures: u64,
}

impl AllocMetric {
    /// `api.AllocationMetric` JSON.
    pub fn render(&self) -> Value {
        json!({"NodesEvaluated": self.nodes_evaluated, "NodesFiltered": 0, "NodesInPool": self.nodes_in_pool,
            "NodesAvailable": {DATACENTER: self.nodes_available}, "ClassFiltered": null, "ConstraintFiltered": null,
            "NodesExhausted": self.nodes_exhausted, "ClassExhausted": null,
            "DimensionExhausted": if self.dimension_exhausted.is_empty() { Value::Null } else { json!(self.dimension_exhausted) },
            "QuotaExhausted": null, "ResourcesExhausted": null, "Scores": null, "ScoreMetaData": null,
            "AllocationTime": 0, "CoalescedFailures": self.coalesced_failures})
    }
}

/// The node table.
#[derive(Debug, Default)]
pub struct Nodes {
    /// Nodes in registration order.
    pub list: Vec<Node>,
}

impl Nodes {
    /// The starting nodes: the first has the historical single-node ID, so allocations keep that `NodeID`.
    pub fn from_config(cfg: &ClusterConfig) -> Nodes {
        let list = (0..u64::from(cfg.nodes))
            .map(|i| Node {
                id: if i == 0 { NODE_ID.to_string() } else { format!("9d5741c1-3899-4bd3-b6d4-{i:012x}") },
                name: format!("sim-node-{}", i + 1),
                cpu_mhz: cfg.node_cpu_mhz,
                memory_mb: cfg.node_memory_mb,
                used_cpu: 0,
                used_memory_mb: 0,
                allocs: 0,
                state: NodeState::Ready,
                create_index: 1,
                modify_index: 1,
            })
            .collect();
        Nodes { list }
    }

    /// A node by ID.
    pub fn get(&self, id: &str) -> Option<&Node> {
        self.list.iter().find(|n| n.id == id)
    }

    /// A node by ID, mutable.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut Node> {
        self.list.iter_mut().find(|n| n.id == id)
    }

    /// The best-fit ready node for `need`, or the metric explaining why none fits.
    pub fn select(&self, need: Need) -> Result<&Node, AllocMetric> {
        let mut metric = AllocMetric { nodes_in_pool: self.list.len() as u64, ..AllocMetric::default() };
        let mut best: Option<(&Node, u128)> = None;
        for n in self.list.iter().filter(|n| n.state == NodeState::Ready) {
            metric.nodes_evaluated += 1;
            metric.nodes_available += 1;
            match n.short_of(need) {
                Some(dim) => {
                    metric.nodes_exhausted += 1;
                    *metric.dimension_exhausted.entry(dim).or_default() += 1;
                }
                None => {
                    let free = n.free();
                    // Free capacity left after placing, as a fraction of the node, CPU and memory weighted alike.
                    let left = u128::from(free.cpu - need.cpu) * 1_000_000 / u128::from(n.cpu_mhz.max(1))
                        + u128::from(free.memory_mb - need.memory_mb) * 1_000_000 / u128::from(n.memory_mb.max(1));
                    if best.is_none_or(|(_, b)| left < b) {
                        best = Some((n, left));
                    }
                }
            }
        }
        best.map(|(n, _)| n).ok_or(metric)
    }

    /// Reserves `need` on node `id`.
    pub fn charge(&mut self, id: &str, need: Need) {
        if let Some(n) = self.get_mut(id) {
            n.used_cpu += need.cpu;
            n.used_memory_mb += need.memory_mb;
            n.allocs += 1;
        }
    }

    /// Gives `need` back on node `id` (the allocation stopped, failed, or was lost).
    pub fn release(&mut self, id: &str, need: Need) {
        if let Some(n) = self.get_mut(id) {
            n.used_cpu = n.used_cpu.saturating_sub(need.cpu);
            n.used_memory_mb = n.used_memory_mb.saturating_sub(need.memory_mb);
            n.allocs = n.allocs.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(nodes: u32, cpu: u64, mem: u64) -> Nodes {
        Nodes::from_config(&ClusterConfig { nodes, node_cpu_mhz: cpu, node_memory_mb: mem })
    }

    #[test]
    fn select_should_prefer_the_fullest_node_that_fits() {
        let mut n = cluster(2, 1000, 1000);
        let second = n.list[1].id.clone();
        n.charge(&second, Need { cpu: 500, memory_mb: 500 });
        let chosen = n.select(Need { cpu: 100, memory_mb: 100 }).map(|x| x.id.clone());
        assert_eq!(chosen, Ok(second));
    }

    #[test]
    fn select_should_report_the_exhausted_dimension_cpu_first() {
        let n = cluster(2, 100, 100);
        let Err(m) = n.select(Need { cpu: 200, memory_mb: 200 }) else { panic!("nothing should fit") };
        assert_eq!((m.nodes_evaluated, m.nodes_exhausted), (2, 2));
        assert_eq!(m.dimension_exhausted.get("cpu"), Some(&2));
        assert_eq!(m.dimension_exhausted.get("memory"), None);
        let Err(m) = n.select(Need { cpu: 50, memory_mb: 200 }) else { panic!("nothing should fit") };
        assert_eq!(m.dimension_exhausted.get("memory"), Some(&2));
    }

    #[test]
    fn draining_nodes_should_take_no_placement() {
        let mut n = cluster(1, 1000, 1000);
        n.list[0].state = NodeState::Draining;
        let Err(m) = n.select(Need { cpu: 1, memory_mb: 1 }) else { panic!("a draining node takes nothing") };
        assert_eq!((m.nodes_evaluated, m.nodes_in_pool), (0, 1));
    }

    #[test]
    fn release_should_give_back_what_charge_took() {
        let mut n = cluster(1, 1000, 1000);
        let id = n.list[0].id.clone();
        let need = Need { cpu: 300, memory_mb: 700 };
        n.charge(&id, need);
        assert!(n.select(Need { cpu: 800, memory_mb: 10 }).is_err());
        n.release(&id, need);
        assert!(n.select(Need { cpu: 800, memory_mb: 10 }).is_ok());
    }
}
