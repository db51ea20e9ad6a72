//! Validation of `spec.analysis` and of every place a rollout uses it (issue #8): each template is compiled with
//! [`CompiledTemplate::new`] — the function the analysis stage uses, so nothing that validates fails later — and
//! each analysis step must name templates that exist and give every `{{ .Args.NAME }}` they use.

use std::collections::BTreeMap;

use super::spec::App;
use super::strategy::{AnalysisStep, CanaryStep, Strategy};
use super::{FieldError, index_path, key_path};
use crate::prometheus::QueryTemplate;
use crate::rollout::CompiledTemplate;

/// The most templates one step runs at once: each is a run kept in status, which must stay small.
pub const MAX_STEP_TEMPLATES: usize = 10;

/// The template name a webhook step's run uses (`RunId.template`), so no analysis template may take it.
pub const WEBHOOK_RUN_NAME: &str = "webhook";

/// Every problem with `spec.analysis` and with the analysis steps and webhook URLs of `spec.strategy`.
pub(super) fn validate_analysis(app: &App, errors: &mut Vec<FieldError>) {
    let compiled = compile_templates(&app.spec.analysis, errors);
    if let Some(strategy) = &app.spec.strategy {
        for (path, step) in analysis_steps(strategy) {
            check_step(step, &path, &compiled, errors);
        }
        if let Some(canary) = &strategy.canary {
            for (i, step) in canary.steps.iter().enumerate() {
                if let CanaryStep::Webhook(hook) = step {
                    let p = format!("spec.strategy.canary.steps[{i}].webhook.url");
                    check_webhook_url(&hook.url, &p, errors);
                }
            }
        }
    }
}

/// Each template compiled, keyed by name; `None` for a template with errors (reported here, with their paths).
fn compile_templates<'a>(
    templates: &'a BTreeMap<String, super::AnalysisTemplate>,
    errors: &mut Vec<FieldError>,
) -> BTreeMap<&'a str, Option<CompiledTemplate>> {
    let mut compiled = BTreeMap::new();
    for (name, template) in templates {
        let p = key_path("spec.analysis", name);
        if let Err(reason) = check_template_name(name) {
            errors.push(FieldError::new(&p, reason));
        }
        let result =
            CompiledTemplate::new(template).map_err(|es| errors.extend(es.into_iter().map(|e| e.prefixed(&p)))).ok();
        compiled.insert(name.as_str(), result);
    }
    compiled
}

/// Names are shown in status and in `drover describe`, and key analysis runs: 1–63 of `a-z A-Z 0-9 - _`, and not
/// `webhook`, which webhook steps' runs use.
fn check_template_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().count() > 63 {
        return Err("template names are 1–63 characters".to_owned());
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(format!("`{name}` is not a template name: use a-z, A-Z, 0-9, `-` and `_`"));
    }
    if name == WEBHOOK_RUN_NAME {
        return Err(format!("`{WEBHOOK_RUN_NAME}` is reserved for webhook steps' runs: choose another name"));
    }
    Ok(())
}

/// Every analysis step of `s`, with its path.
fn analysis_steps(s: &Strategy) -> Vec<(String, &AnalysisStep)> {
    let mut steps = Vec::new();
    if let Some(canary) = &s.canary {
        for (i, step) in canary.steps.iter().enumerate() {
            if let CanaryStep::Analysis(a) = step {
                steps.push((format!("spec.strategy.canary.steps[{i}].analysis"), a));
            }
        }
    }
    if let Some(bg) = &s.blue_green {
        if let Some(a) = &bg.pre_promotion_analysis {
            steps.push(("spec.strategy.blueGreen.prePromotionAnalysis".to_owned(), a));
        }
        if let Some(a) = &bg.post_promotion_analysis {
            steps.push(("spec.strategy.blueGreen.postPromotionAnalysis".to_owned(), a));
        }
    }
    if let Some(a) = s.post_promotion.as_ref().and_then(|p| p.analysis.as_ref()) {
        steps.push(("spec.strategy.postPromotion.analysis".to_owned(), a));
    }
    steps
}

