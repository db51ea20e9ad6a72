//! The whole reconcile stage — gather, decide, execute, write status — in-process, against the stateful fakes:
//! every conflict and error path, without processes.

use std::sync::Arc;
use std::time::Duration;

use super::fake::fixed_clock as clock;
use super::fake::{FakeKv, FakeNomad, KvFault, NomadFault};
use super::*;
use crate::app::AppKey;
use crate::queue::{Outcome, Retry};
use crate::status::{AppStatus, ConditionType, Phase, Reason};
use crate::store::{LiveWriter, RecordsWriter};

const WEB: &str = "apiVersion: drover.io/v1alpha1\nkind: App\nmetadata: {name: web, namespace: default}\nspec:\n  template: {image: 'nginx:1', count: 1}\n";
const WEB2: &str = "apiVersion: drover.io/v1alpha1\nkind: App\nmetadata: {name: web, namespace: default}\nspec:\n  template: {image: 'nginx:2', count: 1}\n";
const RECORD: &str = "drover/apps/default/web";
const STATUS: &str = "drover/status/default/web";

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
    let t = super::fake::TestStage::new(Arc::new(crate::metrics::Metrics::new()));
    let (measurements, readings) = crate::measure::measurements();
    let stage = t.stage.with_measurements(readings).with_leadership(gate);
    Harness {
        measurements,
        stage,
        nomad: t.nomad,
        kv: t.kv,
        records: t.records,
        live: t.live,
        handle_statuses: t.statuses,
    }
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

const BAKED: &str = "apiVersion: drover.io/v1alpha1\nkind: App\nmetadata: {name: web, namespace: default}\nspec:\n  template: {image: 'nginx:1', count: 2}\n  strategy:\n    postPromotion:\n      bake: 5m\n      analysis: {template: errors}\n  analysis:\n    errors:\n      prometheus: {address: 'http://prometheus:9090', query: 'sum(rate(errors[1m]))'}\n      failureCondition: 'result > 0.05'\n";

#[tokio::test]
async fn stage_should_revert_a_version_whose_bake_failed_and_not_register_it_again() {
    let mut h = harness();
    let runs = super::fake::FakeRuns::default();
    let controls = super::fake::FakeControls::default();
    h.stage =
        std::mem::replace(&mut h.stage, harness().stage).with_analysis(runs.clone()).with_controls(controls.clone());
    h.write_record(BAKED);
    h.run().await;
    h.sync_deployed();
    h.run().await;
    assert_eq!(h.status().phase, Phase::Healthy, "the first version has nothing to revert to: no bake");
    // A new image: its deployment succeeds, and the bake starts with a run of `errors`.
    h.write_record(&BAKED.replace("nginx:1", "nginx:2"));
    h.run().await;
    h.sync_deployed();
    h.run().await;
    let s = h.status();
    let ro = s.rollout.clone().expect("a rollout");
    assert_eq!(
        (s.phase, ro.step, ro.stable_version, ro.canary_version),
        (Phase::Progressing, crate::rollout::StepRef::Bake, Some(0), Some(1))
    );
    // The analysis stage finds a regression.
    let mut run = ro.analysis_runs.first().cloned().expect("the bake's run");
    run.phase = crate::rollout::AnalysisPhase::Failed;
    run.failed = 1;
    run.message = "failureCondition \"result > 0.05\" held: result = 0.4".into();
    runs.set(&Harness::web(), run);
    h.run().await;
    assert!(h.nomad.writes().contains(&"revert default/web to 0".to_string()), "{:?}", h.nomad.writes());
    // The revert's own deployment completes: Degraded, RolledBack, and resyncs register nothing.
    h.sync_deployed();
    h.run().await;
    let s = h.status();
    assert_eq!(
        (s.phase, s.condition(ConditionType::Ready).map(|c| c.reason)),
        (Phase::Degraded, Some(Reason::RolledBack))
    );
    assert!(s.condition(ConditionType::Ready).is_some_and(|c| c.message.contains("result = 0.4")));
    let writes = h.nomad.writes().len();
    h.run().await;
    h.run().await;
    assert_eq!(h.nomad.writes().len(), writes, "no flapping: {:?}", h.nomad.writes());
    // `drover retry` for the current generation registers the spec again.
    let generation = s.observed_generation;
    let control = crate::rollout::Control {
        action: crate::rollout::ControlAction::Retry,
        generation,
        requested_at: "2027-01-15T08:00:00Z".into(),
        by: "test".into(),
    };
    controls.put(&Harness::web(), control, 1);
    h.run().await;
    assert_eq!(h.nomad.writes().len(), writes + 1, "{:?}", h.nomad.writes());
    assert!(h.status().last_control.is_some_and(|c| c.applied));
}

const CANARY: &str = "apiVersion: drover.io/v1alpha1\nkind: App\nmetadata: {name: web, namespace: default}\nspec:\n  template: {image: 'nginx:1', count: 3}\n  strategy:\n    type: Canary\n    canary: {replicas: 1}\n";

