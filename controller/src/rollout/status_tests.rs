//! Status size: the analysis runs stay within their byte budget whatever the measurements hold.

use super::*;
use crate::rollout::judge::{MAX_QUERY_CHARS, MAX_REASON_CHARS, MAX_VALUES};

/// The largest measurement the judge's caps let through: a vector of the most values with long decimal forms, the
/// same for the baseline, and the longest query and reason, in 4-byte characters.
fn worst_measurement(i: usize) -> MeasurementRecord {
    let values: Vec<serde_json::Value> =
        (0..MAX_VALUES).map(|v| serde_json::json!(-1.234_567_890_123_456_7e-300 * (v + i) as f64)).collect();
    MeasurementRecord {
        value: Some(serde_json::Value::Array(values.clone())),
        baseline: Some(serde_json::Value::Array(values)),
        phase: MeasurementPhase::Error,
        at: "2026-12-07T12:00:00.123456789Z".into(),
        query: "\u{1D11E}".repeat(MAX_QUERY_CHARS),
        error: Some("\u{1D11E}".repeat(MAX_REASON_CHARS)),
    }
}

fn run(step: u32, phase: AnalysisPhase, measurements: Vec<MeasurementRecord>) -> AnalysisRunStatus {
    AnalysisRunStatus {
        id: RunId { generation: 7, step: StepRef::Step(step), template: format!("t{step}") },
        phase,
        started_at: "2026-12-07T12:00:00Z".into(),
        successful: 3,
        failed: 2,
        inconclusive: 1,
        errors: 40,
        consecutive_errors: 4,
        measurements,
        message: "\u{1D11E}".repeat(MAX_REASON_CHARS),
        dry_run: false,
    }
}

fn size(runs: &Vec<AnalysisRunStatus>) -> usize {
    serde_json::to_vec(runs).expect("runs encode").len()
}

#[test]
fn fit_runs_should_keep_the_worst_runs_within_budget_and_every_running_run_and_counter() {
    // 16 runs (the most a status keeps), 10 of them still running (a step of 10 templates), each with 10 measurements.
    let mut runs: Vec<AnalysisRunStatus> = (0..16)
        .map(|i| {
            let phase = if i < 6 { AnalysisPhase::Failed } else { AnalysisPhase::Running };
            run(i, phase, (0..MAX_MEASUREMENTS).map(|m| worst_measurement(m + i as usize)).collect())
        })
        .collect();
    let before = size(&runs);
    assert!(before > 8 * RUNS_BYTE_BUDGET, "the worst case is far over budget before fitting: {before} bytes");
    fit_runs(&mut runs);
    let after = size(&runs);
    assert!(after <= RUNS_BYTE_BUDGET, "{after} bytes > {RUNS_BYTE_BUDGET}");
    let running = runs.iter().filter(|r| r.phase == AnalysisPhase::Running).count();
    assert_eq!(running, 10, "a running run is never dropped");
    assert_eq!(runs.len(), 16, "no finished run dropped either: cutting the strings was enough");
    for r in &runs {
        assert_eq!((r.successful, r.failed, r.inconclusive, r.errors, r.consecutive_errors), (3, 2, 1, 40, 4));
        let newest = r.measurements.last().expect("each run keeps its newest measurement");
        assert!(!newest.query.is_empty(), "the newest measurement keeps (the start of) its resolved query");
        assert!(newest.query.len() <= LAST_RESORT_CUT, "cut: {} bytes", newest.query.len());
    }
}

#[test]
fn fit_runs_should_give_up_old_queries_first_and_leave_runs_under_budget_alone() {
    let small = vec![run(0, AnalysisPhase::Running, vec![worst_measurement(0), worst_measurement(1)])];
    let mut untouched = small.clone();
    fit_runs(&mut untouched);
    assert_eq!(untouched, small, "runs within budget are left as they are");

    // Just over budget: dropping the older measurements' queries is enough; every measurement stays.
    let mut runs: Vec<AnalysisRunStatus> = (0..4)
        .map(|i| run(i, AnalysisPhase::Running, (0..MAX_MEASUREMENTS).map(worst_measurement).collect()))
        .collect();
    for r in &mut runs {
        for m in &mut r.measurements {
            m.error = None;
            m.baseline = None;
        }
    }
    assert!(size(&runs) > RUNS_BYTE_BUDGET, "{}", size(&runs));
    fit_runs(&mut runs);
    assert!(size(&runs) <= RUNS_BYTE_BUDGET);
    for r in &runs {
        assert_eq!(r.measurements.len(), MAX_MEASUREMENTS, "no measurement dropped when the queries were enough");
        let (newest, older) = r.measurements.split_last().expect("measurements");
        assert_eq!(newest.query.chars().count(), MAX_QUERY_CHARS, "the newest keeps its whole query");
        assert!(older.iter().all(|m| m.query.is_empty()));
    }
}

#[test]
fn cut_should_stop_on_a_character_boundary() {
    let mut s = "a\u{1D11E}b".to_string();
    cut(&mut s, 3);
    assert_eq!(s, "a");
    let mut s = "abc".to_string();
    cut(&mut s, 5);
    assert_eq!(s, "abc");
}
