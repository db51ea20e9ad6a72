//! Parts b–d on one simulator: 10 000 apps from a cold start, the converged cluster, bytes per desired change;
//! then part e (churn) on the same cluster.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::bail;
use serde_json::Value;
use tokio::time::Instant;

use crate::TIME_SCALE;
use crate::apps::{app_name, converge, listing_bytes, put_ok, record, record_url, sim_log, wait_ready, write_records};
use crate::common::{Drover, Sim, info, mb, median, metric_sum, proc_status_bytes, report};

/// Length of the converged-cluster window.
const QUIET_WINDOW: Duration = Duration::from_secs(60);
/// Resync period during parts b–e.
const RESYNC: &str = "10s";
/// Record changes for the bytes-per-change figure.
const CHANGES: usize = 20;

/// Part b, then the parts of c, d and e that were asked for, on the cluster b converged.
pub async fn run(
    http: &reqwest::Client,
    apps: usize,
    deadline: Duration,
    parts: &BTreeSet<char>,
) -> anyhow::Result<()> {
    println!("b. {apps} apps from a cold start to all Healthy (records written first; --resync {RESYNC})");
    let sim = Sim::start(TIME_SCALE)?;
    let record_bytes = write_records(http, &sim.consul, apps).await?;
    let listing = listing_bytes(http, &sim.consul).await?;
    println!("    wrote {apps} records ({record_bytes} bytes of values; the prefix listing is {listing} bytes)");

    let started = Instant::now();
    // `BENCH_DROVER_ARGS` adds flags to `drover run` (e.g. `--workers 8`).
    let args = crate::common::drover_args(&[("--resync", RESYNC)]);
    let mut drover = Drover::start(&sim, &args.iter().map(String::as_str).collect::<Vec<_>>())?;
    drover.wait_healthz(http, Duration::from_secs(20)).await?;
    let ready = wait_ready(http, &drover, deadline).await?;
    let converged = converge(http, &sim, &mut drover, apps, started, deadline).await?;
    let views: Value = http.get(format!("{}/api/v1/apps", drover.url)).send().await?.json().await?;
    let all_healthy = views.as_array().map_or(0, |a| a.iter().filter(|v| v["status"]["phase"] == "Healthy").count());
    let hwm = proc_status_bytes(drover.proc.pid(), "VmHWM").unwrap_or(0);
    let rss = proc_status_bytes(drover.proc.pid(), "VmRSS").unwrap_or(0);
    println!(
        "    ready (stores loaded) after {:.2} s; /api/v1/apps shows {all_healthy} Healthy; the apps gauge is \
         refreshed every 2 s, so the total is late by up to 2 s",
        ready.as_secs_f64()
    );
    let figure = if converged.all {
        format!("{:.1} s", converged.elapsed.as_secs_f64())
    } else {
        format!("not done: {} of {apps} Healthy at the {} s deadline", converged.healthy, deadline.as_secs())
    };
    report(
        &format!("cold start of {apps} apps to all Healthy"),
        &figure,
        "<= 60 s",
        converged.all && converged.elapsed <= Duration::from_secs(60),
    );
    report(
        "drover peak memory (VmHWM)",
        &format!("{:.1} MB (VmRSS now {:.1} MB, highest sampled {:.1} MB)", mb(hwm), mb(rss), mb(converged.peak_rss)),
        "< 150 MB",
        hwm < 150 * 1024 * 1024,
    );

    println!("    metrics at the end of part b:");
    print_drover_costs(&drover.metrics(http).await?);
    if !converged.all {
        println!("c.-e. skipped: the cluster did not converge (raise BENCH_DEADLINE_SECS or lower BENCH_APPS)");
        return Ok(());
    }
    if parts.contains(&'c') {
        quiet_window(http, &sim, &drover, apps).await?;
    }
    if parts.contains(&'d') {
        bytes_per_change(http, &sim, &drover, listing).await?;
    }
    if parts.contains(&'e') {
        crate::churn::run(http, &sim, &mut drover, apps, deadline).await?;
    }
    Ok(())
}

/// Prints where drover's time went: reconciles, and the mean latency of each Nomad endpoint it called.
fn print_drover_costs(metrics: &str) {
    let reconciles = metric_sum(metrics, "drover_reconcile_duration_seconds_count", "");
    let seconds = metric_sum(metrics, "drover_reconcile_duration_seconds_sum", "");
    println!("      {reconciles} reconciles, mean {:.1} ms", 1000.0 * seconds / reconciles.max(1.0));
    for endpoint in ["job_register", "job_read", "jobs_list", "deployments_list"] {
        let label = format!("endpoint=\"{endpoint}\"");
        let n = metric_sum(metrics, "drover_nomad_request_duration_seconds_count", &label);
        let sum = metric_sum(metrics, "drover_nomad_request_duration_seconds_sum", &label);
        if n > 0.0 {
            println!("      Nomad {endpoint}: {n} requests, mean {:.1} ms", 1000.0 * sum / n);
        }
    }
    for (what, name) in
        [("Consul requests", "drover_consul_requests_total"), ("status writes", "drover_status_writes_total")]
    {
        println!("      {what}: {}", metric_sum(metrics, name, "="));
    }
    println!("      Consul bytes read: {}", metric_sum(metrics, "drover_consul_read_bytes_total", ""));
    println!(
        "      watch restarts (relists): Consul {}, Nomad {}",
        metric_sum(metrics, "drover_watch_restarts_total", "source=\"consul\"") + 0.0,
        metric_sum(metrics, "drover_watch_restarts_total", "source=\"nomad\"") + 0.0
    );
}

