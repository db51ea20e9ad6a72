//! The whole reconcile stage — gather, decide, execute, write status — in-process, against the stateful fakes:
//! every conflict and error path, without processes.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::fake::{FakeKv, FakeNomad, KvFault, NomadFault};
use super::*;
use crate::app::AppKey;
use crate::queue::{Outcome, Retry};
use crate::status::{AppStatus, ConditionType, Phase, Reason};
use crate::store::{self, LiveWriter, RecordsWriter};

const WEB: &str = "apiVersion: drover.io/v1alpha1\nkind: App\nmetadata: {name: web, namespace: default}\nspec:\n  template: {image: 'nginx:1', count: 1}\n";
const WEB2: &str = "apiVersion: drover.io/v1alpha1\nkind: App\nmetadata: {name: web, namespace: default}\nspec:\n  template: {image: 'nginx:2', count: 1}\n";
const RECORD: &str = "drover/apps/default/web";
const STATUS: &str = "drover/status/default/web";

fn clock() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

struct Harness {
    measurements: crate::measure::MeasurementsWriter,
    stage: Stage<FakeNomad, FakeKv>,
    nomad: FakeNomad,
    kv: FakeKv,
    records: RecordsWriter,
    live: LiveWriter,
    handle_statuses: crate::store::Statuses,
}

fn harness() -> Harness {
    harness_leading(crate::leader::LeaderGate::always())
}

/// A harness whose stage writes only while `gate` leads.
fn harness_leading(gate: crate::leader::LeaderGate) -> Harness {
    let (records_writer, records) = store::records("drover");
    let (status_writer, statuses) = store::statuses("drover");
    let (live_writer, live) = store::live_cache();
    let (nomad, kv) = (FakeNomad::default(), FakeKv::default());
    let (measurements, readings) = crate::measure::measurements();
    let stage = Stage::new(
        "drover",
        nomad.clone(),
        kv.clone(),
        records,
        live,
        (status_writer, statuses.clone()),
        Arc::new(crate::metrics::Metrics::new()),
        clock,
    )
    .with_measurements(readings)
    .with_leadership(gate);
    Harness { measurements, stage, nomad, kv, records: records_writer, live: live_writer, handle_statuses: statuses }
}

impl Harness {
    fn web() -> AppKey {
        AppKey::new("default", "web")
    }

    /// Writes the record to KV and lets the records watch see it.
    fn write_record(&mut self, yaml: &str) {
        self.kv.put(RECORD, yaml.as_bytes());
        self.sync_records();
    }

    fn sync_records(&mut self) {
        let pairs: Vec<_> = self.kv.read(RECORD).into_iter().collect();
        self.records.apply_snapshot(&pairs);
    }

    /// Lets the Nomad watch catch up with the fake Nomad.
    fn sync_live(&mut self) {
        if let Some(j) = self.nomad.get("default", "web") {
            self.live.upsert_job(j);
        }
    }

    fn status(&self) -> AppStatus {
        let pair = self.kv.read(STATUS).expect("a status was written");
        serde_json::from_slice(&pair.value).expect("a status")
    }

    async fn run(&self) -> Reconciled {
        self.stage.reconcile(Harness::web()).await
    }
}

#[tokio::test]
async fn stage_should_create_the_job_and_record_the_index_of_its_own_write() {
    let mut h = harness();
    h.write_record(WEB);
    let r = h.run().await;
    assert!(matches!(r.outcome, Outcome::RequeueAfter(_)), "{r:?}");
    let job = h.nomad.get("default", "web").expect("registered");
    assert_eq!(job.owner.as_deref(), Some("drover/apps/default/web"));
    let s = h.status();
    assert_eq!(s.applied_job_modify_index, Some(job.job_modify_index));
    assert!(s.deployment_expected, "a new version of a service job gets a deployment");
    // Run again before the watch shows the job: nothing is registered twice.
    h.run().await;
    assert_eq!(h.nomad.writes(), vec!["register default/web"]);
}

#[tokio::test]
async fn stage_should_not_swallow_a_hand_edit_made_right_after_its_register() {
    let mut h = harness();
    h.write_record(WEB);
    h.run().await;
    let ours = h.nomad.get("default", "web").expect("registered").job_modify_index;
    // Someone edits the job before Drover's watch catches up.
    h.nomad.hand_edit(
        "default",
        serde_json::json!({"ID": "web", "Meta": {"drover.io/app": "drover/apps/default/web"}, "Hand": true}),
    );
    assert_eq!(h.status().applied_job_modify_index, Some(ours), "the index recorded is Drover's own");
    h.sync_live();
    h.run().await;
    assert_eq!(h.nomad.writes().len(), 2, "the hand edit is drift and is reverted: {:?}", h.nomad.writes());
    assert_eq!(h.status().condition(ConditionType::Drifted).map(|c| c.reason), Some(Reason::Reverted));
}

