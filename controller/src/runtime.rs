//! The controller process (DESIGN §1): the Consul watch feeds the desired store, the Nomad list + event stream feed
//! the live cache, both enqueue the apps they touch, and bounded workers run `reconcile` per key.
//!
//! ```text
//!  Consul KV ─watch─► DesiredStore ─┐
//!  Nomad events ────► LiveCache ────┼─► Queue<AppKey> ─► reconcile(key): decide ─► execute ─► write status
//!  resync timer ────────────────────┘
//! ```

use std::collections::BTreeSet;
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::app::AppKey;
use crate::consul::{self, BlockingQuery};
use crate::live::{LiveDeployment, LiveJob};
use crate::metrics::Metrics;
use crate::nomad;
use crate::queue::{Backoff, Outcome, Queue, QueueConfig, Reconciled, Retry};
use crate::reconcile::error::ExecError;
use crate::reconcile::execute::Executor;
use crate::reconcile::{self, Action, Record, Requeue};
use crate::status::{AppStatus, Phase, timestamp};
use crate::store::{DesiredStore, LiveCache, StatusCache};

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// KV prefix: records at `<prefix>/apps/`, status at `<prefix>/status/`.
    pub prefix: String,
    /// Concurrent reconciles.
    pub workers: NonZeroUsize,
    /// Every app is looked at again this often, even without events.
    pub resync: Duration,
    /// Per-key retry backoff.
    pub backoff: Backoff,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            prefix: "drover".to_string(),
            workers: NonZeroUsize::new(8).unwrap_or(NonZeroUsize::MIN),
            resync: Duration::from_secs(300),
            backoff: Backoff::default(),
        }
    }
}

/// What the HTTP API and `drover dev` read while the controller runs.
#[derive(Clone, Debug)]
pub struct Handle {
    /// Records.
    pub desired: DesiredStore,
    /// Statuses.
    pub statuses: StatusCache,
    /// Live Nomad state.
    pub live: LiveCache,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// True once the stores are loaded and the queue released.
    pub ready: watch::Receiver<bool>,
}

/// The shared context of every reconcile.
struct Ctx {
    config: Config,
    desired: DesiredStore,
    statuses: StatusCache,
    live: LiveCache,
    metrics: Arc<Metrics>,
    exec: Executor,
    consul: consul::Client,
}

/// The controller, ready to run.
pub struct Controller {
    ctx: Arc<Ctx>,
    nomad: nomad::Client,
    ready_tx: watch::Sender<bool>,
}

impl Controller {
    /// A controller over these clients.
    pub fn new(config: Config, consul: consul::Client, nomad: nomad::Client, metrics: Arc<Metrics>) -> Controller {
        let desired = DesiredStore::default();
        let statuses = StatusCache::default();
        let live = LiveCache::default();
        let exec = Executor {
            nomad: nomad.clone(),
            consul: consul.clone(),
            live: live.clone(),
            statuses: statuses.clone(),
            prefix: config.prefix.clone(),
            metrics: metrics.clone(),
        };
        let ctx = Arc::new(Ctx { config, desired, statuses, live, metrics, exec, consul });
        Controller { ctx, nomad, ready_tx: watch::Sender::new(false) }
    }

    /// Stores and readiness, for the HTTP API.
    pub fn handle(&self) -> Handle {
        Handle {
            desired: self.ctx.desired.clone(),
            statuses: self.ctx.statuses.clone(),
            live: self.ctx.live.clone(),
            metrics: self.ctx.metrics.clone(),
            ready: self.ready_tx.subscribe(),
        }
    }

