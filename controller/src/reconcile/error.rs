//! Errors met while carrying out a plan, and the one policy that says how each is retried.

use std::time::Duration;

/// A failure while executing a plan. Each variant says whether it can be retried.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Nomad or Consul could not be reached or answered 5xx. Retryable with backoff.
    #[error("{operation} failed for job {job_id:?}")]
    Unavailable {
        /// What was attempted (`register`, `deregister`, `read job`, `write status`).
        operation: &'static str,
        /// The job concerned.
        job_id: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The write raced another writer (`EnforceIndex` or a status CAS). Retryable at once, after a refresh.
    #[error("{operation} for job {job_id:?} lost a race with another writer")]
    Conflict {
        /// What was attempted.
        operation: &'static str,
        /// The job concerned.
        job_id: String,
    },
    /// Nomad rejected the job as invalid. Not retryable: the record must change.
    #[error("Nomad rejected job {job_id:?}: {message}")]
    Rejected {
        /// The job concerned.
        job_id: String,
        /// Nomad's validation text.
        message: String,
    },
    /// The token may not do this. Retryable with backoff (a person may fix the policy).
    #[error("permission denied: {operation} for job {job_id:?}")]
    Forbidden {
        /// What was attempted.
        operation: &'static str,
        /// The job concerned.
        job_id: String,
    },
}

pub use crate::queue::Retry;

impl ExecError {
    /// A bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ExecError::Unavailable { .. } => "unavailable",
            ExecError::Conflict { .. } => "conflict",
            ExecError::Rejected { .. } => "rejected",
            ExecError::Forbidden { .. } => "forbidden",
        }
    }

    /// The retry policy for this error.
    pub fn classify(&self) -> Retry {
        match self {
            ExecError::Unavailable { .. } | ExecError::Forbidden { .. } => Retry::Backoff,
            ExecError::Conflict { .. } => Retry::After(Duration::ZERO),
            ExecError::Rejected { .. } => Retry::Never,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_should_follow_the_policy() {
        let conflict = ExecError::Conflict { operation: "register", job_id: "web".into() };
        assert_eq!(conflict.classify(), Retry::After(Duration::ZERO));
        let rejected = ExecError::Rejected { job_id: "web".into(), message: "1 error occurred".into() };
        assert_eq!(rejected.classify(), Retry::Never);
        let forbidden = ExecError::Forbidden { operation: "register", job_id: "web".into() };
        assert_eq!(forbidden.classify(), Retry::Backoff);
    }
}
