//! The analysis poller: follows the statuses, measures every `Running` run of an app's current rollout on its
//! schedule, folds each measurement into the run with the judge, stores the run in [`AnalysisRuns`] and wakes the
//! app. The one writer of that store.
//!
//! A run's life here:
//!
//! ```text
//!   status lists it Running ──resolve──► Waiting{next} ──due──► InFlight ──answers──► fold (judge::record)
//!          │                     │            ▲                                          │
//!          │                     └─error──► run Error (stored, app woken)                │
//!          │                                  └──────── next = +interval (+retry on error)┤
//!          └─ left status / not Running ──► forgotten                  run ended ──► stored, no longer measured
//! ```
//!
//! Schedule: the first measurement at `startedAt + initialDelay`, then every `interval`; a measurement that could not
//! be taken is retried after `min(interval, error_retry)`. After a restart a run is resumed from its status copy
//! (counters kept; next due = its last measurement + interval). Calls run as tasks, at most `concurrency` at once
//! (200 rollouts cannot stampede Prometheus), and identical resolved calls due together are sent once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::provider::{Provider, Reply, Request};
use super::resolve::{Kind, Resolved, Specs, resolve};
use super::store::{AnalysisRuns, AnalysisRunsWriter};
use crate::app::AppKey;
use crate::leader::{LeaderGate, Leadership};
use crate::metrics::Metrics;
use crate::rollout::judge::{self, Outcome};
use crate::rollout::{AnalysisPhase, AnalysisRunStatus, MeasurementPhase, MeasurementRecord, RunId};
use crate::status::parse_timestamp;
use crate::store::Statuses;

/// How the poller runs.
#[derive(Clone, Debug)]
pub struct PollerConfig {
    /// Calls in flight at most.
    pub concurrency: usize,
    /// A measurement that could not be taken is retried after `min(interval, error_retry)`.
    pub error_retry: Duration,
    /// How often the records' revision is checked (runs that could not be resolved yet are retried when it moved).
    pub recheck: Duration,
    /// Time a call may take beyond its own timeout before the poller gives up on it (the HTTP client enforces the
    /// timeout; this only bounds a call that ignores it).
    pub grace: Duration,
}

impl Default for PollerConfig {
    fn default() -> Self {
        PollerConfig {
            concurrency: 32,
            error_retry: Duration::from_secs(5),
            recheck: Duration::from_secs(1),
            grace: Duration::from_secs(1),
        }
    }
}

type RunKey = (AppKey, RunId);

/// Which of a measurement's calls an answer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Main,
    Baseline,
}

/// A call's answer, as the poller keeps it: a reply, or the error's kind and text.
pub type Answer = Result<Reply, (&'static str, String)>;

#[derive(Debug, Default)]
struct Pending {
    main: Option<Answer>,
    baseline: Option<Answer>,
}

#[derive(Debug)]
struct Tracked {
    resolved: Arc<Resolved>,
    run: AnalysisRunStatus,
    /// When the next measurement is due.
    next: Instant,
    /// The answers of the measurement in flight, if one is.
    pending: Option<Pending>,
}

/// What folding one measurement did, for metrics and wake-ups.
#[derive(Clone, Debug, PartialEq)]
pub struct Folded {
    /// The app.
    pub app: AppKey,
    /// The call's provider (`prometheus`, `web`, `webhook`).
    pub provider: &'static str,
    /// How the measurement was judged.
    pub measurement: MeasurementPhase,
    /// The run's phase when it ended with this measurement.
    pub ended: Option<AnalysisPhase>,
}

/// What a sync saw: the runs listed in the statuses it looked at, those `Running`, and the apps to wake.
#[derive(Default)]
struct Seen {
    listed: BTreeSet<RunKey>,
    running: BTreeSet<RunKey>,
    woken: Vec<AppKey>,
}

/// The poller's state: the runs it measures and the calls in flight. Pure: time is passed in, I/O is the caller's.
#[derive(Debug)]
pub struct Poller {
    config: PollerConfig,
    runs: BTreeMap<RunKey, Tracked>,
    in_flight: HashMap<Request, Vec<(RunKey, Role)>>,
}

/// The wall-clock moment `at` as an instant, given that `wall` is `now`.
fn instant_of(at: SystemTime, wall: SystemTime, now: Instant) -> Instant {
    match at.duration_since(wall) {
        Ok(ahead) => now + ahead,
        Err(_) => now,
    }
}

fn phase_label(p: AnalysisPhase) -> &'static str {
    match p {
        AnalysisPhase::Running => "running",
        AnalysisPhase::Successful => "successful",
        AnalysisPhase::Failed => "failed",
        AnalysisPhase::Inconclusive => "inconclusive",
        AnalysisPhase::Error => "error",
    }
}

