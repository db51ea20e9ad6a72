//! `drover promote [--full]`, `abort`, `retry`, `pause`, `resume`, `restart`: write a control for the app's current
//! rollout at `<prefix>/control/<ns>/<name>` (DESIGN §4, issue #8) and say what it will do.
//!
//! The command reads the record (its `ModifyIndex` is the generation the control names, so a control never acts on a
//! newer spec) and the status, and judges the control the way the controller will: one that would do nothing (no
//! rollout in progress, already Healthy, nothing failed to retry...) is not written, and the command says why and
//! exits 3 (errors exit 1). When the controller has not observed the record's generation yet, the control is written and the
//! command says the controller will judge it. The controller consumes each control once (by its `ModifyIndex`) and
//! records what it did in the status (`lastControl` and the history); `drover describe` shows it.

use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, bail};
use clap::Args;

use super::{ConsulArgs, PrefixArg, env_lookup};
use crate::app::{AppKey, CanaryStep, StrategyType};
use crate::metrics::Metrics;
use crate::rollout::status::PausedReason;
use crate::rollout::{Control, ControlAction, RolloutStatus, StepRef};
use crate::status::{AppStatus, ConditionType, Phase, timestamp};

/// Exit code: the control was written.
pub const EXIT_WRITTEN: u8 = 0;
/// Exit code: the control would do nothing, so it was not written (1 is an error, 2 a usage error).
pub const EXIT_NOTHING_TO_DO: u8 = 3;

/// What every control command takes.
#[derive(Args, Debug)]
pub struct ControlArgs {
    /// The app: `namespace/name`, or `name` (namespace from `-n`, else `default`).
    pub app: String,
    /// The app's namespace, when APP is only a name.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Who asks, recorded in the control and the status history [default: $USER].
    #[arg(long)]
    pub by: Option<String>,
    /// Consul connection.
    #[command(flatten)]
    pub consul: ConsulArgs,
    /// KV prefix.
    #[command(flatten)]
    pub prefix: PrefixArg,
}

/// `drover promote`.
#[derive(Args, Debug)]
pub struct PromoteArgs {
    /// Skip every remaining step and promote now (without it, only the current step ends).
    #[arg(long)]
    pub full: bool,
    /// The app and connection.
    #[command(flatten)]
    pub common: ControlArgs,
}

/// What a control will do, judged from the status the command read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Preview {
    /// It will act; the text says how.
    Acts(String),
    /// The controller has not observed the record's generation yet: it judges the control when it does.
    Unjudged(String),
    /// It would do nothing; the text says why. Such a control is not written.
    Nothing(String),
}

/// The app named by `app` and `-n`: `ns/name` wins; a `-n` that disagrees with it is an error.
pub fn app_key(app: &str, namespace: Option<&str>) -> anyhow::Result<AppKey> {
    let key = super::show::parse_key(app)?;
    match namespace {
        None => Ok(key),
        Some(ns) if app.contains('/') && ns != key.namespace => {
            bail!("app {app:?} names namespace {:?} but -n says {ns:?}", key.namespace)
        }
        Some("") => bail!("-n: the namespace is empty"),
        Some(ns) => Ok(AppKey::new(ns, key.name)),
    }
}

/// A short name for a canary step, e.g. `pause 5m`, `manual gate`, `analysis error-rate`, `webhook <url>`.
pub fn step_label(step: &CanaryStep) -> String {
    match step {
        CanaryStep::Pause(p) => match (&p.duration, &p.timeout) {
            (Some(d), _) => format!("pause {d}"),
            (None, Some(t)) => format!("manual gate, timeout {t}"),
            (None, None) => "manual gate".to_string(),
        },
        CanaryStep::Analysis(a) => format!("analysis {}", a.template_names().join(", ")),
        CanaryStep::Webhook(w) => format!("webhook {}", w.url),
    }
}

/// The canary steps of the record (empty for other strategies, or a record that does not parse).
pub fn canary_steps(record: &[u8]) -> Vec<CanaryStep> {
    crate::app::parse(record)
        .ok()
        .and_then(|app| app.spec.strategy)
        .and_then(|s| s.canary)
        .map(|c| c.steps)
        .unwrap_or_default()
}

/// The rollout of `generation` if it is still under way.
fn active(generation: u64, status: &AppStatus) -> Option<&RolloutStatus> {
    status.rollout.as_ref().filter(|r| r.generation == generation && r.result.is_none() && r.step != StepRef::Done)
}

/// The current step's name: the controller's, else the record's.
fn step_name(r: &RolloutStatus, steps: &[CanaryStep]) -> String {
    if !r.step_name.is_empty() {
        return r.step_name.clone();
    }
    match r.step {
        StepRef::Step(n) => steps.get(n as usize).map(step_label).unwrap_or_default(),
        _ => String::new(),
    }
}

