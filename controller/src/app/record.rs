//! [`Record`]: what the reconciler reads of one record at one generation — valid (rendered, hashed, with the
//! policies the decision needs) or invalid (every field error). Loaded once per generation by the records watch.

use std::sync::Arc;

use serde_json::Value;

use super::{AppKey, DEFAULT_PREFIX, DeletionPolicy, DriftPolicy, FieldError, load_for, owner_value};
use crate::status::ObservedDeletionPolicy;

/// What a valid record asks for, reduced to what the decision needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidRecord {
    /// The record's generation (Consul ModifyIndex).
    pub generation: u64,
    /// The Nomad job ID it renders to.
    pub job_id: String,
    /// Hash of the rendered job (DESIGN §3).
    pub hash: String,
    /// The rendered job, as registered.
    pub job: JobJson,
    /// The value of the job's owner Meta key ([`owner_value`]).
    pub owner: String,
    /// The owner value Drover 0.1 wrote (`<namespace>/<name>`, which did not name the installation), accepted as
    /// this app's own only by the installation using the default prefix, so an upgrade takes its jobs back (and
    /// re-marks them once) instead of reporting every app in conflict. `None` for any other prefix.
    pub legacy_owner: Option<String>,
    /// True when a new version of this job makes Nomad create a deployment (a service job with a group that has
    /// allocations and a non-empty update strategy, api-contract B13 "Creation"): Drover then waits for it
    /// instead of judging the job by its status.
    pub expects_deployment: bool,
    /// The longest progress deadline of the job's groups (Nomad's default, 10 m, where none is set or it is 0): how
    /// long a deployment may go without placing anything before Drover calls the rollout stalled. Nomad starts its
    /// own deadline only at the first placement, so a deployment that can place nothing never fails by itself.
    pub progress_deadline: std::time::Duration,
    /// `spec.autoscaling`, validated: while it is set, autoscaling owns the group's count — the count is left out
    /// of [`ValidRecord::hash`], the record's count only seeds the first registration (clamped to `[min, max]`),
    /// and registers of an existing job keep the live count (`PreserveCounts`).
    pub autoscaling: Option<Arc<crate::autoscale::Policy>>,
    /// Groups of `spec.job` that carry Nomad's own `Scaling` policy: an external autoscaler (the Nomad Autoscaler)
    /// owns their count, so Drover leaves it out of the hash and keeps the live count on every register — it never
    /// fights that autoscaler. (A group cannot have both: validation refuses `spec.autoscaling` on such a group.)
    pub externally_scaled: Vec<String>,
    /// `spec.suspend`.
    pub suspend: bool,
    /// `spec.adopt`.
    pub adopt: bool,
    /// `spec.deletionPolicy`.
    pub deletion_policy: ObservedDeletionPolicy,
    /// `spec.driftPolicy`.
    pub drift_policy: DriftPolicy,
    /// `spec.strategy` (the default, `Rolling`, when absent): the steps, gates and bake the rollout engine carries
    /// out around Nomad's deployment.
    pub strategy: Arc<super::Strategy>,
    /// `spec.analysis`: the templates that steps name (validation proves every name a step uses exists).
    pub analysis: Arc<std::collections::BTreeMap<String, super::AnalysisTemplate>>,
    /// `spec.dependsOn`, each namespace resolved (absent: the app's own): the apps that must be `Healthy` at their
    /// current generation before this one is created or a new version of it registered.
    pub depends_on: Vec<AppKey>,
}

/// A rendered Nomad job, kept as its compact JSON text and parsed when a register is planned: every record holds
/// one, and a `serde_json::Value` of a job (order-preserving maps, a `String` per key) takes several times the
/// memory of its text — at 10 000 apps, tens of megabytes held to serve the few registers in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobJson(Arc<str>);

impl JobJson {
    /// The job `job`, as compact JSON.
    pub fn new(job: &Value) -> JobJson {
        JobJson(Arc::from(job.to_string()))
    }

    /// The job as a JSON value. The text was written by [`JobJson::new`], so it parses; should it not, the
    /// result is `null`, which Nomad refuses with an error naming the job (never a panic).
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }
}

/// One record as the reconciler sees it.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// A record that validates and renders.
    Valid(Arc<ValidRecord>),
    /// A record that does not; it never reaches Nomad.
    Invalid {
        /// The record's generation.
        generation: u64,
        /// Every problem, with its path.
        errors: Arc<Vec<FieldError>>,
    },
}

impl ValidRecord {
    /// True when `job` carries this app's owner mark (or the 0.1 mark, for the default installation).
    pub fn marks_own(&self, job: &crate::live::LiveJob) -> bool {
        job.owned_by(&self.owner) || self.legacy_owner.as_deref().is_some_and(|legacy| job.owned_by(legacy))
    }
}

impl Record {
    /// The apps this record depends on (`spec.dependsOn`); none for an invalid record.
    pub fn depends_on(&self) -> &[AppKey] {
        match self {
            Record::Valid(r) => &r.depends_on,
            Record::Invalid { .. } => &[],
        }
    }

