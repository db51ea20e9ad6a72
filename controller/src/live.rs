//! What Nomad runs, as the reconciler sees it: a job and its latest deployments, reduced to the fields the decision
//! needs, with Nomad's states as enums. Filled from the live cache (one list plus the event stream), never from a
//! per-app poll.

use std::fmt;

pub use crate::app::OWNER_META_KEY;
pub use crate::nomad::types::DeploymentStatus;

/// The text Nomad's deployment watcher appends to a failed deployment's description when it auto-reverts
/// (`<base> - rolling back to job version N`; nomad/deploymentwatcher/deployment_watcher.go `FailDeployment` and
/// structs.DeploymentStatusDescriptionRollback, api-contract B13 "StatusDescription values"). Nomad exposes the
/// revert nowhere else on the deployment, so this is the one place its prose is read.
pub const ROLLBACK_DESCRIPTION: &str = " - rolling back to job version ";

/// A Nomad job's identity: its namespace and ID.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobKey {
    /// Nomad namespace.
    pub namespace: String,
    /// Job ID.
    pub id: String,
}

impl JobKey {
    /// A key from its parts.
    pub fn new(namespace: impl Into<String>, id: impl Into<String>) -> JobKey {
        JobKey { namespace: namespace.into(), id: id.into() }
    }
}

impl fmt::Display for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.id)
    }
}

/// A job's scheduling status (`Job.Status`, api-contract B11 "Fields Nomad sets and owns").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobStatus {
    /// Not every allocation is placed yet (new job, or queued for lack of capacity).
    Pending,
    /// Allocations are running.
    Running,
    /// Every allocation and evaluation is terminal (stopped jobs end here).
    Dead,
    /// A status this Drover does not know, kept rather than rejected.
    Unknown(String),
}

impl JobStatus {
    /// Nomad's spelling to the enum.
    pub fn parse(text: &str) -> JobStatus {
        match text {
            "pending" => JobStatus::Pending,
            "running" => JobStatus::Running,
            "dead" => JobStatus::Dead,
            other => JobStatus::Unknown(other.to_string()),
        }
    }

    /// Nomad's spelling.
    pub fn as_str(&self) -> &str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Dead => "dead",
            JobStatus::Unknown(s) => s,
        }
    }
}

/// A Nomad job as cached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveJob {
    /// Namespace and ID.
    pub key: JobKey,
    /// `Meta["drover.io/app"]`, when present: the record key of the owning app (see [`crate::app::owner_value`]).
    pub owner: Option<String>,
    /// Job version; list stubs carry none, so it is known only from a job read or a Job event.
    pub version: Option<u64>,
    /// Index of the last spec change (new version).
    pub job_modify_index: u64,
    /// Index of the last write to the job row (status changes too).
    pub modify_index: u64,
    /// True after a stop.
    pub stop: bool,
    /// Scheduling status.
    pub status: JobStatus,
    /// Each group's count; list stubs carry none, so it is known only from a job read or a Job event.
    pub counts: Option<std::collections::BTreeMap<String, u64>>,
}

impl LiveJob {
    /// True when the job carries this owner value.
    pub fn owned_by(&self, owner: &str) -> bool {
        self.owner.as_deref() == Some(owner)
    }
}

/// The outcome Nomad gave a deployment, with the auto-revert told apart from a plain failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeploymentOutcome {
    /// Still active.
    Active,
    /// Every group healthy and promoted.
    Successful,
    /// Failed, and Nomad re-registered the last stable version.
    RolledBack,
    /// Failed without a revert (no auto-revert, or nothing stable to go back to).
    Failed,
    /// Superseded by a newer version, or the job was stopped.
    Cancelled,
}

/// A Nomad deployment of a job, as cached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveDeployment {
    /// Deployment ID.
    pub id: String,
    /// The job version it rolls out.
    pub job_version: u64,
    /// The `JobModifyIndex` of the job version it rolls out: how Drover matches it to what it registered.
    pub job_spec_modify_index: u64,
    /// Creation index (the latest deployment has the highest).
    pub create_index: u64,
    /// Index of its last change.
    pub modify_index: u64,
    /// Nomad's status.
    pub status: DeploymentStatus,
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
    /// Each group's progress, by group name: what a canary rollout needs (are the canaries healthy, is the group
    /// promoted). Empty for a deployment known only from a test's totals.
    pub groups: std::collections::BTreeMap<String, GroupProgress>,
}

