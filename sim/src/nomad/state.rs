//! The Nomad model's state: tables, the shared Raft-style index, and the single mutation point.
//!
//! Every write goes through [`NomadState::write`]: it hands out the next index, lets the write
//! mutate the tables through a [`Txn`], and on commit bumps the touched table indexes, appends
//! the transaction's event frames to the event buffer, and wakes blocking queries, event streams
//! and the background scheduler.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use super::acl::Acl;
use super::evals::Eval;
use super::events::{Event, EventBuffer, Payload};
use super::metrics::Workloads;
use super::model::{Alloc, Deployment, JobRecord};
use super::nodes::Nodes;
use crate::{ClusterConfig, Shared, SimInstant};

/// A job's key: (namespace, ID).
pub type Key = (String, String);

/// The versions kept per job (`JobDefaultTrackedVersions`).
pub const TRACKED_VERSIONS: usize = 6;

/// Scaling events kept per group (`JobTrackedScalingEvents`).
pub const TRACKED_SCALING_EVENTS: usize = 20;

/// Per-group counts of a job summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// `Queued`.
    pub queued: u64,
    /// `Complete`.
    pub complete: u64,
    /// `Failed`.
    pub failed: u64,
    /// `Running`.
    pub running: u64,
    /// `Starting`.
    pub starting: u64,
    /// `Lost`.
    pub lost: u64,
}

/// A job summary row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Per group.
    pub groups: BTreeMap<String, Counts>,
    /// `CreateIndex`.
    pub create_index: u64,
    /// `ModifyIndex`.
    pub modify_index: u64,
}

/// A job row: the current job, its tracked versions (newest first), its summary and scaling events.
#[derive(Debug, Clone)]
pub struct JobRow {
    /// The current job.
    pub cur: JobRecord,
    /// Tracked versions, newest first, at most [`TRACKED_VERSIONS`].
    pub versions: VecDeque<JobRecord>,
    /// The job summary.
    pub summary: Summary,
    /// Scaling events per group, newest first.
    pub scaling_events: BTreeMap<String, VecDeque<Value>>,
    /// Index of the last scaling-event write.
    pub scaling_index: u64,
    /// An evaluation is waiting for the scheduler.
    pub eval_pending: bool,
    /// Allocations per group that the last evaluation could not place (`JobSummary.Queued`).
    pub queued: BTreeMap<String, u64>,
}

impl JobRow {
    /// Tracked versions, newest first, with complete specs (older ones are delta-encoded).
    pub fn version_records(&self) -> Vec<JobRecord> {
        let mut out: Vec<JobRecord> = Vec::with_capacity(self.versions.len());
        for v in &self.versions {
            let mut rec = v.clone();
            if let (Some((p, s)), Some(prev)) = (v.delta, out.last()) {
                rec.spec = super::model::delta_decode(&prev.spec, p, &v.spec, s);
                rec.delta = None;
            }
            out.push(rec);
        }
        out
    }

    /// One tracked version with its complete spec.
    pub fn version(&self, version: u64) -> Option<JobRecord> {
        let idx = self.versions.iter().position(|v| v.version == version)?;
        self.version_records().into_iter().nth(idx)
    }

    /// Adds a new newest version, delta-encoding the previous newest against it, and keeps
    /// [`TRACKED_VERSIONS`].
    pub fn push_version(&mut self, rec: JobRecord) {
        if let Some(head) = self.versions.front_mut()
            && head.delta.is_none()
        {
            let (p, middle, s) = super::model::delta_encode(&head.spec, &rec.spec);
            head.spec = middle;
            head.delta = Some((p, s));
        }
        self.versions.push_front(rec);
        // Decode-then-drop keeps the chain valid: only the oldest entries are removed.
        self.versions.truncate(TRACKED_VERSIONS);
    }
}

/// How simulated allocations of a job (version) report health (`POST /_sim/nomad/health`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthMode {
    /// Healthy after `MinHealthyTime`.
    Healthy,
    /// The task fails shortly after starting: unhealthy, client status `failed`.
    Unhealthy,
    /// Checks never pass: unhealthy when `HealthyDeadline` passes.
    Never,
    /// Checks pass after this sim delay, then `MinHealthyTime` applies.
    Delay(std::time::Duration),
}

/// Something the background loop must do at a sim instant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Timer {
    /// A pending allocation starts running.
    AllocRunning(String),
    /// An allocation reports health (`true` = healthy), if its health tracker is still this generation
    /// ([`super::alloc::Alloc::tracker`]).
    AllocHealth(String, bool, u64),
    /// An allocation's `HealthyDeadline` passes, if its health tracker is still this generation.
    HealthyDeadline(String, u64),
    /// A deployment's progress deadline may have passed.
    Progress(String),
    /// Re-evaluate a job (reschedules).
    Eval(Key),
}

