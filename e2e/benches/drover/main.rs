//! Benchmark of the controller (issues #4 and #7) against the release `drover-sim`, printing each figure beside its
//! target (PASS/MISS); it asserts nothing about time.
//!
//! Run: `cargo build --release -p drover-sim -p drover --bins && cargo bench -p drover-e2e --bench drover`.
//!
//! Parts (each on its own simulator and drover processes unless said otherwise):
//! - **a** back-to-back writes at 1 000 apps: a plain HTTP client writes a new record, waits until its job is
//!   registered in Nomad, then writes the next; write → registered p50 ≤ 15 ms, p99 ≤ 50 ms.
//! - **b** 10 000 apps from a cold start to all Healthy (≤ 60 s) and drover's peak memory (< 150 MB).
//! - **c** the converged cluster: no writes, no per-app reads, O(1) requests per resync (needs b).
//! - **d** bytes read from Consul per desired change (needs b).
//! - **e** steady churn of 20 record writes/s at 10 000 apps: write → registered p50 ≤ 250 ms, and Consul bytes
//!   read per second beside the watch budget (needs b).
//!
//! When a convergence wait gives up, the status of every app not Healthy (at most 10) is printed with its live
//! Nomad job and latest deployment.
//!
//! Environment: `DROVER_BENCH_ONLY=a,e` runs the listed parts (b runs whenever c, d or e is asked for, as they use
//! its cluster); `BENCH_APPS=2000` shrinks parts b–e (the targets are for 10 000); `BENCH_DEADLINE_SECS` changes the
//! 5-minute convergence deadline; `BENCH_BIN_DIR` points at a private copy of the binaries; `BENCH_VERBOSE=1` shows
//! the children's logs.

#[path = "../common/mod.rs"]
mod common;

mod apps;
mod churn;
mod cold;
mod latency;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context;

use common::{client, loadavg, machine};

/// Simulated time runs 100 times faster than real time (a 10 s min-healthy-time lasts 100 ms).
pub const TIME_SCALE: f64 = 0.01;
/// Apps for the cold start and churn (overridable with `BENCH_APPS`).
const APPS: usize = 10_000;
/// Deadline for a convergence (overridable with `BENCH_DEADLINE_SECS`).
const CONVERGE_DEADLINE: Duration = Duration::from_secs(300);

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")?;
    rt.block_on(run())
}

/// The parts asked for by `DROVER_BENCH_ONLY` (all when unset or empty).
fn parts() -> BTreeSet<char> {
    let only = std::env::var("DROVER_BENCH_ONLY").unwrap_or_default();
    let asked: BTreeSet<char> =
        only.split(',').filter_map(|p| p.trim().chars().next()).map(|c| c.to_ascii_lowercase()).collect();
    if asked.is_empty() { "abcde".chars().collect() } else { asked }
}

async fn run() -> anyhow::Result<()> {
    let apps = std::env::var("BENCH_APPS").ok().and_then(|v| v.parse().ok()).unwrap_or(APPS);
    let deadline = std::env::var("BENCH_DEADLINE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(CONVERGE_DEADLINE, Duration::from_secs);
    let parts = parts();
    println!("drover benchmark (issues #4, #7); parts {}", parts.iter().collect::<String>());
    println!("  machine: {}; load average at start {}", machine(), loadavg());
    println!("  note: drover, drover-sim and this load generator share the CPUs; sim time scale {TIME_SCALE}");
    let http = client()?;
    if parts.contains(&'a') {
        latency::back_to_back(&http, deadline).await?;
    }
    if parts.iter().any(|p| "bcde".contains(*p)) {
        cold::run(&http, apps, deadline, &parts).await?;
    }
    println!("  load average at the end {}", loadavg());
    Ok(())
}
