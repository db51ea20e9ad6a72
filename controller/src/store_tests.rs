//! The stores, as sentences.

use std::collections::BTreeSet;

use super::*;
use crate::live::{DeploymentStatus, JobStatus};

fn pair(key: &str, index: u64, value: &str) -> KvPair {
    KvPair::written(key, index, value.as_bytes())
}

const WEB: &str = "apiVersion: drover.io/v1alpha1\nkind: App\nmetadata: {name: web, namespace: default}\nspec:\n  template: {image: 'nginx:1', count: 1}\n";

fn web() -> AppKey {
    AppKey::new("default", "web")
}

#[test]
fn apply_snapshot_should_report_new_changed_and_deleted_records() {
    let (mut writer, store) = records("drover");
    let changes = writer.apply_snapshot(&[pair("drover/apps/default/web", 5, WEB)]);
    assert_eq!(changes, vec![Change { key: web(), generation: Some(5) }]);
    assert!(matches!(store.get(&web()).as_deref(), Some(Record::Valid(_))));
    assert_eq!(store.key_for_job(&JobKey::new("default", "web")), Some(web()));
    // Same index: nothing changed.
    assert!(writer.apply_snapshot(&[pair("drover/apps/default/web", 5, WEB)]).is_empty());
    // A non-app key is ignored; a bad record is Invalid, not an error.
    let changes =
        writer.apply_snapshot(&[pair("drover/apps/default/web", 6, "{not yaml"), pair("drover/other", 7, "x")]);
    assert_eq!(changes.len(), 1);
    assert!(matches!(store.get(&web()).as_deref(), Some(Record::Invalid { .. })));
    // Gone from a complete snapshot: no longer listed.
    let changes = writer.apply_snapshot(&[]);
    assert_eq!(changes, vec![Change { key: web(), generation: None }]);
    assert!(store.is_empty());
}

fn live_job(jmi: u64, modify: u64) -> LiveJob {
    LiveJob {
        key: JobKey::new("default", "web"),
        owner: None,
        version: None,
        job_modify_index: jmi,
        modify_index: modify,
        stop: false,
        status: JobStatus::Running,
        counts: None,
    }
}

fn deployment(id: &str, modify: u64, status: DeploymentStatus) -> LiveDeployment {
    LiveDeployment {
        id: id.into(),
        job_version: 1,
        job_spec_modify_index: 10,
        create_index: 11,
        modify_index: modify,
        status,
        description: String::new(),
        desired: 1,
        placed: 1,
        healthy: 1,
        canaries: 0,
        groups: Default::default(),
    }
}

fn default_ns() -> BTreeSet<String> {
    BTreeSet::from(["default".to_string()])
}

fn job_key() -> JobKey {
    JobKey::new("default", "web")
}

#[test]
fn upsert_job_should_never_go_backwards() {
    let (mut writer, cache) = live_cache();
    assert!(writer.upsert_job(LiveJob { version: Some(2), ..live_job(10, 12) }));
    assert!(!writer.upsert_job(live_job(9, 9)), "an older write must not replace a newer one");
    // A stub without version keeps the known version of the same spec.
    assert!(writer.upsert_job(live_job(10, 13)));
    let live = cache.live_for(&job_key(), &[]);
    assert_eq!(live.job.and_then(|j| j.version), Some(2));
    assert_eq!(live.index, 13, "the cache knows how far it has seen");
}

#[test]
fn replace_all_should_report_changed_and_vanished_jobs() {
    let (mut writer, cache) = live_cache();
    writer.upsert_job(live_job(10, 10));
    let changed = writer.replace_all(vec![], vec![], 20, &default_ns());
    assert_eq!(changed, vec![job_key()]);
    assert!(cache.live_for(&job_key(), &[]).job.is_none());
}

#[test]
fn replace_all_should_never_move_the_cache_backwards() {
    let (mut writer, cache) = live_cache();
    // Events newer than the listing (index 15) were applied first.
    writer.upsert_job(live_job(16, 17));
    writer.upsert_deployment(&job_key(), deployment("d1", 18, DeploymentStatus::Successful));
    let changed = writer.replace_all(
        vec![live_job(10, 12)],
        vec![(job_key(), deployment("d1", 14, DeploymentStatus::Running))],
        15,
        &default_ns(),
    );
    assert!(changed.is_empty(), "nothing moved: {changed:?}");
    let live = cache.live_for(&job_key(), &[]);
    assert_eq!(live.job.map(|j| j.job_modify_index), Some(16));
    assert_eq!(live.deployments[0].status, DeploymentStatus::Successful);
    // A job created after the listing is not dropped by it either.
    let other = LiveJob { key: JobKey::new("default", "new"), ..live_job(30, 30) };
    writer.upsert_job(other);
    writer.replace_all(vec![live_job(16, 17)], vec![], 25, &default_ns());
    assert!(cache.live_for(&JobKey::new("default", "new"), &[]).job.is_some());
}

