//! Golden tests of the record pipeline, the published schemas and the example manifests.
//!
//! Regenerate every expected file (fixtures and `crds/`): `UPDATE_GOLDEN=1 cargo test -p drover --test golden`
//!
//! Each `tests/fixtures/records/<case>.{yaml,json,bin}` is loaded with `drover::app::load` and
//! compared with `<case>.expected.json`: either `{"jobId", "hash", "job"}` or `{"errors": [...]}`.
//! The key is `default/web` unless the file's first line is `# key: <namespace>/<name>`.

use std::path::{Path, PathBuf};

use drover::app::{self, AppKey, FieldError};
use serde_json::{Value, json};

fn updating() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some()
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn key_of(bytes: &[u8]) -> AppKey {
    let first = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    std::str::from_utf8(first)
        .ok()
        .and_then(|line| line.strip_prefix("# key: "))
        .map(|k| k.trim().parse().expect("a fixture's `# key:` line must be <ns>/<name>"))
        .unwrap_or_else(|| AppKey::new("default", "web"))
}

fn outcome(key: &AppKey, bytes: &[u8]) -> Value {
    match app::load(key, bytes) {
        Ok(desired) => json!({"jobId": desired.job_id, "hash": desired.hash, "job": desired.job}),
        Err(errors) => json!({"errors": errors}),
    }
}

/// Compares `actual` with the file at `path`, or writes it there when updating.
fn check_golden(path: &Path, actual: &str, failures: &mut Vec<String>) {
    if updating() {
        std::fs::write(path, actual).expect("write golden file");
        return;
    }
    match std::fs::read_to_string(path) {
        Ok(expected) if expected == actual => {}
        Ok(expected) => {
            failures.push(format!("{} differs:\n--- expected\n{expected}\n--- actual\n{actual}", path.display()))
        }
        Err(_) => failures.push(format!("{} is missing", path.display())),
    }
}

#[test]
fn records_should_match_their_golden_files() {
    let dir = manifest_dir().join("tests/fixtures/records");
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.ends_with(".expected.json")
                && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "json" | "bin"))
        })
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 20, "fixtures are missing: {inputs:?}");
    let mut failures = Vec::new();
    for input in &inputs {
        let bytes = std::fs::read(input).expect("read fixture");
        let actual = outcome(&key_of(&bytes), &bytes);
        let stem = input.file_stem().and_then(|s| s.to_str()).expect("stem");
        let golden = input.with_file_name(format!("{stem}.expected.json"));
        let text = serde_json::to_string_pretty(&actual).expect("json") + "\n";
        check_golden(&golden, &text, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn good_fixtures_should_load_and_bad_ones_should_not() {
    let dir = manifest_dir().join("tests/fixtures/records");
    for entry in std::fs::read_dir(&dir).expect("fixtures directory") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_owned();
        if name.ends_with(".expected.json") {
            continue;
        }
        let bytes = std::fs::read(&path).expect("read fixture");
        let result = app::load(&key_of(&bytes), &bytes);
        if name.starts_with("good-") {
            assert!(result.is_ok(), "{name} must load: {:?}", result.err());
        } else {
            let errors = result.expect_err(&format!("{name} must be invalid"));
            assert!(!errors.is_empty(), "{name}");
        }
    }
}

#[test]
fn schemas_should_match_crds() {
    let crds = manifest_dir().join("../crds");
    if updating() {
        app::write_schemas(&crds).expect("write crds/");
    }
    let mut stale = Vec::new();
    for (name, schema) in app::schemas() {
        let want = app::schema::schema_file_text(&schema);
        match std::fs::read_to_string(crds.join(&name)) {
            Ok(have) if have == want => {}
            _ => stale.push(name),
        }
    }
    assert!(
        stale.is_empty(),
        "crds/ is stale for {stale:?}: run `cargo run -p drover -- schema` \
         (or UPDATE_GOLDEN=1 cargo test -p drover --test golden)"
    );
}

fn example(name: &str) -> (AppKey, Vec<u8>) {
    let path = manifest_dir().join("../manifests/examples").join(name);
    let bytes = std::fs::read(&path).expect("read example");
    let app =
        app::parse_documents(std::str::from_utf8(&bytes).expect("utf-8")).ok().and_then(|apps| apps.into_iter().next());
    let key =
        app.map_or_else(|| AppKey::new("default", "broken"), |a| AppKey::new(a.metadata.namespace, a.metadata.name));
    (key, bytes)
}

#[test]
fn examples_should_validate_and_render() {
    for name in ["web.yaml", "worker.yaml"] {
        let (key, bytes) = example(name);
        let desired = app::load(&key, &bytes).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(desired.job["Meta"]["drover.io/app"], key.to_string());
        assert!(desired.job["TaskGroups"].as_array().is_some_and(|g| !g.is_empty()));
    }
    let (web, bytes) = example("web.yaml");
    let desired = app::load(&web, &bytes).expect("web.yaml");
    assert_eq!(desired.job["TaskGroups"][0]["Count"], 3);
    assert_eq!(desired.job["TaskGroups"][0]["Services"][0]["Checks"][0]["Type"], "http");
}

#[test]
fn broken_example_should_show_every_kind_of_error() {
    let (key, bytes) = example("broken.yaml");
    let errors: Vec<FieldError> = app::load(&key, &bytes).expect_err("broken.yaml must be invalid");
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    for want in ["metadata.name", "spec.template.count", "spec.template.imagee"] {
        assert!(paths.contains(&want), "{want} not in {paths:?}");
    }
}
