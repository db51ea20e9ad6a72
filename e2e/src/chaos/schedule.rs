//! The soak's schedule: a pure function of the apps, the length of the fault phase and the seed, so the same seed
//! gives the same run (the driver only adds what the processes do in answer).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};

/// One of the two simulated servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// The simulated Consul.
    Consul,
    /// The simulated Nomad.
    Nomad,
}

impl Target {
    /// The name the `/_sim/` API takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Consul => "consul",
            Target::Nomad => "nomad",
        }
    }
}

/// One thing the soak does at a planned time.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// The next `count` Nomad writes of Drover are answered `500 No cluster leader`.
    NomadErrors { count: u32 },
    /// The next `count` Consul transactions of Drover (status and control writes) are answered 500.
    ConsulErrors { count: u32 },
    /// Every request of Drover to `server` waits `ms` more, for `for_ms`.
    Latency { server: Target, ms: u64, for_ms: u64 },
    /// The next `count` connections of Drover to `server` are closed without an answer.
    Drops { server: Target, count: u32 },
    /// Every open Nomad event stream is cut, and streams opened in the next `window_ms` too.
    CutStreams { window_ms: u64 },
    /// Every request in flight on `server` (blocking queries, event streams) is dropped, as a restart does.
    CutRequests { server: Target },
    /// `server` loses its leader: every API call fails until [`Event::LeaderBack`].
    LeaderLost { server: Target },
    /// `server` has a leader again.
    LeaderBack { server: Target },
    /// A Consul snapshot is taken (records, statuses, the lock and its sessions as they are now).
    Snapshot,
    /// The snapshot is restored (indexes go backwards), then every record is written again with its last value.
    Restore,
    /// A person writes a new version (image) of these apps' records.
    EditRecords { apps: Vec<usize> },
    /// A person edits this app's Nomad job by hand (drift: another image, Drover's mark kept).
    EditJob { app: usize },
    /// The replica that leads is stopped: SIGTERM (`kill: false`) or `kill -9`.
    StopLeader { kill: bool },
    /// The standby replica is killed with `kill -9`.
    KillStandby,
    /// Every stopped replica is started again.
    Restart,
}

/// An event and when it happens, from the start of the fault phase.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Planned {
    /// Time from the start of the fault phase.
    pub at: Duration,
    /// What happens.
    pub event: Event,
}

