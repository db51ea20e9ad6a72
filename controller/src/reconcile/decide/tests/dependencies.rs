//! Ordering between apps (`spec.dependsOn`): waiting, ready, missing, cycle, a running app that waits without
//! being stopped, and deletion in reverse order.

use super::*;
use crate::reconcile::deps::{DependencyState, DependencyView, DependentState};

fn db() -> AppKey {
    AppKey::new("default", "db")
}

fn depending() -> ValidRecord {
    ValidRecord { depends_on: vec![db()], ..record() }
}

fn run_with(record: &RecordState, live: &Live, status: Option<&AppStatus>, deps: &DependencyView) -> Plan {
    decide_with_deps(record, live, status, deps, now())
}

fn deps(state: DependencyState) -> DependencyView {
    DependencyView { dependencies: vec![(db(), state)], ..DependencyView::none() }
}

fn progressing() -> DependencyView {
    deps(DependencyState::Waiting { phase: Some(Phase::Progressing) })
}

fn message(plan: &Plan, type_: ConditionType) -> String {
    plan.status.as_ref().and_then(|s| s.condition(type_)).map(|c| c.message.clone()).unwrap_or_default()
}

#[test]
fn decide_should_not_create_an_app_while_a_dependency_is_not_healthy() {
    let plan = run_with(&valid(depending()), &Live::default(), None, &progressing());
    assert!(plan.actions.is_empty(), "nothing is registered: {:?}", plan.actions);
    assert_eq!(phase(&plan), Phase::Pending);
    assert_eq!(reason(&plan, ConditionType::Ready), Some(Reason::WaitingForDependencies));
    assert_eq!(message(&plan, ConditionType::Ready), "waiting for default/db (Progressing)");
    assert_eq!(plan.requeue, Requeue::AwaitChange, "woken by the dependency's status change, not a timer");
    assert_eq!(reason(&plan, ConditionType::Dependencies), None, "waiting is not a mistake in the records");
    assert_eq!(plan.status.as_ref().map(|s| s.depends_on.clone()), Some(vec!["default/db".to_string()]));
}

#[test]
fn decide_should_wait_for_a_dependency_healthy_only_at_an_older_generation() {
    let stale = deps(DependencyState::Waiting { phase: Some(Phase::Healthy) });
    let plan = run_with(&valid(depending()), &Live::default(), None, &stale);
    assert!(plan.actions.is_empty());
    assert_eq!(message(&plan, ConditionType::Ready), "waiting for default/db (Healthy at an older generation)");
}

#[test]
fn decide_should_create_the_app_once_every_dependency_is_ready() {
    let plan = run_with(&valid(depending()), &Live::default(), None, &deps(DependencyState::Ready));
    assert_eq!(registers(&plan), vec![(0, RegisterReason::Create)]);
    assert_eq!(phase(&plan), Phase::Progressing);
    assert_eq!(reason(&plan, ConditionType::Dependencies), None);
}

#[test]
fn decide_should_report_a_missing_dependency_and_wait() {
    let plan = run_with(&valid(depending()), &Live::default(), None, &deps(DependencyState::Missing));
    assert!(plan.actions.is_empty());
    assert_eq!(phase(&plan), Phase::Pending);
    assert_eq!(reason(&plan, ConditionType::Dependencies), Some(Reason::DependencyMissing));
    assert!(message(&plan, ConditionType::Dependencies).contains("default/db"), "{plan:?}");
    assert_eq!(message(&plan, ConditionType::Ready), "waiting for default/db (no such app)");
    // The record appears and gets healthy: the condition goes away and the app is created.
    let plan = run_with(&valid(depending()), &Live::default(), plan.status.as_ref(), &deps(DependencyState::Ready));
    assert_eq!(registers(&plan), vec![(0, RegisterReason::Create)]);
    assert_eq!(reason(&plan, ConditionType::Dependencies), None);
}

#[test]
fn decide_should_report_a_cycle_across_records_and_wait() {
    let cycle = DependencyView {
        dependencies: vec![(db(), DependencyState::Waiting { phase: Some(Phase::Pending) })],
        cycle: Some(vec![key(), db(), key()]),
        dependents: Vec::new(),
    };
    let plan = run_with(&valid(depending()), &Live::default(), None, &cycle);
    assert!(plan.actions.is_empty());
    assert_eq!(phase(&plan), Phase::Pending);
    assert_eq!(reason(&plan, ConditionType::Dependencies), Some(Reason::DependencyCycle));
    assert!(message(&plan, ConditionType::Dependencies).contains("default/web → default/db → default/web"));
    // Even were the other side healthy, a cycle holds the app.
    let cycle = DependencyView { dependencies: vec![(db(), DependencyState::Ready)], ..cycle };
    let plan = run_with(&valid(depending()), &Live::default(), None, &cycle);
    assert!(plan.actions.is_empty());
    assert!(message(&plan, ConditionType::Ready).contains("the dependency cycle"), "{plan:?}");
}

#[test]
fn decide_should_keep_a_running_app_running_while_its_new_version_waits() {
    // The record changed (h3) while db rolls out: no register, no stop, no deployment call.
    let changed = ValidRecord { hash: "h3".into(), ..depending() };
    let l =
        live(Some(job(40)), vec![deployment(40, DeploymentStatus::Successful, "Deployment completed successfully")]);
    let plan = run_with(&valid(changed.clone()), &l, Some(&applied("h2", 40)), &progressing());
    assert!(plan.actions.is_empty(), "waiting blocks the new version and touches nothing: {:?}", plan.actions);
    assert_eq!(phase(&plan), Phase::Pending);
    assert!(message(&plan, ConditionType::Ready).contains("keeps running"), "{plan:?}");
    let applied_hash = plan.status.as_ref().and_then(|s| s.applied_hash.clone());
    assert_eq!(applied_hash.as_deref(), Some("h2"), "what runs is still what was applied");
    // db gets healthy: the new version is registered over the running job.
    let plan = run_with(&valid(changed), &l, plan.status.as_ref(), &deps(DependencyState::Ready));
    assert_eq!(registers(&plan), vec![(40, RegisterReason::Update)]);
}

