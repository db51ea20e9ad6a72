//! Builders of records for tests here and in `e2e/` and `sim/` (feature `test-util`).

use std::collections::BTreeMap;

use super::duration::HumanDuration;
use super::spec::{
    App, AppSpec, Check, CheckType, DEFAULT_NAMESPACE, Metadata, PortSpec, Resources, ServiceSpec, Template,
};
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
                ports: BTreeMap::from([("http".to_owned(), PortSpec::dynamic(8080))]),
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

impl App {
    /// A valid template record named `name` (see [`template_app`]), to adjust with the
    /// `with_*` builders: `App::test("web").with_count(5).with_image("nginx:2")`.
    #[must_use]
    pub fn test(name: &str) -> App {
        template_app(name)
    }

    /// Sets the template's count.
    #[must_use]
    pub fn with_count(mut self, count: i64) -> App {
        if let Some(t) = self.spec.template.as_mut() {
            t.count = count;
        }
        self
    }

    /// Sets the template's image.
    #[must_use]
    pub fn with_image(mut self, image: &str) -> App {
        if let Some(t) = self.spec.template.as_mut() {
            t.image = image.to_owned();
        }
        self
    }

    /// Sets the namespace.
    #[must_use]
    pub fn in_namespace(mut self, namespace: &str) -> App {
        self.metadata.namespace = namespace.to_owned();
        self
    }

    /// Sets the rollout strategy.
    #[must_use]
    pub fn with_strategy(mut self, strategy: crate::app::Strategy) -> App {
        self.spec.strategy = Some(strategy);
        self
    }

    /// The record as YAML text, as it would be stored in Consul KV.
    #[must_use]
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use crate::app::{AppKey, load, parse};

    use super::*;

    #[test]
    fn builders_should_make_records_that_round_trip_through_yaml() {
        let app = App::test("web").with_count(5).with_image("nginx:2").in_namespace("prod");
        let yaml = app.to_yaml();
        assert_eq!(parse(yaml.as_bytes()).expect("parses"), app);
        let desired = load(&AppKey::new("prod", "web"), yaml.as_bytes()).expect("valid");
        assert_eq!(desired.job["TaskGroups"][0]["Count"], 5);
        assert_eq!(desired.job["Namespace"], "prod");
    }
}
