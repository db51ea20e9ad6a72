//! The decision: what one evaluation observed ([`Inputs`]) and the [`Policy`] → a [`Decision`]. Pure and total;
//! time is passed in.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use super::policy::Policy;
use super::resolution::{Resolved, resolve};
use super::strategies::evaluate;
use crate::prometheus::Shape;

/// What one evaluation observed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Inputs {
    /// The group's count in Nomad now (≥ 0).
    pub current: i64,
    /// Each check's measurement, by check name. A check with no entry counts as [`MeasureError::NotMeasured`].
    pub measurements: BTreeMap<String, Result<f64, MeasureError>>,
    /// Whether the job has a deployment that is not finished: Drover never scales during one (nomad#14669).
    pub deployment_active: bool,
    /// The last scale of this group (Drover's own, or read from the job's scaling events after a restart).
    pub last_scale: Option<LastScale>,
    /// The recommendations of earlier evaluations (each [`Decision::recommendation`], kept with [`remember`]).
    pub recommendations: Vec<Recommendation>,
}

/// When the count last changed, and which way: the cooldown starts there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastScale {
    /// When the scale was made.
    pub at: SystemTime,
    /// Which way it went; [`Direction::Unchanged`] when unknown (the longer cooldown then applies).
    pub direction: Direction,
}

/// The count one evaluation asked for, before limits: remembered for the scale-down stabilization window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recommendation {
    /// When it was made.
    pub at: SystemTime,
    /// The resolved count the checks asked for (the current count when they asked for no change or failed).
    pub count: i64,
}

/// Why a check has no value. Every kind follows the check's `onError`; none is ever a number.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MeasureError {
    /// The query answered no series.
    #[error("the query returned no series")]
    Empty,
    /// The query answered several series: the query must aggregate to one.
    #[error("the query returned {0} series, not one")]
    Several(usize),
    /// The value was NaN (e.g. 0/0 over no traffic).
    #[error("the query returned NaN")]
    NaN,
    /// The value was ±Inf (e.g. a division by a zero rate): Drover's choice, it scales nobody to `max`.
    #[error("the query returned an infinite value")]
    Infinite,
    /// The query could not be run.
    #[error("{message}")]
    Query {
        /// The bounded kind ([`crate::prometheus::QueryError::kind`]), for metrics.
        kind: &'static str,
        /// The error and its causes, for status.
        message: String,
    },
    /// No measurement was given for this check.
    #[error("not measured")]
    NotMeasured,
}

impl MeasureError {
    /// A bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            MeasureError::Empty => "empty",
            MeasureError::Several(_) => "several",
            MeasureError::NaN => "nan",
            MeasureError::Infinite => "infinite",
            MeasureError::Query { kind, .. } => kind,
            MeasureError::NotMeasured => "not_measured",
        }
    }
}

impl From<Shape> for MeasureError {
    fn from(shape: Shape) -> MeasureError {
        match shape {
            Shape::Empty => MeasureError::Empty,
            Shape::Several(n) => MeasureError::Several(n),
            Shape::NaN => MeasureError::NaN,
        }
    }
}

/// A stored measurement as a check's input: one finite number, or why not.
pub fn input(m: &crate::measure::Measured) -> Result<f64, MeasureError> {
    use crate::measure::Measured;
    match m {
        Measured::Value(v) if v.is_infinite() => Err(MeasureError::Infinite),
        Measured::Value(v) => Ok(*v),
        Measured::NotANumber(shape) => Err(MeasureError::from(*shape)),
        Measured::Failed { kind, message, .. } => Err(MeasureError::Query { kind, message: message.clone() }),
    }
}

/// Which way a count moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// More instances.
    Up,
    /// Fewer instances.
    Down,
    /// No change.
    Unchanged,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Up => "up",
            Direction::Down => "down",
            Direction::Unchanged => "none",
        })
    }
}

/// What one check asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CheckAction {
    /// A higher count.
    Up,
    /// A lower count.
    Down,
    /// The current count.
    Unchanged,
    /// No value, `onError: Hold`: no scale down this evaluation.
    Hold,
    /// No value, `onError: Ignore`: left out.
    Ignored,
}

impl fmt::Display for CheckAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckAction::Up => "up",
            CheckAction::Down => "down",
            CheckAction::Unchanged => "none",
            CheckAction::Hold => "hold",
            CheckAction::Ignored => "ignored",
        })
    }
}

