//! The reconcile stage: one app at a time, level-triggered (nothing trusts the event that woke it), in four steps:
//!
//! ```text
//!  gather ──► decide ──► execute ──► write status
//!  stores +    pure       Nomad /     one place, CAS,
//!  proof of    Plan       Consul      only if changed
//!  absence                writes
//! ```
//!
//! - **gather** reads the three stores; a record the store lacks is proven gone with a single-key read before any
//!   destructive act (404 = gone; 403 = cannot tell, nothing done).
//! - **decide** ([`decide()`]) is a pure function of what was gathered and the time.
//! - **execute** carries the plan out through [`NomadPort`] and [`KvPort`], narrow traits with in-memory fakes
//!   ([`fake`]), so every path of the stage, conflicts and errors included, is tested in-process.
//! - **write status** is the only place statuses are written or deleted.
//!
//! Leadership ([`crate::leader`]): a reconcile runs only while this replica leads, under the term it started in; it
//! is cancelled the moment that term ends, and each write (in execute and write status) is admitted by the gate
//! first, so a write of an ended term is never sent (it is dropped and counted).

pub mod decide;
pub mod deps;
pub mod error;
mod execute;
#[cfg(any(test, feature = "test-util"))]
pub mod fake;
pub mod plan;
pub mod ports;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::time::Instant;
use tracing::Instrument;

pub use decide::decide;
pub use error::ExecError;
pub use plan::{Action, Applied, Observed, Plan, RecordState, RegisterReason, Requeue};
pub use ports::{AnalysisSource, ControlSource, KvPort, NoAnalysis, NoControls, NomadPort};

use crate::app::{AppKey, Record, owner_value};
use crate::leader::{LeaderGate, Term};
use crate::live::JobKey;
use crate::metrics::Metrics;
use crate::queue::{Outcome, Reconciled, Retry};
use crate::status::{AppStatus, ConditionStatus, ConditionType, HistoryEntry, Phase, Reason, timestamp};
use crate::store::{LiveCache, Records, Statuses, StatusesWriter};

/// After this many write conflicts in a row, the app's status reports them (`lastError`).
pub const CONFLICTS_REPORTED: u32 = 3;

/// The reconcile stage: the stores it reads, the ports it writes through, and the status writer it owns.
pub struct Stage<N, K> {
    prefix: String,
    nomad: N,
    kv: K,
    records: Records,
    live: LiveCache,
    statuses: Statuses,
    status_writer: StatusesWriter,
    metrics: Arc<Metrics>,
    clock: fn() -> SystemTime,
    /// Autoscaling measurements, written by the measurement poller.
    measurements: crate::measure::Measurements,
    /// Analysis runs, written by the analysis stage (issue #8).
    analysis: Arc<dyn AnalysisSource>,
    /// Controls, written by the controls watch (issue #8).
    controls: Arc<dyn ControlSource>,
    /// Whether this replica may write; [`LeaderGate::always`] unless [`Stage::with_leadership`] says otherwise.
    leadership: LeaderGate,
    /// Write conflicts in a row, per app (only apps whose last run conflicted are here).
    conflicts: Mutex<HashMap<AppKey, u32>>,
    /// Group counts read from Nomad for jobs the live cache knows only from a list stub, by the `JobModifyIndex`
    /// they were read at (only jobs whose counts an autoscaler owns, until a Job event brings them).
    read_counts: Mutex<HashMap<JobKey, CountsAt>>,
    /// Told of every status written (old and new), to send notifications; `None` without `--notifications`.
    notifier: Option<crate::notify::Notifier>,
    /// Wakes another app (`spec.dependsOn`: the dependents of an app whose readiness changed, and the deleted
    /// dependencies of an app whose own deletion is done); `None` wakes nothing (the periodic resync still does).
    wake: Option<Wake>,
}

