//! The queue's handle (enqueue from anywhere) and its runner (dispatches due keys to bounded workers).

use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::num::NonZeroUsize;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::outcome::{Reconciled, Retry};
use super::scheduler::{Priority, Scheduler, Wake};

/// How the queue runs.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    /// How many keys are reconciled at once (`--workers`).
    pub workers: NonZeroUsize,
    /// The per-key retry policy for `Retry::Backoff`.
    pub backoff: Backoff,
    /// On shutdown, how long running reconciles may take to finish before they are aborted.
    pub shutdown_grace: Duration,
}

/// Workers by default. A reconcile mostly waits on Consul and Nomad (~3 ms of a ~4 ms promote), so the workers
/// bound the requests in flight rather than CPU: when 200 canaries end their analyses together, a woken app waited
/// ~38 ms on average for one of 8 workers and ~17 ms for one of 32 (end condition → promote request p50 92 ms with
/// 8, 78 ms with 32, against a 100 ms target; README, `--bench rollouts`). Argo Rollouts runs 10 rollout workers;
/// kube-rs leaves it unbounded.
pub const DEFAULT_WORKERS: NonZeroUsize = match NonZeroUsize::new(32) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

impl Default for QueueConfig {
    /// [`DEFAULT_WORKERS`] workers, the default [`Backoff`], 30 s of shutdown grace.
    fn default() -> Self {
        QueueConfig { workers: DEFAULT_WORKERS, backoff: Backoff::default(), shutdown_grace: Duration::from_secs(30) }
    }
}

/// What [`Runner::run`] reports when it returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// Reconciles still running when the shutdown grace ran out, and aborted.
    pub aborted: usize,
}

/// Everything the handle and the runner share; the fields change together, so
/// they sit behind one lock, held only for bookkeeping (never across an await).
#[derive(Debug)]
struct Inner<K> {
    scheduler: Scheduler<K>,
    /// The stores have their first full contents; until then nothing is dispatched.
    ready: bool,
    /// Shutdown has begun; new work is refused.
    closed: bool,
}

#[derive(Debug)]
struct Shared<K> {
    inner: Mutex<Inner<K>>,
    /// Wakes the runner when its plan may have changed (an earlier key, ready).
    wake: Notify,
}

impl<K> Shared<K> {
    fn lock(&self) -> MutexGuard<'_, Inner<K>> {
        // Nothing panics while the lock is held, and the state stays consistent
        // between calls, so a poisoned lock is safe to keep using.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A cheap-to-clone handle for asking that keys be reconciled: given to watchers,
/// event handlers and the resync timer.
#[derive(Debug)]
pub struct Queue<K> {
    shared: Arc<Shared<K>>,
}

impl<K> Clone for Queue<K> {
    fn clone(&self) -> Self {
        Queue { shared: Arc::clone(&self.shared) }
    }
}

/// Dispatches due keys to at most `workers` concurrent reconciles; see [`Runner::run`].
#[derive(Debug)]
pub struct Runner<K> {
    shared: Arc<Shared<K>>,
    workers: usize,
    shutdown_grace: Duration,
    on_start: WaitObserver,
}

/// Told, as each reconcile starts, how long its key waited for a worker once due (the `queue_wait_seconds` metric).
#[derive(Clone, Default)]
struct WaitObserver(Option<Arc<dyn Fn(Priority, Duration) + Send + Sync>>);

impl Debug for WaitObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "WaitObserver(set)" } else { "WaitObserver(none)" })
    }
}

