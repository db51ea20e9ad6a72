//! `PUT /v1/txn` (api-contract.md A9): body decoding with `DisallowUnknownFields`, the pre-checks of `Txn.Apply`
//! (empty key, ACLs, lock-delay), and the all-or-nothing dispatch of `state/txn.go` with its exact error texts.

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use super::acl::Identity;
use super::error::ApiError;
use super::http::go_quote;
use super::kv::{DirEntry, KvStore};
use super::session::SessionTable;
use crate::SimInstant;

/// `maxTxnOps`.
pub const MAX_TXN_OPS: usize = 128;

/// One KV op of a transaction (`api.KVTxnOp`).
#[derive(Debug, Clone, Default)]
pub struct TxnKvOp {
    /// The verb as sent (`set`, `cas`, ...).
    pub verb: String,
    /// Key or prefix.
    pub key: String,
    /// Decoded value bytes.
    pub value: Bytes,
    /// Flags.
    pub flags: u64,
    /// `Index` (the CAS / check index).
    pub index: u64,
    /// Session for lock/unlock/check-session.
    pub session: String,
}

impl TxnKvOp {
    /// Whether the verb writes (`isWrite`).
    pub fn is_write(&self) -> bool {
        matches!(self.verb.as_str(), "set" | "delete" | "delete-cas" | "delete-tree" | "cas" | "lock" | "unlock")
    }

    fn entry(&self) -> DirEntry {
        DirEntry {
            key: self.key.clone(),
            value: self.value.clone(),
            flags: self.flags,
            session: self.session.clone(),
            ..DirEntry::default()
        }
    }
}

/// One failed op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TxnError {
    /// 0-based index of the op.
    #[serde(rename = "OpIndex")]
    pub op_index: usize,
    /// The error text.
    #[serde(rename = "What")]
    pub what: String,
}

/// A transaction's outcome: the results of every op, or every error.
pub type TxnOutcome = Result<Vec<DirEntry>, Vec<TxnError>>;

fn parse_err(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("Failed to parse body: {e}"))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Matches a JSON field name to a Go field name case-insensitively, as `encoding/json` does.
fn canonical<'a>(name: &str, fields: &[&'a str]) -> Option<&'a str> {
    fields
        .iter()
        .copied()
        .find(|f| *f == name)
        .or_else(|| fields.iter().copied().find(|f| f.eq_ignore_ascii_case(name)))
}

/// Decodes the body into ops, as `lib.DecodeJSON` into `api.TxnOps` with `DisallowUnknownFields` does.
pub fn decode(body: &[u8]) -> Result<Vec<TxnKvOp>, ApiError> {
    let v: Value = super::http::decode_first_json(body).map_err(parse_err)?;
    let items = match v {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        other => {
            return Err(parse_err(format!("json: cannot unmarshal {} into Go value of type api.TxnOps", kind(&other))));
        }
    };
    let mut ops = Vec::with_capacity(items.len());
    for item in items {
        let obj = match item {
            Value::Object(o) => o,
            Value::Null => continue,
            other => {
                return Err(parse_err(format!(
                    "json: cannot unmarshal {} into Go value of type api.TxnOp",
                    kind(&other)
                )));
            }
        };
        let mut kv = None;
        for (name, value) in obj {
            match canonical(&name, &["KV", "Node", "Service", "Check"]) {
                Some("KV") => kv = Some(decode_kv(value)?),
                Some(other) => {
                    if !value.is_null() {
                        return Err(ApiError::internal(format!(
                            "drover-sim models only KV operations in transactions, not {other}"
                        )));
                    }
                }
                None => return Err(parse_err(format!("json: unknown field {}", go_quote(&name)))),
            }
        }
        // An op with no KV part carries nothing the model knows; Consul's `convertOps` skips it too.
        if let Some(op) = kv {
            ops.push(op);
        }
    }
    Ok(ops)
}

