//! api.Job → structs.Job: both canonicalisation passes, the conversion and the server mutators (B11).
//!
//! The output is the job exactly as `GET /v1/job/:id` shows it, minus the server-owned fields,
//! which the state store fills in (they are left at their zero values here).

use serde_json::{Map, Value, json};

use super::decode::{DecodeError, Obj, null_if_empty};

const SEC: i64 = 1_000_000_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;

/// Where the job is going: the values the HTTP layer resolved before conversion.
#[derive(Debug, Clone)]
pub struct Target {
    /// Winning namespace (B4 precedence).
    pub namespace: String,
    /// Resolved region (`global`/empty → the agent region).
    pub region: String,
}

/// The agent's region.
pub const AGENT_REGION: &str = "global";

fn s(v: Option<String>, d: &str) -> Value {
    Value::String(v.unwrap_or_else(|| d.to_string()))
}

fn map_or_null(m: Option<Map<String, Value>>) -> Value {
    null_if_empty(m.map(Value::Object).unwrap_or(Value::Null))
}

/// Canonicalises a submitted api.Job object into the stored structs.Job shape.
///
/// `path` is the decoder path of the job (`Job` inside a register request).
pub fn canonicalize(job: &Map<String, Value>, path: &str, t: &Target) -> Result<Map<String, Value>, DecodeError> {
    let j = Obj::new(job, "Job", path);
    let id = j.str("ID")?.unwrap_or_default();
    let name = j.str("Name")?.unwrap_or_else(|| id.clone());
    let typ = j.str("Type")?.unwrap_or_else(|| "service".into());
    let mut priority = j.int("Priority")?.unwrap_or(50);
    if priority == 0 {
        priority = 50;
    }
    let datacenters = match j.strs("Datacenters")? {
        Some(d) if !d.is_empty() => json!(d),
        _ => json!(["*"]),
    };
    let node_pool = match j.str("NodePool")? {
        Some(p) if !p.is_empty() => p,
        _ => "default".into(),
    };
    let update = job_update(&j, &typ)?;
    let reduced_update = reduce_update(update.as_ref());
    let meta = j.str_map("Meta")?;
    let job_resched = j.obj("Reschedule", "ReschedulePolicy")?;
    let job_migrate = j.obj("Migrate", "MigrateStrategy")?;
    let tgs_path = j.sub_path("TaskGroups");
    let mut groups = Vec::new();
    if let Some(arr) = j.arr("TaskGroups", "*api.TaskGroup")? {
        for g in arr {
            let Value::Object(gm) = g else {
                return Err(DecodeError(format!(
                    "json: cannot unmarshal {} into Go struct field Job.{tgs_path} of type api.TaskGroup",
                    if g.is_array() { "array" } else { "string" }
                )));
            };
            let ctx = GroupCtx {
                job_name: &name,
                typ: &typ,
                job_update: update.as_ref(),
                job_resched,
                job_migrate,
                path: &tgs_path,
            };
            groups.push(Value::Object(group(gm, &ctx)?));
        }
    }
    let mut out = Map::new();
    out.insert("Stop".into(), json!(j.bool("Stop")?.unwrap_or(false)));
    out.insert("Region".into(), json!(t.region));
    out.insert("Namespace".into(), json!(t.namespace));
    out.insert("ID".into(), json!(id));
    out.insert("ParentID".into(), s(j.str("ParentID")?, ""));
    out.insert("Name".into(), json!(name));
    out.insert("Type".into(), json!(typ));
    out.insert("Priority".into(), json!(priority));
    out.insert("AllAtOnce".into(), json!(j.bool("AllAtOnce")?.unwrap_or(false)));
    out.insert("Datacenters".into(), datacenters);
    out.insert("NodePool".into(), json!(node_pool));
    out.insert("Constraints".into(), constraints(&j, "Constraints")?);
    out.insert("Affinities".into(), null_if_empty(j.any("Affinities")));
    out.insert("Spreads".into(), null_if_empty(j.any("Spreads")));
    out.insert("TaskGroups".into(), null_if_empty(Value::Array(groups)));
    out.insert("Update".into(), reduced_update);
    out.insert("Multiregion".into(), j.any("Multiregion"));
    out.insert("Periodic".into(), periodic(&j)?);
    out.insert("ParameterizedJob".into(), j.any("ParameterizedJob"));
    out.insert("Dispatched".into(), json!(false));
    out.insert("DispatchIdempotencyToken".into(), json!(""));
    out.insert("Payload".into(), Value::Null);
    out.insert("Meta".into(), map_or_null(meta));
    out.insert("ConsulNamespace".into(), s(j.str("ConsulNamespace")?, ""));
    out.insert("VaultNamespace".into(), s(j.str("VaultNamespace")?, ""));
    out.insert("NomadTokenID".into(), json!(""));
    out.insert("Status".into(), json!(""));
    out.insert("StatusDescription".into(), json!(""));
    out.insert("Stable".into(), json!(false));
    out.insert("Version".into(), json!(j.int_as("Version", "uint64")?.unwrap_or(0)));
    out.insert("SubmitTime".into(), json!(0));
    out.insert("CreateIndex".into(), json!(0));
    out.insert("ModifyIndex".into(), json!(0));
    out.insert("JobModifyIndex".into(), json!(0));
    out.insert("UI".into(), j.any("UI"));
    out.insert("VersionTag".into(), j.any("VersionTag"));
    Ok(out)
}

