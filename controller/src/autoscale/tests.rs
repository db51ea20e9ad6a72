//! Unit tests of [`decide`]: one rule each.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::app::OnError;
use crate::prometheus::QueryTemplate;

pub(super) fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
}

pub(super) fn target_check(name: &str, target: f64) -> CheckPolicy {
    CheckPolicy {
        name: name.into(),
        address: "http://prometheus:9090".into(),
        query: QueryTemplate::parse("avg(cpu)", &query_scope()).expect("parses"),
        timeout: Duration::from_secs(10),
        group: None,
        on_error: OnError::Hold,
        strategy: Strategy::TargetValue { target, tolerance: 0.1 },
    }
}

pub(super) fn policy() -> Policy {
    Policy {
        min: 2,
        max: 20,
        group: "web".into(),
        evaluation_interval: Duration::from_secs(30),
        cooldown: Duration::from_secs(300),
        cooldown_up: Duration::from_secs(60),
        scale_up_max_step: None,
        scale_down_max_step: None,
        stabilization_window: Duration::from_secs(0),
        dry_run: false,
        checks: vec![target_check("cpu", 70.0)],
    }
}

fn inputs(current: i64, cpu: f64) -> Inputs {
    Inputs { current, measurements: [("cpu".to_string(), Ok(cpu))].into(), ..Inputs::default() }
}

#[test]
fn decide_should_scale_up_with_a_reason_that_says_why() {
    let d = decide(&policy(), &inputs(4, 105.0), t(0));
    assert_eq!(d.new_count, Some(6));
    assert_eq!(d.direction, Direction::Up);
    assert_eq!(d.reason, "cpu 105 > target 70 (+2)");
    assert_eq!(d.deferred, None);
    assert_eq!(d.checks[0].desired_count, Some(6));
    assert_eq!(d.checks[0].action, CheckAction::Up);
    assert_eq!(d.recommendation, Recommendation { at: t(0), count: 6 });
}

#[test]
fn decide_should_do_nothing_within_tolerance() {
    let d = decide(&policy(), &inputs(4, 72.0), t(0));
    assert_eq!((d.new_count, d.desired, d.direction, d.deferred), (None, 4, Direction::Unchanged, None));
}

#[test]
fn decide_should_limit_each_direction_to_its_max_step() {
    let mut p = policy();
    p.scale_up_max_step = Some(2);
    p.scale_down_max_step = Some(1);
    let d = decide(&p, &inputs(4, 210.0), t(0));
    assert_eq!(d.new_count, Some(6), "wanted 12, two at a time");
    assert_eq!(d.reason, "cpu 210 > target 70; maxStep 2 (+2)");
    let d = decide(&p, &inputs(10, 21.0), t(0));
    assert_eq!(d.new_count, Some(9), "wanted 3, one at a time");
}

#[test]
fn decide_should_clamp_to_min_and_max() {
    let d = decide(&policy(), &inputs(10, 700.0), t(0));
    assert_eq!(d.new_count, Some(20));
    assert_eq!(d.reason, "cpu 700 > target 70; max 20 (+10)");
    let d = decide(&policy(), &inputs(4, 1.0), t(0));
    assert_eq!(d.new_count, Some(2));
}

#[test]
fn decide_should_bring_a_count_set_outside_the_bounds_back_in_one_scale() {
    let mut p = policy();
    p.scale_down_max_step = Some(1);
    let d = decide(&p, &inputs(30, 70.0), t(0));
    assert_eq!(d.new_count, Some(20), "the bounds win over maxStep");
    let d = decide(&p, &inputs(0, 70.0), t(0));
    assert_eq!(d.new_count, Some(2));
}

#[test]
fn decide_should_never_scale_during_an_active_deployment() {
    let mut i = inputs(4, 140.0);
    i.deployment_active = true;
    let d = decide(&policy(), &i, t(0));
    assert_eq!(d.new_count, None);
    assert_eq!(d.desired, 8, "the wanted count is still reported");
    assert_eq!(d.deferred, Some(Deferred::ActiveDeployment));
}