    /// Parses, validates, renders and hashes the record stored at `key` (installation `prefix`) at `generation`.
    pub fn load(prefix: &str, key: &AppKey, bytes: &[u8], generation: u64) -> Record {
        match load_for(prefix, key, bytes) {
            Ok(mut d) => {
                let autoscaling = match d
                    .app
                    .spec
                    .autoscaling
                    .as_ref()
                    .map(|a| crate::autoscale::Policy::from_record(a, &super::validate::group_names(&d.app)))
                {
                    None => None,
                    Some(Ok(policy)) => Some(Arc::new(policy)),
                    Some(Err(errors)) => return Record::Invalid { generation, errors: Arc::new(errors) },
                };
                let externally_scaled = externally_scaled(&d.job);
                if let Some(policy) = &autoscaling {
                    d.hash = seed_scaled_count(&mut d.job, policy, &externally_scaled);
                } else if !externally_scaled.is_empty() {
                    d.hash = hash_without_counts(&d.job, &externally_scaled);
                }
                Record::Valid(Arc::new(ValidRecord {
                    generation,
                    expects_deployment: expects_deployment(&d.job),
                    progress_deadline: progress_deadline(&d.job),
                    owner: owner_value(prefix, key),
                    legacy_owner: (prefix == DEFAULT_PREFIX).then(|| key.to_string()),
                    job_id: d.job_id,
                    hash: d.hash,
                    job: JobJson::new(&d.job),
                    suspend: d.app.spec.suspend,
                    adopt: d.app.spec.adopt,
                    deletion_policy: match d.app.spec.deletion_policy {
                        DeletionPolicy::Stop => ObservedDeletionPolicy::Stop,
                        DeletionPolicy::Purge => ObservedDeletionPolicy::Purge,
                        DeletionPolicy::Orphan => ObservedDeletionPolicy::Orphan,
                    },
                    drift_policy: d.app.spec.drift_policy,
                    autoscaling,
                    externally_scaled,
                    strategy: Arc::new(d.app.spec.strategy.clone().unwrap_or_default()),
                    analysis: Arc::new(d.app.spec.analysis.clone()),
                    depends_on: d.app.spec.depends_on.iter().map(|dep| dep.key(&key.namespace)).collect(),
                }))
            }
            Err(errors) => Record::Invalid { generation, errors: Arc::new(errors) },
        }
    }

    /// The record's generation.
    pub fn generation(&self) -> u64 {
        match self {
            Record::Valid(r) => r.generation,
            Record::Invalid { generation, .. } => *generation,
        }
    }

    /// The Nomad job ID: the rendered one, or the record's name when it does not render.
    pub fn job_id<'a>(&'a self, key: &'a AppKey) -> &'a str {
        match self {
            Record::Valid(r) => &r.job_id,
            Record::Invalid { .. } => &key.name,
        }
    }
}

/// Clamps the scaled group's count to `[min, max]` in `job` (the record's count only seeds the first registration)
/// and returns the spec hash with that count (and any externally scaled group's) left out, so neither autoscaling
/// nor a new record count alone changes it: a deploy never resets the count (issue #11).
fn seed_scaled_count(job: &mut Value, policy: &crate::autoscale::Policy, external: &[String]) -> String {
    let groups = job.get_mut("TaskGroups").and_then(Value::as_array_mut);
    for g in groups.into_iter().flatten() {
        if g.get("Name").and_then(Value::as_str) == Some(policy.group.as_str()) {
            let count = g.get("Count").and_then(Value::as_i64).unwrap_or(1).clamp(policy.min, policy.max);
            g["Count"] = Value::from(count);
        }
    }
    let mut groups: Vec<String> = external.to_vec();
    groups.push(policy.group.clone());
    hash_without_counts(job, &groups)
}

/// The spec hash of `job` with the counts of `groups` left out.
fn hash_without_counts(job: &Value, groups: &[String]) -> String {
    let mut without = job.clone();
    let list = without.get_mut("TaskGroups").and_then(Value::as_array_mut);
    for g in list.into_iter().flatten() {
        let name = g.get("Name").and_then(Value::as_str).unwrap_or_default().to_string();
        if groups.contains(&name)
            && let Some(map) = g.as_object_mut()
        {
            map.remove("Count");
        }
    }
    super::spec_hash(&without)
}

