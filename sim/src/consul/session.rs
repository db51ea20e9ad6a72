//! Sessions (api-contract.md A6/A7): the stored record, the create body as Consul decodes it (case-insensitive
//! fields, `LockDelay` below 1000 taken as seconds), and the validation texts of `Session.Apply`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::error::ApiError;
use super::http::parse_go_duration;
use crate::SimInstant;

/// The only node of the modelled cluster: the default `Node` of a session, and the name `session_prefix` ACL rules
/// match against.
pub const NODE_NAME: &str = "drover-sim";
/// The only registered check on [`NODE_NAME`], always passing.
pub const SERF_CHECK: &str = "serfHealth";
/// `MaxLockDelay`: lock-delay is capped to this when applied.
pub const MAX_LOCK_DELAY: Duration = Duration::from_secs(60);
/// `SessionTTLMultiplier`: the leader's timer is armed with TTL × 2.
pub const TTL_MULTIPLIER: u32 = 2;
/// Default `session_ttl_min`.
const TTL_MIN: Duration = Duration::from_secs(10);
/// `SessionTTLMax`.
const TTL_MAX: Duration = Duration::from_secs(24 * 3600);
/// `lockDelayMinThreshold`: a `LockDelay` below 1000 ns is read as seconds.
const LOCK_DELAY_MIN_THRESHOLD: i128 = 1000;

/// What happens to a session's locks when it is invalidated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Behavior {
    /// Clear `Session` on every held key.
    Release,
    /// Delete every held key.
    Delete,
}

/// One service check a session depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceCheck {
    /// The check ID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Always empty in CE.
    #[serde(rename = "Namespace")]
    pub namespace: String,
}

/// A session as stored and as returned by info/list/renew (Go field order).
#[derive(Debug, Clone, Serialize)]
pub struct Session {
    /// UUID.
    #[serde(rename = "ID")]
    pub id: String,
    /// Free-form name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Node the session belongs to.
    #[serde(rename = "Node")]
    pub node: String,
    /// Lock-delay in nanoseconds, as requested (the 60 s cap applies on use).
    #[serde(rename = "LockDelay")]
    pub lock_delay_ns: i64,
    /// Invalidation behaviour.
    #[serde(rename = "Behavior")]
    pub behavior: Behavior,
    /// The TTL string as sent (`""` for none).
    #[serde(rename = "TTL")]
    pub ttl: String,
    /// Node checks the session depends on.
    #[serde(rename = "NodeChecks")]
    pub node_checks: Vec<String>,
    /// Service checks (`null` when none were given).
    #[serde(rename = "ServiceChecks")]
    pub service_checks: Option<Vec<ServiceCheck>>,
    /// Index of the create.
    #[serde(rename = "CreateIndex")]
    pub create_index: u64,
    /// Same as `CreateIndex`: sessions are immutable.
    #[serde(rename = "ModifyIndex")]
    pub modify_index: u64,
    /// The parsed TTL; `None` for no TTL.
    #[serde(skip)]
    pub ttl_duration: Option<Duration>,
    /// When the leader's timer invalidates it (`TTL × 2` after the last create/renew/re-arm).
    #[serde(skip)]
    pub deadline: Option<SimInstant>,
}

impl Session {
    /// The lock-delay applied when this session is invalidated: `min(LockDelay, 60s)`, zero if non-positive.
    pub fn effective_lock_delay(&self) -> Duration {
        let ns = u64::try_from(self.lock_delay_ns.max(0)).unwrap_or(0);
        Duration::from_nanos(ns).min(MAX_LOCK_DELAY)
    }

    /// Re-arms the TTL timer from `now`.
    pub fn arm(&mut self, now: SimInstant) {
        self.deadline = self.ttl_duration.map(|ttl| now + ttl * TTL_MULTIPLIER);
    }
}

/// The sessions table with its index.
#[derive(Debug, Clone, Default)]
pub struct SessionTable {
    /// Sessions by ID.
    pub sessions: BTreeMap<String, Session>,
    /// The `sessions` table index.
    pub index: u64,
}

fn field<'a>(obj: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

fn decode_err(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("Request decode failed: {e}"))
}

fn string_field(obj: &serde_json::Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match field(obj, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(decode_err(format!(
            "json: cannot unmarshal {} into Go struct field .{name} of type string",
            json_kind(other)
        ))),
    }
}

fn string_list(obj: &serde_json::Map<String, Value>, name: &str) -> Result<Option<Vec<String>>, ApiError> {
    match field(obj, name) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(Vec::new())),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(decode_err(format!(
                    "json: cannot unmarshal {} into Go struct field .{name} of type string",
                    json_kind(other)
                ))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(decode_err(format!(
            "json: cannot unmarshal {} into Go struct field .{name} of type []string",
            json_kind(other)
        ))),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A create request after HTTP decoding and before `Session.Apply` validation.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    /// `Name`.
    pub name: String,
    /// `Node` (default: the agent's node).
    pub node: String,
    /// `LockDelay` in ns (default 15 s).
    pub lock_delay_ns: i64,
    /// `Behavior` as sent (`""` means release).
    pub behavior: String,
    /// `TTL` as sent.
    pub ttl: String,
    /// Node checks after `fixupEmptySessionChecks`.
    pub node_checks: Vec<String>,
    /// Service checks.
    pub service_checks: Option<Vec<ServiceCheck>>,
}

