//! Records, writes, and waiting for convergence — with the diagnosis of whatever did not converge.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::common::{Drover, Sim, metric_sum, proc_status_bytes};

/// A record in the compact template form; `rev` goes into the environment so a new value is a desired change.
pub fn record(name: &str, rev: usize) -> String {
    json!({
        "apiVersion": "drover.io/v1alpha1",
        "kind": "App",
        "metadata": { "name": name, "namespace": "default" },
        "spec": {
            "template": {
                "image": "ghcr.io/acme/web:1.4.2",
                "count": 1,
                "resources": { "cpu": 100, "memoryMB": 64 },
                "env": { "REV": rev.to_string() }
            }
        }
    })
    .to_string()
}

/// The KV URL of app `name`'s record.
pub fn record_url(consul: &str, name: &str) -> String {
    format!("{consul}/v1/kv/drover/apps/default/{name}")
}

/// Name of the `i`-th app of the pre-written cluster.
pub fn app_name(i: usize) -> String {
    format!("app-{i:05}")
}

/// The `X-Nomad-Index`/`X-Consul-Index` header.
pub fn index_of(resp: &reqwest::Response, header: &str) -> anyhow::Result<u64> {
    resp.headers()
        .get(header)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("{header} missing"))
}

/// PUTs `body` at `url`, failing on any status but 2xx.
pub async fn put_ok(http: &reqwest::Client, url: &str, body: String) -> anyhow::Result<()> {
    let r = http.put(url).body(body).send().await.with_context(|| format!("PUT {url}"))?;
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("PUT {url}: HTTP {status}: {text}");
    }
    Ok(())
}

/// Writes records `app-00000`.. for `apps` apps with 64 PUTs in flight; returns the bytes of values written.
pub async fn write_records(http: &reqwest::Client, consul: &str, apps: usize) -> anyhow::Result<usize> {
    let next = Arc::new(AtomicUsize::new(0));
    let bytes = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (next, bytes, http, consul) = (next.clone(), bytes.clone(), http.clone(), consul.to_string());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= apps {
                    return Ok::<(), anyhow::Error>(());
                }
                let name = app_name(i);
                let body = record(&name, 0);
                bytes.fetch_add(body.len(), Ordering::Relaxed);
                put_ok(&http, &record_url(&consul, &name), body).await?;
            }
        }));
    }
    for t in tasks {
        t.await.context("writer task")??;
    }
    Ok(bytes.load(Ordering::Relaxed))
}

/// The size of the whole record prefix listing, as drover's watch reads it.
pub async fn listing_bytes(http: &reqwest::Client, consul: &str) -> anyhow::Result<usize> {
    Ok(http.get(format!("{consul}/v1/kv/drover/apps/?recurse")).send().await?.bytes().await?.len())
}

/// Waits until `/readyz` answers 200 (stores loaded), at most `within`.
pub async fn wait_ready(http: &reqwest::Client, drover: &Drover, within: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if let Ok(r) = http.get(format!("{}/readyz", drover.url)).send().await
            && r.status().is_success()
        {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("drover was not ready within {within:?}")
}

/// How a convergence wait ended.
pub struct Converged {
    /// Time from `started` to the last check, all Healthy or not.
    pub elapsed: Duration,
    /// Apps Healthy at the end (from the phase gauge, refreshed every 2 s).
    pub healthy: usize,
    /// Whether every app was Healthy.
    pub all: bool,
    /// Highest `VmRSS` sampled while waiting.
    pub peak_rss: u64,
}

/// Polls drover's phase gauge until `apps` apps are Healthy or `started + deadline` passes, printing progress every
/// 10 s. On giving up, prints the diagnosis of the apps that are not Healthy.
pub async fn converge(
    http: &reqwest::Client,
    sim: &Sim,
    drover: &mut Drover,
    apps: usize,
    started: Instant,
    deadline: Duration,
) -> anyhow::Result<Converged> {
    let mut peak_rss = 0u64;
    let mut healthy = 0.0;
    let mut last_print = Instant::now();
    while healthy < apps as f64 && started.elapsed() <= deadline {
        if let Some(status) = drover.proc.exited() {
            bail!("drover exited while converging: {status}");
        }
        peak_rss = peak_rss.max(proc_status_bytes(drover.proc.pid(), "VmRSS").unwrap_or(0));
        let metrics = drover.metrics(http).await?;
        healthy = metric_sum(&metrics, "drover_apps", "phase=\"Healthy\"");
        if last_print.elapsed() > Duration::from_secs(10) {
            let progressing = metric_sum(&metrics, "drover_apps", "phase=\"Progressing\"");
            let depth = metric_sum(&metrics, "drover_queue_depth", "");
            let reconciles = metric_sum(&metrics, "drover_reconcile_total", "result");
            println!(
                "    {:>5.1} s: {healthy} Healthy, {progressing} Progressing, queue {depth}, {reconciles} reconciles",
                started.elapsed().as_secs_f64()
            );
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = healthy >= apps as f64;
    if !all {
        println!("    gave up after {:.0} s with {healthy} of {apps} Healthy", started.elapsed().as_secs_f64());
        diagnose(http, sim, drover, 10).await?;
    }
    Ok(Converged { elapsed: started.elapsed(), healthy: healthy as usize, all, peak_rss })
}

/// Prints, for at most `limit` apps that are not Healthy, drover's full status, the live Nomad job and the job's
/// latest deployment, so a stuck app can be diagnosed from the benchmark's output alone.
pub async fn diagnose(http: &reqwest::Client, sim: &Sim, drover: &Drover, limit: usize) -> anyhow::Result<()> {
    let views: Value = http.get(format!("{}/api/v1/apps", drover.url)).send().await?.json().await?;
    let stuck: Vec<&Value> =
        views.as_array().map(|a| a.iter().filter(|v| v["status"]["phase"] != "Healthy").collect()).unwrap_or_default();
    println!("    {} apps not Healthy in /api/v1/apps; the first {}:", stuck.len(), stuck.len().min(limit));
    for view in stuck.into_iter().take(limit) {
        println!("    - app {}/{}: {}", view["namespace"], view["name"], view);
        let Some(job_id) = view["status"]["jobId"].as_str() else {
            println!("      (no job ID in the status)");
            continue;
        };
        let ns = view["namespace"].as_str().unwrap_or("default");
        for (what, path) in
            [("job", format!("job/{job_id}")), ("latest deployment", format!("job/{job_id}/deployment"))]
        {
            let url = format!("{}/v1/{path}?namespace={ns}", sim.nomad);
            let r = http.get(&url).send().await?;
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            println!("      {what} (GET {url} -> {status}): {body}");
        }
    }
    Ok(())
}

/// The simulator's request log of both servers after `since`: (last sequence number, entries).
pub async fn sim_log(http: &reqwest::Client, sim: &Sim, since: u64) -> anyhow::Result<(u64, Vec<Value>)> {
    let v: Value =
        http.get(format!("{}/_sim/log?since={since}", sim.nomad)).send().await?.error_for_status()?.json().await?;
    let last = v["last_seq"].as_u64().context("last_seq")?;
    let entries = v["requests"].as_array().cloned().unwrap_or_default();
    Ok((last, entries))
}

/// Whether a logged request is drover's prefix watch on the records (a recursive list of `drover/apps/`).
pub fn is_record_listing(r: &Value) -> bool {
    r["server"] == "consul"
        && r["method"] == "GET"
        && r["path"] == "/v1/kv/drover/apps/"
        && r["query"].as_str().is_some_and(|q| q.split('&').any(|p| p == "recurse" || p.starts_with("recurse=")))
}