/// One namespace (`structs.Namespace`, the fields the simulator keeps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceRow {
    /// Free text.
    pub description: String,
    /// Index of the write that created it.
    pub create_index: u64,
    /// Index of the last write to it.
    pub modify_index: u64,
}

/// Table indexes (the max Raft index that touched each table).
#[derive(Debug, Clone, Copy, Default)]
pub struct TableIndex {
    /// `jobs`.
    pub jobs: u64,
    /// `job_summary`.
    pub job_summary: u64,
    /// `deployment`.
    pub deployment: u64,
    /// `allocs`.
    pub allocs: u64,
    /// `evals`.
    pub evals: u64,
    /// `scaling_event`.
    pub scaling: u64,
    /// `namespaces`.
    pub namespaces: u64,
    /// `nodes`.
    pub nodes: u64,
}

/// A table a transaction touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// `jobs` (and `job_version`).
    Jobs,
    /// `job_summary`.
    JobSummary,
    /// `deployment`.
    Deployment,
    /// `allocs`.
    Allocs,
    /// `evals`.
    Evals,
    /// `scaling_event`.
    Scaling,
    /// `namespaces`.
    Namespaces,
    /// `nodes`.
    Nodes,
}

/// All tables.
#[derive(Debug, Default)]
pub struct Tables {
    /// Existing namespaces by name.
    pub namespaces: BTreeMap<String, NamespaceRow>,
    /// Jobs by (namespace, ID).
    pub jobs: BTreeMap<Key, JobRow>,
    /// Allocations by ID.
    pub allocs: BTreeMap<String, Alloc>,
    /// Allocation IDs per job, in creation order (kept after a purge).
    pub allocs_by_job: BTreeMap<Key, Vec<String>>,
    /// Deployments by ID.
    pub deployments: BTreeMap<String, Deployment>,
    /// Deployment IDs per job, in creation order.
    pub deps_by_job: BTreeMap<Key, Vec<String>>,
    /// Jobs with an evaluation waiting for the scheduler.
    pub pending_evals: BTreeSet<Key>,
    /// The job whose evaluation the scheduler processed last: the next tick goes on after it (round robin).
    pub eval_cursor: Option<Key>,
    /// Evaluations by ID.
    pub evals: BTreeMap<String, Eval>,
    /// Evaluation IDs per job, in creation order.
    pub evals_by_job: BTreeMap<Key, Vec<String>>,
    /// Jobs with a blocked evaluation (waiting for capacity).
    pub blocked: BTreeSet<Key>,
    /// Capacity was freed or added since the last tick: blocked evaluations are unblocked (Nomad's
    /// `BlockedEvals.Unblock` on node updates and on allocations turning terminal).
    pub capacity_changed: bool,
    /// Client nodes and their capacity.
    pub nodes: Nodes,
    /// Timers, ordered by due time.
    pub timers: BTreeSet<(SimInstant, u64, Timer)>,
    /// Sequence number to keep timers unique.
    pub timer_seq: u64,
    /// Health modes per (namespace, job, version or all versions).
    pub health: BTreeMap<(String, String, Option<u64>), HealthMode>,
    /// ACL tokens.
    pub acl: Acl,
    /// Simulated workload metrics.
    pub workloads: Workloads,
    /// Table indexes.
    pub table_index: TableIndex,
}

impl Tables {
    /// Schedules `timer` at `at`.
    pub fn add_timer(&mut self, at: SimInstant, timer: Timer) {
        self.timer_seq += 1;
        self.timers.insert((at, self.timer_seq, timer));
    }

    /// The latest deployment of a job (highest `CreateIndex`).
    pub fn latest_deployment(&self, key: &Key) -> Option<&Deployment> {
        self.deps_by_job.get(key).and_then(|ids| ids.iter().rev().find_map(|id| self.deployments.get(id)))
    }

    /// Allocations of a job.
    pub fn job_allocs<'a>(&'a self, key: &Key) -> impl Iterator<Item = &'a Alloc> + 'a {
        self.allocs_by_job.get(key).into_iter().flatten().filter_map(|id| self.allocs.get(id))
    }

    /// The health mode for a job version.
    pub fn health_mode(&self, ns: &str, job: &str, version: u64) -> HealthMode {
        self.health
            .get(&(ns.to_string(), job.to_string(), Some(version)))
            .or_else(|| self.health.get(&(ns.to_string(), job.to_string(), None)))
            .copied()
            .unwrap_or(HealthMode::Healthy)
    }
}

/// The job summary JSON.
pub fn summary_json(key: &Key, summary: &Summary) -> Value {
    let groups: serde_json::Map<String, Value> = summary
        .groups
        .iter()
        .map(|(g, c)| {
            (
                g.clone(),
                json!({"Queued": c.queued, "Complete": c.complete, "Failed": c.failed,
                "Running": c.running, "Starting": c.starting, "Lost": c.lost, "Unknown": 0}),
            )
        })
        .collect();
    json!({"JobID": key.1, "Namespace": key.0, "Summary": groups,
        "Children": {"Pending": 0, "Running": 0, "Dead": 0},
        "CreateIndex": summary.create_index, "ModifyIndex": summary.modify_index})
}