/// Where the rollout stands, for people: `Step 2/4 (pause 5m)`, `pre-promotion (analysis smoke)`, ...
pub fn position(r: &RolloutStatus, steps: &[CanaryStep]) -> String {
    let name = step_name(r, steps);
    let named = |what: String| if name.is_empty() { what } else { format!("{what} ({name})") };
    match r.step {
        StepRef::Placing if r.strategy == StrategyType::BlueGreen => "placing the new set".to_string(),
        StepRef::Placing => "placing the canaries".to_string(),
        StepRef::Step(n) => named(format!("Step {}/{}", n + 1, r.step_count.max(n + 1))),
        StepRef::PrePromotion => named("pre-promotion".to_string()),
        StepRef::Promoting => "promoting".to_string(),
        StepRef::Bake => named("bake".to_string()),
        StepRef::Done => "done".to_string(),
    }
}

/// What comes after the current step.
fn next(r: &RolloutStatus, steps: &[CanaryStep]) -> String {
    match r.step {
        StepRef::Step(n) if n + 1 < r.step_count => match steps.get(n as usize + 1) {
            Some(step) => format!("Step {}/{} ({})", n + 2, r.step_count, step_label(step)),
            None => format!("Step {}/{}", n + 2, r.step_count),
        },
        _ => "promotion".to_string(),
    }
}

/// Why there is no rollout to act on.
fn no_rollout(generation: u64, status: &AppStatus) -> String {
    let reason = status.condition(ConditionType::Ready).map(|c| format!(" ({})", c.reason)).unwrap_or_default();
    match status.phase {
        Phase::Healthy => format!("no rollout in progress: generation {generation} is already Healthy"),
        phase => format!("no rollout in progress: generation {generation} is {}{reason}", phase.as_str()),
    }
}

/// Judges `action` for the record at `generation`, from the status as read (`steps`: the record's canary steps,
/// for names).
pub fn preview(action: ControlAction, generation: u64, status: Option<&AppStatus>, steps: &[CanaryStep]) -> Preview {
    let Some(s) = status else {
        return Preview::Unjudged(format!(
            "Drover has no status for the app yet; it will judge the control when it observes generation {generation}"
        ));
    };
    if s.observed_generation < generation {
        return Preview::Unjudged(format!(
            "Drover has not observed generation {generation} yet (status at {}); it will judge the control when it does",
            s.observed_generation
        ));
    }
    if s.observed_generation > generation {
        return Preview::Nothing(format!(
            "the record changed while reading it (status at generation {}); run the command again",
            s.observed_generation
        ));
    }
    match s.phase {
        Phase::Invalid => return Preview::Nothing("the record is Invalid: nothing rolls out until it is fixed".into()),
        Phase::Suspended => return Preview::Nothing("the app is suspended (spec.suspend)".into()),
        Phase::Deleting => return Preview::Nothing("the app is being deleted".into()),
        _ => {}
    }
    let rollout = active(generation, s);
    let at = |r: &RolloutStatus| position(r, steps);
    match action {
        // The arms follow the engine's (reconcile::decide::rollout, apply_intent): a person's pause blocks promotion
        // until `resume`; promote at the bake accepts it as passed; promoteFull needs healthy canaries.
        ControlAction::Promote | ControlAction::PromoteFull => match rollout {
            None => Preview::Nothing(no_rollout(generation, s)),
            Some(r) if r.step == StepRef::Bake => {
                Preview::Acts(format!("the {} is accepted as passed; the rollout succeeds", at(r)))
            }
            Some(r) if r.paused_reason == Some(PausedReason::PausedByUser) && r.step != StepRef::Promoting => {
                Preview::Nothing(format!("the rollout is paused by a person at {}; drover resume first", at(r)))
            }
            Some(r) => match (r.step, action) {
                (StepRef::Step(_) | StepRef::PrePromotion, ControlAction::Promote) => {
                    let passed = if r.paused_reason == Some(PausedReason::AnalysisInconclusive) {
                        " (the inconclusive analysis counts as passed)"
                    } else {
                        ""
                    };
                    Preview::Acts(format!("{} ends{passed}; next: {}", at(r), next(r, steps)))
                }
                (StepRef::Step(_) | StepRef::PrePromotion, _) => {
                    Preview::Acts(format!("{} and every later step are skipped; the deployment is promoted now", at(r)))
                }
                (StepRef::Placing, _) => Preview::Nothing(format!(
                    "{}: no step to end yet, and Nomad refuses to promote canaries that are not all healthy",
                    at(r)
                )),
                (StepRef::Promoting | StepRef::Bake | StepRef::Done, _) => {
                    Preview::Nothing(format!("already promoted ({}); drover abort reverts", at(r)))
                }
            },
        },
        ControlAction::Abort => match rollout {
            None => Preview::Nothing(no_rollout(generation, s)),
            Some(r) => {
                let stable = r.stable_version.map_or("the last stable version".to_string(), |v| format!("version {v}"));
                let how = if r.step == StepRef::Bake {
                    format!("Drover reverts the job to {stable}")
                } else {
                    format!("the deployment is failed and Nomad reverts to {stable}")
                };
                Preview::Acts(format!("the rollout stops at {}: {how}; the app ends Degraded (Aborted)", at(r)))
            }
        },
        ControlAction::Pause => match rollout {
            None => Preview::Nothing(no_rollout(generation, s)),
            Some(r) if r.paused_reason == Some(PausedReason::PausedByUser) => {
                Preview::Nothing(format!("already paused at {}", at(r)))
            }
            Some(r) => Preview::Acts(format!("the rollout holds at {} (Paused) until drover resume", at(r))),
        },
        ControlAction::Resume => match rollout.map(|r| (r, r.paused_reason)) {
            Some((r, Some(PausedReason::PausedByUser))) => Preview::Acts(format!("the rollout goes on from {}", at(r))),
            Some((r, Some(PausedReason::ManualGate))) => Preview::Nothing(format!(
                "not paused by drover pause: it waits at a manual gate ({}); drover promote opens it",
                at(r)
            )),
            Some((r, Some(PausedReason::AnalysisInconclusive))) => Preview::Nothing(format!(
                "not paused by drover pause: an analysis was inconclusive at {}; drover promote or abort decides",
                at(r)
            )),
            Some((r, None)) => Preview::Nothing(format!("not paused: the rollout is at {}", at(r))),
            None => Preview::Nothing(no_rollout(generation, s)),
        },
        ControlAction::Retry => match (&s.failed_hash, s.phase) {
            (Some(_), Phase::Degraded | Phase::Failed) => Preview::Acts(format!(
                "the spec of generation {generation}, whose rollout failed, is registered again and rolls out from the start"
            )),
            _ => Preview::Nothing(format!(
                "the rollout of generation {generation} did not fail (phase {}): nothing to retry",
                s.phase.as_str()
            )),
        },
        // Restart starts the steps of the rollout in progress again from the first (the engine's meaning).
        ControlAction::Restart => match rollout {
            Some(r) if matches!(r.step, StepRef::Step(_) | StepRef::PrePromotion) => {
                let first = steps.first().map(|step| format!(" ({})", step_label(step))).unwrap_or_default();
                Preview::Acts(format!(
                    "the steps start again from the first: {} → Step 1/{}{first}",
                    at(r),
                    r.step_count.max(1)
                ))
            }
            Some(r) => Preview::Nothing(format!("the rollout is at {}: no step to restart", at(r))),
            None => Preview::Nothing(no_rollout(generation, s)),
        },
    }
}

