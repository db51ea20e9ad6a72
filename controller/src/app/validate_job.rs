//! Validation of `spec.job`, a Nomad job in the HTTP API's JSON shape.
//!
//! Nomad itself ignores unknown fields and matches names case-insensitively (api-contract §0),
//! which would let a typo through silently and make the spec hash depend on spelling. Drover is
//! stricter: known fields must be spelled exactly as Nomad's Go structs do, unknown job-level
//! fields are errors, and durations must be integers (B1: a string is a 400).

use serde_json::{Map, Value};

use super::spec::App;
use super::validate::check_count;
use super::{FieldError, OWNER_META_KEY, index_path, key_path};

/// Fields of `api.Job` (api/jobs.go) and of the job Nomad returns (B11).
const JOB_FIELDS: &[&str] = &[
    "Region",
    "Namespace",
    "ID",
    "Name",
    "Type",
    "Priority",
    "AllAtOnce",
    "Datacenters",
    "NodePool",
    "Constraints",
    "Affinities",
    "TaskGroups",
    "Update",
    "Multiregion",
    "Spreads",
    "Periodic",
    "ParameterizedJob",
    "Reschedule",
    "Migrate",
    "Meta",
    "UI",
    "ConsulToken",
    "VaultToken",
    "Stop",
    "ParentID",
    "Dispatched",
    "DispatchIdempotencyToken",
    "Payload",
    "ConsulNamespace",
    "VaultNamespace",
    "NomadTokenID",
    "Status",
    "StatusDescription",
    "Stable",
    "Version",
    "SubmitTime",
    "CreateIndex",
    "ModifyIndex",
    "JobModifyIndex",
    "VersionTag",
];

/// Job fields that Nomad sets and owns (B11 "Fields Nomad sets and owns"): a record may carry
/// them only at their zero value (as `nomad job run -output` prints them), because sending e.g.
/// a `Version` makes Nomad keep it (B4).
const SERVER_FIELDS: &[&str] = &[
    "Stop",
    "Status",
    "StatusDescription",
    "Stable",
    "Version",
    "SubmitTime",
    "CreateIndex",
    "ModifyIndex",
    "JobModifyIndex",
    "NomadTokenID",
    "ParentID",
    "Dispatched",
];

/// Fields of `api.TaskGroup` (B11), checked for spelling only.
const GROUP_FIELDS: &[&str] = &[
    "Name",
    "Count",
    "Update",
    "Migrate",
    "Constraints",
    "Scaling",
    "RestartPolicy",
    "Disconnect",
    "Tasks",
    "EphemeralDisk",
    "Meta",
    "ReschedulePolicy",
    "Affinities",
    "Spreads",
    "Networks",
    "Consul",
    "Services",
    "Volumes",
    "ShutdownDelay",
    "MaxRunDuration",
    "StopAfterClientDisconnect",
    "MaxClientDisconnect",
    "PreventRescheduleOnLost",
];

/// Fields of `api.Task` (B11), checked for spelling only.
const TASK_FIELDS: &[&str] = &[
    "Name",
    "Driver",
    "User",
    "Config",
    "Env",
    "Services",
    "Vault",
    "Secrets",
    "Consul",
    "Templates",
    "Constraints",
    "Affinities",
    "Resources",
    "RestartPolicy",
    "DispatchPayload",
    "Lifecycle",
    "Meta",
    "KillTimeout",
    "LogConfig",
    "Artifacts",
    "Leader",
    "ShutdownDelay",
    "VolumeMounts",
    "ScalingPolicies",
    "KillSignal",
    "Kind",
    "CSIPluginConfig",
    "Identity",
    "Identities",
    "Actions",
    "Schedule",
];

/// Keys holding `time.Duration` somewhere in a job: Nomad wants integer nanoseconds there.
const DURATION_FIELDS: &[&str] = &[
    "KillTimeout",
    "ShutdownDelay",
    "MinHealthyTime",
    "HealthyDeadline",
    "ProgressDeadline",
    "Stagger",
    "Interval",
    "Timeout",
    "Delay",
    "MaxDelay",
    "Grace",
    "MaxRunDuration",
    "StopAfterClientDisconnect",
    "MaxClientDisconnect",
    "Lease",
];

/// Keys whose values are user data (maps of arbitrary keys), not Nomad structs.
pub(crate) const OPAQUE_FIELDS: &[&str] =
    &["Config", "Env", "Meta", "CanaryMeta", "TaggedAddresses", "Header", "Options", "Payload"];

