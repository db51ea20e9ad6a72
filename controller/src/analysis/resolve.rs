//! From a run in status to the calls that measure it: the step's template (or webhook) in the record, its `args`,
//! and the rollout's versions, rendered into [`Request`]s. Pure.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::provider::Request;
use crate::app::{AnalysisStep, AnalysisTemplate, AppKey, CanaryStep, HumanDuration, Record, Strategy, WebMetric};
use crate::prometheus::{QueryTemplate, Scope, Vars};
use crate::rollout::CompiledTemplate;
use crate::rollout::{RolloutStatus, RunId, StepRef};
use crate::store::Records;

/// The template name a webhook step's run carries (contract 2 of the issue #8 plan).
pub const WEBHOOK_RUN: &str = "webhook";

/// How many webhook calls in a row may fail to get an answer before the step fails (a status code that is not
/// expected fails it at once).
pub const WEBHOOK_ERROR_LIMIT: i64 = 3;

/// What the analysis stage needs of an app's record at its current generation.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSpec {
    /// The record's generation: only runs of this generation are measured (an older rollout's steps may name
    /// templates the record no longer has).
    pub generation: u64,
    /// The Nomad job ID (`{{ .JobID }}`).
    pub job_id: String,
    /// `{{ .Group }}`: the first group with canaries, else the first group.
    pub group: String,
    /// `spec.strategy`.
    pub strategy: Arc<Strategy>,
    /// `spec.analysis`.
    pub analysis: Arc<BTreeMap<String, AnalysisTemplate>>,
}

/// Where the analysis stage reads records: the records store in the controller, a map in tests.
pub trait Specs: Send + Sync + 'static {
    /// The spec of `app`, if its record is valid.
    fn spec(&self, app: &AppKey) -> Option<RunSpec>;
    /// A number that changes whenever a record changes (to retry runs that could not be resolved yet).
    fn revision(&self) -> u64;
}

impl Specs for Records {
    fn spec(&self, app: &AppKey) -> Option<RunSpec> {
        let record = self.get(app)?;
        let Record::Valid(v) = record.as_ref() else { return None };
        Some(RunSpec {
            generation: v.generation,
            job_id: v.job_id.clone(),
            group: measured_group(&v.job.value()),
            strategy: v.strategy.clone(),
            analysis: v.analysis.clone(),
        })
    }

    fn revision(&self) -> u64 {
        Records::revision(self)
    }
}

/// The group `{{ .Group }}` names: the first with `Update.Canary > 0`, else the first.
pub fn measured_group(job: &serde_json::Value) -> String {
    let groups = job.get("TaskGroups").and_then(serde_json::Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let canary = |g: &&serde_json::Value| {
        g.get("Update").and_then(|u| u.get("Canary")).and_then(serde_json::Value::as_i64).unwrap_or(0) > 0
    };
    let name = |g: &serde_json::Value| g.get("Name").and_then(serde_json::Value::as_str).map(str::to_string);
    groups.iter().find(canary).or(groups.first()).and_then(name).unwrap_or_default()
}

/// What a run measures.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// An analysis template: values judged by its conditions.
    Analysis,
    /// A webhook call: its status code decides.
    Webhook {
        /// The codes that pass; empty: any 2xx.
        expect_status: Vec<u16>,
    },
}

/// A run ready to measure.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// Limits, schedule and conditions.
    pub template: Arc<CompiledTemplate>,
    /// The call for the version under test.
    pub request: Request,
    /// The same call for the stable version, when a condition compares with `baseline`.
    pub baseline: Option<Request>,
    /// Analysis or webhook.
    pub kind: Kind,
}

