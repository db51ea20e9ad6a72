//! Validation of `spec.strategy` (DESIGN §4, issue #8): the rolling fields' ordering rules (api-contract B12), the
//! fields each strategy type allows, canary steps and what they name.
//!
//! Canary and blue-green rollouts are aborted by failing the Nomad deployment so that Nomad reverts; that needs
//! `AutoRevert`, so `autoRevert: false` is refused with them instead of being rendered into a rollout that an abort
//! would leave half-done.

use std::time::Duration;

use super::duration::HumanDuration;
use super::spec::App;
use super::strategy::{CanaryStep, CanaryStrategy, PauseStep, Strategy, StrategyType, WebhookStep};
use super::validate::{
    DEFAULT_HEALTHY_DEADLINE, DEFAULT_MIN_HEALTHY_TIME, DEFAULT_PROGRESS_DEADLINE, GroupCount, MAX_COUNT, check_range,
    group_counts,
};
use super::{FieldError, index_path, key_path};

/// The path of the strategy in a record.
const P: &str = "spec.strategy";

/// The most steps a canary may list: far more than any real rollout, and a bound on how long one can take.
pub const MAX_STEPS: usize = 100;

/// The HTTP methods a webhook step may use: a smoke test reads or pokes, it never deletes.
pub const WEBHOOK_METHODS: [&str; 4] = ["GET", "POST", "PUT", "HEAD"];

/// Every problem with `s`, the strategy of `app`.
pub(super) fn validate_strategy(app: &App, s: &Strategy, errors: &mut Vec<FieldError>) {
    validate_rolling_fields(s, errors);
    let progressive = matches!(s.strategy_type, StrategyType::Canary | StrategyType::BlueGreen);
    if progressive && s.auto_revert == Some(false) {
        errors.push(FieldError::new(
            format!("{P}.autoRevert"),
            format!(
                "must be true (or left out) with type {:?}: Drover aborts a rollout by failing the Nomad deployment \
                 so that Nomad reverts to the stable version, which needs auto-revert",
                s.strategy_type
            ),
        ));
    }
    match (s.strategy_type, &s.canary) {
        (StrategyType::Canary, Some(canary)) => validate_canary(canary, &group_counts(app), errors),
        (StrategyType::Canary, None) => errors.push(FieldError::new(
            format!("{P}.canary"),
            "is required with type Canary: give at least `replicas` (and the `steps` to run before promotion)",
        )),
        (_, Some(_)) => errors.push(FieldError::new(
            format!("{P}.canary"),
            format!("is only valid with type Canary, not {:?}", s.strategy_type),
        )),
        (_, None) => {}
    }
    if let Some(autoscaling) = &app.spec.autoscaling {
        match (s.strategy_type, &s.canary) {
            (StrategyType::Canary, Some(canary)) if canary.replicas > autoscaling.min && canary.replicas >= 1 => {
                errors.push(FieldError::new(
                    format!("{P}.canary.replicas"),
                    format!(
                        "must be at most spec.autoscaling.min ({}): the autoscaler may scale the group down to that",
                        autoscaling.min
                    ),
                ));
            }
            // Blue-green places as many new instances as the group runs, a number rendered into `Update.Canary`
            // when the job is registered, while the autoscaler changes the count between registers.
            (StrategyType::BlueGreen, _) => errors.push(FieldError::new(
                format!("{P}.type"),
                "BlueGreen cannot be used with spec.autoscaling: the new set's size is rendered at registration \
                 while the autoscaler changes the count; use Canary",
            )),
            _ => {}
        }
    }
    if s.blue_green.is_some() && s.strategy_type != StrategyType::BlueGreen {
        errors.push(FieldError::new(
            format!("{P}.blueGreen"),
            format!("is only valid with type BlueGreen, not {:?}", s.strategy_type),
        ));
    }
    if let Some(bg) = &s.blue_green
        && bg.auto_promote_after.is_some()
        && !bg.auto_promote
    {
        errors.push(FieldError::new(
            format!("{P}.blueGreen.autoPromoteAfter"),
            "is only valid with autoPromote: true (without it the rollout waits for `drover promote`)",
        ));
    }
    if let Some(post) = &s.post_promotion {
        if s.strategy_type == StrategyType::BlueGreen {
            errors.push(FieldError::new(
                format!("{P}.postPromotion"),
                "is for Canary and Rolling; with BlueGreen use blueGreen.postPromotionAnalysis",
            ));
        }
        if post.bake.get().is_zero() {
            errors.push(FieldError::new(format!("{P}.postPromotion.bake"), "must be greater than 0"));
        }
    }
}