/// A step names at least one template, each one that exists, and gives every argument they use.
fn check_step(
    step: &AnalysisStep,
    p: &str,
    compiled: &BTreeMap<&str, Option<CompiledTemplate>>,
    errors: &mut Vec<FieldError>,
) {
    let count = step.template_names().len();
    if count == 0 {
        errors.push(FieldError::new(p, "name a template: `template: NAME` or `templates: [NAME, ...]`"));
    } else if count > MAX_STEP_TEMPLATES {
        errors.push(FieldError::new(
            key_path(p, "templates"),
            format!("a step runs at most {MAX_STEP_TEMPLATES} templates at once, not {count}"),
        ));
    }
    let known = || {
        if compiled.is_empty() {
            "spec.analysis defines none".to_owned()
        } else {
            format!("defined: {}", compiled.keys().copied().collect::<Vec<_>>().join(", "))
        }
    };
    let named = step
        .template
        .iter()
        .map(|name| (key_path(p, "template"), name))
        .chain(step.templates.iter().enumerate().map(|(i, name)| (index_path(&key_path(p, "templates"), i), name)));
    for (path, name) in named {
        match compiled.get(name.as_str()) {
            None => errors.push(FieldError::new(
                path,
                format!("names template `{name}`, which spec.analysis does not define ({})", known()),
            )),
            Some(None) => {} // Its own errors are reported at spec.analysis.NAME.
            Some(Some(t)) => {
                for arg in t.args().into_iter().filter(|a| !step.args.contains_key(*a)) {
                    errors.push(FieldError::new(
                        key_path(p, "args"),
                        format!(
                            "template `{name}` uses `{{{{ .Args.{arg} }}}}`, and the step's args do not give `{arg}`"
                        ),
                    ));
                }
            }
        }
    }
}

