//! The controller process (DESIGN §1): wiring only. The records watch owns the records store's writer, the Nomad
//! watch the live cache's, the reconcile stage the statuses'; both watches enqueue the apps they touch, and bounded
//! workers run the stage per key.
//!
//! ```text
//!  Consul KV ─watch─► Records ───┐
//!  Nomad events ────► LiveCache ─┼─► Queue<AppKey> ─► Stage::reconcile(key) ─► Statuses
//!  resync timer ─────────────────┘
//! ```
//!
//! With leader election on, every replica runs all of this — the watches keep the stores warm on a standby — but
//! the stage writes only while [`crate::leader`]'s gate says this replica leads. On gaining the lock, a replica
//! reads every status again (its copy is as old as its start) before the gate opens, then resyncs every app.

use std::collections::BTreeSet;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::app::AppKey;
use crate::consul::{self, BlockingQuery};
use crate::leader::{Elector, LeaderGate, LeadershipSender, LockConfig, takeover};
use crate::live::{JobKey, LiveDeployment, LiveJob};
use crate::metrics::Metrics;
use crate::nomad;
use crate::queue::{Backoff, Queue, QueueConfig, Runner};
use crate::reconcile::Stage;
use crate::status::Phase;
use crate::store::{self, LiveCache, LiveWriter, Records, RecordsWriter, Statuses};

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
    /// Bytes per second the records watch may read from Consul (see [`crate::consul::budget`]).
    pub watch_budget: crate::consul::budget::ByteRate,
    /// The leader lock replicas contend for; `None`: a single replica that always leads.
    pub election: Option<LockConfig>,
    /// Webhook notifications (`--notifications`); `None` sends none.
    pub notifications: Option<crate::notify::Notifications>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            prefix: "drover".to_string(),
            workers: crate::queue::DEFAULT_WORKERS,
            resync: Duration::from_secs(300),
            backoff: Backoff::default(),
            watch_budget: crate::consul::budget::DEFAULT_BUDGET,
            election: None,
            notifications: None,
        }
    }
}

/// What the HTTP API and `drover dev` read while the controller runs.
#[derive(Clone, Debug)]
pub struct Handle {
    /// Records.
    pub records: Records,
    /// Statuses.
    pub statuses: Statuses,
    /// Live Nomad state.
    pub live: LiveCache,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Rollout controls (`drover promote`, ...), kept current by the controls watch.
    pub controls: crate::rollout::Controls,
    /// True once the stores are loaded and the queue released.
    pub ready: watch::Receiver<bool>,
    /// Analysis runs as the analysis stage measured them (issue #8); the reconcile stage reads them.
    pub analysis_runs: crate::analysis::AnalysisRuns,
    /// Whether this replica leads (and so reconciles).
    pub leadership: LeaderGate,
}

/// The election's parts until `run` starts them: the elector, the gate it publishes, and the gate the stage reads
/// (opened only once statuses were read again).
struct Election {
    elector: Elector<consul::Client>,
    elected: LeaderGate,
    serving: LeadershipSender,
}

/// The controller, ready to run: its stores' writers, each handed to the one task that writes it.
pub struct Controller {
    config: Config,
    consul: consul::Client,
    nomad: nomad::Client,
    metrics: Arc<Metrics>,
    records_writer: RecordsWriter,
    live_writer: LiveWriter,
    stage: Arc<Stage<nomad::Client, consul::Client>>,
    measurements_writer: crate::measure::MeasurementsWriter,
    controls_writer: crate::rollout::ControlsWriter,
    analysis_writer: crate::analysis::AnalysisRunsWriter,
    handle: Handle,
    ready_tx: watch::Sender<bool>,
    election: Option<Election>,
    queue: Queue<AppKey>,
    runner: Runner<AppKey>,
}

