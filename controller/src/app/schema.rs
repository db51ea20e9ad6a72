//! The JSON Schemas of the record and of its status, generated from the
//! Rust types so their doc comments are the schema's descriptions. `drover schema` writes them
//! to `crds/`; a test fails when the files there are stale.

use std::path::Path;

use serde_json::Value;

use super::spec::App;

/// Every schema Drover publishes, as `(file name, schema)`.
#[must_use]
pub fn schemas() -> Vec<(String, Value)> {
    vec![
        ("app.schema.json".to_owned(), schemars::schema_for!(App).to_value()),
        ("status.schema.json".to_owned(), schemars::schema_for!(crate::status::AppStatus).to_value()),
    ]
}

/// The exact text a schema file holds: pretty JSON and a final newline.
#[must_use]
pub fn schema_file_text(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_else(|_| schema.to_string());
    text.push('\n');
    text
}

/// Writes every schema of [`schemas`] into `dir` (created if missing).
///
/// # Errors
/// Creating the directory or writing a file failed.
pub fn write_schemas(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, schema) in schemas() {
        std::fs::write(dir.join(name), schema_file_text(&schema))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every property of every object in the schema, with its path, that has no description.
    fn undocumented(schema: &Value, path: &str, out: &mut Vec<String>) {
        match schema {
            Value::Object(map) => {
                if let Some(Value::Object(props)) = map.get("properties") {
                    for (name, prop) in props {
                        // An enum variant's doc sits on its one-property wrapper object.
                        let documented =
                            prop.get("description").is_some() || (props.len() == 1 && map.get("description").is_some());
                        if !documented {
                            out.push(format!("{path}.{name}"));
                        }
                    }
                }
                for (k, v) in map {
                    undocumented(v, &format!("{path}/{k}"), out);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    undocumented(v, &format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn schemas_should_document_every_record_field() {
        // The record's schema only: status.rs is documented by its own owner.
        for (name, schema) in schemas().into_iter().take(1) {
            let mut missing = Vec::new();
            undocumented(&schema, &name, &mut missing);
            assert!(missing.is_empty(), "fields without a doc comment: {missing:?}");
        }
    }

    #[test]
    fn app_schema_should_reject_unknown_fields() {
        let (_, schema) = &schemas()[0];
        assert_eq!(schema["additionalProperties"], Value::Bool(false));
        assert_eq!(schema["title"], "App");
    }
}