/// The step a run belongs to, as written in the record.
enum Source<'a> {
    Analysis(&'a AnalysisStep),
    Webhook(&'a crate::app::WebhookStep),
}

fn source<'a>(strategy: &'a Strategy, id: &RunId) -> Result<Source<'a>, String> {
    let names = |a: &AnalysisStep| a.template_names().contains(&id.template.as_str());
    let analysis = |a: Option<&'a AnalysisStep>, what: &str| match a {
        Some(a) if names(a) => Ok(Source::Analysis(a)),
        _ => Err(format!("{what} does not run template {:?}", id.template)),
    };
    match id.step {
        StepRef::Step(n) => {
            let steps = strategy.canary.as_ref().map(|c| c.steps.as_slice()).unwrap_or_default();
            match steps.get(n as usize) {
                Some(CanaryStep::Analysis(a)) => analysis(Some(a), &format!("canary step {}", n + 1)),
                Some(CanaryStep::Webhook(w)) if id.template == WEBHOOK_RUN => Ok(Source::Webhook(w)),
                Some(_) => Err(format!("canary step {} is neither this analysis nor a webhook", n + 1)),
                None => Err(format!("the strategy has no canary step {}", n + 1)),
            }
        }
        StepRef::PrePromotion => analysis(
            strategy.blue_green.as_ref().and_then(|b| b.pre_promotion_analysis.as_ref()),
            "blueGreen.prePromotionAnalysis",
        ),
        StepRef::Bake => {
            let post = strategy.post_promotion.as_ref().and_then(|p| p.analysis.as_ref());
            let blue_green = strategy.blue_green.as_ref().and_then(|b| b.post_promotion_analysis.as_ref());
            analysis(post.filter(|a| names(a)).or(blue_green), "the post-promotion analysis")
        }
        other => Err(format!("step {other} runs no analysis")),
    }
}

fn render(text: &str, vars: &Vars, what: &str) -> Result<String, String> {
    let scope = Scope::all(vars.args.keys().cloned());
    let t = QueryTemplate::parse(text, &scope).map_err(|errors| {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!("{what}: {}", list.join("; "))
    })?;
    Ok(t.render(vars))
}

