//! Benchmark of leader fail-over (issue #9): two `drover run` replicas with `--lock-ttl 10s --lock-delay 1s` against
//! one simulator at time scale 1 (its session TTLs run on its own clock, Drover's renewals on real time). The leader
//! is stopped with SIGTERM (it releases the lock) or `kill -9` (its session must expire: up to 2×TTL after its last
//! renew, then lock-delay); the figure is the time from the signal to the standby's `/readyz` 200, which it answers
//! once it holds the lock and has read every status again. Medians of 3 rounds, each on a fresh simulator with 20
//! apps.
//!
//! Run: `cargo build --release -p drover-sim -p drover --bins && cargo bench -p drover-e2e --bench failover`
//! (`BENCH_BIN_DIR=target/debug` runs the debug binaries: the figures are timeouts, not CPU). `BENCH_ROUNDS`
//! changes the number of rounds (default 3).

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::time::Instant;

use common::{Drover, Sim, client, info, loadavg, machine, median, report};

const TTL: Duration = Duration::from_secs(10);
const LOCK_DELAY: Duration = Duration::from_secs(1);
const APPS: usize = 20;

/// How a leader is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// SIGTERM: a graceful shutdown releases the lock.
    Term,
    /// SIGKILL: nothing is released.
    Kill,
}

/// What `/readyz` says: 200 (leads), 503 `standby`, or anything else (loading, not up).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ready {
    Leader,
    Standby,
    Other,
}

async fn readyz(http: &reqwest::Client, d: &Drover) -> Ready {
    let Ok(resp) = http.get(format!("{}/readyz", d.url)).send().await else { return Ready::Other };
    let ok = resp.status().is_success();
    match (ok, resp.text().await.unwrap_or_default().trim()) {
        (true, _) => Ready::Leader,
        (false, "standby") => Ready::Standby,
        _ => Ready::Other,
    }
}

async fn wait_for(http: &reqwest::Client, d: &Drover, want: Ready, within: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        if readyz(http, d).await == want {
            return Ok(started.elapsed());
        }
        if started.elapsed() > within {
            bail!("{} did not become {want:?} within {within:?}", d.url);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn put_records(http: &reqwest::Client, sim: &Sim) -> anyhow::Result<()> {
    for i in 0..APPS {
        let record = format!(
            "apiVersion: drover.io/v1alpha1\nkind: App\nmetadata: {{name: app-{i}, namespace: default}}\nspec:\n  \
             template: {{image: 'nginx:1', count: 1}}\n"
        );
        let url = format!("{}/v1/kv/drover/apps/default/app-{i}", sim.consul);
        http.put(&url).body(record).send().await.and_then(|r| r.error_for_status()).context("PUT record")?;
    }
    Ok(())
}

/// One round: a fresh simulator, a leader and a standby, then the leader stopped; the fail-over time.
async fn round(http: &reqwest::Client, stop: Stop) -> anyhow::Result<Duration> {
    let sim = Sim::start(1.0)?;
    put_records(http, &sim).await?;
    let args = ["--leader-elect", "true", "--lock-ttl", "10s", "--lock-delay", "1s", "--resync", "30s"];
    let mut leader = Drover::start(&sim, &args)?;
    wait_for(http, &leader, Ready::Leader, Duration::from_secs(30)).await.context("the first replica leads")?;
    let standby = Drover::start(&sim, &args)?;
    wait_for(http, &standby, Ready::Standby, Duration::from_secs(30)).await.context("the second is a standby")?;
    // Let the leader converge its apps and renew a few times, so the kill lands at any phase of the renew cycle.
    tokio::time::sleep(Duration::from_millis(2_000 + rand_ms(5_000))).await;
    let signalled = Instant::now();
    match stop {
        Stop::Term => {
            let status = std::process::Command::new("kill")
                .args(["-TERM", &leader.proc.pid().to_string()])
                .status()
                .context("kill -TERM")?;
            if !status.success() {
                bail!("kill -TERM failed: {status}");
            }
            let took = wait_for(http, &standby, Ready::Leader, TTL * 3).await.map(|_| signalled.elapsed())?;
            // It must have exited cleanly (released its lock, not timed out).
            let deadline = Instant::now() + Duration::from_secs(10);
            while leader.proc.exited().is_none() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            return match leader.proc.exited() {
                Some(s) if s.success() => Ok(took),
                other => bail!("the old leader did not exit cleanly after SIGTERM: {other:?}"),
            };
        }
        // Dropping the guard sends SIGKILL and reaps the process.
        Stop::Kill => drop(leader),
    }
    let within = TTL * 3 + LOCK_DELAY * 2;
    wait_for(http, &standby, Ready::Leader, within).await?;
    Ok(signalled.elapsed())
}

/// A pseudo-random number of milliseconds below `max` (from the clock; only to spread the kill over a renew cycle).
fn rand_ms(max: u64) -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    u64::from(nanos) % max.max(1)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3).max(1);
    let http = client()?;
    println!("failover: 2 replicas, --lock-ttl 10s --lock-delay 1s, {APPS} apps, {rounds} rounds; {}", machine());
    println!("  load average before: {}", loadavg());
    let mut results = Vec::new();
    for stop in [Stop::Term, Stop::Kill] {
        let mut secs = Vec::new();
        for i in 0..rounds {
            let took = round(&http, stop).await.with_context(|| format!("{stop:?} round {i}"))?;
            info(&format!("{stop:?} round {i}"), &format!("{:.2} s", took.as_secs_f64()));
            secs.push(took.as_secs_f64());
        }
        results.push((stop, median(&mut secs), secs));
    }
    for (stop, med, all) in results {
        let all: Vec<String> = all.iter().map(|s| format!("{s:.2}")).collect();
        match stop {
            Stop::Term => report(
                "fail-over after SIGTERM (median)",
                &format!("{med:.2} s [{}]", all.join(", ")),
                "≤ 2 s",
                med <= 2.0,
            ),
            Stop::Kill => {
                let bound = (TTL * 2 + LOCK_DELAY).as_secs_f64();
                report(
                    "fail-over after kill -9 (median)",
                    &format!("{med:.2} s [{}]", all.join(", ")),
                    &format!("≤ 2×TTL + lock-delay = {bound:.0} s"),
                    med <= bound,
                );
            }
        }
    }
    println!("  load average after: {}", loadavg());
    Ok(())
}
