//! Part e: a steady stream of record writes at 10 000 apps, timed to the job registered in Nomad, with the bytes
//! drover reads from Consul meanwhile.
//!
//! Each write changes one app's `REV`; the job registered with that `REV` is noticed on Nomad's event stream (one
//! plain streaming `GET /v1/event/stream?topic=Job`), so timing many writes in flight costs one connection, not a
//! poll per app.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use tokio::time::{Instant, MissedTickBehavior};

use crate::apps::{
    app_name, converge, index_of, is_record_listing, listing_bytes, put_ok, record, record_url, sim_log,
};
use crate::common::{Drover, Sim, metric_sum, percentile, report};

/// Record writes per second.
const RATE: u32 = 20;
/// How long the writes go on.
const WINDOW: Duration = Duration::from_secs(30);
/// How long to wait, after the last write, for the last jobs.
const DRAIN: Duration = Duration::from_secs(30);
/// The budget drover runs with (its default; `consul::budget::DEFAULT_BUDGET`).
const BUDGET_BYTES_PER_SEC: f64 = 32.0 * 1024.0 * 1024.0;
/// The savings an idle watch starts with, in seconds of budget (`consul::budget::DEFAULT_BURST`).
const BURST_SECS: f64 = 1.0;
/// First `REV` written by this part, above any earlier part's.
const FIRST_REV: usize = 100_000;

/// When each (job ID, REV) was first seen registered, fed by the event-stream reader.
type Seen = Arc<Mutex<HashMap<(String, String), Instant>>>;

