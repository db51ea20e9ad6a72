//! Reconciling one app: [`decide`] (pure) turns what is desired, what runs and what was recorded into a [`Plan`];
//! `execute` carries the plan out against Nomad; the runtime writes the status and requeues.
//!
//! Nothing here trusts the event that woke the reconcile: every run reads the whole current state (level-triggered).

mod decide;
pub mod error;
pub mod execute;

use std::sync::Arc;
use std::time::Duration;

use crate::app::{DriftPolicy, FieldError};
use crate::status::{AppStatus, ObservedDeletionPolicy};

pub use decide::decide;

/// What a valid record asks for, reduced to what the decision needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidRecord {
    /// The record's generation (Consul ModifyIndex).
    pub generation: u64,
    /// The Nomad job ID it renders to.
    pub job_id: String,
    /// Hash of the rendered job (DESIGN §3).
    pub hash: String,
    /// The rendered job, as registered.
    pub job: Arc<serde_json::Value>,
    /// `spec.suspend`.
    pub suspend: bool,
    /// `spec.adopt`.
    pub adopt: bool,
    /// `spec.deletionPolicy`.
    pub deletion_policy: ObservedDeletionPolicy,
    /// `spec.driftPolicy`.
    pub drift_policy: DriftPolicy,
}

/// The desired side of one app.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// A record that validates and renders.
    Valid(Arc<ValidRecord>),
    /// A record that does not; it never reaches Nomad.
    Invalid {
        /// The record's generation.
        generation: u64,
        /// Every problem, with its path.
        errors: Arc<Vec<FieldError>>,
    },
    /// No record at this key (deleted, or only a status is left).
    Absent,
}

/// One write to carry out, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Register the job with `EnforceIndex`: `enforce_index` 0 means "only if it does not exist".
    Register {
        /// The rendered job.
        job: Arc<serde_json::Value>,
        /// The live `JobModifyIndex` the write is conditioned on (0 = create).
        enforce_index: u64,
        /// The hash of `job`, recorded as applied once the register succeeds.
        hash: String,
        /// Why, for the history and logs.
        reason: RegisterReason,
    },
    /// Stop (or purge) a job of this app.
    Deregister {
        /// The job: the app's job, or the one it ran under an earlier job ID.
        job_id: String,
        /// Purge as well as stop.
        purge: bool,
    },
    /// Delete the status record: the app is gone.
    DeleteStatus,
}

/// Why a register is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterReason {
    /// No job with that ID exists.
    Create,
    /// The record changed.
    Update,
    /// The record adopts an existing job.
    Adopt,
    /// The job changed behind Drover's back and `driftPolicy: Revert` undoes it.
    RevertDrift,
    /// Status does not say what was applied (lost, or a write failed half-way); an identical register is harmless.
    Refresh,
}

impl RegisterReason {
    /// The word used in history entries.
    pub fn as_str(self) -> &'static str {
        match self {
            RegisterReason::Create => "Created",
            RegisterReason::Update => "Updated",
            RegisterReason::Adopt => "Adopted",
            RegisterReason::RevertDrift => "Reverted",
            RegisterReason::Refresh => "Refreshed",
        }
    }
}

/// When to look at the app again, apart from changes that wake it anyway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// Only when something changes (a record write, a Nomad event, or the periodic resync).
    AwaitChange,
    /// After this long, even if nothing changes.
    After(Duration),
}

impl Requeue {
    /// Look again after `d`.
    #[must_use]
    pub fn after(d: Duration) -> Requeue {
        Requeue::After(d)
    }

    /// Look again only on a change.
    #[must_use]
    pub fn await_change() -> Requeue {
        Requeue::AwaitChange
    }
}

/// The decision for one reconcile.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Writes to carry out, in order; empty when converged.
    pub actions: Vec<Action>,
    /// The status to record; `None` when there is nothing to record (no record and no status).
    pub status: Option<AppStatus>,
    /// When to look again.
    pub requeue: Requeue,
    /// True the first time a given drift is seen (for the `drift_detected_total` metric).
    pub drift_detected: bool,
}

/// What a successful register produced, read back from Nomad.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The hash registered.
    pub hash: String,
    /// Why it was registered.
    pub reason: RegisterReason,
    /// The job's version after the register, when read back.
    pub job_version: Option<u64>,
    /// The job's `JobModifyIndex` after the register, read from `GET /v1/job/:id` (never from the register reply:
    /// api-contract B11 point 4).
    pub job_modify_index: u64,
}

/// Records a successful register in the status.
pub fn record_applied(status: &mut AppStatus, generation: u64, applied: &Applied, ts: &str) {
    status.applied_hash = Some(applied.hash.clone());
    status.applied_job_version = applied.job_version;
    status.applied_job_modify_index = Some(applied.job_modify_index);
    status.failed_hash = None;
    status.drift_job_modify_index = None;
    status.push_history(crate::status::HistoryEntry {
        generation,
        hash: applied.hash.clone(),
        job_version: applied.job_version,
        result: applied.reason.as_str().to_string(),
        at: ts.to_string(),
    });
}

/// Records a failed execution in the status. A rejection by Nomad is final for this spec: the app is `Failed` and
/// the spec is not sent again until the record changes.
pub fn record_error(status: &mut AppStatus, err: &error::ExecError, hash: Option<&str>, ts: &str) {
    status.last_error = Some(crate::error_chain(err));
    if let (error::ExecError::Rejected { message, .. }, Some(hash)) = (err, hash) {
        status.phase = crate::status::Phase::Failed;
        status.failed_hash = Some(hash.to_string());
        status.set_condition(
            "Ready",
            crate::status::ConditionStatus::False,
            "NomadRejected",
            format!("Nomad rejected the rendered job: {message}. Fix the record to try again"),
            ts,
        );
    }
}