/// The `result` label of a measurement.
pub fn measurement_label(p: MeasurementPhase) -> &'static str {
    match p {
        MeasurementPhase::Successful => "successful",
        MeasurementPhase::Failed => "failed",
        MeasurementPhase::Inconclusive => "inconclusive",
        MeasurementPhase::Error => "error",
    }
}

/// One measurement from its answers.
fn measurement(resolved: &Resolved, p: Pending, at: SystemTime) -> MeasurementRecord {
    let query = resolved.request.describe();
    let at = crate::status::timestamp(at);
    let record = |value, baseline, phase, error| MeasurementRecord {
        value,
        baseline,
        phase,
        at: at.clone(),
        query: query.clone(),
        error,
    };
    let main = p.main.unwrap_or(Err(("not_run", "the call was not made".into())));
    match &resolved.kind {
        Kind::Webhook { expect_status } => match main {
            Ok(Reply::Status(code)) => {
                let passes =
                    if expect_status.is_empty() { (200..300).contains(&code) } else { expect_status.contains(&code) };
                let expected = if expect_status.is_empty() { "2xx".to_string() } else { format!("{expect_status:?}") };
                let why = (!passes).then(|| format!("{query} answered {code}, expected {expected}"));
                let phase = if passes { MeasurementPhase::Successful } else { MeasurementPhase::Failed };
                record(Some(code.into()), None, phase, why)
            }
            Ok(Reply::Sample(_)) => {
                record(None, None, MeasurementPhase::Error, Some("a webhook answered a value".into()))
            }
            Err((_, e)) => record(None, None, MeasurementPhase::Error, Some(e)),
        },
        Kind::Analysis => {
            let sample = |a: Answer, what: &str| match a {
                Ok(Reply::Sample(s)) => Ok(s),
                Ok(Reply::Status(code)) => Err(format!("{what}: a status code ({code}), not a value")),
                Err((_, e)) if what.is_empty() => Err(e),
                Err((_, e)) => Err(format!("{what}: {e}")),
            };
            let outcome = match (sample(main, ""), p.baseline.map(|b| sample(b, "baseline"))) {
                (Err(e), _) | (Ok(_), Some(Err(e))) => Outcome::Error(e),
                (Ok(result), baseline) => Outcome::Taken { result, baseline: baseline.and_then(Result::ok) },
            };
            // The one verdict (and the one bounded record of it) the engine's tests also use.
            judge::measurement(&resolved.template, &outcome, at, query)
        }
    }
}

impl Poller {
    /// A poller measuring nothing yet.
    pub fn new(config: PollerConfig) -> Poller {
        Poller { config, runs: BTreeMap::new(), in_flight: HashMap::new() }
    }

    /// How many runs are being measured.
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    /// True when no run is being measured.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// When the next measurement is due (none while every run waits for an answer, or there are none).
    pub fn next_due(&self) -> Option<Instant> {
        self.runs.values().filter(|t| t.pending.is_none()).map(|t| t.next).min()
    }

    /// Follows the statuses: starts measuring the `Running` runs of each app's current rollout it does not measure
    /// yet (resumed from the status copy, or from the store's when that one is ahead), stops measuring runs that are
    /// not `Running` in status any more, and forgets runs that left status. A run that cannot be resolved ends in
    /// `Error` at once (stored; its app is returned to be woken). Returns the statuses' revision it is as of, too.
    ///
    /// With `since`, only the statuses written after that revision are looked at, so following a status write
    /// copies and tracks the apps written, not every rollout (a burst of 200 rollouts writes status hundreds of
    /// times). Finding them is still one pass comparing a revision number per status ([`Statuses::changed_since`]):
    /// at 10 000 apps a few microseconds, against a per-entry change log that would cost memory on every app. A
    /// status removed (or all loaded) since falls back to looking at every one, as does `None`.
    pub fn sync(
        &mut self,
        since: Option<u64>,
        statuses: &Statuses,
        specs: &impl Specs,
        (writer, reader): (&mut AnalysisRunsWriter, &AnalysisRuns),
        now: Instant,
        wall: SystemTime,
    ) -> (u64, Vec<AppKey>) {
        let mut seen = Seen::default();
        if let Some(crate::store::StatusDelta::Changed { revision, statuses: changed }) =
            since.map(|since| statuses.changed_since(since))
        {
            let apps: BTreeSet<&AppKey> = changed.iter().map(|(app, _)| app).collect();
            for (app, status) in &changed {
                if let Some(status) = status {
                    self.track(app, status, specs, (writer, reader), (now, wall), &mut seen);
                }
            }
            self.runs.retain(|key, _| !apps.contains(&key.0) || seen.running.contains(key));
            for app in apps {
                writer.retain(app, |id| seen.listed.contains(&(app.clone(), id.clone())));
            }
            return (revision, seen.woken);
        }
        let (revision, rollouts) = statuses.rollouts();
        for (app, status) in &rollouts {
            self.track(app, status, specs, (writer, reader), (now, wall), &mut seen);
        }
        self.runs.retain(|key, _| seen.running.contains(key));
        for app in writer.apps() {
            writer.retain(&app, |id| seen.listed.contains(&(app.clone(), id.clone())));
        }
        (revision, seen.woken)
    }