/// Part c: a converged cluster for `QUIET_WINDOW` with resyncs: writes, per-app reads, and requests per resync.
async fn quiet_window(http: &reqwest::Client, sim: &Sim, drover: &Drover, apps: usize) -> anyhow::Result<()> {
    println!("c. converged cluster, {} s real time with --resync {RESYNC}", QUIET_WINDOW.as_secs());
    // Let the last status writes and deployment events settle before the window opens.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = drover.metrics(http).await?;
    let since = sim_log(http, sim, u64::MAX).await?.0;
    http.delete(format!("{}/_sim/log", sim.nomad)).send().await?.error_for_status()?;
    tokio::time::sleep(QUIET_WINDOW).await;
    let (_, requests) = sim_log(http, sim, since).await?;
    let after = drover.metrics(http).await?;
    let reconciles = metric_sum(&after, "drover_reconcile_total", "result")
        - metric_sum(&before, "drover_reconcile_total", "result");
    let resyncs = (reconciles / apps as f64).round();
    let is_write = |r: &Value| matches!(r["method"].as_str(), Some("PUT" | "POST" | "DELETE" | "PATCH"));
    let writes: Vec<&Value> = requests.iter().filter(|r| is_write(r)).collect();
    let per_app: Vec<&Value> = requests
        .iter()
        .filter(|r| r["method"] == "GET")
        .filter(|r| {
            let path = r["path"].as_str().unwrap_or("");
            let query = r["query"].as_str().unwrap_or("");
            path.starts_with("/v1/job/")
                || ((path.starts_with("/v1/kv/drover/status/") || path.starts_with("/v1/kv/drover/apps/"))
                    && !path.ends_with('/')
                    && !query.contains("recurse"))
        })
        .collect();
    for (what, list) in [("write", &writes), ("per-app read", &per_app)] {
        for r in list.iter().take(5) {
            println!("    {what}: {} {} {}?{} -> {}", r["server"], r["method"], r["path"], r["query"], r["status"]);
        }
    }
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for r in &requests {
        let path = r["path"].as_str().unwrap_or("");
        let kind = format!("{} {} {}", r["server"].as_str().unwrap_or("?"), r["method"].as_str().unwrap_or("?"), path);
        *kinds.entry(kind).or_default() += 1;
    }
    for (kind, n) in &kinds {
        println!("    {n:>6} x {kind}");
    }
    println!(
        "    (a blocking query's wait is simulated time: drover's 5-minute Consul wait lasts {:.0} s here, so the \
         watch is re-issued that often)",
        300.0 * TIME_SCALE
    );
    println!(
        "    {} reconciles in the window (~{resyncs} resyncs of {apps} apps), {} API requests answered",
        reconciles,
        requests.len()
    );
    // A window in which no resync ran would show nothing at all: it proves silence only across resyncs.
    let resynced = resyncs >= 1.0;
    report("writes in the window", &writes.len().to_string(), "0, across ≥ 1 resync", resynced && writes.is_empty());
    report(
        "per-app reads in the window",
        &per_app.len().to_string(),
        "0, across ≥ 1 resync",
        resynced && per_app.is_empty(),
    );
    let per_resync = requests.len() as f64 / resyncs.max(1.0);
    report(
        "API requests per resync of all apps",
        &format!("{per_resync:.1} ({} requests / {resyncs} resyncs)", requests.len()),
        "O(1): only the long-lived watches",
        resynced && per_resync <= 10.0,
    );
    Ok(())
}

/// Part d: bytes drover reads from Consul per desired change (one record changed at a time).
async fn bytes_per_change(http: &reqwest::Client, sim: &Sim, drover: &Drover, listing: usize) -> anyhow::Result<()> {
    println!("d. bytes read from Consul per desired change ({CHANGES} changes of one record)");
    let mut samples = Vec::with_capacity(CHANGES);
    for i in 0..CHANGES {
        let name = app_name(i * 7);
        let text = drover.metrics(http).await?;
        let before = metric_sum(&text, "drover_consul_read_bytes_total", "");
        let written = metric_sum(&text, "drover_status_writes_total", "");
        put_ok(http, &record_url(&sim.consul, &name), record(&name, i + 1)).await?;
        // Wait until the watch has returned (the counter moved), then for the reconcile's own reads to finish.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = metric_sum(&drover.metrics(http).await?, "drover_consul_read_bytes_total", "");
            if now > before {
                break;
            }
            if Instant::now() >= deadline {
                bail!("drover_consul_read_bytes_total did not move within 10 s of changing {name}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Then until the changed app's reconcile wrote its status (its own reads are done by then).
        loop {
            if metric_sum(&drover.metrics(http).await?, "drover_status_writes_total", "") > written {
                break;
            }
            if Instant::now() >= deadline {
                bail!("no status written within 10 s of changing {name}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let after = metric_sum(&drover.metrics(http).await?, "drover_consul_read_bytes_total", "");
        samples.push(after - before);
    }
    let med = median(&mut samples);
    info(
        "bytes read from Consul per desired change, median (a prefix watch returns the whole prefix)",
        &format!("{med:.0} bytes ({:.1} MB; the whole prefix listing is {:.1} MB)", med / 1e6, listing as f64 / 1e6),
    );
    Ok(())
}
