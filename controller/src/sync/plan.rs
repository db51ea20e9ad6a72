//! The plan: the source's records against the records Consul holds, decided per record. Pure.
//!
//! | In the source | In Consul | Decision |
//! |---|---|---|
//! | yes | no | `Create` (CAS index 0: only if still absent) |
//! | yes | same, ignoring `drover.io/revision` | `Unchanged`: not written, so no new generation and no rollout |
//! | yes | different, hand-written or this sync's | `Update` (CAS on the index read) |
//! | yes | another sync's (`drover.io/sync` names it) | `OwnedElsewhere`: not written, reported as a conflict |
//! | no | this sync's, `--prune`, not `drover.io/prune: "false"` | `Prune` (delete-cas on the index read) |
//! | no | this sync's, no `--prune` | `Orphaned`: kept, listed |
//! | no | this sync's, `drover.io/prune: "false"` | `Retained`: kept, listed |
//! | no | hand-written or another sync's | not in the plan at all |

use std::collections::BTreeMap;

use serde_json::Value;

use super::load::SourceRecord;
use super::{PRUNE_ANNOTATION, REVISION_ANNOTATION, SYNC_ANNOTATION, SyncName};
use crate::app::{self, AppKey};
use crate::consul::KvPair;

/// What the sync does with one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// New in the source: written only if the key is still absent.
    Create,
    /// Changed in the source (or adopted from a hand-written record): written only if unchanged since read.
    Update,
    /// Already as the source says (the revision annotation aside): not written.
    Unchanged,
    /// This sync's record, gone from the source, `--prune` given: deleted only if unchanged since read.
    Prune,
    /// This sync's record, gone from the source, without `--prune`: kept.
    Orphaned,
    /// This sync's record, gone from the source, annotated `drover.io/prune: "false"`: kept even with `--prune`.
    Retained,
    /// In the source, but Consul's record belongs to another sync: not written (two syncs would fight over it).
    OwnedElsewhere {
        /// The other sync's name.
        sync: String,
    },
}

impl Action {
    /// A short lowercase word for tables and JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Unchanged => "unchanged",
            Action::Prune => "prune",
            Action::Orphaned => "orphaned",
            Action::Retained => "retained",
            Action::OwnedElsewhere { .. } => "conflict",
        }
    }

    /// Whether carrying out the action writes to Consul.
    pub fn writes(&self) -> bool {
        matches!(self, Action::Create | Action::Update | Action::Prune)
    }
}

/// One record's decision, with what the decision was made on.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanItem {
    /// The app.
    pub key: AppKey,
    /// What to do.
    pub action: Action,
    /// The `ModifyIndex` read (0 when absent): the CAS guard of the write.
    pub index: u64,
    /// The source file, for records in the source.
    pub file: Option<String>,
    /// The bytes to write, for records in the source.
    pub desired: Option<Vec<u8>>,
    /// What Consul held, when it held something.
    pub current: Option<Vec<u8>>,
}

/// Every decision, in key order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// One item per record in the source or owned by this sync.
    pub items: Vec<PlanItem>,
}

impl Plan {
    /// How many items have `action`'s kind.
    pub fn count(&self, action: &str) -> usize {
        self.items.iter().filter(|i| i.action.as_str() == action).count()
    }

    /// The items that write.
    pub fn writes(&self) -> impl Iterator<Item = &PlanItem> {
        self.items.iter().filter(|i| i.action.writes())
    }
}

/// Decides every record: `desired` (the validated source) against `current` (Consul's entries under
/// `<prefix>/apps/`; other keys are ignored).
pub fn plan(prefix: &str, desired: &[SourceRecord], current: &[KvPair], name: &SyncName, prune: bool) -> Plan {
    let current: BTreeMap<AppKey, &KvPair> =
        current.iter().filter_map(|e| Some((AppKey::from_kv_key(prefix, &e.key)?, e))).collect();
    let mut items = Vec::new();
    for record in desired {
        let existing = current.get(&record.key);
        let action = match existing {
            None => Action::Create,
            Some(entry) => match annotations(&entry.value).get(SYNC_ANNOTATION) {
                Some(owner) if owner != name.as_str() => Action::OwnedElsewhere { sync: owner.clone() },
                _ if same_record(&entry.value, &record.value) => Action::Unchanged,
                _ => Action::Update,
            },
        };
        items.push(PlanItem {
            key: record.key.clone(),
            action,
            index: existing.map_or(0, |e| e.modify_index),
            file: Some(record.file.clone()),
            desired: Some(record.bytes.clone()),
            current: existing.map(|e| e.value.clone()),
        });
    }
    let in_source: std::collections::BTreeSet<&AppKey> = desired.iter().map(|r| &r.key).collect();
    for (key, entry) in &current {
        if in_source.contains(key) {
            continue;
        }
        let notes = annotations(&entry.value);
        if notes.get(SYNC_ANNOTATION).map(String::as_str) != Some(name.as_str()) {
            continue;
        }
        let action = match (notes.get(PRUNE_ANNOTATION).map(String::as_str), prune) {
            (Some("false"), _) => Action::Retained,
            (_, true) => Action::Prune,
            (_, false) => Action::Orphaned,
        };
        items.push(PlanItem {
            key: key.clone(),
            action,
            index: entry.modify_index,
            file: None,
            desired: None,
            current: Some(entry.value.clone()),
        });
    }
    items.sort_by(|a, b| a.key.cmp(&b.key));
    Plan { items }
}

