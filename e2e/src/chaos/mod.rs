//! The chaos soak (issue #9): one driver, used by `cargo bench --bench chaos` (1 000 apps, 10 minutes of faults) and
//! by `tests/chaos.rs` (100 apps, 75 s of faults): a fleet of rolling, canary and autoscaled apps, records colliding
//! with jobs a person owns, and two `drover run` replicas with leader election, through a seeded schedule of faults
//! ([`schedule`]); then the invariants, printed as figures beside their targets ([`ChaosReport`]).
//!
//! The simulator runs at time scale 1: session TTLs run on its clock and Drover renews on real time.
//!
//! What "the last write wins" means across a Consul snapshot restore: the restore puts back the records (and
//! statuses, and the lock) as they were at the snapshot, with their old, lower `ModifyIndex`es. Until a person writes
//! again, those old records *are* the desired state — Drover rolling the jobs back to them is right. The soak then
//! writes every record again with its last intended value (at a new, higher index), so the last write is well
//! defined: after the faults, every app must run its last written image and report the generation of that write.
//! The restore also puts back older statuses (Drover's compare-and-set status writes then fail once and read
//! again) and the lock as the snapshot had it: held by the session of the replica that led then — stopped since,
//! so no replica leads until that session expires (up to 2 × TTL, longer while Consul has no leader).

mod apps;
mod checks;
mod driver;
mod observe;
mod report;
mod schedule;

pub use apps::{Kind, kind, name, record};
pub use driver::run;
pub use report::{ChaosReport, Figure, RssSample, flatness, memory_table, vm_rss_kb};
pub use schedule::{Event, Planned, Target, fingerprint, schedule};

use std::time::Duration;

/// The target of issue #9: every app converges this soon after the faults stop.
pub const CONVERGE_TARGET: Duration = Duration::from_secs(30);

/// How a soak runs.
#[derive(Clone, Debug)]
pub struct ChaosConfig {
    /// Number of apps (records).
    pub apps: usize,
    /// Length of the fault phase.
    pub faults_for: Duration,
    /// Seed of the schedule.
    pub seed: u64,
    /// Start Prometheus and make every tenth app autoscaled.
    pub autoscaling: bool,
    /// How long the first rollout of every app may take, before the faults start.
    pub initial_within: Duration,
    /// How long to wait for convergence after the faults stop before giving up (beyond [`CONVERGE_TARGET`], so a
    /// late convergence is measured, not only failed).
    pub settle_within: Duration,
    /// `drover run --resync`.
    pub resync: &'static str,
}

impl ChaosConfig {
    /// `apps`, `seconds` of faults and `seed`, each overridden by `DROVER_CHAOS_APPS`, `DROVER_CHAOS_SECONDS` and
    /// `DROVER_CHAOS_SEED` when set; `DROVER_CHAOS_AUTOSCALING=0` leaves the autoscaled apps (and Prometheus) out.
    pub fn from_env(apps: usize, seconds: u64, seed: u64) -> ChaosConfig {
        let var = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse::<u64>().ok());
        let apps = var("DROVER_CHAOS_APPS").map_or(apps, |n| usize::try_from(n).unwrap_or(apps));
        let seconds = var("DROVER_CHAOS_SECONDS").unwrap_or(seconds);
        ChaosConfig {
            apps,
            faults_for: Duration::from_secs(seconds),
            seed: var("DROVER_CHAOS_SEED").unwrap_or(seed),
            autoscaling: var("DROVER_CHAOS_AUTOSCALING") != Some(0),
            // A rollout lasts a few seconds at time scale 1; the fleet starts together.
            initial_within: Duration::from_secs(60 + apps as u64 / 4),
            settle_within: Duration::from_secs(120),
            resync: "10s",
        }
    }
}
