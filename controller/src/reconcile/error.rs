//! Errors met while gathering for or carrying out a plan, and the one policy that says how each is retried.

use std::time::Duration;

pub use crate::queue::Retry;

/// A failure of one reconcile step. Each variant says whether it can be retried.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Nomad or Consul could not be reached or answered 5xx. Retryable with backoff.
    #[error("{operation} failed for {target:?}")]
    Unavailable {
        /// What was attempted (`register`, `deregister`, `read job`, `read record`, `write status`).
        operation: &'static str,
        /// The job or key concerned.
        target: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The write raced another writer (`EnforceIndex` or a status CAS), or a job to stop changed hands. Retried at
    /// once the first time; then with backoff, and reported in status (see [`super::CONFLICTS_REPORTED`]).
    #[error("{operation} for {target:?} lost a race with another writer")]
    Conflict {
        /// What was attempted.
        operation: &'static str,
        /// The job or key concerned.
        target: String,
    },
    /// Nomad rejected the job (invalid, or a change of job type it refuses). Not retryable: the record must change.
    #[error("Nomad rejected job {job_id:?}: {message}")]
    Rejected {
        /// The job concerned.
        job_id: String,
        /// Nomad's text.
        message: String,
    },
    /// The job's namespace does not exist in Nomad. Not retried on a timer: creating the namespace wakes the app.
    #[error("Nomad namespace {namespace:?} does not exist")]
    NamespaceMissing {
        /// The namespace.
        namespace: String,
    },
    /// Nomad refused a rollout write because the deployment or job moved on (a deployment that is unknown or
    /// already terminal, canaries no longer all healthy, a revert whose prior version no longer holds): Drover's view
    /// lags Nomad's. Retried after [`REFUSED_RECHECK`], when the watch has shown the new state and the decision is
    /// made again on it; never a reason to fail the app.
    #[error("Nomad refused {operation} for {target:?}: {message}")]
    Refused {
        /// What was attempted (`promote`, `fail deployment`, `pause deployment`, `revert`).
        operation: &'static str,
        /// The deployment or job concerned.
        target: String,
        /// Nomad's text.
        message: String,
    },
    /// The token may not do this. Retryable with backoff (a person may fix the policy).
    #[error("permission denied: {operation} for {target:?}")]
    Forbidden {
        /// What was attempted.
        operation: &'static str,
        /// The job or key concerned.
        target: String,
    },
    /// This replica stopped leading (or leads in a later term) since the reconcile started: the write was not sent.
    /// Not retried here: the replica that leads now reconciles the app, and this one resyncs every app when it
    /// leads again.
    #[error("{operation} for {target:?} dropped")]
    NotLeader {
        /// The write that was not sent.
        operation: &'static str,
        /// The job or key concerned.
        target: String,
        /// The term that ended.
        #[source]
        source: crate::leader::NotLeader,
    },
}

impl ExecError {
    /// A bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ExecError::Unavailable { .. } => "unavailable",
            ExecError::Conflict { .. } => "conflict",
            ExecError::Rejected { .. } => "rejected",
            ExecError::Refused { .. } => "refused",
            ExecError::NamespaceMissing { .. } => "namespace_missing",
            ExecError::Forbidden { .. } => "forbidden",
            ExecError::NotLeader { .. } => "not_leader",
        }
    }

    /// The retry policy for this error, given how many conflicts in a row the app has met (this one included).
    pub fn classify(&self, conflicts_in_row: u32) -> Retry {
        match self {
            ExecError::Unavailable { .. } | ExecError::Forbidden { .. } => Retry::Backoff,
            // The next attempt reads fresh state and should succeed; a race that keeps recurring must not spin.
            ExecError::Conflict { .. } if conflicts_in_row <= 1 => Retry::After(Duration::ZERO),
            ExecError::Conflict { .. } => Retry::Backoff,
            ExecError::Rejected { .. } | ExecError::NamespaceMissing { .. } | ExecError::NotLeader { .. } => {
                Retry::Never
            }
            ExecError::Refused { .. } => Retry::After(REFUSED_RECHECK),
        }
    }
}

/// How long after Nomad refused a rollout write the app is looked at again (the watch normally shows why first).
pub const REFUSED_RECHECK: Duration = Duration::from_secs(2);

/// Maps a Nomad error of a rollout write (promote, fail, pause, revert): Nomad's refusal of the write as such is
/// [`ExecError::Refused`] (decide again on fresh state), anything else as for any write.
pub(super) fn from_nomad_rollout(operation: &'static str, target: &str, e: crate::nomad::Error) -> ExecError {
    match e {
        crate::nomad::Error::Rejected { message, .. } => {
            ExecError::Refused { operation, target: target.to_string(), message }
        }
        other => from_nomad(operation, target, other),
    }
}

/// `Ok` while `gate` still leads in `term`: checked right before every write, so no write of a reconcile that
/// outlived its leadership is sent.
pub(super) fn admit(
    gate: &crate::leader::LeaderGate,
    term: crate::leader::Term,
    operation: &'static str,
    target: &str,
) -> Result<(), ExecError> {
    gate.admit(term).map_err(|source| ExecError::NotLeader { operation, target: target.to_string(), source })
}

/// Maps a Nomad client error to the execution error that carries the retry policy.
pub(super) fn from_nomad(operation: &'static str, job_id: &str, e: crate::nomad::Error) -> ExecError {
    use crate::nomad::Error as N;
    match e {
        N::EnforceIndexConflict { .. } => ExecError::Conflict { operation, target: job_id.to_string() },
        N::JobInvalid { message, .. } | N::JobTypeChange { message, .. } => {
            ExecError::Rejected { job_id: job_id.to_string(), message }
        }
        N::NamespaceNotFound { namespace, .. } => ExecError::NamespaceMissing { namespace },
        N::PermissionDenied { .. } => ExecError::Forbidden { operation, target: job_id.to_string() },
        other => ExecError::Unavailable { operation, target: job_id.to_string(), source: Box::new(other) },
    }
}

/// Maps a Consul client error: a denial is `Forbidden`, anything else an outage.
pub(super) fn from_consul(operation: &'static str, key: &str, e: crate::consul::Error) -> ExecError {
    if e.is_permission_denied() {
        ExecError::Forbidden { operation, target: key.to_string() }
    } else {
        ExecError::Unavailable { operation, target: key.to_string(), source: Box::new(e) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_should_follow_the_policy() {
        let conflict = ExecError::Conflict { operation: "register", target: "web".into() };
        assert_eq!(conflict.classify(1), Retry::After(Duration::ZERO), "the first conflict retries at once");
        assert_eq!(conflict.classify(2), Retry::Backoff, "a recurring conflict backs off");
        let rejected = ExecError::Rejected { job_id: "web".into(), message: "1 error occurred".into() };
        assert_eq!(rejected.classify(0), Retry::Never);
        let forbidden = ExecError::Forbidden { operation: "register", target: "web".into() };
        assert_eq!(forbidden.classify(0), Retry::Backoff);
        assert_eq!(ExecError::NamespaceMissing { namespace: "x".into() }.classify(0), Retry::Never);
        let refused = from_nomad_rollout(
            "promote",
            "d1",
            crate::nomad::Error::Rejected {
                endpoint: "deployment_promote",
                target: "d1".into(),
                code: 500,
                message: "can't promote terminal deployment".into(),
            },
        );
        assert_eq!(refused.classify(0), Retry::After(REFUSED_RECHECK), "a refusal is decided again, never final");
    }
}
