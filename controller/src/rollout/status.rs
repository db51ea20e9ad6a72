//! `status.rollout`: where a rollout stands, with its analysis runs. Bounded whatever the rollout does: at most
//! [`MAX_MEASUREMENTS`] measurements per run are kept (the counters keep the totals), so a status stays far below
//! Consul's 512 KiB value limit.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::app::StrategyType;

/// The most measurements a run keeps in status (the newest); the counters count them all.
pub const MAX_MEASUREMENTS: usize = 10;

/// The most bytes a rollout's analysis runs may take in a status (as JSON). The per-field caps (10 measurements a
/// run, 16 runs, cut queries and reasons) already bound a run, but 16 runs of long multi-byte queries and 20-value
/// vectors would still approach Consul's 512 KiB value limit; [`fit_runs`] keeps the runs under this budget.
pub const RUNS_BYTE_BUDGET: usize = 64 * 1024;

/// What each string of a measurement and a run's message is cut to when the runs are still over budget after
/// everything else (bytes, on a character boundary).
const LAST_RESORT_CUT: usize = 256;

/// Keeps `runs` within [`RUNS_BYTE_BUDGET`], giving up detail in this order until they fit: the resolved query of all
/// but each run's newest measurement; older measurements (down to the newest one of each run); every query, error
/// and message cut to 256 bytes; then the oldest finished runs of earlier steps. Counters are never touched, and
/// the runs of the current step (the newest run's) are never dropped, so verdicts and a resumed run's limits are
/// unchanged (an inconclusive run the current step waits on stays): only what a person reads gets shorter.
pub fn fit_runs(runs: &mut Vec<AnalysisRunStatus>) {
    let size = |runs: &Vec<AnalysisRunStatus>| serde_json::to_vec(runs).map_or(usize::MAX, |v| v.len());
    if size(runs) <= RUNS_BYTE_BUDGET {
        return;
    }
    for run in runs.iter_mut() {
        let newest = run.measurements.len().saturating_sub(1);
        for m in &mut run.measurements[..newest] {
            m.query.clear();
        }
    }
    for keep in (1..MAX_MEASUREMENTS).rev() {
        if size(runs) <= RUNS_BYTE_BUDGET {
            return;
        }
        for run in runs.iter_mut() {
            let extra = run.measurements.len().saturating_sub(keep);
            run.measurements.drain(..extra);
        }
    }
    if size(runs) <= RUNS_BYTE_BUDGET {
        return;
    }
    for run in runs.iter_mut() {
        cut(&mut run.message, LAST_RESORT_CUT);
        for m in &mut run.measurements {
            cut(&mut m.query, LAST_RESORT_CUT);
            if let Some(error) = &mut m.error {
                cut(error, LAST_RESORT_CUT);
            }
        }
    }
    let current = runs.last().map(|r| (r.id.generation, r.id.step));
    while size(runs) > RUNS_BYTE_BUDGET {
        let earlier = |r: &AnalysisRunStatus| Some((r.id.generation, r.id.step)) != current;
        let Some(oldest) = runs.iter().position(|r| r.phase.is_terminal() && earlier(r)) else { break };
        runs.remove(oldest);
    }
}

/// Cuts `s` to at most `max` bytes, on a character boundary.
fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let end = (0..=max).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
        s.truncate(end);
    }
}

/// The progress of the current rollout.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutStatus {
    /// The strategy being carried out.
    pub strategy: StrategyType,
    /// The record generation this rollout carries out.
    pub generation: u64,
    /// Where the rollout is (see [`StepRef`]).
    pub step: StepRef,
    /// The number of steps before promotion (`canary.steps`; 1 for blue-green's pre-promotion gate).
    pub step_count: u32,
    /// A short name of the current step, e.g. `pause 30s`, `analysis error-rate`, `bake 5m`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub step_name: String,
    /// When the current step started (RFC 3339): its deadline and timed pauses count from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_started_at: Option<String>,
    /// Why the rollout waits for a person, when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_reason: Option<PausedReason>,
    /// The job version under test (the canaries').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_version: Option<u64>,
    /// The last stable job version (what an abort returns to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_version: Option<u64>,
    /// The Nomad deployment being driven.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    /// The runs of the current step (and of finished steps of this rollout, newest last, at most a few).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analysis_runs: Vec<AnalysisRunStatus>,
    /// When the rollout started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When the current step must have ended (RFC 3339); past it the rollout is aborted (`DeadlineExceeded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    /// How the rollout ended, once it has. Set when the verdict is reached; `step` becomes `Done` once Nomad shows
    /// it carried out (the deployment failed and reverted, the revert rolled out), so a restart in between finishes
    /// the abort instead of forgetting it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<RolloutResult>,
    /// Why the rollout ended as it did (the failed query and values, the deadline passed, who aborted).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When a person paused the rollout (`drover pause`, RFC 3339): on `resume`, the current step's clock and
    /// deadline move on by the time spent paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<String>,
}

impl RolloutStatus {
    /// The rollout reached a verdict that Drover is still carrying out (failing the deployment, reverting).
    pub fn is_ending(&self) -> bool {
        self.result.is_some() && self.step != StepRef::Done
    }
}

/// Where a rollout is. Serialized as a string: `Placing`, `Step 2`, `PrePromotion`, `Promoting`, `Bake`, `Done`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StepRef {
    /// The new version's instances (canaries, or the whole new set) are being placed and becoming healthy.
    #[default]
    Placing,
    /// Canary step N (0-based in code, shown 1-based).
    Step(u32),
    /// Blue-green's analysis (and gate) before promotion.
    PrePromotion,
    /// Promoted; Nomad replaces the remaining instances.
    Promoting,
    /// After a successful deployment: `postPromotion.bake` (or blue-green's post-promotion analysis).
    Bake,
    /// Ended (see `result`).
    Done,
}