/// Part e on the converged cluster of part b.
pub async fn run(
    http: &reqwest::Client,
    sim: &Sim,
    drover: &mut Drover,
    apps: usize,
    deadline: Duration,
) -> anyhow::Result<()> {
    let writes = (RATE as u64 * WINDOW.as_secs()) as usize;
    println!(
        "e. churn at {apps} apps: {RATE} record writes/s for {} s ({writes} writes, each to a different app)",
        WINDOW.as_secs()
    );
    let seen: Seen = Arc::default();
    let reader = tokio::spawn(read_job_events(http.clone(), sim.nomad.clone(), seen.clone()));
    // Let the stream open before the first write; a write made earlier would be missed, and time out below.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let before = drover.metrics(http).await?;
    let since = sim_log(http, sim, u64::MAX).await?.0;
    let mut sent: Vec<(String, String, Instant, Instant)> = Vec::with_capacity(writes);
    let mut tasks = Vec::with_capacity(writes);
    let mut tick = tokio::time::interval(Duration::from_secs(1) / RATE);
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let window = Instant::now();
    for k in 0..writes {
        tick.tick().await;
        // Spread over the whole cluster, one write per app.
        let name = app_name((k * 7919) % apps);
        let rev = FIRST_REV + k;
        let (http, url) = (http.clone(), record_url(&sim.consul, &name));
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            put_ok(&http, &url, record(&name, rev)).await?;
            Ok::<_, anyhow::Error>((name, rev.to_string(), start, Instant::now()))
        }));
    }
    for t in tasks {
        sent.push(t.await.context("writer task")??);
    }
    let elapsed = window.elapsed();
    let after = drover.metrics(http).await?;
    let (_, requests) = sim_log(http, sim, since).await?;

    let give_up = Instant::now() + DRAIN;
    let missing = loop {
        let missing = {
            let seen = seen.lock().map_err(|_| anyhow::anyhow!("event reader panicked"))?;
            sent.iter().filter(|(n, r, _, _)| !seen.contains_key(&(n.clone(), r.clone()))).count()
        };
        if missing == 0 || Instant::now() >= give_up {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    reader.abort();
    let mut from_response = Vec::with_capacity(writes);
    let mut from_request = Vec::with_capacity(writes);
    {
        let seen = seen.lock().map_err(|_| anyhow::anyhow!("event reader panicked"))?;
        for (name, rev, start, written) in &sent {
            if let Some(at) = seen.get(&(name.clone(), rev.clone())) {
                from_response.push(at.saturating_duration_since(*written).as_secs_f64() * 1000.0);
                from_request.push(at.saturating_duration_since(*start).as_secs_f64() * 1000.0);
            }
        }
    }
    from_response.sort_by(f64::total_cmp);
    from_request.sort_by(f64::total_cmp);

    let secs = elapsed.as_secs_f64();
    let read = metric_sum(&after, "drover_consul_read_bytes_total", "")
        - metric_sum(&before, "drover_consul_read_bytes_total", "");
    let listings = requests.iter().filter(|r| is_record_listing(r)).count();
    let listing = listing_bytes(http, &sim.consul).await?;
    println!(
        "    {writes} writes in {secs:.1} s; {} registered, {missing} not within {} s of the last write",
        from_response.len(),
        DRAIN.as_secs()
    );
    println!(
        "    from the PUT's request: p50 {:.1} ms, p99 {:.1} ms; from its response: p99 {:.1} ms, max {:.1} ms",
        percentile(&from_request, 50.0),
        percentile(&from_request, 99.0),
        percentile(&from_response, 99.0),
        from_response.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "    the simulator answered {listings} listings of the record prefix ({:.1}/s, {:.1} writes batched per \
         listing); at {listing} bytes each that is {:.1} MB/s by its log",
        listings as f64 / secs,
        writes as f64 / listings.max(1) as f64,
        (listings * listing) as f64 / 1e6 / secs
    );
    // Judged from the PUT's request: what a user's client sees, Consul's own write included.
    let p50 = percentile(&from_request, 50.0);
    report(
        &format!("churn {RATE} writes/s at {apps} apps: write -> registered, p50"),
        &format!("{p50:.1} ms"),
        "<= 250 ms",
        missing == 0 && p50 <= 250.0,
    );
    let rate = read / secs;
    // The budget's bound over a window of T seconds (consul::budget): rate × T, plus the savings an idle watch
    // starts with (one second of budget), plus the one answer that may overdraw.
    let bound = (BUDGET_BYTES_PER_SEC * (secs + BURST_SECS) + listing as f64) / secs;
    report(
        "Consul bytes read per second during the churn (drover_consul_read_bytes_total)",
        &format!("{:.1} MB/s", rate / 1e6),
        &format!(
            "<= {:.1} MB/s: the 32 MiB/s budget over {secs:.0} s plus 1 s of savings and one listing",
            bound / 1e6
        ),
        rate <= bound,
    );
    if missing > 0 {
        println!("    some writes never showed up as a registered job; the apps not Healthy now:");
        crate::apps::diagnose(http, sim, drover, 10).await?;
    }
    // Every rollout ends: the churned cluster converges again.
    let started = Instant::now();
    let settled = converge(http, sim, drover, apps, started, deadline).await?;
    report(
        "all apps Healthy again after the churn",
        &format!("{:.1} s after the last job ({} of {apps})", settled.elapsed.as_secs_f64(), settled.healthy),
        "all",
        settled.all,
    );
    Ok(())
}

/// Reads `GET /v1/event/stream?topic=Job` from now on and records when each job ID was first registered with each
/// `REV` in its tasks' environment. Runs until aborted; returns on a stream error (the part then reports the writes
/// it could not time as missing).
async fn read_job_events(http: reqwest::Client, nomad: String, seen: Seen) -> anyhow::Result<()> {
    let r = http.get(format!("{nomad}/v1/jobs?prefix=-none-")).send().await?.error_for_status()?;
    let index = index_of(&r, "X-Nomad-Index")?;
    let url = format!("{nomad}/v1/event/stream?topic=Job&namespace=default&index={index}");
    let mut resp = http.get(&url).send().await?.error_for_status()?;
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let at = Instant::now();
        buf.extend_from_slice(&chunk);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let Ok(frame) = serde_json::from_slice::<Value>(&line) else { continue };
            let Some(events) = frame["Events"].as_array() else { continue };
            let mut seen = seen.lock().map_err(|_| anyhow::anyhow!("a reader of the map panicked"))?;
            for ev in events.iter().filter(|e| e["Type"] == "JobRegistered") {
                let job = &ev["Payload"]["Job"];
                let Some(id) = job["ID"].as_str() else { continue };
                for rev in revs(job) {
                    seen.entry((id.to_string(), rev)).or_insert(at);
                }
            }
        }
    }
    Ok(())
}

/// The `REV` values in a job's task environments.
fn revs(job: &Value) -> Vec<String> {
    let groups = job["TaskGroups"].as_array().map(Vec::as_slice).unwrap_or_default();
    groups
        .iter()
        .flat_map(|g| g["Tasks"].as_array().map(Vec::as_slice).unwrap_or_default())
        .filter_map(|t| t["Env"]["REV"].as_str().map(str::to_string))
        .collect()
}
