//! The lock state machine against the in-memory Consul model, on paused tokio time.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::fake::{FakeConsul, FakePort};
use super::{Elector, Holder, LeaderGate, Leadership, LockConfig, LockValue, Term};

const TTL: Duration = Duration::from_secs(10);
const LOCK_DELAY: Duration = Duration::from_secs(1);

fn holder(pid: u32) -> Holder {
    Holder { hostname: "test".into(), pid, listen: format!("127.0.0.1:{pid}"), version: "0".into() }
}

/// One replica: its port (to cut it off), its gate, and the token that shuts it down.
struct Replica {
    port: FakePort,
    gate: LeaderGate,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start(consul: &Arc<FakeConsul>, pid: u32) -> Replica {
    let port = consul.port();
    let config = LockConfig::new("drover", TTL, LOCK_DELAY, holder(pid));
    let (elector, gate) = Elector::new(port.clone(), config);
    let stop = CancellationToken::new();
    let task = tokio::spawn(elector.run(stop.clone()));
    Replica { port, gate, stop, task }
}

/// Waits (on paused time) until `gate` satisfies `pred`; the panic says what was awaited.
async fn wait(gate: &LeaderGate, what: &str, within: Duration, pred: impl Fn(Leadership) -> bool) -> Instant {
    let mut gate = gate.clone();
    let found = tokio::time::timeout(within, async {
        loop {
            if pred(gate.current_seen()) {
                return Instant::now();
            }
            if gate.changed().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("{what} within {within:?}: now {:?}", gate.current()))
}

fn leading(l: Leadership) -> bool {
    matches!(l, Leadership::Leading(_))
}

#[tokio::test(start_paused = true)]
async fn elector_should_lead_alone_and_say_who_holds_the_lock() {
    let consul = FakeConsul::new();
    let a = start(&consul, 1);
    wait(&a.gate, "a lone replica leads", Duration::from_secs(1), leading).await;
    assert_eq!(a.gate.term(), Some(Term(1)));
    let key = consul.key().expect("the lock key exists");
    assert_eq!(key.key, "drover/leader");
    assert_eq!(key.flags, super::elector::LOCK_FLAG_VALUE);
    let value: LockValue = serde_json::from_slice(&key.value).expect("the lock value is JSON");
    assert_eq!(value.holder, holder(1));
    assert!(!value.since.is_empty());
    // Renewals keep it leading far past 2×TTL.
    tokio::time::sleep(TTL * 10).await;
    assert_eq!(a.gate.term(), Some(Term(1)), "a renewed session keeps its lock");
}

#[tokio::test(start_paused = true)]
async fn stop_should_release_the_lock_so_the_standby_leads_at_once() {
    let consul = FakeConsul::new();
    let a = start(&consul, 1);
    wait(&a.gate, "a leads", Duration::from_secs(1), leading).await;
    let b = start(&consul, 2);
    tokio::time::sleep(TTL * 3).await;
    assert!(!b.gate.is_leader(), "only one replica leads");
    let session_a = consul.key().and_then(|k| k.session).expect("a holds the lock");

    let stopped = Instant::now();
    a.stop.cancel();
    let led = wait(&b.gate, "b leads after a released", Duration::from_secs(1), leading).await;
    assert!(a.gate.current() == Leadership::Standby, "a stepped down");
    assert!(led - stopped < Duration::from_millis(100), "no lock-delay after a release: {:?}", led - stopped);
    assert!(!consul.session_alive(&session_a), "a destroyed its session");
    a.task.await.expect("a's elector ends after giving up the lock");
    let value: LockValue = serde_json::from_slice(&consul.key().expect("key").value).expect("JSON");
    assert_eq!(value.holder.pid, 2);
}

#[tokio::test(start_paused = true)]
async fn a_leader_cut_off_should_step_down_before_its_session_can_expire() {
    let consul = FakeConsul::new();
    let a = start(&consul, 1);
    wait(&a.gate, "a leads", Duration::from_secs(1), leading).await;
    let b = start(&consul, 2);
    let session_a = consul.key().and_then(|k| k.session).expect("a holds the lock");
    tokio::time::sleep(TTL).await;

    let cut = Instant::now();
    a.port.set_cut(true);
    let stepped_down = wait(&a.gate, "a steps down", TTL, |l| l == Leadership::Standby).await;
    assert!(
        consul.session_alive(&session_a),
        "a stepped down while its session was still alive on the server, so nobody else could lead yet"
    );
    assert!(!b.gate.is_leader(), "b cannot lead while a's session lives");
    assert!(
        stepped_down - cut <= LockConfig::renew_deadline(TTL),
        "stepped down {:?} after the cut",
        stepped_down - cut
    );

    let led = wait(&b.gate, "b leads once a's session expired", TTL * 3, leading).await;
    assert!(!consul.session_alive(&session_a));
    assert!(led > stepped_down, "never two leaders: b led at {led:?}, a stepped down at {stepped_down:?}");
    // 2×TTL after a's last renew (at most TTL/2 before the cut), then lock-delay, then one retry.
    assert!(led - cut <= TTL * 2 + LOCK_DELAY * 2, "fail-over took {:?}", led - cut);

    // Reconnected, a is a standby: b keeps the lock.
    a.port.set_cut(false);
    tokio::time::sleep(TTL * 3).await;
    assert!(!a.gate.is_leader() && b.gate.is_leader(), "b keeps leading once a is back");
}

#[tokio::test(start_paused = true)]
async fn a_session_gone_should_step_down_and_lead_again_in_a_new_term() {
    let consul = FakeConsul::new();
    let a = start(&consul, 1);
    wait(&a.gate, "a leads", Duration::from_secs(1), leading).await;
    let session = consul.key().and_then(|k| k.session).expect("held");
    consul.destroy(&session);
    wait(&a.gate, "a notices its lock released", Duration::from_secs(1), |l| l == Leadership::Standby).await;
    // A new session, then lock-delay, then the lock again: a later term, so work of term 1 cannot write.
    wait(&a.gate, "a leads again", TTL, |l| l == Leadership::Leading(Term(2))).await;
    assert_ne!(consul.key().and_then(|k| k.session), Some(session));
    assert!(a.gate.admit(Term(1)).is_err() && a.gate.admit(Term(2)).is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_cannot_read_its_key_should_step_down_within_the_renew_deadline() {
    let consul = FakeConsul::new();
    let a = start(&consul, 1);
    wait(&a.gate, "a leads", Duration::from_secs(1), leading).await;
    // A blip: one failed read does not cost the lock.
    a.port.set_reads_cut(true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.port.set_reads_cut(false);
    tokio::time::sleep(TTL).await;
    assert_eq!(a.gate.term(), Some(Term(1)), "a short read outage keeps the lock");
    // The key deleted by hand while a cannot read it: renewals still succeed, but a gives up within the deadline.
    a.port.set_reads_cut(true);
    let cut = Instant::now();
    consul.delete_key();
    let stepped_down = wait(&a.gate, "a steps down", TTL * 2, |l| l == Leadership::Standby).await;
    assert!(
        stepped_down - cut <= LockConfig::renew_deadline(TTL) + Duration::from_secs(6),
        "a stepped down {:?} after its reads failed",
        stepped_down - cut
    );
}

#[tokio::test(start_paused = true)]
async fn a_key_that_is_not_a_lock_should_never_be_taken() {
    let consul = FakeConsul::new();
    consul.put_plain("drover/leader", b"someone else's");
    let a = start(&consul, 1);
    tokio::time::sleep(TTL * 3).await;
    assert!(!a.gate.is_leader(), "a foreign key at the lock path is left alone");
    assert_eq!(consul.key().map(|k| k.value), Some(b"someone else's".to_vec()));
}

#[tokio::test(start_paused = true)]
async fn lost_should_complete_when_the_term_ends_and_never_for_always() {
    let (tx, gate) = super::channel();
    tx.send(Leadership::Leading(Term(7)));
    let lost = gate.lost(Term(7));
    tokio::pin!(lost);
    assert!(futures::poll!(lost.as_mut()).is_pending());
    tx.send(Leadership::Standby);
    tokio::time::timeout(Duration::from_secs(1), lost).await.expect("lost completes on step-down");
    tokio::time::timeout(Duration::from_millis(1), gate.lost(Term(6))).await.expect("a past term is lost at once");

    let always = LeaderGate::always();
    assert_eq!(always.term(), Some(Term(1)));
    assert!(tokio::time::timeout(TTL, always.lost(Term(1))).await.is_err(), "always never loses");
}
