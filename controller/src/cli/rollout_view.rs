//! How `drover get` and `drover describe` show a progressive rollout (`status.rollout`): the step `n/m`, why it
//! waits, and each analysis run with its last values; and the last control Drover consumed.

use std::fmt::Write as _;

use super::control::position;
use crate::rollout::status::{AnalysisRunStatus, MeasurementRecord};
use crate::rollout::{ConsumedControl, RolloutStatus, StepRef};
use crate::status::AppStatus;

/// How many of a run's newest measurements `describe` prints.
const SHOWN_MEASUREMENTS: usize = 3;

/// The `STEP` cell of `drover get`: `2/4`, `place`, `pre`, `promo`, `bake`, `done`, or `-` without a rollout.
pub fn step_cell(status: Option<&AppStatus>) -> String {
    let Some(r) = status.and_then(|s| s.rollout.as_ref()) else { return "-".to_string() };
    match r.step {
        StepRef::Placing => "place".to_string(),
        StepRef::Step(n) => format!("{}/{}", n + 1, r.step_count.max(n + 1)),
        StepRef::PrePromotion => "pre".to_string(),
        StepRef::Promoting => "promo".to_string(),
        StepRef::Bake => "bake".to_string(),
        StepRef::Done => "done".to_string(),
    }
}

/// The message of `drover get` for an app whose rollout waits for a person: `ManualGate at Step 3/3 (manual gate)`.
pub fn paused_message(status: Option<&AppStatus>) -> Option<String> {
    let r = status?.rollout.as_ref().filter(|r| r.result.is_none())?;
    let reason = r.paused_reason?;
    Some(format!("{reason:?} at {}", position(r, &[])))
}

fn value_text(value: Option<&serde_json::Value>) -> String {
    match value {
        None => "-".to_string(),
        Some(v) => {
            let text = v.to_string();
            if text.chars().count() > 40 { format!("{}…", text.chars().take(39).collect::<String>()) } else { text }
        }
    }
}

fn measurement_line(m: &MeasurementRecord) -> String {
    let mut line = format!("{} {:?} = {}", m.at, m.phase, value_text(m.value.as_ref()));
    if m.baseline.is_some() {
        let _ = write!(line, " (baseline {})", value_text(m.baseline.as_ref()));
    }
    if let Some(err) = &m.error {
        let _ = write!(line, ": {err}");
    }
    line
}

fn run_text(out: &mut String, run: &AnalysisRunStatus) {
    let dry = if run.dry_run { " (dry run)" } else { "" };
    let _ = writeln!(
        out,
        "  {} {:<20} {:<12} {} ok, {} failed, {} inconclusive, {} errors{dry}",
        run.id.step,
        run.id.template,
        format!("{:?}", run.phase),
        run.successful,
        run.failed,
        run.inconclusive,
        run.errors,
    );
    let shown = run.measurements.iter().rev().take(SHOWN_MEASUREMENTS).collect::<Vec<_>>();
    if let Some(newest) = shown.first() {
        let _ = writeln!(out, "      query: {}", newest.query);
    }
    for m in shown.iter().rev() {
        let _ = writeln!(out, "      {}", measurement_line(m));
    }
    if !run.message.is_empty() {
        let _ = writeln!(out, "      {}", run.message);
    }
}

/// The rollout section of `drover describe`.
pub fn rollout_text(r: &RolloutStatus) -> String {
    let mut out = String::new();
    let line = |out: &mut String, label: &str, value: String| {
        let _ = writeln!(out, "{label:<14}{value}");
    };
    line(&mut out, "Rollout:", format!("{:?} of generation {}, {}", r.strategy, r.generation, position(r, &[])));
    let version = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    line(
        &mut out,
        "  Versions:",
        format!("canary {}, stable {}", version(r.canary_version), version(r.stable_version)),
    );
    if let Some(reason) = r.paused_reason {
        line(&mut out, "  Paused:", format!("{reason:?}"));
    }
    if let Some(result) = r.result {
        line(&mut out, "  Result:", format!("{result:?}"));
    }
    let when = |t: &Option<String>| t.clone().unwrap_or_else(|| "-".to_string());
    line(&mut out, "  Started:", when(&r.started_at));
    line(&mut out, "  Step since:", when(&r.step_started_at));
    line(&mut out, "  Deadline:", when(&r.deadline));
    if let Some(d) = &r.deployment_id {
        line(&mut out, "  Deployment:", d.clone());
    }
    if !r.analysis_runs.is_empty() {
        out.push_str("Analysis runs:\n");
        for run in &r.analysis_runs {
            run_text(&mut out, run);
        }
    }
    out
}

