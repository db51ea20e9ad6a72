//! Typed records of the model: what the scheduler needs from a job, allocations and deployments.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::{Clock, SimInstant};

/// The server-owned job fields that `SpecChanged` copies from the existing job before comparing (B4).
pub const SERVER_FIELDS: [&str; 8] =
    ["Status", "StatusDescription", "Stable", "Version", "CreateIndex", "ModifyIndex", "JobModifyIndex", "SubmitTime"];

/// A group's update strategy, typed (B12). Durations in nanoseconds as stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Strategy {
    /// 0 = no strategy: no deployments.
    pub max_parallel: u64,
    /// `HealthCheck` is `manual`: only the allocation-health API sets health.
    pub manual: bool,
    /// `MinHealthyTime`.
    pub min_healthy_time: Duration,
    /// `HealthyDeadline`.
    pub healthy_deadline: Duration,
    /// `ProgressDeadline` (0 = fail on the first unhealthy allocation).
    pub progress_deadline: Duration,
    /// `AutoRevert`.
    pub auto_revert: bool,
    /// `AutoPromote`.
    pub auto_promote: bool,
    /// `Canary`.
    pub canary: u64,
}

/// A group's reschedule policy, typed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reschedule {
    /// Attempts allowed within `Interval` (ignored when unlimited).
    pub attempts: u64,
    /// Base delay.
    pub delay: Duration,
    /// `exponential`, `constant`, `fibonacci`.
    pub delay_function: String,
    /// Cap on the delay.
    pub max_delay: Duration,
    /// Unlimited rescheduling.
    pub unlimited: bool,
}

/// What the scheduler needs to know about one task group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupModel {
    /// Group name.
    pub name: String,
    /// Desired count.
    pub count: u64,
    /// Update strategy, `None` when the group has none (batch jobs).
    pub update: Option<Strategy>,
    /// Reschedule policy, `None` when the job type has none.
    pub reschedule: Option<Reschedule>,
    /// Hash of everything whose change forces a create/destroy update (`tasksUpdated`, simplified).
    pub destructive_hash: u64,
    /// `Scaling.Min`/`Scaling.Max` when the group has a scaling block.
    pub scaling: Option<(Option<i64>, Option<i64>)>,
    /// What one allocation reserves on its node: the sum of the tasks' `Resources.CPU` and `MemoryMB`.
    pub need: super::nodes::Need,
}

impl GroupModel {
    /// The update strategy when it is non-empty (`MaxParallel > 0`).
    pub fn strategy(&self) -> Option<&Strategy> {
        self.update.as_ref().filter(|s| s.max_parallel > 0)
    }
}

/// What the model needs from a stored job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobModel {
    /// `Name`.
    pub name: String,
    /// `ParentID`.
    pub parent_id: String,
    /// `Datacenters`.
    pub datacenters: Value,
    /// `NodePool`.
    pub node_pool: String,
    /// `Multiregion`.
    pub multiregion: Value,
    /// `Meta` (null when empty).
    pub meta: Value,
    /// `Type`.
    pub typ: String,
    /// `Priority`.
    pub priority: i64,
    /// `Stop`.
    pub stop: bool,
    /// Periodic job.
    pub periodic: bool,
    /// Parameterized job.
    pub parameterized: bool,
    /// Task groups, in job order.
    pub groups: Vec<GroupModel>,
}

fn dur(v: Option<&Value>) -> Duration {
    Duration::from_nanos(v.and_then(Value::as_i64).unwrap_or(0).max(0) as u64)
}

fn hash_values(parts: &[&Value]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for p in parts {
        p.to_string().hash(&mut h);
    }
    h.finish()
}

