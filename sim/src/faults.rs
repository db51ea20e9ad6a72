//! Faults as data: for requests matching a server, method and path pattern, add latency, answer an error, or drop the
//! connection — for N requests or a window of simulated time. Applied by the listener's service before routing.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Server, SimInstant};

/// What a test asks for, as posted to `POST /_sim/faults`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Only requests to this server (`consul` or `nomad`); both when absent.
    #[serde(default)]
    pub server: Option<Server>,
    /// Only this HTTP method (case-insensitive); any when absent.
    #[serde(default)]
    pub method: Option<String>,
    /// Path pattern: a prefix of the request path, where `*` matches any run of characters (`/v1/job/*/plan`).
    pub path: String,
    /// Only requests whose `User-Agent` contains this text (e.g. `(pid 1234)`: one Drover replica, a network
    /// partition of one process); any when absent.
    #[serde(default)]
    pub user_agent: Option<String>,
    /// What happens to a matching request.
    pub action: FaultAction,
    /// Apply to this many matching requests, then expire. Unlimited when absent.
    #[serde(default)]
    pub count: Option<u32>,
    /// Apply for this long (simulated milliseconds from now), then expire. Forever when absent.
    #[serde(default)]
    pub duration_ms: Option<u64>,
}

/// The effect of a fault on one request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultAction {
    /// Delay the request by this many simulated milliseconds, then serve it normally.
    Latency {
        /// Simulated milliseconds.
        ms: u64,
    },
    /// Answer with this status and plain-text body instead of serving the request.
    Error {
        /// HTTP status code.
        status: u16,
        /// Body text; give the real server's text for the fault you model (e.g. `No cluster leader`).
        #[serde(default = "default_error_body")]
        body: String,
    },
    /// Close the connection without an answer.
    Drop,
}

fn default_error_body() -> String {
    "injected fault".to_string()
}

/// A fault in force, as listed by `GET /_sim/faults`.
#[derive(Clone, Debug, Serialize)]
pub struct ActiveFault {
    /// Identifier for `DELETE /_sim/faults/{id}`.
    pub id: u64,
    /// The fault as posted.
    pub spec: FaultSpec,
    /// Matching requests left, when limited.
    pub remaining: Option<u32>,
    #[serde(skip)]
    until: Option<SimInstant>,
}

/// The set of faults in force.
#[derive(Debug, Default)]
pub struct Faults {
    inner: Mutex<FaultsInner>,
}

#[derive(Debug, Default)]
struct FaultsInner {
    next_id: u64,
    active: Vec<ActiveFault>,
}

impl Faults {
    /// Adds a fault; returns its id.
    pub fn add(&self, spec: FaultSpec, now: SimInstant) -> u64 {
        let mut inner = lock(&self.inner);
        inner.next_id += 1;
        let id = inner.next_id;
        let until = spec.duration_ms.map(|ms| now + Duration::from_millis(ms));
        let remaining = spec.count;
        inner.active.push(ActiveFault { id, spec, remaining, until });
        id
    }

    /// Removes one fault; false when there was none with that id.
    pub fn remove(&self, id: u64) -> bool {
        let mut inner = lock(&self.inner);
        let before = inner.active.len();
        inner.active.retain(|f| f.id != id);
        inner.active.len() != before
    }

    /// Removes every fault.
    pub fn clear(&self) {
        lock(&self.inner).active.clear();
    }

    /// The faults still in force.
    pub fn list(&self, now: SimInstant) -> Vec<ActiveFault> {
        let mut inner = lock(&self.inner);
        inner.active.retain(|f| f.until.is_none_or(|u| now < u));
        inner.active.clone()
    }

    /// The action for one request without a `User-Agent`, if a fault matches it; consumes one use of a counted fault.
    pub fn check(&self, server: Server, method: &str, path: &str, now: SimInstant) -> Option<FaultAction> {
        self.check_from(server, method, path, "", now)
    }

