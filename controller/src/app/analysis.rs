//! Analysis templates (`spec.analysis`): named measurements that canary, blue-green and post-promotion steps run,
//! each judged by conditions in Drover's expression language ([`crate::expr`]).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::HumanDuration;
use super::strategy::PrometheusQuery;
use std::collections::BTreeMap;

/// A named measurement: a query run every `interval`, each result judged by the conditions, the run judged by the
/// limits. Exactly one provider (`prometheus` or `web`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisTemplate {
    /// A PromQL query. Its text may use `{{ .Version }}`, `{{ .StableVersion }}`, `{{ .JobID }}`,
    /// `{{ .Namespace }}`, `{{ .Group }}` and `{{ .Args.NAME }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusQuery>,
    /// An HTTP endpoint answering JSON, and where in it the value is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<WebMetric>,
    /// An expression over `result` (and `baseline`) that passes a measurement, e.g. `result < 0.01`. Without it,
    /// a measurement passes unless `failureCondition` holds; with it alone, a measurement that does not meet it
    /// fails. The language: numbers, `result`, `baseline`, `result[0]`, `len`, `isNaN`, `abs`, `+ - * /`,
    /// comparisons (a vector against a number holds when every element does), `&&`, `||`, `!`, parentheses
    /// (README, "Rollout fields"). At least one of the two conditions is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_condition: Option<String>,
    /// An expression over `result` (and `baseline`) that fails a measurement, e.g. `result >= 0.05`. Checked
    /// first. A measurement that meets neither condition (with both given) is inconclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_condition: Option<String>,
    /// Time between measurements. Default `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<HumanDuration>,
    /// Measurements to take (1–10000); the run passes when they are all taken without reaching a limit (errors are
    /// not measurements taken). Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    /// Wait this long after the step starts before the first measurement (metrics need traffic first). Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay: Option<HumanDuration>,
    /// Failed measurements tolerated; one more fails the run. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_limit: Option<i64>,
    /// Inconclusive measurements tolerated; one more makes the run inconclusive (the rollout pauses for a
    /// person). Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inconclusive_limit: Option<i64>,
    /// Measurements that could not be taken in a row (Prometheus down, a timeout) before the run fails; at least 1.
    /// Errors are retried on a short interval (at most 5s) and are not failures. Default 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_error_limit: Option<i64>,
    /// How an empty result (no series; `null` from a web metric) counts; conditions never see one. Default
    /// `Inconclusive`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_empty: Option<OnEmpty>,
    /// How a NaN result (a NaN value anywhere in it) counts; conditions never see one. Default `Inconclusive`.
    #[serde(rename = "onNaN", default, skip_serializing_if = "Option::is_none")]
    pub on_nan: Option<OnEmpty>,
    /// Measure and report, but never fail or pause the rollout (a new query's trial run).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// A JSON value from an HTTP endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebMetric {
    /// The URL (`http` or `https`); it may use the same template variables as a query.
    pub url: String,
    /// Where the value is in the JSON answer, e.g. `$.data.errorRate` (dotted names and `[N]` indexes).
    pub json_path: String,
    /// Request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// How long the call may take before the measurement is an error. Greater than 0; default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
}

/// How an empty or NaN result is judged.
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
