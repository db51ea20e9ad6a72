//! The judge (plan contract 1): pure functions from a measurement to its verdict, and from a run's measurements to
//! the run's phase. The analysis stage takes measurements (I/O) and folds them in with [`record`]; `decide` only
//! reads the resulting runs.
//!
//! One measurement ([`classify`]):
//! ```text
//!  Outcome::Error ─────────────────────────────────────────────► Error (retried; not a failure)
//!  Taken: result empty ──► onEmpty ─┐        baseline needed but absent ──► Error
//!         result has NaN ─► onNaN ──┼─► Successful | Failed | Inconclusive
//!         else: failureCondition holds ─► Failed
//!               successCondition holds (or absent) ─► Successful
//!               neither, both given ─► Inconclusive;  successCondition alone fails ─► Failed
//!         a condition that cannot be evaluated on the values ─► Error
//! ```
//! A run ([`record`]): `Failed` when failed > failureLimit or consecutive errors ≥ consecutiveErrorLimit;
//! `Inconclusive` when inconclusive > inconclusiveLimit; `Successful` when `count` measurements were taken (errors
//! are not taken) without either. A `dryRun` run still says what happened, with `dry_run` set: the engine treats it
//! as passed.

use serde_json::Value;

use crate::app::{OnEmpty, truncate};

pub use super::compiled::{CompiledTemplate, Provider};
use super::status::{AnalysisPhase, AnalysisRunStatus, MAX_MEASUREMENTS, MeasurementPhase, MeasurementRecord};
pub use crate::expr::Sample;
use crate::expr::{Condition, Env};

/// What one attempt to measure gave.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The query answered; `baseline` is the stable version's answer when the template needs one (and it was
    /// taken).
    Taken {
        /// The canary's value.
        result: Sample,
        /// The stable version's value.
        baseline: Option<Sample>,
    },
    /// The measurement could not be taken (unreachable, timeout, a bad answer); the message says why.
    Error(String),
}

impl Sample {
    /// The value as status JSON: numbers, with NaN and infinities as Prometheus spells them (`"NaN"`, `"+Inf"`,
    /// `"-Inf"`), since JSON has no such numbers.
    pub fn to_json(&self) -> Value {
        fn one(x: f64) -> Value {
            if x.is_nan() {
                Value::from("NaN")
            } else if x == f64::INFINITY {
                Value::from("+Inf")
            } else if x == f64::NEG_INFINITY {
                Value::from("-Inf")
            } else {
                Value::from(x)
            }
        }
        match self {
            Sample::Scalar(x) => one(*x),
            Sample::Vector(v) => Value::Array(v.iter().copied().map(one).collect()),
        }
    }
}

/// How `o` is judged by `t`, and why (for every phase but a plain success with no condition to quote).
pub fn classify(t: &CompiledTemplate, o: &Outcome) -> (MeasurementPhase, Option<String>) {
    let (result, baseline) = match o {
        Outcome::Error(message) => return (MeasurementPhase::Error, Some(message.clone())),
        Outcome::Taken { result, baseline } => (result, baseline.as_ref()),
    };
    if let Some(verdict) = policy(result, "result", t) {
        return verdict;
    }
    if t.needs_baseline() {
        let Some(b) = baseline else {
            return (MeasurementPhase::Error, Some("the baseline (stable version) was not measured".to_owned()));
        };
        if let Some(verdict) = policy(b, "baseline", t) {
            return verdict;
        }
    }
    let env = Env { result, baseline };
    let values = describe(result, baseline.filter(|_| t.needs_baseline()));
    let eval = |c: &Condition| c.eval(&env).map_err(|e| format!("condition \"{c}\" could not be evaluated: {e}"));
    match t.failure.as_ref().map(eval).transpose() {
        Err(message) => return (MeasurementPhase::Error, Some(format!("{message} ({values})"))),
        Ok(Some(true)) => {
            let c = t.failure.as_ref().map(Condition::source).unwrap_or_default();
            return (MeasurementPhase::Failed, Some(format!("failureCondition \"{c}\" held: {values}")));
        }
        Ok(Some(false) | None) => {}
    }
    match (t.success.as_ref().map(eval).transpose(), &t.failure) {
        (Err(message), _) => (MeasurementPhase::Error, Some(format!("{message} ({values})"))),
        (Ok(Some(true)), _) => {
            let c = t.success.as_ref().map(Condition::source).unwrap_or_default();
            (MeasurementPhase::Successful, Some(format!("successCondition \"{c}\" held: {values}")))
        }
        (Ok(None), Some(f)) => {
            (MeasurementPhase::Successful, Some(format!("failureCondition \"{f}\" did not hold: {values}")))
        }
        (Ok(Some(false)), Some(f)) => {
            let c = t.success.as_ref().map(Condition::source).unwrap_or_default();
            (MeasurementPhase::Inconclusive, Some(format!("neither \"{c}\" nor \"{f}\" held: {values}")))
        }
        (Ok(Some(false)), None) => {
            let c = t.success.as_ref().map(Condition::source).unwrap_or_default();
            (MeasurementPhase::Failed, Some(format!("successCondition \"{c}\" did not hold: {values}")))
        }
        // CompiledTemplate::new refuses a template without conditions.
        (Ok(None), None) => (MeasurementPhase::Successful, None),
    }
}

