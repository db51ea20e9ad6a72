//! High availability (DESIGN §6): replicas contend for a Consul lock at `<prefix>/leader`, and only the holder writes.
//!
//! - [`elector`]: the lock itself — a session with a TTL renewed every TTL/2, a blocking query on the lock key, and
//!   the state machine that turns both into a [`Leadership`] published on a `watch` channel.
//! - [`settings`]: `--leader-elect`, `--lock-ttl`, `--lock-delay` and their environment variables.
//! - [`takeover`]: the gate writers read, derived from the elector's: a new term opens only once the replica read
//!   the state it will act on again.
//! - [`LeaderGate`]: the read side of that channel, checked by every writer before each write ([`LeaderGate::admit`])
//!   and raced against each reconcile ([`LeaderGate::lost`]), so losing the lock stops work in flight at once.
//!
//! A leadership is a [`Term`]: every time this replica gains the lock the term number grows, so a reconcile that
//! started under term 3 may not write under term 4 (between them the replica was a standby and another one may have
//! written).
//!
//! ```text
//!          create session                acquire = true
//!  NoSession ──────────────► Contending ─────────────────► Leading { term }
//!      ▲                      │   ▲                          │
//!      │ renew 404, or no     │   └── key released, deleted  │
//!      │ renew within the     │       or held by another     │
//!      │ renew deadline       │       session (step down) ───┘
//!      └──────────────────────┴──────────────────────────────┘ (step down first, then start over)
//! ```

pub mod elector;
#[cfg(test)]
pub(crate) mod fake;
pub mod settings;
pub mod takeover;
#[cfg(test)]
mod tests;

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use elector::{Elector, LockPort};

/// Whether this replica may write, as the elector last decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leadership {
    /// Another replica (or nobody) holds the lock: keep caches warm, write nothing.
    Standby,
    /// This replica holds the lock during `term`.
    Leading(Term),
}

/// One uninterrupted hold of the lock. Terms only grow within a process, so a term names a leadership once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Term(pub u64);

/// The write side of a [`LeaderGate`]: owned by the one task that decides leadership (the elector, or a task
/// deriving a gate from it).
#[derive(Debug)]
pub struct LeadershipSender {
    tx: watch::Sender<Leadership>,
}

impl LeadershipSender {
    /// Publishes `leadership` (readers are woken only when it changed).
    pub fn send(&self, leadership: Leadership) {
        self.tx.send_if_modified(|current| {
            let changed = *current != leadership;
            *current = leadership;
            changed
        });
    }

    /// What was last published.
    pub fn current(&self) -> Leadership {
        *self.tx.borrow()
    }

    /// A new reader.
    pub fn gate(&self) -> LeaderGate {
        LeaderGate { rx: self.tx.subscribe() }
    }
}

/// A new leadership channel, starting as [`Leadership::Standby`].
pub fn channel() -> (LeadershipSender, LeaderGate) {
    let (tx, rx) = watch::channel(Leadership::Standby);
    (LeadershipSender { tx }, LeaderGate { rx })
}

/// The read side: cheap to clone, checked by every writer.
#[derive(Clone, Debug)]
pub struct LeaderGate {
    rx: watch::Receiver<Leadership>,
}

/// Why a write was refused: this replica does not lead in the term the work started under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not the leader any more (the work started in term {started:?}); the write is dropped")]
pub struct NotLeader {
    /// The term the refused work started under.
    pub started: Term,
}

impl LeaderGate {
    /// A gate that always leads in term 1: a single replica with leader election turned off, and tests.
    pub fn always() -> LeaderGate {
        let (tx, rx) = watch::channel(Leadership::Leading(Term(1)));
        // The sender is dropped: the value stays, and `lost` never completes.
        drop(tx);
        LeaderGate { rx }
    }

    /// The current leadership.
    pub fn current(&self) -> Leadership {
        *self.rx.borrow()
    }

    /// The current term, when leading.
    pub fn term(&self) -> Option<Term> {
        match self.current() {
            Leadership::Leading(term) => Some(term),
            Leadership::Standby => None,
        }
    }

