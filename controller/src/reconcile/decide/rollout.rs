//! The rollout engine (DESIGN §4, issue #8): driving Nomad's deployment of the applied spec through the record's
//! steps, promoting it, aborting it, and baking after it. Pure: runs are read from the analysis stage's store
//! (`Observed.analysis`), controls from `Observed.control`, progress from status, so a restart resumes at the same
//! step without re-running finished ones.
//!
//! ```text
//!  Placing ──canaries healthy──► Step 1 … Step n ──► promote ──► Promoting ──successful──► Bake ──► Done (Healthy)
//!  (Nomad's progress deadline)   pause / gate / analysis /        (Nomad replaces           (postPromotion)
//!                                webhook, each with a deadline      the rest)
//!        │                              │                                                    │
//!        └── Nomad fails it ──┐         ├─ failed / webhook failed / deadline / abort ─►  fail deployment
//!                             ▼         │                                                  (Nomad reverts)
//!                    Done (Degraded)    └─ inconclusive / manual gate / pause ─► Paused      │ bake failure ─►
//!                                                                                           revert to stable
//! ```
//!
//! A verdict sets `failed_hash` at once (no flapping) and `rollout.result`; carrying it out (the fail, the revert)
//! is repeated until Nomad shows it done, and only then is the rollout `Done` and the app `Degraded`.

use std::time::{Duration, SystemTime};

use super::controls::Intent;
use super::rollout_steps::{Bake, RunsVerdict, StepKind, Steps, add, judge_runs, merge_runs, new_run, parse_time};
use super::{AWAIT_NOMAD_RECHECK, Ctx, PROGRESS_RECHECK, short};
use crate::live::{DeploymentOutcome, LiveDeployment, LiveJob};
use crate::reconcile::plan::{Action, Plan, Requeue};
use crate::rollout::{ControlAction, PausedReason, RolloutResult, RolloutStatus, StepRef};
use crate::status::{AppStatus, ConditionStatus, DeploymentRef, HistoryResult, Phase, Reason, Replicas, timestamp};

/// The most analysis runs a rollout keeps in status (the oldest finished ones go first): status stays far below
/// Consul's 512 KiB value limit whatever the rollout does (each run keeps at most 10 measurements).
pub const MAX_RUNS: usize = 16;

/// How long after Drover's revert it waits for Nomad to make the revert's deployment before calling the revert
/// done (Nomad makes none when the revert changes nothing it must roll out).
pub const REVERT_DEPLOYMENT_WAIT: Duration = Duration::from_secs(60);

/// What the rollout says for this reconcile.
enum Next {
    /// Report as Nomad's deployment says ([`Ctx::follow`]): placing without canaries, success, Nomad's failure.
    Follow,
    /// The rollout's own report and writes.
    Report {
        /// The app's phase.
        phase: Phase,
        /// The `Ready` reason.
        reason: Reason,
        /// The `Ready` message.
        message: String,
        /// Writes to make.
        actions: Vec<Action>,
        /// When to look again.
        requeue: Requeue,
    },
}

impl Next {
    fn progressing(reason: Reason, message: String, requeue: Requeue) -> Next {
        Next::Report { phase: Phase::Progressing, reason, message, actions: Vec::new(), requeue }
    }
}

