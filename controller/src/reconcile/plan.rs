//! The values a reconcile passes between its steps: what was observed ([`Observed`]), what to do about it
//! ([`Plan`] of [`Action`]s and a [`Requeue`]), and what a register produced ([`Applied`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::app::{AppKey, Record};
use crate::live::Live;
use crate::status::{AppStatus, HistoryResult};

/// The desired side of one app, as gathered: the store's record, or what a single-key read proved about a record
/// the store does not hold.
#[derive(Clone, Debug, PartialEq)]
pub enum RecordState {
    /// The record.
    Present(Arc<Record>),
    /// A single-key read with a token allowed to read it answered 404: the record is gone, and only now may its
    /// job be stopped and its status deleted (DESIGN §3, "destructive acts need proof").
    Gone,
    /// The store lacks the record and its key cannot be read (ACL denial): nothing may be concluded from the
    /// absence, so nothing is done; status says why.
    Unreadable {
        /// What Consul answered.
        reason: String,
    },
}

/// Everything one decision looks at.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    /// The app.
    pub key: &'a AppKey,
    /// The owner value this installation puts on the app's jobs ([`crate::app::owner_value`]): what a job must
    /// carry to be stopped when the record is gone.
    pub owner: &'a str,
    /// The record, or proof of its absence.
    pub record: &'a RecordState,
    /// What Nomad runs.
    pub live: &'a Live,
    /// The status last written.
    pub status: Option<&'a AppStatus>,
    /// The latest measurement of each autoscaling check, by check name (empty without autoscaling).
    pub measurements: &'a std::collections::BTreeMap<String, crate::measure::Measurement>,
    /// The analysis stage's runs for this app (empty without one): newer than the status copy when the stage took
    /// measurements since the last decision (contract 2 of issue #8).
    pub analysis: &'a std::collections::BTreeMap<crate::rollout::RunId, crate::rollout::AnalysisRunStatus>,
    /// The app's control (`drover promote`, ...), if one was ever written: consumed once, by its `ModifyIndex`.
    pub control: Option<&'a crate::rollout::ControlEntry>,
    /// Where its dependencies stand (`spec.dependsOn`), or, for a deleted record, which dependents must go first.
    pub dependencies: &'a super::deps::DependencyView,
    /// The wall-clock time, for status timestamps and deadlines.
    pub now: SystemTime,
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
        /// Keep the live group counts (autoscaling owns the count; not for a create).
        preserve_counts: bool,
    },
    /// Set one group's count (autoscaling), with `EnforceIndex`.
    Scale {
        /// The job.
        job_id: String,
        /// The group.
        group: String,
        /// The new count.
        count: u64,
        /// Why, as the scaling event's message (`cpu 83 > target 70 (+2)`).
        message: String,
        /// The live `JobModifyIndex` the write is conditioned on.
        enforce_index: u64,
        /// The applied hash, unchanged by a scale (the count is not in it).
        hash: String,
        /// `up` or `down`.
        direction: &'static str,
    },
    /// Stop (or purge) a job of this app. Carried out only if a fresh read shows the job still carries the owner
    /// value (Nomad's DELETE has no EnforceIndex).
    Deregister {
        /// The job: the app's job, or one it ran under an earlier job ID.
        job_id: String,
        /// The owner value the job must carry.
        owner: String,
        /// Purge as well as stop.
        purge: bool,
    },
    /// Delete the status record: the app is gone.
    DeleteStatus,
    /// Promote every group of a canary (or blue-green) deployment (`/v1/deployment/promote/:id`, `All: true`): the
    /// steps passed, Nomad replaces the remaining instances.
    PromoteDeployment {
        /// The deployment.
        id: String,
    },
    /// Fail a deployment (`/v1/deployment/fail/:id`): the rollout is aborted, and Nomad auto-reverts to the last
    /// stable version (rendered canary rollouts always carry `AutoRevert`).
    FailDeployment {
        /// The deployment.
        id: String,
    },
    /// Pause or resume a deployment (`/v1/deployment/pause/:id`): `drover pause` / `resume`.
    PauseDeployment {
        /// The deployment.
        id: String,
        /// True to pause, false to resume.
        pause: bool,
    },
    /// Revert the job to an earlier version (`/v1/job/:id/revert`): a post-promotion bake found a regression after
    /// Nomad's deployment succeeded, when Nomad's own auto-revert no longer applies.
    RevertJob {
        /// The job.
        job_id: String,
        /// The version to go back to (the last stable one).
        version: u64,
        /// The version the job must still be at, so a revert never undoes a newer change (`EnforcePriorVersion`).
        enforce_prior_version: u64,
    },
}