    /// The part of a sync for one app's status: notes its runs in `seen` and starts measuring those it should.
    fn track(
        &mut self,
        app: &AppKey,
        status: &crate::status::AppStatus,
        specs: &impl Specs,
        (writer, reader): (&mut AnalysisRunsWriter, &AnalysisRuns),
        (now, wall): (Instant, SystemTime),
        seen: &mut Seen,
    ) {
        let Some(rollout) = &status.rollout else { return };
        for run in &rollout.analysis_runs {
            let key = (app.clone(), run.id.clone());
            seen.listed.insert(key.clone());
            if run.phase != AnalysisPhase::Running || run.id.generation != rollout.generation {
                continue;
            }
            seen.running.insert(key.clone());
            // A run is its id *and* its start: `drover restart` starts the same step's runs again under the same
            // id with a new `startedAt`, and the earlier attempt's copy (tracked or stored) is not this run.
            if self.runs.get(&key).is_some_and(|t| t.run.started_at == run.started_at) {
                continue;
            }
            // This process may have measured it already: the store's copy is ahead of the status one.
            let stored = reader.run(app, &run.id).filter(|s| s.started_at == run.started_at);
            if stored.as_ref().is_some_and(|s| s.phase.is_terminal()) {
                continue;
            }
            let Some(spec) = specs.spec(app) else { continue };
            if spec.generation != run.id.generation {
                // The record moved on (or the store has not caught up): the engine supersedes this rollout.
                continue;
            }
            let from = match stored {
                Some(s) if s.total() >= run.total() => s,
                _ => run.clone(),
            };
            match resolve(app, &spec, rollout, &run.id) {
                Ok(resolved) => {
                    let next = self.resume_at(&resolved, &from, now, wall);
                    self.runs.insert(key, Tracked { resolved: Arc::new(resolved), run: from, next, pending: None });
                }
                Err(why) => {
                    let mut ended = from;
                    ended.phase = AnalysisPhase::Error;
                    ended.message = why;
                    writer.put(app, ended);
                    seen.woken.push(app.clone());
                }
            }
        }
    }

    /// When a run resumed from `run` is next due: its start plus `initialDelay`, or its last measurement plus the
    /// interval (the error retry after an error).
    fn resume_at(&self, r: &Resolved, run: &AnalysisRunStatus, now: Instant, wall: SystemTime) -> Instant {
        let t = &r.template;
        let due = match run.measurements.last() {
            None => parse_timestamp(&run.started_at).map(|s| s + t.schedule.initial_delay),
            Some(m) => {
                let step = if m.phase == MeasurementPhase::Error {
                    t.schedule.interval.min(self.config.error_retry)
                } else {
                    t.schedule.interval
                };
                parse_timestamp(&m.at).map(|at| at + step)
            }
        };
        due.map_or(now, |due| instant_of(due, wall, now))
    }

    /// Marks the runs due at `now` in flight; returns the calls to make (each distinct call once: a call already in
    /// flight gains the new run as another waiter).
    pub fn dispatch(&mut self, now: Instant) -> Vec<Request> {
        let mut send = Vec::new();
        for (key, t) in &mut self.runs {
            if t.pending.is_some() || t.next > now {
                continue;
            }
            t.pending = Some(Pending::default());
            let calls = std::iter::once((Role::Main, &t.resolved.request))
                .chain(t.resolved.baseline.iter().map(|b| (Role::Baseline, b)));
            for (role, request) in calls {
                match self.in_flight.get_mut(request) {
                    Some(waiters) => waiters.push((key.clone(), role)),
                    None => {
                        self.in_flight.insert(request.clone(), vec![(key.clone(), role)]);
                        send.push(request.clone());
                    }
                }
            }
        }
        send
    }

