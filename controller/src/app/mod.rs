//! The App record (DESIGN §2): its types, parsing of untrusted bytes, validation, rendering to
//! a Nomad job, the spec hash (DESIGN §3) and the JSON Schemas in `crds/`.
//!
//! # Layout
//! - [`spec`], [`strategy`], [`analysis`] and [`autoscaling`]: the record's types, which are also its schema;
//! - [`duration`]: the `30s`/`5m` duration strings;
//! - [`key`]: [`AppKey`], where a record lives in Consul KV;
//! - [`mod@parse`]: bytes → [`App`], safe on hostile input;
//! - [`mod@validate`] (and `validate_job` for `spec.job`, `validate_update` for its `Update` blocks): every
//!   problem, with its path (`validate_strategy` for `spec.strategy`, `validate_analysis` for `spec.analysis` and the
//!   steps that use it);
//! - [`mod@render`]: [`App`] → Nomad `api.Job` JSON;
//! - [`hash`]: the canonical spec hash;
//! - [`record`]: [`Record`], what the reconciler reads of a record: valid (rendered and hashed) or invalid;
//! - [`schema`]: the JSON Schemas.
//!
//! The pipeline a reconcile uses is [`load`]: parse, validate, render and hash, with every error
//! collected so the status can show all of them and the record never reaches Nomad.

pub mod analysis;
pub mod autoscaling;
pub mod duration;
pub mod hash;
#[cfg(test)]
mod hash_props;
pub mod key;
pub mod parse;
pub mod record;
pub mod render;
pub mod schema;
pub mod spec;
pub mod strategy;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
pub mod validate;
mod validate_analysis;
mod validate_job;
pub(crate) mod validate_strategy;
mod validate_update;

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use analysis::{AnalysisTemplate, OnEmpty, WebMetric};
pub use autoscaling::{Autoscaling, FixedValue, OnError, ScaleDown, ScaleUp, ScalingCheck, TargetValue, Threshold};
pub use duration::HumanDuration;
pub use hash::spec_hash;
pub use key::{AppKey, ParseAppKeyError};
pub use parse::{parse, parse_documents, record_key, split_documents};
pub use record::{JobJson, Record, ValidRecord};
pub use render::render;
pub use schema::{schemas, write_schemas};
pub use spec::{
    App, AppSpec, Check, CheckType, DeletionPolicy, Dependency, DriftPolicy, Metadata, PortSpec, Resources,
    ServiceSpec, Template,
};
pub use strategy::{
    AnalysisStep, BlueGreenStrategy, CanaryStep, CanaryStrategy, OnTimeout, PauseStep, PostPromotion, PrometheusQuery,
    Strategy, StrategyType, WebhookStep,
};
pub use validate::validate;

/// The only record version this Drover reads.
pub const API_VERSION: &str = "drover.io/v1alpha1";
/// The only record kind this Drover reads.
pub const KIND: &str = "App";
/// The job `Meta` key that marks a job as Drover's; its value is [`owner_value`] and never changes (DESIGN §3: any
/// other Meta change would restart every allocation).
pub const OWNER_META_KEY: &str = "drover.io/app";

/// The KV prefix Drover uses unless `--prefix` says otherwise.
pub const DEFAULT_PREFIX: &str = "drover";

/// The value of [`OWNER_META_KEY`] on the jobs of the app at `key` in the installation using `prefix`: the record's
/// own Consul key, `<prefix>/apps/<namespace>/<name>` (e.g. `drover/apps/default/web`).
///
/// This format is stable (a changed value restarts every allocation of the job): it names the installation, so two
/// Drovers with different `--prefix` never take each other's jobs for their own, and it tells a person reading
/// `nomad job inspect` where the record lives.
pub fn owner_value(prefix: &str, key: &AppKey) -> String {
    key.app_kv_key(prefix)
}

