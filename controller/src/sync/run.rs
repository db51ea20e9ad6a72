//! One sync, start to end: read the source, validate everything, plan, write, record the outcome. Shared by
//! `drover sync` and every round of `drover sync --watch`.

use std::time::SystemTime;

use super::execute::{self, Applied};
use super::load::{Problem, load_records};
use super::outcome::{self, Counts, SyncOutcome, SyncResult};
use super::plan::{Plan, plan};
use super::source::{Source, checkout};
use super::{Stamp, SyncName};
use crate::consul::{BlockingQuery, Client};

/// What to sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncSpec {
    /// Where the records are.
    pub source: Source,
    /// The branch, tag or commit (git only); the remote's `HEAD` when `None`.
    pub git_ref: Option<String>,
    /// The folder of the source holding the records; the whole source when `None`.
    pub path: Option<String>,
    /// The sync's name.
    pub name: SyncName,
    /// Whether this sync's records that left the source are deleted.
    pub prune: bool,
    /// The installation's KV prefix.
    pub prefix: String,
}

/// Everything one sync found and did, for the command to print.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The outcome (recorded at `<prefix>/sync/<name>` unless this was a dry run).
    pub outcome: SyncOutcome,
    /// The plan, when the source was valid and Consul could be read.
    pub plan: Option<Plan>,
    /// The source's invalid documents.
    pub problems: Vec<Problem>,
    /// What the writes did (not for a dry run).
    pub applied: Option<Applied>,
    /// Why the outcome could not be recorded at `<prefix>/sync/<name>`, if it could not.
    pub record_error: Option<String>,
}

/// Runs one sync (`dry_run`: plan only, write nothing, record nothing). `run` numbers the syncs of a process; `now`
/// is the wall clock, read when the sync ends.
///
/// Failures are part of the report (its outcome is `Failed`), not an `Err`: the watch loop records them like any
/// other outcome, and a failure to record the outcome itself is [`Report::record_error`], so the report is still
/// printed.
pub async fn run_once(client: &Client, spec: &SyncSpec, dry_run: bool, run: u64, now: fn() -> SystemTime) -> Report {
    let mut report = sync(client, spec, dry_run).await;
    report.outcome.run = run;
    report.outcome.finished_at = crate::status::timestamp(now());
    report.outcome.bound_errors();
    if !dry_run && let Err(e) = outcome::record(client, &spec.prefix, &spec.name, &report.outcome).await {
        report.record_error = Some(format!("cannot record the outcome: {}", crate::error_chain(&e)));
    }
    report
}

async fn sync(client: &Client, spec: &SyncSpec, dry_run: bool) -> Report {
    let mut outcome = SyncOutcome {
        name: spec.name.to_string(),
        source: spec.source.label(),
        path: spec.path.clone(),
        git_ref: spec.git_ref.clone(),
        revision: None,
        finished_at: String::new(),
        result: SyncResult::Failed,
        counts: Counts::default(),
        errors: Vec::new(),
        transactions: 0,
        bytes_written: 0,
        run: 0,
    };
    let failed = |mut outcome: SyncOutcome, error: String| {
        outcome.errors.push(error);
        Report { outcome, plan: None, problems: Vec::new(), applied: None, record_error: None }
    };
    let (source, git_ref, path) = (spec.source.clone(), spec.git_ref.clone(), spec.path.clone());
    let read = tokio::task::spawn_blocking(move || checkout(&source, git_ref.as_deref(), path.as_deref())).await;
    let checkout = match read {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return failed(outcome, format!("cannot read the source: {}", crate::error_chain(&e))),
        Err(e) => return failed(outcome, format!("reading the source stopped: {e}")),
    };
    outcome.revision = Some(checkout.revision.clone());
    let stamp = Stamp { sync: spec.name.clone(), label: checkout.label.clone(), revision: checkout.revision.clone() };
    let records = match load_records(&spec.prefix, &checkout.files, &stamp) {
        Ok(records) => records,
        Err(problems) => {
            outcome.result = SyncResult::Invalid;
            outcome.errors = problems.iter().map(|p| format!("invalid: {p}")).collect();
            return Report { outcome, plan: None, problems, applied: None, record_error: None };
        }
    };
    let apps = format!("{}/apps/", spec.prefix.trim_end_matches('/'));
    let current = match client.list(&apps, BlockingQuery::now()).await {
        Ok(listing) => listing,
        Err(e) => return failed(outcome, format!("cannot read the records: {}", crate::error_chain(&e))),
    };
    let plan = plan(&spec.prefix, &records, &current.entries, &spec.name, spec.prune);
    outcome.counts = Counts {
        created: plan.count("create"),
        updated: plan.count("update"),
        unchanged: plan.count("unchanged"),
        pruned: plan.count("prune"),
        orphaned: plan.count("orphaned"),
        retained: plan.count("retained"),
        conflicts: plan.count("conflict"),
    };
    if dry_run {
        outcome.result = if outcome.counts.conflicts > 0 { SyncResult::Conflicted } else { SyncResult::Succeeded };
        return Report { outcome, plan: Some(plan), problems: Vec::new(), applied: None, record_error: None };
    }
    let applied = match execute::execute(client, &spec.prefix, &plan).await {
        Ok(applied) => applied,
        Err(e) => return failed(outcome, format!("writing stopped: {}", crate::error_chain(&e))),
    };
    outcome.counts.created = applied.created;
    outcome.counts.updated = applied.updated;
    outcome.counts.pruned = applied.pruned;
    outcome.counts.unchanged += applied.converged;
    outcome.counts.conflicts = applied.conflicts.len();
    outcome.transactions = applied.transactions;
    outcome.bytes_written = applied.bytes_written;
    outcome.errors = applied.conflicts.iter().map(|c| format!("conflict: {}: {}", c.key, c.reason)).collect();
    outcome.result = if applied.conflicts.is_empty() { SyncResult::Succeeded } else { SyncResult::Conflicted };
    Report { outcome, plan: Some(plan), problems: Vec::new(), applied: Some(applied), record_error: None }
}
