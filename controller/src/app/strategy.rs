//! Rollout strategy and analysis templates: the record types for DESIGN §4 (autoscaling, §5, is in
//! [`super::autoscaling`]).
//!
//! Only the `Rolling` strategy is supported by this version; the other types exist so the
//! schema is complete and so a record using them is rejected with a clear reason rather than
//! with "unknown field".

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::HumanDuration;

/// How a new version of the job replaces the old one. Rendered into the `Update` block of
/// every task group (Nomad's `UpdateStrategy`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Strategy {
    /// `Rolling` (default), `Canary` or `BlueGreen`. Only `Rolling` is supported by this
    /// version of Drover.
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
    /// Whether Nomad reverts to the last stable version when a rollout fails. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_revert: Option<bool>,
    /// Canary settings; only with `type: Canary`. Not supported by this version of Drover yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStrategy>,
    /// Blue-green settings; only with `type: BlueGreen`. Not supported by this version of
    /// Drover yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStrategy>,
}

/// The kind of rollout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum StrategyType {
    /// Replace instances in batches of `maxParallel` (Nomad's rolling update).
    #[default]
    Rolling,
    /// Start `canary.replicas` new instances, run `canary.steps`, then promote. Planned.
    Canary,
    /// Start a full second set, analyse it, then promote. Planned.
    BlueGreen,
}

/// Canary rollout settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryStrategy {
    /// How many canary instances run the new version before promotion; at least 1.
    pub replicas: i64,
    /// Steps run in order once every canary is healthy; the rollout is promoted after the last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<CanaryStep>,
}

/// One step of a canary rollout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum CanaryStep {
    /// Wait for a duration, or (no duration) until `drover promote`.
    Pause(PauseStep),
    /// Run an analysis template; failure aborts the rollout.
    Analysis(AnalysisRef),
}

/// A pause in a rollout.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PauseStep {
    /// How long to wait. Absent: wait for `drover promote`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<HumanDuration>,
}

/// A reference to one of the record's `spec.analysis` templates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisRef {
    /// The name of a template in `spec.analysis`.
    pub template: String,
}

/// Blue-green rollout settings: canaries equal to the count, promoted after analysis or approval.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlueGreenStrategy {
    /// Analysis run on the new set before promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_promotion_analysis: Option<AnalysisRef>,
    /// Promote as soon as the analysis passes, without `drover promote`.
    #[serde(default)]
    pub auto_promote: bool,
}

/// A named measurement: a PromQL query run every `interval`, judged by the conditions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisTemplate {
    /// The Prometheus query; `{{ .Version }}` is replaced by the job version under test.
    pub prometheus: PrometheusQuery,
    /// An expression over `result` that passes a measurement, e.g. `result < 0.01`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_condition: Option<String>,
    /// An expression over `result` that fails a measurement, e.g. `result >= 0.05`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_condition: Option<String>,
    /// Time between measurements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<HumanDuration>,
    /// Successful measurements needed to pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    /// Failed measurements that abort the rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_limit: Option<i64>,
    /// Inconclusive measurements tolerated before the analysis fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inconclusive_limit: Option<i64>,
    /// How an empty or NaN result counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_empty: Option<OnEmpty>,
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
}

/// How an empty or NaN query result is judged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OnEmpty {
    /// Counts toward `inconclusiveLimit`.
    #[default]
    Inconclusive,
    /// Counts as a failure.
    Fail,
    /// Counts as a success.
    Pass,
}