#[tokio::test]
async fn stage_should_stop_the_job_only_once_the_record_is_proven_gone() {
    let mut h = harness();
    h.write_record(WEB);
    h.run().await;
    h.sync_live();
    // The store no longer lists the record, but Consul still has it (the store lags): nothing is stopped.
    h.records.apply_snapshot(&[]);
    h.run().await;
    assert_eq!(h.nomad.writes(), vec!["register default/web"]);
    // The token may not read the key: nothing is stopped, status says why.
    h.kv.deny(RECORD);
    h.run().await;
    assert_eq!(h.nomad.writes(), vec!["register default/web"], "a denial is not a deletion");
    assert_eq!(h.status().condition(ConditionType::Ready).map(|c| c.reason), Some(Reason::RecordUnreadable));
}

#[tokio::test]
async fn stage_should_stop_and_forget_an_app_whose_record_is_deleted() {
    let mut h = harness();
    h.write_record(WEB);
    h.run().await;
    h.sync_live();
    h.kv.remove(RECORD);
    h.sync_records();
    let r = h.run().await;
    assert_eq!(r.outcome, Outcome::Done);
    assert_eq!(h.nomad.writes(), vec!["register default/web", "stop default/web"]);
    assert!(h.kv.read(STATUS).is_none(), "status deleted");
    assert!(h.handle_statuses.get(&Harness::web()).is_none());
}

#[tokio::test]
async fn stage_should_retry_a_conflict_at_once_then_back_off_and_report_it() {
    let mut h = harness();
    h.write_record(WEB);
    h.run().await;
    h.sync_live();
    h.run().await;
    // A new generation; meanwhile someone keeps writing the job, so every EnforceIndex loses.
    h.write_record(WEB2);
    let edit = serde_json::json!({"ID": "web", "Meta": {"drover.io/app": "drover/apps/default/web"}});
    h.nomad.hand_edit("default", edit.clone());
    let first = h.run().await;
    assert_eq!(first.outcome, Outcome::Retry { retry: Retry::After(Duration::ZERO) }, "first conflict: at once");
    let second = h.run().await;
    assert_eq!(second.outcome, Outcome::Retry { retry: Retry::Backoff }, "a recurring conflict backs off");
    h.run().await;
    let err = h.status().last_error.unwrap_or_default();
    assert!(err.contains("3 times in a row"), "a persistent conflict is reported: {err}");
    // Once the watch shows the edit, the next attempt wins and the count resets.
    h.sync_live();
    let ok = h.run().await;
    assert!(matches!(ok.outcome, Outcome::RequeueAfter(_)), "{ok:?}");
    assert_eq!(h.status().last_error, None);
}

#[tokio::test]
async fn stage_should_keep_a_rejected_spec_failed_and_not_send_it_again() {
    let mut h = harness();
    h.write_record(WEB);
    h.nomad.fail_next(NomadFault::Invalid("1 error occurred: bad".into()));
    let r = h.run().await;
    assert_eq!(r.outcome, Outcome::Retry { retry: Retry::Never });
    let s = h.status();
    assert_eq!(s.phase, Phase::Failed);
    assert_eq!(s.condition(ConditionType::Ready).map(|c| c.reason), Some(Reason::NomadRejected));
    // Resyncs do not send it again, and it stays Failed (not Degraded).
    h.run().await;
    assert!(h.nomad.writes().is_empty());
    assert_eq!(h.status().phase, Phase::Failed);
    // A new generation is tried.
    h.write_record(WEB2);
    h.run().await;
    assert_eq!(h.nomad.writes(), vec!["register default/web"]);
}

#[tokio::test]
async fn stage_should_back_off_on_outages_and_say_so_in_status() {
    let mut h = harness();
    h.write_record(WEB);
    h.nomad.fail_next(NomadFault::Unavailable);
    let r = h.run().await;
    assert_eq!(r.outcome, Outcome::Retry { retry: Retry::Backoff });
    assert!(h.status().last_error.is_some_and(|e| e.contains("register")));
    // Consul down while proving a deletion: nothing is stopped.
    h.run().await;
    h.sync_live();
    h.records.apply_snapshot(&[]);
    h.kv.fail_next(KvFault::Unavailable);
    let r = h.run().await;
    assert_eq!(r.outcome, Outcome::Retry { retry: Retry::Backoff });
    assert_eq!(h.nomad.writes(), vec!["register default/web"]);
}

#[tokio::test]
async fn stage_should_refresh_its_index_after_losing_a_status_cas() {
    let mut h = harness();
    h.write_record(WEB);
    h.run().await;
    h.sync_live();
    // Someone else writes the status key.
    h.kv.put(STATUS, b"{}");
    let r = h.run().await;
    assert_eq!(r.outcome, Outcome::Retry { retry: Retry::After(Duration::ZERO) });
    let r = h.run().await;
    assert!(!matches!(r.outcome, Outcome::Retry { .. }), "the second attempt uses the fresh index: {r:?}");
}

