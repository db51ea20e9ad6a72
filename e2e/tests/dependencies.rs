//! Ordering between apps (`spec.dependsOn`) end to end: an app waits, visibly and without a job, until its
//! dependency is `Healthy`, then is created at once (woken by the dependency's status, not by a resync: these tests
//! run `drover run --resync 10m`); a cycle across records is reported in both statuses and registers nothing until
//! a record breaks it; deleting both records stops the dependent first.

use drover::status::{ConditionType, Phase, Reason};
use drover_e2e::{DroverProcess, SimProcess, TIME_SCALE, wait_until};

/// Long enough that only a wake-up, never a resync, can explain how fast a dependent follows its dependency.
const NO_RESYNC: &[&str] = &["--resync", "10m"];

/// A template record for `default/<name>` depending on `deps`, with deadlines long enough for a slow health check.
fn record(name: &str, deps: &[&str]) -> String {
    let mut yaml = format!(
        "apiVersion: drover.io/v1alpha1\nkind: App\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  \
         template: {{image: 'nginx:1.27', count: 1, ports: {{http: 8080}}}}\n  \
         strategy: {{minHealthyTime: 1s, healthyDeadline: 10m, progressDeadline: 15m}}\n"
    );
    if !deps.is_empty() {
        yaml.push_str("  dependsOn:\n");
        for d in deps {
            yaml.push_str(&format!("    - name: {d}\n"));
        }
    }
    yaml
}

#[tokio::test]
async fn an_app_should_wait_for_its_dependency_to_be_healthy_and_be_deleted_first() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let mut drover = DroverProcess::start(&sim, NO_RESYNC).await;
    // db's first version turns healthy 250 simulated seconds after placement (5 real seconds).
    sim.set_health_delay("default", "db", 0, 250_000).await;
    sim.put_record("default", "db", record("db", &[])).await;
    sim.put_record("default", "web", record("web", &["db"])).await;

    // While db is not Healthy, web waits: phase Pending, the reason and what it waits for, and no job.
    let waiting = sim
        .wait_for_status("default", "web", "Pending, waiting for default/db", |s| {
            s.phase == Phase::Pending
                && s.condition(ConditionType::Ready).is_some_and(|c| {
                    c.reason == Reason::WaitingForDependencies && c.message.contains("waiting for default/db (")
                })
        })
        .await;
    let db = sim.status("default", "db").await;
    assert!(
        db.as_ref().is_none_or(|d| d.phase != Phase::Healthy),
        "the observation of web waiting was made while db was not healthy: {db:?}"
    );
    assert!(sim.job("default", "web").await.is_none(), "no job web while db is not Healthy: {waiting:?}");
    // db itself is registered meanwhile (its reconcile and web's run in parallel: either may come first).
    wait_until(drover_e2e::DEADLINE, "db itself registered and rolling out", || async {
        if sim.job("default", "db").await.is_some() { Ok(()) } else { Err(sim.status("default", "db").await) }
    })
    .await;

    // db turns Healthy: web is created and turns Healthy, with no resync to help.
    sim.wait_for_status("default", "db", "Healthy", |s| s.phase == Phase::Healthy).await;
    let web = sim.wait_for_status("default", "web", "Healthy after db", |s| s.phase == Phase::Healthy).await;
    assert_eq!(web.depends_on, vec!["default/db".to_string()]);
    assert!(sim.job("default", "web").await.is_some(), "job web runs");

    // Deletion in reverse order: db's record goes first, but db waits while web's record still depends on it.
    let since = sim.log(None, 0).await.last_seq;
    sim.delete_record("default", "db").await;
    let deleting = sim
        .wait_for_status("default", "db", "Deleting, waiting for its dependent web", |s| {
            s.phase == Phase::Deleting
                && s.condition(ConditionType::Ready).is_some_and(|c| c.reason == Reason::WaitingForDependents)
        })
        .await;
    let db_job = sim.job("default", "db").await.expect("job db still exists while web depends on it");
    assert_ne!(db_job["Stop"], serde_json::Value::Bool(true), "db is not stopped yet: {deleting:?}");
    // web's status reports the missing dependency, and web keeps running.
    sim.wait_for_status("default", "web", "DependencyMissing", |s| {
        s.condition(ConditionType::Dependencies).is_some_and(|c| c.reason == Reason::DependencyMissing)
    })
    .await;
    assert!(sim.nomad_requests(since, "DELETE", "/v1/job/web").await.is_empty(), "web is not stopped");
    // The metrics say so too.
    wait_until(drover_e2e::DEADLINE, "drover_apps_waiting{on=\"dependents\"} 1", || async {
        let waiting =
            drover_e2e::metric_sum(&drover.get_text("/metrics").await, "drover_apps_waiting{on=\"dependents\"}");
        if waiting == 1 { Ok(()) } else { Err(format!("{waiting} waiting")) }
    })
    .await;

    // web's record goes too: web is stopped first, then db, both forgotten.
    sim.delete_record("default", "web").await;
    wait_until(drover_e2e::DEADLINE, "both statuses removed", || async {
        match (sim.status("default", "web").await, sim.status("default", "db").await) {
            (None, None) => Ok(()),
            other => Err(other.0.map(|s| s.phase).into_iter().chain(other.1.map(|s| s.phase)).collect::<Vec<_>>()),
        }
    })
    .await;
    let web_stop = sim.nomad_requests(since, "DELETE", "/v1/job/web").await;
    let db_stop = sim.nomad_requests(since, "DELETE", "/v1/job/db").await;
    assert_eq!((web_stop.len(), db_stop.len()), (1, 1), "each job stopped once: {web_stop:?} {db_stop:?}");
    assert!(web_stop[0].seq < db_stop[0].seq, "web (the dependent) is stopped before db: {web_stop:?} {db_stop:?}");
    drover.assert_running();
}

