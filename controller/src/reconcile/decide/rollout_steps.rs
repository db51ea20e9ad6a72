//! The steps of a rollout as the engine runs them, derived from the record's strategy and the deployment Nomad
//! made: their order, what ends each one, and each one's deadline. Pure.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::app::{AnalysisStep, AnalysisTemplate, CanaryStep, OnTimeout, StrategyType, ValidRecord, WebhookStep};
use crate::live::LiveDeployment;
use crate::rollout::{AnalysisPhase, AnalysisRunStatus, RunId, StepRef};

// A webhook's default timeout is the analysis stage's (one source: what measures is what the deadlines assume).
use crate::rollout::compiled::DEFAULT_TIMEOUT;
/// Default `consecutiveErrorLimit` of a webhook step (contract 2).
const WEBHOOK_ERROR_LIMIT: u64 = 3;
/// What a webhook's retry adds to its timeout in the step's deadline (contract 6).
const WEBHOOK_RETRY_SLACK: Duration = Duration::from_secs(5);
/// The run name of a webhook step.
pub(crate) const WEBHOOK_RUN: &str = "webhook";

/// What one step waits for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum StepKind<'a> {
    /// A timed pause.
    Pause(Duration),
    /// A manual gate: `drover promote` ends it; `timeout` applies `on_timeout`.
    Gate { timeout: Option<Duration>, on_timeout: OnTimeout },
    /// Analysis runs, all of which must pass.
    Analysis(&'a AnalysisStep),
    /// One webhook call.
    Webhook(&'a WebhookStep),
}

/// The post-promotion bake.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bake<'a> {
    /// How long to keep watching after the deployment succeeded.
    pub duration: Duration,
    /// The analysis run meanwhile, if any.
    pub analysis: Option<&'a AnalysisStep>,
}

/// The whole plan of a rollout: the steps before promotion, and the bake after.
#[derive(Debug)]
pub(crate) struct Steps<'a> {
    /// The steps in order, each with the [`StepRef`] status and runs use.
    pub list: Vec<(StepRef, StepKind<'a>)>,
    /// The post-promotion bake.
    pub bake: Option<Bake<'a>>,
}

impl<'a> Steps<'a> {
    /// The steps `record` asks for around deployment `d`.
    ///
    /// - Canary: `canary.steps` as `Step 1..n`; no steps is a manual gate.
    /// - BlueGreen: the pre-promotion analysis (`PrePromotion`), then a manual gate (no `autoPromote`) or a timed
    ///   pause of `autoPromoteAfter`.
    /// - Rolling: a raw `spec.job` whose deployment places canaries Nomad does not promote itself is a manual gate
    ///   (contract 5); otherwise no steps.
    ///
    /// A deployment without canaries (the first version of a job, or a change Nomad updates in place) has no steps
    /// to run: Nomad simply rolls it out. The bake applies either way.
    pub fn of(record: &'a ValidRecord, d: &LiveDeployment) -> Steps<'a> {
        let strategy = record.strategy.as_ref();
        let gate = StepKind::Gate { timeout: None, on_timeout: OnTimeout::Abort };
        let canaries = d.requires_promotion() || d.promoted();
        let mut list = Vec::new();
        match strategy.strategy_type {
            _ if !canaries => {}
            StrategyType::Canary => {
                let steps = strategy.canary.as_ref().map(|c| c.steps.as_slice()).unwrap_or_default();
                for (i, step) in steps.iter().enumerate() {
                    let kind = match step {
                        CanaryStep::Pause(p) => match p.duration {
                            Some(d) => StepKind::Pause(d.0),
                            None => StepKind::Gate {
                                timeout: p.timeout.map(|t| t.0),
                                on_timeout: p.on_timeout.unwrap_or_default(),
                            },
                        },
                        CanaryStep::Analysis(a) => StepKind::Analysis(a),
                        CanaryStep::Webhook(w) => StepKind::Webhook(w),
                    };
                    list.push((StepRef::Step(i as u32), kind));
                }
                if list.is_empty() {
                    list.push((StepRef::Step(0), gate));
                }
            }
            StrategyType::BlueGreen => {
                let bg = strategy.blue_green.clone().unwrap_or_default();
                if let Some(pre) = strategy.blue_green.as_ref().and_then(|b| b.pre_promotion_analysis.as_ref()) {
                    list.push((StepRef::PrePromotion, StepKind::Analysis(pre)));
                }
                let at = StepRef::Step(list.len() as u32);
                match (bg.auto_promote, bg.auto_promote_after) {
                    (false, _) => list.push((at, gate)),
                    (true, Some(after)) if !after.0.is_zero() => list.push((at, StepKind::Pause(after.0))),
                    (true, _) => {}
                }
            }
            StrategyType::Rolling if d.auto_promotes() => {}
            StrategyType::Rolling => list.push((StepRef::Step(0), gate)),
        }
        let bake = match (&strategy.post_promotion, strategy.blue_green.as_ref()) {
            (Some(p), _) => Some(Bake { duration: p.bake.0, analysis: p.analysis.as_ref() }),
            (None, Some(bg)) => {
                bg.post_promotion_analysis.as_ref().map(|a| Bake { duration: Duration::ZERO, analysis: Some(a) })
            }
            (None, None) => None,
        };
        Steps { list, bake }
    }

    /// Nothing for the engine to do beyond following Nomad.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty() && self.bake.is_none()
    }

    /// The position of `step` in the list; `Placing` is before the first.
    pub fn position(&self, step: StepRef) -> Option<usize> {
        self.list.iter().position(|(r, _)| *r == step)
    }
}