/// One problem with a record: where it is and why it is wrong.
///
/// `path` uses the record's own field names (`spec.template.count`,
/// `spec.job.TaskGroups[0].Tasks`, `metadata.labels["team"]`); an empty path means the whole
/// document (for example "not YAML or JSON").
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldError {
    /// Where the problem is, as a path of field names and `[index]`es from the document root.
    pub path: String,
    /// What is wrong and, where it helps, how to fix it.
    pub reason: String,
}

impl FieldError {
    /// A problem at `path`. Both parts are cut to a bounded length (`MAX_PATH_CHARS`,
    /// `MAX_REASON_CHARS`): reasons quote the record's own text (an unknown key, a bad name), and
    /// a hostile record must not be able to make its status larger than a Consul value.
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> FieldError {
        FieldError { path: truncate(path.into(), MAX_PATH_CHARS), reason: truncate(reason.into(), MAX_REASON_CHARS) }
    }

    /// The same problem seen from a containing document, e.g. `documents[2]`.
    #[must_use]
    pub fn prefixed(mut self, prefix: &str) -> FieldError {
        self.path = join_path(prefix, &self.path);
        self
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() { f.write_str(&self.reason) } else { write!(f, "{}: {}", self.path, self.reason) }
    }
}

/// A field error is also an error value, for callers that report one alone (`{}` prints
/// `path: reason`). Not retryable: the record must change.
impl std::error::Error for FieldError {}

/// Everything a reconcile needs about a valid record: the record, the Nomad job it renders to,
/// that job's ID and its spec hash.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// Where the record lives.
    pub key: AppKey,
    /// The parsed, valid record.
    pub app: App,
    /// The rendered Nomad job (`api.Job` JSON, durations in nanoseconds).
    pub job: serde_json::Value,
    /// The job's `ID`.
    pub job_id: String,
    /// `spec_hash(&job)`: what status records as `appliedHash`.
    pub hash: String,
}

/// Parses, validates (against `key`), renders and hashes a record's bytes.
///
/// # Errors
/// Every problem found, each with its path. When the bytes parse only partly (say, one unknown
/// field), the rest of the record is still validated, so the list is as complete as it can be.
pub fn load(key: &AppKey, bytes: &[u8]) -> Result<Desired, Vec<FieldError>> {
    load_for(DEFAULT_PREFIX, key, bytes)
}

/// [`load`] for the installation using KV prefix `prefix` (the owner mark in the job's `Meta` names it).
///
/// # Errors
/// As [`load`].
pub fn load_for(prefix: &str, key: &AppKey, bytes: &[u8]) -> Result<Desired, Vec<FieldError>> {
    let (app, mut errors) = parse::parse_lenient(bytes);
    let Some(app) = app else {
        return Err(cap_errors(errors));
    };
    // The record parsed only partly when `errors` is not empty: the fields in error were left
    // out. Validation findings on or around those fields would be echoes ("spec: set one of
    // job and template" after a broken template), so they wait until the field is fixed.
    let parse_paths: Vec<String> = errors.iter().map(|e| e.path.clone()).collect();
    errors.extend(
        validate(&app, Some(key)).into_iter().filter(|v| !parse_paths.iter().any(|p| related_paths(p, &v.path))),
    );
    if !errors.is_empty() {
        errors.sort();
        errors.dedup();
        return Err(cap_errors(errors));
    }
    let job = render(&app, prefix)?;
    let job_id = job.get("ID").and_then(serde_json::Value::as_str).unwrap_or(&app.metadata.name).to_owned();
    let hash = spec_hash(&job);
    Ok(Desired { key: key.clone(), app, job, job_id, hash })
}

/// The longest `FieldError::path` kept, in characters.
pub const MAX_PATH_CHARS: usize = 256;
/// The longest `FieldError::reason` kept, in characters.
pub const MAX_REASON_CHARS: usize = 512;
/// The most errors `load` reports; the rest are counted in a last entry. 100 errors of bounded
/// size keep a status far below Consul's 512 KiB value limit, and are more than a person reads.
pub const MAX_REPORTED_ERRORS: usize = 100;