    /// The action for one request from `user_agent`, if a fault matches it; consumes one use of a counted fault.
    pub fn check_from(
        &self,
        server: Server,
        method: &str,
        path: &str,
        user_agent: &str,
        now: SimInstant,
    ) -> Option<FaultAction> {
        let mut inner = lock(&self.inner);
        inner.active.retain(|f| f.until.is_none_or(|u| now < u) && f.remaining != Some(0));
        let fault = inner.active.iter_mut().find(|f| {
            f.spec.server.is_none_or(|s| s == server)
                && f.spec.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method))
                && f.spec.user_agent.as_deref().is_none_or(|ua| user_agent.contains(ua))
                && pattern_matches(&f.spec.path, path)
        })?;
        if let Some(n) = fault.remaining.as_mut() {
            *n -= 1;
        }
        Some(fault.spec.action.clone())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Prefix match where `*` matches any run of characters (including `/`).
fn pattern_matches(pattern: &str, path: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else { return true };
    let Some(mut rest) = path.strip_prefix(first) else { return false };
    for part in parts {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(path: &str, count: Option<u32>, duration_ms: Option<u64>) -> FaultSpec {
        FaultSpec {
            server: Some(Server::Nomad),
            method: None,
            path: path.to_string(),
            user_agent: None,
            action: FaultAction::Drop,
            count,
            duration_ms,
        }
    }

    #[test]
    fn pattern_should_match_prefix_and_wildcards() {
        assert!(pattern_matches("/v1/jobs", "/v1/jobs"));
        assert!(pattern_matches("/v1/job", "/v1/job/web/plan"));
        assert!(pattern_matches("/v1/job/*/plan", "/v1/job/web/plan"));
        assert!(!pattern_matches("/v1/job/*/plan", "/v1/job/web"));
        assert!(!pattern_matches("/v1/kv", "/v1/jobs"));
    }

    #[test]
    fn counted_fault_should_expire_after_n_requests() {
        let f = Faults::default();
        let now = SimInstant::default();
        f.add(spec("/v1/jobs", Some(2), None), now);
        assert!(f.check(Server::Nomad, "GET", "/v1/jobs", now).is_some());
        assert!(f.check(Server::Nomad, "GET", "/v1/jobs", now).is_some());
        assert!(f.check(Server::Nomad, "GET", "/v1/jobs", now).is_none());
    }

    #[test]
    fn fault_should_only_hit_its_server() {
        let f = Faults::default();
        let now = SimInstant::default();
        f.add(spec("/v1/", None, None), now);
        assert!(f.check(Server::Consul, "GET", "/v1/kv/x", now).is_none());
        assert!(f.check(Server::Nomad, "GET", "/v1/jobs", now).is_some());
    }

    #[test]
    fn fault_with_a_user_agent_should_only_hit_that_client() {
        let f = Faults::default();
        let now = SimInstant::default();
        f.add(FaultSpec { user_agent: Some("(pid 7)".into()), ..spec("/v1/", None, None) }, now);
        assert!(f.check_from(Server::Nomad, "GET", "/v1/jobs", "drover/0.1.0 (pid 7)", now).is_some());
        assert!(f.check_from(Server::Nomad, "GET", "/v1/jobs", "drover/0.1.0 (pid 8)", now).is_none());
        assert!(f.check(Server::Nomad, "GET", "/v1/jobs", now).is_none(), "no User-Agent, no match");
    }

    #[test]
    fn timed_fault_should_expire_after_its_window() {
        let f = Faults::default();
        let now = SimInstant::default();
        f.add(spec("/v1/", None, Some(1000)), now);
        assert!(f.check(Server::Nomad, "GET", "/v1/jobs", now + Duration::from_millis(999)).is_some());
        assert!(f.check(Server::Nomad, "GET", "/v1/jobs", now + Duration::from_millis(1000)).is_none());
    }
}
