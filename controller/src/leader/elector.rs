//! The lock, as `api/lock.go` holds one (contract A6–A8), with the renew deadline that makes "never two leaders
//! writing" hold: a session with a TTL renewed every TTL/2, a blocking query on the key to notice a release at once,
//! and an acquire that may answer `false` during lock-delay.
//!
//! Two loops share one session, raced in [`Elector::run`]:
//! - **renew**: every TTL/2 (after an error, every second). A 404 means the session is gone for good (C10): step
//!   down and start over with a new session. No success within [`LockConfig::renew_deadline`] of the last good
//!   renew: step down too — the server may still think the session alive, but this replica can no longer prove it
//!   leads, and it must stop writing before the session can expire and another replica can take over.
//! - **contend**: read the key (`?consistent`, blocking on the last index). Held by our session → lead; held by
//!   another → block until it changes; free → acquire. A key that is not a lock (other flags) is never taken.
//!
//! Deviation from `api/lock.go`: a failed monitor read does not drop the lock at once (lock.go's `MonitorRetries` is
//! 0, so one Consul 5xx would be a fail-over). The session is what keeps the key held — only its holder, its expiry
//! or a delete can free it — and the renew deadline bounds how long a leader can go unaware of an expiry. A delete
//! by hand is what reads would catch: reads failing for the renew deadline make the leader step down too.

use std::future::Future;
use std::time::{Duration, SystemTime};

use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use super::{LeaderGate, Leadership, LeadershipSender, LockConfig, LockValue, Term};
use crate::consul::{self, BlockingQuery, KeyRead, PutParams, Renewed, SessionRequest};
use crate::queue::Backoff;

/// `api.LockFlagValue`: marks a key used as a lock (A8). A key with other flags is somebody else's.
pub const LOCK_FLAG_VALUE: u64 = 0x2ddc_cbc0_58a5_0c18;
/// `DefaultLockWaitTime`: how long one blocking read of the key may wait.
pub const LOCK_WAIT: Duration = Duration::from_secs(15);
/// After a failed renew, the next try comes this much later (as `api.RenewPeriodic` does).
pub const RENEW_RETRY: Duration = Duration::from_secs(1);
/// `DefaultLockRetryTime`: the longest wait before trying again after an acquire answered `false`.
pub const LOCK_RETRY_MAX: Duration = Duration::from_secs(5);
/// How long a release and destroy at shutdown may take before the process exits anyway (the TTL frees the lock
/// then).
pub const GIVE_UP_TIMEOUT: Duration = Duration::from_secs(5);

/// What the elector needs of Consul; [`consul::Client`] implements it, and the tests use an in-memory model.
pub trait LockPort: Send + Sync + 'static {
    /// Creates a session, returning its ID.
    fn create_session(&self, req: &SessionRequest) -> impl Future<Output = Result<String, consul::Error>> + Send;
    /// Renews a session; 404 is [`Renewed::Gone`].
    fn renew_session(&self, id: &str) -> impl Future<Output = Result<Renewed, consul::Error>> + Send;
    /// Destroys a session (idempotent), releasing its locks and starting their lock-delay.
    fn destroy_session(&self, id: &str) -> impl Future<Output = Result<(), consul::Error>> + Send;
    /// Reads the lock key with `?consistent`, blocking per `query`.
    fn read_lock(&self, key: &str, query: BlockingQuery)
    -> impl Future<Output = Result<KeyRead, consul::Error>> + Send;
    /// `PUT ?acquire=<session>&flags=<lock flag>` with `value`; false when not acquired (held, or lock-delay).
    fn acquire(
        &self,
        key: &str,
        session: &str,
        value: &[u8],
    ) -> impl Future<Output = Result<bool, consul::Error>> + Send;
    /// `PUT ?release=<session>&flags=<lock flag>` (no lock-delay, A7).
    fn release(&self, key: &str, session: &str) -> impl Future<Output = Result<bool, consul::Error>> + Send;
}

impl LockPort for consul::Client {
    async fn create_session(&self, req: &SessionRequest) -> Result<String, consul::Error> {
        consul::Client::create_session(self, req).await
    }

    async fn renew_session(&self, id: &str) -> Result<Renewed, consul::Error> {
        consul::Client::renew_session(self, id).await
    }

    async fn destroy_session(&self, id: &str) -> Result<(), consul::Error> {
        consul::Client::destroy_session(self, id).await
    }

    async fn read_lock(&self, key: &str, query: BlockingQuery) -> Result<KeyRead, consul::Error> {
        self.get_blocking(key, query, true).await
    }

    async fn acquire(&self, key: &str, session: &str, value: &[u8]) -> Result<bool, consul::Error> {
        let params =
            PutParams { flags: Some(LOCK_FLAG_VALUE), acquire: Some(session.to_string()), ..PutParams::default() };
        self.put_with(key, value, &params).await
    }

    async fn release(&self, key: &str, session: &str) -> Result<bool, consul::Error> {
        let params =
            PutParams { flags: Some(LOCK_FLAG_VALUE), release: Some(session.to_string()), ..PutParams::default() };
        // The value is kept as it was written: a release with an empty body would blank "who held it".
        let value = match self.get(key).await {
            Ok(Some(pair)) if pair.session.as_deref() == Some(session) => pair.value,
            _ => Vec::new(),
        };
        self.put_with(key, &value, &params).await
    }
}

