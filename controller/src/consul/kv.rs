//! Consul KV reads and writes (`/v1/kv/<key>`, contract A3–A5).
//!
//! Values are raw bytes on PUT and base64 in JSON (C5); flags such as `recurse` are sent by presence only (C6); a PUT
//! or DELETE answers `true`/`false` with 200, a failed CAS included (C7); a 404 still carries `X-Consul-Index` (C4).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Deserializer};

use super::client::{Client, Error, RawResponse, Request, RequestError};
use super::{BlockingQuery, DEFAULT_WAIT, MAX_WAIT};
use crate::tls::{self, REQUEST_TIMEOUT, encode_path};

/// One KV entry as Consul returns it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KvPair {
    /// The full key.
    pub key: String,
    /// The stored bytes; empty when Consul sends `null` (an empty value, or a txn result that omits values).
    #[serde(default, deserialize_with = "base64_value")]
    pub value: Vec<u8>,
    /// Opaque flags.
    #[serde(default)]
    pub flags: u64,
    /// The session holding the lock on this key, if any.
    #[serde(default)]
    pub session: Option<String>,
    /// Times the key was acquired by a session; reset to 0 by a plain write.
    #[serde(default)]
    pub lock_index: u64,
    /// Raft index of the key's creation.
    #[serde(default)]
    pub create_index: u64,
    /// Raft index of the key's last real write; a CAS guard.
    #[serde(default)]
    pub modify_index: u64,
}

#[cfg(test)]
impl KvPair {
    /// A key as a plain write at `index` leaves it (created and modified then, no session), for tests.
    pub(crate) fn written(key: &str, index: u64, value: &[u8]) -> KvPair {
        KvPair {
            key: key.into(),
            value: value.to_vec(),
            flags: 0,
            session: None,
            lock_index: 0,
            create_index: index,
            modify_index: index,
        }
    }
}

fn base64_value<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(Vec::new()),
        Some(text) => STANDARD.decode(text).map_err(serde::de::Error::custom),
    }
}

/// The entries under a prefix with the index to block on next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// Entries in key order (as Consul returns them); empty when the prefix has none (a 404).
    pub entries: Vec<KvPair>,
    /// `X-Consul-Index` of the answer, 404s included.
    pub index: u64,
    /// Size of the response body, for the `consul_read_bytes` counter.
    pub bytes: usize,
    /// Consul's `X-Consul-Results-Filtered-By-ACLs: true`: the token could not see some entries, so a key missing
    /// here may still exist (A1). Consul sets it only for a non-anonymous token.
    pub filtered_by_acls: bool,
}

/// One key read, possibly blocking: the entry (if present) and the index to block on next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRead {
    /// The entry, or `None` when the key is missing.
    pub entry: Option<KvPair>,
    /// `X-Consul-Index` of the answer (for a missing key, the table index: block on it to see the key appear).
    pub index: u64,
}

/// Options of a KV `PUT` beyond the value; each `Some` adds its query parameter (contract A4).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutParams {
    /// `flags=<u64>`.
    pub flags: Option<u64>,
    /// `cas=<index>`: 0 creates only if absent, N writes only if `ModifyIndex == N`.
    pub cas: Option<u64>,
    /// `acquire=<session>`.
    pub acquire: Option<String>,
    /// `release=<session>`.
    pub release: Option<String>,
}

fn kv_path(key: &str) -> String {
    format!("/v1/kv/{}", encode_path(key))
}

fn blocking_timeout(query: &BlockingQuery) -> std::time::Duration {
    if query.is_blocking() { tls::blocking_timeout(query.wait, DEFAULT_WAIT, MAX_WAIT) } else { REQUEST_TIMEOUT }
}

/// Parses a `true`/`false` write answer.
fn parse_bool(response: &RawResponse) -> Result<bool, RequestError> {
    if response.status != StatusCode::OK {
        return Err(response.status_error());
    }
    response.json::<bool>()
}

