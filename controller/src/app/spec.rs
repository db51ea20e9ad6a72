//! The record's types: `App`, its metadata, its spec and the compact `template` form.
//!
//! These types are the schema: every field's doc comment becomes its `description` in
//! `crds/app.schema.json`, so each one says what must hold, not only what it is.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::analysis::AnalysisTemplate;
use super::autoscaling::Autoscaling;
use super::duration::HumanDuration;
use super::strategy::Strategy;

/// One application Drover keeps running on Nomad: the desired state, stored as YAML or JSON
/// at `drover/apps/<namespace>/<name>` in Consul KV (DESIGN §2).
///
/// Field names are camelCase and unknown fields are errors, so a typo is reported instead of
/// being silently ignored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "App", extend("$id" = "https://drover.io/schemas/v1alpha1/app.schema.json"))]
pub struct App {
    /// The record format; must be exactly `drover.io/v1alpha1`.
    pub api_version: String,
    /// The record type; must be exactly `App`.
    pub kind: String,
    /// The app's name, namespace, labels and annotations.
    pub metadata: Metadata,
    /// What should run and how it is rolled out.
    pub spec: AppSpec,
}

/// Identity and bookkeeping of a record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// The app's name: a DNS label (1–63 characters of `a-z`, `0-9` and `-`, not starting or
    /// ending with `-`). It is the last segment of the record's key and the Nomad job ID unless
    /// `spec.job` sets its own `ID`.
    pub name: String,
    /// The Nomad namespace the job runs in (1–128 characters of `a-zA-Z0-9-`). Must equal the
    /// namespace segment of the record's key.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Free-form labels for people and tools (`team: payments`). Drover does not interpret them
    /// and never copies them into the job. Keys are 1–253 characters, values at most 253.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Free-form annotations; `drover sync` stamps the source repository, path and commit here.
    /// Keys are 1–253 characters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The namespace a record lives in when it does not say: Nomad's own default.
pub const DEFAULT_NAMESPACE: &str = "default";

fn default_namespace() -> String {
    DEFAULT_NAMESPACE.to_owned()
}

/// The desired state of an app.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppSpec {
    /// A complete Nomad job in the HTTP API's JSON shape (PascalCase fields, durations as
    /// integer nanoseconds), as `nomad job run -output` prints it; the `{"Job": {...}}` wrapper
    /// that command adds is accepted too. Exactly one of `job` and `template` must be set.
    /// `ID` defaults to `metadata.name`, `Namespace` (if set) must equal `metadata.namespace`,
    /// `Type` must be `service`, and `TaskGroups` must be non-empty with a `Name` and `Tasks`
    /// per group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "job_schema")]
    pub job: Option<serde_json::Value>,
    /// The compact form: one container behind one optional Consul service, rendered into a
    /// Nomad service job with a single group and task named after the app. Exactly one of `job`
    /// and `template` must be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Template>,
    /// How a new version is rolled out. Absent: a rolling update with Nomad's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// Named analysis templates that canary and blue-green steps refer to.
    /// Not supported by this version of Drover yet: a record that sets it is Invalid.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub analysis: BTreeMap<String, AnalysisTemplate>,
    /// Scale a task group's count from Prometheus queries. Validated, but not yet acted on by this version of
    /// Drover: a record that sets it is Invalid (with every problem of the policy listed), never silently ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// What deleting the record does to the job.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// What Drover does when the job is changed behind its back.
    #[serde(default)]
    pub drift_policy: DriftPolicy,
    /// `true`: Drover leaves the job alone (no registers, no reverts) and the status says
    /// `Suspended`.
    #[serde(default)]
    pub suspend: bool,
    /// `true`: an existing job with the same ID that Drover does not own (no matching
    /// `drover.io/app` meta key) is taken over. `false`: it is reported as a `Conflict`.
    #[serde(default)]
    pub adopt: bool,
    /// Apps that must be `Healthy` (at their current generation) before this one is created or
    /// a new version of it is registered. While one is not, the app waits in phase `Pending`
    /// (reason `WaitingForDependencies`) and whatever already runs keeps running. When records
    /// are deleted, an app is stopped only after the apps depending on it are gone. At most
    /// 64 entries; no duplicates, and an app cannot depend on itself. A dependency that does
    /// not exist, or a cycle across records, is reported in the `Dependencies` condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Dependency>,
}

/// One app another app depends on (`spec.dependsOn[]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dependency {
    /// The app's name: a DNS label, as `metadata.name`.
    pub name: String,
    /// The app's namespace. Absent: the namespace of the app that depends on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl Dependency {
    /// The app it names, for an app in `namespace` (the dependency's own namespace when it gives one).
    pub fn key(&self, namespace: &str) -> super::AppKey {
        super::AppKey::new(self.namespace.as_deref().unwrap_or(namespace), &self.name)
    }
}

fn job_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "description": "A Nomad job in the HTTP API's JSON shape (see Nomad's /v1/jobs API).",
        "additionalProperties": true
    })
}

/// What deleting the record does to the Nomad job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Stop the job (`DELETE /v1/job/:id`); Nomad keeps its history until garbage collection.
    #[default]
    Stop,
    /// Stop and purge the job (`?purge=true`), removing its history at once.
    Purge,
    /// Leave the job running; Drover only forgets it.
    Orphan,
}

