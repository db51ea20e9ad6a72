//! Progressive delivery (DESIGN §4, issue #8): canary and blue-green rollouts with steps, analysis runs, controls
//! and a post-promotion bake, on top of Nomad's own deployments.
//!
//! # Layout
//! - [`status`]: what a rollout keeps in the app's status (`status.rollout`), so it survives a restart or failover;
//! - [`control`]: the records people write at `drover/control/<ns>/<name>` (`drover promote`, `abort`, ...);
//! - [`controls_store`]: those controls as the reconcile stage reads them, and the watch that keeps them current;
//! - [`metrics`]: the rollout gauges and counters, recorded from the statuses written.
//!
//! The decision lives with the others in [`crate::reconcile::decide`]; the measurements are taken by the
//! analysis stage, which feeds runs into a store that `decide` reads.

pub mod control;
pub mod controls_store;
pub mod metrics;
pub mod status;

pub use control::{Control, ControlAction, ControlEntry, StoredControl};
pub use controls_store::{Controls, ControlsWriter, controls};
pub use status::{
    AnalysisPhase, AnalysisRunStatus, ConsumedControl, MeasurementPhase, MeasurementRecord, PausedReason,
    RolloutResult, RolloutStatus, RunId, StepRef,
};
