//! Benchmark of autoscaling (issue #11): 1 000 autoscaled apps with one check each at `evaluationInterval: 10s`,
//! against a real Prometheus (Debian's `prometheus` on PATH) scraping the release simulator every second. Prints,
//! beside their targets: drover's CPU and memory over a steady window, the Prometheus queries per second it sends
//! (one per app per interval: the apps' queries differ by job, so nothing is deduplicated here — the figure shows
//! the cost as users run it), the scale decisions made when the load of 100 apps rises, and the lag from that load
//! change to the scale request (p50 ≤ 1 interval + 100 ms).
//!
//! Apps are spread over the interval (each starts at a phase of its own), so the lag of a load change is up to one
//! interval plus a scrape; the window for the query rate spans six intervals.
//!
//! Run: `cargo build --release -p drover-sim -p drover --bins && cargo bench -p drover-e2e --bench autoscale`.
//! `BENCH_APPS` changes the number of apps (default 1 000).

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::time::Instant;

use common::{Drover, Sim, client, free_port, info, loadavg, machine, percentile, report};

/// Simulated time runs 100 times faster (deployments of a scale end quickly); Drover's intervals are real time.
const TIME_SCALE: f64 = 0.01;
const INTERVAL_SECS: u64 = 10;
const RAISED: usize = 100;

fn record(name: &str, prometheus: &str) -> String {
    json!({
        "apiVersion": "drover.io/v1alpha1", "kind": "App",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "template": {"image": "ghcr.io/acme/web:1", "count": 1, "resources": {"cpu": 100, "memoryMB": 64}},
            "autoscaling": {
                "min": 1, "max": 5, "evaluationInterval": format!("{INTERVAL_SECS}s"), "cooldown": "10s",
                "checks": [{"name": "cpu",
                    "prometheus": {"address": prometheus,
                        "query": "avg(cpu_percent{job=\"{{ .JobID }}\",namespace=\"{{ .Namespace }}\"})"},
                    "targetValue": {"target": 50}}]
            }
        }
    })
    .to_string()
}

