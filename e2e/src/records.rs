//! Building records and reading the fields of Nomad jobs and metrics that the tests assert on.

use serde_json::Value;

/// The sum of every sample of `name` (any labels) in Prometheus/OpenMetrics text.
pub fn metric_sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A valid template record for `default/<name>` running `image` (2 replicas, 1 s `minHealthyTime` so rollouts end
/// within a few hundred real milliseconds at [`crate::TIME_SCALE`]); `extra_spec` is YAML appended under `spec:` (each line
/// indented by two spaces), e.g. `"deletionPolicy: Purge"`.
pub fn template_record(name: &str, image: &str, extra_spec: &str) -> String {
    let mut yaml = format!(
        "apiVersion: drover.io/v1alpha1\nkind: App\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  \
         template:\n    image: {image}\n    count: 2\n    ports: {{http: 8080}}\n  strategy:\n    minHealthyTime: 1s\n    \
         healthyDeadline: 1m\n"
    );
    for line in extra_spec.lines() {
        yaml.push_str("  ");
        yaml.push_str(line);
        yaml.push('\n');
    }
    yaml
}

/// The image of the first task of the first group of a Nomad job.
pub fn job_image(job: &Value) -> Option<&str> {
    job["TaskGroups"][0]["Tasks"][0]["Config"]["image"].as_str()
}

/// The job's `Meta["drover.io/app"]`.
pub fn job_owner(job: &Value) -> Option<&str> {
    job["Meta"]["drover.io/app"].as_str()
}

/// The job's `JobModifyIndex`.
pub fn job_modify_index(job: &Value) -> u64 {
    job["JobModifyIndex"].as_u64().unwrap_or(0)
}

/// The job's `Version`.
pub fn job_version(job: &Value) -> u64 {
    job["Version"].as_u64().unwrap_or(0)
}

/// Every Drover status under `drover/status/default/` of the Consul API at `consul_url`, by app name (one recursive
/// read; a value that is not a status is left out).
pub async fn statuses(
    http: &reqwest::Client,
    consul_url: &str,
) -> std::collections::BTreeMap<String, drover::status::AppStatus> {
    use base64::Engine as _;
    let url = format!("{consul_url}/v1/kv/drover/status/default/?recurse=true");
    let resp = http.get(&url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return std::collections::BTreeMap::new();
    }
    assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
    let pairs: Vec<Value> = resp.json().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let mut out = std::collections::BTreeMap::new();
    for pair in pairs {
        let key = pair["Key"].as_str().unwrap_or_default();
        let Some(name) = key.rsplit('/').next() else { continue };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(pair["Value"].as_str().unwrap_or_default())
            .unwrap_or_default();
        if let Ok(status) = serde_json::from_slice(&bytes) {
            out.insert(name.to_owned(), status);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sum_should_add_every_labelled_sample_of_one_metric_only() {
        let text = "# TYPE drover_reconcile counter\n\
                    drover_reconcile_total{result=\"ok\"} 7\n\
                    drover_reconcile_total{result=\"error\"} 2\n\
                    drover_reconcile_total_other 100\n\
                    drover_reconcile_duration_seconds_count 9\n";
        assert_eq!(metric_sum(text, "drover_reconcile_total"), 9);
        assert_eq!(metric_sum(text, "drover_missing_total"), 0);
    }

    #[test]
    fn template_record_should_put_extra_lines_under_spec() {
        let yaml = template_record("web", "nginx:1.27", "deletionPolicy: Purge\nadopt: true");
        assert!(yaml.contains("\n  deletionPolicy: Purge\n  adopt: true\n"), "{yaml}");
        assert!(yaml.contains("    image: nginx:1.27\n"), "{yaml}");
    }
}