#[test]
fn decide_should_not_hold_an_app_that_runs_its_spec_when_a_dependency_rolls_out() {
    // web is current; db starting a rollout of its own does not make web wait or change.
    let l =
        live(Some(job(40)), vec![deployment(40, DeploymentStatus::Successful, "Deployment completed successfully")]);
    let plan = run_with(&valid(depending()), &l, Some(&applied("h2", 40)), &progressing());
    assert!(plan.actions.is_empty());
    assert_eq!(phase(&plan), Phase::Healthy);
}

#[test]
fn decide_should_not_hold_an_app_without_dependencies() {
    let plan = run_with(&valid(record()), &Live::default(), None, &DependencyView::none());
    assert_eq!(registers(&plan), vec![(0, RegisterReason::Create)]);
    assert_eq!(plan.status.as_ref().map(|s| s.depends_on.is_empty()), Some(true));
}

#[test]
fn decide_should_delete_only_after_the_dependents_are_gone() {
    let stored = applied("h2", 40);
    let l = live(Some(job(40)), vec![]);
    for why in [DependentState::Listed, DependentState::Deleting] {
        let waiting =
            DependencyView { dependents: vec![(AppKey::new("default", "api"), why)], ..DependencyView::none() };
        let plan = run_with(&RecordState::Gone, &l, Some(&stored), &waiting);
        assert!(plan.actions.is_empty(), "nothing is stopped or forgotten while a dependent is there: {plan:?}");
        assert_eq!(phase(&plan), Phase::Deleting);
        assert_eq!(reason(&plan, ConditionType::Ready), Some(Reason::WaitingForDependents));
        assert!(message(&plan, ConditionType::Ready).contains("default/api"), "{plan:?}");
    }
    // The dependents are gone: the deletion policy applies.
    let plan = run_with(&RecordState::Gone, &l, Some(&stored), &DependencyView::none());
    assert_eq!(plan.actions, vec![stop("web", false), Action::DeleteStatus]);
    // A deletion that stops nothing (orphan) takes nothing from a dependent: it does not wait.
    let orphan = AppStatus { deletion_policy: ObservedDeletionPolicy::Orphan, ..stored.clone() };
    let waiting = DependencyView {
        dependents: vec![(AppKey::new("default", "api"), DependentState::Listed)],
        ..DependencyView::none()
    };
    let plan = run_with(&RecordState::Gone, &l, Some(&orphan), &waiting);
    assert_eq!(plan.actions, vec![Action::DeleteStatus], "{plan:?}");
}

#[test]
fn decide_should_keep_the_last_dependency_list_of_an_invalid_record() {
    let mut stored = applied("h2", 40);
    stored.depends_on = vec!["default/db".into()];
    let invalid = RecordState::Present(Arc::new(Record::Invalid {
        generation: 11,
        errors: Arc::new(vec![FieldError::new("spec", "bad")]),
    }));
    let plan = run_with(&invalid, &live(Some(job(40)), vec![]), Some(&stored), &DependencyView::none());
    assert_eq!(plan.status.as_ref().map(|s| s.depends_on.clone()), Some(vec!["default/db".to_string()]));
}

#[test]
fn decide_should_hold_an_adoption_until_the_dependencies_are_ready() {
    let mut j = job(40);
    j.owner = None;
    let r = ValidRecord { adopt: true, ..depending() };
    let plan = run_with(&valid(r.clone()), &live(Some(j.clone()), vec![]), None, &progressing());
    assert!(plan.actions.is_empty(), "the unowned job is not taken over yet: {:?}", plan.actions);
    assert_eq!(phase(&plan), Phase::Pending);
    let plan = run_with(&valid(r), &live(Some(j), vec![]), None, &deps(DependencyState::Ready));
    assert_eq!(registers(&plan), vec![(40, RegisterReason::Adopt)]);
}

#[test]
fn decide_should_let_suspend_and_conflicts_win_over_waiting() {
    // Suspended: hands off, whatever the dependencies.
    let r = ValidRecord { suspend: true, ..depending() };
    let plan = run_with(&valid(r), &Live::default(), None, &progressing());
    assert_eq!(phase(&plan), Phase::Suspended);
    // Someone else's job under the app's ID is a conflict first: waiting would not make it ours.
    let mut j = job(40);
    j.owner = Some(OTHER.into());
    let plan = run_with(&valid(depending()), &live(Some(j), vec![]), None, &progressing());
    assert!(plan.actions.is_empty());
    assert_eq!(reason(&plan, ConditionType::Conflict), Some(Reason::OwnedByAnotherApp));
}

#[test]
fn decide_should_not_hold_a_register_already_sent() {
    // Drover's own write is not in the cache yet: the situation is NotYetSeen, not a register, so no waiting
    // (the register was already sent when the dependencies were ready).
    let plan =
        run_with(&valid(depending()), &Live { index: 39, ..Live::default() }, Some(&applied("h2", 40)), &progressing());
    assert!(plan.actions.is_empty());
    assert_eq!(phase(&plan), Phase::Progressing);
}
