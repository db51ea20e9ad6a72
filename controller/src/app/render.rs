//! `App` → the Nomad job Drover registers (`api.Job` JSON: PascalCase, durations in integer
//! nanoseconds, api-contract B1/B11).
//!
//! Both forms get the same treatment: `Namespace` is the record's namespace, the job's `Meta`
//! gains exactly one Drover key (`drover.io/app = <prefix>/apps/<ns>/<name>`, DESIGN §3: never a hash or a
//! generation, which would restart every allocation on each change), and when `spec.strategy`
//! is set every group gets an `Update` block rendered from it.
//!
//! Canary and blue-green strategies (issue #8) render Nomad's canary fields: `Canary` (the canary's `replicas`, or
//! the group's count for blue-green), `AutoPromote: false` (Drover promotes after its steps) and `AutoRevert: true`
//! (Drover aborts by failing the deployment, and Nomad reverts). Nomad places no canaries for a job's first
//! version: that simply rolls out.

use serde_json::{Map, Value, json};

use super::spec::{App, Template};
use super::strategy::{Strategy, StrategyType};
use super::validate::{
    DEFAULT_HEALTHY_DEADLINE, DEFAULT_MAX_PARALLEL, DEFAULT_MIN_HEALTHY_TIME, DEFAULT_PROGRESS_DEADLINE,
};
use super::validate_job::unwrap_job;
use super::{FieldError, HumanDuration, OWNER_META_KEY};

/// The Nomad job for `app`. Callers validate first; `render` itself only fails when the record
/// cannot be rendered at all (neither or both of `job`/`template`, a `job` that is not an object).
///
/// # Errors
/// The reasons the record cannot be rendered, with their paths.
pub fn render(app: &App, prefix: &str) -> Result<Value, Vec<FieldError>> {
    let mut job = match (&app.spec.job, &app.spec.template) {
        (Some(job), None) => {
            let Some((job, _)) = unwrap_job(job) else {
                return Err(vec![FieldError::new("spec.job", "must be an object")]);
            };
            let mut job = job.clone();
            if !job.get("ID").is_some_and(Value::is_string) {
                job.insert("ID".into(), Value::String(app.metadata.name.clone()));
            }
            job
        }
        (None, Some(template)) => render_template(app, template),
        _ => {
            return Err(vec![FieldError::new("spec", "set exactly one of `job` and `template`")]);
        }
    };
    job.insert("Namespace".into(), Value::String(app.metadata.namespace.clone()));
    let owner = super::owner_value(prefix, &super::AppKey::new(&app.metadata.namespace, &app.metadata.name));
    match job.get_mut("Meta") {
        Some(Value::Object(meta)) => {
            meta.insert(OWNER_META_KEY.into(), Value::String(owner));
        }
        _ => {
            job.insert("Meta".into(), json!({ OWNER_META_KEY: owner }));
        }
    }
    if let Some(strategy) = &app.spec.strategy
        && let Some(Value::Array(groups)) = job.get_mut("TaskGroups")
    {
        for group in groups.iter_mut().filter_map(Value::as_object_mut) {
            // Nomad's default count when a job group leaves it out (`api.TaskGroup.Canonicalize`).
            let count = group.get("Count").and_then(Value::as_i64).unwrap_or(1);
            group.insert("Update".into(), render_update(strategy, count));
        }
    }
    Ok(Value::Object(job))
}

/// The `Update` block of a group of `count` instances, every field explicit (Nomad's defaults for those the record
/// leaves out, B12). A rolling strategy renders only rolling fields; canary and blue-green add `Canary` and
/// `AutoPromote: false`, and auto-revert on (validation refuses `autoRevert: false` with them).
fn render_update(s: &Strategy, count: i64) -> Value {
    let ns = |d: Option<HumanDuration>, default| d.unwrap_or(HumanDuration::new(default)).as_nanos_i64();
    let mut update = json!({
        "MaxParallel": s.max_parallel.unwrap_or(DEFAULT_MAX_PARALLEL),
        "MinHealthyTime": ns(s.min_healthy_time, DEFAULT_MIN_HEALTHY_TIME),
        "HealthyDeadline": ns(s.healthy_deadline, DEFAULT_HEALTHY_DEADLINE),
        "ProgressDeadline": ns(s.progress_deadline, DEFAULT_PROGRESS_DEADLINE),
        "AutoRevert": s.auto_revert.unwrap_or(false),
    });
    let canaries = match s.strategy_type {
        StrategyType::Rolling => return update,
        StrategyType::Canary => s.canary.as_ref().map_or(1, |c| c.replicas),
        StrategyType::BlueGreen => count,
    };
    if let Some(u) = update.as_object_mut() {
        u.insert("Canary".into(), json!(canaries));
        u.insert("AutoPromote".into(), json!(false));
        u.insert("AutoRevert".into(), json!(true));
    }
    update
}