#[tokio::test]
async fn a_cycle_across_records_should_be_reported_and_register_nothing() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let mut drover = DroverProcess::start(&sim, NO_RESYNC).await;
    sim.put_record("default", "a", record("a", &["b"])).await;
    sim.put_record("default", "b", record("b", &["a"])).await;
    for (name, cycle) in [("a", "default/a → default/b → default/a"), ("b", "default/b → default/a → default/b")]
    {
        let s = sim
            .wait_for_status("default", name, "Pending with a DependencyCycle condition", |s| {
                s.phase == Phase::Pending
                    && s.condition(ConditionType::Dependencies).is_some_and(|c| c.reason == Reason::DependencyCycle)
            })
            .await;
        let c = s.condition(ConditionType::Dependencies).expect("Dependencies");
        assert!(c.message.contains(cycle), "the condition names the cycle {cycle}: {c:?}");
    }
    // A new generation of a is decided again, and still nothing is registered.
    let relabelled = record("a", &["b"]).replace("namespace: default}", "namespace: default, labels: {try: '2'}}");
    let generation = sim.put_record("default", "a", relabelled).await;
    sim.wait_for_status("default", "a", "the new generation decided, still in the cycle", |s| {
        s.observed_generation == generation && s.phase == Phase::Pending
    })
    .await;
    for name in ["a", "b"] {
        assert!(sim.job("default", name).await.is_none(), "no job {name} while the cycle stands");
    }
    assert!(sim.nomad_requests(0, "POST", "/v1/job/a").await.is_empty(), "a was never registered");
    assert!(sim.nomad_requests(0, "POST", "/v1/job/b").await.is_empty(), "b was never registered");

    // Breaking the cycle (b no longer depends on a) lets b go first, then a.
    sim.put_record("default", "b", record("b", &[])).await;
    for name in ["b", "a"] {
        let s = sim
            .wait_for_status("default", name, "Healthy once the cycle is broken", |s| s.phase == Phase::Healthy)
            .await;
        assert!(s.condition(ConditionType::Dependencies).is_none(), "the cycle is no longer reported: {s:?}");
    }
    drover.assert_running();
}