impl fmt::Display for StepRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepRef::Placing => f.write_str("Placing"),
            StepRef::Step(n) => write!(f, "Step {}", n + 1),
            StepRef::PrePromotion => f.write_str("PrePromotion"),
            StepRef::Promoting => f.write_str("Promoting"),
            StepRef::Bake => f.write_str("Bake"),
            StepRef::Done => f.write_str("Done"),
        }
    }
}

impl std::str::FromStr for StepRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "Placing" => StepRef::Placing,
            "PrePromotion" => StepRef::PrePromotion,
            "Promoting" => StepRef::Promoting,
            "Bake" => StepRef::Bake,
            "Done" => StepRef::Done,
            other => match other.strip_prefix("Step ").and_then(|n| n.parse::<u32>().ok()) {
                Some(n) if n >= 1 => StepRef::Step(n - 1),
                _ => return Err(format!("unknown rollout step {other:?}")),
            },
        })
    }
}

impl Serialize for StepRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StepRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for StepRef {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "StepRef".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "Placing, Step N (1-based), PrePromotion, Promoting, Bake or Done.",
            "pattern": "^(Placing|Step [1-9][0-9]*|PrePromotion|Promoting|Bake|Done)$"
        })
    }
}

/// Why a rollout waits for a person.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PausedReason {
    /// A `pause: {}` step (or a canary rollout without steps, or blue-green without `autoPromote`).
    ManualGate,
    /// An analysis run was inconclusive.
    AnalysisInconclusive,
    /// `drover pause`.
    PausedByUser,
}

/// How a rollout ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RolloutResult {
    /// Promoted, the deployment succeeded, and the bake (if any) passed.
    Succeeded,
    /// An analysis run failed; the rollout was aborted.
    AnalysisFailed,
    /// A webhook step failed.
    WebhookFailed,
    /// `drover abort` (or a manual gate's `onTimeout: Abort`... see `DeadlineExceeded`).
    Aborted,
    /// A step's deadline passed.
    DeadlineExceeded,
    /// Nomad failed the deployment (unhealthy canaries, progress deadline).
    DeploymentFailed,
    /// The bake found a regression and Drover reverted to the stable version.
    RolledBack,
    /// A newer generation replaced this rollout before it ended.
    Superseded,
}

/// Identifies an analysis run: which rollout step of which generation, and which template.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunId {
    /// The record generation.
    pub generation: u64,
    /// The step the run belongs to.
    pub step: StepRef,
    /// The template's name (`webhook` for a webhook step).
    pub template: String,
}

/// One analysis run (or webhook call) of a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisRunStatus {
    /// Which run.
    pub id: RunId,
    /// Where the run stands.
    pub phase: AnalysisPhase,
    /// When the run started (RFC 3339): measurements are due from here plus `initialDelay`.
    pub started_at: String,
    /// Measurements that passed.
    #[serde(default)]
    pub successful: u32,
    /// Measurements that failed.
    #[serde(default)]
    pub failed: u32,
    /// Measurements that were inconclusive.
    #[serde(default)]
    pub inconclusive: u32,
    /// Measurements that could not be taken.
    #[serde(default)]
    pub errors: u32,
    /// Errors in a row, reset by any measurement that was taken.
    #[serde(default)]
    pub consecutive_errors: u32,
    /// The newest measurements (at most [`MAX_MEASUREMENTS`]), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<MeasurementRecord>,
    /// Why the run ended as it did, naming the query and values for a failure.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The template's `dryRun`: reported, never decisive.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

impl AnalysisRunStatus {
    /// Every measurement taken or attempted, including those no longer kept.
    pub fn total(&self) -> u32 {
        self.successful + self.failed + self.inconclusive + self.errors
    }
}

/// Where an analysis run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AnalysisPhase {
    /// Measurements are being taken.
    Running,
    /// Every measurement was taken within the limits.
    Successful,
    /// `failureLimit` (or `consecutiveErrorLimit`) was exceeded.
    Failed,
    /// `inconclusiveLimit` was exceeded: a person decides.
    Inconclusive,
    /// The run could not be carried out at all (e.g. its template could not be resolved).
    Error,
}

impl AnalysisPhase {
    /// Whether the run has ended.
    pub fn is_terminal(self) -> bool {
        !matches!(self, AnalysisPhase::Running)
    }
}

/// One measurement of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeasurementRecord {
    /// The value as measured (a number, a list for a vector, absent for an error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    /// The stable version's value, for templates that compare with a `baseline`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<serde_json::Value>,
    /// How it was judged.
    pub phase: MeasurementPhase,
    /// When it was taken (RFC 3339).
    pub at: String,
    /// The resolved query or URL, as sent.
    pub query: String,
    /// What went wrong, for an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How one measurement was judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MeasurementPhase {
    /// It met the success condition.
    Successful,
    /// It met the failure condition.
    Failed,
    /// It met neither, or was empty/NaN under an `Inconclusive` policy.
    Inconclusive,
    /// It could not be taken (a timeout, an unreachable server, a condition that could not be evaluated on it).
    Error,
}

/// The last control Drover consumed for this app, so it is applied once (and a re-read after a restart does not
/// apply it again).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsumedControl {
    /// The control key's Consul `ModifyIndex` when it was consumed.
    pub modify_index: u64,
    /// The action.
    pub action: super::ControlAction,
    /// The generation it named.
    pub generation: u64,
    /// Whether it was applied, or ignored (a stale generation, or nothing it could act on).
    pub applied: bool,
    /// What Drover did with it, for people.
    pub message: String,
    /// When it was consumed (RFC 3339).
    pub at: String,
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