impl StepKind<'_> {
    /// A short name for status (`pause 30s`, `manual gate`, `analysis error-rate`, `webhook GET http://…`).
    pub fn name(&self) -> String {
        match self {
            StepKind::Pause(d) => format!("pause {}", humantime::format_duration(*d)),
            StepKind::Gate { .. } => "manual gate".to_string(),
            StepKind::Analysis(a) => format!("analysis {}", a.template_names().join(", ")),
            StepKind::Webhook(w) => format!("webhook {} {}", w.method.as_deref().unwrap_or("GET"), w.url),
        }
    }

    /// The run names the step makes: one per template, `webhook` for a webhook, none for a pause.
    pub fn runs(&self) -> Vec<String> {
        match self {
            StepKind::Analysis(a) => a.template_names().into_iter().map(str::to_string).collect(),
            StepKind::Webhook(_) => vec![WEBHOOK_RUN.to_string()],
            StepKind::Pause(_) | StepKind::Gate { .. } => Vec::new(),
        }
    }

    /// How long the step may take from its start (contract 6); `None` for a manual gate without a timeout, which
    /// waits visibly in `Paused`.
    pub fn budget(&self, templates: &BTreeMap<String, AnalysisTemplate>) -> Option<Duration> {
        match self {
            StepKind::Pause(d) => Some(*d),
            StepKind::Gate { timeout, .. } => *timeout,
            StepKind::Analysis(a) => Some(analysis_budget(a, templates)),
            StepKind::Webhook(w) => {
                let timeout = w.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0);
                Some((timeout + WEBHOOK_RETRY_SLACK) * (WEBHOOK_ERROR_LIMIT as u32 + 1))
            }
        }
    }
}

/// The longest any of the step's templates may take ([`Schedule::max_duration`], contract 6): enough for every
/// measurement the run can take before a limit ends it, on the schedule the analysis stage measures on.
///
/// [`Schedule::max_duration`]: crate::rollout::Schedule::max_duration
pub(crate) fn analysis_budget(a: &AnalysisStep, templates: &BTreeMap<String, AnalysisTemplate>) -> Duration {
    let default = AnalysisTemplate::default();
    a.template_names()
        .into_iter()
        .map(|name| crate::rollout::Schedule::of(templates.get(name).unwrap_or(&default)).max_duration())
        .max()
        .unwrap_or(Duration::ZERO)
}

/// The runs of one step, folded.
#[derive(Debug, PartialEq)]
pub(crate) enum RunsVerdict {
    /// Every run passed (a dry run counts as passed whatever it found).
    Passed,
    /// A run failed (or could not be carried out): its message.
    Failed(String),
    /// A run was inconclusive: a person decides.
    Inconclusive(String),
    /// Runs are still measuring.
    Running,
}

/// Folds the runs of a step: any decisive failure wins, then an inconclusive run, then any still running.
pub(crate) fn judge_runs<'r>(runs: impl Iterator<Item = &'r AnalysisRunStatus>) -> RunsVerdict {
    let mut verdict = RunsVerdict::Passed;
    for run in runs {
        let describe = || {
            let what = if run.message.is_empty() { format!("{:?}", run.phase) } else { run.message.clone() };
            format!("run {:?}: {what}", run.id.template)
        };
        match run.phase {
            _ if run.dry_run && run.phase.is_terminal() => {}
            AnalysisPhase::Failed | AnalysisPhase::Error => return RunsVerdict::Failed(describe()),
            AnalysisPhase::Inconclusive => verdict = RunsVerdict::Inconclusive(describe()),
            AnalysisPhase::Running if verdict == RunsVerdict::Passed => verdict = RunsVerdict::Running,
            AnalysisPhase::Running | AnalysisPhase::Successful => {}
        }
    }
    verdict
}

/// The status copy of each run, replaced by the analysis stage's copy of the same run when the stage has taken
/// more measurements or the phase changed (contract 2). A store run of an earlier attempt (another `startedAt`,
/// after `drover restart`) is not this run and is ignored.
pub(crate) fn merge_runs(status: &mut [AnalysisRunStatus], store: &BTreeMap<RunId, AnalysisRunStatus>) {
    for run in status.iter_mut() {
        if let Some(fresh) = store.get(&run.id).filter(|f| f.started_at == run.started_at)
            && (fresh.total() > run.total() || fresh.phase != run.phase)
        {
            *run = fresh.clone();
        }
    }
}

/// A new run of `template` for `step` of `generation`, started `at`.
pub(crate) fn new_run(generation: u64, step: StepRef, template: &str, at: &str, dry_run: bool) -> AnalysisRunStatus {
    AnalysisRunStatus {
        id: RunId { generation, step, template: template.to_string() },
        phase: AnalysisPhase::Running,
        started_at: at.to_string(),
        successful: 0,
        failed: 0,
        inconclusive: 0,
        errors: 0,
        consecutive_errors: 0,
        measurements: Vec::new(),
        message: String::new(),
        dry_run,
    }
}

/// `at` plus `d`, saturating (durations are at most a year, so this never overflows in practice).
pub(crate) fn add(at: SystemTime, d: Duration) -> SystemTime {
    at.checked_add(d).unwrap_or(at)
}

/// Parses an RFC 3339 timestamp written by [`crate::status::timestamp`].
pub(crate) fn parse_time(text: Option<&str>) -> Option<SystemTime> {
    text.and_then(crate::status::parse_timestamp)
}
