use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::app::{AnalysisTemplate, PrometheusQuery};
use crate::rollout::status::{RunId, StepRef};

fn template(success: Option<&str>, failure: Option<&str>) -> AnalysisTemplate {
    AnalysisTemplate {
        prometheus: Some(PrometheusQuery {
            address: "http://prometheus:9090".into(),
            query: "sum(rate(errors[1m]))".into(),
            timeout: None,
            headers: BTreeMap::new(),
        }),
        success_condition: success.map(str::to_owned),
        failure_condition: failure.map(str::to_owned),
        ..AnalysisTemplate::default()
    }
}

fn compile(t: &AnalysisTemplate) -> CompiledTemplate {
    CompiledTemplate::new(t).expect("a valid template")
}

fn taken(x: f64) -> Outcome {
    Outcome::Taken { result: Sample::Scalar(x), baseline: None }
}

fn run() -> AnalysisRunStatus {
    AnalysisRunStatus {
        id: RunId { generation: 3, step: StepRef::Step(1), template: "error-rate".into() },
        phase: AnalysisPhase::Running,
        started_at: "2026-12-07T06:00:00Z".into(),
        successful: 0,
        failed: 0,
        inconclusive: 0,
        errors: 0,
        consecutive_errors: 0,
        measurements: Vec::new(),
        message: String::new(),
        dry_run: false,
    }
}

fn feed(t: &CompiledTemplate, outcomes: &[Outcome]) -> AnalysisRunStatus {
    let mut r = run();
    for (i, o) in outcomes.iter().enumerate() {
        record(&mut r, t, measurement(t, o, format!("2026-12-07T06:00:{i:02}Z"), "q".into()));
    }
    r
}

#[test]
fn classify_should_check_the_failure_condition_first() {
    let t = compile(&template(Some("result < 0.01"), Some("result > 0.05")));
    let (phase, why) = classify(&t, &taken(0.31));
    assert_eq!(phase, MeasurementPhase::Failed);
    assert_eq!(why.as_deref(), Some("failureCondition \"result > 0.05\" held: result = 0.31"));
    assert_eq!(classify(&t, &taken(0.001)).0, MeasurementPhase::Successful);
    let (phase, why) = classify(&t, &taken(0.03));
    assert_eq!(phase, MeasurementPhase::Inconclusive);
    assert!(why.is_some_and(|w| w.contains("neither")));
}

#[test]
fn classify_should_fail_a_missed_success_condition_when_it_is_the_only_one() {
    let t = compile(&template(Some("result < 0.01"), None));
    assert_eq!(classify(&t, &taken(0.005)).0, MeasurementPhase::Successful);
    let (phase, why) = classify(&t, &taken(0.02));
    assert_eq!(phase, MeasurementPhase::Failed);
    assert_eq!(why.as_deref(), Some("successCondition \"result < 0.01\" did not hold: result = 0.02"));
    // Only a failure condition: anything it does not catch passes.
    let t = compile(&template(None, Some("result > 0.05")));
    assert_eq!(classify(&t, &taken(0.02)).0, MeasurementPhase::Successful);
    assert_eq!(classify(&t, &taken(0.06)).0, MeasurementPhase::Failed);
}

#[test]
fn classify_should_apply_the_empty_and_nan_policies_before_any_condition() {
    use crate::app::OnEmpty;
    let mut raw = template(Some("result < 0.01"), None);
    let empty = Outcome::Taken { result: Sample::Vector(Vec::new()), baseline: None };
    let nan = taken(f64::NAN);
    let nan_in_vector = Outcome::Taken { result: Sample::Vector(vec![0.0, f64::NAN]), baseline: None };
    // Defaults: Inconclusive.
    let t = compile(&raw);
    assert_eq!(classify(&t, &empty).0, MeasurementPhase::Inconclusive);
    assert_eq!(classify(&t, &nan).0, MeasurementPhase::Inconclusive);
    assert_eq!(classify(&t, &nan_in_vector).0, MeasurementPhase::Inconclusive);
    raw.on_empty = Some(OnEmpty::Fail);
    raw.on_nan = Some(OnEmpty::Pass);
    let t = compile(&raw);
    let (phase, why) = classify(&t, &empty);
    assert_eq!(phase, MeasurementPhase::Failed);
    assert_eq!(why.as_deref(), Some("result = [] is empty (no series): onEmpty Fail"));
    let (phase, why) = classify(&t, &nan);
    assert_eq!(phase, MeasurementPhase::Successful);
    assert_eq!(why.as_deref(), Some("result = NaN is NaN: onNaN Pass"));
}

