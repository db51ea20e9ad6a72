//! Consul: the HTTP client for the KV store and transactions, and the blocking-query prefix watcher.
//!
//! # Layout
//! - [`client`]: the connection (base URL, token, timeouts, metrics) and the error types.
//! - [`kv`]: `GET`/`PUT`/`DELETE /v1/kv/…`, with presence-based flags and `X-Consul-Index` handling.
//! - [`txn`]: `PUT /v1/txn`, at most [`txn::MAX_TXN_OPS`] operations.
//! - [`session`]: session create, renew and destroy, for a leader lock.
//! - [`watch`]: the prefix watcher state machine that feeds the desired-state store.
//! - [`budget`]: the watch's rate limit, a budget of bytes read per second.
//!
//! Wire rules are in `api-contract.md` Part A; the traps in Part C are noted where the code handles them.

pub mod budget;
pub mod client;
pub mod kv;
pub mod session;
pub mod txn;
pub mod watch;

use std::time::Duration;

pub use client::{Client, Error, RequestError};
pub use kv::{KeyRead, KvPair, Listing, PutParams};
pub use session::{Behavior, Renewed, SessionRequest};
pub use txn::{TxnError, TxnOp, TxnOutcome};
pub use watch::{PrefixSource, WatchConfig, WatchEvent};

/// Consul's longest blocking wait (`MaxQueryTime`, contract A2 rule 2); longer waits are clamped by the server.
pub const MAX_WAIT: Duration = Duration::from_secs(600);
/// Consul's wait when none (or zero) is given (`DefaultQueryTime`).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);

/// The `index`/`wait` pair of a blocking query (Consul A2, Nomad B2).
///
/// `index == 0` means "do not block": the server answers at once. Any other index is sent as at least 1
/// (contract C1: an index below 1 is treated as 1 so the request really blocks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockingQuery {
    /// The last index seen; 0 for an immediate answer.
    pub index: u64,
    /// How long the server may hold the request; zero means the server's default.
    pub wait: Duration,
}

impl BlockingQuery {
    /// A query that returns at once.
    pub const fn now() -> Self {
        Self { index: 0, wait: Duration::ZERO }
    }

    /// A query that blocks until the result's index exceeds `index`, or `wait` (plus server jitter) passes.
    pub const fn after(index: u64, wait: Duration) -> Self {
        Self { index, wait }
    }

    /// Whether the server will block on this query.
    pub const fn is_blocking(&self) -> bool {
        self.index > 0
    }

    /// The `index` and `wait` query parameters, empty for a non-blocking query. `wait` is sent in milliseconds, a
    /// Go duration both servers parse.
    pub(crate) fn params(&self) -> Vec<(&'static str, Option<String>)> {
        if !self.is_blocking() {
            return Vec::new();
        }
        let mut params = vec![("index", Some(self.index.max(1).to_string()))];
        if !self.wait.is_zero() {
            params.push(("wait", Some(format!("{}ms", self.wait.as_millis().max(1)))));
        }
        params
    }
}
