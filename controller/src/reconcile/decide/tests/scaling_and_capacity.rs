//! The arms of `decide` that autoscaling and finite capacity added, as sentences.

use super::*;

#[test]
fn decide_should_call_a_rollout_that_places_nothing_stalled_after_the_progress_deadline() {
    // Nomad never fails a deployment that placed nothing (its deadline starts at the first placement): every
    // rollout still ends in a verdict, and capacity arriving resumes it.
    let mut d = deployment(40, DeploymentStatus::Running, "Deployment is running");
    d.placed = 0;
    d.healthy = 0;
    let l = live(Some(job(40)), vec![d.clone()]);
    let mut stored = applied("h2", 40);
    stored.history[0].at = crate::status::timestamp(now());
    let early = decide_at(&valid(record()), &l, Some(&stored), now() + Duration::from_secs(60));
    assert_eq!(phase(&early), Phase::Progressing);
    let late = decide_at(&valid(record()), &l, Some(&stored), now() + Duration::from_secs(600));
    assert_eq!(phase(&late), Phase::Degraded);
    assert_eq!(reason(&late, ConditionType::Ready), Some(Reason::PlacementStalled));
    assert!(late.actions.is_empty(), "a verdict, not a write");
    // Something placed: Nomad's own deadline runs, Drover waits for it.
    d.placed = 1;
    let placed =
        decide_at(&valid(record()), &live(Some(job(40)), vec![d]), Some(&stored), now() + Duration::from_secs(900));
    assert_eq!(phase(&placed), Phase::Progressing);
}

#[test]
fn decide_should_warn_about_groups_an_external_autoscaler_owns_and_keep_their_counts() {
    let r = ValidRecord { externally_scaled: vec!["web".into()], ..record() };
    let plan = run(&valid(r), &live(Some(job(40)), vec![]), Some(&applied("h1", 40)));
    assert_eq!(reason(&plan, ConditionType::ExternalScaling), Some(Reason::ExternalScalingPolicy));
    assert!(
        matches!(plan.actions.as_slice(), [Action::Register { preserve_counts: true, .. }]),
        "never resets the count: {:?}",
        plan.actions
    );
}

#[test]
fn decide_should_not_freeze_an_app_whose_scale_failed_to_roll_out() {
    // Drover's scale (jmi 40) failed; Nomad auto-reverted the count (jmi 45).
    let mut stored = applied("h2", 40);
    stored.history[0].result = HistoryResult::Scaled;
    let l = live(
        Some(job(45)),
        vec![deployment(
            40,
            DeploymentStatus::Failed,
            "Failed due to progress deadline - rolling back to job version 2",
        )],
    );
    let plan = run(&valid(record()), &l, Some(&stored));
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    let s = plan.status.clone().expect("status");
    assert_eq!(s.failed_hash, None, "the spec is not to blame");
    assert_eq!(s.applied_job_modify_index, Some(45), "Nomad's revert is what runs now");
    assert!(!plan.drift_detected);
    // Next time it is simply the current job again.
    let next = run(&valid(record()), &live(Some(job(45)), vec![]), Some(&s));
    assert!(next.actions.is_empty());
    assert_eq!(phase(&next), Phase::Healthy);
}

#[test]
fn decide_should_wait_for_its_own_create_before_forgetting_a_deleted_app() {
    // Created at 40, deleted before the cache saw the create: nothing proves the job gone.
    let plan = run(&RecordState::Gone, &Live { index: 39, ..Live::default() }, Some(&applied("h2", 40)));
    assert!(!plan.actions.contains(&Action::DeleteStatus), "{:?}", plan.actions);
    assert!(matches!(plan.requeue, Requeue::After(_)));
}

#[test]
fn decide_should_evaluate_a_measurement_round_once_even_with_sub_second_stamps() {
    let yaml = "apiVersion: drover.io/v1alpha1\nkind: App\nmetadata: {name: web, namespace: default}\nspec:\n  template: {image: 'nginx:1', count: 10}\n  autoscaling:\n    min: 1\n    max: 10\n    evaluationInterval: 10s\n    checks:\n      - name: cpu\n        prometheus: {address: 'http://prometheus:9090', query: 'q'}\n        targetValue: {target: 50}\n";
    let Record::Valid(r) = Record::load("drover", &key(), yaml.as_bytes(), 10) else { panic!("valid") };
    let record = RecordState::Present(Arc::new(Record::Valid(r.clone())));
    let mut j = job(40);
    j.counts = Some(BTreeMap::from([("web".to_string(), 10)]));
    let l = live(Some(j), vec![deployment(40, DeploymentStatus::Successful, "Deployment completed successfully")]);
    let stored = applied(&r.hash, 40);
    let round = now() + Duration::from_millis(1_500);
    let measurements = BTreeMap::from([(
        "cpu".to_string(),
        crate::measure::Measurement { query: "q".into(), value: crate::measure::Measured::Value(10.0), at: round },
    )]);
    let observe = |status: Option<&AppStatus>| {
        decide(&Observed {
            key: &key(),
            owner: OWNER,
            record: &record,
            live: &l,
            status,
            measurements: &measurements,
            analysis: &BTreeMap::new(),
            control: None,
            dependencies: &crate::reconcile::deps::DependencyView::none(),
            now: now() + Duration::from_secs(2),
        })
    };
    let first = observe(Some(&stored));
    assert!(first.actions.iter().any(|a| matches!(a, Action::Scale { count: 2, .. })), "{:?}", first.actions);
    // The scale did not happen (say it failed); the same round must not be evaluated again.
    let again = observe(first.status.as_ref());
    assert!(again.actions.is_empty(), "one round, one evaluation: {:?}", again.actions);
}