/// A canary's replicas against every group's count, and its steps.
fn validate_canary(canary: &CanaryStrategy, counts: &[GroupCount], errors: &mut Vec<FieldError>) {
    let replicas_path = format!("{P}.canary.replicas");
    if canary.replicas < 1 {
        errors.push(FieldError::new(&replicas_path, "must be ≥ 1 (a canary rollout needs at least one canary)"));
    } else if canary.replicas > MAX_COUNT {
        errors.push(FieldError::new(&replicas_path, format!("must be ≤ {MAX_COUNT}")));
    } else {
        for group in counts.iter().filter(|g| g.count >= 0 && canary.replicas > g.count) {
            errors.push(FieldError::new(
                &replicas_path,
                format!(
                    "must be at most the count of group `{}` ({}, at {}): more canaries than instances would never \
                     finish placing",
                    group.name, group.count, group.path
                ),
            ));
        }
    }
    let steps = format!("{P}.canary.steps");
    if canary.steps.len() > MAX_STEPS {
        errors.push(FieldError::new(&steps, format!("must list at most {MAX_STEPS} steps")));
    }
    for (i, step) in canary.steps.iter().enumerate() {
        let sp = index_path(&steps, i);
        match step {
            CanaryStep::Pause(pause) => validate_pause(pause, &key_path(&sp, "pause"), errors),
            CanaryStep::Webhook(hook) => validate_webhook(hook, &key_path(&sp, "webhook"), errors),
            // Checked against spec.analysis by the analysis validation.
            CanaryStep::Analysis(_) => {}
        }
    }
}

/// A timed pause (`duration > 0`, nothing else) or a manual gate (optional `timeout > 0`, `onTimeout` with it).
fn validate_pause(pause: &PauseStep, p: &str, errors: &mut Vec<FieldError>) {
    match pause.duration {
        Some(d) => {
            if d.get().is_zero() {
                errors.push(FieldError::new(
                    key_path(p, "duration"),
                    "must be greater than 0 (leave it out for a manual gate)",
                ));
            }
            if pause.timeout.is_some() {
                errors.push(FieldError::new(
                    key_path(p, "timeout"),
                    "is only for manual gates (a pause without `duration`): a timed pause ends by itself",
                ));
            }
        }
        None => {
            if pause.timeout.is_some_and(|t| t.get().is_zero()) {
                errors.push(FieldError::new(key_path(p, "timeout"), "must be greater than 0"));
            }
        }
    }
    if pause.on_timeout.is_some() && pause.timeout.is_none() {
        errors.push(FieldError::new(
            key_path(p, "onTimeout"),
            "is only valid with `timeout` on a manual gate (without a timeout the gate waits for a person)",
        ));
    }
}

/// A webhook step's URL, method, timeout and expected statuses. Template variables in the URL are checked with the
/// analysis templates' (they use the same variables).
fn validate_webhook(hook: &WebhookStep, p: &str, errors: &mut Vec<FieldError>) {
    if let Err(reason) = check_http_url(&hook.url) {
        errors.push(FieldError::new(key_path(p, "url"), reason));
    }
    if let Some(method) = &hook.method
        && !WEBHOOK_METHODS.contains(&method.as_str())
    {
        errors.push(FieldError::new(
            key_path(p, "method"),
            format!("must be one of {} (upper case), not `{method}`", WEBHOOK_METHODS.join(", ")),
        ));
    }
    crate::rollout::check_headers(&key_path(p, "headers"), &hook.headers, errors);
    if let Some(timeout) = hook.timeout
        && timeout.get().is_zero()
    {
        errors.push(FieldError::new(key_path(p, "timeout"), "must be greater than 0"));
    }
    let statuses = key_path(p, "expectStatus");
    for (i, status) in hook.expect_status.iter().enumerate() {
        check_range(&index_path(&statuses, i), i64::from(*status), 100, 599, errors);
    }
}

