//! Namespaces: `GET /v1/namespaces` (a blocking query on the `namespaces` table), `GET|POST|PUT /v1/namespace/:name`,
//! `POST|PUT /v1/namespace`, and the `/_sim/nomad/namespaces` shortcut, all writing through the single mutation
//! point so a new namespace moves the Raft index and wakes blocking queries as in Nomad.
//!
//! Sources: `command/agent/namespace_endpoint.go` (`NamespacesRequest`: `[]` rather than `null`; the create
//! handler writes no body, only `X-Nomad-Index`; a path name that differs from the body's is 400
//! `Namespace name does not match request path`), `nomad/namespace_endpoint.go` (`ListNamespaces`: blocking, the
//! index is the `namespaces` table index floored at 1, entries filtered by `AllowNamespace`, i.e. any capability in
//! the namespace; `UpsertNamespaces` needs a management token), `nomad/structs/structs.go` (`Namespace.Validate`,
//! name `^[a-zA-Z0-9-]{1,128}$`), `nomad/state/state_store.go` (`upsertNamespaceImpl`: `CreateIndex` kept on an
//! update). A namespace write emits no event-stream event (no `Namespace` topic in `nomad/state/events.go`).

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use super::Nomad;
use super::error::{ApiError, multierror};
use super::http::{Query, block_list, caller, decode_body, read_response};
use super::state::{NamespaceRow, Table, Txn};

/// `Namespace.Validate`'s limit on `Description`.
const MAX_DESCRIPTION: usize = 256;

/// Whether `name` matches Nomad's `validNamespaceName` (`^[a-zA-Z0-9-]{1,128}$`).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Creates or updates a namespace inside a write (`upsertNamespaceImpl`): `CreateIndex` survives an update.
pub fn upsert(txn: &mut Txn<'_>, name: &str, description: &str) {
    let index = txn.index;
    let create_index = txn.t.namespaces.get(name).map_or(index, |row| row.create_index);
    txn.t.namespaces.insert(
        name.to_owned(),
        NamespaceRow { description: description.to_owned(), create_index, modify_index: index },
    );
    txn.touch(Table::Namespaces);
}

/// The validation errors of an upsert (`Namespace.Validate`), Nomad's texts.
fn validate(name: &str, description: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if !valid_name(name) {
        errors.push(format!("invalid name {name:?}. Must match regex ^[a-zA-Z0-9-]{{1,128}}$"));
    }
    if description.len() > MAX_DESCRIPTION {
        errors.push(format!("description longer than {MAX_DESCRIPTION}"));
    }
    errors
}

/// Validates and writes one namespace; returns the write's index. Errors carry Nomad's status and text.
pub fn create(n: &Nomad, name: &str, description: &str) -> Result<u64, ApiError> {
    let errors = validate(name, description);
    if !errors.is_empty() {
        return Err(ApiError::internal(format!("Invalid namespace {name:?}: {}", multierror(&errors))));
    }
    let mut st = n.lock();
    Ok(st.write(&n.shared, "NamespaceUpsertRequestType", |txn| {
        upsert(txn, name, description);
        txn.index
    }))
}

fn render(name: &str, row: &NamespaceRow) -> Value {
    json!({"Name": name, "Description": row.description, "Quota": "", "Meta": null,
        "CreateIndex": row.create_index, "ModifyIndex": row.modify_index})
}

/// `GET /v1/namespaces`: blocking on the `namespaces` table index; `prefix`; only namespaces the token sees.
pub async fn list(
    State(n): State<Arc<Nomad>>,
    method: Method,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let q = Query::parse(raw.as_deref());
    let r = async {
        if method != Method::GET {
            return Err(ApiError::invalid_method());
        }
        let who = caller(&n, &headers)?;
        let prefix = q.get("prefix").unwrap_or("").to_owned();
        let (rows, index) = block_list(
            &n,
            &q,
            |st| st.t.table_index.namespaces.max(1),
            |st| {
                st.t.namespaces
                    .iter()
                    .filter(|(name, _)| name.starts_with(&prefix) && who.sees(name))
                    .map(|(name, row)| render(name, row))
                    .collect::<Vec<_>>()
            },
        )
        .await?;
        Ok(read_response(&n, &q, &Value::Array(rows), index))
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}

/// `GET|PUT|POST /v1/namespace/:name`.
pub async fn named(
    State(n): State<Arc<Nomad>>,
    Path(name): Path<String>,
    method: Method,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    one(&n, Some(name), &method, raw.as_deref(), &headers, &body).await
}

/// `PUT|POST /v1/namespace` (the name comes from the body).
pub async fn root(
    State(n): State<Arc<Nomad>>,
    method: Method,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    one(&n, None, &method, raw.as_deref(), &headers, &body).await
}

async fn one(
    n: &Nomad,
    name: Option<String>,
    method: &Method,
    raw: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let q = Query::parse(raw);
    let r = async {
        let who = caller(n, headers)?;
        match (method, name.as_deref()) {
            (&Method::GET, Some(name)) => {
                if !who.sees(name) {
                    return Err(ApiError::permission_denied());
                }
                let (row, index) = super::http::block(n, &q, |st| match st.t.namespaces.get(name) {
                    Some(row) => (Some(row.clone()), row.modify_index),
                    None => (None, st.t.table_index.namespaces.max(1)),
                })
                .await?;
                match row {
                    Some(row) => Ok(read_response(n, &q, &render(name, &row), index)),
                    None => Err(ApiError::not_found("Namespace not found").with_index(index)),
                }
            }
            (&Method::PUT | &Method::POST, path_name) => {
                let obj = decode_body(body, "structs.Namespace")?;
                let field = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                let (body_name, description) = (field("Name"), field("Description"));
                if path_name.is_some_and(|p| p != body_name) {
                    return Err(ApiError::bad_request("Namespace name does not match request path"));
                }
                if !who.is_management() {
                    return Err(ApiError::permission_denied());
                }
                let index = create(n, &body_name, &description)?;
                let mut resp = StatusCode::OK.into_response();
                resp.headers_mut().insert("X-Nomad-Index", HeaderValue::from(index));
                Ok(resp)
            }
            _ => Err(ApiError::invalid_method()),
        }
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}
