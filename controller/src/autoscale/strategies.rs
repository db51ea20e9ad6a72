//! One check's vote: its measurement and strategy turned into a desired count, the Nomad Autoscaler's maths
//! (hashicorp/nomad-autoscaler `plugins/builtin/strategy/target-value/plugin/plugin.go`,
//! `plugins/builtin/strategy/threshold/plugin/plugin.go`, `plugins/builtin/strategy/fixed-value/plugin/plugin.go`).

use std::fmt;

use super::decision::{CheckAction, CheckResult, MeasureError};
use super::policy::{CheckPolicy, Strategy, ThresholdAction};
use crate::app::OnError;

/// What a strategy asks for, before the checks are resolved.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Vote {
    /// The desired count, ≥ 0.
    pub count: i64,
    /// `count` against the current count.
    pub action: CheckAction,
}

/// The vote of `check` for `value` at `current`, with a human reason (`cpu 83 > target 70`).
pub(crate) fn vote(strategy: &Strategy, name: &str, current: i64, value: f64) -> (Vote, String) {
    let v = Num(value);
    match *strategy {
        Strategy::TargetValue { target, tolerance } => {
            let factor = value / target;
            // target-value plugin `calculateDirection`: from 0 any positive factor scales up (to ceil(factor));
            // otherwise nothing changes while factor is within [1 - e, 1 + e].
            let count = if current == 0 {
                if factor > 0.0 { to_count(factor.ceil()) } else { 0 }
            } else if factor < 1.0 - tolerance || factor > 1.0 + tolerance {
                to_count((current as f64 * factor).ceil())
            } else {
                current
            };
            let vote = Vote::new(current, count);
            let reason = match vote.action {
                CheckAction::Up => format!("{name} {v} > target {}", Num(target)),
                CheckAction::Down => format!("{name} {v} < target {}", Num(target)),
                _ => format!("{name} {v} within {}% of target {}", Num(tolerance * 100.0), Num(target)),
            };
            (vote, reason)
        }
        Strategy::Threshold { lower, upper, action } => {
            let band = format!("[{}, {})", Num(lower), Num(upper));
            // threshold plugin `withinBounds`: lower inclusive, upper exclusive. Drover takes one instant value, so
            // its `within_bounds_trigger` is 1 data point.
            if !(value >= lower && value < upper) {
                return (Vote::new(current, current), format!("{name} {v} outside {band}"));
            }
            let count = match action {
                ThresholdAction::Delta(d) => current.saturating_add(d),
                ThresholdAction::Percentage(p) => to_count((current as f64 * (1.0 + p / 100.0)).ceil()),
                ThresholdAction::Value(n) => n,
            };
            (Vote::new(current, count.max(0)), format!("{name} {v} in {band}"))
        }
        Strategy::FixedValue { value: n } => (Vote::new(current, n), format!("{name}: fixed value {n}")),
    }
}

/// The result of one check: its vote, or what its failed measurement does per `onError`.
pub(crate) fn evaluate(check: &CheckPolicy, current: i64, measured: Result<f64, MeasureError>) -> CheckResult {
    let measured = measured.and_then(|v| if v.is_finite() { Ok(v) } else { Err(MeasureError::Infinite) });
    match measured {
        Ok(value) => {
            let (vote, reason) = vote(&check.strategy, &check.name, current, value);
            CheckResult {
                name: check.name.clone(),
                value: Some(value),
                desired_count: Some(vote.count),
                action: vote.action,
                error: None,
                reason,
            }
        }
        Err(error) => {
            let (action, what) = match check.on_error {
                OnError::Hold => (CheckAction::Hold, "holding the count (onError Hold)"),
                OnError::Ignore => (CheckAction::Ignored, "ignored (onError Ignore)"),
            };
            let reason = format!("{}: {error}; {what}", check.name);
            CheckResult {
                name: check.name.clone(),
                value: None,
                desired_count: None,
                action,
                error: Some(error),
                reason,
            }
        }
    }
}

impl Vote {
    fn new(current: i64, count: i64) -> Vote {
        let action = match count.cmp(&current) {
            std::cmp::Ordering::Greater => CheckAction::Up,
            std::cmp::Ordering::Less => CheckAction::Down,
            std::cmp::Ordering::Equal => CheckAction::Unchanged,
        };
        Vote { count, action }
    }
}

/// A float count, rounded already, as a count ≥ 0 (`as` saturates: a huge value asks for the most, clamped later).
fn to_count(x: f64) -> i64 {
    (x as i64).max(0)
}