#[test]
fn classify_should_compare_with_the_baseline_and_want_it_measured() {
    let t = compile(&template(None, Some("result > baseline * 1.5")));
    let with = |b: Option<Sample>| Outcome::Taken { result: Sample::Scalar(0.04), baseline: b };
    let (phase, why) = classify(&t, &with(Some(Sample::Scalar(0.02))));
    assert_eq!(phase, MeasurementPhase::Failed);
    assert_eq!(
        why.as_deref(),
        Some("failureCondition \"result > baseline * 1.5\" held: result = 0.04, baseline = 0.02")
    );
    assert_eq!(classify(&t, &with(Some(Sample::Scalar(0.03)))).0, MeasurementPhase::Successful);
    assert_eq!(classify(&t, &with(None)).0, MeasurementPhase::Error);
    // An empty baseline follows onEmpty like the result.
    assert_eq!(classify(&t, &with(Some(Sample::Vector(Vec::new())))).0, MeasurementPhase::Inconclusive);
}

#[test]
fn classify_should_make_errors_of_outcomes_and_conditions_that_cannot_be_evaluated() {
    let t = compile(&template(Some("result[2] < 1"), None));
    let (phase, why) = classify(&t, &Outcome::Taken { result: Sample::Vector(vec![0.5]), baseline: None });
    assert_eq!(phase, MeasurementPhase::Error);
    assert!(why.is_some_and(|w| w.contains("could not be evaluated") && w.contains("out of range")));
    let (phase, why) = classify(&t, &Outcome::Error("connection refused".into()));
    assert_eq!((phase, why.as_deref()), (MeasurementPhase::Error, Some("connection refused")));
}

#[test]
fn record_should_pass_a_run_after_count_measurements() {
    let mut raw = template(Some("result < 0.01"), None);
    raw.count = Some(3);
    let t = compile(&raw);
    let r = feed(&t, &[taken(0.001), taken(0.002)]);
    assert_eq!((r.phase, r.successful), (AnalysisPhase::Running, 2));
    let r = feed(&t, &[taken(0.001), taken(0.002), taken(0.003)]);
    assert_eq!(r.phase, AnalysisPhase::Successful);
    assert!(r.message.starts_with("\"error-rate\" passed: 3 of 3"), "{}", r.message);
    // Errors are not measurements taken: they do not count toward `count`.
    let err = Outcome::Error("timeout".into());
    let r = feed(&t, &[taken(0.001), err.clone(), taken(0.002), err, taken(0.003)]);
    assert_eq!((r.phase, r.errors, r.total()), (AnalysisPhase::Successful, 2, 5));
}

#[test]
fn record_should_fail_a_run_past_the_failure_limit_naming_query_and_values() {
    let mut raw = template(Some("result < 0.01"), Some("result > 0.05"));
    raw.count = Some(5);
    raw.failure_limit = Some(1);
    let t = compile(&raw);
    let r = feed(&t, &[taken(0.31)]);
    assert_eq!(r.phase, AnalysisPhase::Running, "one failure is within failureLimit 1");
    let r = feed(&t, &[taken(0.31), taken(0.001), taken(0.4)]);
    assert_eq!(r.phase, AnalysisPhase::Failed);
    assert_eq!(
        r.message,
        "\"error-rate\" failed: 2 of 3 measurements failed (failureLimit 1); last: failureCondition \"result > 0.05\" \
         held: result = 0.4 (query: q)"
    );
}

#[test]
fn record_should_fail_only_after_consecutive_errors_reach_the_limit() {
    let mut raw = template(Some("result < 0.01"), None);
    raw.consecutive_error_limit = Some(3);
    raw.count = Some(10);
    let t = compile(&raw);
    let err = || Outcome::Error("Prometheus unreachable: connection refused".into());
    // Two errors, a measurement (resets the streak), two errors: still running.
    let r = feed(&t, &[err(), err(), taken(0.001), err(), err()]);
    assert_eq!((r.phase, r.consecutive_errors, r.errors), (AnalysisPhase::Running, 2, 4));
    let r = feed(&t, &[err(), err(), err()]);
    assert_eq!(r.phase, AnalysisPhase::Failed);
    assert!(
        r.message.contains("3 measurements in a row could not be taken (consecutiveErrorLimit 3)"),
        "{}",
        r.message
    );
    assert!(r.message.contains("Prometheus unreachable"), "{}", r.message);
    assert_eq!(r.failed, 0, "errors are not failures");
}

#[test]
fn record_should_make_a_run_inconclusive_past_the_inconclusive_limit() {
    let mut raw = template(Some("result < 0.01"), Some("result > 0.05"));
    raw.count = Some(5);
    let t = compile(&raw);
    let r = feed(&t, &[taken(0.02)]);
    assert_eq!(r.phase, AnalysisPhase::Inconclusive);
    assert!(r.message.contains("1 of 1 measurements inconclusive (inconclusiveLimit 0)"), "{}", r.message);
}

