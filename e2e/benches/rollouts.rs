//! Benchmark of canary rollouts (issue #8): 200 apps at steady state, then all 200 records updated at once to a new
//! image with `strategy: Canary`, each canary gated by a Prometheus analysis, against a real Prometheus (Debian's
//! `prometheus` on PATH) scraping the release simulator every second. Prints, beside their targets, with the median
//! over `BENCH_RUNS` runs (3 by default; each run starts fresh processes):
//! - Drover's CPU seconds over the rollout (update → every rollout ended; it includes answering this bench's
//!   `/metrics` poll once a second) and its peak RSS over it (`VmHWM`, reset at the update);
//! - Prometheus queries per second during the analysis (Prometheus' own `prometheus_http_requests_total` for
//!   `/api/v1/query`), average and busiest second, beside Drover's `drover_analysis_measurements_total`;
//! - the delay between a step's end condition and Drover acting on it: for the measurement that completes each
//!   run, the time from when it was due (`startedAt + initialDelay + (count − 1) × interval`, the poller's own
//!   schedule) to the promote request in the simulator's request log (`POST /v1/deployment/promote/:id`). Target:
//!   p50 ≤ 100 ms. It includes the Prometheus query itself; the part after the answer was folded (the measurement's
//!   `at` → promote: wake, reconcile, status write, promote) is printed beside it. The due time comes from the
//!   run's `startedAt`, which Drover stamps: lateness before the run started is not in it. So the bench also times
//!   each app end to end with its own clock alone: from its update write being answered to its promote request,
//!   beyond the 35 s the steps take by themselves (pause 10 s, initial delay 5 s, two intervals).
//!
//! The rollout each app runs (a realistic small canary): count 2, one canary; steps `pause 10s` (the canary takes
//! traffic) then `analysis error-rate`: the canary version's share of 500s over `[30s]`, failing above 5 %, first
//! measured 5 s into the step, then every 10 s, 3 measurements; then promotion. Every version answers 20 rps without
//! errors, so every rollout should pass.
//!
//! Time: the simulator runs 100 times faster (`--time-scale 0.01`: Nomad's placements, health and deployments end
//! quickly); Drover's pause and analysis intervals, and Prometheus' scrapes, are real time. Request-log times are
//! simulated milliseconds since the simulator's start, turned into wall time with one `/_sim/time` reading.
//!
//! The cluster around them: `BENCH_BACKGROUND` (default 1 000) other apps, plain rolling updates at steady state,
//! that Drover keeps reconciling (resyncs, events) while the 200 roll out: a rollout is rarely alone in a cluster, and
//! the apps' count is what scans and sweeps cost. Set `BENCH_DROVER_ARGS="--resync 10s"` to have a resync sweep of
//! every app land during the analysis.
//!
//! Run: `cargo build --release -p drover-sim -p drover --bins && cargo bench -p drover-e2e --bench rollouts`.
//! `BENCH_APPS` (default 200) and `BENCH_RUNS` (default 3) change the shape; `BENCH_DROVER_ARGS` adds flags to
//! `drover run` (e.g. `--workers 32`); `BENCH_TRACE=1` prints the median rollout's requests.

#[path = "common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use drover::rollout::{AnalysisPhase, RolloutResult, StepRef};
use serde_json::{Value, json};
use tokio::time::Instant;

use common::{Drover, Sim, client, free_port, info, loadavg, machine, median, percentile, report};

/// Simulated time runs 100 times faster; Drover's steps and Prometheus are real time.
const TIME_SCALE: f64 = 0.01;
const PAUSE_SECS: u64 = 10;
const INITIAL_DELAY_SECS: u64 = 5;
const INTERVAL_SECS: u64 = 10;
const COUNT: u64 = 3;
const LOAD_RPS: f64 = 20.0;

fn name(i: usize) -> String {
    format!("app-{i:03}")
}

fn background_name(i: usize) -> String {
    format!("bg-{i:05}")
}

