//! Runs one soak: the processes, the fleet, the schedule carried out, the memory sampler and the request-log scanner
//! beside it, and the invariants checked at the end.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::apps::{self, Kind, LOAD};
use super::checks::{Fleet, check_foreign, converge};
use super::observe::{LogScan, sample_memory, scan_log};
use super::report::{ChaosReport, Figure, RssSample, memory_table};
use super::schedule::{Event, Target, fingerprint, schedule};
use super::{CONVERGE_TARGET, ChaosConfig};
use crate::{DroverProcess, PrometheusProcess, Ready, SimProcess, binary, job_modify_index, job_owner};

/// How long a stop of the leader waits for there to be one.
const LEADER_WAIT: Duration = Duration::from_secs(10);

/// The Drover replicas: two slots, each empty between a stop and the restart; stopped processes are kept (their
/// logs are read for panics at the end).
struct Replicas<'a> {
    args: Vec<String>,
    slots: [Option<DroverProcess>; 2],
    started: [u32; 2],
    stopped: Vec<(String, DroverProcess)>,
    /// `(incarnation name, pid)` of the running replicas, for the memory sampler.
    pids: &'a Mutex<Vec<(String, u32)>>,
}

impl Replicas<'_> {
    fn label(slot: usize, n: u32) -> String {
        format!("{}{n}", if slot == 0 { 'a' } else { 'b' })
    }

    async fn start(&mut self, sim: &SimProcess, slot: usize) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let d = DroverProcess::start_replica(sim, &args).await;
        self.started[slot] += 1;
        let label = Replicas::label(slot, self.started[slot]);
        lock(self.pids).push((label, d.pid()));
        self.slots[slot] = Some(d);
    }

    /// The slot whose replica leads now, if one does.
    async fn leader(&self) -> Option<usize> {
        for (i, d) in self.slots.iter().enumerate() {
            if let Some(d) = d
                && d.readyz().await == Some(Ready::Leader)
            {
                return Some(i);
            }
        }
        None
    }

    /// Stops the replica in `slot`; its `User-Agent`, or `None` when the slot was empty.
    fn stop(&mut self, slot: usize, kill: bool) -> Option<String> {
        let mut d = self.slots[slot].take()?;
        if kill {
            d.kill9();
        } else {
            d.sigterm();
        }
        let pid = d.pid();
        lock(self.pids).retain(|(_, p)| *p != pid);
        let user_agent = d.user_agent();
        self.stopped.push((Replicas::label(slot, self.started[slot]), d));
        Some(user_agent)
    }

    /// Every replica ever started, with its incarnation name.
    fn all(&self) -> Vec<(String, &DroverProcess)> {
        let running =
            self.slots.iter().enumerate().filter_map(|(i, d)| Some((Replicas::label(i, self.started[i]), d.as_ref()?)));
        self.stopped.iter().map(|(l, d)| (l.clone(), d)).chain(running).collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A replica stopped during the soak: its `User-Agent` and the request log's last sequence number at the stop.
struct Stop {
    how: &'static str,
    user_agent: String,
    seq: u64,
}

/// What the soak did, counted.
#[derive(Default)]
struct Tally {
    counts: BTreeMap<&'static str, u64>,
    stops: Vec<Stop>,
    late_max: Duration,
    leader_wait_max: Duration,
    notes: Vec<String>,
}

impl Tally {
    fn add(&mut self, what: &'static str) {
        *self.counts.entry(what).or_default() += 1;
    }
}

/// Runs a soak as `cfg` says and returns what it found.
pub async fn run(cfg: &ChaosConfig) -> ChaosReport {
    let sim = SimProcess::start(1.0).await;
    let mut report = ChaosReport::default();
    let kinds: Vec<Kind> = (0..cfg.apps).map(|i| apps::kind(i, cfg.autoscaling)).collect();
    let job_editable: Vec<usize> = (0..cfg.apps).filter(|i| kinds[*i] != Kind::Colliding).collect();
    let plan = schedule(cfg.apps, &job_editable, cfg.faults_for, cfg.seed);
    report.setup.push(format!(
        "chaos soak: {} apps ({} rolling, {} canary, {} autoscaled, {} colliding), {:?} of faults, seed {}, {} events \
         (fingerprint {:016x})",
        cfg.apps,
        kinds.iter().filter(|k| **k == Kind::Rolling).count(),
        kinds.iter().filter(|k| **k == Kind::Canary).count(),
        kinds.iter().filter(|k| **k == Kind::Autoscaled).count(),
        kinds.iter().filter(|k| **k == Kind::Colliding).count(),
        cfg.faults_for,
        cfg.seed,
        plan.len(),
        fingerprint(&plan),
    ));
    report.setup.push(format!("binaries: {}", binary("drover").display()));

    // Jobs a person owns: one per colliding record, and unrelated ones.
    let mut foreign: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let colliding = (0..cfg.apps).filter(|i| kinds[*i] == Kind::Colliding).map(apps::name);
    for id in colliding.chain((0..(cfg.apps / 50).max(5)).map(|k| format!("someone-{k}"))) {
        sim.register_job(&apps::unowned_job(&id)).await.unwrap_or_else(|e| panic!("register {id}: {e:?}"));
        let job = sim.job("default", &id).await.unwrap_or_else(|| panic!("the job {id} just registered"));
        foreign.insert(id, (job_modify_index(&job), crate::job_version(&job)));
    }
    let prometheus = if cfg.autoscaling { Some(PrometheusProcess::start(&sim).await) } else { None };
    let mut fleet = Fleet {
        kinds,
        version: vec![1; cfg.apps],
        generation: vec![0; cfg.apps],
        prometheus: prometheus.as_ref().map(|p| p.url.clone()),
    };
    let args = ["--leader-elect", "true", "--lock-ttl", "10s", "--lock-delay", "1s", "--resync", cfg.resync];
    let pids = Mutex::new(Vec::new());
    let mut replicas = Replicas {
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        slots: [None, None],
        started: [0, 0],
        stopped: Vec::new(),
        pids: &pids,
    };

    let epoch = Instant::now();
    let done = AtomicBool::new(false);
    let soak = async {
        let out = soak(cfg, &sim, &mut fleet, &mut replicas, &plan, &foreign, &mut report).await;
        done.store(true, Ordering::Relaxed);
        out
    };
    let (stops, samples, scan) =
        tokio::join!(soak, sample_memory(&pids, &done, epoch), scan_log(&sim, &foreign, &done));
    finish(&mut report, &replicas, &samples, &scan);
    check_handovers(&mut report, &stops, &scan);
    drop(prometheus);
    report
}

/// The soak proper: replicas, records, the first rollout, the schedule, then convergence and the invariants.
async fn soak(
    cfg: &ChaosConfig,
    sim: &SimProcess,
    fleet: &mut Fleet,
    replicas: &mut Replicas<'_>,
    plan: &[super::Planned],
    foreign: &BTreeMap<String, (u64, u64)>,
    report: &mut ChaosReport,
) -> Vec<Stop> {
    replicas.start(sim, 0).await;
    crate::wait_until(crate::DEADLINE, "the first replica leads", || async {
        match replicas.leader().await {
            Some(0) => Ok(()),
            other => Err(other),
        }
    })
    .await;
    replicas.start(sim, 1).await;
    for i in 0..cfg.apps {
        fleet.write(sim, i).await;
        if fleet.kinds[i] == Kind::Autoscaled {
            sim.set_workload("default", &apps::name(i), None, LOAD, 0.0).await;
        }
    }
    let first = Instant::now();
    let pending = converge(sim, fleet, cfg.initial_within).await;
    if !pending.is_empty() {
        report.violations.push(format!(
            "{} apps had not finished their first rollout {:?} after it started, before any fault; e.g. {:?}",
            pending.len(),
            cfg.initial_within,
            pending.iter().take(5).map(|(_, p)| p).collect::<Vec<_>>()
        ));
        return Vec::new();
    }
    report.figures.push(Figure::info(
        "first rollout: every app converged, after the last write (s)",
        format!("{:.1}", first.elapsed().as_secs_f64()),
    ));

    let mut tally = Tally::default();
    let start = Instant::now();
    for p in plan {
        tokio::time::sleep_until(start + p.at).await;
        tally.late_max = tally.late_max.max(start.elapsed().saturating_sub(p.at));
        if !matches!(p.event, Event::EditRecords { .. } | Event::EditJob { .. }) {
            eprintln!("chaos: t={:>6.1}s {:?}", start.elapsed().as_secs_f64(), p.event);
        }
        apply(&p.event, sim, fleet, replicas, &mut tally, start).await;
    }
    tokio::time::sleep_until(start + cfg.faults_for).await;

    // The faults stop: none in force, both leaders back, both replicas running.
    sim.clear_faults().await;
    sim.set_leader("consul", true).await;
    sim.set_leader("nomad", true).await;
    let stopped = Instant::now();
    for slot in 0..2 {
        if replicas.slots[slot].is_none() {
            replicas.start(sim, slot).await;
        }
    }
    eprintln!("chaos: faults stopped after {:.1}s; waiting for convergence", start.elapsed().as_secs_f64());
    // What is not converged when the wait ends (empty: everything converged) is also what the figures below count.
    let stale = converge(sim, fleet, cfg.settle_within).await;
    let took = stopped.elapsed();
    if stale.is_empty() {
        report.figures.push(Figure::new(
            "convergence after the faults stop (s)",
            format!("{:.1}", took.as_secs_f64()),
            &format!("≤ {}", CONVERGE_TARGET.as_secs()),
            took <= CONVERGE_TARGET,
        ));
    } else {
        report.figures.push(Figure::new(
            "convergence after the faults stop (s)",
            format!("> {:.0} ({} apps not)", took.as_secs_f64(), stale.len()),
            &format!("≤ {}", CONVERGE_TARGET.as_secs()),
            false,
        ));
        report.violations.extend(stale.iter().map(|(_, p)| format!("not converged: {p}")));
    }
    if took > CONVERGE_TARGET {
        report.violations.push(format!("convergence took {took:?} (target {CONVERGE_TARGET:?})"));
    }
    let good = (0..cfg.apps).filter(|i| fleet.kinds[*i] != Kind::Colliding);
    let good_ok = good.clone().filter(|i| !stale.iter().any(|(j, _)| j == i)).count();
    report.figures.push(Figure::new(
        "records whose last write runs",
        format!("{}/{}", cfg.apps - stale.len(), cfg.apps),
        &format!("{}/{}", cfg.apps, cfg.apps),
        stale.is_empty(),
    ));
    report.figures.push(Figure::info(
        "  apps Healthy on their last image (not colliding)",
        format!("{good_ok}/{}", good.count()),
    ));
    let touched = check_foreign(sim, foreign).await;
    report.figures.push(Figure::new(
        "unowned jobs changed (JobModifyIndex, Version, Stop)",
        format!("{}/{}", touched.len(), foreign.len()),
        "0",
        touched.is_empty(),
    ));
    report.violations.extend(touched);
    for (slot, d) in replicas.slots.iter_mut().enumerate() {
        match d {
            Some(d) => {
                if !d.is_running() {
                    let log = d.log.display();
                    report.violations.push(format!("replica in slot {slot} exited on its own (see {log})"));
                }
            }
            None => report.violations.push(format!("replica slot {slot} is empty at the end")),
        }
    }

    for (what, n) in &tally.counts {
        report.figures.push(Figure::info(what, n));
    }
    report.figures.push(Figure::info("latest event behind its planned time (ms)", tally.late_max.as_millis()));
    let wait = tally.leader_wait_max.as_secs_f64();
    report.figures.push(Figure::info("longest wait for a leader to stop (s)", format!("{wait:.1}")));
    report.setup.extend(tally.notes);
    tally.stops
}

/// Carries out one planned event. The faults aim at Drover's requests only (its `User-Agent`), so the soak's own
/// writes as a person are not refused.
async fn apply(
    ev: &Event,
    sim: &SimProcess,
    fleet: &mut Fleet,
    replicas: &mut Replicas<'_>,
    tally: &mut Tally,
    start: Instant,
) {
    let fault = |server: Target, method: Option<&str>, path: &str, action: Value| json!({"server": server.as_str(), "method": method, "path": path, "user_agent": "drover/", "action": action});
    match ev {
        Event::NomadErrors { count } | Event::ConsulErrors { count } => {
            let (server, method, path, body, what) = match ev {
                Event::NomadErrors { .. } => {
                    (Target::Nomad, "POST", "/v1/job/", "No cluster leader", "fault: Nomad 500 bursts")
                }
                _ => (Target::Consul, "PUT", "/v1/txn", "rpc error: No cluster leader", "fault: Consul 500 bursts"),
            };
            let mut f = fault(server, Some(method), path, json!({"type": "error", "status": 500, "body": body}));
            f["count"] = json!(count);
            sim.add_fault(f).await;
            tally.add(what);
        }
        Event::Latency { server, ms, for_ms } => {
            let mut f = fault(*server, None, "/v1/", json!({"type": "latency", "ms": ms}));
            f["duration_ms"] = json!(for_ms);
            sim.add_fault(f).await;
            tally.add("fault: latency windows");
        }
        Event::Drops { server, count } => {
            let mut f = fault(*server, None, "/v1/", json!({"type": "drop"}));
            f["count"] = json!(count);
            sim.add_fault(f).await;
            tally.add("fault: dropped-connection bursts");
        }
        Event::CutStreams { window_ms } => {
            sim.cut_event_streams((*window_ms > 0).then_some(*window_ms)).await;
            tally.add("fault: event streams cut");
        }
        Event::CutRequests { server } => {
            sim.cut_requests(server.as_str()).await;
            tally.add("fault: requests in flight cut");
        }
        Event::LeaderLost { server } => {
            sim.set_leader(server.as_str(), false).await;
            tally.add(if *server == Target::Consul { "fault: Consul leader lost" } else { "fault: Nomad leader lost" });
        }
        Event::LeaderBack { server } => sim.set_leader(server.as_str(), true).await,
        Event::Snapshot => {
            consul_control(sim, "/_sim/consul/snapshot").await;
        }
        Event::Restore => {
            consul_control(sim, "/_sim/consul/restore").await;
            tally.add("fault: Consul snapshot restores");
            // The last write must be well defined: every record again, at a new index, with its last value.
            for i in 0..fleet.kinds.len() {
                fleet.write(sim, i).await;
            }
        }
        Event::EditRecords { apps } => {
            for i in apps {
                fleet.version[*i] += 1;
                fleet.write(sim, *i).await;
                tally.add("record writes (new versions)");
            }
        }
        Event::EditJob { app } => {
            let id = apps::name(*app);
            let Some(mut job) = sim.job("default", &id).await.filter(|j| job_owner(j).is_some()) else {
                tally.add("job hand edits skipped (no job yet)");
                return;
            };
            let n = tally.counts.get("job hand edits (drift)").copied().unwrap_or(0);
            job["TaskGroups"][0]["Tasks"][0]["Config"]["image"] = json!(format!("hand:edit-{n}"));
            match sim.register_job(&job).await {
                Ok(_) => tally.add("job hand edits (drift)"),
                Err(_) => tally.add("job hand edits refused by Nomad"),
            }
        }
        Event::StopLeader { kill } => {
            // A leader may be missing for a moment (a hand-over): wait for one, so the event stops a leader, not a
            // standby. The schedule keeps this rare (no stop of the leader during a fail-over or after the restore).
            let waited = Instant::now();
            let mut leader = replicas.leader().await;
            while leader.is_none() && waited.elapsed() < LEADER_WAIT {
                tokio::time::sleep(Duration::from_millis(200)).await;
                leader = replicas.leader().await;
            }
            tally.leader_wait_max = tally.leader_wait_max.max(waited.elapsed());
            let slot = match leader {
                Some(slot) => slot,
                None => {
                    let slot = usize::from(replicas.slots[0].is_none());
                    tally.notes.push(format!(
                        "note: no replica led at t={:.1}s after {LEADER_WAIT:?}; stopped slot {slot} instead",
                        start.elapsed().as_secs_f64()
                    ));
                    slot
                }
            };
            let seq = sim.log(None, u64::MAX).await.last_seq;
            if let Some(user_agent) = replicas.stop(slot, *kill) {
                let how = if *kill { "replica: leader kill -9" } else { "replica: leader SIGTERM" };
                tally.add(how);
                tally.stops.push(Stop { how, user_agent, seq });
            }
        }
        Event::KillStandby => {
            let leader = replicas.leader().await;
            let standby = (0..2).find(|s| Some(*s) != leader && replicas.slots[*s].is_some());
            let seq = sim.log(None, u64::MAX).await.last_seq;
            if let Some(user_agent) = standby.and_then(|slot| replicas.stop(slot, true)) {
                let how = "replica: standby kill -9";
                tally.add(how);
                tally.stops.push(Stop { how, user_agent, seq });
            }
        }
        Event::Restart => {
            for slot in 0..2 {
                if replicas.slots[slot].is_none() {
                    replicas.start(sim, slot).await;
                    tally.add("replica: restarts");
                }
            }
        }
    }
}

/// POSTs to a `/_sim/consul/` control route; panics unless it succeeds (the simulator always can).
async fn consul_control(sim: &SimProcess, path: &str) {
    let url = format!("{}{path}", sim.consul_url);
    let resp = sim.http.post(&url).send().await.unwrap_or_else(|e| panic!("POST {url}: {e}"));
    assert!(resp.status().is_success(), "POST {url}: {}", resp.status());
}

/// Adds what needs the whole run: panics in the replicas' logs, the memory curve, and the request log's figures.
fn finish(report: &mut ChaosReport, replicas: &Replicas<'_>, samples: &[RssSample], scan: &LogScan) {
    let mut panics = 0;
    for (label, d) in replicas.all() {
        let text = std::fs::read_to_string(&d.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| l.contains("panicked")).collect();
        if let Some(first) = lines.first() {
            report.violations.push(format!(
                "replica {label} panicked {} time(s) (see {}): {first}",
                lines.len(),
                d.log.display()
            ));
        }
        panics += lines.len();
    }
    report.figures.push(Figure::new("panics in the drover logs", panics, "0", panics == 0));
    report.figures.push(Figure::info("drover replicas started", replicas.all().len()));

    let (table, worst) = memory_table(samples, 12);
    report.memory = table;
    match worst {
        Some((name, ratio)) => {
            let flat = ratio <= 1.25;
            report.figures.push(Figure::new(
                "memory: last/first third max (worst long-lived replica)",
                format!("{ratio:.2} ({name})"),
                "≤ 1.25",
                flat,
            ));
            if !flat {
                report.violations.push(format!("memory of replica {name} grew: last/first third max {ratio:.2}"));
            }
        }
        None => report.figures.push(Figure::info("memory: last/first third max", "no replica lived long enough")),
    }

    report.figures.push(Figure::new(
        "drover writes to unowned jobs (request log)",
        scan.foreign_writes.len(),
        "0",
        scan.foreign_writes.is_empty(),
    ));
    report.violations.extend(scan.foreign_writes.iter().map(|w| format!("write to an unowned job: {w}")));
    report.figures.push(Figure::info("drover requests answered", scan.requests));
    for ((server, status), n) in &scan.errors {
        let what = if *status == 0 { "dropped".to_owned() } else { format!("answered {status}") };
        report.figures.push(Figure::info(&format!("  {server} requests {what}"), n));
    }
    if scan.errors.is_empty() {
        report.violations.push("no request of Drover failed: the faults did not happen".to_owned());
    }
}

/// A stopped replica writes nothing after the first write of another replica that followed its stop (as
/// `tests/ha.rs` checks for one hand-over): after SIGTERM the old leader's work in flight is cancelled before it
/// releases the lock; after `kill -9` it is gone.
fn check_handovers(report: &mut ChaosReport, stops: &[Stop], scan: &LogScan) {
    let mut late_total = 0;
    for stop in stops {
        let first_other =
            scan.app_writes.iter().find(|(seq, ua)| *seq > stop.seq && *ua != stop.user_agent).map(|(seq, _)| *seq);
        let Some(first_other) = first_other else { continue };
        let late: Vec<u64> = scan
            .app_writes
            .iter()
            .filter(|(seq, ua)| *seq > first_other && *ua == stop.user_agent)
            .map(|(seq, _)| *seq)
            .collect();
        if !late.is_empty() {
            report.violations.push(format!(
                "{} ({}): {} write(s) after the next leader's first write (seq {first_other}), e.g. seq {:?}",
                stop.how,
                stop.user_agent,
                late.len(),
                &late[..late.len().min(5)]
            ));
        }
        late_total += late.len();
    }
    report.figures.push(Figure::info("drover writes other than its lock's", scan.app_writes.len()));
    report.figures.push(Figure::new(
        "writes of a stopped replica after the next leader's first",
        late_total,
        "0",
        late_total == 0,
    ));
}