/// What Drover does when the live job changed for a reason that is not Drover's own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DriftPolicy {
    /// Register the desired job again.
    #[default]
    Revert,
    /// Leave the job as it is and set a `Drifted` condition with the plan diff.
    Report,
}

/// The compact form of an app: one container behind an optional Consul service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Template {
    /// The container image, e.g. `ghcr.io/acme/web:1.4.2`. Must be non-empty, without spaces.
    pub image: String,
    /// The Nomad task driver: `docker` or `podman` (the template renders a container task;
    /// use `spec.job` for other drivers).
    #[serde(default = "default_driver")]
    pub driver: String,
    /// How many instances run (the group's `Count`), 0–10000.
    #[serde(default = "default_count")]
    #[schemars(range(min = 0, max = 10000))]
    pub count: i64,
    /// Named ports: label → the port inside the container (`http: 8080`, a dynamic host port is
    /// mapped to it), or `{to, static}` for a fixed host port. Labels are 1–63 characters of
    /// `a-zA-Z0-9_` and must not start with a digit.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, PortSpec>,
    /// CPU and memory reserved per instance. Absent: Nomad's defaults (100 MHz, 300 MB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Environment variables of the task. Names are non-empty and contain no `=`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The Consul service the instances register, with its health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceSpec>,
    /// Overrides the image's entrypoint (the driver's `command`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Arguments passed to the entrypoint or `command` (the driver's `args`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
}

/// One named port of a template: where traffic goes in the container, and whether the host
/// port is fixed. Written as a bare number (`8080`, the container port behind a dynamic host
/// port) or as `{to: 8080, static: 80}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortSpec {
    /// The port inside the container (Nomad's `To`), 1–65535. Absent with `static`: the same
    /// number as the host port.
    pub to: Option<i64>,
    /// A fixed host port (Nomad's `ReservedPorts`), 1–65535, unique within the template.
    /// Absent: Nomad picks a dynamic port.
    pub static_port: Option<i64>,
}

impl PortSpec {
    /// A container port behind a dynamic host port.
    #[must_use]
    pub const fn dynamic(to: i64) -> Self {
        Self { to: Some(to), static_port: None }
    }
}

/// A port written as `{to, static}`.
#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PortSpecLong {
    /// The port inside the container (Nomad's `To`), 1–65535. Absent: the same as `static`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    to: Option<i64>,
    /// A fixed host port (Nomad's `ReservedPorts`), 1–65535, unique within the template.
    #[serde(default, rename = "static", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    static_port: Option<i64>,
}

impl Serialize for PortSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match (self.to, self.static_port) {
            (Some(to), None) => serializer.serialize_i64(to),
            (to, static_port) => PortSpecLong { to, static_port }.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for PortSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = PortSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a container port number or {to, static}")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<PortSpec, E> {
                Ok(PortSpec::dynamic(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<PortSpec, E> {
                i64::try_from(v).map(PortSpec::dynamic).map_err(|_| E::custom(format!("port {v} is out of range")))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<PortSpec, A::Error> {
                let long = PortSpecLong::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(PortSpec { to: long.to, static_port: long.static_port })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for PortSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PortSpec".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let long = generator.subschema_for::<PortSpecLong>();
        schemars::json_schema!({
            "description": "A container port behind a dynamic host port (`8080`), or `{to, static}` for a fixed host port.",
            "oneOf": [
                {"type": "integer", "minimum": 1, "maximum": 65535, "description": "The port inside the container."},
                long
            ]
        })
    }
}

fn default_driver() -> String {
    "docker".to_owned()
}

fn default_count() -> i64 {
    1
}

/// Resources reserved for each instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    /// CPU in MHz, 1–1000000. Absent: Nomad's default of 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub cpu: Option<i64>,
    /// Memory in MB, 10–1048576. Absent: Nomad's default of 300.
    #[serde(default, rename = "memoryMB", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 1_048_576))]
    pub memory_mb: Option<i64>,
}

/// The Consul service registered for the app's instances.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    /// The service name in Consul. Absent: the app's name. 1–63 characters of `a-zA-Z0-9-`,
    /// not starting or ending with `-`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The label of the port (a key of `template.ports`) the service advertises. Required when
    /// there is a check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// Consul tags, each non-empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The health check Consul runs; Nomad's deployments wait for it before an instance counts
    /// as healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Check>,
}

/// A Consul health check on the service's port.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Check {
    /// `http` (a GET on `path` must answer 2xx) or `tcp` (the port accepts connections).
    #[serde(rename = "type")]
    pub check_type: CheckType,
    /// The HTTP path to probe, starting with `/`. Required for `http`, not allowed for `tcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// How often the check runs; at least 1s (Nomad's minimum). Default `10s`.
    #[serde(default = "default_check_interval")]
    pub interval: HumanDuration,
    /// How long one probe may take; at least 1s (Nomad's minimum) and at most `interval`.
    /// Default `2s`.
    #[serde(default = "default_check_timeout")]
    pub timeout: HumanDuration,
}

fn default_check_interval() -> HumanDuration {
    HumanDuration::from_secs(10)
}

fn default_check_timeout() -> HumanDuration {
    HumanDuration::from_secs(2)
}

/// The kind of a health check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckType {
    /// An HTTP GET on `path`.
    Http,
    /// A TCP connect.
    Tcp,
}

impl CheckType {
    /// The value of Nomad's `ServiceCheck.Type`.
    #[must_use]
    pub const fn as_nomad(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Tcp => "tcp",
        }
    }
}