impl CreateRequest {
    /// Decodes the optional body like `SessionCreate` + `Session.UnmarshalJSON` (unknown fields ignored).
    pub fn decode(body: &[u8]) -> Result<CreateRequest, ApiError> {
        let mut req = CreateRequest {
            name: String::new(),
            node: NODE_NAME.to_owned(),
            lock_delay_ns: 15_000_000_000,
            behavior: "release".to_owned(),
            ttl: String::new(),
            node_checks: vec![SERF_CHECK.to_owned()],
            service_checks: None,
        };
        let mut checks: Option<Vec<String>> = Some(vec![SERF_CHECK.to_owned()]);
        if !body.is_empty() {
            let v: Value = super::http::decode_first_json(body).map_err(decode_err)?;
            let obj = match v {
                Value::Object(o) => o,
                Value::Null => serde_json::Map::new(),
                other => {
                    return Err(decode_err(format!(
                        "json: cannot unmarshal {} into Go value of type structs.Session",
                        json_kind(&other)
                    )));
                }
            };
            if let Some(s) = string_field(&obj, "Name")? {
                req.name = s;
            }
            if let Some(s) = string_field(&obj, "Node")? {
                req.node = s;
            }
            if let Some(s) = string_field(&obj, "Behavior")? {
                req.behavior = s;
            }
            if let Some(s) = string_field(&obj, "TTL")? {
                req.ttl = s;
            }
            if let Some(l) = string_list(&obj, "NodeChecks")? {
                req.node_checks = l;
            }
            if let Some(l) = string_list(&obj, "Checks")? {
                checks = Some(l);
            }
            match field(&obj, "LockDelay") {
                None | Some(Value::Null) => {}
                Some(v) => {
                    let mut ns: i128 = match v {
                        Value::String(s) => parse_go_duration(s).map_err(decode_err)?,
                        Value::Number(n) => n.as_f64().map_or(0, |f| f as i128),
                        _ => 0,
                    };
                    if ns < LOCK_DELAY_MIN_THRESHOLD {
                        ns *= 1_000_000_000;
                    }
                    req.lock_delay_ns =
                        i64::try_from(ns.clamp(i128::from(i64::MIN), i128::from(i64::MAX))).unwrap_or(0);
                }
            }
            match field(&obj, "ServiceChecks") {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) => {
                    let mut out = Vec::new();
                    for item in items {
                        let Value::Object(o) = item else {
                            return Err(decode_err("json: cannot unmarshal into Go struct field .ServiceChecks"));
                        };
                        out.push(ServiceCheck {
                            id: string_field(o, "ID")?.unwrap_or_default(),
                            namespace: string_field(o, "Namespace")?.unwrap_or_default(),
                        });
                    }
                    req.service_checks = Some(out);
                }
                Some(other) => {
                    return Err(decode_err(format!(
                        "json: cannot unmarshal {} into Go struct field .ServiceChecks",
                        json_kind(other)
                    )));
                }
            }
        }
        // fixupEmptySessionChecks: an explicitly empty `Checks` empties the default node checks; the default
        // `Checks` is dropped in favour of `NodeChecks`; other `Checks` are node checks too.
        match checks {
            Some(c) if c.is_empty() => req.node_checks = Vec::new(),
            Some(c) if c.len() == 1 && c[0] == SERF_CHECK => {}
            Some(c) if !req.node_checks.is_empty() => {
                for id in c {
                    if !req.node_checks.contains(&id) {
                        req.node_checks.push(id);
                    }
                }
            }
            Some(_) => {}
            None => {}
        }
        Ok(req)
    }

    /// The RPC-level checks of `Session.Apply`, in order (Behavior, then TTL), all 500. Returns the parsed TTL.
    pub fn validate(&mut self) -> Result<Option<Duration>, ApiError> {
        match self.behavior.as_str() {
            "" => self.behavior = "release".to_owned(),
            "release" | "delete" => {}
            other => return Err(ApiError::internal(format!("Invalid Behavior setting '{other}'"))),
        }
        if self.ttl.is_empty() {
            return Ok(None);
        }
        let ns = parse_go_duration(&self.ttl)
            .map_err(|e| ApiError::internal(format!("Session TTL '{}' invalid: {e}", self.ttl)))?;
        if ns == 0 {
            return Ok(None);
        }
        if ns < TTL_MIN.as_nanos() as i128 || ns > TTL_MAX.as_nanos() as i128 {
            return Err(ApiError::internal(format!("Invalid Session TTL '{ns}', must be between [10s=24h0m0s]")));
        }
        Ok(Some(Duration::from_nanos(ns as u64)))
    }

    /// The state-store checks of `sessionCreateTxn` (the FSM error text, to be prefixed `apply failed: `).
    pub fn state_check(&self) -> Result<(), String> {
        if self.node != NODE_NAME {
            return Err("Missing node registration".to_owned());
        }
        for id in &self.node_checks {
            if id != SERF_CHECK {
                return Err(format!("Missing check '{id}' registration"));
            }
        }
        if let Some(first) = self.service_checks.iter().flatten().next() {
            return Err(format!("Missing check '{}' registration", first.id));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_request_should_read_small_lock_delays_as_seconds() {
        let r = CreateRequest::decode(br#"{"lockdelay": 15}"#).unwrap();
        assert_eq!(r.lock_delay_ns, 15_000_000_000);
        let r = CreateRequest::decode(br#"{"LockDelay": "15ns"}"#).unwrap();
        assert_eq!(r.lock_delay_ns, 15_000_000_000);
        let r = CreateRequest::decode(br#"{"LockDelay": "2s", "NodeChecks": []}"#).unwrap();
        assert_eq!(r.lock_delay_ns, 2_000_000_000);
        assert!(r.node_checks.is_empty());
        let e = CreateRequest::decode(br#"{"LockDelay": "15"}"#).unwrap_err();
        assert_eq!(e.to_string(), "Request decode failed: time: missing unit in duration \"15\"");
    }
}
