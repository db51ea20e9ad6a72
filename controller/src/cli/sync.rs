//! `drover sync SOURCE` (one sync, or `--watch` for a long-running one) and `drover sync status [NAME]`: a thin
//! layer over [`crate::sync`] that parses flags and prints reports.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::Serialize;

use super::{ConsulArgs, Output, PrefixArg};
use crate::metrics::Metrics;
use crate::sync::diff::{record_text, unified};
use crate::sync::outcome::{self, SyncOutcome, SyncResult};
use crate::sync::watch::{WatchConfig, watch};
use crate::sync::{Action, Problem, Report, Source, SyncName, SyncSpec, run_once};

/// `drover sync`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SyncArgs {
    /// `status`: show the recorded outcome of syncs.
    #[command(subcommand)]
    pub command: Option<SyncCommand>,
    /// The sync itself.
    #[command(flatten)]
    pub run: RunArgs,
}

/// `drover sync`'s subcommands.
#[derive(Subcommand, Debug)]
pub enum SyncCommand {
    /// Show the outcome of the last sync of every sync (or of NAME), as recorded at <prefix>/sync/<name>.
    Status(StatusArgs),
}

/// `drover sync SOURCE …`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// A directory, or a git URL (file://, https://, ssh://, git@host:repo).
    #[arg(required = true)]
    pub source: Option<String>,
    /// Branch, tag or commit to sync (git only; default: the remote's HEAD).
    #[arg(long = "ref")]
    pub git_ref: Option<String>,
    /// Folder of the source holding the records (read recursively; default: all of it).
    #[arg(long)]
    pub path: Option<String>,
    /// The sync's name (owner annotation, outcome key); default derived from the source and path.
    #[arg(long)]
    pub name: Option<String>,
    /// Delete this sync's records that left the source (never hand-written or another sync's records, nor those
    /// annotated drover.io/prune: "false").
    #[arg(long)]
    pub prune: bool,
    /// Print the plan and a diff per changed record; write nothing.
    #[arg(long, conflicts_with = "watch")]
    pub dry_run: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Keep syncing: every --interval, and at once on a signed webhook; under a Consul lock.
    #[arg(long)]
    pub watch: bool,
    /// How often --watch syncs without a webhook.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration, requires = "watch")]
    pub interval: Duration,
    /// Where --watch serves /metrics, /healthz and the webhook, POST /api/v1/sync/<name> (refused without
    /// --webhook-secret-file).
    #[arg(long, requires = "watch")]
    pub listen: Option<SocketAddr>,
    /// File holding the webhook's shared secret (GitHub's X-Hub-Signature-256 HMAC); trailing whitespace ignored.
    #[arg(long, requires = "listen")]
    pub webhook_secret_file: Option<String>,
    /// With --watch: tell webhook targets of every failed sync (`SyncFailed`, once per revision until a sync
    /// succeeds). The same file as
    /// `drover run --notifications` (README "Notifications"), checked before the watch starts.
    #[arg(long, requires = "watch")]
    pub notifications: Option<std::path::PathBuf>,
    /// Consul connection.
    #[command(flatten)]
    pub consul: ConsulArgs,
    /// KV prefix.
    #[command(flatten)]
    pub prefix: PrefixArg,
}

/// `drover sync status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Only this sync.
    pub name: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Consul connection.
    #[command(flatten)]
    pub consul: ConsulArgs,
    /// KV prefix.
    #[command(flatten)]
    pub prefix: PrefixArg,
}

/// The shortest `--interval`: syncing more often than this is a busy loop against the git server.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// `drover sync`; exit code 0 when the sync succeeded, 1 otherwise.
pub async fn sync(args: SyncArgs) -> anyhow::Result<u8> {
    match args.command {
        Some(SyncCommand::Status(status_args)) => status(status_args).await.map(|()| 0),
        None => run(args.run).await,
    }
}