/// The job-level update strategy after `api.Job.Canonicalize`: defaults for service and system jobs
/// when absent, missing fields filled when present.
fn job_update(j: &Obj<'_>, typ: &str) -> Result<Option<Map<String, Value>>, DecodeError> {
    let given = j.obj("Update", "UpdateStrategy")?;
    match given {
        None if typ == "service" || typ == "system" => Ok(Some(update_fields(None, None, "")?)),
        None => Ok(None),
        Some(u) => {
            let p = j.sub_path("Update");
            Ok(Some(update_fields(Some(Obj::new(u, "UpdateStrategy", &p)), None, "")?))
        }
    }
}

/// The default update strategy (B12).
fn default_update() -> Map<String, Value> {
    let v = json!({"Stagger": 30 * SEC, "MaxParallel": 1, "HealthCheck": "checks",
        "MinHealthyTime": 10 * SEC, "HealthyDeadline": 5 * MIN, "ProgressDeadline": 10 * MIN,
        "AutoRevert": false, "AutoPromote": false, "Canary": 0});
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Merges `own` over `base` over the defaults, in struct order.
fn update_fields(
    own: Option<Obj<'_>>,
    base: Option<&Map<String, Value>>,
    _p: &str,
) -> Result<Map<String, Value>, DecodeError> {
    let defaults = default_update();
    let mut out = Map::new();
    for (k, d) in &defaults {
        let own_v = match own {
            None => None,
            Some(o) => match d {
                Value::Bool(_) => o.bool(k)?.map(Value::from),
                Value::String(_) => o.str(k)?.map(Value::from),
                _ if k == "MaxParallel" || k == "Canary" => o.int(k)?.map(Value::from),
                _ => o.dur(k)?.map(Value::from),
            },
        };
        let v = own_v.or_else(|| base.and_then(|b| b.get(k).cloned())).unwrap_or_else(|| d.clone());
        out.insert(k.clone(), v);
    }
    Ok(out)
}

/// The job-level `Update` as stored: only `Stagger` and `MaxParallel`, and only when MaxParallel > 0.
fn reduce_update(u: Option<&Map<String, Value>>) -> Value {
    let mp = u.and_then(|u| u.get("MaxParallel")).and_then(Value::as_i64).unwrap_or(0);
    let stagger = u.and_then(|u| u.get("Stagger")).and_then(Value::as_i64).unwrap_or(0);
    let (stagger, mp) = if mp > 0 { (stagger, mp) } else { (0, 0) };
    json!({"Stagger": stagger, "MaxParallel": mp, "HealthCheck": "", "MinHealthyTime": 0,
        "HealthyDeadline": 0, "ProgressDeadline": 0, "AutoRevert": false, "AutoPromote": false, "Canary": 0})
}

fn periodic(j: &Obj<'_>) -> Result<Value, DecodeError> {
    let Some(p) = j.obj("Periodic", "PeriodicConfig")? else {
        return Ok(Value::Null);
    };
    let path = j.sub_path("Periodic");
    let o = Obj::new(p, "PeriodicConfig", &path);
    let spec = match o.strs("Specs")? {
        Some(s) if !s.is_empty() => json!(s),
        _ => Value::Null,
    };
    Ok(json!({"Enabled": o.bool("Enabled")?.unwrap_or(true), "Spec": o.str("Spec")?.unwrap_or_default(),
        "Specs": spec, "SpecType": o.str("SpecType")?.unwrap_or_else(|| "cron".into()),
        "ProhibitOverlap": o.bool("ProhibitOverlap")?.unwrap_or(false),
        "TimeZone": o.str("TimeZone")?.unwrap_or_else(|| "UTC".into())}))
}

fn constraints(o: &Obj<'_>, field: &str) -> Result<Value, DecodeError> {
    let Some(arr) = o.arr(field, "*api.Constraint")? else {
        return Ok(Value::Null);
    };
    let path = o.sub_path(field);
    let mut out = Vec::new();
    for c in arr {
        let Value::Object(cm) = c else { continue };
        let c = Obj::new(cm, "Constraint", &path);
        out.push(json!({"LTarget": c.str("LTarget")?.unwrap_or_default(),
            "RTarget": c.str("RTarget")?.unwrap_or_default(),
            "Operand": c.str("Operand")?.unwrap_or_else(|| "=".into())}));
    }
    Ok(null_if_empty(Value::Array(out)))
}

struct GroupCtx<'a> {
    job_name: &'a str,
    typ: &'a str,
    job_update: Option<&'a Map<String, Value>>,
    job_resched: Option<&'a Map<String, Value>>,
    job_migrate: Option<&'a Map<String, Value>>,
    path: &'a str,
}