fn headers(h: &BTreeMap<String, String>) -> Vec<(String, String)> {
    h.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Resolves run `id` of `app` from its record's `spec` and the rollout in status. The error says why the run
/// cannot be carried out (the run then ends in `Error`).
pub fn resolve(app: &AppKey, spec: &RunSpec, rollout: &RolloutStatus, id: &RunId) -> Result<Resolved, String> {
    let strategy = spec.strategy.as_ref();
    let version = rollout.canary_version.ok_or("the rollout has no version under test yet")?;
    let stable = rollout.stable_version;
    let mut vars = Vars {
        version: version.to_string(),
        stable_version: stable.map(|v| v.to_string()).unwrap_or_default(),
        job_id: spec.job_id.clone(),
        namespace: app.namespace.clone(),
        group: spec.group.clone(),
        args: BTreeMap::new(),
    };
    match source(strategy, id)? {
        Source::Webhook(w) => {
            let url = render(&w.url, &vars, "webhook.url")?;
            let timeout = w.timeout.map_or(Duration::from_secs(10), |d| d.0);
            // A webhook run is one call: passed or failed by its status, retried only when it got no answer.
            let t = AnalysisTemplate {
                web: Some(WebMetric {
                    url: url.clone(),
                    json_path: "$".into(),
                    headers: BTreeMap::new(),
                    timeout: Some(HumanDuration(timeout)),
                }),
                interval: Some(HumanDuration(Duration::from_secs(5))),
                count: Some(1),
                consecutive_error_limit: Some(WEBHOOK_ERROR_LIMIT),
                // Never evaluated (a webhook is judged by its status code); a template must have a condition.
                success_condition: Some("true".into()),
                ..AnalysisTemplate::default()
            };
            let template = CompiledTemplate::new(&t).map_err(|e| format!("webhook: {e:?}"))?;
            let request = Request::Webhook {
                url,
                method: w.method.clone().unwrap_or_else(|| "GET".into()).to_ascii_uppercase(),
                timeout,
                headers: headers(&w.headers),
            };
            Ok(Resolved {
                template: Arc::new(template),
                request,
                baseline: None,
                kind: Kind::Webhook { expect_status: w.expect_status.clone() },
            })
        }
        Source::Analysis(step) => {
            let t = spec
                .analysis
                .get(&id.template)
                .ok_or_else(|| format!("spec.analysis has no template {:?}", id.template))?;
            vars.args = step.args.clone();
            let template = CompiledTemplate::new(t).map_err(|errors| {
                let list: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.path, e.reason)).collect();
                format!("template {:?}: {}", id.template, list.join("; "))
            })?;
            let for_version = |version: &str| -> Result<Request, String> {
                let vars = Vars { version: version.to_string(), ..vars.clone() };
                if let Some(p) = &t.prometheus {
                    Ok(Request::Prometheus {
                        address: p.address.clone(),
                        query: render(&p.query, &vars, "prometheus.query")?,
                        timeout: p.timeout.map_or(Duration::from_secs(10), |d| d.0),
                        headers: headers(&p.headers),
                    })
                } else if let Some(w) = &t.web {
                    Ok(Request::Web {
                        url: render(&w.url, &vars, "web.url")?,
                        json_path: w.json_path.clone(),
                        timeout: w.timeout.map_or(Duration::from_secs(10), |d| d.0),
                        headers: headers(&w.headers),
                    })
                } else {
                    Err(format!("template {:?} has no provider", id.template))
                }
            };
            let request = for_version(&vars.version)?;
            let baseline = match (template.needs_baseline(), stable) {
                (false, _) => None,
                // Baseline = the same query with `Version := StableVersion`.
                (true, Some(stable)) => Some(for_version(&stable.to_string())?),
                (true, None) => {
                    return Err("a condition compares with `baseline`, but there is no stable version".into());
                }
            };
            Ok(Resolved { template: Arc::new(template), request, baseline, kind: Kind::Analysis })
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::app::{CanaryStrategy, PrometheusQuery, StrategyType, WebhookStep};

    fn spec() -> RunSpec {
        let analysis = |name: &str| AnalysisStep { template: Some(name.into()), ..AnalysisStep::default() };
        let mut errors = analysis("errors");
        errors.args.insert("q".into(), "0.99".into());
        let strategy = Strategy {
            strategy_type: StrategyType::Canary,
            canary: Some(CanaryStrategy {
                replicas: 1,
                steps: vec![
                    CanaryStep::Analysis(errors),
                    CanaryStep::Webhook(WebhookStep {
                        url: "http://smoke/{{ .JobID }}/v{{ .Version }}".into(),
                        method: Some("post".into()),
                        headers: BTreeMap::new(),
                        timeout: None,
                        expect_status: vec![204],
                    }),
                    CanaryStep::Analysis(analysis("missing")),
                ],
            }),
            ..Strategy::default()
        };
        let template = AnalysisTemplate {
            prometheus: Some(PrometheusQuery {
                address: "http://prom:9090".into(),
                query: r#"q{job="{{ .JobID }}",group="{{ .Group }}",v="{{ .Version }}",ns="{{ .Namespace }}"} > {{ .Args.q }}"#.into(),
                timeout: None,
                headers: BTreeMap::from([("X-Org".to_string(), "1".to_string())]),
            }),
            failure_condition: Some("result > baseline * 2".into()),
            ..AnalysisTemplate::default()
        };
        RunSpec {
            generation: 3,
            job_id: "web".into(),
            group: "api".into(),
            strategy: Arc::new(strategy),
            analysis: Arc::new(BTreeMap::from([("errors".to_string(), template)])),
        }
    }

    fn rollout() -> RolloutStatus {
        RolloutStatus { generation: 3, canary_version: Some(7), stable_version: Some(6), ..RolloutStatus::default() }
    }

    fn id(step: u32, template: &str) -> RunId {
        RunId { generation: 3, step: StepRef::Step(step), template: template.into() }
    }

    #[test]
    fn resolve_should_render_the_query_and_its_baseline_with_the_steps_args() {
        let app = AppKey::new("prod", "web");
        let r = resolve(&app, &spec(), &rollout(), &id(0, "errors")).expect("resolves");
        let Request::Prometheus { query, headers, .. } = &r.request else { panic!("a prometheus request") };
        assert_eq!(query, r#"q{job="web",group="api",v="7",ns="prod"} > 0.99"#);
        assert_eq!(headers, &[("X-Org".to_string(), "1".to_string())]);
        let Some(Request::Prometheus { query, .. }) = &r.baseline else { panic!("a baseline") };
        assert!(query.contains(r#"v="6""#), "the baseline measures the stable version: {query}");
        assert_eq!(r.kind, Kind::Analysis);
    }

    #[test]
    fn resolve_should_make_a_webhook_one_call_with_its_status_policy() {
        let r = resolve(&AppKey::new("prod", "web"), &spec(), &rollout(), &id(1, WEBHOOK_RUN)).expect("resolves");
        assert_eq!(r.request.describe(), "POST http://smoke/web/v7");
        assert_eq!(r.kind, Kind::Webhook { expect_status: vec![204] });
        assert_eq!(r.template.schedule.count, 1);
        assert_eq!(r.template.schedule.consecutive_error_limit, WEBHOOK_ERROR_LIMIT as u32);
    }

    #[test]
    fn resolve_should_say_why_a_run_cannot_be_carried_out() {
        let app = AppKey::new("prod", "web");
        let err = |s: &RunSpec, r: &RolloutStatus, id: &RunId| resolve(&app, s, r, id).err().unwrap_or_default();
        assert!(err(&spec(), &rollout(), &id(2, "missing")).contains("no template \"missing\""));
        assert!(err(&spec(), &rollout(), &id(0, "other")).contains("does not run template"));
        assert!(err(&spec(), &rollout(), &id(9, "errors")).contains("no canary step 10"));
        let no_stable = RolloutStatus { stable_version: None, ..rollout() };
        assert!(err(&spec(), &no_stable, &id(0, "errors")).contains("no stable version"));
    }

    #[test]
    fn records_should_give_the_spec_of_a_valid_canary_record() {
        let yaml = "apiVersion: drover.io/v1alpha1\nkind: App\nmetadata: {name: web, namespace: default}\nspec:\n  \
                    template: {image: 'nginx:1.27', count: 3, ports: {http: 8080}}\n  strategy:\n    type: Canary\n    \
                    canary:\n      replicas: 1\n      steps:\n        - webhook: {url: 'http://smoke/{{ .JobID }}'}\n";
        let (mut writer, records) = crate::store::records("drover");
        let pair = crate::consul::kv::KvPair::written("drover/apps/default/web", 9, yaml.as_bytes());
        writer.apply_snapshot(&[pair]);
        let app = AppKey::new("default", "web");
        let spec = records.spec(&app).unwrap_or_else(|| panic!("a valid record: {:?}", records.get(&app)));
        assert_eq!((spec.generation, spec.job_id.as_str(), spec.group.as_str()), (9, "web", "web"));
        let rollout = RolloutStatus { generation: 9, canary_version: Some(1), ..RolloutStatus::default() };
        let id = RunId { generation: 9, step: StepRef::Step(0), template: WEBHOOK_RUN.into() };
        let r = resolve(&app, &spec, &rollout, &id).expect("resolves");
        assert_eq!(r.request.describe(), "GET http://smoke/web");
        assert_eq!(Specs::revision(&records), records.revision());
    }

    #[test]
    fn measured_group_should_prefer_the_first_group_with_canaries() {
        let job = json!({"TaskGroups": [{"Name": "a"}, {"Name": "b", "Update": {"Canary": 1}}]});
        assert_eq!(measured_group(&job), "b");
        assert_eq!(measured_group(&json!({"TaskGroups": [{"Name": "a"}]})), "a");
        assert_eq!(measured_group(&json!({})), "");
    }
}
