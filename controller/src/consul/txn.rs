//! Consul transactions (`PUT /v1/txn`, contract A9): atomic batches of KV operations.
//!
//! Values go base64 in the request body (C5). A rollback is HTTP 409 with `Errors[{OpIndex, What}]`, ACL denials of
//! single operations included (C8); it is an outcome, not an error.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::client::{Client, Error, Request, RequestError};
use super::kv::KvPair;
use crate::tls::REQUEST_TIMEOUT;

/// The most operations Drover puts in one transaction: the documented limit, which older servers enforce (C8).
pub const MAX_TXN_OPS: usize = 64;

/// One KV operation of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOp {
    /// Write unconditionally.
    Set {
        /// Key.
        key: String,
        /// Value bytes.
        value: Vec<u8>,
        /// Flags.
        flags: u64,
    },
    /// Write only if `ModifyIndex == index` (0: only if absent).
    Cas {
        /// Key.
        key: String,
        /// Value bytes.
        value: Vec<u8>,
        /// Flags.
        flags: u64,
        /// Expected `ModifyIndex`.
        index: u64,
    },
    /// Read one key; fails the transaction when it is missing.
    Get {
        /// Key.
        key: String,
    },
    /// Read every key under a prefix.
    GetTree {
        /// Prefix.
        key: String,
    },
    /// Fail unless the key exists with `ModifyIndex == index`.
    CheckIndex {
        /// Key.
        key: String,
        /// Expected `ModifyIndex`.
        index: u64,
    },
    /// Fail if the key exists.
    CheckNotExists {
        /// Key.
        key: String,
    },
    /// Delete unconditionally.
    Delete {
        /// Key.
        key: String,
    },
    /// Delete every key under a prefix.
    DeleteTree {
        /// Prefix.
        key: String,
    },
    /// Delete only if `ModifyIndex == index` (or the key is already gone).
    DeleteCas {
        /// Key.
        key: String,
        /// Expected `ModifyIndex`.
        index: u64,
    },
}

impl TxnOp {
    /// The key or prefix the operation is about.
    pub fn key(&self) -> &str {
        match self {
            Self::Set { key, .. }
            | Self::Cas { key, .. }
            | Self::Get { key }
            | Self::GetTree { key }
            | Self::CheckIndex { key, .. }
            | Self::CheckNotExists { key }
            | Self::Delete { key }
            | Self::DeleteTree { key }
            | Self::DeleteCas { key, .. } => key,
        }
    }

    fn wire(&self) -> WireOp<'_> {
        let (verb, value, flags, index) = match self {
            Self::Set { value, flags, .. } => ("set", Some(value), Some(*flags), None),
            Self::Cas { value, flags, index, .. } => ("cas", Some(value), Some(*flags), Some(*index)),
            Self::Get { .. } => ("get", None, None, None),
            Self::GetTree { .. } => ("get-tree", None, None, None),
            Self::CheckIndex { index, .. } => ("check-index", None, None, Some(*index)),
            Self::CheckNotExists { .. } => ("check-not-exists", None, None, None),
            Self::Delete { .. } => ("delete", None, None, None),
            Self::DeleteTree { .. } => ("delete-tree", None, None, None),
            Self::DeleteCas { index, .. } => ("delete-cas", None, None, Some(*index)),
        };
        WireOp { kv: WireKv { verb, key: self.key(), value: value.map(|v| STANDARD.encode(v)), flags, index } }
    }
}

/// The body element; Consul rejects unknown fields here (contract §0), so only documented ones are sent.
#[derive(Serialize)]
struct WireOp<'a> {
    #[serde(rename = "KV")]
    kv: WireKv<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct WireKv<'a> {
    verb: &'static str,
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flags: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<u64>,
}

/// Why Consul rolled back one operation.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TxnError {
    /// 0-based position of the failing operation.
    #[serde(rename = "OpIndex")]
    pub op_index: usize,
    /// Consul's message, e.g. `failed to set key "k", index is stale`.
    #[serde(rename = "What")]
    pub what: String,
}