/// Merges `own` over `job` over `defaults` (already in struct order) for a policy block.
fn policy(
    own: Option<Obj<'_>>,
    job: Option<Obj<'_>>,
    defaults: Map<String, Value>,
) -> Result<Map<String, Value>, DecodeError> {
    let mut out = Map::new();
    for (k, d) in defaults {
        let read = |o: Obj<'_>| -> Result<Option<Value>, DecodeError> {
            Ok(match &d {
                Value::Bool(_) => o.bool(&k)?.map(Value::from),
                Value::String(_) => o.str(&k)?.map(Value::from),
                _ if matches!(k.as_str(), "Attempts" | "MaxParallel") => o.int(&k)?.map(Value::from),
                _ => o.dur(&k)?.map(Value::from),
            })
        };
        let own_v = match own {
            Some(o) => read(o)?,
            None => None,
        };
        let job_v = match job {
            Some(o) => read(o)?,
            None => None,
        };
        out.insert(k.clone(), own_v.or(job_v).unwrap_or(d));
    }
    Ok(out)
}

fn obj_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn group(gm: &Map<String, Value>, ctx: &GroupCtx<'_>) -> Result<Map<String, Value>, DecodeError> {
    let g = Obj::new(gm, "TaskGroup", ctx.path);
    let name = g.str("Name")?.unwrap_or_default();
    let scaling = g.obj("Scaling", "ScalingPolicy")?;
    let scaling_min = match scaling {
        Some(sc) => {
            let p = g.sub_path("Scaling");
            Obj::new(sc, "ScalingPolicy", &p).int_as("Min", "int64")?
        }
        None => None,
    };
    let count = g.int("Count")?.or(scaling_min).unwrap_or(1);
    let upath = g.sub_path("Update");
    let own_update = g.obj("Update", "UpdateStrategy")?.map(|u| Obj::new(u, "UpdateStrategy", &upath));
    let update = match (own_update, ctx.job_update) {
        (None, None) => Value::Null,
        (own, base) => Value::Object(update_fields(own, base, "")?),
    };
    let rpath = g.sub_path("ReschedulePolicy");
    let own_r = g.obj("ReschedulePolicy", "ReschedulePolicy")?.map(|m| Obj::new(m, "ReschedulePolicy", &rpath));
    let job_rpath = "Job.Reschedule";
    let job_r = ctx.job_resched.map(|m| Obj::new(m, "ReschedulePolicy", job_rpath));
    let resched_defaults = match ctx.typ {
        "service" => Some(
            json!({"Attempts": 0, "Interval": 0, "Delay": 30 * SEC, "DelayFunction": "exponential", "MaxDelay": HOUR, "Unlimited": true}),
        ),
        "batch" => Some(
            json!({"Attempts": 1, "Interval": 24 * HOUR, "Delay": 5 * SEC, "DelayFunction": "constant", "MaxDelay": 0, "Unlimited": false}),
        ),
        _ => None,
    };
    let resched = match resched_defaults {
        Some(d) => Value::Object(policy(own_r, job_r, obj_map(d))?),
        None if own_r.is_some() || job_r.is_some() => Value::Object(policy(
            own_r,
            job_r,
            obj_map(
                json!({"Attempts": 0, "Interval": 0, "Delay": 0, "DelayFunction": "", "MaxDelay": 0, "Unlimited": false}),
            ),
        )?),
        None => Value::Null,
    };
    let mpath = g.sub_path("Migrate");
    let own_m = g.obj("Migrate", "MigrateStrategy")?.map(|m| Obj::new(m, "MigrateStrategy", &mpath));
    let job_m = ctx.job_migrate.map(|m| Obj::new(m, "MigrateStrategy", "Job.Migrate"));
    let migrate = if ctx.typ == "service" || own_m.is_some() || job_m.is_some() {
        Value::Object(policy(
            own_m,
            job_m,
            obj_map(json!({"MaxParallel": 1, "HealthCheck": "checks",
            "MinHealthyTime": 10 * SEC, "HealthyDeadline": 5 * MIN})),
        )?)
    } else {
        Value::Null
    };
    let restart_defaults = if ctx.typ == "batch" {
        json!({"Attempts": 3, "Interval": 24 * HOUR, "Delay": 15 * SEC, "Mode": "fail", "RenderTemplates": false})
    } else {
        json!({"Attempts": 2, "Interval": 30 * MIN, "Delay": 15 * SEC, "Mode": "fail", "RenderTemplates": false})
    };
    let rppath = g.sub_path("RestartPolicy");
    let own_rp = g.obj("RestartPolicy", "RestartPolicy")?.map(|m| Obj::new(m, "RestartPolicy", &rppath));
    let restart = policy(own_rp, None, obj_map(restart_defaults))?;
    let epath = g.sub_path("EphemeralDisk");
    let eph = match g.obj("EphemeralDisk", "EphemeralDisk")? {
        Some(e) => {
            let e = Obj::new(e, "EphemeralDisk", &epath);
            json!({"Sticky": e.bool("Sticky")?.unwrap_or(false), "SizeMB": e.int("SizeMB")?.unwrap_or(300),
                "Migrate": e.bool("Migrate")?.unwrap_or(false)})
        }
        None => json!({"Sticky": false, "SizeMB": 300, "Migrate": false}),
    };
    let mut group_services = Vec::new();
    let svc_path = g.sub_path("Services");
    if let Some(arr) = g.arr("Services", "*api.Service")? {
        for sv in arr {
            if let Value::Object(m) = sv {
                group_services.push(service(m, &svc_path, &format!("{}-{}", ctx.job_name, name))?);
            }
        }
    }
    let tpath = g.sub_path("Tasks");
    let mut tasks = Vec::new();
    if let Some(arr) = g.arr("Tasks", "*api.Task")? {
        for tv in arr {
            if let Value::Object(m) = tv {
                tasks.push(task(m, &tpath, &format!("{}-{}", ctx.job_name, name), &restart)?);
            }
        }
    }
    let mut cons = match constraints(&g, "Constraints")? {
        Value::Array(a) => a,
        _ => Vec::new(),
    };
    implied_constraints(&group_services, &tasks, &mut cons);
    let mut out = Map::new();
    out.insert("Name".into(), json!(name));
    out.insert("Count".into(), json!(count));
    out.insert("Update".into(), update);
    out.insert("Migrate".into(), migrate);
    out.insert("Constraints".into(), null_if_empty(Value::Array(cons)));
    out.insert("Scaling".into(), g.any("Scaling"));
    out.insert("RestartPolicy".into(), Value::Object(restart));
    out.insert("Disconnect".into(), g.any("Disconnect"));
    out.insert("Tasks".into(), null_if_empty(Value::Array(tasks)));
    out.insert("EphemeralDisk".into(), eph);
    out.insert("Meta".into(), map_or_null(g.str_map("Meta")?));
    out.insert("ReschedulePolicy".into(), resched);
    out.insert("Affinities".into(), null_if_empty(g.any("Affinities")));
    out.insert("Spreads".into(), null_if_empty(g.any("Spreads")));
    out.insert("Networks".into(), null_if_empty(g.any("Networks")));
    out.insert("Consul".into(), g.any("Consul"));
    out.insert("Services".into(), null_if_empty(Value::Array(group_services)));
    out.insert("Volumes".into(), null_if_empty(g.any("Volumes")));
    out.insert("ShutdownDelay".into(), g.dur("ShutdownDelay")?.map(Value::from).unwrap_or(Value::Null));
    out.insert(
        "StopAfterClientDisconnect".into(),
        g.dur("StopAfterClientDisconnect")?.map(Value::from).unwrap_or(Value::Null),
    );
    out.insert("MaxClientDisconnect".into(), g.dur("MaxClientDisconnect")?.map(Value::from).unwrap_or(Value::Null));
    out.insert("PreventRescheduleOnLost".into(), json!(g.bool("PreventRescheduleOnLost")?.unwrap_or(false)));
    out.insert("MaxRunDuration".into(), g.dur("MaxRunDuration")?.map(Value::from).unwrap_or(Value::Null));
    Ok(out)
}

