//! [`Policy`]: `spec.autoscaling` validated once and typed, so the decision never re-reads strings (STYLE "what to
//! avoid": the Nomad Autoscaler re-parses its strategy `Config map[string]string` on every run). Building it is the
//! validation: every problem is collected with its path.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::app::validate::MAX_COUNT;
use crate::app::{Autoscaling, FieldError, HumanDuration, OnError, ScalingCheck, Threshold};
use crate::prometheus::{QueryTemplate, Scope, Var};

/// Default time between evaluations.
pub const DEFAULT_EVALUATION_INTERVAL: Duration = Duration::from_secs(30);
/// Default cooldown after any scale: the Nomad Autoscaler's default policy `cooldown` (5 m).
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(5 * 60);
/// Default scale-down stabilization window: Kubernetes' HPA default (300 s).
pub const DEFAULT_STABILIZATION_WINDOW: Duration = Duration::from_secs(5 * 60);
/// The most checks a policy may have: each is a Prometheus query per evaluation, and 1 000 apps must stay cheap
/// (issue #11's benchmark). Drover's choice; the Nomad Autoscaler has no limit.
pub const MAX_CHECKS: usize = 32;
/// Default query timeout.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Default target-value tolerance: the Nomad Autoscaler's `precision` default (0.01).
pub const DEFAULT_TOLERANCE: f64 = 0.01;

const P: &str = "spec.autoscaling";

/// The validated autoscaling policy of one app: what [`super::decide`] reads.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// The lowest count; `0 ≤ min ≤ max`.
    pub min: i64,
    /// The highest count; `max ≤` [`MAX_COUNT`].
    pub max: i64,
    /// The task group scaled (resolved: the only group when the record did not name one).
    pub group: String,
    /// Time between evaluations; greater than 0.
    pub evaluation_interval: Duration,
    /// Cooldown after a scale down (or a scale in an unknown direction).
    pub cooldown: Duration,
    /// Cooldown after a scale up.
    pub cooldown_up: Duration,
    /// The most instances added in one scale; `None`: no limit. At least 1.
    pub scale_up_max_step: Option<i64>,
    /// The most instances removed in one scale; `None`: no limit. At least 1.
    pub scale_down_max_step: Option<i64>,
    /// Scale down only when every recommendation this recent agrees; zero turns it off.
    pub stabilization_window: Duration,
    /// Decide and report, never scale.
    pub dry_run: bool,
    /// The checks, in record order; at least one, names unique.
    pub checks: Vec<CheckPolicy>,
}

/// One validated check.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckPolicy {
    /// Unique among the policy's checks; the key of its measurement in [`super::Inputs::measurements`].
    pub name: String,
    /// The Prometheus base URL (http or https).
    pub address: String,
    /// The parsed query; render it with the job ID, namespace and group.
    pub query: QueryTemplate,
    /// How long a query may take.
    pub timeout: Duration,
    /// The check group (correlated checks), if any.
    pub group: Option<String>,
    /// What a failed measurement does (the check's own, else the policy's).
    pub on_error: OnError,
    /// How the value becomes a count.
    pub strategy: Strategy,
}

/// A check's strategy, typed (the Nomad Autoscaler's built-in strategies).
#[derive(Clone, Debug, PartialEq)]
pub enum Strategy {
    /// Keep `value / target` within `1 ± tolerance`; `target > 0`, `0 ≤ tolerance < 1`.
    TargetValue {
        /// The value per instance to hold.
        target: f64,
        /// The relative dead band.
        tolerance: f64,
    },
    /// While `lower ≤ value < upper`, apply `action`. Absent bounds are infinite; `lower < upper`.
    Threshold {
        /// Inclusive lower bound (`-∞` when absent).
        lower: f64,
        /// Exclusive upper bound (`+∞` when absent).
        upper: f64,
        /// What to do inside the band.
        action: ThresholdAction,
    },
    /// Always ask for `value`.
    FixedValue {
        /// The count asked for.
        value: i64,
    },
}