#[test]
fn upsert_deployment_should_ignore_an_older_write() {
    let (mut writer, cache) = live_cache();
    assert!(writer.upsert_deployment(&job_key(), deployment("d1", 20, DeploymentStatus::Successful)));
    assert!(!writer.upsert_deployment(&job_key(), deployment("d1", 19, DeploymentStatus::Running)));
    assert_eq!(cache.live_for(&job_key(), &[]).deployments[0].status, DeploymentStatus::Successful);
}

#[test]
fn live_for_should_return_the_retiring_jobs_that_exist() {
    let (mut writer, cache) = live_cache();
    writer.upsert_job(LiveJob { key: JobKey::new("default", "old"), ..live_job(5, 5) });
    let live = cache.live_for(&job_key(), &[JobKey::new("default", "old"), JobKey::new("default", "gone")]);
    assert_eq!(live.retiring.len(), 1);
    assert_eq!(live.retiring[0].key.id, "old");
}

#[test]
fn statuses_should_have_one_writer() {
    let (writer, reader) = statuses("drover");
    writer.load(&[pair("drover/status/default/web", 3, "{\"observedGeneration\":1,\"phase\":\"Healthy\"}")]);
    let entry = reader.get(&web()).expect("loaded");
    assert_eq!(entry.modify_index, 3);
    assert_eq!(entry.status.map(|s| s.phase), Some(Phase::Healthy));
    assert_eq!(reader.census().by_phase.get("Healthy"), Some(&1));
    writer.remove(&web());
    assert!(reader.get(&web()).is_none());
}

#[test]
fn statuses_should_announce_every_change_and_list_those_with_a_rollout() {
    let (writer, reader) = statuses("drover");
    let mut changes = reader.subscribe();
    let before = reader.revision();
    writer.set(web(), crate::status::AppStatus::default(), 4);
    assert!(changes.has_changed().unwrap_or(false), "a write is announced");
    assert!(reader.revision() > before);
    assert!(reader.rollouts().1.is_empty(), "no rollout, not listed");
    let rollout = crate::rollout::RolloutStatus { generation: 4, ..Default::default() };
    writer.set(web(), crate::status::AppStatus { rollout: Some(rollout), ..Default::default() }, 5);
    assert_eq!(reader.rollouts().1.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), vec![web()]);
    changes.mark_unchanged();
    writer.remove(&web());
    assert!(changes.has_changed().unwrap_or(false), "a removal is announced");
}

fn changed_keys(delta: &crate::store::StatusDelta) -> Option<(u64, Vec<String>)> {
    match delta {
        crate::store::StatusDelta::Everything { .. } => None,
        crate::store::StatusDelta::Changed { revision, statuses } => {
            let mut keys: Vec<String> = statuses.iter().map(|(k, _)| k.to_string()).collect();
            keys.sort();
            Some((*revision, keys))
        }
    }
}

#[test]
fn statuses_should_tell_a_follower_only_what_was_written_since_its_revision() {
    let (writer, reader) = statuses("drover");
    let api = AppKey::new("default", "api");
    writer.load(&[pair("drover/status/default/web", 3, "{\"observedGeneration\":1,\"phase\":\"Healthy\"}")]);
    assert!(matches!(reader.changed_since(0), crate::store::StatusDelta::Everything { .. }), "a load resets");
    let loaded = reader.revision();
    assert_eq!(changed_keys(&reader.changed_since(loaded)), Some((loaded, vec![])));
    writer.set(api.clone(), crate::status::AppStatus::default(), 4);
    let (at_api, keys) = changed_keys(&reader.changed_since(loaded)).expect("a write is a change, not a reset");
    assert_eq!(keys, vec!["default/api".to_string()]);
    writer.set(web(), crate::status::AppStatus::default(), 5);
    writer.set(api.clone(), crate::status::AppStatus::default(), 6);
    let (now, keys) = changed_keys(&reader.changed_since(at_api)).expect("writes only");
    assert_eq!(keys, vec!["default/api".to_string(), "default/web".to_string()], "each written key once");
    assert_eq!(now, reader.revision());
    writer.set_read(web(), None);
    assert!(
        matches!(reader.changed_since(now), crate::store::StatusDelta::Everything { .. }),
        "a removal cannot be listed as a change: the follower looks at everything"
    );
}

#[test]
fn replace_all_should_keep_jobs_in_namespaces_the_listing_did_not_cover() {
    let (mut writer, cache) = live_cache();
    writer.upsert_job(LiveJob { key: JobKey::new("hidden", "web"), ..live_job(5, 5) });
    let changed = writer.replace_all(vec![], vec![], 20, &default_ns());
    assert!(changed.is_empty(), "absence outside the covered namespaces proves nothing: {changed:?}");
    assert!(cache.live_for(&JobKey::new("hidden", "web"), &[]).job.is_some());
}