/// Appends the implied constraints for service providers and Vault (B11 "Other mutators").
fn implied_constraints(group_services: &[Value], tasks: &[Value], cons: &mut Vec<Value>) {
    let task_services = tasks.iter().filter_map(|t| t.get("Services").and_then(Value::as_array)).flatten();
    let all: Vec<&Value> = group_services.iter().chain(task_services).collect();
    // Consul and Vault constraints match on LTarget only (a user constraint on the same
    // attribute wins); the others must match fully (`mutateConstraint` in job_endpoint_hooks.go).
    let add_left = |c: Value, cons: &mut Vec<Value>| {
        if !cons.iter().any(|x| x.get("LTarget") == c.get("LTarget")) {
            cons.push(c);
        }
    };
    if all.iter().any(|s| s.get("Provider").and_then(Value::as_str) == Some("consul")) {
        add_left(json!({"LTarget": "${attr.consul.version}", "RTarget": ">= 1.8.0", "Operand": "semver"}), cons);
    }
    if tasks.iter().any(|t| t.get("Vault").is_some_and(|v| !v.is_null())) {
        add_left(json!({"LTarget": "${attr.vault.version}", "RTarget": ">= 0.6.1", "Operand": "semver"}), cons);
    }
    let mut add = |c: Value| {
        if !cons.contains(&c) {
            cons.push(c);
        }
    };
    let nomad: Vec<&&Value> =
        all.iter().filter(|s| s.get("Provider").and_then(Value::as_str) == Some("nomad")).collect();
    if !nomad.is_empty() {
        add(json!({"LTarget": "${attr.nomad.service_discovery}", "RTarget": "true", "Operand": "="}));
        if nomad.iter().any(|s| s.get("Checks").is_some_and(|c| !c.is_null())) {
            add(json!({"LTarget": "${attr.nomad.version}", "RTarget": ">= 1.4.0", "Operand": "semver"}));
        }
    }
}