/// Why a session stopped serving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SessionEnd {
    /// Shutdown: release the lock and destroy the session.
    Stopped,
    /// Renew answered 404: the session was invalidated (TTL, destroy, or a server's decision).
    Gone,
    /// No renew succeeded within the renew deadline.
    Unrenewed,
}

/// Contends for the lock and publishes the outcome; see the module doc.
pub struct Elector<P> {
    port: P,
    config: LockConfig,
    leadership: LeadershipSender,
    clock: fn() -> SystemTime,
    backoff: Backoff,
}

impl<P: LockPort> Elector<P> {
    /// An elector for `config` over `port`, and the gate it publishes to (standby until the lock is held).
    pub fn new(port: P, config: LockConfig) -> (Elector<P>, LeaderGate) {
        let (leadership, gate) = super::channel();
        // 200 ms doubling to 5 s: a standby must notice a recovered Consul within seconds to be a useful standby.
        let backoff = Backoff::try_new(Duration::from_millis(200), LOCK_RETRY_MAX, 2.0, 0.2).unwrap_or_default();
        (Elector { port, config, leadership, clock: SystemTime::now, backoff }, gate)
    }

    /// Runs until `stop`: then steps down, releases the lock and destroys the session, so a standby takes over at
    /// once (cancel `stop` only after this replica's writers stopped).
    pub async fn run(self, stop: CancellationToken) {
        let mut next_term = 1u64;
        let mut failures = 0u32;
        let request = SessionRequest {
            name: format!("drover leader {}", self.config.key),
            ttl: self.config.ttl,
            behavior: consul::Behavior::Release,
            lock_delay: self.config.lock_delay,
            // Only the TTL keeps the session alive: Drover's Consul agent may be on another node, whose health says
            // nothing about this process (A6, `api.Session.CreateNoChecks`).
            node_checks: Some(Vec::new()),
        };
        loop {
            let sent = Instant::now();
            let created = tokio::select! {
                _ = stop.cancelled() => return,
                created = self.port.create_session(&request) => created,
            };
            let session = match created {
                Ok(id) => {
                    failures = 0;
                    id
                }
                Err(err) => {
                    failures += 1;
                    let delay = self.backoff.delay(failures, &mut rand::rng());
                    tracing::warn!(error = %crate::error_chain(&err), retry_in = ?delay, "cannot create the leader session");
                    if sleep_or_stop(delay, &stop).await {
                        return;
                    }
                    continue;
                }
            };
            tracing::debug!(%session, "leader session created");
            let end = tokio::select! {
                _ = stop.cancelled() => SessionEnd::Stopped,
                end = renew(&self.port, &session, self.config.ttl, sent) => end,
                never = self.contend(&session, &mut next_term) => match never {},
            };
            // Step down before anything else: from here on, no writer of this replica is admitted.
            self.step_down(end);
            match end {
                SessionEnd::Stopped => {
                    self.give_up(&session).await;
                    return;
                }
                SessionEnd::Gone => {}
                SessionEnd::Unrenewed => {
                    // It may still be alive on the server: destroying it frees the lock sooner than its TTL would.
                    // Bounded, and abandoned at shutdown: Consul is probably unreachable.
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::timeout(GIVE_UP_TIMEOUT, self.port.destroy_session(&session)) => {}
                    }
                }
            }
        }
    }

    fn step_down(&self, why: SessionEnd) {
        if let Leadership::Leading(term) = self.leadership.current() {
            match why {
                SessionEnd::Stopped => tracing::info!(term = term.0, "stepping down: shutting down"),
                SessionEnd::Gone => tracing::warn!(term = term.0, "stepping down: the leader session is gone"),
                SessionEnd::Unrenewed => tracing::warn!(
                    term = term.0,
                    "stepping down: the leader session could not be renewed in time; contending again"
                ),
            }
        }
        self.leadership.send(Leadership::Standby);
    }

    /// Releases the key (no lock-delay), then destroys the session, as `api/lock.go`'s `Unlock` does.
    async fn give_up(&self, session: &str) {
        let release = async {
            if let Err(err) = self.port.release(&self.config.key, session).await {
                tracing::warn!(error = %crate::error_chain(&err), "cannot release the leader lock");
            }
            if let Err(err) = self.port.destroy_session(session).await {
                tracing::warn!(error = %crate::error_chain(&err), "cannot destroy the leader session");
            }
        };
        if tokio::time::timeout(GIVE_UP_TIMEOUT, release).await.is_err() {
            tracing::warn!("releasing the leader lock timed out; the session's TTL will free it");
        }
    }

    /// The contend-and-monitor loop; returns only by being dropped.
    async fn contend(&self, session: &str, next_term: &mut u64) -> std::convert::Infallible {
        let key = &self.config.key;
        let mut index = 0u64;
        let mut failures = 0u32;
        let mut failing_since: Option<Instant> = None;
        loop {
            let read = match self.port.read_lock(key, BlockingQuery::after(index, LOCK_WAIT)).await {
                Ok(read) => {
                    failures = 0;
                    failing_since = None;
                    read
                }
                Err(err) => {
                    // Leadership is kept for a while: the renew loop decides whether the session (and so the lock)
                    // is alive; but a leader that cannot see its key for the renew deadline gives it up.
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= LockConfig::renew_deadline(self.config.ttl) {
                        self.lost("the lock key could not be read for the renew deadline");
                    }
                    failures += 1;
                    let delay = self.backoff.delay(failures, &mut rand::rng());
                    tracing::warn!(error = %crate::error_chain(&err), retry_in = ?delay, "cannot read the leader lock");
                    sleep(delay).await;
                    index = 0;
                    continue;
                }
            };
            // An index that goes backwards (a snapshot restore) means start over with an immediate read (A2).
            index = if read.index < index { 0 } else { read.index };
            let entry = read.entry.as_ref();
            match entry {
                // Somebody else's key at the lock's path: never take it, never write it (A8 `ErrLockConflict`).
                Some(e) if e.flags != LOCK_FLAG_VALUE => {
                    self.lost("the lock key holds a value that is not a lock");
                    tracing::error!(
                        %key,
                        flags = e.flags,
                        "the leader lock key holds a value that is not a Drover lock; delete it so a replica can lead"
                    );
                }
                // Ours: lead (this is also how a replica learns it still holds the lock after its own acquire).
                Some(e) if e.session.as_deref() == Some(session) => {
                    if self.leadership.current() == Leadership::Standby {
                        let term = Term(*next_term);
                        *next_term += 1;
                        tracing::info!(term = term.0, %key, "leading");
                        self.leadership.send(Leadership::Leading(term));
                    }
                }
                // Another session holds it: wait for it to change.
                Some(e) if e.session.is_some() => {
                    self.lost("another session holds the lock");
                }
                // Free (released by its holder, expired, or deleted): take it.
                _ => {
                    self.lost("the lock was released or deleted");
                    let value =
                        serde_json::to_vec(&LockValue::new(&self.config.holder, (self.clock)())).unwrap_or_default();
                    match self.port.acquire(key, session, &value).await {
                        Ok(true) => {
                            let term = Term(*next_term);
                            *next_term += 1;
                            tracing::info!(term = term.0, %key, "acquired the leader lock; leading");
                            self.leadership.send(Leadership::Leading(term));
                        }
                        Ok(false) => {
                            // Lock-delay after the last holder's session died (A7), or another replica was faster.
                            // The delay started no later than now and lasts the holder's lock-delay (the same
                            // flags on every replica), so trying again after ours is enough.
                            let delay = self.config.lock_delay.clamp(Duration::from_millis(100), LOCK_RETRY_MAX);
                            tracing::debug!(retry_in = ?delay, "lock not acquired (lock-delay or a race)");
                            sleep(delay).await;
                            index = 0;
                        }
                        Err(err) => {
                            failures += 1;
                            let delay = self.backoff.delay(failures, &mut rand::rng());
                            tracing::warn!(error = %crate::error_chain(&err), retry_in = ?delay, "cannot acquire the leader lock");
                            sleep(delay).await;
                            index = 0;
                        }
                    }
                }
            }
        }
    }

    /// Steps down when the key says this replica no longer holds it.
    fn lost(&self, why: &'static str) {
        if let Leadership::Leading(term) = self.leadership.current() {
            tracing::warn!(term = term.0, why, "lost the leader lock; stepping down");
            self.leadership.send(Leadership::Standby);
        }
    }
}