fn spec(args: &RunArgs) -> anyhow::Result<SyncSpec> {
    let Some(source) = args.source.as_deref() else { bail!("a SOURCE is required") };
    let name = match &args.name {
        Some(n) => n.parse::<SyncName>()?,
        None => SyncName::derive(source, args.path.as_deref()),
    };
    Ok(SyncSpec {
        source: Source::parse(source),
        git_ref: args.git_ref.clone(),
        path: args.path.clone(),
        name,
        prune: args.prune,
        prefix: args.prefix.prefix.clone(),
    })
}

async fn run(args: RunArgs) -> anyhow::Result<u8> {
    let spec = spec(&args)?;
    let metrics = Arc::new(Metrics::new());
    let consul = args.consul.client(metrics.clone())?;
    if args.watch {
        if args.interval < MIN_INTERVAL {
            bail!("--interval must be at least {}", humantime::format_duration(MIN_INTERVAL));
        }
        let notifier = match &args.notifications {
            Some(path) => Some(crate::notify::Notifier::<crate::notify::SyncEvent>::start(
                super::notifications(path)?,
                metrics.clone(),
            )),
            None => None,
        };
        super::run::init_logging(super::run::LogFormat::Text);
        let secret = match &args.webhook_secret_file {
            Some(path) => {
                let text = std::fs::read(path).with_context(|| format!("cannot read --webhook-secret-file {path}"))?;
                let secret = text.trim_ascii_end().to_vec();
                if secret.is_empty() {
                    bail!("--webhook-secret-file {path} is empty");
                }
                Some(secret)
            }
            None => None,
        };
        let listener = match args.listen {
            Some(addr) => {
                Some(tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?)
            }
            None => None,
        };
        if let Some(l) = &listener {
            let addr = l.local_addr()?;
            eprintln!("metrics on http://{addr}/metrics");
            if secret.is_some() {
                eprintln!("webhook listening on http://{addr}/api/v1/sync/{}", spec.name);
            }
        }
        let config = WatchConfig { spec, interval: args.interval, secret };
        let output = args.output;
        let events = crate::notify::SyncEvents::default();
        watch(consul, config, listener, metrics.clone(), super::run::signal(), move |report| {
            let _ = print_report(report, output, false);
            // Queued, never awaited: a slow receiver never delays the next sync.
            if let (Some(event), Some(n)) = (events.after(&report.outcome), &notifier) {
                n.send(&event);
            }
        })
        .await
        .context("the webhook server failed")?;
        return Ok(0);
    }
    let report = run_once(&consul, &spec, args.dry_run, 1, SystemTime::now).await;
    print_report(&report, args.output, args.dry_run)?;
    if let Some(e) = &report.record_error {
        eprintln!("{e}");
    }
    let ok = report.outcome.result == SyncResult::Succeeded && report.record_error.is_none();
    Ok(if ok { 0 } else { 1 })
}

/// One plan row as `-o json` prints it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PlanRow {
    app: String,
    action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    index: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    diff: Option<String>,
}

/// What `-o json` prints.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReportView<'a> {
    dry_run: bool,
    outcome: &'a SyncOutcome,
    plan: Vec<PlanRow>,
    problems: &'a [Problem],
}