fn service(m: &Map<String, Value>, path: &str, default_name: &str) -> Result<Value, DecodeError> {
    let o = Obj::new(m, "Service", path);
    let cpath = o.sub_path("Checks");
    let mut checks = Vec::new();
    if let Some(arr) = o.arr("Checks", "api.ServiceCheck")? {
        for c in arr {
            let Value::Object(cm) = c else { continue };
            let co = Obj::new(cm, "ServiceCheck", &cpath);
            co.dur("Interval")?;
            co.dur("Timeout")?;
            checks.push(c.clone());
        }
    }
    let name = match o.str("Name")? {
        Some(n) if !n.is_empty() => n,
        _ => default_name.to_string(),
    };
    Ok(json!({"Name": name, "TaskName": o.str("TaskName")?.unwrap_or_default(),
        "PortLabel": o.str("PortLabel")?.unwrap_or_default(),
        "AddressMode": o.str("AddressMode")?.filter(|s| !s.is_empty()).unwrap_or_else(|| "auto".into()),
        "Address": o.str("Address")?.unwrap_or_default(),
        "EnableTagOverride": o.bool("EnableTagOverride")?.unwrap_or(false),
        "Tags": null_if_empty(o.strs("Tags")?.map(Value::from).unwrap_or(Value::Null)),
        "CanaryTags": null_if_empty(o.strs("CanaryTags")?.map(Value::from).unwrap_or(Value::Null)),
        "Checks": null_if_empty(Value::Array(checks)),
        "Connect": o.any("Connect"),
        "Meta": map_or_null(o.str_map("Meta")?),
        "CanaryMeta": map_or_null(o.str_map("CanaryMeta")?),
        "TaggedAddresses": map_or_null(o.str_map("TaggedAddresses")?),
        "OnUpdate": o.str("OnUpdate")?.filter(|s| !s.is_empty()).unwrap_or_else(|| "require_healthy".into()),
        "Identity": o.any("Identity"),
        "Weights": o.any("Weights"),
        "Provider": o.str("Provider")?.filter(|s| !s.is_empty()).unwrap_or_else(|| "consul".into()),
        "Cluster": o.str("Cluster")?.filter(|s| !s.is_empty()).unwrap_or_else(|| "default".into()),
        "Kind": o.str("Kind")?.unwrap_or_default()}))
}

