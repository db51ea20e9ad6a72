//! What Nomad runs, as the reconciler sees it: a job and the latest deployment for it, reduced to the fields the
//! decision needs. Filled from the live cache (one list plus the event stream), never from a per-app poll.

/// The Meta key that marks a job as Drover's: its value is `<namespace>/<name>` of the owning record. It never
/// changes, so it never restarts allocations (api-contract B11 "Meta changes are destructive").
pub const OWNER_META_KEY: &str = "drover.io/app";

/// A Nomad job as cached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveJob {
    /// Nomad namespace.
    pub namespace: String,
    /// Job ID.
    pub id: String,
    /// `Meta["drover.io/app"]`, when present.
    pub owner: Option<String>,
    /// Job version; list stubs carry none, so it is known only from a job read or a Job event.
    pub version: Option<u64>,
    /// Index of the last spec change (new version).
    pub job_modify_index: u64,
    /// Index of the last write to the job row (status changes too).
    pub modify_index: u64,
    /// True after a stop.
    pub stop: bool,
    /// `pending`, `running` or `dead`.
    pub status: String,
}

impl LiveJob {
    /// True when the job carries this owner key.
    pub fn owned_by(&self, owner: &str) -> bool {
        self.owner.as_deref() == Some(owner)
    }
}

/// The latest Nomad deployment of a job, as cached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveDeployment {
    /// Deployment ID.
    pub id: String,
    /// The job version it rolls out.
    pub job_version: u64,
    /// The `JobModifyIndex` of the job version it rolls out: how Drover matches it to what it registered.
    pub job_spec_modify_index: u64,
    /// Creation index (the latest deployment has the highest).
    pub create_index: u64,
    /// Nomad's status word.
    pub status: String,
    /// Nomad's description.
    pub description: String,
    /// Sum of `DesiredTotal` over groups.
    pub desired: u64,
    /// Sum of `PlacedAllocs`.
    pub placed: u64,
    /// Sum of `HealthyAllocs`.
    pub healthy: u64,
    /// Sum of `DesiredCanaries`.
    pub canaries: u64,
}

impl LiveDeployment {
    /// Nomad's active states (api-contract B13).
    pub fn is_active(&self) -> bool {
        matches!(self.status.as_str(), "running" | "paused" | "blocked" | "unblocking" | "initializing" | "pending")
    }
}

/// The live side of one app.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Live {
    /// The job with the app's job ID, owned or not.
    pub job: Option<LiveJob>,
    /// The job's most recent deployments, newest first (a few are kept: after a failed rollout Nomad's auto-revert
    /// makes a newer one, and the failed one must still be found to tell a revert from drift).
    pub deployments: Vec<LiveDeployment>,
    /// The job the app ran under an earlier job ID, while status says it is being retired.
    pub previous: Option<LiveJob>,
}

impl Live {
    /// The deployment that rolls out the job version with this `JobModifyIndex`.
    pub fn deployment_for(&self, job_modify_index: u64) -> Option<&LiveDeployment> {
        self.deployments.iter().find(|d| d.job_spec_modify_index == job_modify_index)
    }
}

impl From<&crate::nomad::types::JobStub> for LiveJob {
    fn from(s: &crate::nomad::types::JobStub) -> LiveJob {
        LiveJob {
            namespace: s.namespace.clone(),
            id: s.id.clone(),
            owner: s.meta.get(OWNER_META_KEY).cloned(),
            version: None,
            job_modify_index: s.job_modify_index,
            modify_index: s.modify_index,
            stop: s.stop,
            status: s.status.clone(),
        }
    }
}

impl From<&crate::nomad::types::Job> for LiveJob {
    fn from(j: &crate::nomad::types::Job) -> LiveJob {
        LiveJob {
            namespace: j.namespace.clone(),
            id: j.id.clone(),
            owner: j.meta.get(OWNER_META_KEY).cloned(),
            version: Some(j.version),
            job_modify_index: j.job_modify_index,
            modify_index: j.modify_index,
            stop: j.stop,
            status: j.status.clone(),
        }
    }
}

impl From<&crate::nomad::types::Deployment> for LiveDeployment {
    fn from(d: &crate::nomad::types::Deployment) -> LiveDeployment {
        let sum = |f: fn(&crate::nomad::types::DeploymentGroupState) -> u64| d.task_groups.values().map(f).sum();
        LiveDeployment {
            id: d.id.clone(),
            job_version: d.job_version,
            job_spec_modify_index: d.job_spec_modify_index,
            create_index: d.create_index,
            status: d.status.as_str().to_string(),
            description: d.status_description.clone(),
            desired: sum(|g| g.desired_total),
            placed: sum(|g| g.placed_allocs),
            healthy: sum(|g| g.healthy_allocs),
            canaries: sum(|g| g.desired_canaries),
        }
    }
}