    /// A call answered: completes the measurements waiting for it, folds them into their runs, stores the runs.
    pub fn answered(
        &mut self,
        request: &Request,
        answer: Answer,
        writer: &mut AnalysisRunsWriter,
        now: Instant,
        wall: SystemTime,
    ) -> Vec<Folded> {
        let mut folded = Vec::new();
        for (key, role) in self.in_flight.remove(request).unwrap_or_default() {
            // A run forgotten while its call was in flight is not measured.
            let Some(t) = self.runs.get_mut(&key) else { continue };
            let Some(p) = t.pending.as_mut() else { continue };
            match role {
                Role::Main => p.main = Some(answer.clone()),
                Role::Baseline => p.baseline = Some(answer.clone()),
            }
            if p.main.is_none() || (t.resolved.baseline.is_some() && p.baseline.is_none()) {
                continue;
            }
            let Some(p) = t.pending.take() else { continue };
            let m = measurement(&t.resolved, p, wall);
            let phase = m.phase;
            judge::record(&mut t.run, &t.resolved.template, m);
            let retry = t.resolved.template.schedule.interval.min(self.config.error_retry);
            t.next = if phase == MeasurementPhase::Error {
                now + retry
            } else {
                (t.next + t.resolved.template.schedule.interval).max(now)
            };
            writer.put(&key.0, t.run.clone());
            let ended = t.run.phase.is_terminal().then_some(t.run.phase);
            folded.push(Folded {
                app: key.0.clone(),
                provider: t.resolved.request.provider(),
                measurement: phase,
                ended,
            });
            if ended.is_some() {
                self.runs.remove(&key);
            }
        }
        folded
    }
}

/// The analysis stage: the poller with its I/O (the provider, the stores, the app queue).
pub struct AnalysisStage<P, S, W, C> {
    /// Makes the calls.
    pub provider: Arc<P>,
    /// Reads records.
    pub specs: S,
    /// Reads statuses (and is woken by their changes).
    pub statuses: Statuses,
    /// The store's writer (this stage is its one writer) and a reader.
    pub store: (AnalysisRunsWriter, AnalysisRuns),
    /// Wakes an app whose run changed.
    pub wake: W,
    /// The wall clock (status timestamps).
    pub clock: C,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Settings.
    pub config: PollerConfig,
    /// Whether this replica leads: the stage measures only while it does ([`LeaderGate::always`] for one replica).
    pub leadership: LeaderGate,
}

impl<P, S, W, C> AnalysisStage<P, S, W, C>
where
    P: Provider,
    S: Specs,
    W: Fn(&AppKey) + Send,
    C: Fn() -> SystemTime + Send,
{
    /// Runs on its own task until the returned guard is dropped (for tests and tools that drive the stage alone).
    pub fn spawn(self) -> tokio_util::sync::DropGuard
    where
        P: Provider,
        S: Specs,
        W: Fn(&AppKey) + Send + Sync + 'static,
        C: Fn() -> SystemTime + Send + Sync + 'static,
    {
        let shutdown = CancellationToken::new();
        tokio::spawn(self.run(shutdown.clone()));
        shutdown.drop_guard()
    }

    /// Runs until `shutdown`, measuring only while this replica leads: a standby measures nothing (a webhook has
    /// side effects, and two replicas would query Prometheus twice). Losing the lead cancels the calls in flight and
    /// forgets every run held; gaining it starts over from status (the new leader's statuses were read again before
    /// its gate opened, and its engine re-creates the runs there), so a run measured by another replica meanwhile
    /// is resumed where that replica left it.
    pub async fn run(self, shutdown: CancellationToken) {
        let AnalysisStage {
            provider,
            specs,
            statuses,
            store: (mut writer, reader),
            wake,
            clock,
            metrics,
            config,
            leadership,
        } = self;
        let mut gate = leadership;
        let parts = Parts { provider, specs, statuses, reader, wake, clock, metrics, config };
        loop {
            let term = loop {
                if let Leadership::Leading(term) = gate.current_seen() {
                    break term;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    changed = gate.changed() => if changed.is_none() {
                        // Nothing can make this replica lead any more.
                        shutdown.cancelled().await;
                        return;
                    },
                }
            };
            tracing::debug!(term = term.0, "leading: the analysis stage measures");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                // Dropping `measure` drops its calls in flight (their tasks are aborted with the `JoinSet`).
                _ = gate.lost(term) => {
                    for app in writer.apps() {
                        writer.forget(&app);
                    }
                    tracing::info!(term = term.0, "not leading any more: analysis calls in flight cancelled");
                }
                _ = parts.measure(&mut writer) => return,
            }
        }
    }
}