/// What a threshold check does inside its band.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ThresholdAction {
    /// Add this many instances (negative: remove); not 0.
    Delta(i64),
    /// Multiply the count by `1 + p/100`, rounded up; `p > -100`, not 0.
    Percentage(f64),
    /// Set the count to this; `0 ≤ value ≤ MAX_COUNT`.
    Value(i64),
}

impl Policy {
    /// Validates `a` for a job whose task groups are `groups`, collecting every problem with its path under
    /// `spec.autoscaling`.
    pub fn from_record(a: &Autoscaling, groups: &[String]) -> Result<Policy, Vec<FieldError>> {
        let mut errors = Vec::new();
        for (path, value) in [("min", a.min), ("max", a.max)] {
            if let Err(reason) = crate::app::validate::check_count(value) {
                errors.push(FieldError::new(format!("{P}.{path}"), reason));
            }
        }
        if a.min > a.max {
            errors.push(FieldError::new(format!("{P}.min"), format!("must not be greater than max ({})", a.max)));
        }
        let group = resolve_group(a.group.as_deref(), groups, &mut errors);
        let evaluation_interval = a.evaluation_interval.map_or(DEFAULT_EVALUATION_INTERVAL, HumanDuration::get);
        if evaluation_interval.is_zero() {
            errors.push(FieldError::new(format!("{P}.evaluationInterval"), "must be greater than 0"));
        }
        let cooldown = a.cooldown.map_or(DEFAULT_COOLDOWN, HumanDuration::get);
        let cooldown_up = a.cooldown_up.map_or(cooldown, HumanDuration::get);
        let scale_up_max_step = a.scale_up.as_ref().and_then(|s| s.max_step);
        let scale_down_max_step = a.scale_down.as_ref().and_then(|s| s.max_step);
        for (path, step) in [("scaleUp.maxStep", scale_up_max_step), ("scaleDown.maxStep", scale_down_max_step)] {
            if let Some(step) = step
                && !(1..=MAX_COUNT).contains(&step)
            {
                errors.push(FieldError::new(format!("{P}.{path}"), format!("must be 1–{MAX_COUNT}")));
            }
        }
        let stabilization_window = a
            .scale_down
            .as_ref()
            .and_then(|s| s.stabilization_window)
            .map_or(DEFAULT_STABILIZATION_WINDOW, HumanDuration::get);
        let on_error = a.on_error.unwrap_or_default();
        if a.checks.is_empty() {
            errors.push(FieldError::new(format!("{P}.checks"), "must list at least one check"));
        } else if a.checks.len() > MAX_CHECKS {
            errors.push(FieldError::new(format!("{P}.checks"), format!("must list at most {MAX_CHECKS} checks")));
        }
        let mut names = BTreeSet::new();
        let mut checks = Vec::new();
        for (i, check) in a.checks.iter().enumerate() {
            let path = format!("{P}.checks[{i}]");
            if !names.insert(check.name.as_str()) {
                errors.push(FieldError::new(
                    format!("{path}.name"),
                    format!("`{}` is already the name of another check", check.name),
                ));
            }
            if let Some(c) = check_policy(check, on_error, &path, &mut errors) {
                checks.push(c);
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Policy {
            min: a.min,
            max: a.max,
            group: group.unwrap_or_default(),
            evaluation_interval,
            cooldown,
            cooldown_up,
            scale_up_max_step,
            scale_down_max_step,
            stabilization_window,
            dry_run: a.dry_run,
            checks,
        })
    }
}

/// The scope of an autoscaling query: the job and group it scales. Not `.Version` (autoscaling measures the whole
/// group, whatever version runs).
pub fn query_scope() -> Scope {
    Scope { vars: [Var::JobId, Var::Namespace, Var::Group].into_iter().collect(), args: BTreeSet::new() }
}

fn resolve_group(named: Option<&str>, groups: &[String], errors: &mut Vec<FieldError>) -> Option<String> {
    match (named, groups) {
        (Some(name), _) if groups.iter().any(|g| g == name) => Some(name.to_owned()),
        // The job's groups are unknown (it did not parse): its own errors are reported; say nothing here.
        (Some(name), []) => Some(name.to_owned()),
        (Some(name), _) => {
            errors.push(FieldError::new(
                format!("{P}.group"),
                format!("`{name}` is not a task group of the job (groups: {})", groups.join(", ")),
            ));
            None
        }
        (None, [only]) => Some(only.clone()),
        (None, []) => None,
        (None, _) => {
            errors.push(FieldError::new(
                format!("{P}.group"),
                format!("is required: the job has several task groups ({})", groups.join(", ")),
            ));
            None
        }
    }
}

fn check_policy(c: &ScalingCheck, default: OnError, path: &str, errors: &mut Vec<FieldError>) -> Option<CheckPolicy> {
    let before = errors.len();
    if c.name.is_empty() || c.name.chars().count() > 63 {
        errors.push(FieldError::new(format!("{path}.name"), "must be 1–63 characters"));
    }
    let address = c.prometheus.address.trim();
    match reqwest::Url::parse(address) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {}
        Ok(_) => errors.push(FieldError::new(
            format!("{path}.prometheus.address"),
            format!("`{address}` is not an http:// or https:// URL with a host"),
        )),
        Err(e) => errors.push(FieldError::new(
            format!("{path}.prometheus.address"),
            format!("`{address}` is not a URL ({e}); write e.g. `http://prometheus.service.consul:9090`"),
        )),
    }
    let query = if c.prometheus.query.trim().is_empty() {
        errors.push(FieldError::new(format!("{path}.prometheus.query"), "must not be empty"));
        None
    } else {
        match QueryTemplate::parse(&c.prometheus.query, &query_scope()) {
            Ok(q) => Some(q),
            Err(template_errors) => {
                errors.extend(
                    template_errors.iter().map(|e| FieldError::new(format!("{path}.prometheus.query"), e.to_string())),
                );
                None
            }
        }
    };
    let timeout = c.prometheus.timeout.map_or(DEFAULT_QUERY_TIMEOUT, HumanDuration::get);
    if timeout.is_zero() {
        errors.push(FieldError::new(format!("{path}.prometheus.timeout"), "must be greater than 0"));
    }
    if c.group.as_deref().is_some_and(str::is_empty) {
        errors.push(FieldError::new(format!("{path}.group"), "must not be empty when set"));
    }
    let strategy = strategy(c, path, errors);
    match (query, strategy) {
        (Some(query), Some(strategy)) if errors.len() == before => Some(CheckPolicy {
            name: c.name.clone(),
            address: address.trim_end_matches('/').to_owned(),
            query,
            timeout,
            group: c.group.clone(),
            on_error: c.on_error.unwrap_or(default),
            strategy,
        }),
        _ => None,
    }
}

