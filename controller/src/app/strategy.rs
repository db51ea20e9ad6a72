//! Rollout strategy: the record types for DESIGN §4 (analysis templates are in [`super::analysis`], autoscaling,
//! §5, in [`super::autoscaling`]).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::HumanDuration;

/// How a new version of the job replaces the old one. Rendered into the `Update` block of
/// every task group (Nomad's `UpdateStrategy`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Strategy {
    /// `Rolling` (default), `Canary` or `BlueGreen`.
    #[serde(rename = "type", default)]
    pub strategy_type: StrategyType,
    /// How many instances are replaced at once, 1–10000. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_parallel: Option<i64>,
    /// How long a new instance must be healthy before it counts. May be 0; must be less than
    /// `healthyDeadline`. Default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_healthy_time: Option<HumanDuration>,
    /// How long a new instance has to become healthy. Greater than 0 and less than
    /// `progressDeadline`. Default `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_deadline: Option<HumanDuration>,
    /// How long the rollout may go without an instance becoming healthy before it fails.
    /// Greater than `healthyDeadline` (0, Nomad's "fail at the first unhealthy instance", is not
    /// accepted: every rollout must end by a deadline). Default `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline: Option<HumanDuration>,
    /// Whether Nomad reverts to the last stable version when a rollout fails. Default false with `Rolling`; always
    /// true with `Canary` and `BlueGreen` (Drover aborts those by failing the deployment so that Nomad reverts, so
    /// `false` is refused there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_revert: Option<bool>,
    /// Canary settings; required with `type: Canary`, refused otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStrategy>,
    /// Blue-green settings; only with `type: BlueGreen` (optional there: the defaults are a manual gate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStrategy>,
    /// Keep watching after promotion (Canary and Rolling), and revert to the last stable version on a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion: Option<PostPromotion>,
}

/// The kind of rollout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum StrategyType {
    /// Replace instances in batches of `maxParallel` (Nomad's rolling update).
    #[default]
    Rolling,
    /// Start `canary.replicas` new instances, run `canary.steps`, then promote.
    Canary,
    /// Start a full second set (canaries = count), analyse it, then promote.
    BlueGreen,
}

/// Canary rollout settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryStrategy {
    /// How many canary instances run the new version before promotion; at least 1, at most every group's count
    /// (and `spec.autoscaling.min`, which the autoscaler may scale down to).
    pub replicas: i64,
    /// Steps run in order once every canary is healthy; the rollout is promoted after the last. No steps: a manual
    /// gate (the rollout waits in `Paused` for `drover promote`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<CanaryStep>,
}

/// One step of a canary rollout. Each has a deadline, so a rollout never waits without an end (a manual gate
/// without `timeout` waits visibly in `Paused`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum CanaryStep {
    /// Wait for a duration, or (no duration) until `drover promote`.
    Pause(PauseStep),
    /// Run one or more analysis templates at once; a failed run aborts the rollout.
    Analysis(AnalysisStep),
    /// Call a URL (a smoke test); an unexpected status, an error or a timeout aborts the rollout.
    Webhook(WebhookStep),
}

/// A pause in a rollout.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PauseStep {
    /// How long to wait. Absent: a manual gate, which waits in `Paused` for `drover promote`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<HumanDuration>,
    /// Manual gates only: how long to wait for a person before `onTimeout` applies. Absent: wait until promoted or
    /// aborted (the app shows `Paused`, so the wait is visible).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// Manual gates with a `timeout` only: what happens when nobody acted in time. Default `Abort`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_timeout: Option<OnTimeout>,
}

/// What a manual gate does when its `timeout` passes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OnTimeout {
    /// Abort the rollout (Nomad reverts to the stable version); the app ends `Degraded` / `DeadlineExceeded`.
    #[default]
    Abort,
    /// Go on as if promoted.
    Promote,
}

/// Analysis to run: one template, or several at once (all must pass).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisStep {
    /// The name of a template in `spec.analysis`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Several templates, run at the same time; with `template`, both apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<String>,
    /// Values for the templates' `{{ .Args.NAME }}` variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
}

impl AnalysisStep {
    /// Every template the step runs, in order, without duplicates.
    pub fn template_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for name in self.template.iter().chain(self.templates.iter()) {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        names
    }
}

/// An HTTP call whose status code decides the step: a smoke test.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookStep {
    /// The URL to call (`http` or `https`); it may use the query template variables (`{{ .Version }}`, ...).
    pub url: String,
    /// `GET` (default), `POST`, `PUT` or `HEAD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request headers, e.g. an `Authorization` value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// How long the call may take. Greater than 0; default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// The status codes that pass. Default: any 2xx.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect_status: Vec<u16>,
}

/// Blue-green rollout settings: a full second set (canaries = count), analysed, then promoted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlueGreenStrategy {
    /// Analysis run on the new set, once it is healthy, before promotion; a failure aborts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promotion_analysis: Option<AnalysisStep>,
    /// Promote once the new set is healthy and the pre-promotion analysis passed, without `drover promote`.
    /// Default false: a manual gate after the analysis.
    #[serde(default)]
    pub auto_promote: bool,
    /// With `autoPromote`: wait this long after the new set is ready before promoting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_promote_after: Option<HumanDuration>,
    /// Analysis run after promotion; a failure reverts to the last stable version (as `postPromotion` does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_promotion_analysis: Option<AnalysisStep>,
}

/// Watching a version after promotion (Canary and Rolling): Nomad's auto-revert no longer applies once a
/// deployment succeeded, so Drover keeps measuring and reverts itself (`/v1/job/:id/revert`) on a failure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PostPromotion {
    /// How long to keep watching after the deployment succeeded. Greater than 0.
    pub bake: HumanDuration,
    /// Analysis run during the bake; without it the bake only waits (and a failed deployment still reverts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisStep>,
}

/// A Prometheus server and a query.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusQuery {
    /// The server's base URL, e.g. `http://prometheus.service.consul:9090`.
    pub address: String,
    /// The PromQL query; it must return one sample.
    pub query: String,
    /// How long to wait for an answer before the measurement counts as an error. Greater than 0; default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// Request headers, e.g. an `Authorization` value for a Prometheus behind a proxy.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}