/// The job object inside `spec.job`, and the path it is at: `spec.job`, or `spec.job.Job` when
/// the record keeps the `{"Job": {...}}` wrapper that `nomad job run -output` prints.
pub(crate) fn unwrap_job(job: &Value) -> Option<(&Map<String, Value>, &'static str)> {
    let map = job.as_object()?;
    if map.len() == 1
        && let Some(inner) = map.get("Job").and_then(Value::as_object)
    {
        return Some((inner, "spec.job.Job"));
    }
    Some((map, "spec.job"))
}

/// Every problem with `spec.job`, appended to `errors`.
pub(super) fn validate_job(job: &Value, app: &App, errors: &mut Vec<FieldError>) {
    let Some((job, p)) = unwrap_job(job) else {
        errors.push(FieldError::new("spec.job", "must be an object: a Nomad job in the HTTP API's JSON shape"));
        return;
    };
    check_spelling(job, p, JOB_FIELDS, true, errors);
    for field in SERVER_FIELDS {
        if let Some(v) = job.get(*field)
            && !is_zero(v)
        {
            errors.push(FieldError::new(key_path(p, field), "is set by Nomad, not by the record: remove it"));
        }
    }
    match job.get("ID") {
        None | Some(Value::Null) => {}
        Some(Value::String(id)) if id.is_empty() => {
            errors.push(FieldError::new(key_path(p, "ID"), "must not be empty (or leave it out to use metadata.name)"));
        }
        Some(Value::String(id)) if id.chars().any(|c| c.is_whitespace() || c == '\0') => {
            errors.push(FieldError::new(
                key_path(p, "ID"),
                "must not contain spaces or NUL (Nomad: \"Job ID contains a space\")",
            ));
        }
        Some(Value::String(_)) => {}
        Some(_) => errors.push(FieldError::new(key_path(p, "ID"), "must be a string")),
    }
    expect_nonempty_string_if_set(job, p, "Name", errors);
    match job.get("Type") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t == "service" => {}
        Some(Value::String(t)) => errors.push(FieldError::new(
            key_path(p, "Type"),
            format!("must be `service`: Drover runs long-lived service jobs, and `{t}` jobs are not supported"),
        )),
        Some(_) => errors.push(FieldError::new(key_path(p, "Type"), "must be a string")),
    }
    match job.get("Namespace") {
        None | Some(Value::Null) => {}
        Some(Value::String(ns)) if *ns == app.metadata.namespace => {}
        Some(_) => errors.push(FieldError::new(
            key_path(p, "Namespace"),
            format!("must equal metadata.namespace (`{}`) or be left out", app.metadata.namespace),
        )),
    }
    if let Some(v) = job.get("Priority").filter(|v| !v.is_null()) {
        match v.as_i64() {
            Some(1..=100) => {}
            _ => errors.push(FieldError::new(key_path(p, "Priority"), "must be an integer from 1 to 100")),
        }
    }
    check_meta(job.get("Meta"), &key_path(p, "Meta"), Some(app), errors);
    if app.spec.strategy.is_some() && job.get("Update").is_some_and(|u| !u.is_null()) {
        errors.push(FieldError::new(
            key_path(p, "Update"),
            "spec.strategy is set: give the rollout in spec.strategy or in the job's Update blocks, not both",
        ));
    }
    super::validate_update::check_update_blocks(job, p, errors);
    for field in ["Periodic", "ParameterizedJob"] {
        if job.get(field).is_some_and(|v| !v.is_null()) {
            errors.push(FieldError::new(key_path(p, field), "is only for batch jobs, which Drover does not run"));
        }
    }
    validate_groups(job.get("TaskGroups"), &key_path(p, "TaskGroups"), app, errors);
    check_duration_fields(job, p, errors);
}

fn validate_groups(groups: Option<&Value>, p: &str, app: &App, errors: &mut Vec<FieldError>) {
    let groups = match groups {
        Some(Value::Array(groups)) if !groups.is_empty() => groups,
        Some(Value::Array(_)) | None | Some(Value::Null) => {
            errors.push(FieldError::new(p, "must list at least one task group"));
            return;
        }
        Some(_) => {
            errors.push(FieldError::new(p, "must be a list of task groups"));
            return;
        }
    };
    let mut names: Vec<&str> = Vec::new();
    for (i, group) in groups.iter().enumerate() {
        let gp = index_path(p, i);
        let Some(group) = group.as_object() else {
            errors.push(FieldError::new(&gp, "must be an object"));
            continue;
        };
        check_spelling(group, &gp, GROUP_FIELDS, false, errors);
        if let Some(name) = expect_name(group, &gp, errors) {
            if names.contains(&name) {
                errors.push(FieldError::new(key_path(&gp, "Name"), format!("group `{name}` is defined twice")));
            }
            names.push(name);
        }
        if let Some(count) = group.get("Count").filter(|v| !v.is_null()) {
            match count.as_i64() {
                Some(n) => {
                    if let Err(reason) = check_count(n) {
                        errors.push(FieldError::new(key_path(&gp, "Count"), reason));
                    }
                }
                None => errors.push(FieldError::new(key_path(&gp, "Count"), "must be an integer")),
            }
        }
        check_meta(group.get("Meta"), &key_path(&gp, "Meta"), None, errors);
        if app.spec.strategy.is_some() && group.get("Update").is_some_and(|u| !u.is_null()) {
            errors.push(FieldError::new(
                key_path(&gp, "Update"),
                "spec.strategy is set: give the rollout in spec.strategy or in the job's Update blocks, not both",
            ));
        }
        validate_tasks(group.get("Tasks"), &key_path(&gp, "Tasks"), errors);
    }
}

