//! `spec.autoscaling`: the record types for DESIGN §5 (issue #11). They are the schema in `crds/`; what must hold
//! between fields (exactly one strategy, bounds in order, a query template that parses) is checked by
//! [`crate::autoscale::Policy::from_record`], which also turns the record into the typed policy the decision reads.
//!
//! The strategies are the Nomad Autoscaler's (`plugins/builtin/strategy/{target-value,threshold,fixed-value}` in
//! hashicorp/nomad-autoscaler), spelled in camelCase.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::HumanDuration;
use super::strategy::PrometheusQuery;

/// Scale one task group's count from Prometheus queries (DESIGN §5). Drover owns both the rollout and the count,
/// so a deploy never resets the count and scaling never happens during a deployment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Autoscaling {
    /// The lowest count Drover scales to; 0–10000 and at most `max`.
    pub min: i64,
    /// The highest count Drover scales to; 0–10000 and at least `min`.
    pub max: i64,
    /// The task group whose count is scaled. Required when the job has several groups; the template form has one
    /// (named after the app), which is the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Time between evaluations (each runs every check once). Greater than 0; default `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_interval: Option<HumanDuration>,
    /// Time after any scale during which no other scale happens, so the new instances show in the metrics
    /// before the next decision. Default `5m` (the Nomad Autoscaler's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<HumanDuration>,
    /// The cooldown after a scale up, usually shorter than `cooldown` so a rising load is followed quickly.
    /// Default: `cooldown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_up: Option<HumanDuration>,
    /// Limits on scaling up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up: Option<ScaleUp>,
    /// Limits on scaling down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<ScaleDown>,
    /// What a check that cannot be measured does, unless the check says otherwise. Default `Hold`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
    /// Evaluate and report the decision in status, but never change the count.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// The checks whose results decide the count; 1–32, names unique.
    #[serde(default)]
    pub checks: Vec<ScalingCheck>,
}

/// Limits on scaling up.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleUp {
    /// The most instances added in one scale; at least 1. Default: no limit (up to `max`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_step: Option<i64>,
}

/// Limits on scaling down.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleDown {
    /// Drover scales down only when every recommendation over this window is below the current count, and then
    /// to the highest of them (Kubernetes' HPA `stabilizationWindowSeconds`), so a short dip does not remove
    /// instances. Default `5m`; `0s` turns it off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stabilization_window: Option<HumanDuration>,
    /// The most instances removed in one scale; at least 1. Default: no limit (down to `min`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_step: Option<i64>,
}

/// What a check that cannot be measured (the query failed, or returned no series, several, or NaN) does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OnError {
    /// The check votes to keep the current count: the other checks may still scale up, never down
    /// (nomad-autoscaler#410, #514: a failed query must not scale down).
    #[default]
    Hold,
    /// The check is left out, as if it were not there (the Nomad Autoscaler's `on_error = "ignore"`).
    Ignore,
}

/// One autoscaling input: a Prometheus query and the strategy that turns its value into a count. Exactly one of
/// `targetValue`, `threshold` and `fixedValue`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingCheck {
    /// A name shown in status and scaling reasons; unique among the checks, 1–63 characters.
    pub name: String,
    /// The instant query giving the current value; it must return exactly one series. Its template may use
    /// `{{ .JobID }}`, `{{ .Namespace }}` and `{{ .Group }}`.
    pub prometheus: PrometheusQuery,
    /// Checks with the same group measure related things: inside a group a "no change" vote is ignored unless
    /// every check of the group votes so (the Nomad Autoscaler's check `group`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// What this check does when it cannot be measured. Default: `spec.autoscaling.onError`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
    /// Keep the value near a target, scaling in proportion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_value: Option<TargetValue>,
    /// Change the count by a fixed amount while the value is inside a band.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<Threshold>,
    /// Always ask for this count (a floor or a schedule together with other checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_value: Option<FixedValue>,
}

/// The target-value strategy: desired = ceil(current × value / target); nothing changes while value / target is
/// within `1 ± tolerance`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetValue {
    /// The value to hold the metric at, per instance; greater than 0 (Drover does not take the Nomad
    /// Autoscaler's `target = 0` special case, where the value itself becomes the count).
    pub target: f64,
    /// Relative band around `target` inside which nothing changes, 0 ≤ tolerance < 1. Default 0.01 (the Nomad
    /// Autoscaler's `precision`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
}

/// The threshold strategy: while `lowerBound ≤ value < upperBound`, change the count by exactly one of `delta`,
/// `percentage` or `value`; outside the band, this check votes for no change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Threshold {
    /// The band's upper bound (exclusive). At least one bound is required; absent means no upper bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper_bound: Option<f64>,
    /// The band's lower bound (inclusive), below `upperBound`. Absent means no lower bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower_bound: Option<f64>,
    /// Add this many instances (negative: remove); not 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<i64>,
    /// Change the count by this percentage, rounded up (`-20`: remove a fifth); greater than -100, not 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<f64>,
    /// Set the count to this value; 0–10000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<i64>,
}

/// The fixed-value strategy: always ask for `value`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FixedValue {
    /// The count to ask for; 0–10000.
    pub value: i64,
}
