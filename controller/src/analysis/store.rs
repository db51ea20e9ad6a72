//! [`AnalysisRuns`]: the analysis runs the poller measured, by app and run. One writer (the poller,
//! [`AnalysisRunsWriter`]), cheap-clone readers (the reconcile stage, whose `decide` copies a run over its status
//! copy when the store's has more measurements or another phase; `decide` never measures).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::app::AppKey;
use crate::rollout::{AnalysisRunStatus, RunId};

type ByApp = HashMap<AppKey, BTreeMap<RunId, AnalysisRunStatus>>;

fn read(l: &RwLock<ByApp>) -> RwLockReadGuard<'_, ByApp> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write(l: &RwLock<ByApp>) -> RwLockWriteGuard<'_, ByApp> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// Analysis runs by app: the read side.
#[derive(Clone, Debug, Default)]
pub struct AnalysisRuns {
    inner: Arc<RwLock<ByApp>>,
}

/// Analysis runs by app: the write side, owned by the analysis poller.
#[derive(Debug)]
pub struct AnalysisRunsWriter {
    inner: Arc<RwLock<ByApp>>,
}

/// An analysis-runs store: its one writer and a reader.
pub fn analysis_runs() -> (AnalysisRunsWriter, AnalysisRuns) {
    let inner = Arc::new(RwLock::new(HashMap::new()));
    (AnalysisRunsWriter { inner: inner.clone() }, AnalysisRuns { inner })
}

impl AnalysisRuns {
    /// Every run of `app` the poller holds (empty when none): what `decide` reads as `Observed.analysis`.
    pub fn get(&self, app: &AppKey) -> BTreeMap<RunId, AnalysisRunStatus> {
        read(&self.inner).get(app).cloned().unwrap_or_default()
    }

    /// One run of `app`.
    pub fn run(&self, app: &AppKey, id: &RunId) -> Option<AnalysisRunStatus> {
        read(&self.inner).get(app)?.get(id).cloned()
    }

    /// How many runs are held over all apps (for the benchmark and gauges).
    pub fn len(&self) -> usize {
        read(&self.inner).values().map(BTreeMap::len).sum()
    }

    /// True when no run is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl AnalysisRunsWriter {
    /// Stores `run` (a new measurement folded in, or the run resumed from status) for `app`.
    pub fn put(&mut self, app: &AppKey, run: AnalysisRunStatus) {
        write(&self.inner).entry(app.clone()).or_default().insert(run.id.clone(), run);
    }

    /// Forgets the runs of `app` that `keep` rejects (they left its status); returns how many were dropped.
    pub fn retain(&mut self, app: &AppKey, mut keep: impl FnMut(&RunId) -> bool) -> usize {
        let mut inner = write(&self.inner);
        let Some(runs) = inner.get_mut(app) else { return 0 };
        let before = runs.len();
        runs.retain(|id, _| keep(id));
        let dropped = before - runs.len();
        if runs.is_empty() {
            inner.remove(app);
        }
        dropped
    }

    /// Forgets every run of `app` (its status has no rollout any more, or it is gone).
    pub fn forget(&mut self, app: &AppKey) {
        write(&self.inner).remove(app);
    }

    /// The apps with runs held.
    pub fn apps(&self) -> Vec<AppKey> {
        read(&self.inner).keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{AnalysisPhase, StepRef};

    fn run(template: &str, successful: u32) -> AnalysisRunStatus {
        AnalysisRunStatus {
            id: RunId { generation: 7, step: StepRef::Step(1), template: template.into() },
            phase: AnalysisPhase::Running,
            started_at: "2026-12-07T06:00:00Z".into(),
            successful,
            failed: 0,
            inconclusive: 0,
            errors: 0,
            consecutive_errors: 0,
            measurements: Vec::new(),
            message: String::new(),
            dry_run: false,
        }
    }

    #[test]
    fn store_should_replace_runs_by_id_and_forget_those_that_left_status() {
        let (mut writer, reader) = analysis_runs();
        let (a, b) = (AppKey::new("default", "a"), AppKey::new("default", "b"));
        writer.put(&a, run("errors", 1));
        writer.put(&a, run("latency", 0));
        writer.put(&a, run("errors", 2));
        writer.put(&b, run("errors", 0));
        assert_eq!(reader.get(&a).len(), 2);
        assert_eq!(reader.run(&a, &run("errors", 0).id).map(|r| r.successful), Some(2), "the newest copy wins");
        assert_eq!(reader.len(), 3);
        assert_eq!(writer.retain(&a, |id| id.template == "latency"), 1);
        assert_eq!(reader.get(&a).keys().map(|id| id.template.as_str()).collect::<Vec<_>>(), ["latency"]);
        assert_eq!(writer.retain(&a, |_| false), 1);
        assert!(!writer.apps().contains(&a), "an app without runs is dropped");
        writer.forget(&b);
        assert!(reader.is_empty());
    }
}
