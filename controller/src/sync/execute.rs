//! Carrying out a [`Plan`]: its writes in Consul transactions of at most [`MAX_TXN_OPS`] operations, each record
//! guarded by CAS on the index the plan read (`cas` with index 0 for a create, `delete-cas` for a prune).
//!
//! A transaction is all or nothing (api-contract A9): when Consul rolls one back (409), every failing operation is
//! listed. Those records are taken out and the rest of the batch is sent again, so a record edited by hand during a
//! sync costs only itself. Each record whose index was stale is then read again and re-planned alone: if it already
//! holds what the sync would write (another replica, or a person, wrote the same), it has converged; otherwise it is
//! a conflict — reported, never overwritten.

use std::collections::BTreeSet;

use super::plan::{Action, Plan, PlanItem, same_record};
use crate::app::AppKey;
use crate::consul::txn::MAX_TXN_OPS;
use crate::consul::{self, Client, TxnOp, TxnOutcome};

/// A record the sync did not write because someone else holds it or changed it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Conflict {
    /// The app.
    pub key: String,
    /// Why it was not written.
    pub reason: String,
}

/// What [`execute`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Records created.
    pub created: usize,
    /// Records updated.
    pub updated: usize,
    /// Records deleted by `--prune`.
    pub pruned: usize,
    /// Records that were stale at write time but already held what the sync would write.
    pub converged: usize,
    /// Records not written: changed or created by someone else since the plan read them, owned by another sync, or
    /// refused by Consul (an ACL denial of one operation).
    pub conflicts: Vec<Conflict>,
    /// Transactions sent (rolled-back ones included).
    pub transactions: usize,
    /// Bytes of record values written by committed transactions.
    pub bytes_written: usize,
}

/// Why a sync's writes stopped. Nothing after the failing transaction was sent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A transaction could not be sent or judged (Consul unreachable, 5xx, …). Retryable: the next sync re-plans.
    #[error("writing the sync's records failed")]
    WriteFailed(#[source] consul::Error),
    /// Re-reading a record after its write was rolled back failed. Retryable.
    #[error("re-reading record {key} after a conflict failed")]
    RereadFailed {
        /// The app.
        key: String,
        /// What went wrong.
        #[source]
        source: consul::Error,
    },
    /// Consul rolled a transaction back without naming an operation of it, so retrying could loop. Not retryable
    /// without a person looking.
    #[error("Consul rolled back a transaction of {ops} operations without naming one: {what}")]
    RolledBackWithoutReason {
        /// Operations in the transaction.
        ops: usize,
        /// What Consul said.
        what: String,
    },
}

/// The operation carrying out `item`, if it writes.
fn op(prefix: &str, item: &PlanItem) -> Option<TxnOp> {
    let key = item.key.app_kv_key(prefix);
    match (&item.action, &item.desired) {
        (Action::Create | Action::Update, Some(value)) => {
            Some(TxnOp::Cas { key, value: value.clone(), flags: 0, index: item.index })
        }
        (Action::Prune, _) => Some(TxnOp::DeleteCas { key, index: item.index }),
        _ => None,
    }
}

/// Writes `plan` for the installation using `prefix`.
///
/// # Errors
/// A transaction could not be sent or judged; the writes before it stand (each was CAS-guarded and is reported by
/// the next sync's plan as unchanged).
pub async fn execute(client: &Client, prefix: &str, plan: &Plan) -> Result<Applied, Error> {
    let mut applied = Applied::default();
    for item in &plan.items {
        if let Action::OwnedElsewhere { sync } = &item.action {
            applied.conflicts.push(Conflict {
                key: item.key.to_string(),
                reason: format!("the record belongs to sync {sync:?} (annotation drover.io/sync); not written"),
            });
        }
    }
    let writes: Vec<(&PlanItem, TxnOp)> = plan.items.iter().filter_map(|i| Some((i, op(prefix, i)?))).collect();
    for chunk in writes.chunks(MAX_TXN_OPS) {
        let mut batch: Vec<&(&PlanItem, TxnOp)> = chunk.iter().collect();
        let mut stale: Vec<&PlanItem> = Vec::new();
        while !batch.is_empty() {
            let ops: Vec<TxnOp> = batch.iter().map(|(_, op)| op.clone()).collect();
            applied.transactions += 1;
            match client.txn(&ops).await.map_err(Error::WriteFailed)? {
                TxnOutcome::Committed(_) => {
                    for (item, op) in &batch {
                        count(&mut applied, item, op);
                    }
                    break;
                }
                TxnOutcome::RolledBack(errors) => {
                    let failing: BTreeSet<usize> =
                        errors.iter().map(|e| e.op_index).filter(|i| *i < batch.len()).collect();
                    if failing.is_empty() {
                        let what = errors.iter().map(|e| e.what.as_str()).collect::<Vec<_>>().join("; ");
                        return Err(Error::RolledBackWithoutReason { ops: batch.len(), what });
                    }
                    for e in errors.iter().filter(|e| e.op_index < batch.len()) {
                        let (item, _) = batch[e.op_index];
                        if e.what.contains("index is stale") {
                            stale.push(item);
                        } else {
                            applied.conflicts.push(Conflict { key: item.key.to_string(), reason: e.what.clone() });
                        }
                    }
                    batch =
                        batch.into_iter().enumerate().filter(|(i, _)| !failing.contains(i)).map(|(_, b)| b).collect();
                }
            }
        }
        for item in stale {
            replan(client, prefix, item, &mut applied).await?;
        }
    }
    Ok(applied)
}

fn count(applied: &mut Applied, item: &PlanItem, op: &TxnOp) {
    match item.action {
        Action::Create => applied.created += 1,
        Action::Update => applied.updated += 1,
        Action::Prune => applied.pruned += 1,
        _ => {}
    }
    if let TxnOp::Cas { value, .. } = op {
        applied.bytes_written += value.len();
    }
}

/// A record whose CAS failed, read again: converged when it already holds what the sync would write, a conflict
/// otherwise (the person's edit stands; the next sync, or `drover sync` again, decides on the new index).
async fn replan(client: &Client, prefix: &str, item: &PlanItem, applied: &mut Applied) -> Result<(), Error> {
    let key: &AppKey = &item.key;
    let now = client
        .get(&key.app_kv_key(prefix))
        .await
        .map_err(|source| Error::RereadFailed { key: key.to_string(), source })?;
    let desired = item.desired.as_deref().and_then(super::plan::document);
    let converged = match (&item.action, &now, &desired) {
        (Action::Create | Action::Update, Some(entry), Some(value)) => same_record(&entry.value, value),
        (Action::Prune, None, _) => true,
        _ => false,
    };
    if converged {
        applied.converged += 1;
        return Ok(());
    }
    let reason = match (&now, item.index) {
        (None, _) => format!("deleted by someone else since it was read at index {}; not written", item.index),
        (Some(e), 0) => {
            format!("created by someone else (index {}) since the sync read it; not overwritten", e.modify_index)
        }
        (Some(e), read) => {
            format!("changed by someone else since it was read (index {read} → {}); not overwritten", e.modify_index)
        }
    };
    applied.conflicts.push(Conflict { key: key.to_string(), reason });
    Ok(())
}
