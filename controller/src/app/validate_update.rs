//! What a raw job's `Update` blocks may ask for: only rollouts that end by themselves or at a visible gate
//! (issues #7 2.4 and #8).
//!
//! - `Canary > 0` is a canary rollout (issue #8): Nomad places the canaries and waits for a promotion. Drover shows
//!   it as a manual gate (`Paused`) that `drover promote` or `drover abort` ends; `AutoPromote: true` there is
//!   Nomad's own promotion once the canaries are healthy, and is fine too.
//! - `AutoPromote: true` without canaries (the group's or the job's it inherits) is refused, as Nomad refuses it.
//! - `HealthCheck: "manual"` is refused: allocations become healthy only when someone sets their health through
//!   the API, so the deployment would never end and nothing in the app would say why.
//!
//! Nomad merges a group's `Update` over the job's (a field the group leaves out comes from the job), so a group
//! inherits the job's canaries. `spec.template` and `spec.strategy` render their own `Update` blocks
//! (`render_update`, tested below).

use serde_json::{Map, Value};

use super::{FieldError, index_path, key_path};

/// Nomad's `HealthCheck` values that end by themselves (`structs.UpdateStrategyHealthCheck_*`, B12).
const AUTOMATIC_HEALTH_CHECKS: [&str; 2] = ["checks", "task_states"];

/// Every `Update` setting in the job (at `p`) or its groups that is malformed or would make a rollout wait forever.
pub(super) fn check_update_blocks(job: &Map<String, Value>, p: &str, errors: &mut Vec<FieldError>) {
    let job_update = block(job.get("Update"), &key_path(p, "Update"), errors);
    check_block(job_update, &key_path(p, "Update"), errors);
    let Some(Value::Array(groups)) = job.get("TaskGroups") else { return };
    for (i, group) in groups.iter().enumerate() {
        let up = key_path(&index_path(&key_path(p, "TaskGroups"), i), "Update");
        let group_update = block(group.get("Update"), &up, errors);
        check_block(group_update, &up, errors);
        check_auto_promote(group_update, &up, job_update, &key_path(p, "Update"), errors);
    }
}

/// Nomad refuses a group whose merged `Update` has `AutoPromote` without canaries ("Auto Promote requires a Canary
/// count greater than zero", `structs.UpdateStrategy.Validate`; the simulator does the same): reported at the
/// `AutoPromote` that applies, the group's or the job's it inherits.
fn check_auto_promote(
    group: Option<&Map<String, Value>>,
    group_path: &str,
    job: Option<&Map<String, Value>>,
    job_path: &str,
    errors: &mut Vec<FieldError>,
) {
    let field = |name: &str| {
        let set_in_group = group.and_then(|b| b.get(name)).filter(|v| !v.is_null());
        let set_in_job = job.and_then(|b| b.get(name)).filter(|v| !v.is_null());
        match (set_in_group, set_in_job) {
            (Some(v), _) => Some((v, group_path)),
            (None, Some(v)) => Some((v, job_path)),
            (None, None) => None,
        }
    };
    let canaries = field("Canary").and_then(|(v, _)| v.as_i64()).unwrap_or(0);
    if let Some((Value::Bool(true), path)) = field("AutoPromote")
        && canaries == 0
    {
        let p = key_path(path, "AutoPromote");
        if !errors.iter().any(|e| e.path == p) {
            errors.push(FieldError::new(
                p,
                "is true without canaries: Nomad refuses it (\"Auto Promote requires a Canary count greater than \
                 zero\"); set Canary > 0 or leave AutoPromote out",
            ));
        }
    }
}

/// An `Update` value as an object: `None` when absent or null, an error when it is not an object.
fn block<'a>(value: Option<&'a Value>, p: &str, errors: &mut Vec<FieldError>) -> Option<&'a Map<String, Value>> {
    match value {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map),
        Some(_) => {
            errors.push(FieldError::new(p, "must be an object (Nomad's update block)"));
            None
        }
    }
}