impl Ctx<'_> {
    /// Drives deployment `d` of the applied spec (job `j` runs it) through the record's rollout.
    pub(super) fn drive(&self, s: &mut AppStatus, d: &LiveDeployment, j: &LiveJob) -> Plan {
        let steps = Steps::of(self.record, d);
        let previous = s.rollout.take();
        let ours = previous.clone().filter(|r| r.deployment_id.as_deref() == Some(d.id.as_str()));
        // A deployment of Drover's own scale rolls out no new spec: no steps, no bake (the last rollout stays in
        // status as it ended).
        let scaled = s
            .history
            .iter()
            .find(|h| h.result != HistoryResult::Controlled)
            .is_some_and(|h| h.result == HistoryResult::Scaled && h.job_version.is_none_or(|v| v == d.job_version));
        if (steps.is_empty() || scaled) && ours.is_none() {
            s.rollout = previous;
            return self.follow(s, Some(d), j);
        }
        let mut ro = match ours {
            Some(ro) => ro,
            None => self.new_rollout(s, d),
        };
        ro.step_count = steps.list.len() as u32;
        merge_runs(&mut ro.analysis_runs, self.analysis);
        s.deployment = Some(DeploymentRef {
            id: d.id.clone(),
            status: d.status.as_str().to_string(),
            description: d.description.clone(),
            job_version: d.job_version,
        });
        s.replicas = Replicas { desired: d.desired, placed: d.placed, healthy: d.healthy, canaries: d.canaries };
        let next = match self.take_intent() {
            Some(intent) => match self.apply_intent(s, &mut ro, &steps, d, intent) {
                Some(next) => next,
                None => self.advance(s, &mut ro, &steps, d),
            },
            None => self.advance(s, &mut ro, &steps, d),
        };
        trim_runs(&mut ro);
        crate::rollout::fit_runs(&mut ro.analysis_runs);
        s.rollout = Some(ro);
        self.report(s, next, d, j)
    }

    /// A fresh rollout of deployment `d`.
    fn new_rollout(&self, s: &AppStatus, d: &LiveDeployment) -> RolloutStatus {
        // The stable version: the newest version whose rollout ended healthy (what Nomad's auto-revert and a
        // bake's revert return to), older than the one rolling out.
        let stable = s
            .history
            .iter()
            .filter(|h| h.result == HistoryResult::Healthy)
            .filter_map(|h| h.job_version)
            .find(|v| *v < d.job_version);
        RolloutStatus {
            strategy: self.record.strategy.strategy_type,
            generation: self.record.generation,
            canary_version: Some(d.job_version),
            stable_version: stable,
            deployment_id: Some(d.id.clone()),
            started_at: Some(self.ts.clone()),
            ..RolloutStatus::default()
        }
    }

    /// Turns `next` into the plan.
    fn report(&self, s: &mut AppStatus, next: Next, d: &LiveDeployment, j: &LiveJob) -> Plan {
        match next {
            Next::Follow => self.follow(s, Some(d), j),
            Next::Report { phase, reason, message, actions, requeue } => {
                s.phase = phase;
                let status = if phase == Phase::Healthy { ConditionStatus::True } else { ConditionStatus::False };
                self.ready(s, status, reason, message);
                Plan { actions, status: Some(s.clone()), requeue, drift_detected: false, evaluated: None }
            }
        }
    }

    /// Where the rollout goes from here, by what Nomad's deployment shows.
    fn advance(&self, s: &mut AppStatus, ro: &mut RolloutStatus, steps: &Steps<'_>, d: &LiveDeployment) -> Next {
        let id = short(&d.id);
        match d.outcome() {
            // Nomad ended it (its progress deadline, unhealthy canaries, a cancel): its verdict stands.
            DeploymentOutcome::Failed | DeploymentOutcome::RolledBack | DeploymentOutcome::Cancelled => {
                if ro.step != StepRef::Done {
                    ro.result = Some(match d.outcome() {
                        DeploymentOutcome::Cancelled => RolloutResult::Superseded,
                        _ => RolloutResult::DeploymentFailed,
                    });
                    ro.message = format!("Nomad ended deployment {id}: {}", d.description);
                    self.end_step(ro, StepRef::Done);
                }
                Next::Follow
            }
            DeploymentOutcome::Successful => self.after_success(s, ro, steps),
            DeploymentOutcome::Active if ro.paused_reason == Some(PausedReason::PausedByUser) => Next::Report {
                phase: Phase::Paused,
                reason: Reason::PausedByUser,
                message: format!("the rollout is paused at {} (`drover resume` goes on)", ro.step),
                actions: Vec::new(),
                requeue: Requeue::AwaitChange,
            },
            // Paused in Nomad by someone else: Nomad's own state, reported as such.
            DeploymentOutcome::Active if d.status == crate::live::DeploymentStatus::Paused => Next::Follow,
            DeploymentOutcome::Active if d.promoted() => {
                self.end_step(ro, StepRef::Promoting);
                Next::progressing(
                    Reason::Promoting,
                    format!("deployment {id} promoted: Nomad replaces the rest ({}/{} healthy)", d.healthy, d.desired),
                    Requeue::After(PROGRESS_RECHECK),
                )
            }
            // No canaries (the first version of a job; Nomad places no canaries when nothing older runs): Nomad
            // simply rolls it out.
            DeploymentOutcome::Active if !d.requires_promotion() => Next::Follow,
            // Nothing placed yet: Nomad's progress deadline only starts at the first placement, so the plain
            // report (which calls a placement stalled past the job's progress deadline) applies.
            DeploymentOutcome::Active if !d.canaries_healthy() && d.placed == 0 => Next::Follow,
            // Nomad's progress deadline bounds the placing of canaries.
            DeploymentOutcome::Active if !d.canaries_healthy() => {
                let (healthy, wanted) =
                    d.groups.values().filter(|g| g.requires_promotion()).fold((0, 0), |(h, w), g| {
                        (h + g.healthy_allocs.min(g.desired_canaries), w + g.desired_canaries)
                    });
                Next::progressing(
                    Reason::DeploymentRunning,
                    format!(
                        "deployment {id}: placing canaries, {healthy}/{wanted} healthy (Nomad's progress deadline bounds this)"
                    ),
                    Requeue::After(PROGRESS_RECHECK),
                )
            }
            DeploymentOutcome::Active => self.run_steps(s, ro, steps, d, false),
        }
    }

    /// Runs the steps from where the rollout is, as far as they go now. `skip_one`: the current step ends now (a
    /// `promote` control), whatever it waits for.
    fn run_steps(
        &self,
        s: &mut AppStatus,
        ro: &mut RolloutStatus,
        steps: &Steps<'_>,
        d: &LiveDeployment,
        mut skip_one: bool,
    ) -> Next {
        let mut at = match ro.step {
            StepRef::Placing => {
                self.start_step(ro, steps, 0);
                0
            }
            step => steps.position(step).unwrap_or(steps.list.len()),
        };
        loop {
            let Some((step, kind)) = steps.list.get(at) else {
                return self.promote(ro, d);
            };
            let started = parse_time(ro.step_started_at.as_deref()).unwrap_or(self.now);
            let deadline = parse_time(ro.deadline.as_deref());
            let outcome = if std::mem::take(&mut skip_one) {
                StepOutcome::Passed
            } else {
                self.step_outcome(ro, *step, kind, started, deadline)
            };
            match outcome {
                StepOutcome::Passed => {
                    at += 1;
                    self.start_step(ro, steps, at);
                }
                StepOutcome::Wait { until, message } => {
                    let requeue = until.map_or(Requeue::After(PROGRESS_RECHECK), |u| self.requeue_at(u));
                    return Next::progressing(Reason::RolloutStep, message, requeue);
                }
                StepOutcome::Paused { reason, until, message } => {
                    ro.paused_reason = Some(reason);
                    let requeue = until.map_or(Requeue::AwaitChange, |u| self.requeue_at(u));
                    return Next::Report {
                        phase: Phase::Paused,
                        reason: paused_reason(reason),
                        message,
                        actions: Vec::new(),
                        requeue,
                    };
                }
                StepOutcome::Abort { result, message } => return self.abort(s, ro, d, result, message),
            }
        }
    }

    /// Whether the current step is over, and how it ended.
    fn step_outcome(
        &self,
        ro: &RolloutStatus,
        step: StepRef,
        kind: &StepKind<'_>,
        started: SystemTime,
        deadline: Option<SystemTime>,
    ) -> StepOutcome {
        let past = |t: Option<SystemTime>| t.is_some_and(|t| self.now >= t);
        let name = kind.name();
        let late = || StepOutcome::Abort {
            result: RolloutResult::DeadlineExceeded,
            message: format!(
                "{step} ({name}) did not end by its deadline {}",
                ro.deadline.as_deref().unwrap_or("(none)")
            ),
        };
        match kind {
            StepKind::Pause(d) => {
                let until = add(started, *d);
                if self.now >= until {
                    StepOutcome::Passed
                } else {
                    StepOutcome::Wait {
                        until: Some(until),
                        message: format!("{step}: {name}, until {}", timestamp(until)),
                    }
                }
            }
            StepKind::Gate { timeout, on_timeout } => {
                let until = timeout.map(|t| add(started, t));
                match (past(until), on_timeout) {
                    (true, crate::app::OnTimeout::Promote) => StepOutcome::Passed,
                    (true, crate::app::OnTimeout::Abort) => StepOutcome::Abort {
                        result: RolloutResult::DeadlineExceeded,
                        message: format!(
                            "{step}: nobody promoted the manual gate within its timeout (onTimeout: Abort)"
                        ),
                    },
                    (false, _) => StepOutcome::Paused {
                        reason: PausedReason::ManualGate,
                        until,
                        message: match until {
                            Some(u) => format!(
                                "{step}: manual gate; `drover promote` goes on, `drover abort` aborts (timeout at {})",
                                timestamp(u)
                            ),
                            None => format!("{step}: manual gate; `drover promote` goes on, `drover abort` aborts"),
                        },
                    },
                }
            }
            StepKind::Analysis(_) | StepKind::Webhook(_) => {
                let runs = ro.analysis_runs.iter().filter(|r| r.id.step == step && r.id.generation == ro.generation);
                match judge_runs(runs) {
                    RunsVerdict::Passed => StepOutcome::Passed,
                    RunsVerdict::Failed(why) => StepOutcome::Abort {
                        result: if matches!(kind, StepKind::Webhook(_)) {
                            RolloutResult::WebhookFailed
                        } else {
                            RolloutResult::AnalysisFailed
                        },
                        message: format!("{step} ({name}) failed: {why}"),
                    },
                    RunsVerdict::Inconclusive(why) => StepOutcome::Paused {
                        reason: PausedReason::AnalysisInconclusive,
                        until: None,
                        message: format!(
                            "{step} ({name}) was inconclusive: {why}; `drover promote` treats it as passed, `drover abort` aborts"
                        ),
                    },
                    RunsVerdict::Running if past(deadline) => late(),
                    RunsVerdict::Running => StepOutcome::Wait {
                        until: deadline,
                        message: format!("{step}: {name} running{}", describe_runs(ro, step)),
                    },
                }
            }
        }
    }

    /// Starts step `at` of `steps` (or leaves the rollout at the end, ready to promote): its clock, deadline and
    /// runs.
    fn start_step(&self, ro: &mut RolloutStatus, steps: &Steps<'_>, at: usize) {
        ro.paused_reason = None;
        let Some((step, kind)) = steps.list.get(at) else {
            self.end_step(ro, StepRef::Promoting);
            return;
        };
        ro.step = *step;
        ro.step_name = kind.name();
        ro.step_started_at = Some(self.ts.clone());
        ro.deadline = kind.budget(&self.record.analysis).map(|b| timestamp(add(self.now, b)));
        self.start_runs(ro, *step, kind.runs());
    }

    /// Puts a Running run of each template for `step` into status (replacing an earlier attempt's).
    fn start_runs(&self, ro: &mut RolloutStatus, step: StepRef, templates: Vec<String>) {
        let generation = self.record.generation;
        for template in templates {
            let dry_run = self.record.analysis.get(&template).is_some_and(|t| t.dry_run);
            ro.analysis_runs
                .retain(|r| !(r.id.step == step && r.id.generation == generation && r.id.template == template));
            ro.analysis_runs.push(new_run(generation, step, &template, &self.ts, dry_run));
        }
    }

    /// Moves to a step that has no clock of its own (Promoting, Done).
    fn end_step(&self, ro: &mut RolloutStatus, step: StepRef) {
        if ro.step != step {
            ro.step = step;
            ro.step_name = String::new();
            ro.step_started_at = Some(self.ts.clone());
            ro.deadline = None;
            ro.paused_reason = None;
        }
    }

    /// Every step passed: promote the deployment.
    fn promote(&self, ro: &mut RolloutStatus, d: &LiveDeployment) -> Next {
        self.end_step(ro, StepRef::Promoting);
        Next::Report {
            phase: Phase::Progressing,
            reason: Reason::Promoting,
            message: format!("every step passed: promoting deployment {}", short(&d.id)),
            actions: vec![Action::PromoteDeployment { id: d.id.clone() }],
            requeue: Requeue::After(PROGRESS_RECHECK),
        }
    }

    /// The verdict went against the rollout: fail the deployment so Nomad reverts; no flapping from here on.
    fn abort(
        &self,
        s: &mut AppStatus,
        ro: &mut RolloutStatus,
        d: &LiveDeployment,
        result: RolloutResult,
        message: String,
    ) -> Next {
        ro.result = Some(result);
        ro.message = message.clone();
        ro.paused_reason = None;
        ro.step_started_at = Some(self.ts.clone());
        s.failed_hash = Some(self.record.hash.clone());
        Next::Report {
            phase: Phase::Progressing,
            reason: verdict_reason(result),
            message: format!(
                "{message}; failing deployment {} so Nomad reverts to the stable version. Drover will not register this spec again until the record changes or `drover retry`",
                short(&d.id)
            ),
            actions: vec![Action::FailDeployment { id: d.id.clone() }],
            requeue: Requeue::After(AWAIT_NOMAD_RECHECK),
        }
    }

    /// The deployment succeeded: bake if the record asks for it (and there is a stable version to go back to),
    /// else the rollout is done.
    fn after_success(&self, s: &mut AppStatus, ro: &mut RolloutStatus, steps: &Steps<'_>) -> Next {
        match (ro.step, steps.bake, ro.stable_version) {
            (StepRef::Done, _, _) => Next::Follow,
            (StepRef::Bake, _, _) if ro.paused_reason == Some(PausedReason::PausedByUser) => Next::Report {
                phase: Phase::Paused,
                reason: Reason::PausedByUser,
                message: "the post-promotion bake is paused (`drover resume` goes on)".to_string(),
                actions: Vec::new(),
                requeue: Requeue::AwaitChange,
            },
            (StepRef::Bake, Some(bake), Some(stable)) => self.bake(s, ro, bake, stable, false),
            (_, Some(bake), Some(stable)) => {
                ro.step = StepRef::Bake;
                ro.step_name = match bake.analysis {
                    Some(a) => format!(
                        "bake {} with analysis {}",
                        humantime::format_duration(bake.duration),
                        a.template_names().join(", ")
                    ),
                    None => format!("bake {}", humantime::format_duration(bake.duration)),
                };
                ro.step_started_at = Some(self.ts.clone());
                ro.paused_reason = None;
                let budget = bake
                    .analysis
                    .map_or(Duration::ZERO, |a| super::rollout_steps::analysis_budget(a, &self.record.analysis));
                ro.deadline = Some(timestamp(add(self.now, bake.duration.max(budget))));
                let runs = bake.analysis.map(|a| a.template_names().into_iter().map(str::to_string).collect());
                self.start_runs(ro, StepRef::Bake, runs.unwrap_or_default());
                self.bake(s, ro, bake, stable, false)
            }
            // No bake, or no stable version a bake could return to (the first version): done.
            _ => {
                ro.result = Some(RolloutResult::Succeeded);
                self.end_step(ro, StepRef::Done);
                Next::Follow
            }
        }
    }

    /// The bake: keep measuring for its duration; a failure reverts to `stable`. `passed`: a `promote` control
    /// ends it now.
    fn bake(&self, s: &mut AppStatus, ro: &mut RolloutStatus, bake: Bake<'_>, stable: u64, passed: bool) -> Next {
        let started = parse_time(ro.step_started_at.as_deref()).unwrap_or(self.now);
        let deadline = parse_time(ro.deadline.as_deref());
        let until = add(started, bake.duration);
        let runs = ro.analysis_runs.iter().filter(|r| r.id.step == StepRef::Bake && r.id.generation == ro.generation);
        let verdict = if passed { RunsVerdict::Passed } else { judge_runs(runs) };
        match verdict {
            RunsVerdict::Failed(why) => {
                self.revert(s, ro, stable, RolloutResult::RolledBack, format!("the post-promotion bake failed: {why}"))
            }
            RunsVerdict::Inconclusive(why) => {
                ro.paused_reason = Some(PausedReason::AnalysisInconclusive);
                Next::Report {
                    phase: Phase::Paused,
                    reason: Reason::AnalysisInconclusive,
                    message: format!(
                        "the post-promotion bake was inconclusive: {why}; `drover promote` accepts the version, `drover abort` reverts to version {stable}"
                    ),
                    actions: Vec::new(),
                    requeue: Requeue::AwaitChange,
                }
            }
            RunsVerdict::Running if deadline.is_some_and(|d| self.now >= d) => self.revert(
                s,
                ro,
                stable,
                RolloutResult::DeadlineExceeded,
                format!(
                    "the post-promotion bake's analysis did not end by its deadline {}",
                    ro.deadline.as_deref().unwrap_or_default()
                ),
            ),
            RunsVerdict::Running => Next::progressing(
                Reason::Baking,
                format!("{}: measuring{}", ro.step_name, describe_runs(ro, StepRef::Bake)),
                deadline.map_or(Requeue::After(PROGRESS_RECHECK), |d| self.requeue_at(d)),
            ),
            RunsVerdict::Passed if !passed && self.now < until => Next::progressing(
                Reason::Baking,
                format!("{}: until {}", ro.step_name, timestamp(until)),
                self.requeue_at(until),
            ),
            RunsVerdict::Passed => {
                ro.result = Some(RolloutResult::Succeeded);
                self.end_step(ro, StepRef::Done);
                Next::Follow
            }
        }
    }

    /// A regression after Nomad's deployment succeeded: revert the job to `stable` (Nomad's auto-revert no longer
    /// applies), guarded by the version that runs now.
    fn revert(
        &self,
        s: &mut AppStatus,
        ro: &mut RolloutStatus,
        stable: u64,
        result: RolloutResult,
        message: String,
    ) -> Next {
        ro.result = Some(result);
        ro.message = message.clone();
        ro.paused_reason = None;
        ro.step_started_at = Some(self.ts.clone());
        s.failed_hash = Some(self.record.hash.clone());
        let current = ro.canary_version.unwrap_or_default();
        Next::Report {
            phase: Phase::Progressing,
            reason: verdict_reason(result),
            message: format!(
                "{message}; reverting job {:?} from version {current} to version {stable}",
                self.record.job_id
            ),
            actions: vec![Action::RevertJob {
                job_id: self.record.job_id.clone(),
                version: stable,
                enforce_prior_version: current,
            }],
            requeue: Requeue::After(AWAIT_NOMAD_RECHECK),
        }
    }

    /// Applies a control to the rollout, or consumes it as ignored when it does not apply here. `Some`: the
    /// control decides this reconcile.
    fn apply_intent(
        &self,
        s: &mut AppStatus,
        ro: &mut RolloutStatus,
        steps: &Steps<'_>,
        d: &LiveDeployment,
        intent: Intent,
    ) -> Option<Next> {
        let active = d.is_active() && ro.step != StepRef::Done && ro.result.is_none();
        let baking = ro.step == StepRef::Bake && ro.result.is_none();
        let at_step = active && (steps.position(ro.step).is_some() || ro.step == StepRef::Placing);
        let user_paused = ro.paused_reason == Some(PausedReason::PausedByUser);
        let apply = |s: &mut AppStatus, message: String| self.consume_intent(s, intent, true, message);
        let ignore = |s: &mut AppStatus, why: &str| {
            self.consume_intent(s, intent, false, format!("{} ignored: {why}", intent.action.as_str()));
        };
        match intent.action {
            ControlAction::Abort if active || baking => {
                apply(s, format!("abort: the rollout at {} is aborted", ro.step));
                let message = format!("aborted by a control at {}", ro.step);
                return Some(match (baking, ro.stable_version) {
                    (true, Some(stable)) => self.revert(s, ro, stable, RolloutResult::Aborted, message),
                    _ => self.abort(s, ro, d, RolloutResult::Aborted, message),
                });
            }
            ControlAction::Pause if (active || baking) && !user_paused => {
                apply(s, format!("pause: the rollout holds at {}", ro.step));
                ro.paused_reason = Some(PausedReason::PausedByUser);
                ro.paused_at = Some(self.ts.clone());
                let actions =
                    if active { vec![Action::PauseDeployment { id: d.id.clone(), pause: true }] } else { Vec::new() };
                return Some(Next::Report {
                    phase: Phase::Paused,
                    reason: Reason::PausedByUser,
                    message: format!("the rollout is paused at {} (`drover resume` goes on)", ro.step),
                    actions,
                    requeue: Requeue::AwaitChange,
                });
            }
            ControlAction::Resume if user_paused => {
                apply(s, format!("resume: the rollout goes on at {}", ro.step));
                // The step's clock and deadline move on by the time spent paused.
                let paused = parse_time(ro.paused_at.as_deref()).and_then(|p| self.now.duration_since(p).ok());
                let shift = |t: &mut Option<String>| {
                    if let (Some(at), Some(p)) = (parse_time(t.as_deref()), paused) {
                        *t = Some(timestamp(add(at, p)));
                    }
                };
                shift(&mut ro.step_started_at);
                shift(&mut ro.deadline);
                ro.paused_reason = None;
                ro.paused_at = None;
                if d.status == crate::live::DeploymentStatus::Paused {
                    let next = self.advance(s, ro, steps, d);
                    return Some(with_action(next, Action::PauseDeployment { id: d.id.clone(), pause: false }));
                }
                return None;
            }
            ControlAction::Promote | ControlAction::PromoteFull if baking => {
                apply(s, format!("{}: the bake is accepted as passed", intent.action.as_str()));
                let (bake, stable) = (steps.bake?, ro.stable_version?);
                ro.paused_reason = None;
                return Some(self.bake(s, ro, bake, stable, true));
            }
            ControlAction::Promote if at_step && !user_paused && ro.step != StepRef::Placing => {
                apply(s, format!("promote: {} ends now", ro.step));
                return Some(self.run_steps(s, ro, steps, d, true));
            }
            ControlAction::PromoteFull if at_step && !user_paused && d.canaries_healthy() => {
                apply(s, format!("promoteFull: the steps from {} on are skipped", ro.step));
                return Some(self.promote(ro, d));
            }
            ControlAction::Restart if at_step && ro.step != StepRef::Placing => {
                apply(s, format!("restart: the steps start again from the first (was at {})", ro.step));
                self.start_step(ro, steps, 0);
                return Some(self.run_steps(s, ro, steps, d, false));
            }
            ControlAction::Resume => ignore(s, "the rollout is not paused by a person"),
            ControlAction::PromoteFull if at_step && !d.canaries_healthy() => {
                ignore(s, "the canaries are not all healthy yet, so Nomad would refuse the promotion")
            }
            _ if user_paused => ignore(s, "the rollout is paused by a person; `drover resume` first"),
            _ => ignore(s, &format!("the rollout is at {} and cannot take it", ro.step)),
        }
        None
    }

    /// A verdict is recorded (and `failed_hash` set): carry it out until Nomad shows it done, then end the rollout
    /// `Degraded` with the verdict's reason.
    pub(super) fn finish_ending(&self, s: &mut AppStatus, job: Option<&LiveJob>) -> Plan {
        let Some(mut ro) = s.rollout.take() else {
            s.phase = Phase::Degraded;
            return Plan::status(s.clone(), Requeue::AwaitChange);
        };
        let result = ro.result.unwrap_or(RolloutResult::Aborted);
        let next = if ro.step == StepRef::Bake { self.finish_revert(&mut ro, job) } else { self.finish_fail(&mut ro) };
        if let Some(i) = self.take_intent() {
            self.consume_intent(
                s,
                i,
                false,
                format!("{} ignored: the rollout is ending ({result:?})", i.action.as_str()),
            );
        }
        let plan = match next {
            Some((actions, message)) => {
                s.phase = Phase::Progressing;
                self.ready(s, ConditionStatus::False, verdict_reason(result), message);
                Plan {
                    actions,
                    status: None,
                    requeue: Requeue::After(AWAIT_NOMAD_RECHECK),
                    drift_detected: false,
                    evaluated: None,
                }
            }
            None => {
                self.end_step(&mut ro, StepRef::Done);
                s.phase = Phase::Degraded;
                let history = if result == RolloutResult::RolledBack || ro.stable_version.is_some() {
                    HistoryResult::RolledBack
                } else {
                    HistoryResult::DeploymentFailed
                };
                let hash = &self.record.hash;
                if let Some(h) = s.history.iter_mut().find(|h| &h.hash == hash && is_apply(h.result)) {
                    h.result = history;
                }
                let message = format!(
                    "{}. Drover will not register this spec again until the record changes or `drover retry`",
                    ro.message
                );
                self.ready(s, ConditionStatus::False, verdict_reason(result), message);
                Plan::status(AppStatus::default(), Requeue::AwaitChange)
            }
        };
        s.rollout = Some(ro);
        Plan { status: Some(s.clone()), ..plan }
    }

    /// The deployment is being failed: `Some` (fail it again) while Nomad still shows it active.
    fn finish_fail(&self, ro: &mut RolloutStatus) -> Option<(Vec<Action>, String)> {
        let id = ro.deployment_id.clone()?;
        let d = self.live.deployments.iter().find(|d| d.id == id)?;
        d.is_active().then(|| {
            let message = format!("{}; failing deployment {} so Nomad reverts", ro.message, short(&id));
            (vec![Action::FailDeployment { id }], message)
        })
    }

    /// The job is being reverted: `Some` while the revert is not visible yet (revert again, guarded by the version)
    /// or the revert's own deployment still needs Drover (promote its canaries) or Nomad (wait).
    fn finish_revert(&self, ro: &mut RolloutStatus, job: Option<&LiveJob>) -> Option<(Vec<Action>, String)> {
        let (stable, current) = (ro.stable_version?, ro.canary_version?);
        let job = job?;
        let reverting = format!("{}; reverting to version {stable}", ro.message);
        if job.version.is_none_or(|v| v == current) {
            let revert =
                Action::RevertJob { job_id: job.key.id.clone(), version: stable, enforce_prior_version: current };
            return Some((vec![revert], reverting));
        }
        match self.live.deployment_for(job.job_modify_index) {
            // Reverting a promoted canary job places canaries again (the old spec is a destructive update): they
            // are the stable version, so Drover promotes them at once.
            Some(d) if d.is_active() && d.requires_promotion() && d.canaries_healthy() => Some((
                vec![Action::PromoteDeployment { id: d.id.clone() }],
                format!("{reverting}: promoting its deployment"),
            )),
            Some(d) if d.is_active() => Some((Vec::new(), format!("{reverting}: Nomad rolls it out"))),
            Some(_) => None,
            None => {
                let since = parse_time(ro.step_started_at.as_deref()).unwrap_or(self.now);
                (self.now < add(since, REVERT_DEPLOYMENT_WAIT))
                    .then(|| (Vec::new(), format!("{reverting}: waiting for Nomad")))
            }
        }
    }

    /// Requeue at `t` (at once if it has passed).
    fn requeue_at(&self, t: SystemTime) -> Requeue {
        Requeue::After(t.duration_since(self.now).unwrap_or(Duration::ZERO))
    }
}