fn decode_kv(value: Value) -> Result<TxnKvOp, ApiError> {
    use base64::Engine;
    let obj = match value {
        Value::Object(o) => o,
        Value::Null => return Ok(TxnKvOp::default()),
        other => {
            return Err(parse_err(format!(
                "json: cannot unmarshal {} into Go struct field TxnOp.KV of type api.KVTxnOp",
                kind(&other)
            )));
        }
    };
    let fields = ["Verb", "Key", "Value", "Flags", "Index", "Session", "Namespace", "Partition"];
    let mut op = TxnKvOp::default();
    for (name, v) in obj {
        let Some(field) = canonical(&name, &fields) else {
            return Err(parse_err(format!("json: unknown field {}", go_quote(&name))));
        };
        let mismatch = |ty: &str, v: &Value| {
            parse_err(format!(
                "json: cannot unmarshal {} into Go struct field KVTxnOp.KV.{field} of type {ty}",
                kind(v)
            ))
        };
        match field {
            "Verb" | "Key" | "Session" | "Namespace" | "Partition" => {
                let s = match &v {
                    Value::Null => String::new(),
                    Value::String(s) => s.clone(),
                    other => return Err(mismatch("string", other)),
                };
                match field {
                    "Verb" => op.verb = s,
                    "Key" => op.key = s,
                    "Session" => op.session = s,
                    _ => {}
                }
            }
            "Flags" | "Index" => {
                let n = match &v {
                    Value::Null => 0,
                    Value::Number(n) => n.as_u64().ok_or_else(|| mismatch("uint64", &v))?,
                    other => return Err(mismatch("uint64", other)),
                };
                if field == "Flags" {
                    op.flags = n;
                } else {
                    op.index = n;
                }
            }
            _ => {
                op.value = match &v {
                    Value::Null => Bytes::new(),
                    Value::String(s) => Bytes::from(
                        base64::engine::general_purpose::STANDARD
                            .decode(s)
                            .map_err(|e| parse_err(go_base64_err(&e)))?,
                    ),
                    other => return Err(mismatch("[]uint8", other)),
                };
            }
        }
    }
    Ok(op)
}

fn go_base64_err(e: &base64::DecodeError) -> String {
    match e {
        base64::DecodeError::InvalidByte(at, _) | base64::DecodeError::InvalidLastSymbol(at, _) => {
            format!("illegal base64 data at input byte {at}")
        }
        _ => "illegal base64 data at input byte 0".to_owned(),
    }
}

/// `Txn.preCheck` → `kvsPreApply` for every op, collecting every failure: empty key, unknown verb, ACL, lock-delay.
pub fn pre_check(ops: &[TxnKvOp], who: &Identity, in_lock_delay: impl Fn(&str) -> bool) -> Vec<TxnError> {
    let mut errors = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let mut fail = |what: String| errors.push(TxnError { op_index: i, what });
        if op.key.is_empty() && op.verb != "delete-tree" {
            fail("Must provide key".to_owned());
            continue;
        }
        let acl = match op.verb.as_str() {
            "delete-tree" => who.key_write_prefix(&op.key),
            "get" | "get-tree" | "get-or-empty" => Ok(()),
            "check-session" | "check-index" => who.key_read(&op.key),
            "check-not-exists" | "unlock" | "lock" | "cas" | "delete-cas" | "delete" | "set" => who.key_write(&op.key),
            other => {
                fail(format!("unknown KV operation: {other}"));
                continue;
            }
        };
        if let Err(e) = acl {
            fail(e.to_string());
            continue;
        }
        if op.verb == "lock" && in_lock_delay(&op.key) {
            fail(format!("failed to lock key {} due to lock delay", go_quote(&op.key)));
        }
    }
    errors
}