#[test]
fn decide_should_wait_for_the_cooldown_of_the_last_direction() {
    let mut i = inputs(4, 140.0);
    i.last_scale = Some(LastScale { at: t(0), direction: Direction::Up });
    let d = decide(&policy(), &i, t(59));
    assert_eq!(d.deferred, Some(Deferred::Cooldown { until: t(60) }), "cooldownUp after a scale up");
    assert_eq!(d.cooldown_until, Some(t(60)));
    assert_eq!(decide(&policy(), &i, t(60)).new_count, Some(8), "the cooldown ends at `until`");

    i.last_scale = Some(LastScale { at: t(0), direction: Direction::Down });
    assert_eq!(decide(&policy(), &i, t(200)).deferred, Some(Deferred::Cooldown { until: t(300) }));
    i.last_scale = Some(LastScale { at: t(0), direction: Direction::Unchanged });
    assert_eq!(
        decide(&policy(), &i, t(200)).deferred,
        Some(Deferred::Cooldown { until: t(300) }),
        "an unknown direction takes the longer cooldown"
    );
}

#[test]
fn decide_should_report_but_not_scale_in_dry_run() {
    let mut p = policy();
    p.dry_run = true;
    let d = decide(&p, &inputs(4, 140.0), t(0));
    assert_eq!((d.new_count, d.desired, d.deferred), (None, 8, Some(Deferred::DryRun)));
}

#[test]
fn decide_should_scale_down_only_when_the_whole_window_agrees() {
    let mut p = policy();
    p.stabilization_window = Duration::from_secs(300);
    let mut i = inputs(10, 35.0);
    i.recommendations = vec![
        Recommendation { at: t(0), count: 12 },   // older than the window: forgotten
        Recommendation { at: t(100), count: 10 }, // the count itself: no agreement yet
        Recommendation { at: t(200), count: 6 },
    ];
    let d = decide(&p, &i, t(350));
    assert_eq!(d.new_count, None);
    assert_eq!(d.deferred, Some(Deferred::Stabilization { window: Duration::from_secs(300), highest: 10 }));
    assert_eq!(d.recommendation.count, 5, "the raw recommendation is what is remembered");

    let d = decide(&p, &i, t(401));
    assert_eq!(d.new_count, Some(6), "the highest recommendation in the window");
    assert_eq!(d.reason, "cpu 35 < target 70; stabilized at 6 (-4)");
}

#[test]
fn decide_should_not_delay_a_scale_up_for_the_stabilization_window() {
    let mut p = policy();
    p.stabilization_window = Duration::from_secs(300);
    let mut i = inputs(4, 140.0);
    i.recommendations = vec![Recommendation { at: t(0), count: 2 }];
    assert_eq!(decide(&p, &i, t(10)).new_count, Some(8));
}

#[test]
fn decide_should_hold_the_count_when_a_hold_check_fails() {
    let mut p = policy();
    p.checks.push(target_check("rps", 100.0));
    let mut i = inputs(10, 35.0);
    i.measurements.insert("rps".into(), Err(MeasureError::Empty));
    let d = decide(&p, &i, t(0));
    assert_eq!(d.new_count, None);
    assert_eq!(d.direction, Direction::Unchanged);
    assert_eq!(d.checks[1].action, CheckAction::Hold);
    assert_eq!(d.checks[1].error, Some(MeasureError::Empty));
    assert_eq!(d.reason, "cpu 35 < target 70; rps: the query returned no series; holding the count (onError Hold)");
    assert_eq!(d.recommendation.count, 10, "a held evaluation recommends the current count");

    // A held check does not stop another one from scaling up.
    let mut i = inputs(4, 140.0);
    i.measurements.insert("rps".into(), Err(MeasureError::NaN));
    assert_eq!(decide(&p, &i, t(0)).new_count, Some(8));
}

