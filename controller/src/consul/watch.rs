//! The Consul prefix watcher: a blocking-query loop written as an explicit state machine (STYLE 3).
//!
//! ```text
//!            ok: Snapshot{relisted}                 ok, index grew, content differs: Snapshot
//!  Listing ─────────────────────────────▶ Watching ◀──────────────────────────────┐
//!     ▲  │ error                           │  │ ok, same index or same content: —  │
//!     │  ▼                                 │  └────────────────────────────────────┘
//!   Backoff ◀──────────── error ───────────┘
//!     ▲                                    │ index went backwards
//!     └── (after the delay) ── Listing ◀───┘
//! ```
//!
//! Rules from Consul's blocking-query docs (`features/blocking.mdx`, contract A2 and C1–C3) sit next to the
//! transitions that implement them.
//!
//! # How hard it presses Consul
//! Every request — the first list, a relist, each blocking query — first waits for the [`ByteBudget`] (A2: "rate
//! limit the loop"), and every answer is charged its body size to it. The budget is in bytes read per second
//! ([`WatchConfig::budget`], `--watch-budget`, default [`super::budget::DEFAULT_BUDGET`]), not in requests: a small
//! prefix is re-read as soon as it changes, so a client writing records back to back sees each one at once, while
//! a large prefix under churn is re-read as often as the budget pays for, each answer batching every change made
//! meanwhile. An idle prefix costs one blocking query per [`WatchConfig::wait`], whatever the budget. The limiter's
//! rules and bounds are in [`super::budget`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::time::Instant;

use super::BlockingQuery;
use super::budget::{ByteBudget, ByteRate, DEFAULT_BUDGET, DEFAULT_BURST};
use super::client::{Client, Error};
use super::kv::{KvPair, Listing};
use crate::metrics::Metrics;
use crate::queue::Backoff;

/// Where the watcher lists from; [`Client`] in production, an in-memory model in tests.
pub trait PrefixSource: Send + Sync {
    /// Lists every entry under `prefix`, blocking per `query` (a missing prefix is an empty listing with an index).
    fn list(&self, prefix: &str, query: BlockingQuery) -> impl Future<Output = Result<Listing, Error>> + Send;
}

impl PrefixSource for Client {
    fn list(&self, prefix: &str, query: BlockingQuery) -> impl Future<Output = Result<Listing, Error>> + Send {
        Client::list(self, prefix, query)
    }
}

/// A shared source is a source (the test keeps a handle to inspect it; production may share one client).
impl<T: PrefixSource> PrefixSource for Arc<T> {
    fn list(&self, prefix: &str, query: BlockingQuery) -> impl Future<Output = Result<Listing, Error>> + Send {
        T::list(self, prefix, query)
    }
}

/// What the watcher does, and how hard it may press Consul.
#[derive(Clone, Debug)]
pub struct WatchConfig {
    /// The prefix to watch, e.g. `drover/apps/`.
    pub prefix: String,
    /// Server-side wait of each blocking query; Consul clamps it to 10 min (C3).
    pub wait: Duration,
    /// Delay between a failure and the relist that follows it.
    pub backoff: Backoff,
    /// Bytes read from Consul per second that the watch may spend on answers (`--watch-budget`).
    pub budget: ByteRate,
    /// How much budget an idle watch may save up, as a time at `budget`: the burst after a quiet period.
    pub burst: Duration,
}

impl WatchConfig {
    /// The defaults: 5 min waits, a budget of [`DEFAULT_BUDGET`] (32 MiB/s) with one second of savings, the
    /// queue's default backoff.
    ///
    /// Consul's docs ask clients to rate limit the loop and suggest degrading to about one request per 15 s for a
    /// hot key. Drover limits by size instead (see the module doc): 32 MiB/s re-reads a 1 000-app prefix (~0.5 MB)
    /// about 64 times a second, so every write is seen at once, and a 10 000-app prefix (~5 MB) about 6 times a
    /// second under churn, batching the writes in between; an answer is never older than its read.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            wait: Duration::from_secs(300),
            backoff: Backoff::default(),
            budget: DEFAULT_BUDGET,
            burst: DEFAULT_BURST,
        }
    }

    /// The same settings with another byte budget (the `--watch-budget` flag).
    #[must_use]
    pub fn with_budget(mut self, budget: ByteRate) -> Self {
        self.budget = budget;
        self
    }
}

