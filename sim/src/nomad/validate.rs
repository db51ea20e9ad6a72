//! Server-side job validation (`Job.Validate`, `TaskGroup.Validate`, `UpdateStrategy.Validate`, B11/B12).
//!
//! Returns the flattened top-level error list; the register/plan handlers format it as a
//! go-multierror text and answer 500.

use std::time::Duration;

use serde_json::{Map, Value};

use super::error::multierror;

/// Formats nanoseconds as Go's `time.Duration.String()` does (`10s`, `1m30s`, `1h0m0s`, `500ms`, `0s`).
pub fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let s = if u < 1_000 {
        format!("{u}ns")
    } else if u < 1_000_000 {
        trim_frac(u as f64 / 1e3, "µs")
    } else if u < 1_000_000_000 {
        trim_frac(u as f64 / 1e6, "ms")
    } else {
        let total = Duration::from_nanos(u);
        let h = total.as_secs() / 3600;
        let m = (total.as_secs() % 3600) / 60;
        let secs = (u % 60_000_000_000) as f64 / 1e9;
        let sec = trim_frac(secs, "s");
        if h > 0 {
            format!("{h}h{m}m{sec}")
        } else if m > 0 {
            format!("{m}m{sec}")
        } else {
            sec
        }
    };
    if neg { format!("-{s}") } else { s }
}

fn trim_frac(v: f64, unit: &str) -> String {
    let mut t = format!("{v:.9}");
    while t.ends_with('0') {
        t.pop();
    }
    if t.ends_with('.') {
        t.pop();
    }
    format!("{t}{unit}")
}

fn i(v: Option<&Value>) -> i64 {
    v.and_then(Value::as_i64).unwrap_or(0)
}

/// `UpdateStrategy.Validate` (B12).
fn update_errors(u: &Map<String, Value>) -> Vec<String> {
    let mut errs = Vec::new();
    let hc = u.get("HealthCheck").and_then(Value::as_str).unwrap_or("");
    if !matches!(hc, "checks" | "task_states" | "manual") {
        errs.push(format!("Invalid health check given: \"{hc}\""));
    }
    let mp = i(u.get("MaxParallel"));
    if mp < 0 {
        errs.push(format!("Max parallel can not be less than zero: {mp} < 0"));
    }
    let canary = i(u.get("Canary"));
    if canary < 0 {
        errs.push(format!("Canary count can not be less than zero: {canary} < 0"));
    }
    if canary == 0 && u.get("AutoPromote").and_then(Value::as_bool).unwrap_or(false) {
        errs.push("Auto Promote requires a Canary count greater than zero".into());
    }
    let mht = i(u.get("MinHealthyTime"));
    let hd = i(u.get("HealthyDeadline"));
    let pd = i(u.get("ProgressDeadline"));
    let stagger = i(u.get("Stagger"));
    if mht < 0 {
        errs.push(format!("Minimum healthy time may not be less than zero: {}", go_duration(mht)));
    }
    if hd <= 0 {
        errs.push(format!("Healthy deadline must be greater than zero: {}", go_duration(hd)));
    }
    if pd < 0 {
        errs.push(format!("Progress deadline must be zero or greater: {}", go_duration(pd)));
    }
    if mht >= hd {
        errs.push(format!(
            "Minimum healthy time must be less than healthy deadline: {} > {}",
            go_duration(mht),
            go_duration(hd)
        ));
    }
    if pd != 0 && hd >= pd {
        errs.push(format!(
            "Healthy deadline must be less than progress deadline: {} > {}",
            go_duration(hd),
            go_duration(pd)
        ));
    }
    if stagger <= 0 {
        errs.push(format!("Stagger must be greater than zero: {}", go_duration(stagger)));
    }
    errs
}