fn strategy(c: &ScalingCheck, path: &str, errors: &mut Vec<FieldError>) -> Option<Strategy> {
    match (&c.target_value, &c.threshold, &c.fixed_value) {
        (Some(t), None, None) => {
            let p = format!("{path}.targetValue");
            let before = errors.len();
            if !(t.target.is_finite() && t.target > 0.0) {
                errors.push(FieldError::new(format!("{p}.target"), "must be a number greater than 0"));
            }
            let tolerance = t.tolerance.unwrap_or(DEFAULT_TOLERANCE);
            if !(0.0..1.0).contains(&tolerance) {
                errors.push(FieldError::new(
                    format!("{p}.tolerance"),
                    "must be at least 0 and less than 1 (a fraction of target, e.g. 0.1)",
                ));
            }
            (errors.len() == before).then_some(Strategy::TargetValue { target: t.target, tolerance })
        }
        (None, Some(t), None) => threshold(t, &format!("{path}.threshold"), errors),
        (None, None, Some(f)) => {
            if let Err(reason) = crate::app::validate::check_count(f.value) {
                errors.push(FieldError::new(format!("{path}.fixedValue.value"), reason));
                return None;
            }
            Some(Strategy::FixedValue { value: f.value })
        }
        (None, None, None) => {
            errors.push(FieldError::new(path, "set one strategy: `targetValue`, `threshold` or `fixedValue`"));
            None
        }
        _ => {
            errors.push(FieldError::new(path, "set only one strategy of `targetValue`, `threshold` and `fixedValue`"));
            None
        }
    }
}