fn task(
    m: &Map<String, Value>,
    path: &str,
    svc_prefix: &str,
    group_restart: &Map<String, Value>,
) -> Result<Value, DecodeError> {
    let t = Obj::new(m, "Task", path);
    let name = t.str("Name")?.unwrap_or_default();
    let rpath = t.sub_path("Resources");
    let resources = match t.obj("Resources", "Resources")? {
        Some(r) => {
            let r = Obj::new(r, "Resources", &rpath);
            let cores = r.int("Cores")?.unwrap_or(0);
            let cpu = r.int("CPU")?.unwrap_or(if cores == 0 { 100 } else { 0 });
            json!({"CPU": cpu, "Cores": cores, "MemoryMB": r.int("MemoryMB")?.unwrap_or(300),
                "MemoryMaxMB": r.int("MemoryMaxMB")?.unwrap_or(0), "DiskMB": r.int("DiskMB")?.unwrap_or(0),
                "IOPS": r.int("IOPS")?.unwrap_or(0), "Networks": null_if_empty(r.any("Networks")),
                "Devices": null_if_empty(r.any("Devices")), "NUMA": r.any("NUMA"),
                "SecretsMB": r.int("SecretsMB")?.unwrap_or(0)})
        }
        None => json!({"CPU": 100, "Cores": 0, "MemoryMB": 300, "MemoryMaxMB": 0, "DiskMB": 0, "IOPS": 0,
            "Networks": null, "Devices": null, "NUMA": null, "SecretsMB": 0}),
    };
    let lpath = t.sub_path("LogConfig");
    let log = match t.obj("LogConfig", "LogConfig")? {
        Some(l) => {
            let l = Obj::new(l, "LogConfig", &lpath);
            json!({"MaxFiles": l.int("MaxFiles")?.unwrap_or(10), "MaxFileSizeMB": l.int("MaxFileSizeMB")?.unwrap_or(10),
                "Disabled": l.bool("Disabled")?.unwrap_or(false)})
        }
        None => json!({"MaxFiles": 10, "MaxFileSizeMB": 10, "Disabled": false}),
    };
    let rppath = t.sub_path("RestartPolicy");
    let own_rp = t.obj("RestartPolicy", "RestartPolicy")?.map(|m| Obj::new(m, "RestartPolicy", &rppath));
    let restart = policy(own_rp, None, group_restart.clone())?;
    let spath = t.sub_path("Services");
    let mut services = Vec::new();
    if let Some(arr) = t.arr("Services", "*api.Service")? {
        for sv in arr {
            if let Value::Object(sm) = sv {
                services.push(service(sm, &spath, &format!("{svc_prefix}-{name}"))?);
            }
        }
    }
    let lifecycle = match t.any("Lifecycle") {
        Value::Object(l) if l.get("Hook").and_then(Value::as_str).is_none_or(str::is_empty) => Value::Null,
        other => other,
    };
    Ok(json!({"Name": name, "Driver": t.str("Driver")?.unwrap_or_default(), "User": t.str("User")?.unwrap_or_default(),
        "Config": null_if_empty(t.any("Config")), "Env": map_or_null(t.str_map("Env")?),
        "Services": null_if_empty(Value::Array(services)), "Vault": t.any("Vault"), "Consul": t.any("Consul"),
        "Templates": null_if_empty(t.any("Templates")), "Constraints": constraints(&t, "Constraints")?,
        "Affinities": null_if_empty(t.any("Affinities")), "Resources": resources, "RestartPolicy": restart,
        "DispatchPayload": t.any("DispatchPayload"), "Lifecycle": lifecycle, "Meta": map_or_null(t.str_map("Meta")?),
        "KillTimeout": t.dur("KillTimeout")?.unwrap_or(5 * SEC), "LogConfig": log,
        "Artifacts": null_if_empty(t.any("Artifacts")), "Leader": t.bool("Leader")?.unwrap_or(false),
        "ShutdownDelay": t.dur("ShutdownDelay")?.unwrap_or(0), "VolumeMounts": null_if_empty(t.any("VolumeMounts")),
        "ScalingPolicies": null_if_empty(t.any("ScalingPolicies")), "KillSignal": t.str("KillSignal")?.unwrap_or_default(),
        "Kind": t.str("Kind")?.unwrap_or_default(), "CSIPluginConfig": t.any("CSIPluginConfig"),
        "Identity": t.any("Identity"), "Identities": null_if_empty(t.any("Identities")),
        "Actions": null_if_empty(t.any("Actions")), "Schedule": t.any("Schedule")}))
}
