//! The Consul half of the simulator: a model of the KV store, blocking queries, sessions, locks, transactions and
//! ACLs, exact to api-contract.md Part A.
//!
//! # Layout
//! - [`state`]: `ConsulState` and `apply`, the single point of mutation (Raft index, tombstones, session deletes).
//! - [`kv`]: the KV table and graveyard with Consul's state-store semantics.
//! - [`session`]: session records, create decoding and validation.
//! - [`txn`]: `/v1/txn` decoding, pre-checks and all-or-nothing dispatch.
//! - [`acl`]: tokens, policies and the authorizer.
//! - [`blocking`]: the blocking-query loop on the sim clock.
//! - [`http`]: query/token/consistency parsing and read headers; [`error`]: `ApiError`.
//! - [`routes`] (`/v1/...`) and [`control`] (`/_sim/consul/...`): the HTTP handlers.
//!
//! One `ConsulState` sits behind one `std::sync::Mutex`; no lock is held across an `.await`. Every committed change
//! bumps a `watch` channel that wakes blocking queries at once, and a `Notify` that wakes the timer task (session
//! TTLs, tombstone reaping).

pub mod acl;
pub mod blocking;
pub mod control;
pub mod error;
pub mod http;
pub mod kv;
pub mod routes;
pub mod session;
pub mod state;
pub mod txn;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::{Server, Shared, SimInstant};
use state::{ConsulState, Op, OpResult, ReapScope, Snapshot};

pub use control::control_router;
pub use routes::router;

/// One simulated Consul cluster (a single server that is always the leader unless a test takes leadership away).
#[derive(Debug)]
pub struct Consul {
    shared: Arc<Shared>,
    state: Mutex<ConsulState>,
    /// Snapshots taken through `/_sim/consul/snapshot`, by position.
    snapshots: Mutex<Vec<Snapshot>>,
    /// Bumped on every committed change; blocking queries wait on it.
    changes: watch::Sender<u64>,
    /// Wakes the timer task when sessions or tombstones change.
    timers: Notify,
    /// Blocking queries currently parked (Consul's `queries_blocking` gauge).
    parked: AtomicUsize,
}

/// Counters for `/_sim/consul/stats` and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Live keys.
    #[serde(rename = "Keys")]
    pub keys: usize,
    /// Tombstones not yet reaped.
    #[serde(rename = "Tombstones")]
    pub tombstones: usize,
    /// Live sessions.
    #[serde(rename = "Sessions")]
    pub sessions: usize,
    /// The last Raft index handed out.
    #[serde(rename = "Index")]
    pub raft_index: u64,
    /// Max of the `kvs` and `tombstones` table indexes (what a whole-store KV list reports).
    #[serde(rename = "KVIndex")]
    pub kv_index: u64,
    /// Blocking queries parked right now.
    #[serde(rename = "BlockingQueries")]
    pub blocking_queries: usize,
}

impl Consul {
    /// A new, empty cluster. ACLs are on iff `shared.acl_bootstrap_token` is set.
    pub fn new(shared: Arc<Shared>) -> Arc<Consul> {
        Arc::new(Consul {
            shared,
            state: Mutex::new(ConsulState::default()),
            snapshots: Mutex::new(Vec::new()),
            changes: watch::Sender::new(0),
            timers: Notify::new(),
            parked: AtomicUsize::new(0),
        })
    }