impl Client {
    /// Reads one key; `None` when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<KvPair>, Error> {
        Ok(self.get_blocking(key, BlockingQuery::now(), false).await?.entry)
    }

    /// Reads one key, blocking per `query`; `consistent` adds `?consistent` (what lock monitoring uses, A8).
    ///
    /// A missing key is a 404 carrying the index to block on until it appears (C4).
    pub async fn get_blocking(&self, key: &str, query: BlockingQuery, consistent: bool) -> Result<KeyRead, Error> {
        let fail = |source| Error::GetFailed { key: key.to_owned(), source };
        let mut params = query.params();
        if consistent {
            params.push(("consistent", None));
        }
        let response = self
            .send(Request {
                op: "kv_get",
                method: Method::GET,
                path: kv_path(key),
                query: params,
                body: None,
                timeout: blocking_timeout(&query),
            })
            .await
            .map_err(fail)?;
        match response.status {
            StatusCode::OK => {
                let index = response.index().map_err(fail)?;
                let entries: Vec<KvPair> = response.json().map_err(fail)?;
                Ok(KeyRead { entry: entries.into_iter().next(), index })
            }
            StatusCode::NOT_FOUND => Ok(KeyRead { entry: None, index: response.index().map_err(fail)? }),
            _ => Err(fail(response.status_error())),
        }
    }

    /// Lists every entry under `prefix` (`?recurse`), blocking per `query`.
    ///
    /// A prefix with no entries is a 404 with an index; it comes back as an empty listing with that index, so the
    /// caller can block on it (C4).
    pub async fn list(&self, prefix: &str, query: BlockingQuery) -> Result<Listing, Error> {
        let fail = |source| Error::ListFailed { prefix: prefix.to_owned(), source };
        let mut params = vec![("recurse", None)];
        params.extend(query.params());
        let response = self
            .send(Request {
                op: "kv_list",
                method: Method::GET,
                path: kv_path(prefix),
                query: params,
                body: None,
                timeout: blocking_timeout(&query),
            })
            .await
            .map_err(fail)?;
        let bytes = response.body.len();
        let filtered_by_acls = response
            .headers
            .get("x-consul-results-filtered-by-acls")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
        match response.status {
            StatusCode::OK => Ok(Listing {
                index: response.index().map_err(fail)?,
                entries: response.json().map_err(fail)?,
                bytes,
                filtered_by_acls,
            }),
            StatusCode::NOT_FOUND => {
                Ok(Listing { entries: Vec::new(), index: response.index().map_err(fail)?, bytes, filtered_by_acls })
            }
            _ => Err(fail(response.status_error())),
        }
    }

    /// Lists the keys under `prefix` (`?keys`), without values; empty when there are none.
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let fail = |source| Error::ListFailed { prefix: prefix.to_owned(), source };
        let response = self
            .send(Request {
                op: "kv_keys",
                method: Method::GET,
                path: kv_path(prefix),
                query: vec![("keys", None)],
                body: None,
                timeout: REQUEST_TIMEOUT,
            })
            .await
            .map_err(fail)?;
        match response.status {
            StatusCode::OK => response.json().map_err(fail),
            StatusCode::NOT_FOUND => Ok(Vec::new()),
            _ => Err(fail(response.status_error())),
        }
    }

    /// Writes a key unconditionally.
    pub async fn put(&self, key: &str, value: &[u8]) -> Result<(), Error> {
        let written = self.put_with(key, value, &PutParams::default()).await?;
        if written {
            Ok(())
        } else {
            // A plain set always answers true (A4); anything else is a server we do not understand.
            Err(Error::PutFailed {
                key: key.to_owned(),
                source: RequestError::Status { code: 200, message: "plain write answered false".to_owned() },
            })
        }
    }

    /// Writes a key only if its `ModifyIndex` is `index` (0: only if absent). `Ok(false)` means the guard failed,
    /// which Consul reports as 200 `false`, not as an error status (C7).
    pub async fn cas(&self, key: &str, value: &[u8], index: u64) -> Result<bool, Error> {
        let params = PutParams { cas: Some(index), ..PutParams::default() };
        self.put_with(key, value, &params).await
    }

    /// Writes a key with explicit parameters and returns Consul's `true`/`false` answer.
    pub async fn put_with(&self, key: &str, value: &[u8], params: &PutParams) -> Result<bool, Error> {
        let fail = |source| Error::PutFailed { key: key.to_owned(), source };
        let mut query = Vec::new();
        if let Some(flags) = params.flags {
            query.push(("flags", Some(flags.to_string())));
        }
        if let Some(cas) = params.cas {
            query.push(("cas", Some(cas.to_string())));
        }
        if let Some(session) = &params.acquire {
            query.push(("acquire", Some(session.clone())));
        }
        if let Some(session) = &params.release {
            query.push(("release", Some(session.clone())));
        }
        let response = self
            .send(Request {
                op: "kv_put",
                method: Method::PUT,
                path: kv_path(key),
                query,
                body: Some(value),
                timeout: REQUEST_TIMEOUT,
            })
            .await
            .map_err(fail)?;
        parse_bool(&response).map_err(fail)
    }

    /// Deletes a key; deleting a missing key succeeds (A5).
    pub async fn delete(&self, key: &str) -> Result<(), Error> {
        self.delete_with(key, None).await.map(|_| ())
    }

    /// Deletes a key only if its `ModifyIndex` is `index`. `Ok(true)` also when the key is already gone (A5).
    pub async fn delete_cas(&self, key: &str, index: u64) -> Result<bool, Error> {
        self.delete_with(key, Some(index)).await
    }

    async fn delete_with(&self, key: &str, cas: Option<u64>) -> Result<bool, Error> {
        let fail = |source| Error::DeleteFailed { key: key.to_owned(), source };
        let query = cas.map(|index| vec![("cas", Some(index.to_string()))]).unwrap_or_default();
        let response = self
            .send(Request {
                op: "kv_delete",
                method: Method::DELETE,
                path: kv_path(key),
                query,
                body: None,
                timeout: REQUEST_TIMEOUT,
            })
            .await
            .map_err(fail)?;
        parse_bool(&response).map_err(fail)
    }
}
