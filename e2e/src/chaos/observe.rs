//! What the soak watches while it runs: the memory of each replica, and the simulator's request log.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use drover_sim::Server;
use tokio::time::Instant;

use super::report::{RssSample, vm_rss_kb};
use crate::SimProcess;

/// How often the memory of each replica is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(2);

/// What the request-log scanner found.
#[derive(Default)]
pub(super) struct LogScan {
    since: u64,
    pub(super) requests: u64,
    /// `(server, status)` of Drover's requests answered with an error or dropped (status 0).
    pub(super) errors: BTreeMap<(&'static str, u16), u64>,
    /// Drover's writes to jobs it does not own.
    pub(super) foreign_writes: Vec<String>,
    /// `(seq, User-Agent)` of Drover's writes other than its lock's (session and lock key), in log order.
    pub(super) app_writes: Vec<(u64, String)>,
}

/// Samples `VmRSS` of every running replica every [`SAMPLE_EVERY`] until `done`.
pub(super) async fn sample_memory(
    pids: &Mutex<Vec<(String, u32)>>,
    done: &AtomicBool,
    epoch: Instant,
) -> Vec<RssSample> {
    let mut out = Vec::new();
    while !done.load(Ordering::Relaxed) {
        let running = pids.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (replica, pid) in running {
            if let Some(kb) = vm_rss_kb(pid) {
                out.push(RssSample { t: epoch.elapsed().as_secs_f64(), replica, kb });
            }
        }
        let next = Instant::now() + SAMPLE_EVERY;
        while Instant::now() < next && !done.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    out
}

/// Reads the simulator's request log every few seconds until `done` (it keeps the last 200 000 requests: a long
/// soak must read as it goes), counting Drover's failed requests and finding its writes to jobs it does not own.
pub(super) async fn scan_log(sim: &SimProcess, foreign: &BTreeMap<String, (u64, u64)>, done: &AtomicBool) -> LogScan {
    let mut scan = LogScan::default();
    loop {
        let finished = done.load(Ordering::Relaxed);
        // A read cut by a fault (`/_sim/requests/cut` drops every request in flight) is tried again next time.
        let url = format!("{}/_sim/log?since={}", sim.nomad_url, scan.since);
        if let Ok(resp) = sim.http.get(&url).send().await
            && let Ok(page) = resp.json::<crate::RequestLog>().await
        {
            for r in page.requests {
                if !r.user_agent.starts_with("drover/") {
                    continue;
                }
                scan.requests += 1;
                let server = if r.server == Server::Consul { "consul" } else { "nomad" };
                if r.status == 0 || r.status >= 500 {
                    *scan.errors.entry((server, r.status)).or_default() += 1;
                }
                let foreign_write = r.server == Server::Nomad
                    && r.is_write()
                    && !r.path.ends_with("/plan")
                    && foreign.keys().any(|id| {
                        let base = format!("/v1/job/{id}");
                        r.path == base || r.path.starts_with(&format!("{base}/"))
                    });
                if r.is_write() && !r.path.starts_with("/v1/session/") && r.path != "/v1/kv/drover/leader" {
                    scan.app_writes.push((r.seq, r.user_agent.clone()));
                }
                if foreign_write {
                    scan.foreign_writes.push(format!("{} {} {} by {}", r.method, r.path, r.status, r.user_agent));
                }
            }
            scan.since = page.last_seq;
        }
        if finished {
            return scan;
        }
        let next = Instant::now() + Duration::from_secs(3);
        while Instant::now() < next && !done.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