/// A number as a person reads it in a reason: at most two decimals, no trailing zeros, `∞` for unbounded.
pub(crate) struct Num(pub f64);

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_infinite() {
            return f.write_str(if self.0 > 0.0 { "∞" } else { "-∞" });
        }
        let s = format!("{:.2}", self.0);
        let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.') } else { &s };
        f.write_str(if s == "-0" { "0" } else { s })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tv(target: f64, tolerance: f64) -> Strategy {
        Strategy::TargetValue { target, tolerance }
    }

    #[test]
    fn target_value_should_scale_in_proportion_rounding_up() {
        let (v, reason) = vote(&tv(70.0, 0.1), "cpu", 4, 83.0);
        assert_eq!(v, Vote { count: 5, action: CheckAction::Up }, "ceil(4 × 83/70) = ceil(4.74)");
        assert_eq!(reason, "cpu 83 > target 70");
        let (v, reason) = vote(&tv(70.0, 0.1), "cpu", 10, 35.0);
        assert_eq!(v, Vote { count: 5, action: CheckAction::Down });
        assert_eq!(reason, "cpu 35 < target 70");
    }

    #[test]
    fn target_value_should_not_move_within_tolerance() {
        for value in [63.5, 70.0, 76.9] {
            let (v, reason) = vote(&tv(70.0, 0.1), "cpu", 4, value);
            assert_eq!(v.action, CheckAction::Unchanged, "{value}");
            assert_eq!(v.count, 4);
            assert!(reason.contains("within 10% of target 70"), "{reason}");
        }
        assert_eq!(vote(&tv(70.0, 0.1), "cpu", 4, 77.1).0.action, CheckAction::Up);
    }

    #[test]
    fn target_value_should_scale_up_from_zero_to_the_factor() {
        assert_eq!(vote(&tv(10.0, 0.01), "q", 0, 25.0).0, Vote { count: 3, action: CheckAction::Up });
        assert_eq!(vote(&tv(10.0, 0.01), "q", 0, 0.0).0, Vote { count: 0, action: CheckAction::Unchanged });
    }

    #[test]
    fn target_value_should_never_ask_for_a_negative_count() {
        assert_eq!(vote(&tv(10.0, 0.01), "q", 4, -50.0).0, Vote { count: 0, action: CheckAction::Down });
    }

    #[test]
    fn threshold_should_act_only_inside_its_band() {
        let s = Strategy::Threshold { lower: 50.0, upper: 80.0, action: ThresholdAction::Delta(2) };
        assert_eq!(vote(&s, "cpu", 3, 50.0).0, Vote { count: 5, action: CheckAction::Up }, "lower is inclusive");
        assert_eq!(vote(&s, "cpu", 3, 80.0).0, Vote { count: 3, action: CheckAction::Unchanged }, "upper exclusive");
        assert_eq!(vote(&s, "cpu", 3, 49.9).1, "cpu 49.9 outside [50, 80)");
        assert_eq!(vote(&s, "cpu", 3, 60.0).1, "cpu 60 in [50, 80)");
    }

    #[test]
    fn threshold_should_apply_delta_percentage_or_value() {
        let band = |action| Strategy::Threshold { lower: f64::NEG_INFINITY, upper: 10.0, action };
        assert_eq!(vote(&band(ThresholdAction::Delta(-2)), "q", 3, 1.0).0.count, 1);
        assert_eq!(vote(&band(ThresholdAction::Delta(-5)), "q", 3, 1.0).0.count, 0, "never below 0");
        assert_eq!(vote(&band(ThresholdAction::Percentage(-20.0)), "q", 10, 1.0).0.count, 8);
        assert_eq!(vote(&band(ThresholdAction::Percentage(10.0)), "q", 3, 1.0).0.count, 4, "ceil(3.3)");
        assert_eq!(vote(&band(ThresholdAction::Value(7)), "q", 3, 1.0).0, Vote { count: 7, action: CheckAction::Up });
        assert_eq!(vote(&band(ThresholdAction::Value(7)), "q", 3, 1.0).1, "q 1 in [-∞, 10)");
    }

    #[test]
    fn fixed_value_should_ask_for_its_value() {
        let s = Strategy::FixedValue { value: 4 };
        assert_eq!(vote(&s, "floor", 6, 0.0).0, Vote { count: 4, action: CheckAction::Down });
        assert_eq!(vote(&s, "floor", 4, 0.0).0.action, CheckAction::Unchanged);
    }

    #[test]
    fn num_should_print_at_most_two_decimals() {
        assert_eq!(Num(83.0).to_string(), "83");
        assert_eq!(Num(0.8349).to_string(), "0.83");
        assert_eq!(Num(-0.001).to_string(), "0");
        assert_eq!(Num(f64::INFINITY).to_string(), "∞");
    }
}