    /// Runs until `shutdown`: never returns early on an outage (everything is retried with backoff).
    pub async fn run(self, shutdown: CancellationToken) {
        let ctx = self.ctx;
        let (queue, runner) = Queue::<AppKey>::new(QueueConfig {
            workers: ctx.config.workers,
            backoff: ctx.config.backoff.clone(),
            ..QueueConfig::default()
        });
        let tasks = tokio_util::task::TaskTracker::new();
        let (desired_ready_tx, desired_ready) = watch::channel(false);
        let (live_ready_tx, live_ready) = watch::channel(false);
        let (status_ready_tx, status_ready) = watch::channel(false);

        tasks.spawn(load_statuses(ctx.clone(), status_ready_tx, shutdown.clone()));
        tasks.spawn(watch_records(ctx.clone(), queue.clone(), desired_ready_tx, shutdown.clone()));
        tasks.spawn(watch_nomad(ctx.clone(), self.nomad, queue.clone(), live_ready_tx, shutdown.clone()));
        tasks.spawn(release_when_ready(
            ctx.clone(),
            queue.clone(),
            [desired_ready, live_ready, status_ready],
            self.ready_tx,
            shutdown.clone(),
        ));
        tasks.spawn(report_gauges(ctx.clone(), queue.clone(), shutdown.clone()));
        tasks.close();

        let worker_ctx = ctx.clone();
        let stopped = runner.run(move |key| reconcile(worker_ctx.clone(), key), shutdown.clone()).await;
        if stopped.aborted > 0 {
            tracing::warn!(aborted = stopped.aborted, "reconciles aborted at shutdown");
        }
        tasks.wait().await;
    }
}

/// Reads every status once (non-blocking); statuses are then kept by the workers that write them.
async fn load_statuses(ctx: Arc<Ctx>, ready: watch::Sender<bool>, shutdown: CancellationToken) {
    let prefix = format!("{}/status/", ctx.config.prefix);
    let mut failures = 0u32;
    loop {
        match ctx.consul.list(&prefix, BlockingQuery::now()).await {
            Ok(listing) => {
                ctx.statuses.load(&ctx.config.prefix, &listing.entries);
                ready.send_replace(true);
                return;
            }
            Err(err) => {
                failures += 1;
                let delay = ctx.config.backoff.delay(failures, &mut rand::rng());
                tracing::warn!(error = %crate::error_chain(&err), retry_in = ?delay, "cannot list statuses");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Follows the records prefix; every changed key is enqueued with its generation.
async fn watch_records(ctx: Arc<Ctx>, queue: Queue<AppKey>, ready: watch::Sender<bool>, shutdown: CancellationToken) {
    let config = consul::watch::WatchConfig::new(format!("{}/apps/", ctx.config.prefix));
    let stream = consul::watch::watch(ctx.consul.clone(), config, ctx.metrics.clone());
    tokio::pin!(stream);
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = stream.next() => event,
        };
        let Some(consul::watch::WatchEvent::Snapshot { entries, filtered_by_acls, .. }) = event else { return };
        if filtered_by_acls {
            tracing::warn!(
                prefix = %ctx.config.prefix,
                "Consul filtered the records listing by ACLs: Drover's token cannot read every record; records it \
                 cannot see are not treated as deleted (grant key_prefix \"<prefix>/apps/\" read)"
            );
        }
        let changes = ctx.desired.apply_snapshot(&ctx.config.prefix, &entries, !filtered_by_acls);
        for change in changes {
            queue.enqueue(change.key, None, change.generation, "record changed");
        }
        ready.send_replace(true);
    }
}

/// Follows Nomad: one list, then the event stream; enqueues the apps whose job or deployment changed.
async fn watch_nomad(
    ctx: Arc<Ctx>,
    client: nomad::Client,
    queue: Queue<AppKey>,
    ready: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let stream = nomad::watch::watch(client, nomad::watch::LiveWatchConfig::default(), ctx.metrics.clone());
    tokio::pin!(stream);
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = stream.next() => event,
        };
        // One batch is one Nomad write (a list, or one frame of the event stream): all of it reaches the cache
        // before any app is enqueued. An auto-revert writes the failed deployment and the reverted job at one index;
        // a reconcile that saw the new job version without the failed deployment would take Nomad's revert for
        // drift and register the failed spec again.
        let Some(batch) = event else { return };
        let mut wake: Vec<(String, String, Option<String>, &'static str)> = Vec::new();
        for event in batch {
            match event {
                nomad::watch::LiveEvent::Resynced { jobs, deployments, .. } => {
                    let jobs = jobs.iter().map(LiveJob::from).collect();
                    let deployments = deployments
                        .iter()
                        .map(|d| (d.namespace.clone(), d.job_id.clone(), LiveDeployment::from(d)))
                        .collect();
                    for (ns, id) in ctx.live.replace_all(jobs, deployments) {
                        wake.push((ns, id, None, "nomad relisted"));
                    }
                    ready.send_replace(true);
                }
                nomad::watch::LiveEvent::JobUpserted(job) => {
                    let live = LiveJob::from(&job);
                    let owner = live.owner.clone();
                    if ctx.live.upsert_job(live) {
                        wake.push((job.namespace.clone(), job.id.clone(), owner, "job changed"));
                    }
                }
                nomad::watch::LiveEvent::JobDeleted { namespace, id } => {
                    if ctx.live.remove_job(&namespace, &id) {
                        wake.push((namespace, id, None, "job purged"));
                    }
                }
                nomad::watch::LiveEvent::Deployment(d) => {
                    if ctx.live.upsert_deployment(&d.namespace, &d.job_id, LiveDeployment::from(&d)) {
                        wake.push((d.namespace.clone(), d.job_id.clone(), None, "deployment changed"));
                    }
                }
            }
        }
        for (ns, id, owner, why) in wake {
            enqueue_job(&ctx, &queue, &ns, &id, owner.as_deref(), why);
        }
    }
}

/// Enqueues the apps a job belongs to: the one named in its owner Meta, and the record that renders to its ID.
fn enqueue_job(ctx: &Ctx, queue: &Queue<AppKey>, ns: &str, job_id: &str, owner: Option<&str>, why: &'static str) {
    let mut keys = BTreeSet::new();
    if let Some(key) = owner.and_then(|o| AppKey::from_str(o).ok()) {
        keys.insert(key);
    }
    if let Some(key) = ctx.desired.key_for_job(ns, job_id) {
        keys.insert(key);
    }
    for key in keys {
        queue.enqueue(key, None, None, why);
    }
}

/// Releases the queue once records, statuses and live state are all loaded, then drives the periodic resync.
async fn release_when_ready(
    ctx: Arc<Ctx>,
    queue: Queue<AppKey>,
    mut gates: [watch::Receiver<bool>; 3],
    ready: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    for gate in &mut gates {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            res = gate.wait_for(|r| *r) => if res.is_err() { return },
        }
    }
    let all_keys = |ctx: &Ctx| {
        let mut keys: BTreeSet<AppKey> = ctx.desired.keys().into_iter().collect();
        keys.extend(ctx.statuses.keys());
        keys
    };
    queue.enqueue_all(all_keys(&ctx), "start");
    queue.set_ready();
    ready.send_replace(true);
    tracing::info!(apps = ctx.desired.len(), jobs = ctx.live.job_count(), "stores loaded; reconciling");
    let mut tick = tokio::time::interval_at(Instant::now() + ctx.config.resync, ctx.config.resync);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => queue.enqueue_all(all_keys(&ctx), "resync"),
        }
    }
}