impl Controller {
    /// A controller over these clients.
    pub fn new(config: Config, consul: consul::Client, nomad: nomad::Client, metrics: Arc<Metrics>) -> Controller {
        let (records_writer, records) = store::records(&config.prefix);
        let (status_writer, statuses) = store::statuses(&config.prefix);
        let (live_writer, live) = store::live_cache();
        let (measurements_writer, measurements) = crate::measure::measurements();
        let (controls_writer, controls) = crate::rollout::controls(&config.prefix);
        // The analysis stage (issue #8) writes; the reconcile stage reads.
        let (analysis_writer, analysis_runs) = crate::analysis::analysis_runs();
        let (leadership, election) = match &config.election {
            None => (LeaderGate::always(), None),
            Some(lock) => {
                let (elector, elected) = Elector::new(consul.clone(), lock.clone());
                let (serving, gate) = crate::leader::channel();
                (gate, Some(Election { elector, elected, serving }))
            }
        };
        // Made here, not in `run`, so the stage can wake the dependents of an app whose status changed.
        let (queue, runner) = Queue::<AppKey>::new(QueueConfig {
            workers: config.workers,
            backoff: config.backoff.clone(),
            ..QueueConfig::default()
        });
        let runner = {
            let metrics = metrics.clone();
            runner.with_wait_observer(move |priority, waited| metrics.queue_waited(priority, waited))
        };
        let wake: crate::reconcile::Wake = {
            let queue = queue.clone();
            Arc::new(move |key: AppKey, why: &'static str| queue.enqueue(key, None, None, why))
        };
        let stage = Arc::new(
            Stage::new(
                &config.prefix,
                nomad.clone(),
                consul.clone(),
                records.clone(),
                live.clone(),
                (status_writer, statuses.clone()),
                metrics.clone(),
                SystemTime::now,
            )
            .with_measurements(measurements)
            .with_analysis(analysis_runs.clone())
            .with_controls(controls.clone())
            .with_leadership(leadership.clone())
            .with_wake(wake)
            .with_notifier(config.notifications.clone().map(|n| crate::notify::Notifier::start(n, metrics.clone()))),
        );
        let ready_tx = watch::Sender::new(false);
        let handle = Handle {
            records,
            statuses,
            live,
            metrics: metrics.clone(),
            controls,
            ready: ready_tx.subscribe(),
            analysis_runs,
            leadership,
        };
        Controller {
            config,
            consul,
            nomad,
            metrics,
            records_writer,
            live_writer,
            stage,
            measurements_writer,
            controls_writer,
            analysis_writer,
            handle,
            ready_tx,
            election,
            queue,
            runner,
        }
    }

    /// Stores and readiness, for the HTTP API.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Runs until `shutdown`: never returns early on an outage (everything is retried with backoff). With leader
    /// election on, the lock is released only after every reconcile stopped, so the next leader's first write comes
    /// after this replica's last.
    pub async fn run(self, shutdown: CancellationToken) {
        let Controller {
            config,
            consul,
            nomad,
            metrics,
            records_writer,
            live_writer,
            stage,
            measurements_writer,
            controls_writer,
            analysis_writer,
            handle,
            ready_tx,
            election,
            queue,
            runner,
        } = self;
        let tasks = tokio_util::task::TaskTracker::new();
        let (desired_ready_tx, desired_ready) = watch::channel(false);
        let (live_ready_tx, live_ready) = watch::channel(false);
        let (status_ready_tx, status_ready) = watch::channel(false);

        tasks.spawn(load_statuses(stage.clone(), consul.clone(), config.clone(), status_ready_tx, shutdown.clone()));
        tasks.spawn(watch_records(
            records_writer,
            consul.clone(),
            config.prefix.clone(),
            config.watch_budget,
            metrics.clone(),
            queue.clone(),
            desired_ready_tx,
            shutdown.clone(),
        ));
        tasks.spawn(watch_nomad(
            live_writer,
            handle.records.clone(),
            nomad,
            config.prefix.clone(),
            metrics.clone(),
            queue.clone(),
            live_ready_tx,
            shutdown.clone(),
        ));
        tasks.spawn(release_when_ready(
            handle.clone(),
            config.resync,
            queue.clone(),
            [desired_ready, live_ready, status_ready.clone()],
            ready_tx,
            shutdown.clone(),
        ));
        tasks.spawn(report_gauges(handle.clone(), queue.clone(), shutdown.clone()));
        let elector_stop = CancellationToken::new();
        let elector = election.map(|e| {
            let prepare = {
                let (stage, consul, loaded) = (stage.clone(), consul.clone(), status_ready.clone());
                let prefix = format!("{}/status/", config.prefix);
                move || {
                    let (stage, consul, prefix, mut loaded) =
                        (stage.clone(), consul.clone(), prefix.clone(), loaded.clone());
                    async move {
                        // After the load at start, never before: a slow first load landing late would put back
                        // statuses older than the ones read here.
                        if loaded.wait_for(|l| *l).await.is_err() {
                            std::future::pending::<()>().await;
                        }
                        let listing = consul.list(&prefix, BlockingQuery::now()).await?;
                        stage.status_writer().load(&listing.entries);
                        Ok::<(), consul::Error>(())
                    }
                }
            };
            let gained = {
                let (handle, queue) = (handle.clone(), queue.clone());
                move |term: crate::leader::Term| {
                    handle.metrics.set_leader(true);
                    queue.enqueue_all(all_keys(&handle), "leadership gained");
                    tracing::info!(term = term.0, apps = handle.records.len(), "leading: resyncing every app");
                }
            };
            let metrics = metrics.clone();
            let hooks = takeover::Hooks { prepare, gained, stood_down: move || metrics.set_leader(false) };
            tasks.spawn(takeover::follow(e.elected, e.serving, hooks, config.backoff.clone(), shutdown.clone()));
            tokio::spawn(e.elector.run(elector_stop.clone()))
        });
        tasks.spawn(measure_autoscaled(
            handle.records.clone(),
            measurements_writer,
            metrics.clone(),
            queue.clone(),
            shutdown.clone(),
        ));

        // ---- rollout controls (issue #8): the watch of `<prefix>/control/`, the one writer of the controls store;
        // the app whose control changed is woken. Not a readiness gate: a control seen late acts late, never wrongly
        // (decide consumes each one once, by its ModifyIndex). ----
        {
            let queue = queue.clone();
            let config =
                consul::watch::WatchConfig::new(format!("{}/control/", config.prefix)).with_budget(config.watch_budget);
            let wake = move |key: AppKey| queue.enqueue(key, None, None, "control written");
            tasks.spawn(crate::rollout::controls_store::watch_controls(
                controls_writer,
                consul.clone(),
                config,
                metrics.clone(),
                wake,
                shutdown.clone(),
            ));
        }
        // ---- end of rollout controls ----

        // --- Analysis stage (issue #8): measures the Running analysis runs and webhook steps found in statuses,
        // stores them in `handle.analysis_runs` and wakes their apps.
        tasks.spawn(run_analysis(handle.clone(), analysis_writer, queue.clone(), shutdown.clone()));
        // --- end of the analysis stage.
        tasks.close();

        let stopped = runner
            .run(
                move |key| {
                    let stage = stage.clone();
                    async move { stage.reconcile(key).await }
                },
                shutdown.clone(),
            )
            .await;
        if stopped.aborted > 0 {
            tracing::warn!(aborted = stopped.aborted, "reconciles aborted at shutdown");
        }
        tasks.wait().await;
        // Every writer has stopped: now the lock can go to a standby.
        elector_stop.cancel();
        if let Some(elector) = elector
            && let Err(err) = elector.await
        {
            tracing::error!(error = %err, "the leader elector task failed");
        }
    }
}

/// Reads every status once (non-blocking), through the stage's status writer, before any reconcile runs.
async fn load_statuses(
    stage: Arc<Stage<nomad::Client, consul::Client>>,
    consul: consul::Client,
    config: Config,
    ready: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let prefix = format!("{}/status/", config.prefix);
    let mut failures = 0u32;
    loop {
        match consul.list(&prefix, BlockingQuery::now()).await {
            Ok(listing) => {
                stage.status_writer().load(&listing.entries);
                ready.send_replace(true);
                return;
            }
            Err(err) => {
                failures += 1;
                let delay = config.backoff.delay(failures, &mut rand::rng());
                tracing::warn!(error = %crate::error_chain(&err), retry_in = ?delay, "cannot list statuses");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Follows the records prefix, the one writer of the records store; every changed key is enqueued with its
/// generation.
#[allow(clippy::too_many_arguments)]
async fn watch_records(
    mut writer: RecordsWriter,
    consul: consul::Client,
    prefix: String,
    budget: crate::consul::budget::ByteRate,
    metrics: Arc<Metrics>,
    queue: Queue<AppKey>,
    ready: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let config = consul::watch::WatchConfig::new(format!("{prefix}/apps/")).with_budget(budget);
    let stream = consul::watch::watch(consul, config, metrics);
    tokio::pin!(stream);
    loop {
        let event = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = stream.next() => event,
        };
        let Some(consul::watch::WatchEvent::Snapshot { entries, filtered_by_acls, .. }) = event else { return };
        if filtered_by_acls {
            tracing::warn!(
                %prefix,
                "Consul filtered the records listing by ACLs: Drover's token cannot read every record; a record it \
                 cannot read is reported in its status, never treated as deleted (grant key_prefix \"<prefix>/apps/\" read)"
            );
        }
        for change in writer.apply_snapshot(&entries) {
            queue.enqueue(change.key, None, change.generation, "record changed");
        }
        ready.send_replace(true);
    }
}

/// Follows Nomad, the one writer of the live cache: one list, then the event stream; enqueues the apps whose job
/// or deployment changed.
#[allow(clippy::too_many_arguments)]
async fn watch_nomad(
    mut writer: LiveWriter,
    records: Records,
    client: nomad::Client,
    prefix: String,
    metrics: Arc<Metrics>,
    queue: Queue<AppKey>,
    ready: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let stream = nomad::watch::watch(client, nomad::watch::LiveWatchConfig::default(), metrics);
    tokio::pin!(stream);
    let mut covered: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
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
        let mut wake: Vec<(JobKey, Option<String>, &'static str)> = Vec::new();
        for event in batch {
            match event {
                nomad::watch::LiveEvent::Resynced { jobs, deployments, index, namespaces } => {
                    // Consumed one by one, so the raw listing is freed as the cache's entries are made.
                    let jobs = jobs.into_iter().map(|j| LiveJob::from(&j)).collect();
                    let deployments = deployments
                        .into_iter()
                        .map(|d| (JobKey::new(&d.namespace, &d.job_id), LiveDeployment::from(&d)))
                        .collect();
                    for job in writer.replace_all(jobs, deployments, index, &namespaces) {
                        wake.push((job, None, "nomad relisted"));
                    }
                    // A namespace that appeared: its apps (waiting for it, `NamespaceMissing`) can be registered now.
                    for ns in namespaces.difference(&covered) {
                        for key in records.keys_in(ns) {
                            queue.enqueue(key, None, None, "namespace appeared");
                        }
                    }
                    covered = namespaces;
                    ready.send_replace(true);
                }
                nomad::watch::LiveEvent::JobUpserted(job) => {
                    let live = LiveJob::from(&job);
                    let (key, owner) = (live.key.clone(), live.owner.clone());
                    if writer.upsert_job(live) {
                        wake.push((key, owner, "job changed"));
                    }
                }
                nomad::watch::LiveEvent::JobDeleted { namespace, id } => {
                    let key = JobKey::new(namespace, id);
                    if writer.remove_job(&key) {
                        wake.push((key, None, "job purged"));
                    }
                }
                nomad::watch::LiveEvent::Deployment(d) => {
                    let key = JobKey::new(&d.namespace, &d.job_id);
                    if writer.upsert_deployment(&key, LiveDeployment::from(&d)) {
                        wake.push((key, None, "deployment changed"));
                    }
                }
            }
        }
        for (job, owner, why) in wake {
            enqueue_job(&records, &prefix, &queue, &job, owner.as_deref(), why);
        }
    }
}

/// Enqueues the apps a job belongs to: the one its owner value names (in this installation), and the record that
/// renders to its ID.
fn enqueue_job(
    records: &Records,
    prefix: &str,
    queue: &Queue<AppKey>,
    job: &JobKey,
    owner: Option<&str>,
    why: &'static str,
) {
    let mut keys = BTreeSet::new();
    if let Some(key) = owner.and_then(|o| AppKey::from_kv_key(prefix, o)) {
        keys.insert(key);
    }
    if let Some(key) = records.key_for_job(job) {
        keys.insert(key);
    }
    for key in keys {
        queue.enqueue(key, None, None, why);
    }
}

/// Every app Drover knows of: those with a record and those with only a status left.
fn all_keys(h: &Handle) -> BTreeSet<AppKey> {
    let mut keys: BTreeSet<AppKey> = h.records.keys().into_iter().collect();
    keys.extend(h.statuses.keys());
    keys
}

/// Releases the queue once records, statuses and live state are all loaded, then drives the periodic resync.
async fn release_when_ready(
    handle: Handle,
    resync: Duration,
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
    queue.enqueue_all(all_keys(&handle), "start");
    queue.set_ready();
    ready.send_replace(true);
    tracing::info!(apps = handle.records.len(), jobs = handle.live.job_count(), "stores loaded; reconciling");
    let mut tick = tokio::time::interval_at(Instant::now() + resync, resync);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => queue.enqueue_all(all_keys(&handle), "resync"),
        }
    }
}

/// How many Prometheus queries one measurement round runs at once.
const MEASURE_CONCURRENCY: usize = 32;

/// The measurement poller, the one writer of the measurements store: every second, the autoscaled apps that are
/// due (each on its `evaluationInterval`) have their checks' queries run — identical queries once per round — and
/// are woken to evaluate them. The records are rescanned only when their revision moved, so an idle cluster costs
/// a counter read per second, not a pass over every record.
async fn measure_autoscaled(
    records: Records,
    mut writer: crate::measure::MeasurementsWriter,
    metrics: Arc<Metrics>,
    queue: Queue<AppKey>,
    shutdown: CancellationToken,
) {
    let http = match reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build() {
        Ok(http) => http,
        Err(err) => {
            tracing::error!(error = %crate::error_chain(&err), "cannot build the Prometheus client; autoscaling is off");
            return;
        }
    };
    let querier = crate::prometheus::Client::new(http);
    let mut schedule = crate::measure::Schedule::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut policies = std::collections::HashMap::new();
    let mut seen_revision = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let revision = records.revision();
        if seen_revision != Some(revision) {
            seen_revision = Some(revision);
            policies.clear();
            for key in records.keys() {
                if let Some(record) = records.get(&key)
                    && let crate::app::Record::Valid(v) = record.as_ref()
                    && let Some(policy) = &v.autoscaling
                {
                    schedule.set(key.clone(), policy.evaluation_interval, now);
                    policies.insert(key, (policy.clone(), v.job_id.clone()));
                }
            }
            let gone: Vec<AppKey> = schedule.apps().filter(|k| !policies.contains_key(*k)).cloned().collect();
            for key in gone {
                schedule.remove(&key);
                writer.forget(&key);
            }
        }
        let asks: Vec<crate::measure::Ask> = schedule
            .due(now)
            .iter()
            .filter_map(|key| policies.get(key).map(|(policy, job_id)| crate::autoscale::asks(key, job_id, policy)))
            .flatten()
            .collect();
        if asks.is_empty() {
            continue;
        }
        let started = Instant::now();
        let (answers, stats) = crate::measure::measure(&querier, asks, MEASURE_CONCURRENCY, SystemTime::now()).await;
        metrics.autoscale_round(started.elapsed());
        tracing::debug!(asked = stats.asked, sent = stats.sent, "measurement round");
        for key in writer.record(answers) {
            queue.enqueue(key, None, None, "measured");
        }
    }
}

/// The analysis stage (issue #8), the one writer of the analysis-runs store: Prometheus queries, web metrics and
/// webhook calls at most [`crate::analysis::PollerConfig::concurrency`] at once, each with its timeout; every run
/// that changed wakes its app. Runs on every replica but measures only on the leader.
async fn run_analysis(
    handle: Handle,
    writer: crate::analysis::AnalysisRunsWriter,
    queue: Queue<AppKey>,
    shutdown: CancellationToken,
) {
    // Redirects are not followed: a webhook's verdict is the status its own URL answered.
    let http = match reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build() {
        Ok(http) => http,
        Err(err) => {
            tracing::error!(error = %crate::error_chain(&err), "cannot build the analysis HTTP client; analysis is off");
            return;
        }
    };
    let stage = crate::analysis::AnalysisStage {
        provider: Arc::new(crate::analysis::HttpProvider::new(http)),
        specs: handle.records.clone(),
        statuses: handle.statuses.clone(),
        store: (writer, handle.analysis_runs.clone()),
        wake: move |key: &AppKey| queue.enqueue(key.clone(), None, None, "analysis measured"),
        clock: SystemTime::now,
        metrics: handle.metrics.clone(),
        config: crate::analysis::PollerConfig::default(),
        // Measures only while leading: the same gate the reconcile stage writes under.
        leadership: handle.leadership.clone(),
    };
    stage.run(shutdown).await;
}

/// Keeps `queue_depth`, `apps{phase}` and `apps_waiting{on}` current.
async fn report_gauges(handle: Handle, queue: Queue<AppKey>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        handle.metrics.set_queue_depth(queue.depth());
        let census = handle.statuses.census();
        handle.metrics.set_apps_by_phase(census.by_phase, Phase::ALL.iter());
        handle.metrics.set_apps_waiting(census.on_dependencies, census.on_dependents);
    }
}
