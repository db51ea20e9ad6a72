//! The soak's fleet: which app is which kind, the records a person writes for them, and the jobs a person
//! registers that Drover must never touch.

use serde_json::{Value, json};

/// How an app is deployed (by its index: a fixed mix, 60 % rolling, 20 % canary, 10 % autoscaled, 10 % colliding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A plain rolling update.
    Rolling,
    /// A canary of one allocation, a timed pause of 2 s, then promotion.
    Canary,
    /// A rolling update with an autoscaling policy (Prometheus; rolling when the soak runs without it).
    Autoscaled,
    /// A record whose job ID a person's job already holds: Drover must report it and never touch that job.
    Colliding,
}

/// The bounds of the autoscaled apps' policy.
pub const SCALE_MIN: u64 = 1;
/// See [`SCALE_MIN`].
pub const SCALE_MAX: u64 = 3;

/// The kind of app `i`; autoscaled apps are rolling ones when `autoscaling` is off.
pub fn kind(i: usize, autoscaling: bool) -> Kind {
    match i % 10 {
        6 | 7 => Kind::Canary,
        8 if autoscaling => Kind::Autoscaled,
        9 => Kind::Colliding,
        _ => Kind::Rolling,
    }
}

/// The name (and job ID) of app `i`.
pub fn name(i: usize) -> String {
    format!("chaos-{i:04}")
}

/// The image of version `v` of an app's record.
pub fn image(v: u64) -> String {
    format!("nginx:1.{v}")
}

/// The record of app `i` of `kind` running `image`; `prometheus` is the address autoscaled apps query.
pub fn record(i: usize, kind: Kind, image: &str, prometheus: Option<&str>) -> String {
    let name = name(i);
    let mut yaml = format!(
        "apiVersion: drover.io/v1alpha1\nkind: App\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  \
         template:\n    image: {image}\n    count: 2\n    ports: {{http: 8080}}\n"
    );
    match kind {
        Kind::Canary => yaml.push_str(
            "  strategy:\n    type: Canary\n    minHealthyTime: 1s\n    healthyDeadline: 1m\n    canary:\n      \
             replicas: 1\n      steps:\n        - pause: {duration: 2s}\n",
        ),
        Kind::Rolling | Kind::Colliding | Kind::Autoscaled => {
            yaml.push_str("  strategy:\n    minHealthyTime: 1s\n    healthyDeadline: 1m\n");
        }
    }
    if let (Kind::Autoscaled, Some(address)) = (kind, prometheus) {
        // The simulator's cpu_percent is 2 % + 0.5 % per request/s per allocation: at the 60 requests/s the soak
        // sets, 2 allocations run at 17 % (under the 20 % target, and one would run at 32 %), so the count settles.
        yaml.push_str(&format!(
            "  autoscaling:\n    min: {SCALE_MIN}\n    max: {SCALE_MAX}\n    cooldown: 1s\n    \
             scaleDown: {{stabilizationWindow: 1s}}\n    evaluationInterval: 5s\n    checks:\n      - name: cpu\n        \
             prometheus:\n          address: {address}\n          \
             query: 'avg(cpu_percent{{job=\"{{{{ .JobID }}}}\",namespace=\"{{{{ .Namespace }}}}\"}})'\n          \
             timeout: 2s\n        targetValue: {{target: 20}}\n"
        ));
    }
    yaml
}

/// The requests per second the soak sets on autoscaled apps.
pub const LOAD: f64 = 60.0;

/// A job no record owns (no Drover mark), as a person registers it.
pub fn unowned_job(id: &str) -> Value {
    json!({"ID": id, "Name": id, "Type": "service", "Datacenters": ["dc1"], "TaskGroups": [{"Name": "g", "Count": 1,
        "Tasks": [{"Name": "t", "Driver": "docker", "Config": {"image": "someone:else"}}]}]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_should_parse_as_the_kind_says() {
        for (i, kind) in [(0, Kind::Rolling), (6, Kind::Canary), (8, Kind::Autoscaled), (9, Kind::Colliding)] {
            let yaml = record(i, kind, "nginx:1.3", Some("http://127.0.0.1:9090"));
            let app = drover::app::parse(yaml.as_bytes()).unwrap_or_else(|e| panic!("{kind:?}: {e:?}\n{yaml}"));
            let errors = drover::app::validate(&app, None);
            assert!(errors.is_empty(), "{kind:?}: {errors:?}\n{yaml}");
        }
        assert_eq!(kind(8, false), Kind::Rolling, "no autoscaled app without Prometheus");
    }
}
