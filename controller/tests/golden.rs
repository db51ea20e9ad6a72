//! Golden tests of the record pipeline, the published schemas and the example manifests.
//!
//! Regenerate every expected file (fixtures and `crds/`): `UPDATE_GOLDEN=1 cargo test -p drover --test golden`
//!
//! Each `tests/fixtures/records/<case>.{yaml,json,bin}` is loaded with `drover::app::load` and
//! compared with `<case>.expected.json`: either `{"jobId", "hash", "job"}` or `{"errors": [...]}`.
//! The key is `default/web` unless the file's first line is `# key: <namespace>/<name>`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
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
    for name in ["web.yaml", "worker.yaml", "api-autoscaled.yaml", "canary.yaml"] {
        let (key, bytes) = example(name);
        let desired = app::load(&key, &bytes).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(desired.job["Meta"]["drover.io/app"], format!("drover/apps/{key}"));
        assert!(desired.job["TaskGroups"].as_array().is_some_and(|g| !g.is_empty()));
    }
    let (web, bytes) = example("web.yaml");
    let desired = app::load(&web, &bytes).expect("web.yaml");
    assert_eq!(desired.job["TaskGroups"][0]["Count"], 3);
    assert_eq!(desired.job["TaskGroups"][0]["Services"][0]["Checks"][0]["Type"], "http");

    // The canary example: Nomad's canary fields rendered, its steps and analysis as the walk-through says.
    let (checkout, bytes) = example("canary.yaml");
    let desired = app::load(&checkout, &bytes).expect("canary.yaml");
    let update = &desired.job["TaskGroups"][0]["Update"];
    assert_eq!(
        (&update["Canary"], &update["AutoPromote"], &update["AutoRevert"]),
        (&json!(2), &json!(false), &json!(true))
    );
    let strategy = desired.app.spec.strategy.as_ref().expect("a strategy");
    let steps = &strategy.canary.as_ref().expect("canary settings").steps;
    assert!(matches!(
        steps.as_slice(),
        [app::CanaryStep::Pause(_), app::CanaryStep::Analysis(_), app::CanaryStep::Webhook(_)]
    ));
    assert!(strategy.post_promotion.as_ref().is_some_and(|p| p.analysis.is_some()));
    let template = drover::rollout::CompiledTemplate::new(&desired.app.spec.analysis["error-rate"]).expect("compiles");
    assert!(template.needs_baseline(), "the example compares the canary with the stable version");
    let vars = drover::prometheus::RolloutVars {
        version: 5,
        stable_version: Some(4),
        job_id: "checkout".into(),
        namespace: "default".into(),
        group: "checkout".into(),
        args: [("window".to_owned(), "1m".to_owned())].into_iter().collect(),
    };
    let query = template.resolve(&vars).expect("resolves");
    assert!(query.contains(r#"job="checkout",version="5",code=~"5.."}[1m]"#), "{query}");
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

/// Counts the bytes allocated by the current thread, so a test can bound the memory one parse
/// takes while other tests run on other threads.
struct CountingAllocator;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn account(delta: isize) {
    // `try_with`: allocations during thread teardown, after the cells are gone, are not counted.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counting only touches
// const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            account(layout.size() as isize);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        account(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            account(new_size as isize - layout.size() as isize);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// The most memory `f` had allocated at once on this thread, in bytes.
fn peak_bytes_of(f: impl FnOnce()) -> isize {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    f();
    PEAK.with(Cell::get) - start
}

#[test]
fn hostile_records_should_fail_within_bounded_memory() {
    let dir = manifest_dir().join("tests/fixtures/records");
    let key = AppKey::new("default", "web");
    for name in [
        "bad-billion-laughs.yaml",
        "bad-deep-nesting.json",
        "bad-deep-nesting-yaml.yaml",
        "bad-deep-nesting-block.yaml",
        "bad-huge-numbers.json",
        "bad-binary.bin",
    ] {
        let bytes = std::fs::read(dir.join(name)).expect("read fixture");
        let mut result = None;
        let peak = peak_bytes_of(|| result = Some(app::load(&key, &bytes)));
        assert!(result.is_some_and(|r| r.is_err()), "{name} must be invalid");
        // Measured at about 4 MiB for the alias bomb (its replay budget) and kilobytes for the
        // rest; an expanded bomb (10^9 strings) or unbounded nesting would take gigabytes.
        assert!(peak < 16 << 20, "{name} took {peak} bytes at peak");
    }
    // A record at the size limit, full of small keys, stays bounded too.
    let mut big = String::from("apiVersion: drover.io/v1alpha1\nkind: App\nmetadata: {name: web}\nspec:\n  job:\n");
    let mut i = 0;
    while big.len() < 500 * 1024 {
        big.push_str(&format!("    k{i}: [a, b, c]\n"));
        i += 1;
    }
    let peak = peak_bytes_of(|| {
        let _ = app::load(&key, big.as_bytes());
    });
    // Measured at about 20 MiB: a `serde_json::Value` tree costs ~40 bytes per input byte here.
    assert!(peak < 64 << 20, "a 500 KiB record took {peak} bytes at peak");
}