fn print_report(report: &Report, output: Output, dry_run: bool) -> anyhow::Result<()> {
    let rows: Vec<PlanRow> = report
        .plan
        .iter()
        .flat_map(|p| &p.items)
        .map(|item| {
            let diff = match (dry_run, &item.action) {
                (true, Action::Create | Action::Update | Action::Prune) => {
                    let old = item.current.as_deref().map(record_text).unwrap_or_default();
                    let new = item.desired.as_deref().filter(|_| item.action != Action::Prune).map(record_text);
                    Some(unified(&old, &new.unwrap_or_default()))
                }
                _ => None,
            };
            PlanRow {
                app: item.key.to_string(),
                action: item.action.as_str(),
                file: item.file.clone(),
                index: item.index,
                diff,
            }
        })
        .collect();
    let o = &report.outcome;
    if output != Output::Table {
        let view = ReportView { dry_run, outcome: o, plan: rows, problems: &report.problems };
        match output {
            Output::Yaml => print!("{}", serde_saphyr::to_string(&view).context("cannot encode YAML")?),
            _ => println!("{}", serde_json::to_string_pretty(&view).context("cannot encode JSON")?),
        }
    } else {
        let revision = o.revision.as_deref().unwrap_or("-");
        println!("sync {} of {} at {revision}", o.name, o.source);
        if !rows.is_empty() {
            println!("{:<10} {:<32} FILE", "ACTION", "APP");
            for row in &rows {
                println!("{:<10} {:<32} {}", row.action, row.app, row.file.as_deref().unwrap_or("-"));
            }
            for row in rows.iter().filter(|r| r.diff.as_deref().is_some_and(|d| !d.is_empty())) {
                println!("\n--- {} ({})", row.app, row.action);
                print!("{}", row.diff.as_deref().unwrap_or_default());
            }
        }
        let c = &o.counts;
        println!(
            "{}: {} created, {} updated, {} unchanged, {} pruned, {} orphaned, {} retained, {} conflicts{}",
            o.result.as_str(),
            c.created,
            c.updated,
            c.unchanged,
            c.pruned,
            c.orphaned,
            c.retained,
            c.conflicts,
            if dry_run { " (dry run: nothing written)" } else { "" }
        );
    }
    for e in &o.errors {
        eprintln!("{e}");
    }
    match o.result {
        SyncResult::Invalid => eprintln!("{} problem(s) found; nothing was written", report.problems.len()),
        SyncResult::Conflicted if !dry_run => {
            eprintln!("{} record(s) not written because of conflicts", o.counts.conflicts)
        }
        _ => {}
    }
    Ok(())
}

async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let consul = args.consul.client(Arc::new(Metrics::new()))?;
    let mut outcomes = outcome::list(&consul, &args.prefix.prefix).await.context("cannot read the syncs' outcomes")?;
    if let Some(name) = &args.name {
        outcomes.retain(|o| &o.name == name);
        if outcomes.is_empty() {
            bail!("no sync named {name:?} has recorded an outcome under {}/sync/", args.prefix.prefix);
        }
    }
    match (output_one(&args, &outcomes), args.output) {
        (Some(one), Output::Json) => println!("{}", serde_json::to_string_pretty(one)?),
        (Some(one), Output::Yaml) => print!("{}", serde_saphyr::to_string(one)?),
        (None, Output::Json) => println!("{}", serde_json::to_string_pretty(&outcomes)?),
        (None, Output::Yaml) => print!("{}", serde_saphyr::to_string(&outcomes)?),
        (_, Output::Table) => {
            println!(
                "{:<20} {:<11} {:<14} {:<21} {:>7} {:>7} {:>9} {:>6} {:>9}",
                "NAME", "RESULT", "REVISION", "FINISHED", "CREATED", "UPDATED", "UNCHANGED", "PRUNED", "CONFLICTS"
            );
            for o in &outcomes {
                let c = &o.counts;
                let revision: String = o.revision.as_deref().unwrap_or("-").chars().take(12).collect();
                println!(
                    "{:<20} {:<11} {:<14} {:<21} {:>7} {:>7} {:>9} {:>6} {:>9}",
                    o.name,
                    o.result.as_str(),
                    revision,
                    o.finished_at,
                    c.created,
                    c.updated,
                    c.unchanged,
                    c.pruned,
                    c.conflicts
                );
            }
            if let Some(one) = output_one(&args, &outcomes) {
                println!("source: {}", one.source);
                for e in &one.errors {
                    println!("  {e}");
                }
            }
        }
    }
    Ok(())
}

fn output_one<'a>(args: &StatusArgs, outcomes: &'a [SyncOutcome]) -> Option<&'a SyncOutcome> {
    args.name.as_ref().and_then(|_| outcomes.first())
}