/// Renews `session` every TTL/2 (the server's TTL when it answers one) until it is gone or cannot be renewed in
/// time; `created` is when its create was sent (the TTL runs from then at the latest).
async fn renew<P: LockPort>(port: &P, session: &str, ttl: Duration, created: Instant) -> SessionEnd {
    let mut ttl = ttl;
    let mut last_ok = created;
    let mut next = created + ttl / 2;
    loop {
        let deadline = last_ok + LockConfig::renew_deadline(ttl);
        tokio::select! {
            _ = sleep_until(deadline) => return SessionEnd::Unrenewed,
            _ = sleep_until(next) => {}
        }
        let sent = Instant::now();
        let answer = tokio::select! {
            _ = sleep_until(deadline) => return SessionEnd::Unrenewed,
            answer = port.renew_session(session) => answer,
        };
        match answer {
            Ok(Renewed::Alive { ttl: server_ttl }) => {
                // The server may ask for a longer TTL, to be renewed less often (A6); its word is what counts.
                ttl = server_ttl.unwrap_or(ttl);
                last_ok = sent;
                next = sent + ttl / 2;
            }
            Ok(Renewed::Gone) => return SessionEnd::Gone,
            Err(err) => {
                tracing::warn!(error = %crate::error_chain(&err), "cannot renew the leader session; retrying");
                next = Instant::now() + RENEW_RETRY;
            }
        }
    }
}

/// Sleeps `delay`; true when `stop` came first.
async fn sleep_or_stop(delay: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = sleep(delay) => false,
    }
}
