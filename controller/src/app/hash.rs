//! The spec hash: a SHA-256 of the rendered job in Drover's own canonical form (DESIGN §3).
//!
//! "Desired changed" is `spec_hash(rendered) != status.appliedHash`; the live job is never
//! diffed against the desired one (api-contract B11, "How to detect no change"). The canonical
//! form therefore has to make equal what Nomad treats as equal:
//! 1. Nomad's client-side (`api.Job.Canonicalize`) and server-side defaults are filled in
//!    (B11 tables, B12), so an explicit default and an absent field hash the same;
//! 2. the job-level `Update`, `Reschedule` and `Migrate` blocks are merged into every group, as
//!    Nomad does, so moving a setting between job and group levels is not a change;
//! 3. nulls, empty maps and lists, and Go zero values (`false`, `0`, `""`) are dropped, since
//!    Go cannot tell them from an absent field once defaults are filled;
//! 4. keys are sorted; integral floats become integers.
//!
//! User data maps (`Config`, `Env`, `Meta`, …) are kept as written (only sorted), because there
//! an empty string or a `false` means something.
//!
//! The hash is only ever compared with hashes this same code computed (`status.appliedHash`),
//! never with anything Nomad computes. A change to the canonical form (a new default in the
//! tables below) changes every app's hash once, which costs one identical register per app:
//! Nomad stores no new version for it (api-contract B4, "Unchanged spec").

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::validate_job::OPAQUE_FIELDS;

const SECOND: i64 = 1_000_000_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;

/// The hex SHA-256 of `job`'s canonical form: equal for jobs Nomad would store identically.
#[must_use]
pub fn spec_hash(job: &Value) -> String {
    let canonical = canonical_job(job);
    // Serialising a `Value` cannot fail (its keys are strings); `Display` is the same bytes.
    let bytes = canonical.to_string();
    hex::encode(Sha256::digest(bytes.as_bytes()))
}

/// The canonical form that `spec_hash` hashes, exposed for `drover diff` and tests.
#[must_use]
pub fn canonical_job(job: &Value) -> Value {
    let Value::Object(map) = job else {
        return clean(job).unwrap_or(Value::Null);
    };
    let mut job = map.clone();
    fill_job_defaults(&mut job);
    clean(&Value::Object(job)).unwrap_or_else(|| json!({}))
}

fn is_unset(v: Option<&Value>) -> bool {
    matches!(v, None | Some(Value::Null))
}

fn is_unset_or_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if is_unset(map.get(key)) {
        map.insert(key.to_owned(), value);
    }
}