/// The `Last control:` line of `drover describe`.
pub fn control_text(c: &ConsumedControl) -> String {
    let verdict = if c.applied { "applied" } else { "ignored" };
    format!(
        "{:<14}{} for generation {} {verdict} at {}: {}\n",
        "Last control:",
        c.action.as_str(),
        c.generation,
        c.at,
        c.message
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::StrategyType;
    use crate::rollout::status::{AnalysisPhase, MeasurementPhase, PausedReason};
    use crate::rollout::{ControlAction, RunId};
    use crate::status::Phase;

    fn measurement(value: f64, at: &str) -> MeasurementRecord {
        MeasurementRecord {
            value: Some(serde_json::json!(value)),
            baseline: None,
            phase: MeasurementPhase::Successful,
            at: at.into(),
            query: "sum(rate(errors{version=\"5\"}[1m]))".into(),
            error: None,
        }
    }

    fn rollout() -> RolloutStatus {
        let mut run = AnalysisRunStatus {
            id: RunId { generation: 40, step: StepRef::Step(1), template: "error-rate".into() },
            phase: AnalysisPhase::Running,
            started_at: "2026-12-07T06:00:00Z".into(),
            successful: 4,
            failed: 0,
            inconclusive: 0,
            errors: 1,
            consecutive_errors: 0,
            measurements: (0..5).map(|i| measurement(0.01 * f64::from(i), &format!("t{i}"))).collect(),
            message: String::new(),
            dry_run: false,
        };
        run.measurements.push(MeasurementRecord {
            value: None,
            phase: MeasurementPhase::Error,
            error: Some("connection refused".into()),
            ..measurement(0.0, "t5")
        });
        RolloutStatus {
            strategy: StrategyType::Canary,
            generation: 40,
            step: StepRef::Step(1),
            step_count: 4,
            step_name: "analysis error-rate".into(),
            paused_reason: Some(PausedReason::AnalysisInconclusive),
            canary_version: Some(5),
            stable_version: Some(4),
            analysis_runs: vec![run],
            ..RolloutStatus::default()
        }
    }

    #[test]
    fn get_should_show_the_step_and_why_it_waits() {
        let status = AppStatus { phase: Phase::Paused, rollout: Some(rollout()), ..AppStatus::default() };
        assert_eq!(step_cell(Some(&status)), "2/4");
        assert_eq!(
            paused_message(Some(&status)).as_deref(),
            Some("AnalysisInconclusive at Step 2/4 (analysis error-rate)")
        );
        assert_eq!(step_cell(Some(&AppStatus::default())), "-");
        assert_eq!(paused_message(Some(&AppStatus::default())), None);
    }

    #[test]
    fn describe_should_show_each_run_with_its_last_values() {
        let text = rollout_text(&rollout());
        assert!(text.contains("Canary of generation 40, Step 2/4 (analysis error-rate)"), "{text}");
        assert!(text.contains("canary 5, stable 4"), "{text}");
        assert!(text.contains("Step 2 error-rate"), "{text}");
        assert!(text.contains("4 ok, 0 failed, 0 inconclusive, 1 errors"), "{text}");
        assert!(text.contains("query: sum(rate(errors{version=\"5\"}[1m]))"), "{text}");
        assert!(text.contains("t3 Successful = 0.03"), "{text}");
        assert!(text.contains("t5 Error = -: connection refused"), "{text}");
        assert!(!text.contains("t2 "), "only the newest {SHOWN_MEASUREMENTS} are printed: {text}");
    }

    #[test]
    fn describe_should_say_whether_the_last_control_was_applied() {
        let c = ConsumedControl {
            modify_index: 90,
            action: ControlAction::Promote,
            generation: 39,
            applied: false,
            message: "stale: the record is at generation 40".into(),
            at: "2026-12-07T06:01:00Z".into(),
        };
        assert_eq!(
            control_text(&c),
            "Last control: promote for generation 39 ignored at 2026-12-07T06:01:00Z: stale: the record is at generation 40\n"
        );
    }
}