/// Keeps `queue_depth` and `apps{phase}` current.
async fn report_gauges(ctx: Arc<Ctx>, queue: Queue<AppKey>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        ctx.metrics.set_queue_depth(queue.depth());
        ctx.metrics.set_apps_by_phase(ctx.statuses.count_by_phase(), Phase::ALL.iter());
    }
}

/// One reconcile of one app: read the stores, decide, execute, record the status.
async fn reconcile(ctx: Arc<Ctx>, key: AppKey) -> Reconciled {
    let span = tracing::info_span!("reconcile", app = %key);
    reconcile_in_span(ctx, key).instrument(span).await
}

async fn reconcile_in_span(ctx: Arc<Ctx>, key: AppKey) -> Reconciled {
    let started = Instant::now();
    let entry = ctx.desired.get(&key);
    let generation = entry.as_ref().map(|e| e.generation);
    let record = entry.as_ref().map_or(Record::Absent, |e| e.record.clone());
    let stored = ctx.statuses.get(&key);
    let stored_status = stored.as_ref().and_then(|s| s.status.clone());
    let stored_index = stored.as_ref().map_or(0, |s| s.modify_index);
    let job_id = match &record {
        Record::Valid(r) => r.job_id.clone(),
        _ => stored_status.as_ref().and_then(|s| s.job_id.clone()).unwrap_or_else(|| key.name.clone()),
    };
    let mut live = ctx.live.live_for(&key.namespace, &job_id);
    // The job run under an earlier job ID: the one status is retiring, or the one it last applied.
    let previous = stored_status
        .as_ref()
        .and_then(|s| s.retiring_job_id.clone().or_else(|| s.job_id.clone()))
        .filter(|old| *old != job_id);
    live.previous = previous.and_then(|old| ctx.live.live_for(&key.namespace, &old).job);
    let now = SystemTime::now();
    let ts = timestamp(now);
    let plan = reconcile::decide(&key, &record, &live, stored_status.as_deref(), now);
    if plan.drift_detected {
        ctx.metrics.drift_detected();
    }
    let hash = match &record {
        Record::Valid(r) => Some(r.hash.clone()),
        _ => None,
    };
    let executed = ctx.exec.execute(&key, &job_id, &plan.actions).await;
    let mut status = plan.status;
    let deleted = executed.is_ok() && plan.actions.contains(&Action::DeleteStatus);
    let mut result = match &executed {
        Ok(applied) => {
            if let Some(s) = status.as_mut() {
                if let Some(applied) = applied {
                    reconcile::record_applied(s, generation.unwrap_or(0), applied, &ts);
                }
                s.last_error = None;
            }
            match plan.requeue {
                Requeue::AwaitChange => Reconciled::done(generation),
                Requeue::After(d) => Reconciled::requeue_after(d, generation),
            }
        }
        Err(err) => {
            tracing::warn!(error = %crate::error_chain(err), kind = err.kind(), "reconcile failed");
            if let Some(s) = status.as_mut() {
                reconcile::record_error(s, err, hash.as_deref(), &ts);
            }
            Reconciled::retry(err.classify(), generation)
        }
    };
    if !deleted && let Some(s) = status {
        let written = write_status(&ctx, &key, s, stored_status.as_deref(), stored_index, &ts).await;
        if let Err(err) = written {
            tracing::warn!(error = %crate::error_chain(&err), "status write failed");
            if matches!(result.outcome, Outcome::Done | Outcome::RequeueAfter(_)) {
                result = Reconciled::retry(err.classify(), generation);
            }
        }
    }
    let label = match &result.outcome {
        Outcome::Done => "ok",
        Outcome::RequeueAfter(_) => "requeue",
        Outcome::Retry { retry: Retry::After(_) } => "conflict",
        Outcome::Retry { .. } => "error",
    };
    ctx.metrics.reconcile_finished(label, started.elapsed());
    result
}

