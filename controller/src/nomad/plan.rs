//! The answer to `POST /v1/job/:id/plan` (contract B7): annotations and the typed diff tree.
//!
//! Drover judges "no change" by its own spec hash, never by parsing this diff (DESIGN §3); the diff is for people
//! (`drover diff`, status conditions), and `Diff.Type == None` is the one field a decision may read.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use super::types::null_default;

/// What a diff node says happened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DiffType {
    /// No existing job or object.
    Added,
    /// Removed.
    Deleted,
    /// Changed.
    Edited,
    /// No functional difference.
    #[default]
    None,
    /// A value this version does not know.
    Unknown(String),
}

impl<'de> Deserialize<'de> for DiffType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Ok(match text.as_str() {
            "Added" => Self::Added,
            "Deleted" => Self::Deleted,
            "Edited" => Self::Edited,
            "None" => Self::None,
            _ => Self::Unknown(text),
        })
    }
}

/// A changed field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct FieldDiff {
    /// What happened.
    #[serde(rename = "Type")]
    pub diff_type: DiffType,
    /// Field name, e.g. `Meta[version]`.
    pub name: String,
    /// Old value, as text.
    pub old: String,
    /// New value, as text.
    pub new: String,
    /// Scheduler annotations.
    #[serde(deserialize_with = "null_default")]
    pub annotations: Vec<String>,
}

/// A changed nested object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ObjectDiff {
    /// What happened.
    #[serde(rename = "Type")]
    pub diff_type: DiffType,
    /// Object name.
    pub name: String,
    /// Changed fields.
    #[serde(deserialize_with = "null_default")]
    pub fields: Vec<FieldDiff>,
    /// Changed nested objects.
    #[serde(deserialize_with = "null_default")]
    pub objects: Vec<ObjectDiff>,
}

/// A changed task.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskDiff {
    /// What happened.
    #[serde(rename = "Type")]
    pub diff_type: DiffType,
    /// Task name.
    pub name: String,
    /// Changed fields.
    #[serde(deserialize_with = "null_default")]
    pub fields: Vec<FieldDiff>,
    /// Changed nested objects.
    #[serde(deserialize_with = "null_default")]
    pub objects: Vec<ObjectDiff>,
    /// e.g. `forces create/destroy update`.
    #[serde(deserialize_with = "null_default")]
    pub annotations: Vec<String>,
}

/// A changed task group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskGroupDiff {
    /// What happened.
    #[serde(rename = "Type")]
    pub diff_type: DiffType,
    /// Group name.
    pub name: String,
    /// Changed fields.
    #[serde(deserialize_with = "null_default")]
    pub fields: Vec<FieldDiff>,
    /// Changed nested objects.
    #[serde(deserialize_with = "null_default")]
    pub objects: Vec<ObjectDiff>,
    /// Changed tasks.
    #[serde(deserialize_with = "null_default")]
    pub tasks: Vec<TaskDiff>,
    /// Planned changes by kind (`canary`, `create/destroy update`, …) and count.
    #[serde(deserialize_with = "null_default")]
    pub updates: BTreeMap<String, u64>,
}

/// The plan's diff of the whole job (B7). `diff_type == None` means no functional difference.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobDiff {
    /// What happened.
    #[serde(rename = "Type")]
    pub diff_type: DiffType,
    /// Job ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Changed fields.
    #[serde(deserialize_with = "null_default")]
    pub fields: Vec<FieldDiff>,
    /// Changed nested objects.
    #[serde(deserialize_with = "null_default")]
    pub objects: Vec<ObjectDiff>,
    /// Changed groups.
    #[serde(deserialize_with = "null_default")]
    pub task_groups: Vec<TaskGroupDiff>,
}

/// The scheduler's planned changes for one group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DesiredUpdates {
    /// Unchanged allocations.
    pub ignore: u64,
    /// New placements.
    pub place: u64,
    /// Migrations.
    pub migrate: u64,
    /// Stops.
    pub stop: u64,
    /// In-place updates.
    pub in_place_update: u64,
    /// Destructive updates.
    pub destructive_update: u64,
    /// Canaries.
    pub canary: u64,
    /// Preemptions.
    pub preemptions: u64,
}

/// Plan annotations.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PlanAnnotations {
    /// Per group.
    #[serde(rename = "DesiredTGUpdates", deserialize_with = "null_default")]
    pub desired_tg_updates: BTreeMap<String, DesiredUpdates>,
}

/// The answer to `POST /v1/job/:id/plan` (B7).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PlanResponse {
    /// What the scheduler would do; with ACLs on this can show updates even for a `None` diff (B7).
    pub annotations: Option<PlanAnnotations>,
    /// Groups that would not fit, with Nomad's metrics (kept raw).
    #[serde(rename = "FailedTGAllocs", deserialize_with = "null_default")]
    pub failed_tg_allocs: BTreeMap<String, serde_json::Value>,
    /// The existing job's `JobModifyIndex` (0 for a new job): a valid `EnforceIndex`.
    pub job_modify_index: u64,
    /// Present when the diff was asked for.
    pub diff: Option<JobDiff>,
    /// Newline-joined warnings.
    pub warnings: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_response_should_parse_the_diff_tree() {
        let plan: PlanResponse = serde_json::from_str(
            r#"{"Annotations":{"DesiredTGUpdates":{"web":{"Ignore":0,"Place":0,"DestructiveUpdate":3,"Canary":1}},"PreemptedAllocs":null},
             "FailedTGAllocs":null,"JobModifyIndex":38,"CreatedEvals":null,
             "Diff":{"Type":"Edited","ID":"web","Fields":null,"Objects":null,"TaskGroups":[{"Type":"Edited","Name":"web",
               "Fields":null,"Objects":null,"Tasks":[{"Type":"Edited","Name":"app","Fields":[{"Type":"Edited",
               "Name":"Meta[version]","Old":"1","New":"2","Annotations":null}],"Objects":null,
               "Annotations":["forces create/destroy update"]}],"Updates":{"canary":1,"create/destroy update":3}}]},
             "NextPeriodicLaunch":"0001-01-01T00:00:00Z","Warnings":"","Index":38}"#,
        )
        .unwrap();
        let diff = plan.diff.unwrap();
        assert_eq!(diff.diff_type, DiffType::Edited);
        let field = &diff.task_groups[0].tasks[0].fields[0];
        assert_eq!((field.name.as_str(), field.old.as_str(), field.new.as_str()), ("Meta[version]", "1", "2"));
        assert_eq!(diff.task_groups[0].updates["create/destroy update"], 3);
        assert_eq!(plan.annotations.unwrap().desired_tg_updates["web"].destructive_update, 3);
    }
}