/// Checks one block at `p`. Nothing depends on the job's block a group inherits: canaries, inherited or not, are a
/// rollout Drover drives.
fn check_block(update: Option<&Map<String, Value>>, p: &str, errors: &mut Vec<FieldError>) {
    let Some(update) = update else { return };
    match update.get("Canary") {
        None | Some(Value::Null) => {}
        Some(v) => match v.as_i64() {
            Some(n) if n >= 0 => {}
            _ => errors.push(FieldError::new(key_path(p, "Canary"), "must be a non-negative integer")),
        },
    }
    match update.get("AutoPromote") {
        None | Some(Value::Null) | Some(Value::Bool(_)) => {}
        Some(_) => errors.push(FieldError::new(key_path(p, "AutoPromote"), "must be true or false")),
    }
    match update.get("HealthCheck") {
        None | Some(Value::Null) => {}
        Some(Value::String(h)) if AUTOMATIC_HEALTH_CHECKS.contains(&h.as_str()) => {}
        Some(Value::String(h)) if h == "manual" => errors.push(FieldError::new(
            key_path(p, "HealthCheck"),
            "is `manual`: allocations would be healthy only when someone sets their health through Nomad's API, so \
             the rollout would never end by itself; use `checks` (the default) or `task_states`",
        )),
        Some(_) => errors.push(FieldError::new(key_path(p, "HealthCheck"), "must be `checks` or `task_states`")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::app::duration::HumanDuration;
    use crate::app::render::render;
    use crate::app::strategy::Strategy;
    use crate::app::test_util::template_app;

    fn paths_for(job: Value) -> Vec<String> {
        let mut errors = Vec::new();
        check_update_blocks(job.as_object().expect("a test job is an object"), "spec.job", &mut errors);
        errors.into_iter().map(|e| e.path).collect()
    }

    #[test]
    fn check_update_blocks_should_refuse_only_manual_health() {
        let job = json!({
            "Update": {"Canary": 2, "AutoPromote": false},
            "TaskGroups": [
                {"Name": "a", "Update": {"AutoPromote": false}},
                {"Name": "b", "Update": {"Canary": 0, "AutoPromote": false, "HealthCheck": "manual"}},
                {"Name": "c"}
            ]
        });
        // Canaries with or without Nomad's auto-promotion are a canary rollout Drover drives (a manual gate).
        assert_eq!(paths_for(job), ["spec.job.TaskGroups[1].Update.HealthCheck"]);
    }

    #[test]
    fn check_update_blocks_should_accept_rollouts_that_end_by_themselves() {
        let job = json!({
            "Update": {"MaxParallel": 2, "HealthCheck": "checks", "AutoRevert": true, "Canary": 0},
            "TaskGroups": [
                {"Name": "a", "Update": {"HealthCheck": "task_states", "AutoPromote": true, "Canary": 1}},
                {"Name": "b"}
            ]
        });
        assert_eq!(paths_for(job), Vec::<String>::new());
    }

    #[test]
    fn check_update_blocks_should_refuse_auto_promote_without_canaries_as_nomad_does() {
        let job = json!({
            "Update": {"AutoPromote": true},
            "TaskGroups": [
                {"Name": "a"},
                {"Name": "b", "Update": {"Canary": 2}},
                {"Name": "c", "Update": {"AutoPromote": true, "Canary": 0}},
                {"Name": "d", "Update": {"AutoPromote": false}}
            ]
        });
        // a inherits the job's AutoPromote with no canaries; b has canaries; c sets both itself; d turns it off.
        assert_eq!(paths_for(job), ["spec.job.Update.AutoPromote", "spec.job.TaskGroups[2].Update.AutoPromote"]);
    }

    #[test]
    fn check_update_blocks_should_reject_values_of_the_wrong_shape() {
        let job = json!({"Update": "rolling", "TaskGroups": [
            {"Name": "a", "Update": {"Canary": -1, "AutoPromote": "no", "HealthCheck": "ready"}}
        ]});
        assert_eq!(
            paths_for(job),
            [
                "spec.job.Update",
                "spec.job.TaskGroups[0].Update.Canary",
                "spec.job.TaskGroups[0].Update.AutoPromote",
                "spec.job.TaskGroups[0].Update.HealthCheck",
            ]
        );
    }

    #[test]
    fn a_template_with_every_strategy_field_should_render_an_update_block_that_ends_by_itself() {
        let d = |s| Some(HumanDuration::new(std::time::Duration::from_secs(s)));
        let strategy = Strategy {
            max_parallel: Some(3),
            min_healthy_time: d(5),
            healthy_deadline: d(60),
            progress_deadline: d(600),
            auto_revert: Some(true),
            ..Strategy::default()
        };
        let app = template_app("web").with_strategy(strategy);
        let job = render(&app, "drover").expect("a valid template renders");
        let job = job.as_object().expect("a rendered job is an object");
        let mut errors = Vec::new();
        check_update_blocks(job, "spec.template", &mut errors);
        assert_eq!(errors, Vec::<FieldError>::new());
        let update = job["TaskGroups"][0]["Update"].as_object().expect("the strategy renders an Update block");
        let mut keys: Vec<&str> = update.keys().map(String::as_str).collect();
        keys.sort_unstable();
        // Only rolling fields: none of Canary, AutoPromote or HealthCheck can come out of a template.
        assert_eq!(keys, ["AutoRevert", "HealthyDeadline", "MaxParallel", "MinHealthyTime", "ProgressDeadline"]);
    }
}