/// A stored record's annotations, read leniently: a record that does not parse has none (so it is never pruned,
/// and a sync that has it in its source rewrites it).
fn annotations(bytes: &[u8]) -> BTreeMap<String, String> {
    document(bytes)
        .and_then(|v| v.get("metadata")?.get("annotations")?.as_object().cloned())
        .map(|m| m.into_iter().filter_map(|(k, v)| Some((k, v.as_str()?.to_owned()))).collect())
        .unwrap_or_default()
}

/// One stored document as JSON, YAML or JSON alike; `None` when it is not exactly one document.
pub(crate) fn document(bytes: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut documents = app::split_documents(text).ok()?;
    if documents.len() == 1 { documents.pop() } else { None }
}

/// Whether the stored record says what the source says, ignoring `drover.io/revision` (bookkeeping: a commit that
/// does not change a record must not rewrite it) and formatting (a hand-written YAML record equal to the source's
/// is unchanged).
pub(crate) fn same_record(stored: &[u8], desired: &Value) -> bool {
    let Some(mut stored) = document(stored) else { return false };
    let mut desired = desired.clone();
    for v in [&mut stored, &mut desired] {
        if let Some(a) = v.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
            a.remove(REVISION_ANNOTATION);
        }
    }
    stored == desired
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::load::{Stamp, load_records};
    use crate::sync::source::SourceFile;

    fn name() -> SyncName {
        "deploy".parse().unwrap()
    }

    fn record(app: &str, image: &str, revision: &str) -> SourceRecord {
        let text = format!(
            "apiVersion: drover.io/v1alpha1\nkind: App\nmetadata: {{name: {app}}}\nspec:\n  template: {{image: {image}, \
             count: 1}}\n"
        );
        let stamp = Stamp { sync: name(), label: "file:///r".into(), revision: revision.into() };
        let file = SourceFile { path: format!("{app}.yaml"), text: Ok(text) };
        load_records("drover", &[file], &stamp).unwrap().remove(0)
    }

    fn stored(key: &str, bytes: &[u8], index: u64) -> KvPair {
        KvPair::written(&format!("drover/apps/default/{key}"), index, bytes)
    }

    fn actions(plan: &Plan) -> Vec<(String, Action)> {
        plan.items.iter().map(|i| (i.key.name.clone(), i.action.clone())).collect()
    }

    #[test]
    fn plan_should_not_rewrite_a_record_whose_only_change_is_the_revision() {
        let old = record("web", "nginx:1", "rev1");
        let new = record("web", "nginx:1", "rev2");
        let changed = record("api", "nginx:2", "rev2");
        let current = [stored("web", &old.bytes, 10), stored("api", &record("api", "nginx:1", "rev1").bytes, 11)];
        let plan = plan("drover", &[new, changed], &current, &name(), false);
        assert_eq!(
            actions(&plan),
            [("api".into(), Action::Update), ("web".into(), Action::Unchanged)],
            "only the record whose content changed is written"
        );
        assert_eq!(plan.items[0].index, 11, "the update is guarded by the index read");
    }

    #[test]
    fn plan_should_prune_only_this_syncs_records_that_left_the_source() {
        let mine = record("gone", "nginx", "r");
        let kept = String::from_utf8(record("keep", "nginx", "r").bytes)
            .unwrap()
            .replace("\"drover.io/revision\"", "\"drover.io/prune\": \"false\",\n      \"drover.io/revision\"");
        let other = String::from_utf8(record("theirs", "nginx", "r").bytes)
            .unwrap()
            .replace("\"drover.io/sync\": \"deploy\"", "\"drover.io/sync\": \"other\"");
        let current = [
            stored("gone", &mine.bytes, 1),
            stored("keep", kept.as_bytes(), 2),
            stored("theirs", other.as_bytes(), 3),
            stored("hand", b"apiVersion: drover.io/v1alpha1\nkind: App\nmetadata: {name: hand}\n", 4),
            stored("broken", b"{ not a record", 5),
        ];
        let pruned = plan("drover", &[], &current, &name(), true);
        assert_eq!(actions(&pruned), [("gone".into(), Action::Prune), ("keep".into(), Action::Retained)]);
        let kept = plan("drover", &[], &current, &name(), false);
        assert_eq!(actions(&kept), [("gone".into(), Action::Orphaned), ("keep".into(), Action::Retained)]);
    }

    #[test]
    fn plan_should_create_adopt_hand_written_records_and_refuse_another_syncs() {
        let other = String::from_utf8(record("theirs", "nginx", "r").bytes)
            .unwrap()
            .replace("\"drover.io/sync\": \"deploy\"", "\"drover.io/sync\": \"other\"");
        let current = [
            stored("theirs", other.as_bytes(), 3),
            stored("hand", b"apiVersion: drover.io/v1alpha1\nkind: App\nmetadata: {name: hand}\n", 4),
            KvPair { key: "drover/control/default/new".into(), ..stored("x", b"{}", 9) },
        ];
        let desired = [record("theirs", "nginx", "r"), record("hand", "nginx", "r"), record("new", "nginx", "r")];
        let plan = plan("drover", &desired, &current, &name(), true);
        assert_eq!(
            actions(&plan),
            [
                ("hand".into(), Action::Update),
                ("new".into(), Action::Create),
                ("theirs".into(), Action::OwnedElsewhere { sync: "other".into() }),
            ]
        );
        assert_eq!(plan.items[1].index, 0, "a create is guarded by absence");
    }

    #[test]
    fn same_record_should_ignore_formatting() {
        let r = record("web", "nginx", "r1");
        let yaml = serde_saphyr::to_string(&r.value).unwrap();
        assert!(same_record(yaml.as_bytes(), &r.value));
        assert!(!same_record(&record("web", "nginx:2", "r1").bytes, &r.value));
    }
}