/// The schedule of a soak over `apps` apps (`job_editable` of them have a job a person may edit) lasting `length`,
/// from `seed`, in time order.
///
/// Fixed landmarks (each placed with some seeded jitter) keep every kind of fault in every run: a snapshot early,
/// a SIGTERM of the leader, a Nomad leader loss, a `kill -9` of the leader (its fail-over takes up to 2 × TTL +
/// lock-delay), a `kill -9` of the standby, the restore (no leader until the restored lock's session expires), and
/// a Consul leader loss after the last restart (a replica cannot load without Consul) — all by 3/4 of the length,
/// so that Drover has a leader again before the faults stop. Between them, a random fault every
/// 1–4 s, a record edit every second (2 % of the apps) and a job edit every 2 s. No edit is planned while the
/// server it writes to has no leader (the person's write would fail).
pub fn schedule(apps: usize, job_editable: &[usize], length: Duration, seed: u64) -> Vec<Planned> {
    let mut rng = StdRng::seed_from_u64(seed);
    let len_ms = u64::try_from(length.as_millis()).unwrap_or(u64::MAX).max(10_000);
    let at = |rng: &mut StdRng, lo: f64, hi: f64| -> u64 { rng.random_range(frac(len_ms, lo)..frac(len_ms, hi)) };
    let mut plan: Vec<(u64, Event)> = Vec::new();

    plan.push((at(&mut rng, 0.03, 0.08), Event::Snapshot));
    let term = at(&mut rng, 0.10, 0.14);
    plan.push((term, Event::StopLeader { kill: false }));
    plan.push((term + rng.random_range(3_000..6_000), Event::Restart));
    let nomad_lost = at(&mut rng, 0.18, 0.22);
    let nomad_back = nomad_lost + rng.random_range(3_000..8_000);
    plan.push((nomad_lost, Event::LeaderLost { server: Target::Nomad }));
    plan.push((nomad_back, Event::LeaderBack { server: Target::Nomad }));
    let kill = at(&mut rng, 0.26, 0.30);
    plan.push((kill, Event::StopLeader { kill: true }));
    plan.push((kill + rng.random_range(3_000..6_000), Event::Restart));
    let standby = at(&mut rng, 0.34, 0.37);
    let restart = standby + rng.random_range(2_000..4_000);
    plan.push((standby, Event::KillStandby));
    plan.push((restart, Event::Restart));
    // The snapshot's lock names the session of the replica that led then (stopped since): after the restore no
    // replica leads until that session expires (up to 2 × TTL).
    plan.push((at(&mut rng, 0.40, 0.44), Event::Restore));
    // After the last restart (a replica loads from Consul); longer than the renew deadline (¾ TTL = 7.5 s) at
    // times, so the lock holder steps down and contends again.
    let consul_lost = at(&mut rng, 0.48, 0.53).max(restart + 2_000);
    let consul_back = consul_lost + rng.random_range(4_000..9_000);
    plan.push((consul_lost, Event::LeaderLost { server: Target::Consul }));
    plan.push((consul_back, Event::LeaderBack { server: Target::Consul }));

    let mut t = 2_000;
    while t < len_ms.saturating_sub(2_000) {
        plan.push((t, random_fault(&mut rng)));
        t += rng.random_range(1_000..4_000);
    }
    // A small margin around a leader loss: the person's write must not race the loss.
    let outside = |t: u64, lost: u64, back: u64| t + 500 < lost || t > back + 500;
    let per_edit = (apps / 50).clamp(1, apps.max(1));
    for t in (1_000..len_ms).step_by(1_000) {
        let picked = sample(&mut rng, apps.max(1), per_edit).into_vec();
        if outside(t, consul_lost, consul_back) && apps > 0 {
            plan.push((t, Event::EditRecords { apps: picked }));
        }
    }
    for t in (1_500..len_ms).step_by(2_000) {
        if job_editable.is_empty() {
            break;
        }
        let app = job_editable[rng.random_range(0..job_editable.len())];
        if outside(t, nomad_lost, nomad_back) {
            plan.push((t, Event::EditJob { app }));
        }
    }
    // A stable sort keeps the order of events planned for the same millisecond.
    plan.sort_by_key(|(t, _)| *t);
    plan.into_iter().map(|(t, event)| Planned { at: Duration::from_millis(t), event }).collect()
}

fn frac(len_ms: u64, f: f64) -> u64 {
    (len_ms as f64 * f) as u64
}

fn random_fault(rng: &mut StdRng) -> Event {
    let server = if rng.random_bool(0.5) { Target::Consul } else { Target::Nomad };
    match rng.random_range(0..6) {
        0 => Event::NomadErrors { count: rng.random_range(5..40) },
        1 => Event::ConsulErrors { count: rng.random_range(5..30) },
        2 => Event::Latency { server, ms: rng.random_range(100..1_500), for_ms: rng.random_range(2_000..6_000) },
        3 => Event::Drops { server, count: rng.random_range(3..20) },
        4 => Event::CutStreams { window_ms: rng.random_range(0..2_000) },
        _ => Event::CutRequests { server },
    }
}

