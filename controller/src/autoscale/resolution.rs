//! Several checks, one count: the Nomad Autoscaler's resolution, plus Drover's `Hold`.
//!
//! - Between two votes, the direction wins in the order up > unchanged > down; between two ups the higher count
//!   wins, and between two downs also the higher count (the least reduction): hashicorp/nomad-autoscaler
//!   `sdk/strategy.go` `PreemptScalingAction` ("the safest option").
//! - Checks that share a check `group` measure correlated things, so most of them vote "unchanged" while one
//!   sees the load: inside a group, "unchanged" votes are ignored unless every vote of the group is "unchanged"
//!   (`policy/handler.go` `pickWinnerActionFromGroups`). Checks without a group are each compared on their own.
//! - A check that could not be measured with `onError: Ignore` is left out, as the Nomad Autoscaler's
//!   `on_error = "ignore"` does. With `Hold` (the default) it is a veto on scaling down, counted outside the group
//!   rule so that a group's "unchanged"-ignoring can never turn a failed query into a scale down
//!   (nomad-autoscaler#410, #514): other checks may still scale up.

use std::collections::BTreeMap;

use super::decision::{CheckAction, CheckResult};
use super::policy::CheckPolicy;

/// The outcome of resolving the checks' votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The index of the winning check, if any check voted.
    pub winner: Option<usize>,
    /// The index of the first check holding the count (failed with `onError: Hold`), if any.
    pub held_by: Option<usize>,
}

/// Resolves `results` (one per check of `checks`, same order).
pub(crate) fn resolve(checks: &[CheckPolicy], results: &[CheckResult]) -> Resolved {
    let mut groups: BTreeMap<Option<&str>, Vec<usize>> = BTreeMap::new();
    let mut winner = None;
    let mut held_by = None;
    for (i, (check, result)) in checks.iter().zip(results).enumerate() {
        match (result.action, check.group.as_deref()) {
            (CheckAction::Hold, _) => {
                held_by.get_or_insert(i);
            }
            (CheckAction::Ignored, _) => {}
            // No group: compared on its own, "unchanged" included.
            (_, None) => winner = preempt(results, winner, i),
            (_, Some(group)) => groups.entry(Some(group)).or_default().push(i),
        }
    }
    for members in groups.values() {
        let moving: Vec<usize> =
            members.iter().copied().filter(|&i| results[i].action != CheckAction::Unchanged).collect();
        let group_winner = if moving.is_empty() {
            // Every vote of the group is "unchanged": the group votes so.
            members.first().copied()
        } else {
            moving.into_iter().fold(None, |w, i| preempt(results, w, i))
        };
        if let Some(g) = group_winner {
            winner = preempt(results, winner, g);
        }
    }
    Resolved { winner, held_by }
}

/// `PreemptScalingAction`: which of the current winner and check `b` takes precedence (the current one on a tie).
fn preempt(results: &[CheckResult], a: Option<usize>, b: usize) -> Option<usize> {
    let Some(a) = a else { return Some(b) };
    let rank = |i: usize| match results[i].action {
        CheckAction::Down => 0,
        CheckAction::Unchanged | CheckAction::Hold | CheckAction::Ignored => 1,
        CheckAction::Up => 2,
    };
    let count = |i: usize| results[i].desired_count.unwrap_or(0);
    let (ra, rb) = (rank(a), rank(b));
    if rb > ra || (rb == ra && rb != 1 && count(b) > count(a)) { Some(b) } else { Some(a) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::OnError;
    use crate::autoscale::policy::{DEFAULT_QUERY_TIMEOUT, Strategy, query_scope};
    use crate::prometheus::QueryTemplate;

    fn check(name: &str, group: Option<&str>) -> CheckPolicy {
        CheckPolicy {
            name: name.into(),
            address: "http://p:9090".into(),
            query: QueryTemplate::parse("up", &query_scope()).expect("parses"),
            timeout: DEFAULT_QUERY_TIMEOUT,
            group: group.map(str::to_owned),
            on_error: OnError::Hold,
            strategy: Strategy::FixedValue { value: 1 },
        }
    }

    fn result(action: CheckAction, count: Option<i64>) -> CheckResult {
        CheckResult {
            name: String::new(),
            value: None,
            desired_count: count,
            action,
            error: None,
            reason: String::new(),
        }
    }

    use CheckAction::{Down, Hold, Ignored, Unchanged, Up};

    #[test]
    fn resolve_should_prefer_up_over_unchanged_over_down() {
        let checks = [check("a", None), check("b", None), check("c", None)];
        let r = [result(Down, Some(2)), result(Unchanged, Some(4)), result(Up, Some(5))];
        assert_eq!(resolve(&checks, &r).winner, Some(2));
        let r = [result(Down, Some(2)), result(Unchanged, Some(4)), result(Down, Some(3))];
        assert_eq!(resolve(&checks, &r).winner, Some(1));
    }

    #[test]
    fn resolve_should_take_the_highest_count_in_either_direction() {
        let checks = [check("a", None), check("b", None), check("c", None)];
        let r = [result(Up, Some(6)), result(Up, Some(9)), result(Up, Some(7))];
        assert_eq!(resolve(&checks, &r).winner, Some(1));
        let r = [result(Down, Some(1)), result(Down, Some(3)), result(Down, Some(2))];
        assert_eq!(resolve(&checks, &r).winner, Some(1), "the least reduction");
    }

    #[test]
    fn resolve_should_ignore_unchanged_inside_a_group_unless_all_agree() {
        let checks = [check("a", Some("g")), check("b", Some("g"))];
        let r = [result(Unchanged, Some(4)), result(Down, Some(2))];
        assert_eq!(resolve(&checks, &r).winner, Some(1), "the group's unchanged vote is ignored");
        let r = [result(Unchanged, Some(4)), result(Unchanged, Some(4))];
        assert_eq!(resolve(&checks, &r).winner, Some(0));
        // Without a group the same votes keep the count.
        let loose = [check("a", None), check("b", None)];
        let r = [result(Unchanged, Some(4)), result(Down, Some(2))];
        assert_eq!(resolve(&loose, &r).winner, Some(0));
    }

    #[test]
    fn resolve_should_compare_group_winners_with_the_other_checks() {
        let checks = [check("a", Some("g")), check("b", Some("g")), check("c", None)];
        let r = [result(Unchanged, Some(4)), result(Down, Some(2)), result(Unchanged, Some(4))];
        assert_eq!(resolve(&checks, &r).winner, Some(2), "an ungrouped unchanged beats the group's down");
    }

    #[test]
    fn resolve_should_leave_out_ignored_checks_and_report_holds() {
        let checks = [check("a", Some("g")), check("b", Some("g")), check("c", None)];
        let r = [result(Hold, None), result(Down, Some(2)), result(Ignored, None)];
        assert_eq!(resolve(&checks, &r), Resolved { winner: Some(1), held_by: Some(0) });
        let r = [result(Ignored, None), result(Ignored, None), result(Ignored, None)];
        assert_eq!(resolve(&checks, &r), Resolved { winner: None, held_by: None });
    }
}
