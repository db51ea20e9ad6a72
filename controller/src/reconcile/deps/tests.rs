//! The dependency view, computed from the stores, as sentences.

use super::*;
use crate::consul::kv::KvPair;
use crate::status::AppStatus;
use crate::store::{RecordsWriter, StatusesWriter};

fn key(name: &str) -> AppKey {
    AppKey::new("default", name)
}

/// A valid record of `default/<name>` depending on `deps` (each `name` or `ns/name`), at generation `index`.
fn record(name: &str, index: u64, deps: &[&str]) -> KvPair {
    let mut yaml = format!(
        "apiVersion: drover.io/v1alpha1\nkind: App\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  template: {{image: 'nginx:1', count: 1}}\n"
    );
    if !deps.is_empty() {
        yaml.push_str("  dependsOn:\n");
        for d in deps {
            match d.split_once('/') {
                Some((ns, n)) => yaml.push_str(&format!("    - {{name: {n}, namespace: {ns}}}\n")),
                None => yaml.push_str(&format!("    - {{name: {d}}}\n")),
            }
        }
    }
    pair(&format!("drover/apps/default/{name}"), index, &yaml)
}

fn pair(k: &str, index: u64, value: &str) -> KvPair {
    KvPair::written(k, index, value.as_bytes())
}

struct Stores {
    records_writer: RecordsWriter,
    records: Records,
    status_writer: StatusesWriter,
    statuses: Statuses,
}

impl Stores {
    fn new(snapshot: &[KvPair]) -> Stores {
        let (mut records_writer, records) = crate::store::records("drover");
        records_writer.apply_snapshot(snapshot);
        let (status_writer, statuses) = crate::store::statuses("drover");
        Stores { records_writer, records, status_writer, statuses }
    }

    fn status(&self, name: &str, phase: Phase, generation: u64, depends_on: &[&str]) {
        let s = AppStatus {
            phase,
            observed_generation: generation,
            depends_on: depends_on.iter().map(|d| (*d).to_string()).collect(),
            ..AppStatus::default()
        };
        self.status_writer.set(key(name), s, 1);
    }

    fn present(&self, name: &str) -> RecordState {
        RecordState::Present(self.records.get(&key(name)).expect("a record"))
    }

    fn view(&self, name: &str) -> DependencyView {
        view(&key(name), &self.present(name), &self.records, &self.statuses)
    }

    fn gone_view(&self, name: &str) -> DependencyView {
        view(&key(name), &RecordState::Gone, &self.records, &self.statuses)
    }
}

#[test]
fn view_should_be_empty_for_an_app_without_dependencies() {
    let stores = Stores::new(&[record("db", 5, &[])]);
    assert_eq!(stores.view("db"), DependencyView::none());
    assert_eq!(stores.view("db").waiting_for(), None);
}

#[test]
fn view_should_say_ready_only_for_healthy_at_the_current_generation() {
    let stores = Stores::new(&[record("db", 5, &[]), record("web", 6, &["db"])]);
    // No status yet.
    assert_eq!(stores.view("web").dependencies, vec![(key("db"), DependencyState::Waiting { phase: None })]);
    assert_eq!(stores.view("web").waiting_for().as_deref(), Some("waiting for default/db (no status yet)"));
    // Progressing.
    stores.status("db", Phase::Progressing, 5, &[]);
    assert_eq!(stores.view("web").waiting_for().as_deref(), Some("waiting for default/db (Progressing)"));
    // Healthy, but for an older generation of its record.
    stores.status("db", Phase::Healthy, 4, &[]);
    assert_eq!(
        stores.view("web").dependencies,
        vec![(key("db"), DependencyState::Waiting { phase: Some(Phase::Healthy) })]
    );
    assert_eq!(
        stores.view("web").waiting_for().as_deref(),
        Some("waiting for default/db (Healthy at an older generation)")
    );
    // Healthy at its current generation.
    stores.status("db", Phase::Healthy, 5, &[]);
    assert_eq!(stores.view("web").dependencies, vec![(key("db"), DependencyState::Ready)]);
    assert_eq!(stores.view("web").waiting_for(), None);
}

