//! Builders of records for tests here and in `e2e/` and `sim/` (feature `test-util`).

use std::collections::BTreeMap;

use super::duration::HumanDuration;
use super::spec::{App, AppSpec, Check, CheckType, DEFAULT_NAMESPACE, Metadata, Resources, ServiceSpec, Template};
use super::{API_VERSION, KIND};

/// A valid template record in the `default` namespace: 3 replicas of `nginx:1.27` on port
/// `http` 8080, with a Consul service and an HTTP check on `/health`.
#[must_use]
pub fn template_app(name: &str) -> App {
    App {
        api_version: API_VERSION.to_owned(),
        kind: KIND.to_owned(),
        metadata: metadata(name),
        spec: AppSpec {
            template: Some(Template {
                image: "nginx:1.27".to_owned(),
                driver: "docker".to_owned(),
                count: 3,
                ports: BTreeMap::from([("http".to_owned(), 8080)]),
                resources: Some(Resources { cpu: Some(256), memory_mb: Some(128) }),
                env: BTreeMap::new(),
                service: Some(ServiceSpec {
                    name: None,
                    port: Some("http".to_owned()),
                    tags: vec!["api".to_owned()],
                    check: Some(Check {
                        check_type: CheckType::Http,
                        path: Some("/health".to_owned()),
                        interval: HumanDuration::from_secs(10),
                        timeout: HumanDuration::from_secs(2),
                    }),
                }),
                command: None,
                args: None,
            }),
            ..AppSpec::default()
        },
    }
}

/// A record in the `default` namespace whose `spec.job` is `job`, unchanged.
#[must_use]
pub fn job_app(name: &str, job: serde_json::Value) -> App {
    App {
        api_version: API_VERSION.to_owned(),
        kind: KIND.to_owned(),
        metadata: metadata(name),
        spec: AppSpec { job: Some(job), ..AppSpec::default() },
    }
}

fn metadata(name: &str) -> Metadata {
    Metadata {
        name: name.to_owned(),
        namespace: DEFAULT_NAMESPACE.to_owned(),
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
    }
}