#[tokio::test]
async fn stage_should_not_stop_a_job_that_changed_hands_since_it_was_cached() {
    let mut h = harness();
    h.write_record(WEB);
    h.run().await;
    h.sync_live();
    // Another app took the job over in Nomad; Drover's cache has not seen it yet.
    h.nomad
        .hand_edit("default", serde_json::json!({"ID": "web", "Meta": {"drover.io/app": "drover/apps/default/other"}}));
    h.kv.remove(RECORD);
    h.sync_records();
    let r = h.run().await;
    assert!(matches!(r.outcome, Outcome::Retry { .. }), "{r:?}");
    assert!(!h.nomad.writes().iter().any(|w| w.starts_with("stop")), "{:?}", h.nomad.writes());
}

#[tokio::test]
async fn stage_should_report_a_missing_namespace_without_retrying_on_a_timer() {
    let mut h = harness();
    h.write_record(WEB);
    h.nomad.fail_next(NomadFault::NamespaceMissing);
    let r = h.run().await;
    assert_eq!(r.outcome, Outcome::Retry { retry: Retry::Never }, "creating the namespace (or the resync) wakes it");
    let s = h.status();
    assert_eq!(s.phase, Phase::Failed);
    assert_eq!(s.condition(ConditionType::Ready).map(|c| c.reason), Some(Reason::NamespaceMissing));
    assert_eq!(s.rejected_hash, None, "the spec is fine: it is registered once the namespace exists");
    let r = h.run().await;
    assert!(matches!(r.outcome, Outcome::RequeueAfter(_)), "{r:?}");
    assert_eq!(h.nomad.writes(), vec!["register default/web"]);
}

const SCALED: &str = "apiVersion: drover.io/v1alpha1\nkind: App\nmetadata: {name: web, namespace: default}\nspec:\n  template: {image: 'nginx:1', count: 30}\n  autoscaling:\n    min: 1\n    max: 10\n    evaluationInterval: 10s\n    cooldown: 1m\n    checks:\n      - name: cpu\n        prometheus: {address: 'http://prometheus:9090', query: 'avg(cpu_percent{job=\"{{ .JobID }}\"})'}\n        targetValue: {target: 50}\n";

impl Harness {
    /// A measurement round of the `cpu` check at `value`, taken `secs` and a half after the clock's time (rounds
    /// are stamped to the nanosecond: a sub-second part must not make a round look new again).
    fn measure_cpu(&mut self, value: f64, secs: u64) {
        let ask = crate::measure::Ask {
            app: Harness::web(),
            check: "cpu".into(),
            request: crate::measure::Request {
                address: "http://prometheus:9090".into(),
                query: "q".into(),
                timeout: Duration::from_secs(5),
                headers: Vec::new(),
            },
        };
        let at = clock() + Duration::from_millis(secs * 1000 + 500);
        let m = crate::measure::Measurement { query: "q".into(), value: crate::measure::Measured::Value(value), at };
        self.measurements.record(vec![(ask, m)]);
    }

    /// Lets the watch catch up, with Nomad's deployment of the current version successful.
    fn sync_deployed(&mut self) {
        self.sync_live();
        let Some(job) = self.nomad.get("default", "web") else { return };
        self.live.upsert_deployment(&job.key, deployed(&job));
    }

    fn count(&self) -> Option<u64> {
        self.nomad.get("default", "web").and_then(|j| j.counts).and_then(|c| c.get("web").copied())
    }
}

/// A successful deployment of `job`'s current version.
fn deployed(job: &crate::live::LiveJob) -> crate::live::LiveDeployment {
    crate::live::LiveDeployment {
        id: format!("d-{}", job.job_modify_index),
        job_version: job.version.unwrap_or(0),
        job_spec_modify_index: job.job_modify_index,
        create_index: job.job_modify_index,
        modify_index: job.job_modify_index,
        status: crate::live::DeploymentStatus::Successful,
        description: "Deployment completed successfully".into(),
        desired: 1,
        placed: 1,
        healthy: 1,
        canaries: 0,
        groups: Default::default(),
    }
}