/// How a step ended, or what it waits for.
enum StepOutcome {
    /// Over: the next step starts.
    Passed,
    /// Waiting for time or measurements.
    Wait { until: Option<SystemTime>, message: String },
    /// Waiting for a person.
    Paused { reason: PausedReason, until: Option<SystemTime>, message: String },
    /// Over, against the rollout.
    Abort { result: RolloutResult, message: String },
}

/// The `Ready` reason of a verdict.
pub(crate) fn verdict_reason(result: RolloutResult) -> Reason {
    match result {
        RolloutResult::Succeeded => Reason::DeploymentSucceeded,
        RolloutResult::AnalysisFailed => Reason::AnalysisFailed,
        RolloutResult::WebhookFailed => Reason::WebhookFailed,
        RolloutResult::Aborted => Reason::Aborted,
        RolloutResult::DeadlineExceeded => Reason::DeadlineExceeded,
        RolloutResult::DeploymentFailed => Reason::DeploymentFailed,
        RolloutResult::RolledBack => Reason::RolledBack,
        RolloutResult::Superseded => Reason::DeploymentCancelled,
    }
}

/// The `Ready` reason of a pause.
fn paused_reason(reason: PausedReason) -> Reason {
    match reason {
        PausedReason::ManualGate => Reason::ManualGate,
        PausedReason::AnalysisInconclusive => Reason::AnalysisInconclusive,
        PausedReason::PausedByUser => Reason::PausedByUser,
    }
}