impl JobModel {
    /// Extracts the model from a canonical job.
    pub fn from_job(job: &Map<String, Value>) -> JobModel {
        let null = Value::Null;
        let job_meta = job.get("Meta").unwrap_or(&null);
        let groups = job
            .get("TaskGroups")
            .and_then(Value::as_array)
            .map(|gs| {
                gs.iter()
                    .map(|g| {
                        let update = g.get("Update").filter(|u| !u.is_null()).map(|u| Strategy {
                            max_parallel: u.get("MaxParallel").and_then(Value::as_i64).unwrap_or(0).max(0) as u64,
                            manual: u.get("HealthCheck").and_then(Value::as_str) == Some("manual"),
                            min_healthy_time: dur(u.get("MinHealthyTime")),
                            healthy_deadline: dur(u.get("HealthyDeadline")),
                            progress_deadline: dur(u.get("ProgressDeadline")),
                            auto_revert: u.get("AutoRevert").and_then(Value::as_bool).unwrap_or(false),
                            auto_promote: u.get("AutoPromote").and_then(Value::as_bool).unwrap_or(false),
                            canary: u.get("Canary").and_then(Value::as_i64).unwrap_or(0).max(0) as u64,
                        });
                        let reschedule = g.get("ReschedulePolicy").filter(|r| !r.is_null()).map(|r| Reschedule {
                            attempts: r.get("Attempts").and_then(Value::as_i64).unwrap_or(0).max(0) as u64,
                            delay: dur(r.get("Delay")),
                            delay_function: r.get("DelayFunction").and_then(Value::as_str).unwrap_or("").to_string(),
                            max_delay: dur(r.get("MaxDelay")),
                            unlimited: r.get("Unlimited").and_then(Value::as_bool).unwrap_or(false),
                        });
                        let scaling = g
                            .get("Scaling")
                            .filter(|s| s.is_object())
                            .map(|s| (s.get("Min").and_then(Value::as_i64), s.get("Max").and_then(Value::as_i64)));
                        let f = |k: &str| g.get(k).unwrap_or(&null);
                        let need = f("Tasks").as_array().into_iter().flatten().fold(
                            super::nodes::Need::default(),
                            |acc, t| {
                                let r = t.get("Resources");
                                let field = |k: &str| {
                                    r.and_then(|r| r.get(k)).and_then(Value::as_i64).unwrap_or(0).max(0) as u64
                                };
                                super::nodes::Need {
                                    cpu: acc.cpu + field("CPU"),
                                    memory_mb: acc.memory_mb + field("MemoryMB"),
                                }
                            },
                        );
                        GroupModel {
                            name: g.get("Name").and_then(Value::as_str).unwrap_or("").to_string(),
                            count: g.get("Count").and_then(Value::as_i64).unwrap_or(0).max(0) as u64,
                            update,
                            reschedule,
                            destructive_hash: hash_values(&[
                                job_meta,
                                f("Meta"),
                                f("Tasks"),
                                f("Networks"),
                                f("Services"),
                                f("Volumes"),
                                f("EphemeralDisk"),
                                f("Affinities"),
                                f("Spreads"),
                            ]),
                            scaling,
                            need,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let text = |k: &str| job.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        JobModel {
            name: text("Name"),
            parent_id: text("ParentID"),
            datacenters: job.get("Datacenters").cloned().unwrap_or(Value::Null),
            node_pool: text("NodePool"),
            multiregion: job.get("Multiregion").cloned().unwrap_or(Value::Null),
            meta: job_meta.clone(),
            typ: job.get("Type").and_then(Value::as_str).unwrap_or("service").to_string(),
            priority: job.get("Priority").and_then(Value::as_i64).unwrap_or(50),
            stop: job.get("Stop").and_then(Value::as_bool).unwrap_or(false),
            periodic: job.get("Periodic").is_some_and(Value::is_object),
            parameterized: job.get("ParameterizedJob").is_some_and(Value::is_object),
            groups,
        }
    }

    /// The group named `name`.
    pub fn group(&self, name: &str) -> Option<&GroupModel> {
        self.groups.iter().find(|g| g.name == name)
    }
}

/// One stored job version (or the current job row).
///
/// The spec is kept as compact JSON text with the server-owned fields zeroed, so that `SpecChanged`
/// is a string comparison and 10 000 jobs × 6 versions stay small; the server-owned fields are typed.
#[derive(Debug, Clone)]
pub struct JobRecord {
    /// Canonical job JSON, server-owned fields zeroed.
    pub spec: Arc<str>,
    /// Typed view of the spec.
    pub model: Arc<JobModel>,
    /// Namespace.
    pub namespace: String,
    /// Job ID.
    pub id: String,
    /// `Version`.
    pub version: u64,
    /// `Stable`.
    pub stable: bool,
    /// `Status`.
    pub status: String,
    /// `StatusDescription`.
    pub status_description: String,
    /// `SubmitTime` (Unix ns).
    pub submit_time: i64,
    /// `CreateIndex`.
    pub create_index: u64,
    /// `ModifyIndex`.
    pub modify_index: u64,
    /// `JobModifyIndex`.
    pub job_modify_index: u64,
    /// For older tracked versions: `spec` holds only the middle that differs from the next newer
    /// version, which shares this many leading and trailing bytes. `None` = `spec` is complete.
    pub delta: Option<(u32, u32)>,
}

/// Encodes `old` against `newer` as (common prefix, middle of `old`, common suffix).
pub fn delta_encode(old: &str, newer: &str) -> (u32, Arc<str>, u32) {
    let (a, b) = (old.as_bytes(), newer.as_bytes());
    let mut p = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    while !old.is_char_boundary(p) {
        p -= 1;
    }
    let max_s = a.len().min(b.len()) - p;
    let mut s = a.iter().rev().zip(b.iter().rev()).take(max_s).take_while(|(x, y)| x == y).count();
    while !old.is_char_boundary(a.len() - s) || !newer.is_char_boundary(b.len() - s) {
        s -= 1;
    }
    (p as u32, Arc::from(&old[p..a.len() - s]), s as u32)
}

/// Rebuilds a delta-encoded spec from the next newer version's complete spec.
pub fn delta_decode(newer: &str, prefix: u32, middle: &str, suffix: u32) -> Arc<str> {
    let (p, s) = (prefix as usize, suffix as usize);
    let mut out = String::with_capacity(p + middle.len() + s);
    out.push_str(newer.get(..p).unwrap_or(""));
    out.push_str(middle);
    out.push_str(newer.get(newer.len().saturating_sub(s)..).unwrap_or(""));
    Arc::from(out)
}

impl JobRecord {
    /// The job as `GET /v1/job/:id` shows it.
    pub fn render(&self) -> Value {
        let mut v: Value = serde_json::from_str(&self.spec).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.insert("Status".into(), json!(self.status));
            m.insert("StatusDescription".into(), json!(self.status_description));
            m.insert("Stable".into(), json!(self.stable));
            m.insert("Version".into(), json!(self.version));
            m.insert("SubmitTime".into(), json!(self.submit_time));
            m.insert("CreateIndex".into(), json!(self.create_index));
            m.insert("ModifyIndex".into(), json!(self.modify_index));
            m.insert("JobModifyIndex".into(), json!(self.job_modify_index));
        }
        v
    }

    /// The job list stub (B3); `Meta` only with `meta=true`.
    pub fn stub(&self, summary: Value, with_meta: bool) -> Value {
        let m = &self.model;
        let mut v = json!({"ID": self.id, "ParentID": m.parent_id, "Name": m.name, "Namespace": self.namespace,
            "Datacenters": m.datacenters, "NodePool": m.node_pool, "Multiregion": m.multiregion, "Type": m.typ,
            "Priority": m.priority, "Periodic": m.periodic, "ParameterizedJob": m.parameterized, "Stop": m.stop,
            "Status": self.status, "StatusDescription": self.status_description, "JobSummary": summary,
            "CreateIndex": self.create_index, "ModifyIndex": self.modify_index,
            "JobModifyIndex": self.job_modify_index, "SubmitTime": self.submit_time});
        if with_meta
            && !m.meta.is_null()
            && let Value::Object(o) = &mut v
        {
            o.insert("Meta".into(), m.meta.clone());
        }
        v
    }

    /// The parsed spec (server-owned fields zeroed).
    pub fn spec_map(&self) -> Map<String, Value> {
        match serde_json::from_str(&self.spec) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        }
    }
}

/// Zeroes the server-owned fields of a canonical job and returns its spec text.
pub fn spec_text(job: &mut Map<String, Value>) -> Arc<str> {
    for k in SERVER_FIELDS {
        let zero = match k {
            "Status" | "StatusDescription" => json!(""),
            "Stable" => json!(false),
            _ => json!(0),
        };
        job.insert(k.into(), zero);
    }
    Arc::from(serde_json::to_string(job).unwrap_or_default())
}

pub use super::alloc::{Alloc, AllocHealth, NODE_ID};

/// Per-group deployment state (B13 `TaskGroups`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDeploy {
    /// `AutoRevert`.
    pub auto_revert: bool,
    /// `AutoPromote`.
    pub auto_promote: bool,
    /// `ProgressDeadline`.
    pub progress_deadline: Duration,
    /// `RequireProgressBy` (zero time when unset).
    pub require_progress_by: Option<SimInstant>,
    /// `Promoted`.
    pub promoted: bool,
    /// `PlacedCanaries`.
    pub placed_canaries: Vec<String>,
    /// `DesiredCanaries`.
    pub desired_canaries: u64,
    /// `DesiredTotal`.
    pub desired_total: u64,
    /// `PlacedAllocs`.
    pub placed_allocs: u64,
    /// `HealthyAllocs`.
    pub healthy_allocs: u64,
    /// `UnhealthyAllocs`.
    pub unhealthy_allocs: u64,
}

/// A deployment (B13).
#[derive(Debug, Clone)]
pub struct Deployment {
    /// UUID.
    pub id: String,
    /// Namespace.
    pub namespace: String,
    /// Job ID.
    pub job_id: String,
    /// `JobVersion`.
    pub job_version: u64,
    /// The job's `ModifyIndex` when created.
    pub job_modify_index: u64,
    /// The job's `JobModifyIndex`.
    pub job_spec_modify_index: u64,
    /// The job's `CreateIndex`.
    pub job_create_index: u64,
    /// Per group.
    pub groups: BTreeMap<String, GroupDeploy>,
    /// `Status`.
    pub status: &'static str,
    /// `StatusDescription`.
    pub status_description: String,
    /// `EvalPriority`.
    pub eval_priority: i64,
    /// `CreateIndex`.
    pub create_index: u64,
    /// `ModifyIndex`.
    pub modify_index: u64,
    /// `CreateTime` (Unix ns).
    pub create_time: i64,
    /// `ModifyTime` (Unix ns).
    pub modify_time: i64,
}

/// Deployment status and description strings (B13), exact.
pub mod desc {
    /// `Deployment is running`.
    pub const RUNNING: &str = "Deployment is running";
    /// Manual promotion needed.
    pub const NEEDS_PROMOTION: &str = "Deployment is running but requires manual promotion";
    /// Auto promotion pending.
    pub const AUTO_PROMOTION: &str = "Deployment is running pending automatic promotion";
    /// Paused.
    pub const PAUSED: &str = "Deployment is paused";
    /// Success.
    pub const SUCCESSFUL: &str = "Deployment completed successfully";
    /// Job stopped.
    pub const STOPPED: &str = "Cancelled because job is stopped";
    /// Superseded.
    pub const NEWER_JOB: &str = "Cancelled due to newer version of job";
    /// Unhealthy allocations.
    pub const FAILED_ALLOCS: &str = "Failed due to unhealthy allocations";
    /// Progress deadline.
    pub const PROGRESS_DEADLINE: &str = "Failed due to progress deadline";
    /// Failed by the user.
    pub const MARKED_FAILED: &str = "Deployment marked as failed";
}

impl Deployment {
    /// Running, paused (or an Enterprise-only active state).
    pub fn active(&self) -> bool {
        matches!(self.status, "running" | "paused" | "blocked" | "unblocking" | "initializing" | "pending")
    }

    /// Some group still waits for canary promotion.
    pub fn requires_promotion(&self) -> bool {
        self.groups.values().any(|g| g.desired_canaries > 0 && !g.promoted)
    }

    /// Every group that needs promotion auto-promotes.
    pub fn has_auto_promote(&self) -> bool {
        let pending: Vec<&GroupDeploy> =
            self.groups.values().filter(|g| g.desired_canaries > 0 && !g.promoted).collect();
        !pending.is_empty() && pending.iter().all(|g| g.auto_promote)
    }

    /// The description of a running deployment given its promotion state.
    pub fn running_description(&self) -> &'static str {
        if self.requires_promotion() {
            if self.has_auto_promote() { desc::AUTO_PROMOTION } else { desc::NEEDS_PROMOTION }
        } else {
            desc::RUNNING
        }
    }

    /// JSON as the API returns it.
    pub fn render(&self, clock: &Clock) -> Value {
        let groups: Map<String, Value> = self
            .groups
            .iter()
            .map(|(name, g)| {
                (name.clone(), json!({"AutoRevert": g.auto_revert, "AutoPromote": g.auto_promote,
                    "ProgressDeadline": g.progress_deadline.as_nanos() as u64,
                    "RequireProgressBy": g.require_progress_by.map(|t| clock.rfc3339(t)).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
                    "Promoted": g.promoted,
                    "PlacedCanaries": if g.placed_canaries.is_empty() { Value::Null } else { json!(g.placed_canaries) },
                    "DesiredCanaries": g.desired_canaries, "DesiredTotal": g.desired_total,
                    "PlacedAllocs": g.placed_allocs, "HealthyAllocs": g.healthy_allocs, "UnhealthyAllocs": g.unhealthy_allocs}))
            })
            .collect();
        json!({"ID": self.id, "Namespace": self.namespace, "JobID": self.job_id, "JobVersion": self.job_version,
            "JobModifyIndex": self.job_modify_index, "JobSpecModifyIndex": self.job_spec_modify_index,
            "JobCreateIndex": self.job_create_index, "IsMultiregion": false, "TaskGroups": groups,
            "Status": self.status, "StatusDescription": self.status_description, "EvalPriority": self.eval_priority,
            "CreateIndex": self.create_index, "ModifyIndex": self.modify_index,
            "CreateTime": self.create_time, "ModifyTime": self.modify_time})
    }
}

#[cfg(test)]
mod tests {
    use super::{delta_decode, delta_encode};

    #[test]
    fn delta_should_round_trip_including_multibyte_text() {
        let cases = [
            ("{\"a\":\"x\",\"b\":1}", "{\"a\":\"y\",\"b\":1}"),
            ("{\"m\":\"é1\"}", "{\"m\":\"é2\"}"),
            ("{\"m\":\"ä\"}", "{\"m\":\"ö\"}"),
            ("", "{}"),
            ("{}", ""),
            ("same", "same"),
        ];
        for (old, newer) in cases {
            let (p, mid, s) = delta_encode(old, newer);
            assert_eq!(&*delta_decode(newer, p, &mid, s), old, "{old} vs {newer}");
        }
    }
}