fn group_errors(g: &Map<String, Value>, typ: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if i(g.get("Count")) < 0 {
        errs.push("Task group count can't be negative".into());
    }
    let tasks = g.get("Tasks").and_then(Value::as_array);
    if tasks.is_none_or(|t| t.is_empty()) {
        errs.push("Missing tasks for task group".into());
    }
    if let Some(Value::Object(u)) = g.get("Update") {
        if typ != "service" && typ != "system" {
            errs.push(format!("Job type \"{typ}\" does not allow update block"));
        }
        let ue = update_errors(u);
        if !ue.is_empty() {
            errs.push(multierror(&ue));
        }
    }
    if typ != "service" && g.get("Migrate").is_some_and(|m| !m.is_null()) {
        errs.push(format!("Job type \"{typ}\" does not allow migrate block"));
    }
    if let Some(Value::Object(s)) = g.get("Scaling") {
        let count = i(g.get("Count"));
        let min = s.get("Min").and_then(Value::as_i64);
        let max = s.get("Max").and_then(Value::as_i64);
        if let (Some(min), Some(max)) = (min, max)
            && max < min
        {
            errs.push("Scaling policy invalid: maximum count must not be less than minimum count".to_string());
        }
        if let Some(min) = min.filter(|m| count < *m) {
            errs.push(format!("Scaling policy invalid: task group count must not be less than minimum count in scaling policy ({count} < {min})"));
        }
        if let Some(max) = max.filter(|m| count > *m) {
            errs.push(format!("Scaling policy invalid: task group count must not be greater than maximum count in scaling policy ({count} > {max})"));
        }
    }
    let mut names: Vec<&str> = Vec::new();
    for (idx, t) in tasks.into_iter().flatten().enumerate() {
        let name = t.get("Name").and_then(Value::as_str).unwrap_or("");
        let mut terrs = Vec::new();
        if name.is_empty() {
            errs.push(format!("Task {} missing name", idx + 1));
            continue;
        }
        if let Some(prev) = names.iter().position(|n| *n == name) {
            errs.push(format!("Task {} redefines '{name}' from task {}", idx + 1, prev + 1));
        }
        names.push(name);
        if t.get("Driver").and_then(Value::as_str).unwrap_or("").is_empty() {
            terrs.push("Missing task driver".to_string());
        }
        if !terrs.is_empty() {
            errs.push(format!("Task {name} validation failed: {}", multierror(&terrs)));
        }
    }
    errs
}

/// Validates a canonical job; `Err` holds the flattened error list.
pub fn validate(job: &Map<String, Value>) -> Result<(), Vec<String>> {
    let mut errs = Vec::new();
    let id = job.get("ID").and_then(Value::as_str).unwrap_or("");
    if id.is_empty() {
        errs.push("Missing job ID".to_string());
    } else if id.contains(' ') {
        errs.push("Job ID contains a space".to_string());
    } else if id.contains('\0') {
        errs.push("Job ID contains a null character".to_string());
    }
    if job.get("Name").and_then(Value::as_str).unwrap_or("").is_empty() {
        errs.push("Missing job name".to_string());
    }
    let typ = job.get("Type").and_then(Value::as_str).unwrap_or("");
    match typ {
        "" => errs.push("Missing job type".to_string()),
        "service" | "batch" | "system" | "sysbatch" => {}
        other => errs.push(format!("Invalid job type: \"{other}\"")),
    }
    if job.get("Datacenters").and_then(Value::as_array).is_none_or(|d| d.is_empty()) {
        errs.push("Missing job datacenters".to_string());
    }
    let groups = job.get("TaskGroups").and_then(Value::as_array);
    if groups.is_none_or(|g| g.is_empty()) {
        errs.push("Missing job task groups".to_string());
    }
    let mut seen: Vec<&str> = Vec::new();
    for (idx, g) in groups.into_iter().flatten().enumerate() {
        let name = g.get("Name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            errs.push(format!("Job task group {} missing name", idx + 1));
        } else if let Some(prev) = seen.iter().position(|n| *n == name) {
            errs.push(format!("Job task group {} redefines '{name}' from group {}", idx + 1, prev + 1));
        } else {
            seen.push(name);
        }
        let count = i(g.get("Count"));
        if typ == "system" && count > 1 {
            errs.push(format!("Job task group {name} has count {count}. Count cannot exceed 1 with system scheduler"));
        }
    }
    for g in groups.into_iter().flatten() {
        let Value::Object(gm) = g else { continue };
        let name = gm.get("Name").and_then(Value::as_str).unwrap_or("");
        let ge = group_errors(gm, typ);
        if !ge.is_empty() {
            errs.push(format!("Task group {name} validation failed: {}", multierror(&ge)));
        }
    }
    // The `validate` admission validator checks the priority after `Job.Validate`
    // (nomad/job_endpoint_hooks.go `jobValidate`).
    let prio = i(job.get("Priority"));
    if !(1..=100).contains(&prio) {
        errs.push("job priority must be between [1, 100]".to_string());
    }
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

#[cfg(test)]
mod tests {
    use super::go_duration;

    #[test]
    fn go_duration_should_format_like_time_duration_string() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(10_000_000_000), "10s");
        assert_eq!(go_duration(300_000_000_000), "5m0s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(90_500_000_000), "1m30.5s");
        assert_eq!(go_duration(250_000_000), "250ms");
        assert_eq!(go_duration(-1_000_000_000), "-1s");
    }
}