/// `txnDispatch`: runs every op on `kv` (the caller's copy), collecting all results and all errors.
pub fn dispatch(kv: &mut KvStore, sessions: &SessionTable, idx: u64, ops: &[TxnKvOp], now: SimInstant) -> TxnOutcome {
    let mut results = Vec::with_capacity(ops.len());
    let mut errors = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let q = go_quote(&op.key);
        let r: Result<Vec<DirEntry>, String> = match op.verb.as_str() {
            "set" => Ok(vec![kv.set(idx, op.entry(), false).without_value()]),
            "cas" => kv
                .set_cas(idx, op.entry(), op.index)
                .map(|e| vec![e.without_value()])
                .ok_or_else(|| format!("failed to set key {q}, index is stale")),
            "lock" => {
                let exists = sessions.sessions.contains_key(&op.session);
                kv.lock(idx, op.entry(), exists).and_then(|r| {
                    r.map(|e| vec![e.without_value()])
                        .ok_or_else(|| format!("failed to lock key {q}, lock is already held"))
                })
            }
            "unlock" => kv.unlock(idx, op.entry()).and_then(|r| {
                r.map(|e| vec![e.without_value()])
                    .ok_or_else(|| format!("failed to unlock key {q}, lock isn't held, or is held by another session"))
            }),
            "get" => kv.get(&op.key).1.map(|e| vec![e.clone()]).ok_or_else(|| format!("key {q} doesn't exist")),
            "get-or-empty" => Ok(vec![kv.get(&op.key).1.cloned().unwrap_or_else(|| DirEntry {
                value: Bytes::new(),
                modify_index: op.index,
                ..op.entry()
            })]),
            "get-tree" => Ok(kv.list(&op.key).1.into_iter().cloned().collect()),
            "check-index" => match kv.get(&op.key).1 {
                None => Err(format!("failed to check index, key {q} doesn't exist")),
                Some(e) if e.modify_index != op.index => Err(format!(
                    "failed index check for key {q}, current modify index {} != {}",
                    e.modify_index, op.index
                )),
                Some(e) => Ok(vec![e.without_value()]),
            },
            "check-session" => match kv.get(&op.key).1 {
                None => Err(format!("failed to check session, key {q} doesn't exist")),
                Some(e) if e.session != op.session => Err(format!(
                    "failed session check for key {q}, current session {} != {}",
                    go_quote(&e.session),
                    go_quote(&op.session)
                )),
                Some(e) => Ok(vec![e.without_value()]),
            },
            "check-not-exists" => match kv.get(&op.key).1 {
                Some(_) => Err(format!("key {q} exists")),
                None => Ok(Vec::new()),
            },
            "delete" => {
                kv.delete(idx, &op.key, now);
                Ok(Vec::new())
            }
            "delete-tree" => {
                kv.delete_tree(idx, &op.key, now);
                Ok(Vec::new())
            }
            "delete-cas" => {
                if kv.delete_cas(idx, op.index, &op.key, now) {
                    Ok(Vec::new())
                } else {
                    Err(format!("failed to delete key {q}, index is stale"))
                }
            }
            other => Err(format!("unknown KV verb {}", go_quote(other))),
        };
        match r {
            Ok(mut entries) => results.append(&mut entries),
            Err(what) => errors.push(TxnError { op_index: i, what }),
        }
    }
    if errors.is_empty() { Ok(results) } else { Err(errors) }
}

/// A result wrapped as `{"KV": {...}}`.
#[derive(Serialize)]
struct TxnResult<'a> {
    #[serde(rename = "KV")]
    kv: &'a DirEntry,
}

/// The body of a write txn: `{"Results":[...]|null,"Errors":[...]|null}`.
pub fn write_body(outcome: &TxnOutcome) -> Vec<u8> {
    read_or_write_body(outcome, None)
}

/// The body of a read-only txn, which embeds `QueryMeta` after `Errors`.
pub fn read_body(outcome: &TxnOutcome, filtered: bool) -> Vec<u8> {
    read_or_write_body(outcome, Some(filtered))
}

fn read_or_write_body(outcome: &TxnOutcome, read_meta: Option<bool>) -> Vec<u8> {
    let mut map = serde_json::Map::new();
    let (results, errors) = match outcome {
        Ok(r) => {
            let list: Vec<TxnResult<'_>> = r.iter().map(|kv| TxnResult { kv }).collect();
            (serde_json::to_value(list).unwrap_or(Value::Null), Value::Null)
        }
        Err(e) => (Value::Null, serde_json::to_value(e).unwrap_or(Value::Null)),
    };
    map.insert("Results".into(), results);
    map.insert("Errors".into(), errors);
    if let Some(filtered) = read_meta {
        map.insert("Index".into(), 0.into());
        map.insert("LastContact".into(), 0.into());
        map.insert("KnownLeader".into(), true.into());
        map.insert("ConsistencyLevel".into(), "".into());
        map.insert("NotModified".into(), false.into());
        map.insert("Backend".into(), 0.into());
        map.insert("ResultsFilteredByACLs".into(), filtered.into());
    }
    serde_json::to_vec(&Value::Object(map)).unwrap_or_default()
}