#[test]
fn record_should_mark_dry_runs_and_still_say_what_happened() {
    let mut raw = template(Some("result < 0.01"), None);
    raw.dry_run = true;
    let t = compile(&raw);
    let r = feed(&t, &[taken(0.5)]);
    assert_eq!((r.phase, r.dry_run), (AnalysisPhase::Failed, true));
    assert!(r.message.starts_with("dry run, not decisive: "), "{}", r.message);
}

#[test]
fn record_should_ignore_measurements_after_the_run_ended() {
    let t = compile(&template(Some("result < 0.01"), None));
    let mut r = feed(&t, &[taken(0.5)]);
    let before = r.clone();
    record(&mut r, &t, measurement(&t, &taken(0.001), "later".into(), "q".into()));
    assert_eq!(r, before);
}

#[test]
fn record_should_keep_only_the_newest_measurements_and_every_count() {
    let mut raw = template(Some("result < 0.01"), None);
    raw.count = Some(100);
    raw.consecutive_error_limit = Some(1000);
    let t = compile(&raw);
    let outcomes: Vec<Outcome> =
        (0..25).map(|i| if i % 2 == 0 { taken(0.001) } else { Outcome::Error("e".into()) }).collect();
    let r = feed(&t, &outcomes);
    assert_eq!(r.measurements.len(), MAX_MEASUREMENTS);
    assert_eq!(r.total(), 25);
    assert_eq!(r.measurements.last().map(|m| m.at.as_str()), Some("2026-12-07T06:00:24Z"));
}

#[test]
fn measurement_should_keep_values_json_safe_and_bounded() {
    let t = compile(&template(Some("result < 0.01"), None));
    let long_query = "x".repeat(5000);
    let values: Vec<f64> = (0..100).map(f64::from).collect();
    let m = measurement(
        &t,
        &Outcome::Taken { result: Sample::Vector(values), baseline: Some(Sample::Scalar(f64::INFINITY)) },
        "t".into(),
        long_query,
    );
    assert_eq!(m.value.as_ref().and_then(|v| v.as_array()).map(Vec::len), Some(MAX_VALUES));
    assert_eq!(m.baseline, Some(json!("+Inf")));
    assert_eq!(m.query.chars().count(), MAX_QUERY_CHARS + 1, "cut, with a `…`");
    assert!(m.error.as_ref().is_some_and(|e| e.chars().count() <= MAX_REASON_CHARS + 1));
    let ok = measurement(&t, &taken(0.001), "t".into(), "q".into());
    assert_eq!((ok.phase, ok.error, ok.value), (MeasurementPhase::Successful, None, Some(json!(0.001))));
    let nan = measurement(&t, &taken(f64::NAN), "t".into(), "q".into());
    assert_eq!(nan.value, Some(json!("NaN")));
    // The status it goes into still serializes (no NaN numbers in JSON).
    assert!(serde_json::to_string(&nan).is_ok());
}

fn outcome() -> impl Strategy<Value = Outcome> {
    let value = prop_oneof![any::<f64>(), Just(f64::NAN), Just(0.0), 0.0f64..0.1];
    let sample = prop_oneof![
        value.clone().prop_map(Sample::Scalar),
        prop::collection::vec(value, 0..3).prop_map(Sample::Vector),
    ];
    prop_oneof![
        (sample.clone(), prop::option::of(sample)).prop_map(|(result, baseline)| Outcome::Taken { result, baseline }),
        "[a-z ]{0,20}".prop_map(Outcome::Error),
    ]
}

proptest! {
    /// Whatever the measurements, a run's counters add up, it keeps at most MAX_MEASUREMENTS, and it ends no later
    /// than count + failureLimit + inconclusiveLimit + 1 measurements taken.
    #[test]
    fn record_should_keep_its_invariants(
        outcomes in prop::collection::vec(outcome(), 0..60),
        count in 1i64..5,
        failure_limit in 0i64..3,
        inconclusive_limit in 0i64..3,
    ) {
        let mut raw = template(Some("result < 0.05"), Some("result > baseline + 0.01 || result > 0.08"));
        raw.count = Some(count);
        raw.failure_limit = Some(failure_limit);
        raw.inconclusive_limit = Some(inconclusive_limit);
        let t = compile(&raw);
        let r = feed(&t, &outcomes);
        prop_assert!(r.measurements.len() <= MAX_MEASUREMENTS);
        let taken = r.successful + r.failed + r.inconclusive;
        prop_assert!(u64::from(taken) <= (count + failure_limit + inconclusive_limit + 1) as u64);
        prop_assert!(r.consecutive_errors <= t.schedule.consecutive_error_limit);
        if r.phase == AnalysisPhase::Running {
            prop_assert!(taken < t.schedule.count && r.failed <= t.schedule.failure_limit && r.inconclusive <= t.schedule.inconclusive_limit);
        } else {
            prop_assert!(!r.message.is_empty());
        }
    }
}