/// The compact form as a service job: one group and one task, both named after the app.
fn render_template(app: &App, t: &Template) -> Map<String, Value> {
    let name = &app.metadata.name;
    let mut config = Map::new();
    config.insert("image".into(), Value::String(t.image.clone()));
    if !t.ports.is_empty() {
        config.insert("ports".into(), json!(t.ports.keys().collect::<Vec<_>>()));
    }
    if let Some(command) = &t.command {
        config.insert("command".into(), Value::String(command.clone()));
    }
    if let Some(args) = &t.args {
        config.insert("args".into(), json!(args));
    }

    let mut task = Map::new();
    task.insert("Name".into(), Value::String(name.clone()));
    task.insert("Driver".into(), Value::String(t.driver.clone()));
    task.insert("Config".into(), Value::Object(config));
    if !t.env.is_empty() {
        task.insert("Env".into(), json!(t.env));
    }
    if let Some(res) = &t.resources {
        let mut r = Map::new();
        if let Some(cpu) = res.cpu {
            r.insert("CPU".into(), json!(cpu));
        }
        if let Some(mem) = res.memory_mb {
            r.insert("MemoryMB".into(), json!(mem));
        }
        if !r.is_empty() {
            task.insert("Resources".into(), Value::Object(r));
        }
    }

    let mut group = Map::new();
    group.insert("Name".into(), Value::String(name.clone()));
    group.insert("Count".into(), json!(t.count));
    if !t.ports.is_empty() {
        let mut network = Map::new();
        let mut dynamic = Vec::new();
        let mut reserved = Vec::new();
        for (label, port) in &t.ports {
            let mut p = Map::new();
            p.insert("Label".into(), Value::String(label.clone()));
            if let Some(fixed) = port.static_port {
                p.insert("Value".into(), json!(fixed));
            }
            if let Some(to) = port.to {
                p.insert("To".into(), json!(to));
            }
            if port.static_port.is_some() {
                reserved.push(Value::Object(p));
            } else {
                dynamic.push(Value::Object(p));
            }
        }
        if !reserved.is_empty() {
            network.insert("ReservedPorts".into(), Value::Array(reserved));
        }
        if !dynamic.is_empty() {
            network.insert("DynamicPorts".into(), Value::Array(dynamic));
        }
        group.insert("Networks".into(), json!([network]));
    }
    if let Some(service) = &t.service {
        let mut s = Map::new();
        s.insert("Name".into(), Value::String(service.name.clone().unwrap_or_else(|| name.clone())));
        if let Some(port) = &service.port {
            s.insert("PortLabel".into(), Value::String(port.clone()));
        }
        if !service.tags.is_empty() {
            s.insert("Tags".into(), json!(service.tags));
        }
        if let Some(check) = &service.check {
            let mut c = Map::new();
            c.insert("Type".into(), json!(check.check_type.as_nomad()));
            if let Some(path) = &check.path {
                c.insert("Path".into(), Value::String(path.clone()));
            }
            c.insert("Interval".into(), json!(check.interval.as_nanos_i64()));
            c.insert("Timeout".into(), json!(check.timeout.as_nanos_i64()));
            s.insert("Checks".into(), json!([c]));
        }
        group.insert("Services".into(), json!([s]));
    }
    group.insert("Tasks".into(), json!([task]));

    let mut job = Map::new();
    job.insert("ID".into(), Value::String(name.clone()));
    job.insert("Name".into(), Value::String(name.clone()));
    job.insert("Type".into(), json!("service"));
    job.insert("TaskGroups".into(), json!([group]));
    job
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::spec::PortSpec;
    use crate::app::test_util::{job_app, template_app};

    #[test]
    fn render_should_turn_a_template_into_a_service_job() {
        let job = render(&template_app("web"), "drover").unwrap();
        assert_eq!(job["ID"], "web");
        assert_eq!(job["Namespace"], "default");
        assert_eq!(job["Type"], "service");
        assert_eq!(job["Meta"], json!({"drover.io/app": "drover/apps/default/web"}));
        let group = &job["TaskGroups"][0];
        assert_eq!(group["Name"], "web");
        assert_eq!(group["Count"], 3);
        assert_eq!(group["Networks"][0]["DynamicPorts"][0], json!({"Label": "http", "To": 8080}));
        let check = &group["Services"][0]["Checks"][0];
        assert_eq!(check["Interval"], 10_000_000_000_i64);
        assert_eq!(check["Timeout"], 2_000_000_000_i64);
        assert_eq!(group["Tasks"][0]["Config"]["ports"], json!(["http"]));
        assert!(group.get("Update").is_none(), "no strategy: Nomad's defaults apply");
    }

    #[test]
    fn render_should_map_static_ports_to_reserved_ports() {
        let mut app = template_app("web");
        if let Some(t) = app.spec.template.as_mut() {
            t.ports.insert("admin".into(), PortSpec { to: None, static_port: Some(9000) });
        }
        let job = render(&app, "drover").unwrap();
        assert_eq!(
            job["TaskGroups"][0]["Networks"][0],
            json!({"ReservedPorts": [{"Label": "admin", "Value": 9000}],
                   "DynamicPorts": [{"Label": "http", "To": 8080}]})
        );
    }

    #[test]
    fn render_should_keep_user_meta_and_set_id_namespace_and_update() {
        let mut app = job_app(
            "worker",
            json!({"Job": {"Meta": {"team": "a"}, "TaskGroups": [{"Name": "w", "Tasks": [{"Name": "w", "Driver": "docker"}]}]}}),
        );
        app.spec.strategy = Some(Strategy { max_parallel: Some(2), ..Strategy::default() });
        let job = render(&app, "drover").unwrap();
        assert_eq!(job["ID"], "worker");
        assert_eq!(job["Namespace"], "default");
        assert_eq!(job["Meta"], json!({"team": "a", "drover.io/app": "drover/apps/default/worker"}));
        assert_eq!(
            job["TaskGroups"][0]["Update"],
            json!({"MaxParallel": 2, "MinHealthyTime": 10_000_000_000_i64, "HealthyDeadline": 300_000_000_000_i64,
                   "ProgressDeadline": 600_000_000_000_i64, "AutoRevert": false})
        );
    }

    #[test]
    fn render_should_give_canary_groups_canaries_without_auto_promotion() {
        use crate::app::strategy::CanaryStrategy;
        let strategy = Strategy {
            strategy_type: StrategyType::Canary,
            max_parallel: Some(2),
            canary: Some(CanaryStrategy { replicas: 2, steps: Vec::new() }),
            ..Strategy::default()
        };
        let job = render(&template_app("web").with_strategy(strategy), "drover").unwrap();
        assert_eq!(
            job["TaskGroups"][0]["Update"],
            json!({"MaxParallel": 2, "MinHealthyTime": 10_000_000_000_i64, "HealthyDeadline": 300_000_000_000_i64,
                   "ProgressDeadline": 600_000_000_000_i64, "AutoRevert": true, "Canary": 2, "AutoPromote": false})
        );
    }

    #[test]
    fn render_should_give_blue_green_groups_as_many_canaries_as_instances() {
        let app = job_app(
            "api",
            json!({"TaskGroups": [
                {"Name": "a", "Count": 4, "Tasks": [{"Name": "a", "Driver": "docker"}]},
                {"Name": "b", "Tasks": [{"Name": "b", "Driver": "docker"}]}
            ]}),
        )
        .with_strategy(Strategy { strategy_type: StrategyType::BlueGreen, ..Strategy::default() });
        let job = render(&app, "drover").unwrap();
        let update = |i: usize| {
            (
                job["TaskGroups"][i]["Update"]["Canary"].clone(),
                job["TaskGroups"][i]["Update"]["AutoPromote"].clone(),
                job["TaskGroups"][i]["Update"]["AutoRevert"].clone(),
            )
        };
        assert_eq!(update(0), (json!(4), json!(false), json!(true)));
        // No Count: Nomad's default of 1.
        assert_eq!(update(1), (json!(1), json!(false), json!(true)));
    }

    #[test]
    fn render_should_keep_an_explicit_job_id() {
        let app = job_app(
            "worker",
            json!({"ID": "worker-v2", "TaskGroups": [{"Name": "w", "Tasks": [{"Name": "w", "Driver": "docker"}]}]}),
        );
        assert_eq!(render(&app, "drover").unwrap()["ID"], "worker-v2");
    }
}