/// One group's part of a deployment (Nomad's `DeploymentState`, api-contract B13).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupProgress {
    /// Allocations the group ends with (`DesiredTotal`).
    pub desired_total: u64,
    /// Canaries wanted (`DesiredCanaries`); 0 for a plain rolling update, and for the first version of a job
    /// (Nomad places no canaries when nothing older runs).
    pub desired_canaries: u64,
    /// Canary allocations placed so far (`len(PlacedCanaries)`).
    pub placed_canaries: u64,
    /// Healthy allocations of this deployment (`HealthyAllocs`). Before promotion only canaries are placed, so this
    /// counts healthy canaries then.
    pub healthy_allocs: u64,
    /// Unhealthy allocations of this deployment (`UnhealthyAllocs`).
    pub unhealthy_allocs: u64,
    /// The group's canaries were promoted (`Promoted`); groups without canaries are marked promoted by a promote.
    pub promoted: bool,
    /// Nomad promotes the group itself once its canaries are healthy (`AutoPromote`).
    pub auto_promote: bool,
}

impl GroupProgress {
    /// The group has canaries that still wait for promotion (Nomad's `RequiresPromotion` for one group).
    pub fn requires_promotion(&self) -> bool {
        self.desired_canaries > 0 && !self.promoted
    }

    /// Every canary the group wants is healthy. Before promotion `HealthyAllocs` counts canaries only (Nomad places
    /// nothing else until promotion), and this is the very test Nomad's deployment watcher makes
    /// (`shouldFail`: `HealthyAllocs >= DesiredCanaries`).
    pub fn canaries_healthy(&self) -> bool {
        self.healthy_allocs >= self.desired_canaries
    }
}

impl LiveDeployment {
    /// Nomad's active states (api-contract B13).
    pub fn is_active(&self) -> bool {
        self.status.is_active()
    }

    /// The deployment places canaries and some group still waits for promotion (Nomad's
    /// `Deployment.RequiresPromotion`): a canary (or blue-green) rollout whose steps Drover runs.
    pub fn requires_promotion(&self) -> bool {
        self.groups.values().any(GroupProgress::requires_promotion)
    }

    /// Every group that waits for promotion has all its canaries healthy: the steps may start.
    pub fn canaries_healthy(&self) -> bool {
        self.groups.values().filter(|g| g.requires_promotion()).all(GroupProgress::canaries_healthy)
    }

    /// The deployment had canaries and every canary group is promoted: Nomad is replacing the remaining instances.
    pub fn promoted(&self) -> bool {
        let canary_groups = || self.groups.values().filter(|g| g.desired_canaries > 0);
        canary_groups().next().is_some() && canary_groups().all(|g| g.promoted)
    }

    /// Nomad promotes this deployment itself (`AutoPromote` on a canary group): a raw job's own choice.
    pub fn auto_promotes(&self) -> bool {
        self.groups.values().any(|g| g.desired_canaries > 0 && g.auto_promote)
    }

    /// The first group with canaries, else the first group: the group analysis queries name (`{{ .Group }}`).
    pub fn canary_group(&self) -> Option<&str> {
        self.groups
            .iter()
            .find(|(_, g)| g.desired_canaries > 0)
            .or_else(|| self.groups.iter().next())
            .map(|(name, _)| name.as_str())
    }

    /// How it ended, or that it has not.
    pub fn outcome(&self) -> DeploymentOutcome {
        match &self.status {
            DeploymentStatus::Successful => DeploymentOutcome::Successful,
            DeploymentStatus::Failed if self.description.contains(ROLLBACK_DESCRIPTION) => {
                DeploymentOutcome::RolledBack
            }
            DeploymentStatus::Failed => DeploymentOutcome::Failed,
            DeploymentStatus::Cancelled => DeploymentOutcome::Cancelled,
            DeploymentStatus::Running | DeploymentStatus::Paused | DeploymentStatus::Unknown(_) => {
                DeploymentOutcome::Active
            }
        }
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
    /// The jobs the app ran under earlier job IDs that status says are being retired (absent ones are gone).
    pub retiring: Vec<LiveJob>,
    /// The highest Nomad index the cache has applied. A write of Drover's at a higher index is not visible yet, so
    /// nothing may be concluded from its absence.
    pub index: u64,
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
            key: JobKey::new(&s.namespace, &s.id),
            owner: s.meta.get(OWNER_META_KEY).cloned(),
            version: None,
            job_modify_index: s.job_modify_index,
            modify_index: s.modify_index,
            stop: s.stop,
            status: JobStatus::parse(&s.status),
            counts: None,
        }
    }
}