fn validate_tasks(tasks: Option<&Value>, p: &str, errors: &mut Vec<FieldError>) {
    let tasks = match tasks {
        Some(Value::Array(tasks)) if !tasks.is_empty() => tasks,
        Some(Value::Array(_)) | None | Some(Value::Null) => {
            errors.push(FieldError::new(p, "must list at least one task"));
            return;
        }
        Some(_) => {
            errors.push(FieldError::new(p, "must be a list of tasks"));
            return;
        }
    };
    let mut names: Vec<&str> = Vec::new();
    for (i, task) in tasks.iter().enumerate() {
        let tp = index_path(p, i);
        let Some(task) = task.as_object() else {
            errors.push(FieldError::new(&tp, "must be an object"));
            continue;
        };
        check_spelling(task, &tp, TASK_FIELDS, false, errors);
        if let Some(name) = expect_name(task, &tp, errors) {
            if names.contains(&name) {
                errors.push(FieldError::new(
                    key_path(&tp, "Name"),
                    format!("task `{name}` is defined twice in this group"),
                ));
            }
            names.push(name);
        }
        match task.get("Driver") {
            Some(Value::String(d)) if !d.is_empty() => {}
            _ => errors.push(FieldError::new(key_path(&tp, "Driver"), "is required (e.g. `docker`)")),
        }
        check_meta(task.get("Meta"), &key_path(&tp, "Meta"), None, errors);
        if let Some(env) = task.get("Env").filter(|v| !v.is_null()) {
            check_string_values(env, &key_path(&tp, "Env"), errors);
        }
    }
}

/// A group or task `Name`: required, a non-empty string of at most 128 characters without
/// whitespace, control characters or `/` (it is part of allocation names, `<job>.<group>[i]`, and
/// of file paths on the client). Nomad's own names (`cache_group`, `web.api`) stay valid.
fn expect_name<'a>(obj: &'a Map<String, Value>, p: &str, errors: &mut Vec<FieldError>) -> Option<&'a str> {
    match obj.get("Name") {
        Some(Value::String(name)) => {
            if name.is_empty()
                || name.chars().count() > 128
                || name.chars().any(|c| c.is_whitespace() || c.is_control() || c == '/')
            {
                errors.push(FieldError::new(
                    key_path(p, "Name"),
                    "must be 1–128 characters without spaces, control characters or `/`",
                ));
            }
            Some(name)
        }
        Some(v) if !v.is_null() => {
            errors.push(FieldError::new(key_path(p, "Name"), "must be a string"));
            None
        }
        _ => {
            errors.push(FieldError::new(key_path(p, "Name"), "is required"));
            None
        }
    }
}

fn expect_nonempty_string_if_set(obj: &Map<String, Value>, p: &str, field: &str, errors: &mut Vec<FieldError>) {
    match obj.get(field) {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if !s.is_empty() => {}
        Some(_) => errors.push(FieldError::new(key_path(p, field), "must be a non-empty string")),
    }
}

/// `Meta` is `map[string]string`; the owner key is Drover's alone (its value names the installation, which a record
/// cannot know), so a record never sets it.
fn check_meta(meta: Option<&Value>, p: &str, app: Option<&App>, errors: &mut Vec<FieldError>) {
    let Some(meta) = meta.filter(|v| !v.is_null()) else {
        return;
    };
    check_string_values(meta, p, errors);
    if meta.get(OWNER_META_KEY).is_some() {
        let reason = match app {
            Some(_) => "is Drover's ownership key: leave it out, Drover sets it",
            None => "is Drover's ownership key: set it only in the job's Meta (Drover does)",
        };
        errors.push(FieldError::new(key_path(p, OWNER_META_KEY), reason));
    }
}