#[test]
fn view_should_report_a_missing_dependency_and_resolve_namespaces() {
    let stores = Stores::new(&[record("web", 6, &["db", "shared/cache"])]);
    let v = stores.view("web");
    assert_eq!(
        v.dependencies,
        vec![(key("db"), DependencyState::Missing), (AppKey::new("shared", "cache"), DependencyState::Missing)]
    );
    assert_eq!(v.missing(), vec![&key("db"), &AppKey::new("shared", "cache")]);
    assert_eq!(v.waiting_for().as_deref(), Some("waiting for default/db (no such app), shared/cache (no such app)"));
}

#[test]
fn view_should_find_a_cycle_through_the_app_only() {
    // a → b → c → a is a cycle through each of them; d → a only waits for a.
    let stores =
        Stores::new(&[record("a", 1, &["b"]), record("b", 2, &["c"]), record("c", 3, &["a"]), record("d", 4, &["a"])]);
    assert_eq!(stores.view("a").cycle, Some(vec![key("a"), key("b"), key("c"), key("a")]));
    assert_eq!(stores.view("b").cycle, Some(vec![key("b"), key("c"), key("a"), key("b")]));
    assert_eq!(stores.view("d").cycle, None);
    assert!(
        stores
            .view("a")
            .waiting_for()
            .is_some_and(|w| w.contains("the dependency cycle default/a → default/b → default/c → default/a")),
        "{:?}",
        stores.view("a").waiting_for()
    );
}

#[test]
fn view_should_find_a_cycle_behind_a_diamond_without_looping() {
    // a → {b, c}; b → d; c → d; d → a.
    let stores = Stores::new(&[
        record("a", 1, &["b", "c"]),
        record("b", 2, &["d"]),
        record("c", 3, &["d"]),
        record("d", 4, &["a"]),
        record("e", 5, &["b", "c"]),
    ]);
    assert_eq!(stores.view("a").cycle, Some(vec![key("a"), key("b"), key("d"), key("a")]));
    assert_eq!(stores.view("e").cycle, None);
}

#[test]
fn deleted_view_should_list_dependents_still_there() {
    let mut stores = Stores::new(&[record("db", 1, &[]), record("web", 2, &["db"]), record("api", 3, &["db"])]);
    // Both records exist and list db.
    assert_eq!(
        stores.gone_view("db").dependents,
        vec![(key("api"), DependentState::Listed), (key("web"), DependentState::Listed)]
    );
    // web's record is gone but its deletion is not done (status left); api's record no longer lists db.
    stores.status("web", Phase::Deleting, 2, &["default/db"]);
    stores.status("api", Phase::Healthy, 3, &["default/db"]);
    stores.records_writer.apply_snapshot(&[record("db", 1, &[]), record("api", 7, &[])]);
    assert_eq!(stores.gone_view("db").dependents, vec![(key("web"), DependentState::Deleting)]);
    // web's deletion is done.
    stores.status_writer.remove(&key("web"));
    assert_eq!(stores.gone_view("db").dependents, vec![]);
}

#[test]
fn deleted_view_should_count_an_invalid_dependent_by_its_last_valid_list() {
    let mut stores = Stores::new(&[record("db", 1, &[]), record("web", 2, &["db"])]);
    stores.status("web", Phase::Healthy, 2, &["default/db"]);
    stores.records_writer.apply_snapshot(&[record("db", 1, &[]), pair("drover/apps/default/web", 3, "{not yaml")]);
    assert_eq!(stores.gone_view("db").dependents, vec![(key("web"), DependentState::Listed)]);
}

#[test]
fn records_should_keep_the_reverse_index_current() {
    let mut stores = Stores::new(&[record("web", 2, &["db"]), record("api", 3, &["db", "cache"])]);
    assert_eq!(stores.records.dependents_of(&key("db")), vec![key("api"), key("web")]);
    assert_eq!(stores.records.dependents_of(&key("cache")), vec![key("api")]);
    // api drops db; web is deleted.
    stores.records_writer.apply_snapshot(&[record("api", 4, &["cache"])]);
    assert_eq!(stores.records.dependents_of(&key("db")), Vec::<AppKey>::new());
    assert_eq!(stores.records.dependents_of(&key("cache")), vec![key("api")]);
    // An invalid record depends on nothing.
    stores.records_writer.apply_snapshot(&[pair("drover/apps/default/api", 5, "{not yaml")]);
    assert_eq!(stores.records.dependents_of(&key("cache")), Vec::<AppKey>::new());
}
