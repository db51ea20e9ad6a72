//! `drover get`, `drover describe` and `drover delete`: read records and statuses straight from Consul KV, so they
//! work whether or not a controller is running.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;

use super::{ConsulArgs, Output, PrefixArg};
use crate::app::AppKey;
use crate::consul::{BlockingQuery, Client};
use crate::metrics::Metrics;
use crate::status::AppStatus;
use crate::store::key_from_status_kv_key;

/// `drover get`.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// Only this app (`name` or `namespace/name`).
    pub app: Option<String>,
    /// Only this namespace.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
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

/// `drover describe`.
#[derive(Args, Debug)]
pub struct DescribeArgs {
    /// The app (`name` or `namespace/name`).
    pub app: String,
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

/// `drover delete`.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// The app (`name` or `namespace/name`).
    pub app: String,
    /// Consul connection.
    #[command(flatten)]
    pub consul: ConsulArgs,
    /// KV prefix.
    #[command(flatten)]
    pub prefix: PrefixArg,
}

/// One app as `get -o json` prints it.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct AppRow {
    namespace: String,
    name: String,
    generation: Option<u64>,
    status: Option<AppStatus>,
}

pub(super) fn parse_key(text: &str) -> anyhow::Result<AppKey> {
    AppKey::from_str(text).map_err(|e| anyhow::anyhow!("app {text:?}: {e}"))
}

async fn rows(consul: &Client, prefix: &str) -> anyhow::Result<BTreeMap<AppKey, AppRow>> {
    let records = consul.list(&format!("{prefix}/apps/"), BlockingQuery::now()).await.context("cannot list records")?;
    let statuses =
        consul.list(&format!("{prefix}/status/"), BlockingQuery::now()).await.context("cannot list statuses")?;
    let mut rows = BTreeMap::new();
    let row = |key: &AppKey| AppRow {
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        generation: None,
        status: None,
    };
    for e in &records.entries {
        if let Some(key) = AppKey::from_kv_key(prefix, &e.key) {
            rows.entry(key.clone()).or_insert_with(|| row(&key)).generation = Some(e.modify_index);
        }
    }
    for e in &statuses.entries {
        if let Some(key) = key_from_status_kv_key(prefix, &e.key) {
            rows.entry(key.clone()).or_insert_with(|| row(&key)).status = serde_json::from_slice(&e.value).ok();
        }
    }
    Ok(rows)
}

fn print_structured<T: Serialize>(value: &T, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Yaml => print!("{}", serde_saphyr::to_string(value).context("cannot encode YAML")?),
        _ => println!("{}", serde_json::to_string_pretty(value).context("cannot encode JSON")?),
    }
    Ok(())
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// The table `get` prints (also used by `drover dev`'s live view).
pub fn table<'a>(rows: impl IntoIterator<Item = (&'a AppKey, Option<u64>, Option<&'a AppStatus>)>) -> String {
    let mut out = format!(
        "{:<12} {:<20} {:>6} {:<12} {:>5} {:>7} {:>9}  {}\n",
        "NAMESPACE", "NAME", "GEN", "PHASE", "STEP", "VERSION", "HEALTHY", "MESSAGE"
    );
    for (key, generation, status) in rows {
        let phase = status.map_or("-", |s| s.phase.as_str());
        let version = status.and_then(|s| s.applied_job_version).map_or("-".to_string(), |v| v.to_string());
        let healthy = status
            .filter(|s| s.replicas.desired > 0)
            .map_or("-".to_string(), |s| format!("{}/{}", s.replicas.healthy, s.replicas.desired));
        let message = super::rollout_view::paused_message(status)
            .map(|m| truncate(&m, 70))
            .or_else(|| {
                status
                    .and_then(|s| {
                        s.condition(crate::status::ConditionType::Valid)
                            .filter(|c| c.status != crate::status::ConditionStatus::True)
                            .or(s.condition(crate::status::ConditionType::Ready))
                    })
                    .map(|c| truncate(&c.message, 70))
            })
            .unwrap_or_default();
        let generation = generation.map_or("-".to_string(), |g| g.to_string());
        out.push_str(&format!(
            "{:<12} {:<20} {:>6} {:<12} {:>5} {:>7} {:>9}  {}\n",
            truncate(&key.namespace, 12),
            truncate(&key.name, 20),
            generation,
            phase,
            super::rollout_view::step_cell(status),
            version,
            healthy,
            message
        ));
    }
    out
}