/// What the watcher reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// The whole content of the prefix. Sent after every (re)list, and after a blocking query whose index grew and
    /// whose content differs from the last snapshot. The consumer diffs it per key by `ModifyIndex` against what it
    /// holds; keys it holds that are absent here were deleted.
    Snapshot {
        /// Every entry under the prefix.
        entries: Arc<Vec<KvPair>>,
        /// `X-Consul-Index` of the answer.
        index: u64,
        /// True when this follows a fresh list (start, after an error, or after an index reset) rather than a
        /// blocking query. Every snapshot is complete either way: a key absent from it is gone.
        relisted: bool,
        /// Size of the listing body; the watcher already adds it to `consul_read_bytes` (informational).
        bytes: usize,
        /// The listing was filtered by ACLs: entries may be missing, so absence here does not mean deletion.
        filtered_by_acls: bool,
    },
}

/// The watcher's state; relisting and backoff are states, not flags.
#[derive(Clone, Debug)]
pub enum State {
    /// About to list without blocking. `failures` counts consecutive failed attempts, for the backoff.
    Listing {
        /// Consecutive failures so far.
        failures: u32,
    },
    /// Blocking on `index`; `entries` is the last snapshot, for the content comparison.
    Watching {
        /// Index to block on (≥ 1).
        index: u64,
        /// The last snapshot sent.
        entries: Arc<Vec<KvPair>>,
    },
    /// Waiting until `until` before relisting.
    Backoff {
        /// Consecutive failures so far.
        failures: u32,
        /// When to relist.
        until: Instant,
    },
}

impl State {
    /// The starting state.
    pub fn initial() -> Self {
        Self::Listing { failures: 0 }
    }
}

/// A token bucket: at most `burst` requests back to back, then one per `refill` (A2: "rate limit the loop").
///
/// The Consul prefix watch spends a [`ByteBudget`] instead; this stays for the Nomad live watcher, whose lists and
/// subscriptions are rare (start, relist, resubscribe) and whose events arrive on one stream, so counting requests
/// is the right measure there.
#[derive(Debug)]
pub struct TokenBucket {
    burst: f64,
    tokens: f64,
    refill: Duration,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket; `burst` is at least 1.
    pub fn new(burst: u32, refill: Duration) -> Self {
        let burst = f64::from(burst.max(1));
        Self { burst, tokens: burst, refill, last: Instant::now() }
    }

    /// Takes a token, first waiting for one if the bucket is empty.
    pub async fn acquire(&mut self) {
        self.top_up();
        if self.tokens < 1.0 && !self.refill.is_zero() {
            let missing = 1.0 - self.tokens;
            tokio::time::sleep(self.refill.mul_f64(missing)).await;
            self.top_up();
        }
        self.tokens = (self.tokens - 1.0).max(0.0);
    }

    fn top_up(&mut self) {
        let now = Instant::now();
        let earned = if self.refill.is_zero() {
            self.burst
        } else {
            now.duration_since(self.last).as_secs_f64() / self.refill.as_secs_f64()
        };
        self.tokens = (self.tokens + earned).min(self.burst);
        self.last = now;
    }
}

/// The watcher: the source, its settings, the byte budget, and the metrics it reports to.
#[derive(Debug)]
pub struct Watcher<S> {
    source: S,
    config: WatchConfig,
    limiter: ByteBudget,
    metrics: Arc<Metrics>,
}

impl<S: PrefixSource> Watcher<S> {
    /// A watcher in its initial state.
    pub fn new(source: S, config: WatchConfig, metrics: Arc<Metrics>) -> Self {
        let limiter = ByteBudget::new(config.budget, config.burst);
        Self { source, config, limiter, metrics }
    }

    /// Consul answers a listing the token may not fully read with the entries it may read, and
    /// `X-Consul-Results-Filtered-By-ACLs: true` instead of a 403 (contract A1): that is a denial too, and is
    /// counted as one (`drover_permission_denied_total{server="consul",call="kv_list_filtered"}`).
    fn count_filtered(&self, filtered_by_acls: bool) {
        if filtered_by_acls {
            self.metrics.permission_denied("consul", "kv_list_filtered");
        }
    }

    fn backoff(&self, failures: u32) -> State {
        // Every way into Backoff is a restart of the watch: it ends with a relist.
        self.metrics.watch_restart("consul");
        let delay = self.config.backoff.delay(failures, &mut rand::rng());
        State::Backoff { failures, until: Instant::now() + delay }
    }