/// A steady app of the cluster around the rollouts: a plain rolling update, no analysis.
fn background_record(name: &str) -> String {
    json!({
        "apiVersion": "drover.io/v1alpha1", "kind": "App",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"template": {"image": "ghcr.io/acme/api:1", "count": 2, "resources": {"cpu": 100, "memoryMB": 64}}}
    })
    .to_string()
}

fn record(name: &str, image: &str, prometheus: &str) -> String {
    let query = "sum(rate(http_requests_total{namespace=\"{{ .Namespace }}\",job=\"{{ .JobID }}\",\
                 version=\"{{ .Version }}\",code=\"500\"}[30s])) / sum(rate(http_requests_total{namespace=\
                 \"{{ .Namespace }}\",job=\"{{ .JobID }}\",version=\"{{ .Version }}\"}[30s]))";
    json!({
        "apiVersion": "drover.io/v1alpha1", "kind": "App",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "template": {"image": image, "count": 2, "resources": {"cpu": 100, "memoryMB": 64}},
            "strategy": {
                "type": "Canary", "minHealthyTime": "1s", "healthyDeadline": "1m",
                "canary": {"replicas": 1, "steps": [
                    {"pause": {"duration": format!("{PAUSE_SECS}s")}},
                    {"analysis": {"template": "error-rate"}}
                ]}
            },
            "analysis": {"error-rate": {
                "prometheus": {"address": prometheus, "query": query, "timeout": "5s"},
                "failureCondition": "result > 0.05",
                "interval": format!("{INTERVAL_SECS}s"), "count": COUNT,
                "initialDelay": format!("{INITIAL_DELAY_SECS}s"),
                "consecutiveErrorLimit": 3, "onEmpty": "Inconclusive", "onNaN": "Inconclusive"
            }}
        }
    })
    .to_string()
}

