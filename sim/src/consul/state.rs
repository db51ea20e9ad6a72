//! `ConsulState`: everything one Consul model holds, and `apply`, its single point of mutation. Each applied op
//! consumes one Raft index (the one global index shared by all tables), exactly as a Raft log entry would, even when
//! it changes nothing; table indexes only move when data changes (api-contract.md §0, A2, A4).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;

use super::acl::AclStore;
use super::kv::{DirEntry, KvStore};
use super::session::{Behavior, CreateRequest, Session, SessionTable};
use super::txn::{self, TxnKvOp, TxnOutcome};
use crate::SimInstant;

/// `TombstoneTTL`: how long a tombstone keeps prefix indexes from sliding back.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(15 * 60);
/// `TombstoneTTLGranularity`: tombstones are reaped in buckets of this size.
pub const TOMBSTONE_GRANULARITY: Duration = Duration::from_secs(30);

/// A single KV write, as `KVS.Apply` receives it from `PUT`/`DELETE /v1/kv/<key>`.
#[derive(Debug, Clone)]
pub enum KvWrite {
    /// Plain set.
    Set(DirEntry),
    /// `?cas=N`.
    Cas(DirEntry, u64),
    /// `?acquire=<session>` (the session is in the entry).
    Lock(DirEntry),
    /// `?release=<session>`.
    Unlock(DirEntry),
    /// Plain delete.
    Delete(String),
    /// `DELETE ?cas=N`.
    DeleteCas(String, u64),
    /// `DELETE ?recurse`.
    DeleteTree(String),
}

/// Which tombstones a reap removes.
#[derive(Debug, Clone, Copy)]
pub enum ReapScope {
    /// Every tombstone (the `/_sim/consul/reap-tombstones` control).
    All,
    /// Tombstones whose TTL bucket has ended by this instant (the automatic reaper).
    ExpiredAt(SimInstant),
}

/// A copy of the replicated state, as `POST /_sim/consul/snapshot` takes it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    kv: KvStore,
    sessions: SessionTable,
}

/// Every state change the model knows.
#[derive(Debug)]
pub enum Op {
    /// A KV write.
    Kv(KvWrite),
    /// A write transaction (already pre-checked).
    Txn(Vec<TxnKvOp>),
    /// Session creation with a server-chosen ID and the parsed TTL.
    SessionCreate {
        /// The new session's ID.
        id: String,
        /// The validated request.
        req: CreateRequest,
        /// Its TTL, if any.
        ttl: Option<Duration>,
    },
    /// Explicit destroy or invalidation (TTL expiry): release or delete held keys, start lock-delay.
    SessionDestroy(String),
    /// Reap tombstones.
    Reap(ReapScope),
    /// Replace the replicated state with a snapshot (indexes may go backwards).
    Restore(Box<Snapshot>),
}

/// The result of an applied op.
#[derive(Debug)]
pub enum OpResult {
    /// KV writes answer `true`/`false`.
    Bool(bool),
    /// A transaction's results or errors.
    Txn(TxnOutcome),
    /// Nothing to report.
    Unit,
}

/// The Raft index a fresh model starts from: a new cluster's own writes (Raft configuration, autopilot, CA) take
/// the first indexes, so no user data ever has index 1 and `?index=1` is always safe to wait on (`setIndex`).
pub const INITIAL_RAFT_INDEX: u64 = 10;

/// The whole model of one Consul cluster.
#[derive(Debug)]
pub struct ConsulState {
    /// The last Raft index handed out.
    pub raft_index: u64,
    /// KV and graveyard.
    pub kv: KvStore,
    /// Sessions.
    pub sessions: SessionTable,
    /// Lock-delay expiry per key (leader-local, not replicated, not in snapshots).
    pub lock_delay: HashMap<String, SimInstant>,
    /// ACL tokens and policies.
    pub acl: AclStore,
    /// Bumped by every restore: blocking queries started before it return at once ("abandoned" state store).
    pub generation: u64,
}

/// What an apply changed, so the caller knows whom to wake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermark {
    kvs: u64,
    tombstones: u64,
    sessions: u64,
    generation: u64,
    session_count: usize,
}

impl Default for ConsulState {
    fn default() -> Self {
        ConsulState {
            raft_index: INITIAL_RAFT_INDEX,
            kv: KvStore::default(),
            sessions: SessionTable::default(),
            lock_delay: HashMap::new(),
            acl: AclStore::default(),
            generation: 0,
        }
    }
}

impl ConsulState {
    /// The indexes that blocking queries and timers depend on.
    pub fn watermark(&self) -> Watermark {
        Watermark {
            kvs: self.kv.kvs_index,
            tombstones: self.kv.tombstones_index,
            sessions: self.sessions.index,
            generation: self.generation,
            session_count: self.sessions.sessions.len(),
        }
    }

    /// Whether `key` is in lock-delay at `now`.
    pub fn in_lock_delay(&self, key: &str, now: SimInstant) -> bool {
        self.lock_delay.get(key).is_some_and(|until| *until > now)
    }

