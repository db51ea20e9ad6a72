//! Consul sessions (`/v1/session/…`, contract A6–A8): what a leader lock is built on.
//!
//! Traps (C9–C11): a session is invalidated no earlier than 2×TTL after the last renew, so renew at TTL/2 and honour
//! a larger TTL returned by renew; a renew answering 404 means the session is gone for good (create a new one, never
//! retry the old); lock acquisition during lock-delay is `false`, not an error. Acquire and release are KV writes:
//! [`Client::put_with`] with [`super::PutParams::acquire`] / [`super::PutParams::release`].

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::client::{Client, Error, Request, RequestError};
use crate::tls::REQUEST_TIMEOUT;

/// What happens to a session's locks when it is invalidated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Behavior {
    /// Locks are released (the keys stay, `Session` is cleared).
    #[default]
    Release,
    /// Locked keys are deleted.
    Delete,
}

/// A session to create; only documented fields are sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRequest {
    /// Human-readable name.
    pub name: String,
    /// TTL, 10 s to 24 h; the session dies no earlier than 2×TTL after the last renew.
    pub ttl: Duration,
    /// What invalidation does to held locks.
    pub behavior: Behavior,
    /// How long a released-by-invalidation lock cannot be re-acquired (≤ 60 s).
    pub lock_delay: Duration,
    /// `Some(vec![])` creates a session with no node health checks (only the TTL keeps it alive); `None` keeps
    /// the server default (`serfHealth`).
    pub node_checks: Option<Vec<String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct WireCreate<'a> {
    name: &'a str,
    #[serde(rename = "TTL")]
    ttl: String,
    behavior: Behavior,
    lock_delay: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_checks: Option<&'a [String]>,
}

/// The outcome of a renew.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewed {
    /// Still alive. `ttl` is the TTL the server wants, possibly larger than asked (renew at half of it); `None`
    /// when it could not be read, in which case keep the requested TTL.
    Alive {
        /// The server's TTL.
        ttl: Option<Duration>,
    },
    /// The session no longer exists. Final (C10): create a new session, never retry this one.
    Gone,
}

#[derive(Deserialize)]
struct WireId {
    #[serde(rename = "ID")]
    id: String,
}

#[derive(Deserialize)]
struct WireSession {
    #[serde(rename = "TTL", default)]
    ttl: String,
}

/// A Go duration string in whole seconds, or milliseconds when not whole (Consul parses both).
fn go_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 { format!("{}s", d.as_secs()) } else { format!("{}ms", d.as_millis()) }
}

impl Client {
    /// Creates a session and returns its ID.
    pub async fn create_session(&self, req: &SessionRequest) -> Result<String, Error> {
        let fail = |source| Error::SessionFailed { id: req.name.clone(), source };
        let body = WireCreate {
            name: &req.name,
            ttl: go_duration(req.ttl),
            behavior: req.behavior,
            lock_delay: go_duration(req.lock_delay),
            node_checks: req.node_checks.as_deref(),
        };
        let body = serde_json::to_vec(&body).map_err(|e| fail(RequestError::Decode(e)))?;
        let response = self
            .send(Request {
                op: "session_create",
                method: Method::PUT,
                path: "/v1/session/create".to_owned(),
                query: Vec::new(),
                body: Some(&body),
                timeout: REQUEST_TIMEOUT,
            })
            .await
            .map_err(fail)?;
        if response.status != StatusCode::OK {
            return Err(fail(response.status_error()));
        }
        Ok(response.json::<WireId>().map_err(fail)?.id)
    }

    /// Renews a session (a 404 is [`Renewed::Gone`], not an error).
    pub async fn renew_session(&self, id: &str) -> Result<Renewed, Error> {
        let fail = |source| Error::SessionFailed { id: id.to_owned(), source };
        let response = self
            .send(Request {
                op: "session_renew",
                method: Method::PUT,
                path: format!("/v1/session/renew/{}", crate::tls::encode_segment(id)),
                query: Vec::new(),
                body: None,
                timeout: REQUEST_TIMEOUT,
            })
            .await
            .map_err(fail)?;
        match response.status {
            StatusCode::NOT_FOUND => Ok(Renewed::Gone),
            StatusCode::OK => {
                let sessions: Vec<WireSession> = response.json().map_err(fail)?;
                let ttl = sessions.first().and_then(|s| humantime::parse_duration(&s.ttl).ok());
                Ok(Renewed::Alive { ttl })
            }
            _ => Err(fail(response.status_error())),
        }
    }

    /// Destroys a session, releasing (or deleting) its locks and starting their lock-delay. Idempotent: an unknown
    /// session is fine. Release held keys first for a clean hand-over (A7).
    pub async fn destroy_session(&self, id: &str) -> Result<(), Error> {
        let fail = |source| Error::SessionFailed { id: id.to_owned(), source };
        let response = self
            .send(Request {
                op: "session_destroy",
                method: Method::PUT,
                path: format!("/v1/session/destroy/{}", crate::tls::encode_segment(id)),
                query: Vec::new(),
                body: None,
                timeout: REQUEST_TIMEOUT,
            })
            .await
            .map_err(fail)?;
        if response.status != StatusCode::OK {
            return Err(fail(response.status_error()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_create_body_should_use_go_durations_and_lowercase_behavior() {
        let body = WireCreate {
            name: "drover-leader",
            ttl: go_duration(Duration::from_secs(15)),
            behavior: Behavior::Release,
            lock_delay: go_duration(Duration::from_millis(1500)),
            node_checks: Some(&[]),
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"Name":"drover-leader","TTL":"15s","Behavior":"release","LockDelay":"1500ms","NodeChecks":[]}"#
        );
    }
}
