//! Every document of every source file validated with the controller's own loader, before anything is written.
//!
//! A document is stamped with the sync's annotations first and then validated as the exact bytes that will be
//! stored, so what passes here is what the controller will load (`app::load_for` on the same bytes). Every problem
//! of every file is collected: a sync with one invalid document writes nothing.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use super::source::SourceFile;
use super::{REVISION_ANNOTATION, SOURCE_ANNOTATION, SYNC_ANNOTATION, SyncName};
use crate::app::{self, AppKey, FieldError};

/// What a sync stamps on every record it writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// The sync's name (`drover.io/sync`).
    pub sync: SyncName,
    /// The source without credentials (`drover.io/source` is `<label>//<file>`).
    pub label: String,
    /// The revision being synced (`drover.io/revision`).
    pub revision: String,
}

/// One valid record of the source, ready to compare and write.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceRecord {
    /// Where it goes.
    pub key: AppKey,
    /// The file it came from.
    pub file: String,
    /// Its position among the file's documents (empty YAML documents not counted).
    pub document: usize,
    /// The stamped document.
    pub value: Value,
    /// The bytes to store: `value` as pretty JSON, as `drover apply` writes records.
    pub bytes: Vec<u8>,
}

/// One problem of the source: the file, the document (when the file could be split into documents) and the field.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// The file, from the source's root.
    pub file: String,
    /// The document's position in the file, when known.
    pub document: Option<usize>,
    /// The field and what is wrong with it.
    pub error: FieldError,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.document {
            Some(i) => write!(f, "{}: {}", self.file, self.error.clone().prefixed(&format!("documents[{i}]"))),
            None => write!(f, "{}: {}", self.file, self.error),
        }
    }
}

/// Splits, stamps and validates every document of `files` for the installation using `prefix`.
///
/// # Errors
/// Every problem found, in file order; then nothing may be written.
pub fn load_records(prefix: &str, files: &[SourceFile], stamp: &Stamp) -> Result<Vec<SourceRecord>, Vec<Problem>> {
    let mut records = Vec::new();
    let mut problems = Vec::new();
    let mut seen: BTreeMap<AppKey, (String, usize)> = BTreeMap::new();
    for file in files {
        let problem = |document: Option<usize>, error: FieldError| Problem { file: file.path.clone(), document, error };
        let text = match &file.text {
            Ok(text) => text,
            Err(reason) => {
                problems.push(problem(None, FieldError::new("", reason.clone())));
                continue;
            }
        };
        let documents = match app::split_documents(text) {
            Ok(documents) => documents,
            Err(errors) => {
                problems.extend(errors.into_iter().map(|e| problem(None, e)));
                continue;
            }
        };
        for (i, mut value) in documents.into_iter().enumerate() {
            stamp_annotations(&mut value, stamp, &file.path);
            let bytes = match serde_json::to_vec_pretty(&value) {
                Ok(bytes) => bytes,
                Err(e) => {
                    problems.push(problem(Some(i), FieldError::new("", format!("cannot encode: {e}"))));
                    continue;
                }
            };
            let Some(key) = app::record_key(&bytes) else {
                let reason = "required (a string), to know where the record goes";
                problems.push(problem(Some(i), FieldError::new("metadata.name", reason)));
                continue;
            };
            if let Err(errors) = app::load_for(prefix, &key, &bytes) {
                problems.extend(errors.into_iter().map(|e| problem(Some(i), e)));
                continue;
            }
            if let Some((other_file, other_doc)) = seen.get(&key) {
                let reason = format!("app {key} is also defined in {other_file} documents[{other_doc}]");
                problems.push(problem(Some(i), FieldError::new("metadata.name", reason)));
                continue;
            }
            seen.insert(key.clone(), (file.path.clone(), i));
            records.push(SourceRecord { key, file: file.path.clone(), document: i, value, bytes });
        }
    }
    if problems.is_empty() { Ok(records) } else { Err(problems) }
}

/// Sets the three sync annotations, creating `metadata.annotations` when absent. A document whose `metadata` or
/// `metadata.annotations` is not a mapping is left alone: validation reports it.
fn stamp_annotations(value: &mut Value, stamp: &Stamp, file: &str) {
    let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    let annotations = metadata.entry("annotations").or_insert_with(|| Value::Object(serde_json::Map::new()));
    let Some(annotations) = annotations.as_object_mut() else { return };
    annotations.insert(SYNC_ANNOTATION.to_owned(), Value::from(stamp.sync.as_str()));
    annotations.insert(SOURCE_ANNOTATION.to_owned(), Value::from(format!("{}//{file}", stamp.label)));
    annotations.insert(REVISION_ANNOTATION.to_owned(), Value::from(stamp.revision.as_str()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp() -> Stamp {
        Stamp { sync: "deploy".parse().unwrap(), label: "file:///r".into(), revision: "abc".into() }
    }

    fn file(path: &str, text: &str) -> SourceFile {
        SourceFile { path: path.into(), text: Ok(text.into()) }
    }

    const WEB: &str = "apiVersion: drover.io/v1alpha1\nkind: App\nmetadata: {name: web}\nspec:\n  template: {image: \
                       nginx, count: 1}\n";

    #[test]
    fn load_records_should_stamp_every_record_with_the_sync_annotations() {
        let two = format!("{WEB}---\n{}", WEB.replace("name: web", "name: api, namespace: prod"));
        let records = load_records("drover", &[file("apps/all.yaml", &two)], &stamp()).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].key, AppKey::new("prod", "api"));
        assert_eq!(records[1].document, 1);
        let app = app::parse(&records[0].bytes).unwrap();
        let annotations = &app.metadata.annotations;
        assert_eq!(annotations.get(SYNC_ANNOTATION).map(String::as_str), Some("deploy"));
        assert_eq!(annotations.get(SOURCE_ANNOTATION).map(String::as_str), Some("file:///r//apps/all.yaml"));
        assert_eq!(annotations.get(REVISION_ANNOTATION).map(String::as_str), Some("abc"));
    }

    #[test]
    fn load_records_should_report_every_problem_with_file_document_and_path() {
        let bad_count = WEB.replace("count: 1", "count: -1");
        let no_name = WEB.replace("name: web", "labels: {a: b}");
        let files = [
            file("a.yaml", &format!("{WEB}---\n{bad_count}")),
            file("b.yaml", &no_name),
            file("c.json", "{ not json"),
            file("d.yaml", WEB),
            SourceFile { path: "e.yaml".into(), text: Err("the file is not UTF-8 text".into()) },
        ];
        let problems = load_records("drover", &files, &stamp()).unwrap_err();
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(text[0].starts_with("a.yaml: documents[1].spec.template.count: "), "{text:?}");
        assert!(text.iter().any(|t| t.starts_with("b.yaml: documents[0].metadata.name: required")), "{text:?}");
        assert!(text.iter().any(|t| t.starts_with("c.json: documents[0]")), "{text:?}");
        assert!(text.iter().any(|t| t.contains("d.yaml: documents[0].metadata.name: app default/web is also")));
        assert!(text.iter().any(|t| t == "e.yaml: the file is not UTF-8 text"), "{text:?}");
    }
}