/// One check's part in a decision, for status (`checks: [{name, value, desiredCount, action, error}]`).
#[derive(Clone, Debug, PartialEq)]
pub struct CheckResult {
    /// The check's name.
    pub name: String,
    /// The measured value, when there is one.
    pub value: Option<f64>,
    /// The count this check asked for, when it had a value.
    pub desired_count: Option<i64>,
    /// What it asked for.
    pub action: CheckAction,
    /// Why there is no value.
    pub error: Option<MeasureError>,
    /// For a person: `cpu 83 > target 70`.
    pub reason: String,
}

/// Why a scale the checks asked for is not made now. The caller records it in status (`deferredReason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deferred {
    /// A deployment is running: scaling now would fight it (nomad#14669).
    ActiveDeployment,
    /// The last scale was too recent.
    Cooldown {
        /// When the cooldown ends.
        until: SystemTime,
    },
    /// A scale down the stabilization window does not agree with yet.
    Stabilization {
        /// The window.
        window: Duration,
        /// The highest recommendation in it (≥ the current count).
        highest: i64,
    },
    /// `dryRun`: decided and reported only.
    DryRun,
}

impl fmt::Display for Deferred {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Deferred::ActiveDeployment => f.write_str("a deployment is active"),
            Deferred::Cooldown { until } => write!(f, "cooling down until {}", crate::status::timestamp(*until)),
            Deferred::Stabilization { window, highest } => write!(
                f,
                "stabilizing: a recommendation of {highest} in the last {}",
                crate::app::HumanDuration::new(*window)
            ),
            Deferred::DryRun => f.write_str("dry run"),
        }
    }
}

/// The result of one evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The count observed.
    pub current: i64,
    /// The count Drover wants after every limit (`maxStep`, `[min, max]`, stabilization); `current` when none.
    pub desired: i64,
    /// The count to scale to now; `None` when nothing is to be done (no change, or [`Decision::deferred`]).
    pub new_count: Option<i64>,
    /// From `current` to `desired`.
    pub direction: Direction,
    /// For a person and the scale request's message: `cpu 83 > target 70 (+2)`.
    pub reason: String,
    /// Every check, in the policy's order.
    pub checks: Vec<CheckResult>,
    /// Why `desired` is not applied now.
    pub deferred: Option<Deferred>,
    /// When the current cooldown ends, if one is running.
    pub cooldown_until: Option<SystemTime>,
    /// What to remember for later evaluations' stabilization window (see [`remember`]).
    pub recommendation: Recommendation,
}

/// Adds `rec` to `history` and drops what is older than `window` before `rec.at` (and anything from the future,
/// after a clock step back), so the history stays bounded by the number of evaluations in a window.
pub fn remember(history: &mut Vec<Recommendation>, rec: Recommendation, window: Duration) {
    history.retain(|r| r.at <= rec.at && within(r.at, rec.at, window));
    history.push(rec);
}

fn within(at: SystemTime, now: SystemTime, window: Duration) -> bool {
    now.duration_since(at).is_ok_and(|age| age <= window)
}

/// Where the evaluation stands once the checks are resolved and the limits applied. Derived, then matched.
#[derive(Debug)]
enum Situation {
    /// The count stays: nothing asked for a change, or the limits leave none.
    Steady,
    /// The checks ask for fewer, but a recent recommendation does not agree.
    Stabilizing { highest: i64 },
    /// A change is wanted while a deployment runs.
    Deploying,
    /// A change is wanted within the cooldown.
    CoolingDown { until: SystemTime },
    /// A change is wanted, and `dryRun` is set.
    DryRun,
    /// Scale now.
    Scale,
}

