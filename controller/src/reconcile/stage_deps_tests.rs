//! The stage and `spec.dependsOn`, in-process against the fakes: the dependency view is gathered from the stores,
//! dependents are woken once the store holds the new status, and a deleted dependency waits for its dependents.

use std::sync::{Arc, Mutex};

use super::fake::{FakeKv, FakeNomad};
use super::*;
use crate::app::AppKey;
use crate::status::{Phase, Reason};
use crate::store::{LiveWriter, RecordsWriter, Statuses};

fn yaml(name: &str, deps: &[&str]) -> String {
    let mut y = format!(
        "apiVersion: drover.io/v1alpha1\nkind: App\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  template: {{image: 'nginx:1', count: 1}}\n"
    );
    if !deps.is_empty() {
        y.push_str("  dependsOn:\n");
        for d in deps {
            y.push_str(&format!("    - name: {d}\n"));
        }
    }
    y
}

fn key(name: &str) -> AppKey {
    AppKey::new("default", name)
}

/// Each wake-up: the app woken, why, and the phase of `db` the statuses store held at that moment.
type Woken = Arc<Mutex<Vec<(AppKey, &'static str, Option<Phase>)>>>;

struct Deps {
    stage: Stage<FakeNomad, FakeKv>,
    nomad: FakeNomad,
    kv: FakeKv,
    records: RecordsWriter,
    live: LiveWriter,
    statuses: Statuses,
    woken: Woken,
}

fn harness() -> Deps {
    let t = super::fake::TestStage::new(Arc::new(crate::metrics::Metrics::new()));
    let statuses = t.statuses;
    let woken: Woken = Arc::default();
    let wake: Wake = {
        let (woken, statuses) = (woken.clone(), statuses.clone());
        Arc::new(move |k: AppKey, why: &'static str| {
            let db = statuses.get(&key("db")).and_then(|e| e.status).map(|s| s.phase);
            woken.lock().unwrap_or_else(|p| p.into_inner()).push((k, why, db));
        })
    };
    let stage = t.stage.with_wake(wake);
    Deps { stage, nomad: t.nomad, kv: t.kv, records: t.records, live: t.live, statuses, woken }
}

impl Deps {
    /// Writes these records to KV (and removes the others) and lets the records watch see them.
    fn records(&mut self, records: &[(&str, &[&str])]) {
        for name in ["db", "web"] {
            if !records.iter().any(|(n, _)| *n == name) {
                self.kv.remove(&format!("drover/apps/default/{name}"));
            }
        }
        for (name, deps) in records {
            let k = format!("drover/apps/default/{name}");
            if self.kv.read(&k).is_none_or(|p| p.value != yaml(name, deps).as_bytes()) {
                self.kv.put(&k, yaml(name, deps).as_bytes());
            }
        }
        let pairs: Vec<_> =
            ["db", "web"].iter().filter_map(|n| self.kv.read(&format!("drover/apps/default/{n}"))).collect();
        self.records.apply_snapshot(&pairs);
    }

    fn phase(&self, name: &str) -> Option<Phase> {
        self.statuses.get(&key(name)).and_then(|e| e.status).map(|s| s.phase)
    }

    fn take_woken(&self) -> Vec<(AppKey, &'static str, Option<Phase>)> {
        std::mem::take(&mut *self.woken.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[tokio::test]
async fn stage_should_hold_a_dependent_and_wake_it_once_the_store_holds_the_new_status() {
    let mut h = harness();
    h.records(&[("db", &[]), ("web", &["db"])]);
    // web first: db has no status yet, so web waits and nothing is registered for it.
    h.stage.reconcile(key("web")).await;
    assert_eq!(h.phase("web"), Some(Phase::Pending));
    let status = h.statuses.get(&key("web")).and_then(|e| e.status).expect("web's status");
    let ready = status.condition(crate::status::ConditionType::Ready).expect("Ready");
    assert_eq!(ready.reason, Reason::WaitingForDependencies);
    assert_eq!(ready.message, "waiting for default/db (no status yet)");
    assert!(h.nomad.writes().is_empty(), "nothing registered: {:?}", h.nomad.writes());
    // web's first status names its dependency, but db's record is there: nothing of web concerns it.
    assert_eq!(h.take_woken(), vec![]);

    // db registers: its status turns Progressing, and web is woken with that status already in the store.
    h.stage.reconcile(key("db")).await;
    assert_eq!(h.nomad.writes(), vec!["register default/db"]);
    assert_eq!(h.take_woken(), vec![(key("web"), "dependency changed", Some(Phase::Progressing))]);
    h.stage.reconcile(key("web")).await;
    assert_eq!(h.nomad.writes(), vec!["register default/db"], "web still waits for db to be Healthy");
    // web's status did not change (same phase, same message): nothing is woken, no loop.
    assert_eq!(h.take_woken(), vec![]);
}

#[tokio::test]
async fn stage_should_delete_a_dependency_only_after_its_dependent() {
    let mut h = harness();
    h.records(&[("db", &[]), ("web", &["db"])]);
    // Give both a status (web waits, db registers).
    h.stage.reconcile(key("db")).await;
    h.stage.reconcile(key("web")).await;
    h.take_woken();
    // The Nomad watch has seen db's job: stopping it is possible from here on (the live cache is the proof).
    h.live.upsert_job(h.nomad.get("default", "db").expect("db's job"));
    // db's record is deleted while web's still lists it: db waits, nothing is stopped.
    h.records(&[("web", &["db"])]);
    h.stage.reconcile(key("db")).await;
    assert_eq!(h.phase("db"), Some(Phase::Deleting));
    assert_eq!(h.nomad.writes(), vec!["register default/db"], "db is not stopped while web depends on it");
    // web's record goes too: its deletion is done (it had no job), and db is woken.
    h.records(&[]);
    h.stage.reconcile(key("web")).await;
    assert_eq!(h.phase("web"), None, "web's status is removed");
    assert!(h.take_woken().iter().any(|(k, why, _)| *k == key("db") && *why == "dependent changed"));
    h.stage.reconcile(key("db")).await;
    assert_eq!(h.nomad.writes(), vec!["register default/db", "stop default/db"]);
    assert_eq!(h.phase("db"), None, "db is forgotten once stopped");
}
