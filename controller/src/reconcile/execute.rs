//! Carrying out a [`Plan`](super::Plan)'s actions against Nomad and Consul. No decisions here: each action is
//! sent as told, and the outcome is read back so the status records what really happened.

use std::sync::Arc;

use super::error::ExecError;
use super::{Action, Applied};
use crate::app::AppKey;
use crate::live::LiveJob;
use crate::metrics::Metrics;
use crate::nomad::{self, Error as NomadError};
use crate::store::{LiveCache, StatusCache};

/// What `execute` needs: the two clients and the caches it refreshes after each write.
#[derive(Clone, Debug)]
pub struct Executor {
    /// Nomad client.
    pub nomad: nomad::Client,
    /// Consul client.
    pub consul: crate::consul::Client,
    /// Refreshed after each Nomad write, so the next decision sees the write even before its event arrives.
    pub live: LiveCache,
    /// Kept in step with status deletions.
    pub statuses: StatusCache,
    /// The KV prefix (`drover`).
    pub prefix: String,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

impl Executor {
    /// Runs `actions` in order for the app `key` whose job is `namespace/job_id`; stops at the first failure.
    /// Returns what a successful register produced.
    pub async fn execute(&self, key: &AppKey, job_id: &str, actions: &[Action]) -> Result<Option<Applied>, ExecError> {
        let ns = key.namespace.as_str();
        let mut applied = None;
        for action in actions {
            match action {
                Action::Register { job, enforce_index, hash, reason } => {
                    self.metrics.nomad_write("register");
                    match self.nomad.register(ns, job, Some(*enforce_index), false).await {
                        Ok(_) => {}
                        Err(NomadError::EnforceIndexConflict { .. }) => {
                            // Someone wrote the job since we read it: refresh the cache so the next decision sees it.
                            self.refresh(ns, job_id).await?;
                            return Err(ExecError::Conflict { operation: "register", job_id: job_id.to_string() });
                        }
                        Err(e) => return Err(nomad_error("register", job_id, e)),
                    }
                    // Read back Version and JobModifyIndex (never from the register reply: api-contract B11 point 4).
                    let live = self.refresh(ns, job_id).await?;
                    applied = live.map(|j| Applied {
                        hash: hash.clone(),
                        reason: *reason,
                        job_version: j.version,
                        job_modify_index: j.job_modify_index,
                    });
                }
                Action::Deregister { job_id, purge } => {
                    // Nomad's DELETE has no EnforceIndex: re-read the job just before, so a job that changed hands
                    // since the cached read is never stopped (the decision is then made again on fresh data).
                    let fresh = self.refresh(ns, job_id).await?;
                    if !fresh.as_ref().is_some_and(|j| j.owned_by(&key.to_string())) {
                        return Err(ExecError::Conflict { operation: "deregister", job_id: job_id.to_string() });
                    }
                    self.metrics.nomad_write(if *purge { "purge" } else { "stop" });
                    self.nomad
                        .deregister(ns, job_id, *purge)
                        .await
                        .map_err(|e| nomad_error("deregister", job_id, e))?;
                    self.refresh(ns, job_id).await?;
                }
                Action::DeleteStatus => {
                    let status_key = key.status_kv_key(&self.prefix);
                    self.consul.delete(&status_key).await.map_err(|e| ExecError::Unavailable {
                        operation: "delete status",
                        job_id: job_id.to_string(),
                        source: Box::new(e),
                    })?;
                    self.statuses.remove(key);
                }
            }
        }
        Ok(applied)
    }

    /// Reads the job and puts what Nomad says into the live cache.
    async fn refresh(&self, ns: &str, job_id: &str) -> Result<Option<LiveJob>, ExecError> {
        match self.nomad.job(ns, job_id).await {
            Ok(Some(job)) => {
                let live = LiveJob::from(&job);
                self.live.upsert_job(live.clone());
                Ok(Some(live))
            }
            Ok(None) => {
                self.live.remove_job(ns, job_id);
                Ok(None)
            }
            Err(e) => Err(nomad_error("read job", job_id, e)),
        }
    }
}

/// Maps a Nomad client error to the execution error that carries the retry policy.
fn nomad_error(operation: &'static str, job_id: &str, e: NomadError) -> ExecError {
    match e {
        NomadError::EnforceIndexConflict { .. } => ExecError::Conflict { operation, job_id: job_id.to_string() },
        NomadError::JobInvalid { message, .. } => ExecError::Rejected { job_id: job_id.to_string(), message },
        NomadError::PermissionDenied { .. } => ExecError::Forbidden { operation, job_id: job_id.to_string() },
        other => ExecError::Unavailable { operation, job_id: job_id.to_string(), source: Box::new(other) },
    }
}