fn wall_ms(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn parse_ms(text: &str) -> Option<f64> {
    humantime::parse_rfc3339_weak(text).ok().map(wall_ms)
}

/// Maps the simulator's request-log times (simulated ms since its start) to wall-clock ms, from one `/_sim/time`
/// reading taken between two wall-clock readings.
struct SimClock {
    anchor_wall_ms: f64,
    anchor_sim_ms: f64,
}

impl SimClock {
    async fn read(http: &reqwest::Client, sim: &Sim) -> anyhow::Result<SimClock> {
        let before = wall_ms(SystemTime::now());
        let t: Value = http.get(format!("{}/_sim/time", sim.nomad)).send().await?.json().await?;
        let after = wall_ms(SystemTime::now());
        let now_ms = t["now_ms"].as_f64().context("now_ms")?;
        Ok(SimClock { anchor_wall_ms: (before + after) / 2.0, anchor_sim_ms: now_ms })
    }

    fn wall_ms(&self, sim_ms: f64) -> f64 {
        self.anchor_wall_ms - (self.anchor_sim_ms - sim_ms) * TIME_SCALE
    }
}

/// The figures of one run.
#[derive(Debug, Default)]
struct Figures {
    cpu_seconds: f64,
    hwm_mb: f64,
    rollout_secs: f64,
    qps_avg: f64,
    qps_peak: f64,
    queries: f64,
    measurements: f64,
    succeeded: usize,
    reconciles: f64,
    reconcile_ms: f64,
    query_ms: f64,
    /// Mean round trip of Drover's promote requests (the simulator applies writes one at a time, under one lock).
    promote_ms: f64,
    /// Mean time a due app waited for a worker (`drover_queue_wait_seconds{priority="key"}`).
    wait_ms: f64,
    /// Due → promote request, ms, ascending.
    delays: Vec<f64>,
    /// The last measurement's `at` (answer folded) → promote request, ms, ascending.
    reactions: Vec<f64>,
    /// The app's update write answered → its promote request, beyond the steps' own time (pause, initial delay and
    /// intervals), ms, ascending: everything Drover, Nomad and Prometheus add, timed by this bench alone.
    overheads: Vec<f64>,
}

async fn one_run(http: &reqwest::Client, apps: usize, background: usize, run: usize) -> anyhow::Result<Figures> {
    let sim = Sim::start(TIME_SCALE)?;
    let prometheus = drover_e2e::PrometheusProcess::start_for(&sim.nomad, free_port()?).await;
    let prom = prometheus.url.clone();
    // Drover's default resync (5 minutes) unless the flags added say otherwise.
    let args = common::drover_args(&[("--resync", "5m")]);
    let mut drover = Drover::start(&sim, &args.iter().map(String::as_str).collect::<Vec<_>>())?;
    drover.wait_healthz(http, Duration::from_secs(30)).await?;
    for i in 0..apps {
        let body = json!({"namespace": "default", "job": name(i), "load": LOAD_RPS, "error_rate": 0.0});
        http.post(format!("{}/_sim/nomad/workload", sim.nomad)).json(&body).send().await?.error_for_status()?;
        let url = format!("{}/v1/kv/drover/apps/default/{}", sim.consul, name(i));
        http.put(&url).body(record(&name(i), "ghcr.io/acme/web:1", &prom)).send().await?.error_for_status()?;
    }
    for i in 0..background {
        let url = format!("{}/v1/kv/drover/apps/default/{}", sim.consul, background_name(i));
        http.put(&url).body(background_record(&background_name(i))).send().await?.error_for_status()?;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let healthy = common::metric_sum(&drover.metrics(http).await?, "drover_apps", "phase=\"Healthy\"");
        if healthy as usize >= apps + background {
            break;
        }
        if Instant::now() > deadline {
            bail!("run {run}: only {healthy} of {} apps Healthy after 300 s", apps + background);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Steady state reached: the update, all records at once.
    let rollouts = |text: &str| common::metric_sum(text, "drover_rollouts_total", "");
    let measured = |text: &str| common::metric_sum(text, "drover_analysis_measurements_total", "");
    let text = drover.metrics(http).await?;
    let (r0, m0) = (rollouts(&text), measured(&text));
    let labelled_sum_count = |text: &str, name: &str, labels: &str| {
        (
            common::metric_sum(text, &format!("{name}_sum"), labels),
            common::metric_sum(text, &format!("{name}_count"), labels),
        )
    };
    let promote_sum_count = |text: &str| {
        labelled_sum_count(text, "drover_nomad_request_duration_seconds", "endpoint=\"deployment_promote\"")
    };
    let wait_sum_count = |text: &str| labelled_sum_count(text, "drover_queue_wait_seconds", "priority=\"key\"");
    let sum_count = |text: &str, name: &str| labelled_sum_count(text, name, "");
    let (rec0, query0, promote0, wait0) = (
        sum_count(&text, "drover_reconcile_duration_seconds"),
        sum_count(&text, "drover_analysis_query_duration_seconds"),
        promote_sum_count(&text),
        wait_sum_count(&text),
    );
    let cpu0 = common::cpu_seconds(drover.proc.pid()).unwrap_or(0.0);
    // The peak from here on: the 1 200 apps' first convergence is not the rollout's.
    let hwm_reset = common::reset_peak_rss(drover.proc.pid());
    let q0 = common::prometheus_queries(http, &prom).await?;
    // Only the sequence number: a log read since the largest one lists nothing.
    let log0: Value =
        http.get(format!("{}/_sim/log?server=nomad&since={}", sim.nomad, u64::MAX)).send().await?.json().await?;
    let since = log0["last_seq"].as_u64().unwrap_or(0);
    let started = Instant::now();
    let mut puts = tokio::task::JoinSet::new();
    for i in 0..apps {
        let (http, url, body) = (
            http.clone(),
            format!("{}/v1/kv/drover/apps/default/{}", sim.consul, name(i)),
            record(&name(i), "ghcr.io/acme/web:2", &prom),
        );
        puts.spawn(async move {
            http.put(url).body(body).send().await?.error_for_status()?;
            anyhow::Ok((name(i), wall_ms(SystemTime::now())))
        });
    }
    // When each app's update was written (its PUT answered), by the bench's own clock.
    let mut written: HashMap<String, f64> = HashMap::new();
    while let Some(done) = puts.join_next().await {
        let (app, at) = done??;
        written.insert(app, at);
    }

    // Until every rollout ended, sampling Prometheus' query counter for its busiest second.
    let deadline = started + Duration::from_secs(300);
    let mut samples: Vec<(Instant, f64)> = vec![(started, q0)];
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        samples.push((Instant::now(), common::prometheus_queries(http, &prom).await?));
        let ended = rollouts(&drover.metrics(http).await?) - r0;
        if ended as usize >= apps {
            break;
        }
        if Instant::now() > deadline {
            println!("  run {run}: only {ended} of {apps} rollouts ended after 300 s; figures from those");
            break;
        }
    }
    let rollout_secs = started.elapsed().as_secs_f64();
    let cpu1 = common::cpu_seconds(drover.proc.pid()).unwrap_or(0.0);
    let hwm = common::proc_status_bytes(drover.proc.pid(), "VmHWM").unwrap_or(0);
    let text = drover.metrics(http).await?;
    let q1 = common::prometheus_queries(http, &prom).await?;
    let (rec1, query1, promote1, wait1) = (
        sum_count(&text, "drover_reconcile_duration_seconds"),
        sum_count(&text, "drover_analysis_query_duration_seconds"),
        promote_sum_count(&text),
        wait_sum_count(&text),
    );
    let mean_ms = |a: (f64, f64), b: (f64, f64)| (b.0 - a.0) / (b.1 - a.1).max(1.0) * 1000.0;
    let qps_peak =
        samples.windows(2).map(|w| (w[1].1 - w[0].1) / (w[1].0 - w[0].0).as_secs_f64().max(1e-3)).fold(0.0, f64::max);

    // The promote requests, by deployment.
    let clock = SimClock::read(http, &sim).await?;
    let log: Value =
        http.get(format!("{}/_sim/log?server=nomad&since={since}", sim.nomad)).send().await?.json().await?;
    let requests: Vec<&Value> = log["requests"].as_array().into_iter().flatten().collect();
    let mut promoted: HashMap<String, f64> = HashMap::new();
    for r in &requests {
        let (Some(path), Some(at)) = (r["path"].as_str(), r["at_ms"].as_f64()) else { continue };
        if r["method"] == "POST"
            && let Some(id) = path.strip_prefix("/v1/deployment/promote/")
        {
            promoted.entry(id.to_string()).or_insert(clock.wall_ms(at));
        }
    }

    // Each rollout's analysis run: when its last measurement was due and taken.
    let (mut delays, mut reactions, mut overheads) = (Vec::new(), Vec::new(), Vec::new());
    let steps_ms = ((PAUSE_SECS + INITIAL_DELAY_SECS + (COUNT - 1) * INTERVAL_SECS) * 1000) as f64;
    // (delay, app, deployment, due, promote) of each rollout, for the timeline of the median one.
    let mut by_app: Vec<(f64, String, String, f64, f64)> = Vec::new();
    let (mut first_start, mut last_taken) = (f64::MAX, 0.0f64);
    let mut succeeded = 0;
    for (app, status) in drover_e2e::statuses(http, &sim.consul).await {
        // The first version rolled out without canaries; only the update has a canary version.
        let Some(rollout) = status.rollout.as_ref().filter(|r| r.canary_version.is_some()) else { continue };
        if rollout.result == Some(RolloutResult::Succeeded) {
            succeeded += 1;
        }
        let analysis = rollout.analysis_runs.iter().find(|r| r.id.step == StepRef::Step(1));
        let Some(analysis) = analysis.filter(|r| r.phase == AnalysisPhase::Successful) else {
            println!("  run {run}: {app}: no successful analysis run: {:?}", rollout.message);
            continue;
        };
        let Some(start) = parse_ms(&analysis.started_at) else { continue };
        first_start = first_start.min(start);
        let due = start + ((INITIAL_DELAY_SECS + (COUNT - 1) * INTERVAL_SECS) * 1000) as f64;
        let taken = analysis.measurements.last().and_then(|m| parse_ms(&m.at));
        if let Some(taken) = taken {
            last_taken = last_taken.max(taken);
        }
        let promote = rollout.deployment_id.as_ref().and_then(|d| promoted.get(d)).copied();
        let Some(promote) = promote else {
            println!("  run {run}: {app}: no promote request for deployment {:?}", rollout.deployment_id);
            continue;
        };
        delays.push(promote - due);
        if let Some(at) = written.get(&app) {
            overheads.push(promote - at - steps_ms);
        }
        let deployment = rollout.deployment_id.clone().unwrap_or_default();
        by_app.push((promote - due, app.clone(), deployment, due, promote));
        if let Some(taken) = taken {
            reactions.push(promote - taken);
        }
    }
    delays.sort_by(f64::total_cmp);
    reactions.sort_by(f64::total_cmp);
    overheads.sort_by(f64::total_cmp);
    by_app.sort_by(|a, b| a.0.total_cmp(&b.0));
    if std::env::var_os("BENCH_TRACE").is_some()
        && let Some((delay, app, deployment, due, promote)) = by_app.get(by_app.len() / 2)
    {
        // What the median app's requests were between its last measurement's due time and its promotion.
        println!("  run {run}: timeline of {app} (median delay {delay:.0} ms), ms after the measurement was due:");
        for r in &requests {
            let (Some(path), Some(at)) = (r["path"].as_str(), r["at_ms"].as_f64()) else { continue };
            let at = clock.wall_ms(at);
            if at >= *due - 50.0
                && at <= *promote + 5.0
                && (path.contains(app.as_str()) || path.contains(deployment.as_str()))
            {
                println!("    {:>7.1}  {} {} {}", at - due, r["server"], r["method"], path);
            }
        }
    }
    let window = ((last_taken - first_start) / 1000.0).max(1.0);
    Ok(Figures {
        cpu_seconds: cpu1 - cpu0,
        hwm_mb: if hwm_reset { common::mb(hwm) } else { f64::NAN },
        rollout_secs,
        qps_avg: (q1 - q0) / window,
        qps_peak,
        queries: q1 - q0,
        measurements: measured(&text) - m0,
        succeeded,
        reconciles: rec1.1 - rec0.1,
        reconcile_ms: mean_ms(rec0, rec1),
        query_ms: mean_ms(query0, query1),
        promote_ms: mean_ms(promote0, promote1),
        wait_ms: mean_ms(wait0, wait1),
        delays,
        reactions,
        overheads,
    })
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")?;
    rt.block_on(run())
}

fn ms3(sorted: &[f64]) -> (f64, f64, f64) {
    (percentile(sorted, 50.0), percentile(sorted, 99.0), sorted.last().copied().unwrap_or(f64::NAN))
}

async fn run() -> anyhow::Result<()> {
    let apps: usize = std::env::var("BENCH_APPS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3).max(1);
    let background: usize = std::env::var("BENCH_BACKGROUND").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000);
    println!(
        "canary rollout benchmark (issue #8): {apps} apps updated at once, among {background} steady apps; steps \
         pause {PAUSE_SECS}s, analysis (initialDelay {INITIAL_DELAY_SECS}s, interval {INTERVAL_SECS}s, count \
         {COUNT}); {runs} runs"
    );
    println!("  machine: {}; load average at start {}", machine(), loadavg());
    if let Ok(extra) = std::env::var("BENCH_DROVER_ARGS") {
        println!("  drover run flags added: {extra}");
    }
    println!(
        "  note: drover, drover-sim, prometheus and this load generator share the CPUs; sim time scale {TIME_SCALE} \
         (Drover's steps and Prometheus are real time)"
    );
    let http = client()?;
    let mut all = Vec::new();
    for run in 1..=runs {
        let f = one_run(&http, apps, background, run).await?;
        let (d50, d99, dmax) = ms3(&f.delays);
        let (r50, r99, rmax) = ms3(&f.reactions);
        let (o50, o99, omax) = ms3(&f.overheads);
        println!(
            "  run {run}: {}/{apps} promoted in {:.1} s; CPU {:.2} s; VmHWM {:.1} MB; {:.0} queries ({:.0} \
             measurements), {:.1}/s avg, {:.0}/s busiest second; due→promote p50/p99/max {d50:.0}/{d99:.0}/{dmax:.0} \
             ms; answer→promote {r50:.0}/{r99:.0}/{rmax:.0} ms; update→promote beyond 35 s \
             {o50:.0}/{o99:.0}/{omax:.0} ms; mean wait for a worker {:.1} ms; load {}",
            f.succeeded,
            f.rollout_secs,
            f.cpu_seconds,
            f.hwm_mb,
            f.queries,
            f.measurements,
            f.qps_avg,
            f.qps_peak,
            f.wait_ms,
            loadavg()
        );
        all.push(f);
    }
    let med = |pick: &dyn Fn(&Figures) -> f64| median(&mut all.iter().map(pick).collect::<Vec<_>>());
    println!("medians over {} runs:", all.len());
    // Every run must promote every rollout: the fewest over the runs, not the median.
    let succeeded = all.iter().map(|f| f.succeeded as f64).fold(f64::INFINITY, f64::min);
    report("rollouts promoted", &format!("{succeeded:.0} of {apps}"), &format!("{apps}"), succeeded as usize == apps);
    info("rollout duration (update → every rollout ended)", &format!("{:.1} s", med(&|f| f.rollout_secs)));
    info(
        "drover CPU over the rollout",
        &format!(
            "{:.2} s ({:.1} % of one core)",
            med(&|f| f.cpu_seconds),
            med(&|f| f.cpu_seconds / f.rollout_secs * 100.0)
        ),
    );
    info(
        "drover peak memory over the rollout (VmHWM, reset at the update; NaN: the kernel refused the reset)",
        &format!("{:.1} MB", med(&|f| f.hwm_mb)),
    );
    let expected = (apps as u64 * COUNT) as f64;
    let queries = med(&|f| f.queries);
    report(
        "Prometheus queries (whole rollout)",
        &format!("{queries:.0}; Drover counted {:.0} measurements", med(&|f| f.measurements)),
        &format!("{expected:.0} (one per measurement; distinct per app, so none deduplicated)"),
        (queries - expected).abs() <= expected * 0.02,
    );
    info(
        "Prometheus queries per second during the analysis",
        &format!(
            "{:.1} average over the analysis window, {:.0} in the busiest second (the apps' runs start together, so \
             each round of {apps} queries lands at once)",
            med(&|f| f.qps_avg),
            med(&|f| f.qps_peak)
        ),
    );
    // The median over the runs of each run's p50, p99 and max of one series.
    let med3 = |series: &dyn Fn(&Figures) -> &[f64]| {
        (med(&|f| ms3(series(f)).0), med(&|f| ms3(series(f)).1), med(&|f| ms3(series(f)).2))
    };
    let (p50, p99, max) = med3(&|f| &f.delays);
    report(
        "last measurement due → promote request, p50",
        &format!("{p50:.0} ms (p99 {p99:.0} ms, max {max:.0} ms)"),
        "<= 100 ms",
        p50 <= 100.0,
    );
    let (r50, r99, rmax) = med3(&|f| &f.reactions);
    info(
        "of which after the answer (answer folded → promote), p50/p99/max",
        &format!("{r50:.0} / {r99:.0} / {rmax:.0} ms"),
    );
    info(
        "end to end: update written → promote request, beyond the steps' own 35 s (placing and health of the \
         canary in Nomad at the simulator's speed, every step start, the measurements, the promote), p50/p99/max",
        &{
            let (o50, o99, omax) = med3(&|f| &f.overheads);
            format!("{o50:.0} / {o99:.0} / {omax:.0} ms")
        },
    );
    info(
        "reconciles during the rollout, mean duration and wait for a worker; analysis query, promote request mean \
         round trip",
        &format!(
            "{:.0}, {:.1} ms, {:.1} ms; {:.1} ms, {:.1} ms (`--workers`, default 32)",
            med(&|f| f.reconciles),
            med(&|f| f.reconcile_ms),
            med(&|f| f.wait_ms),
            med(&|f| f.query_ms),
            med(&|f| f.promote_ms)
        ),
    );
    println!("  load average at the end {}", loadavg());
    Ok(())
}
