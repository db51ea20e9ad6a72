//! What one sync did, recorded at `<prefix>/sync/<name>` (JSON) and shown by `drover sync status`.

use serde::{Deserialize, Serialize};

use super::SyncName;
use crate::consul::{self, BlockingQuery, Client};

/// The most errors an outcome keeps (the rest are counted in a last entry), so it stays far below Consul's value
/// limit whatever the source holds.
pub const MAX_OUTCOME_ERRORS: usize = 100;

/// How a sync ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncResult {
    /// Every record of the source is in Consul (written, or already as the source says).
    Succeeded,
    /// The source holds invalid records: nothing was written.
    Invalid,
    /// Some records were not written (changed by hand meanwhile, another sync's, or refused); the others were.
    Conflicted,
    /// The source could not be read, or Consul failed mid-way.
    Failed,
}

impl SyncResult {
    /// The name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncResult::Succeeded => "Succeeded",
            SyncResult::Invalid => "Invalid",
            SyncResult::Conflicted => "Conflicted",
            SyncResult::Failed => "Failed",
        }
    }
}

/// How many records took each path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Records created.
    pub created: usize,
    /// Records rewritten because the source changed them.
    pub updated: usize,
    /// Records already as the source says (not written).
    pub unchanged: usize,
    /// Records deleted by `--prune`.
    pub pruned: usize,
    /// This sync's records that left the source, kept because `--prune` was not given.
    pub orphaned: usize,
    /// This sync's records that left the source, kept because of `drover.io/prune: "false"`.
    pub retained: usize,
    /// Records not written because of a conflict.
    pub conflicts: usize,
}

/// The record of one sync.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncOutcome {
    /// The sync's name.
    pub name: String,
    /// The source, without credentials.
    pub source: String,
    /// The `--path` folder, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The `--ref` asked for, if any.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// The revision synced (commit, or directory digest); absent when the source could not be read.
    #[serde(default)]
    pub revision: Option<String>,
    /// When the sync ended (RFC 3339, UTC).
    pub finished_at: String,
    /// How it ended.
    pub result: SyncResult,
    /// Records per decision.
    pub counts: Counts,
    /// Every problem (invalid records, conflicts, failures), bounded by [`MAX_OUTCOME_ERRORS`].
    #[serde(default)]
    pub errors: Vec<String>,
    /// Consul transactions sent.
    #[serde(default)]
    pub transactions: usize,
    /// Bytes of record values written.
    #[serde(default)]
    pub bytes_written: usize,
    /// Which run of the process this was (1 for `drover sync`; counts up under `--watch`), so an observer can tell
    /// one sync from the next even when both saw the same revision.
    #[serde(default)]
    pub run: u64,
}

impl SyncOutcome {
    /// Keeps at most [`MAX_OUTCOME_ERRORS`] errors, each at most 512 characters.
    pub fn bound_errors(&mut self) {
        for e in &mut self.errors {
            if let Some((cut, _)) = e.char_indices().nth(512) {
                e.truncate(cut);
                e.push('…');
            }
        }
        if self.errors.len() > MAX_OUTCOME_ERRORS {
            let more = self.errors.len() - (MAX_OUTCOME_ERRORS - 1);
            self.errors.truncate(MAX_OUTCOME_ERRORS - 1);
            self.errors.push(format!("… and {more} more"));
        }
    }
}

/// Writes `outcome` at `<prefix>/sync/<name>` (a plain write: the last sync's outcome wins, and only the lock
/// holder writes under `--watch`).
///
/// # Errors
/// Consul failed.
pub async fn record(
    client: &Client,
    prefix: &str,
    name: &SyncName,
    outcome: &SyncOutcome,
) -> Result<(), consul::Error> {
    let key = name.outcome_kv_key(prefix);
    let bytes = serde_json::to_vec_pretty(outcome).unwrap_or_default();
    client.put(&key, &bytes).await
}

/// Every recorded outcome (`<prefix>/sync/<name>`; lock keys and values that are not outcomes are skipped), by name.
///
/// # Errors
/// Consul failed.
pub async fn list(client: &Client, prefix: &str) -> Result<Vec<SyncOutcome>, consul::Error> {
    let base = format!("{}/sync/", prefix.trim_end_matches('/'));
    let listing = client.list(&base, BlockingQuery::now()).await?;
    let mut out: Vec<SyncOutcome> = listing
        .entries
        .iter()
        .filter(|e| e.key.strip_prefix(&base).is_some_and(|name| !name.contains('/')))
        .filter_map(|e| serde_json::from_slice(&e.value).ok())
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_errors_should_keep_the_outcome_small() {
        let mut o = SyncOutcome {
            name: "x".into(),
            source: "s".into(),
            path: None,
            git_ref: None,
            revision: None,
            finished_at: "t".into(),
            result: SyncResult::Invalid,
            counts: Counts::default(),
            errors: vec!["é".repeat(1000); 500],
            transactions: 0,
            bytes_written: 0,
            run: 1,
        };
        o.bound_errors();
        assert_eq!(o.errors.len(), MAX_OUTCOME_ERRORS);
        assert_eq!(o.errors[0].chars().count(), 513);
        assert_eq!(o.errors[MAX_OUTCOME_ERRORS - 1], "… and 401 more");
    }
}