/// `defaults`, overlaid by the non-null fields of each layer in turn (later layers win).
fn merged(defaults: Value, layers: &[Option<&Value>]) -> Value {
    let mut out = match defaults {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    for layer in layers.iter().flatten() {
        if let Value::Object(fields) = layer {
            for (k, v) in fields {
                if !v.is_null() {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
    }
    Value::Object(out)
}

fn fill_job_defaults(job: &mut Map<String, Value>) {
    set_default(job, "ID", json!(""));
    if is_unset(job.get("Name")) {
        let id = job.get("ID").cloned().unwrap_or(json!(""));
        job.insert("Name".into(), id);
    }
    for (key, value) in [
        ("Namespace", json!("default")),
        ("Region", json!("global")),
        ("NodePool", json!("default")),
        ("Datacenters", json!(["*"])),
        ("Priority", json!(50)),
    ] {
        if is_unset_or_empty(job.get(key)) {
            job.insert(key.into(), value);
        }
    }
    set_default(job, "Type", json!("service"));
    let job_type = job.get("Type").and_then(Value::as_str).unwrap_or("service").to_owned();
    let job_id = job.get("ID").and_then(Value::as_str).unwrap_or("").to_owned();
    // The server keeps no job-level Reschedule/Migrate, and only Stagger/MaxParallel of Update:
    // all three live on the groups (B11 "Conversion and server-side mutation").
    let job_update = job.remove("Update");
    let job_reschedule = job.remove("Reschedule");
    let job_migrate = job.remove("Migrate");
    if let Some(Value::Array(groups)) = job.get_mut("TaskGroups") {
        for group in groups.iter_mut().filter_map(Value::as_object_mut) {
            fill_group_defaults(
                group,
                &job_type,
                &job_id,
                job_update.as_ref(),
                job_reschedule.as_ref(),
                job_migrate.as_ref(),
            );
        }
    }
}

fn default_update() -> Value {
    json!({
        "Stagger": 30 * SECOND, "MaxParallel": 1, "HealthCheck": "checks",
        "MinHealthyTime": 10 * SECOND, "HealthyDeadline": 5 * MINUTE,
        "ProgressDeadline": 10 * MINUTE, "AutoRevert": false, "AutoPromote": false, "Canary": 0,
    })
}

fn default_restart(job_type: &str) -> Value {
    if job_type == "batch" {
        json!({"Attempts": 3, "Interval": 24 * HOUR, "Delay": 15 * SECOND, "Mode": "fail", "RenderTemplates": false})
    } else {
        json!({"Attempts": 2, "Interval": 30 * MINUTE, "Delay": 15 * SECOND, "Mode": "fail", "RenderTemplates": false})
    }
}

fn default_reschedule(job_type: &str) -> Option<Value> {
    match job_type {
        "service" => Some(json!({"Attempts": 0, "Interval": 0, "Delay": 30 * SECOND,
            "DelayFunction": "exponential", "MaxDelay": HOUR, "Unlimited": true})),
        "batch" => Some(json!({"Attempts": 1, "Interval": 24 * HOUR, "Delay": 5 * SECOND,
            "DelayFunction": "constant", "MaxDelay": 0, "Unlimited": false})),
        _ => None,
    }
}

fn fill_group_defaults(
    group: &mut Map<String, Value>,
    job_type: &str,
    job_id: &str,
    job_update: Option<&Value>,
    job_reschedule: Option<&Value>,
    job_migrate: Option<&Value>,
) {
    if is_unset(group.get("Count")) {
        let min = group.get("Scaling").and_then(|s| s.get("Min")).filter(|m| !m.is_null()).cloned();
        group.insert("Count".into(), min.unwrap_or(json!(1)));
    }
    let disk = merged(json!({"Sticky": false, "Migrate": false, "SizeMB": 300}), &[group.get("EphemeralDisk")]);
    group.insert("EphemeralDisk".into(), disk);
    if matches!(job_type, "service" | "system") {
        let update = merged(default_update(), &[job_update, group.get("Update")]);
        group.insert("Update".into(), update);
    }
    if let Some(defaults) = default_reschedule(job_type) {
        let policy = merged(defaults, &[job_reschedule, group.get("ReschedulePolicy")]);
        group.insert("ReschedulePolicy".into(), policy);
    }
    if job_type == "service" {
        let defaults = json!({"MaxParallel": 1, "HealthCheck": "checks",
            "MinHealthyTime": 10 * SECOND, "HealthyDeadline": 5 * MINUTE});
        let migrate = merged(defaults, &[job_migrate, group.get("Migrate")]);
        group.insert("Migrate".into(), migrate);
    }
    let restart = merged(default_restart(job_type), &[group.get("RestartPolicy")]);
    group.insert("RestartPolicy".into(), restart.clone());

    let group_name = group.get("Name").and_then(Value::as_str).unwrap_or("").to_owned();
    if let Some(Value::Array(services)) = group.get_mut("Services") {
        fill_services(services, &format!("{job_id}-{group_name}"));
    }
    if let Some(Value::Array(tasks)) = group.get_mut("Tasks") {
        for task in tasks.iter_mut().filter_map(Value::as_object_mut) {
            fill_task_defaults(task, &restart, &format!("{job_id}-{group_name}"));
        }
    }
}

fn fill_task_defaults(task: &mut Map<String, Value>, group_restart: &Value, prefix: &str) {
    let mut resources = match task.get("Resources") {
        Some(Value::Object(r)) => r.clone(),
        _ => Map::new(),
    };
    if is_unset_or_empty(resources.get("Cores")) {
        resources.insert("Cores".into(), json!(0));
        set_default(&mut resources, "CPU", json!(100));
    }
    set_default(&mut resources, "MemoryMB", json!(300));
    task.insert("Resources".into(), Value::Object(resources));
    set_default(task, "KillTimeout", json!(5 * SECOND));
    let log = merged(json!({"MaxFiles": 10, "MaxFileSizeMB": 10, "Disabled": false}), &[task.get("LogConfig")]);
    task.insert("LogConfig".into(), log);
    let restart = merged(group_restart.clone(), &[task.get("RestartPolicy")]);
    task.insert("RestartPolicy".into(), restart);
    let task_name = task.get("Name").and_then(Value::as_str).unwrap_or("").to_owned();
    if let Some(Value::Array(services)) = task.get_mut("Services") {
        fill_services(services, &format!("{prefix}-{task_name}"));
    }
}

fn fill_services(services: &mut [Value], default_name: &str) {
    for service in services.iter_mut().filter_map(Value::as_object_mut) {
        for (key, value) in [
            ("Name", json!(default_name)),
            ("AddressMode", json!("auto")),
            ("OnUpdate", json!("require_healthy")),
            ("Provider", json!("consul")),
            ("Cluster", json!("default")),
        ] {
            if is_unset_or_empty(service.get(key)) {
                service.insert(key.into(), value);
            }
        }
    }
}

/// The value with sorted keys and without nulls, empty containers and zero values (outside
/// user-data maps); `None` when nothing is left.
fn clean(value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Bool(false) => None,
        Value::Bool(true) => Some(Value::Bool(true)),
        Value::Number(n) => {
            let n = normalise_number(n);
            (n.as_f64() != Some(0.0)).then_some(Value::Number(n))
        }
        Value::String(s) => (!s.is_empty()).then(|| value.clone()),
        Value::Array(items) => {
            let items: Vec<Value> = items.iter().map(|item| clean(item).unwrap_or(Value::Null)).collect();
            (!items.is_empty()).then_some(Value::Array(items))
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for key in keys {
                let child = &map[key.as_str()];
                let cleaned = if OPAQUE_FIELDS.contains(&key.as_str()) {
                    sorted_verbatim(child).filter(|v| !is_empty_container(v))
                } else {
                    clean(child)
                };
                if let Some(v) = cleaned {
                    out.insert(key.clone(), v);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
    }
}

fn is_empty_container(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// User data: only sorted (and numbers normalised), nothing dropped but a null at the top.
fn sorted_verbatim(value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Number(n) => Some(Value::Number(normalise_number(n))),
        Value::Array(items) => {
            Some(Value::Array(items.iter().map(|i| sorted_verbatim(i).unwrap_or(Value::Null)).collect()))
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for key in keys {
                let v = sorted_verbatim(&map[key.as_str()]).unwrap_or(Value::Null);
                out.insert(key.clone(), v);
            }
            Some(Value::Object(out))
        }
        other => Some(other.clone()),
    }
}

/// `3.0` → `3`, so a JSON writer's choice of float does not change the hash.
fn normalise_number(n: &serde_json::Number) -> serde_json::Number {
    if n.is_f64()
        && let Some(f) = n.as_f64()
        && f.fract() == 0.0
        && f.abs() < 9.0e15
    {
        // Exact: |f| < 2^53, so the conversion loses nothing.
        #[allow(clippy::cast_possible_truncation)]
        return serde_json::Number::from(f as i64);
    }
    n.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Value {
        json!({
            "ID": "web", "Namespace": "default", "Meta": {"drover.io/app": "default/web"},
            "TaskGroups": [{
                "Name": "web", "Count": 3,
                "Services": [{"Name": "web", "PortLabel": "http"}],
                "Tasks": [{"Name": "web", "Driver": "docker", "Config": {"image": "nginx:1"},
                           "Env": {"EMPTY": ""}}]
            }]
        })
    }

    #[test]
    fn spec_hash_should_ignore_explicit_defaults() {
        let mut explicit = base();
        explicit["Priority"] = json!(50);
        explicit["Type"] = json!("service");
        explicit["Datacenters"] = json!(["*"]);
        explicit["Update"] = json!({"MaxParallel": 1, "Stagger": 30 * SECOND});
        explicit["TaskGroups"][0]["Tasks"][0]["KillTimeout"] = json!(5 * SECOND);
        explicit["TaskGroups"][0]["Tasks"][0]["Resources"] = json!({"CPU": 100, "MemoryMB": 300});
        explicit["TaskGroups"][0]["Services"][0]["Provider"] = json!("consul");
        explicit["TaskGroups"][0]["Constraints"] = json!([]);
        explicit["Affinities"] = Value::Null;
        assert_eq!(spec_hash(&base()), spec_hash(&explicit));
    }

    #[test]
    fn spec_hash_should_change_with_meaningful_fields() {
        let h = spec_hash(&base());
        for (pointer, value) in [
            ("/TaskGroups/0/Count", json!(4)),
            ("/TaskGroups/0/Count", json!(0)),
            ("/TaskGroups/0/Tasks/0/Config/image", json!("nginx:2")),
            ("/TaskGroups/0/Tasks/0/Env/EMPTY", json!("x")),
            ("/Meta/drover.io~1app", json!("default/other")),
        ] {
            let mut changed = base();
            *changed.pointer_mut(pointer).unwrap() = value;
            assert_ne!(spec_hash(&changed), h, "{pointer}");
        }
        let mut removed = base();
        removed["TaskGroups"][0]["Tasks"][0]["Env"] = json!({});
        assert_ne!(spec_hash(&removed), h, "an empty env var is not an absent one");
    }

    #[test]
    fn spec_hash_should_treat_job_and_group_update_alike() {
        let mut at_job = base();
        at_job["Update"] = json!({"MaxParallel": 2});
        let mut at_group = base();
        at_group["TaskGroups"][0]["Update"] = json!({"MaxParallel": 2});
        assert_eq!(spec_hash(&at_job), spec_hash(&at_group));
        assert_ne!(spec_hash(&at_job), spec_hash(&base()));
    }

    #[test]
    fn spec_hash_should_normalise_integral_floats() {
        let mut float = base();
        float["TaskGroups"][0]["Count"] = json!(3.0);
        assert_eq!(spec_hash(&float), spec_hash(&base()));
    }
}