/// `text` cut to `max_chars` characters, with `…` marking a cut.
pub(crate) fn truncate(mut text: String, max_chars: usize) -> String {
    if let Some((cut, _)) = text.char_indices().nth(max_chars) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

fn cap_errors(mut errors: Vec<FieldError>) -> Vec<FieldError> {
    if errors.len() > MAX_REPORTED_ERRORS {
        let more = errors.len() - (MAX_REPORTED_ERRORS - 1);
        errors.truncate(MAX_REPORTED_ERRORS - 1);
        errors.push(FieldError::new("", format!("… and {more} more errors")));
    }
    errors
}

/// Whether one path is the other or lies inside it (`spec` and `spec.template.count`).
fn related_paths(a: &str, b: &str) -> bool {
    let inside = |outer: &str, inner: &str| {
        inner == outer || inner.strip_prefix(outer).is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    };
    inside(a, b) || inside(b, a)
}

/// `parent` + `.child` (or `parent[3]` when `child` starts with `[`); either may be empty.
pub(crate) fn join_path(parent: &str, child: &str) -> String {
    match (parent.is_empty(), child.is_empty()) {
        (true, _) => child.to_owned(),
        (false, true) => parent.to_owned(),
        (false, false) if child.starts_with('[') => format!("{parent}{child}"),
        (false, false) => format!("{parent}.{child}"),
    }
}

/// The path of map key `key` under `parent`: `parent.key` for plain identifiers, otherwise
/// `parent["key"]` so keys with dots or slashes (`drover.io/app`) stay unambiguous.
pub(crate) fn key_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        join_path(parent, key)
    } else {
        let quoted = serde_json::to_string(key).unwrap_or_else(|_| format!("\"{key}\""));
        format!("{parent}[{quoted}]")
    }
}

/// The path of element `index` under `parent`: `parent[index]`.
pub(crate) fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_error_should_display_path_and_reason() {
        let e = FieldError::new("spec.template.count", "must be ≥ 0");
        assert_eq!(e.to_string(), "spec.template.count: must be ≥ 0");
        assert_eq!(FieldError::new("", "not YAML").to_string(), "not YAML");
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"path": "spec.template.count", "reason": "must be ≥ 0"})
        );
    }

    #[test]
    fn field_error_should_bound_what_it_quotes() {
        let e = FieldError::new("x".repeat(10_000), "é".repeat(10_000));
        assert_eq!(e.path.chars().count(), MAX_PATH_CHARS + 1);
        assert_eq!(e.reason.chars().count(), MAX_REASON_CHARS + 1);
        assert!(e.reason.ends_with('…'));
    }

    #[test]
    fn load_should_cap_the_number_of_errors() {
        let mut groups = String::new();
        for i in 0..500 {
            groups.push_str(&format!("      - {{Name: g{i}, Count: -1, Tasks: []}}\n"));
        }
        let doc = format!(
            "apiVersion: drover.io/v1alpha1\nkind: App\nmetadata: {{name: web}}\nspec:\n  job:\n    TaskGroups:\n{groups}"
        );
        let errors = load(&AppKey::new("default", "web"), doc.as_bytes()).expect_err("invalid");
        assert_eq!(errors.len(), MAX_REPORTED_ERRORS);
        assert_eq!(errors[MAX_REPORTED_ERRORS - 1].reason, "… and 901 more errors");
    }

    #[test]
    fn paths_should_quote_keys_that_are_not_identifiers() {
        assert_eq!(key_path("spec.job.Meta", "drover.io/app"), "spec.job.Meta[\"drover.io/app\"]");
        assert_eq!(key_path("spec", "template"), "spec.template");
        assert_eq!(index_path("spec.job.TaskGroups", 2), "spec.job.TaskGroups[2]");
        assert_eq!(FieldError::new("spec.x", "bad").prefixed("documents[2]").path, "documents[2].spec.x");
        assert_eq!(FieldError::new("", "bad").prefixed("documents[0]").path, "documents[0]");
    }
}