impl<K> Queue<K>
where
    K: Clone + Eq + Hash + Ord + Debug + Send + Sync + 'static,
{
    /// Creates an empty queue, not ready, and the runner that will drain it.
    pub fn new(config: QueueConfig) -> (Queue<K>, Runner<K>) {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner { scheduler: Scheduler::new(config.backoff), ready: false, closed: false }),
            wake: Notify::new(),
        });
        let runner = Runner {
            shared: Arc::clone(&shared),
            workers: config.workers.get(),
            shutdown_grace: config.shutdown_grace,
            on_start: WaitObserver::default(),
        };
        (Queue { shared }, runner)
    }

    /// Asks for `key` to be reconciled at `at` (`None`: now).
    ///
    /// - One entry per key: if the key is already waiting, the earlier time wins.
    /// - If the key is running, it runs once more after the current run ends.
    /// - If the key is backing off after failures, it does not run before its
    ///   backoff ends, unless `generation` is known and differs from the one the
    ///   failures belong to (then the backoff is reset). The failure count is
    ///   never changed here (kubernetes/kubernetes#132805).
    ///   If the failures' generation is unknown (no result reported one), the
    ///   first known generation is adopted instead of counting as new.
    /// - `reason` is logged, never given to the reconciler: a reconcile reads the
    ///   whole current state instead of trusting what woke it.
    ///
    /// Ignored after shutdown has begun.
    pub fn enqueue(&self, key: K, at: Option<Instant>, generation: Option<u64>, reason: &'static str) {
        let wake = Wake { at: at.unwrap_or_else(Instant::now), generation, reason, priority: Priority::Key };
        let earliest = {
            let mut inner = self.shared.lock();
            if inner.closed {
                tracing::debug!(key = ?key, reason, "queue closed, wake-up dropped");
                return;
            }
            tracing::trace!(key = ?key, reason, ?generation, "enqueue");
            inner.scheduler.schedule(key, wake)
        };
        if earliest {
            self.shared.wake.notify_one();
        }
    }

    /// Asks for every key in `keys` to be reconciled now (the start, the periodic
    /// resync, a new leader's resync), under one lock. Same rules as
    /// [`Queue::enqueue`], without a generation, except that these wake-ups are a
    /// sweep: single-key wake-ups due up to [`SWEEP_HANDICAP`](super::SWEEP_HANDICAP) later run first, so a
    /// promote or a record change never waits behind every app (module doc of
    /// `scheduler`).
    pub fn enqueue_all<I>(&self, keys: I, reason: &'static str)
    where
        I: IntoIterator<Item = K>,
    {
        let now = Instant::now();
        let mut earliest = false;
        let mut count = 0usize;
        {
            let mut inner = self.shared.lock();
            if inner.closed {
                return;
            }
            for key in keys {
                let wake = Wake { at: now, generation: None, reason, priority: Priority::Sweep };
                earliest |= inner.scheduler.schedule(key, wake);
                count += 1;
            }
        }
        tracing::debug!(count, reason, "enqueued all");
        if earliest {
            self.shared.wake.notify_one();
        }
    }

    /// Releases held work: call once the stores hold their first full listing, so
    /// no reconcile acts on a partial view (and, say, deletes a job whose record
    /// has not been read yet).
    pub fn set_ready(&self) {
        self.shared.lock().ready = true;
        self.shared.wake.notify_one();
    }

    /// Keys waiting to run, including running keys that will run again: the
    /// `queue_depth` gauge.
    pub fn depth(&self) -> usize {
        self.shared.lock().scheduler.depth()
    }

    /// Keys being reconciled right now.
    pub fn in_flight(&self) -> usize {
        self.shared.lock().scheduler.running()
    }
}

