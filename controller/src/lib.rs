//! Drover: a reconciling operator for HashiCorp Nomad, driven by records in Consul KV.
//!
//! # Layout
//!
//! The controller is a pipeline of stages that exchange owned, typed values (DESIGN §1):
//!
//! ```text
//!  Consul KV ──[consul::watch]──► store::Records ────┐
//!  Nomad ──────[nomad::watch]───► store::LiveCache ──┼──► queue ──► reconcile::Stage ──► Nomad writes
//!  resync timer ─────────────────────────────────────┘        gather → decide → execute → store::Statuses
//! ```
//!
//! - [`app`]: the record — types, parsing of untrusted bytes, validation, rendering to a Nomad job, the spec hash,
//!   and [`app::Record`], what the reconciler reads of it.
//! - [`consul`] and [`nomad`]: HTTP clients with typed errors, and each API's watcher as an explicit state
//!   machine (Consul blocking queries; Nomad list + event stream).
//! - [`store`]: the three in-memory stores, each with one writer (the watch that feeds it, or the reconcile stage
//!   for statuses) and cheap-clone readers.
//! - [`live`]: what Nomad runs, as the decision sees it (Nomad's states as enums).
//! - [`queue`]: the work queue — per-key dedup, no concurrent runs of a key, bounded workers, per-key backoff.
//! - [`reconcile`]: the stage; [`reconcile::decide()`] is the pure decision, I/O sits behind
//!   [`reconcile::NomadPort`] and [`reconcile::KvPort`].
//! - [`autoscale`]: autoscaling's pure parts — the validated [`autoscale::Policy`] and [`autoscale::decide()`],
//!   one evaluation's measurements to a scale decision (the Nomad Autoscaler's strategies and resolution).
//! - [`prometheus`]: instant queries and query templates, shared by rollout analysis and autoscaling; [`measure`]:
//!   the measurement stage (deduplicated rounds of queries, the store decisions read, the schedule).
//! - [`expr`]: the condition language of analysis templates (`successCondition`, `failureCondition`).
//! - [`rollout`]: progressive delivery's records — a rollout's status (steps, analysis runs) and controls.
//! - [`status`]: the status record Drover writes.
//! - [`leader`]: high availability — the Consul lock replicas contend for, and the gate every writer checks.
//! - [`sync`]: GitOps — `drover sync` from a directory or a git ref: validate all, plan, CAS-guarded transactions,
//!   prune of only its own records, and `--watch` under a Consul lock with a signed webhook.
//! - [`notify`]: notifications — events derived from status writes, delivered to webhooks off the reconcile path.
//! - [`runtime`]: wiring only — starts the watches, the queue and the workers.
//! - [`http`], [`metrics`], [`config`], [`tls`], [`token`], [`probe`], [`cli`]: the process around it.
//! - [`fuzzing`]: the entry points of the fuzz targets (`fuzz/`), replayed over their corpus by a test.
//! - [`analysis`]: the analysis stage (issue #8) — a poller that measures rollouts' analysis runs and webhook steps
//!   (Prometheus, web metrics, webhooks) into a store `decide` reads.
pub mod analysis;
pub mod app;
pub mod autoscale;
pub mod config;
pub mod consul;
pub mod expr;
pub mod fuzzing;
pub mod leader;
pub mod live;
pub mod measure;
pub mod metrics;
pub mod nomad;
pub mod notify;
pub mod probe;
pub mod prometheus;
pub mod queue;
pub mod reconcile;
pub mod rollout;
pub mod status;
pub mod tls;
pub mod token;

/// An error and its causes on one line (`a: b: c`), for status messages and logs.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
pub mod cli;
pub mod http;
pub mod runtime;
pub mod store;
pub mod sync;