#[test]
fn decide_should_leave_out_an_ignored_check_that_fails() {
    let mut p = policy();
    let mut rps = target_check("rps", 100.0);
    rps.on_error = OnError::Ignore;
    p.checks.push(rps);
    let mut i = inputs(10, 35.0);
    i.measurements.insert("rps".into(), Err(MeasureError::Several(3)));
    let d = decide(&p, &i, t(0));
    assert_eq!(d.new_count, Some(5));
    assert_eq!(d.checks[1].action, CheckAction::Ignored);
}

#[test]
fn decide_should_treat_every_unmeasurable_value_as_an_error() {
    for bad in [Err(MeasureError::NaN), Ok(f64::INFINITY), Ok(f64::NEG_INFINITY), Ok(f64::NAN)] {
        let mut i = inputs(10, 0.0);
        i.measurements.insert("cpu".into(), bad.clone());
        let d = decide(&policy(), &i, t(0));
        assert_eq!(d.new_count, None, "{bad:?}");
        assert_eq!(d.checks[0].action, CheckAction::Hold, "{bad:?}");
        assert_eq!(d.checks[0].value, None, "{bad:?}");
    }
    let d = decide(&policy(), &Inputs { current: 10, ..Inputs::default() }, t(0));
    assert_eq!(d.checks[0].error, Some(MeasureError::NotMeasured));
    assert_eq!(d.new_count, None);
}

#[test]
fn decide_should_keep_the_count_when_every_check_is_ignored() {
    let mut p = policy();
    p.checks[0].on_error = OnError::Ignore;
    let mut i = inputs(10, 0.0);
    i.measurements.insert("cpu".into(), Err(MeasureError::Query { kind: "unreachable", message: "down".into() }));
    let d = decide(&p, &i, t(0));
    assert_eq!((d.new_count, d.direction), (None, Direction::Unchanged));
    assert_eq!(d.reason, "no check could be measured");
}

#[test]
fn decide_should_resolve_several_checks_safely() {
    let mut p = policy();
    p.checks.push(target_check("rps", 100.0));
    let mut i = inputs(10, 35.0); // cpu asks for 5
    i.measurements.insert("rps".into(), Ok(80.0)); // rps asks for 8
    let d = decide(&p, &i, t(0));
    assert_eq!(d.new_count, Some(8), "among downs the least reduction");
    i.measurements.insert("rps".into(), Ok(100.0)); // rps within tolerance
    assert_eq!(decide(&p, &i, t(0)).new_count, None, "unchanged beats down");
}

#[test]
fn remember_should_keep_only_the_window() {
    let mut history = vec![
        Recommendation { at: t(0), count: 1 },
        Recommendation { at: t(100), count: 2 },
        Recommendation { at: t(900), count: 9 }, // from the future: the clock stepped back
    ];
    remember(&mut history, Recommendation { at: t(350), count: 3 }, Duration::from_secs(300));
    assert_eq!(history, [Recommendation { at: t(100), count: 2 }, Recommendation { at: t(350), count: 3 }]);
}

#[test]
fn measure_error_should_come_from_a_shape_with_a_bounded_kind() {
    assert_eq!(MeasureError::from(crate::prometheus::Shape::Several(2)), MeasureError::Several(2));
    assert_eq!(MeasureError::from(crate::prometheus::Shape::NaN).kind(), "nan");
    assert_eq!(Deferred::DryRun.to_string(), "dry run");
}

#[test]
fn decide_should_stay_total_for_a_policy_built_by_hand_with_nonsense_limits() {
    let mut p = policy();
    p.min = 9;
    p.max = 3;
    p.scale_up_max_step = Some(-1);
    let d = decide(&p, &inputs(5, 140.0), t(0));
    assert_eq!(d.desired, 3, "max wins; no panic");
}
