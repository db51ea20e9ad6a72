//! `sync::execute` against the simulator's Consul (a stateful model of `/v1/txn`, api-contract A9, over real HTTP):
//! batches of at most 64 operations, CAS on the index the plan read, and a record edited by hand between the plan
//! and the write reported as a conflict while the rest of its batch is written.

use std::sync::Arc;

use drover::consul::{BlockingQuery, Client};
use drover::metrics::Metrics;
use drover::sync::source::SourceFile;
use drover::sync::{Action, Stamp, SyncName, execute, load_records, plan};
use drover::tls::{TlsFiles, build_http_client};

fn client(url: &str) -> Client {
    drover::tls::install_crypto_provider();
    let http = build_http_client(TlsFiles::default()).expect("an HTTP client");
    Client::with_http(http, url, None, Arc::new(Metrics::new()))
}

fn files(n: usize, image: &str) -> Vec<SourceFile> {
    (0..n)
        .map(|i| SourceFile {
            path: format!("apps/app{i:03}.yaml"),
            text: Ok(format!(
                "apiVersion: drover.io/v1alpha1\nkind: App\nmetadata: {{name: app{i:03}}}\nspec:\n  template: {{image: \
                 {image}, count: 1}}\n"
            )),
        })
        .collect()
}

fn stamp(revision: &str) -> Stamp {
    Stamp { sync: name(), label: "file:///repo".into(), revision: revision.into() }
}

fn name() -> SyncName {
    "deploy".parse().expect("a valid name")
}

#[tokio::test]
async fn execute_should_write_in_batches_and_report_a_racing_hand_edit_as_a_conflict() {
    let sim = drover_sim::harness::spawn(drover_sim::SimConfig::default()).await;
    let consul = client(&sim.consul_url);

    let records = load_records("drover", &files(150, "nginx:1"), &stamp("r1")).expect("valid records");
    let current = consul.list("drover/apps/", BlockingQuery::now()).await.expect("list");
    let first = plan("drover", &records, &current.entries, &name(), false);
    let applied = execute(&consul, "drover", &first).await.expect("written");
    assert_eq!((applied.created, applied.transactions), (150, 3), "150 creates in 3 transactions of ≤ 64");
    assert!(applied.conflicts.is_empty(), "{:?}", applied.conflicts);

    // Every record changes; a person edits app070 (in the second batch) after the plan read it.
    let records = load_records("drover", &files(150, "nginx:2"), &stamp("r2")).expect("valid records");
    let current = consul.list("drover/apps/", BlockingQuery::now()).await.expect("list");
    let second = plan("drover", &records, &current.entries, &name(), false);
    assert_eq!(second.count("update"), 150);
    consul.put("drover/apps/default/app070", b"kind: App\nmetadata: {name: app070}\n").await.expect("hand edit");
    let applied = execute(&consul, "drover", &second).await.expect("written");
    assert_eq!(applied.updated, 149, "every other record is written");
    assert_eq!(applied.conflicts.len(), 1, "{:?}", applied.conflicts);
    assert_eq!(applied.conflicts[0].key, "default/app070");
    assert!(applied.conflicts[0].reason.contains("changed by someone else"), "{:?}", applied.conflicts);
    assert_eq!(applied.transactions, 4, "the rolled-back batch is sent once more without the conflicting record");
    let kept = consul.get("drover/apps/default/app070").await.expect("get").expect("present");
    assert_eq!(kept.value, b"kind: App\nmetadata: {name: app070}\n", "the hand edit is not overwritten");
    let other = consul.get("drover/apps/default/app071").await.expect("get").expect("present");
    assert!(String::from_utf8_lossy(&other.value).contains("nginx:2"), "the rest of the batch is written");

    // A third sync of the same source writes only the record the person changed.
    let current = consul.list("drover/apps/", BlockingQuery::now()).await.expect("list");
    let third = plan("drover", &records, &current.entries, &name(), false);
    let writes: Vec<_> = third.writes().map(|i| (i.key.to_string(), i.action.clone())).collect();
    assert_eq!(writes, [("default/app070".to_string(), Action::Update)]);
}

#[tokio::test]
async fn execute_should_count_a_stale_record_that_already_holds_the_source_as_converged() {
    let sim = drover_sim::harness::spawn(drover_sim::SimConfig::default()).await;
    let consul = client(&sim.consul_url);
    let records = load_records("drover", &files(2, "nginx:1"), &stamp("r1")).expect("valid records");
    let planned = plan("drover", &records, &[], &name(), false);
    // Another replica wrote the same record (as YAML, at another revision) after this plan read an empty prefix.
    let same = serde_saphyr::to_string(&records[0].value).expect("YAML").replace("r1", "r0");
    consul.put("drover/apps/default/app000", same.as_bytes()).await.expect("the other writer");
    let applied = execute(&consul, "drover", &planned).await.expect("written");
    assert_eq!((applied.created, applied.converged), (1, 1), "{applied:?}");
    assert!(applied.conflicts.is_empty(), "the same content is not a conflict: {:?}", applied.conflicts);
}
