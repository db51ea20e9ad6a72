//! Part a: back-to-back writes by a plain HTTP client at 1 000 apps, each waiting for its job before the next.

use std::time::Duration;

use anyhow::bail;
use serde_json::Value;
use tokio::time::Instant;

use crate::TIME_SCALE;
use crate::apps::{converge, index_of, listing_bytes, put_ok, record, record_url, wait_ready, write_records};
use crate::common::{Drover, Sim, metric_sum, percentile, report};

/// Apps in the cluster while writes are measured.
const APPS: usize = 1_000;
/// Writes measured.
const SAMPLES: usize = 300;
/// Longest wait for one job before the part fails.
const PER_WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// Part a: a cluster of `APPS` converged apps; then `SAMPLES` new records written one after another, each write sent
/// as soon as the previous record's job is registered. Measures the PUT's response → the job visible in Nomad.
pub async fn back_to_back(http: &reqwest::Client, deadline: Duration) -> anyhow::Result<()> {
    println!(
        "a. back-to-back writes at {APPS} apps: {SAMPLES} new records, each written once the previous one's job is \
         registered (a blocking list of /v1/jobs on the job's prefix notices it)"
    );
    let sim = Sim::start(TIME_SCALE)?;
    write_records(http, &sim.consul, APPS).await?;
    let started = Instant::now();
    // `BENCH_DROVER_ARGS` adds flags to `drover run` here too (e.g. `--workers 8`), as in part b.
    let args = crate::common::drover_args(&[]);
    let mut drover = Drover::start(&sim, &args.iter().map(String::as_str).collect::<Vec<_>>())?;
    drover.wait_healthz(http, Duration::from_secs(20)).await?;
    wait_ready(http, &drover, deadline).await?;
    let converged = converge(http, &sim, &mut drover, APPS, started, deadline).await?;
    if !converged.all {
        println!("a. skipped: the {APPS}-app cluster did not converge");
        return Ok(());
    }
    println!(
        "    {APPS} apps Healthy after {:.1} s; the record listing is {} bytes",
        converged.elapsed.as_secs_f64(),
        listing_bytes(http, &sim.consul).await?
    );
    let before = drover.metrics(http).await?;
    let window = Instant::now();
    let mut from_response = Vec::with_capacity(SAMPLES);
    let mut from_request = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let name = format!("lat-{i:04}");
        let r = http.get(format!("{}/v1/jobs?prefix={name}", sim.nomad)).send().await?.error_for_status()?;
        let mut index = index_of(&r, "X-Nomad-Index")?;
        let _ = r.bytes().await;
        let sent = Instant::now();
        put_ok(http, &record_url(&sim.consul, &name), record(&name, 0)).await?;
        let written = Instant::now();
        let give_up = written + PER_WRITE_DEADLINE;
        loop {
            // A blocking list on the job's ID prefix: it answers on every change of the job table's index.
            let url = format!("{}/v1/jobs?prefix={name}&index={index}&wait=5s", sim.nomad);
            let r = http.get(url).send().await?.error_for_status()?;
            let at = Instant::now();
            index = index_of(&r, "X-Nomad-Index")?;
            let jobs: Value = r.json().await?;
            if jobs.as_array().is_some_and(|a| a.iter().any(|j| j["ID"] == name.as_str())) {
                from_response.push(at.saturating_duration_since(written).as_secs_f64() * 1000.0);
                from_request.push(at.saturating_duration_since(sent).as_secs_f64() * 1000.0);
                break;
            }
            if Instant::now() >= give_up {
                bail!("job {name} was not registered within {PER_WRITE_DEADLINE:?} of its record being written");
            }
        }
    }
    let elapsed = window.elapsed().as_secs_f64();
    let after = drover.metrics(http).await?;
    let read = metric_sum(&after, "drover_consul_read_bytes_total", "")
        - metric_sum(&before, "drover_consul_read_bytes_total", "");
    from_response.sort_by(f64::total_cmp);
    from_request.sort_by(f64::total_cmp);
    // Judged from the PUT's request: what a user's client sees, Consul's own write included.
    let (p50, p99) = (percentile(&from_request, 50.0), percentile(&from_request, 99.0));
    println!(
        "    {SAMPLES} writes in {elapsed:.1} s ({:.0} writes/s); from the PUT's request: p50 {:.2} ms, p99 {:.2} ms; \
         max from its response {:.2} ms",
        SAMPLES as f64 / elapsed,
        percentile(&from_request, 50.0),
        percentile(&from_request, 99.0),
        from_response.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "    drover read {:.1} MB from Consul meanwhile ({:.1} MB/s; the default watch budget is 32 MiB/s = 33.6 MB/s)",
        read / 1e6,
        read / 1e6 / elapsed
    );
    report("back-to-back write -> registered, p50", &format!("{p50:.2} ms"), "<= 15 ms", p50 <= 15.0);
    report("back-to-back write -> registered, p99", &format!("{p99:.2} ms"), "<= 50 ms", p99 <= 50.0);
    Ok(())
}