/// The whole model behind one lock.
#[derive(Debug)]
pub struct NomadState {
    /// The last Raft index handed out.
    pub index: u64,
    /// The tables.
    pub t: Tables,
    /// The event-stream buffer (100 batches).
    pub events: EventBuffer,
    index_tx: watch::Sender<u64>,
    wake: Arc<Notify>,
}

/// One write in progress: the tables, its index, and the events it emits.
pub struct Txn<'a> {
    /// The tables.
    pub t: &'a mut Tables,
    /// This write's Raft index.
    pub index: u64,
    /// The Raft message type, used as the event `Type`.
    pub typ: &'static str,
    /// Sim time of the write.
    pub now: SimInstant,
    /// Shared simulator services (clock, UUIDs).
    pub shared: &'a Shared,
    frames: Vec<Vec<Event>>,
    touched: Vec<Table>,
}

impl Txn<'_> {
    /// Marks a table as written by this transaction.
    pub fn touch(&mut self, table: Table) {
        if !self.touched.contains(&table) {
            self.touched.push(table);
        }
    }

    /// Wall-clock time of this write, Unix ns.
    pub fn unix(&self) -> i64 {
        self.shared.clock.unix_nanos_at(self.now)
    }

    /// A new UUID.
    pub fn uuid(&self) -> String {
        self.shared.uuid()
    }

    /// Emits an event in the current frame.
    pub fn emit(&mut self, topic: &'static str, key: &str, namespace: &str, filter_keys: Vec<String>, payload: Value) {
        self.emit_payload(topic, key, namespace, filter_keys, Payload::Json(payload));
    }

    /// Emits an event with a lazily rendered payload.
    pub fn emit_payload(
        &mut self,
        topic: &'static str,
        key: &str,
        namespace: &str,
        filter_keys: Vec<String>,
        payload: Payload,
    ) {
        if self.frames.is_empty() {
            self.frames.push(Vec::new());
        }
        let ev = Event {
            topic,
            typ: self.typ,
            key: key.to_string(),
            namespace: namespace.to_string(),
            filter_keys,
            index: self.index,
            payload,
        };
        if let Some(f) = self.frames.last_mut() {
            f.push(ev);
        }
    }

    /// Starts a new frame (a second state-store transaction at the same Raft index, B15).
    pub fn next_frame(&mut self) {
        if self.frames.last().is_some_and(|f| !f.is_empty()) {
            self.frames.push(Vec::new());
        }
    }

    /// Whether this transaction has written anything yet.
    pub fn touched_any(&self) -> bool {
        !self.touched.is_empty()
    }

    /// Sets the event `Type` for what follows (one Raft write can emit several, e.g. a register then its eval).
    pub fn set_type(&mut self, typ: &'static str) {
        self.typ = typ;
    }
}

impl NomadState {
    /// Empty state with the `default` namespace and the starting nodes.
    pub fn new(index_tx: watch::Sender<u64>, wake: Arc<Notify>, cluster: &ClusterConfig) -> NomadState {
        let mut t = Tables { nodes: Nodes::from_config(cluster), ..Tables::default() };
        // Nomad creates `default` when the cluster bootstraps, at index 1.
        t.namespaces.insert(
            "default".into(),
            NamespaceRow { description: "Default shared namespace".into(), create_index: 1, modify_index: 1 },
        );
        NomadState { index: 1, t, events: EventBuffer::new(100), index_tx, wake }
    }

    /// The single mutation point. Runs `f` at index `self.index + 1`; if `f` touched any table,
    /// commits: the index advances, table indexes move, event frames are buffered, waiters wake.
    pub fn write<R>(&mut self, shared: &Shared, typ: &'static str, f: impl FnOnce(&mut Txn<'_>) -> R) -> R {
        let index = self.index + 1;
        let mut txn = Txn {
            t: &mut self.t,
            index,
            typ,
            now: shared.clock.now(),
            shared,
            frames: Vec::new(),
            touched: Vec::new(),
        };
        let r = f(&mut txn);
        let Txn { frames, touched, .. } = txn;
        if touched.is_empty() {
            return r;
        }
        self.index = index;
        let ti = &mut self.t.table_index;
        for table in touched {
            match table {
                Table::Jobs => ti.jobs = index,
                Table::JobSummary => ti.job_summary = index,
                Table::Deployment => ti.deployment = index,
                Table::Allocs => ti.allocs = index,
                Table::Evals => ti.evals = index,
                Table::Scaling => ti.scaling = index,
                Table::Namespaces => ti.namespaces = index,
                Table::Nodes => ti.nodes = index,
            }
        }
        for frame in frames {
            if !frame.is_empty() {
                self.events.push(index, frame);
            }
        }
        self.index_tx.send_replace(index);
        self.wake.notify_one();
        r
    }
}
