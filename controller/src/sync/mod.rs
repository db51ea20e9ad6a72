//! GitOps (issue #10): `drover sync` keeps the records in Consul KV equal to the records in a directory or a git
//! repository.
//!
//! # Layout
//! - [`source`]: where the records come from — a directory, or a git URL checked out with the `git` CLI into a
//!   temporary directory (shallow fetch of one ref) — and the files read from it;
//! - [`load`]: every document of every file validated with the controller's own loader ([`crate::app::load_for`])
//!   before anything is written, and stamped with the sync's annotations;
//! - [`mod@plan`]: the pure comparison of those records with what Consul holds: create, update, unchanged, prune;
//! - [`diff`]: a line diff of a record, for `--dry-run`;
//! - [`execute`]: the plan written in transactions of at most [`crate::consul::txn::MAX_TXN_OPS`] operations, each
//!   record guarded by CAS on the index the plan read;
//! - [`outcome`]: what one sync did, recorded at `<prefix>/sync/<name>`;
//! - [`run`]: one sync start to end (read, validate, plan, write, record), for `drover sync` and each round of
//!   `--watch`;
//! - [`watch`]: `--watch`, a long-running sync under a Consul lock, on a timer and on a webhook;
//! - [`webhook`]: `X-Hub-Signature-256` (GitHub's HMAC-SHA256 of the body) for `drover sync --watch`.
//!
//! A sync never reads or writes anything but `<prefix>/apps/…` and its own `<prefix>/sync/<name>…` keys: controls
//! (`<prefix>/control/…`) and statuses belong to people and to the controller.

pub mod diff;
pub mod execute;
pub mod load;
pub mod metrics;
pub mod outcome;
pub mod plan;
pub mod run;
pub mod source;
pub mod watch;
pub mod webhook;

use std::fmt;
use std::str::FromStr;

pub use execute::{Applied, Conflict, execute};
pub use load::{Problem, SourceRecord, Stamp, load_records};
pub use outcome::{Counts, SyncOutcome, SyncResult};
pub use plan::{Action, Plan, PlanItem, plan};
pub use run::{Report, SyncSpec, run_once};
pub use source::{Checkout, Source, SourceError, checkout};

/// The annotation naming the sync that wrote a record: `--prune` deletes only records carrying its own name.
pub const SYNC_ANNOTATION: &str = "drover.io/sync";
/// The annotation naming where a record came from: the repository (or directory) and the file in it.
pub const SOURCE_ANNOTATION: &str = "drover.io/source";
/// The annotation naming the revision (git commit, or a directory's content digest) that last changed a record.
///
/// It is bookkeeping: a new commit that leaves a record as it was does not rewrite it (no new generation), so the
/// value is the commit that last *changed* the record, not the last one synced.
pub const REVISION_ANNOTATION: &str = "drover.io/revision";
/// `drover.io/prune: "false"` keeps a record even after it left the source and `--prune` is given.
pub const PRUNE_ANNOTATION: &str = "drover.io/prune";

/// The longest sync name accepted: it is a Consul key segment and an annotation value people read.
pub const MAX_NAME_CHARS: usize = 63;

/// A sync's name: which records it owns (`drover.io/sync`) and where its outcome lives (`<prefix>/sync/<name>`).
/// Lowercase letters, digits, `-`, `_` and `.`, starting with a letter or digit, at most [`MAX_NAME_CHARS`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SyncName(String);

/// Why a text is not a sync name. Not retryable: the name must change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "sync name {0:?} is not valid: use 1 to 63 lowercase letters, digits, '-', '_' or '.', starting with a letter or \
     digit"
)]
pub struct InvalidSyncName(pub String);

impl SyncName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A name derived from a source: the repository's (or directory's) last path segment without `.git`, plus the
    /// `--path` folder's last segment when one is given, lowercased with anything else turned into `-`
    /// (`https://github.com/acme/deploy.git` + `apps/prod` → `deploy-prod`). `sync` when nothing usable is left.
    pub fn derive(source: &str, path: Option<&str>) -> SyncName {
        let last = |text: &str| {
            text.trim_end_matches('/').rsplit(['/', ':']).next().unwrap_or_default().trim_end_matches(".git").to_owned()
        };
        let mut raw = last(source);
        if let Some(p) = path.map(last).filter(|p| !p.is_empty() && p != ".") {
            raw = if raw.is_empty() { p } else { format!("{raw}-{p}") };
        }
        let mut name: String = raw
            .chars()
            .map(|c| c.to_ascii_lowercase())
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '-' })
            .collect();
        name = name.trim_start_matches(['-', '_', '.']).chars().take(MAX_NAME_CHARS).collect();
        if name.is_empty() { SyncName("sync".to_owned()) } else { SyncName(name) }
    }

    /// `<prefix>/sync/<name>`: where the outcome of the last sync is recorded.
    pub fn outcome_kv_key(&self, prefix: &str) -> String {
        format!("{}/sync/{}", prefix.trim_end_matches('/'), self.0)
    }

    /// `<prefix>/sync/<name>/lock`: the key `drover sync --watch` holds with a Consul session, so two replicas
    /// watching the same source never sync at once.
    pub fn lock_kv_key(&self, prefix: &str) -> String {
        format!("{}/lock", self.outcome_kv_key(prefix))
    }
}

impl FromStr for SyncName {
    type Err = InvalidSyncName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let first_ok = s.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok = s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
        if first_ok && rest_ok && s.chars().count() <= MAX_NAME_CHARS {
            Ok(SyncName(s.to_owned()))
        } else {
            Err(InvalidSyncName(s.to_owned()))
        }
    }
}

impl fmt::Display for SyncName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_name_should_be_derived_from_the_source_and_path() {
        assert_eq!(SyncName::derive("https://github.com/acme/deploy.git", None).as_str(), "deploy");
        assert_eq!(SyncName::derive("https://github.com/acme/deploy", Some("apps/prod/")).as_str(), "deploy-prod");
        assert_eq!(SyncName::derive("git@github.com:acme/Deploy_Repo.git", None).as_str(), "deploy_repo");
        assert_eq!(SyncName::derive("/srv/My Records/", None).as_str(), "my-records");
        assert_eq!(SyncName::derive("/", None).as_str(), "sync");
    }

    #[test]
    fn sync_name_should_refuse_what_is_not_a_key_segment() {
        assert!("prod-apps".parse::<SyncName>().is_ok());
        for bad in ["", "Prod", "a/b", "-x", &"a".repeat(64)] {
            assert!(bad.parse::<SyncName>().is_err(), "{bad:?}");
        }
        let name: SyncName = "deploy".parse().unwrap();
        assert_eq!(name.outcome_kv_key("drover/"), "drover/sync/deploy");
        assert_eq!(name.lock_kv_key("drover"), "drover/sync/deploy/lock");
    }
}
