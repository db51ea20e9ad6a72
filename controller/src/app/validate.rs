//! Validation of a parsed record: every problem, each with its path, so status can show them
//! all and an invalid record never reaches Nomad (STYLE item 8).
//!
//! `spec.job` is checked in `validate_job`; this file checks the record, the template and the
//! strategy.

use std::collections::BTreeMap;
use std::time::Duration;

use super::duration::HumanDuration;
use super::spec::{App, CheckType, Metadata, Template};
use super::{API_VERSION, AppKey, FieldError, KIND, key_path};

/// The largest count (instances per group) a record may ask for; far above any sane service,
/// low enough that a typo (`30000`) is caught before Nomad tries to place it.
pub const MAX_COUNT: i64 = 10_000;

/// Nomad's defaults for the update block (api-contract B12), used to check the ordering rules
/// when only some of the three durations are set.
pub(crate) const DEFAULT_MIN_HEALTHY_TIME: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_HEALTHY_DEADLINE: Duration = Duration::from_secs(5 * 60);
pub(crate) const DEFAULT_PROGRESS_DEADLINE: Duration = Duration::from_secs(10 * 60);
pub(crate) const DEFAULT_MAX_PARALLEL: i64 = 1;

/// Every problem with `app`. With `key`, the record must also live where its metadata says.
#[must_use]
pub fn validate(app: &App, key: Option<&AppKey>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if app.api_version != API_VERSION {
        errors.push(FieldError::new("apiVersion", format!("must be `{API_VERSION}`, not `{}`", app.api_version)));
    }
    if app.kind != KIND {
        errors.push(FieldError::new("kind", format!("must be `{KIND}`, not `{}`", app.kind)));
    }
    validate_metadata(&app.metadata, key, &mut errors);

    let spec = &app.spec;
    match (&spec.job, &spec.template) {
        (Some(_), Some(_)) => errors.push(FieldError::new("spec", "set exactly one of `job` and `template`, not both")),
        (None, None) => errors
            .push(FieldError::new("spec", "set exactly one of `job` (a Nomad job) and `template` (the compact form)")),
        (Some(job), None) => super::validate_job::validate_job(job, app, &mut errors),
        (None, Some(template)) => validate_template(template, &mut errors),
    }
    if let Some(strategy) = &spec.strategy {
        super::validate_strategy::validate_strategy(app, strategy, &mut errors);
    }
    super::validate_analysis::validate_analysis(app, &mut errors);
    if let Some(autoscaling) = &spec.autoscaling {
        validate_autoscaling(app, autoscaling, &mut errors);
    }
    validate_depends_on(app, &mut errors);
    errors
}

/// The most entries `spec.dependsOn` may hold: far more than any real ordering needs, and a bound on the work one
/// record can ask of every reconcile (each entry is looked up, and cycles are searched through them).
pub const MAX_DEPENDENCIES: usize = 64;

/// `spec.dependsOn`: valid names and namespaces, no duplicates, no self-dependency (the only cycle a record alone
/// can show; a cycle across records is reported in status, since no one record is wrong).
fn validate_depends_on(app: &App, errors: &mut Vec<FieldError>) {
    let deps = &app.spec.depends_on;
    if deps.len() > MAX_DEPENDENCIES {
        // Not checked entry by entry: a record of 512 KiB could list thousands.
        errors
            .push(FieldError::new("spec.dependsOn", format!("at most {MAX_DEPENDENCIES} entries, not {}", deps.len())));
        return;
    }
    let own = super::AppKey::new(&app.metadata.namespace, &app.metadata.name);
    // Each app listed so far, and where.
    let mut seen: std::collections::HashMap<super::AppKey, usize> = std::collections::HashMap::new();
    for (i, dep) in deps.iter().enumerate() {
        let path = format!("spec.dependsOn[{i}]");
        let name_ok = match check_dns_label(&dep.name, false) {
            Ok(()) => true,
            Err(reason) => {
                errors.push(FieldError::new(format!("{path}.name"), format!("{reason} (an app name)")));
                false
            }
        };
        let namespace_ok = match dep.namespace.as_deref().map(check_namespace) {
            Some(Err(reason)) => {
                errors.push(FieldError::new(format!("{path}.namespace"), reason));
                false
            }
            _ => true,
        };
        if !(name_ok && namespace_ok) {
            continue;
        }
        let target = dep.key(&app.metadata.namespace);
        if target == own {
            errors.push(FieldError::new(format!("{path}.name"), format!("an app cannot depend on itself ({target})")));
        } else if let Some(j) = seen.get(&target) {
            errors.push(FieldError::new(
                format!("{path}.name"),
                format!("{target} is already listed at spec.dependsOn[{j}]"),
            ));
        } else {
            seen.insert(target, i);
        }
    }
}

