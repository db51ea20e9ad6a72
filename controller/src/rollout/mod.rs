//! Progressive delivery (DESIGN §4, issue #8): canary and blue-green rollouts with steps, analysis runs, controls
//! and a post-promotion bake, on top of Nomad's own deployments.
//!
//! # Layout
//! - [`status`]: what a rollout keeps in the app's status (`status.rollout`), so it survives a restart or failover;
//! - [`control`]: the records people write at `drover/control/<ns>/<name>` (`drover promote`, `abort`, ...);
//! - [`controls_store`]: those controls as the reconcile stage reads them, and the watch that keeps them current;
//! - [`judge`]: the pure verdicts — a measurement's ([`judge::classify`]) and a run's ([`judge::record`]) — over a
//!   [`CompiledTemplate`] (an analysis template checked once, in `compiled`);
//! - [`metrics`]: the rollout gauges and counters, recorded from the statuses written.
//!
//! The decision lives with the others in [`crate::reconcile::decide`]; the measurements are taken by the
//! analysis stage, which feeds runs into a store that `decide` reads.

pub(crate) mod compiled;
pub mod control;
pub mod controls_store;
pub mod judge;
pub mod metrics;
pub mod status;

pub(crate) use compiled::check_headers;
pub use compiled::{
    DEFAULT_CONSECUTIVE_ERROR_LIMIT, DEFAULT_INTERVAL, DEFAULT_TIMEOUT, ERROR_RETRY, MAX_MEASUREMENT_COUNT, Schedule,
};
pub use control::{Control, ControlAction, ControlEntry, StoredControl};
pub use controls_store::{Controls, ControlsWriter, controls};
pub use judge::{CompiledTemplate, Outcome, Provider, Sample};
pub use status::{
    AnalysisPhase, AnalysisRunStatus, ConsumedControl, MeasurementPhase, MeasurementRecord, PausedReason,
    RUNS_BYTE_BUDGET, RolloutResult, RolloutStatus, RunId, StepRef, fit_runs,
};