/// Decides one evaluation of `policy` at `now`.
///
/// ```text
///  measurements ─► each check's vote (strategies) ─► resolve (up > unchanged > down; groups; Hold vetoes down)
///    ─► recommendation ─► down? highest over stabilizationWindow ─► maxStep ─► clamp [min, max]
///    ─► Steady | Stabilizing | Deploying | CoolingDown | DryRun | Scale
/// ```
pub fn decide(policy: &Policy, inputs: &Inputs, now: SystemTime) -> Decision {
    let current = inputs.current;
    let checks: Vec<_> = policy
        .checks
        .iter()
        .map(|c| {
            let measured = inputs.measurements.get(&c.name).cloned().unwrap_or(Err(MeasureError::NotMeasured));
            evaluate(c, current, measured)
        })
        .collect();
    let Resolved { winner, held_by } = resolve(&policy.checks, &checks);
    let won = winner.map(|i| &checks[i]);
    let asked = won.and_then(|c| c.desired_count).unwrap_or(current);
    let (raw, mut why) = match (won, held_by) {
        (Some(c), Some(h)) if asked < current => (current, format!("{}; {}", c.reason, checks[h].reason)),
        (Some(c), _) => (asked, c.reason.clone()),
        (None, Some(h)) => (current, checks[h].reason.clone()),
        (None, None) => (current, "no check could be measured".to_owned()),
    };
    let recommendation = Recommendation { at: now, count: raw };

    // Scale down only as far as every recommendation in the window agrees (Kubernetes' HPA: the highest one).
    let stabilized = if raw < current {
        inputs
            .recommendations
            .iter()
            .filter(|r| r.at <= now && within(r.at, now, policy.stabilization_window))
            .map(|r| r.count)
            .fold(raw, i64::max)
    } else {
        raw
    };
    if raw < stabilized && stabilized < current {
        why.push_str(&format!("; stabilized at {stabilized}"));
    }
    let stepped = match stabilized.cmp(&current) {
        std::cmp::Ordering::Greater => step(current, stabilized, policy.scale_up_max_step, &mut why),
        std::cmp::Ordering::Less => step(current, stabilized, policy.scale_down_max_step, &mut why),
        std::cmp::Ordering::Equal => current,
    };
    // `max(min).min(max)`, not `clamp`: total even for a `Policy` built by hand with `min > max` (`max` wins).
    let desired = stepped.max(policy.min).min(policy.max);
    if desired != stepped {
        let bound = if desired == policy.max { "max" } else { "min" };
        why.push_str(&format!("; {bound} {desired}"));
    }
    let direction = match desired.cmp(&current) {
        std::cmp::Ordering::Greater => Direction::Up,
        std::cmp::Ordering::Less => Direction::Down,
        std::cmp::Ordering::Equal => Direction::Unchanged,
    };
    if direction != Direction::Unchanged {
        why.push_str(&format!(" ({:+})", desired - current));
    }

    let cooldown_until = inputs.last_scale.and_then(|last| {
        let length = if last.direction == Direction::Up { policy.cooldown_up } else { policy.cooldown };
        last.at.checked_add(length).filter(|until| now < *until)
    });
    let situation = match (direction, cooldown_until) {
        (Direction::Unchanged, _) if raw < current && stabilized >= current => {
            Situation::Stabilizing { highest: stabilized }
        }
        (Direction::Unchanged, _) => Situation::Steady,
        _ if inputs.deployment_active => Situation::Deploying,
        (_, Some(until)) => Situation::CoolingDown { until },
        _ if policy.dry_run => Situation::DryRun,
        _ => Situation::Scale,
    };
    let (new_count, deferred) = match situation {
        // Nothing to do: the checks agree with the count, or its limits already hold it.
        Situation::Steady => (None, None),
        // A dip shorter than the window: wait until every recommendation in it is below the count.
        Situation::Stabilizing { highest } => {
            (None, Some(Deferred::Stabilization { window: policy.stabilization_window, highest }))
        }
        // Never during a deployment: scaling would change the job under Nomad's rollout (nomad#14669); the next
        // evaluation after it ends decides again from fresh measurements.
        Situation::Deploying => (None, Some(Deferred::ActiveDeployment)),
        // The last scale's effect may not show in the metrics yet.
        Situation::CoolingDown { until } => (None, Some(Deferred::Cooldown { until })),
        // Reported in status only.
        Situation::DryRun => (None, Some(Deferred::DryRun)),
        // Every gate is open.
        Situation::Scale => (Some(desired), None),
    };
    Decision { current, desired, new_count, direction, reason: why, checks, deferred, cooldown_until, recommendation }
}

/// `target` limited to `max_step` away from `current`, noting the limit in `why`.
fn step(current: i64, target: i64, max_step: Option<i64>, why: &mut String) -> i64 {
    let Some(max_step) = max_step else { return target };
    let max_step = max_step.max(0);
    let limited = target.max(current.saturating_sub(max_step)).min(current.saturating_add(max_step));
    if limited != target {
        why.push_str(&format!("; maxStep {max_step}"));
    }
    limited
}