/// A webhook URL may use the rollout variables but no `{{ .Args.NAME }}` (a webhook step has no args).
fn check_webhook_url(url: &str, p: &str, errors: &mut Vec<FieldError>) {
    match QueryTemplate::parse_rollout(url) {
        Err(es) => errors.extend(es.into_iter().map(|e| FieldError::new(p, e.to_string()))),
        Ok(t) => {
            for arg in t.args() {
                errors.push(FieldError::new(
                    p,
                    format!("`{{{{ .Args.{arg} }}}}` has no value: a webhook step has no args (use a fixed value)"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::strategy::{
        BlueGreenStrategy, CanaryStrategy, PostPromotion, PrometheusQuery, StrategyType, WebhookStep,
    };
    use crate::app::test_util::template_app;
    use crate::app::{AnalysisTemplate, HumanDuration, validate};

    fn template(query: &str) -> AnalysisTemplate {
        AnalysisTemplate {
            prometheus: Some(PrometheusQuery {
                address: "http://prometheus:9090".into(),
                query: query.into(),
                timeout: None,
                headers: BTreeMap::new(),
            }),
            success_condition: Some("result < 0.01".into()),
            ..AnalysisTemplate::default()
        }
    }

    fn step(template: Option<&str>, templates: &[&str], args: &[(&str, &str)]) -> AnalysisStep {
        AnalysisStep {
            template: template.map(str::to_owned),
            templates: templates.iter().map(|s| (*s).to_owned()).collect(),
            args: args.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        }
    }

    fn app_with(steps: Vec<CanaryStep>, analysis: &[(&str, AnalysisTemplate)]) -> App {
        let mut app = template_app("web").with_strategy(Strategy {
            strategy_type: StrategyType::Canary,
            canary: Some(CanaryStrategy { replicas: 1, steps }),
            ..Strategy::default()
        });
        app.spec.analysis = analysis.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
        app
    }

    fn errors(app: &App) -> Vec<(String, String)> {
        validate(app, None).into_iter().map(|e| (e.path, e.reason)).collect()
    }

    #[test]
    fn validate_should_accept_steps_that_name_defined_templates_with_their_args() {
        let app = app_with(
            vec![
                CanaryStep::Analysis(step(Some("errors"), &[], &[("route", "/")])),
                CanaryStep::Analysis(step(Some("errors"), &["latency"], &[("route", "/"), ("unused", "x")])),
            ],
            &[
                ("errors", template(r#"rate(e{route="{{ .Args.route }}",v="{{ .Version }}"}[1m])"#)),
                ("latency", template("p99{job=\"{{ .JobID }}\"}")),
            ],
        );
        assert_eq!(errors(&app), Vec::<(String, String)>::new());
    }

    #[test]
    fn validate_should_name_the_step_that_refers_to_a_missing_template_or_argument() {
        let app = app_with(
            vec![
                CanaryStep::Pause(Default::default()),
                CanaryStep::Analysis(step(None, &[], &[])),
                CanaryStep::Analysis(step(Some("eror-rate"), &["errors", "latency"], &[])),
            ],
            &[("errors", template(r#"rate(e{route="{{ .Args.route }}"}[1m])"#))],
        );
        let got = errors(&app);
        let paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.strategy.canary.steps[1].analysis",
                "spec.strategy.canary.steps[2].analysis.template",
                "spec.strategy.canary.steps[2].analysis.args",
                "spec.strategy.canary.steps[2].analysis.templates[1]",
            ]
        );
        assert_eq!(got[1].1, "names template `eror-rate`, which spec.analysis does not define (defined: errors)");
        assert_eq!(got[2].1, "template `errors` uses `{{ .Args.route }}`, and the step's args do not give `route`");
    }

    #[test]
    fn validate_should_report_template_errors_under_spec_analysis() {
        let mut bad = template("{{ .Versoin }}");
        bad.failure_condition = Some("result >> 1".into());
        let app = app_with(
            vec![CanaryStep::Analysis(step(Some("bad"), &[], &[]))],
            &[("bad", bad), ("webhook", template("up")), ("no spaces", template("up"))],
        );
        let paths: Vec<String> = errors(&app).into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            [
                "spec.analysis.bad.prometheus.query",
                "spec.analysis.bad.failureCondition",
                "spec.analysis[\"no spaces\"]",
                "spec.analysis.webhook",
            ]
        );
    }

    #[test]
    fn validate_should_check_blue_green_and_post_promotion_analysis_and_webhook_urls() {
        let mut app = template_app("web").with_strategy(Strategy {
            strategy_type: StrategyType::BlueGreen,
            blue_green: Some(BlueGreenStrategy {
                pre_promotion_analysis: Some(step(Some("missing"), &[], &[])),
                post_promotion_analysis: Some(step(Some("ok"), &[], &[])),
                ..BlueGreenStrategy::default()
            }),
            ..Strategy::default()
        });
        app.spec.analysis.insert("ok".into(), template("up"));
        assert_eq!(
            errors(&app).into_iter().map(|(p, _)| p).collect::<Vec<_>>(),
            ["spec.strategy.blueGreen.prePromotionAnalysis.template"]
        );
        let mut rolling = template_app("web").with_strategy(Strategy {
            post_promotion: Some(PostPromotion {
                bake: HumanDuration::from_secs(60),
                analysis: Some(step(Some("ok"), &[], &[("x", "1")])),
            }),
            ..Strategy::default()
        });
        rolling.spec.analysis.insert("ok".into(), template("up{x=\"{{ .Args.y }}\"}"));
        assert_eq!(
            errors(&rolling).into_iter().map(|(p, _)| p).collect::<Vec<_>>(),
            ["spec.strategy.postPromotion.analysis.args"]
        );
        let hook = |url: &str| {
            CanaryStep::Webhook(WebhookStep {
                url: url.into(),
                method: None,
                headers: BTreeMap::new(),
                timeout: None,
                expect_status: Vec::new(),
            })
        };
        let app = app_with(
            vec![
                hook("http://smoke/{{ .Version }}/{{ .Namespace }}"),
                hook("http://smoke/{{ .Args.x }}"),
                hook("http://smoke/{{ .Nope }}"),
            ],
            &[],
        );
        assert_eq!(
            errors(&app).into_iter().map(|(p, _)| p).collect::<Vec<_>>(),
            ["spec.strategy.canary.steps[1].webhook.url", "spec.strategy.canary.steps[2].webhook.url"]
        );
    }
}