fn threshold(t: &Threshold, p: &str, errors: &mut Vec<FieldError>) -> Option<Strategy> {
    let before = errors.len();
    let finite = |v: Option<f64>| v.is_none_or(f64::is_finite);
    if !finite(t.lower_bound) {
        errors.push(FieldError::new(format!("{p}.lowerBound"), "must be a finite number"));
    }
    if !finite(t.upper_bound) {
        errors.push(FieldError::new(format!("{p}.upperBound"), "must be a finite number"));
    }
    let lower = t.lower_bound.unwrap_or(f64::NEG_INFINITY);
    let upper = t.upper_bound.unwrap_or(f64::INFINITY);
    match (t.lower_bound, t.upper_bound) {
        (None, None) => errors.push(FieldError::new(p, "set `lowerBound`, `upperBound` or both")),
        (Some(lo), Some(hi)) if lo >= hi => {
            errors.push(FieldError::new(format!("{p}.lowerBound"), format!("must be less than upperBound ({hi})")))
        }
        _ => {}
    }
    let action = match (t.delta, t.percentage, t.value) {
        (Some(0), None, None) => {
            errors.push(FieldError::new(format!("{p}.delta"), "must not be 0"));
            None
        }
        (Some(d), None, None) if d.abs() > MAX_COUNT => {
            errors.push(FieldError::new(format!("{p}.delta"), format!("must be between -{MAX_COUNT} and {MAX_COUNT}")));
            None
        }
        (Some(d), None, None) => Some(ThresholdAction::Delta(d)),
        (None, Some(pct), None) if !(pct.is_finite() && pct > -100.0 && pct != 0.0 && pct <= 10_000.0) => {
            errors.push(FieldError::new(
                format!("{p}.percentage"),
                "must be greater than -100, at most 10000, and not 0",
            ));
            None
        }
        (None, Some(pct), None) => Some(ThresholdAction::Percentage(pct)),
        (None, None, Some(v)) => match crate::app::validate::check_count(v) {
            Ok(()) => Some(ThresholdAction::Value(v)),
            Err(reason) => {
                errors.push(FieldError::new(format!("{p}.value"), reason));
                None
            }
        },
        (None, None, None) => {
            errors.push(FieldError::new(p, "set one action: `delta`, `percentage` or `value`"));
            None
        }
        _ => {
            errors.push(FieldError::new(p, "set only one action of `delta`, `percentage` and `value`"));
            None
        }
    };
    match action {
        Some(action) if errors.len() == before => Some(Strategy::Threshold { lower, upper, action }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{FixedValue, PrometheusQuery, ScaleDown, TargetValue};

    fn check(name: &str) -> ScalingCheck {
        ScalingCheck {
            name: name.into(),
            prometheus: PrometheusQuery {
                address: "http://prometheus:9090".into(),
                query: r#"avg(cpu{job="{{ .JobID }}",group="{{ .Group }}"})"#.into(),
                timeout: None,
                headers: Default::default(),
            },
            group: None,
            on_error: None,
            target_value: Some(TargetValue { target: 70.0, tolerance: Some(0.1) }),
            threshold: None,
            fixed_value: None,
        }
    }

    fn record() -> Autoscaling {
        Autoscaling {
            min: 2,
            max: 20,
            group: None,
            evaluation_interval: None,
            cooldown: Some(HumanDuration::from_secs(120)),
            cooldown_up: None,
            scale_up: None,
            scale_down: Some(ScaleDown { stabilization_window: None, max_step: Some(2) }),
            on_error: None,
            dry_run: false,
            checks: vec![check("cpu")],
        }
    }

    fn paths(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn from_record_should_fill_defaults_and_resolve_the_only_group() {
        let policy = Policy::from_record(&record(), &["web".into()]).expect("valid");
        assert_eq!(policy.group, "web");
        assert_eq!(policy.evaluation_interval, DEFAULT_EVALUATION_INTERVAL);
        assert_eq!(policy.cooldown_up, Duration::from_secs(120), "cooldownUp defaults to cooldown");
        assert_eq!(policy.scale_down_max_step, Some(2));
        assert_eq!(policy.scale_up_max_step, None);
        assert_eq!(policy.stabilization_window, DEFAULT_STABILIZATION_WINDOW);
        assert_eq!(policy.checks[0].on_error, OnError::Hold);
        assert_eq!(policy.checks[0].strategy, Strategy::TargetValue { target: 70.0, tolerance: 0.1 });
    }

    #[test]
    fn from_record_should_require_a_group_when_the_job_has_several() {
        let groups = ["api".to_string(), "worker".to_string()];
        let errors = Policy::from_record(&record(), &groups).expect_err("no group");
        assert_eq!(paths(&errors), ["spec.autoscaling.group"]);
        let mut a = record();
        a.group = Some("db".into());
        assert_eq!(paths(&Policy::from_record(&a, &groups).expect_err("unknown group")), ["spec.autoscaling.group"]);
        a.group = Some("worker".into());
        assert_eq!(Policy::from_record(&a, &groups).map(|p| p.group), Ok("worker".to_string()));
    }

    #[test]
    fn from_record_should_collect_every_error_with_its_path() {
        let mut a = record();
        a.min = 5;
        a.max = 3;
        a.evaluation_interval = Some(HumanDuration::from_secs(0));
        let mut none = check("cpu");
        none.target_value = None;
        let mut two = check("cpu");
        two.fixed_value = Some(FixedValue { value: 3 });
        let mut bad = check("mem");
        bad.prometheus.address = "prometheus:9090".into();
        bad.prometheus.query = "x{v=\"{{ .Version }}\"}".into();
        bad.target_value = Some(TargetValue { target: 0.0, tolerance: Some(-0.1) });
        a.checks = vec![check("cpu"), none, two, bad];
        let errors = Policy::from_record(&a, &["web".into()]).expect_err("invalid");
        assert_eq!(
            paths(&errors),
            [
                "spec.autoscaling.min",
                "spec.autoscaling.evaluationInterval",
                "spec.autoscaling.checks[1].name",
                "spec.autoscaling.checks[1]",
                "spec.autoscaling.checks[2].name",
                "spec.autoscaling.checks[2]",
                "spec.autoscaling.checks[3].prometheus.address",
                "spec.autoscaling.checks[3].prometheus.query",
                "spec.autoscaling.checks[3].targetValue.target",
                "spec.autoscaling.checks[3].targetValue.tolerance",
            ]
        );
        assert!(errors[7].reason.contains(".Version"), "{}", errors[7]);
    }

    #[test]
    fn threshold_should_reject_bounds_and_actions_that_make_no_sense() {
        let t =
            |lo, hi, delta, pct, value| Threshold { lower_bound: lo, upper_bound: hi, delta, percentage: pct, value };
        let run = |t: Threshold| {
            let mut errors = Vec::new();
            let s = threshold(&t, "t", &mut errors);
            (s, errors.into_iter().map(|e| e.path).collect::<Vec<_>>())
        };
        assert_eq!(run(t(Some(5.0), Some(5.0), Some(1), None, None)).1, ["t.lowerBound"]);
        assert_eq!(run(t(None, None, Some(1), None, None)).1, ["t"]);
        assert_eq!(run(t(Some(1.0), None, None, None, None)).1, ["t"]);
        assert_eq!(run(t(Some(1.0), None, Some(1), Some(5.0), None)).1, ["t"]);
        assert_eq!(run(t(Some(1.0), None, Some(0), None, None)).1, ["t.delta"]);
        assert_eq!(run(t(Some(1.0), None, None, Some(-100.0), None)).1, ["t.percentage"]);
        assert_eq!(run(t(Some(1.0), None, None, None, Some(-1))).1, ["t.value"]);
        assert_eq!(
            run(t(None, Some(10.0), None, Some(-20.0), None)).0,
            Some(Strategy::Threshold {
                lower: f64::NEG_INFINITY,
                upper: 10.0,
                action: ThresholdAction::Percentage(-20.0)
            })
        );
    }
}
