//! The rollout metrics (DESIGN §7, issue #8): where each app's rollout is (`drover_rollout_step`,
//! `drover_rollout_phase`, per app: gauges only) and how rollouts end (`drover_rollouts_total{result}`,
//! `drover_rollout_duration_seconds{result}`). Registered by [`crate::metrics::Metrics`] in its registry, recorded by
//! the reconcile stage from the status it wrote.

use std::time::SystemTime;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::status::{RolloutResult, RolloutStatus, StepRef};

/// Every value of the `phase` label, so the one-hot gauge shows zeros for the others.
pub const PHASES: [&str; 9] =
    ["Placing", "Step", "Paused", "Promoting", "Baking", "Aborting", "Succeeded", "Failed", "Superseded"];

/// Label set `{namespace, app}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabels {
    namespace: String,
    app: String,
}

/// Label set `{namespace, app, phase}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppPhaseLabels {
    namespace: String,
    app: String,
    phase: &'static str,
}

/// Label set `{result}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// The rollout metrics.
#[derive(Debug)]
pub struct RolloutMetrics {
    step: Family<AppLabels, Gauge>,
    phase: Family<AppPhaseLabels, Gauge>,
    total: Family<ResultLabel, Counter>,
    duration: Family<ResultLabel, Histogram>,
}

impl RolloutMetrics {
    /// Registers the rollout metrics in `registry` (prefixed `drover_` by it).
    pub fn register(registry: &mut Registry) -> RolloutMetrics {
        let step = Family::<AppLabels, Gauge>::default();
        registry.register(
            "rollout_step",
            "The step the app's rollout is at: 0 while placing, N at step N, the step count once promoted",
            step.clone(),
        );
        let phase = Family::<AppPhaseLabels, Gauge>::default();
        registry.register("rollout_phase", "Where the app's rollout is (one-hot over phase)", phase.clone());
        let total = Family::<ResultLabel, Counter>::default();
        registry.register("rollouts", "Rollouts ended, by result", total.clone());
        // 1 s to about 9 h: a rollout lasts from a pause of seconds to a bake of hours.
        let duration = Family::<ResultLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(1.0, 2.0, 16))
        });
        registry.register("rollout_duration_seconds", "How long rollouts took from start to verdict", duration.clone());
        RolloutMetrics { step, phase, total, duration }
    }

    /// Records the app's rollout as `before` → `after` (the status stored, then the one written at `now`): the
    /// gauges follow `after`, and a rollout that ended in this write is counted once.
    pub fn observed(
        &self,
        namespace: &str,
        app: &str,
        before: Option<&RolloutStatus>,
        after: Option<&RolloutStatus>,
        now: SystemTime,
    ) {
        let Some(after) = after else { return };
        let labels = AppLabels { namespace: namespace.to_string(), app: app.to_string() };
        self.step.get_or_create(&labels).set(i64::from(step_number(after)));
        let current = phase(after);
        for p in PHASES {
            let labels = AppPhaseLabels { namespace: namespace.to_string(), app: app.to_string(), phase: p };
            self.phase.get_or_create(&labels).set(i64::from(p == current));
        }
        let was_done = before.is_some_and(|b| b.deployment_id == after.deployment_id && b.step == StepRef::Done);
        if after.step == StepRef::Done && !was_done {
            let result = ResultLabel { result: result_label(after.result) };
            self.total.get_or_create(&result).inc();
            let started = after.started_at.as_deref().and_then(crate::status::parse_timestamp);
            if let Some(took) = started.and_then(|s| now.duration_since(s).ok()) {
                self.duration.get_or_create(&result).observe(took.as_secs_f64());
            }
        }
    }

    /// The app is gone: its gauges go too.
    pub fn forget(&self, namespace: &str, app: &str) {
        self.step.remove(&AppLabels { namespace: namespace.to_string(), app: app.to_string() });
        for p in PHASES {
            self.phase.remove(&AppPhaseLabels { namespace: namespace.to_string(), app: app.to_string(), phase: p });
        }
    }
}

/// The step gauge's value.
fn step_number(r: &RolloutStatus) -> u32 {
    match r.step {
        StepRef::Placing => 0,
        StepRef::Step(n) => n + 1,
        StepRef::PrePromotion => 1,
        StepRef::Promoting | StepRef::Bake | StepRef::Done => r.step_count,
    }
}

/// The phase label of a rollout.
pub fn phase(r: &RolloutStatus) -> &'static str {
    match (r.step, r.result, r.paused_reason) {
        (StepRef::Done, Some(RolloutResult::Succeeded), _) => "Succeeded",
        (StepRef::Done, Some(RolloutResult::Superseded), _) => "Superseded",
        (StepRef::Done, _, _) => "Failed",
        (_, Some(_), _) => "Aborting",
        (_, None, Some(_)) => "Paused",
        (StepRef::Placing, None, None) => "Placing",
        (StepRef::Step(_) | StepRef::PrePromotion, None, None) => "Step",
        (StepRef::Promoting, None, None) => "Promoting",
        (StepRef::Bake, None, None) => "Baking",
    }
}

/// The `result` label of an ended rollout.
fn result_label(result: Option<RolloutResult>) -> &'static str {
    match result {
        Some(RolloutResult::Succeeded) => "Succeeded",
        Some(RolloutResult::AnalysisFailed) => "AnalysisFailed",
        Some(RolloutResult::WebhookFailed) => "WebhookFailed",
        Some(RolloutResult::Aborted) => "Aborted",
        Some(RolloutResult::DeadlineExceeded) => "DeadlineExceeded",
        Some(RolloutResult::DeploymentFailed) => "DeploymentFailed",
        Some(RolloutResult::RolledBack) => "RolledBack",
        Some(RolloutResult::Superseded) => "Superseded",
        None => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollout_metrics_should_count_an_ended_rollout_once_and_keep_the_phase_one_hot() {
        let mut registry = Registry::with_prefix("drover");
        let m = RolloutMetrics::register(&mut registry);
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let running = RolloutStatus {
            step: StepRef::Step(1),
            step_count: 3,
            deployment_id: Some("d".into()),
            started_at: Some(crate::status::timestamp(at)),
            ..RolloutStatus::default()
        };
        let done =
            RolloutStatus { step: StepRef::Done, result: Some(RolloutResult::AnalysisFailed), ..running.clone() };
        m.observed("default", "web", None, Some(&running), at);
        m.observed("default", "web", Some(&running), Some(&done), at + std::time::Duration::from_secs(90));
        m.observed("default", "web", Some(&done), Some(&done), at + std::time::Duration::from_secs(99));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        assert!(text.contains("drover_rollouts_total{result=\"AnalysisFailed\"} 1"), "{text}");
        assert!(text.contains("drover_rollout_phase{namespace=\"default\",app=\"web\",phase=\"Failed\"} 1"), "{text}");
        assert!(text.contains("drover_rollout_phase{namespace=\"default\",app=\"web\",phase=\"Step\"} 0"), "{text}");
        assert!(text.contains("drover_rollout_step{namespace=\"default\",app=\"web\"} 3"), "{text}");
        assert!(text.contains("drover_rollout_duration_seconds_sum{result=\"AnalysisFailed\"} 90.0"), "{text}");
        m.forget("default", "web");
        let mut after = String::new();
        prometheus_client::encoding::text::encode(&mut after, &registry).expect("encodes");
        assert!(!after.contains("app=\"web\""), "{after}");
    }
}