async fn sim_now_ms(http: &reqwest::Client, sim: &Sim) -> anyhow::Result<u64> {
    let t: Value = http.get(format!("{}/_sim/time", sim.nomad)).send().await?.json().await?;
    t["now_ms"].as_u64().context("now_ms")
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")?;
    rt.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let apps: usize = std::env::var("BENCH_APPS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    println!("autoscaling benchmark (issue #11): {apps} apps, one check each, evaluationInterval {INTERVAL_SECS}s");
    println!("  machine: {}; load average at start {}", machine(), loadavg());
    println!(
        "  note: drover, drover-sim, prometheus and this load generator share the CPUs; sim time scale {TIME_SCALE}"
    );
    let http = client()?;
    let sim = Sim::start(TIME_SCALE)?;
    let prometheus = drover_e2e::PrometheusProcess::start_for(&sim.nomad, free_port()?).await;
    let prom_url = prometheus.url.clone();
    let mut drover = Drover::start(&sim, &["--resync", "5m"])?;
    drover.wait_healthz(&http, Duration::from_secs(30)).await?;
    let name = |i: usize| format!("app-{i:04}");
    for i in 0..apps {
        let url = format!("{}/v1/kv/drover/apps/default/{}", sim.consul, name(i));
        http.put(&url).body(record(&name(i), &prom_url)).send().await?.error_for_status()?;
    }
    // All registered and Healthy.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let text = drover.metrics(&http).await?;
        let healthy = common::metric_sum(&text, "drover_apps", "phase=\"Healthy\"");
        if healthy as usize >= apps {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {healthy} of {apps} apps Healthy after 300 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("  {apps} apps Healthy");

    // Steady window: no load, nothing to scale; what does evaluating cost?
    let window = Duration::from_secs(6 * INTERVAL_SECS);
    let scales = |text: &str| common::metric_sum(text, "drover_autoscale_events_total", "");
    let (cpu0, q0) =
        (common::cpu_seconds(drover.proc.pid()).unwrap_or(0.0), common::prometheus_queries(&http, &prom_url).await?);
    let s0 = scales(&drover.metrics(&http).await?);
    tokio::time::sleep(window).await;
    let (cpu1, q1) =
        (common::cpu_seconds(drover.proc.pid()).unwrap_or(0.0), common::prometheus_queries(&http, &prom_url).await?);
    let s1 = scales(&drover.metrics(&http).await?);
    let cpu = (cpu1 - cpu0) / window.as_secs_f64() * 100.0;
    let qps = (q1 - q0) / window.as_secs_f64();
    let scaled_idle = s1 - s0;
    info("drover CPU while evaluating", &format!("{cpu:.1} % of one core"));
    let expected_qps = apps as f64 / INTERVAL_SECS as f64;
    report(
        "Prometheus queries per second",
        &format!("{qps:.1} (apps spread over the interval; distinct queries, so none deduplicated)"),
        &format!("≈ {expected_qps:.0} (one per app per interval)"),
        (qps - expected_qps).abs() <= expected_qps * 0.15,
    );
    report("scales in the window while nothing changed", &format!("{scaled_idle:.0}"), "0", scaled_idle == 0.0);
    let hwm = common::proc_status_bytes(drover.proc.pid(), "VmHWM").unwrap_or(0);
    info("drover peak memory (VmHWM)", &format!("{:.1} MB", common::mb(hwm)));

    // Raise the load of 100 apps (cpu 2 % → 100 %, target 50 %): each should be scaled to 2.
    let raised = RAISED.min(apps);
    let mut set_at = Vec::with_capacity(raised);
    for i in 0..raised {
        let body = json!({"namespace": "default", "job": name(i), "load": 400.0, "error_rate": 0.0});
        http.post(format!("{}/_sim/nomad/workload", sim.nomad)).json(&body).send().await?.error_for_status()?;
        set_at.push(sim_now_ms(&http, &sim).await?);
    }
    let s2 = scales(&drover.metrics(&http).await?);
    let started = Instant::now();
    let mut lags: Vec<f64> = Vec::new();
    let mut seen = vec![false; raised];
    let mut since = 0;
    while lags.len() < raised && started.elapsed() < Duration::from_secs(4 * INTERVAL_SECS) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let url = format!("{}/_sim/log?server=nomad&since={since}", sim.nomad);
        let log: Value = http.get(url).send().await?.json().await?;
        since = log["last_seq"].as_u64().unwrap_or(since);
        for r in log["requests"].as_array().into_iter().flatten() {
            let (Some(path), Some(at)) = (r["path"].as_str(), r["at_ms"].as_u64()) else { continue };
            let Some(job) = path.strip_prefix("/v1/job/").and_then(|p| p.strip_suffix("/scale")) else { continue };
            if r["method"] != "POST" {
                continue;
            }
            let Some(i) = job.strip_prefix("app-").and_then(|n| n.parse::<usize>().ok()).filter(|i| *i < raised) else {
                continue;
            };
            if !seen[i] && at >= set_at[i] {
                seen[i] = true;
                lags.push((at - set_at[i]) as f64 * TIME_SCALE / 1000.0);
            }
        }
    }
    lags.sort_by(f64::total_cmp);
    let p50 = percentile(&lags, 50.0);
    let target = INTERVAL_SECS as f64 + 0.1;
    report(
        "load change → scale request, p50",
        &format!("{p50:.2} s ({} of {raised} scaled)", lags.len()),
        &format!("<= {target:.1} s (1 interval + 100 ms)"),
        p50 <= target && lags.len() == raised,
    );
    // Apps are spread over the interval, so the p50 is about half of it; the bound that can fail is the worst case:
    // one interval, plus a scrape (1 s), plus the poller's 1 s tick, plus 100 ms.
    let p99 = percentile(&lags, 99.0);
    let worst = INTERVAL_SECS as f64 + 2.1;
    report("load change → scale request, p99", &format!("{p99:.2} s"), &format!("<= {worst:.1} s"), p99 <= worst);
    let ups = scales(&drover.metrics(&http).await?) - s2;
    let elapsed = started.elapsed().as_secs_f64();
    info("scale decisions", &format!("{ups} up in {elapsed:.0} s ({:.1}/s)", ups / elapsed));
    println!("  load average at the end {}", loadavg());
    Ok(())
}