    /// True while leading.
    pub fn is_leader(&self) -> bool {
        self.term().is_some()
    }

    /// `Ok` only while this replica still leads in `term`: checked right before every write.
    pub fn admit(&self, term: Term) -> Result<(), NotLeader> {
        if self.term() == Some(term) { Ok(()) } else { Err(NotLeader { started: term }) }
    }

    /// Completes as soon as this replica no longer leads in `term` (at once if it already does not); never, when
    /// the sender is gone while still leading in `term` ([`LeaderGate::always`]).
    pub async fn lost(&self, term: Term) {
        let mut rx = self.rx.clone();
        if rx.wait_for(|l| *l != Leadership::Leading(term)).await.is_err() {
            // No sender any more: the last value can never change.
            std::future::pending::<()>().await;
        }
    }

    /// Waits for the next change of leadership and returns it; `None` when nothing can change it any more.
    pub async fn changed(&mut self) -> Option<Leadership> {
        self.rx.changed().await.ok()?;
        Some(*self.rx.borrow_and_update())
    }

    /// The current leadership, marking it seen (so [`LeaderGate::changed`] waits for the next one).
    pub fn current_seen(&mut self) -> Leadership {
        *self.rx.borrow_and_update()
    }
}

/// How the lock is held: `--lock-ttl` and `--lock-delay`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockConfig {
    /// The lock key, `<prefix>/leader`.
    pub key: String,
    /// The session TTL (Consul accepts 10 s to 24 h, A6). Renewed every TTL/2; a leader that cannot renew for
    /// [`LockConfig::renew_deadline`] steps down; Consul invalidates the session no earlier than 2×TTL after the
    /// last renew (A7), so a `kill -9`'d leader is replaced within 2×TTL + lock-delay.
    pub ttl: Duration,
    /// Consul's lock-delay: after the session dies, nobody can take the lock for this long (≤ 60 s, A7), so writes
    /// the dead leader still had on the wire land before the next leader starts.
    pub lock_delay: Duration,
    /// Who contends, written into the lock value.
    pub holder: Holder,
}

impl LockConfig {
    /// The lock at `<prefix>/leader`.
    pub fn new(prefix: &str, ttl: Duration, lock_delay: Duration, holder: Holder) -> LockConfig {
        LockConfig { key: format!("{prefix}/leader"), ttl, lock_delay, holder }
    }

    /// How long a leader keeps leading without a successful renew: 3/4 of the TTL, counted from when the last
    /// successful renew was sent. Consul keeps the session at least one TTL after that renew arrived (2×TTL in
    /// practice, A7), so a leader steps down at least TTL/4 — and normally 1¼ TTL — before its session can expire
    /// on the server, which is the time left for a write already on the wire to land.
    pub fn renew_deadline(ttl: Duration) -> Duration {
        ttl.saturating_mul(3) / 4
    }
}

/// Who holds the lock, as its value says (JSON), so `consul kv get <prefix>/leader` tells an operator which replica
/// leads and since when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    /// The host name (from `/proc/sys/kernel/hostname`, else `$HOSTNAME`, else `unknown`).
    pub hostname: String,
    /// The process ID.
    pub pid: u32,
    /// The address `/metrics` and `/readyz` are served on.
    pub listen: String,
    /// Drover's version.
    pub version: String,
}

impl Holder {
    /// This process, serving on `listen`.
    pub fn this_process(listen: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Holder {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .or_else(|| lookup("HOSTNAME"))
            .unwrap_or_else(|| "unknown".to_string());
        Holder {
            hostname,
            pid: std::process::id(),
            listen: listen.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// The lock value: who holds it and since when (RFC 3339).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockValue {
    /// The holder.
    #[serde(flatten)]
    pub holder: Holder,
    /// When this holder acquired the lock.
    pub since: String,
}

impl LockValue {
    /// The value written when `holder` acquires the lock at `now`.
    pub fn new(holder: &Holder, now: SystemTime) -> LockValue {
        LockValue { holder: holder.clone(), since: crate::status::timestamp(now) }
    }
}