/// The result of a transaction Consul judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Everything applied; one entry per operation that yields one (deletes and `check-not-exists` yield none).
    /// Write verbs return their entry with the new `ModifyIndex` and an empty value.
    Committed(Vec<KvPair>),
    /// Nothing applied; every failing operation is listed.
    RolledBack(Vec<TxnError>),
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(rename = "Results", default)]
    results: Option<Vec<WireResult>>,
    #[serde(rename = "Errors", default)]
    errors: Option<Vec<TxnError>>,
}

#[derive(Deserialize)]
struct WireResult {
    #[serde(rename = "KV")]
    kv: Option<KvPair>,
}

impl Client {
    /// Runs up to [`MAX_TXN_OPS`] operations atomically.
    pub async fn txn(&self, ops: &[TxnOp]) -> Result<TxnOutcome, Error> {
        let first_key = ops.first().map(|op| op.key().to_owned()).unwrap_or_default();
        if ops.len() > MAX_TXN_OPS {
            return Err(Error::TxnTooLarge { ops: ops.len(), limit: MAX_TXN_OPS });
        }
        let fail = |source| Error::TxnFailed { ops: ops.len(), first_key: first_key.clone(), source };
        let wire: Vec<WireOp<'_>> = ops.iter().map(TxnOp::wire).collect();
        let body = serde_json::to_vec(&wire).map_err(|e| fail(RequestError::Decode(e)))?;
        let response = self
            .send(Request {
                op: "txn",
                method: Method::PUT,
                path: "/v1/txn".to_owned(),
                query: Vec::new(),
                body: Some(&body),
                timeout: REQUEST_TIMEOUT,
            })
            .await
            .map_err(fail)?;
        match response.status {
            StatusCode::OK => {
                let parsed: WireResponse = response.json().map_err(fail)?;
                let entries = parsed.results.unwrap_or_default().into_iter().filter_map(|r| r.kv).collect();
                Ok(TxnOutcome::Committed(entries))
            }
            StatusCode::CONFLICT => {
                let parsed: WireResponse = response.json().map_err(fail)?;
                let errors = parsed.errors.unwrap_or_default();
                // An ACL denial inside a transaction is a 409 with the denial in `Errors`, not a 403 (contract A9):
                // it is counted as a denial all the same.
                if errors.iter().any(|e| e.what.starts_with("Permission denied")) {
                    self.denied("txn");
                }
                Ok(TxnOutcome::RolledBack(errors))
            }
            _ => Err(fail(response.status_error())),
        }
    }

    /// Writes `key` only if its `ModifyIndex` is `index` (0: only if absent), through a one-operation transaction
    /// so the answer carries the entry's new `ModifyIndex`.
    ///
    /// `Ok(Some(new_index))` when written, `Ok(None)` when the index was stale. The controller uses the returned
    /// index to recognise its own status write without reading it back.
    pub async fn cas_via_txn(&self, key: &str, value: &[u8], index: u64) -> Result<Option<u64>, Error> {
        let op = TxnOp::Cas { key: key.to_owned(), value: value.to_vec(), flags: 0, index };
        match self.txn(std::slice::from_ref(&op)).await? {
            TxnOutcome::Committed(entries) => match entries.first() {
                Some(entry) => Ok(Some(entry.modify_index)),
                None => Err(Error::TxnFailed {
                    ops: 1,
                    first_key: key.to_owned(),
                    source: RequestError::Status { code: 200, message: "committed cas returned no entry".to_owned() },
                }),
            },
            TxnOutcome::RolledBack(errors) => {
                if errors.iter().all(|e| e.what.contains("index is stale")) && !errors.is_empty() {
                    Ok(None)
                } else {
                    Err(Error::TxnRejected {
                        key: key.to_owned(),
                        what: errors.iter().map(|e| e.what.as_str()).collect::<Vec<_>>().join("; "),
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txn_op_should_encode_values_as_base64_and_omit_unused_fields() {
        let ops = [
            TxnOp::Cas { key: "drover/status/default/web".into(), value: b"{}".to_vec(), flags: 0, index: 12 },
            TxnOp::Delete { key: "k".into() },
        ];
        let wire: Vec<_> = ops.iter().map(TxnOp::wire).collect();
        let json = serde_json::to_string(&wire).unwrap();
        assert_eq!(
            json,
            r#"[{"KV":{"Verb":"cas","Key":"drover/status/default/web","Value":"e30=","Flags":0,"Index":12}},{"KV":{"Verb":"delete","Key":"k"}}]"#
        );
    }
}
