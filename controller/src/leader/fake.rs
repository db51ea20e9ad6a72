//! An in-memory model of the Consul parts a lock uses (contract A6–A8), on tokio time so tests can pause it:
//! sessions invalidated 2×TTL after their last renew, `Behavior: release`, lock-delay started by invalidation and
//! destroy (not by release), acquire answering `false` during lock-delay or while held, and blocking reads woken by
//! a change of the key or by a session expiring. Each replica gets its own [`FakePort`], which can be cut off.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

use super::LockPort;
use crate::consul::{self, BlockingQuery, KeyRead, KvPair, Renewed, RequestError, SessionRequest};

/// The shared server.
#[derive(Debug)]
pub struct FakeConsul {
    state: Mutex<State>,
    changes: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    index: u64,
    next_session: u64,
    sessions: HashMap<String, Session>,
    key: Option<KvPair>,
    lock_delay_until: Option<Instant>,
}

#[derive(Debug)]
struct Session {
    ttl: Duration,
    lock_delay: Duration,
    expires: Instant,
}

impl State {
    /// Invalidates every session whose 2×TTL ran out (A7) — the model's timer, run before every call.
    fn expire(&mut self, now: Instant) {
        let dead: Vec<String> =
            self.sessions.iter().filter(|(_, s)| s.expires <= now).map(|(id, _)| id.clone()).collect();
        for id in dead {
            self.invalidate(&id, now);
        }
    }

    /// Destroy or expiry: the held key is released and its lock-delay starts.
    fn invalidate(&mut self, id: &str, now: Instant) {
        let Some(session) = self.sessions.remove(id) else { return };
        self.index += 1;
        let index = self.index;
        if let Some(key) = self.key.as_mut().filter(|k| k.session.as_deref() == Some(id)) {
            key.session = None;
            key.modify_index = index;
            self.lock_delay_until = Some(now + session.lock_delay.min(Duration::from_secs(60)));
        }
    }

    fn next_expiry(&self) -> Option<Instant> {
        self.sessions.values().map(|s| s.expires).min()
    }
}

impl FakeConsul {
    /// An empty server.
    pub fn new() -> Arc<FakeConsul> {
        Arc::new(FakeConsul { state: Mutex::new(State::default()), changes: watch::Sender::new(0) })
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.expire(Instant::now());
        let before = state.index;
        let out = f(&mut state);
        if state.index != before {
            self.changes.send_replace(state.index);
        }
        out
    }

    /// A port for one replica.
    pub fn port(self: &Arc<Self>) -> FakePort {
        FakePort { consul: self.clone(), cut: Arc::new(AtomicBool::new(false)), reads_cut: Arc::default() }
    }

    /// The lock key as stored.
    pub fn key(&self) -> Option<KvPair> {
        self.with(|s| s.key.clone())
    }

    /// Whether `id` is alive.
    pub fn session_alive(&self, id: &str) -> bool {
        self.with(|s| s.sessions.contains_key(id))
    }

    /// Destroys a session from outside (an operator, or the server's own decision).
    pub fn destroy(&self, id: &str) {
        self.with(|s| s.invalidate(id, Instant::now()));
    }

    /// Deletes the key by hand (its holder's session lives on).
    pub fn delete_key(&self) {
        self.with(|s| {
            s.index += 1;
            s.key = None;
        });
    }

    /// Writes the key by hand, as a plain PUT.
    pub fn put_plain(&self, key: &str, value: &[u8]) {
        self.with(|s| {
            s.index += 1;
            s.key = Some(KvPair::written(key, s.index, value));
        });
    }
}

/// One replica's connection to [`FakeConsul`].
#[derive(Clone, Debug)]
pub struct FakePort {
    consul: Arc<FakeConsul>,
    cut: Arc<AtomicBool>,
    reads_cut: Arc<AtomicBool>,
}

