//! Allocations (B14): the record, its health as the client reports it, and its stub and event JSON.

use serde_json::{Value, json};

use crate::{Clock, SimInstant};

/// Client-reported deployment health of an allocation (B14 `DeploymentStatus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocHealth {
    /// `None` while health is unknown.
    pub healthy: Option<bool>,
    /// When health was set.
    pub timestamp: Option<SimInstant>,
    /// Placed as a canary and not yet promoted.
    pub canary: bool,
    /// Index of the last change.
    pub modify_index: u64,
}

/// An allocation.
#[derive(Debug, Clone)]
pub struct Alloc {
    /// UUID.
    pub id: String,
    /// Evaluation that placed it.
    pub eval_id: String,
    /// Name index (`<job>.<group>[i]`).
    pub slot: u64,
    /// Namespace.
    pub namespace: String,
    /// Job ID.
    pub job_id: String,
    /// Job type.
    pub job_type: String,
    /// `JobVersion`.
    pub job_version: u64,
    /// Task group.
    pub group: String,
    /// `run` or `stop`.
    pub desired_status: &'static str,
    /// `DesiredDescription`.
    pub desired_description: String,
    /// `pending`, `running`, `complete`, `failed`.
    pub client_status: &'static str,
    /// `ClientDescription`.
    pub client_description: String,
    /// Deployment it takes part in.
    pub deployment_id: Option<String>,
    /// `DeploymentStatus`: `None` (rendered `null`) until the client first reports health in the allocation's
    /// deployment, and again after an in-place update moved it into a new deployment.
    pub health: Option<AllocHealth>,
    /// Generation of the client's health tracker. An in-place update restarts the tracker (Nomad's
    /// `allocHealthWatcherHook.Update` cancels the running watcher), so health timers armed for an older
    /// generation are ignored when they fire.
    pub tracker: u64,
    /// Replacement allocation, once rescheduled.
    pub next_allocation: String,
    /// Reschedule attempts that led to this allocation.
    pub reschedule_attempts: u64,
    /// When the scheduler should replace this (unhealthy or failed) allocation.
    pub reschedule_at: Option<SimInstant>,
    /// `CreateIndex`.
    pub create_index: u64,
    /// `ModifyIndex`.
    pub modify_index: u64,
    /// `CreateTime` (Unix ns).
    pub create_time: i64,
    /// `ModifyTime` (Unix ns).
    pub modify_time: i64,
    /// Sim time it started running.
    pub running_since: Option<SimInstant>,
    /// `NodeID`: the node it was placed on.
    pub node_id: String,
    /// `NodeName`.
    pub node_name: String,
    /// What it reserves on its node.
    pub need: super::nodes::Need,
    /// It still holds `need` on its node (cleared, and the capacity given back, when it stops being live).
    pub charged: bool,
}

impl Alloc {
    /// `<job>.<group>[i]`.
    pub fn name(&self) -> String {
        format!("{}.{}[{}]", self.job_id, self.group, self.slot)
    }

    /// Client status is terminal.
    pub fn client_terminal(&self) -> bool {
        matches!(self.client_status, "complete" | "failed" | "lost")
    }

    /// Desired to run and not terminal on the client.
    pub fn live(&self) -> bool {
        self.desired_status == "run" && !self.client_terminal()
    }

    /// Health is set in the current deployment (`DeploymentStatus.HasHealth()`).
    pub fn has_health(&self) -> bool {
        self.health.as_ref().is_some_and(|h| h.healthy.is_some())
    }

    /// `DeploymentStatus.IsHealthy()`.
    pub fn is_healthy(&self) -> bool {
        self.health.as_ref().is_some_and(|h| h.healthy == Some(true))
    }

    /// `DeploymentStatus.IsUnhealthy()`.
    pub fn is_unhealthy(&self) -> bool {
        self.health.as_ref().is_some_and(|h| h.healthy == Some(false))
    }

    /// Placed as a canary (flag cleared on promotion).
    pub fn is_canary(&self) -> bool {
        self.health.as_ref().is_some_and(|h| h.canary)
    }

    /// The allocation stub (B14); also the event payload with `Job: null` added.
    pub fn stub(&self, clock: &Clock) -> Value {
        let ds = self.health.as_ref().map(|h| {
            json!({"Healthy": h.healthy,
                "Timestamp": h.timestamp.map(|t| clock.rfc3339(t)).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
                "Canary": h.canary, "ModifyIndex": h.modify_index})
        });
        json!({"ID": self.id, "EvalID": self.eval_id, "Name": self.name(), "Namespace": self.namespace,
            "NodeID": self.node_id, "NodeName": self.node_name, "JobID": self.job_id, "JobType": self.job_type,
            "JobVersion": self.job_version, "TaskGroup": self.group, "AllocatedResources": null,
            "DesiredStatus": self.desired_status, "DesiredDescription": self.desired_description,
            "ClientStatus": self.client_status, "ClientDescription": self.client_description,
            "DesiredTransition": {"Migrate": null, "Reschedule": null, "ForceReschedule": null, "NoShutdownDelay": null},
            "TaskStates": null, "DeploymentStatus": ds, "FollowupEvalID": "", "NextAllocation": self.next_allocation,
            "RescheduleTracker": null, "PreemptedAllocations": null, "PreemptedByAllocation": "",
            "CreateIndex": self.create_index, "ModifyIndex": self.modify_index,
            "CreateTime": self.create_time, "ModifyTime": self.modify_time})
    }

    /// The full allocation as event payloads carry it (`Job` is null in events, B15).
    pub fn full(&self, clock: &Clock) -> Value {
        let mut v = self.stub(clock);
        if let Value::Object(m) = &mut v {
            m.insert("DeploymentID".into(), json!(self.deployment_id.clone().unwrap_or_default()));
            m.insert("Job".into(), Value::Null);
        }
        v
    }
}

/// The first starting client node's ID (the only node before capacity was modelled).
pub const NODE_ID: &str = "9d5741c1-3899-4bd3-b6d4-cdbc8a6c0f0e";
