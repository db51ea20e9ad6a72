//! The chaos soak of issue #9 at full size: 1 000 apps (rolling, canary, autoscaled, and records colliding with jobs
//! a person owns), two `drover run` replicas with leader election, 10 minutes of seeded faults (5xx bursts,
//! latency, dropped connections, cut event streams and requests, leader loss of each server, a Consul snapshot
//! restore, hand edits of records and jobs, replicas stopped with SIGTERM and `kill -9`). Prints the invariants
//! and figures beside their targets, the memory curve of each replica, and the machine.
//!
//! Run: `cargo build --release -p drover -p drover-sim --bins && cargo bench -p drover-e2e --bench chaos`. The driver
//! (`drover_e2e::chaos`) starts the binaries next to the bench executable when they are there (`target/release`),
//! else those of `target/debug` (`cargo bench --profile dev` runs them on purpose); the line `binaries:` says
//! which. `DROVER_CHAOS_APPS`,
//! `DROVER_CHAOS_SECONDS` and `DROVER_CHAOS_SEED` override the size, the length of the fault phase and the seed
//! (same seed, same schedule); `DROVER_CHAOS_AUTOSCALING=0` runs without Prometheus (no autoscaled apps).

#[path = "common/mod.rs"]
mod common;

use drover_e2e::chaos::{ChaosConfig, run};

#[tokio::main]
async fn main() {
    let cfg = ChaosConfig::from_env(1_000, 600, 9);
    if cfg.autoscaling {
        drover_e2e::require_tool("prometheus");
    }
    let load_before = common::loadavg();
    let report = run(&cfg).await;
    println!("machine: {}; load average before {load_before}, after {}", common::machine(), common::loadavg());
    println!("{report}");
    if !report.violations.is_empty() {
        std::process::exit(1);
    }
}
