//! Autoscaling, once the applied spec runs (issue #11): each measurement round is evaluated once with the pure
//! [`crate::autoscale::decide`], and a decision to scale becomes an [`Action::Scale`] conditioned on the live
//! `JobModifyIndex`. Never during a deployment (the pure decision defers it, nomad#14669); the scale's own new
//! version is recorded as Drover's write, so it is never taken for drift.

use std::collections::BTreeMap;

use super::Ctx;
use crate::autoscale::{self, Direction, Inputs, LastScale, Recommendation};
use crate::live::LiveJob;
use crate::measure::Measurement;
use crate::reconcile::plan::{Action, Plan, Requeue};
use crate::status::{AutoscalingCheckStatus, ConditionStatus, Phase, Reason, parse_timestamp, timestamp};

/// The most recommendations kept in status (the stabilization window bounds them further).
const MAX_RECOMMENDATIONS: usize = 64;

impl Ctx<'_> {
    /// Evaluates a new measurement round for an app whose applied spec runs, and adds the scale it asks for.
    pub(super) fn autoscale(
        &self,
        mut plan: Plan,
        job: &LiveJob,
        measurements: &BTreeMap<String, Measurement>,
    ) -> Plan {
        let Some(policy) = self.record.autoscaling.as_deref() else { return plan };
        let Some(s) = plan.status.as_mut() else { return plan };
        let mut a = s.autoscaling.clone().unwrap_or_default();
        // Each round once: the newest measurement must be newer than the one last evaluated.
        let Some(round) = measurements.values().map(|m| m.at).max() else { return plan };
        if a.last_evaluated.as_deref().and_then(parse_timestamp).is_some_and(|last| last >= round) {
            return plan;
        }
        let Some(current) = job.counts.as_ref().and_then(|c| c.get(&policy.group)).map(|c| *c as i64) else {
            return plan;
        };
        let last_scale = a.last_scale_time.as_deref().and_then(parse_timestamp).map(|at| LastScale {
            at,
            direction: match a.last_direction.as_deref() {
                Some("up") => Direction::Up,
                Some("down") => Direction::Down,
                _ => Direction::Unchanged,
            },
        });
        let mut recommendations: Vec<Recommendation> = a
            .recommendations
            .iter()
            .filter_map(|(at, count)| Some(Recommendation { at: parse_timestamp(at)?, count: *count }))
            .collect();
        let inputs = Inputs {
            current,
            measurements: measurements.iter().map(|(name, m)| (name.clone(), autoscale::input(&m.value))).collect(),
            // From Nomad's deployments, not from the phase: a Degraded app (say, a failed scale) may scale again.
            deployment_active: self.live.deployments.iter().any(|d| d.is_active()),
            last_scale,
            recommendations: recommendations.clone(),
        };
        let decision = autoscale::decide(policy, &inputs, self.now);
        autoscale::remember(&mut recommendations, decision.recommendation, policy.stabilization_window);
        let keep = recommendations.len().saturating_sub(MAX_RECOMMENDATIONS);
        a.recommendations = recommendations.iter().skip(keep).map(|r| (timestamp(r.at), r.count)).collect();
        a.current = decision.current;
        a.desired = decision.desired;
        // Full precision: rounds are stamped to the nanosecond, and a round must compare equal to itself.
        a.last_evaluated = Some(humantime::format_rfc3339_nanos(round).to_string());
        a.cooldown_until = decision.cooldown_until.map(timestamp);
        a.deferred_reason = decision.deferred.map(|d| d.to_string());
        a.checks = decision
            .checks
            .iter()
            .map(|c| AutoscalingCheckStatus {
                name: c.name.clone(),
                value: c.value,
                desired_count: c.desired_count,
                action: c.action.to_string(),
                error: c.error.as_ref().map(ToString::to_string),
            })
            .collect();
        let errors = decision.checks.iter().filter(|c| c.error.is_some()).count();
        let mut evaluated = crate::reconcile::plan::Evaluated {
            current: decision.current,
            desired: decision.desired,
            errors,
            scaled: None,
        };
        if let (Some(count), true) = (decision.new_count, plan.actions.is_empty()) {
            let direction = if count > current { "up" } else { "down" };
            evaluated.scaled = Some(direction);
            // The last scale (time, direction, reason) is recorded once Nomad took it (`record_applied`).
            s.phase = Phase::Progressing;
            let message = format!("scaling group {:?} from {current} to {count}: {}", policy.group, decision.reason);
            s.set_condition(
                crate::status::ConditionType::Ready,
                ConditionStatus::False,
                Reason::Scaling,
                message,
                &self.ts,
            );
            plan.actions.push(Action::Scale {
                job_id: job.key.id.clone(),
                group: policy.group.clone(),
                count: count.max(0) as u64,
                message: decision.reason.clone(),
                enforce_index: job.job_modify_index,
                hash: self.record.hash.clone(),
                direction,
            });
            plan.requeue = Requeue::After(super::PROGRESS_RECHECK);
        }
        s.autoscaling = Some(a);
        plan.evaluated = Some(evaluated);
        plan
    }
}