/// Enqueues an app, with why (a bounded label for logs).
pub type Wake = Arc<dyn Fn(AppKey, &'static str) + Send + Sync>;

/// Group counts, and the `JobModifyIndex` they were read at.
type CountsAt = (u64, std::collections::BTreeMap<String, u64>);

/// What gather found for one app.
struct Gathered {
    record: RecordState,
    status: Option<Arc<AppStatus>>,
    status_index: u64,
    live: crate::live::Live,
    measurements: std::collections::BTreeMap<String, crate::measure::Measurement>,
    analysis: std::collections::BTreeMap<crate::rollout::RunId, crate::rollout::AnalysisRunStatus>,
    control: Option<Arc<crate::rollout::ControlEntry>>,
    dependencies: deps::DependencyView,
}

impl<N: NomadPort, K: KvPort> Stage<N, K> {
    /// A stage for installation `prefix` over these stores and ports. `status_writer` must be the writer of
    /// `statuses`: this stage is the only writer of statuses.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        prefix: &str,
        nomad: N,
        kv: K,
        records: Records,
        live: LiveCache,
        (status_writer, statuses): (StatusesWriter, Statuses),
        metrics: Arc<Metrics>,
        clock: fn() -> SystemTime,
    ) -> Stage<N, K> {
        Stage {
            prefix: prefix.to_string(),
            nomad,
            kv,
            records,
            live,
            statuses,
            status_writer,
            metrics,
            clock,
            measurements: crate::measure::Measurements::default(),
            analysis: Arc::new(NoAnalysis),
            controls: Arc::new(NoControls),
            leadership: LeaderGate::always(),
            conflicts: Mutex::new(HashMap::new()),
            read_counts: Mutex::new(HashMap::new()),
            notifier: None,
            wake: None,
        }
    }

    /// Wakes related apps through `wake` when a status changes (ordering between apps, `spec.dependsOn`).
    #[must_use]
    pub fn with_wake(mut self, wake: Wake) -> Self {
        self.wake = Some(wake);
        self
    }

    /// Tells `notifier` of every status this stage writes (`None`: no notifications).
    #[must_use]
    pub fn with_notifier(mut self, notifier: Option<crate::notify::Notifier>) -> Self {
        self.notifier = notifier;
        self
    }

    /// Reads autoscaling measurements from `measurements` (the poller's store).
    #[must_use]
    pub fn with_measurements(mut self, measurements: crate::measure::Measurements) -> Self {
        self.measurements = measurements;
        self
    }

    /// Reads analysis runs from `runs` (the analysis stage's store).
    #[must_use]
    pub fn with_analysis(mut self, runs: impl AnalysisSource) -> Self {
        self.analysis = Arc::new(runs);
        self
    }

    /// Reads controls from `controls` (the controls watch's store).
    #[must_use]
    pub fn with_controls(mut self, controls: impl ControlSource) -> Self {
        self.controls = Arc::new(controls);
        self
    }

    /// Writes only while `gate` leads (a replica of several; without this, the stage always writes).
    #[must_use]
    pub fn with_leadership(mut self, gate: LeaderGate) -> Self {
        self.leadership = gate;
        self
    }

    /// The status writer, to load every status once at start (before any reconcile runs).
    pub fn status_writer(&self) -> &StatusesWriter {
        &self.status_writer
    }

    /// Reconciles one app.
    ///
    /// A standby does nothing (the leader reconciles, and this replica resyncs every app when it comes to lead). A
    /// reconcile whose term ends midway is dropped at once: its writes not yet sent are never sent.
    pub async fn reconcile(&self, key: AppKey) -> Reconciled {
        let Some(term) = self.leadership.term() else { return Reconciled::done(None) };
        let span = tracing::info_span!("reconcile", app = %key);
        tokio::select! {
            result = self.reconcile_in_span(&key, term).instrument(span) => result,
            () = self.leadership.lost(term) => {
                tracing::info!(app = %key, "leadership lost: reconcile cancelled");
                self.metrics.reconcile_finished("cancelled", std::time::Duration::ZERO);
                Reconciled::done(None)
            }
        }
    }

    async fn reconcile_in_span(&self, key: &AppKey, term: Term) -> Reconciled {
        let started = Instant::now();
        let result = match self.gather(key).await {
            Ok(Some(g)) => self.act(key, g, term).await,
            Ok(None) => Reconciled::done(None),
            Err(err) => {
                tracing::warn!(error = %crate::error_chain(&err), kind = err.kind(), "gather failed");
                Reconciled::retry(err.classify(0), None)
            }
        };
        let label = match &result.outcome {
            Outcome::Done => "ok",
            Outcome::RequeueAfter(_) => "requeue",
            Outcome::Retry { retry: Retry::After(_) } => "conflict",
            Outcome::Retry { .. } => "error",
        };
        self.metrics.reconcile_finished(label, started.elapsed());
        result
    }

    /// Reads the stores; proves a missing record gone (or not) with a single-key read. `None`: no record and no
    /// status, so nothing to do.
    async fn gather(&self, key: &AppKey) -> Result<Option<Gathered>, ExecError> {
        let stored = self.statuses.get(key);
        let status = stored.as_ref().and_then(|s| s.status.clone());
        let status_index = stored.as_ref().map_or(0, |s| s.modify_index);
        let record = match self.records.get(key) {
            Some(record) => RecordState::Present(record),
            // Neither a record nor a status Drover can read: Drover never managed this key.
            None if status.is_none() => return Ok(None),
            None => {
                let record_key = key.app_kv_key(&self.prefix);
                match self.kv.get(&record_key).await {
                    // The store lags the write: decide on what Consul holds now.
                    Ok(Some(pair)) => {
                        RecordState::Present(Arc::new(Record::load(&self.prefix, key, &pair.value, pair.modify_index)))
                    }
                    Ok(None) => RecordState::Gone,
                    Err(e) if e.is_permission_denied() => RecordState::Unreadable { reason: crate::error_chain(&e) },
                    Err(e) => {
                        return Err(ExecError::Unavailable {
                            operation: "read record",
                            target: record_key,
                            source: Box::new(e),
                        });
                    }
                }
            }
        };
        let job_id = match &record {
            RecordState::Present(r) => r.job_id(key).to_string(),
            _ => status.as_ref().and_then(|s| s.job_id.clone()).unwrap_or_else(|| key.name.clone()),
        };
        let mut retiring: Vec<JobKey> = Vec::new();
        if let Some(s) = &status {
            let earlier = s.job_id.iter().chain(s.retiring_job_ids.iter()).filter(|id| **id != job_id);
            retiring.extend(earlier.map(|id| JobKey::new(&key.namespace, id)));
        }
        let mut live = self.live.live_for(&JobKey::new(&key.namespace, &job_id), &retiring);
        let (autoscaled, owns_counts) = match &record {
            RecordState::Present(r) => match r.as_ref() {
                Record::Valid(v) => {
                    (v.autoscaling.is_some(), v.autoscaling.is_some() || !v.externally_scaled.is_empty())
                }
                Record::Invalid { .. } => (false, false),
            },
            _ => (false, false),
        };
        let measurements = if autoscaled { self.measurements.get(key) } else { std::collections::BTreeMap::new() };
        // A relist's stubs carry no counts: read the job once per version (the next Job event carries them again).
        // Kept here, not in the live cache (whose one writer is the Nomad watch), so an idle app is read once.
        if owns_counts && let Some(cached) = live.job.as_mut().filter(|j| j.counts.is_none()) {
            let jmi = cached.job_modify_index;
            let known = self.read_counts.lock().unwrap_or_else(|p| p.into_inner()).get(&cached.key).cloned();
            match known.filter(|(at, _)| *at == jmi) {
                Some((_, counts)) => cached.counts = Some(counts),
                None => {
                    let fresh = self.nomad.job(&key.namespace, &job_id).await.map_err(|e| ExecError::Unavailable {
                        operation: "read job",
                        target: job_id.clone(),
                        source: Box::new(e),
                    })?;
                    if let Some(counts) = fresh.filter(|f| f.job_modify_index == jmi).and_then(|f| f.counts) {
                        let mut read = self.read_counts.lock().unwrap_or_else(|p| p.into_inner());
                        read.insert(cached.key.clone(), (jmi, counts.clone()));
                        cached.counts = Some(counts);
                    }
                }
            }
        } else if owns_counts && let Some(job) = &live.job {
            self.read_counts.lock().unwrap_or_else(|p| p.into_inner()).remove(&job.key);
        }
        let (analysis, control) = match &record {
            RecordState::Present(_) => (self.analysis.runs(key), self.controls.control(key)),
            _ => (std::collections::BTreeMap::new(), None),
        };
        let dependencies = deps::view(key, &record, &self.records, &self.statuses);
        Ok(Some(Gathered { record, status, status_index, live, measurements, analysis, control, dependencies }))
    }

    /// Decides, executes and records the outcome.
    async fn act(&self, key: &AppKey, g: Gathered, term: Term) -> Reconciled {
        let now = (self.clock)();
        let ts = timestamp(now);
        let owner = owner_value(&self.prefix, key);
        let generation = match &g.record {
            RecordState::Present(r) => Some(r.generation()),
            _ => None,
        };
        let plan = decide(&Observed {
            key,
            owner: &owner,
            record: &g.record,
            live: &g.live,
            status: g.status.as_deref(),
            measurements: &g.measurements,
            analysis: &g.analysis,
            control: g.control.as_deref(),
            dependencies: &g.dependencies,
            now,
        });
        if plan.drift_detected {
            self.metrics.drift_detected();
        }
        let plan_evaluated = plan.evaluated;
        let status_key = key.status_kv_key(&self.prefix);
        let executed = execute::execute(
            (&self.leadership, term),
            &self.nomad,
            &self.kv,
            &self.metrics,
            &key.namespace,
            &status_key,
            g.status_index,
            &plan.actions,
        )
        .await;
        let mut status = plan.status;
        let rollout_after = status.as_ref().and_then(|s| s.rollout.clone());
        let valid = match &g.record {
            RecordState::Present(r) => match r.as_ref() {
                Record::Valid(v) => Some(v.clone()),
                Record::Invalid { .. } => None,
            },
            _ => None,
        };
        let mut result = match &executed {
            Ok((applied, deleted)) => {
                if *deleted {
                    self.metrics.rollout.forget(&key.namespace, &key.name);
                    self.conflicts_reset(key);
                    let related = self.related(key, g.status.as_deref(), None);
                    self.status_writer.remove(key);
                    self.wake_all(related);
                    return Reconciled::done(generation);
                }
                if let Some(s) = status.as_mut() {
                    if let (Some(applied), Some(v)) = (applied, &valid) {
                        record_applied(s, v.generation, v.expects_deployment, applied, &ts);
                    }
                    s.last_error = None;
                }
                match plan.requeue {
                    Requeue::AwaitChange => Reconciled::done(generation),
                    Requeue::After(d) => Reconciled::requeue_after(d, generation),
                }
            }
            Err(err @ ExecError::NotLeader { .. }) => {
                // Nothing more may be written: the replica that leads now owns this app's status.
                tracing::info!(error = %crate::error_chain(err), "not leading any more");
                self.metrics.write_dropped();
                return Reconciled::done(None);
            }
            Err(err) => {
                tracing::warn!(error = %crate::error_chain(err), kind = err.kind(), "reconcile failed");
                let conflicts = self.conflicts_count(key, err);
                if let Some(s) = status.as_mut() {
                    record_error(s, err, valid.as_ref().map(|v| v.hash.as_str()), conflicts, &ts);
                }
                Reconciled::retry(err.classify(conflicts), generation)
            }
        };
        let written = match status {
            Some(s) => self.write_status(key, s, g.status.as_deref(), g.status_index, &ts, term).await,
            None => Ok(()),
        };
        match written {
            // A whole run without a conflict: the count of conflicts in a row starts over; the rollout is where
            // the written status says (an ended rollout is counted once: a failed write decides it again).
            Ok(()) if executed.is_ok() => {
                self.conflicts_reset(key);
                let before = g.status.as_ref().and_then(|s| s.rollout.as_ref());
                self.metrics.rollout.observed(&key.namespace, &key.name, before, rollout_after.as_ref(), now);
            }
            Ok(()) => {}
            // Not leading any more (counted by write_status): the replica that leads now owns the status.
            Err(err @ ExecError::NotLeader { .. }) => {
                tracing::info!(error = %crate::error_chain(&err), "not leading any more");
                return Reconciled::done(None);
            }
            Err(err) => {
                tracing::warn!(error = %crate::error_chain(&err), "status write failed");
                if matches!(result.outcome, Outcome::Done | Outcome::RequeueAfter(_)) {
                    let conflicts = self.conflicts_count(key, &err);
                    result = Reconciled::retry(err.classify(conflicts), generation);
                }
            }
        }
        // Metrics of an autoscaling evaluation: a scale counts only once Nomad took it.
        if let Some(e) = plan_evaluated {
            let scaled = if executed.is_ok() { e.scaled } else { None };
            self.metrics.autoscale_evaluated(&key.namespace, &key.name, e.current, e.desired, e.errors, scaled);
        }
        result
    }

    /// After the status of `key` went from `old` to `new` (`None`: removed), the apps to wake: its dependents when its
    /// readiness may have changed (phase or generation), and the apps it depends (or depended) on when its
    /// dependency list changed or its deletion is done, and only those whose record is gone: only a deletion waits
    /// for its dependents; a present dependency reads nothing of them.
    fn related<'a>(
        &self,
        key: &AppKey,
        old: Option<&'a AppStatus>,
        new: Option<&'a AppStatus>,
    ) -> Vec<(AppKey, &'static str)> {
        let mut out = Vec::new();
        if self.wake.is_none() {
            return out;
        }
        let readiness = |s: Option<&AppStatus>| s.map(|s| (s.phase, s.observed_generation));
        if readiness(old) != readiness(new) {
            out.extend(self.records.dependents_of(key).into_iter().map(|k| (k, "dependency changed")));
        }
        // Borrowed, not cloned: this runs on every status write, and almost every app depends on nothing.
        let list = |s: Option<&'a AppStatus>| s.map_or(&[][..], |s| s.depends_on.as_slice());
        let (before, after) = (list(old), list(new));
        if new.is_none() || before != after {
            let mut deps: Vec<&String> = before.iter().chain(after.iter()).collect();
            deps.sort();
            deps.dedup();
            let deleted = deps
                .into_iter()
                .filter_map(|d| d.parse::<AppKey>().ok())
                .filter(|k| self.records.get(k).is_none())
                .map(|k| (k, "dependent changed"));
            out.extend(deleted);
        }
        out
    }

    /// Wakes `keys`, after the status store holds the new status.
    fn wake_all(&self, keys: Vec<(AppKey, &'static str)>) {
        if let Some(wake) = &self.wake {
            for (key, why) in keys {
                wake(key, why);
            }
        }
    }

    fn conflicts_count(&self, key: &AppKey, err: &ExecError) -> u32 {
        let mut map = self.conflicts.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(err, ExecError::Conflict { .. }) {
            let n = map.entry(key.clone()).or_default();
            *n += 1;
            *n
        } else {
            map.remove(key);
            0
        }
    }

    fn conflicts_reset(&self, key: &AppKey) {
        self.conflicts.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    /// Writes the status if it changed (timestamps aside), with CAS on the index last seen. The one place a status
    /// is written.
    async fn write_status(
        &self,
        key: &AppKey,
        mut status: AppStatus,
        stored: Option<&AppStatus>,
        index: u64,
        ts: &str,
        term: Term,
    ) -> Result<(), ExecError> {
        if stored.is_some_and(|s| s.eq_ignoring_time(&status)) {
            return Ok(());
        }
        status.updated_at = ts.to_string();
        let status_key = key.status_kv_key(&self.prefix);
        if let Err(err) = error::admit(&self.leadership, term, "write status", &status_key) {
            self.metrics.write_dropped();
            return Err(err);
        }
        let body = serde_json::to_vec(&status).map_err(|e| ExecError::Unavailable {
            operation: "encode status",
            target: status_key.clone(),
            source: Box::new(e),
        })?;
        match self.kv.cas(&status_key, &body, index).await {
            Ok(Some(new_index)) => {
                self.metrics.status_write("written");
                if let Some(notifier) = &self.notifier {
                    notifier.observe(key, stored, &status);
                }
                // Woken only once the store holds the new status, or a woken dependent could read the old one.
                let related = self.related(key, stored, Some(&status));
                self.status_writer.set(key.clone(), status, new_index);
                self.wake_all(related);
                Ok(())
            }
            Ok(None) => {
                // Someone else wrote it: read it back so the next attempt has the right index.
                self.metrics.status_write("conflict");
                if let Ok(pair) = self.kv.get(&status_key).await {
                    self.status_writer.set_read(key.clone(), pair.as_ref());
                }
                Err(ExecError::Conflict { operation: "write status", target: status_key })
            }
            Err(e) => {
                self.metrics.status_write("error");
                Err(error::from_consul("write status", &status_key, e))
            }
        }
    }
}

/// Records a successful register or scale in the status.
fn record_applied(status: &mut AppStatus, generation: u64, expects_deployment: bool, applied: &Applied, ts: &str) {
    if let (Some(scale), Some(a)) = (&applied.scale, status.autoscaling.as_mut()) {
        a.last_scale_time = Some(ts.to_string());
        a.last_direction = Some(scale.direction.to_string());
        a.last_reason = Some(scale.message.clone());
    }
    status.applied_hash = Some(applied.hash.clone());
    status.applied_job_version = None;
    status.applied_job_modify_index = Some(applied.job_modify_index);
    // A scale to 0 makes no deployment (DesiredTotal 0, api-contract B13).
    let placing = applied.scale.as_ref().is_none_or(|s| s.count > 0);
    status.deployment_expected = expects_deployment && applied.new_version && placing;
    status.failed_hash = None;
    status.rejected_hash = None;
    status.drift_job_modify_index = None;
    status.push_history(HistoryEntry {
        generation,
        hash: applied.hash.clone(),
        job_version: None,
        result: applied.reason.history(),
        at: ts.to_string(),
    });
}

/// Records a failed execution in the status. A rejection by Nomad is final for this spec: the app is `Failed` and
/// the spec is not sent again until the record changes.
fn record_error(status: &mut AppStatus, err: &ExecError, hash: Option<&str>, conflicts: u32, ts: &str) {
    let mut text = crate::error_chain(err);
    if conflicts >= CONFLICTS_REPORTED {
        text = format!("{text} ({conflicts} times in a row; another writer keeps changing it)");
    }
    status.last_error = Some(text);
    let (reason, message) = match err {
        ExecError::Rejected { message, .. } => {
            (Reason::NomadRejected, format!("Nomad rejected the rendered job: {message}. Fix the record to try again"))
        }
        ExecError::NamespaceMissing { namespace } => (
            Reason::NamespaceMissing,
            format!("Nomad has no namespace {namespace:?}; Drover registers the job once it exists"),
        ),
        _ => return,
    };
    let Some(hash) = hash else { return };
    status.phase = Phase::Failed;
    if matches!(err, ExecError::Rejected { .. }) {
        status.rejected_hash = Some(hash.to_string());
    }
    status.set_condition(ConditionType::Ready, ConditionStatus::False, reason, message, ts);
}

#[cfg(test)]
mod stage_deps_tests;
#[cfg(test)]
mod stage_tests;
