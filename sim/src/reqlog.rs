//! A log of the API requests each server answered, so tests can assert on what a client did (for example that a
//! converged controller makes no writes). Control requests under `/_sim/` are not logged.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::Server;

/// How many entries are kept; older ones are dropped first.
pub const CAPACITY: usize = 200_000;

/// One answered request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LoggedRequest {
    /// Increasing sequence number, never reused (also across clears).
    pub seq: u64,
    /// Which server answered.
    pub server: Server,
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Raw query string (may be empty).
    pub query: String,
    /// Status code sent; 0 when the connection was dropped by a fault.
    pub status: u16,
    /// Simulated milliseconds since the simulator started.
    pub at_ms: u64,
    /// The client's `User-Agent` (empty when none was sent), so a test can tell apart the requests of two processes
    /// (Drover sends `drover/<version> (pid <pid>)`).
    #[serde(default)]
    pub user_agent: String,
}

impl LoggedRequest {
    /// True for methods that change state (PUT, POST, DELETE, PATCH).
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "PUT" | "POST" | "DELETE" | "PATCH")
    }
}

/// What `GET /_sim/log` answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogPage {
    /// The sequence number of the newest entry ever logged.
    pub last_seq: u64,
    /// The requests asked for.
    pub requests: Vec<LoggedRequest>,
}

/// The request log.
#[derive(Debug, Default)]
pub struct RequestLog {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_seq: u64,
    entries: VecDeque<LoggedRequest>,
}

impl RequestLog {
    /// Appends one entry.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        server: Server,
        method: &str,
        path: &str,
        query: &str,
        status: u16,
        at_ms: u64,
        user_agent: &str,
    ) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.next_seq += 1;
        let seq = inner.next_seq;
        if inner.entries.len() == CAPACITY {
            inner.entries.pop_front();
        }
        inner.entries.push_back(LoggedRequest {
            seq,
            server,
            method: method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            status,
            at_ms,
            user_agent: user_agent.to_string(),
        });
    }

    /// Entries with `seq > since`, optionally for one server.
    pub fn since(&self, since: u64, server: Option<Server>) -> Vec<LoggedRequest> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.entries.iter().filter(|e| e.seq > since && server.is_none_or(|s| s == e.server)).cloned().collect()
    }

    /// The sequence number of the newest entry (0 when none was ever logged).
    pub fn last_seq(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).next_seq
    }

    /// Forgets every entry (sequence numbers keep increasing).
    pub fn clear(&self) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).entries.clear();
    }
}
