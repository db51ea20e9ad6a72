//! A converged cluster is silent (DESIGN §1): across resyncs Drover writes nothing to either server and reads no
//! app's job or status; only its long-lived watches stay open. Checked with the simulator's request log, after
//! resyncs proved by `drover_reconcile_total`.

use drover::status::Phase;
use drover_e2e::{DroverProcess, LoggedRequest, SimProcess, TIME_SCALE, template_record};
use drover_sim::Server;

/// The requests a converged controller may make: the blocking query on the records prefix and Nomad's event stream
/// (or its fallback blocking lists) with the blocking query on the namespace list beside it (C25), all reads.
fn is_watch(r: &LoggedRequest) -> bool {
    r.method == "GET"
        && match r.server {
            Server::Consul => r.path == "/v1/kv/drover/apps/" && r.query.contains("recurse"),
            Server::Nomad => {
                matches!(r.path.as_str(), "/v1/event/stream" | "/v1/jobs" | "/v1/deployments" | "/v1/namespaces")
            }
        }
}

#[tokio::test]
async fn converged_apps_should_stay_silent_across_resyncs() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let apps = ["alpha", "beta", "gamma"];
    for name in apps {
        sim.put_record("default", name, template_record(name, "nginx:1.27", "")).await;
    }
    let mut drover = DroverProcess::start(&sim, &["--resync", "1s"]).await;
    for name in apps {
        sim.wait_for_status("default", name, "Healthy", |s| s.phase == Phase::Healthy).await;
    }
    // One full resync round first, so the writes that led to convergence are behind us.
    let seen = drover.reconcile_total().await;
    drover.wait_reconciles(seen, apps.len() as u64).await;

    sim.clear_log().await;
    let since = sim.log(None, 0).await.last_seq;
    let seen = drover.reconcile_total().await;
    let resyncs = 3;
    drover.wait_reconciles(seen, resyncs * apps.len() as u64).await;
    let log = sim.log(None, since).await.requests;

    let writes: Vec<_> = log.iter().filter(|r| r.is_write()).collect();
    assert!(writes.is_empty(), "no writes to Consul or Nomad across {resyncs} resyncs: {writes:#?}");
    let per_app: Vec<_> =
        log.iter().filter(|r| r.path.starts_with("/v1/job/") || r.path.starts_with("/v1/kv/drover/status/")).collect();
    assert!(per_app.is_empty(), "no per-app reads of jobs or statuses: {per_app:#?}");
    let other: Vec<_> = log.iter().filter(|r| !is_watch(r)).collect();
    assert!(other.is_empty(), "only the long-lived watch requests: {other:#?}");
    for name in apps {
        let status = sim.status("default", name).await.expect("status");
        assert_eq!(status.phase, Phase::Healthy, "{name}: {status:?}");
    }

    // The control: the same log does show Drover's writes as soon as something changes.
    let since = sim.log(None, 0).await.last_seq;
    let generation = sim.put_record("default", "beta", template_record("beta", "nginx:1.28", "")).await;
    sim.wait_for_status("default", "beta", "Healthy at the new generation", |s| {
        s.phase == Phase::Healthy && s.observed_generation == generation
    })
    .await;
    let log = sim.log(None, since).await.requests;
    let registers: Vec<_> = log.iter().filter(|r| r.method == "POST" && r.path == "/v1/job/beta").collect();
    assert_eq!(registers.len(), 1, "one register of the changed app: {log:#?}");
    let others: Vec<_> =
        log.iter().filter(|r| r.is_write() && r.server == Server::Nomad && r.path != "/v1/job/beta").collect();
    assert!(others.is_empty(), "no Nomad write for the unchanged apps: {others:#?}");
    drover.assert_running();
}

#[tokio::test]
async fn restarted_controller_should_not_rewrite_converged_apps() {
    let sim = SimProcess::start(TIME_SCALE).await;
    let apps = ["alpha", "beta"];
    for name in apps {
        sim.put_record("default", name, template_record(name, "nginx:1.27", "")).await;
    }
    let first = DroverProcess::start(&sim, &[]).await;
    for name in apps {
        sim.wait_for_status("default", name, "Healthy", |s| s.phase == Phase::Healthy).await;
    }
    drop(first);

    // A new process loads records, statuses and jobs, reconciles every app at start and on two resyncs.
    let since = sim.log(None, 0).await.last_seq;
    let mut second = DroverProcess::start(&sim, &[]).await;
    second.wait_reconciles(0, 3 * apps.len() as u64).await;
    let log = sim.log(None, since).await.requests;
    let writes: Vec<_> = log.iter().filter(|r| r.is_write()).collect();
    assert!(writes.is_empty(), "the status kept what was applied, so nothing is written again: {writes:#?}");
    for name in apps {
        let status = sim.status("default", name).await.expect("status");
        assert_eq!(status.phase, Phase::Healthy, "{name}: {status:?}");
    }
    second.assert_running();
}