/// A fingerprint of a schedule (FNV-1a over its debug text), printed so two runs can be compared at a glance.
pub fn fingerprint(plan: &[Planned]) -> u64 {
    format!("{plan:?}").bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEN: Duration = Duration::from_secs(75);

    #[test]
    fn the_same_seed_should_give_the_same_schedule_and_another_seed_another() {
        let editable: Vec<usize> = (0..100).filter(|i| i % 10 != 9).collect();
        let a = schedule(100, &editable, LEN, 7);
        assert_eq!(a, schedule(100, &editable, LEN, 7));
        assert_eq!(fingerprint(&a), fingerprint(&schedule(100, &editable, LEN, 7)));
        assert_ne!(fingerprint(&a), fingerprint(&schedule(100, &editable, LEN, 8)));
    }

    #[test]
    fn every_kind_of_fault_should_be_planned_in_time_order_within_the_length() {
        let editable: Vec<usize> = (0..100).collect();
        for seed in 0..20 {
            let plan = schedule(100, &editable, LEN, seed);
            assert!(plan.windows(2).all(|w| w[0].at <= w[1].at), "seed {seed}: in time order");
            assert!(plan.iter().all(|p| p.at < LEN), "seed {seed}: within the length");
            let has = |f: &dyn Fn(&Event) -> bool| plan.iter().any(|p| f(&p.event));
            assert!(has(&|e| matches!(e, Event::StopLeader { kill: false })), "seed {seed}: a SIGTERM");
            assert!(has(&|e| matches!(e, Event::StopLeader { kill: true })), "seed {seed}: a kill -9");
            assert!(has(&|e| matches!(e, Event::KillStandby)), "seed {seed}: a standby killed");
            assert!(has(&|e| matches!(e, Event::LeaderLost { server: Target::Consul })), "seed {seed}");
            assert!(has(&|e| matches!(e, Event::LeaderLost { server: Target::Nomad })), "seed {seed}");
            let snapshot = plan.iter().position(|p| p.event == Event::Snapshot);
            let restore = plan.iter().position(|p| p.event == Event::Restore);
            assert!(snapshot < restore && snapshot.is_some(), "seed {seed}: snapshot before restore");
            // Every landmark by 3/4 of the length: Drover has a leader again before the faults stop.
            let landmarks = plan.iter().filter(|p| {
                !matches!(
                    p.event,
                    Event::EditRecords { .. }
                        | Event::EditJob { .. }
                        | Event::NomadErrors { .. }
                        | Event::ConsulErrors { .. }
                        | Event::Latency { .. }
                        | Event::Drops { .. }
                        | Event::CutStreams { .. }
                        | Event::CutRequests { .. }
                )
            });
            let last = landmarks.map(|p| p.at).max();
            assert!(last < Some(LEN.mul_f64(0.75)), "seed {seed}: last landmark at {last:?}");
            // The leader is stopped before the restore leaves the fleet without one for up to 2 × TTL.
            let last_stop = plan.iter().filter(|p| matches!(p.event, Event::StopLeader { .. })).map(|p| p.at).max();
            assert!(last_stop < restore.map(|i| plan[i].at), "seed {seed}: a leader stopped after the restore");
            // No replica starts while Consul has no leader.
            let lost = plan.iter().find(|p| p.event == Event::LeaderLost { server: Target::Consul }).map(|p| p.at);
            let last_restart = plan.iter().filter(|p| p.event == Event::Restart).map(|p| p.at).max();
            assert!(last_restart < lost, "seed {seed}: restart at {last_restart:?}, Consul lost at {lost:?}");
        }
    }

    #[test]
    fn no_edit_should_be_planned_while_its_server_has_no_leader() {
        let editable: Vec<usize> = (0..100).collect();
        for seed in 0..20 {
            let plan = schedule(100, &editable, LEN, seed);
            let window = |server: Target| {
                let lost = plan.iter().find(|p| p.event == Event::LeaderLost { server }).map(|p| p.at);
                let back = plan.iter().find(|p| p.event == Event::LeaderBack { server }).map(|p| p.at);
                (lost.expect("a loss"), back.expect("a return"))
            };
            let (c_lost, c_back) = window(Target::Consul);
            let (n_lost, n_back) = window(Target::Nomad);
            for p in &plan {
                match p.event {
                    Event::EditRecords { .. } => assert!(p.at < c_lost || p.at > c_back, "seed {seed}: {p:?}"),
                    Event::EditJob { .. } => assert!(p.at < n_lost || p.at > n_back, "seed {seed}: {p:?}"),
                    _ => {}
                }
            }
        }
    }
}