/// An `http://` or `https://` URL with a host. Template variables (`{{ .Version }}`) may appear after the scheme;
/// they are checked on their own.
pub(crate) fn check_http_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("`{url}` is not an http(s) URL: it must start with `http://` or `https://`"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    if without_variables(url).chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{url}` must not contain whitespace outside `{{{{ }}}}` variables"));
    }
    Ok(())
}

/// `text` with every closed `{{ … }}` taken out (the spaces inside a variable reference are not the URL's).
fn without_variables(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        match rest[start..].find("}}") {
            Some(end) => rest = &rest[start + end + 2..],
            None => {
                rest = &rest[start..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The rolling fields' rules (api-contract B12), plus Drover's own: `maxParallel ≥ 1` (0 would turn deployments
/// off, and Drover follows deployments) and `progressDeadline > 0` (every rollout must end by a deadline, DESIGN §4).
fn validate_rolling_fields(s: &Strategy, errors: &mut Vec<FieldError>) {
    if let Some(n) = s.max_parallel {
        check_range("spec.strategy.maxParallel", n, 1, MAX_COUNT, errors);
    }
    let min_healthy = s.min_healthy_time.map_or(DEFAULT_MIN_HEALTHY_TIME, HumanDuration::get);
    let healthy = s.healthy_deadline.map_or(DEFAULT_HEALTHY_DEADLINE, HumanDuration::get);
    let progress = s.progress_deadline.map_or(DEFAULT_PROGRESS_DEADLINE, HumanDuration::get);
    let show = |d: Duration| HumanDuration::new(d).to_string();
    if s.healthy_deadline.is_some() && healthy.is_zero() {
        errors.push(FieldError::new("spec.strategy.healthyDeadline", "must be greater than 0"));
    } else if min_healthy >= healthy {
        let (path, reason) = if s.min_healthy_time.is_some() {
            ("spec.strategy.minHealthyTime", format!("must be less than healthyDeadline ({})", show(healthy)))
        } else {
            ("spec.strategy.healthyDeadline", format!("must be greater than minHealthyTime ({})", show(min_healthy)))
        };
        errors.push(FieldError::new(path, reason));
    }
    if s.progress_deadline.is_some() && progress.is_zero() {
        errors.push(FieldError::new(
            "spec.strategy.progressDeadline",
            "must be greater than 0 (every rollout must end by a deadline)",
        ));
    } else if !healthy.is_zero() && healthy >= progress {
        let (path, reason) = if s.healthy_deadline.is_some() {
            ("spec.strategy.healthyDeadline", format!("must be less than progressDeadline ({})", show(progress)))
        } else {
            ("spec.strategy.progressDeadline", format!("must be greater than healthyDeadline ({})", show(healthy)))
        };
        errors.push(FieldError::new(path, reason));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::strategy::{BlueGreenStrategy, PostPromotion};
    use crate::app::test_util::{job_app, template_app};
    use crate::app::{OnTimeout, validate};

    fn paths(app: &App) -> Vec<String> {
        validate(app, None).into_iter().map(|e| e.path).collect()
    }

    fn canary(replicas: i64, steps: Vec<CanaryStep>) -> Strategy {
        Strategy {
            strategy_type: StrategyType::Canary,
            canary: Some(CanaryStrategy { replicas, steps }),
            ..Strategy::default()
        }
    }

    #[test]
    fn strategy_should_enforce_deadline_ordering_with_defaults() {
        let check = |s: Strategy| {
            let mut errors = Vec::new();
            validate_rolling_fields(&s, &mut errors);
            errors.into_iter().map(|e| e.path).collect::<Vec<_>>()
        };
        let s = Strategy { min_healthy_time: Some(HumanDuration::from_secs(600)), ..Strategy::default() };
        assert_eq!(check(s), ["spec.strategy.minHealthyTime"]);
        let s = Strategy { healthy_deadline: Some(HumanDuration::from_secs(900)), ..Strategy::default() };
        assert_eq!(check(s), ["spec.strategy.healthyDeadline"]);
        let s = Strategy {
            max_parallel: Some(0),
            progress_deadline: Some(HumanDuration::from_secs(0)),
            ..Strategy::default()
        };
        assert_eq!(check(s), ["spec.strategy.maxParallel", "spec.strategy.progressDeadline"]);
    }

    #[test]
    fn validate_should_accept_canary_and_blue_green_records() {
        let steps = vec![
            CanaryStep::Pause(PauseStep { duration: Some(HumanDuration::from_secs(30)), ..PauseStep::default() }),
            CanaryStep::Pause(PauseStep {
                timeout: Some(HumanDuration::from_secs(600)),
                on_timeout: Some(OnTimeout::Promote),
                ..PauseStep::default()
            }),
            CanaryStep::Webhook(WebhookStep {
                url: "http://smoke.service.consul:8080/check?v={{ .Version }}".into(),
                method: Some("POST".into()),
                headers: Default::default(),
                timeout: Some(HumanDuration::from_secs(5)),
                expect_status: vec![200, 204],
            }),
        ];
        let mut s = canary(3, steps);
        s.post_promotion = Some(PostPromotion { bake: HumanDuration::from_secs(300), analysis: None });
        assert_eq!(paths(&template_app("web").with_strategy(s)), Vec::<String>::new());
        let bg = Strategy {
            strategy_type: StrategyType::BlueGreen,
            auto_revert: Some(true),
            blue_green: Some(BlueGreenStrategy {
                auto_promote: true,
                auto_promote_after: Some(HumanDuration::from_secs(60)),
                ..BlueGreenStrategy::default()
            }),
            ..Strategy::default()
        };
        assert_eq!(paths(&template_app("web").with_strategy(bg)), Vec::<String>::new());
    }

    #[test]
    fn validate_should_require_canary_settings_with_type_canary_only() {
        let missing = Strategy { strategy_type: StrategyType::Canary, ..Strategy::default() };
        assert_eq!(paths(&template_app("web").with_strategy(missing)), ["spec.strategy.canary"]);
        let mut stray = canary(1, Vec::new());
        stray.strategy_type = StrategyType::Rolling;
        stray.blue_green = Some(BlueGreenStrategy::default());
        assert_eq!(
            paths(&template_app("web").with_strategy(stray)),
            ["spec.strategy.canary", "spec.strategy.blueGreen"]
        );
    }

    #[test]
    fn validate_should_refuse_auto_revert_false_with_progressive_strategies() {
        for s in [
            Strategy { auto_revert: Some(false), ..canary(1, Vec::new()) },
            Strategy { strategy_type: StrategyType::BlueGreen, auto_revert: Some(false), ..Strategy::default() },
        ] {
            let errors = validate(&template_app("web").with_strategy(s), None);
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(errors[0].path, "spec.strategy.autoRevert");
            assert!(errors[0].reason.contains("Nomad reverts"), "{}", errors[0].reason);
        }
        let rolling = Strategy { auto_revert: Some(false), ..Strategy::default() };
        assert_eq!(paths(&template_app("web").with_strategy(rolling)), Vec::<String>::new());
    }

    #[test]
    fn validate_should_bound_canary_replicas_by_every_group_count() {
        // template_app has count 3.
        assert_eq!(paths(&template_app("web").with_strategy(canary(0, Vec::new()))), ["spec.strategy.canary.replicas"]);
        assert_eq!(paths(&template_app("web").with_strategy(canary(4, Vec::new()))), ["spec.strategy.canary.replicas"]);
        assert_eq!(paths(&template_app("web").with_strategy(canary(3, Vec::new()))), Vec::<String>::new());
        // A job: group `a` has 5, group `b` Nomad's default 1, so 2 canaries do not fit `b`.
        let job = serde_json::json!({"TaskGroups": [
            {"Name": "a", "Count": 5, "Tasks": [{"Name": "a", "Driver": "docker", "Config": {"image": "x"}}]},
            {"Name": "b", "Tasks": [{"Name": "b", "Driver": "docker", "Config": {"image": "x"}}]}
        ]});
        let errors = validate(&job_app("api", job).with_strategy(canary(2, Vec::new())), None);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].reason.contains("group `b` (1, at spec.job.TaskGroups[1].Count)"), "{}", errors[0].reason);
    }

    #[test]
    fn validate_should_check_pause_and_webhook_steps_with_their_paths() {
        let steps = vec![
            CanaryStep::Pause(PauseStep { duration: Some(HumanDuration::from_secs(0)), ..PauseStep::default() }),
            CanaryStep::Pause(PauseStep {
                duration: Some(HumanDuration::from_secs(5)),
                timeout: Some(HumanDuration::from_secs(5)),
                ..PauseStep::default()
            }),
            CanaryStep::Pause(PauseStep { on_timeout: Some(OnTimeout::Abort), ..PauseStep::default() }),
            CanaryStep::Pause(PauseStep { timeout: Some(HumanDuration::from_secs(0)), ..PauseStep::default() }),
            CanaryStep::Webhook(WebhookStep {
                url: "ftp://smoke/x".into(),
                method: Some("DELETE".into()),
                headers: Default::default(),
                timeout: Some(HumanDuration::from_secs(0)),
                expect_status: vec![200, 99, 600],
            }),
            CanaryStep::Webhook(WebhookStep {
                url: "http:///x".into(),
                method: None,
                headers: Default::default(),
                timeout: None,
                expect_status: Vec::new(),
            }),
        ];
        assert_eq!(
            paths(&template_app("web").with_strategy(canary(1, steps))),
            [
                "spec.strategy.canary.steps[0].pause.duration",
                "spec.strategy.canary.steps[1].pause.timeout",
                "spec.strategy.canary.steps[2].pause.onTimeout",
                "spec.strategy.canary.steps[3].pause.timeout",
                "spec.strategy.canary.steps[4].webhook.url",
                "spec.strategy.canary.steps[4].webhook.method",
                "spec.strategy.canary.steps[4].webhook.timeout",
                "spec.strategy.canary.steps[4].webhook.expectStatus[1]",
                "spec.strategy.canary.steps[4].webhook.expectStatus[2]",
                "spec.strategy.canary.steps[5].webhook.url",
            ]
        );
    }

    #[test]
    fn validate_should_check_post_promotion_and_blue_green_fields() {
        let mut s = Strategy {
            strategy_type: StrategyType::BlueGreen,
            blue_green: Some(BlueGreenStrategy {
                auto_promote_after: Some(HumanDuration::from_secs(5)),
                ..BlueGreenStrategy::default()
            }),
            post_promotion: Some(PostPromotion { bake: HumanDuration::from_secs(0), analysis: None }),
            ..Strategy::default()
        };
        assert_eq!(
            paths(&template_app("web").with_strategy(s.clone())),
            [
                "spec.strategy.blueGreen.autoPromoteAfter",
                "spec.strategy.postPromotion",
                "spec.strategy.postPromotion.bake"
            ]
        );
        s.strategy_type = StrategyType::Rolling;
        s.blue_green = None;
        assert_eq!(paths(&template_app("web").with_strategy(s)), ["spec.strategy.postPromotion.bake"]);
    }

    #[test]
    fn validate_should_fit_canaries_within_the_autoscaling_minimum_and_refuse_autoscaled_blue_green() {
        let autoscaled = |strategy: Strategy| {
            let mut app = template_app("web").with_strategy(strategy);
            app.spec.autoscaling = Some(
                serde_json::from_value(serde_json::json!({
                    "min": 2, "max": 10,
                    "checks": [{"name": "cpu", "prometheus": {"address": "http://p:9090", "query": "avg(cpu)"},
                                "targetValue": {"target": 70}}]
                }))
                .expect("an autoscaling block"),
            );
            app
        };
        assert_eq!(paths(&autoscaled(canary(2, Vec::new()))), Vec::<String>::new());
        assert_eq!(paths(&autoscaled(canary(3, Vec::new()))), ["spec.strategy.canary.replicas"]);
        let bg = Strategy { strategy_type: StrategyType::BlueGreen, ..Strategy::default() };
        assert_eq!(paths(&autoscaled(bg)), ["spec.strategy.type"]);
    }

    #[test]
    fn validate_should_bound_steps_and_check_webhook_headers() {
        let pause =
            CanaryStep::Pause(PauseStep { duration: Some(HumanDuration::from_secs(1)), ..PauseStep::default() });
        let many = canary(1, vec![pause; MAX_STEPS + 1]);
        assert_eq!(paths(&template_app("web").with_strategy(many)), ["spec.strategy.canary.steps"]);
        let hook = CanaryStep::Webhook(WebhookStep {
            url: "http://smoke/".into(),
            method: None,
            headers: [("X Token".to_owned(), "a".to_owned()), ("Authorization".to_owned(), "b\r\nc".to_owned())]
                .into_iter()
                .collect(),
            timeout: None,
            expect_status: Vec::new(),
        });
        assert_eq!(
            paths(&template_app("web").with_strategy(canary(1, vec![hook]))),
            [
                "spec.strategy.canary.steps[0].webhook.headers.Authorization",
                "spec.strategy.canary.steps[0].webhook.headers[\"X Token\"]",
            ]
        );
    }

    #[test]
    fn check_http_url_should_accept_only_http_and_https_with_a_host() {
        assert!(check_http_url("http://prometheus:9090").is_ok());
        assert!(check_http_url("https://p.example.com/api?x=1").is_ok());
        for bad in ["prometheus:9090", "ftp://x", "http://", "https:///path", "http://a b", ""] {
            assert!(check_http_url(bad).is_err(), "{bad:?}");
        }
    }
}