impl Action {
    /// A bounded name for logs and the `nomad_writes` metric.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Register { .. } => "register",
            Action::Scale { .. } => "scale",
            Action::Deregister { purge: true, .. } => "purge",
            Action::Deregister { .. } => "stop",
            Action::DeleteStatus => "delete_status",
            Action::PromoteDeployment { .. } => "promote",
            Action::FailDeployment { .. } => "fail_deployment",
            Action::PauseDeployment { pause: true, .. } => "pause_deployment",
            Action::PauseDeployment { .. } => "resume_deployment",
            Action::RevertJob { .. } => "revert",
        }
    }
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
    /// Autoscaling changed the count.
    Scale,
}

impl RegisterReason {
    /// The history entry a successful register leaves.
    pub fn history(self) -> HistoryResult {
        match self {
            RegisterReason::Create => HistoryResult::Created,
            RegisterReason::Update => HistoryResult::Updated,
            RegisterReason::Adopt => HistoryResult::Adopted,
            RegisterReason::RevertDrift => HistoryResult::Reverted,
            RegisterReason::Refresh => HistoryResult::Refreshed,
            RegisterReason::Scale => HistoryResult::Scaled,
        }
    }

    /// A lower-case word for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            RegisterReason::Create => "create",
            RegisterReason::Update => "update",
            RegisterReason::Adopt => "adopt",
            RegisterReason::RevertDrift => "revert drift",
            RegisterReason::Refresh => "refresh",
            RegisterReason::Scale => "scale",
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
    /// An autoscaling evaluation made in this decision (for the `autoscale_*` metrics).
    pub evaluated: Option<Evaluated>,
}

/// What one autoscaling evaluation saw and did, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Evaluated {
    /// The group's count.
    pub current: i64,
    /// The count wanted.
    pub desired: i64,
    /// Checks without a usable measurement.
    pub errors: usize,
    /// `up` or `down` when a scale was planned.
    pub scaled: Option<&'static str>,
}

impl Plan {
    /// Nothing to do and nothing to record.
    pub fn nothing() -> Plan {
        Plan {
            actions: Vec::new(),
            status: None,
            requeue: Requeue::AwaitChange,
            drift_detected: false,
            evaluated: None,
        }
    }

    /// Record `status`, write nothing else.
    pub fn status(status: AppStatus, requeue: Requeue) -> Plan {
        Plan { actions: Vec::new(), status: Some(status), requeue, drift_detected: false, evaluated: None }
    }
}

/// What a successful register produced, from Nomad's reply to Drover's own write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The hash registered.
    pub hash: String,
    /// Why it was registered.
    pub reason: RegisterReason,
    /// The job's `JobModifyIndex` after Drover's write. Never read back with a later GET, which could see (and so
    /// swallow) a hand edit made just after the register.
    pub job_modify_index: u64,
    /// True when the register stored a new job version (false for an identical register).
    pub new_version: bool,
    /// For a scale: what it did, recorded in status only once Nomad took it.
    pub scale: Option<AppliedScale>,
}

/// A scale Nomad took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedScale {
    /// The new count.
    pub count: u64,
    /// `up` or `down`.
    pub direction: &'static str,
    /// Why (the scaling event's message).
    pub message: String,
}
