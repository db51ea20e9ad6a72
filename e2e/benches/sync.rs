//! Benchmark of `drover sync` (issue #10): a git repository of 1 000 records synced cold into an empty Consul, then
//! re-synced at a commit that changes no record (the target is 0 writes), then at a commit that changes one record.
//! For each: wall time of the `drover sync` process (shallow fetch, checkout, validation of every record, plan,
//! writes), Consul transactions and record writes counted in the simulator's request log, and the bytes of record
//! values written (the sync's own count; base64 on the wire adds a third). Medians of 3 runs, each against a fresh
//! simulator; no controller runs, so the figures are the sync's alone.
//!
//! Run: `cargo build --release -p drover-sim -p drover --bins && cargo bench -p drover-e2e --bench sync`.
//! `BENCH_RECORDS` changes the number of records (default 1 000).

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::time::Instant;

use common::{Sim, client, info, loadavg, machine, median, release_bin, report};

const RUNS: usize = 3;

/// Runs git in `dir`, isolated from the machine's configuration.
fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Drover Bench", "-c", "user.email=bench@drover.invalid", "-c", "commit.gpgsign=false"])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .context("run git")?;
    if !out.status.success() {
        bail!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn record(i: usize, image: &str) -> String {
    format!(
        "apiVersion: drover.io/v1alpha1\nkind: App\nmetadata:\n  name: app-{i:04}\n  namespace: default\n  labels: \
         {{team: bench}}\nspec:\n  template:\n    image: {image}\n    count: 2\n    ports: {{http: 8080}}\n    \
         resources: {{cpu: 100, memoryMB: 64}}\n  strategy:\n    minHealthyTime: 10s\n    healthyDeadline: 5m\n"
    )
}

/// A repository with tags `cold` (every record), `same` (a README change only) and `one` (one record changed).
fn make_repo(records: usize) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("drover-bench-sync-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("apps"))?;
    git(&dir, &["init", "-q", "-b", "main"])?;
    for i in 0..records {
        std::fs::write(dir.join(format!("apps/app-{i:04}.yaml")), record(i, "ghcr.io/acme/web:1"))?;
    }
    git(&dir, &["add", "-A"])?;
    git(&dir, &["commit", "-q", "-m", "records"])?;
    git(&dir, &["tag", "cold"])?;
    std::fs::write(dir.join("README.md"), "records of the benchmark\n")?;
    git(&dir, &["add", "-A"])?;
    git(&dir, &["commit", "-q", "-m", "docs only"])?;
    git(&dir, &["tag", "same"])?;
    std::fs::write(dir.join("apps/app-0007.yaml"), record(7, "ghcr.io/acme/web:2"))?;
    git(&dir, &["commit", "-q", "-am", "one record"])?;
    git(&dir, &["tag", "one"])?;
    Ok(dir)
}

/// One sync's figures.
struct Figures {
    seconds: f64,
    transactions: f64,
    record_writes: f64,
    bytes: f64,
}

async fn sync(http: &reqwest::Client, sim: &Sim, drover: &Path, repo: &Path, tag: &str) -> anyhow::Result<Figures> {
    let log = |since: u64| {
        let url = format!("{}/_sim/log?since={since}&server=consul", sim.nomad);
        async move { http.get(url).send().await?.error_for_status()?.json::<Value>().await }
    };
    let since = log(0).await?["last_seq"].as_u64().context("last_seq")?;
    let started = Instant::now();
    let out = Command::new(drover)
        .args(["sync", &format!("file://{}", repo.display()), "--ref", tag, "--name", "bench", "-o", "json"])
        .env("CONSUL_HTTP_ADDR", &sim.consul)
        .output()
        .context("run drover sync")?;
    let seconds = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("drover sync --ref {tag} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let report: Value = serde_json::from_slice(&out.stdout).context("sync -o json")?;
    let requests = log(since).await?["requests"].as_array().cloned().unwrap_or_default();
    let writes = |pred: &dyn Fn(&str) -> bool| {
        requests
            .iter()
            .filter(|r| r["method"] == "PUT" || r["method"] == "DELETE")
            .filter(|r| pred(r["path"].as_str().unwrap_or("")))
            .count()
    };
    let transactions = writes(&|p| p == "/v1/txn");
    let plain_record_writes = writes(&|p| p.starts_with("/v1/kv/drover/apps/"));
    let c = &report["outcome"]["counts"];
    let record_writes = ["created", "updated", "pruned"].iter().map(|k| c[k].as_u64().unwrap_or(0)).sum::<u64>()
        + plain_record_writes as u64;
    Ok(Figures {
        seconds,
        transactions: transactions as f64,
        record_writes: record_writes as f64,
        bytes: report["outcome"]["bytesWritten"].as_f64().unwrap_or(f64::NAN),
    })
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")?;
    rt.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let records: usize = std::env::var("BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    println!("sync benchmark (issue #10): {records} records in a git repository, medians of {RUNS} runs");
    println!("  machine: {}; load average at start {}", machine(), loadavg());
    let drover = release_bin("drover", "drover")?;
    let repo = make_repo(records)?;
    let http = client()?;
    let phases = ["cold", "same", "one"];
    let mut figures: Vec<Vec<Figures>> = phases.iter().map(|_| Vec::new()).collect();
    for _ in 0..RUNS {
        let sim = Sim::start(1.0)?;
        for (i, tag) in phases.iter().enumerate() {
            figures[i].push(sync(&http, &sim, &drover, &repo, tag).await?);
        }
    }
    let _ = std::fs::remove_dir_all(&repo);
    let names = ["cold sync", "unchanged re-sync (new commit, no record changed)", "one record changed"];
    for (i, name) in names.iter().enumerate() {
        let pick = |f: &dyn Fn(&Figures) -> f64| median(&mut figures[i].iter().map(f).collect::<Vec<_>>());
        let (seconds, txns, writes, bytes) =
            (pick(&|f| f.seconds), pick(&|f| f.transactions), pick(&|f| f.record_writes), pick(&|f| f.bytes));
        println!("  {name}:");
        info("time", &format!("{:.0} ms", seconds * 1000.0));
        info("Consul transactions", &format!("{txns:.0}"));
        info("bytes of record values written", &format!("{bytes:.0} ({:.1} KiB)", bytes / 1024.0));
        match i {
            0 => report("records written", &format!("{writes:.0}"), &records.to_string(), writes as usize == records),
            1 => report("records written", &format!("{writes:.0}"), "0", writes == 0.0 && txns == 0.0),
            _ => report("records written", &format!("{writes:.0}"), "1", writes == 1.0),
        }
    }
    println!("  load average at end {}", loadavg());
    Ok(())
}
