//! Autoscaling's pure parts (DESIGN §5, issue #11): the validated [`Policy`] built from `spec.autoscaling`, and
//! [`decide`], which turns one evaluation's measurements into a [`Decision`]. No I/O: the stage that queries
//! Prometheus, calls `POST /v1/job/:id/scale` and writes status wires these (it is not in this module).
//!
//! The semantics, in order (each step in the module of its concern):
//! 1. `strategies`: each check's measurement becomes a vote — target-value, threshold or fixed-value, the Nomad
//!    Autoscaler's maths. A measurement that is not exactly one finite number (query error, no series, several,
//!    NaN, ±Inf) follows the check's `onError`: `Hold` (default) or `Ignore`.
//! 2. `resolution`: the votes become one count, the Nomad Autoscaler's way (up > unchanged > down; the highest
//!    count in either direction; "unchanged" ignored inside a check group unless all agree); a `Hold` vetoes any
//!    scale down.
//! 3. [`decision`]: a scale down goes only as far as every recommendation of the `stabilizationWindow` agrees (the
//!    highest of them, as Kubernetes' HPA does); then `maxStep` per direction; then the count is clamped to
//!    `[min, max]` — the bounds win over `maxStep`, so a count set outside them by hand is brought back in one
//!    scale (issue #11: count drift is corrected at the next evaluation within the bounds). Last, the gates: never
//!    during an active deployment, never within `cooldown` (`cooldownUp` after a scale up), never with `dryRun`.
//!
//! ```text
//!               ┌─ no change ──────────────────────────────► Steady
//!  resolved ────┼─ down, window disagrees ─────────────────► Stabilizing   (deferred)
//!  & limited    └─ change ─► deployment active? ───────────► Deploying     (deferred)
//!                           └► within cooldown? ───────────► CoolingDown   (deferred)
//!                              └► dryRun? ─────────────────► DryRun        (deferred)
//!                                 └► ──────────────────────► Scale { new_count }
//! ```
//!
//! The caller keeps, per app, the last scale ([`LastScale`]) and the recent recommendations: it [`remember`]s the
//! [`Decision::recommendation`] of every evaluation, deferred ones included (a dip seen during a deployment or a
//! cooldown still counts in the window). After a restart it takes the last scale from the job's scaling events;
//! the recommendations may start empty (the window then only holds what this process saw).

pub mod decision;
pub mod policy;
#[cfg(test)]
mod props;
mod resolution;
mod strategies;
#[cfg(test)]
mod tests;

pub use decision::{
    CheckAction, CheckResult, Decision, Deferred, Direction, Inputs, LastScale, MeasureError, Recommendation, decide,
    input, remember,
};
pub use policy::{CheckPolicy, Policy, Strategy, ThresholdAction, query_scope};

/// The questions one evaluation of `policy` asks, for the app `app` whose job is `namespace/job_id`: each check's
/// query rendered with `.JobID`, `.Namespace` and `.Group` (the scaled group: the policy's).
pub fn asks(app: &crate::app::AppKey, job_id: &str, policy: &Policy) -> Vec<crate::measure::Ask> {
    policy
        .checks
        .iter()
        .map(|c| {
            let vars = crate::prometheus::Vars {
                job_id: job_id.to_string(),
                namespace: app.namespace.clone(),
                group: policy.group.clone(),
                ..crate::prometheus::Vars::default()
            };
            crate::measure::Ask {
                app: app.clone(),
                check: c.name.clone(),
                request: crate::measure::Request {
                    address: c.address.clone(),
                    query: c.query.render(&vars),
                    timeout: c.timeout,
                    headers: Vec::new(),
                },
            }
        })
        .collect()
}