    /// Takes a snapshot of the replicated state.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot { kv: self.kv.clone(), sessions: self.sessions.clone() }
    }

    /// Applies one op at the next Raft index. `Err` is an FSM error text (the endpoint adds its prefix).
    pub fn apply(&mut self, op: Op, now: SimInstant) -> Result<OpResult, String> {
        self.raft_index += 1;
        let idx = self.raft_index;
        match op {
            Op::Kv(w) => Ok(OpResult::Bool(self.apply_kv(idx, w, now)?)),
            Op::Txn(ops) => {
                // All-or-nothing: save what the ops may touch, run them on the store, undo on any failure.
                let undo = self.kv.undo_point(ops.iter().map(|o| (o.verb.as_str(), o.key.as_str())));
                let outcome = txn::dispatch(&mut self.kv, &self.sessions, idx, &ops, now);
                if outcome.is_err() {
                    self.kv.rollback(undo);
                }
                Ok(OpResult::Txn(outcome))
            }
            Op::SessionCreate { id, req, ttl } => {
                req.state_check()?;
                let behavior = if req.behavior == "delete" { Behavior::Delete } else { Behavior::Release };
                let mut s = Session {
                    id: id.clone(),
                    name: req.name,
                    node: req.node,
                    lock_delay_ns: req.lock_delay_ns,
                    behavior,
                    ttl: req.ttl,
                    node_checks: req.node_checks,
                    service_checks: req.service_checks,
                    create_index: idx,
                    modify_index: idx,
                    ttl_duration: ttl,
                    deadline: None,
                };
                s.arm(now);
                self.sessions.sessions.insert(id, s);
                self.sessions.index = idx;
                Ok(OpResult::Unit)
            }
            Op::SessionDestroy(id) => {
                self.delete_session(idx, &id, now);
                Ok(OpResult::Unit)
            }
            Op::Reap(scope) => {
                self.kv.reap(|t| match scope {
                    ReapScope::All => true,
                    ReapScope::ExpiredAt(at) => reap_time(t.created) <= at,
                });
                Ok(OpResult::Unit)
            }
            Op::Restore(snap) => {
                self.kv = snap.kv;
                self.sessions = snap.sessions;
                // The new leader's `initializeSessionTimers`: every TTL timer starts again from now.
                for s in self.sessions.sessions.values_mut() {
                    s.arm(now);
                }
                self.lock_delay.clear();
                self.generation += 1;
                Ok(OpResult::Unit)
            }
        }
    }

    fn apply_kv(&mut self, idx: u64, w: KvWrite, now: SimInstant) -> Result<bool, String> {
        Ok(match w {
            KvWrite::Set(e) => {
                self.kv.set(idx, e, false);
                true
            }
            KvWrite::Cas(e, cas) => self.kv.set_cas(idx, e, cas).is_some(),
            KvWrite::Lock(e) => {
                let exists = self.sessions.sessions.contains_key(&e.session);
                self.kv.lock(idx, e, exists)?.is_some()
            }
            KvWrite::Unlock(e) => self.kv.unlock(idx, e)?.is_some(),
            KvWrite::Delete(key) => {
                self.kv.delete(idx, &key, now);
                true
            }
            KvWrite::DeleteCas(key, cas) => self.kv.delete_cas(idx, cas, &key, now),
            KvWrite::DeleteTree(prefix) => {
                self.kv.delete_tree(idx, &prefix, now);
                true
            }
        })
    }

    /// `deleteSessionTxn`: removes the session, releases or deletes its keys at `idx`, and starts lock-delay on each.
    fn delete_session(&mut self, idx: u64, id: &str, now: SimInstant) {
        let Some(session) = self.sessions.sessions.remove(id) else {
            return;
        };
        self.sessions.index = idx;
        let held: Vec<DirEntry> = self.kv.entries.values().filter(|e| e.session == id).cloned().collect();
        let delay = session.effective_lock_delay();
        // Forget lock-delays that are over, so the map stays as small as the keys in delay right now.
        self.lock_delay.retain(|_, until| *until > now);
        for e in held {
            let key = e.key.clone();
            match session.behavior {
                Behavior::Release => {
                    let released = DirEntry { session: String::new(), ..e };
                    self.kv.set(idx, released, true);
                }
                Behavior::Delete => self.kv.delete(idx, &key, now),
            }
            if !delay.is_zero() {
                self.lock_delay.insert(key, now + delay);
            }
        }
    }

    /// The earliest instant a tombstone becomes reapable, if any.
    pub fn next_reap(&self) -> Option<SimInstant> {
        self.kv.tombstones.values().map(|t| reap_time(t.created)).min()
    }

    /// The earliest session TTL deadline, if any.
    pub fn next_session_deadline(&self) -> Option<SimInstant> {
        self.sessions.sessions.values().filter_map(|s| s.deadline).min()
    }

    /// Sessions whose deadline has passed.
    pub fn expired_sessions(&self, now: SimInstant) -> Vec<String> {
        self.sessions.sessions.values().filter(|s| s.deadline.is_some_and(|d| d <= now)).map(|s| s.id.clone()).collect()
    }
}

/// When a tombstone created at `created` is reaped: after `TombstoneTTL`, at the end of its 30 s bucket.
fn reap_time(created: SimInstant) -> SimInstant {
    let due = created.since_start() + TOMBSTONE_TTL;
    let g = TOMBSTONE_GRANULARITY.as_nanos();
    let buckets = due.as_nanos().div_ceil(g);
    let at = Duration::from_nanos(u64::try_from(buckets * g).unwrap_or(u64::MAX));
    created + (at - created.since_start())
}

/// Builds the entry a KV write stores from the HTTP request.
pub fn entry(key: &str, value: Bytes, flags: u64, session: &str) -> DirEntry {
    DirEntry { key: key.to_owned(), value, flags, session: session.to_owned(), ..DirEntry::default() }
}