/// The verb for messages: `promote`, `promote --full`, ...
fn verb(action: ControlAction) -> &'static str {
    match action {
        ControlAction::PromoteFull => "promote --full",
        other => other.as_str(),
    }
}

/// Runs one control command; returns the exit code.
///
/// # Errors
/// The app has no record, or Consul cannot be read or written.
pub async fn run(action: ControlAction, args: ControlArgs) -> anyhow::Result<u8> {
    let consul = args.consul.client(Arc::new(Metrics::new()))?;
    let key = app_key(&args.app, args.namespace.as_deref())?;
    let prefix = &args.prefix.prefix;
    let record = consul.get(&key.app_kv_key(prefix)).await.context("cannot read the record")?;
    let Some(record) = record else { bail!("app {key} not found (no record at {})", key.app_kv_key(prefix)) };
    let generation = record.modify_index;
    let status_pair = consul.get(&key.status_kv_key(prefix)).await.context("cannot read the status")?;
    let status: Option<AppStatus> = status_pair.as_ref().and_then(|p| serde_json::from_slice(&p.value).ok());
    let steps = canary_steps(&record.value);
    let line = match preview(action, generation, status.as_ref(), &steps) {
        Preview::Nothing(why) => {
            println!("{key}: nothing to {}: {why}; no control written", verb(action));
            return Ok(EXIT_NOTHING_TO_DO);
        }
        Preview::Acts(what) | Preview::Unjudged(what) => what,
    };
    let by = args.by.or_else(|| env_lookup("USER")).unwrap_or_default();
    let control = Control { action, generation, requested_at: timestamp(SystemTime::now()), by };
    let body = serde_json::to_vec(&control).context("cannot encode the control")?;
    let control_key = key.control_kv_key(prefix);
    consul.put(&control_key, &body).await.with_context(|| format!("cannot write {control_key}"))?;
    println!("{key}: {line}");
    let who = if control.by.is_empty() { String::new() } else { format!(", by {}", control.by) };
    println!("{} written to {control_key} for generation {generation}{who}", verb(action));
    Ok(EXIT_WRITTEN)
}

#[cfg(test)]
#[path = "control_tests.rs"]
mod tests;