/// The names of the job's task groups: the app's name for the template form, `TaskGroups[].Name` for a job.
pub fn group_names(app: &App) -> Vec<String> {
    match (&app.spec.job, &app.spec.template) {
        (None, Some(_)) => vec![app.metadata.name.clone()],
        (Some(job), None) => super::validate_job::unwrap_job(job)
            .and_then(|(job, _)| job.get("TaskGroups"))
            .and_then(serde_json::Value::as_array)
            .map(|groups| groups.iter().filter_map(|g| g.get("Name")?.as_str().map(str::to_owned)).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// A task group's instance count, where the record sets it: what a canary's `replicas` must fit in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GroupCount {
    /// The group's name.
    pub name: String,
    /// The record path of the count (`spec.template.count`, `spec.job.TaskGroups[1].Count`).
    pub path: String,
    /// The count; a job group without `Count` has Nomad's default, 1 (`api.TaskGroup.Canonicalize`).
    pub count: i64,
}

/// Every task group's count. Groups whose count is not an integer are left out (their own error says why).
pub(crate) fn group_counts(app: &App) -> Vec<GroupCount> {
    match (&app.spec.job, &app.spec.template) {
        (None, Some(t)) => {
            vec![GroupCount { name: app.metadata.name.clone(), path: "spec.template.count".to_owned(), count: t.count }]
        }
        (Some(job), None) => {
            let Some((job, p)) = super::validate_job::unwrap_job(job) else { return Vec::new() };
            let Some(groups) = job.get("TaskGroups").and_then(serde_json::Value::as_array) else { return Vec::new() };
            groups
                .iter()
                .enumerate()
                .filter_map(|(i, g)| {
                    let count = match g.get("Count") {
                        None | Some(serde_json::Value::Null) => 1,
                        Some(v) => v.as_i64()?,
                    };
                    let name = g.get("Name").and_then(serde_json::Value::as_str).unwrap_or_default().to_owned();
                    Some(GroupCount { name, path: format!("{p}.TaskGroups[{i}].Count"), count })
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

/// `spec.autoscaling` checked against the job's task groups ([`crate::autoscale::Policy::from_record`]).
fn validate_autoscaling(app: &App, autoscaling: &super::Autoscaling, errors: &mut Vec<FieldError>) {
    match crate::autoscale::Policy::from_record(autoscaling, &group_names(app)) {
        Err(policy_errors) => errors.extend(policy_errors),
        Ok(policy) => {
            // Two autoscalers on one count would fight: the group's own Nomad `Scaling` policy (acted on by the
            // Nomad Autoscaler) and spec.autoscaling. Refused; a `Scaling` block alone is left to that autoscaler.
            let job = app.spec.job.as_ref().and_then(|j| super::validate_job::unwrap_job(j)).map(|(j, _)| j);
            let groups = job.and_then(|j| j.get("TaskGroups")).and_then(serde_json::Value::as_array);
            for (i, g) in groups.into_iter().flatten().enumerate() {
                let scaled = g.get("Scaling").is_some_and(|s| {
                    s.is_object() && s.get("Enabled").and_then(serde_json::Value::as_bool) != Some(false)
                });
                if scaled && g.get("Name").and_then(serde_json::Value::as_str) == Some(policy.group.as_str()) {
                    errors.push(FieldError::new(
                        format!("spec.job.TaskGroups[{i}].Scaling"),
                        "the group has Nomad's own scaling policy and spec.autoscaling scales it too; two autoscalers would fight over the count: remove one",
                    ));
                }
            }
        }
    }
}

fn validate_metadata(meta: &Metadata, key: Option<&AppKey>, errors: &mut Vec<FieldError>) {
    if let Err(reason) = check_dns_label(&meta.name, false) {
        errors.push(FieldError::new("metadata.name", reason));
    }
    if let Err(reason) = check_namespace(&meta.namespace) {
        errors.push(FieldError::new("metadata.namespace", reason));
    }
    if let Some(key) = key {
        if key.name != meta.name {
            errors.push(FieldError::new(
                "metadata.name",
                format!("must equal the name in the record's key `{key}` (`{}`)", key.name),
            ));
        }
        if key.namespace != meta.namespace {
            errors.push(FieldError::new(
                "metadata.namespace",
                format!("must equal the namespace in the record's key `{key}` (`{}`)", key.namespace),
            ));
        }
    }
    check_string_map("metadata.labels", &meta.labels, Some(253), errors);
    check_string_map("metadata.annotations", &meta.annotations, None, errors);
}

fn check_string_map(
    path: &str,
    map: &BTreeMap<String, String>,
    max_value: Option<usize>,
    errors: &mut Vec<FieldError>,
) {
    for (k, v) in map {
        let p = key_path(path, k);
        if k.is_empty() || k.chars().count() > 253 {
            errors.push(FieldError::new(&p, "keys must be 1–253 characters"));
        }
        if let Some(max) = max_value
            && v.chars().count() > max
        {
            errors.push(FieldError::new(&p, format!("must be at most {max} characters")));
        }
    }
}

/// A DNS label (RFC 1123): 1–63 of `a-z0-9-`, not starting or ending with `-`. With
/// `allow_upper`, `A-Z` too (Consul service names).
pub(crate) fn check_dns_label(name: &str, allow_upper: bool) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if name.len() > 63 {
        return Err(format!("must be at most 63 characters, not {}", name.len()));
    }
    let ok_char =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (allow_upper && c.is_ascii_uppercase());
    if !name.chars().all(ok_char) {
        let allowed = if allow_upper { "a-z, A-Z" } else { "a-z" };
        return Err(format!("`{name}` is not a DNS label: use only {allowed}, 0-9 and `-`"));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!("`{name}` must not start or end with `-`"));
    }
    Ok(())
}

/// Nomad namespace names: `^[a-zA-Z0-9-]{1,128}$`.
pub(crate) fn check_namespace(ns: &str) -> Result<(), String> {
    if ns.is_empty() || ns.len() > 128 || !ns.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(format!("`{ns}` is not a Nomad namespace name (1–128 characters of a-z, A-Z, 0-9 and `-`)"));
    }
    Ok(())
}

/// Checks `value` against `0..=MAX_COUNT` and says which bound it broke.
pub(crate) fn check_count(value: i64) -> Result<(), String> {
    if value < 0 {
        Err("must be ≥ 0".to_owned())
    } else if value > MAX_COUNT {
        Err(format!("must be ≤ {MAX_COUNT}"))
    } else {
        Ok(())
    }
}

pub(crate) fn check_range(path: &str, value: i64, min: i64, max: i64, errors: &mut Vec<FieldError>) {
    if value < min {
        errors.push(FieldError::new(path, format!("must be ≥ {min}")));
    } else if value > max {
        errors.push(FieldError::new(path, format!("must be ≤ {max}")));
    }
}

fn is_port_label(label: &str) -> bool {
    let mut chars = label.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && label.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn validate_template(t: &Template, errors: &mut Vec<FieldError>) {
    const P: &str = "spec.template";
    if t.image.trim().is_empty() {
        errors.push(FieldError::new("spec.template.image", "must not be empty"));
    } else if t.image.chars().any(char::is_whitespace) {
        errors.push(FieldError::new("spec.template.image", "must not contain whitespace"));
    }
    if !matches!(t.driver.as_str(), "docker" | "podman") {
        errors.push(FieldError::new(
            "spec.template.driver",
            format!("must be `docker` or `podman`, not `{}` (use spec.job for other drivers)", t.driver),
        ));
    }
    if let Err(reason) = check_count(t.count) {
        errors.push(FieldError::new("spec.template.count", reason));
    }
    let mut static_ports: Vec<i64> = Vec::new();
    for (label, port) in &t.ports {
        let p = key_path(&format!("{P}.ports"), label);
        if !is_port_label(label) {
            errors.push(FieldError::new(
                &p,
                "port labels are 1–63 characters of a-z, A-Z, 0-9 and `_`, not starting with a digit",
            ));
        }
        match (port.to, port.static_port) {
            (None, None) => errors.push(FieldError::new(&p, "set `to`, `static` or both")),
            (Some(to), None) => check_range(&p, to, 1, 65_535, errors),
            (to, Some(fixed)) => {
                if let Some(to) = to {
                    check_range(&format!("{p}.to"), to, 1, 65_535, errors);
                }
                check_range(&format!("{p}.static"), fixed, 1, 65_535, errors);
                if static_ports.contains(&fixed) {
                    errors.push(FieldError::new(
                        format!("{p}.static"),
                        format!("host port {fixed} is already used by another label"),
                    ));
                }
                static_ports.push(fixed);
            }
        }
    }
    if let Some(res) = &t.resources {
        if let Some(cpu) = res.cpu {
            check_range("spec.template.resources.cpu", cpu, 1, 1_000_000, errors);
        }
        if let Some(mem) = res.memory_mb {
            check_range("spec.template.resources.memoryMB", mem, 10, 1_048_576, errors);
        }
    }
    for name in t.env.keys() {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            errors.push(FieldError::new(
                key_path("spec.template.env", name),
                "environment variable names must be non-empty and contain no `=` or NUL",
            ));
        }
    }
    if let Some(command) = &t.command
        && command.trim().is_empty()
    {
        errors.push(FieldError::new("spec.template.command", "must not be empty when set"));
    }
    let Some(service) = &t.service else {
        return;
    };
    if let Some(name) = &service.name
        && let Err(reason) = check_dns_label(name, true)
    {
        errors.push(FieldError::new("spec.template.service.name", reason));
    }
    match &service.port {
        Some(port) if !t.ports.contains_key(port) => errors.push(FieldError::new(
            "spec.template.service.port",
            format!("`{port}` is not a label in spec.template.ports"),
        )),
        None if service.check.is_some() => {
            errors.push(FieldError::new("spec.template.service.port", "is required when the service has a check"))
        }
        _ => {}
    }
    for (i, tag) in service.tags.iter().enumerate() {
        if tag.trim().is_empty() {
            errors.push(FieldError::new(format!("spec.template.service.tags[{i}]"), "must not be empty"));
        }
    }
    let Some(check) = &service.check else {
        return;
    };
    const C: &str = "spec.template.service.check";
    match (check.check_type, &check.path) {
        (CheckType::Http, None) => {
            errors.push(FieldError::new(format!("{C}.path"), "is required for an http check"));
        }
        (CheckType::Http, Some(path)) if !path.starts_with('/') => {
            errors.push(FieldError::new(format!("{C}.path"), "must start with `/`"));
        }
        (CheckType::Tcp, Some(_)) => {
            errors.push(FieldError::new(format!("{C}.path"), "is only valid for an http check"));
        }
        _ => {}
    }
    let second = HumanDuration::from_secs(1);
    if check.interval < second {
        errors.push(FieldError::new(format!("{C}.interval"), "must be at least 1s (Nomad's minimum check interval)"));
    }
    if check.timeout < second {
        errors.push(FieldError::new(format!("{C}.timeout"), "must be at least 1s (Nomad's minimum check timeout)"));
    } else if check.timeout > check.interval {
        errors.push(FieldError::new(
            format!("{C}.timeout"),
            format!("must not be longer than interval ({})", check.interval),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::test_util::template_app;

    fn paths(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn validate_should_accept_a_good_template() {
        let app = template_app("web");
        assert_eq!(validate(&app, Some(&AppKey::new("default", "web"))), vec![]);
    }

    #[test]
    fn validate_should_collect_every_error() {
        let mut app = template_app("Web_1");
        app.api_version = "v1".into();
        app.kind = "Job".into();
        app.metadata.namespace = "bad ns".into();
        if let Some(t) = app.spec.template.as_mut() {
            t.count = -1;
            t.image = String::new();
        }
        let errors = validate(&app, Some(&AppKey::new("default", "web")));
        assert_eq!(
            paths(&errors),
            [
                "apiVersion",
                "kind",
                "metadata.name",
                "metadata.namespace",
                "metadata.name",
                "metadata.namespace",
                "spec.template.image",
                "spec.template.count",
            ]
        );
        assert!(errors.iter().any(|e| e.to_string() == "spec.template.count: must be ≥ 0"));
    }

    #[test]
    fn validate_should_check_every_dependency_with_its_path() {
        let mut app = template_app("web");
        let dep = |name: &str, namespace: Option<&str>| crate::app::Dependency {
            name: name.into(),
            namespace: namespace.map(Into::into),
        };
        app.spec.depends_on = vec![
            dep("db", None),
            dep("", None),
            dep("Not_An_App", None),
            dep("db", Some("default")),
            dep("web", None),
            dep("cache", Some("bad ns")),
            dep("db", Some("prod")),
            dep("web", Some("prod")),
        ];
        let errors = validate(&app, Some(&AppKey::new("default", "web")));
        assert_eq!(
            paths(&errors),
            [
                "spec.dependsOn[1].name",
                "spec.dependsOn[2].name",
                "spec.dependsOn[3].name",
                "spec.dependsOn[4].name",
                "spec.dependsOn[5].namespace"
            ]
        );
        assert!(errors[2].reason.contains("already listed at spec.dependsOn[0]"), "{errors:?}");
        assert!(errors[3].reason.contains("cannot depend on itself"), "{errors:?}");
        app.spec.depends_on = (0..=MAX_DEPENDENCIES).map(|i| dep(&format!("a{i}"), None)).collect();
        assert_eq!(paths(&validate(&app, None)), ["spec.dependsOn"]);
    }

    #[test]
    fn dns_label_should_follow_rfc_1123() {
        assert!(check_dns_label("web-1", false).is_ok());
        for bad in ["", "-web", "web-", "Web", "web_1", &"a".repeat(64)] {
            assert!(check_dns_label(bad, false).is_err(), "{bad:?}");
        }
        assert!(check_dns_label("Web", true).is_ok());
    }
}
