//! Properties of [`decide`] over wide inputs: the safety rules hold whatever the measurements, history and limits.

use std::time::Duration;

use proptest::prelude::*;

use super::tests::{policy, t, target_check};
use super::{Direction, Inputs, LastScale, MeasureError, Policy, Recommendation, ThresholdAction, decide};
use crate::app::OnError;

fn measurement() -> impl Strategy<Value = Result<f64, MeasureError>> {
    prop_oneof![
        4 => (0.0f64..1000.0).prop_map(Ok),
        1 => Just(Err(MeasureError::Empty)),
        1 => Just(Err(MeasureError::NaN)),
        1 => Just(Ok(f64::NAN)),
        1 => Just(Err(MeasureError::Query { kind: "timeout", message: "slow".into() })),
    ]
}

fn strategy() -> impl Strategy<Value = super::Strategy> {
    prop_oneof![
        ((1.0f64..200.0), (0.0f64..0.5))
            .prop_map(|(target, tolerance)| super::Strategy::TargetValue { target, tolerance }),
        ((0.0f64..500.0), (1.0f64..500.0), -5i64..6).prop_map(|(lo, width, d)| super::Strategy::Threshold {
            lower: lo,
            upper: lo + width,
            action: if d == 0 { ThresholdAction::Percentage(-30.0) } else { ThresholdAction::Delta(d) },
        }),
        (0i64..40).prop_map(|value| super::Strategy::FixedValue { value }),
    ]
}

prop_compose! {
    fn arb_policy()(
        (min, span) in (0i64..10, 0i64..20),
        up in proptest::option::of(1i64..5),
        down in proptest::option::of(1i64..5),
        window in 0u64..600,
        strategies in proptest::collection::vec((strategy(), any::<bool>(), proptest::option::of(0u8..2)), 1..4),
    ) -> Policy {
        let mut p = policy();
        p.min = min;
        p.max = min + span;
        p.scale_up_max_step = up;
        p.scale_down_max_step = down;
        p.stabilization_window = Duration::from_secs(window);
        p.checks = strategies
            .into_iter()
            .enumerate()
            .map(|(i, (strategy, hold, group))| {
                let mut c = target_check(&format!("c{i}"), 1.0);
                c.strategy = strategy;
                c.on_error = if hold { OnError::Hold } else { OnError::Ignore };
                c.group = group.map(|g| format!("g{g}"));
                c
            })
            .collect();
        p
    }
}

prop_compose! {
    fn arb_inputs(checks: usize)(
        current in 0i64..40,
        measurements in proptest::collection::vec(measurement(), checks),
        deployment_active in any::<bool>(),
        last in proptest::option::of((0u64..1000, prop_oneof![Just(Direction::Up), Just(Direction::Down)])),
        recs in proptest::collection::vec((0u64..1000, 0i64..40), 0..6),
    ) -> Inputs {
        Inputs {
            current,
            measurements: measurements.into_iter().enumerate().map(|(i, m)| (format!("c{i}"), m)).collect(),
            deployment_active,
            last_scale: last.map(|(at, direction)| LastScale { at: t(at), direction }),
            recommendations: recs.into_iter().map(|(at, count)| Recommendation { at: t(at), count }).collect(),
        }
    }
}

fn case() -> impl proptest::strategy::Strategy<Value = (Policy, Inputs, u64)> {
    arb_policy().prop_flat_map(|p| {
        let n = p.checks.len();
        (Just(p), arb_inputs(n), 0u64..1200)
    })
}

proptest! {
    #[test]
    fn decide_should_keep_the_count_within_min_and_max((p, i, now) in case()) {
        let d = decide(&p, &i, t(now));
        prop_assert!(p.min <= d.desired && d.desired <= p.max, "{d:?}");
        if let Some(n) = d.new_count {
            prop_assert!(p.min <= n && n <= p.max);
            prop_assert_ne!(n, i.current);
        }
    }

    #[test]
    fn decide_should_never_move_more_than_max_step_inside_the_bounds((p, i, now) in case()) {
        prop_assume!(p.min <= i.current && i.current <= p.max);
        let d = decide(&p, &i, t(now));
        let moved = d.desired - i.current;
        if let Some(step) = p.scale_up_max_step { prop_assert!(moved <= step, "{moved} > {step}"); }
        if let Some(step) = p.scale_down_max_step { prop_assert!(-moved <= step, "{moved} < -{step}"); }
    }

    #[test]
    fn decide_should_never_scale_during_a_deployment_or_a_cooldown((p, i, now) in case()) {
        let d = decide(&p, &i, t(now));
        let cooling = i.last_scale.is_some_and(|last| {
            let length = if last.direction == Direction::Up { p.cooldown_up } else { p.cooldown };
            t(now) < last.at + length
        });
        if i.deployment_active || cooling || p.dry_run {
            prop_assert_eq!(d.new_count, None);
        }
        prop_assert_eq!(d.new_count.is_some(), d.deferred.is_none() && d.desired != i.current);
    }

    #[test]
    fn decide_should_never_scale_down_while_a_hold_check_fails((p, i, now) in case()) {
        prop_assume!(i.current <= p.max);
        let held = p.checks.iter().any(|c| {
            c.on_error == OnError::Hold
                && i.measurements.get(&c.name).is_none_or(|m| !m.as_ref().is_ok_and(|v| v.is_finite()))
        });
        let d = decide(&p, &i, t(now));
        if held {
            prop_assert!(d.desired >= i.current, "{d:?}");
            prop_assert!(d.recommendation.count >= i.current);
        }
    }

    #[test]
    fn decide_should_scale_down_no_lower_than_any_recent_recommendation((p, i, now) in case()) {
        prop_assume!(i.current <= p.max);
        let d = decide(&p, &i, t(now));
        if d.desired < i.current {
            for r in i.recommendations.iter().filter(|r| r.at <= t(now) && t(now).duration_since(r.at).is_ok_and(|a| a <= p.stabilization_window)) {
                prop_assert!(d.desired >= r.count.min(i.current).max(p.min), "{r:?} {d:?}");
            }
        }
    }
}
