//! The Nomad half of the simulator: a model of the job, deployment, allocation and event-stream
//! API subset in `api-contract.md` Part B.
//!
//! # Layout
//! - [`state`]: the tables, the shared Raft-style index and the single mutation point.
//! - [`gojson`], [`decode`], [`canonical`], [`validate`]: body syntax with Go's texts, typed field
//!   reads, api.Job → structs.Job, validation.
//! - [`jobs`], [`scale`], [`diff`]: register/stop/purge/revert/stable, scaling, plan.
//! - [`deploy`], [`watcher`]: the scheduler, the client's health reports and the deployment watcher.
//! - [`events`]: the event buffer and the NDJSON stream.
//! - [`nodes`], [`placement`], [`evals`], [`cluster`]: node capacity and best-fit placement, stored and blocked
//!   evaluations, node register/drain/remove.
//! - [`model`], [`alloc`]: typed jobs and deployments; allocations.
//! - [`acl`], [`metrics`]: tokens; simulated workload metrics.
//! - [`namespaces`]: the namespace list (blocking) and namespace writes.
//! - [`http`], [`routes`], [`routes_jobs`], [`routes_cluster`]: HTTP plumbing and handlers; [`error`]: `ApiError`.

pub mod acl;
pub mod alloc;
pub mod canonical;
pub mod cluster;
pub mod decode;
pub mod deploy;
pub mod diff;
pub mod error;
pub mod evals;
pub mod events;
pub mod gojson;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod model;
pub mod namespaces;
pub mod nodes;
pub mod placement;
pub mod routes;
pub mod routes_cluster;
pub mod routes_jobs;
pub mod scale;
pub mod state;
pub mod validate;
pub mod watcher;

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

pub use routes::{control_router, router};
pub use state::NomadState;

use crate::{ClusterConfig, Shared};

/// The Nomad model: one state behind one lock, plus the wake-ups around it.
#[derive(Debug)]
pub struct Nomad {
    /// Clock, UUIDs, ACL switch, leader state.
    pub shared: Arc<Shared>,
    state: Mutex<NomadState>,
    /// Follows the Raft index: blocking queries and event streams wait on it.
    pub(crate) index_rx: watch::Receiver<u64>,
    wake: Arc<Notify>,
    /// Cancelled when the simulator shuts down (ends event streams).
    pub(crate) shutdown: CancellationToken,
    /// Cuts of open event streams (`POST /_sim/nomad/event-stream/cut`): a generation that moves on every cut, and
    /// the sim instant until which newly opened streams are cut too.
    pub(crate) stream_cuts: watch::Sender<StreamCut>,
}

/// The state of event-stream cuts, as streams watch it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamCut {
    /// Moves on at every cut: every stream open at that moment ends abruptly.
    pub generation: u64,
    /// Streams opened before this sim instant are cut right after their first `{}`.
    pub until: Option<crate::SimInstant>,
}

impl Nomad {
    /// A fresh model with the `default` namespace and the cluster's starting nodes.
    pub fn new(shared: Arc<Shared>, cluster: &ClusterConfig) -> Arc<Nomad> {
        let (tx, rx) = watch::channel(1);
        let wake = Arc::new(Notify::new());
        Arc::new(Nomad {
            shared,
            state: Mutex::new(NomadState::new(tx, wake.clone(), cluster)),
            index_rx: rx,
            wake,
            shutdown: CancellationToken::new(),
            stream_cuts: watch::Sender::new(StreamCut::default()),
        })
    }

    /// Cuts every open `/v1/event/stream` response mid-stream (the body ends without its terminating chunk, as
    /// when a Nomad server restarts), and, for `window`, every stream opened until it passes. Returns how many
    /// streams were open.
    pub fn cut_event_streams(&self, window: Option<std::time::Duration>) -> usize {
        let until = window.map(|w| self.shared.clock.now() + w);
        let open = self.stream_cuts.receiver_count();
        self.stream_cuts.send_modify(|c| {
            c.generation += 1;
            c.until = until;
        });
        open
    }

    /// Locks the model. Never held across an `.await`.
    pub fn lock(&self) -> MutexGuard<'_, NomadState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The scheduler, client and deployment-watcher loop: mini-redis's "next deadline or notified",
    /// over the sim clock. Ends (and ends event streams) when `shutdown` is cancelled.
    pub fn spawn_background(self: &Arc<Self>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let n = self.clone();
        tokio::spawn(async move {
            let clock = n.shared.clock.clone();
            loop {
                let next = watcher::tick(&mut n.lock(), &n.shared);
                tokio::select! {
                    _ = async {
                        match next {
                            // More is due: give waiting HTTP handlers a chance at the worker and the lock (best
                            // effort: std's mutex is not fair).
                            watcher::Next::Now => tokio::task::yield_now().await,
                            watcher::Next::At(t) => clock.sleep_until(t).await,
                            watcher::Next::Idle => std::future::pending().await,
                        }
                    } => {}
                    _ = n.wake.notified() => {}
                    _ = shutdown.cancelled() => break,
                }
            }
            n.shutdown.cancel();
        })
    }
}