fn check_string_values(map: &Value, p: &str, errors: &mut Vec<FieldError>) {
    let Some(map) = map.as_object() else {
        errors.push(FieldError::new(p, "must be an object of strings"));
        return;
    };
    for (k, v) in map {
        if !v.is_string() {
            errors.push(FieldError::new(key_path(p, k), "must be a string (Nomad maps here are string → string)"));
        }
    }
}

/// Flags keys that match a known field only case-insensitively, and (with `strict`) keys that
/// match nothing.
fn check_spelling(obj: &Map<String, Value>, p: &str, known: &[&str], strict: bool, errors: &mut Vec<FieldError>) {
    for key in obj.keys() {
        if known.contains(&key.as_str()) {
            continue;
        }
        if let Some(right) = known.iter().find(|k| k.eq_ignore_ascii_case(key)) {
            errors.push(FieldError::new(
                key_path(p, key),
                format!("Nomad field names are written as in its API: use `{right}`"),
            ));
        } else if strict {
            errors.push(FieldError::new(key_path(p, key), "unknown Nomad job field"));
        }
    }
}

/// Go zero values (and null): what a pasted `-output` job holds for server-owned fields.
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Every duration field anywhere in the job must be an integer of nanoseconds.
fn check_durations(v: &Value, p: &str, errors: &mut Vec<FieldError>) {
    match v {
        Value::Object(map) => check_duration_fields(map, p, errors),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_durations(item, &index_path(p, i), errors);
            }
        }
        _ => {}
    }
}

fn check_duration_fields(map: &Map<String, Value>, p: &str, errors: &mut Vec<FieldError>) {
    for (k, child) in map {
        if OPAQUE_FIELDS.contains(&k.as_str()) {
            continue;
        }
        let cp = key_path(p, k);
        if !DURATION_FIELDS.contains(&k.as_str()) {
            check_durations(child, &cp, errors);
            continue;
        }
        match child {
            Value::Null => {}
            Value::Number(n) if n.as_i64().is_some_and(|n| n >= 0) => {}
            Value::String(s) => errors.push(FieldError::new(
                &cp,
                format!("Nomad durations are integer nanoseconds, not strings like `{s}` (10s = 10000000000)"),
            )),
            Value::Number(_) | Value::Bool(_) => {
                errors.push(FieldError::new(&cp, "must be a non-negative integer of nanoseconds"));
            }
            // Blocks with these names exist too; only scalars are durations.
            Value::Array(_) | Value::Object(_) => check_durations(child, &cp, errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::test_util::job_app;
    use serde_json::json;

    fn errors_for(job: Value) -> Vec<FieldError> {
        let app = job_app("worker", job.clone());
        let mut errors = Vec::new();
        validate_job(&job, &app, &mut errors);
        errors
    }

    #[test]
    fn validate_job_should_accept_a_minimal_service_job() {
        let job = json!({"TaskGroups": [{"Name": "worker", "Tasks": [{"Name": "worker", "Driver": "docker", "Config": {"image": "busybox"}}]}]});
        assert_eq!(errors_for(job), vec![]);
    }

    #[test]
    fn validate_job_should_accept_the_output_wrapper() {
        let job = json!({"Job": {"ID": "worker", "Version": null, "TaskGroups": [{"Name": "w", "Tasks": [{"Name": "w", "Driver": "docker"}]}]}});
        assert_eq!(errors_for(job), vec![]);
    }

    #[test]
    fn validate_job_should_report_every_problem_with_its_path() {
        let job = json!({
            "id": "x", "ID": "has space", "Type": "batch", "Namespace": "other", "Version": 3,
            "Meta": {"drover.io/app": "default/other"},
            "TaskGroups": [
                {"Name": "g", "Count": -1, "Tasks": []},
                {"Name": "g", "Tasks": [{"Name": "t", "KillTimeout": "5s"}]}
            ]
        });
        let got: Vec<String> = errors_for(job).into_iter().map(|e| e.path).collect();
        assert_eq!(
            got,
            [
                "spec.job.id",
                "spec.job.Version",
                "spec.job.ID",
                "spec.job.Type",
                "spec.job.Namespace",
                "spec.job.Meta[\"drover.io/app\"]",
                "spec.job.TaskGroups[0].Count",
                "spec.job.TaskGroups[0].Tasks",
                "spec.job.TaskGroups[1].Name",
                "spec.job.TaskGroups[1].Tasks[0].Driver",
                "spec.job.TaskGroups[1].Tasks[0].KillTimeout",
            ]
        );
    }

    #[test]
    fn validate_job_should_reject_a_non_object() {
        assert_eq!(errors_for(json!([1, 2]))[0].path, "spec.job");
        assert_eq!(errors_for(json!({}))[0].path, "spec.job.TaskGroups");
    }
}