/// The `onEmpty` / `onNaN` verdict for a value that conditions must not see, if it is one.
fn policy(s: &Sample, name: &str, t: &CompiledTemplate) -> Option<(MeasurementPhase, Option<String>)> {
    let (rule, field, what) = if s.is_empty() {
        (t.on_empty, "onEmpty", "empty (no series)")
    } else if s.has_nan() {
        (t.on_nan, "onNaN", "NaN")
    } else {
        return None;
    };
    let phase = match rule {
        OnEmpty::Inconclusive => MeasurementPhase::Inconclusive,
        OnEmpty::Fail => MeasurementPhase::Failed,
        OnEmpty::Pass => MeasurementPhase::Successful,
    };
    Some((phase, Some(format!("{name} = {s} is {what}: {field} {rule:?}"))))
}

fn describe(result: &Sample, baseline: Option<&Sample>) -> String {
    match baseline {
        Some(b) => format!("result = {result}, baseline = {b}"),
        None => format!("result = {result}"),
    }
}

/// The longest resolved query kept in a measurement, in characters.
pub const MAX_QUERY_CHARS: usize = 1024;
/// The longest reason kept in a measurement, in characters.
pub const MAX_REASON_CHARS: usize = 512;
/// The most values of a vector kept in a measurement (the first ones); conditions saw them all.
pub const MAX_VALUES: usize = 20;

/// A measurement as status keeps it: judged by `t`, with the resolved `query` and the time `at` (RFC 3339).
/// The reason for anything but a success is kept in `error` (the field says why a measurement did not pass).
/// Bounded: the query, the reason and a vector's values are cut ([`MAX_QUERY_CHARS`], [`MAX_REASON_CHARS`],
/// [`MAX_VALUES`]), so a run's ten measurements stay small whatever a query returns.
pub fn measurement(t: &CompiledTemplate, o: &Outcome, at: String, query: String) -> MeasurementRecord {
    let (phase, message) = classify(t, o);
    let cap = |s: &Sample| match s {
        Sample::Vector(v) if v.len() > MAX_VALUES => Sample::Vector(v[..MAX_VALUES].to_vec()).to_json(),
        other => other.to_json(),
    };
    let (value, baseline) = match o {
        Outcome::Taken { result, baseline } => (Some(cap(result)), baseline.as_ref().map(cap)),
        Outcome::Error(_) => (None, None),
    };
    let error = message.filter(|_| phase != MeasurementPhase::Successful).map(|m| truncate(m, MAX_REASON_CHARS));
    MeasurementRecord { value, baseline, phase, at, query: truncate(query, MAX_QUERY_CHARS), error }
}

/// Folds measurement `m` into `run`: counts it, keeps the newest [`MAX_MEASUREMENTS`], and ends the run when a limit
/// or `count` is reached. A run that has ended is left as it is (a late measurement changes nothing).
pub fn record(run: &mut AnalysisRunStatus, t: &CompiledTemplate, m: MeasurementRecord) {
    if run.phase.is_terminal() {
        return;
    }
    run.dry_run = t.dry_run;
    match m.phase {
        MeasurementPhase::Successful => run.successful += 1,
        MeasurementPhase::Failed => run.failed += 1,
        MeasurementPhase::Inconclusive => run.inconclusive += 1,
        MeasurementPhase::Error => run.errors += 1,
    }
    if m.phase == MeasurementPhase::Error {
        run.consecutive_errors += 1;
    } else {
        run.consecutive_errors = 0;
    }
    let last = last_words(&m);
    run.measurements.push(m);
    if run.measurements.len() > MAX_MEASUREMENTS {
        let extra = run.measurements.len() - MAX_MEASUREMENTS;
        run.measurements.drain(..extra);
    }
    let name = &run.id.template;
    let taken = run.successful + run.failed + run.inconclusive;
    let (phase, message) = if run.failed > t.schedule.failure_limit {
        (
            AnalysisPhase::Failed,
            format!(
                "\"{name}\" failed: {} of {taken} measurements failed (failureLimit {}); last: {last}",
                run.failed, t.schedule.failure_limit
            ),
        )
    } else if run.consecutive_errors >= t.schedule.consecutive_error_limit {
        (
            AnalysisPhase::Failed,
            format!(
                "\"{name}\" failed: {} measurements in a row could not be taken (consecutiveErrorLimit {}), so \
                 nothing was measured; last: {last}",
                run.consecutive_errors, t.schedule.consecutive_error_limit
            ),
        )
    } else if run.inconclusive > t.schedule.inconclusive_limit {
        (
            AnalysisPhase::Inconclusive,
            format!(
                "\"{name}\" inconclusive: {} of {taken} measurements inconclusive (inconclusiveLimit {}); last: {last}",
                run.inconclusive, t.schedule.inconclusive_limit
            ),
        )
    } else if taken >= t.schedule.count {
        (
            AnalysisPhase::Successful,
            format!("\"{name}\" passed: {} of {taken} measurements passed; last: {last}", run.successful),
        )
    } else {
        return;
    };
    run.phase = phase;
    run.message = if t.dry_run { format!("dry run, not decisive: {message}") } else { message };
}

/// A measurement in a few words for a run's message: its reason, and the query it ran.
fn last_words(m: &MeasurementRecord) -> String {
    let why = match (&m.error, &m.value) {
        (Some(reason), _) => reason.clone(),
        (None, Some(v)) => format!("result = {v}"),
        (None, None) => "no value".to_owned(),
    };
    format!("{why} (query: {})", m.query)
}

#[cfg(test)]
#[path = "judge_tests.rs"]
mod tests;