impl From<&crate::nomad::types::Job> for LiveJob {
    fn from(j: &crate::nomad::types::Job) -> LiveJob {
        LiveJob {
            key: JobKey::new(&j.namespace, &j.id),
            owner: j.meta.get(OWNER_META_KEY).cloned(),
            version: Some(j.version),
            job_modify_index: j.job_modify_index,
            modify_index: j.modify_index,
            stop: j.stop,
            status: JobStatus::parse(&j.status),
            counts: Some(j.task_groups.iter().map(|g| (g.name.clone(), g.count)).collect()),
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
            modify_index: d.modify_index,
            status: d.status.clone(),
            description: d.status_description.clone(),
            desired: sum(|g| g.desired_total),
            placed: sum(|g| g.placed_allocs),
            healthy: sum(|g| g.healthy_allocs),
            canaries: sum(|g| g.desired_canaries),
            groups: d
                .task_groups
                .iter()
                .map(|(name, g)| {
                    let progress = GroupProgress {
                        desired_total: g.desired_total,
                        desired_canaries: g.desired_canaries,
                        placed_canaries: g.placed_canaries.len() as u64,
                        healthy_allocs: g.healthy_allocs,
                        unhealthy_allocs: g.unhealthy_allocs,
                        promoted: g.promoted,
                        auto_promote: g.auto_promote,
                    };
                    (name.clone(), progress)
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(status: DeploymentStatus, description: &str) -> LiveDeployment {
        LiveDeployment {
            id: "d".into(),
            job_version: 1,
            job_spec_modify_index: 1,
            create_index: 1,
            modify_index: 1,
            status,
            description: description.into(),
            desired: 1,
            placed: 1,
            healthy: 0,
            canaries: 0,
            groups: Default::default(),
        }
    }

    #[test]
    fn deployment_should_read_canary_progress_from_nomads_groups() {
        let text = r#"{"ID":"d","Status":"running","StatusDescription":"Deployment is running but requires manual promotion",
            "TaskGroups":{"web":{"DesiredCanaries":2,"DesiredTotal":4,"PlacedCanaries":["a","b"],"HealthyAllocs":1,"Promoted":false},
                          "side":{"DesiredCanaries":0,"DesiredTotal":1,"HealthyAllocs":0}}}"#;
        let d: crate::nomad::types::Deployment = serde_json::from_str(text).expect("a deployment");
        let mut live = LiveDeployment::from(&d);
        assert_eq!(live.groups["web"].placed_canaries, 2);
        assert!(live.requires_promotion());
        assert!(!live.canaries_healthy(), "1 of 2 canaries healthy");
        assert_eq!(live.canary_group(), Some("web"));
        live.groups.get_mut("web").expect("web").healthy_allocs = 2;
        assert!(live.canaries_healthy(), "the group without canaries does not hold the steps back");
        assert!(!live.promoted());
        live.groups.get_mut("web").expect("web").promoted = true;
        assert!(live.promoted() && !live.requires_promotion());
        let plain = LiveDeployment { groups: [("web".to_string(), GroupProgress::default())].into(), ..live };
        assert!(!plain.promoted(), "a deployment without canaries is never 'promoted'");
        assert!(!plain.requires_promotion());
    }

    #[test]
    fn outcome_should_tell_a_rollback_from_a_failure() {
        let rolled =
            deployment(DeploymentStatus::Failed, "Failed due to progress deadline - rolling back to job version 3");
        assert_eq!(rolled.outcome(), DeploymentOutcome::RolledBack);
        let not_rolled = deployment(
            DeploymentStatus::Failed,
            "Failed due to unhealthy allocations - not rolling back to stable job version 3 as current job has same specification",
        );
        assert_eq!(not_rolled.outcome(), DeploymentOutcome::Failed);
        assert_eq!(deployment(DeploymentStatus::Paused, "").outcome(), DeploymentOutcome::Active);
        assert_eq!(deployment(DeploymentStatus::Unknown("blocked".into()), "").outcome(), DeploymentOutcome::Active);
    }

    #[test]
    fn job_status_should_keep_unknown_words() {
        assert_eq!(JobStatus::parse("pending"), JobStatus::Pending);
        assert_eq!(JobStatus::parse("weird").as_str(), "weird");
    }
}