impl Harness {
    /// Nomad's scheduler made the deployment of the job's current version: `canaries` of them placed and healthy.
    fn nomad_deploys(&mut self, canaries: u64) -> String {
        let job = self.nomad.get("default", "web").expect("a job");
        let group = crate::live::GroupProgress {
            desired_total: 3,
            desired_canaries: canaries,
            placed_canaries: canaries,
            healthy_allocs: canaries,
            ..Default::default()
        };
        let d = crate::live::LiveDeployment {
            id: format!("dep-{}", job.job_modify_index),
            job_version: job.version.unwrap_or(0),
            job_spec_modify_index: job.job_modify_index,
            create_index: job.job_modify_index,
            status: crate::live::DeploymentStatus::Running,
            description: "Deployment is running but requires manual promotion".into(),
            desired: 3,
            canaries,
            groups: [("web".to_string(), group)].into(),
            ..Default::default()
        };
        self.nomad.put_deployment("default", "web", d.clone());
        d.id
    }

    /// Lets the watch catch up with the fake's job and deployments.
    fn sync_all(&mut self) {
        self.sync_live();
        for d in self.nomad.deployments_of("default", "web") {
            self.live.upsert_deployment(&crate::live::JobKey::new("default", "web"), d);
        }
    }
}

#[tokio::test]
async fn stage_should_gate_a_canary_until_promoted_and_abort_it_through_nomad() {
    let mut h = harness();
    let controls = super::fake::FakeControls::default();
    h.stage = std::mem::replace(&mut h.stage, harness().stage).with_controls(controls.clone());
    h.write_record(CANARY);
    h.run().await;
    // The first version has no canaries in Nomad: it rolls out, and becomes the stable version.
    h.sync_deployed();
    h.run().await;
    assert_eq!(h.status().phase, Phase::Healthy);
    // A new image: Nomad places one canary and waits for promotion; the record has no steps, so a manual gate.
    h.write_record(&CANARY.replace("nginx:1", "nginx:2"));
    h.run().await;
    let dep = h.nomad_deploys(1);
    h.sync_all();
    h.run().await;
    let s = h.status();
    assert_eq!(
        (s.phase, s.condition(ConditionType::Ready).map(|c| c.reason)),
        (Phase::Paused, Some(Reason::ManualGate))
    );
    // `drover abort` for the current generation: the deployment is failed, Nomad reverts to version 0.
    let control = crate::rollout::Control {
        action: crate::rollout::ControlAction::Abort,
        generation: s.observed_generation,
        requested_at: "2027-01-15T08:00:00Z".into(),
        by: "test".into(),
    };
    controls.put(&Harness::web(), control, 5);
    h.run().await;
    assert!(h.nomad.writes().contains(&format!("fail {dep}")), "{:?}", h.nomad.writes());
    assert_eq!(h.status().phase, Phase::Progressing, "Degraded once Nomad shows the failure");
    h.sync_all();
    h.run().await;
    let s = h.status();
    assert_eq!(
        (s.phase, s.condition(ConditionType::Ready).map(|c| c.reason)),
        (Phase::Degraded, Some(Reason::Aborted))
    );
    let writes = h.nomad.writes();
    assert_eq!(writes.iter().filter(|w| w.starts_with("register")).count(), 2, "{writes:?}");
    // A resync registers nothing: Nomad's revert is not drift, the aborted spec is not sent again.
    h.run().await;
    assert_eq!(h.nomad.writes(), writes);
}

#[tokio::test]
async fn stage_should_decide_again_when_nomad_refuses_a_promotion_never_fail_the_app() {
    let mut h = harness();
    let controls = super::fake::FakeControls::default();
    h.stage = std::mem::replace(&mut h.stage, harness().stage).with_controls(controls.clone());
    h.write_record(CANARY);
    h.run().await;
    h.sync_deployed();
    h.run().await;
    h.write_record(&CANARY.replace("nginx:1", "nginx:2"));
    h.run().await;
    let dep = h.nomad_deploys(1);
    h.sync_all();
    h.run().await;
    assert_eq!(h.status().phase, Phase::Paused);
    // The canary turns unhealthy in Nomad; Drover's cache has not seen it when a person promotes.
    let mut sick = h.nomad.deployment(&dep).expect("deployment");
    sick.groups.values_mut().for_each(|g| g.healthy_allocs = 0);
    h.nomad.put_deployment("default", "web", sick);
    let control = crate::rollout::Control {
        action: crate::rollout::ControlAction::Promote,
        generation: h.status().observed_generation,
        requested_at: "2027-01-15T08:00:00Z".into(),
        by: "test".into(),
    };
    controls.put(&Harness::web(), control, 9);
    let r = h.run().await;
    assert_eq!(r.outcome, Outcome::Retry { retry: Retry::After(super::error::REFUSED_RECHECK) }, "{r:?}");
    let s = h.status();
    assert!(s.last_error.as_deref().is_some_and(|e| e.contains("promote")), "{:?}", s.last_error);
    assert_eq!(s.rejected_hash, None, "a refused promotion says nothing against the spec");
    assert_ne!(s.phase, Phase::Failed);
    assert!(!h.nomad.writes().iter().any(|w| w.starts_with("promote")), "{:?}", h.nomad.writes());
    // The person's promote stands (the control is consumed once): once the canary is healthy again, it goes through.
    let mut healed = h.nomad.deployment(&dep).expect("deployment");
    healed.groups.values_mut().for_each(|g| g.healthy_allocs = 1);
    h.nomad.put_deployment("default", "web", healed);
    h.sync_all();
    h.run().await;
    assert!(h.nomad.writes().contains(&format!("promote {dep}")), "{:?}", h.nomad.writes());
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
