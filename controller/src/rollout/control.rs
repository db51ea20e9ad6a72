//! Controls: what `drover promote|abort|retry|pause|resume|restart` write at `<prefix>/control/<ns>/<name>`. A control
//! never edits the record (so a GitOps rewrite of the record never undoes it) and names the generation it is for (so a
//! stale command never acts on a newer spec).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A person's instruction for the app's current rollout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Control {
    /// What to do.
    pub action: ControlAction,
    /// The record generation it is meant for; any other generation makes it ignored (and reported).
    pub generation: u64,
    /// When it was written (RFC 3339).
    pub requested_at: String,
    /// Who wrote it (free text: a user, a pipeline).
    #[serde(default)]
    pub by: String,
}

/// The actions a control can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ControlAction {
    /// End the current step (a pause, a manual gate, an inconclusive analysis) and go on with the next.
    Promote,
    /// Skip every remaining step and promote the deployment now.
    PromoteFull,
    /// Stop the rollout: fail the Nomad deployment so Nomad reverts to the stable version.
    Abort,
    /// Register a spec whose rollout failed again (lifts "no flapping" for the current generation).
    Retry,
    /// Hold the rollout where it is (phase `Paused`, the Nomad deployment paused).
    Pause,
    /// Undo `pause`.
    Resume,
    /// Roll the current spec out again (a new job version with the same spec), through the same steps.
    Restart,
}

impl ControlAction {
    /// The action's name as written in the control.
    pub fn as_str(self) -> &'static str {
        match self {
            ControlAction::Promote => "promote",
            ControlAction::PromoteFull => "promoteFull",
            ControlAction::Abort => "abort",
            ControlAction::Retry => "retry",
            ControlAction::Pause => "pause",
            ControlAction::Resume => "resume",
            ControlAction::Restart => "restart",
        }
    }
}

/// A control as read from Consul, with the `ModifyIndex` that makes it once-only: the engine consumes it when this
/// index is above the one recorded in `status.lastControl`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredControl {
    /// The control.
    pub control: Control,
    /// The control key's Consul `ModifyIndex`.
    pub modify_index: u64,
}

/// What the controls store holds for an app: the control, or why its value could not be read (reported in status,
/// never acted on).
pub type ControlEntry = Result<StoredControl, String>;