/// `drover get`.
pub async fn get(args: GetArgs) -> anyhow::Result<()> {
    let consul = args.consul.client(Arc::new(Metrics::new()))?;
    let only = args.app.as_deref().map(parse_key).transpose()?;
    let rows: Vec<AppRow> = rows(&consul, &args.prefix.prefix)
        .await?
        .into_iter()
        .filter(|(k, _)| only.as_ref().is_none_or(|o| o == k))
        .filter(|(k, _)| args.namespace.as_ref().is_none_or(|n| n == &k.namespace))
        .map(|(_, r)| r)
        .collect();
    if let Some(key) = &only
        && rows.is_empty()
    {
        bail!("app {key} not found");
    }
    match args.output {
        Output::Table => {
            let keyed: Vec<(AppKey, &AppRow)> =
                rows.iter().map(|r| (AppKey::new(r.namespace.clone(), r.name.clone()), r)).collect();
            print!("{}", table(keyed.iter().map(|(k, r)| (k, r.generation, r.status.as_ref()))));
            Ok(())
        }
        other => print_structured(&rows, other),
    }
}

/// `drover describe`.
pub async fn describe(args: DescribeArgs) -> anyhow::Result<()> {
    let consul = args.consul.client(Arc::new(Metrics::new()))?;
    let key = parse_key(&args.app)?;
    let record = consul.get(&key.app_kv_key(&args.prefix.prefix)).await.context("cannot read the record")?;
    let status_pair = consul.get(&key.status_kv_key(&args.prefix.prefix)).await.context("cannot read the status")?;
    if record.is_none() && status_pair.is_none() {
        bail!("app {key} not found");
    }
    let status: Option<AppStatus> = status_pair.as_ref().and_then(|p| serde_json::from_slice(&p.value).ok());
    if args.output != Output::Table {
        let row = AppRow {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            generation: record.as_ref().map(|r| r.modify_index),
            status,
        };
        return print_structured(&row, args.output);
    }
    print!("{}", describe_text(&key, record.as_ref().map(|r| r.modify_index), status.as_ref()));
    Ok(())
}

/// The text of `drover describe`.
pub fn describe_text(key: &AppKey, generation: Option<u64>, status: Option<&AppStatus>) -> String {
    let mut out = String::new();
    let line = |out: &mut String, label: &str, value: String| out.push_str(&format!("{label:<14}{value}\n"));
    line(&mut out, "App:", key.to_string());
    line(&mut out, "Generation:", generation.map_or("record deleted".to_string(), |g| g.to_string()));
    let Some(s) = status else {
        line(&mut out, "Status:", "none yet (is the controller running?)".to_string());
        return out;
    };
    line(&mut out, "Observed:", s.observed_generation.to_string());
    line(&mut out, "Phase:", s.phase.as_str().to_string());
    if let Some(job) = &s.job_id {
        let version = s.applied_job_version.map_or("-".to_string(), |v| v.to_string());
        let jmi = s.applied_job_modify_index.map_or("-".to_string(), |v| v.to_string());
        line(&mut out, "Job:", format!("{job} (version {version}, JobModifyIndex {jmi})"));
    }
    if let Some(hash) = &s.applied_hash {
        line(&mut out, "Applied hash:", truncate(hash, 16));
    }
    if let Some(d) = &s.deployment {
        line(
            &mut out,
            "Deployment:",
            format!("{} {} (job version {}): {}", d.id, d.status, d.job_version, d.description),
        );
    }
    let r = &s.replicas;
    line(
        &mut out,
        "Replicas:",
        format!("{} desired, {} placed, {} healthy, {} canaries", r.desired, r.placed, r.healthy, r.canaries),
    );
    if let Some(rollout) = &s.rollout {
        out.push_str(&super::rollout_view::rollout_text(rollout));
    }
    if let Some(control) = &s.last_control {
        out.push_str(&super::rollout_view::control_text(control));
    }
    line(&mut out, "Last error:", s.last_error.clone().unwrap_or_else(|| "-".to_string()));
    line(&mut out, "Updated:", s.updated_at.clone());
    out.push_str("Conditions:\n");
    for c in &s.conditions {
        out.push_str(&format!(
            "  {:<10} {:<8} {:<22} {}  ({})\n",
            c.type_,
            format!("{:?}", c.status),
            c.reason,
            c.message,
            c.last_transition_time
        ));
    }
    out.push_str("History:\n");
    for h in &s.history {
        let version = h.job_version.map_or("-".to_string(), |v| v.to_string());
        out.push_str(&format!("  gen {:<8} version {:<5} {:<12} {}\n", h.generation, version, h.result, h.at));
    }
    out
}

/// `drover delete`.
pub async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    let consul = args.consul.client(Arc::new(Metrics::new()))?;
    let key = parse_key(&args.app)?;
    let kv_key = key.app_kv_key(&args.prefix.prefix);
    if consul.get(&kv_key).await.context("cannot read the record")?.is_none() {
        bail!("app {key} not found");
    }
    consul.delete(&kv_key).await.with_context(|| format!("cannot delete {kv_key}"))?;
    println!("app {key} deleted; the controller applies its deletionPolicy to the job");
    Ok(())
}
