//! `PUT /v1/txn` (api-contract.md A9): limits, decoding, the read-only fast path with its `QueryMeta`, and the
//! write path through `Consul::apply`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::{MAX_VALUE_SIZE, method_gate, read_body};
use crate::consul::Consul;
use crate::consul::error::ApiError;
use crate::consul::http::{Query, go_quote, json_ok, parse_read_options, parse_token};
use crate::consul::state::{Op, OpResult};
use crate::consul::txn::{self, MAX_TXN_OPS};

pub(super) async fn txn_handler(
    State(c): State<Arc<Consul>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(r) = method_gate(&method, &[Method::PUT], "OPTIONS,PUT") {
        return r;
    }
    match txn_inner(&c, &uri, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn conflict_or_ok(status_ok: bool, body: Vec<u8>) -> Response {
    if status_ok {
        json_ok(body)
    } else {
        (
            StatusCode::CONFLICT,
            [(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"))],
            body,
        )
            .into_response()
    }
}

async fn txn_inner(c: &Consul, uri: &Uri, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    let q = Query::parse(uri.query());
    let token = parse_token(&q, headers);
    let raw = read_body(headers, body, MAX_VALUE_SIZE, true).await?;
    let ops = txn::decode(&raw)?;
    if ops.len() > MAX_TXN_OPS {
        return Err(ApiError::too_large(format!(
            "Transaction contains too many operations ({} > {MAX_TXN_OPS})",
            ops.len()
        )));
    }
    for op in &ops {
        if op.value.len() > MAX_VALUE_SIZE {
            return Err(ApiError::too_large(format!(
                "Value for key {} is too large ({} > {MAX_VALUE_SIZE} bytes)",
                go_quote(&op.key),
                op.value.len()
            )));
        }
    }
    let writes = ops.iter().filter(|o| o.is_write()).count();
    if writes == 0 {
        // Read-only: `s.parse` runs (consistency and wait/index 400s), then `Txn.Read` without Raft.
        parse_read_options(&q)?;
        let who = c.resolve(&token)?;
        let now = c.now();
        let (outcome, filtered) = {
            let mut s = c.lock();
            let errors = txn::pre_check(&ops, &who, |k| s.in_lock_delay(k, now));
            if !errors.is_empty() {
                (Err(errors), false)
            } else {
                let state = &mut *s;
                match txn::dispatch(&mut state.kv, &state.sessions, 0, &ops, now) {
                    Ok(results) => {
                        let total = results.len();
                        let visible: Vec<_> = results.into_iter().filter(|e| who.can_read_key(&e.key)).collect();
                        let filtered = visible.len() != total;
                        (Ok(visible), filtered)
                    }
                    Err(e) => (Err(e), false),
                }
            }
        };
        let mut resp = conflict_or_ok(outcome.is_ok(), txn::read_body(&outcome, filtered && !who.is_anonymous()));
        resp.headers_mut().insert("x-consul-lastcontact", HeaderValue::from_static("0"));
        resp.headers_mut().insert("x-consul-knownleader", HeaderValue::from_static("true"));
        return Ok(resp);
    }
    let who = c.resolve(&token)?;
    let now = c.now();
    let errors = {
        let s = c.lock();
        txn::pre_check(&ops, &who, |k| s.in_lock_delay(k, now))
    };
    if !errors.is_empty() {
        return Ok(conflict_or_ok(false, txn::write_body(&Err(errors))));
    }
    let outcome = match c.apply(Op::Txn(ops)) {
        Ok(OpResult::Txn(o)) => o,
        Ok(_) => Ok(Vec::new()),
        Err(e) => return Err(ApiError::internal(format!("raft apply failed: {e}"))),
    };
    let outcome = outcome.map(|r| r.into_iter().filter(|e| who.can_read_key(&e.key)).collect());
    Ok(conflict_or_ok(outcome.is_ok(), txn::write_body(&outcome)))
}
