//! What a reconcile tells the queue: when the key should run again, and why.

use std::time::Duration;

/// The result of one reconcile of one key, as the queue needs it.
///
/// The queue never sees the reconciler's error itself: the reconciler classifies
/// it into a [`Retry`] (STYLE item 5) and logs it, so the queue's behaviour depends
/// only on this value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// When the key should run again.
    pub outcome: Outcome,
    /// The generation of the desired record this reconcile acted on, if it knew it.
    ///
    /// A key's failure count belongs to one generation: a result or a wake-up for
    /// a different generation resets the backoff, so a fixed record is tried at
    /// once instead of after a delay earned by its broken predecessor.
    pub generation: Option<u64>,
}

impl Reconciled {
    /// Converged: nothing to do until something changes (an event or the resync).
    #[must_use]
    pub fn done(generation: Option<u64>) -> Reconciled {
        Reconciled { outcome: Outcome::Done, generation }
    }

    /// Succeeded, but a timed step is in progress (canary pause, analysis interval,
    /// cooldown): look again after `after` even if nothing changes.
    #[must_use]
    pub fn requeue_after(after: Duration, generation: Option<u64>) -> Reconciled {
        Reconciled { outcome: Outcome::RequeueAfter(after), generation }
    }

    /// Failed; `retry` says how the queue should try again.
    #[must_use]
    pub fn retry(retry: Retry, generation: Option<u64>) -> Reconciled {
        Reconciled { outcome: Outcome::Retry { retry }, generation }
    }
}

/// When a key should run again after a reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Success; run again only when woken (event, resync). Resets the backoff.
    Done,
    /// Success; run again after this delay, or earlier if woken. Resets the backoff.
    RequeueAfter(Duration),
    /// Failure, retried as the policy says.
    Retry {
        /// How to retry; see [`Retry`].
        retry: Retry,
    },
}

/// How a failed reconcile is retried: the output of the reconciler's error
/// classification (STYLE item 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// A transient outage (network, 5xx, timeout): count one more failure and
    /// retry after the key's jittered exponential backoff.
    Backoff,
    /// Retry after exactly this delay, without counting a failure: a conflict
    /// (`EnforceIndex`, CAS) is `After(Duration::ZERO)`, since the next attempt reads
    /// fresh state and should succeed. The backoff is neither grown nor reset.
    After(Duration),
    /// Retrying cannot help (a bug, logged by the reconciler): schedule nothing,
    /// and run again only when woken. The backoff is neither grown nor reset.
    Never,
}
