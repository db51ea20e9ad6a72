//! Carrying out a [`Plan`](super::Plan)'s actions, in order, stopping at the first failure. No decisions here,
//! except the one safety check Nomad's DELETE lacks an index for: a job is stopped only if a fresh read shows it
//! still carries the owner value the plan names. Every write is admitted by the leadership gate first (the term the
//! reconcile started in must still hold).

use super::error::{ExecError, admit, from_consul, from_nomad, from_nomad_rollout};
use super::plan::{Action, Applied};
use super::ports::{KvPort, NomadPort};
use crate::leader::{LeaderGate, Term};
use crate::metrics::Metrics;

/// Runs `actions` for an app in `namespace` whose status is at `status_key` (CAS guard `status_index`). Returns
/// what a successful register produced, and whether the status was deleted. Writes are sent only while `gate` leads
/// in `term`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn execute<N: NomadPort, K: KvPort>(
    (gate, term): (&LeaderGate, Term),
    nomad: &N,
    kv: &K,
    metrics: &Metrics,
    namespace: &str,
    status_key: &str,
    status_index: u64,
    actions: &[Action],
) -> Result<(Option<Applied>, bool), ExecError> {
    let mut applied = None;
    let mut deleted = false;
    for action in actions {
        match action {
            Action::Register { job, enforce_index, hash, reason, preserve_counts } => {
                let job_id = job.get("ID").and_then(serde_json::Value::as_str).unwrap_or_default();
                admit(gate, term, "register", job_id)?;
                metrics.nomad_write("register");
                let reply = nomad
                    .register(namespace, job, *enforce_index, *preserve_counts)
                    .await
                    .map_err(|e| from_nomad("register", job_id, e))?;
                // A register that stores a new version answers with JobModifyIndex = Index (one Raft apply for the
                // job and its evaluation); an identical one answers with the job's ModifyIndex and the later
                // evaluation's Index (api-contract B4, nomad/job_endpoint.go `Register`). In that case the
                // EnforceIndex that succeeded is the job's JobModifyIndex.
                let new_version = *enforce_index == 0 || reply.job_modify_index == reply.index;
                applied = Some(Applied {
                    hash: hash.clone(),
                    reason: *reason,
                    job_modify_index: if new_version { reply.job_modify_index } else { *enforce_index },
                    new_version,
                    scale: None,
                });
            }
            Action::Scale { job_id, group, count, message, enforce_index, hash, direction } => {
                admit(gate, term, "scale", job_id)?;
                metrics.nomad_write("scale");
                let reply = nomad
                    .scale(namespace, job_id, group, *count, message, *enforce_index)
                    .await
                    .map_err(|e| from_nomad("scale", job_id, e))?;
                // A scale always stores a new version; the reply's JobModifyIndex is the job write's (B10).
                applied = Some(Applied {
                    hash: hash.clone(),
                    reason: super::plan::RegisterReason::Scale,
                    job_modify_index: reply.job_modify_index,
                    new_version: true,
                    scale: Some(super::plan::AppliedScale { count: *count, direction, message: message.clone() }),
                });
            }
            Action::Deregister { job_id, owner, purge } => {
                let fresh = nomad.job(namespace, job_id).await.map_err(|e| from_nomad("read job", job_id, e))?;
                match fresh {
                    // Gone already: what the policy wanted.
                    None => continue,
                    Some(j) if !j.owned_by(owner) => {
                        return Err(ExecError::Conflict { operation: "deregister", target: job_id.clone() });
                    }
                    Some(_) => {}
                }
                admit(gate, term, "deregister", job_id)?;
                metrics.nomad_write(if *purge { "purge" } else { "stop" });
                nomad.deregister(namespace, job_id, *purge).await.map_err(|e| from_nomad("deregister", job_id, e))?;
            }
            Action::DeleteStatus => {
                admit(gate, term, "delete status", status_key)?;
                let done = kv
                    .delete_cas(status_key, status_index)
                    .await
                    .map_err(|e| from_consul("delete status", status_key, e))?;
                if !done {
                    return Err(ExecError::Conflict { operation: "delete status", target: status_key.to_string() });
                }
                deleted = true;
            }
            Action::PromoteDeployment { id } => {
                admit(gate, term, "promote", id)?;
                metrics.nomad_write(action.name());
                nomad.promote(namespace, id).await.map_err(|e| from_nomad_rollout("promote", id, e))?;
            }
            Action::FailDeployment { id } => {
                admit(gate, term, "fail deployment", id)?;
                metrics.nomad_write(action.name());
                nomad.fail_deployment(namespace, id).await.map_err(|e| from_nomad_rollout("fail deployment", id, e))?;
            }
            Action::PauseDeployment { id, pause } => {
                admit(gate, term, "pause deployment", id)?;
                metrics.nomad_write(action.name());
                nomad
                    .pause_deployment(namespace, id, *pause)
                    .await
                    .map_err(|e| from_nomad_rollout("pause deployment", id, e))?;
            }
            Action::RevertJob { job_id, version, enforce_prior_version } => {
                admit(gate, term, "revert", job_id)?;
                metrics.nomad_write(action.name());
                nomad
                    .revert(namespace, job_id, *version, *enforce_prior_version)
                    .await
                    .map_err(|e| from_nomad_rollout("revert", job_id, e))?;
            }
        }
    }
    Ok((applied, deleted))
}
