//! Benchmark of the simulator (issue #3): KV read throughput, job register throughput, blocking-query wake-up latency
//! and resident memory with 10 000 keys and 10 000 jobs, against the release `drover-sim` binary.
//!
//! Run: `cargo build --release -p drover-sim && cargo bench -p drover-e2e --bench sim`. It prints figures with their
//! targets (PASS/MISS); it asserts nothing about time.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::time::Instant;

use common::{Sim, client, machine, median, percentile, proc_status_bytes, report};

/// Keys and jobs loaded.
const N: usize = 10_000;
/// Requests in flight from the load generator.
const IN_FLIGHT: usize = 64;
/// Single-key GETs per throughput run.
const GETS_PER_RUN: usize = 40_000;
/// Throughput runs (the median is reported).
const RUNS: usize = 5;
/// Wake-up latency samples.
const WAKE_SAMPLES: usize = 200;

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")?;
    rt.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    println!("drover-sim benchmark (issue #3)");
    println!("  machine: {}", machine());
    println!(
        "  note: the load generator (this process, {IN_FLIGHT} requests in flight) shares the CPUs with drover-sim; \
         on 2 cores the figures are a lower bound of what the simulator alone can serve"
    );
    let sim = Sim::start(1.0)?;
    let http = client()?;
    println!("  drover-sim pid {} consul {} nomad {}", sim.proc.pid(), sim.consul, sim.nomad);

    // Load the KV store.
    let value: Arc<str> = Arc::from(kv_value());
    let started = Instant::now();
    let consul = Arc::new(sim.consul.clone());
    {
        let (consul, value) = (consul.clone(), value.clone());
        concurrently(N, IN_FLIGHT, &http, move |http, i| {
            let url = format!("{consul}/v1/kv/bench/kv/key-{i:05}");
            let body = value.to_string();
            async move { expect_ok(http.put(url).body(body).send().await, "PUT kv").await }
        })
        .await?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!("  loaded {N} KV keys ({}-byte values) in {secs:.2} s ({:.0} PUT/s)", value.len(), N as f64 / secs);
    let rss_kv = proc_status_bytes(sim.proc.pid(), "VmRSS").context("read VmRSS of drover-sim")?;

    // KV GETs/s.
    let mut rates = Vec::with_capacity(RUNS);
    for run in 0..if phase("gets") { RUNS } else { 0 } {
        let consul = consul.clone();
        let started = Instant::now();
        concurrently(GETS_PER_RUN, IN_FLIGHT, &http, move |http, i| {
            let url = format!("{consul}/v1/kv/bench/kv/key-{:05}", (i * 7919 + run * 31) % N);
            async move { expect_ok(http.get(url).send().await, "GET kv").await }
        })
        .await?;
        let rate = GETS_PER_RUN as f64 / started.elapsed().as_secs_f64();
        println!("    run {}: {GETS_PER_RUN} GETs at {rate:.0}/s", run + 1);
        rates.push(rate);
    }
    let get_rate = median(&mut rates);

    // Wake-up latency of a blocking query.
    let mut wake = if phase("wake") { wake_latencies(&http, &sim.consul).await? } else { Vec::new() };
    wake.sort_by(f64::total_cmp);

    // Job registers/s: new jobs, then every job changed.
    let nomad = Arc::new(sim.nomad.clone());
    let mut register_rates = Vec::new();
    let job_phases: &[(&str, u32)] = if phase("jobs") { &[("new", 0), ("changed", 1)] } else { &[] };
    for &(what, rev) in job_phases {
        let nomad = nomad.clone();
        let started = Instant::now();
        concurrently(N, IN_FLIGHT, &http, move |http, i| {
            let url = format!("{nomad}/v1/jobs");
            let body = json!({ "Job": job(&format!("bench-{i:05}"), rev) }).to_string();
            async move { expect_ok(http.put(url).body(body).send().await, "PUT /v1/jobs").await }
        })
        .await?;
        let rate = N as f64 / started.elapsed().as_secs_f64();
        println!("    {N} {what} jobs registered at {rate:.0}/s");
        register_rates.push(rate);
    }
    let register_rate = register_rates.iter().copied().fold(f64::INFINITY, f64::min);
    let jobs_listed = list_len(&http, &format!("{}/v1/jobs", sim.nomad)).await?;

    let rss = proc_status_bytes(sim.proc.pid(), "VmRSS").context("read VmRSS of drover-sim")?;
    let hwm = proc_status_bytes(sim.proc.pid(), "VmHWM").unwrap_or(0);

    println!("results ({N} KV keys, {jobs_listed} jobs in the simulator; load average {}):", common::loadavg());
    if !rates.is_empty() {
        report(
            &format!("KV single-key GETs/s, median of {RUNS} runs"),
            &format!("{get_rate:.0}/s"),
            ">= 20000/s",
            get_rate >= 20_000.0,
        );
    }
    if let [new, changed] = register_rates[..] {
        report(
            "job registers/s (slower of new / changed, EnforceIndex off)",
            &format!("{register_rate:.0}/s (new {new:.0}/s, changed {changed:.0}/s)"),
            ">= 3000/s",
            register_rate >= 3_000.0,
        );
    }
    if !wake.is_empty() {
        let (p50, p99) = (percentile(&wake, 50.0), percentile(&wake, 99.0));
        report(
            &format!("blocking-query wake-up after a PUT's response ({WAKE_SAMPLES} samples)"),
            &format!("p50 {p50:.3} ms, p99 {p99:.3} ms, max {:.3} ms", wake.last().copied().unwrap_or(f64::NAN)),
            "<= 1 ms",
            p99 <= 1.0,
        );
    }
    report(
        "drover-sim VmRSS after loading",
        &format!(
            "{:.1} MB (VmHWM {:.1} MB; {:.1} MB after the KV keys alone)",
            common::mb(rss),
            common::mb(hwm),
            common::mb(rss_kv)
        ),
        "< 300 MB",
        rss < 300 * 1024 * 1024,
    );
    Ok(())
}