/// A history entry of an apply (not a scale or a control).
fn is_apply(result: HistoryResult) -> bool {
    !matches!(result, HistoryResult::Scaled | HistoryResult::Controlled)
}

/// `next` with `action` made first.
fn with_action(next: Next, action: Action) -> Next {
    match next {
        Next::Report { phase, reason, message, mut actions, requeue } => {
            actions.insert(0, action);
            Next::Report { phase, reason, message, actions, requeue }
        }
        // A resumed deployment that needs nothing else: say it goes on.
        Next::Follow => Next::Report {
            phase: Phase::Progressing,
            reason: Reason::DeploymentRunning,
            message: "the rollout goes on".to_string(),
            actions: vec![action],
            requeue: Requeue::After(AWAIT_NOMAD_RECHECK),
        },
    }
}

/// `: error-rate 3/5 (last 0.01)` for the runs of `step`.
fn describe_runs(ro: &RolloutStatus, step: StepRef) -> String {
    let parts: Vec<String> = ro
        .analysis_runs
        .iter()
        .filter(|r| r.id.step == step && r.id.generation == ro.generation)
        .map(|r| {
            let last = r.measurements.last().and_then(|m| m.value.as_ref()).map(|v| format!(", last {v}"));
            format!("{} {} taken{}", r.id.template, r.total(), last.unwrap_or_default())
        })
        .collect();
    if parts.is_empty() { String::new() } else { format!(" ({})", parts.join("; ")) }
}

/// Keeps at most [`MAX_RUNS`] runs, dropping the oldest finished ones first.
fn trim_runs(ro: &mut RolloutStatus) {
    while ro.analysis_runs.len() > MAX_RUNS {
        let oldest = ro.analysis_runs.iter().position(|r| r.phase.is_terminal()).unwrap_or(0);
        ro.analysis_runs.remove(oldest);
    }
}