    /// Runs one transition: at most one request, at most one event.
    pub async fn step(&mut self, state: State) -> (Option<Result<WatchEvent, Error>>, State) {
        match state {
            State::Backoff { failures, until } => {
                tokio::time::sleep_until(until).await;
                (None, State::Listing { failures })
            }
            State::Listing { failures } => {
                self.limiter.ready().await;
                match self.source.list(&self.config.prefix, BlockingQuery::now()).await {
                    Ok(listing) => {
                        self.charge(listing.bytes);
                        self.count_filtered(listing.filtered_by_acls);
                        let entries = Arc::new(listing.entries);
                        let event = WatchEvent::Snapshot {
                            entries: Arc::clone(&entries),
                            index: listing.index,
                            relisted: true,
                            bytes: listing.bytes,
                            filtered_by_acls: listing.filtered_by_acls,
                        };
                        // Index sanity (A2, C1): an index below 1 is sent back as 1, so the next request blocks.
                        let index = listing.index.max(1);
                        (Some(Ok(event)), State::Watching { index, entries })
                    }
                    Err(err) => (Some(Err(err)), self.backoff(failures.saturating_add(1))),
                }
            }
            State::Watching { index, entries } => {
                // A blocking query can return at once (timeouts, idempotent writes, unrelated churn), so the loop is
                // rate limited rather than trusting each return to mean change (A2 "rate limit the loop", C2): by
                // bytes, so the wait after an answer is what that answer cost (module doc).
                self.limiter.ready().await;
                let query = BlockingQuery::after(index, self.config.wait);
                match self.source.list(&self.config.prefix, query).await {
                    Err(err) => (Some(Err(err)), self.backoff(1)),
                    Ok(listing) => {
                        self.charge(listing.bytes);
                        // Every filtered answer is a denied call, whether or not what the token sees changed: a
                        // control hidden from the start never changes the (empty) listing Drover sees.
                        self.count_filtered(listing.filtered_by_acls);
                        self.after_wake(index, entries, listing)
                    }
                }
            }
        }
    }

    /// Counts an answer's bytes and charges them to the budget (a failed request is paid for by the backoff).
    fn charge(&mut self, bytes: usize) {
        self.metrics.consul_bytes_read(bytes);
        self.limiter.spend(bytes, Instant::now());
    }

    /// The transition after a blocking query answered.
    fn after_wake(
        &mut self,
        index: u64,
        entries: Arc<Vec<KvPair>>,
        listing: Listing,
    ) -> (Option<Result<WatchEvent, Error>>, State) {
        if listing.index < index {
            // The index went backwards (tombstone reap, snapshot restore, removal of the highest-index key): reset
            // to 0 and start over with a fresh list (A2 "index goes backwards", C1).
            self.metrics.watch_restart("consul");
            return (None, State::Listing { failures: 0 });
        }
        if listing.index == index {
            // The wait expired: same index, same body (A2 rule 3). Nothing to report.
            return (None, State::Watching { index, entries });
        }
        if listing.entries == *entries {
            // The index moved but the content did not (an idempotent write or a tombstone elsewhere): a return is
            // no proof of change (C2). Keep the new index, report nothing.
            return (None, State::Watching { index: listing.index, entries });
        }
        let entries = Arc::new(listing.entries);
        let event = WatchEvent::Snapshot {
            entries: Arc::clone(&entries),
            index: listing.index,
            relisted: false,
            bytes: listing.bytes,
            filtered_by_acls: listing.filtered_by_acls,
        };
        (Some(Ok(event)), State::Watching { index: listing.index, entries })
    }
}

impl<S: PrefixSource + 'static> Watcher<S> {
    /// Runs the state machine forever as a stream of events. Errors are logged here (and counted as watch
    /// restarts by the transition into backoff); the stream only carries snapshots.
    pub fn into_stream(self) -> impl Stream<Item = WatchEvent> + Send {
        futures::stream::unfold((self, State::initial()), |(mut watcher, mut state)| async move {
            loop {
                let (event, next) = watcher.step(state).await;
                state = next;
                match event {
                    Some(Ok(event)) => return Some((event, (watcher, state))),
                    Some(Err(err)) => {
                        let err: &(dyn std::error::Error + 'static) = &err;
                        tracing::warn!(
                            prefix = %watcher.config.prefix,
                            error = err,
                            "Consul watch failed; relisting after backoff"
                        );
                    }
                    None => {}
                }
            }
        })
    }
}

/// Watches `config.prefix` on Consul: a stream of [`WatchEvent::Snapshot`]s, starting with a full list.
pub fn watch(client: Client, config: WatchConfig, metrics: Arc<Metrics>) -> impl Stream<Item = WatchEvent> + Send {
    Watcher::new(client, config, metrics).into_stream()
}