#[tokio::test]
async fn stage_should_seed_the_count_within_bounds_scale_on_a_new_round_and_never_call_its_scale_drift() {
    let mut h = harness();
    h.write_record(SCALED);
    h.run().await;
    assert_eq!(h.count(), Some(10), "the record's count only seeds the first registration, clamped to max");
    h.sync_deployed();
    h.run().await;
    // Load falls: cpu 10 against a target of 50 asks for 2 (ceil(10 × 10 / 50)).
    h.measure_cpu(10.0, 1);
    h.run().await;
    assert_eq!(h.count(), Some(2), "{:?}", h.nomad.writes());
    let s = h.status();
    let a = s.autoscaling.clone().expect("autoscaling status");
    assert_eq!((a.current, a.desired), (10, 2));
    assert!(a.last_reason.is_some_and(|r| r.contains("cpu")), "the scale says why");
    assert!(s.history.iter().any(|h| h.result == crate::status::HistoryResult::Scaled));
    // The scale's new version is Drover's own write: no drift, no register.
    h.sync_deployed();
    h.run().await;
    assert!(
        h.status().history.iter().any(|h| h.result == crate::status::HistoryResult::Scaled),
        "the scale stays in the history once its deployment succeeded"
    );
    let writes = h.nomad.writes();
    assert_eq!(writes.iter().filter(|w| w.starts_with("register")).count(), 1, "{writes:?}");
    assert_eq!(h.status().condition(ConditionType::Drifted), None);
    // The same round is evaluated once: no second scale from it.
    h.run().await;
    assert_eq!(h.nomad.writes().iter().filter(|w| w.starts_with("scale")).count(), 1);
}

#[tokio::test]
async fn stage_should_keep_the_scaled_count_when_the_record_changes() {
    let mut h = harness();
    h.write_record(SCALED);
    h.run().await;
    h.sync_deployed();
    h.measure_cpu(10.0, 1);
    h.run().await;
    assert_eq!(h.count(), Some(2));
    h.sync_deployed();
    h.run().await;
    // A new image: registered with PreserveCounts, so the deploy does not reset the count (nomad#9839).
    h.write_record(&SCALED.replace("nginx:1", "nginx:2"));
    h.run().await;
    let writes = h.nomad.writes();
    assert_eq!(writes.iter().filter(|w| w.starts_with("register")).count(), 2, "{writes:?}");
    assert_eq!(h.count(), Some(2), "the autoscaled count survives the deploy");
}

#[tokio::test]
async fn stage_should_read_an_idle_autoscaled_job_once_when_the_cache_has_only_its_stub() {
    let mut h = harness();
    h.write_record(SCALED);
    h.run().await;
    h.sync_deployed();
    // A relist: the cache knows the job only from a list stub, without counts.
    let job = h.nomad.get("default", "web").expect("job");
    let deployments = vec![(job.key.clone(), deployed(&job))];
    let stub = crate::live::LiveJob { counts: None, version: None, ..job.clone() };
    let covered = std::collections::BTreeSet::from(["default".to_string()]);
    // A new job version seen only in a listing (the cache forgets what it knew of the old one).
    h.live.remove_job(&job.key);
    h.live.replace_all(vec![stub], deployments, job.modify_index, &covered);
    let before = h.nomad.reads();
    for _ in 0..5 {
        h.run().await;
    }
    assert_eq!(h.nomad.reads() - before, 1, "an idle app is read once per job version, not once per reconcile");
}

#[tokio::test]
async fn stage_should_write_nothing_while_standby_and_everything_once_leading() {
    use crate::leader::{Leadership, Term};
    let (leadership, gate) = crate::leader::channel();
    let mut h = harness_leading(gate);
    h.write_record(WEB);
    assert_eq!(h.run().await.outcome, Outcome::Done);
    assert!(h.nomad.writes().is_empty(), "a standby registers nothing: {:?}", h.nomad.writes());
    assert!(h.kv.read(STATUS).is_none(), "a standby writes no status");
    // The positive control: the same stage, leading, does both.
    leadership.send(Leadership::Leading(Term(1)));
    h.run().await;
    assert_eq!(h.nomad.writes().iter().filter(|w| w.starts_with("register")).count(), 1, "{:?}", h.nomad.writes());
    assert!(h.kv.read(STATUS).is_some(), "the leader writes the status");
}

#[tokio::test]
async fn execute_should_send_no_write_of_a_term_that_ended() {
    use crate::leader::{Leadership, Term};
    let (leadership, gate) = crate::leader::channel();
    let h = harness();
    let index = h.kv.put(STATUS, b"{}");
    leadership.send(Leadership::Leading(Term(2)));
    let metrics = crate::metrics::Metrics::new();
    let run = |term| {
        super::execute::execute(
            (&gate, term),
            &h.nomad,
            &h.kv,
            &metrics,
            "default",
            STATUS,
            index,
            &[Action::DeleteStatus],
        )
    };
    // Started in term 1, which ended (this replica was a standby in between): nothing is sent.
    let refused = run(Term(1)).await;
    assert!(matches!(refused, Err(ExecError::NotLeader { .. })), "{refused:?}");
    assert!(h.kv.read(STATUS).is_some(), "the status is still there");
    // The current term may write.
    assert!(matches!(run(Term(2)).await, Ok((None, true))));
    assert!(h.kv.read(STATUS).is_none());
}