    /// The shared simulator state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Starts the task that invalidates sessions whose TTL×2 ran out, re-arms every TTL timer when the leader comes
    /// back (A7), and reaps tombstones after `TombstoneTTL`. It stops when `shutdown` is cancelled.
    pub fn spawn_background(self: &Arc<Self>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move { this.run_timers(shutdown).await })
    }

    fn lock(&self) -> MutexGuard<'_, ConsulState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> SimInstant {
        self.shared.clock.now()
    }

    /// Applies one op (the single point of mutation) and wakes whoever depends on what changed.
    pub(crate) fn apply(&self, op: Op) -> Result<OpResult, String> {
        let now = self.now();
        let (result, changed) = {
            let mut state = self.lock();
            let before = state.watermark();
            let result = state.apply(op, now);
            (result, state.watermark() != before)
        };
        if changed {
            self.changes.send_modify(|v| *v = v.wrapping_add(1));
            self.timers.notify_one();
        }
        result
    }

    /// Key, tombstone and session counts and the current indexes.
    pub fn stats(&self) -> Stats {
        let s = self.lock();
        Stats {
            keys: s.kv.entries.len(),
            tombstones: s.kv.tombstones.len(),
            sessions: s.sessions.sessions.len(),
            raft_index: s.raft_index,
            kv_index: s.kv.max_index(),
            blocking_queries: self.parked.load(Ordering::SeqCst),
        }
    }

    /// Creates or replaces an ACL policy (the in-process form of `POST /_sim/consul/acl/policy`).
    pub fn put_policy(&self, name: &str, rules: acl::Rules) {
        self.lock().acl.policies.insert(name.to_owned(), rules);
    }

    /// Creates a token linked to existing policies (the in-process form of `POST /_sim/consul/acl/token`); random
    /// IDs are used for the ones not given. Returns `None` when a policy does not exist.
    pub fn create_token(
        &self,
        policies: Vec<String>,
        secret_id: Option<String>,
        accessor_id: Option<String>,
    ) -> Option<acl::Token> {
        let mut s = self.lock();
        if policies.iter().any(|p| !s.acl.policies.contains_key(p)) {
            return None;
        }
        let token = acl::Token {
            accessor_id: accessor_id.unwrap_or_else(|| self.shared.uuid()),
            secret_id: secret_id.unwrap_or_else(|| self.shared.uuid()),
            policies,
        };
        s.acl.tokens.insert(token.secret_id.clone(), token.clone());
        Some(token)
    }

    /// Revokes the token with this `AccessorID` (the in-process form of `DELETE /_sim/consul/acl/token/{accessor}`);
    /// requests with its secret then get 403 `ACL not found`. False when no token has that accessor.
    pub fn revoke_token(&self, accessor_id: &str) -> bool {
        let mut s = self.lock();
        let before = s.acl.tokens.len();
        s.acl.tokens.retain(|_, t| t.accessor_id != accessor_id);
        s.acl.tokens.len() != before
    }

    /// Blocking queries parked right now, waiting for a change or their timeout.
    pub fn blocking_queries(&self) -> usize {
        self.parked.load(Ordering::SeqCst)
    }

    /// Takes a snapshot of the replicated state (KV, tombstones, sessions) and returns its ID.
    pub fn snapshot(&self) -> usize {
        let snap = self.lock().snapshot();
        let mut snaps = self.snapshots.lock().unwrap_or_else(|p| p.into_inner());
        snaps.push(snap);
        snaps.len() - 1
    }

    /// Restores snapshot `id` (the latest when `None`): indexes go back to what they were, blocking queries in flight
    /// return, and every session TTL timer restarts from now. Returns false when there is no such snapshot.
    pub fn restore(&self, id: Option<usize>) -> bool {
        let snap = {
            let snaps = self.snapshots.lock().unwrap_or_else(|p| p.into_inner());
            match id {
                Some(i) => snaps.get(i).cloned(),
                None => snaps.last().cloned(),
            }
        };
        match snap {
            Some(s) => {
                // Restore only fails on an FSM error, which it cannot raise.
                let _ = self.apply(Op::Restore(Box::new(s)));
                true
            }
            None => false,
        }
    }

    /// Reaps every tombstone now, so prefix indexes can go backwards (A2 rule 6). Returns how many were reaped.
    pub fn reap_tombstones(&self) -> usize {
        let before = self.stats().tombstones;
        let _ = self.apply(Op::Reap(ReapScope::All));
        before.saturating_sub(self.stats().tombstones)
    }

    /// The timer loop: "next deadline or notified", on the sim clock.
    async fn run_timers(&self, shutdown: CancellationToken) {
        let mut leader = self.shared.leader_watch(Server::Consul);
        loop {
            let has_leader = *leader.borrow_and_update();
            let next = if has_leader {
                let s = self.lock();
                match (s.next_session_deadline(), s.next_reap()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            } else {
                // Timers live on the leader only: none fire while there is none.
                None
            };
            let sleep = async {
                match next {
                    Some(at) => self.shared.clock.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = sleep => self.fire_timers(),
                _ = self.timers.notified() => {}
                changed = leader.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if *leader.borrow() {
                        // `initializeSessionTimers`: a new leader re-arms every TTL timer from now.
                        let now = self.now();
                        for s in self.lock().sessions.sessions.values_mut() {
                            s.arm(now);
                        }
                    }
                }
            }
        }
    }

    fn fire_timers(&self) {
        if !self.shared.has_leader(Server::Consul) {
            return;
        }
        let now = self.now();
        let expired = self.lock().expired_sessions(now);
        for id in expired {
            tracing::debug!(session = %id, "consul sim: session TTL expired, invalidating");
            let _ = self.apply(Op::SessionDestroy(id));
        }
        let reap_due = self.lock().next_reap().is_some_and(|at| at <= now);
        if reap_due {
            let _ = self.apply(Op::Reap(ReapScope::ExpiredAt(now)));
        }
    }
}