impl<K> Runner<K>
where
    K: Clone + Eq + Hash + Ord + Debug + Send + Sync + 'static,
{
    /// Tells `observe` how long each key waited for a worker once due, by its wake-up's priority.
    #[must_use]
    pub fn with_wait_observer(mut self, observe: impl Fn(Priority, Duration) + Send + Sync + 'static) -> Self {
        self.on_start = WaitObserver(Some(Arc::new(observe)));
        self
    }

    /// Runs `reconcile` for due keys, at most `workers` at once and never two
    /// runs of one key at once, until `shutdown` is cancelled.
    ///
    /// Then it refuses new work, drops waiting keys, and waits up to
    /// `shutdown_grace` for running reconciles before aborting them. A reconcile
    /// that panics is logged and treated as [`Retry::Never`]: the key runs again
    /// when next woken.
    pub async fn run<F, Fut>(self, reconcile: F, shutdown: CancellationToken) -> Stopped
    where
        F: Fn(K) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Reconciled> + Send + 'static,
    {
        let mut tasks: JoinSet<(K, Option<Reconciled>)> = JoinSet::new();
        while !shutdown.is_cancelled() {
            let (batch, next_at) = self.take_due(tasks.len());
            for (key, reason) in batch {
                tracing::debug!(key = ?key, reason, "reconcile starting");
                let reconcile = reconcile.clone();
                tasks.spawn(async move {
                    // Calling `reconcile` inside the guarded block catches a panic in
                    // the closure as well as in the future it returns.
                    let for_run = key.clone();
                    let run = AssertUnwindSafe(async move { reconcile(for_run).await });
                    (key, run.catch_unwind().await.ok())
                });
            }
            let sleep = async {
                match next_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(joined) = tasks.join_next() => self.finished(joined),
                () = self.shared.wake.notified() => {}
                () = sleep => {}
            }
        }
        self.stop(tasks).await
    }

    /// Pops the keys that are due now and fit in the free workers; returns them and
    /// when to look again if nothing else happens.
    fn take_due(&self, running: usize) -> (Vec<(K, &'static str)>, Option<Instant>) {
        let mut inner = self.shared.lock();
        if !inner.ready {
            return (Vec::new(), None);
        }
        let now = Instant::now();
        let mut batch = Vec::new();
        while running + batch.len() < self.workers {
            match inner.scheduler.pop_due_wake(now) {
                Some((key, wake)) => {
                    if let Some(observe) = &self.on_start.0 {
                        observe(wake.priority, now.saturating_duration_since(wake.at));
                    }
                    batch.push((key, wake.reason));
                }
                None => break,
            }
        }
        // With every worker busy, only a finished task can free one: no timer needed.
        let next_at = if running + batch.len() < self.workers { inner.scheduler.next_due_at() } else { None };
        (batch, next_at)
    }

    /// Records a finished reconcile and schedules what follows.
    fn finished(&self, joined: Result<(K, Option<Reconciled>), tokio::task::JoinError>) {
        let (key, result) = match joined {
            Ok(done) => done,
            // Tasks are only aborted in `stop`, and panics are caught inside the
            // task, so this cannot happen; log it rather than crash the controller.
            Err(err) => {
                tracing::error!(error = %err, "reconcile task failed outside its guard");
                return;
            }
        };
        let result = result.unwrap_or_else(|| {
            tracing::error!(key = ?key, "reconcile panicked; not retrying until the key is woken");
            Reconciled::retry(Retry::Never, None)
        });
        tracing::debug!(key = ?key, outcome = ?result.outcome, "reconcile finished");
        let now = Instant::now();
        self.shared.lock().scheduler.finish(key, &result, now, &mut rand::rng());
    }

    /// Shuts down: refuse work, drop waiting keys, let running ones finish within the grace.
    async fn stop(self, mut tasks: JoinSet<(K, Option<Reconciled>)>) -> Stopped {
        {
            let mut inner = self.shared.lock();
            inner.closed = true;
            inner.scheduler.clear_waiting();
        }
        let running = tasks.len();
        tracing::info!(running, grace = ?self.shutdown_grace, "queue stopping");
        let drain = async {
            while let Some(joined) = tasks.join_next().await {
                self.finished(joined);
            }
        };
        let drained = tokio::time::timeout(self.shutdown_grace, drain).await;
        let aborted = match drained {
            Ok(()) => 0,
            Err(_) => {
                let aborted = tasks.len();
                tracing::warn!(aborted, "shutdown grace ran out; aborting reconciles");
                tasks.shutdown().await;
                aborted
            }
        };
        // Whatever the finished runs asked for is dropped, and aborted runs will
        // never report back: the queue is closed for good.
        self.shared.lock().scheduler.clear();
        Stopped { aborted }
    }
}
