//! The short chaos soak (issue #9): 100 apps through 75 s of seeded faults with two replicas under leader election
//! (the full size is `cargo bench --bench chaos`; both run `drover_e2e::chaos`). Fails, naming the app and what was
//! seen, when an invariant breaks: a job Drover does not own was touched, a record's last write is not what runs,
//! an app did not converge within 30 s of the faults stopping, a stopped replica wrote after the next leader's
//! first write, a replica panicked, or memory grew. `DROVER_CHAOS_SEED` (and `_APPS`, `_SECONDS`) run it otherwise.

use drover_e2e::chaos::{ChaosConfig, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_chaos_soak_should_keep_every_invariant() {
    drover_e2e::require_tool("prometheus");
    let cfg = ChaosConfig::from_env(100, 75, 1);
    let report = run(&cfg).await;
    eprintln!("{report}");
    assert!(report.violations.is_empty(), "invariants broken:\n{}", report.violations.join("\n"));
}