/// Writes the status if it changed (timestamps aside), with CAS on the index last seen.
async fn write_status(
    ctx: &Ctx,
    key: &AppKey,
    mut status: AppStatus,
    stored: Option<&AppStatus>,
    index: u64,
    ts: &str,
) -> Result<(), ExecError> {
    if stored.is_some_and(|s| s.eq_ignoring_time(&status)) {
        return Ok(());
    }
    status.updated_at = ts.to_string();
    let status_key = key.status_kv_key(&ctx.config.prefix);
    let body = serde_json::to_vec(&status).map_err(|e| ExecError::Unavailable {
        operation: "encode status",
        job_id: key.to_string(),
        source: Box::new(e),
    })?;
    match ctx.consul.cas_via_txn(&status_key, &body, index).await {
        Ok(Some(new_index)) => {
            ctx.metrics.status_write("written");
            ctx.statuses.set(key.clone(), status, new_index);
            Ok(())
        }
        Ok(None) => {
            // Someone else wrote it: read it back so the next attempt has the right index.
            ctx.metrics.status_write("conflict");
            if let Ok(pair) = ctx.consul.get(&status_key).await {
                ctx.statuses.set_read(key.clone(), pair.as_ref());
            }
            Err(ExecError::Conflict { operation: "write status", job_id: key.to_string() })
        }
        Err(e) => {
            ctx.metrics.status_write("error");
            Err(ExecError::Unavailable { operation: "write status", job_id: key.to_string(), source: Box::new(e) })
        }
    }
}