impl FakePort {
    /// Cuts this replica off (every call fails as a dropped connection would) or reconnects it.
    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        self.consul.changes.send_modify(|_| {});
    }

    /// Makes only this replica's reads of the key fail (its session renews still succeed).
    pub fn set_reads_cut(&self, cut: bool) {
        self.reads_cut.store(cut, Ordering::SeqCst);
        // Blocked reads wake and fail at once, as a dropped connection would.
        self.consul.changes.send_modify(|_| {});
    }

    fn reachable(&self, op: &str) -> Result<(), consul::Error> {
        if self.cut.load(Ordering::SeqCst) || (op == "read" && self.reads_cut.load(Ordering::SeqCst)) {
            let source = RequestError::Status { code: 503, message: format!("{op}: cut off (test)") };
            return Err(consul::Error::SessionFailed { id: op.to_string(), source });
        }
        Ok(())
    }
}

impl LockPort for FakePort {
    async fn create_session(&self, req: &SessionRequest) -> Result<String, consul::Error> {
        self.reachable("create")?;
        Ok(self.consul.with(|s| {
            s.next_session += 1;
            let id = format!("session-{}", s.next_session);
            let session = Session { ttl: req.ttl, lock_delay: req.lock_delay, expires: Instant::now() + req.ttl * 2 };
            s.sessions.insert(id.clone(), session);
            id
        }))
    }

    async fn renew_session(&self, id: &str) -> Result<Renewed, consul::Error> {
        self.reachable("renew")?;
        Ok(self.consul.with(|s| match s.sessions.get_mut(id) {
            Some(session) => {
                session.expires = Instant::now() + session.ttl * 2;
                Renewed::Alive { ttl: Some(session.ttl) }
            }
            None => Renewed::Gone,
        }))
    }

    async fn destroy_session(&self, id: &str) -> Result<(), consul::Error> {
        self.reachable("destroy")?;
        self.consul.with(|s| s.invalidate(id, Instant::now()));
        Ok(())
    }

    async fn read_lock(&self, key: &str, query: BlockingQuery) -> Result<KeyRead, consul::Error> {
        self.reachable("read")?;
        let until = Instant::now() + query.wait;
        let mut changes = self.consul.changes.subscribe();
        loop {
            let (read, next_expiry) = self.consul.with(|s| {
                let entry = s.key.clone().filter(|k| k.key == key);
                (KeyRead { entry, index: s.index.max(1) }, s.next_expiry())
            });
            if !query.is_blocking() || read.index > query.index || Instant::now() >= until {
                return Ok(read);
            }
            let wake = next_expiry.map_or(until, |e| e.min(until));
            tokio::select! {
                _ = changes.changed() => {}
                _ = sleep_until(wake) => {}
            }
            self.reachable("read")?;
        }
    }

    async fn acquire(&self, key: &str, session: &str, value: &[u8]) -> Result<bool, consul::Error> {
        self.reachable("acquire")?;
        Ok(self.consul.with(|s| {
            if !s.sessions.contains_key(session) {
                return false;
            }
            if s.lock_delay_until.is_some_and(|t| Instant::now() < t) {
                return false;
            }
            match s.key.as_ref().and_then(|k| k.session.clone()) {
                Some(holder) if holder != session => false,
                _ => {
                    s.index += 1;
                    let index = s.index;
                    let created = s.key.as_ref().map_or(index, |k| k.create_index);
                    let lock_index = s.key.as_ref().map_or(0, |k| k.lock_index) + 1;
                    s.key = Some(KvPair {
                        key: key.to_string(),
                        value: value.to_vec(),
                        flags: super::elector::LOCK_FLAG_VALUE,
                        session: Some(session.to_string()),
                        lock_index,
                        create_index: created,
                        modify_index: index,
                    });
                    true
                }
            }
        }))
    }

    async fn release(&self, _key: &str, session: &str) -> Result<bool, consul::Error> {
        self.reachable("release")?;
        Ok(self.consul.with(|s| {
            let index = s.index + 1;
            match s.key.as_mut().filter(|k| k.session.as_deref() == Some(session)) {
                Some(k) => {
                    k.session = None;
                    k.modify_index = index;
                    s.index = index;
                    true
                }
                None => false,
            }
        }))
    }
}