/// Whether a measurement runs: all of them unless `SIM_BENCH_ONLY` lists some (`gets`, `wake`, `jobs`), which helps
/// to profile one phase (`perf record -p <pid>`); loading always runs.
fn phase(name: &str) -> bool {
    std::env::var("SIM_BENCH_ONLY").map_or(true, |only| only.split(',').any(|p| p.trim() == name))
}

/// A ~200-byte value that looks like a small JSON record.
fn kv_value() -> String {
    let mut v = String::from(
        r#"{"apiVersion":"drover.io/v1alpha1","kind":"App","metadata":{"name":"bench"},"spec":{"image":""#,
    );
    while v.len() < 196 {
        v.push('x');
    }
    v.push_str(r#""}}"#);
    v
}

/// A small service job; `rev` goes into the job's Meta so a second register is a change.
fn job(id: &str, rev: u32) -> Value {
    json!({
        "ID": id,
        "Name": id,
        "Type": "service",
        "Datacenters": ["dc1"],
        "Meta": { "rev": rev.to_string() },
        "TaskGroups": [{
            "Name": "web",
            "Count": 1,
            "Tasks": [{ "Name": "app", "Driver": "docker", "Config": { "image": "nginx:1" },
                        "Resources": { "CPU": 100, "MemoryMB": 64 } }]
        }]
    })
}

/// Runs `total` requests built by `f(http, i)` with `in_flight` of them outstanding at once, spread over the
/// runtime's threads; fails on the first error.
async fn concurrently<F, Fut>(total: usize, in_flight: usize, http: &reqwest::Client, f: F) -> anyhow::Result<()>
where
    F: Fn(reqwest::Client, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let f = Arc::new(f);
    let mut tasks = Vec::with_capacity(in_flight);
    for _ in 0..in_flight {
        let (next, f, http) = (next.clone(), f.clone(), http.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<(), anyhow::Error>(());
                }
                f(http.clone(), i).await?;
            }
        }));
    }
    for t in tasks {
        t.await.context("load task panicked")??;
    }
    Ok(())
}

/// Checks a response is 2xx and drains its body (so the connection goes back to the pool).
async fn expect_ok(resp: reqwest::Result<reqwest::Response>, what: &str) -> anyhow::Result<()> {
    let resp = resp.with_context(|| format!("{what}: request failed"))?;
    let status = resp.status();
    let body = resp.bytes().await.with_context(|| format!("{what}: body"))?;
    if !status.is_success() {
        bail!("{what}: HTTP {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(())
}

/// Length of a JSON array answered by `url`.
async fn list_len(http: &reqwest::Client, url: &str) -> anyhow::Result<usize> {
    let v: Value = http.get(url).send().await?.error_for_status()?.json().await?;
    Ok(v.as_array().map_or(0, Vec::len))
}

/// `WAKE_SAMPLES` samples, in ms, of the time from a PUT's response to the response of a blocking GET parked on the
/// same key. A negative sample (the GET answered first) counts as 0.
async fn wake_latencies(http: &reqwest::Client, consul: &str) -> anyhow::Result<Vec<f64>> {
    let url = format!("{consul}/v1/kv/bench/wake");
    expect_ok(http.put(&url).body("0").send().await, "PUT wake").await?;
    // A second client so the parked GET never waits behind the PUT for a pooled connection.
    let blocker = client()?;
    let mut samples = Vec::with_capacity(WAKE_SAMPLES);
    for i in 0..WAKE_SAMPLES {
        let resp = http.get(&url).send().await?.error_for_status()?;
        let index = resp
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .context("X-Consul-Index on GET")?;
        let _ = resp.bytes().await;
        let blocking = blocker.get(format!("{url}?index={index}&wait=30s"));
        let parked = tokio::spawn(async move {
            let resp = blocking.send().await?;
            let at = Instant::now();
            let status = resp.status();
            let _ = resp.bytes().await;
            Ok::<_, reqwest::Error>((at, status))
        });
        // Give the blocking GET time to reach the server and park.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let put = http.put(&url).body((i + 1).to_string()).send().await?;
        let put_done = Instant::now();
        let _ = put.bytes().await;
        let (woke, status) = tokio::time::timeout(Duration::from_secs(10), parked)
            .await
            .context("blocking GET did not return within 10 s of the PUT")?
            .context("blocking GET task")??;
        if !status.is_success() {
            bail!("blocking GET answered HTTP {status}");
        }
        let ms = woke.checked_duration_since(put_done).map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        samples.push(ms);
    }
    Ok(samples)
}