/// The stage's parts one leadership term uses (everything but the store's writer and the gate).
struct Parts<P, S, W, C> {
    provider: Arc<P>,
    specs: S,
    statuses: Statuses,
    reader: AnalysisRuns,
    wake: W,
    clock: C,
    metrics: Arc<Metrics>,
    config: PollerConfig,
}

impl<P, S, W, C> Parts<P, S, W, C>
where
    P: Provider,
    S: Specs,
    W: Fn(&AppKey) + Send,
    C: Fn() -> SystemTime + Send,
{
    /// Measures for one term, from a fresh poller resumed from status; never returns (dropped when the term ends
    /// or at shutdown).
    async fn measure(&self, writer: &mut AnalysisRunsWriter) {
        let Parts { provider, specs, statuses, reader, wake, clock, metrics, config } = self;
        let semaphore = Arc::new(Semaphore::new(config.concurrency.max(1)));
        let mut calls: JoinSet<Answer> = JoinSet::new();
        // Which call each task makes, so even a task that panicked answers its waiters (with an error).
        let mut requests: HashMap<tokio::task::Id, Request> = HashMap::new();
        let mut status_changes = statuses.subscribe();
        let mut recheck = tokio::time::interval(config.recheck);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let grace = config.grace;
        let mut poller = Poller::new(config.clone());
        let mut seen_records = None;
        // The statuses' revision synced to (`None`: sync every status), and whether they moved since.
        let mut seen_statuses: Option<u64> = None;
        let mut moved = false;
        loop {
            if moved || seen_statuses.is_none() {
                moved = false;
                status_changes.mark_unchanged();
                if seen_statuses.is_none() {
                    seen_records = Some(specs.revision());
                }
                let store = (&mut *writer, reader);
                let (revision, woken) = poller.sync(seen_statuses, statuses, specs, store, Instant::now(), clock());
                seen_statuses = Some(revision);
                for app in woken {
                    metrics.analysis_run_finished("error");
                    wake(&app);
                }
            }
            for request in poller.dispatch(Instant::now()) {
                let (provider, semaphore, metrics) = (provider.clone(), semaphore.clone(), metrics.clone());
                let call = request.clone();
                let task = calls.spawn(async move {
                    // The semaphore is never closed; without a permit the call would still be bounded by its timeout.
                    let _permit = semaphore.acquire_owned().await.ok();
                    let started = Instant::now();
                    let limit = request.timeout() + grace;
                    let answer = match tokio::time::timeout(limit, provider.call(&request)).await {
                        Ok(Ok(reply)) => Ok(reply),
                        Ok(Err(e)) => Err((e.kind(), crate::error_chain(&e))),
                        Err(_) => Err(("timeout", format!("{} did not answer within {limit:?}", request.describe()))),
                    };
                    metrics.analysis_query(started.elapsed());
                    answer
                });
                requests.insert(task.id(), call);
            }
            let next = poller.next_due();
            tokio::select! {
                changed = status_changes.changed() => match changed {
                    Ok(()) => moved = true,
                    // The statuses' one writer is gone: the controller is stopping (looping on would spin).
                    Err(_) => return,
                },
                done = calls.join_next_with_id(), if !calls.is_empty() => {
                    let (id, answer) = match done {
                        Some(Ok((id, answer))) => (id, answer),
                        Some(Err(e)) => (e.id(), Err(("panic", format!("the call failed: {e}")))),
                        None => continue,
                    };
                    let Some(request) = requests.remove(&id) else { continue };
                    for f in poller.answered(&request, answer, writer, Instant::now(), clock()) {
                        metrics.analysis_measured(f.provider, measurement_label(f.measurement));
                        if let Some(phase) = f.ended {
                            metrics.analysis_run_finished(phase_label(phase));
                        }
                        wake(&f.app);
                    }
                }
                // A record changed: runs that could not be resolved may resolve now, so every status is looked at.
                _ = recheck.tick() => if seen_records != Some(specs.revision()) {
                    seen_statuses = None;
                },
                _ = sleep_until(next) => {}
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[path = "poller_tests.rs"]
mod tests;