/// The groups of `job` with a Nomad `Scaling` block that is not disabled (`Enabled: false`).
pub fn externally_scaled(job: &Value) -> Vec<String> {
    let groups = job.get("TaskGroups").and_then(Value::as_array);
    groups
        .into_iter()
        .flatten()
        .filter(|g| {
            g.get("Scaling")
                .filter(|s| s.is_object())
                .is_some_and(|s| s.get("Enabled").and_then(Value::as_bool) != Some(false))
        })
        .filter_map(|g| g.get("Name").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// Whether registering a new version of `job` makes Nomad create a deployment (api-contract B11 defaults and B13
/// "Creation"): a service job (the default type) with a group whose count is above zero and whose update strategy
/// — the group's, else the job's when non-empty, else Nomad's default `MaxParallel: 1` — has `MaxParallel > 0`.
pub fn expects_deployment(job: &Value) -> bool {
    let job_type = job.get("Type").and_then(Value::as_str).unwrap_or("service");
    if job_type != "service" {
        return false;
    }
    let max_parallel = |update: Option<&Value>| update.and_then(|u| u.get("MaxParallel")).and_then(Value::as_i64);
    let job_update = max_parallel(job.get("Update").filter(|u| !u.is_null()));
    let Some(groups) = job.get("TaskGroups").and_then(Value::as_array) else { return false };
    groups.iter().any(|g| {
        let count = g.get("Count").and_then(Value::as_i64).unwrap_or(1);
        let parallel = max_parallel(g.get("Update").filter(|u| !u.is_null())).or(job_update).unwrap_or(1);
        count > 0 && parallel > 0
    })
}

/// Nomad's default `ProgressDeadline` (api-contract B12).
pub const DEFAULT_PROGRESS_DEADLINE: std::time::Duration = std::time::Duration::from_secs(600);

/// The longest `ProgressDeadline` (nanoseconds in the job JSON) of the job's groups, the job's own where a group has
/// none; [`DEFAULT_PROGRESS_DEADLINE`] where neither is set or the value is 0 ("fail on the first unhealthy
/// allocation", which says nothing about placement).
pub fn progress_deadline(job: &Value) -> std::time::Duration {
    let of = |update: Option<&Value>| {
        update.and_then(|u| u.get("ProgressDeadline")).and_then(Value::as_u64).filter(|ns| *ns > 0)
    };
    let job_level = of(job.get("Update"));
    let groups = job.get("TaskGroups").and_then(Value::as_array);
    let longest = groups.into_iter().flatten().filter_map(|g| of(g.get("Update")).or(job_level)).max();
    longest.or(job_level).map_or(DEFAULT_PROGRESS_DEADLINE, std::time::Duration::from_nanos)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn expects_deployment_should_follow_nomads_creation_rule() {
        assert!(expects_deployment(&json!({"TaskGroups": [{"Count": 2}]})), "default update strategy");
        assert!(!expects_deployment(&json!({"TaskGroups": [{"Count": 0}]})), "nothing to place");
        assert!(!expects_deployment(&json!({"Type": "batch", "TaskGroups": [{"Count": 2}]})));
        assert!(!expects_deployment(&json!({"TaskGroups": [{"Count": 2, "Update": {"MaxParallel": 0}}]})));
        assert!(!expects_deployment(&json!({"Update": {"MaxParallel": 0}, "TaskGroups": [{"Count": 2}]})));
        assert!(expects_deployment(
            &json!({"Update": {"MaxParallel": 0}, "TaskGroups": [{"Count": 2, "Update": {"MaxParallel": 2}}]})
        ));
    }

    #[test]
    fn progress_deadline_should_be_the_longest_set_or_nomads_default() {
        assert_eq!(progress_deadline(&json!({"TaskGroups": [{}]})), DEFAULT_PROGRESS_DEADLINE);
        let job = json!({"Update": {"ProgressDeadline": 60_000_000_000_u64},
            "TaskGroups": [{}, {"Update": {"ProgressDeadline": 120_000_000_000_u64}}]});
        assert_eq!(progress_deadline(&job), std::time::Duration::from_secs(120));
        let zero = json!({"TaskGroups": [{"Update": {"ProgressDeadline": 0}}]});
        assert_eq!(progress_deadline(&zero), DEFAULT_PROGRESS_DEADLINE);
    }

    #[test]
    fn externally_scaled_groups_should_keep_their_count_out_of_the_hash() {
        let job = |count: u64| {
            json!({"TaskGroups": [{"Name": "a", "Count": count, "Scaling": {"Min": 1, "Max": 9}},
                {"Name": "b", "Count": 1, "Scaling": {"Enabled": false}}]})
        };
        assert_eq!(externally_scaled(&job(2)), vec!["a".to_string()], "a disabled policy scales nothing");
        let groups = externally_scaled(&job(2));
        assert_eq!(hash_without_counts(&job(2), &groups), hash_without_counts(&job(7), &groups));
    }

    #[test]
    fn load_should_mark_the_job_with_the_installation() {
        let yaml = "apiVersion: drover.io/v1alpha1\nkind: App\nmetadata: {name: web, namespace: default}\nspec:\n  template: {image: 'nginx:1', count: 1}\n";
        let key = AppKey::new("default", "web");
        let Record::Valid(a) = Record::load("drover", &key, yaml.as_bytes(), 5) else { panic!("valid") };
        let Record::Valid(b) = Record::load("team-b", &key, yaml.as_bytes(), 5) else { panic!("valid") };
        assert_eq!(a.owner, "drover/apps/default/web");
        assert_eq!(a.job.value()["Meta"]["drover.io/app"], "drover/apps/default/web");
        assert_eq!(b.job.value()["Meta"]["drover.io/app"], "team-b/apps/default/web");
        assert_eq!(a.job.value()["TaskGroups"][0]["Count"], 1, "the rendered job, kept as text, reads back whole");
        assert_ne!(a.hash, b.hash, "another installation's job is another spec");
        assert!(a.expects_deployment);
    }
}
